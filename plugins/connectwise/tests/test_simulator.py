"""The ConnectWise simulator itself: numbered paging, the conditions grammar, its lastUpdated index."""

from __future__ import annotations

import base64
import time
from email.utils import parsedate_to_datetime

import httpx
import pytest

from plugins.connectwise.simulator import (
    DEFAULT_NOW,
    NULL,
    ConnectWiseSimulator,
    epoch,
    matches,
    parse_conditions,
)

ROOT = "https://api-na.myconnectwise.net/v4_6_release/apis/3.0"


def headers(sim: ConnectWiseSimulator, *, auth: bool = True, forward: bool = False) -> dict[str, str]:
    out = {"clientId": sim.client_id, "Accept": "application/vnd.connectwise.com+json; version=2022.1"}
    if auth:
        out["Authorization"] = "Basic " + base64.b64encode(
            f"{sim.company_id}+{sim.public_key}:{sim.private_key}".encode()).decode()
    if forward:
        out["pagination-type"] = "forward-only"
    return out


def get(sim: ConnectWiseSimulator, path: str, *, forward: bool = False, **params) -> httpx.Response:
    return sim.handler(httpx.Request("GET", ROOT + path, params=params, headers=headers(sim, forward=forward)))


def post(sim: ConnectWiseSimulator, path: str, body, *, auth: bool = True) -> httpx.Response:
    return sim.handler(httpx.Request("POST", ROOT + path, json=body, headers=headers(sim, auth=auth)))


def patch(sim: ConnectWiseSimulator, path: str, ops) -> httpx.Response:
    return sim.handler(httpx.Request("PATCH", ROOT + path, json=ops, headers=headers(sim)))


@pytest.fixture
def sim() -> ConnectWiseSimulator:
    return ConnectWiseSimulator(seed=5, companies=2, agreements=2, time_entries=30, products=0)


def test_numbered_pages_carry_link_headers(sim):
    first = get(sim, "/time/entries", pageSize=10)
    assert first.headers["Link"] == (f'<{ROOT}/time/entries?pageSize=10&page=2>; rel="next", '
                                     f'<{ROOT}/time/entries?pageSize=10&page=3>; rel="last"')
    middle = get(sim, "/time/entries", pageSize=10, page=2)
    assert 'rel="prev"' in middle.headers["Link"] and 'rel="first"' in middle.headers["Link"]
    last = get(sim, "/time/entries", pageSize=10, page=3)
    assert "next" not in last.headers["Link"]
    assert [e["id"] for r in (first, middle, last) for e in r.json()] == sim.ids("time_entries")


def test_the_default_page_size_is_25_and_the_largest_1000(sim):
    assert len(get(sim, "/time/entries").json()) == 25
    big = ConnectWiseSimulator(seed=1, companies=1, agreements=0, time_entries=1500, products=0)
    assert len(get(big, "/time/entries", pageSize=5000).json()) == 1000


def test_forward_only_links_carry_the_last_id(sim):
    response = get(sim, "/time/entries", forward=True, pageSize=10)
    last = response.json()[-1]["id"]
    assert response.headers["Link"] == f'<{ROOT}/time/entries?pageSize=10&pageId={last}>; rel="next"'


def test_forward_only_refuses_order_by(sim):
    response = get(sim, "/time/entries", forward=True, orderBy="id desc")
    assert response.status_code == 400 and "forward-only" in response.json()["message"]


def test_count(sim):
    assert get(sim, "/time/entries/count").json() == {"count": 30}
    assert get(sim, "/service/boards/count", conditions='name = "alerts"').json() == {"count": 1}


@pytest.mark.parametrize("text, expected", [
    ('name = "Acme"', True), ('name = "acme"', True), ('name != "Acme"', False),
    ('name contains "cm"', True), ('name like "A%e"', True), ('name like "B%"', False),
    ("company/id = 250", True), ("company/id > 250", False), ("company/id in (1, 250)", True),
    ("company/id not in (1, 250)", False), ("closedFlag = false", True), ("closedFlag = true", False),
    ("lastUpdated > [2025-01-01T00:00:00Z]", True), ("lastUpdated >= [2025-06-01T00:00:00Z]", True),
    ("lastUpdated > [2025-06-01T00:00:00Z]", False),
    ('name = "Acme" and company/id = 1', False), ('name = "Acme" or company/id = 1', True),
    ('not (name = "Acme")', False), ("agreement = null", True), ("agreement != null", False),
    (r'externalXRef = "say \"hi\""', True),
    ('name = "Acme" AND company/id = 250', True),
])
def test_conditions(text, expected):
    record = {"name": "Acme", "company": {"id": 250}, "closedFlag": False, "agreement": None,
              "externalXRef": 'say "hi"', "_info": {"lastUpdated": "2025-06-01T00:00:00Z"}}
    assert matches(parse_conditions(text), record) is expected


