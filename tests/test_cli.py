"""The msp-hub command against simulators served over real HTTP, and what it never leaks."""

import json
import re

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
    ninja.fail_next(401, times=5, path="/v2/devices-detailed")
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


# --- approvals, runs --------------------------------------------------------------------------------

@pytest.fixture
def local(tmp_path, monkeypatch):
    """The commands on a hub of the test Env (no config file), with one held and one sent action."""
    from hub.records import Action
    from tests.conftest import Env
    env = Env(tmp_path, devices=4)
    hub = env.hub()
    for key in ("agreement_quantity:4711:88:2026-10", "invoice:acme:2026-10"):
        hub.store.record_action(Action(key, key.split(":")[0], "stripe", "acme", {}, "2026-10"), "run-x")
    hub.store.mark_failed("agreement_quantity:4711:88:2026-10", "the RMM counts 0 devices", status="held")
    hub.store.mark_sent("invoice:acme:2026-10", "in_1", "invoice")
    hub.close()
    monkeypatch.setattr("hub.cli._open_hub", lambda path, **_: env.hub())
    return env


def test_approve_records_thesystem_user_when_and_why_and_actions_shows_it(local):
    from hub.store import system_user
    key = "agreement_quantity:4711:88:2026-10"
    result = run("approve", key, "--why", "the client cancelled every device", "--json")
    assert result.exit_code == 0, result.output
    approval = json.loads(result.output)
    assert approval["target"] == key and approval["who"] == system_user()
    assert approval["why"] == "the client cancelled every device" and approval["at"]
    hub = local.hub()
    assert hub.store.get_action(key)["status"] == "pending"
    hub.close()
    listed = run("actions")
    assert f"    approved by {system_user()} at {approval['at']}: the client cancelled every device" in listed.output
    rows = {r["key"]: r for r in json.loads(run("actions", "--json").output)}
    assert rows[key]["approvals"] == [{"who": system_user(), "at": approval["at"],
                                       "why": "the client cancelled every device"}]
    assert rows["invoice:acme:2026-10"]["approvals"] == []


@pytest.mark.parametrize("args, code, fragment", [
    (("approve", "nope:1"), 2, "no action 'nope:1' in the outbox"),
    (("approve", "invoice:acme:2026-10"), 2, "was already sent as in_1 at "),
    (("approve",), 2, "give exactly one of KEY, --stream and --run"),
    (("approve", "invoice:acme:2026-10", "--run", "r1"), 2, "give exactly one of KEY, --stream and --run (got KEY, --run)"),
    (("approve", "--stream", "ninjaone.nosuch"), 2, "--stream: no configured stream 'ninjaone.nosuch' (fix: use "
                                                    "connector.stream, one of ninjaone.alert_events"),
    (("approve", "--stream", "ninjaone.devices"), 2, "ninjaone.devices has no complete pass to approve"),
    (("approve", "--run", "nope"), 2, "no run 'nope'; list them with: msp-hub runs"),
])
def test_approve_refuses_what_it_cannot_approve_and_records_nothing(local, args, code, fragment):
    result = run(*args)
    assert result.exit_code == code and fragment in result.output, result.output
    hub = local.hub()
    assert hub.store.approvals() == []
    hub.close()


def test_approve_a_streams_latest_complete_pass_and_a_runs_drafts(local):
    hub = local.hub()
    hub.store.record_pass("ninjaone", "devices", "run-1", "2026-11-22T10:00:00+00:00", "complete", 40)
    latest = hub.store.record_pass("ninjaone", "devices", "run-2", "2026-11-22T11:00:00+00:00", "complete", 12)
    hub.store.record_pass("ninjaone", "devices", "run-3", "2026-11-22T12:00:00+00:00", "failed", 0, error="x")
    run_id, _ = hub.store.start_run("sync")
    hub.close()
    result = run("approve", "--stream", "ninjaone.devices", "--why", "28 devices retired")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"approved pass {latest} of ninjaone.devices (12 records, ended ")
    again = run("approve", "--stream", "ninjaone.devices")
    assert again.exit_code == 2 and f"pass {latest} of ninjaone.devices" in again.output and "already approved" in again.output
    drafts = run("approve", "--run", run_id, "--json")
    assert drafts.exit_code == 0 and json.loads(drafts.output)["target"] == f"run:{run_id}"
    hub = local.hub()
    assert [(a["target"], a["why"]) for a in hub.store.approvals()] == [
        (f"pass:{latest}", "28 devices retired"), (f"run:{run_id}", "")]
    hub.close()


def test_runs_lists_the_runs_with_status_counts_and_errors(local):
    hub = local.hub()
    first, _ = hub.store.start_run("sync")
    hub.store.finish_run(first, "failed", {"records": {"ninjaone.devices": 4, "ninjaone.clients": 2}, "pushed": 1,
                                           "failed": 1, "held": 2}, ["push invoice:acme:2026-10: HTTP 500"])
    hub.close()
    result = run("runs", "--limit", "5")
    assert result.exit_code == 0, result.output
    line = next(l for l in result.output.splitlines() if l.startswith(first))
    assert re.match(rf"{first}\s+-\s+sync\s+failed\s+\S+\s+6\s+1\s+1\s+2\s+1$", line), line
    assert f"{first}: push invoice:acme:2026-10: HTTP 500" in result.output
    rows = json.loads(run("runs", "--json").output)
    assert rows[0]["id"] == first and rows[0]["counts"]["held"] == 2 and rows[0]["errors"] == [
        "push invoice:acme:2026-10: HTTP 500"]
    assert run("runs", "--limit", "0").exit_code == 2
