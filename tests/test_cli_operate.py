"""The CLI as a product: one scope model for sync and resync, runs show, actions retry|cancel|approve,
-h, -q/-v, read-only commands without secrets, and the wording of what it prints."""

import json
import re

import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.records import Action
from hub.store import Store
from hub.testing import serve
from plugins.ninjaone.simulator import NinjaOneSimulator
from plugins.stripe.simulator import StripeSimulator
from tests.conftest import SEEN, mappings_for_tests
from tests.test_cli import NINJA_SECRET, STRIPE_KEY, run, served  # noqa: F401 - the CLI's simulators, shared

HELD = "agreement_quantity:4711:88:2026-10"


def outbox(cfg) -> Store:
    return Store(str(cfg.parent / "hub.db"))


def seed_outbox(cfg) -> None:
    """A held, a failed and a sent action, as a run would leave them."""
    store = outbox(cfg)
    run_id, _ = store.start_run("sync")
    store.record_action(Action(HELD, "agreement_quantity", "connectwise", "acme", {"quantity": 0}, "2026-10"), run_id)
    store.mark_failed(HELD, "the RMM counts 0 devices", status="held")
    store.record_action(Action("invoice:acme:2026-10", "invoice", "stripe", "acme", {}, "2026-10"), run_id)
    store.mark_failed("invoice:acme:2026-10", "stripe: POST /v1/invoices failed with HTTP 500")
    store.record_action(Action("invoice:birch:2026-10", "invoice", "stripe", "birch", {}, "2026-10"), run_id)
    store.mark_sent("invoice:birch:2026-10", "in_1", "invoice of 12.00 EUR")
    store.finish_run(run_id, "failed", {"records": {}, "pushed": 1, "failed": 1, "held": 1}, [])
    store.close()


# --- one scope model ---------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["sync", "resync"])
@pytest.mark.parametrize("args, fragment", [
    (("--connector", "nosuch"), "--connector: connector 'nosuch' is not configured (fix: use one of ninjaone, stripe)"),
    (("--stream", "nosuch"), "--stream: no configured connector has a stream 'nosuch' (fix: use one of alert_events"),
    (("--client", "nosuch"), "unknown client(s) nosuch"),
    (("--period", "2026-13"), "--period:"),
])
def test_sync_and_resync_refuse_the_same_unknown_scope_naming_it(served, command, args, fragment):
    cfg, ninja, _ = served
    result = run(command, "--config", str(cfg), "--dry-run", *args)
    assert result.exit_code == 2, result.output
    assert fragment in result.output


@pytest.mark.parametrize("command", ["sync", "resync"])
def test_sync_and_resync_take_the_same_options_and_print_the_same_plan(served, command):
    cfg, _, stripe = served
    result = run(command, "--config", str(cfg), "--dry-run", "--period", "2026-10", "--client", "acme", "--details",
                 "--full")
    assert result.exit_code == 0, result.output
    assert re.search(r"^run \S+: pulled .* in \d+\.\d s$", result.stdout, re.M), result.stdout
    assert "rule:" in result.stdout                     # --details explains each line
    clients = {line.split()[0] for line in result.stdout.splitlines() if "2026-10" in line and "invoice" in line}
    assert clients == {"acme"}
    assert "dry run: nothing was pushed" in result.stdout and stripe.list_objects("invoice") == []


# --- runs ---------------------------------------------------------------------------------------

def test_runs_show_gives_trigger_scope_what_was_pulled_and_pushed(served):
    cfg, _, _ = served
    synced = run("sync", "--config", str(cfg), "--period", "2026-10", "--client", "acme")
    assert synced.exit_code == 0, synced.output
    run_id = re.search(r"^run (\S+):", synced.stdout, re.M).group(1)
    shown = run("runs", "show", run_id, "--config", str(cfg))
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    assert out.startswith(f"run {run_id}: ")
    assert re.search(r"^  trigger:\s+cli$", out, re.M), out
    assert re.search(r"^  job:\s+-$", out, re.M)                 # a run from the CLI has no job
    assert re.search(r"^  scope:\s+clients=acme, period=2026-10$", out, re.M), out
    assert re.search(r"^  pulled:\s+.*ninjaone\.clients 6, ninjaone\.devices 80$", out, re.M), out
    assert re.search(r"^  pushed:\s+1, failed 0, held 0", out, re.M), out
    assert re.search(r"^    invoice:acme:2026-10  sent  -> in_", out, re.M), out
    as_json = json.loads(run("runs", "--config", str(cfg), "show", run_id, "--json").stdout)
    assert as_json["trigger"] == "cli" and as_json["scope"] == {"clients": ["acme"], "period": "2026-10"}
    assert [a["key"] for a in as_json["actions"]] == ["invoice:acme:2026-10"]
    listed = run("runs", "--config", str(cfg))
    assert re.search(rf"^{run_id}\s+cli\s+sync\s+warnings", listed.stdout, re.M), listed.stdout


