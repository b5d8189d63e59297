"""A broken plugin fails only its own connector: loading, registering, pulling and pushing."""

import importlib.metadata
import json
import sys
import types

import pytest
import structlog
from click.testing import CliRunner

import hub.plugins as plugins_mod
from hub.cli import EXIT_PULL_FAILED, exit_code, main
from hub.config import HubConfig
from hub.connectors import Page, Stream
from hub.engine import Hub, sync_once
from hub.errors import ConfigError
from hub.hookspecs import hookimpl
from hub.mappings import load_mappings
from hub.plugins import broken_plugins, describe_plugins, get_plugin_manager
from hub.store import FAILED, SENT, Store
from hub.testing import ConnectorPlugin
from tests.conftest import NOW
from tests.test_cli import run, served  # noqa: F401 - the fixture

REAL = list(importlib.metadata.entry_points(group="msp_hub"))
INVOICES = [f"invoice:{c}:2026-10" for c in ("acme", "birchwood", "cobalt", "driftwood", "elmstreet")]


class FakeDist:
    def __init__(self, name, version):
        self.metadata, self.version = {"Name": name}, version


class FakeEntryPoint:
    """An installed plugin as importlib.metadata shows it: a name, a distribution, load()."""

    def __init__(self, name, value, dist="acme-msp-extras", version="2.3.1", obj=None):
        self.name, self.dist, self._obj = name, FakeDist(dist, version), obj
        self._ep = importlib.metadata.EntryPoint(name, value, "msp_hub")

    def load(self):
        return self._obj if self._obj is not None else self._ep.load()


@pytest.fixture(autouse=True)
def fresh_scan():
    plugins_mod.forget_entrypoints()
    yield
    plugins_mod.forget_entrypoints()


@pytest.fixture
def installed(monkeypatch, tmp_path):
    """Set the environment's msp_hub entry points: the real ones plus the given fakes."""
    monkeypatch.syspath_prepend(str(tmp_path))
    calls = []

    def install(*fakes):
        def entry_points():
            calls.append(1)
            return REAL + list(fakes)
        monkeypatch.setattr(plugins_mod, "entry_points", entry_points)
        plugins_mod.forget_entrypoints()
        return calls
    return install


def module_file(tmp_path, name, text):
    (tmp_path / f"{name}.py").write_text(text)
    sys.modules.pop(name, None)


def register_raises(exc):
    plugin = types.SimpleNamespace(__name__="raiser")

    @hookimpl
    def register_connectors(config):
        raise exc

    @hookimpl
    def veto_action(action):
        return "the broken plugin's veto"
    plugin.register_connectors, plugin.veto_action = register_connectors, veto_action
    return plugin


# --- loading -----------------------------------------------------------------------------------

def test_plugins_that_fail_to_load_are_left_out_and_reported_once_naming_the_fix(installed, tmp_path):
    module_file(tmp_path, "acme_syntax", "def oops(:\n")
    module_file(tmp_path, "acme_raises", "raise RuntimeError('licence server unreachable')\n")
    module_file(tmp_path, "acme_typo", "from hub.hookspecs import hookimpl\n"
                                       "@hookimpl\ndef register_conectors(config):\n    return []\n")
    calls = installed(FakeEntryPoint("missing", "acme_not_installed_anywhere"),
                      FakeEntryPoint("syntax", "acme_syntax"),
                      FakeEntryPoint("raises", "acme_raises", dist="acme-licensing", version="0.9"),
                      FakeEntryPoint("typo", "acme_typo"))
    with structlog.testing.capture_logs() as logs:
        pm = get_plugin_manager()
        again = get_plugin_manager()
    assert {"connectwise", "ninjaone", "stripe"} <= set(plugins_mod.plugin_names(pm))
    broken = {b.name: b for b in broken_plugins(pm)}
    assert set(broken) == {"missing", "syntax", "raises", "typo"}
    assert broken["missing"].error.startswith("ModuleNotFoundError")
    assert broken["syntax"].error.startswith("SyntaxError")
    assert broken["raises"].error == "RuntimeError: licence server unreachable"
    assert "register_conectors" in broken["typo"].error
    message = broken["raises"].message
    assert "'raises'" in message and "acme-licensing 0.9" in message and "licence server unreachable" in message
    assert "pip install --force-reinstall acme-licensing" in message and "pip uninstall acme-licensing" in message
    # Reported once per process, though two managers were built; entry points scanned once.
    assert sorted(e["plugin"] for e in logs if e["event"] == "plugin.broken") == ["missing", "raises", "syntax", "typo"]
    assert len(calls) == 1 and {b.name for b in broken_plugins(again)} == set(broken)


