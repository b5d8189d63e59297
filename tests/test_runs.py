"""Runs as a service needs them: the run lock, a clean stop, backfills, scoped runs, metrics."""

import json
import os
import threading

import pytest

from hub.engine import LockedError, sync_once
from hub.metrics import REGISTRY


def value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_second_run_while_one_holds_the_lock_is_refused_naming_the_holder(env):
    hub = env.hub()
    assert hub.store.acquire_lock("sync", "daemon:job-devices") is None
    with pytest.raises(LockedError, match="daemon:job-devices") as exc:
        sync_once(env.hub())
    assert exc.value.pid == os.getpid()
    hub.store.release_lock("sync", "daemon:job-devices")
    assert sync_once(env.hub()).pushed


def test_a_dead_holders_lock_is_taken_over(env):
    hub = env.hub()
    hub.store.db.execute("insert into locks values ('sync', 'crashed', 999999999, ?, '2026-01-01T00:00:00+00:00', "
                         "'2026-01-01T00:00:00+00:00')", [__import__("socket").gethostname()])
    hub.store.db.conn.commit()
    report = sync_once(hub)
    assert report.pushed and hub.store.lock_info("sync") is None


def test_a_plan_only_run_needs_no_lock(env):
    hub = env.hub()
    hub.store.acquire_lock("sync", "someone")
    assert sync_once(hub, dry_run=True, pull_first=False).plan


def test_stop_ends_the_run_after_the_current_page_with_nothing_half_written(env):
    env.ninja = type(env.ninja)(seed=3, organizations=6, devices=2500, now=env.ninja.now)
    stop = threading.Event()
    pages = []

    def progress(event):
        pages.append(event)
        if event["event"] == "page" and event["stream"] == "devices":
            stop.set()
    hub = env.hub()
    report = sync_once(hub, stop=stop, progress=progress)
    assert report.stopped and report.pushed == [] and hub.store.actions() == []
    devices = hub.store.count("devices")
    cursor = hub.store.get_cursor("ninjaone", "devices")
    assert 0 < devices < 2500 and set(cursor) == {"after", "read"}
    assert max(int(d.source_id) for d in hub.store.iter_devices("ninjaone")) == cursor["after"]
    assert hub.store.runs()[0]["status"] == "stopped" and hub.store.lock_info("sync") is None
    again = sync_once(env.hub())
    first = [h for h in again.held if h["cause"] == "guardrail"]        # above the first-invoice limit
    assert hub.store.count("devices") == 2500 and len(again.pushed) + len(first) == 5


def test_full_reads_from_the_start_and_leaves_the_saved_cursor_alone(env):
    hub = env.hub()
    sync_once(hub, dry_run=True)
    saved = hub.store.get_cursor("ninjaone", "devices")
    before = env.ninja.requests
    report = sync_once(hub, dry_run=True, streams=["devices"], full=True)
    assert report.records == {"ninjaone.devices": 120} and env.ninja.requests > before
    assert hub.store.get_cursor("ninjaone", "devices") == saved


def test_a_run_scoped_to_clients_plans_and_pushes_only_theirs(env):
    report = sync_once(env.hub(), clients=["acme", "cobalt"])
    assert sorted(p["key"] for p in report.pushed) == ["invoice:acme:2026-10", "invoice:cobalt:2026-10"]
    with pytest.raises(Exception, match="unknown client"):
        sync_once(env.hub(), clients=["nobody"])


def test_metrics_count_records_pushes_requests_and_rate_limits(env):
    pulled = value("msp_hub_records_pulled_total", connector="ninjaone", stream="devices")
    pushed = value("msp_hub_actions_pushed_total", kind="invoice", connector="stripe")
    limited = value("msp_hub_vendor_rate_limited_total", vendor="ninjaone")
    env.ninja.fail_next(429, times=1, retry_after=0, path="/v2/devices-detailed")
    sync_once(env.hub())
    assert value("msp_hub_records_pulled_total", connector="ninjaone", stream="devices") - pulled == 120
    assert value("msp_hub_actions_pushed_total", kind="invoice", connector="stripe") - pushed == 5
    assert value("msp_hub_vendor_rate_limited_total", vendor="ninjaone") - limited == 1


def test_a_run_scoped_to_streams_pushes_only_what_they_feed(env):
    report = sync_once(env.hub(), connectors=["ninjaone"], streams=["devices"])
    assert report.pushed == [] and env.invoices() == [] and report.plan == []
    report = sync_once(env.hub(), streams=["devices"], actions=["invoice"])
    assert report.pushed == [] and len(report.held) == 5      # the clients were never read completely
    assert all("stream ninjaone.clients has never been read completely" in h["reasons"][0] for h in report.held)
    report = sync_once(env.hub(), streams=["clients", "devices"], actions=["invoice"])
    assert len(report.pushed) == 5


def test_a_refused_run_that_was_promised_leaves_a_run_row_saying_why(env):
    hub = env.hub()
    hub.store.acquire_lock("sync", "daemon:job-alerts")
    with pytest.raises(LockedError):
        sync_once(env.hub(), run_id="promised1")
    row = hub.store.get_run("promised1")
    assert row["status"] == "refused" and "daemon:job-alerts" in row["errors"]


def test_metrics_count_requests_that_got_no_answer(env):
    before = value("msp_hub_vendor_requests_total", vendor="ninjaone", status="error")
    env.ninja.timeout_next(times=1, path="/v2/devices-detailed")
    report = sync_once(env.hub(), dry_run=True)
    assert report.records["ninjaone.devices"] == 120 and not [e for e in report.errors if e.startswith("pull")]
    assert value("msp_hub_vendor_requests_total", vendor="ninjaone", status="error") - before == 1


def test_a_run_records_who_ran_it_and_its_scope(env):
    hub = env.hub()
    scoped = sync_once(hub, streams=["devices"], holder="daemon:devices")
    whole = sync_once(hub, holder="daemon:invoices")
    counts = {rid: json.loads(hub.store.get_run(rid)["counts"]) for rid in (scoped.run_id, whole.run_id)}
    assert (counts[scoped.run_id]["holder"], counts[scoped.run_id]["scope"]) == ("daemon:devices", {"streams": ["devices"]})
    assert (counts[whole.run_id]["holder"], counts[whole.run_id]["scope"]) == ("daemon:invoices", {})
