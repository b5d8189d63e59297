"""NinjaOne report streams (antivirus, device health, patches, backup jobs) and device warranties:
mapping on literal dicts, the report cursor with respx, the streams end to end against the simulator."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import httpx
import pytest
import respx

import hub.testing
from hub import ConfigError, MappingError, VendorError
from hub.completeness import Gate
from hub.config import Secret, config_from_dict
from hub.engine import RunReport, pull
from hub.errors import IncompleteError, MalformedResponseError
from hub.http import retry_policy
from hub.records import AntivirusStatus, BackupJob, DeviceHealth, Patch
from hub.testing import ConnectorPlugin, make_hub, mock_client
from plugins.ninjaone.client import NinjaOneClient
from plugins.ninjaone.plugin import (
    REPORT_STREAMS,
    NinjaOneConnector,
    NinjaOneSettings,
    to_antivirus,
    to_backup_job,
    to_device,
    to_device_health,
    to_patch,
)
from plugins.ninjaone.simulator import DAY, DEFAULT_NOW, NinjaOneSimulator

UTC = timezone.utc
ENV = {"NINJA_SECRET": "sim-client-secret"}
ORGS = {"1042": "7"}
BASE = "https://eu.ninjarmm.com"
# The simulator's clock (2025-06-01T00:00Z) and a run shortly after it.
SIM_NOW = datetime.fromtimestamp(DEFAULT_NOW, UTC)
RUN_START = SIM_NOW + timedelta(hours=1)


def config(**section):
    section = {"client_id": "sim-client-id", "client_secret_env": "NINJA_SECRET", **section}
    return config_from_dict({"connectors": {"ninjaone": section}}, environ=ENV)


def connector_for(sim: NinjaOneSimulator, page_size: int = 10, **section) -> NinjaOneConnector:
    section = {"report_streams": True, "report_interval": 0, **section}
    settings = NinjaOneSettings.from_config(config(page_size=page_size, **section))
    return NinjaOneConnector(settings, http=mock_client(sim.handler),
                             retrying=lambda: retry_policy(sleep=lambda s: None))


def stream(connector: NinjaOneConnector, name: str):
    return next(s for s in connector.streams() if s.name == name)


def report_requests(sim: NinjaOneSimulator) -> int:
    return sum(n for path, n in sim.requests_by_path.items() if path.startswith(("/v2/queries/", "/v2/backup/")))


# --- mapping -----------------------------------------------------------------------------------

def test_to_antivirus_keys_a_product_of_a_device_and_keeps_the_vendor_words():
    raw = {"productName": "Windows Defender", "productState": "ON", "definitionStatus": "OUT_OF_DATE",
           "version": "4.18.2302.7", "deviceId": 1042, "timestamp": 1748736000.5}
    assert to_antivirus(raw, ORGS) == AntivirusStatus(
        "ninjaone", "1042:Windows Defender", "7", "1042", "Windows Defender", "ON", "OUT_OF_DATE",
        datetime(2025, 6, 1, 0, 0, 0, 500000, tzinfo=UTC))


@pytest.mark.parametrize("raw, words", [
    ({"productState": "ON", "deviceId": 1042}, "names no product"),
    ({"productName": "Defender"}, "without a deviceId"),
    ({"productName": "Defender", "deviceId": 9999}, "device 9999: the device is not among the devices read"),
    ({"productName": "Defender", "deviceId": 1042, "timestamp": "yesterday"}, "not epoch seconds"),
])
def test_to_antivirus_rejects_what_it_cannot_key_or_place(raw, words):
    with pytest.raises(MappingError, match=words):
        to_antivirus(raw, ORGS)


OS_PATCH = {"id": "6d1b0a8e-3c55-4d8b-9b1a-0f7d2a3c4b5e", "name": "KB5034441 Security Update",
            "severity": "CRITICAL", "status": "APPROVED", "type": "SECURITY_UPDATES", "kbNumber": "KB5034441",
            "deviceId": 1042, "timestamp": 1748736000.0}
SOFTWARE_PATCH = {"id": "0e5c4b2a-7f61-4f0e-8a55-2d9c1b3e4f70", "productIdentifier": "a-product",
                  "title": "Google Chrome 125.0", "impact": "RECOMMENDED", "status": "PENDING", "type": "PATCH",
                  "deviceId": 1042, "timestamp": 1748736000.0}


def test_to_patch_maps_a_waiting_os_patch_by_its_kb_number():
    assert to_patch(OS_PATCH, ORGS, "os", installs=False) == Patch(
        "ninjaone", "os:1042:6d1b0a8e-3c55-4d8b-9b1a-0f7d2a3c4b5e", "7", "1042", "os", "KB5034441",
        "KB5034441 Security Update", "CRITICAL", "approved", None, datetime(2025, 6, 1, tzinfo=UTC))


def test_to_patch_maps_a_software_installation_with_its_time():
    raw = {**SOFTWARE_PATCH, "status": "FAILED", "installedAt": 1748700000.0}
    patch = to_patch(raw, ORGS, "software", installs=True)
    assert patch == Patch("ninjaone", "software:1042:0e5c4b2a-7f61-4f0e-8a55-2d9c1b3e4f70:2025-05-31T14:00:00+00:00",
                          "7", "1042", "software", "0e5c4b2a-7f61-4f0e-8a55-2d9c1b3e4f70", "Google Chrome 125.0",
                          "RECOMMENDED", "failed", datetime(2025, 5, 31, 14, tzinfo=UTC),
                          datetime(2025, 6, 1, tzinfo=UTC))


@pytest.mark.parametrize("word, installs, expected", [
    ("PENDING", False, "pending"), ("APPROVED", False, "approved"), ("REJECTED", False, "rejected"),
    ("MANUAL", False, "manual"), ("FAILED", False, "failed"), ("INSTALLED", True, "installed"),
    ("FAILED", True, "failed"),
])
def test_to_patch_statuses_in_hub_words(word, installs, expected):
    raw = {**OS_PATCH, "status": word, "installedAt": 1748700000.0}
    assert to_patch(raw, ORGS, "os", installs=installs).status == expected


@pytest.mark.parametrize("raw, installs, words", [
    ({**OS_PATCH, "status": "SCHEDULED"}, False, "status 'SCHEDULED', not one of PENDING"),
    ({**OS_PATCH, "status": "PENDING", "installedAt": 1.0}, True, "status 'PENDING', not one of INSTALLED, FAILED"),
    ({**OS_PATCH, "status": "INSTALLED"}, True, "installation without installedAt"),
    ({k: v for k, v in OS_PATCH.items() if k not in ("id", "kbNumber")}, False, "neither id nor kbNumber"),
])
def test_to_patch_rejects_with_a_reason(raw, installs, words):
    with pytest.raises(MappingError, match=words):
        to_patch(raw, ORGS, "os", installs=installs)


def test_to_device_health_maps_the_summary():
    raw = {"deviceId": 1042, "healthStatus": "NEEDS_ATTENTION", "offline": True, "activeThreatsCount": 2,
           "failedOSPatchesCount": 1, "pendingOSPatchesCount": 4, "pendingRebootReason": "Updates installed"}
    assert to_device_health(raw, ORGS) == DeviceHealth("ninjaone", "1042", "7", "1042", "needs_attention", True,
                                                       2, 1, 4, True)
    assert to_device_health({"deviceId": 1042}, ORGS) == DeviceHealth("ninjaone", "1042", "7", "1042", "unknown")


@pytest.mark.parametrize("raw, words", [
    ({"deviceId": 1042, "healthStatus": "GREAT"}, "healthStatus 'GREAT'"),
    ({"deviceId": 1042, "activeThreatsCount": "2"}, "activeThreatsCount '2', not a count"),
    ({"deviceId": 1042, "offline": "no"}, "offline 'no'"),
])
def test_to_device_health_rejects_what_it_cannot_read(raw, words):
    with pytest.raises(MappingError, match=words):
        to_device_health(raw, ORGS)


def test_to_backup_job_maps_a_job_with_its_own_organization():
    raw = {"jobId": "j-1", "jobStartTime": 1748700000.0, "jobEndTime": 1748701800.0, "jobStatus": "COMPLETED",
           "planType": "IMAGE", "organizationId": 3, "deviceId": 55}
    assert to_backup_job(raw) == BackupJob("ninjaone", "j-1", "3", "55", "IMAGE", "completed",
                                           datetime(2025, 5, 31, 14, tzinfo=UTC),
                                           datetime(2025, 5, 31, 14, 30, tzinfo=UTC))
    assert to_backup_job({**raw, "jobStatus": "FAILED"}).status == "failed"
    assert to_backup_job({**raw, "jobStatus": "PARTIALLY_COMPLETED"}).status == "partially_completed"
    with pytest.raises(MappingError, match="has no organizationId"):
        to_backup_job({k: v for k, v in raw.items() if k != "organizationId"})
    with pytest.raises(MappingError, match="has no jobStatus"):
        to_backup_job({k: v for k, v in raw.items() if k != "jobStatus"})


DEVICE = {"id": 1042, "organizationId": 7, "nodeClass": "WINDOWS_SERVER", "approvalStatus": "APPROVED",
          "displayName": "SRV-01"}


def test_to_device_reads_the_warranty_of_a_detailed_record_as_iso_dates():
    raw = {**DEVICE, "references": {"warranty": {"startDate": 1672531200.0, "endDate": 1767225600.0}}}
    device = to_device(raw)
    assert (device.warranty_start, device.warranty_end) == ("2023-01-01", "2026-01-01")
    flat = to_device({**DEVICE, "warrantyStartDate": 1672531200, "warrantyEndDate": None})
    assert (flat.warranty_start, flat.warranty_end) == ("2023-01-01", None)
    assert (to_device(DEVICE).warranty_start, to_device(DEVICE).warranty_end) == (None, None)


def test_an_unreadable_warranty_is_unknown_and_the_device_is_kept():
    raw = {**DEVICE, "references": {"warranty": {"startDate": "2023-01-01", "endDate": 1767225600.0}}}
    device = to_device(raw)
    assert device.source_id == "1042" and (device.warranty_start, device.warranty_end) == (None, "2026-01-01")


# --- settings ----------------------------------------------------------------------------------

def test_report_streams_are_off_by_default():
    settings = NinjaOneSettings.from_config(config())
    assert settings.report_streams == () and settings.report_interval == 12.0
    connector = NinjaOneConnector(settings)
    try:
        assert [s.name for s in connector.streams()] == ["clients", "devices", "alerts", "alert_events"]
    finally:
        connector.close()


def test_report_streams_true_or_a_list():
    assert NinjaOneSettings.from_config(config(report_streams=True)).report_streams == REPORT_STREAMS
    chosen = NinjaOneSettings.from_config(config(report_streams=["backup_jobs", "antivirus"])).report_streams
    assert chosen == ("antivirus", "backup_jobs")
    connector = NinjaOneConnector(NinjaOneSettings.from_config(config(report_streams=True)))
    try:
        assert [(s.name, s.table) for s in connector.streams()][4:] == [
            ("antivirus", "antivirus"), ("device_health", "device_health"), ("os_patches", "patches"),
            ("software_patches", "patches"), ("os_patch_installs", "patches"),
            ("software_patch_installs", "patches"), ("backup_jobs", "backups")]
    finally:
        connector.close()


@pytest.mark.parametrize("section, key, words", [
    ({"report_streams": "yes"}, "report_streams", "must be true, false or a list"),
    ({"report_streams": ["antivirus", "tickets"]}, "report_streams", "unknown stream 'tickets'"),
    ({"report_interval": -1}, "report_interval", "number of hours from 0 to 744"),
    ({"report_interval": "daily"}, "report_interval", "number of hours"),
])
def test_report_settings_errors_name_the_key(section, key, words):
    with pytest.raises(ConfigError, match=words) as caught:
        NinjaOneSettings.from_config(config(**section))
    assert caught.value.key == f"connectors.ninjaone.{key}"


# --- the report cursor (respx) -----------------------------------------------------------------

def respx_client(page_size: int = 2) -> NinjaOneClient:
    return NinjaOneClient(BASE, "id", Secret("secret", "test"), page_size=page_size,
                          retrying=lambda: retry_policy(sleep=lambda s: None))


def answer(results, name="c1", offset=0):
    cursor = None if name is None else {"name": name, "offset": offset, "count": len(results), "expires": 1.0e10}
    return httpx.Response(200, json={"cursor": cursor, "results": results})


def test_a_report_pages_by_cursor_name_until_an_empty_page():
    with respx.mock(base_url=BASE) as router:
        router.post("/ws/oauth/token").respond(200, json={"access_token": "tok", "expires_in": 3600})
        route = router.get("/v2/queries/os-patch-installs").mock(side_effect=[
            answer([{"deviceId": 1}, {"deviceId": 2}]), answer([{"deviceId": 3}], offset=2), answer([], offset=3)])
        pages = list(respx_client().iter_report("/v2/queries/os-patch-installs", {"installedAfter": "2025-01-01"}))
    assert pages == [[{"deviceId": 1}, {"deviceId": 2}], [{"deviceId": 3}]]
    sent = [dict(c.request.url.params) for c in route.calls]
    assert sent == [{"installedAfter": "2025-01-01", "pageSize": "2"},
                    {"installedAfter": "2025-01-01", "pageSize": "2", "cursor": "c1"},
                    {"installedAfter": "2025-01-01", "pageSize": "2", "cursor": "c1"}]


def test_a_short_page_without_a_cursor_ends_the_report():
    with respx.mock(base_url=BASE) as router:
        router.post("/ws/oauth/token").respond(200, json={"access_token": "tok", "expires_in": 3600})
        route = router.get("/v2/queries/antivirus-status").mock(side_effect=[answer([{"deviceId": 1}], name=None)])
        assert list(respx_client().iter_report("/v2/queries/antivirus-status")) == [[{"deviceId": 1}]]
    assert route.call_count == 1


def test_a_full_page_without_a_cursor_fails_the_read_rather_than_stop_short():
    with respx.mock(base_url=BASE) as router:
        router.post("/ws/oauth/token").respond(200, json={"access_token": "tok", "expires_in": 3600})
        router.get("/v2/queries/device-health").mock(side_effect=[answer([{"deviceId": 1}, {"deviceId": 2}], name=None)])
        with pytest.raises(IncompleteError, match="a full page of 2 records came without a cursor"):
            list(respx_client().iter_report("/v2/queries/device-health"))


@pytest.mark.parametrize("second", [
    answer([{"deviceId": 3}, {"deviceId": 4}], offset=0),                # the offset did not move
    answer([{"deviceId": 1}, {"deviceId": 2}], offset=None),             # the very same page again
])
def test_a_cursor_that_is_not_honoured_fails_the_read(second):
    with respx.mock(base_url=BASE) as router:
        router.post("/ws/oauth/token").respond(200, json={"access_token": "tok", "expires_in": 3600})
        router.get("/v2/queries/device-health").mock(side_effect=[answer([{"deviceId": 1}, {"deviceId": 2}]), second])
        pages = respx_client().iter_report("/v2/queries/device-health")
        assert next(pages) == [{"deviceId": 1}, {"deviceId": 2}]
        with pytest.raises(IncompleteError, match="assumption broken: a report pages by the cursor name"):
            next(pages)


def test_an_answer_that_is_not_a_report_is_malformed():
    with respx.mock(base_url=BASE) as router:
        router.post("/ws/oauth/token").respond(200, json={"access_token": "tok", "expires_in": 3600})
        router.get("/v2/backup/jobs").respond(200, json={"cursor": None, "results": {"jobId": "x"}})
        with pytest.raises(MalformedResponseError, match="results"):
            list(respx_client().iter_report("/v2/backup/jobs"))


# --- streams against the simulator -------------------------------------------------------------

def test_plugin_conforms_with_the_report_streams_on():
    # The check runs on the real clock: so does the tenant, so that installations fall in the lookback.
    sim = NinjaOneSimulator(seed=0, alerts=3, clock_offset=0)
    connector = connector_for(sim)
    try:
        hub.testing.assert_plugin_conforms(connector, sim)
    finally:
        connector.close()


def synced(sim: NinjaOneSimulator, at: datetime = RUN_START, hub=None, **section):
    hub = hub or make_hub(ConnectorPlugin(connector_for(sim, **section)))
    report = RunReport(f"run-{at.isoformat()}", "sync", at)
    pull(hub, report)
    return hub, report


def active(hub, table: str) -> list[dict]:
    return [r for r in hub.store.rows(table) if r["active"]]


def test_a_sync_stores_every_report_record_of_the_simulator():
    sim = NinjaOneSimulator(seed=4, organizations=3, devices=40)
    hub, report = synced(sim)
    assert not report.errors
    devices = sim.device_ids
    orgs = {str(i): str(sim.device(i)["organizationId"]) for i in devices}
    antivirus = [p for i in devices for p in sim.antivirus(i)]
    assert 0 < len(antivirus) < len(devices)          # some devices have no antivirus
    rows = {r["source_id"]: r for r in hub.store.rows("antivirus")}
    assert rows.keys() == {f"{p['deviceId']}:{p['productName']}" for p in antivirus}
    assert all(r["client_source_id"] == orgs[r["device_source_id"]] for r in rows.values())

    health = {r["source_id"]: r for r in hub.store.rows("device_health")}
    assert health.keys() == set(orgs)
    assert {r["health"] for r in health.values()} >= {"healthy", "unhealthy"}
    some = devices[0]
    assert health[str(some)]["pending_os_patches"] == sim.health(some)["pendingOSPatchesCount"]

    patches = hub.store.rows("patches")
    waiting = [p for i in devices for k in ("os", "software") for p in sim.waiting_patches(i, k)]
    assert sorted(r["source_id"] for r in patches if r["installed_at"] is None) == sorted(
        f"{'os' if 'kbNumber' in p else 'software'}:{p['deviceId']}:{p['id']}" for p in waiting)
    installs = sim.patch_installs("os") + sim.patch_installs("software")
    stored = [r for r in patches if r["installed_at"] is not None]
    assert len(stored) == len(installs) and {r["status"] for r in stored} == {"installed", "failed"}

    jobs = sim.backup_jobs()
    backups = {r["source_id"]: r for r in hub.store.rows("backups")}
    assert backups.keys() == {j["jobId"] for j in jobs}
    assert {r["status"] for r in backups.values()} == {"completed", "failed"}
    assert all(r["client_source_id"] == orgs[r["device_source_id"]] for r in backups.values())


def test_device_warranties_come_with_the_devices_sweep():
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20)
    device = sim.device_ids[0]
    sim.set_warranty(device, 1672531200.0, 1767225600.0)
    hub, report = synced(sim)
    rows = {r["source_id"]: r for r in hub.store.rows("devices")}
    assert (rows[str(device)]["warranty_start"], rows[str(device)]["warranty_end"]) == ("2023-01-01", "2026-01-01")
    assert any(r["warranty_end"] is None for r in rows.values())   # some devices report none
    assert sim.requests_by_path["/v2/devices"] == 0   # the report streams used the sweep of this run


def test_installations_are_read_incrementally_from_a_date_before_the_last_run():
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20)
    connector = connector_for(sim, report_streams=["os_patch_installs"])
    hub, _ = synced(sim, hub=make_hub(ConnectorPlugin(connector)))
    first = len(hub.store.rows("patches"))
    assert first == len(sim.patch_installs("os"))
    queries = [q for _, path, q in sim.log if path == "/v2/queries/os-patch-installs" and "cursor" not in q]
    assert queries[-1]["installedAfter"] == (RUN_START - timedelta(days=190)).date().isoformat()

    device = sim.device_ids[1]
    added = sim.add_patch_install(device, "os", "FAILED", at=DEFAULT_NOW + 3 * DAY)
    later = RUN_START + timedelta(days=3, hours=2)
    sim.now = later.timestamp()
    before = len(sim.log)
    hub, report = synced(sim, later, hub=hub)
    assert not report.errors
    new = [q for _, path, q in list(sim.log)[before:] if path == "/v2/queries/os-patch-installs"]
    assert new[0]["installedAfter"] == (RUN_START - timedelta(days=2)).date().isoformat()
    # Only what was installed since that date was read again, and the new failure is stored.
    assert report.records["ninjaone.os_patch_installs"] == 1
    assert len(hub.store.rows("patches")) == first + 1
    key = f"os:{device}:{added['id']}:{datetime.fromtimestamp(added['installedAt'], UTC).isoformat()}"
    assert [r["status"] for r in hub.store.rows("patches") if r["source_id"] == key] == ["failed"]
    assert hub.store.get_cursor("ninjaone", "os_patch_installs")["installed_after"] == \
        (later - timedelta(days=2)).date().isoformat()


def test_snapshot_streams_mark_what_left_the_report_inactive():
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20)
    hub, _ = synced(sim)
    covered = next(i for i in sim.device_ids if sim.antivirus(i))
    before = len(active(hub, "antivirus"))
    sim.set_antivirus(covered)   # the antivirus was removed
    hub, report = synced(sim, RUN_START + timedelta(hours=1), hub=hub)
    assert not report.errors
    assert len(active(hub, "antivirus")) == before - 1
    assert not [r for r in active(hub, "antivirus") if r["device_source_id"] == str(covered)]
    assert len(active(hub, "patches")) == len(hub.store.rows("patches"))


def test_a_patch_no_longer_waiting_becomes_inactive_and_installations_stay():
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20)
    hub, _ = synced(sim)
    device = next(i for i in sim.device_ids if sim.waiting_patches(i, "os"))
    gone = [f"os:{device}:{p['id']}" for p in sim.waiting_patches(device, "os")]
    installs = {r["source_id"] for r in hub.store.rows("patches") if r["installed_at"]}
    others = {r["source_id"] for r in active(hub, "patches") if r["source_id"] not in gone}
    assert installs and gone
    sim.set_waiting_patches(device, "os")   # the device's OS patches were all installed
    hub, report = synced(sim, RUN_START + timedelta(hours=13), hub=hub)
    assert not report.errors
    still = {r["source_id"] for r in active(hub, "patches")}
    assert not still & set(gone)            # the patches that left the waiting list are inactive
    assert others <= still                  # every other waiting patch and every installation stays
    assert installs <= still


def test_a_report_record_of_a_device_the_sweep_set_aside_is_rejected_with_its_reason():
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20)
    device = next(i for i in sim.device_ids if sim.antivirus(i))
    sim.strip_device_fields(device, "organizationId")
    hub, report = synced(sim)
    assert not [r for r in hub.store.rows("antivirus") if r["device_source_id"] == str(device)]
    assert any(f"ninjaone.antivirus: record {device}:" in e and "not among the devices read in this run" in e
               for e in report.errors)


def test_report_streams_read_again_only_after_the_interval():
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20)
    hub, _ = synced(sim, report_interval=6)
    read = report_requests(sim)
    assert read > 0
    synced(sim, RUN_START + timedelta(hours=5), hub=hub)
    assert report_requests(sim) == read
    synced(sim, RUN_START + timedelta(hours=6, minutes=1), hub=hub)
    assert report_requests(sim) > read


def test_without_report_streams_a_sync_asks_no_report():
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20)
    settings = NinjaOneSettings.from_config(config(page_size=10))
    connector = NinjaOneConnector(settings, http=mock_client(sim.handler),
                                  retrying=lambda: retry_policy(sleep=lambda s: None))
    synced(sim, hub=make_hub(ConnectorPlugin(connector)))
    assert report_requests(sim) == 0 and sim.requests_by_path["/v2/devices-detailed"] > 0


def test_a_500_on_one_report_stream_fails_that_pass_only_and_holds_no_invoice():
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20)
    sim.fail_next(500, times=50, path="/v2/queries/antivirus-status")
    hub, report = synced(sim)
    passes = {k: v["status"] for k, v in report.passes.items()}
    assert passes.pop("ninjaone.antivirus") == "failed"
    assert set(passes.values()) == {"complete"} and "ninjaone.device_health" in passes
    assert hub.store.rows("antivirus") == [] and hub.store.rows("device_health")
    gate = Gate(hub, report)
    contract = SimpleNamespace(links={"ninjaone": "1"}, tier="managed")
    refs = gate.billing_streams(contract)
    assert {r.stream for r in refs} == {"clients", "devices"}
    assert gate.problems(refs, after=None, this_run=True) == []
    assert gate.problems(gate.ticket_streams(), after=None, this_run=False) == []


def test_an_expired_cursor_fails_the_pass_and_the_next_pass_starts_anew():
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20)
    connector = connector_for(sim, page_size=3, report_streams=["backup_jobs"])
    pages = stream(connector, "backup_jobs").iter_pages(None, RUN_START)
    first = next(pages)
    assert len(first.records) == 3 and first.cursor is None
    sim.expire_cursors()
    with pytest.raises(VendorError, match="Cursor .* expired or unknown"):
        next(pages)
    hub, report = synced(sim, hub=make_hub(ConnectorPlugin(connector)))
    assert not report.errors and len(hub.store.rows("backups")) == len(sim.backup_jobs())


def test_the_simulator_filters_what_the_spec_offers():
    sim = NinjaOneSimulator(seed=4, organizations=2, devices=20)
    client = connector_for(sim).client
    org = sim.organization_ids[0]
    mine = {i for i in sim.device_ids if sim.device(i)["organizationId"] == org}
    health = [r for p in client.iter_report("/v2/queries/device-health", {"df": f"org = {org}"}) for r in p]
    assert {r["deviceId"] for r in health} == mine
    failed = [r for p in client.iter_report("/v2/queries/os-patch-installs", {"status": "FAILED"}) for r in p]
    assert failed and {r["status"] for r in failed} == {"FAILED"}
    with pytest.raises(VendorError, match="expected a date"):
        list(client.iter_report("/v2/queries/os-patch-installs", {"installedAfter": "last week"}))


def test_report_data_is_the_same_for_a_seed_and_disturbs_nothing_else():
    one, two = NinjaOneSimulator(seed=9, devices=15, alerts=2), NinjaOneSimulator(seed=9, devices=15, alerts=2)
    devices = [one.device(i) for i in one.device_ids]
    activities = one.activities
    reports = [(one.antivirus(i), one.health(i), one.waiting_patches(i)) for i in one.device_ids]
    assert reports == [(two.antivirus(i), two.health(i), two.waiting_patches(i)) for i in two.device_ids]
    assert one.backup_jobs() == two.backup_jobs() and one.patch_installs("software") == two.patch_installs("software")
    assert [one.device(i) for i in one.device_ids] == devices and one.activities == activities
    other = NinjaOneSimulator(seed=10, devices=15)
    assert [other.health(i) for i in other.device_ids] != [one.health(i) for i in one.device_ids]