def test_a_plugin_installed_while_running_is_not_loaded_until_a_restart(installed, tmp_path, monkeypatch):
    calls = installed()
    first = get_plugin_manager()
    module_file(tmp_path, "acme_late", "raise ImportError('half-installed')\n")
    monkeypatch.setattr(plugins_mod, "entry_points", lambda: (calls.append(1), REAL + [FakeEntryPoint("late", "acme_late")])[1])
    later = get_plugin_manager()
    assert broken_plugins(later) == [] and plugins_mod.plugin_names(later) == plugins_mod.plugin_names(first)
    assert len(calls) == 1
    # A restart (a new scan) sees it, as broken, and still loads the others.
    plugins_mod.scanned_entrypoints(rescan=True)
    restarted = get_plugin_manager()
    assert [b.name for b in broken_plugins(restarted)] == ["late"] and len(calls) == 2
    assert {"connectwise", "ninjaone", "stripe"} <= set(plugins_mod.plugin_names(restarted))


def test_the_daemon_keeps_its_plugins_and_health_does_not_change_when_one_is_installed(installed, tmp_path, monkeypatch):
    from hub.api import make_app
    from hub.service import Service
    from tests.conftest import mappings_for_tests
    installed()
    cfg = tmp_path / "msp-hub.toml"
    cfg.write_text(f'''database = "hub.db"
mappings = "{mappings_for_tests(tmp_path).as_posix()}"
[admin]
token_file = "token.txt"
''')
    (tmp_path / "token.txt").write_text("tok-isolation-1234567890\n")
    service = Service(cfg)
    client = make_app(service).test_client()
    auth = {"Authorization": "Bearer tok-isolation-1234567890"}
    before = client.get("/health", headers=auth)
    module_file(tmp_path, "acme_new", "raise SyntaxError('installed mid-run')\n")
    monkeypatch.setattr(plugins_mod, "entry_points", lambda: REAL + [FakeEntryPoint("new", "acme_new")])
    after = client.get("/health", headers=auth)
    assert before.status_code in (200, 503) and after.status_code == before.status_code
    assert after.get_json() == before.get_json()
    hub = service.open_hub()
    try:
        assert broken_plugins(hub.pm) == []
    finally:
        hub.close()


def hub_with(env, pm):
    """A hub on the env's store, mappings and clock with this plugin manager (entry points and all)."""
    return Hub(HubConfig(database=":memory:"), pm=pm, store=Store(env.db), mappings=load_mappings(env.mappings),
               clock=lambda: NOW)


# --- registering connectors --------------------------------------------------------------------

def test_a_plugin_whose_register_connectors_raises_is_broken_and_none_of_its_hooks_run(env, installed):
    installed(FakeEntryPoint("raiser", "unused", dist="acme-raiser", version="1.0",
                             obj=register_raises(KeyError("tenant_id"))))
    pm = get_plugin_manager(ConnectorPlugin(*env.connectors()))
    with structlog.testing.capture_logs() as logs:
        hub = hub_with(env, pm)
    try:
        assert {"ninjaone", "stripe"} <= set(hub.connectors)
        (broken,) = broken_plugins(hub.pm)
        assert (broken.name, broken.stage, broken.error) == ("raiser", "register_connectors", "KeyError: 'tenant_id'")
        assert "acme-raiser 1.0" in broken.message and "pip uninstall acme-raiser" in broken.message
        assert [e["plugin"] for e in logs if e["event"] == "plugin.broken"] == ["raiser"]
        assert hub.pm.get_plugin("raiser") is None       # its veto never holds anything
        report = sync_once(hub)
    finally:
        hub.close()
    assert report.passes["plugin:raiser"]["status"] == "failed" and "KeyError" in report.passes["plugin:raiser"]["error"]
    assert report.passes["ninjaone.devices"]["status"] == "complete"
    assert exit_code(report) == EXIT_PULL_FAILED
    # Its hooks might have changed the invoices: they wait, and nothing was sent.
    assert report.pushed == [] and env.invoices() == []
    assert sorted(h["key"] for h in report.held) == INVOICES
    assert all(h["cause"] == "incomplete" and any("plugin 'raiser'" in r for r in h["reasons"]) for h in report.held)


