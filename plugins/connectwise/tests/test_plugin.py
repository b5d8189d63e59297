"""ConnectWise mapping, settings, incremental streams and pushes, on literal dicts and the simulator."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from hub import Action, Client, ConfigError, MappingError, VendorError
from hub.errors import IncompleteError
from hub.config import config_from_dict
from hub.engine import RunReport, pull
from hub.http import retry_policy
from hub.plugins import get_plugin_manager
from hub.records import Agreement, AgreementAddition, ProductLine, TimeEntry
from hub.testing import ConnectorPlugin, assert_plugin_conforms, make_hub, mock_client
from hub.testing import MemoryPushContext as Context
from plugins.connectwise import plugin
from plugins.connectwise.plugin import (
    ConnectWiseConnector,
    ConnectWiseSettings,
    _decimal_text,
    to_addition,
    to_agreement,
    to_client,
    to_product_line,
    to_time_entry,
)
from plugins.connectwise.simulator import DEFAULT_NOW, NULL, ConnectWiseSimulator

UTC = timezone.utc
RUN_START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SIM_NOW = datetime.fromtimestamp(DEFAULT_NOW, UTC).isoformat()   # the simulator's clock: its Date header
GUID = "3f5e8b0c-4f8e-4c1a-9d3e-6a1b2c3d4e5f"
ENV = {"CW_PRIVATE_KEY": "sim-private-key"}

TIME_ENTRY = {
    "id": 88123, "company": {"id": 250, "identifier": "AcmeDental", "name": "Acme Dental"},
    "chargeToId": 5012, "chargeToType": "ServiceTicket",
    "member": {"id": 101, "identifier": "jsmith", "name": "John Smith"},
    "workType": {"id": 1, "name": "Remote Support"}, "workRole": {"id": 2, "name": "Senior Engineer"},
    "agreement": {"id": 41, "name": "Acme Dental Block Hours", "type": "Block Hours"},
    "timeStart": "2025-05-12T08:30:00Z", "timeEnd": "2025-05-12T10:15:00Z", "hoursDeduct": 0.0,
    "actualHours": 1.75, "billableOption": "Billable", "notes": "Replaced the backup disk",
    "hourlyRate": 137.555, "status": "ApprovedByTierOne", "ticket": {"id": 5012, "summary": "Backup failed"},
    "_info": {"lastUpdated": "2025-05-12T10:20:31Z", "updatedBy": "jsmith"},
}
AGREEMENT = {
    "id": 41, "name": "Acme Dental Block Hours", "type": {"id": 3, "name": "Block Hours"},
    "company": {"id": 250, "identifier": "AcmeDental", "name": "Acme Dental"},
    "startDate": "2024-01-01T00:00:00Z", "endDate": "2025-12-31T00:00:00Z", "noEndingDateFlag": False,
    "applicationUnits": "Hours", "applicationLimit": 20.0, "billingCycle": {"id": 1, "name": "Monthly"},
    "agreementStatus": "Active", "_info": {"lastUpdated": "2025-04-01T09:00:00Z"},
}
ADDITION = {
    "id": 701, "product": {"id": 11, "identifier": "MS-WS"}, "quantity": 42.0, "lessIncluded": 0.0,
    "unitPrice": 35.5, "billCustomer": "Billable", "effectiveDate": "2024-01-01T00:00:00Z",
    "description": "Managed workstation", "agreementId": 41, "_info": {"lastUpdated": "2025-05-02T07:00:00Z"},
}
PRODUCT = {
    "id": 3001, "catalogItem": {"id": 15, "identifier": "SSD-1TB"}, "description": "1 TB SSD", "quantity": 2.0,
    "price": 109.99, "billableOption": "Billable", "ticket": {"id": 5012}, "company": {"id": 250},
    "purchaseDate": "2025-05-10T00:00:00Z", "_info": {"lastUpdated": "2025-05-10T12:00:00Z"},
}


# --- mapping -----------------------------------------------------------------------------------

def test_to_client_maps_a_company():
    raw = {"id": 250, "identifier": "AcmeDental", "name": "Acme Dental",
           "_info": {"lastUpdated": "2025-03-01T10:00:00Z"}}
    assert to_client(raw) == Client("connectwise", "250", "Acme Dental", datetime(2025, 3, 1, 10, tzinfo=UTC))


def test_to_client_without_an_id_is_a_mapping_error():
    with pytest.raises(MappingError, match="company without an id"):
        to_client({"name": "Nameless"})


def test_to_agreement_maps_a_block_of_hours():
    assert to_agreement(AGREEMENT) == Agreement(
        "connectwise", "41", "250", "Acme Dental Block Hours", "Block Hours", "active", "2024-01-01", "2025-12-31",
        "Monthly", "hours", "20", datetime(2025, 4, 1, 9, tzinfo=UTC))


@pytest.mark.parametrize("change, status", [
    ({"agreementStatus": "Cancelled"}, "cancelled"), ({"agreementStatus": None, "cancelledFlag": True}, "cancelled"),
    ({"agreementStatus": None}, "active"), ({"agreementStatus": "Expired"}, "expired"),
])
def test_to_agreement_status(change, status):
    assert to_agreement({**AGREEMENT, **change}).status == status


def test_to_agreement_open_ended_has_no_end_date():
    agreement = to_agreement({**AGREEMENT, "noEndingDateFlag": True, "applicationUnits": None,
                              "applicationLimit": None})
    assert (agreement.end_date, agreement.application_units, agreement.application_limit) == (None, None, None)


def test_to_agreement_without_a_company_names_the_agreement():
    with pytest.raises(MappingError, match=r"agreement 41 \(Acme Dental Block Hours\) has no company id"):
        to_agreement({**AGREEMENT, "company": None})


def test_to_agreement_refuses_an_unknown_status():
    with pytest.raises(MappingError, match="agreementStatus 'Paused'"):
        to_agreement({**AGREEMENT, "agreementStatus": "Paused"})


def test_to_addition_takes_the_client_from_the_agreement():
    assert to_addition(ADDITION, to_agreement(AGREEMENT)) == AgreementAddition(
        "connectwise", "701", "41", "250", "MS-WS", "Managed workstation", "42", 3550, "EUR", "billable",
        "2024-01-01", None, datetime(2025, 5, 2, 7, tzinfo=UTC))


def test_to_addition_in_another_currency_and_cancelled():
    addition = to_addition({**ADDITION, "unitPrice": 3500, "cancelledDate": "2025-05-31T00:00:00Z",
                            "billCustomer": "NoCharge"}, to_agreement(AGREEMENT), currency="JPY")
    assert (addition.unit_price, addition.currency, addition.cancelled_date, addition.bill_customer) == \
           (3500, "JPY", "2025-05-31", "no_charge")


def test_to_time_entry_maps_every_field():
    assert to_time_entry(TIME_ENTRY) == TimeEntry(
        source="connectwise", source_id="88123", client_source_id="250", member="jsmith",
        started_at=datetime(2025, 5, 12, 8, 30, tzinfo=UTC), ended_at=datetime(2025, 5, 12, 10, 15, tzinfo=UTC),
        hours="1.75", billable="billable", work_type="Remote Support", work_role="Senior Engineer",
        ticket_id="5012", agreement_source_id="41", hourly_rate=13756, invoiced=False,
        notes="Replaced the backup disk", updated_at=datetime(2025, 5, 12, 10, 20, 31, tzinfo=UTC))


def test_to_time_entry_timestamps_are_aware_utc():
    entry = to_time_entry({**TIME_ENTRY, "timeStart": "2025-05-12T10:30:00+02:00"})
    assert entry.started_at == datetime(2025, 5, 12, 8, 30, tzinfo=UTC) and entry.started_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("vendor, hub_value", [("Billable", "billable"), ("DoNotBill", "do_not_bill"),
                                               ("NoCharge", "no_charge"), ("NoDefault", "no_default"),
                                               (None, "no_default")])
def test_to_time_entry_billable_options(vendor, hub_value):
    assert to_time_entry({**TIME_ENTRY, "billableOption": vendor}).billable == hub_value


def test_to_time_entry_refuses_an_unknown_billable_option():
    with pytest.raises(MappingError, match="time entry 88123 has billable option 'Maybe'"):
        to_time_entry({**TIME_ENTRY, "billableOption": "Maybe"})


@pytest.mark.parametrize("charge_type, ticket", [("ServiceTicket", "5012"), ("ProjectTicket", "5012"),
                                                 ("ChargeCode", None), ("Activity", None)])
def test_to_time_entry_ticket_only_for_ticket_charges(charge_type, ticket):
    assert to_time_entry({**TIME_ENTRY, "chargeToType": charge_type}).ticket_id == ticket


@pytest.mark.parametrize("change, invoiced", [
    ({}, False), ({"invoice": {"id": 900, "identifier": "INV900"}}, True), ({"status": "Billed"}, True),
    ({"status": "BilledAgreement"}, True), ({"invoice": None, "status": "ReadyToBill"}, False),
])
def test_to_time_entry_invoiced(change, invoiced):
    assert to_time_entry({**TIME_ENTRY, **change}).invoiced is invoiced


def test_to_time_entry_passes_odd_entries_through():
    raw = {k: v for k, v in TIME_ENTRY.items() if k not in ("company", "member", "agreement", "timeEnd",
                                                             "hourlyRate", "workType", "workRole")}
    entry = to_time_entry({**raw, "actualHours": -0.5})
    assert (entry.client_source_id, entry.member, entry.agreement_source_id, entry.ended_at, entry.hourly_rate,
            entry.hours, entry.work_type) == ("", "", None, None, None, "-0.5", "")


@pytest.mark.parametrize("change, hours", [
    ({}, "1.75"),                                                   # 08:30 to 10:15
    ({"hoursDeduct": 0.25}, "1.5"),                                 # less the hours deducted
    ({"timeEnd": "2025-05-12T08:50:00Z"}, "0.33"),                  # 20 minutes, to the hundredth
    ({"timeEnd": "2025-05-12T08:30:00Z"}, "0"),
])
def test_to_time_entry_computes_null_actual_hours_from_the_times(change, hours):
    assert to_time_entry({**TIME_ENTRY, "actualHours": None, **change}).hours == hours


@pytest.mark.parametrize("change, message", [
    ({"timeEnd": None}, "has no actualHours and no timeEnd"),
    ({"timeEnd": "2025-05-12T08:00:00Z"}, r"timeEnd 2025-05-12T08:00:00\+00:00 is before its timeStart"),
])
def test_to_time_entry_sets_aside_null_actual_hours_it_cannot_compute(change, message):
    raw = {**TIME_ENTRY, "actualHours": None, **change}
    with pytest.raises(MappingError, match=message) as info:
        to_time_entry(raw)
    assert "time entry 88123" in str(info.value) and "fix: enter the end time" in str(info.value)
    assert "not 0 hours" in str(info.value) or "set aside" in str(info.value)


@pytest.mark.parametrize("raw, message", [
    ({k: v for k, v in TIME_ENTRY.items() if k != "id"}, "time entry without an id"),
    ({**TIME_ENTRY, "timeStart": None}, "time entry 88123 has no timeStart"),
    ({**TIME_ENTRY, "timeStart": "yesterday"}, "time entry 88123: Invalid isoformat"),
    ({**TIME_ENTRY, "company": "Acme"}, "time entry 88123"),
])
def test_to_time_entry_refuses_what_cannot_be_mapped(raw, message):
    with pytest.raises(MappingError, match=message):
        to_time_entry(raw)


def test_to_product_line():
    assert to_product_line(PRODUCT) == ProductLine(
        "connectwise", "3001", "250", "SSD-1TB", "1 TB SSD", "2", 10999, "EUR", "billable", "5012", None, False,
        datetime(2025, 5, 10, tzinfo=UTC), datetime(2025, 5, 10, 12, tzinfo=UTC))


def test_to_product_line_invoiced_and_agreement():
    line = to_product_line({**PRODUCT, "invoice": {"id": 77}, "agreement": {"id": 41}, "ticket": None})
    assert (line.invoiced, line.agreement_source_id, line.ticket_id) == (True, "41", None)


@pytest.mark.parametrize("value, text", [(2.0, "2"), (0.25, "0.25"), (1e-05, "0.00001"), (42, "42"),
                                         (1234567.5, "1234567.5"), (-0.5, "-0.5"), (0.1 + 0.2, "0.30000000000000004")])
def test_decimal_text(value, text):
    assert _decimal_text(value) == text


@pytest.mark.parametrize("rate, currency, minor", [(120.0, "EUR", 12000), (137.555, "EUR", 13756),
                                                   (99.995, "USD", 10000), (15000, "JPY", 15000),
                                                   (1.2345, "KWD", 1235)])
def test_hourly_rate_in_minor_units(rate, currency, minor):
    assert to_time_entry({**TIME_ENTRY, "hourlyRate": rate}, currency).hourly_rate == minor


# --- settings ----------------------------------------------------------------------------------

def config(**section):
    section = {"site": "https://api-eu.myconnectwise.net", "company_id": "msphub", "public_key": "sim-public-key",
               "private_key_env": "CW_PRIVATE_KEY", "client_id": GUID, **section}
    section = {k: v for k, v in section.items() if v is not None}
    return config_from_dict({"connectors": {"connectwise": section}}, environ=ENV)


def test_settings_defaults():
    settings = ConnectWiseSettings.from_config(config())
    assert (settings.site, settings.codebase, settings.api_version, settings.page_size, settings.currency,
            settings.overlap_seconds, settings.additions_sweep_hours) == (
        "https://api-eu.myconnectwise.net", "v4_6_release", "2022.1", 1000, "EUR", 300, 24)
    assert settings.private_key.reveal() == "sim-private-key" and "sim-private-key" not in repr(settings)


def test_settings_take_a_bare_host_a_base_url_and_a_pinned_codebase():
    settings = ConnectWiseSettings.from_config(config(site=None, base_url="na.myconnectwise.net/", codebase="v2025_1/",
                                                      currency="usd", page_size=250, overlap_seconds=0))
    assert (settings.site, settings.codebase, settings.currency, settings.page_size, settings.overlap_seconds) == (
        "https://na.myconnectwise.net", "v2025_1", "USD", 250, 0)


@pytest.mark.parametrize("section, key, fix", [
    ({"site": None}, "site", "api-eu.myconnectwise.net"),
    ({"site": "https://api-eu.myconnectwise.net/v4_6_release/apis/3.0/company"}, "site", "/v4_6_release/apis/3.0"),
    ({"base_url": "https://x.example"}, "base_url", "keep only site"),
    ({"site": "ftp://cw.example"}, "site", "api-eu.myconnectwise.net"),
    ({"company_id": None}, "company_id", "log in"),
    ({"public_key": ""}, "public_key", "API Members"),
    ({"client_id": None}, "client_id", "developer.connectwise.com"),
    ({"client_id": "my-integration"}, "client_id", "GUID"),
    ({"codebase": "v4_6"}, "codebase", "companyinfo"),
    ({"api_version": "latest"}, "api_version", "2022.1"),
    ({"page_size": 0}, "page_size", "page_size = 1000"),
    ({"page_size": 1001}, "page_size", "page_size = 1000"),
    ({"page_size": True}, "page_size", "page_size = 1000"),
    ({"currency": "euro"}, "currency", "EUR"),
    ({"overlap_seconds": -1}, "overlap_seconds", "overlap_seconds = 300"),
    ({"additions_sweep_hours": 1.5}, "additions_sweep_hours", "additions_sweep_hours = 24"),
    ({"pagesize": 10}, "pagesize", "use one of"),
    ({"private_key": "inline"}, "private_key", "private_key_env"),
    ({"private_key_env": None}, "private_key", "private_key_env"),
    ({"private_key_env": "UNSET_VARIABLE"}, "private_key_env", "export UNSET_VARIABLE"),
])
def test_settings_errors_name_the_key_and_the_fix(section, key, fix):
    with pytest.raises(ConfigError) as info:
        ConnectWiseSettings.from_config(config(**section))
    assert info.value.key == f"connectors.connectwise.{key}"
    assert fix in info.value.fix


# --- hook --------------------------------------------------------------------------------------

def test_hook_register_connectors_returns_nothing_without_a_section():
    pm = get_plugin_manager(plugin, load_entrypoints=False)
    assert pm.hook.register_connectors(config=config_from_dict({})) == [[]]


def test_hook_register_connectors_returns_the_connector():
    pm = get_plugin_manager(plugin, load_entrypoints=False)
    [[connector]] = pm.hook.register_connectors(config=config())
    try:
        assert connector.name == "connectwise"
        assert connector.action_kinds == {"agreement_quantity", "ticket", "ticket_note", "ticket_close",
                                          "ticket_reopen"}
        assert [(s.connector, s.name, s.table) for s in connector.streams()] == [
            ("connectwise", "clients", "clients"), ("connectwise", "agreements", "agreements"),
            ("connectwise", "additions", "additions"), ("connectwise", "time_entries", "time_entries"),
            ("connectwise", "products", "products"), ("connectwise", "tickets", "tickets"),
            ("connectwise", "adopted_tickets", "tickets")]
    finally:
        connector.close()


# --- streams -----------------------------------------------------------------------------------

def connector_for(sim: ConnectWiseSimulator, page_size: int = 10, **section) -> ConnectWiseConnector:
    settings = ConnectWiseSettings.from_config(config(page_size=page_size, **section))
    return ConnectWiseConnector(settings, http=mock_client(sim.handler),
                                retrying=lambda: retry_policy(sleep=lambda s: None))


def stream(connector: ConnectWiseConnector, name: str):
    return next(s for s in connector.streams() if s.name == name)


def conditions(sim: ConnectWiseSimulator, path: str) -> list[str | None]:
    return [q.get("conditions") for _, p, q in sim.log if p == path]


@pytest.fixture
def sim() -> ConnectWiseSimulator:
    return ConnectWiseSimulator(seed=3, companies=3, agreements=5, time_entries=25, products=4)


def test_a_first_pass_reads_everything_with_after_id_cursors_and_ends_with_since(sim):
    pages = list(stream(connector_for(sim), "time_entries").iter_pages(None, RUN_START))
    ids = sim.ids("time_entries")
    started = SIM_NOW   # when the pass started on ConnectWise's clock, not the hub's
    assert [len(p.records) for p in pages] == [10, 10, 5, 0]
    assert [p.cursor for p in pages] == [
        {"since": None, "after_id": ids[9], "started_at": started, "read": 10, "expected": 25},
        {"since": None, "after_id": ids[19], "started_at": started, "read": 20, "expected": 25},
        {"since": None, "after_id": ids[24], "started_at": started, "read": 25, "expected": 25}, {"since": started}]
    assert [p.sweep_count for p in pages] == [None, None, None, 25]
    assert [e.source_id for p in pages for e in p.records] == [str(i) for i in ids]
    assert conditions(sim, "/time/entries") == [None, None, None]
    assert [p for _, p, _ in sim.log][0] == "/time/entries/count"


def test_an_incremental_pass_asks_for_changes_since_the_cursor_less_the_overlap(sim):
    ids = sim.ids("time_entries")
    sim.now = DEFAULT_NOW + 7200
    sim.touch("time_entries", [ids[4], ids[20]])
    since = datetime.fromtimestamp(DEFAULT_NOW + 3600, UTC)
    pages = list(stream(connector_for(sim), "time_entries").iter_pages({"since": since.isoformat()}, RUN_START))
    assert [e.source_id for p in pages for e in p.records] == [str(ids[4]), str(ids[20])]
    assert conditions(sim, "/time/entries") == ["lastUpdated > [2025-06-01T00:55:00Z]"] * 2  # the page, the empty end
    assert pages[-1].cursor == {"since": "2025-06-01T02:00:00+00:00"}   # ConnectWise's clock at the pass start
    assert pages[-1].sweep_count is None and "/time/entries/count" not in [p for _, p, _ in sim.log]


def test_the_overlap_reads_a_change_made_just_before_the_cursor(sim):
    ids = sim.ids("time_entries")
    sim.now = DEFAULT_NOW + 3600 - 120  # two minutes before the last run started
    sim.touch("time_entries", [ids[7]])
    since = datetime.fromtimestamp(DEFAULT_NOW + 3600, UTC).isoformat()
    pages = list(stream(connector_for(sim, overlap_seconds=300), "time_entries").iter_pages({"since": since}, RUN_START))
    assert [e.source_id for p in pages for e in p.records] == [str(ids[7])]
    pages = list(stream(connector_for(sim, overlap_seconds=60), "time_entries").iter_pages({"since": since}, RUN_START))
    assert [e.source_id for p in pages for e in p.records] == []


def test_a_pass_resumes_after_the_last_committed_page_with_the_same_query(sim):
    ids = sim.ids("time_entries")
    earlier = (RUN_START - timedelta(hours=1)).isoformat()
    cursor = {"since": None, "after_id": ids[14], "started_at": earlier}
    pages = list(stream(connector_for(sim), "time_entries").iter_pages(cursor, RUN_START))
    assert [e.source_id for p in pages for e in p.records] == [str(i) for i in ids[15:]]
    # The finished pass counts from when it started, so what changed behind it is read next time.
    assert pages[-1].cursor == {"since": earlier}


def test_a_resumed_incremental_pass_keeps_its_since(sim):
    ids = sim.ids("time_entries")
    sim.now = DEFAULT_NOW + 7200
    sim.touch("time_entries", ids[:15])
    since = datetime.fromtimestamp(DEFAULT_NOW + 3600, UTC).isoformat()
    cursor = {"since": since, "after_id": ids[9], "started_at": RUN_START.isoformat()}
    pages = list(stream(connector_for(sim), "time_entries").iter_pages(cursor, RUN_START + timedelta(hours=1)))
    assert [e.source_id for p in pages for e in p.records] == [str(i) for i in ids[10:15]]
    assert conditions(sim, "/time/entries") == ["lastUpdated > [2025-06-01T00:55:00Z]"] * 2
    assert [q.get("pageId") for _, p, q in sim.log if p == "/time/entries"] == [str(ids[9]), str(ids[14])]


def test_a_failed_pass_resumes_after_the_last_committed_page(sim):
    failing = True

    def second_page_fails(request: httpx.Request) -> httpx.Response:
        if failing and "pageId" in request.url.params:
            return httpx.Response(400, json={"code": "InvalidObject", "message": "simulated"})
        return sim.handler(request)

    connector = ConnectWiseConnector(ConnectWiseSettings.from_config(config(page_size=10)),
                                     http=mock_client(second_page_fails))
    hub = make_hub(ConnectorPlugin(connector))
    first = RunReport("r1", "sync", RUN_START)
    pull(hub, first, streams=["time_entries"])
    ids = sim.ids("time_entries")
    assert first.errors and "HTTP 400" in first.errors[0]
    assert hub.store.count("time_entries") == 10
    assert hub.store.get_cursor("connectwise", "time_entries") == {
        "since": None, "after_id": ids[9], "started_at": SIM_NOW, "read": 10, "expected": 25}
    failing = False
    second = RunReport("r2", "sync", RUN_START + timedelta(hours=1))
    pull(hub, second, streams=["time_entries"])
    assert not second.errors and second.records["connectwise.time_entries"] == 15
    assert hub.store.count("time_entries") == 25
    assert hub.store.get_cursor("connectwise", "time_entries") == {"since": SIM_NOW}
    hub.close()


def test_clients_agreements_and_products_map(sim):
    connector = connector_for(sim)
    clients = [c for p in stream(connector, "clients").iter_pages(None, RUN_START) for c in p.records]
    agreements = [a for p in stream(connector, "agreements").iter_pages(None, RUN_START) for a in p.records]
    products = [x for p in stream(connector, "products").iter_pages(None, RUN_START) for x in p.records]
    assert [c.name for c in clients] == ["Acme Dental", "Birchwood Legal", "Cobalt Logistics"]
    assert {a.type_name for a in agreements} >= {"Managed Gold", "Block Hours"}
    assert [a for a in agreements if a.type_name == "Block Hours"][0].application_limit == "20"
    assert len(products) == 4 and all(isinstance(x, ProductLine) for x in products)


def test_every_simulated_time_entry_maps():
    sim = ConnectWiseSimulator(seed=4, companies=5, agreements=8, time_entries=2000, products=0)
    entries = [e for p in stream(connector_for(sim, 1000), "time_entries").iter_pages(None, RUN_START)
               for e in p.records]
    assert len(entries) == 2000
    assert {e.billable for e in entries} == {"billable", "do_not_bill", "no_charge", "no_default"}
    assert any(e.invoiced for e in entries) and any(e.ticket_id for e in entries)
    assert {e.client_source_id for e in entries} <= {str(i) for i in sim.ids("companies")}


# --- the additions stream ------------------------------------------------------------------------

def test_a_first_additions_pass_reads_every_agreement(sim):
    pages = list(stream(connector_for(sim), "additions").iter_pages(None, RUN_START))
    additions = [a for p in pages for a in p.records]
    assert {a.source_id for a in additions} == {str(i) for i in sim.ids("additions")}
    assert all(a.client_source_id == str(sim.record("agreements", int(a.agreement_source_id))["company"]["id"])
               for a in additions)
    # The count, one list, and per agreement its additions and the empty page that ends them.
    assert sim.requests == 2 + 2 * len(sim.ids("agreements"))
    assert pages[-1].cursor == {"since": SIM_NOW, "swept_at": RUN_START.isoformat()}
    assert pages[-1].sweep_count == len(sim.ids("additions"))


def test_an_incremental_additions_pass_reads_only_changed_agreements(sim):
    agreements = sim.ids("agreements")
    sim.now = DEFAULT_NOW + 7200
    sim.touch("agreements", [agreements[1]])
    swept = datetime.fromtimestamp(DEFAULT_NOW + 3600, UTC).isoformat()
    cursor = {"since": swept, "swept_at": swept}
    pages = list(stream(connector_for(sim), "additions").iter_pages(cursor, RUN_START))
    assert {a.agreement_source_id for p in pages for a in p.records} == {str(agreements[1])}
    assert sim.requests == 4   # agreements changed (and the empty end), the additions of one (and the end)
    assert pages[-1].cursor == {"since": "2025-06-01T02:00:00+00:00", "swept_at": swept}
    assert pages[-1].sweep_count is None


def test_an_addition_edited_alone_is_read_by_the_next_sweep(sim):
    addition = sim.ids("additions")[0]
    sim.now = DEFAULT_NOW + 7200
    sim.add_addition(sim.ids("agreements")[0], "AV-SEAT", quantity=7, updated=sim.now)
    swept = datetime.fromtimestamp(DEFAULT_NOW + 3600, UTC).isoformat()
    additions = stream(connector_for(sim), "additions")
    quiet = list(additions.iter_pages({"since": swept, "swept_at": swept}, RUN_START))
    assert [a for p in quiet for a in p.records] == []  # its agreement did not change
    later = RUN_START + timedelta(hours=24)
    swept_again = list(additions.iter_pages({"since": RUN_START.isoformat(), "swept_at": swept}, later))
    assert str(addition) in {a.source_id for p in swept_again for a in p.records}
    # since on ConnectWise's clock, swept_at (the sweep schedule) on the hub's.
    assert swept_again[-1].cursor == {"since": "2025-06-01T02:00:00+00:00", "swept_at": later.isoformat()}
    assert swept_again[-1].sweep_count == len(sim.ids("additions"))


# --- pushes ------------------------------------------------------------------------------------


def test_agreement_quantity_patches_the_addition(sim):
    agreement, addition = sim.ids("agreements")[0], sim.ids("additions")[0]
    action = Action("quantity:acme:2025-06:ms-ws", "agreement_quantity", "connectwise", "acme",
                    {"agreement_id": str(agreement), "addition_id": str(addition), "quantity": "42"})
    result = connector_for(sim).push(action, Context())
    assert result.vendor_id == str(addition) and "quantity set to 42" in result.summary
    assert sim.record("additions", addition)["quantity"] == 42


def test_a_fractional_quantity_is_sent_as_a_number(sim):
    agreement, addition = sim.ids("agreements")[0], sim.ids("additions")[0]
    action = Action("q", "agreement_quantity", "connectwise", "acme",
                    {"agreement_id": str(agreement), "addition_id": str(addition), "quantity": "12.5"})
    connector_for(sim).push(action, Context())
    assert sim.record("additions", addition)["quantity"] == 12.5


def test_a_ticket_summary_is_cut_to_100_characters_and_the_company_may_come_from_the_link(sim):
    company = sim.ids("companies")[1]
    action = Action("ticket:ninja:9", "ticket", "connectwise", "birchwood",
                    {"external_ref": "ninja:9", "summary": "S" * 150, "board": "Alerts",
                     "initial_description": "Long story", "priority_id": "2", "type": "Alert"})
    result = connector_for(sim).push(action, Context({("birchwood", "connectwise"): str(company)}))
    ticket = sim.record("tickets", int(result.vendor_id))
    assert ticket["summary"] == "S" * 100 and ticket["company"]["id"] == company
    assert ticket["priority"]["id"] == 2 and ticket["type"]["name"] == "Alert"


def test_an_unknown_board_is_a_vendor_error(sim):
    action = Action("t", "ticket", "connectwise", "acme", {"external_ref": "r", "summary": "s", "board": "Nope",
                                                           "company_id": str(sim.ids("companies")[0])})
    with pytest.raises(VendorError, match="no service board named 'Nope'"):
        connector_for(sim).push(action, Context())


def test_a_note_for_a_ticket_not_created_yet_fails_and_creates_nothing(sim):
    action = Action("n", "ticket_note", "connectwise", "acme", {"ticket_external_ref": "ninja:none", "text": "x"})
    with pytest.raises(VendorError, match="no ticket with externalXRef 'ninja:none'"):
        connector_for(sim).push(action, Context())
    assert sim.ids("notes") == []


@pytest.mark.parametrize("kind, payload, message", [
    ("agreement_quantity", {"agreement_id": "41", "addition_id": "x", "quantity": "1"}, "addition_id"),
    ("agreement_quantity", {"agreement_id": "41", "addition_id": "7", "quantity": "lots"}, "quantity"),
    ("ticket", {"summary": "s", "board": "Help Desk", "company_id": "250"}, "external_ref"),
    ("ticket", {"external_ref": "r" * 101, "summary": "s", "board": "Help Desk", "company_id": "250"}, "101 characters"),
    ("ticket", {"external_ref": "r", "summary": "s", "board": "Help Desk"}, "no company_id"),
    ("ticket_note", {"text": "x"}, "ticket_id or ticket_external_ref"),
    ("ticket_note", {"ticket_id": "5000"}, "text"),
])
def test_a_bad_payload_is_a_mapping_error_naming_the_action(sim, kind, payload, message):
    with pytest.raises(MappingError, match=message) as info:
        connector_for(sim).push(Action("key-1", kind, "connectwise", "acme", payload), Context())
    assert "action key-1" in str(info.value)
    assert sim.requests == 0


def test_an_unknown_action_kind_is_refused(sim):
    with pytest.raises(ValueError, match="cannot push 'invoice'"):
        connector_for(sim).push(Action("k", "invoice", "connectwise", "acme", {}), Context())


def test_plugin_conforms():
    sim = ConnectWiseSimulator(seed=0, tickets=12)
    connector = connector_for(sim)
    connector.follow_tickets(frozenset({str(sim.ids("tickets")[0])}))   # as if the hub had adopted one
    try:
        assert_plugin_conforms(connector, sim)
    finally:
        connector.close()


# --- trust: counts, the vendor's clock, errors that end a pass -----------------------------------

def test_a_time_entry_with_null_hours_is_computed_or_set_aside_and_the_stream_goes_on(sim):
    company = sim.ids("companies")[0]
    start = DEFAULT_NOW - 86_400
    computed = sim.add_time_entry(company, 2.0, start=start, actualHours=NULL)
    unknown = sim.add_time_entry(company, 2.0, start=start, actualHours=NULL, timeEnd=None)
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    report = RunReport("r1", "sync", RUN_START)
    pull(hub, report, streams=["time_entries"])
    rows = {r["source_id"]: r for r in hub.store.rows("time_entries")}
    assert rows[str(computed)]["hours"] == "2" and str(unknown) not in rows
    assert len(rows) == len(sim.ids("time_entries")) - 1
    [error] = report.errors
    assert f"record {unknown} set aside" in error and "no actualHours and no timeEnd" in error and "fix:" in error
    hub.close()


@pytest.mark.parametrize("name, path", [("time_entries", "/time/entries"), ("clients", "/company/companies"),
                                        ("agreements", "/finance/agreements")])
def test_a_full_pass_that_reads_fewer_records_than_the_count_is_incomplete(name, path):
    sim = ConnectWiseSimulator(seed=3, companies=25, agreements=25, time_entries=25, products=0)
    sim.lose_next(path, records=2)
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    first = RunReport("r1", "sync", RUN_START)
    pull(hub, first, streams=[name])
    [error] = first.errors
    assert f"connectwise {name}: the full pass read 23 records but ConnectWise counted 25" in error
    assert f"fix: msp-hub resync --connector connectwise --stream {name} --full" in error
    # The next run reads the stream again from the start, and then has every record.
    assert hub.store.get_cursor("connectwise", name) == {"since": None}
    second = RunReport("r2", "sync", RUN_START + timedelta(hours=1))
    pull(hub, second, streams=[name])
    assert not second.errors and hub.store.count(name if name != "clients" else "clients") >= 25
    assert hub.store.get_cursor("connectwise", name) == {"since": SIM_NOW}
    hub.close()


def test_the_tickets_stream_checks_its_count_with_the_same_conditions(sim):
    company = sim.ids("companies")[0]
    for n in range(12):
        sim.add_ticket(f"Alert {n}", company, "Alerts", f"msp-hub:ticket:ninjaone:{n}")
    sim.add_ticket("Not ours", company)
    sim.lose_next("/service/tickets", records=1)
    pages = stream(connector_for(sim), "tickets").iter_pages(None, RUN_START)
    with pytest.raises(IncompleteError, match="connectwise tickets: the full pass read 11 records but ConnectWise "
                                              "counted 12"):
        list(pages)
    [count] = [q for _, p, q in sim.log if p == "/service/tickets/count"]
    assert count["conditions"] == 'externalXRef like "msp-hub:%"'


def test_a_first_additions_pass_checks_the_agreement_count():
    sim = ConnectWiseSimulator(seed=3, companies=3, agreements=24, time_entries=0, products=0)
    sim.lose_next("/finance/agreements", records=3)
    with pytest.raises(IncompleteError, match="connectwise additions: the full pass read 21 agreements but "
                                              "ConnectWise counted 24"):
        list(stream(connector_for(sim), "additions").iter_pages(None, RUN_START))


def test_an_incremental_pass_asks_no_count_and_gives_no_sweep_count(sim):
    since = datetime.fromtimestamp(DEFAULT_NOW - 3600, UTC).isoformat()
    pages = list(stream(connector_for(sim), "clients").iter_pages({"since": since}, RUN_START))
    assert "/company/companies/count" not in [p for _, p, _ in sim.log]
    assert pages[-1].sweep_count is None


def test_a_resumed_full_pass_counts_on_from_its_cursor(sim):
    ids = sim.ids("time_entries")
    cursor = {"since": None, "after_id": ids[9], "started_at": SIM_NOW, "read": 10, "expected": 25}
    pages = list(stream(connector_for(sim), "time_entries").iter_pages(cursor, RUN_START))
    assert pages[-1].sweep_count == 25 and pages[-1].cursor == {"since": SIM_NOW}
    assert "/time/entries/count" not in [p for _, p, _ in sim.log]   # counted when the pass began
    lost = {**cursor, "expected": 30}                                  # as if 5 went missing on the way
    with pytest.raises(IncompleteError, match="read 25 records but ConnectWise counted 30"):
        list(stream(connector_for(sim), "time_entries").iter_pages(lost, RUN_START))


def test_a_full_pass_resumed_from_a_cursor_without_a_count_checks_nothing(sim):
    ids = sim.ids("time_entries")
    cursor = {"since": None, "after_id": ids[9], "started_at": SIM_NOW}
    pages = list(stream(connector_for(sim), "time_entries").iter_pages(cursor, RUN_START))
    assert pages[-1].sweep_count is None and sum(len(p.records) for p in pages) == 15


@pytest.mark.parametrize("offset", [3600, -3600])
def test_a_change_between_two_passes_is_pulled_whatever_the_clocks_say(offset):
    # The simulator runs an hour ahead of the hub, or an hour behind; lastUpdated and its Date
    # header follow its clock. Its clock moves on (real time) between the passes.
    sim = ConnectWiseSimulator(seed=3, companies=2, agreements=2, time_entries=20, products=0, clock_offset=offset)
    for entry in sim.ids("time_entries"):   # generated entries are dated by the clock at start
        sim.time_entries.touch(entry, sim.now - 86_400)
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    first = RunReport("r1", "sync", datetime.now(UTC))
    pull(hub, first, streams=["time_entries"])
    assert not first.errors
    since = datetime.fromisoformat(hub.store.get_cursor("connectwise", "time_entries")["since"])
    assert abs(since.timestamp() - (time.time() + offset)) < 60   # ConnectWise's clock, not the hub's
    changed = sim.ids("time_entries")[4]
    sim.time_entries.set(changed, notes="edited between the passes")
    sim.touch("time_entries", [changed])
    second = RunReport("r2", "sync", datetime.now(UTC))
    pull(hub, second, streams=["time_entries"])
    assert not second.errors and second.records["connectwise.time_entries"] == 1
    [row] = [r for r in hub.store.rows("time_entries") if r["source_id"] == str(changed)]
    assert row["notes"] == "edited between the passes"
    hub.close()


def test_without_a_date_header_a_pass_keeps_its_since(sim):
    def no_date(request: httpx.Request) -> httpx.Response:
        response = sim.handler(request)
        del response.headers["Date"]
        return response

    connector = ConnectWiseConnector(ConnectWiseSettings.from_config(config(page_size=10)), http=mock_client(no_date))
    since = datetime.fromtimestamp(DEFAULT_NOW - 3600, UTC).isoformat()
    pages = list(stream(connector, "time_entries").iter_pages({"since": since}, RUN_START))
    assert pages[-1].cursor == {"since": since}   # never the hub's clock, never past what was read


@pytest.mark.parametrize("fault", [
    {"status": 404, "body": "Cannot route. Codebase/company is invalid"}, {"status": 429, "retry_after": 0}])
def test_a_cannot_route_or_throttled_page_fails_the_pass_and_keeps_the_cursor(sim, fault):
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    sim.fail_next(fault["status"], times=10, path="/time/entries", body=fault.get("body"),
                  retry_after=fault.get("retry_after"))
    report = RunReport("r1", "sync", RUN_START)
    pull(hub, report, streams=["time_entries"])
    [error] = report.errors
    assert f"HTTP {fault['status']}" in error
    assert hub.store.count("time_entries") == 0 and hub.store.get_cursor("connectwise", "time_entries") is None
    hub.close()


def test_a_cannot_route_after_some_pages_keeps_the_cursor_at_the_last_committed_page(sim):
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    answer = sim.handler
    served = []

    def routes_twice(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/time/entries"):
            served.append(request)
            if len(served) == 3:
                return httpx.Response(404, text="Cannot route. Codebase/company is invalid")
        return answer(request)

    hub.connectors["connectwise"].client._http = mock_client(routes_twice)
    report = RunReport("r1", "sync", RUN_START)
    pull(hub, report, streams=["time_entries"])
    [error] = report.errors
    assert "Cannot route" in error and "HTTP 404" in error
    ids = sim.ids("time_entries")
    assert hub.store.count("time_entries") == 20
    assert hub.store.get_cursor("connectwise", "time_entries")["after_id"] == ids[19]
    hub.close()


@pytest.mark.parametrize("shape", [{"forward_only": False}, {"links": False, "max_page_size": 4},
                                   {"max_page_size": 3}])
def test_every_stream_reads_everything_however_the_server_pages(shape):
    sim = ConnectWiseSimulator(seed=3, companies=12, agreements=9, time_entries=37, products=11, **shape)
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    report = RunReport("r1", "sync", RUN_START)
    pull(hub, report, streams=["clients", "agreements", "additions", "time_entries", "products"])
    assert not report.errors
    for table, kind in (("clients", "companies"), ("agreements", "agreements"), ("additions", "additions"),
                        ("time_entries", "time_entries"), ("products", "products")):
        assert sorted(int(r["source_id"]) for r in hub.store.rows(table)) == sim.ids(kind), table
    hub.close()


def test_a_later_additions_sweep_checks_the_agreement_count_too():
    sim = ConnectWiseSimulator(seed=3, companies=3, agreements=24, time_entries=0, products=0)
    swept = datetime.fromtimestamp(DEFAULT_NOW - 2 * 86_400, UTC).isoformat()
    sim.lose_next("/finance/agreements", records=1)
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    hub.store.write_page("additions", [], "connectwise", "additions", {"since": swept, "swept_at": swept})
    report = RunReport("r1", "sync", RUN_START)
    pull(hub, report, streams=["additions"])
    [error] = report.errors
    assert "connectwise additions: the full pass read 23 agreements but ConnectWise counted 24" in error
    assert hub.store.get_cursor("connectwise", "additions") == {"since": swept, "swept_at": None}
    again = RunReport("r2", "sync", RUN_START + timedelta(hours=1))
    pull(hub, again, streams=["additions"])   # the next run sweeps again, and has them all
    assert not again.errors
    assert sorted(int(r["source_id"]) for r in hub.store.rows("additions")) == sim.ids("additions")
    hub.close()


def test_a_resumed_pass_that_saw_no_date_keeps_the_since_it_had(sim):
    ids = sim.ids("time_entries")
    since = datetime.fromtimestamp(DEFAULT_NOW - 3600, UTC).isoformat()
    cursor = {"since": since, "after_id": ids[9], "started_at": None}
    pages = list(stream(connector_for(sim), "time_entries").iter_pages(cursor, RUN_START))
    assert pages[-1].cursor == {"since": since}   # not the resuming run's Date: changes behind it stay due


def test_a_page_whose_last_record_has_no_id_fails_the_pass_instead_of_the_run(sim):
    def last_without_id(request: httpx.Request) -> httpx.Response:
        response = sim.handler(request)
        if request.url.path.endswith("/company/companies"):
            return httpx.Response(200, json=[*response.json()[:-1], {"name": "No id"}], headers=response.headers)
        return response

    connector = ConnectWiseConnector(ConnectWiseSettings.from_config(config(page_size=10)),
                                     http=mock_client(last_without_id))
    hub = make_hub(ConnectorPlugin(connector))
    report = RunReport("r1", "sync", RUN_START)
    pull(hub, report, streams=["clients", "time_entries"])
    [error] = report.errors
    assert "the last clients record of a page has no id" in error
    assert report.records["connectwise.time_entries"] == len(sim.ids("time_entries"))   # the run went on
    hub.close()


def test_an_agreement_without_an_id_is_set_aside_and_the_additions_go_on(sim):
    agreements = sim.ids("agreements")
    sim.agreements.rows[agreements[2]].pop("id")
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    report = RunReport("r1", "sync", RUN_START)
    pull(hub, report, streams=["additions"])
    assert any("(an agreement without an id) set aside" in e for e in report.errors)
    stored = {r["agreement_source_id"] for r in hub.store.rows("additions")}
    with_additions = {str(a) for a in agreements if a != agreements[2]
                      and any(sim.record("additions", x)["agreementId"] == a for x in sim.ids("additions"))}
    assert stored == with_additions
    hub.close()


def test_a_time_entry_charged_to_ticket_0_is_charged_to_no_ticket():
    raw = {"id": 5, "company": {"id": 1}, "member": {"identifier": "jsmith"}, "chargeToType": "ServiceTicket",
           "chargeToId": 0, "timeStart": "2026-11-02T09:00:00Z", "timeEnd": "2026-11-02T10:00:00Z",
           "actualHours": 1.0, "billableOption": "Billable", "workType": {"name": "Remote Support"},
           "workRole": {"name": "Technician"}, "_info": {"lastUpdated": "2026-11-02T10:00:00Z"}}
    assert to_time_entry(raw).ticket_id is None
    assert to_time_entry({**raw, "chargeToId": 4521}).ticket_id == "4521"
