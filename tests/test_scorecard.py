"""The client scorecard on hand-computed data: every row, rows not measured, weights (a disabled
row), the quarter's bounds, frozen scorecards (byte-identical re-render, the previous column, the
refusal to refreeze), the PDF in French, the store methods on both backends."""

import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hub.config import HubConfig
from hub.errors import ConfigError
from hub.records import (AlertEvent, Alert, AntivirusStatus, BackupJob, Configuration, Device, DeviceHealth, Patch,
                         ServiceTicket)
from hub.reports import scorecard as sc
from hub.reports import scorecard_render as sc_render
from hub.store import Store
from hub.testing import make_hub
from tests.conftest import ROOT

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=timezone.utc)
NINJA, CW = "ninjaone", "connectwise"
QUARTER_HOURS = 92 * 24          # 2026-Q3 in UTC: July, August, September


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


CONTRACTS = """
[clients.acme]
name = "Acme Dental"
links = { ninjaone = "1", connectwise = "10" }
tier = "gold"
addons = ["backup"]

[clients.quiet]
name = "Quiet Bakery"
links = { ninjaone = "2", connectwise = "20" }
tier = "silver"
"""


def mappings_dir(tmp_path: Path, scorecard_toml: str | None = None) -> Path:
    import shutil
    target = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", target, dirs_exist_ok=True)
    (target / "contracts.toml").write_text(CONTRACTS)
    (target / "scorecard.toml").unlink(missing_ok=True)
    if scorecard_toml is not None:
        (target / "scorecard.toml").write_text(scorecard_toml)
    return target


def device(ident, name, node_class, last, *, approval="approved", warranty=None, serial=None, org="1"):
    return Device(NINJA, ident, org, name, node_class, approval, t("2025-01-01T00:00:00"),
                  t(last) if last else None, serial_number=serial, warranty_end=warranty)


