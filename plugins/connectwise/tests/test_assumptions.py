"""What the ConnectWise specs leave open, checked on every page: forward-only paging (pageId with
the pagination-type header) is not supported on every endpoint. Against a simulator that pages as
assumed, and one that does not on the endpoint named. Also the simulator's drift from the spec:
companies' currency (currencyCode) and fields without a value (left out, not null)."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest
import structlog

from hub import MappingError
from hub.config import Secret, config_from_dict
from hub.engine import RunReport, pull
from hub.errors import IncompleteError
from hub.http import retry_policy
from hub.testing import ConnectorPlugin, make_hub, mock_client
from plugins.connectwise import plugin
from plugins.connectwise.client import ConnectWiseClient
from plugins.connectwise.plugin import (
    ConnectWiseConnector,
    ConnectWiseSettings,
    company_currency,
    to_addition,
    to_agreement,
    to_client,
    to_product_line,
    to_ticket,
    to_time_entry,
)
from plugins.connectwise.simulator import ConnectWiseSimulator

UTC = timezone.utc
RUN_START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SITE = "https://api-eu.myconnectwise.net"
NUMBERED_LOG = "connectwise.forward_only_not_supported"
# Every endpoint the streams page, and the store table (and simulator kind) it fills.
ENDPOINTS = {
    "/company/companies": ("clients", "companies"),
    "/finance/agreements": ("agreements", "agreements"),
    "/finance/agreements/{id}/additions": ("additions", "additions"),
    "/time/entries": ("time_entries", "time_entries"),
    "/procurement/products": ("products", "products"),
    "/service/tickets": ("tickets", "tickets"),
}


def simulator(**kwargs) -> ConnectWiseSimulator:
    return ConnectWiseSimulator(seed=3, companies=14, agreements=11, time_entries=37, products=13, tickets=30,
                                **kwargs)


def connector_for(sim: ConnectWiseSimulator, page_size: int = 5) -> ConnectWiseConnector:
    config = config_from_dict({"connectors": {"connectwise": {
        "site": SITE, "company_id": sim.company_id, "public_key": sim.public_key,
        "private_key_env": "CW_PRIVATE_KEY", "client_id": sim.client_id, "page_size": page_size}}},
        environ={"CW_PRIVATE_KEY": sim.private_key})
    return ConnectWiseConnector(ConnectWiseSettings.from_config(config), http=mock_client(sim.handler),
                                retrying=lambda: retry_policy(sleep=lambda s: None))


def expected_ids(sim: ConnectWiseSimulator, kind: str) -> list[int]:
    ids = sim.ids(kind)
    if kind == "tickets":   # the tickets stream reads the hub's own tickets
        ids = [i for i in ids if (sim.record("tickets", i).get("externalXRef") or "").startswith("msp-hub:")]
    return ids


def pull_all(hub, name: str = "r") -> RunReport:
    report = RunReport(name, "sync", RUN_START)
    pull(hub, report, streams=[table for table, _ in ENDPOINTS.values()])
    return report


def asked(sim: ConnectWiseSimulator, endpoint: str) -> list[dict]:
    prefix, _, suffix = endpoint.partition("{id}")
    return [q for _, p, q in sim.log if (p == endpoint if not suffix else
                                          p.startswith(prefix) and p.endswith(suffix))]


# --- forward-only paging ---------------------------------------------------------------------------

def test_when_every_endpoint_pages_forward_only_nothing_falls_back():
    sim = simulator()
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    with structlog.testing.capture_logs() as logs:
        report = pull_all(hub)
    assert not report.errors
    for endpoint, (table, kind) in ENDPOINTS.items():
        assert sorted(int(r["source_id"]) for r in hub.store.rows(table)) == expected_ids(sim, kind), endpoint
        assert not any("page" in q for q in asked(sim, endpoint)), endpoint
    assert any("pageId" in q for q in asked(sim, "/time/entries"))
    assert not [e for e in logs if e["event"] == NUMBERED_LOG]
    hub.close()


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_an_endpoint_without_forward_only_paging_is_read_by_number_and_the_others_are_not(endpoint):
    # Unsupported there: the header and pageId are ignored, page 1 repeats, and no Link comes back.
    sim = simulator(without_forward_only={endpoint}, without_links={endpoint})
    connector = connector_for(sim)
    hub = make_hub(ConnectorPlugin(connector))
    with structlog.testing.capture_logs() as logs:
        report = pull_all(hub)
    assert not report.errors
    for other, (table, kind) in ENDPOINTS.items():
        stored = [int(r["source_id"]) for r in hub.store.rows(table)]
        assert sorted(stored) == expected_ids(sim, kind), other   # every record, each once
        if other != endpoint:
            assert not any("page" in q for q in asked(sim, other)), other
    numbered = [q for q in asked(sim, endpoint) if "page" in q]
    assert numbered and all("pageId" not in q for q in numbered)
    [said] = [e for e in logs if e["event"] == NUMBERED_LOG]      # once, even for one path per agreement
    assert said["path"] == endpoint and said["log_level"] == "warning"
    assert "forward-only" in said["assumption"] and "numbered pages" in said["fallback"]
    assert connector.client.numbered_paths == {endpoint}
    hub.close()


def test_a_page_that_mixes_read_and_new_ids_is_not_trusted_and_the_read_goes_on_by_number():
    """An endpoint whose pageId overlaps (ids from pageId - 2 on): no record may come twice."""
    sim = simulator()
    ids = sim.ids("time_entries")
    answer = sim.handler

    def overlapping(request: httpx.Request) -> httpx.Response:
        page_id = request.url.params.get("pageId")
        if page_id and request.url.path.endswith("/time/entries"):
            back = ids[max(0, ids.index(int(page_id)) - 2)]
            request = httpx.Request("GET", request.url.copy_set_param("pageId", back), headers=request.headers)
        return answer(request)

    client = ConnectWiseClient(SITE, sim.company_id, sim.public_key, Secret(sim.private_key, "test"), sim.client_id,
                               http=mock_client(overlapping), page_size=10)
    got = [e["id"] for page in client.iter_time_entries() for e in page]
    assert got == ids                                   # each once, in order
    assert [q.get("page") for q in asked(sim, "/time/entries")] == [None, None, "1", "2", "3", "4", "5"]
    assert client.numbered_paths == {"/time/entries"}


def test_numbered_pages_that_repeat_fail_the_pass_naming_the_endpoint_and_keep_the_cursor_at_what_was_read():
    sim = simulator(without_forward_only={"/time/entries"})
    answer = sim.handler

    def page_ignored(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/time/entries") and "page" in request.url.params:
            request = httpx.Request("GET", request.url.copy_remove_param("page"), headers=request.headers)
        return answer(request)

    connector = ConnectWiseConnector(connector_for(sim).settings, http=mock_client(page_ignored),
                                     retrying=lambda: retry_policy(sleep=lambda s: None))
    hub = make_hub(ConnectorPlugin(connector))
    report = RunReport("r", "sync", RUN_START)
    pull(hub, report, streams=["time_entries"])
    [error] = report.errors
    assert "connectwise GET /time/entries: assumption broken: numbered pages" in error
    assert "page=2 holds only ids read already" in error and "the pass fails" in error
    assert report.passes["connectwise.time_entries"]["status"] == "failed"
    first_page = sim.ids("time_entries")[:5]
    assert sorted(int(r["source_id"]) for r in hub.store.rows("time_entries")) == first_page
    assert hub.store.get_cursor("connectwise", "time_entries")["after_id"] == first_page[-1]
    hub.close()


def test_a_missing_link_header_alone_is_no_proof_the_next_page_is():
    """Forward-only honoured but no Link header: the read goes on by pageId, each page checked."""
    sim = simulator(without_links={"/time/entries"})
    client = ConnectWiseClient(SITE, sim.company_id, sim.public_key, Secret(sim.private_key, "test"), sim.client_id,
                               http=mock_client(sim.handler), page_size=10)
    with structlog.testing.capture_logs() as logs:
        got = [e["id"] for page in client.iter_time_entries() for e in page]
    assert got == sim.ids("time_entries")
    pages = -(-len(got) // 10)
    assert [q.get("pageId") is not None for q in asked(sim, "/time/entries")] == [False] + [True] * pages
    assert not [e for e in logs if e["event"] == NUMBERED_LOG] and not client.numbered_paths


# --- the simulator's drift: currency ---------------------------------------------------------------

def test_companies_carry_the_spec_currency_code_and_a_company_in_another_currency_is_set_aside():
    sim = simulator()
    usd = sim.add_company("Yankee Freight", currency="USD")
    assert sim.record("companies", usd)["currency"]["currencyCode"] == "USD"
    assert all("isoCode" not in sim.record("companies", i)["currency"] for i in sim.ids("companies"))
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    report = RunReport("r", "sync", RUN_START)
    pull(hub, report, streams=["clients"])
    assert sorted(int(r["source_id"]) for r in hub.store.rows("clients")) == [i for i in sim.ids("companies")
                                                                           if i != usd]
    [error] = report.errors
    assert f"record {usd} set aside: connectwise company {usd} (Yankee Freight) is in USD in ConnectWise" in error
    assert "[connectors.connectwise] currency is EUR" in error and 'set currency = "USD"' in error
    hub.close()


def test_the_currency_is_read_from_currencycode_and_from_isocode_said_once():
    plugin._SAID.clear()
    assert company_currency({"id": 1, "currency": {"id": 7, "currencyCode": "eur"}}) == "EUR"
    assert company_currency({"id": 1}) is None and company_currency({"id": 1, "currency": None}) is None
    assert company_currency({"id": 1, "currency": {"id": 7, "currencyCode": None}}) is None
    with structlog.testing.capture_logs() as logs:
        assert company_currency({"id": 1, "currency": {"id": 7, "isoCode": "USD"}}) == "USD"
        assert company_currency({"id": 2, "currency": {"id": 7, "isoCode": "EUR"}}) == "EUR"
    assert [e["event"] for e in logs] == ["connectwise.currency_iso_code"]
    with pytest.raises(MappingError, match=r"company 2 \(B\) is in USD .* currency is EUR"):
        to_client({"id": 2, "name": "B", "currency": {"isoCode": "USD"}}, "EUR")
    assert to_client({"id": 2, "name": "B", "currency": {"currencyCode": "EUR"}}, "EUR").name == "B"
    assert to_client({"id": 2, "name": "B", "currency": {"currencyCode": "USD"}}).name == "B"   # no check asked


# --- the simulator's drift: nulls -------------------------------------------------------------------

def test_the_simulator_leaves_out_fields_without_a_value_unless_asked_for_nulls():
    for nulls in (False, True):
        sim = simulator(nulls=nulls)
        agreement = sim.record("agreements", sim.ids("agreements")[0])
        entries = [sim.record("time_entries", i) for i in sim.ids("time_entries")]
        if nulls:
            assert "endDate" in agreement and any(e.get("invoice", 0) is None for e in entries)
        else:
            assert all(v is not None for v in agreement.values())
            assert all(v is not None for e in entries for v in e.values())
            assert any("invoice" not in e for e in entries) and any("ticket" not in e for e in entries)


def test_every_stream_maps_the_same_records_whether_fields_are_left_out_or_null():
    stored = {}
    for nulls in (False, True):
        sim = simulator(nulls=nulls)
        hub = make_hub(ConnectorPlugin(connector_for(sim)))
        assert not pull_all(hub).errors
        stored[nulls] = {table: [{k: v for k, v in r.items() if k not in ("pulled_at", "updated_at_hub")}
                                 for r in hub.store.rows(table)] for table, _ in ENDPOINTS.values()}
        hub.close()
    assert stored[False] == stored[True]
    assert all(stored[False][table] for table in stored[False])


def test_each_mapping_takes_an_optional_field_left_out_or_null_alike():
    sim = simulator()
    agreement_raw = sim.record("agreements", sim.ids("agreements")[0])
    agreement = to_agreement(agreement_raw)
    for nulls in (False, True):
        def drop(record: dict, *keys: str) -> dict:
            kept = {k: v for k, v in record.items() if k not in keys}
            return {**kept, **{k: None for k in keys}} if nulls else kept

        assert to_client(drop(sim.record("companies", sim.ids("companies")[0]), "currency", "_info"), "EUR")
        assert to_agreement(drop(agreement_raw, "endDate", "applicationUnits", "applicationLimit",
                                 "billingCycle", "_info")).end_date is None
        addition = sim.record("additions", sim.ids("additions")[0])
        assert to_addition(drop(addition, "unitPrice", "description", "cancelledDate", "_info"), agreement).unit_price == 0
        entry = sim.record("time_entries", sim.ids("time_entries")[0])
        mapped = to_time_entry(drop(entry, "ticket", "invoice", "agreement", "hourlyRate", "notes", "_info"))
        assert mapped.source_id == str(entry["id"])
        product = sim.record("products", sim.ids("products")[0])
        assert to_product_line(drop(product, "price", "ticket", "_info")).unit_price == 0
        ticket = sim.record("tickets", sim.ids("tickets")[0])
        assert to_ticket(drop(ticket, "closedDate", "closedBy", "externalXRef"), False).source_id == str(ticket["id"])
