"""The Tactical RMM connector against its simulator: conformance, the API's shapes, billing by tier, errors."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

import plugins.tacticalrmm.plugin as plugin
from hub.engine import run_once
from hub.errors import ConfigError, CredentialsError, IncompleteError
from hub.testing import ConnectorPlugin, assert_plugin_conforms, mock_client
# The test kit's fixtures, for this module only (a module's pytest_plugins would load them for every test).
from hub.testing.fixtures import _msp_hub_quiet_logs, hub_config, hub_for, no_wait_retry, serve_simulator  # noqa: F401
from plugins.tacticalrmm.plugin import Connector, Settings
from plugins.tacticalrmm.simulator import API_KEY, TacticalRMMSimulator

MAPPINGS = Path(__file__).parent / "mappings"
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=timezone.utc)   # the last ended period is 2026-11


def connector_for(sim, no_wait_retry) -> Connector:
    settings = Settings("http://tacticalrmm.test", API_KEY)
    return Connector(settings, http=mock_client(sim.handler, "http://tacticalrmm.test"), retrying=no_wait_retry)


def pages_of(connector, name, cursor=None):
    return list(next(s for s in connector.streams() if s.name == name).iter_pages(cursor, NOW))


def test_the_connector_passes_the_conformance_suite(no_wait_retry):
    sim = TacticalRMMSimulator(clients=3, agents=12)
    connector = connector_for(sim, no_wait_retry)
    try:
        report = assert_plugin_conforms(connector, sim)
    finally:
        connector.close()
    assert report.not_run == []
    assert any("resumes from its cursor" in p for p in report.passed), report.passed


def test_the_requests_are_tacticals_routes_with_its_key_header(no_wait_retry):
    sim = TacticalRMMSimulator(clients=2, agents=4, alerts=1)
    seen = []
    connector = Connector(Settings("http://tacticalrmm.test", API_KEY),
                          http=mock_client(lambda r: seen.append(r) or sim.handler(r), "http://tacticalrmm.test"),
                          retrying=no_wait_retry)
    pages_of(connector, "devices")
    pages_of(connector, "alerts")
    assert [(r.method, r.url.path, dict(r.url.params)) for r in seen] == [
        ("GET", "/clients/", {}), ("GET", "/agents/", {"client": "1"}), ("GET", "/agents/", {"client": "2"}),
        ("GET", "/clients/", {}), ("GET", "/agents/", {}), ("PATCH", "/alerts/", {})]
    assert json.loads(seen[-1].content) == {"resolvedFilter": False}
    assert {r.headers["X-API-KEY"] for r in seen} == {API_KEY}


def test_agents_become_devices_of_their_client_classed_by_os_and_monitoring_type_all_approved(no_wait_retry):
    sim = TacticalRMMSimulator(clients=2, agents=0, alerts=0, now=NOW.timestamp())
    a = sim.add_agent(1, plat="windows", monitoring_type="server")
    b = sim.add_agent(2, plat="darwin", monitoring_type="workstation", status="offline")
    pages = pages_of(connector_for(sim, no_wait_retry), "devices")
    assert [p.cursor for p in pages] == [{"after": 1, "read": 1}, None]
    assert pages[-1].sweep_count == 2
    devices = {d.source_id: d for p in pages for d in p.records}
    assert (devices[a["agent_id"]].client_source_id, devices[a["agent_id"]].node_class) == ("1", "windows_server")
    assert (devices[b["agent_id"]].client_source_id, devices[b["agent_id"]].node_class) == ("2", "darwin_workstation")
    assert {d.approval_status for d in devices.values()} == {"approved"}   # offline agents are still billed
    assert devices[a["agent_id"]].last_contact == datetime(2026, 12, 3, 8, 59, tzinfo=timezone.utc)


def test_a_pass_resumes_after_the_last_client_read(no_wait_retry):
    sim = TacticalRMMSimulator(clients=3, agents=0, alerts=0)
    for client in (1, 2, 3):
        sim.add_agent(client)
    pages = pages_of(connector_for(sim, no_wait_retry), "devices", cursor={"after": 2, "read": 2})
    assert [d.client_source_id for p in pages for d in p.records] == ["3"]
    assert pages[-1].cursor is None and pages[-1].sweep_count == 3


def test_an_agent_of_an_unknown_monitoring_type_or_another_client_is_set_aside_by_its_agent_id(no_wait_retry):
    sim = TacticalRMMSimulator(clients=2, agents=0, alerts=0)
    good = sim.add_agent(1)
    odd = sim.add_agent(1, monitoring_type="appliance")
    moved = sim.add_agent(1, client_name="Client 2")
    pages = pages_of(connector_for(sim, no_wait_retry), "devices")
    assert [d.source_id for p in pages for d in p.records] == [good["agent_id"]]
    assert dict(r for p in pages for r in p.rejected) == {
        odd["agent_id"]: f"agent {odd['agent_id']} has monitoring_type 'appliance' (known: server, workstation)",
        moved["agent_id"]: f"agent {moved['agent_id']} was listed for client 1 ('Client 1') but names client 'Client 2'"}
    assert pages[-1].sweep_count == 3


def test_unresolved_alerts_are_the_active_set_with_client_condition_and_severity(no_wait_retry):
    sim = TacticalRMMSimulator(clients=2, agents=0, alerts=0)
    server = sim.add_agent(2, plat="linux", monitoring_type="server")
    check = sim.add_alert(server["agent_id"], alert_type="check", severity="error")
    offline = sim.add_alert(server["agent_id"], alert_type="availability", severity="warning",
                            message="agent is overdue", assigned_check=None, snoozed=True)
    gone = sim.add_alert(server["agent_id"], alert_type="task", severity="info")
    sim.resolve_alert(gone["id"])
    [page] = pages_of(connector_for(sim, no_wait_retry), "alerts")
    assert page.complete
    got = {a.source_id: (a.client_source_id, a.device_source_id, a.device_class, a.source_type, a.condition, a.severity)
           for a in page.records}
    assert got == {str(check["id"]): ("2", server["agent_id"], "linux_server", "check", f"check {check['id']}", "MAJOR"),
                   str(offline["id"]): ("2", server["agent_id"], "linux_server", "availability", "availability", "MODERATE")}


def test_a_resolved_alert_in_an_answer_that_ignored_the_filter_is_not_active(no_wait_retry):
    sim = TacticalRMMSimulator(clients=1, agents=1, alerts=2)
    sim.resolve_alert(1)
    sim.route("PATCH", "/alerts/", lambda request: sim.json(200, sim.alerts))   # an older server: every alert
    [page] = pages_of(connector_for(sim, no_wait_retry), "alerts")
    assert [a.source_id for a in page.records] == ["2"]


def test_an_alert_of_a_client_the_list_does_not_name_is_set_aside(no_wait_retry):
    sim = TacticalRMMSimulator(clients=1, agents=1, alerts=1)
    sim.alerts[0]["client"] = "Renamed Ltd"
    [page] = pages_of(connector_for(sim, no_wait_retry), "alerts")
    assert page.records == [] and page.rejected == (("1", "alert 1 names client 'Renamed Ltd', which GET /clients/ did not list"),)


def test_an_array_of_something_else_than_objects_is_malformed_and_fails_the_pass(no_wait_retry):
    sim = TacticalRMMSimulator(clients=1, agents=1)
    sim.route("GET", "/clients/", lambda request: sim.json(200, ["Client 1"]))
    with pytest.raises(Exception, match="tacticalrmm.*GET /clients/.*other than objects"):
        pages_of(connector_for(sim, no_wait_retry), "clients")


def test_a_client_without_a_numeric_id_makes_the_devices_pass_incomplete(no_wait_retry):
    sim = TacticalRMMSimulator(clients=2, agents=2)
    sim.clients[1]["id"] = "2"
    with pytest.raises(IncompleteError, match="client 'Client 2' with id '2', not a number.*incomplete"):
        pages_of(connector_for(sim, no_wait_retry), "devices")


def test_a_refused_key_is_a_credentials_error_naming_the_setting(no_wait_retry):
    sim = TacticalRMMSimulator(api_key="another-key")
    connector = connector_for(sim, no_wait_retry)
    with pytest.raises(CredentialsError, match="HTTP 401.*api_key_env"):
        connector.check()


def test_a_section_without_base_url_names_the_key_and_the_fix(hub_config):
    config = hub_config(connectors={"tacticalrmm": {"api_key_env": "TACTICALRMM_API_KEY"}},
                        environ={"TACTICALRMM_API_KEY": "k"})
    with pytest.raises(ConfigError, match=r"connectors\.tacticalrmm\.base_url.*fix"):
        plugin.register_connectors(config=config)


def test_a_hub_with_the_plugin_bills_the_agents_by_tier(serve_simulator, hub_config, hub_for):
    sim = TacticalRMMSimulator(clients=2, agents=0, alerts=0, now=NOW.timestamp())
    for plat, kind in (("windows", "workstation"), ("darwin", "workstation"), ("windows", "server")):
        sim.add_agent(1, plat=plat, monitoring_type=kind)
    sim.add_agent(2, plat="linux", monitoring_type="server")   # another client, no contract
    config = hub_config(connectors={"tacticalrmm": {"base_url": serve_simulator(sim),
                                                    "api_key_env": "TACTICALRMM_API_KEY"}},
                        environ={"TACTICALRMM_API_KEY": API_KEY})
    hub = hub_for(plugin, config=config, mappings=MAPPINGS, clock=lambda: NOW)
    report = run_once(hub, dry_run=True)
    assert report.passes["tacticalrmm.devices"]["status"] == "complete"
    assert len(hub.store.rows("devices")) == 4
    item = next(i for i in report.plan if i.kind == "invoice" and i.client_id == "first" and i.period == "2026-11")
    assert sorted((line.quantity, line.amount) for line in item.bill.lines) == [("1", 9000), ("2", 6000)]
    assert item.bill.total == 15000


def test_the_alerts_snapshot_drops_a_resolved_alert_from_the_active_set(no_wait_retry, hub_for):
    sim = TacticalRMMSimulator(clients=1, agents=2, alerts=2)
    connector = connector_for(sim, no_wait_retry)
    hub = hub_for(ConnectorPlugin(connector))
    run_once(hub, dry_run=True, streams=["alerts"])
    assert sorted(r["source_id"] for r in hub.store.rows("alerts") if r["active"]) == ["1", "2"]
    sim.resolve_alert(1)
    run_once(hub, dry_run=True, streams=["alerts"])
    assert [r["source_id"] for r in hub.store.rows("alerts") if r["active"]] == ["2"]