def seed(store: Store) -> None:
    """Client acme (NinjaOne org 1, ConnectWise company 10) in 2026-Q3; the figures each row
    should give are computed by hand in the tests below."""
    store.write_page("devices", [
        device("101", "srv-files", "WINDOWS_SERVER", "2026-09-20T10:00:00", warranty="2027-03-01"),
        device("102", "srv-app", "LINUX_SERVER", "2026-09-25T10:00:00", warranty="2026-08-31", serial="SN-APP"),
        device("103", "srv-old", "WINDOWS_SERVER", "2026-06-01T10:00:00", warranty="2029-01-01"),
        device("104", "fw-edge", "NMS_FIREWALL", "2026-09-30T10:00:00"),
        device("105", "fw-branch", "NMS_FIREWALL", "2026-09-30T10:00:00"),
        device("201", "pc-anna", "WINDOWS_WORKSTATION", "2026-09-29T10:00:00", warranty="2027-01-01"),
        device("202", "pc-bob", "WINDOWS_WORKSTATION", "2026-09-10T10:00:00", warranty="2026-05-01"),
        device("203", "mac-chloe", "MAC", "2026-09-28T10:00:00", approval="pending", warranty="2028-01-01"),
        device("301", "phone-dan", "APPLE_IOS", "2026-09-15T10:00:00"),
        device("901", "srv-other", "WINDOWS_SERVER", "2026-09-15T10:00:00", org="2"),
    ], NINJA, "devices", None)
    store.write_page("configurations", [
        Configuration(CW, "c1", "10", "SRV-FILES-CFG", "Server", "Active", device_identifier="101"),
        Configuration(CW, "c2", "10", "app server", "Server", "Active", serial_number="sn-app"),
        Configuration(CW, "c3", "10", "srv-old", "Server", "Active"),
        Configuration(CW, "c4", "10", "fw-edge", "Firewall", "Active", warranty_end="2028-01-01"),
        Configuration(CW, "c5", "10", "PC-Anna", "Workstation", "Active"),
        Configuration(CW, "c6", "10", "printer-1", "Printer", "Active"),
        Configuration(CW, "c7", "10", "pc-eve", "Laptop", "Active", warranty_end="2026-07-31"),
        Configuration(CW, "c8", "10", "pc-gone", "Laptop", "Inactive", active=False, warranty_end="2030-01-01"),
    ], CW, "configurations", None)
    store.write_page("antivirus", [
        AntivirusStatus(NINJA, "101:Defender", "1", "101", "Defender", "ON", "UP_TO_DATE"),
        AntivirusStatus(NINJA, "201:Defender", "1", "201", "Defender", "ON", "OUT_OF_DATE"),
        AntivirusStatus(NINJA, "202:Defender", "1", "202", "Defender", "ON", "UP_TO_DATE"),
    ], NINJA, "antivirus", None)
    store.write_page("device_health", [
        DeviceHealth(NINJA, "202", "1", "202", "unhealthy", active_threats=2),
        DeviceHealth(NINJA, "104", "1", "104", "healthy"),
        DeviceHealth(NINJA, "105", "1", "105", "needs_attention"),
    ], NINJA, "device_health", None)
    os_, sw = "os", "software"
    patches = [
        Patch(NINJA, "os:101:k1:i", "1", "101", os_, "k1", "KB1", "critical", "installed", t("2026-08-10T02:00:00")),
        Patch(NINJA, "os:101:k0:i", "1", "101", os_, "k0", "KB0", "critical", "installed", t("2026-06-01T02:00:00")),
        Patch(NINJA, "os:101:k2:i", "1", "101", os_, "k2", "KB2", "critical", "failed", t("2026-09-01T02:00:00")),
        Patch(NINJA, "os:101:k3", "1", "101", os_, "k3", "KB3", "critical", "approved"),
        Patch(NINJA, "os:201:k4:i", "1", "201", os_, "k4", "KB4", "important", "installed", t("2026-07-15T02:00:00")),
        Patch(NINJA, "os:201:k5:i", "1", "201", os_, "k5", "KB5", "important", "installed", t("2026-07-15T03:00:00")),
        Patch(NINJA, "os:201:k6", "1", "201", os_, "k6", "KB6", "important", "pending"),
        Patch(NINJA, "sw:102:a", "1", "102", sw, "a", "Chrome", "", "pending"),
        Patch(NINJA, "sw:102:a:i", "1", "102", sw, "a0", "Chrome", "", "installed", t("2026-07-03T02:00:00")),
    ]
    patches += [Patch(NINJA, f"sw:201:{n}", "1", "201", sw, f"s{n}", f"App {n}", "", "approved") for n in range(3)]
    patches += [Patch(NINJA, f"sw:202:{n}", "1", "202", sw, f"s{n}", f"App {n}", "", "manual") for n in range(7)]
    patches.append(Patch(NINJA, "sw:202:r", "1", "202", sw, "r", "Old app", "", "rejected"))
    store.write_page("patches", patches, NINJA, "patches", None)
    store.write_page("backups", [
        BackupJob(NINJA, "b1", "1", "101", "IMAGE", "completed", t("2026-09-30T01:00:00"), t("2026-09-30T02:00:00")),
        BackupJob(NINJA, "b2", "1", "102", "IMAGE", "failed", t("2026-09-01T01:00:00"), t("2026-09-01T02:00:00")),
        BackupJob(NINJA, "b3", "1", "201", "FILE", "completed", t("2026-06-30T01:00:00"), t("2026-06-30T02:00:00")),
        BackupJob(NINJA, "b4", "1", "201", "FILE", "completed", t("2026-07-02T01:00:00"), t("2026-07-02T02:00:00")),
    ], NINJA, "backups", None)

    def alert(uid, dev, source_type, severity):
        return Alert(NINJA, uid, "1", dev, dev, "", source_type, source_type, severity, "", "")

    store.write_page("alerts", [
        alert("a-off-101", "101", "AGENT_OFFLINE", "CRITICAL"),
        alert("a-svc-101", "101", "CONDITION_WINDOWS_SERVICE_STATE_CHANGED", "MAJOR"),
        alert("a-minor-101", "101", "AGENT_OFFLINE", "MINOR"),
        alert("a-off-102", "102", "AGENT_OFFLINE", "CRITICAL"),
        alert("a-svc-102", "102", "CONDITION_WINDOWS_SERVICE_STATE_CHANGED", "CRITICAL"),
        alert("a-cpu-102", "102", "CONDITION_AGENT_CPU", "MODERATE"),
        alert("a-off-105", "105", "AGENT_OFFLINE", "CRITICAL"),
        alert("a-disk-201", "201", "CONDITION_AGENT_DISK_FREE_SPACE", "MAJOR"),
    ], NINJA, "alerts", None)

    def ev(ident, uid, dev, status, at):
        return AlertEvent(NINJA, ident, uid, dev, status, t(at))

    store.write_page("alert_events", [
        # srv-files: offline 22.08 h, a service down inside that time, a minor alert that does not count.
        ev("e1", "a-off-101", "101", "triggered", "2026-08-01T00:00:00"),
        ev("e2", "a-off-101", "101", "reset", "2026-08-01T22:04:48"),
        ev("e3", "a-svc-101", "101", "triggered", "2026-08-01T10:00:00"),
        ev("e4", "a-svc-101", "101", "reset", "2026-08-01T12:00:00"),
        ev("e5", "a-minor-101", "101", "triggered", "2026-08-05T00:00:00"),
        # srv-app: offline since before the quarter, 44.16 h of it inside the quarter.
        ev("e6", "a-off-102", "102", "triggered", "2026-06-30T00:00:00"),
        ev("e7", "a-off-102", "102", "reset", "2026-07-02T20:09:36"),
        # srv-app: CPU from 2026-09-30 00:00, never reset: 24 h to the quarter's end.
        ev("e8", "a-cpu-102", "102", "triggered", "2026-09-30T00:00:00"),
        # srv-app: a reset whose trigger is older than the activities kept: open from the quarter's
        # start (inside the 44.16 h above, so it adds nothing).
        ev("e13", "a-svc-102", "102", "reset", "2026-07-01T06:00:00"),
        # fw-branch: offline 110.4 h.
        ev("e9", "a-off-105", "105", "triggered", "2026-08-10T00:00:00"),
        ev("e10", "a-off-105", "105", "reset", "2026-08-14T14:24:00"),
        # pc-anna: disk 22.08 h.
        ev("e11", "a-disk-201", "201", "triggered", "2026-07-10T00:00:00"),
        ev("e12", "a-disk-201", "201", "reset", "2026-07-10T22:04:48"),
    ], NINJA, "alert_events", None)

    def ticket(ident, priority, opened, closed=None, company="10"):
        return ServiceTicket(CW, ident, company, f"ticket {ident}", "Help Desk", "Closed" if closed else "New",
                             priority, closed is not None, t(opened), t(closed) if closed else None)

    p1, p3 = "Priority 1 - Emergency Response", "Priority 3 - Normal Response"
    store.write_page("service_tickets", [
        ticket("t1", p1, "2026-07-01T08:00:00", "2026-07-01T11:00:00"),       # 3 h, within 4 h
        ticket("t2", p1, "2026-08-01T08:00:00", "2026-08-01T14:00:00"),       # 6 h, late
        ticket("t3", p3, "2026-09-29T09:00:00", "2026-10-02T09:00:00"),       # opened in Q3, closed in Q4
        ticket("t4", p3, "2026-06-28T10:00:00", "2026-07-01T10:00:00"),       # closed in Q3: 72 h, late
        ticket("t5", "Priority 9 - Odd", "2026-07-05T08:00:00", "2026-07-05T09:00:00"),  # no target
        ticket("t6", p3, "2026-05-01T08:00:00", "2026-05-02T08:00:00"),       # outside the quarter
        ServiceTicket(CW, "t7", "10", "ticket t7", "Help Desk", "Closed", p3, True, t("2026-08-03T08:00:00")),
    ], CW, "service_tickets", None)