def test_runs_show_of_an_unknown_run_names_the_latest(served):
    cfg, _, _ = served
    seed_outbox(cfg)
    result = run("runs", "show", "nope", "--config", str(cfg))
    assert result.exit_code == 2
    assert "no run 'nope'; the latest are " in result.output and "msp-hub runs" in result.output


# --- actions ------------------------------------------------------------------------------------

def test_actions_is_a_table_with_times_and_held_reasons_print_as_held(served):
    cfg, _, _ = served
    seed_outbox(cfg)
    result = run("actions", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert re.match(r"action\s+status\s+attempts\s+created\s+sent\s+vendor id$", lines[0]), lines[0]
    assert set(lines[1]) <= {"-", " "}
    assert f"    held: the RMM counts 0 devices" in lines
    assert "    error: stripe: POST /v1/invoices failed with HTTP 500" in lines
    assert "error=" not in result.stdout
    sent = next(l for l in lines if l.startswith("invoice:birch:2026-10"))
    assert re.search(r"sent\s+0\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+in_1$", sent), sent
    assert run("actions", "--config", str(cfg), "--status", "pending").stdout == "no pending action\n"


def test_actions_retry_puts_a_failed_action_back_but_refuses_a_held_one(served):
    cfg, _, _ = served
    seed_outbox(cfg)
    held = run("actions", "retry", HELD, "--config", str(cfg))
    assert held.exit_code == 2
    assert "is held (the RMM counts 0 devices); a retry would hold it again" in held.output
    assert f"msp-hub actions approve {HELD} --why" in held.output
    assert outbox(cfg).get_action(HELD)["status"] == "held"
    retried = run("actions", "retry", "invoice:acme:2026-10", "--config", str(cfg), "--json")
    assert retried.exit_code == 0, retried.output
    assert json.loads(retried.stdout)["status"] == "pending"
    sent = run("actions", "retry", "invoice:birch:2026-10", "--config", str(cfg))
    assert sent.exit_code == 2 and "was already sent as in_1 at " in sent.output


def test_actions_cancel_and_approve(served):
    cfg, _, _ = served
    seed_outbox(cfg)
    cancelled = run("actions", "--config", str(cfg), "cancel", "invoice:acme:2026-10")
    assert cancelled.exit_code == 0, cancelled.output
    assert outbox(cfg).get_action("invoice:acme:2026-10")["status"] == "cancelled"
    refused = run("actions", "cancel", "invoice:birch:2026-10", "--config", str(cfg))
    assert refused.exit_code == 2 and "msp-hub invoice void invoice:birch:2026-10" in refused.output
    approved = run("actions", "approve", HELD, "--why", "the client left", "--config", str(cfg), "--json")
    assert approved.exit_code == 0, approved.output
    body = json.loads(approved.stdout)
    assert body["target"] == HELD and body["why"] == "the client left"
    assert outbox(cfg).get_action(HELD)["status"] == "pending"
    again = run("approve", "invoice:birch:2026-10", "--config", str(cfg))
    assert again.exit_code == 2
    assert "was already sent as in_1 at" in again.output and "the next sync pushes it" not in again.output


def test_api_retry_of_a_held_action_is_refused_naming_approve(served):
    from hub.api import make_app
    from hub.config import Secret
    cfg, _, _ = served
    seed_outbox(cfg)

    class OneHub:
        token = Secret("tok-3f9c2a71d0b84e55a6c1", "test")

        def open_hub(self):
            from hub.cli import _open_hub
            return _open_hub(str(cfg), read_only=True)

    client = make_app(OneHub()).test_client()
    auth = {"Authorization": "Bearer tok-3f9c2a71d0b84e55a6c1"}
    answer = client.post(f"/actions/{HELD}/retry", headers=auth)
    assert answer.status_code == 409
    assert f"POST /actions/{HELD}/approve" in answer.get_json()["error"]
    assert outbox(cfg).get_action(HELD)["status"] == "held"
    assert client.post("/actions/invoice:acme:2026-10/retry", headers=auth).status_code == 200


# --- read-only commands, help, verbosity, wording ----------------------------------------------------

@pytest.mark.parametrize("args", [("plan",), ("actions",), ("clients",), ("runs",), ("streams",),
                                  ("runs", "show", "RUN"), ("approve", HELD, "--why", "ok")])
def test_read_only_commands_need_no_vendor_secret(served, args):
    cfg, _, _ = served
    seed_outbox(cfg)
    run_id = outbox(cfg).runs(limit=1)[0]["id"]
    args = tuple(run_id if a == "RUN" else a for a in args)
    result = run(*args, "--config", str(cfg), env={"T_NINJA": None, "T_STRIPE": None})
    assert result.exit_code in (0, 4), result.output      # plan may hold (no data pulled): not a secret error
    assert "T_NINJA" not in result.output and "T_STRIPE" not in result.output
    needs = run("sync", "--config", str(cfg), env={"T_NINJA": None, "T_STRIPE": None})
    assert needs.exit_code == 2 and "is not set or empty" in needs.output


def test_an_empty_plan_says_nothing_to_plan(tmp_path):
    empty = mappings_for_tests(tmp_path)
    (empty / "contracts.toml").write_text("")
    cfg = tmp_path / "msp-hub.toml"
    cfg.write_text(f'database = "hub.db"\nmappings = "{empty.as_posix()}"\n')
    result = run("plan", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    assert "nothing to plan" in result.stdout and "client" not in result.stdout


@pytest.mark.parametrize("args", [("-h",), ("sync", "-h"), ("runs", "show", "-h"), ("actions", "retry", "-h"),
                                  ("check", "-h")])
def test_dash_h_is_help_everywhere(args):
    short, long = run(*args), run(*args[:-1], "--help")
    assert short.exit_code == 0 and short.output == long.output and "Usage:" in short.output


def test_help_examples_stay_on_their_own_lines():
    result = run("sync", "-h")
    lines = result.output.splitlines()
    assert "    msp-hub sync --config msp-hub.toml --dry-run" in [l.rstrip()[-len("    msp-hub sync --config msp-hub.toml --dry-run"):] for l in lines]
    assert any(l.strip() == "msp-hub sync --period 2026-10" for l in lines)
    for command in ("resync", "plan", "actions", "runs", "streams", "clients", "check", "approve"):
        text = run(command, "-h").output
        examples = [l.strip() for l in text.splitlines() if l.strip().startswith("msp-hub ")]
        assert examples and all(l.count("msp-hub ") == 1 for l in examples), (command, text)


def test_quiet_and_verbose_override_the_config_log_level(served):
    cfg, _, _ = served
    loud = run("sync", "--config", str(cfg), "--dry-run", "--period", "2026-10")
    quiet = run("-q", "sync", "--config", str(cfg), "--dry-run", "--period", "2026-10")
    assert loud.exit_code == quiet.exit_code == 0, quiet.output
    assert '"level": "debug"' in loud.stderr or '"level": "info"' in loud.stderr
    assert '"level": "debug"' not in quiet.stderr and '"level": "info"' not in quiet.stderr
    cfg.write_text(cfg.read_text().replace('level = "debug"', 'level = "error"'))
    verbose = run("-v", "sync", "--config", str(cfg), "--dry-run", "--period", "2026-10")
    assert '"level": "info"' in verbose.stderr and '"level": "debug"' not in verbose.stderr
    both = run("-q", "-v", "runs", "--config", str(cfg))
    assert both.exit_code == 2 and "give -q or -v, not both" in both.output


def test_a_failed_pull_is_named_once(served):
    cfg, ninja, _ = served
    text = cfg.read_text()
    cfg.write_text(text.replace('level = "debug"', 'level = "error"'))
    result = run("sync", "--config", str(cfg), "--dry-run", env={"T_NINJA": "wrong-secret"})
    assert result.exit_code == 3, result.output
    said = [line for line in result.stderr.splitlines() if not line.startswith("{")]   # the log is JSON
    assert sum(line.count("ninjaone.clients") for line in said) == 1, result.stderr
    assert said[-1].startswith("exit 3: ") and "ninjaone.clients (ninjaone: " in said[-1], said


def test_a_sync_against_a_dead_address_says_what_it_waits_for(served, monkeypatch):
    import socket
    cfg, _, _ = served
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    text = cfg.read_text()
    cfg.write_text(re.sub(r'base_url = "[^"]+"\nclient_id', f'base_url = "{dead}"\nclient_id', text, count=1))
    monkeypatch.setattr("hub.cli.QUIET_SECONDS", 0.05)   # a refused connection waits >= 0.5 s before its second try
    result = run("sync", "--config", str(cfg), "--dry-run", "--connector", "ninjaone", "--stream", "clients")
    assert result.exit_code == 3, result.output
    waiting = [l for l in result.stderr.splitlines() if l.startswith("waiting for an answer from ")]
    assert len(waiting) == 1, result.stderr
    assert f"from ninjaone ({dead}): nothing received for " in waiting[0]
    assert "a refused connection twice, a timeout 5 times" in waiting[0] and "msp-hub check" in waiting[0]