@pytest.mark.parametrize("text", ['name = "open', "name =", "lastUpdated > [yesterday]", "(name = 1",
                                  "= 3", "name ~ 3"])
def test_bad_conditions_raise(text):
    with pytest.raises(ValueError):
        parse_conditions(text)


def test_the_last_updated_index_follows_touches_and_new_entries(sim):
    ids = sim.ids("time_entries")
    cut = "lastUpdated > [2025-06-01T00:00:00Z]"
    assert get(sim, "/time/entries", conditions=cut).json() == []
    sim.now = DEFAULT_NOW + 60
    sim.touch("time_entries", [ids[20], ids[2]])
    added = sim.add_time_entry(sim.ids("companies")[0], 2.5)
    got = [e["id"] for e in get(sim, "/time/entries", conditions=cut).json()]
    assert got == [ids[2], ids[20], added]
    assert [e["id"] for e in get(sim, "/time/entries", conditions="lastUpdated > [2025-06-01T00:00:30Z]",
                                 forward=True, pageSize=1, pageId=ids[2]).json()] == [ids[20]]
    sim.time_entries.build_index()
    assert [e["id"] for e in get(sim, "/time/entries", conditions=cut).json()] == got


def test_time_entry_fields_can_be_set_or_removed(sim):
    entry = sim.add_time_entry(sim.ids("companies")[0], 1.0, company=None, notes="odd")
    record = sim.record("time_entries", entry)
    assert "company" not in record and record["notes"] == "odd"


def test_a_request_without_credentials_cannot_be_routed(sim):
    response = post(sim, "/service/tickets", {"summary": "Disk"}, auth=False)
    assert response.status_code == 404 and response.text == "Cannot route. Codebase/company is invalid"


def test_ticket_creation_checks_required_fields_and_lengths(sim):
    response = post(sim, "/service/tickets", {"summary": "", "externalXRef": "x" * 101})
    body = response.json()
    assert response.status_code == 400 and body["code"] == "InvalidObject"
    assert {e["field"] for e in body["errors"]} == {"summary", "externalXRef", "board", "company"}


def test_a_created_ticket_is_found_by_its_external_ref(sim):
    company = sim.ids("companies")[0]
    created = post(sim, "/service/tickets", {"summary": "Disk", "board": {"name": "Alerts"},
                                             "company": {"id": company}, "externalXRef": "ninja:1"})
    assert created.status_code == 201 and "initialDescription" not in created.json()
    found = get(sim, "/service/tickets", conditions='externalXRef = "ninja:1"').json()
    assert [t["id"] for t in found] == [created.json()["id"]]


def test_a_note_needs_text_and_a_flag(sim):
    ticket = sim.add_ticket("Printer", sim.ids("companies")[0])
    response = post(sim, f"/service/tickets/{ticket}/notes", {"text": "hi"})
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "detailDescriptionFlag"
    assert post(sim, f"/service/tickets/{ticket}/notes", {"text": "hi", "resolutionFlag": True}).status_code == 201


def test_the_accept_version_is_recorded_and_the_current_one_answered(sim):
    response = get(sim, "/company/companies")
    assert sim.versions == {"2022.1": 1} and response.headers["api-current-version"] == "2025.1"


def test_writes_to_read_only_collections_are_refused(sim):
    assert post(sim, "/time/entries", {}).status_code == 405


def test_the_same_seed_gives_the_same_data():
    a = ConnectWiseSimulator(seed=9, time_entries=50)
    b = ConnectWiseSimulator(seed=9, time_entries=50)
    assert get(a, "/time/entries", pageSize=50).content == get(b, "/time/entries", pageSize=50).content


# --- boards, statuses, priorities, ticket changes ------------------------------------------------------