@pytest.fixture
def hub(tmp_path):
    return hub_for(tmp_path)


def hub_for(tmp_path, scorecard_toml=None, clock=NOW, tz="UTC", store=None):
    folder = mappings_dir(tmp_path, scorecard_toml)
    store = store or Store(":memory:")
    seed(store)
    h = make_hub(config=HubConfig(database=":memory:", mappings=folder, timezone=tz), mappings=folder,
                 store=store, clock=lambda: clock)
    return h


def row(card, key):
    return card.row(key)


def counted(card, key):
    return {i["name"]: i["counted"] for i in card.row(key)["items"]}


# --- quarters ---------------------------------------------------------------------------------------

def test_quarter_bounds_are_in_the_msps_time_zone():
    q = sc.quarter("2026-Q4", "Europe/Paris")
    assert q.start == t("2026-09-30T22:00:00") and q.end == t("2026-12-31T23:00:00")
    assert (q.first_day.isoformat(), q.last_day.isoformat()) == ("2026-10-01", "2026-12-31")
    assert sc.quarter("2026-Q1", "UTC").previous().name == "2025-Q4"


@pytest.mark.parametrize("text", ["2026-Q5", "2026Q4", "Q4-2026", "2026-10", "2026-q4"])
def test_a_quarter_not_written_yyyy_qn_is_refused_with_the_form(text):
    with pytest.raises(sc.ScorecardError, match=r"not of the form YYYY-Qn \(e.g. 2026-Q4\)"):
        sc.quarter(text)


def test_an_unknown_client_and_a_quarter_not_begun_are_refused(hub):
    with pytest.raises(sc.ScorecardError, match="unknown client 'nobody'.*msp-hub clients"):
        sc.build(hub, "nobody", "2026-Q3")
    with pytest.raises(sc.ScorecardError, match="2027-Q1 has not begun"):
        sc.build(hub, "acme", "2027-Q1")


