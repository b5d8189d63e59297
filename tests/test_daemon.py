"""The daemon as a real process against simulators over HTTP: jobs fire, one run at a time, a
resync is refused (409, exit 75) while a run holds the lock, SIGTERM mid-run stops cleanly, and a
restart finishes the work with nothing duplicated or lost. Then the schedule's checks and the
service's handling of the run lock, in process.

A manual resync while a run holds the lock is refused, not queued: the caller sees who holds it
and tries again (the CLI exits 75, EX_TEMPFAIL).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from hub.cli import EXIT_LOCKED, main
from hub.config import config_from_dict
from hub.daemon import Job, cron_trigger, missed_firings, parse_every, parse_schedule, previous_firing
from hub.demo import seed_connectwise, seed_ninjaone
from hub.errors import ConfigError
from hub.periods import last_ended_period
from hub.service import ScopeError, Service, normalize_scope
from hub.store import Store
from hub.testing import serve
from plugins.stripe.simulator import StripeSimulator

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "admin-token-5d1e0c9b7a2f"
NINJA_VAR, CW_VAR, STRIPE_VAR, TOKEN_VAR = "T_D_NINJA", "T_D_CW", "T_D_STRIPE", "T_D_ADMIN"
DEVICES = 300


def wait_for(what: str, check, timeout: float, every: float = 0.1):
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Slow:
    """Wrap a simulator's handler with a delay per request that a test can change (0: none)."""

    def __init__(self, handler):
        self.handler, self.delay = handler, 0.0

    def __call__(self, request):
        if self.delay:
            time.sleep(self.delay)
        return self.handler(request)


class World:
    """The three simulators served over HTTP, a config for them, and the daemon processes."""

    def __init__(self, tmp_path: Path, stack: contextlib.ExitStack):
        self.tmp_path = tmp_path
        self.ninja = seed_ninjaone(DEVICES)
        self.cw = seed_connectwise(last_ended_period(datetime.now(timezone.utc), "Europe/Paris"))
        self.stripe = StripeSimulator(api_key="sk_test_daemon")
        self.slow_ninja = Slow(self.ninja.handler)
        self.slow_stripe = Slow(self.stripe.handler)
        self.urls = {"ninja": stack.enter_context(serve(self.slow_ninja)),
                     "cw": stack.enter_context(serve(self.cw.handler)),
                     "stripe": stack.enter_context(serve(self.slow_stripe))}
        self.port = free_port()
        self.config = tmp_path / "msp-hub.toml"
        self.env = {**os.environ, NINJA_VAR: self.ninja.client_secret, CW_VAR: self.cw.private_key,
                    STRIPE_VAR: self.stripe.api_key, TOKEN_VAR: TOKEN, "PYTHONUNBUFFERED": "1"}
        self.procs: list[subprocess.Popen] = []

    def write_config(self, jobs: str) -> None:
        self.config.write_text(f"""
timezone = "Europe/Paris"
database = "hub.db"
mappings = "{(ROOT / 'mappings').as_posix()}"

[connectors.ninjaone]
base_url = "{self.urls['ninja']}"
client_id = "{self.ninja.client_id}"
client_secret_env = "{NINJA_VAR}"
page_size = 20

[connectors.connectwise]
site = "{self.urls['cw']}"
company_id = "{self.cw.company_id}"
public_key = "{self.cw.public_key}"
private_key_env = "{CW_VAR}"
client_id = "{self.cw.client_id}"

[connectors.stripe]
base_url = "{self.urls['stripe']}"
api_key_env = "{STRIPE_VAR}"

[admin]
port = {self.port}
token_env = "{TOKEN_VAR}"

[logging]
format = "json"
level = "info"

[schedule]
misfire_grace_time = 10
{jobs}
""")

    def start(self, name: str) -> subprocess.Popen:
        log = open(self.tmp_path / f"{name}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "daemon", "--config", str(self.config)],
                                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        wait_for("the admin API", lambda: self.answers() or proc.poll() is not None, timeout=15)
        assert proc.poll() is None, self.log(name)
        return proc

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.api}/openapi.json", headers=self.auth, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {TOKEN}"}

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")

    def events(self, name: str) -> list[dict]:
        out = []
        for line in self.log(name).splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def stop(self, proc: subprocess.Popen, timeout: float = 20) -> int:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def store(self) -> Store:
        return Store(str(self.tmp_path / "hub.db"))

    def read(self, fn):
        """``fn(store)`` on a store opened for the call (the daemon writes the same file)."""
        store = self.store()
        try:
            return fn(store)
        finally:
            store.close()

    def runs(self) -> list[dict]:
        return self.read(lambda store: store.runs(limit=100))

    def lock_holder(self) -> str:
        return (self.read(lambda store: store.lock_info("sync")) or {}).get("holder", "")

    def cli(self, *args):
        return CliRunner().invoke(main, [*args, "--config", str(self.config)], env={
            NINJA_VAR: self.ninja.client_secret, CW_VAR: self.cw.private_key, STRIPE_VAR: self.stripe.api_key,
            TOKEN_VAR: TOKEN})


