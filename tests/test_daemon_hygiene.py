"""Daemon hygiene: connectors (and their OAuth tokens) kept across runs until the config changes,
runs pruned after [schedule] keep_runs, and every library's log lines through one JSON pipeline."""

import io
import json
import logging
import os
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import structlog

from hub.config import load_config
from hub.errors import ConfigError
from hub.logs import configure_logging
from hub.service import Service, keep_runs
from hub.store import Store
from hub.testing import serve
from tests.conftest import Env

TOKEN_PATH = "/ws/oauth/token"
CONFIG = """
database = "hub.db"
mappings = "{mappings}"
[connectors.ninjaone]
base_url = "{url}"
client_id = "{client_id}"
client_secret_env = "T_HY_NINJA"
[admin]
port = 8798
token_file = "token.txt"
[logging]
level = "warning"
{extra}"""


class Daemon:
    """A NinjaOne simulator served over HTTP and a config for it; ``write(extra)`` rewrites the config."""

    def __init__(self, tmp_path, url, ninja):
        self.tmp_path, self.url, self.ninja = tmp_path, url, ninja
        self.cfg = tmp_path / "msp-hub.toml"
        self.mappings = Env(tmp_path).mappings
        (tmp_path / "token.txt").write_text("tok-hygiene-7c2e9b04a1d3\n")
        self.write()

    def write(self, extra: str = "") -> None:
        self.cfg.write_text(CONFIG.format(mappings=self.mappings.as_posix(), url=self.url,
                                          client_id=self.ninja.client_id, extra=extra))

    def touch(self, path) -> None:
        """Move a file's modification time forward (a save a second later)."""
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    def tokens(self) -> int:
        return self.ninja.requests_by_path.get(TOKEN_PATH, 0)

    def store(self) -> Store:
        return Store(str(self.tmp_path / "hub.db"))


@pytest.fixture
def daemon(tmp_path, monkeypatch):
    from plugins.ninjaone.simulator import NinjaOneSimulator
    ninja = NinjaOneSimulator(seed=3, organizations=5, devices=10, now=time.time())
    monkeypatch.setenv("T_HY_NINJA", ninja.client_secret)
    with serve(ninja.handler) as url:
        yield Daemon(tmp_path, url, ninja)


NINJA = {"connectors": ["ninjaone"]}


# --- connectors and their tokens ------------------------------------------------------------------

def test_runs_share_one_oauth_token_until_the_config_changes(daemon):
    service = Service(daemon.cfg)
    assert daemon.tokens() == 0          # building the connectors asks for nothing
    run_ids = [service.run_job("devices", NINJA) for _ in range(4)]
    store = daemon.store()
    assert [store.get_run(r)["status"] for r in run_ids] == ["ok"] * 4
    assert daemon.ninja.requests_by_path["/v2/alerts"] == 4           # every run pulled
    assert daemon.tokens() == 1                                          # with one token

    # A changed config builds new connectors, which get their own token; the old ones are closed.
    old = service.open_hub().connectors["ninjaone"]
    daemon.write('[schedule]\nkeep_runs = "30d"\n')
    daemon.touch(daemon.cfg)
    service.run_job("devices", NINJA)
    service.run_job("devices", NINJA)
    assert daemon.tokens() == 2
    assert service.open_hub().connectors["ninjaone"] is not old
    assert service.keep_runs == timedelta(days=30)

    # A changed mappings file rebuilds too (the next run bills from the new mappings).
    daemon.touch(next(p for p in daemon.mappings.rglob("*") if p.is_file()))
    service.run_job("devices", NINJA)
    assert daemon.tokens() == 3
    store.close()


def test_a_token_the_vendor_expired_is_fetched_again_by_the_kept_connector(daemon):
    service = Service(daemon.cfg)
    service.run_job("devices", NINJA)
    daemon.ninja.expire_tokens()
    run_id = service.run_job("devices", NINJA)
    store = daemon.store()
    assert store.get_run(run_id)["status"] == "ok" and daemon.tokens() == 2
    store.close()


def test_runs_record_their_trigger_job_and_scope(daemon):
    service = Service(daemon.cfg)
    cron = service.run_job("devices", {"connectors": ["ninjaone"], "streams": ["devices"]})
    service.catch_up.add("invoices")
    caught = service.run_job("invoices", NINJA)
    again = service.run_job("invoices", NINJA)              # the catch-up was its first firing only
    api = service.trigger({"streams": ["clients"]})
    service.join()
    store = daemon.store()
    rows = {r["id"]: r for r in store.runs(10)}
    origin = {k: (rows[k]["trigger"], rows[k]["job"], json.loads(rows[k]["scope"])) for k in (cron, caught, again, api)}
    assert origin == {cron: ("cron", "devices", {"connectors": ["ninjaone"], "streams": ["devices"]}),
                      caught: ("catch-up", "invoices", {"connectors": ["ninjaone"]}),
                      again: ("cron", "invoices", {"connectors": ["ninjaone"]}),
                      api: ("api", None, {"streams": ["clients"]})}
    store.close()


# --- pruning --------------------------------------------------------------------------------------