# --- every row, on hand-computed data --------------------------------------------------------------

def test_managed_devices_are_the_psa_configurations_with_a_managed_rmm_device(hub):
    card = sc.build(hub, "acme", "2026-Q3")
    r = row(card, "managed_devices")
    # 7 active configurations; matched by RMM id (c1), serial (c2), name (c4, c5): managed;
    # c3's device was not seen in the quarter, c6 and c7 have no device; c8 is inactive.
    assert r["value"] == round(100 * 4 / 7, 1) == 57.1
    assert r["basis"] == "configurations"
    assert counted(card, "managed_devices") == {"SRV-FILES-CFG": True, "app server": True, "fw-edge": True,
                                                "PC-Anna": True, "srv-old": False, "printer-1": False,
                                                "pc-eve": False}


def test_without_psa_configurations_managed_devices_are_over_the_rmm_devices(tmp_path):
    h = hub_for(tmp_path)
    h.store.db.execute("delete from configurations")
    r = row(sc.build(h, "acme", "2026-Q3"), "managed_devices")
    # 9 devices of org 1; managed: all but srv-old (not seen) and mac-chloe (pending).
    assert (r["value"], r["basis"]) == (round(100 * 7 / 9, 1), "devices")
    facts = {i["name"]: sc_render.fact_text(i, "en") for i in r["items"] if not i["counted"]}
    assert facts == {"mac-chloe": "not managed: not approved in the RMM (pending)",
                     "srv-old": "not managed: not seen in the quarter (last contact 2026-06-01)"}
    assert sc_render.fact_text(next(i for i in r["items"] if i["name"] == "srv-old"), "fr") == \
        "non géré : non vu pendant le trimestre (dernier contact le 01/06/2026)"


def test_warranty_rows_count_known_dates_only(hub):
    card = sc.build(hub, "acme", "2026-Q3")
    # servers and network: srv-files under (2027-03-01), srv-app ended 2026-08-31, fw-edge under by its
    # PSA configuration (2028-01-01), fw-branch unknown (not counted); srv-old not managed.
    assert row(card, "server_warranty")["value"] == round(100 * 2 / 3, 1)
    assert counted(card, "server_warranty") == {"srv-files": True, "srv-app": False, "fw-edge": True,
                                                "fw-branch": False}
    assert next(i for i in row(card, "server_warranty")["items"] if i["name"] == "fw-branch")["fact"] == \
        "warranty_unknown"
    # workstations and mobiles: pc-anna under, pc-bob ended, phone-dan unknown, the PSA's laptop pc-eve
    # (no RMM device) ended 2026-07-31; mac-chloe is pending.
    assert row(card, "workstation_warranty")["value"] == round(100 * 1 / 3, 1)
    assert counted(card, "workstation_warranty") == {"pc-anna": True, "pc-bob": False, "phone-dan": False,
                                                     "pc-eve": False}


def test_antivirus_is_the_mean_of_coverage_and_protection(hub):
    r = row(sc.build(hub, "acme", "2026-Q3"), "antivirus")
    # servers and workstations managed: srv-files protected, srv-app none, pc-anna out of date,
    # pc-bob two active threats: coverage 3/4, protection 1/4.
    assert (r["coverage"], r["protection"], r["value"]) == (75.0, 25.0, 50.0)
    assert {i["name"]: i["fact"] for i in r["items"]} == {"srv-files": "av_protected", "srv-app": "av_none",
                                                          "pc-anna": "av_not_current", "pc-bob": "av_threats"}


def test_os_patches_installed_over_approved(hub):
    r = row(sc.build(hub, "acme", "2026-Q3"), "os_patches")
    # installed in the quarter: KB1, KB4, KB5; approved: those, KB2 (failed) and KB3 (approved,
    # waiting). KB0 was installed before the quarter; KB6 is pending, not approved.
    assert (r["installed"], r["approved"], r["value"]) == (3, 5, 60.0)


def test_software_patches_per_device_buckets_from_scorecard_toml(tmp_path):
    h = hub_for(tmp_path, '[rows.software_patches]\nmethod = "buckets"\n')
    r = row(sc.build(h, "acme", "2026-Q3"), "software_patches")
    # missing per managed device: srv-files 0 (100), srv-app 1 (75), fw-edge 0, fw-branch 0 (100),
    # pc-anna 3 (50), pc-bob 7 (25; its rejected patch does not count), phone-dan 0 (100).
    assert r["value"] == round((100 + 75 + 100 + 100 + 50 + 25 + 100) / 7, 1) == 78.6
    assert {i["name"]: i["args"]["missing"] for i in r["items"]} == {
        "srv-files": 0, "srv-app": 1, "fw-edge": 0, "fw-branch": 0, "pc-anna": 3, "pc-bob": 7, "phone-dan": 0}


