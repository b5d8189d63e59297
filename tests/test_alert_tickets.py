"""Alerts become tickets, end to end: NinjaOne alerts and activities -> ConnectWise tickets."""

from datetime import datetime, timedelta, timezone

import pytest

from hub.alerting import AlertRule
from hub.engine import sync_once
from hub.hookspecs import hookimpl
from tests.test_psa_billing import PsaEnv

UTC = timezone.utc


class AlertEnv(PsaEnv):
    """The PSA environment with alert rules; the clock follows the NinjaOne simulator's."""

    def __init__(self, tmp_path, rules: str | None = None):
        super().__init__(tmp_path)
        self.now = datetime.fromtimestamp(self.ninja.now, UTC) + timedelta(hours=1)
        if rules is not None:
            (self.mappings / "alert_rules.toml").write_text(rules)
        self.device = {org: next(d for d in self.ninja.device_ids if self.ninja.device(d)["organizationId"] == org
                                 and self.ninja.device(d)["nodeClass"] == "WINDOWS_WORKSTATION")
                       for org in (1, 4, 5)}

    def sync(self, *plugins, advance=timedelta(minutes=1)):
        self.now += advance
        return sync_once(self.hub(*plugins, clock=self.now))

    def hub_tickets(self):
        return [t for t in self.tickets() if (t.get("externalXRef") or "").startswith("msp-hub:")]

    def ticket_for(self, uid):
        return next(t for t in self.tickets() if t.get("externalXRef") == f"msp-hub:ticket:ninjaone:{uid}")


RULES = """
[settings]
reopen_within_days = 3
storm_threshold = 20
storm_window_minutes = 10
fallback_board = "Alerts"
fallback_company = "250"

[settings.severity_priority]
MAJOR = "Priority 2 - Quick Response"

[[rule]]
name = "cpu"
match = { source_type = ["CONDITION_AGENT_CPU"] }
board = "Alerts"
auto_close = true

[[rule]]
name = "catch-all"
board = "Help Desk"
auto_close = false
"""


@pytest.fixture
def env(tmp_path):
    return AlertEnv(tmp_path, RULES)


def trigger(env, org=1, condition="cpu-90", source_type="CONDITION_AGENT_CPU", **kw):
    return env.ninja.trigger_alert(env.device[org], condition=condition, source_type=source_type,
                                   severity=kw.pop("severity", "MAJOR"), message=kw.pop("message", "CPU above 90 %"), **kw)


def test_trigger_ticket_retrigger_note_reset_close(env):
    uid = trigger(env)
    first = env.sync()
    assert f"ticket:ninjaone:{uid}" in {p["key"] for p in first.pushed}
    t = env.ticket_for(uid)
    assert t["board"]["name"] == "Alerts" and t["company"]["id"] == env.co["acme"]
    assert any("rule cpu" in r for p in first.plan if p.action and p.action.key == f"ticket:ninjaone:{uid}" for r in p.reasons)

    env.ninja.reset_alert(uid)
    again = trigger(env)                                       # same device and condition, new alert
    second = env.sync()
    assert f"ticket_note:ninjaone:{again}" in {p["key"] for p in second.pushed}
    assert len(env.hub_tickets()) == 1

    env.ninja.reset_alert(again)
    third = env.sync()
    assert any(p["key"].startswith("ticket_close:") for p in third.pushed)
    assert env.ticket_for(uid)["closedFlag"] is True
    assert not env.sync().pushed                               # nothing more to do


def test_reset_after_a_technician_logged_time_only_notes(env):
    uid = trigger(env)
    env.sync()
    env.cw.technician_works_on(env.ticket_for(uid)["id"], hours=0.5)
    env.ninja.reset_alert(uid)
    report = env.sync()
    assert any(p["key"].startswith("ticket_close:") for p in report.pushed)
    assert env.ticket_for(uid)["closedFlag"] is False
    notes = [env.cw.record("notes", n) for n in env.cw.ids("notes")]
    assert any("left open" in (n.get("text") or "") or "technician" in (n.get("text") or "") for n in notes)


def test_a_trigger_soon_after_the_close_reopens_the_ticket(env):
    uid = trigger(env)
    env.sync()
    env.ninja.reset_alert(uid)
    env.sync()
    assert env.ticket_for(uid)["closedFlag"] is True
    again = trigger(env)
    report = env.sync(advance=timedelta(days=1))
    assert f"ticket_reopen:ninjaone:{again}" in {p["key"] for p in report.pushed}
    assert env.ticket_for(uid)["closedFlag"] is False and len(env.hub_tickets()) == 1


