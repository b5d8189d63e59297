"""The ticket push adopts the ticket an alert already has, request by request (respx)."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from hub import Action, VendorError
from hub.config import Secret
from hub.http import retry_policy
from hub.testing import MemoryPushContext as Context
from plugins.connectwise.plugin import ConnectWiseConnector, ConnectWiseSettings

SITE = "https://api-eu.myconnectwise.net"
ROOT = SITE + "/v4_6_release/apis/3.0"
HUB_REF = "msp-hub:ticket:ninjaone:a1"
ACME = {"id": 250, "identifier": "AcmeDental", "name": "Acme Dental"}
BIRCH = {"id": 251, "identifier": "Birchwood", "name": "Birchwood Legal"}
OPEN = {"id": 1, "name": "New"}


def connector() -> ConnectWiseConnector:
    settings = ConnectWiseSettings(site=SITE, company_id="msphub", public_key="pub",
                                   private_key=Secret("priv", "test"), client_id="3f5e8b0c-4f8e-4c1a-9d3e-6a1b2c3d4e5f")
    return ConnectWiseConnector(settings, retrying=lambda: retry_policy(attempts=2, sleep=lambda s: None))


def ticket(ticket_id, company=ACME, ref=None, by="ninjaone-integration", **extra):
    record = {"id": ticket_id, "summary": "CPU high", "board": {"id": 2, "name": "Alerts"}, "status": OPEN,
              "company": company, "closedFlag": False, "_info": {"enteredBy": by}, **extra}
    if ref is not None:
        record["externalXRef"] = ref
    return record


def create_action(**payload) -> Action:
    return Action("ticket:ninjaone:a1", "ticket", "connectwise", "acme", {
        "external_ref": HUB_REF, "summary": "PC-1: CPU above 90 %", "board": "Alerts", "company_id": "250",
        "initial_description": "MAJOR alert", "uids": ["a1"], "device": "ninjaone:7", "condition": "cpu",
        "auto_close": True, "rule": "cpu", **payload})


def by_conditions(answers: dict[str, list]):
    """A side effect for ``GET /service/tickets``: the records for each ``conditions``, then an empty page."""
    def answer(request: httpx.Request) -> httpx.Response:
        if "pageId" in request.url.params:
            return httpx.Response(200, json=[])
        return httpx.Response(200, json=answers.get(request.url.params.get("conditions"), []))
    return answer


def calls(router) -> list[tuple[str, str]]:
    return [(c.request.method, c.request.url.path.removeprefix("/v4_6_release/apis/3.0")) for c in router.calls]


def test_a_psa_ticket_id_of_the_alerts_company_is_adopted_with_one_internal_note():
    with respx.mock(base_url=ROOT, assert_all_called=False) as router:
        router.get("/service/tickets").mock(side_effect=by_conditions({}))
        router.get("/service/tickets/77").respond(200, json=ticket(77, ref="NINJA-77"))
        router.get("/service/tickets/77/notes").respond(200, json=[])
        note = router.post("/service/tickets/77/notes").respond(201, json={"id": 900, "ticketId": 77})
        create = router.post("/service/tickets").respond(201, json=ticket(5000))
        result = connector().push(create_action(psa_ticket_id="77"), Context())
        sent = calls(router)
        asked = router.calls[0].request.url.params["conditions"]
    assert not create.called
    # The hub's reference (nothing), the ticket by its id, its notes, the note: no POST of a ticket.
    assert sent == [("GET", "/service/tickets"), ("GET", "/service/tickets/77"),
                    ("GET", "/service/tickets/77/notes"), ("POST", "/service/tickets/77/notes")]
    assert asked == f'externalXRef = "{HUB_REF}"'
    body = json.loads(note.calls.last.request.content)
    assert body["internalAnalysisFlag"] is True and body["detailDescriptionFlag"] is False
    assert body["text"].startswith("Linked to msp-hub for alert a1 (device ninjaone:7, rule cpu), found by psaTicketId 77")
    assert body["text"].endswith("[msp-hub:ticket:ninjaone:a1]")
    assert result.vendor_id == "77" and "adopted (found by psaTicketId 77" in result.summary
    assert result.details == {"created": False, "adopted": True, "found_by": "psaTicketId 77", "ticket_id": "77",
                              "ticket_external_ref": "NINJA-77", "ticket_closed": False, "external_ref": HUB_REF,
                              "note_id": "900", "note_created": True}


def test_the_hubs_own_reference_wins_over_the_psa_ticket_id():
    with respx.mock(base_url=ROOT, assert_all_called=False) as router:
        router.get("/service/tickets").mock(side_effect=by_conditions(
            {f'externalXRef = "{HUB_REF}"': [ticket(5001, ref=HUB_REF, by="apimember")]}))
        by_id = router.get("/service/tickets/77").respond(200, json=ticket(77))
        result = connector().push(create_action(psa_ticket_id="77"), Context())
    assert not by_id.called and result.vendor_id == "5001" and result.details["created"] is False
    assert "adopted" not in result.details


def test_a_missing_psa_ticket_then_another_companys_template_ticket_create_one_and_say_why():
    template = 'externalXRef = "NinjaOne-a1"'
    with respx.mock(base_url=ROOT, assert_all_called=False) as router:
        router.get("/service/tickets").mock(side_effect=by_conditions({template: [ticket(80, BIRCH, "NinjaOne-a1")]}))
        router.get("/service/tickets/77").respond(404, json={"code": "NotFound", "message": "Ticket not found"})
        router.get("/service/boards").mock(side_effect=lambda r: httpx.Response(
            200, json=[] if "pageId" in r.url.params else [{"id": 2, "name": "Alerts"}]))
        create = router.post("/service/tickets").respond(201, json=ticket(5002, ref=HUB_REF, by="apimember"))
        note = router.post("/service/tickets/80/notes")
        result = connector().push(create_action(psa_ticket_id="77", adopt_refs=["NinjaOne-a1"]), Context())
    assert create.call_count == 1 and not note.called
    sent = json.loads(create.calls.last.request.content)
    assert sent["externalXRef"] == HUB_REF and sent["company"] == {"id": 250}
    assert result.vendor_id == "5002" and result.details["created"] is True
    assert result.details["not_adopted"] == [
        "psaTicketId 77: no such ticket in ConnectWise",
        "ticket 80 with externalXRef 'NinjaOne-a1' is of company Birchwood (id 251), not of company 250"]
    assert "no such ticket in ConnectWise" in result.summary


def test_a_psa_ticket_id_of_another_company_by_identifier_is_passed_over():
    with respx.mock(base_url=ROOT, assert_all_called=False) as router:
        router.get("/service/tickets").mock(side_effect=by_conditions({}))
        router.get("/service/tickets/77").respond(200, json=ticket(77, BIRCH))
        router.get("/service/boards").mock(side_effect=lambda r: httpx.Response(
            200, json=[] if "pageId" in r.url.params else [{"id": 2, "name": "Alerts"}]))
        router.post("/service/tickets").respond(201, json=ticket(5003, ref=HUB_REF))
        result = connector().push(create_action(psa_ticket_id="77", company_id="AcmeDental"), Context())
    assert result.details["not_adopted"] == [
        "psaTicketId 77 is a ticket of company Birchwood (id 251), not of company AcmeDental"]


def test_a_server_error_on_the_psa_ticket_is_not_taken_for_a_missing_ticket():
    with respx.mock(base_url=ROOT, assert_all_called=False) as router:
        router.get("/service/tickets").mock(side_effect=by_conditions({}))
        router.get("/service/tickets/77").respond(403, json={"code": "Forbidden", "message": "no access"})
        create = router.post("/service/tickets")
        with pytest.raises(VendorError, match="403"):
            connector().push(create_action(psa_ticket_id="77"), Context())
    assert not create.called


def test_a_template_reference_longer_than_connectwise_keeps_is_not_looked_for_and_said():
    long_ref = "NinjaOne-" + "x" * 95
    with respx.mock(base_url=ROOT, assert_all_called=False) as router:
        search = router.get("/service/tickets").mock(side_effect=by_conditions({}))
        router.get("/service/boards").mock(side_effect=lambda r: httpx.Response(
            200, json=[] if "pageId" in r.url.params else [{"id": 2, "name": "Alerts"}]))
        router.post("/service/tickets").respond(201, json=ticket(5004, ref=HUB_REF))
        result = connector().push(create_action(adopt_refs=[long_ref]), Context())
        asked = [c.request.url.params["conditions"] for c in search.calls]
    assert asked == [f'externalXRef = "{HUB_REF}"']
    assert result.details["not_adopted"] == [
        f"externalXRef {long_ref!r} is longer than ConnectWise's 100 characters: no ticket can carry it, not looked for"]


def close_action(**payload) -> Action:
    return Action("ticket_close:ticket:ninjaone:a1:a1", "ticket_close", "connectwise", "acme",
                  {"external_ref": HUB_REF, "uid": "a1", "note": "The alert cleared; closed by msp-hub.", **payload})


def test_a_close_of_an_adopted_ticket_addresses_it_by_id():
    with respx.mock(base_url=ROOT, assert_all_called=False) as router:
        search = router.get("/service/tickets")
        router.get("/service/tickets/77").respond(200, json=ticket(77, ref="NINJA-77"))
        router.get("/service/boards/2/statuses").mock(side_effect=lambda r: httpx.Response(200, json=[] if "pageId" in r.url.params else [
            {"id": 1, "name": "New", "defaultFlag": True, "closedStatus": False, "sortOrder": 1},
            {"id": 9, "name": "Closed", "closedStatus": True, "sortOrder": 9}]))
        router.get("/time/entries/count").respond(200, json={"count": 0})
        patch = router.patch("/service/tickets/77").respond(200, json=ticket(77, ref="NINJA-77", closedFlag=True,
                                                                             status={"id": 9, "name": "Closed"}))
        router.get("/service/tickets/77/notes").respond(200, json=[])
        router.post("/service/tickets/77/notes").respond(201, json={"id": 901})
        result = connector().push(close_action(ticket_id="77"), Context())
    assert not search.called and patch.called
    assert json.loads(patch.calls.last.request.content) == [{"op": "replace", "path": "status", "value": {"id": 9}}]
    assert result.vendor_id == "77" and result.details["closed"] is True


def test_a_ticket_without_external_reference_was_opened_by_hand_and_is_never_closed():
    with respx.mock(base_url=ROOT, assert_all_called=False) as router:
        router.get("/service/tickets/78").respond(200, json=ticket(78, by="jsmith"))
        patch = router.patch("/service/tickets/78")
        router.get("/service/tickets/78/notes").respond(200, json=[])
        note = router.post("/service/tickets/78/notes").respond(201, json={"id": 902})
        result = connector().push(close_action(ticket_id="78", touched_note="Cleared; left open."), Context())
    assert not patch.called
    assert json.loads(note.calls.last.request.content)["text"].startswith("Cleared; left open.")
    assert result.details["touched"] == "opened by hand by jsmith" and result.details["closed"] is False


def test_a_note_before_the_adoption_is_recorded_finds_the_ticket_as_the_create_did():
    with respx.mock(base_url=ROOT, assert_all_called=False) as router:
        router.get("/service/tickets").mock(side_effect=by_conditions({}))
        router.get("/service/tickets/77").respond(200, json=ticket(77, ref="NINJA-77"))
        router.get("/service/tickets/77/notes").respond(200, json=[])
        router.post("/service/tickets/77/notes").respond(201, json={"id": 903})
        action = Action("ticket_note:ninjaone:a2", "ticket_note", "connectwise", "acme", {
            "ticket_external_ref": HUB_REF, "uid": "a2", "text": "Triggered again", "internal": False,
            "adopt": {"psa_ticket_id": "77", "company_id": "250"}})
        result = connector().push(action, Context())
    assert result.details["ticket_id"] == "77"


def test_without_the_ticket_or_a_way_to_adopt_it_a_note_is_a_404():
    with respx.mock(base_url=ROOT, assert_all_called=False) as router:
        router.get("/service/tickets").mock(side_effect=by_conditions({}))
        router.get("/service/tickets/77").respond(200, json=ticket(77, BIRCH, ref="NINJA-77"))
        action = Action("ticket_note:ninjaone:a2", "ticket_note", "connectwise", "acme", {
            "ticket_external_ref": HUB_REF, "uid": "a2", "text": "Triggered again", "internal": False,
            "adopt": {"psa_ticket_id": "77", "company_id": "250"}})
        with pytest.raises(VendorError, match="no ticket with externalXRef"):
            connector().push(action, Context())