def _old_run(store: Store, days: int, status: str = "ok", passes: tuple = ()) -> str:
    run_id, _ = store.start_run("sync", trigger="cron", job="devices")
    started = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat()
    store.db["runs"].update(run_id, {"started_at": started, "status": status})
    for stream, pass_status in passes:
        store.record_pass("ninjaone", stream, run_id, started, pass_status, 1, finished_at=started)
    store.db.conn.commit()
    return run_id


def test_pruning_deletes_old_finished_runs_and_their_passes_but_each_streams_latest(tmp_path):
    store = Store(str(tmp_path / "hub.db"))
    oldest = _old_run(store, 200, passes=(("devices", "complete"), ("alerts", "complete")))
    old = _old_run(store, 120, passes=(("devices", "complete"), ("devices", "failed")))
    stuck = _old_run(store, 150, status="running")
    recent = _old_run(store, 10, passes=(("devices", "complete"),))
    gone = store.prune_runs(datetime.now(timezone.utc) - timedelta(days=90))
    assert gone == {"runs": 2, "stream_passes": 2}
    assert {r["id"] for r in store.runs(10)} == {stuck, recent}
    left = {(p["run_id"], p["stream"], p["status"]) for p in store.stream_passes(limit=50)}
    # alerts' only pass and devices' last failed pass stay: health is judged from them.
    assert left == {(oldest, "alerts", "complete"), (old, "devices", "failed"), (recent, "devices", "complete")}
    assert store.prune_runs(datetime.now(timezone.utc) - timedelta(days=90)) == {"runs": 0, "stream_passes": 0}
    store.close()


def test_the_daemon_prunes_at_each_run_end_after_keep_runs(daemon):
    daemon.write('[schedule]\nkeep_runs = "30d"\n')
    store = daemon.store()
    forty, five = _old_run(store, 40), _old_run(store, 5)
    service = Service(daemon.cfg)
    run_id = service.run_job("devices", NINJA)
    assert {r["id"] for r in store.runs(10)} == {five, run_id} and forty not in {r["id"] for r in store.runs(10)}
    store.close()


def test_keep_runs_defaults_to_90_days_and_a_wrong_one_names_the_key(daemon):
    assert keep_runs(load_config(daemon.cfg)) == timedelta(days=90)
    daemon.write('[schedule]\nkeep_runs = "ninety days"\n')
    with pytest.raises(ConfigError) as exc:
        Service(daemon.cfg)
    assert "schedule.keep_runs" in str(exc.value) and "not a duration" in str(exc.value) and 'keep_runs = "90d"' in str(exc.value)


# --- one log pipeline -----------------------------------------------------------------------------

@pytest.fixture
def json_log():
    buffer = io.StringIO()
    configure_logging(fmt="json", level="info", secrets=["s3cr3t-value"], stream=buffer)
    yield buffer
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_msp_hub", False)]:
        root.removeHandler(handler)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]   # fails on a line that is not JSON


def test_every_library_logs_one_json_object_per_line_redacted(json_log):
    structlog.get_logger().info("hub.event", token="s3cr3t-value")
    logging.getLogger("waitress").warning("Task queue depth is %d", 3)
    logging.getLogger("apscheduler.scheduler").info("Added job %r", "devices")        # below apscheduler's level
    logging.getLogger("apscheduler.executors.default").warning("Run time of job %r was missed by %s", "devices", "0:01")
    logging.getLogger("waitress").error("a header carried s3cr3t-value")
    try:
        {}["missing"]
    except KeyError:
        logging.getLogger("some.library").exception("it failed")
    out = lines(json_log)
    assert [(e["event"].splitlines()[0], e["level"], e.get("logger")) for e in out] == [
        ("hub.event", "info", None),
        ("Task queue depth is 3", "warning", "waitress"),
        ("Run time of job 'devices' was missed by 0:01", "warning", "apscheduler.executors.default"),
        ("a header carried [redacted]", "error", "waitress"),
        ("it failed", "error", "some.library")]
    assert out[0]["token"] == "[redacted]" and "s3cr3t" not in json_log.getvalue()
    assert "KeyError: 'missing'" in out[4]["exception"] and all("timestamp" in e for e in out)


def test_a_real_scheduler_error_and_threads_logging_together_never_fuse_lines(json_log):
    from apscheduler.schedulers.background import BackgroundScheduler
    scheduler = BackgroundScheduler(timezone=timezone.utc)
    failed = threading.Event()

    def job():
        failed.set()
        raise KeyError("boom")

    scheduler.add_job(job, "date", run_date=datetime.now(timezone.utc), id="broken")
    scheduler.start()

    def chatter(n):
        for i in range(200):
            structlog.get_logger().info("hub.chatter", thread=n, i=i, text="x" * 300)
            logging.getLogger("waitress.queue").warning("queue %d %d", n, i)

    threads = [threading.Thread(target=chatter, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed.wait(10)
    scheduler.shutdown(wait=True)
    out = lines(json_log)
    assert sum(e["event"] == "hub.chatter" for e in out) == 800
    assert sum(e.get("logger") == "waitress.queue" for e in out) == 800
    raised = [e for e in out if e.get("logger", "").startswith("apscheduler")]
    assert raised and "raised an exception" in raised[0]["event"] and "KeyError: 'boom'" in raised[0]["exception"]
