"""ConnectWiseClient against the simulator: auth, paging, conditions, retries, error mapping, writes."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import respx

from hub import (
    Action,
    CredentialsError,
    MalformedResponseError,
    RetryableError,
    VendorError,
)
from hub.config import Secret
from hub.errors import IncompleteError
from hub.http import retry_policy
from hub.testing import MemoryPushContext as Context
from hub.testing import mock_client, serve
from plugins.connectwise.client import ConnectWiseClient, quote, server_time
from plugins.connectwise.plugin import ConnectWiseConnector, ConnectWiseSettings
from plugins.connectwise.simulator import DEFAULT_NOW, ConnectWiseSimulator

UTC = timezone.utc
SITE = "https://api-eu.myconnectwise.net"
ROOT = SITE + "/v4_6_release/apis/3.0"
PRIVATE = "sim-private-key"


def make_client(sim: ConnectWiseSimulator, *, sleeps: list | None = None, private_key: str = PRIVATE,
                **kwargs) -> ConnectWiseClient:
    sleep = sleeps.append if sleeps is not None else (lambda s: None)
    return ConnectWiseClient(SITE, kwargs.pop("company_id", sim.company_id), kwargs.pop("public_key", sim.public_key),
                             Secret(private_key, "test"), kwargs.pop("client_id", sim.client_id),
                             http=mock_client(sim.handler), retrying=lambda: retry_policy(sleep=sleep), **kwargs)


def queries(sim: ConnectWiseSimulator, path: str) -> list[dict]:
    return [q for _, p, q in sim.log if p == path]


@pytest.fixture
def sim() -> ConnectWiseSimulator:
    return ConnectWiseSimulator(seed=1, companies=3, agreements=4, time_entries=45, products=5)


# --- requests ----------------------------------------------------------------------------------

def test_requests_carry_basic_auth_client_id_and_the_pinned_version():
    with respx.mock(base_url=ROOT) as router:
        route = router.get("/company/companies").respond(200, json=[])
        client = ConnectWiseClient(SITE + "/", "msphub", "pub", Secret("priv", "test"),
                                   "3f5e8b0c-4f8e-4c1a-9d3e-6a1b2c3d4e5f")
        assert list(client.iter_companies()) == []
    sent = route.calls.last.request
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(b"msphub+pub:priv").decode()
    assert sent.headers["clientId"] == "3f5e8b0c-4f8e-4c1a-9d3e-6a1b2c3d4e5f"
    assert sent.headers["Accept"] == "application/vnd.connectwise.com+json; version=2022.1"
    assert sent.headers["pagination-type"] == "forward-only"
    assert dict(sent.url.params) == {"pageSize": "1000"}


def test_a_pinned_codebase_and_version_are_used():
    with respx.mock(base_url=SITE + "/v2024_1/apis/3.0") as router:
        route = router.get("/time/entries").respond(200, json=[])
        client = ConnectWiseClient(SITE, "msphub", "pub", Secret("priv", "test"), "id", codebase="v2024_1/",
                                   api_version="2024.1", page_size=250)
        list(client.iter_time_entries())
    sent = route.calls.last.request
    assert sent.headers["Accept"].endswith("version=2024.1") and sent.url.params["pageSize"] == "250"


def test_since_becomes_a_bracketed_utc_condition_url_encoded():
    with respx.mock(base_url=ROOT) as router:
        route = router.get("/time/entries").respond(200, json=[])
        client = ConnectWiseClient(SITE, "msphub", "pub", Secret("priv", "test"), "id")
        paris = timezone(timedelta(hours=2))
        list(client.iter_time_entries(since=datetime(2025, 1, 2, 5, 4, 5, 999_000, tzinfo=paris)))
    sent = route.calls.last.request
    assert sent.url.params["conditions"] == "lastUpdated > [2025-01-02T03:04:05Z]"
    assert b"conditions=lastUpdated%20%3E%20%5B2025-01-02T03%3A04%3A05Z%5D" in sent.url.raw_path


def test_a_naive_since_is_refused(sim):
    with pytest.raises(ValueError, match="aware"):
        list(make_client(sim).iter_companies(since=datetime(2025, 1, 1)))


@pytest.mark.parametrize("value, literal", [
    ("ninja:abc", '"ninja:abc"'),
    ('say "hi"', r'"say \"hi\""'),
    ("back\\slash", r'"back\\slash"'),
])
def test_strings_in_conditions_are_double_quoted_and_escaped(value, literal):
    assert quote(value) == literal


def test_find_tickets_sends_an_exact_external_ref_condition():
    with respx.mock(base_url=ROOT) as router:
        route = router.get("/service/tickets")
        route.side_effect = [httpx.Response(200, json=[{"id": 7, "externalXRef": 'a"b'}]), httpx.Response(200, json=[])]
        client = ConnectWiseClient(SITE, "msphub", "pub", Secret("priv", "test"), "id")
        assert client.find_tickets('a"b') == [{"id": 7, "externalXRef": 'a"b'}]
    assert route.calls[0].request.url.params["conditions"] == r'externalXRef = "a\"b"'
    assert route.calls.last.request.url.params["pageId"] == "7"  # no Link header: only an empty page ends


def test_find_tickets_matches_quotes_in_the_simulator(sim):
    company = sim.ids("companies")[0]
    wanted = sim.add_ticket("Disk full", company, external_ref='ninja:"42"')
    sim.add_ticket("Other", company, external_ref="ninja:43")
    assert [t["id"] for t in make_client(sim).find_tickets('ninja:"42"')] == [wanted]


# --- paging ------------------------------------------------------------------------------------

def test_iter_time_entries_follows_page_id(sim):
    client = make_client(sim, page_size=10)
    pages = list(client.iter_time_entries())
    ids = sim.ids("time_entries")
    assert [len(p) for p in pages] == [10, 10, 10, 10, 5]
    assert [e["id"] for p in pages for e in p] == ids
    assert queries(sim, "/time/entries") == [{"pageSize": "10"}] + [
        {"pageSize": "10", "pageId": str(p[-1]["id"])} for p in pages[:-1]]


def test_no_request_after_a_full_last_page_when_links_say_so():
    sim = ConnectWiseSimulator(seed=2, companies=1, agreements=0, time_entries=30, products=0)
    client = make_client(sim, page_size=10)
    assert [len(p) for p in client.iter_time_entries()] == [10, 10, 10]
    assert sim.requests_by_path["/time/entries"] == 3


def test_without_link_headers_paging_reads_on_past_a_short_page_to_an_empty_one():
    seen = []

    def no_links(request: httpx.Request) -> httpx.Response:
        after = int(request.url.params.get("pageId", 0))
        seen.append(after)
        return httpx.Response(200, json=[{"id": i} for i in range(after + 1, min(after + 10, 25) + 1)])

    client = ConnectWiseClient(SITE, "c", "p", Secret("k", "test"), "id", http=mock_client(no_links), page_size=10)
    assert [len(p) for p in client.iter_pages("/time/entries")] == [10, 10, 5]
    assert seen == [0, 10, 20, 25]


@pytest.mark.parametrize("shape", [{"max_page_size": 7}, {"max_page_size": 7, "links": False}, {"links": False}])
def test_every_record_is_read_from_a_server_that_caps_pages_with_or_without_links(shape):
    sim = ConnectWiseSimulator(seed=2, companies=2, agreements=0, time_entries=45, products=0, **shape)
    pages = list(make_client(sim, page_size=10).iter_time_entries())
    assert [e["id"] for p in pages for e in p] == sim.ids("time_entries")
    # With links the last page says it is the last; without, an empty page does.
    assert sim.requests_by_path["/time/entries"] == len(pages) + (0 if shape.get("links", True) else 1)


@pytest.mark.parametrize("links", [True, False])
def test_a_page_cut_short_does_not_end_the_read(links):
    sim = ConnectWiseSimulator(seed=2, companies=2, agreements=0, time_entries=45, products=0, links=links)
    sim.short_page_next("/time/entries", drop=3, times=2)
    pages = list(make_client(sim, page_size=10).iter_time_entries())
    assert [len(p) for p in pages][:2] == [7, 7]
    assert [e["id"] for p in pages for e in p] == sim.ids("time_entries")


@pytest.mark.parametrize("cap", [None, 7])
def test_an_endpoint_without_forward_only_paging_is_read_by_page_number(cap):
    sim = ConnectWiseSimulator(seed=2, companies=2, agreements=0, time_entries=45, products=0, forward_only=False,
                               max_page_size=cap)
    pages = list(make_client(sim, page_size=10).iter_time_entries())
    assert [e["id"] for p in pages for e in p] == sim.ids("time_entries")
    asked = queries(sim, "/time/entries")
    assert [q.get("page") for q in asked] == [None] + [str(n) for n in range(2, len(pages) + 1)]
    assert len(asked) == len(pages)   # the last page has no next link: the end
    assert all("pageId" not in q for q in asked)


def test_a_resumed_read_of_an_endpoint_without_forward_only_paging_reads_it_all_again():
    sim = ConnectWiseSimulator(seed=2, companies=2, agreements=0, time_entries=25, products=0, forward_only=False)
    ids = sim.ids("time_entries")
    got = [e["id"] for p in make_client(sim, page_size=10).iter_time_entries(after_id=ids[12]) for e in p]
    # Page numbers cannot start after an id: the first page (before the resume point) is passed
    # over, and the read goes on by number with nothing after the resume point skipped.
    assert got == ids[10:]


def test_iter_time_entries_resumes_after_an_id(sim):
    after = sim.ids("time_entries")[17]
    ids = [e["id"] for p in make_client(sim, page_size=10).iter_time_entries(after_id=after) for e in p]
    assert ids == sim.ids("time_entries")[18:]


def test_iter_time_entries_since_returns_the_changed_ones_in_id_order(sim):
    ids = sim.ids("time_entries")
    sim.now = DEFAULT_NOW + 3600
    sim.touch("time_entries", [ids[30], ids[3], ids[12]])
    since = datetime.fromtimestamp(DEFAULT_NOW + 60, UTC)
    got = [e["id"] for p in make_client(sim).iter_time_entries(since=since) for e in p]
    assert got == [ids[3], ids[12], ids[30]]


def test_a_repeated_page_id_raises_instead_of_looping():
    def ignores_page_id(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"id": i} for i in range(1, 11)])

    client = ConnectWiseClient(SITE, "c", "p", Secret("k", "test"), "id", http=mock_client(ignores_page_id),
                               page_size=10)
    with pytest.raises(IncompleteError, match="page=2 holds only ids read already"):
        list(client.iter_companies())
    assert client.requests == 3   # the first page; pageId ignored; page 2 the same as page 1


def test_without_the_forward_only_header_page_id_is_ignored(sim):
    # What the header is for: without it ConnectWise pages by number and ignores pageId.
    base = make_client(sim)
    response = base._http.get(ROOT + "/time/entries", params={"pageSize": 10, "pageId": sim.ids("time_entries")[9]},
                              headers=base._headers)
    assert [e["id"] for e in response.json()] == sim.ids("time_entries")[:10]


def test_iter_additions_reads_one_agreement(sim):
    agreement = sim.ids("agreements")[0]
    extra = sim.add_addition(agreement, "AV-SEAT", quantity=5)
    additions = [a for p in make_client(sim).iter_additions(agreement) for a in p]
    assert extra in [a["id"] for a in additions]
    assert {a["agreementId"] for a in additions} == {agreement}


def test_works_over_real_http(sim):
    with serve(sim.handler) as url:
        with ConnectWiseClient(url, sim.company_id, sim.public_key, Secret(PRIVATE, "test"), sim.client_id,
                               page_size=10) as client:
            assert sum(len(p) for p in client.iter_time_entries()) == 45
            assert client.requests == 5  # the last page carries no next link: the end


# --- retries -----------------------------------------------------------------------------------

def test_a_429_honours_retry_after(sim):
    sim.fail_next(429, times=2, retry_after=7, path="/time/entries")
    sleeps: list[float] = []
    assert sum(len(p) for p in make_client(sim, sleeps=sleeps).iter_time_entries()) == 45
    assert sleeps == [7.0, 7.0]


def test_a_429_with_retry_after_zero_is_survived_with_the_real_policy(sim):
    sim.fail_next(429, times=2, retry_after=0)
    client = ConnectWiseClient(SITE, sim.company_id, sim.public_key, Secret(PRIVATE, "test"), sim.client_id,
                               http=mock_client(sim.handler))
    assert sum(len(p) for p in client.iter_time_entries()) == 45
    assert client.requests == 4  # 2 refused, the page, the empty page that ends a read without links


def test_a_429_without_retry_after_waits_five_seconds(sim):
    sim.fail_next(429, path="/company/companies")
    sleeps: list[float] = []
    list(make_client(sim, sleeps=sleeps).iter_companies())
    assert sleeps == [5.0]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_is_retried(sim, status):
    sim.fail_next(status, times=2, path="/time/entries")
    assert sum(len(p) for p in make_client(sim).iter_time_entries()) == 45
    assert sim.requests_by_path["/time/entries"] == 4  # 2 refused, the page, the empty end


def test_a_500_mentioning_a_timeout_is_retried(sim):
    sim.fail_next(500, path="/time/entries", body={"code": "InternalServerError",
                                                    "message": "Execution Timeout Expired. The timeout period elapsed"})
    assert sum(len(p) for p in make_client(sim).iter_time_entries()) == 45


def test_a_timeout_is_retried(sim):
    sim.timeout_next(path="/time/entries")
    assert sum(len(p) for p in make_client(sim).iter_time_entries()) == 45
    assert sim.requests_by_path["/time/entries"] == 3  # 1 timed out, the page, the empty end


def test_garbage_json_is_retried(sim):
    sim.garbage_next(path="/time/entries")
    assert sum(len(p) for p in make_client(sim).iter_time_entries()) == 45


def test_garbage_json_every_time_is_a_malformed_response_error(sim):
    sim.garbage_next(times=10, path="/time/entries")
    with pytest.raises(MalformedResponseError, match="expected a JSON array"):
        list(make_client(sim).iter_time_entries())
    assert sim.requests_by_path["/time/entries"] == 5  # the policy's attempts


def test_the_request_counter_includes_retries(sim):
    sim.fail_next(503, times=3, path="/company/companies")
    client = make_client(sim)
    list(client.iter_companies())
    assert client.requests == sim.requests == 5  # 3 refused, the page, the empty end


# --- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("change", [{"company_id": "nobody"}, {"public_key": "wrong"}, {"private_key": "wrong-key"},
                                    {"codebase": "v1999_9"}])
def test_the_clouds_404_is_a_credentials_error_naming_company_keys_and_codebase(sim, change):
    client = make_client(sim, **change)
    with pytest.raises(CredentialsError) as info:
        list(client.iter_companies())
    message = str(info.value)
    assert info.value.status == 404 and "Cannot route" in message
    assert "company id" in message and "keys" in message and "codebase" in message
    assert PRIVATE not in message and "wrong-key" not in message
    assert "Authorization" not in message and base64.b64encode(b"msphub").decode() not in message
    assert sim.requests == 1  # not retried


def test_a_404_html_page_is_a_credentials_error():
    def html(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="<!DOCTYPE html><html><body>The resource cannot be found.</body></html>",
                              headers={"Content-Type": "text/html"})

    client = ConnectWiseClient(SITE, "c", "p", Secret("k-secret", "test"), "id", http=mock_client(html))
    with pytest.raises(CredentialsError, match="HTML page"):
        list(client.iter_companies())


def test_bad_keys_on_premise_are_a_401_credentials_error():
    sim = ConnectWiseSimulator(seed=1, cloud=False)
    with pytest.raises(CredentialsError) as info:
        list(make_client(sim, private_key="nope-nope").iter_companies())
    assert info.value.status == 401 and "Invalid public or private key" in str(info.value)
    assert "nope-nope" not in str(info.value)


def test_a_missing_client_id_is_a_credentials_error_naming_the_fix(sim):
    client = make_client(sim, client_id="")
    with pytest.raises(CredentialsError) as info:
        list(client.iter_companies())
    assert info.value.status == 401 and "developer.connectwise.com" in str(info.value)


def test_a_403_names_the_security_role(sim):
    sim.fail_next(403, path="/time/entries", body={"code": "Forbidden", "message": "Access denied"})
    with pytest.raises(CredentialsError, match="security role"):
        list(make_client(sim).iter_time_entries())


def test_a_json_404_is_a_vendor_error_not_a_credentials_error(sim):
    with pytest.raises(VendorError) as info:
        make_client(sim).get_ticket(123456)
    assert type(info.value) is VendorError and info.value.status == 404
    assert "NotFound" in str(info.value) and "123456" in str(info.value)


def test_a_400_names_the_fields_from_the_error_body(sim):
    client = make_client(sim)
    with pytest.raises(VendorError) as info:
        client.create_ticket({"summary": "x" * 101, "board": {"name": "Help Desk"}})
    message = str(info.value)
    assert info.value.status == 400 and not isinstance(info.value, RetryableError)
    assert "InvalidObject" in message and "summary: summary exceeds the maximum length of 100" in message
    assert "company: A valid company is required" in message
    assert sim.requests == 1


def test_a_bad_condition_is_a_400_naming_conditions(sim):
    with pytest.raises(VendorError, match="conditions"):
        list(make_client(sim).iter_pages("/company/companies", 'name = "unterminated'))


# --- writes ------------------------------------------------------------------------------------

def test_patch_addition_sends_a_json_patch_array():
    with respx.mock(base_url=ROOT) as router:
        route = router.patch("/finance/agreements/12/additions/34").respond(200, json={"id": 34, "quantity": 42})
        client = ConnectWiseClient(SITE, "c", "p", Secret("k", "test"), "id")
        client.patch_addition(12, 34, [{"op": "replace", "path": "quantity", "value": 42}])
    sent = route.calls.last.request
    assert json.loads(sent.content) == [{"op": "replace", "path": "quantity", "value": 42}]
    assert sent.headers["Content-Type"] == "application/json"


def test_patch_addition_is_applied_by_the_simulator(sim):
    agreement = sim.ids("agreements")[0]
    addition = sim.add_addition(agreement, "MS-SRV", quantity=3)
    sim.now = DEFAULT_NOW + 7200
    result = make_client(sim).patch_addition(agreement, addition, [{"op": "replace", "path": "quantity", "value": 42}])
    stored = sim.record("additions", addition)
    assert result == stored and stored["quantity"] == 42 and stored["extPrice"] == 42 * 120.0
    assert stored["_info"]["lastUpdated"] == "2025-06-01T02:00:00Z"


def test_patch_addition_refuses_an_unknown_field(sim):
    agreement = sim.ids("agreements")[0]
    addition = sim.add_addition(agreement)
    with pytest.raises(VendorError, match="quantityy: quantityy is not a field of addition"):
        make_client(sim).patch_addition(agreement, addition, [{"op": "replace", "path": "quantityy", "value": 1}])


def test_patch_addition_is_retried_after_a_lost_answer(sim):
    agreement = sim.ids("agreements")[0]
    addition = sim.add_addition(agreement)
    sim.timeout_next(method="PATCH", after_apply=True)
    make_client(sim).patch_addition(agreement, addition, [{"op": "replace", "path": "quantity", "value": 9}])
    assert sim.record("additions", addition)["quantity"] == 9


def test_create_ticket_is_not_resent_after_an_unclear_failure(sim):
    sim.timeout_next(path="/service/tickets", method="POST", after_apply=True)
    company = sim.ids("companies")[0]
    with pytest.raises(RetryableError):
        make_client(sim).create_ticket({"summary": "Disk", "board": {"id": 1}, "company": {"id": company}})
    assert len(sim.ids("tickets")) == 1  # the ticket exists; its answer was lost
    assert [m for m, p, _ in sim.log if p == "/service/tickets"] == ["POST"]


def test_create_ticket_is_resent_after_a_429(sim):
    sim.fail_next(429, retry_after=0, path="/service/tickets", method="POST")
    company = sim.ids("companies")[0]
    ticket = make_client(sim).create_ticket({"summary": "Disk", "board": {"id": 1}, "company": {"id": company}})
    assert sim.ids("tickets") == [ticket["id"]]


def test_find_board_by_name(sim):
    client = make_client(sim)
    assert client.find_board("Alerts")["id"] == 2
    assert client.find_board("No such board") is None


# --- pushes: looking before creating -------------------------------------------------------------


def connector_for(sim: ConnectWiseSimulator, attempts: int = 5) -> ConnectWiseConnector:
    settings = ConnectWiseSettings(site=SITE, company_id=sim.company_id, public_key=sim.public_key,
                                   private_key=Secret(PRIVATE, "test"), client_id=sim.client_id)
    return ConnectWiseConnector(settings, http=mock_client(sim.handler),
                                retrying=lambda: retry_policy(attempts=attempts, sleep=lambda s: None))


def ticket_action(sim, ref="ninja:alert-1", **payload) -> Action:
    return Action(f"ticket:{ref}", "ticket", "connectwise", "acme", {
        "external_ref": ref, "summary": "Disk C: above 95 % on SRV-01", "company_id": str(sim.ids("companies")[0]),
        "board": "Alerts", "initial_description": "Free space is 2 GB.", **payload})


def test_a_ticket_created_but_whose_answer_was_lost_is_not_duplicated_on_rerun(sim):
    sim.timeout_next(path="/service/tickets", method="POST", after_apply=True)
    crashing = connector_for(sim, attempts=1)  # the run gives up: the push fails, the ticket exists
    with pytest.raises(RetryableError):
        crashing.push(ticket_action(sim), Context())
    assert len(sim.ids("tickets")) == 1
    result = connector_for(sim).push(ticket_action(sim), Context(attempts=1))
    assert sim.ids("tickets") == [int(result.vendor_id)]
    assert result.details["created"] is False and "found by externalXRef" in result.summary


def test_a_lost_answer_within_one_push_is_recovered_by_looking_again(sim):
    sim.timeout_next(path="/service/tickets", method="POST", after_apply=True)
    result = connector_for(sim).push(ticket_action(sim), Context())
    assert sim.ids("tickets") == [int(result.vendor_id)]
    # The second look finds the ticket on a page without a Link header, so one more GET sees the end.
    assert [m for m, p, _ in sim.log if p == "/service/tickets"] == ["GET", "POST", "GET", "GET"]


def test_a_ticket_push_twice_makes_one_ticket(sim):
    connector = connector_for(sim)
    first = connector.push(ticket_action(sim), Context())
    second = connector.push(ticket_action(sim), Context())
    assert first.vendor_id == second.vendor_id and len(sim.ids("tickets")) == 1
    ticket = sim.record("tickets", int(first.vendor_id))
    assert ticket["externalXRef"] == "ninja:alert-1" and ticket["board"]["name"] == "Alerts"
    assert sim.initial_description(ticket["id"]) == "Free space is 2 GB."


def test_a_note_is_added_once_with_the_marker(sim):
    connector = connector_for(sim)
    ticket = connector.push(ticket_action(sim), Context())
    note = Action("note:ninja:alert-1:reset", "ticket_note", "connectwise", "acme",
                  {"ticket_external_ref": "ninja:alert-1", "text": "The alert reset at 10:42.", "internal": True})
    first = connector.push(note, Context())
    second = connector.push(note, Context())
    assert first.vendor_id == second.vendor_id and second.details["created"] is False
    stored = sim.record("notes", int(first.vendor_id))
    assert stored["ticketId"] == int(ticket.vendor_id) and stored["internalAnalysisFlag"] is True
    assert stored["text"] == "The alert reset at 10:42.\n\n[msp-hub:note:ninja:alert-1:reset]"
    ours = [n for n in sim.ids("notes") if "[msp-hub:" in sim.record("notes", n)["text"]]
    assert ours == [int(first.vendor_id)]


def test_a_note_whose_answer_was_lost_is_not_duplicated(sim):
    company = sim.ids("companies")[0]
    ticket_id = sim.add_ticket("Printer jam", company)
    sim.timeout_next(method="POST", path=f"/service/tickets/{ticket_id}/notes", after_apply=True)
    note = Action("note:x", "ticket_note", "connectwise", "acme", {"ticket_id": str(ticket_id), "text": "Fixed."})
    result = connector_for(sim).push(note, Context())
    notes = [n for n in sim.ids("notes") if sim.record("notes", n)["ticketId"] == ticket_id]
    assert notes == [int(result.vendor_id)] and sim.record("notes", notes[0])["detailDescriptionFlag"] is True


def test_server_time_is_the_earliest_date_header_of_an_answer():
    one = httpx.Headers([("Date", "Sun, 01 Jun 2025 00:00:00 GMT")])
    two = httpx.Headers([("Date", "Sun, 06 Dec 2026 19:52:00 GMT"), ("Date", "Sun, 01 Jun 2025 00:00:00 GMT")])
    assert server_time(one) == server_time(two) == datetime(2025, 6, 1, tzinfo=UTC)
    assert server_time(httpx.Headers([("Date", "yesterday")])) is None
    assert server_time(httpx.Headers()) is None


def test_the_client_keeps_the_date_of_the_latest_answer(sim):
    client = make_client(sim)
    assert client.server_time is None
    list(client.iter_companies())
    assert client.server_time == datetime.fromtimestamp(DEFAULT_NOW, UTC)
    sim.now = DEFAULT_NOW + 90
    sim.fail_next(400, path="/company/companies")
    with pytest.raises(VendorError):
        list(client.iter_companies())
    assert client.server_time == datetime.fromtimestamp(DEFAULT_NOW + 90, UTC)   # error answers carry it too