def test_firewall_rows_healthy_over_present_or_the_manual_answer(tmp_path):
    h = hub_for(tmp_path)
    r = row(sc.build(h, "acme", "2026-Q3"), "firewall")
    assert r["value"] == 50.0 and counted(sc.build(h, "acme", "2026-Q3"), "firewall") == {
        "fw-edge": True, "fw-branch": False}
    h2 = hub_for(tmp_path / "b", '[firewall.manual]\nacme = true\nquiet = false\n')
    assert row(sc.build(h2, "acme", "2026-Q3"), "firewall")["value"] == 100.0
    assert row(sc.build(h2, "quiet", "2026-Q3"), "firewall")["value"] == 0.0


def test_data_protection_over_the_devices_the_contract_backs_up(hub):
    r = row(sc.build(hub, "acme", "2026-Q3"), "data_protection")
    # acme: Gold with the backup add-on, billed for servers and workstations seen in September:
    # srv-files (backed up 30/09), srv-app (failed only), pc-anna (02/07; 30/06 is before), pc-bob (none).
    assert r["value"] == 50.0
    assert counted(sc.build(hub, "acme", "2026-Q3"), "data_protection") == {
        "srv-files": True, "srv-app": False, "pc-anna": True, "pc-bob": False}
    assert {i["args"]["by"] for i in r["items"]} == {"add-on Cloud backup"}


def test_availability_rows_from_triggered_and_reset_events(hub):
    card = sc.build(hub, "acme", "2026-Q3")
    # servers: srv-files 22.08 h (the service alert inside it adds nothing, the minor one does not
    # count) = 1 %; srv-app 44.16 h inside the quarter = 2 %.
    assert row(card, "service_availability")["value"] == round((99 + 98) / 2, 1)
    assert {i["name"]: i["args"]["hours"] for i in row(card, "service_availability")["items"]} == {
        "srv-files": 22.08, "srv-app": 44.16}
    # network: fw-branch 110.4 h = 5 %, fw-edge none.
    assert row(card, "network_reliability")["value"] == round((95 + 100) / 2, 1)
    # performance (servers and workstations): srv-app CPU 24 h to the end, pc-anna disk 22.08 h.
    expected = (100 + 100 * (1 - 24 / QUARTER_HOURS) + 99 + 100) / 4
    assert row(card, "performance")["value"] == round(expected, 1)


def test_an_open_condition_counts_until_now_in_a_quarter_in_progress(tmp_path):
    h = hub_for(tmp_path, clock=t("2026-10-11T00:00:00"))
    h.store.write_page("devices", [device("101", "srv-files", "WINDOWS_SERVER", "2026-10-10T10:00:00"),
                                   device("102", "srv-app", "LINUX_SERVER", "2026-10-10T10:00:00")],
                       NINJA, "devices", None)
    h.store.write_page("alert_events", [AlertEvent(NINJA, "q4", "a-off-101", "101", "triggered",
                                                   t("2026-10-10T00:00:00"))], NINJA, "alert_events", None)
    card = sc.build(h, "acme", "2026-Q4")
    assert card.data["partial"] is True
    # 10 days measured; srv-files offline the last one: 90 %; srv-app 100 %.
    assert row(card, "service_availability")["value"] == 95.0


def test_ticket_summary_by_priority_time_to_resolution_and_targets(hub):
    r = row(sc.build(hub, "acme", "2026-Q3"), "tickets")
    s = r["summary"]
    assert (s["opened"], s["closed"]) == (5, 4)
    assert s["by_priority"] == {"Priority 1 - Emergency Response": {"opened": 2, "closed": 2},
                                "Priority 3 - Normal Response": {"opened": 2, "closed": 1},
                                "Priority 9 - Odd": {"opened": 1, "closed": 1}}
    assert s["mean_hours"] == (3 + 6 + 72 + 1) / 4
    # with a target: t1 within, t2 and t4 late; t5's priority has none (listed, not counted).
    assert (s["within_target"], s["with_target"], r["value"]) == (1, 3, 33.3)
    assert {i["id"]: i["fact"] for i in r["items"]} == {"t1": "ticket_within", "t2": "ticket_late",
                                                        "t3": "ticket_open", "t4": "ticket_late",
                                                        "t5": "ticket_no_target", "t7": "ticket_closed_no_date"}


