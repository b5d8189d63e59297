"""Stream health (/health, msp-hub streams), store metrics and abandoned runs: the operator's view."""

import os
import re
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from hub.api import make_app
from hub.cli import main
from hub.errors import ConfigError
from hub.metrics import store_metrics
from hub.service import DEFAULT_MAX_AGE, Service, max_ages, stream_health
from hub.testing import serve
from tests.conftest import Env
from tests.test_api import AUTH, FakeService

NINJA_STREAMS = {"ninjaone": ["alert_events", "alerts", "clients", "devices"], "stripe": []}


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path, devices=4)


def record(hub, stream, status="complete", hours_ago=0.0, error=None, records=4):
    """A pass of ``ninjaone.<stream>`` that ended ``hours_ago``."""
    pass_id = hub.store.record_pass("ninjaone", stream, "run-x", "2026-11-22T11:00:00+00:00", status, records,
                                    error=error)
    ended = (datetime.now(timezone.utc) - timedelta(hours=hours_ago)).isoformat()
    hub.store.db["stream_passes"].update(pass_id, {"finished_at": ended})
    hub.store.db.conn.commit()
    return pass_id


def by_key(rows):
    return {f"{r['connector']}.{r['stream']}": r for r in rows}


def test_a_stream_is_healthy_after_a_recent_complete_pass_and_never_pulled_otherwise(env):
    hub = env.hub()
    record(hub, "devices", hours_ago=1)
    rows = by_key(stream_health(hub))
    assert set(rows) == {"ninjaone.alert_events", "ninjaone.alerts", "ninjaone.clients", "ninjaone.devices"}
    devices = rows["ninjaone.devices"]
    assert devices["healthy"] and devices["reason"] is None and 3590 < devices["age_seconds"] < 3610
    assert devices["max_age_seconds"] == DEFAULT_MAX_AGE == 26 * 3600
    assert rows["ninjaone.clients"]["reason"] == "ninjaone.clients has never pulled successfully"


def test_a_stream_whose_last_pass_failed_is_unhealthy_with_its_error_even_when_recent(env):
    hub = env.hub()
    record(hub, "devices", hours_ago=2)
    record(hub, "devices", "failed", hours_ago=0.5, error="ninjaone: GET /v2/devices failed with HTTP 500")
    devices = by_key(stream_health(hub))["ninjaone.devices"]
    assert not devices["healthy"] and devices["last_error"] == "ninjaone: GET /v2/devices failed with HTTP 500"
    assert re.fullmatch(r"ninjaone\.devices: its last pass failed at \S+: ninjaone: GET /v2/devices failed with "
                        r"HTTP 500; last complete pass 2h ago", devices["reason"]), devices["reason"]
    # A later complete pass makes it healthy again; the last error stays visible.
    record(hub, "devices", hours_ago=0)
    devices = by_key(stream_health(hub))["ninjaone.devices"]
    assert devices["healthy"] and devices["last_error"].endswith("HTTP 500")


def test_a_stale_stream_names_its_age_its_limit_where_the_limit_comes_from_and_its_last_error(env):
    hub = env.hub()
    record(hub, "devices", hours_ago=30)
    record(hub, "devices", "stopped", hours_ago=1, error="stopped on request")
    devices = by_key(stream_health(hub))["ninjaone.devices"]
    assert devices["reason"] == ("ninjaone.devices: its last complete pass ended 1d6h ago, more than its maximum age "
                                 "of 1d2h (no scheduled job pulls it: the default); last error: stopped on request")


def test_the_maximum_age_comes_from_health_max_age_then_the_schedule_then_the_default(env):
    hub = env.hub()
    hub.config.health = {"max_age": {"ninjaone.devices": "2h"}}
    hub.config.schedule = {"jobs": [
        {"name": "alerts", "every": "5m", "streams": ["alerts", "alert_events"]},
        {"name": "devices", "every": "15m", "connectors": ["ninjaone"], "streams": ["devices"]},
        {"name": "nightly", "cron": "0 6 * * *"},
    ]}
    limits = max_ages(hub.config, NINJA_STREAMS)
    assert limits["ninjaone.devices"] == (7200, '[health] max_age "ninjaone.devices"')
    assert limits["ninjaone.alerts"] == (900, "3 x the interval of job 'alerts' (5m)")
    assert limits["ninjaone.alert_events"][0] == 900
    assert limits["ninjaone.clients"] == (3 * 86400, "3 x the interval of job 'nightly' (1d)")
    hub.config.schedule = {"jobs": [{"name": "devices", "every": "15m", "streams": ["devices"]}]}
    assert max_ages(hub.config, NINJA_STREAMS)["ninjaone.clients"] == (
        DEFAULT_MAX_AGE, "no scheduled job pulls it: the default")
    record(hub, "devices", hours_ago=3)
    assert by_key(stream_health(hub))["ninjaone.devices"]["reason"].endswith(
        'more than its maximum age of 2h ([health] max_age "ninjaone.devices")')