def test_a_config_error_from_register_connectors_still_stops_the_hub_with_its_message(env):
    plugin = register_raises(ConfigError("tenant missing", file="msp-hub.toml", key="connectors.acme.tenant",
                                         fix="set it"))
    with pytest.raises(ConfigError, match="connectors.acme.tenant"):
        Hub(HubConfig(database=":memory:"), pm=get_plugin_manager(plugin, load_entrypoints=False),
            store=Store(":memory:"), mappings=load_mappings(env.mappings))


def test_a_sync_with_a_plugin_that_failed_to_load_pulls_the_others_holds_invoices_and_exits_3(env, installed):
    installed(FakeEntryPoint("psa_extra", "acme_psa_extra_not_installed", dist="acme-psa"))
    hub = hub_with(env, get_plugin_manager(ConnectorPlugin(*env.connectors())))
    try:
        report = sync_once(hub)
        run = hub.store.get_run(report.run_id)
    finally:
        hub.close()
    assert exit_code(report) == EXIT_PULL_FAILED and run["status"] == "failed"
    assert any("plugin 'psa_extra'" in e and "ModuleNotFoundError" in e and "acme-psa" in e for e in report.errors)
    assert report.passes["ninjaone.devices"]["status"] == "complete" and report.records["ninjaone.devices"] == 120
    assert report.pushed == [] and sorted(h["key"] for h in report.held) == INVOICES
    # A scoped run pulls only what it names: a missing plugin is not its failure.
    hub = hub_with(env, get_plugin_manager(ConnectorPlugin(*env.connectors())))
    try:
        scoped = sync_once(hub, connectors=["ninjaone"], streams=["alerts"])
    finally:
        hub.close()
    assert "plugin:psa_extra" not in scoped.passes
    # Fixed (uninstalled): the next sync sends each invoice, once.
    installed()
    hub = hub_with(env, get_plugin_manager(ConnectorPlugin(*env.connectors())))
    try:
        fixed = sync_once(hub)
    finally:
        hub.close()
    assert sorted(p["key"] for p in fixed.pushed) == INVOICES and exit_code(fixed) == 0
    assert sorted(i["metadata"]["msp_hub_action_key"] for i in env.invoices()) == INVOICES


# --- pulling and pushing -----------------------------------------------------------------------

class Flaky:
    """A connector whose first stream raises a KeyError (a plugin bug) and whose second works."""

    name = "flaky"
    action_kinds = frozenset()

    def streams(self):
        def broken(cursor, started):
            yield Page([], {"n": 1})
            raise KeyError("organizationId")

        def fine(cursor, started):
            yield Page([], {"n": 1})
        return [Stream("flaky", "sites", "sites", broken), Stream("flaky", "notes", "notes", fine)]

    def push(self, action, context):
        raise AssertionError("nothing to push")

    def close(self):
        pass


def test_a_stream_raising_a_key_error_fails_only_its_stream(env, monkeypatch):
    from hub import store as store_mod
    monkeypatch.setattr(store_mod.Store, "write_page", lambda self, table, records, *a, **k: len(records))
    hub = env.hub(ConnectorPlugin(Flaky()))
    try:
        report = sync_once(hub, dry_run=True)
    finally:
        hub.close()
    assert report.passes["flaky.sites"]["status"] == "failed"
    assert report.passes["flaky.sites"]["error"] == "KeyError: 'organizationId'"
    assert report.passes["flaky.notes"]["status"] == "complete"
    assert report.passes["ninjaone.devices"]["status"] == "complete"
    assert exit_code(report) == EXIT_PULL_FAILED


