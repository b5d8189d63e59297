"""Workers on Procrastinate, as real processes against the simulators over HTTP and a real
PostgreSQL: a tenant's sync runs and pushes; two tenants run in parallel; one tenant runs once at
a time and its syncs do not pile up; SIGTERM ends a run cleanly and gives its job back; a worker
SIGKILLed mid-push has its job retried by another worker and every invoice and ticket reaches the
simulators exactly once; a schedule is deferred once per firing with two workers; a wrong scope is
the run's recorded failure and is not retried. Then ``[workers]``'s checks and the firings between
two ticks, in process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hub.daemon import Job
from hub.errors import ConfigError
from hub.workers.app import PULL, SYNC, defer_run, make_app
from hub.workers.schedule import firings, previous_tick
from hub.workers.sandbox import SimulatedTenant, wait_for, write_deployment
from hub.workers.settings import load_deployment, parse_workers

ROOT = Path(__file__).resolve().parents[1]
FAST = {"heartbeat": "1s", "stalled_after": "3s", "tick": "* * * * * */1"}   # a tick every second


class Cluster:
    """Tenants on simulators, a tenants.toml on a fresh queue database, worker processes."""

    def __init__(self, tmp_path: Path, pg_url: str, names: tuple[str, ...] = ("acme",), devices: int = 200,
                 **workers):
        self.tmp_path, self.stack = tmp_path, contextlib.ExitStack()
        self.tenants = {n: SimulatedTenant(n, tmp_path / n, devices=devices) for n in names}
        for t in self.tenants.values():
            t.serve(self.stack)
        self.path = write_deployment(tmp_path / "tenants.toml", list(self.tenants.values()), pg_url,
                                     **(FAST | workers))
        self.pg_url = pg_url
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.procs: list[subprocess.Popen] = []
        done = self.cli("worker", "--init")
        assert done.returncode == 0, done.stdout + done.stderr
        self.app = make_app(load_deployment(self.path))
        self.stack.enter_context(self.app.open())

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hub.cli", *args, "--tenants", str(self.path)], cwd=ROOT,
                              env=self.env, capture_output=True, text=True, timeout=60)

    def start(self, name: str) -> subprocess.Popen:
        log = open(self.tmp_path / f"{name}.log", "w")
        self.stack.callback(log.close)
        proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "worker", "--tenants", str(self.path), "--name", name],
                                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        proc.send_signal(sig)
        return proc.wait(timeout=timeout)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        self.stack.close()

    def query(self, sql: str, args=()) -> list[tuple]:
        import psycopg
        with psycopg.connect(self.pg_url) as conn:
            return conn.execute(sql, args).fetchall()

    def jobs(self, *tasks: str) -> list[dict]:
        """The jobs of ``tasks`` (default: the tenants' runs, sync and pull), oldest first."""
        rows = self.query("select id, status::text, attempts, args from procrastinate_jobs where task_name = any(%s) "
                          "order by id", [list(tasks or (SYNC, PULL))])
        return [{"id": i, "status": s, "attempts": a, "args": args} for i, s, a, args in rows]

    def workers(self) -> int:
        """Workers alive (registered in the queue, heartbeat fresh)."""
        return self.query("select count(*) from procrastinate_workers where last_heartbeat > now() - interval '3s'")[0][0]

    def idle(self) -> bool:
        return all(j["status"] not in ("todo", "doing") for j in self.jobs())

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text()


@pytest.fixture
def cluster(tmp_path, pg_url):
    made: list[Cluster] = []

    def make(*names: str, **kwargs) -> Cluster:
        c = Cluster(tmp_path, pg_url, names or ("acme",), **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def expected(t: SimulatedTenant) -> set[str]:
    """What the tenant's outbox sent, as the simulators name it (tickets carry an msp-hub: prefix)."""
    sent = [a for a in t.outbox() if a["status"] == "sent"]
    return {a["key"] if a["kind"] in ("invoice", "renewal") else f"msp-hub:{a['key']}" for a in sent
            if a["kind"] in ("invoice", "renewal", "ticket", "notice")}


def assert_exactly_once(t: SimulatedTenant) -> None:
    pushed = t.pushed()
    assert pushed, f"nothing reached the simulators of {t.name}"
    assert {k: n for k, n in pushed.items() if n != 1} == {}, "pushed more than once"
    assert set(pushed) == expected(t), "the simulators and the outbox disagree"
    assert len(t.invoices()) >= 4 and len(t.tickets()) >= 4     # the demo's MSP: 5 invoices, 4 tickets


def test_a_tenants_sync_runs_on_a_worker_and_pushes_once(cluster):
    c = cluster("acme")
    acme = c.tenants["acme"]
    c.start("w1")
    done = c.cli("queue", "sync", "--tenant", "acme")
    assert done.returncode == 0 and "acme: queued as job" in done.stdout, done.stdout + done.stderr
    wait_for(lambda: c.idle() and acme.runs(), 60, "the sync to run")
    assert_exactly_once(acme)
    run = acme.runs()[-1]
    assert (run["status"], run["trigger"], run["job"]) == ("ok", "worker", "manual")

    # Again: nothing new, nothing sent twice. A dry run (pull) pushes nothing either.
    before = acme.pushed()
    assert defer_run(c.app, "acme", "manual", {}) is not None
    assert defer_run(c.app, "acme", "preview", {}, task=PULL) is not None
    wait_for(lambda: c.idle() and len(acme.runs()) == 3, 60, "two more runs")
    assert acme.pushed() == before
    assert [r["status"] for r in acme.runs()] == ["ok", "ok", "ok"]

    # A wrong scope is the run's recorded failure, and the job is not retried.
    job = defer_run(c.app, "acme", "bad", {"connectors": ["autotask"]})
    wait_for(lambda: c.idle(), 60, "the bad job to end")
    [bad] = [j for j in c.jobs() if j["id"] == job]
    assert (bad["status"], bad["attempts"]) == ("failed", 1)    # tried once, never again
    refused = acme.runs()[-1]
    assert refused["status"] == "refused" and refused["job"] == "bad"
    assert "connector 'autotask' is not configured" in refused["errors"][0]

    status = c.cli("queue", "status")
    assert status.returncode == 0 and "workers alive: 1" in status.stdout
    assert c.stop(c.procs[0]) == 0


def test_two_tenants_run_in_parallel_on_two_workers(cluster):
    c = cluster("acme", "birch")
    c.start("w1"), c.start("w2")
    wait_for(lambda: c.workers() == 2, 60, "two workers to register")
    for t in c.tenants.values():
        t.slow_invoice = 0.5          # each run lasts a few seconds: long enough to overlap
        assert defer_run(c.app, t.name, "manual", {}) is not None
    wait_for(lambda: c.idle() and all(t.runs() for t in c.tenants.values()), 90, "both tenants' runs")
    a, b = (c.tenants[n].runs()[-1] for n in ("acme", "birch"))
    assert a["status"] == b["status"] == "ok"
    assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"], "the runs did not overlap"
    for t in c.tenants.values():
        assert_exactly_once(t)


def test_one_tenant_runs_once_at_a_time_and_its_syncs_do_not_pile_up(cluster):
    c = cluster("acme")
    acme = c.tenants["acme"]
    acme.slow_invoice = 0.4
    first = defer_run(c.app, "acme", "manual", {})
    assert first is not None
    assert defer_run(c.app, "acme", "manual", {}) is None       # one already waits: not queued twice
    c.start("w1"), c.start("w2")
    wait_for(lambda: [j for j in c.jobs() if j["id"] == first and j["status"] == "doing"], 30, "the first run")
    second = defer_run(c.app, "acme", "manual", {})              # one runs, one may wait
    assert second is not None
    assert defer_run(c.app, "acme", "manual", {}) is None
    wait_for(lambda: c.idle() and len(acme.runs()) == 2, 90, "both runs")
    one, two = acme.runs()
    assert one["finished_at"] <= two["started_at"], "two runs of one tenant overlapped"
    assert [j["status"] for j in c.jobs()] == ["succeeded", "succeeded"]
    assert_exactly_once(acme)


def test_sigterm_gives_the_job_back_and_another_worker_finishes_it(cluster):
    c = cluster("acme")
    acme = c.tenants["acme"]
    acme.slow_invoice = 1.0
    job = defer_run(c.app, "acme", "manual", {})
    w1 = c.start("w1")
    wait_for(lambda: acme.invoices(), 60, "the first invoice at Stripe")
    assert c.stop(w1, signal.SIGTERM) == 0                       # ends after the push in flight
    [back] = c.jobs()
    assert back["id"] == job and back["status"] == "todo" and back["attempts"] == 1
    assert acme.runs()[-1]["status"] == "stopped"
    acme.slow_invoice = 0
    c.start("w2")
    wait_for(lambda: c.idle() and acme.runs()[-1]["status"] == "ok", 60, "the run on the second worker")
    assert_exactly_once(acme)


def test_a_worker_killed_mid_push_has_its_job_retried_elsewhere_exactly_once(cluster):
    c = cluster("acme", "birch")
    acme, birch = c.tenants["acme"], c.tenants["birch"]
    acme.slow_invoice = 3.0                                      # the invoice is created, its answer is late
    job = defer_run(c.app, "acme", "manual", {})
    w1 = c.start("w1")
    wait_for(lambda: [j for j in c.jobs() if j["status"] == "doing"], 60, "w1 to take the job")
    c.start("w2")
    defer_run(c.app, "birch", "manual", {})                      # the other tenant goes on meanwhile
    wait_for(lambda: acme.invoices(), 60, "the first invoice at Stripe")
    assert c.stop(w1, signal.SIGKILL) == -signal.SIGKILL
    assert [a for a in acme.outbox() if a["status"] == "sending"], "the push in flight is recorded as sending"
    acme.slow_invoice = 0
    wait_for(lambda: c.idle() and acme.runs()[-1]["status"] == "ok", 60, "the job to be retried on w2")
    [retried] = [j for j in c.jobs() if j["id"] == job]
    assert retried["status"] == "succeeded" and retried["attempts"] == 2    # killed once, then done
    assert "worker.stalled_job_retried" in c.log("w2")
    assert [r["status"] for r in acme.runs()] == ["abandoned", "ok"]
    assert not [a for a in acme.outbox() if a["status"] == "sending"]
    for t in (acme, birch):
        assert_exactly_once(t)


def test_a_schedule_is_deferred_once_per_firing_with_two_workers(cluster):
    c = cluster("acme", devices=50)
    c.tenants["acme"].add_schedule('[[schedule.jobs]]\nname = "alerts"\nconnectors = ["ninjaone"]\n'
                                   'streams = ["alerts", "alert_events"]\nevery = "2s"\n')
    # Another tenant's config is broken: its schedule cannot be read, the others' still run.
    (c.tmp_path / "broken.toml").write_text('timezone = "Mars/Olympus"\n')
    c.path.write_text(c.path.read_text() + f'\n[tenants.broken]\nconfig = "{c.tmp_path / "broken.toml"}"\n')
    c.start("w1"), c.start("w2")
    wait_for(lambda: len([j for j in c.jobs() if j["status"] == "succeeded"]) >= 2, 60, "two scheduled runs")
    for p in c.procs:
        assert c.stop(p) == 0
    ticks = [j["args"]["timestamp"] for j in c.jobs("msp_hub.tick")]
    assert len(ticks) >= 2 and len(ticks) == len(set(ticks)), "a tick was deferred twice"
    fired = [(j["args"]["job"], j["args"]["fired_at"]) for j in c.jobs()]
    assert len(fired) == len(set(fired)), "a firing was deferred twice"
    assert all(job == "alerts" for job, _ in fired)
    assert all(datetime.fromisoformat(at).timestamp() % 2 == 0 for _, at in fired)
    runs = c.tenants["acme"].runs()
    assert runs and {(r["trigger"], r["job"]) for r in runs} == {("worker", "alerts")}
    assert "worker.schedule_unreadable" in c.log("w1") + c.log("w2")
    assert "Mars/Olympus" in c.log("w1") + c.log("w2")


# --- in process: [workers] and the firings between two ticks -----------------------------------

def _workers(table, environ=None, tmp_path=Path(".")):
    return parse_workers(table, file="tenants.toml", base=tmp_path, environ=environ or {})


@pytest.mark.parametrize("table, key, says", [
    ({}, "workers.database", "missing"),
    ({"database": "sqlite:///queue.db"}, "workers.database", "is not PostgreSQL"),
    ({"database": "postgresql://hub:s3cret@db/q"}, "workers.database", "holds a password"),
    ({"database": "postgresql://hub@db/q", "database_password_env": "NOPE"}, "workers.database_password_env",
     "NOPE is not set"),
    ({"database": "postgresql://hub@db/q", "concurrency": 0}, "workers.concurrency", "from 1 to 64"),
    ({"database": "postgresql://hub@db/q", "heartbeat": "10s", "stalled_after": "15s"}, "workers.stalled_after",
     "at least twice heartbeat"),
    ({"database": "postgresql://hub@db/q", "tick": "every minute"}, "workers.tick", "not a crontab line"),
    ({"database": "postgresql://hub@db/q", "heartbeat": 10}, "workers.heartbeat", "not a duration"),
    ({"database": "postgresql://hub@db/q", "broker": "redis://"}, "workers.broker", "unknown key"),
    ({"database": "postgresql://hub@db/q", "keep_jobs": "10m"}, "workers.keep_jobs", "shorter than an hour"),
    ({"database": "postgresql://hub@db/q", "database_password_env": "A", "database_password_file": "b"},
     "workers.database_password_file", "both set"),
])
def test_workers_table_is_checked(table, key, says):
    with pytest.raises(ConfigError) as err:
        _workers(table)
    assert err.value.key == key and says in str(err.value) and err.value.fix


def test_the_queue_password_comes_from_the_environment_or_a_file_never_from_the_file(tmp_path):
    s = _workers({"database": "postgresql://hub@db:5432/q", "database_password_env": "QPW"}, {"QPW": "pa55word"})
    assert "password=pa55word" in s.conninfo() and "pa55word" not in repr(s)
    (tmp_path / "pw").write_text("fromfile\n")
    s = _workers({"database": "postgres://hub@db/q", "database_password_file": "pw"}, tmp_path=tmp_path)
    assert "password=fromfile" in s.conninfo()
    assert _workers({"database": "postgresql://hub@db/q"}).conninfo() == "postgresql://hub@db/q"


def test_a_deployment_without_a_workers_table_says_so(tmp_path):
    (tmp_path / "acme.toml").write_text("")
    (tmp_path / "tenants.toml").write_text('[tenants.acme]\nconfig = "acme.toml"\n')
    with pytest.raises(ConfigError, match=r"no \[workers\] table") as err:
        load_deployment(tmp_path / "tenants.toml")
    assert err.value.key == "workers"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def test_firings_between_two_ticks():
    every = Job("alerts", {"streams": ["alerts"]}, every=900)
    monthly = Job("invoices", {}, cron="0 6 1 * *", preview_cron="0 6 L * *")
    tick = lambda a, b: {(f.job, f.at.isoformat()) for f in firings([every, monthly], "Europe/Paris", _at(a), _at(b))}  # noqa: E731
    assert tick("2026-12-01T04:59:00", "2026-12-01T05:00:00") == {("alerts", "2026-12-01T05:00:00+00:00"),
                                                                 ("invoices", "2026-12-01T05:00:00+00:00")}
    assert tick("2026-12-01T05:00:00", "2026-12-01T05:01:00") == set()     # a tick never fires twice
    assert tick("2026-11-30T04:59:00", "2026-11-30T05:00:00") == {("alerts", "2026-11-30T05:00:00+00:00"),
                                                                 ("invoices.preview", "2026-11-30T05:00:00+00:00")}
    # Missed ticks (every worker down) are coalesced: one firing, the latest.
    assert tick("2026-12-01T05:01:00", "2026-12-01T06:01:00") == {("alerts", "2026-12-01T06:00:00+00:00")}
    [preview] = [f for f in firings([monthly], "UTC", _at("2026-11-30T05:59:00"), _at("2026-11-30T06:00:00"))]
    assert preview.scope == {"dry_run": True}


def test_previous_tick_follows_the_tick_crontab():
    now = _at("2026-12-01T05:00:00").timestamp()
    assert previous_tick("* * * * *", now) == _at("2026-12-01T04:59:00")
    assert previous_tick("* * * * * */5", now) == _at("2026-12-01T04:59:55")


def test_the_cli_refuses_a_wrong_deployment_before_touching_the_queue(tmp_path):
    from click.testing import CliRunner
    from hub.cli import EXIT_USAGE, main
    (tmp_path / "acme.toml").write_text("")
    path = tmp_path / "tenants.toml"
    path.write_text('[tenants.acme]\nconfig = "acme.toml"\n\n[workers]\ndatabase = "postgresql://hub@127.0.0.1:1/q"\n')
    done = CliRunner().invoke(main, ["queue", "sync", "--tenants", str(path), "--tenant", "globex"])
    assert done.exit_code == EXIT_USAGE and "no tenant 'globex'" in done.output and "use one of acme" in done.output
    path.write_text('[tenants.acme]\nconfig = "acme.toml"\n\n[workers]\ndatabase = "redis://cache:6379/0"\n')
    done = CliRunner().invoke(main, ["worker", "--tenants", str(path)])
    assert done.exit_code == EXIT_USAGE and "workers.database" in done.output and "PostgreSQL only" in done.output
    path.write_text('[tenants.acme]\nconfig = "acme.toml"\n\n[workers]\ndatabase = "postgresql://hub@127.0.0.1:1/q"\n')
    done = CliRunner().invoke(main, ["worker", "--init", "--tenants", str(path)])
    assert done.exit_code == EXIT_USAGE and "cannot connect to the queue's database" in done.output