@pytest.mark.parametrize("table, key, fragment", [
    ({"ninjaone.nosuch": "2h"}, 'health.max_age."ninjaone.nosuch"', "no configured stream 'ninjaone.nosuch'"),
    ({"ninjaone.devices": "soon"}, 'health.max_age."ninjaone.devices"', "'soon' is not a duration"),
    ({"ninjaone.devices": "0m"}, 'health.max_age."ninjaone.devices"', "is not a duration"),
])
def test_a_wrong_health_max_age_is_a_config_error_naming_the_key(env, table, key, fragment):
    hub = env.hub()
    hub.config.health = {"max_age": table}
    with pytest.raises(ConfigError) as exc:
        max_ages(hub.config, NINJA_STREAMS)
    assert exc.value.key == key and fragment in str(exc.value) and exc.value.fix


def test_health_is_503_naming_each_unhealthy_stream_and_200_once_they_pulled(tmp_path):
    service = FakeService(Env(tmp_path, devices=4))
    service.config = {"health": {"max_age": {"ninjaone.clients": "1h"}}}
    hub = service.env.hub()
    record(hub, "alerts", hours_ago=0.1)
    record(hub, "alert_events", hours_ago=0.1)
    record(hub, "clients", hours_ago=2)
    record(hub, "devices", "failed", error="HTTP 401 from /v2/devices")
    client = make_app(service).test_client()
    response = client.get("/health", headers=AUTH)
    assert response.status_code == 503
    body = response.get_json()
    assert body["reasons"][0] == ('ninjaone.clients: its last complete pass ended 2h ago, more than its maximum age '
                                  'of 1h ([health] max_age "ninjaone.clients")')
    assert body["reasons"][1].startswith("ninjaone.devices: its last pass failed at ")
    assert body["reasons"][1].endswith(": HTTP 401 from /v2/devices")
    assert len(body["reasons"]) == 2
    streams = {s["stream"]: s for s in body["streams"]}
    assert streams["devices"]["last_status"] == "failed" and streams["devices"]["last_success"] is None
    assert streams["clients"]["max_age_seconds"] == 3600 and streams["alerts"]["healthy"] is True
    record(hub, "clients")
    record(hub, "devices")
    hub.close()
    ready = client.get("/health", headers=AUTH)
    assert ready.status_code == 200 and ready.get_json()["reasons"] == []