def test_a_push_raising_after_sending_fails_only_its_action_and_the_retry_sends_it_once(env):
    key = "invoice:birchwood:2026-10"
    hub = env.hub()
    stripe = hub.connectors["stripe"]
    real = stripe.push

    def push(action, context):
        result = real(action, context)            # the vendor acted...
        if action.key == key:
            raise TypeError("'NoneType' object is not subscriptable")   # ...then the plugin crashed
        return result
    stripe.push = push
    try:
        report = sync_once(hub)
        row = hub.store.get_action(key)
    finally:
        hub.close()
    assert [f["key"] for f in report.failed] == [key]
    assert "TypeError" in report.failed[0]["error"] and "outcome unknown" in report.failed[0]["error"]
    assert len(report.pushed) == 4 and (row["status"], row["attempts"]) == (FAILED, 1)
    assert "TypeError" in row["last_error"]

    hub = env.hub()
    try:
        again = sync_once(hub)
        row = hub.store.get_action(key)
    finally:
        hub.close()
    assert [p["key"] for p in again.pushed] == [key] and row["status"] == SENT
    invoices = [i for i in env.invoices() if i["metadata"]["msp_hub_action_key"] == key]
    assert len(invoices) == 1


# --- msp-hub plugins ---------------------------------------------------------------------------

def test_plugins_command_shows_distribution_version_hooks_and_broken_ones(installed, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MSP_HUB_CONFIG", raising=False)
    installed(FakeEntryPoint("psa_extra", "acme_psa_extra_not_installed", dist="acme-psa", version="4.2"))
    # The listing is the report: JSON alone on stdout, no log line besides it.
    as_json = json.loads(CliRunner().invoke(main, ["plugins", "--json"]).output)
    by_name = {p["name"]: p for p in as_json["plugins"]}
    assert "hub.summary" not in by_name
    assert by_name["stripe"]["hooks"] == ["register_connectors", "veto_action"] and by_name["stripe"]["status"] == "ok"
    assert by_name["psa_extra"]["status"] == "broken" and by_name["psa_extra"]["version"] == "4.2"

    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    version = importlib.metadata.version("msp-hub")
    assert f"stripe (msp-hub {version}): hooks register_connectors, veto_action" in lines
    assert f"ninjaone (msp-hub {version}): hooks register_connectors" in lines
    assert any(line.startswith("psa_extra (acme-psa 4.2): BROKEN: ModuleNotFoundError") and
               "pip install --force-reinstall acme-psa" in line for line in lines)
    assert "hub.summary" not in result.output and "Traceback" not in result.output
    assert "plugin.broken" not in result.output


def test_plugins_command_exits_0_with_no_broken_plugin_and_lists_the_connectors(installed, served):  # noqa: F811
    cfg, _, _ = served
    installed()
    result = run("plugins", "--config", str(cfg), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert {c["name"] for c in out["connectors"]} == {"ninjaone", "stripe"}
    assert all(p["status"] == "ok" for p in out["plugins"])


def test_cli_sync_with_a_broken_plugin_runs_the_others_and_says_a_connector_is_missing(installed, served, tmp_path):  # noqa: F811
    cfg, _, stripe = served
    module_file(tmp_path, "acme_broken_sync", "import json\njson.loads('{')\n")
    installed(FakeEntryPoint("extras", "acme_broken_sync", dist="acme-extras", version="1.1"))
    result = run("sync", "--config", str(cfg))
    assert result.exit_code == EXIT_PULL_FAILED, result.output
    assert "plugin:extras" in result.output and "JSONDecodeError" in result.output
    assert "Traceback" not in result.output
    assert "ninjaone.devices" not in result.output.split("exit 3:")[-1]    # the other streams pulled
    assert stripe.list_objects("invoice") == []       # invoices wait while a plugin is broken
    assert run("plan", "--config", str(cfg)).exit_code in (0, 4)