def test_overall_is_the_mean_of_the_measured_rows(hub):
    card = sc.build(hub, "acme", "2026-Q3")
    values = [r["value"] for r in card.data["rows"]]
    assert None not in values and len(values) == 12
    assert card.overall == round(sum(values) / 12, 1)


def test_rows_with_no_data_are_not_measured_and_left_out_of_the_overall(hub):
    # quiet: one server, seen; no configuration, antivirus, patch, backup, alert or ticket of its own,
    # and silver includes no backup. The tables hold other clients' data: coverage is 0, patches
    # approved none, tickets none resolved.
    card = sc.build(hub, "quiet", "2026-Q3")
    values = {r["key"]: r["value"] for r in card.data["rows"]}
    assert values == {"managed_devices": 100.0, "server_warranty": None, "workstation_warranty": None,
                      "antivirus": 0.0, "os_patches": None, "software_patches": None, "firewall": None,
                      "data_protection": None, "service_availability": 100.0, "network_reliability": None,
                      "performance": 100.0, "tickets": None}
    notes = {r["key"]: r["note"] for r in card.data["rows"] if r["value"] is None}
    assert notes == {"server_warranty": "no_warranty_dates", "workstation_warranty": "no_devices",
                     "os_patches": "no_approved_patches", "software_patches": "no_approved_patches",
                     "firewall": "no_firewall", "data_protection": "no_backup_service",
                     "network_reliability": "no_devices", "tickets": "no_closed_tickets"}
    assert card.overall == round((100 + 0 + 100 + 100) / 4, 1)
    html = sc.render(card, "html", "en").decode()
    assert html.count("not measured") >= 8


def test_rows_whose_table_the_rmm_never_filled_are_not_measured(tmp_path):
    h = hub_for(tmp_path)
    for table in ("antivirus", "patches", "backups", "alerts", "alert_events", "service_tickets"):
        h.store.db.execute(f'delete from "{table}"')
    card = sc.build(h, "acme", "2026-Q3")
    notes = {r["key"]: r["note"] for r in card.data["rows"] if r["value"] is None}
    assert notes == {"antivirus": "no_antivirus_data", "os_patches": "no_patch_data",
                     "software_patches": "no_patch_data", "data_protection": "no_backup_data",
                     "service_availability": "no_alert_data", "network_reliability": "no_alert_data",
                     "performance": "no_alert_data", "tickets": "no_ticket_data"}


def test_weights_and_a_disabled_row(tmp_path):
    h = hub_for(tmp_path, "[rows.tickets]\nweight = 0\n\n[rows.antivirus]\nweight = 3\n")
    card = sc.build(h, "acme", "2026-Q3")
    values = {r["key"]: r["value"] for r in card.data["rows"]}
    assert values["tickets"] == 33.3          # still shown, not counted
    rest = [v for k, v in values.items() if k not in ("tickets", "antivirus")]
    assert card.overall == round((sum(rest) + 3 * values["antivirus"]) / (len(rest) + 3), 1)
    assert "disabled" in sc.render(card, "html", "en").decode()


