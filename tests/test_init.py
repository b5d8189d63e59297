"""``msp-hub init``: a new MSP's config and mappings that load, bill nobody and ticket nothing until edited."""

from __future__ import annotations

import contextlib
import os
from datetime import datetime, timezone
from pathlib import Path

from click.testing import CliRunner

from hub import demo
from hub.cli import main
from hub.config import load_config
from hub.engine import Hub, sync_once
from hub.init import COMMENTED, EXAMPLES
from hub.mappings import load_mappings
from hub.periods import last_ended_period
from hub.testing import serve


def _init(folder: Path):
    result = CliRunner().invoke(main, ["init", str(folder)])
    assert result.exit_code == 0, result.output
    return result


def test_init_writes_a_config_with_secret_names_and_prints_what_to_edit(tmp_path):
    result = _init(tmp_path / "msp")
    config_path = tmp_path / "msp" / "msp-hub.toml"
    assert sorted(p.name for p in (tmp_path / "msp" / "mappings").iterdir()) == sorted(COMMENTED + EXAMPLES)
    text = config_path.read_text()
    assert 'client_secret_env = "NINJAONE_CLIENT_SECRET"' in text and 'api_key_env = "STRIPE_API_KEY"' in text
    assert "\napi_key = " not in text and "\nclient_secret = " not in text, "secret names, never values"
    config = load_config(config_path)  # loads as written, without any secret in the environment
    assert config.mappings == tmp_path / "msp" / "mappings"
    m = load_mappings(config.mappings)
    assert [r.action for r in m.alert_rules.rules] == ["ignore"] and m.alert_rules.fallback_board is None
    assert "contracts.toml" in result.output and "tiers.toml" in result.output and str(config_path) in result.output
    # No link to the demo's organizations 1-3 is active.
    for name in COMMENTED:
        active = [l for l in (config.mappings / name).read_text().splitlines() if l.strip() and not l.lstrip().startswith("#")]
        assert not any("links" in l or "ninjaone" in l for l in active), (name, active)


def test_init_refuses_to_overwrite_and_names_the_files(tmp_path):
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "tiers.toml").write_text("# mine\n")
    result = CliRunner().invoke(main, ["init", str(tmp_path)])
    assert result.exit_code == 1
    assert str(tmp_path / "mappings" / "tiers.toml") in result.output and "fix:" in result.output
    assert str(tmp_path / "mappings" / "contracts.toml") not in result.output, "only the existing files are named"
    assert (tmp_path / "mappings" / "tiers.toml").read_text() == "# mine\n"
    assert not (tmp_path / "msp-hub.toml").exists(), "nothing is written when one file exists"


def test_init_mappings_bill_nobody_against_the_demo_msp(tmp_path, monkeypatch):
    """The demo's seeded MSP (agreements of every kind, time, alerts) synced with init's mappings:
    nothing is pushed, no invoice, no ticket, no agreement quantity."""
    from plugins.stripe.simulator import StripeSimulator
    _init(tmp_path)
    ninja = demo.seed_ninjaone(40)
    stripe_sim = StripeSimulator(api_key="sk_test_init")
    cw = demo.seed_connectwise(last_ended_period(datetime.now(timezone.utc), "Europe/Paris"))
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(serve(s.handler)) for s in (ninja, stripe_sim, cw)]
        config_path = tmp_path / "demo-connectors.toml"
        config_path.write_text(demo.CONFIG.format(
            mappings=(tmp_path / "mappings").as_posix(), ninja_url=urls[0], ninja_client_id=ninja.client_id,
            ninja_var=demo.NINJA_SECRET_VAR, stripe_url=urls[1], stripe_var=demo.STRIPE_KEY_VAR, cw_url=urls[2],
            cw_company=cw.company_id, cw_public=cw.public_key, cw_var=demo.CW_KEY_VAR, cw_client_id=cw.client_id))
        monkeypatch.setenv(demo.NINJA_SECRET_VAR, ninja.client_secret)
        monkeypatch.setenv(demo.CW_KEY_VAR, cw.private_key)
        monkeypatch.setenv(demo.STRIPE_KEY_VAR, stripe_sim.api_key)
        hub = Hub(load_config(config_path))
        try:
            report = sync_once(hub)
        finally:
            hub.close()
    assert sum(report.records.values()) > 0, report.records
    assert not report.pushed, report.pushed
    assert stripe_sim.list_objects("invoice") == [] and stripe_sim.list_objects("customer") == []
    assert [t for t in (cw.record("tickets", i) for i in cw.ids("tickets"))
            if str(t.get("externalXRef")).startswith("msp-hub:")] == []   # the PSA's own tickets only
