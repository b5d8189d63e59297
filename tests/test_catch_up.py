"""Every ended period is invoiced whatever happened to the runs: a missed month is caught up by the
next run, a period older than the catch-up horizon is reported, a bill run stopped mid-push is
finished by the next scoped run, and agreement quantities follow the latest period only."""

from __future__ import annotations

import collections
import threading
from datetime import datetime, timezone

import pytest

from hub.config import config_from_dict
from hub.engine import periods_for, sync_once
from hub.errors import ConfigError
from hub.store import PENDING, SENT, Store
from hub.testing import ConnectorPlugin, make_hub

from tests.conftest import NOW

JAN = datetime(2027, 1, 5, 9, 0, tzinfo=timezone.utc)     # the 1st of December went by without a run
CLIENTS = ["acme", "birchwood", "cobalt", "driftwood", "elmstreet"]


def hub_with(env, billing: dict, clock=NOW):
    config = config_from_dict({"database": ":memory:", "billing": billing})
    return make_hub(ConnectorPlugin(*env.connectors()), config=config, mappings=env.mappings,
                    store=Store(env.db), clock=lambda: clock)


def invoice_keys(report) -> list[str]:
    return sorted(p["key"] for p in report.pushed if p["key"].startswith("invoice:"))


def stripe_keys(env) -> collections.Counter:
    return collections.Counter(i["metadata"].get("msp_hub_action_key") for i in env.invoices())


def test_a_missed_month_is_invoiced_by_the_next_run_and_an_invoiced_one_is_not_planned_again(env):
    october = sync_once(env.hub())
    assert invoice_keys(october) == [f"invoice:{c}:2026-10" for c in CLIENTS]

    # No run on December 1: the January run plans November (missed), December and January (preview).
    report = sync_once(env.hub(clock=JAN))
    periods = {p.period for p in report.plan if p.kind == "invoice"}
    assert periods == {"2026-11", "2026-12", "2027-01"}          # October was invoiced: not planned again
    assert invoice_keys(report) == [f"invoice:{c}:2026-11" for c in CLIENTS]
    assert not report.errors
    statuses = {(p.client_id, p.period): p.status for p in report.plan if p.kind == "invoice"}
    assert {statuses[(c, "2027-01")] for c in CLIENTS} <= {"preview", "empty"}

    again = sync_once(env.hub(clock=JAN))
    assert again.pushed == [] and not again.errors
    assert {p.period for p in again.plan if p.kind == "invoice"} == {"2026-12", "2027-01"}   # November is sent
    keys = stripe_keys(env)
    assert keys and max(keys.values()) == 1 and len(keys) == 10


def test_the_catch_up_starts_at_the_first_period_and_stops_at_the_horizon(env):
    # A new hub invoices the last ended period only: it does not bill the past.
    assert [p.name for p in periods_for(env.hub(clock=JAN), None)[0]] == ["2026-12", "2027-01"]
    # Configured: from first_period, at most catch_up_months ended periods.
    hub = hub_with(env, {"first_period": "2026-09", "catch_up_months": 2}, clock=JAN)
    assert [p.name for p in periods_for(hub, None)[0]] == ["2026-11", "2026-12", "2027-01"]
    hub = hub_with(env, {"first_period": "2026-12"}, clock=JAN)
    assert [p.name for p in periods_for(hub, None)[0]] == ["2026-12", "2027-01"]
    # A forced period is planned alone.
    assert [p.name for p in periods_for(hub, "2026-10")[0]] == ["2026-10"]


def test_a_period_older_than_the_horizon_is_reported_never_dropped(env):
    report = sync_once(hub_with(env, {"first_period": "2026-10", "catch_up_months": 1}, clock=JAN))
    assert invoice_keys(report) == ["invoice:birchwood:2026-12"]   # December: its monthly minimum only
    assert {p.period for p in report.plan if p.kind == "invoice"} == {"2026-12", "2027-01"}
    beyond = [e for e in report.errors if "older than the 1 ended period(s)" in e]
    assert [e.split(":")[0] for e in beyond] == ["period 2026-10", "period 2026-11"]
    assert "key 'billing.catch_up_months' = 1" in beyond[0]
    assert "msp-hub sync --period 2026-10" in beyond[0] and 'billing.first_period = "2026-11"' in beyond[0]
    assert env.hub().store.runs()[0]["status"] == "partial"

    # Invoiced by hand, the period is no longer reported; the other one still is.
    forced = sync_once(hub_with(env, {"first_period": "2026-10", "catch_up_months": 1}, clock=JAN), period="2026-10")
    assert invoice_keys(forced) == [f"invoice:{c}:2026-10" for c in CLIENTS]
    report = sync_once(hub_with(env, {"first_period": "2026-10", "catch_up_months": 1}, clock=JAN))
    assert [e.split(":")[0] for e in report.errors] == ["period 2026-11"] and report.pushed == []