def test_a_storm_of_fifty_alerts_makes_one_parent_ticket(env):
    devices = [d for d in env.ninja.device_ids if env.ninja.device(d)["organizationId"] == 5]
    uids = [env.ninja.trigger_alert(devices[i % len(devices)], condition=f"svc-{i}", source_type="CONDITION_WINDOWS_SERVICE_STATE_CHANGED",
                                    severity="MODERATE", message=f"service {i} stopped") for i in range(50)]
    report = env.sync()
    storm = [p for p in report.pushed if p["key"].startswith("ticket:storm:")]
    assert len(storm) == 1 and len(env.hub_tickets()) == 1
    parent = env.hub_tickets()[0]
    assert parent["summary"].startswith("Alert storm: 50 alerts")
    assert all(u in env.cw.initial_description(parent["id"]) for u in uids)


def test_alerts_inside_a_maintenance_window_make_nothing_and_are_logged(tmp_path):
    start = datetime(2020, 1, 1, tzinfo=UTC)
    env = AlertEnv(tmp_path, RULES + f'\n[[maintenance]]\nclient = "acme"\nstart = "{start.isoformat()}"\n'
                                     f'end = "2099-01-01T00:00:00+00:00"\n')
    uid = trigger(env)
    report = env.sync()
    assert env.hub_tickets() == []
    assert any(e["uid"] == uid and "maintenance window" in e["what"] for e in report.alert_log)


def test_a_missed_reset_is_caught_by_the_backstop(env):
    uid = trigger(env)
    env.sync()
    env.ninja.reset_alert(uid, log_activity=False)             # gone from the active list, no RESET logged
    report = env.sync()
    close = next(p for p in report.plan if p.action and p.action.key.startswith("ticket_close:"))
    assert any("backstop" in r for r in close.reasons)
    assert env.ticket_for(uid)["closedFlag"] is True


def test_a_crash_between_create_and_record_leaves_exactly_one_ticket(env):
    uid = trigger(env)
    env.cw.fail_next(503, path="/service/tickets", method="POST", after_apply=True)   # created, answer lost
    first = env.sync()
    assert f"ticket:ninjaone:{uid}" in {f["key"] for f in first.failed} | {p["key"] for p in first.pushed}
    env.sync()
    assert len([t for t in env.tickets() if t.get("externalXRef") == f"msp-hub:ticket:ninjaone:{uid}"]) == 1


def test_an_alert_of_an_unmapped_device_goes_to_the_fallback_board_and_is_reported(env):
    env.ninja.add_organization("Zebra Unrelated", id=7)
    device = env.ninja.add_device(7, "WINDOWS_WORKSTATION", last_contact=env.ninja.now)
    uid = env.ninja.trigger_alert(device, condition="disk", source_type="CONDITION_AGENT_DISK_FREE_SPACE",
                                  severity="MAJOR", message="disk full")
    report = env.sync()
    t = env.ticket_for(uid)
    assert t["board"]["name"] == "Alerts" and t["company"]["id"] == 250
    item = next(p for p in report.plan if p.action and p.action.key == f"ticket:ninjaone:{uid}")
    assert any("linked to no hub client" in r for r in item.reasons)


def test_without_a_fallback_an_unmapped_alert_makes_nothing_and_is_an_error(tmp_path):
    env = AlertEnv(tmp_path, RULES.replace('fallback_board = "Alerts"\n', ""))
    env.ninja.add_organization("Zebra Unrelated", id=7)
    device = env.ninja.add_device(7, "WINDOWS_WORKSTATION", last_contact=env.ninja.now)
    uid = env.ninja.trigger_alert(device, condition="disk", severity="MAJOR", message="disk full")
    report = env.sync()
    assert env.hub_tickets() == []
    assert any(uid in e and "no fallback board" in e for e in report.warnings)


def test_hook_alert_rule_a_site_plugin_chooses_the_board(env):
    class Site:
        @hookimpl
        def alert_rule(self, alert, client_id):
            return AlertRule("site-noc", board="Projects") if client_id == "acme" else None
    uid = trigger(env)
    env.sync(Site())
    assert env.ticket_for(uid)["board"]["name"] == "Projects"


def test_a_ticket_left_open_by_a_technician_gets_notes_not_reopens(env):
    uid = trigger(env)
    env.sync()
    env.cw.technician_works_on(env.ticket_for(uid)["id"], hours=1.0)
    env.ninja.reset_alert(uid)
    env.sync()
    again = trigger(env)
    report = env.sync()
    assert f"ticket_note:ninjaone:{again}" in {p["key"] for p in report.pushed}
    assert not [p for p in report.pushed if p["key"].startswith("ticket_reopen:")]
    assert len(env.hub_tickets()) == 1 and env.ticket_for(uid)["closedFlag"] is False