def test_every_board_has_statuses_and_types_and_priorities_are_listed(sim):
    statuses = get(sim, "/service/boards/2/statuses").json()
    assert [(s["name"], s["closedStatus"], s["defaultFlag"]) for s in statuses] == [
        ("New", False, True), ("In Progress", False, False), ("Waiting", False, False), ("Closed", True, False),
        ("Resolved", True, False)]
    assert {s["board"]["id"] for s in statuses} == {2}
    assert [t["name"] for t in get(sim, "/service/boards/2/types", conditions='name = "alert"').json()] == ["Alert"]
    assert get(sim, "/service/priorities", conditions='name = "Priority 3 - Normal Response"').json()[0]["id"] == 4
    assert get(sim, "/service/boards/99/statuses").status_code == 404
    assert get(sim, f"/service/boards/1/statuses/{statuses[0]['id']}").status_code == 404   # another board's


def test_a_ticket_starts_in_its_boards_default_status_type_and_priority(sim):
    created = post(sim, "/service/tickets", {"summary": "Disk", "board": {"name": "Alerts"},
                                             "company": {"id": sim.ids("companies")[0]}}).json()
    assert (created["status"]["name"], created["type"]["name"], created["priority"]["name"], created["closedFlag"]) == (
        "New", "Alert", "Priority 3 - Normal Response", False)
    assert created["_info"]["enteredBy"] == sim.api_member


def test_a_status_patch_closes_and_reopens_a_ticket(sim):
    ticket = sim.add_ticket("Disk", sim.ids("companies")[0], "Alerts")
    closed = sim.board_status(2, "Resolved")["id"]
    body = patch(sim, f"/service/tickets/{ticket}", [{"op": "replace", "path": "status", "value": {"id": closed}}])
    body = body.json()
    assert (body["status"]["name"], body["closedFlag"], body["closedBy"], body["closedDate"]) == (
        "Resolved", True, sim.api_member, "2025-06-01T00:00:00Z")
    assert body["_info"]["updatedBy"] == sim.api_member
    body = patch(sim, f"/service/tickets/{ticket}", [{"op": "replace", "path": "status", "value": {"name": "new"}}])
    body = body.json()
    assert (body["status"]["name"], body["closedFlag"], "closedBy" in body, "closedDate" in body) == (
        "New", False, False, False)


def test_a_ticket_patch_refuses_another_boards_status_and_read_only_fields(sim):
    ticket = sim.add_ticket("Disk", sim.ids("companies")[0], "Alerts")
    other = sim.board_status(1, "Closed")["id"]
    response = patch(sim, f"/service/tickets/{ticket}", [
        {"op": "replace", "path": "status", "value": {"id": other}},
        {"op": "replace", "path": "closedFlag", "value": True}])
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["status", "closedFlag"]
    assert sim.record("tickets", ticket)["closedFlag"] is False
    assert patch(sim, "/service/tickets/1", []).status_code == 404


def test_a_technician_working_or_moving_a_ticket_shows_on_it(sim):
    ticket = sim.add_ticket("Disk", sim.ids("companies")[0], "Alerts")
    sim.now = DEFAULT_NOW + 60
    entry = sim.technician_works_on(ticket, hours=0.75, member="lchen")
    sim.technician_sets_status(ticket, "Waiting", member="lchen")
    record = sim.record("tickets", ticket)
    assert (record["actualHours"], record["status"]["name"], record["_info"]["updatedBy"]) == (0.75, "Waiting", "lchen")
    assert record["_info"]["lastUpdated"] == "2025-06-01T00:01:00Z"
    assert sim.record("time_entries", entry)["chargeToId"] == ticket
    with pytest.raises(ValueError, match="status"):
        sim.technician_sets_status(ticket, "Nope")


def test_time_entries_charged_to_tickets_are_counted_and_listed_with_fields(sim):
    company = sim.ids("companies")[0]
    a, b = sim.add_ticket("A", company), sim.add_ticket("B", company)
    sim.add_time_entry(company, 1.0, charge_id=a)
    sim.add_time_entry(company, 1.0, charge_id=a, charge_type="ProjectTicket")
    moved = sim.add_time_entry(company, 1.0, charge_id=9)
    sim.time_entries.set(moved, chargeToId=b)            # an entry moved to ticket b in ConnectWise
    count = get(sim, "/time/entries/count", conditions=f'chargeToType = "ServiceTicket" and chargeToId = {a}')
    assert count.json() == {"count": 1}
    listed = get(sim, "/time/entries", fields="id,chargeToId,member/identifier",
                 conditions=f'chargeToType = "ServiceTicket" and chargeToId in ({a}, {b})').json()
    assert [(e["chargeToId"], sorted(e)) for e in listed] == [(a, ["chargeToId", "id", "member"]),
                                                              (b, ["chargeToId", "id", "member"])]
    assert listed[0]["member"] == {"identifier": "jsmith"}


