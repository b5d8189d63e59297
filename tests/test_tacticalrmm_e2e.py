"""Tactical RMM in place of NinjaOne, end to end against the Tactical RMM, ConnectWise and Stripe
simulators: its agents billed by tier (a client linked by name to a PSA company with a Managed
agreement, another through contracts.toml), its alerts made ConnectWise tickets and closed when
resolved, everything exactly once on a rerun; and the demo with ``--rmm tacticalrmm``."""

import shutil
import time
from datetime import datetime, timedelta, timezone

import pytest

from hub.config import HubConfig, Secret
from hub.engine import sync_once
from hub.store import Store
from hub.testing import ConnectorPlugin, make_hub, mock_client
from plugins.connectwise.plugin import ConnectWiseConnector, ConnectWiseSettings
from plugins.connectwise.simulator import ConnectWiseSimulator
from plugins.stripe.plugin import StripeConnector, StripeSettings
from plugins.stripe.simulator import StripeSimulator
from plugins.tacticalrmm.plugin import Connector as TacticalConnector, Settings as TacticalSettings
from plugins.tacticalrmm.simulator import API_KEY, TacticalRMMSimulator
from tests.conftest import ROOT, fast_retry

UTC = timezone.utc
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)   # the last ended period is 2026-10

CONTRACTS = """\
# Birchwood keeps its contract here, linked to its Tactical RMM client id; Acme is billed by its
# ConnectWise agreement (the hub client connectwise-<company id>) and linked to Tactical RMM by name.
[clients.birchwood]
name = "Birchwood Legal"
links = { tacticalrmm = "2" }
tier = "silver"
"""

RULES = """\
[settings]
reopen_within_days = 3
storm_threshold = 20
storm_window_minutes = 10

[[rule]]
name = "servers"
match = { device_class = ["windows_server", "linux_server"] }
board = "Alerts"
auto_close = true

[[rule]]
name = "catch-all"
board = "Help Desk"
auto_close = false
"""


class TacticalEnv:
    def __init__(self, tmp_path):
        self.tactical = TacticalRMMSimulator(client_names=["Acme Dental", "Birchwood Legal"], agents=0, alerts=0,
                                             now=(NOW - timedelta(hours=1)).timestamp())
        for plat, kind in (("windows", "workstation"),) * 3 + (("windows", "server"), ("linux", "server")):
            self.tactical.add_agent(1, plat=plat, monitoring_type=kind)
        for _ in range(2):
            self.tactical.add_agent(2, plat="darwin", monitoring_type="workstation")
        self.cw = ConnectWiseSimulator(seed=1, companies=0, agreements=0, time_entries=0, products=0, now=time.time())
        self.co = {n.split()[0].lower(): self.cw.add_company(n) for n in ("Acme Dental", "Birchwood Legal")}
        self.cw.add_agreement(self.co["acme"], "Managed Gold")
        self.stripe = StripeSimulator(api_key="sk_test_hub_tests")
        self.mappings = tmp_path / "mappings"
        shutil.copytree(ROOT / "mappings", self.mappings)
        (self.mappings / "contracts.toml").write_text(CONTRACTS)
        (self.mappings / "alert_rules.toml").write_text(RULES)
        self.db = str(tmp_path / "hub.db")
        self.now = NOW

    def connectors(self):
        tactical = TacticalConnector(TacticalSettings("https://api.tactical.test", API_KEY),
                                     http=mock_client(self.tactical.handler, "https://api.tactical.test"),
                                     retrying=fast_retry)
        cw = ConnectWiseConnector(
            ConnectWiseSettings(site="https://api-eu.myconnectwise.test", company_id=self.cw.company_id,
                                public_key=self.cw.public_key, private_key=Secret(self.cw.private_key, "test"),
                                client_id=self.cw.client_id),
            http=mock_client(self.cw.handler, "https://api-eu.myconnectwise.test"), retrying=fast_retry)
        stripe = StripeConnector(StripeSettings(api_key=Secret(self.stripe.api_key, "test"),
                                                base_url="https://api.stripe.test"),
                                 http=mock_client(self.stripe.handler, "https://api.stripe.test"), retrying=fast_retry)
        return tactical, cw, stripe

    def sync(self):
        self.now += timedelta(minutes=1)
        now = self.now
        hub = make_hub(ConnectorPlugin(*self.connectors()), mappings=self.mappings,
                       config=HubConfig(database=":memory:"), store=Store(self.db), clock=lambda: now)
        try:
            return sync_once(hub)
        finally:
            hub.close()

    def hub_tickets(self):
        return [t for t in (self.cw.record("tickets", i) for i in self.cw.ids("tickets"))
                if (t.get("externalXRef") or "").startswith("msp-hub:")]


