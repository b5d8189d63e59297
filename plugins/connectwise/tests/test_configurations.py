"""A new alert ticket is associated with its device's configuration: by serial number, else by
name, within the ticket's company, once, with an internal note saying how it matched."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from hub import Action
from hub.http import retry_policy
from hub.testing import MemoryPushContext as Context
from plugins.connectwise.plugin import ConnectWiseConnector, ConnectWiseSettings
from plugins.connectwise.simulator import ConnectWiseSimulator
from plugins.connectwise.tests.test_tickets import config, connector_for

API = "https://api-eu.myconnectwise.net/v4_6_release/apis/3.0"


@pytest.fixture
def sim() -> ConnectWiseSimulator:
    return ConnectWiseSimulator(seed=2, companies=3, agreements=0, time_entries=0, products=0)


def ticket_action(company, ref="a1", **configuration) -> Action:
    return Action(f"ticket:ninjaone:{ref}", "ticket", "connectwise", "acme", {
        "external_ref": f"msp-hub:ticket:ninjaone:{ref}", "summary": f"PC-10: alert {ref}", "board": "Alerts",
        "company_id": str(company), "configuration": configuration})


def internal_notes(sim, ticket_id):
    return [sim.record("notes", i)["text"] for i in sim.ids("notes")
            if sim.record("notes", i)["ticketId"] == ticket_id and sim.record("notes", i)["internalAnalysisFlag"]]


def test_a_serial_number_match_wins_over_a_name_match(sim):
    acme = sim.ids("companies")[0]
    sim.add_configuration(acme, "PC-10", serial_number="OLD-SERIAL")
    wanted = sim.add_configuration(acme, "Reception", serial_number="CZ2345ABCD")
    result = connector_for(sim).push(ticket_action(acme, serial_number="CZ2345ABCD", name="PC-10"), Context())
    ticket_id = int(result.vendor_id)
    assert sim.ticket_configurations(ticket_id) == [wanted]
    assert internal_notes(sim, ticket_id) == [
        f"Associated with configuration Reception (id {wanted}), matched by serial number CZ2345ABCD.\n\n"
        f"[msp-hub:ticket:ninjaone:a1:configuration]"]
    assert result.details["configuration"] == str(wanted)
    assert list(dict.fromkeys(q["conditions"] for _, p, q in sim.log if p == "/company/configurations")) == [
        f'company/id = {acme} and (serialNumber = "CZ2345ABCD" or name = "PC-10")']   # one request for both


@pytest.mark.parametrize("serial", [None, "To be filled by O.E.M.", "0", "00000000", "   "])
def test_without_a_usable_serial_number_the_name_is_matched(sim, serial):
    acme = sim.ids("companies")[0]
    wanted = sim.add_configuration(acme, "PC-10", serial_number=serial)
    result = connector_for(sim).push(ticket_action(acme, serial_number=serial, name="PC-10"), Context())
    assert sim.ticket_configurations(int(result.vendor_id)) == [wanted]
    assert result.details["configuration_match"] == f"PC-10 (id {wanted}), matched by name PC-10"
    assert list(dict.fromkeys(q["conditions"] for _, p, q in sim.log if p == "/company/configurations")) == [
        f'company/id = {acme} and (name = "PC-10")']                           # a placeholder is never asked for


def test_a_configuration_of_another_company_is_never_associated(sim):
    acme, other = sim.ids("companies")[:2]
    sim.add_configuration(other, "PC-10", serial_number="CZ2345ABCD")
    result = connector_for(sim).push(ticket_action(acme, serial_number="CZ2345ABCD", name="PC-10"), Context())
    assert sim.ticket_configurations(int(result.vendor_id)) == []
    assert result.details == {
        "created": True, "external_ref": "msp-hub:ticket:ninjaone:a1", "configuration": None,
        "configuration_match": f"no configuration of company {acme} has serial number 'CZ2345ABCD' or name "
                               f"'PC-10': none associated"}


def test_a_ticket_without_configuration_in_its_payload_looks_nothing_up(sim):
    acme = sim.ids("companies")[0]
    action = ticket_action(acme)
    action = Action(action.key, action.kind, action.connector, action.client_id,
                    {k: v for k, v in action.payload.items() if k != "configuration"}, None)
    result = connector_for(sim).push(action, Context())
    assert "configuration" not in result.details and sim.requests_by_path["/company/configurations"] == 0


def test_pushing_the_same_ticket_again_associates_and_notes_once(sim):
    acme = sim.ids("companies")[0]
    wanted = sim.add_configuration(acme, "PC-10", serial_number="CZ2345ABCD")
    connector = connector_for(sim)
    first = connector.push(ticket_action(acme, serial_number="CZ2345ABCD", name="PC-10"), Context())
    again = connector.push(ticket_action(acme, serial_number="CZ2345ABCD", name="PC-10"), Context(attempts=1))
    assert first.vendor_id == again.vendor_id and again.details["created"] is False
    assert sim.ticket_configurations(int(first.vendor_id)) == [wanted]
    assert len(internal_notes(sim, int(first.vendor_id))) == 1
    calls = [m for m, p, _ in sim.log if p.endswith("/configurations") and p.startswith("/service/")]
    assert calls.count("POST") == 1 and calls.index("POST") > 0                 # looked before, posted once


def pages(*records):
    """One page of ``records``, then the empty page that ends a read without Link headers."""
    return [httpx.Response(200, json=list(records)), httpx.Response(200, json=[])]


def test_the_requests_are_the_documented_ones():
    """Exact shapes: the lookup's conditions by company identifier, the ticket's configurations,
    then ``POST /service/tickets/{id}/configurations`` with ``{"id": ...}`` and the internal note."""
    settings = ConnectWiseSettings.from_config(config())
    with respx.mock(base_url=API) as router:
        router.get("/service/tickets").respond(200, json=[])
        router.get("/service/boards").mock(side_effect=pages({"id": 2, "name": "Alerts"}))
        router.post("/service/tickets").respond(201, json={"id": 77, "board": {"id": 2}})
        lookup = router.get("/company/configurations").mock(side_effect=pages({"id": 31, "name": "PC-10",
                                                                                "activeFlag": True}))
        linked = router.get("/service/tickets/77/configurations").respond(200, json=[])
        associate = router.post("/service/tickets/77/configurations").respond(201, json={"id": 31})
        router.get("/service/tickets/77/notes").respond(200, json=[])
        note = router.post("/service/tickets/77/notes").respond(201, json={"id": 9})
        connector = ConnectWiseConnector(settings, http=httpx.Client(base_url=API),
                                         retrying=lambda: retry_policy(attempts=1, sleep=lambda s: None))
        result = connector.push(ticket_action("AcmeDental", name="PC-10"), Context())
    assert lookup.calls[0].request.url.params["conditions"] == 'company/identifier = "AcmeDental" and (name = "PC-10")'
    assert linked.called and json.loads(associate.calls.last.request.content) == {"id": 31}
    sent = json.loads(note.calls.last.request.content)
    assert (sent["internalAnalysisFlag"], sent["detailDescriptionFlag"]) == (True, False)
    assert result.details["configuration"] == "31"


def test_a_name_is_matched_without_regard_to_case_as_connectwise_compares(sim):
    acme = sim.ids("companies")[0]
    wanted = sim.add_configuration(acme, "pc-10", serial_number=None)
    result = connector_for(sim).push(ticket_action(acme, serial_number="CZ2345ABCD", name="PC-10"), Context())
    assert sim.ticket_configurations(int(result.vendor_id)) == [wanted]
    assert result.details["configuration_match"] == f"pc-10 (id {wanted}), matched by name PC-10"
    assert sim.requests_by_path["/company/configurations"] == 1 + 1   # one lookup and its empty last page