def test_streams_command_shows_each_streams_passes_age_and_health(tmp_path, monkeypatch):
    env = Env(tmp_path, devices=4)
    hub = env.hub()
    record(hub, "devices", hours_ago=30)
    record(hub, "devices", "failed", hours_ago=1, error="HTTP 500 from /v2/devices")
    record(hub, "clients", hours_ago=1)
    monkeypatch.setattr("hub.cli._open_hub", lambda path, **_: env.hub())
    result = CliRunner().invoke(main, ["streams"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    devices = next(l for l in lines if l.startswith("ninjaone.devices "))
    assert re.match(r"ninjaone\.devices\s+failed\s+\S+\s+1d6h\s+1d2h\s+NOT OK$", devices), devices
    clients = next(l for l in lines if l.startswith("ninjaone.clients "))
    assert re.match(r"ninjaone\.clients\s+complete\s+\S+\s+1h\s+1d2h\s+ok$", clients), clients
    assert re.search(r"^ninjaone\.alerts\s+never\s+-\s+-\s+1d2h\s+NOT OK$", result.output, re.M)
    assert any(l.startswith("! ninjaone.devices: its last pass failed") for l in lines)
    as_json = CliRunner().invoke(main, ["streams", "--json"])
    import json
    rows = by_key(json.loads(as_json.output))
    assert rows["ninjaone.devices"]["last_error"] == "HTTP 500 from /v2/devices"
    assert rows["ninjaone.devices"]["healthy"] is False and rows["ninjaone.clients"]["healthy"] is True


# --- metrics from the store --------------------------------------------------------------------------

def sample(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    m = re.search(rf"^{name}{{{re.escape(want)}}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_store_metrics_give_each_streams_last_success_and_up_and_the_outbox_counts(env):
    from hub.records import Action
    hub = env.hub()
    record(hub, "devices", hours_ago=2)
    record(hub, "devices", "failed", error="HTTP 500")
    record(hub, "clients", hours_ago=1)
    for key, status in (("invoice:a:2026-10", "pending"), ("invoice:b:2026-10", "held"),
                        ("invoice:c:2026-10", "held"), ("invoice:d:2026-10", "failed")):
        hub.store.record_action(Action(key, "invoice", "stripe", key.split(":")[1], {}, "2026-10"), "run-x")
        if status != "pending":
            hub.store.mark_failed(key, "why", status=status)
    run_id, _ = hub.store.start_run("sync")
    hub.store.finish_run(run_id, "held", {}, [])
    text = store_metrics(hub.store).decode()
    complete = hub.store.stream_states()[("ninjaone", "devices")]["last_complete"]
    assert sample(text, "msp_hub_stream_last_success_timestamp_seconds", connector="ninjaone", stream="devices") == \
        pytest.approx(datetime.fromisoformat(complete["finished_at"]).timestamp())
    assert sample(text, "msp_hub_stream_up", connector="ninjaone", stream="devices") == 0.0
    assert sample(text, "msp_hub_stream_up", connector="ninjaone", stream="clients") == 1.0
    assert sample(text, "msp_hub_stream_up", connector="ninjaone", stream="alerts") is None   # never pulled
    assert [sample(text, "msp_hub_actions", status=s) for s in ("pending", "held", "failed")] == [1.0, 2.0, 1.0]
    assert sample(text, "msp_hub_stored_runs", status="held") == 1.0
    assert sample(text, "msp_hub_stored_runs", status="failed") == 0.0
    assert "# TYPE msp_hub_stream_up gauge" in text


def test_the_api_serves_the_store_metrics_computed_at_each_scrape(tmp_path):
    service = FakeService(Env(tmp_path, devices=4))
    client = make_app(service).test_client()
    assert sample(client.get("/metrics", headers=AUTH).get_data(as_text=True), "msp_hub_stream_up",
                  connector="ninjaone", stream="devices") is None
    hub = service.env.hub()
    record(hub, "devices", "failed", error="HTTP 500")
    hub.close()
    text = client.get("/metrics", headers=AUTH).get_data(as_text=True)
    assert sample(text, "msp_hub_stream_up", connector="ninjaone", stream="devices") == 0.0
    assert "msp_hub_records_pulled" in text    # the process counters are still there
    assert service.opened == service.closed


# --- abandoned runs ----------------------------------------------------------------------------------

@pytest.fixture
def daemon_config(tmp_path, monkeypatch):
    from plugins.ninjaone.simulator import NinjaOneSimulator
    ninja = NinjaOneSimulator(seed=2, organizations=2, devices=6, now=time.time())
    with serve(ninja.handler) as url:
        cfg = tmp_path / "msp-hub.toml"
        cfg.write_text(f"""
database = "hub.db"
mappings = "{(Env(tmp_path).mappings).as_posix()}"
[connectors.ninjaone]
base_url = "{url}"
client_id = "{ninja.client_id}"
client_secret_env = "T_H_NINJA"
[admin]
port = 8799
token_file = "token.txt"
[logging]
level = "warning"
""")
        (tmp_path / "token.txt").write_text("tok-health-5b1e9a04c7d2\n")
        monkeypatch.setenv("T_H_NINJA", ninja.client_secret)
        yield cfg


def test_the_daemon_marks_runs_left_running_by_a_dead_process_abandoned_at_start(daemon_config):
    from hub.store import Store
    store = Store(str(daemon_config.parent / "hub.db"))
    host = socket.gethostname()
    ids = {}
    for name, mode, pid in (("dead", "sync", 999999999), ("live-sync", "sync", os.getpid()),
                            ("live-plan", "plan", os.getpid())):
        ids[name], _ = store.start_run(mode)
        store.db["runs"].update(ids[name], {"pid": pid, "host": host})
    store.db.conn.commit()
    service = Service(daemon_config)
    # The lock was free: no pulling run is alive anywhere, so the live process's sync is abandoned
    # too; a plan takes no lock and its process lives, so it stays running.
    assert sorted(service.abandoned) == sorted([ids["dead"], ids["live-sync"]])
    statuses = {r["id"]: r for r in store.runs(10)}
    assert statuses[ids["dead"]]["status"] == "abandoned" and "ended before it finished" in statuses[ids["dead"]]["errors"]
    assert statuses[ids["live-plan"]]["status"] == "running"
    store.close()


def test_while_another_run_holds_the_lock_only_runs_of_dead_processes_are_abandoned(daemon_config):
    from hub.store import Store
    store = Store(str(daemon_config.parent / "hub.db"))
    dead, _ = store.start_run("sync")
    store.db["runs"].update(dead, {"pid": 999999999})
    live, _ = store.start_run("sync")
    store.db.conn.commit()
    assert store.acquire_lock("sync", "cli:live") is None
    try:
        assert Service(daemon_config).abandoned == [dead]
    finally:
        store.release_lock("sync", "cli:live")
    assert store.get_run(live)["status"] == "running"
    store.close()