@pytest.mark.parametrize("billing, key, fragment", [
    ({"first_period": "2026-13"}, "billing.first_period", "must be a period written YYYY-MM"),
    ({"first_period": 202610}, "billing.first_period", 'write it like "2026-10"'),
    ({"catch_up_months": 0}, "billing.catch_up_months", ">= 1"),
    ({"catch_up_months": "3"}, "billing.catch_up_months", "whole number"),
])
def test_catch_up_keys_are_checked(billing, key, fragment):
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"billing": billing})
    assert exc.value.key == key and fragment in str(exc.value)


def test_a_bill_run_stopped_mid_push_is_finished_by_the_next_scoped_run(env):
    stop = threading.Event()

    def progress(event):
        if event["event"] == "action" and event["status"] == "sent":
            stop.set()                                       # SIGTERM after the first invoice
    first = sync_once(env.hub(), stop=stop, progress=progress)
    assert first.stopped and len(first.pushed) == 1
    store = env.hub().store
    waiting = sorted(a["key"] for a in store.actions(status=PENDING, kind="invoice"))
    assert len(waiting) == 4

    # A dry run, or a run whose kinds are chosen, sends nothing; the alerts job sends them.
    assert sync_once(env.hub(), connectors=["ninjaone"], streams=["alerts"], dry_run=True).pushed == []
    assert sync_once(env.hub(), connectors=["ninjaone"], streams=["alerts"], actions=["ticket"]).pushed == []
    scoped = sync_once(env.hub(), connectors=["ninjaone"], streams=["alerts", "alert_events"])
    assert invoice_keys(scoped) == waiting
    assert not [p for p in scoped.plan if p.kind == "invoice"]          # nothing new was planned
    assert sorted(a["key"] for a in store.actions(status=SENT, kind="invoice")) == \
        [f"invoice:{c}:2026-10" for c in CLIENTS]
    keys = stripe_keys(env)
    assert len(keys) == 5 and max(keys.values()) == 1
    assert sync_once(env.hub(), connectors=["ninjaone"], streams=["alerts"]).pushed == []
    assert sync_once(env.hub()).pushed == []


def test_a_scoped_run_sends_only_the_recorded_invoices_of_its_clients(env):
    stop = threading.Event()
    first = sync_once(env.hub(), stop=stop, progress=lambda e: e["event"] == "action" and stop.set())
    assert first.stopped
    store = env.hub().store
    waiting = sorted(a["client_id"] for a in store.actions(status=PENDING, kind="invoice"))
    scoped = sync_once(env.hub(), streams=["alerts"], clients=[waiting[0]])
    assert invoice_keys(scoped) == [f"invoice:{waiting[0]}:2026-10"]
    assert sorted(a["client_id"] for a in store.actions(status=PENDING, kind="invoice")) == waiting[1:]


def test_a_run_of_an_older_period_never_writes_an_agreement_quantity(tmp_path):
    from tests.test_psa_billing import PsaEnv
    psa = PsaEnv(tmp_path)
    agreement = psa.cw.add_agreement(psa.co["acme"], "Managed Gold")
    dry = sync_once(psa.hub(), dry_run=True)
    ws = len(next(l for l in next(p for p in dry.plan if p.client_id == "acme" and p.kind == "invoice"
                                  and p.period == "2026-10").bill.lines if l.code == "tier:gold:workstation").items)
    addition = psa.cw.add_addition(agreement, "MS-WS", quantity=ws - 2)
    psa.cw.touch("agreements", [agreement])

    def quantity_items(report):
        return [p for p in report.plan if p.kind == "agreement_quantity" and p.client_id == "acme"]

    # September re-run in November: October is the latest period, September's counts are not written.
    old = sync_once(psa.hub(), period="2026-09")
    [skipped] = quantity_items(old)
    assert skipped.status == "skipped" and skipped.action is None and skipped.period == "2026-09"
    assert "follow the latest invoiced period: 2026-09 is older than 2026-10 (the last ended period)" in \
        skipped.reasons[0]
    assert skipped.to_json()["reasons"] == list(skipped.reasons)
    assert not [p for p in old.pushed if p["key"].startswith("agreement_quantity:")]
    assert psa.cw.record("additions", addition)["quantity"] == ws - 2

    # The run of the last ended period writes them.
    latest = sync_once(psa.hub())
    assert f"agreement_quantity:{agreement}:{addition}:2026-10" in {p["key"] for p in latest.pushed}
    assert psa.cw.record("additions", addition)["quantity"] == ws

    # November invoiced (forced), then October re-run: November's counts stay.
    sync_once(psa.hub(), period="2026-11")
    november = psa.cw.record("additions", addition)["quantity"]
    assert november != ws                                           # a device stopped counting in November
    rerun = sync_once(psa.hub(), period="2026-10")
    [skipped] = quantity_items(rerun)
    assert skipped.status == "skipped" and "older than 2026-11 (invoiced)" in skipped.reasons[0]
    assert not [p for p in rerun.pushed if p["key"].startswith("agreement_quantity:")]
    assert psa.cw.record("additions", addition)["quantity"] == november
