"""The ConnectWise simulator itself: numbered paging, the conditions grammar, its lastUpdated index."""

from __future__ import annotations

import base64

import httpx
import pytest

from plugins.connectwise.simulator import DEFAULT_NOW, ConnectWiseSimulator, matches, parse_conditions

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
