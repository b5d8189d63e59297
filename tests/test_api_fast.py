"""The admin API on one hub per process: nothing rebuilt per request until the config changes,
/health computed once, /resync only with an explicit scope, /runs saying what started each run.
(The speed itself is measured by benchmarks/api_load.py.)"""

import json

import pytest

import hub.plugins
import hub.service
from hub.api import make_app
from tests.test_api import AUTH, FakeService
from tests.conftest import Env
from tests.test_daemon_hygiene import NINJA, daemon  # noqa: F401  (the fixture)

DAEMON_AUTH = {"Authorization": "Bearer tok-hygiene-7c2e9b04a1d3"}


@pytest.fixture
def counted(monkeypatch):
    """How many plugin managers were built and how many times stream health was computed."""
    counts = {"plugin_managers": 0, "stream_health": 0}
    build, health = hub.plugins.get_plugin_manager, hub.service.stream_health

    def counting_build(*a, **k):
        counts["plugin_managers"] += 1
        return build(*a, **k)

    def counting_health(*a, **k):
        counts["stream_health"] += 1
        return health(*a, **k)

    monkeypatch.setattr(hub.plugins, "get_plugin_manager", counting_build)
    monkeypatch.setattr(hub.service, "stream_health", counting_health)
    return counts


def test_requests_reuse_the_process_hub_until_the_config_or_mappings_change(daemon, counted):
    service = hub.service.Service(daemon.cfg)
    client = make_app(service).test_client()
    assert counted["plugin_managers"] == 1
    for _ in range(5):
        assert client.get("/runs", headers=DAEMON_AUTH).status_code == 200
        assert client.get("/health", headers=DAEMON_AUTH).status_code == 503   # never pulled: not ready
        assert client.get("/actions", headers=DAEMON_AUTH).status_code == 200
    service.run_job("devices", NINJA)
    assert counted["plugin_managers"] == 1
    assert counted["stream_health"] == 5          # once per /health, not again for its status

    daemon.touch(daemon.cfg)
    assert client.get("/runs", headers=DAEMON_AUTH).status_code == 200
    assert client.get("/runs", headers=DAEMON_AUTH).status_code == 200
    assert counted["plugin_managers"] == 2
    daemon.touch(next(p for p in daemon.mappings.rglob("*.toml")))
    assert client.get("/health", headers=DAEMON_AUTH).status_code in (200, 503)
    assert counted["plugin_managers"] == 3


def test_a_config_made_wrong_while_running_is_named_by_health(daemon):
    service = hub.service.Service(daemon.cfg)
    client = make_app(service).test_client()
    daemon.cfg.write_text(daemon.cfg.read_text().replace('database = "hub.db"', 'database = 42'))
    daemon.touch(daemon.cfg)
    body = client.get("/health", headers=DAEMON_AUTH).get_json()
    assert not body["ready"] and body["reasons"][0].startswith("the hub cannot open: ") and "database" in body["reasons"][0]


def test_runs_show_trigger_job_and_scope(daemon):
    service = hub.service.Service(daemon.cfg)
    client = make_app(service).test_client()
    cron = service.run_job("devices", NINJA)
    answer = client.post("/resync", headers=DAEMON_AUTH, data=json.dumps({"stream": "clients"}))
    assert answer.status_code == 202, answer.get_json()
    service.join()
    api = answer.get_json()["run_id"]
    runs = {r["id"]: r for r in client.get("/runs", headers=DAEMON_AUTH).get_json()["runs"]}
    assert {k: (runs[k]["trigger"], runs[k]["job"], runs[k]["scope"]) for k in (cron, api)} == {
        cron: ("cron", "devices", {"connectors": ["ninjaone"]}),
        api: ("api", None, {"streams": ["clients"]})}
    one = client.get(f"/runs/{api}", headers=DAEMON_AUTH).get_json()
    assert (one["trigger"], one["scope"]) == ("api", {"streams": ["clients"]})


# --- POST /resync's scope -------------------------------------------------------------------------

@pytest.fixture
def fake(tmp_path):
    service = FakeService(Env(tmp_path, devices=4))
    return service, make_app(service).test_client()


@pytest.mark.parametrize("body, scope", [
    ({"all": True}, {}),
    ({"connector": "ninjaone"}, {"connectors": ["ninjaone"]}),
    ({"stream": "devices", "full": True}, {"streams": ["devices"], "full": True}),
    ({"client": "acme", "period": "2026-10", "dry_run": True},
     {"clients": ["acme"], "period": "2026-10", "dry_run": True}),
    ({"connectors": ["ninjaone"], "streams": ["devices"]}, {"connectors": ["ninjaone"], "streams": ["devices"]}),
])
def test_resync_runs_the_scope_it_is_given_read_as_json_without_a_content_type(fake, body, scope):
    service, client = fake
    answer = client.post("/resync", headers=AUTH, data=json.dumps(body))          # no Content-Type
    assert answer.status_code == 202 and service.triggered == [scope]
    answer = client.post("/resync", headers=AUTH, data=json.dumps(body), content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 202 and service.triggered == [scope, scope]


@pytest.mark.parametrize("data, message", [
    (b"", 'the scope is missing: send a JSON object naming the scope: {"connector": "ninjaone"}'),
    (b"  \n", "the scope is missing"),
    (b"{}", 'the scope is missing: send a JSON object naming the scope'),
    (b'{"full": true}', "the scope is missing"),
    (b'{"all": false}', '"all" must be true, got False'),
    (b'{"all": true, "connector": "ninjaone"}', '"all" runs everything: remove connectors, or remove "all"'),
    (b'{"stream": "devices", "streams": ["alerts"]}', 'give "stream" or "streams", not both'),
    (b'{"bogus": 1}', "unknown scope key 'bogus'; use one of all, connector, stream, client"),
    (b'["ninjaone"]', "the body must be a JSON object (the run's scope)"),
    (b"{not json", "the body is not JSON"),
])
def test_resync_without_an_explicit_scope_is_400_naming_the_fix(fake, data, message):
    service, client = fake
    answer = client.post("/resync", headers=AUTH, data=data)
    error = answer.get_json()["error"]
    assert answer.status_code == 400 and error.startswith(message) and service.triggered == []
    if message.startswith("the scope is missing"):
        assert '{"all": true} for everything' in error
