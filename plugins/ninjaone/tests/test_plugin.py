"""NinjaOne mapping, settings and connector streams, on literal dicts and the simulator."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx
import pytest

import hub.testing
from hub import Client, ConfigError, Device, MappingError, Page
from hub.config import config_from_dict
from hub.engine import RunReport, pull
from hub.http import retry_policy
from hub.plugins import get_plugin_manager
from hub.records import Alert, AlertEvent
from hub.testing import ConnectorPlugin, make_hub, mock_client
from plugins.ninjaone import plugin
from plugins.ninjaone.plugin import (
    NinjaOneConnector,
    NinjaOneSettings,
    to_alert,
    to_alert_event,
    to_client,
    to_device,
)
from plugins.ninjaone.simulator import NinjaOneSimulator

UTC = timezone.utc
RUN_START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ENV = {"NINJA_SECRET": "sim-client-secret"}

DEVICE = {
    "id": 1042, "uid": "3f1c0c4e-0000-4000-8000-000000000001", "organizationId": 7, "locationId": 71,
    "nodeClass": "WINDOWS_SERVER", "approvalStatus": "APPROVED", "offline": False,
    "displayName": "Front desk server", "systemName": "SRV-FD-01", "dnsName": "srv-fd-01.acme.local",
    "created": 1700000000.5, "lastContact": 1748736000.25, "lastUpdate": 1748736001.0,
}


# --- mapping -----------------------------------------------------------------------------------

def test_to_client_maps_an_organization():
    raw = {"id": 7, "name": "Acme Dental", "description": "", "nodeApprovalMode": "MANUAL", "userData": {}}
    assert to_client(raw) == Client(source="ninjaone", source_id="7", name="Acme Dental")


def test_to_device_maps_a_basic_device_record():
    assert to_device(DEVICE) == Device(
        source="ninjaone", source_id="1042", client_source_id="7", name="Front desk server",
        node_class="WINDOWS_SERVER", approval_status="approved",
        created_at=datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC),
        last_contact=datetime(2025, 6, 1, 0, 0, 0, 250000, tzinfo=UTC),
        updated_at=datetime(2025, 6, 1, 0, 0, 1, tzinfo=UTC))


def test_to_device_timestamps_are_aware_utc():
    device = to_device(DEVICE)
    assert device.created_at.tzinfo is UTC and device.created_at.timestamp() == 1700000000.5


def test_to_device_without_timestamps_leaves_them_none():
    raw = {k: v for k, v in DEVICE.items() if k not in ("created", "lastContact", "lastUpdate")}
    device = to_device(raw)
    assert device.created_at is device.last_contact is device.updated_at is None


@pytest.mark.parametrize("names, expected", [
    ({"displayName": "Shown", "systemName": "SYS", "dnsName": "dns.local"}, "Shown"),
    ({"displayName": "", "systemName": "SYS", "dnsName": "dns.local"}, "SYS"),
    ({"systemName": None, "dnsName": "dns.local"}, "dns.local"),
    ({}, "1042"),
])
def test_to_device_name_falls_back(names, expected):
    raw = {k: v for k, v in DEVICE.items() if k not in ("displayName", "systemName", "dnsName")}
    assert to_device({**raw, **names}).name == expected


@pytest.mark.parametrize("vendor, hub_state", [
    ("APPROVED", "approved"), ("PENDING", "pending"), ("STAGED", "staged"),
    ("DECOMMISSIONED", "decommissioned"), ("Approved", "approved"),
])
def test_to_device_lowercases_approval(vendor, hub_state):
    assert to_device({**DEVICE, "approvalStatus": vendor}).approval_status == hub_state


@pytest.mark.parametrize("value", ["QUARANTINED", None, 3])
def test_to_device_refuses_an_unknown_approval(value):
    with pytest.raises(MappingError, match=r"device 1042 \(Front desk server\) has approvalStatus") as info:
        to_device({**DEVICE, "approvalStatus": value})
    assert repr(value) in str(info.value)


def test_to_device_names_a_missing_field():
    raw = {k: v for k, v in DEVICE.items() if k != "organizationId"}
    with pytest.raises(MappingError, match="device 1042 .* has no organizationId"):
        to_device(raw)


@pytest.mark.parametrize("absent", [True, False])
def test_to_device_without_a_node_class_keeps_the_device_for_the_billing_rules_to_hold_its_client(absent):
    raw = {k: v for k, v in DEVICE.items() if k != "nodeClass"} if absent else {**DEVICE, "nodeClass": None}
    device = to_device(raw)
    assert device.node_class == "" and device.client_source_id == "7"


@pytest.mark.parametrize("key, fix", [("organizationId", "assign the device to an organization")])
@pytest.mark.parametrize("absent", [True, False])
def test_to_device_without_organization_names_the_device_and_the_fix(key, fix, absent):
    raw = {k: v for k, v in DEVICE.items() if k != key} if absent else {**DEVICE, key: None}
    with pytest.raises(MappingError, match=rf"device 1042 \(Front desk server\) has no {key}") as info:
        to_device(raw)
    assert f"fix: {fix}" in str(info.value)


def test_to_device_without_an_id_is_a_mapping_error_naming_what_it_has():
    raw = {k: v for k, v in DEVICE.items() if k != "id"}
    with pytest.raises(MappingError, match=r"device without an id \(Front desk server, organization 7\)"):
        to_device(raw)


def test_to_device_refuses_a_node_class_that_is_not_a_name():
    with pytest.raises(MappingError, match="nodeClass 42"):
        to_device({**DEVICE, "nodeClass": 42})


def test_to_device_refuses_a_timestamp_that_is_not_epoch_seconds():
    with pytest.raises(MappingError, match="timestamp"):
        to_device({**DEVICE, "created": "2024-01-01T00:00:00Z"})


def test_to_device_keeps_node_class_unchanged():
    assert to_device({**DEVICE, "nodeClass": "NMS_PRINTER"}).node_class == "NMS_PRINTER"


ALERT = {
    "uid": "9b2f6f0e-5c1d-4f1e-8f0a-3d2c1b0a9e8d", "deviceId": 1042, "message": "CPU at 97% for 15 minutes",
    "createTime": 1748730000.5, "updateTime": 1748733600.0, "sourceType": "CONDITION_AGENT_CPU",
    "sourceConfigUid": "0d3c6a1e-7b2f-4c59-9d8e-1f2a3b4c5d6e", "sourceName": "CPU above 90%",
    "subject": "CPU above 90% on Front desk server", "psaTicketId": None, "priority": "HIGH", "severity": "MAJOR",
    "conditionName": "CPU above 90% for 15 minutes", "conditionHealthStatus": "NEEDS_ATTENTION", "data": {},
    "device": DEVICE,
}

TRIGGERED = {
    "id": 7004211, "activityTime": 1748730000.5, "deviceId": 1042, "severity": "MAJOR", "priority": "HIGH",
    "seriesUid": "9b2f6f0e-5c1d-4f1e-8f0a-3d2c1b0a9e8d", "activityType": "CONDITION", "statusCode": "TRIGGERED",
    "status": "Triggered", "activityResult": "SUCCESS", "sourceConfigUid": "0d3c6a1e-7b2f-4c59-9d8e-1f2a3b4c5d6e",
    "sourceName": "CPU above 90%", "subject": "CPU above 90% on Front desk server",
    "message": "CPU at 97% for 15 minutes", "type": "Condition", "data": {},
}


def test_to_alert_maps_an_active_alert_with_its_device():
    assert to_alert(ALERT) == Alert(
        source="ninjaone", source_id="9b2f6f0e-5c1d-4f1e-8f0a-3d2c1b0a9e8d", client_source_id="7",
        device_source_id="1042", device_name="Front desk server", device_class="WINDOWS_SERVER",
        source_type="CONDITION_AGENT_CPU", condition="0d3c6a1e-7b2f-4c59-9d8e-1f2a3b4c5d6e", severity="MAJOR",
        priority="HIGH", message="CPU at 97% for 15 minutes",
        created_at=datetime(2025, 5, 31, 22, 20, 0, 500000, tzinfo=UTC),
        updated_at=datetime(2025, 5, 31, 23, 20, tzinfo=UTC))


def test_to_alert_without_a_device_has_no_client():
    raw = {k: v for k, v in ALERT.items() if k != "device"}
    alert = to_alert(raw)
    assert (alert.client_source_id, alert.device_source_id, alert.device_name, alert.device_class) == (
        "", "1042", "1042", "")


@pytest.mark.parametrize("drop, condition", [
    ((), "0d3c6a1e-7b2f-4c59-9d8e-1f2a3b4c5d6e"),
    (("sourceConfigUid",), "CPU above 90% for 15 minutes"),
    (("sourceConfigUid", "conditionName"), "CPU above 90%"),
    (("sourceConfigUid", "conditionName", "sourceName"), "CONDITION_AGENT_CPU"),
])
def test_to_alert_condition_falls_back(drop, condition):
    assert to_alert({k: v for k, v in ALERT.items() if k not in drop}).condition == condition


def test_to_alert_message_falls_back_to_the_subject_and_absent_fields_are_empty():
    raw = {"uid": "u-1", "deviceId": 5, "subject": "Device offline", "sourceType": "AGENT_OFFLINE"}
    alert = to_alert(raw)
    assert (alert.message, alert.severity, alert.priority, alert.created_at) == ("Device offline", "", "", None)


def test_to_alert_refuses_a_missing_uid_and_a_bad_timestamp():
    with pytest.raises(MappingError, match="without uid"):
        to_alert({k: v for k, v in ALERT.items() if k != "uid"})
    with pytest.raises(MappingError, match="9b2f6f0e.* timestamp"):
        to_alert({**ALERT, "createTime": "yesterday"})


def test_to_alert_event_maps_a_trigger_and_a_reset():
    assert to_alert_event(TRIGGERED) == AlertEvent(
        source="ninjaone", source_id="7004211", series_uid="9b2f6f0e-5c1d-4f1e-8f0a-3d2c1b0a9e8d",
        device_source_id="1042", status="triggered", occurred_at=datetime(2025, 5, 31, 22, 20, 0, 500000, tzinfo=UTC),
        severity="MAJOR", message="CPU at 97% for 15 minutes")
    reset = to_alert_event({**TRIGGERED, "id": 7004388, "statusCode": "RESET", "status": "Reset", "message": None})
    assert (reset.source_id, reset.status, reset.message) == ("7004388", "reset", "CPU above 90% on Front desk server")


@pytest.mark.parametrize("change", [
    {"statusCode": "COMPLETED"}, {"statusCode": "ACKNOWLEDGED"}, {"statusCode": None}, {"seriesUid": None},
])
def test_to_alert_event_skips_what_is_not_a_trigger_or_reset_of_a_series(change):
    assert to_alert_event({**TRIGGERED, **change}) is None


def test_to_alert_event_refuses_a_missing_time():
    with pytest.raises(MappingError, match="activity 7004211 .* no activityTime"):
        to_alert_event({k: v for k, v in TRIGGERED.items() if k != "activityTime"})
    with pytest.raises(MappingError, match="not epoch seconds"):
        to_alert_event({**TRIGGERED, "activityTime": "2025-06-01"})


# --- settings ----------------------------------------------------------------------------------

def config(**section):
    section = {"client_id": "sim-client-id", "client_secret_env": "NINJA_SECRET", **section}
    section = {k: v for k, v in section.items() if v is not None}
    return config_from_dict({"connectors": {"ninjaone": section}}, environ=ENV)


def test_settings_defaults():
    settings = NinjaOneSettings.from_config(config())
    assert (settings.base_url, settings.scope, settings.page_size) == ("https://app.ninjarmm.com", "monitoring", 1000)
    assert settings.client_id == "sim-client-id" and settings.client_secret.reveal() == "sim-client-secret"
    assert "sim-client-secret" not in repr(settings)


def test_settings_take_a_regional_host():
    settings = NinjaOneSettings.from_config(config(base_url="https://eu.ninjarmm.com/", page_size=250))
    assert settings.base_url == "https://eu.ninjarmm.com" and settings.page_size == 250


@pytest.mark.parametrize("section, key, fix", [
    ({"client_id": None}, "client_id", "Client ID"),
    ({"client_id": ""}, "client_id", "Client ID"),
    ({"page_size": 0}, "page_size", "page_size = 1000"),
    ({"page_size": 1001}, "page_size", "page_size = 1000"),
    ({"page_size": "100"}, "page_size", "page_size = 1000"),
    ({"page_size": True}, "page_size", "page_size = 1000"),
    ({"base_url": "app.ninjarmm.com"}, "base_url", "instance host"),
    ({"base_url": "https://app.ninjarmm.com/api/v2"}, "base_url", "drop the path"),
    ({"scope": "management"}, "scope", "monitoring"),
    ({"scope": "monitoring everything"}, "scope", "monitoring"),
    ({"page-size": 10}, "page-size", "use one of"),
    ({"client_secret": "inline"}, "client_secret", "client_secret_env"),
    ({"client_secret_env": None}, "client_secret", "client_secret_env"),
    ({"client_secret_env": "UNSET_VARIABLE"}, "client_secret_env", "export UNSET_VARIABLE"),
])
def test_settings_errors_name_the_key_and_the_fix(section, key, fix):
    with pytest.raises(ConfigError) as info:
        NinjaOneSettings.from_config(config(**section))
    assert info.value.key == f"connectors.ninjaone.{key}"
    assert fix in info.value.fix


# --- hook --------------------------------------------------------------------------------------

def test_hook_register_connectors_returns_nothing_without_a_section():
    pm = get_plugin_manager(plugin, load_entrypoints=False)
    assert pm.hook.register_connectors(config=config_from_dict({})) == [[]]


def test_hook_register_connectors_returns_the_connector():
    pm = get_plugin_manager(plugin, load_entrypoints=False)
    [[connector]] = pm.hook.register_connectors(config=config())
    try:
        assert connector.name == "ninjaone" and connector.action_kinds == frozenset()
        assert [(s.connector, s.name, s.table) for s in connector.streams()] == [
            ("ninjaone", "clients", "clients"), ("ninjaone", "devices", "devices"),
            ("ninjaone", "alerts", "alerts"), ("ninjaone", "alert_events", "alert_events")]
    finally:
        connector.close()


# --- streams -----------------------------------------------------------------------------------

def connector_for(sim: NinjaOneSimulator, page_size: int = 10) -> NinjaOneConnector:
    settings = NinjaOneSettings.from_config(config(page_size=page_size))
    return NinjaOneConnector(settings, http=mock_client(sim.handler),
                             retrying=lambda: retry_policy(sleep=lambda s: None))


def stream(connector: NinjaOneConnector, name: str):
    return next(s for s in connector.streams() if s.name == name)


def test_devices_stream_sweeps_with_after_cursors_and_ends_with_swept_at():
    sim = NinjaOneSimulator(seed=3, organizations=2, devices=25)
    pages = list(stream(connector_for(sim), "devices").iter_pages(None, RUN_START))
    ids = sim.device_ids
    assert [len(p.records) for p in pages] == [10, 10, 5]
    assert [p.cursor for p in pages] == [{"after": ids[9], "read": 10}, {"after": ids[19], "read": 20},
                                         {"swept_at": "2025-06-01T12:00:00+00:00"}]
    assert [p.sweep_count for p in pages] == [None, None, 25]
    assert all(isinstance(d, Device) for p in pages for d in p.records)
    assert [d.source_id for p in pages for d in p.records] == [str(i) for i in ids]


def test_devices_stream_resumes_from_an_after_cursor():
    sim = NinjaOneSimulator(seed=3, organizations=2, devices=25)
    after = sim.device_ids[14]
    pages = list(stream(connector_for(sim), "devices").iter_pages({"after": after}, RUN_START))
    assert [d.source_id for p in pages for d in p.records] == [str(i) for i in sim.device_ids[15:]]
    assert pages[-1].cursor == {"swept_at": RUN_START.isoformat()}


def test_a_resumed_sweep_counts_on_from_its_cursor():
    sim = NinjaOneSimulator(seed=3, organizations=2, devices=25)
    after = sim.device_ids[9]
    pages = list(stream(connector_for(sim), "devices").iter_pages({"after": after, "read": 10}, RUN_START))
    assert [p.cursor for p in pages[:-1]] == [{"after": sim.device_ids[19], "read": 20}]
    assert pages[-1].sweep_count == 25


def test_a_sweep_resumed_from_a_cursor_without_a_count_gives_no_sweep_count():
    sim = NinjaOneSimulator(seed=3, organizations=2, devices=25)
    pages = list(stream(connector_for(sim), "devices").iter_pages({"after": sim.device_ids[9]}, RUN_START))
    assert [p.cursor for p in pages[:-1]] == [{"after": sim.device_ids[19]}]
    assert [p.sweep_count for p in pages] == [None, None]


def test_the_clients_sweep_counts_organizations():
    sim = NinjaOneSimulator(seed=3, organizations=3, devices=0)
    pages = list(stream(connector_for(sim, page_size=2), "clients").iter_pages(None, RUN_START))
    assert [p.sweep_count for p in pages] == [None, 3]


@pytest.mark.parametrize("shape", [{"max_page_size": 7}, {"short": 3}])
def test_every_device_is_stored_when_the_server_caps_or_cuts_pages(shape):
    sim = NinjaOneSimulator(seed=5, organizations=3, devices=95, max_page_size=shape.get("max_page_size"))
    if "short" in shape:
        sim.short_page_next("/v2/devices-detailed", drop=shape["short"], times=2)
    hub = make_hub(ConnectorPlugin(connector_for(sim, page_size=20)))
    report = RunReport("r1", "sync", RUN_START)
    pull(hub, report, streams=["devices"])
    assert not report.errors
    assert sorted(int(r["source_id"]) for r in hub.store.rows("devices")) == sim.device_ids
    assert hub.store.get_cursor("ninjaone", "devices") == {"swept_at": RUN_START.isoformat()}
    hub.close()


def test_a_short_page_does_not_end_the_sweep():
    sim = NinjaOneSimulator(seed=5, organizations=3, devices=25, max_page_size=4)
    pages = list(stream(connector_for(sim, page_size=10), "devices").iter_pages(None, RUN_START))
    assert [len(p.records) for p in pages] == [4, 4, 4, 4, 4, 4, 1]
    assert pages[-1].sweep_count == 25


@pytest.mark.parametrize("stripped, message", [
    ("id", "device without an id"), ("organizationId", "has no organizationId")])
def test_a_device_that_cannot_be_billed_is_set_aside_and_the_sweep_goes_on(stripped, message):
    sim = NinjaOneSimulator(seed=5, organizations=2, devices=25)
    odd = sim.device_ids[12]  # in the middle of the second page
    sim.strip_device_fields(odd, stripped)
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    report = RunReport("r1", "sync", RUN_START)
    pull(hub, report, streams=["devices"])
    stored = sorted(int(r["source_id"]) for r in hub.store.rows("devices"))
    assert stored == [i for i in sim.device_ids if i != odd]
    [error] = report.errors
    assert message in error and "set aside" in error and "fix:" in error
    assert (str(odd) in error) if stripped != "id" else "(no id" not in error and "organization" in error
    assert hub.store.get_cursor("ninjaone", "devices") == {"swept_at": RUN_START.isoformat()}
    hub.close()


def test_devices_stream_starts_a_fresh_sweep_after_a_finished_one():
    sim = NinjaOneSimulator(seed=3, organizations=2, devices=25)
    devices = stream(connector_for(sim), "devices")
    pages = list(devices.iter_pages({"swept_at": "2025-05-31T12:00:00+00:00"}, RUN_START))
    assert sum(len(p.records) for p in pages) == 25


def test_a_full_last_page_still_ends_with_swept_at():
    sim = NinjaOneSimulator(seed=3, organizations=1, devices=20)
    pages = list(stream(connector_for(sim), "devices").iter_pages(None, RUN_START))
    assert [len(p.records) for p in pages] == [10, 10]
    assert pages[-1].cursor == {"swept_at": RUN_START.isoformat()}


def test_an_empty_sweep_yields_one_empty_page_with_swept_at():
    sim = NinjaOneSimulator(organizations=0, devices=0)
    pages = list(stream(connector_for(sim), "clients").iter_pages(None, RUN_START))
    assert pages == [Page([], {"swept_at": RUN_START.isoformat()}, sweep_count=0)]


def test_clients_stream_maps_organizations():
    sim = NinjaOneSimulator(seed=3, organizations=3, devices=0)
    [page] = stream(connector_for(sim), "clients").iter_pages(None, RUN_START)
    assert [c.name for c in page.records] == ["Acme Dental", "Birchwood Legal", "Cobalt Logistics"]


def test_every_simulated_device_maps():
    sim = NinjaOneSimulator(seed=4, organizations=5, devices=500)
    pages = list(stream(connector_for(sim, page_size=1000), "devices").iter_pages(None, RUN_START))
    devices = pages[-1].records
    assert len(devices) == 500 and {d.approval_status for d in devices} == {"approved", "pending"}
    assert {d.client_source_id for d in devices} <= {str(i) for i in sim.organization_ids}


def test_a_device_changed_in_ninjaone_is_seen_by_the_next_sweep():
    sim = NinjaOneSimulator(seed=3, organizations=1, devices=5)
    devices = stream(connector_for(sim), "devices")
    target = sim.device_ids[2]
    sim.set_approval(target, "DECOMMISSIONED")
    [page] = devices.iter_pages(None, RUN_START)
    assert {d.source_id: d.approval_status for d in page.records}[str(target)] == "decommissioned"


def test_alerts_stream_is_one_complete_page_of_every_active_alert():
    sim = NinjaOneSimulator(seed=3, organizations=2, devices=25, alerts=12)
    [page] = stream(connector_for(sim), "alerts").iter_pages({"listed_at": "2025-05-31T12:00:00+00:00"}, RUN_START)
    assert page.complete and page.cursor == {"listed_at": RUN_START.isoformat()}
    assert [a.source_id for a in page.records] == sim.alert_uids and len(page.records) == 12
    assert {a.client_source_id for a in page.records} <= {str(i) for i in sim.organization_ids}


def test_no_active_alert_is_still_a_complete_page():
    sim = NinjaOneSimulator(seed=3, organizations=2, devices=5)
    assert list(stream(connector_for(sim), "alerts").iter_pages(None, RUN_START)) == [
        Page([], {"listed_at": RUN_START.isoformat()}, complete=True)]


def test_alert_events_first_run_reads_back_then_follows_the_cursor():
    sim = NinjaOneSimulator(seed=3, organizations=2, devices=25, alerts=3)
    events = stream(connector_for(sim), "alert_events")
    pages = list(events.iter_pages(None, RUN_START))
    log = [a for a in sim.activities if a["statusCode"] in ("TRIGGERED", "RESET")]
    assert [e.source_id for p in pages for e in p.records] == [str(a["id"]) for a in log]
    assert pages[-1].cursor == {"newer_than": log[-1]["id"]}
    uid = sim.alert_uids[0]
    sim.reset_alert(uid)
    sim.add_activity(sim.device_ids[0])                       # not an alert: never asked for
    [page] = events.iter_pages(pages[-1].cursor, RUN_START)
    assert [(e.series_uid, e.status) for e in page.records] == [(uid, "reset")]
    assert page.cursor == {"newer_than": sim.activities[-2]["id"]}
    assert list(events.iter_pages(page.cursor, RUN_START)) == []


def test_alert_events_pages_carry_their_last_activity_id():
    sim = NinjaOneSimulator(seed=3, organizations=2, devices=25)
    sim.alert_storm(25)
    cursor = {"newer_than": sim.activities[0]["id"]}
    pages = list(stream(connector_for(sim), "alert_events").iter_pages(cursor, RUN_START))
    assert [len(p.records) for p in pages] == [10, 10, 4]
    assert [p.cursor["newer_than"] for p in pages] == [int(p.records[-1].source_id) for p in pages]


def test_alert_events_of_a_quiet_tenant_start_after_its_newest_activity():
    sim = NinjaOneSimulator(seed=3, organizations=2, devices=5)
    sim.add_activity(sim.device_ids[0])
    events = stream(connector_for(sim), "alert_events")
    [page] = events.iter_pages(None, RUN_START)
    assert page == Page([], {"newer_than": sim.activities[-1]["id"]})
    uid = sim.trigger_alert(sim.device_ids[1])
    assert [e.series_uid for p in events.iter_pages(page.cursor, RUN_START) for e in p.records] == [uid]


def pull_alerts(hub) -> RunReport:
    report = RunReport("alerts", "sync", RUN_START)
    pull(hub, report, streams=["alerts", "alert_events"])
    assert not report.errors, report.errors
    return report


def test_a_reset_is_seen_in_the_events_after_the_alert_left_the_active_list():
    sim = NinjaOneSimulator(seed=3, organizations=2, devices=25)
    connector = connector_for(sim)
    hub = make_hub(ConnectorPlugin(connector))
    rows = lambda table: {r["source_id"]: r for r in hub.store.db[table].rows}  # noqa: E731
    try:
        pull_alerts(hub)                                       # a quiet tenant: the cursors start here
        stays, goes = sim.trigger_alert(sim.device_ids[0]), sim.trigger_alert(sim.device_ids[1])
        pull_alerts(hub)
        assert {u: r["active"] for u, r in rows("alerts").items()} == {stays: 1, goes: 1}
        sim.reset_alert(goes)
        flapped = sim.flap_alert(sim.device_ids[2])             # came and went between two runs
        pull_alerts(hub)
        assert {u: r["active"] for u, r in rows("alerts").items()} == {stays: 1, goes: 0}
        events = sorted((r["series_uid"], r["status"]) for r in rows("alert_events").values())
        assert events == sorted([(stays, "triggered"), (goes, "triggered"), (goes, "reset"),
                                 (flapped, "triggered"), (flapped, "reset")])
    finally:
        hub.close()


def test_alert_streams_survive_faults():
    sim = NinjaOneSimulator(seed=3, organizations=2, devices=25, alerts=5)
    sim.alert_storm(30)
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    try:
        sim.fail_next(429, retry_after=0, path="/v2/alerts")
        sim.garbage_next(path="/v2/alerts")
        sim.timeout_next(path="/v2/activities")
        sim.fail_next(500, times=2, path="/v2/activities")
        sim.garbage_next(path="/v2/activities")
        pull_alerts(hub)
        assert hub.store.count("alerts") == 35
        assert hub.store.count("alert_events") == 7 + 2 + 30    # seeded triggers and resets, the storm
    finally:
        hub.close()


def test_push_is_not_supported():
    with pytest.raises(NotImplementedError):
        connector_for(NinjaOneSimulator()).push(None, None)


def test_plugin_conforms():
    sim = NinjaOneSimulator(seed=0, alerts=3)
    connector = connector_for(sim)
    try:
        hub.testing.assert_plugin_conforms(connector, sim)
    finally:
        connector.close()


@pytest.mark.parametrize("offset", [3600, -3600])
def test_what_changes_between_two_runs_is_pulled_whatever_the_clocks_say(offset):
    # The tenant's clock an hour ahead of the hub's, or an hour behind: no NinjaOne read depends
    # on the hub's clock (sweeps read everything, the activity log follows activity ids).
    sim = NinjaOneSimulator(seed=3, organizations=2, devices=25, alerts=3, clock_offset=offset)
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    first = RunReport("r1", "sync", datetime.now(UTC))
    pull(hub, first)
    assert not first.errors
    org = sim.organization_ids[0]
    device = sim.add_device(org, "WINDOWS_SERVER", name="NEW-SRV")
    uid = sim.trigger_alert(device)
    gone = sim.alert_uids[0]
    sim.reset_alert(gone)
    second = RunReport("r2", "sync", datetime.now(UTC))
    pull(hub, second)
    assert not second.errors
    assert str(device) in {r["source_id"] for r in hub.store.rows("devices")}
    events = {(r["series_uid"], r["status"]) for r in hub.store.rows("alert_events")}
    assert (uid, "triggered") in events and (gone, "reset") in events
    active = {r["source_id"]: r["active"] for r in hub.store.rows("alerts")}
    assert (active[uid], active[gone]) == (1, 0)
    hub.close()


def test_every_answer_carries_a_date_header_on_the_simulator_clock():
    sim = NinjaOneSimulator(seed=3, organizations=1, devices=2, clock_offset=-3600)
    request = httpx.Request("GET", "https://eu.ninjarmm.com/v2/devices")
    served = parsedate_to_datetime(sim.handler(request).headers["Date"]).timestamp()
    assert abs(served - (time.time() - 3600)) < 5
    sim.now = 1_748_736_000.0          # setting now stops the clock again
    assert parsedate_to_datetime(sim.handler(request).headers["Date"]).timestamp() == 1_748_736_000.0


@pytest.mark.parametrize("status", [429, 404])
def test_a_page_refused_past_the_retries_fails_the_sweep_and_keeps_the_cursor(status):
    sim = NinjaOneSimulator(seed=3, organizations=2, devices=25)
    hub = make_hub(ConnectorPlugin(connector_for(sim)))
    answer, asked = sim.handler, []

    def third_page_refused(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/devices-detailed":
            asked.append(request)
            if len(asked) >= 3:
                return httpx.Response(status, json={"resultCode": "FAILURE"}, headers={"Retry-After": "0"})
        return answer(request)

    hub.connectors["ninjaone"].client._http = mock_client(third_page_refused)
    report = RunReport("r1", "sync", RUN_START)
    pull(hub, report, streams=["devices"])
    [error] = report.errors
    assert f"HTTP {status}" in error and "ninjaone.devices" in error
    assert hub.store.count("devices") == 10    # the first page; the second waits for the next page's answer
    assert hub.store.get_cursor("ninjaone", "devices") == {"after": sim.device_ids[9], "read": 10}
    hub.close()
