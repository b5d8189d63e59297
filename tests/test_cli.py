"""The msp-hub command against simulators served over real HTTP, and what it never leaks."""

import json

import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.testing import serve
from plugins.ninjaone.simulator import NinjaOneSimulator
from plugins.stripe.simulator import StripeSimulator
from tests.conftest import ROOT, SEEN, mappings_for_tests

NINJA_SECRET, STRIPE_KEY = "ninja-secret-Zq81xK", "sk_test_cli_7Hc2pQ"


@pytest.fixture
def served(tmp_path):
    ninja = NinjaOneSimulator(seed=5, organizations=6, devices=80, now=SEEN, client_secret=NINJA_SECRET)
    stripe = StripeSimulator(api_key=STRIPE_KEY)
    with serve(ninja.handler) as n_url, serve(stripe.handler) as s_url:
        cfg = tmp_path / "msp-hub.toml"
        cfg.write_text(f"""
database = "hub.db"
mappings = "{mappings_for_tests(tmp_path).as_posix()}"
[connectors.ninjaone]
base_url = "{n_url}"
client_id = "{ninja.client_id}"
client_secret_env = "T_NINJA"
[connectors.stripe]
base_url = "{s_url}"
api_key_env = "T_STRIPE"
[logging]
format = "json"
level = "debug"
""")
        yield cfg, ninja, stripe


def run(*args, env=None):
    return CliRunner().invoke(main, list(args), env={"T_NINJA": NINJA_SECRET, "T_STRIPE": STRIPE_KEY, **(env or {})})


def test_sync_dry_run_then_sync_then_sync_again(served):
    cfg, ninja, stripe = served
    dry = run("sync", "--config", str(cfg), "--dry-run", "--period", "2026-10")
    assert dry.exit_code == 0, dry.output
    assert "dry run: nothing was pushed" in dry.output and "create" in dry.output
    assert stripe.list_objects("invoice") == []
    first = run("sync", "--config", str(cfg), "--period", "2026-10")
    assert first.exit_code == 0, first.output
    assert first.output.count("pushed invoice:") == 5
    again = run("sync", "--config", str(cfg), "--period", "2026-10")
    assert "nothing new to push: 5 action(s) due were already sent" in again.output
    assert len(stripe.list_objects("invoice")) == 5


def test_plan_json_explains_every_line(served):
    cfg, _, _ = served
    assert run("sync", "--config", str(cfg), "--dry-run").exit_code == 0
    result = run("plan", "--config", str(cfg), "--period", "2026-10", "--json")
    plan = json.loads(result.stdout)["plan"]
    acme = next(p for p in plan if p["client_id"] == "acme")
    assert acme["status"] == "create" and acme["total"] == sum(l["amount"] for l in acme["lines"])
    for line in acme["lines"]:
        assert line["rule"] and line["items"] and line["quantity"] == str(len(line["items"]))


def test_secrets_never_reach_logs_output_or_database(served, capsys):
    cfg, ninja, stripe = served
    ninja.fail_next(401, times=5, path="/v2/devices")
    result = run("sync", "--config", str(cfg), "--period", "2026-10")
    captured = capsys.readouterr()
    text = result.output + captured.out + captured.err
    assert "sync.finished" in text            # JSON logs were written
    db = (cfg.parent / "hub.db").read_bytes() + b"".join(p.read_bytes() for p in cfg.parent.glob("hub.db-*"))
    for secret in (NINJA_SECRET, STRIPE_KEY):
        assert secret not in text
        assert secret.encode() not in db


@pytest.mark.parametrize("config_text, env, fragment", [
    ("[connectors\n", {}, "not valid TOML"),
    ("[connectors.ninjaone]\nclient_id = 'x'\nclient_secret_env = 'NOPE_UNSET'\n", {}, "NOPE_UNSET is not set"),
    ("[connectors.stripe]\napi_key = 'sk_live_inline'\n", {}, "secrets are not written in the config file"),
])
def test_config_mistakes_are_one_clear_line_not_a_traceback(tmp_path, config_text, env, fragment):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f"mappings = '{(ROOT / 'mappings').as_posix()}'\n" + config_text)
    result = run("sync", "--config", str(cfg), env=env)
    assert result.exit_code == 2 and fragment in result.output and "bad.toml" in result.output
    assert "Traceback" not in result.output and "sk_live_inline" not in result.output


def test_example_config_loads_with_its_secrets_set():
    from hub.config import load_config
    from hub.engine import Hub
    cfg = load_config(ROOT / "examples" / "msp-hub.toml",
                      environ={"NINJAONE_CLIENT_SECRET": "x", "STRIPE_API_KEY": "sk_test_x",
                               "CONNECTWISE_PRIVATE_KEY": "y"})
    cfg.database = ":memory:"
    hub = Hub(cfg)
    assert sorted(hub.connectors) == ["connectwise", "ninjaone", "stripe"]
    hub.close()
