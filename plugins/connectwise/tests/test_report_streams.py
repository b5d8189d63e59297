"""The report streams: every company's configurations (warranty dates) and every service ticket,
opt-in through ``report_streams``, incremental on lastUpdated, failing alone."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from hub import ConfigError, MappingError
from hub.completeness import Gate
from hub.engine import RunReport, pull
from hub.http import retry_policy
from hub.mappings import Contract
from hub.records import Configuration, ServiceTicket
from hub.testing import ConnectorPlugin, assert_plugin_conforms, make_hub, mock_client
from plugins.connectwise.client import CONFIGURATION_FIELDS, SERVICE_TICKET_FIELDS
from plugins.connectwise.plugin import (REPORT_STREAMS, ConnectWiseConnector, ConnectWiseSettings, to_configuration,
                                        to_service_ticket)
from plugins.connectwise.simulator import DEFAULT_NOW, DAY, GENERATED_TYPES, ConnectWiseSimulator, iso
from plugins.connectwise.tests.test_plugin import SIM_NOW, config

UTC = timezone.utc
API = "https://api-eu.myconnectwise.net/v4_6_release/apis/3.0"
RUN_START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ACME = {"id": 250, "identifier": "AcmeDental", "name": "Acme Dental"}

CONFIGURATION = {
    "id": 3107, "name": "ACME-FW01", "type": {"id": 3, "name": "Firewall"}, "status": {"id": 1, "name": "Active"},
    "company": ACME, "activeFlag": True, "serialNumber": "FGT60F0000123", "deviceIdentifier": "4412",
    "warrantyExpirationDate": "2027-03-31T00:00:00Z",
    "_info": {"lastUpdated": "2025-05-02T07:00:00Z", "dateEntered": "2023-01-10T09:00:00Z"},
}
SERVICE_TICKET = {
    "id": 70211, "summary": "Outlook keeps asking for a password", "board": {"id": 1, "name": "Help Desk"},
    "status": {"id": 9, "name": "Closed"}, "priority": {"id": 2, "name": "Priority 2 - Quick Response"},
    "company": ACME, "closedFlag": True, "closedDate": "2025-05-13T16:45:00Z", "externalXRef": "automate:99",
    "_info": {"dateEntered": "2025-05-12T08:30:00Z", "lastUpdated": "2025-05-13T16:45:10Z"},
}


def connector_for(sim: ConnectWiseSimulator, page_size: int = 10, attempts: int = 5, **section) -> ConnectWiseConnector:
    section.setdefault("report_streams", True)
    settings = ConnectWiseSettings.from_config(config(page_size=page_size, **section))
    return ConnectWiseConnector(settings, http=mock_client(sim.handler),
                                retrying=lambda: retry_policy(attempts=attempts, sleep=lambda s: None))


def stream(connector: ConnectWiseConnector, name: str):
    return next(s for s in connector.streams() if s.name == name)


def report_sim(**kwargs) -> ConnectWiseSimulator:
    return ConnectWiseSimulator(seed=4, companies=3, agreements=2, time_entries=5, products=2,
                                **{"configurations": 26, "service_tickets": 37, **kwargs})


def listed(sim: ConnectWiseSimulator, path: str) -> list[dict]:
    """The queries of the list requests to ``path`` (not its /count)."""
    return [q for _, p, q in sim.log if p == path]


# --- settings ----------------------------------------------------------------------------------

def test_report_streams_are_off_by_default_and_cost_no_request():
    sim = report_sim()
    connector = connector_for(sim, report_streams=None)
    assert ConnectWiseSettings.from_config(config()).report_streams == ()
    assert not {"configurations", "service_tickets"} & {s.name for s in connector.streams()}
    hub = make_hub(ConnectorPlugin(connector))
    report = RunReport("r1", "sync", RUN_START)
    pull(hub, report)
    assert not report.errors
    assert not listed(sim, "/company/configurations") and not listed(sim, "/company/configurations/count")
    assert all(q.get("fields") != SERVICE_TICKET_FIELDS for q in listed(sim, "/service/tickets"))
    assert hub.store.count("configurations") == 0 and hub.store.count("service_tickets") == 0
    hub.close()


@pytest.mark.parametrize("value, names", [(True, ("configurations", "service_tickets")), (False, ()),
                                          (["service_tickets"], ("service_tickets",)),
                                          (["service_tickets", "configurations"], ("configurations", "service_tickets"))])
def test_report_streams_takes_true_false_or_a_list(value, names):
    settings = ConnectWiseSettings.from_config(config(report_streams=value))
    assert settings.report_streams == names
    connector = ConnectWiseConnector(settings, http=mock_client(report_sim().handler))
    assert [s.name for s in connector.streams() if s.name in REPORT_STREAMS] == list(names)
    assert {s.name: s.table for s in connector.streams() if s.name in REPORT_STREAMS} == {n: n for n in names}


@pytest.mark.parametrize("value, says", [(["tickets"], "names 'tickets', not a report stream"),
                                         ("yes", "must be true, false or a list of stream names, got 'yes'"),
                                         ([1], "must be true, false or a list of stream names")])
def test_a_wrong_report_streams_names_the_key_and_the_fix(value, says):
    with pytest.raises(ConfigError) as raised:
        ConnectWiseSettings.from_config(config(report_streams=value))
    text = str(raised.value)
    assert says in text and "connectors.connectwise.report_streams" in text
    assert 'report_streams = true (all of them), false, or a list of "configurations", "service_tickets"' in text


# --- mapping -----------------------------------------------------------------------------------

def test_a_configuration_maps_with_its_warranty_as_a_date():
    assert to_configuration(CONFIGURATION) == Configuration(
        "connectwise", "3107", "250", "ACME-FW01", "Firewall", "Active", True, "FGT60F0000123", "4412",
        "2027-03-31", datetime(2025, 5, 2, 7, 0, tzinfo=UTC))


def test_a_warranty_date_keeps_its_day_whatever_the_offset():
    raw = {**CONFIGURATION, "warrantyExpirationDate": "2027-03-31T00:00:00+02:00"}
    assert to_configuration(raw).warranty_end == "2027-03-31"


def test_a_configuration_without_warranty_date_has_none_not_expired():
    raw = {k: v for k, v in CONFIGURATION.items() if k != "warrantyExpirationDate"}
    assert to_configuration(raw).warranty_end is None


@pytest.mark.parametrize("flag, status, active", [(False, "Active", False), (True, "Inactive", True),
                                                  (None, "Inactive", False), (None, "Active", True)])
def test_active_is_the_active_flag_else_an_inactive_status(flag, status, active):
    raw = {**CONFIGURATION, "status": {"id": 2, "name": status}}
    raw.pop("activeFlag")
    if flag is not None:
        raw["activeFlag"] = flag
    assert to_configuration(raw).active is active


@pytest.mark.parametrize("change, says", [
    ({"company": None}, "configuration 3107 (ACME-FW01) has no company id"),
    ({"name": "  "}, "configuration 3107 of company 250 has no name (required by the API)"),
    ({"warrantyExpirationDate": "31/03/2027"}, "configuration 3107 (ACME-FW01) has a bad date"),
    ({"id": None}, "configuration without an id"),
])
def test_a_configuration_that_cannot_be_mapped_is_refused_with_the_reason(change, says):
    raw = {k: v for k, v in {**CONFIGURATION, **change}.items() if v is not None}
    with pytest.raises(MappingError, match=says.replace("(", r"\(").replace(")", r"\)")):
        to_configuration(raw)


def test_a_service_ticket_maps_with_its_dates_and_priority():
    assert to_service_ticket(SERVICE_TICKET) == ServiceTicket(
        "connectwise", "70211", "250", "Outlook keeps asking for a password", "Help Desk", "Closed",
        "Priority 2 - Quick Response", True, datetime(2025, 5, 12, 8, 30, tzinfo=UTC),
        datetime(2025, 5, 13, 16, 45, tzinfo=UTC), "automate:99", datetime(2025, 5, 13, 16, 45, 10, tzinfo=UTC))


def test_an_open_ticket_has_no_closed_at_even_with_an_old_closed_date():
    raw = {**SERVICE_TICKET, "closedFlag": False, "status": {"id": 7, "name": "In Progress"},
           "externalXRef": ""}
    ticket = to_service_ticket(raw)
    assert (ticket.closed, ticket.closed_at, ticket.external_ref, ticket.status) == (False, None, None, "In Progress")


@pytest.mark.parametrize("change, says", [
    ({"company": None}, "service ticket 70211 ('Outlook keeps asking for a password') has no company id"),
    ({"closedDate": "yesterday"}, "service ticket 70211 has a bad date"),
    ({"id": None}, "service ticket without an id"),
])
def test_a_service_ticket_that_cannot_be_mapped_is_refused_with_the_reason(change, says):
    raw = {k: v for k, v in {**SERVICE_TICKET, **change}.items() if v is not None}
    with pytest.raises(MappingError, match=says.replace("(", r"\(").replace(")", r"\)")):
        to_service_ticket(raw)


# --- requests (respx) --------------------------------------------------------------------------

def _respx_connector(**section) -> ConnectWiseConnector:
    settings = ConnectWiseSettings.from_config(config(report_streams=True, **section))
    return ConnectWiseConnector(settings, http=httpx.Client(base_url=API),
                                retrying=lambda: retry_policy(attempts=1, sleep=lambda s: None))


@pytest.mark.parametrize("name, path, fields, raw", [
    ("configurations", "/company/configurations", CONFIGURATION_FIELDS, CONFIGURATION),
    ("service_tickets", "/service/tickets", SERVICE_TICKET_FIELDS, SERVICE_TICKET),
])
def test_a_full_pass_counts_then_pages_forward_only_asking_only_the_fields_read(name, path, fields, raw):
    with respx.mock(base_url=API) as router:
        count = router.get(path + "/count").respond(200, json={"count": 1}, headers={"Date": "Sun, 01 Jun 2025 "
                                                                                             "00:00:00 GMT"})
        listing = router.get(path).mock(side_effect=[httpx.Response(200, json=[raw]), httpx.Response(200, json=[])])
        pages = list(stream(_respx_connector(), name).iter_pages(None, RUN_START))
    assert count.calls[0].request.url.params.get("conditions") is None
    first, last = (call.request for call in listing.calls)
    assert first.headers["pagination-type"] == "forward-only" and first.headers["clientId"]
    assert dict(first.url.params) == {"pageSize": "1000", "fields": fields}
    assert dict(last.url.params) == {"pageSize": "1000", "fields": fields, "pageId": str(raw["id"])}
    assert [r.source_id for p in pages for r in p.records] == [str(raw["id"])]
    assert pages[-1].cursor == {"since": "2025-06-01T00:00:00+00:00"} and pages[-1].sweep_count == 1


@pytest.mark.parametrize("name, path", [("configurations", "/company/configurations"),
                                        ("service_tickets", "/service/tickets")])
def test_an_incremental_pass_sends_last_updated_with_the_overlap_and_no_count(name, path):
    with respx.mock(base_url=API) as router:
        listing = router.get(path).respond(200, json=[])
        list(stream(_respx_connector(overlap_seconds=600), name).iter_pages(
            {"since": "2025-05-01T12:00:00+00:00"}, RUN_START))
    [call] = listing.calls
    raw_query = parse_qs(urlsplit(str(call.request.url)).query)
    assert raw_query["conditions"] == ["lastUpdated > [2025-05-01T11:50:00Z]"]
    assert "%20%3E%20%5B2025-05-01T11%3A50%3A00Z%5D" in str(call.request.url)   # %20, never "+"


# Members of the 2022.1 spec's types (ManageTypes.ts) that the partial responses may name.
SPEC_CONFIGURATION = {"id", "name", "type", "status", "company", "contact", "site", "deviceIdentifier", "serialNumber",
                      "modelNumber", "tagNumber", "purchaseDate", "installationDate", "warrantyExpirationDate",
                      "activeFlag", "billFlag", "manufacturer", "_info"}
SPEC_TICKET = {"id", "summary", "recordType", "board", "status", "company", "priority", "type", "externalXRef",
               "closedDate", "closedBy", "closedFlag", "dateResolved", "actualHours", "_info"}


def test_the_fields_asked_are_fields_of_the_spec():
    """Every field asked for is a member of the spec's Company.Configuration / Ticket (a reference
    walked into by ``/`` to its ``name`` or ``id``), ``id`` first (paging needs it)."""
    for asked, spec in ((CONFIGURATION_FIELDS, SPEC_CONFIGURATION), (SERVICE_TICKET_FIELDS, SPEC_TICKET)):
        names = asked.split(",")
        assert names[0] == "id" and len(set(names)) == len(names)
        assert {n.split("/")[0] for n in names} <= spec
        assert all(n.split("/")[1] in ("name", "id") for n in names if "/" in n)


# --- the simulator, end to end -----------------------------------------------------------------

def test_the_plugin_conforms_with_the_report_streams_on():
    sim = report_sim(tickets=6)
    connector = connector_for(sim)
    connector.follow_tickets(frozenset({str(sim.ids("tickets")[1])}))   # as if the hub had adopted one
    try:
        assert_plugin_conforms(connector, sim)
    finally:
        connector.close()


def test_a_sync_stores_every_configuration_and_ticket_as_the_simulator_holds_them():
    sim = report_sim()
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    report = RunReport("r1", "sync", RUN_START)
    pull(hub, report, streams=list(REPORT_STREAMS))
    assert not report.errors
    configs = {r["source_id"]: r for r in hub.store.rows("configurations")}
    assert sorted(map(int, configs)) == sim.ids("configurations")
    for cid in sim.ids("configurations"):
        raw, row = sim.record("configurations", cid), configs[str(cid)]
        assert row["client_source_id"] == str(raw["company"]["id"]) and row["type_name"] == raw["type"]["name"]
        assert row["warranty_end"] == (raw["warrantyExpirationDate"][:10] if "warrantyExpirationDate" in raw else None)
        assert bool(row["active"]) is raw["activeFlag"] and row["serial_number"] == raw["serialNumber"]
    assert {r["type_name"] for r in configs.values()} == set(GENERATED_TYPES)
    assert any(r["warranty_end"] is None for r in configs.values())
    assert any(r["warranty_end"] and r["warranty_end"] < "2025-06-01" for r in configs.values())
    tickets = {r["source_id"]: r for r in hub.store.rows("service_tickets")}
    assert sorted(map(int, tickets)) == sim.ids("tickets")
    for tid in sim.ids("tickets"):
        raw, row = sim.record("tickets", tid), tickets[str(tid)]
        assert row["priority"] == raw["priority"]["name"] and bool(row["closed"]) is raw["closedFlag"]
        assert row["opened_at"][:19] == raw["_info"]["dateEntered"][:19]
        assert (row["closed_at"] or "")[:19] == (raw.get("closedDate") or "")[:19]
    by_hub = [r for r in tickets.values() if (r["external_ref"] or "").startswith("msp-hub:")]
    assert 0 < len(by_hub) < len(tickets)
    assert any(r["closed_at"] is None for r in tickets.values())
    opened = sorted(r["opened_at"] for r in tickets.values())
    # Across the recent quarters: the oldest more than six months before the simulator's now.
    assert opened[0] < iso(DEFAULT_NOW - 180 * DAY) and opened[-1] <= iso(DEFAULT_NOW)
    hub.close()


def test_a_second_sync_reads_only_what_changed():
    sim = report_sim()
    hub = make_hub(ConnectorPlugin(connector_for(sim, page_size=1000)))
    pull(hub, RunReport("r1", "sync", RUN_START), streams=list(REPORT_STREAMS))
    assert hub.store.get_cursor("connectwise", "service_tickets") == {"since": SIM_NOW}
    # A day later a technician closes one ticket and a warranty is extended.
    sim.now = DEFAULT_NOW + DAY
    ticket = next(i for i in sim.ids("tickets") if not sim.record("tickets", i)["closedFlag"])
    sim.technician_sets_status(ticket, "Closed", member="pdubois")
    config_id = sim.ids("configurations")[4]
    sim.configurations.get(config_id)["warrantyExpirationDate"] = "2029-12-31T00:00:00Z"
    sim.touch("configurations", [config_id])
    sim.log.clear()
    second = RunReport("r2", "sync", RUN_START + timedelta(days=1))
    pull(hub, second, streams=list(REPORT_STREAMS))
    assert not second.errors and second.records == {"connectwise.configurations": 1, "connectwise.service_tickets": 1}
    # One page, then the empty one that ends a read without Link headers, both since the cursor
    # less the overlap.
    assert [(q["conditions"], q.get("pageId")) for q in listed(sim, "/service/tickets")] == [
        ("lastUpdated > [2025-05-31T23:55:00Z]", None), ("lastUpdated > [2025-05-31T23:55:00Z]", str(ticket))]
    assert not listed(sim, "/service/tickets/count") and not listed(sim, "/company/configurations/count")
    row = next(r for r in hub.store.rows("service_tickets") if r["source_id"] == str(ticket))
    assert bool(row["closed"]) and row["closed_at"].startswith("2025-06-02")
    row = next(r for r in hub.store.rows("configurations") if r["source_id"] == str(config_id))
    assert row["warranty_end"] == "2029-12-31"
    hub.close()


def test_a_record_that_cannot_be_mapped_is_set_aside_with_its_reason_and_the_rest_stored():
    sim = report_sim(configurations=5, service_tickets=4)
    broken = sim.ids("configurations")[2]
    del sim.configurations.get(broken)["company"]
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    report = RunReport("r1", "sync", RUN_START)
    pull(hub, report, streams=["configurations"])
    [error] = report.errors
    assert f"record {broken} set aside: connectwise configuration {broken}" in error and "no company id" in error
    assert hub.store.count("configurations") == 4
    kept = hub.store.db.query('select stream, source_id, error from rejected_records')
    assert [(r["stream"], r["source_id"]) for r in kept] == [("configurations", str(broken))]
    hub.close()


@pytest.mark.parametrize("failing, path, query", [
    ("configurations", "/company/configurations", None),
    ("service_tickets", "/service/tickets", {"fields": SERVICE_TICKET_FIELDS}),
])
def test_a_500_on_one_report_stream_fails_that_pass_only_and_holds_no_invoice_nor_ticket(failing, path, query):
    sim = report_sim(tickets=4)
    sim.fail_next(500, times=3, path=path, query=query)
    connector = connector_for(sim, attempts=3)
    hub = make_hub(ConnectorPlugin(connector))
    report = RunReport("r1", "sync", RUN_START)
    pull(hub, report)
    failed = {k for k, p in report.passes.items() if p["status"] != "complete"}
    assert failed == {f"connectwise.{failing}"}
    [error] = report.errors
    assert error.startswith(f"pull connectwise.{failing}:") and "500" in error
    other = next(n for n in REPORT_STREAMS if n != failing)
    assert hub.store.count(other) > 0 and hub.store.count(failing) == 0
    # The completeness gate does not hold a client's invoice, nor a ticket, for it.
    gate = Gate(hub, report)
    contract = Contract("acme", "Acme Dental", None, "EUR", links={"connectwise": str(sim.ids("companies")[0])})
    billing = gate.billing_streams(contract)
    assert {r.stream for r in billing} == {"clients", "agreements", "additions", "time_entries", "products"}
    assert gate.problems(billing, after=None, this_run=False) == []
    assert gate.ticket_problems() == []
    # The next run reads it again from the start.
    assert hub.store.get_cursor("connectwise", failing) is None
    again = RunReport("r2", "sync", RUN_START + timedelta(hours=1))
    pull(hub, again, streams=[failing])
    assert not again.errors and hub.store.count(failing) > 0
    hub.close()


def test_the_simulator_serves_the_report_data_with_the_filters_the_plugin_sends():
    sim = report_sim()
    client = connector_for(sim).client
    since = datetime.fromtimestamp(DEFAULT_NOW - 30 * DAY, UTC)
    recent = [t for page in client.iter_service_tickets(since=since) for t in page]
    assert recent and all(t["_info"]["lastUpdated"] > iso(DEFAULT_NOW - 30 * DAY) for t in recent)
    assert len(recent) < len(sim.ids("tickets"))
    assert all(set(t) <= {"id", "summary", "board", "status", "priority", "company", "closedFlag", "closedDate",
                          "externalXRef", "_info"} for t in recent)
    configs = [c for page in client.iter_configurations() for c in page]
    assert [c["id"] for c in configs] == sim.ids("configurations")
    warranty = [c for c in configs if "warrantyExpirationDate" in c]
    assert all(date.fromisoformat(c["warrantyExpirationDate"][:10]) for c in warranty)
    assert 0 < len(warranty) < len(configs)
    assert {"Priority 1 - Emergency Response", "Priority 3 - Normal Response"} <= {
        sim.record("tickets", i)["priority"]["name"] for i in sim.ids("tickets")}


def test_a_ticket_of_the_past_is_stored_with_the_dates_and_priority_it_was_given():
    sim = ConnectWiseSimulator(seed=1, companies=0, agreements=0, time_entries=0, products=0)
    company = sim.add_company("Acme Dental")
    opened = DEFAULT_NOW - 40 * DAY
    done = sim.add_ticket("Server down", company, "Alerts", "msp-hub:ticket:ninjaone:x1", member=sim.api_member,
                          priority="Priority 1 - Emergency Response", opened=opened, closed=opened + 5400,
                          closed_by="jsmith")
    waiting = sim.add_ticket("New laptop", company, priority=5, opened=opened + DAY)
    sim.add_report_data(configurations=3, service_tickets=2, seed=1)   # after companies added by hand
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    report = RunReport("r1", "sync", RUN_START)
    pull(hub, report, streams=list(REPORT_STREAMS))
    assert not report.errors and hub.store.count("configurations") == 3 and hub.store.count("service_tickets") == 4
    rows = {r["source_id"]: r for r in hub.store.rows("service_tickets")}
    first, second = rows[str(done)], rows[str(waiting)]
    assert (first["priority"], first["status"], bool(first["closed"]), first["board"]) == (
        "Priority 1 - Emergency Response", "Closed", True, "Alerts")
    assert first["opened_at"].startswith(iso(opened)[:19]) and first["closed_at"].startswith(iso(opened + 5400)[:19])
    assert sim.record("tickets", done)["closedBy"] == "jsmith"
    assert (second["priority"], bool(second["closed"]), second["closed_at"], second["external_ref"]) == (
        "Priority 4 - Schedule Maintenance", False, None, None)
    hub.close()
