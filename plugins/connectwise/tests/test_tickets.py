"""Hub tickets in ConnectWise: the tickets stream and touched, closing, reopening, priority and type lookups."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from hub import Action, ConfigError, MappingError, RetryableError, VendorError
from hub.config import config_from_dict
from hub.engine import RunReport, pull
from hub.http import retry_policy
from hub.records import Ticket
from hub.testing import ConnectorPlugin, make_hub, mock_client
from hub.testing import MemoryPushContext as Context
from plugins.connectwise.plugin import (
    ConnectWiseConnector,
    ConnectWiseSettings,
    to_ticket,
)
from plugins.connectwise.simulator import DEFAULT_NOW, ConnectWiseSimulator

UTC = timezone.utc
RUN_START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
GUID = "3f5e8b0c-4f8e-4c1a-9d3e-6a1b2c3d4e5f"

TICKET = {
    "id": 5012, "summary": "SRV-01: disk C: above 95 %", "recordType": "ServiceTicket",
    "board": {"id": 2, "name": "Alerts"}, "status": {"id": 9, "name": "Closed"},
    "company": {"id": 250, "identifier": "AcmeDental", "name": "Acme Dental"},
    "externalXRef": "msp-hub:ticket:ninjaone:a1", "closedFlag": True, "closedDate": "2025-05-30T10:15:00Z",
    "closedBy": "apimember", "_info": {"lastUpdated": "2025-05-30T10:15:02Z", "updatedBy": "apimember",
                                       "enteredBy": "apimember"},
}


def config(**section):
    section = {"site": "https://api-eu.myconnectwise.net", "company_id": "msphub", "public_key": "sim-public-key",
               "private_key_env": "CW_PRIVATE_KEY", "client_id": GUID, **section}
    return config_from_dict({"connectors": {"connectwise": section}}, environ={"CW_PRIVATE_KEY": "sim-private-key"})


def connector_for(sim: ConnectWiseSimulator, attempts: int = 5, **section) -> ConnectWiseConnector:
    return ConnectWiseConnector(ConnectWiseSettings.from_config(config(**section)), http=mock_client(sim.handler),
                                retrying=lambda: retry_policy(attempts=attempts, sleep=lambda s: None))



@pytest.fixture
def sim() -> ConnectWiseSimulator:
    return ConnectWiseSimulator(seed=2, companies=3, agreements=0, time_entries=0, products=0)


def hub_ticket(sim: ConnectWiseSimulator, uid: str, board: str = "Alerts") -> int:
    """A ticket as the hub makes it: created by the API member, its externalXRef msp-hub:..."""
    return sim.add_ticket(f"Alert {uid}", sim.ids("companies")[0], board, f"msp-hub:ticket:ninjaone:{uid}",
                          member=sim.api_member)


def close_action(uid: str, key: str | None = None, **payload) -> Action:
    return Action(key or f"ticket_close:ticket:ninjaone:{uid}:{uid}", "ticket_close", "connectwise", "acme",
                  {"external_ref": f"msp-hub:ticket:ninjaone:{uid}", "uid": uid,
                   "note": "The alert cleared in the RMM; closed by msp-hub.", **payload})


def reopen_action(uid: str, key: str | None = None) -> Action:
    return Action(key or f"ticket_reopen:ninjaone:{uid}-2", "ticket_reopen", "connectwise", "acme",
                  {"external_ref": f"msp-hub:ticket:ninjaone:{uid}", "uid": f"{uid}-2",
                   "note": "Alert triggered again; reopened."})


def notes_of(sim: ConnectWiseSimulator, ticket_id: int) -> list[str]:
    return [sim.record("notes", n)["text"] for n in sim.ids("notes") if sim.record("notes", n)["ticketId"] == ticket_id]


def requests(sim: ConnectWiseSimulator) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _ in sim.log]


def pass_of(connector: ConnectWiseConnector, cursor=None, started=RUN_START) -> list[Ticket]:
    stream = next(s for s in connector.streams() if s.name == "tickets")
    return [t for page in stream.iter_pages(cursor, started) for t in page.records]


# --- mapping -----------------------------------------------------------------------------------

def test_to_ticket_maps_a_closed_ticket():
    assert to_ticket(TICKET, touched=False) == Ticket(
        "connectwise", "5012", "250", "msp-hub:ticket:ninjaone:a1", "SRV-01: disk C: above 95 %", "Alerts", "Closed",
        closed=True, touched=False, closed_at=datetime(2025, 5, 30, 10, 15, tzinfo=UTC),
        updated_at=datetime(2025, 5, 30, 10, 15, 2, tzinfo=UTC))


def test_to_ticket_keeps_closed_at_only_while_closed():
    ticket = to_ticket({**TICKET, "closedFlag": False, "status": {"id": 7, "name": "New"}}, touched=True)
    assert (ticket.closed, ticket.closed_at, ticket.touched, ticket.status) == (False, None, True, "New")


def test_to_ticket_without_a_company_is_a_mapping_error():
    with pytest.raises(MappingError, match="ticket 5012 has no company id"):
        to_ticket({**TICKET, "company": None}, touched=False)


def test_api_member_is_optional_text():
    assert ConnectWiseSettings.from_config(config()).api_member is None
    assert ConnectWiseSettings.from_config(config(api_member=" msphub-api ")).api_member == "msphub-api"
    with pytest.raises(ConfigError) as info:
        ConnectWiseSettings.from_config(config(api_member=""))
    assert info.value.key == "connectors.connectwise.api_member" and "API Members" in info.value.fix


# --- the tickets stream ------------------------------------------------------------------------

def test_a_reference_prefix_with_a_wildcard_is_refused(sim):
    with pytest.raises(ValueError, match="cannot hold"):
        next(connector_for(sim).client.iter_tickets_by_ref("msp_hub:"))
    assert sim.requests == 0


def test_the_stream_returns_only_tickets_the_hub_made(sim):
    mine = hub_ticket(sim, "a1")
    company = sim.ids("companies")[1]
    sim.add_ticket("Printer jam", company)
    sim.add_ticket("From another integration", company, external_ref="automate:77")
    sim.add_ticket("Looks like ours, is not", company, external_ref="old-msp-hub:ticket:x")
    tickets = pass_of(connector_for(sim))
    assert tickets == [Ticket("connectwise", str(mine), str(sim.ids("companies")[0]), "msp-hub:ticket:ninjaone:a1",
                              "Alert a1", "Alerts", "New", closed=False, touched=False,
                              updated_at=datetime.fromtimestamp(DEFAULT_NOW, UTC))]
    # The count first (a full pass checks it), then the page, then the empty page that ends a read
    # whose answers carry no Link header.
    assert [(p, q.get("conditions")) for _, p, q in sim.log if p.startswith("/service/tickets")] == [
        ("/service/tickets/count", 'externalXRef like "msp-hub:%"'),
        ("/service/tickets", 'externalXRef like "msp-hub:%"'), ("/service/tickets", 'externalXRef like "msp-hub:%"')]


def test_the_stream_marks_the_tickets_a_person_worked_on(sim):
    ids = {uid: hub_ticket(sim, uid) for uid in ("quiet", "worked", "moved", "closed", "closed-by-tech", "timed")}
    sim.technician_works_on(ids["worked"], hours=0.5)
    sim.technician_sets_status(ids["moved"], "In Progress")
    sim.technician_sets_status(ids["closed"], "Closed", member=sim.api_member)     # the hub closed it
    sim.technician_sets_status(ids["closed-by-tech"], "Resolved", member="lchen")
    sim.add_time_entry(sim.ids("companies")[0], 1.0, charge_id=ids["timed"])       # the ticket record shows no hours
    sim.add_time_entry(sim.ids("companies")[0], 2.0, charge_id=ids["quiet"], charge_type="ProjectTicket")
    tickets = {t.external_ref.rsplit(":", 1)[1]: t for t in pass_of(connector_for(sim))}
    assert {uid: t.touched for uid, t in tickets.items()} == {
        "quiet": False, "worked": True, "moved": True, "closed": False, "closed-by-tech": True, "timed": True}
    assert (tickets["closed"].closed, tickets["closed"].status) == (True, "Closed")
    # The count, one page of tickets, the Alerts board's statuses, and one question about time for
    # the three tickets whose record shows no touch; each read ends on an empty page (no Link header).
    assert requests(sim) == [("GET", "/service/tickets/count"), ("GET", "/service/tickets"),
                             ("GET", "/service/boards/2/statuses"), ("GET", "/service/boards/2/statuses"),
                             ("GET", "/time/entries"), ("GET", "/time/entries"), ("GET", "/service/tickets")]
    time_query = sim.log[-3][2]
    assert time_query["conditions"] == (f'chargeToType = "ServiceTicket" and chargeToId in '
                                        f'({ids["quiet"]}, {ids["closed"]}, {ids["timed"]})')
    assert time_query["fields"] == "id,chargeToId"


def test_the_hub_member_can_be_named_in_the_settings(sim):
    # A ticket made under another member (e.g. before the keys changed), closed by the hub's API member.
    ticket = sim.add_ticket("Alert z", sim.ids("companies")[0], "Alerts", "msp-hub:ticket:ninjaone:z", member="import")
    sim.technician_sets_status(ticket, "Closed", member="msphub-api")
    assert [t.touched for t in pass_of(connector_for(sim))] == [True]        # not closed by its creator
    assert [t.touched for t in pass_of(connector_for(sim, api_member="msphub-api"))] == [False]


def test_an_incremental_pass_asks_for_hub_tickets_changed_since_the_cursor(sim):
    old, changed = hub_ticket(sim, "old"), hub_ticket(sim, "changed")
    sim.now = DEFAULT_NOW + 7200
    sim.technician_sets_status(changed, "Waiting")
    since = datetime.fromtimestamp(DEFAULT_NOW + 3600, UTC).isoformat()
    tickets = pass_of(connector_for(sim), {"since": since})
    assert [(t.source_id, t.status, t.touched) for t in tickets] == [(str(changed), "Waiting", True)]
    assert old not in [int(t.source_id) for t in tickets]
    assert [q.get("conditions") for _, p, q in sim.log if p == "/service/tickets"] == [
        'externalXRef like "msp-hub:%" and lastUpdated > [2025-06-01T00:55:00Z]'] * 2  # the page, the empty end


def test_the_stream_stores_tickets_with_touched(sim):
    quiet, worked = hub_ticket(sim, "q"), hub_ticket(sim, "w")
    sim.technician_works_on(worked)
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    report = RunReport("r1", "sync", RUN_START)
    pull(hub, report, streams=["tickets"])
    assert not report.errors and report.records["connectwise.tickets"] == 2
    rows = {r["source_id"]: r for r in hub.store.db["tickets"].rows}
    assert (rows[str(quiet)]["touched"], rows[str(worked)]["touched"]) == (0, 1)
    hub.close()


def test_board_statuses_are_read_once_per_run(sim):
    hub_ticket(sim, "a"), hub_ticket(sim, "b")
    connector = connector_for(sim)
    pass_of(connector)
    connector.push(close_action("a"), Context())       # the run's push reuses the pass's statuses
    assert sim.requests_by_path["/service/boards/2/statuses"] == 2     # one read: the page and the empty end
    pass_of(connector, started=RUN_START.replace(hour=13))  # the next run reads them again
    assert sim.requests_by_path["/service/boards/2/statuses"] == 4


# --- closing -----------------------------------------------------------------------------------

def test_closing_an_untouched_ticket_sets_the_closed_status_and_adds_the_note(sim):
    ticket = hub_ticket(sim, "a")
    result = connector_for(sim).push(close_action("a"), Context())
    record = sim.record("tickets", ticket)
    assert (record["status"]["name"], record["closedFlag"], record["closedBy"]) == ("Closed", True, sim.api_member)
    assert result.vendor_id == str(ticket) and result.details["closed"] is True and result.details["touched"] == ""
    assert "closed (Closed)" in result.summary
    assert notes_of(sim, ticket)[-1] == ("The alert cleared in the RMM; closed by msp-hub.\n\n"
                                         "[msp-hub:ticket_close:ticket:ninjaone:a:a]")
    # Find by externalXRef, the board's statuses, the time count, the PATCH, the notes, the note;
    # each read that found something ends on an empty page (the answers carry no Link header).
    assert requests(sim) == [("GET", "/service/tickets"), ("GET", "/service/tickets"),
                             ("GET", "/service/boards/2/statuses"), ("GET", "/service/boards/2/statuses"),
                             ("GET", "/time/entries/count"), ("PATCH", f"/service/tickets/{ticket}"),
                             ("GET", f"/service/tickets/{ticket}/notes"), ("POST", f"/service/tickets/{ticket}/notes")]
    assert sim.log[4][2]["conditions"] == f'chargeToType = "ServiceTicket" and chargeToId = {ticket}'


@pytest.mark.parametrize("work, why", [
    (lambda sim, t: sim.technician_works_on(t, hours=0.5), "0.5 h logged"),
    (lambda sim, t: sim.add_time_entry(sim.ids("companies")[0], 1.0, charge_id=t), "1 time entry logged"),
    (lambda sim, t: sim.technician_sets_status(t, "In Progress"), "status set to In Progress"),
])
def test_closing_a_touched_ticket_only_adds_a_note(sim, work, why):
    ticket = hub_ticket(sim, "a")
    work(sim, ticket)   # after the plan, before the push: the push asks again
    status = sim.record("tickets", ticket)["status"]
    result = connector_for(sim).push(close_action("a"), Context())
    record = sim.record("tickets", ticket)
    assert (record["closedFlag"], record["status"]) == (False, status)
    assert result.details == {"closed": False, "touched": why, "note_id": result.details["note_id"],
                              "note_created": True}
    assert f"left open ({why})" in result.summary
    assert notes_of(sim, ticket)[-1].startswith(
        f"The alert cleared in the RMM; the ticket was left open because a technician worked on it ({why}).")
    assert not any(m == "PATCH" for m, _ in requests(sim))


def test_the_note_for_a_touched_ticket_may_come_with_the_action(sim):
    ticket = hub_ticket(sim, "a")
    sim.technician_works_on(ticket)
    connector_for(sim).push(close_action("a", touched_note="Cleared; a technician has it."), Context())
    assert notes_of(sim, ticket)[-1].startswith("Cleared; a technician has it.\n\n[msp-hub:")


def test_closing_a_closed_ticket_changes_nothing_but_adds_the_note(sim):
    ticket = hub_ticket(sim, "a")
    sim.technician_sets_status(ticket, "Resolved", member="lchen")
    result = connector_for(sim).push(close_action("a"), Context())
    assert sim.record("tickets", ticket)["status"]["name"] == "Resolved"
    assert result.details["closed"] is True and "already closed" in result.summary
    assert notes_of(sim, ticket)[-1].startswith("The alert cleared in the RMM; closed by msp-hub.")
    assert not any(m == "PATCH" for m, _ in requests(sim))


def test_the_same_close_twice_closes_once_with_one_note(sim):
    ticket = hub_ticket(sim, "a")
    connector = connector_for(sim)
    first = connector.push(close_action("a"), Context())
    second = connector.push(close_action("a"), Context())
    assert second.details["note_id"] == first.details["note_id"] and second.details["note_created"] is False
    assert [m for m, p in requests(sim) if p == f"/service/tickets/{ticket}"] == ["PATCH"]
    assert sum("[msp-hub:ticket_close:" in n for n in notes_of(sim, ticket)) == 1


def test_a_close_whose_patch_answer_was_lost_is_done_once_on_rerun(sim):
    ticket = hub_ticket(sim, "a")
    sim.fail_next(503, path=f"/service/tickets/{ticket}", method="PATCH", after_apply=True)
    with pytest.raises(RetryableError):   # the run gives up after one try: the ticket is closed, no note yet
        connector_for(sim, attempts=1).push(close_action("a"), Context())
    assert sim.record("tickets", ticket)["closedFlag"] is True
    assert not any("[msp-hub:" in n for n in notes_of(sim, ticket))
    sim.technician_works_on(ticket)       # even if someone logs time on the closed ticket meanwhile
    result = connector_for(sim).push(close_action("a"), Context(attempts=1))
    assert result.details["closed"] is True and result.details["note_created"] is True
    assert [m for m, p in requests(sim) if p == f"/service/tickets/{ticket}"] == ["PATCH"]
    assert sum("[msp-hub:ticket_close:" in n for n in notes_of(sim, ticket)) == 1
    assert "closed by msp-hub" in notes_of(sim, ticket)[-1]


def test_a_close_whose_note_answer_was_lost_adds_one_note(sim):
    ticket = hub_ticket(sim, "a")
    sim.timeout_next(path=f"/service/tickets/{ticket}/notes", method="POST", after_apply=True)
    result = connector_for(sim).push(close_action("a"), Context())   # looks again within the push
    assert result.details["closed"] is True
    assert sum("[msp-hub:ticket_close:" in n for n in notes_of(sim, ticket)) == 1
    assert [m for m, p in requests(sim) if p == f"/service/tickets/{ticket}"] == ["PATCH"]


def test_the_closed_status_prefers_closed_then_resolved_then_board_order(sim):
    board = sim.add_board("NOC", statuses=False)
    for name, closed, default in (("Open", False, False), ("Triage", False, True), ("Completed", True, False),
                                  ("Resolved", True, False), (">Closed", True, False), ("Old Closed", True, False)):
        sim.add_board_status(board, name, closed=closed, default=default)
    sim.statuses.get(sim.board_status(board, "Old Closed")["id"])["inactive"] = True
    ticket = hub_ticket(sim, "n", board="NOC")
    assert sim.record("tickets", ticket)["status"]["name"] == "Triage"   # the board's default
    connector = connector_for(sim)
    connector.push(close_action("n"), Context())
    assert sim.record("tickets", ticket)["status"]["name"] == ">Closed"
    connector.push(reopen_action("n"), Context())
    assert sim.record("tickets", ticket)["status"]["name"] == "Triage"


def test_a_board_without_a_closed_status_is_a_vendor_error_naming_the_fix(sim):
    board = sim.add_board("Bare", statuses=False)
    sim.add_board_status(board, "New", default=True)
    hub_ticket(sim, "b", board="Bare")
    with pytest.raises(VendorError, match="no active closed status.*Service Boards > Statuses"):
        connector_for(sim).push(close_action("b"), Context())


def test_a_close_refused_with_a_400_names_the_field_and_adds_no_note(sim):
    ticket = hub_ticket(sim, "a")
    sim.fail_next(400, path=f"/service/tickets/{ticket}", method="PATCH", body={
        "code": "InvalidObject", "message": "ticket object is invalid", "errors": [
            {"code": "InvalidField", "message": "A resolution is required to close this ticket.",
             "resource": "ticket", "field": "status"}]})
    with pytest.raises(VendorError, match="HTTP 400.*status: A resolution is required to close this ticket"):
        connector_for(sim).push(close_action("a"), Context())
    assert not any("[msp-hub:" in n for n in notes_of(sim, ticket))
    assert sim.record("tickets", ticket)["closedFlag"] is False


def test_closing_a_ticket_the_psa_does_not_have_is_a_404(sim):
    with pytest.raises(VendorError, match="no ticket with externalXRef 'msp-hub:ticket:ninjaone:none'"):
        connector_for(sim).push(close_action("none"), Context())


# --- reopening ---------------------------------------------------------------------------------

def test_reopening_puts_the_ticket_back_in_the_default_status_with_a_note(sim):
    ticket = hub_ticket(sim, "a")
    connector = connector_for(sim)
    connector.push(close_action("a"), Context())
    result = connector.push(reopen_action("a"), Context())
    record = sim.record("tickets", ticket)
    assert (record["status"]["name"], record["closedFlag"], "closedDate" in record) == ("New", False, False)
    assert result.details["reopened"] is True and result.details["closed"] is False
    assert "reopened (New)" in result.summary
    assert notes_of(sim, ticket)[-1] == "Alert triggered again; reopened.\n\n[msp-hub:ticket_reopen:ninjaone:a-2]"
    # The stream sees it untouched again: the hub's own close and reopen are not a person's work.
    assert [t.touched for t in pass_of(connector)] == [False]


def test_reopening_an_open_ticket_changes_nothing_but_adds_the_note(sim):
    ticket = hub_ticket(sim, "a")
    sim.technician_sets_status(ticket, "In Progress")
    result = connector_for(sim).push(reopen_action("a"), Context())
    assert sim.record("tickets", ticket)["status"]["name"] == "In Progress"
    assert result.details["reopened"] is False and "already open" in result.summary
    assert not any(m == "PATCH" for m, _ in requests(sim))
    assert notes_of(sim, ticket)[-1].startswith("Alert triggered again; reopened.")


def test_a_reopen_whose_patch_answer_was_lost_is_done_once_on_rerun(sim):
    ticket = hub_ticket(sim, "a")
    sim.technician_sets_status(ticket, "Closed", member=sim.api_member)
    sim.timeout_next(path=f"/service/tickets/{ticket}", method="PATCH", after_apply=True)
    with pytest.raises(RetryableError):
        connector_for(sim, attempts=1).push(reopen_action("a"), Context())
    connector_for(sim).push(reopen_action("a"), Context(attempts=1))
    assert sim.record("tickets", ticket)["closedFlag"] is False
    assert [m for m, p in requests(sim) if p == f"/service/tickets/{ticket}"] == ["PATCH"]
    assert sum("[msp-hub:ticket_reopen:" in n for n in notes_of(sim, ticket)) == 1


# --- priority and type of a new ticket ------------------------------------------------------------

def ticket_action(sim, ref: str, **payload) -> Action:
    return Action(f"ticket:{ref}", "ticket", "connectwise", "acme", {
        "external_ref": f"msp-hub:ticket:{ref}", "summary": f"Alert {ref}", "board": "Alerts",
        "company_id": str(sim.ids("companies")[0]), **payload})


def test_priority_and_type_are_looked_up_by_name_once_per_run(sim):
    connector = connector_for(sim)
    first = connector.push(ticket_action(sim, "p1", priority="Priority 1 - Emergency Response", type="Alert"),
                           Context())
    second = connector.push(ticket_action(sim, "p2", priority="priority 1 - emergency response", type="alert"),
                            Context())
    for result in (first, second):
        ticket = sim.record("tickets", int(result.vendor_id))
        assert (ticket["priority"]["id"], ticket["priority"]["name"]) == (1, "Priority 1 - Emergency Response")
        assert ticket["type"]["name"] == "Alert" and ticket["board"]["name"] == "Alerts"
    assert (sim.requests_by_path["/service/priorities"], sim.requests_by_path["/service/boards/2/types"],
            sim.requests_by_path["/service/boards"]) == (1, 1, 1)
    assert [q["conditions"] for _, p, q in sim.log if p == "/service/boards/2/types"] == [
        'name = "Alert" and inactiveFlag = false']


def test_without_priority_and_type_the_board_defaults_apply(sim):
    result = connector_for(sim).push(ticket_action(sim, "d"), Context())
    ticket = sim.record("tickets", int(result.vendor_id))
    assert (ticket["priority"]["name"], ticket["type"]["name"], ticket["status"]["name"]) == (
        "Priority 3 - Normal Response", "Alert", "New")
    assert sim.requests_by_path["/service/priorities"] == 0


def test_an_unknown_priority_is_a_vendor_error_and_creates_nothing(sim):
    with pytest.raises(VendorError, match="no priority named 'Urgent'.*Service Desk > Priorities"):
        connector_for(sim).push(ticket_action(sim, "u", priority="Urgent"), Context())
    assert sim.ids("tickets") == []


def test_a_type_of_another_board_is_a_vendor_error_naming_the_board(sim):
    with pytest.raises(VendorError, match="board 'Alerts' has no active type named 'Service Request'"):
        connector_for(sim).push(ticket_action(sim, "t", type="Service Request"), Context())
    assert sim.ids("tickets") == []


def test_a_refused_priority_id_names_the_field(sim):
    with pytest.raises(VendorError, match="HTTP 400.*priority: Priority not found"):
        connector_for(sim).push(ticket_action(sim, "x", priority_id="99"), Context())


@pytest.mark.parametrize("kind, payload, message", [
    ("ticket_close", {"external_ref": "msp-hub:x"}, "note"),
    ("ticket_close", {"note": "cleared"}, "external_ref"),
    ("ticket_close", {"external_ref": "msp-hub:x", "note": "cleared", "touched_note": ""}, "touched_note"),
    ("ticket_reopen", {"external_ref": "msp-hub:x", "note": " "}, "note"),
    ("ticket", {"external_ref": "r", "summary": "s", "board": "Alerts", "company_id": "250",
                "priority": "Priority 1 - Emergency Response", "priority_id": "1"}, "not both"),
    ("ticket", {"external_ref": "r", "summary": "s", "board": "Alerts", "company_id": "250", "type": 3}, "type"),
])
def test_a_bad_payload_is_a_mapping_error_before_any_request(sim, kind, payload, message):
    with pytest.raises(MappingError, match=message) as info:
        connector_for(sim).push(Action("key-7", kind, "connectwise", "acme", payload), Context())
    assert "action key-7" in str(info.value)
    assert sim.requests == 0