@pytest.fixture
def world(tmp_path):
    with contextlib.ExitStack() as stack:
        w = World(tmp_path, stack)
        try:
            yield w
        finally:
            for proc in w.procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)


FIRST_JOBS = """
[[schedule.jobs]]
name = "alerts"
connectors = ["ninjaone"]
streams = ["alerts", "alert_events"]
every = "2s"

[[schedule.jobs]]
name = "psa"
connectors = ["connectwise"]
every = "2s"

[[schedule.jobs]]
name = "invoices"
cron = "0 6 1 * *"
preview_cron = "0 6 L * *"
"""

SECOND_JOBS = """
[[schedule.jobs]]
name = "everything"
every = "2s"
"""


def test_daemon_runs_jobs_refuses_a_resync_while_locked_stops_on_sigterm_and_resumes(world):
    t0 = time.monotonic()
    world.write_config(FIRST_JOBS)
    first = world.start("first")

    # Two jobs fire, one run at a time.
    def both_ran():
        done = [e for e in world.events("first") if e.get("event") == "daemon.job_finished"]
        return {e["job"] for e in done} >= {"alerts", "psa"} and done
    done = wait_for("the alerts and psa jobs to run", both_ran, timeout=20)
    # Held, not failed: the first job's tickets wait for the other job's streams to be read once.
    finished = {r["id"]: r for r in world.runs() if r["status"] in ("ok", "warnings", "held")}
    assert {e["run_id"] for e in done} <= set(finished)
    health = httpx.get(f"{world.api}/health", headers=world.auth, timeout=5).json()
    jobs = {j["id"]: j for j in health["scheduler"]["jobs"]}
    assert set(jobs) == {"alerts", "psa", "invoices", "invoices.preview"}
    assert jobs["invoices"]["next_run_at"] and jobs["invoices.preview"]["next_run_at"]

    # A long resync of the devices (NinjaOne slowed down): 15 pages of 20, about 6 s.
    world.slow_ninja.delay = 0.4

    def start_resync():
        # Refused, not queued, while a job holds the lock: the every-2-s alerts job may hold it now.
        answer = httpx.post(f"{world.api}/resync", headers=world.auth, timeout=5,
                            json={"connectors": ["ninjaone"], "streams": ["devices"]})
        assert answer.status_code in (202, 409), answer.text
        return [answer] if answer.status_code == 202 else None
    (started,) = wait_for("the resync to be accepted", start_resync, timeout=15, every=0.2)
    run_id = started.json()["run_id"]
    wait_for("the resync to hold the lock", lambda: world.lock_holder().startswith(f"daemon:resync:{run_id}"),
             timeout=10)

    # While it runs, a resync is refused through the API and through the CLI, naming the holder.
    refused = httpx.post(f"{world.api}/resync", headers=world.auth, json={"all": True}, timeout=5)
    assert refused.status_code == 409 and refused.json()["holder"]["holder"].startswith("daemon:resync")
    cli = world.cli("resync", "--stream", "devices")
    assert cli.exit_code == EXIT_LOCKED, cli.output
    assert "daemon:resync" in cli.output and f"pid {first.pid}" in cli.output
    skipped = wait_for("a job skipped while the resync runs", lambda: [
        e for e in world.events("first") if e.get("event") == "daemon.job_skipped"], timeout=10)
    assert skipped

    # SIGTERM mid-run: the page in flight is committed, the run recorded as stopped, exit 0.
    wait_for("a few device pages", lambda: world.read(lambda store: store.count("devices")) >= 40, timeout=10)
    assert world.lock_holder().startswith(f"daemon:resync:{run_id}")   # still running
    assert world.stop(first) == 0, world.log("first")
    stopped = next(r for r in world.runs() if r["id"] == run_id)
    assert stopped["status"] == "stopped", stopped
    assert all(r["status"] != "running" for r in world.runs())
    store = world.store()
    kept, cursor = store.count("devices"), store.get_cursor("ninjaone", "devices")
    assert 0 < kept < DEVICES and store.lock_info("sync") is None
    assert cursor["after"] == max(int(d.source_id) for d in store.iter_devices("ninjaone"))
    store.close()
    events = [e["event"] for e in world.events("first")]
    assert events.index("daemon.stopping") < events.index("daemon.stopped")

    # Restart with one job for everything, and a resync from the CLI through the daemon.
    world.slow_ninja.delay = 0.0
    world.write_config(SECOND_JOBS)
    second = world.start("second")
    result = world.cli("resync", "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["status"] == "ok" and row["counts"]["records"]["ninjaone.devices"] > 0
    wait_for("a scheduled run after the resync", lambda: [
        e for e in world.events("second") if e.get("event") == "daemon.job_finished" and e.get("job") == "everything"
        and e["run_id"] != row["id"]], timeout=15)
    metrics = httpx.get(f"{world.api}/metrics", headers=world.auth, timeout=5).text
    assert "msp_hub_records_pulled_total" in metrics
    assert world.stop(second) == 0, world.log("second")

    # No configured secret in the daemon's logs, its metrics, or the API's answers.
    secrets = [world.ninja.client_secret, world.cw.private_key, world.stripe.api_key, TOKEN]
    seen = world.log("first") + world.log("second") + metrics + result.output + cli.output
    assert not [s for s in secrets if s in seen]

    # Nothing lost: every device stored, cursors where the data is. Nothing duplicated: one
    # invoice per key at Stripe, one ticket per alert at ConnectWise.
    store = world.store()
    try:
        assert store.count("devices") == len(world.ninja.device_ids)
        swept = store.get_cursor("ninjaone", "devices")   # a finished sweep: the start of the run that made it
        assert set(swept) == {"swept_at"} and swept["swept_at"] in {r["started_at"] for r in store.runs(100)
                                                                  if r["status"] == "ok"}
        keys = collections.Counter(i["metadata"].get("msp_hub_action_key") for i in world.stripe.list_objects("invoice"))
        assert keys and max(keys.values()) == 1, keys
        sent = {a["key"] for a in store.actions(status="sent") if a["kind"] == "invoice"}
        assert sent == set(keys)
        # The hub's tickets, each made once (the PSA also holds its people's tickets, without a hub reference).
        refs = collections.Counter(ref for ref in (world.cw.record("tickets", i).get("externalXRef")
                                                   for i in world.cw.ids("tickets")) if str(ref).startswith("msp-hub:"))
        assert refs and max(refs.values()) == 1, refs
        assert store.lock_info("sync") is None and all(r["status"] in ("ok", "warnings", "held", "partial", "stopped") for r in store.runs(100))
    finally:
        store.close()
    assert time.monotonic() - t0 < 50


INVOICE_JOB = """
[[schedule.jobs]]
name = "invoices"
cron = "0 6 1 * *"
preview_cron = "0 6 L * *"
"""


def test_a_daemon_started_after_the_invoicing_time_invoices_at_once_and_finishes_a_stopped_bill_run(world):
    """Started after 06:00 on the 1st (a deploy, a reboot), the daemon runs the missed invoicing
    firing at once; stopped by SIGTERM in the middle of it, it runs it again when it restarts:
    every invoice of the ended month is pushed once, without waiting for the next month."""
    world.write_config(INVOICE_JOB)
    # The hub was in use before (a dry run by hand): its first run of the month is due.
    dry = world.cli("sync", "--dry-run")
    assert dry.exit_code == 0, dry.output
    month = last_ended_period(datetime.now(timezone.utc), "Europe/Paris").name
    assert world.read(lambda store: store.actions()) == []

    world.slow_stripe.delay = 0.5                     # each invoice takes a few Stripe requests
    first = world.start("first")
    caught = wait_for("the catch-up", lambda: [e for e in world.events("first") if e.get("event") == "daemon.catch_up"],
                      timeout=40)
    assert caught[0]["job"] == "invoices"

    def invoices(store):
        return {a["key"]: a for a in store.actions(kind="invoice")}      # the month's and a block's renewal
    wait_for("the first invoice to be sent", lambda: any(a["status"] == "sent" for a in world.read(invoices).values()),
             timeout=30, every=0.05)
    assert world.stop(first) == 0, world.log("first")
    stopped = world.read(invoices)
    waiting = sorted(k for k, a in stopped.items() if a["status"] != "sent")
    assert waiting, "the bill run ended before it could be stopped"
    assert [r["status"] for r in world.runs() if json.loads(r["counts"] or "{}").get("holder") == "daemon:invoices"] \
        == ["stopped"]

    # Restarted at once: the stopped firing runs again and sends the rest, each invoice once.
    world.slow_stripe.delay = 0.0
    second = world.start("second")
    assert [e["job"] for e in world.events("second") if e.get("event") == "daemon.catch_up"] == ["invoices"]
    done = wait_for("every invoice sent", lambda: (lambda a: a and all(x["status"] == "sent" for x in a.values()) and a)(
        world.read(invoices)), timeout=30)
    assert set(waiting) <= set(done) and {a["period"] for k, a in done.items() if k.startswith("invoice:")} == {month}

    def bill_runs():
        return [r["status"] for r in world.runs() if json.loads(r["counts"] or "{}").get("holder") == "daemon:invoices"]
    # The invoices are sent before the run ends (it may still push a notice): stop after it ended.
    wait_for("the second bill run to end", lambda: len(bill_runs()) == 2 and "running" not in bill_runs(), timeout=30)
    assert world.stop(second) == 0, world.log("second")
    keys = collections.Counter(i["metadata"].get("msp_hub_action_key") for i in world.stripe.list_objects("invoice"))
    assert set(keys) == set(done) and max(keys.values()) == 1, keys
    statuses = bill_runs()
    assert len(statuses) == 2 and statuses[1] == "stopped" and statuses[0] in ("ok", "warnings", "held", "partial")

    # A third start finds the firing done: nothing is caught up, nothing sent.
    third = world.start("third")
    wait_for("the scheduler", lambda: [e for e in world.events("third") if e.get("event") == "daemon.started"], timeout=40)
    assert world.stop(third) == 0
    assert not [e for e in world.events("third") if e.get("event") in ("daemon.catch_up", "daemon.job_started")]
    assert len(world.stripe.list_objects("invoice")) == len(done)


# --- in process: the schedule's checks -------------------------------------------------------------

def schedule(jobs: list[dict], **extra) -> list:
    return parse_schedule(config_from_dict({"schedule": {"jobs": jobs, **extra}}),
                          {"ninjaone": ["clients", "devices", "alerts", "alert_events"], "stripe": []})


def test_schedule_reads_intervals_crons_previews_and_scopes():
    jobs = schedule([{"name": "alerts", "connectors": ["ninjaone"], "streams": ["alerts", "alert_events"], "every": "1m"},
                     {"name": "devices", "streams": ["clients", "devices"], "every": "1h"},
                     {"name": "invoices", "cron": "0 6 1 * *", "preview_cron": "0 6 L * *", "misfire_grace_time": 3600}],
                    misfire_grace_time=120)
    assert [(j.name, j.every, j.misfire_grace_time) for j in jobs] == [
        ("alerts", 60, 120), ("devices", 3600, 120), ("invoices", None, 3600)]
    assert jobs[0].scope == {"connectors": ["ninjaone"], "streams": ["alerts", "alert_events"]}
    assert parse_every("2s") == 2 and parse_every("15m") == 900 and parse_every("1d") == 86400
    last = cron_trigger("0 6 L * *", "UTC")
    assert last.get_next_fire_time(None, datetime(2028, 2, 3, tzinfo=timezone.utc)) == \
        datetime(2028, 2, 29, 6, tzinfo=timezone.utc)
    sunday = cron_trigger("30 2 * * 0", "UTC")   # crontab's 0 is Sunday (APScheduler 3 would say Monday)
    assert sunday.get_next_fire_time(None, datetime(2026, 11, 23, tzinfo=timezone.utc)).weekday() == 6
    weekdays = cron_trigger("0 8 * * 1-5", "UTC")
    assert weekdays.get_next_fire_time(None, datetime(2026, 11, 21, tzinfo=timezone.utc)).weekday() == 0


@pytest.mark.parametrize("jobs, key, fragment", [
    ([{"name": "a", "every": "5 minutes"}], "schedule.jobs[0].every", '"30s", "15m", "1h" or "1d"'),
    ([{"name": "a", "every": "0s"}], "schedule.jobs[0].every", "not a duration"),
    ([{"name": "a"}], "schedule.jobs[0].every", "exactly one of every and cron"),
    ([{"name": "a", "every": "1m", "cron": "* * * * *"}], "schedule.jobs[0].every", "exactly one"),
    ([{"name": "a", "cron": "0 6 32 * *"}], "schedule.jobs[0].cron", "0 6 L * *"),
    ([{"name": "a", "cron": "0 6 1 *"}], "schedule.jobs[0].cron", "4 fields"),
    ([{"name": "a", "cron": "0 6 1 * *", "preview_cron": "0 25 L * *"}], "schedule.jobs[0].preview_cron", "crontab"),
    ([{"name": "a", "every": "1m"}, {"name": "a", "every": "1h"}], "schedule.jobs[1].name", "same name"),
    ([{"every": "1m"}], "schedule.jobs[0].name", "give each job a name"),
    ([{"name": "a", "every": "1m", "stream": ["devices"]}], "schedule.jobs[0].stream", "use one of"),
    ([{"name": "a", "every": "1m", "connectors": ["connectwise"]}], "schedule.jobs[0].connectors", "ninjaone, stripe"),
    ([{"name": "a", "every": "1m", "streams": ["tickets"]}], "schedule.jobs[0].streams", "alert_events, alerts"),
    ([{"name": "a", "every": "1m", "full": "yes"}], "schedule.jobs[0].full", "true or false"),
    ([{"name": "a", "every": "1m", "period": "2026-10"}], "schedule.jobs[0].period", "cannot fix a period"),
    ([{"name": "a", "every": "1m", "misfire_grace_time": -1}], "schedule.jobs[0].misfire_grace_time", "seconds"),
])
def test_schedule_mistakes_name_the_key_and_the_fix(jobs, key, fragment):
    with pytest.raises(ConfigError) as exc:
        schedule(jobs)
    assert exc.value.key == key and exc.value.fix and fragment in str(exc.value)


def test_schedule_top_level_mistakes():
    with pytest.raises(ConfigError, match="schedule.every"):
        parse_schedule(config_from_dict({"schedule": {"every": "1m"}}))
    with pytest.raises(ConfigError, match="array of tables"):
        parse_schedule(config_from_dict({"schedule": {"jobs": {"name": "a"}}}))
    assert parse_schedule(config_from_dict({})) == []


def test_a_scope_is_checked_against_the_configured_connectors():
    streams = {"ninjaone": ["clients", "devices"], "stripe": []}
    assert normalize_scope({"streams": ["devices"], "full": True, "clients": ["acme"]}, streams) == \
        {"streams": ["devices"], "full": True, "clients": ("acme",)}
    for scope, key in (({"connectors": ["cw"]}, "connectors"), ({"period": "2026-13"}, "period"),
                       ({"dry_run": 1}, "dry_run"), ({"stream": "devices"}, "stream"),
                       ({"connectors": ["stripe"], "streams": ["devices"]}, "streams")):
        with pytest.raises(ScopeError) as exc:
            normalize_scope(scope, streams)
        assert exc.value.key == key


# --- in process: the service and the run lock ------------------------------------------------------

@pytest.fixture
def service(tmp_path, monkeypatch):
    from plugins.ninjaone.simulator import NinjaOneSimulator
    ninja = NinjaOneSimulator(seed=2, organizations=3, devices=30, now=time.time())
    with serve(ninja.handler) as url:
        cfg = tmp_path / "msp-hub.toml"
        cfg.write_text(f"""
database = "hub.db"
mappings = "{(ROOT / 'mappings').as_posix()}"
[connectors.ninjaone]
base_url = "{url}"
client_id = "{ninja.client_id}"
client_secret_env = "T_S_NINJA"
[admin]
port = {free_port()}
token_file = "token.txt"
[logging]
level = "warning"
""")
        (tmp_path / "token.txt").write_text(TOKEN + "\n")
        monkeypatch.setenv("T_S_NINJA", ninja.client_secret)
        yield Service(cfg)


def set_lock(service: Service, pid: int, host: str, beat: str) -> None:
    store = Store(service.config.database)
    store.db.execute("insert or replace into locks values ('sync', 'daemon:devices:old:1:1', ?, ?, ?, ?)",
                     [pid, host, beat, beat])
    store.db.conn.commit()
    store.close()


def test_a_live_holder_makes_jobs_skip_and_resyncs_fail_and_a_stale_one_is_taken_over(service):
    from hub.engine import LockedError
    assert service.token.reveal() == TOKEN and service.admin.url == f"http://127.0.0.1:{service.admin.port}"
    now = datetime.now(timezone.utc).isoformat()
    set_lock(service, os.getpid(), socket.gethostname(), now)                  # alive: this very process
    assert service.run_job("devices", {"streams": ["devices"]}) is None
    assert service.status()["scheduler"]["jobs"] == []
    with pytest.raises(LockedError, match="daemon:devices:old"):
        service.trigger({"streams": ["devices"]})
    with pytest.raises(ScopeError):
        service.trigger({"streams": ["tickets"]})

    set_lock(service, 999_999_999, socket.gethostname(), now)                 # its process is gone
    run_id = service.run_job("devices", {"streams": ["devices"], "dry_run": True})
    set_lock(service, os.getpid(), "elsewhere", "2026-01-01T00:00:00+00:00")  # no heartbeat for too long
    run_id2 = service.trigger({"streams": ["devices"], "full": True, "dry_run": True})
    service.join(timeout=10)
    store = Store(service.config.database)
    try:
        runs = {r["id"]: r for r in store.runs()}
        assert runs[run_id]["status"] == "ok" and runs[run_id2]["status"] == "ok"
        assert store.count("devices") == 30 and store.lock_info("sync") is None
    finally:
        store.close()


def test_one_run_at_a_time_in_the_service(service):
    from hub.engine import LockedError
    gate, entered = threading.Event(), threading.Event()

    def gated(event):
        entered.set()
        gate.wait(5)
    import hub.service as svc
    real = svc.sync_once
    svc.sync_once = lambda hub, progress=None, **kw: real(hub, progress=lambda e: (progress(e), gated(e)), **kw)
    try:
        run_id = service.trigger({"streams": ["devices"]})
        assert entered.wait(5)
        current = service.status()["current_run"]
        assert current["run_id"] == run_id and current["progress"]["pages"] == 1
        assert current["progress"]["records"] > 0 and current["progress"]["stream"] == "ninjaone.devices"
        assert service.run_job("alerts", {"streams": ["alerts"]}) is None
        with pytest.raises(LockedError):
            service.trigger({})
        gate.set()
        service.join(timeout=10)
    finally:
        svc.sync_once = real
    assert service.status()["current_run"] is None


def test_resync_without_a_daemon_runs_in_process_and_exits_75_while_locked(service):
    cfg = service.config_path
    set_lock(service, os.getpid(), socket.gethostname(), datetime.now(timezone.utc).isoformat())
    locked = CliRunner().invoke(main, ["resync", "--config", cfg, "--stream", "devices"])
    assert locked.exit_code == EXIT_LOCKED and "daemon:devices:old" in locked.output
    store = Store(service.config.database)
    store.release_lock("sync", "daemon:devices:old:1:1")
    store.close()
    bad = CliRunner().invoke(main, ["resync", "--config", cfg, "--stream", "tickets"])
    assert bad.exit_code == 2 and "--stream" in bad.output and "Traceback" not in bad.output
    ran = CliRunner().invoke(main, ["resync", "--config", cfg, "--stream", "devices", "--dry-run", "--json"])
    assert ran.exit_code == 0, ran.output
    report = json.loads(ran.stdout)
    assert report["records"] == {"ninjaone.devices": 30} and report["pushed"] == []


def test_example_schedule_fits_the_example_connectors():
    from hub.config import load_config
    from hub.engine import Hub
    cfg = load_config(ROOT / "examples" / "msp-hub.toml",
                      environ={"NINJAONE_CLIENT_SECRET": "x", "STRIPE_API_KEY": "sk_test_x", "CONNECTWISE_PRIVATE_KEY": "y"})
    cfg.database = ":memory:"
    hub = Hub(cfg)
    try:
        streams = {name: [s.name for s in c.streams()] for name, c in hub.connectors.items()}
    finally:
        hub.close()
    jobs = {j.name: j for j in parse_schedule(cfg, streams)}
    assert set(jobs) == {"alerts", "devices", "time", "invoices"} and jobs["invoices"].preview_cron == "0 6 L * *"


def test_previous_firing_finds_the_last_firing_at_or_before_now():
    utc = timezone.utc
    now = datetime(2027, 1, 1, 6, 30, tzinfo=utc)
    assert previous_firing(cron_trigger("0 6 1 * *", "UTC"), now) == datetime(2027, 1, 1, 6, 0, tzinfo=utc)
    assert previous_firing(cron_trigger("0 6 1 * *", "UTC"), now.replace(hour=5)) == datetime(2026, 12, 1, 6, 0, tzinfo=utc)
    assert previous_firing(cron_trigger("0 6 L * *", "UTC"), now) == datetime(2026, 12, 31, 6, 0, tzinfo=utc)
    assert previous_firing(cron_trigger("0 6 1 1 *", "UTC"), now.replace(month=6)) == datetime(2027, 1, 1, 6, 0, tzinfo=utc)
    paris = previous_firing(cron_trigger("0 6 1 * *", "Europe/Paris"), now)
    assert paris.astimezone(utc) == datetime(2027, 1, 1, 5, 0, tzinfo=utc)   # 06:00 in Paris


def test_missed_firings_compare_each_cron_job_with_its_recorded_runs(service):
    utc = timezone.utc
    now = datetime(2027, 1, 1, 6, 30, tzinfo=utc)      # the service's time zone is UTC
    jobs = [Job("invoices", {}, cron="0 6 1 * *", preview_cron="0 6 L * *"),
            Job("preview", {"dry_run": True}, cron="0 6 1 * *"), Job("alerts", {"streams": ["alerts"]}, every=60)]
    store = Store(service.config.database)

    def run(holder, status, started):
        rid, _ = store.start_run("sync")
        store.finish_run(rid, status, {"holder": holder}, [])
        store.db.execute("update runs set started_at = ? where id = ?", [started.isoformat(), rid])
        store.db.conn.commit()
    try:
        assert missed_firings(service, jobs, now) == {}                      # a new database catches nothing up
        run("cli", "ok", datetime(2026, 12, 10, tzinfo=utc))                 # the hub is in use
        missed = {"invoices": datetime(2027, 1, 1, 6, 0, tzinfo=utc)}
        assert missed_firings(service, jobs, now) == missed
        run("daemon:invoices", "ok", datetime(2026, 12, 1, 6, 0, 2, tzinfo=utc))   # the previous month's firing
        run("daemon:invoices", "stopped", datetime(2027, 1, 1, 6, 0, 1, tzinfo=utc))
        run("daemon:alerts", "ok", datetime(2027, 1, 1, 6, 10, tzinfo=utc))
        assert missed_firings(service, jobs, now) == missed                  # stopped mid-run: not done
        run("daemon:invoices", "held", datetime(2027, 1, 1, 6, 5, tzinfo=utc))
        assert missed_firings(service, jobs, now) == {}                      # went to its end, something held
        assert missed_firings(service, jobs, datetime(2027, 2, 1, 7, 0, tzinfo=utc)) == {
            "invoices": datetime(2027, 2, 1, 6, 0, tzinfo=utc)}
    finally:
        store.close()