@pytest.fixture
def env(tmp_path):
    return TacticalEnv(tmp_path)


def invoice_lines(env, client_key):
    [invoice] = [i for i in env.stripe.list_objects("invoice") if i["metadata"].get("msp_hub_action_key", "")
                 .startswith(f"invoice:{client_key}:2026-10")]
    return sorted((line["quantity"], line["amount"]) for line in invoice["lines"]["data"]), invoice["subtotal"]


def test_tacticals_agents_are_billed_by_tier_once(env):
    report = sync_once_checked(env)
    assert {k: v["status"] for k, v in report.passes.items() if k.startswith("tacticalrmm.")} == {
        "tacticalrmm.clients": "complete", "tacticalrmm.devices": "complete", "tacticalrmm.alerts": "complete"}
    # Acme: its ConnectWise company's Managed Gold agreement (120.00 a workstation, 240.00 a server)
    assert invoice_lines(env, f"connectwise-{env.co['acme']}") == ([(2, 48000), (3, 36000)], 84000)
    # Birchwood: Silver in contracts.toml (100.00 a workstation), its two Macs
    assert invoice_lines(env, "birchwood") == ([(2, 20000)], 20000)
    assert len(env.stripe.list_objects("invoice")) == 2
    again = env.sync()
    assert again.pushed == [] and not again.errors
    assert len(env.stripe.list_objects("invoice")) == 2


def sync_once_checked(env):
    report = env.sync()
    assert not report.errors, report.errors
    return report


def test_a_tactical_alert_becomes_one_ticket_closed_when_resolved(env):
    server = next(a for a in env.tactical.agents if a["monitoring_type"] == "server")
    alert = env.tactical.add_alert(server["agent_id"], severity="error", message="Disk space check: C: below 10 %")
    report = sync_once_checked(env)
    key = f"ticket:tacticalrmm:{alert['id']}"
    assert key in {p["key"] for p in report.pushed}
    [ticket] = env.hub_tickets()
    assert ticket["company"]["id"] == env.co["acme"] and ticket["board"]["name"] == "Alerts"
    assert server["hostname"] in ticket["summary"]

    again = env.sync()
    assert again.pushed == [] and len(env.hub_tickets()) == 1   # exactly once

    env.tactical.resolve_alert(alert["id"])
    closed = env.sync()
    assert [p["key"] for p in closed.pushed if p["key"].startswith("ticket_close:")] == \
        [f"ticket_close:ticket:tacticalrmm:{alert['id']}:1"]
    assert env.hub_tickets()[0]["closedFlag"] is True
    assert env.sync().pushed == []


def test_the_demo_runs_with_tactical_rmm(tmp_path, capsys):
    from hub.demo import run_demo
    run_demo(devices=40, workdir=str(tmp_path / "demo"), rmm="tacticalrmm")
    out = capsys.readouterr().out
    assert "simulators on 127.0.0.1: Tactical RMM http://127.0.0.1:" in out
    assert "tacticalrmm.clients 6, tacticalrmm.devices 40" in out
    config = (tmp_path / "demo" / "msp-hub.toml").read_text()
    assert "[connectors.tacticalrmm]" in config and "[connectors.ninjaone]" not in config
    # the unresolved alerts of the seed (a server's disk at Acme, an overdue workstation at Cobalt)
    assert "ConnectWise simulator: 3 ticket(s) created by the hub" in out   # and the prepaid-hours notice
    assert out.count("(msp-hub:ticket:tacticalrmm:") == 2
    assert "Gold managed services, server (" in out   # Acme's agents billed by its tier
    assert "nothing new to push" in out


def test_the_demo_refuses_an_rmm_it_does_not_know(tmp_path):
    import click
    from hub.demo import run_demo
    with pytest.raises(click.BadParameter, match="'datto' is not an RMM of the demo.*ninjaone, tacticalrmm"):
        run_demo(devices=10, workdir=str(tmp_path / "demo"), rmm="datto")