@pytest.mark.parametrize("text, fragment", [
    ("[rows.os_patchs]\nweight = 1\n", "line 1, key 'rows.os_patchs': unknown key 'os_patchs' (fix: use one of"),
    ("[rows.tickets]\nweight = -2\n", "line 2, key 'rows.tickets.weight': must be >= 0"),
    ('[rows.os_patches]\nmethod = "ratio"\n', "line 2, key 'rows.os_patches.method': must be"),
    ("[rows.os_patches]\nbuckets = [{ up_to = 5, score = 50 }, { up_to = 2, score = 75 }]\n",
     "key 'rows.os_patches.buckets': the buckets' up_to must increase"),
    ('[firewall.manual]\nacme = "yes"\n', "line 2, key 'firewall.manual.acme': must be true or false"),
])
def test_scorecard_toml_mistakes_name_the_file_line_key_and_fix(tmp_path, text, fragment):
    h = hub_for(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        sc.build(h, "acme", "2026-Q3")
    assert "scorecard.toml" in str(err.value) and fragment in str(err.value) and "fix:" in str(err.value)


def test_the_shipped_scorecard_toml_is_the_defaults():
    from hub.reports.scorecard_config import ScorecardSettings, load_settings
    assert load_settings(ROOT / "mappings") == ScorecardSettings()


# --- frozen scorecards -------------------------------------------------------------------------------

def test_a_frozen_scorecard_re_renders_byte_identical_after_the_data_changed(hub):
    frozen = sc.freeze(hub, sc.build(hub, "acme", "2026-Q3"), who="marie")
    assert frozen.frozen["by"] == "marie" and frozen.frozen["at"] == NOW.isoformat()
    first = {(fmt, lang): sc.render(frozen, fmt, lang, details=True) for fmt in ("html", "json")
             for lang in ("en", "fr")}
    hub.store.write_page("backups", [BackupJob(NINJA, "b9", "1", "202", "FILE", "completed", t("2026-09-03T01:00:00"),
                                               t("2026-09-03T02:00:00"))], NINJA, "backups", None)
    assert row(sc.build(hub, "acme", "2026-Q3"), "data_protection")["value"] == 75.0   # the data changed
    again = sc.scorecard_for(hub, "acme", "2026-Q3")
    assert row(again, "data_protection")["value"] == 50.0
    for (fmt, lang), content in first.items():
        assert sc.render(again, fmt, lang, details=True) == content


def test_refreezing_is_refused_unless_asked(hub):
    sc.freeze(hub, sc.build(hub, "acme", "2026-Q3"), who="marie")
    with pytest.raises(sc.ScorecardError, match=r"already frozen on 2026-11-15T12:00:00\+00:00 by marie.*--refreeze"):
        sc.freeze(hub, sc.build(hub, "acme", "2026-Q3"), who="paul")
    again = sc.freeze(hub, sc.build(hub, "acme", "2026-Q3"), who="paul", refreeze=True)
    assert again.frozen["by"] == "paul"
    assert [r["frozen_by"] for r in hub.store.frozen_scorecards("acme")] == ["paul"]


def test_previous_reads_the_previous_quarters_frozen_scorecard_else_computes_it(tmp_path):
    h = hub_for(tmp_path, clock=t("2026-12-20T00:00:00"))
    computed = sc.build(h, "acme", "2026-Q4")
    q3 = sc.build(h, "acme", "2026-Q3", previous=False)
    assert computed.data["previous_frozen"] is False
    assert [r["previous"] for r in computed.data["rows"]] == [r["value"] for r in q3.data["rows"]]
    assert computed.data["previous_overall"] == q3.overall
    sc.freeze(h, q3, who="marie")
    # the data of Q3 changes after it was presented: the previous column keeps what was presented.
    h.store.write_page("backups", [BackupJob(NINJA, "b9", "1", "202", "FILE", "completed", t("2026-09-03T01:00:00"),
                                             t("2026-09-03T02:00:00"))], NINJA, "backups", None)
    card = sc.build(h, "acme", "2026-Q4")
    assert card.data["previous_frozen"] is True
    assert row(card, "data_protection")["previous"] == 50.0
    assert card.data["trend"] == [{"quarter": "2026-Q3", "overall": q3.overall, "areas": q3.data["areas"]},
                                  {"quarter": "2026-Q4", "overall": card.overall, "areas": card.data["areas"]}]


# --- output ------------------------------------------------------------------------------------------

def test_html_is_self_contained_with_charts_definitions_and_details(hub):
    card = sc.build(hub, "acme", "2026-Q3")
    html = sc.render(card, "html", "en", details=True, msp_name="Nord Informatique").decode()
    assert html.startswith("<!DOCTYPE html>") and "Nord Informatique" in html
    assert html.count("<svg") == 2                      # areas this vs last quarter, the trend
    assert "src=\"http" not in html and "href=\"http" not in html
    assert "Devices approved in the RMM and seen in the quarter" in html
    assert "srv-app (102)" in html and "44.16 h with an open condition" in html
    assert "srv-app (102)" not in sc.render(card, "html", "en").decode()     # items only with details


def test_json_has_figures_items_and_definitions(hub):
    out = json.loads(sc.render(sc.build(hub, "acme", "2026-Q3"), "json", "fr"))
    r = next(r for r in out["rows"] if r["key"] == "firewall")
    assert r["label"] == "Pare-feu matériel" and r["value"] == 50.0
    assert r["definition"].startswith("Pare-feu présents")
    assert {i["fact_text"] for i in r["items"]} == {"présent et en bonne santé", "santé : needs_attention"}


def test_the_pdf_in_french_has_the_scorecard_text(hub):
    from pypdf import PdfReader
    pdf = sc.render(sc.build(hub, "acme", "2026-Q3"), "pdf", "fr", details=True, msp_name="Nord Informatique")
    assert pdf.startswith(b"%PDF")
    reader = PdfReader(io.BytesIO(pdf))
    assert 2 <= len(reader.pages) <= 6
    text = " ".join(p.extract_text() for p in reader.pages)
    for words in ("Tableau de bord client", "Acme Dental", "Nord Informatique", "Gestion des actifs",
                  "Disponibilité", "Pare-feu matériel", "Note globale", "Synthèse des tickets",
                  "Délai moyen de résolution : 20,5 h"):
        assert words in text, words


def test_clients_with_scorecards_lists_the_linked_clients(hub):
    assert sc.clients_with_scorecards(hub) == [("acme", "Acme Dental"), ("quiet", "Quiet Bakery")]


# --- the store, on both backends --------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "hub.db")
    return request.getfixturevalue("pg_url")


def test_store_freezes_reads_and_lists_scorecards(database):
    store = Store(database)
    try:
        data = {"overall": 81.5, "rows": [{"key": "antivirus", "value": None}], "name": "Café Dupont"}
        assert store.freeze_scorecard("acme", "2026-Q3", data, at="2026-10-05T09:00:00+00:00", who="marie")
        assert not store.freeze_scorecard("acme", "2026-Q3", {"overall": 1}, at="2026-10-06T09:00:00+00:00", who="paul")
        assert store.frozen_scorecard("acme", "2026-Q3")["data"] == data
        assert store.freeze_scorecard("acme", "2026-Q3", {"overall": 2.0}, at="2026-10-07T09:00:00+00:00", who="paul",
                                      replace=True)
        store.freeze_scorecard("acme", "2026-Q2", data, at="2026-07-05T09:00:00+00:00", who="marie")
        store.freeze_scorecard("birch", "2026-Q3", data, at="2026-10-05T09:00:00+00:00", who="marie")
        got = store.frozen_scorecard("acme", "2026-Q3")
        assert (got["frozen_by"], got["frozen_at"], got["data"]) == ("paul", "2026-10-07T09:00:00+00:00",
                                                                     {"overall": 2.0})
        assert store.frozen_scorecard("acme", "2026-Q4") is None
        assert [(r["client_id"], r["quarter"]) for r in store.frozen_scorecards()] == [
            ("acme", "2026-Q2"), ("acme", "2026-Q3"), ("birch", "2026-Q3")]
        assert [r["quarter"] for r in store.frozen_scorecards("birch")] == ["2026-Q3"]
    finally:
        store.close()


def test_a_reset_whose_trigger_was_not_kept_counts_from_the_quarters_start(tmp_path):
    h = hub_for(tmp_path)
    h.store.write_page("alert_events", [AlertEvent(NINJA, "r1", "a-svc-101", "101", "reset", t("2026-07-01T22:04:48"))],
                       NINJA, "alert_events", None)
    # srv-files: 22.08 h from the quarter's start plus its 22.08 h offline in August = 2 %.
    card = sc.build(h, "acme", "2026-Q3")
    assert {i["name"]: i["args"]["hours"] for i in row(card, "service_availability")["items"]} == {
        "srv-files": 44.16, "srv-app": 44.16}
    assert row(card, "service_availability")["value"] == 98.0


def test_the_quarter_is_counted_in_the_msps_time_zone(tmp_path):
    # 2026-09-30 22:30 UTC is 1 October 00:30 in Paris: the ticket belongs to Q4 there, to Q3 in UTC.
    p1 = "Priority 1 - Emergency Response"
    late = ServiceTicket(CW, "tz", "10", "ticket tz", "Help Desk", "Closed", p1, True, t("2026-09-30T22:30:00"),
                         t("2026-09-30T23:30:00"))
    for tz, q3, q4 in (("UTC", 6, 0), ("Europe/Paris", 5, 1)):
        h = hub_for(tmp_path / tz.replace("/", "-"), tz=tz)
        h.store.write_page("service_tickets", [late], CW, "service_tickets", None)
        opened = [row(sc.build(h, "acme", q), "tickets")["summary"]["opened"] for q in ("2026-Q3", "2026-Q4")]
        assert opened == [q3, q4], tz


def test_the_delivery_sends_the_scorecard_the_command_makes_frozen_one_included(hub):
    """The delivery job's scorecard (what is e-mailed to the client) is the command's: headed by the
    MSP's name from [reports], and the frozen one once the quarter was presented."""
    from hub.reports.delivery import PRODUCERS
    hub.config.reports = {"msp_name": "Nord Informatique"}
    made = PRODUCERS["scorecard"](hub, "2026-Q3", "acme", "html", "fr").decode()
    assert made == sc.render_for(hub, sc.scorecard_for(hub, "acme", "2026-Q3"), "html", "fr").decode()
    assert "Nord Informatique" in made and "Gestion des actifs" in made
    frozen = sc.freeze(hub, sc.build(hub, "acme", "2026-Q3"), who="Alice")
    made = PRODUCERS["scorecard"](hub, "2026-Q3", "acme", "html", "fr").decode()
    assert made == sc.render_for(hub, frozen, "html", "fr").decode() and "Alice" in made