def test_like_matches_a_prefix_of_the_external_ref(sim):
    company = sim.ids("companies")[0]
    mine = sim.add_ticket("A", company, external_ref="msp-hub:ticket:1")
    sim.add_ticket("B", company, external_ref="x-msp-hub:ticket:2")
    sim.add_ticket("C", company)
    found = get(sim, "/service/tickets", conditions='externalXRef like "msp-hub:%"').json()
    assert [t["id"] for t in found] == [mine]


def test_generated_tickets_mix_hub_made_worked_and_closed_ones():
    sim = ConnectWiseSimulator(seed=0, tickets=12)
    tickets = [sim.record("tickets", i) for i in sim.ids("tickets")]
    hub = [t for t in tickets if (t.get("externalXRef") or "").startswith("msp-hub:")]
    assert len(hub) == 6 and all(t["_info"]["enteredBy"] == sim.api_member for t in hub)
    assert any(t["closedFlag"] for t in hub) and any(t.get("actualHours") for t in hub)
    assert any(t["status"]["name"] == "In Progress" for t in hub)


# --- its clock and its paging faults ---------------------------------------------------------------

def test_every_answer_carries_a_date_header_on_the_simulator_clock(sim):
    assert parsedate_to_datetime(get(sim, "/time/entries").headers["Date"]).timestamp() == DEFAULT_NOW
    assert parsedate_to_datetime(get(sim, "/nowhere").headers["Date"]).timestamp() == DEFAULT_NOW
    sim.fail_next(503)
    assert parsedate_to_datetime(get(sim, "/time/entries").headers["Date"]).timestamp() == DEFAULT_NOW


@pytest.mark.parametrize("offset", [3600, -3600])
def test_a_clock_offset_moves_now_the_date_header_and_last_updated(offset):
    sim = ConnectWiseSimulator(seed=5, companies=1, agreements=0, time_entries=0, products=0, clock_offset=offset)
    assert abs(sim.now - (time.time() + offset)) < 5
    served = parsedate_to_datetime(get(sim, "/company/companies").headers["Date"]).timestamp()
    assert abs(served - (time.time() + offset)) < 5
    company = sim.ids("companies")[0]
    sim.touch("companies", [company])
    stamp = sim.record("companies", company)["_info"]["lastUpdated"]
    assert abs(epoch(stamp) - (time.time() + offset)) < 5
    sim.now = DEFAULT_NOW          # setting now stops the clock again
    assert sim.now == DEFAULT_NOW and sim.clock_offset is None


def test_max_page_size_caps_pages_and_the_next_link_leads_on():
    sim = ConnectWiseSimulator(seed=5, companies=1, agreements=0, time_entries=30, products=0, max_page_size=7)
    first = get(sim, "/time/entries", forward=True, pageSize=1000)
    assert len(first.json()) == 7 and 'rel="next"' in first.headers["Link"]


def test_without_links_no_link_header_is_sent():
    sim = ConnectWiseSimulator(seed=5, companies=1, agreements=0, time_entries=30, products=0, links=False)
    assert "Link" not in get(sim, "/time/entries", forward=True, pageSize=10).headers


def test_a_short_page_leaves_its_tail_for_the_next_page(sim):
    sim.short_page_next("/time/entries", drop=4)
    ids = sim.ids("time_entries")
    first = get(sim, "/time/entries", forward=True, pageSize=30)   # the whole table fits: cut, it still says next
    assert [e["id"] for e in first.json()] == ids[:26] and 'rel="next"' in first.headers["Link"]
    rest = get(sim, "/time/entries", forward=True, pageSize=30, pageId=ids[25])
    assert [e["id"] for e in rest.json()] == ids[26:]


def test_lost_records_are_skipped_for_good_and_only_the_count_knows(sim):
    sim.lose_next("/time/entries", records=3)
    ids = sim.ids("time_entries")
    page = [e["id"] for e in get(sim, "/time/entries", forward=True, pageSize=10).json()]
    assert len(page) == 7 and page[0] == ids[0] and page[-1] == ids[9] and set(page) < set(ids[:10])
    assert get(sim, "/time/entries/count").json() == {"count": 30}


def test_a_null_field_is_served_as_null(sim):
    entry = sim.add_time_entry(sim.ids("companies")[0], 1.0, actualHours=NULL, timeEnd=None)
    record = sim.record("time_entries", entry)
    assert record["actualHours"] is None and "timeEnd" not in record
