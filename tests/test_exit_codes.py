"""Exit codes of sync, resync and plan: the mapping, the line saying why, and options refused at once."""

from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

import hub.cli as cli
from hub.cli import (EXIT_HELD, EXIT_LOCKED, EXIT_OK, EXIT_PULL_FAILED, EXIT_PUSH_FAILED, EXIT_STOPPED, EXIT_USAGE,
                     exit_code, main, report_from_row)
from hub.engine import RunReport
from hub.testing import serve
from tests.conftest import mappings_for_tests
from tests.test_cli import NINJA_SECRET, STRIPE_KEY, served  # noqa: F401 - the fixture



def report(*, passes=(), held=(), failed=(), stopped=False, warnings=()) -> RunReport:
    r = RunReport("run-1", "sync", datetime(2026, 11, 22, tzinfo=timezone.utc))
    r.passes = {key: {"status": status, "records": 3, "error": error} for key, status, error in passes}
    r.held = [{"key": f"invoice:{cause}:2026-10", "cause": cause, "reasons": [f"{cause} reason"]} for cause in held]
    r.failed = [{"key": key, "error": "HTTP 500"} for key in failed]
    r.stopped = stopped
    r.warnings = list(warnings)
    return r


OK_PASS = ("ninjaone.devices", "complete", None)
FAILED_PASS = ("ninjaone.clients", "failed", "HTTP 500 after 3 attempts")


@pytest.mark.parametrize("kwargs, code", [
    ({}, EXIT_OK),
    ({"passes": [OK_PASS], "warnings": ["client x is linked to nothing"]}, EXIT_OK),
    ({"passes": [OK_PASS], "held": ["guardrail", "review", "veto"]}, EXIT_OK),
    ({"passes": [OK_PASS], "failed": ["invoice:acme:2026-10"]}, EXIT_PUSH_FAILED),
    ({"passes": [OK_PASS, FAILED_PASS]}, EXIT_PULL_FAILED),
    ({"passes": [OK_PASS], "held": ["guardrail", "error"]}, EXIT_HELD),
    ({"passes": [OK_PASS], "held": ["incomplete"]}, EXIT_HELD),
    ({"passes": [("ninjaone.devices", "stopped", None)], "stopped": True}, EXIT_STOPPED),
    # The most severe wins: a failed pull, then a hold for an error, then a failed push.
    ({"passes": [FAILED_PASS], "held": ["incomplete"], "failed": ["invoice:acme:2026-10"]}, EXIT_PULL_FAILED),
    ({"passes": [OK_PASS], "held": ["error"], "failed": ["invoice:acme:2026-10"]}, EXIT_HELD),
    ({"failed": ["invoice:acme:2026-10"], "stopped": True}, EXIT_PUSH_FAILED),
])
def test_exit_code_maps_a_report_to_its_most_severe_cause(kwargs, code):
    assert exit_code(report(**kwargs)) == code


def test_a_held_action_without_a_cause_counts_as_held_for_an_error():
    r = report(passes=[OK_PASS])
    r.held = [{"key": "invoice:acme:2026-10", "reasons": ["?"]}]
    assert exit_code(r) == EXIT_HELD


@pytest.mark.parametrize("row, code", [
    ({"status": "ok", "counts": {"pushed": 2}, "errors": []}, EXIT_OK),
    ({"status": "failed", "counts": {"failed": 1}, "errors": ["push invoice:acme:2026-10: HTTP 500"]}, EXIT_PUSH_FAILED),
    ({"status": "failed", "counts": {"failed": 0}, "errors": ["pull ninjaone.devices: HTTP 500"]}, EXIT_PULL_FAILED),
    ({"status": "failed", "counts": {"passes": {"ninjaone.devices": {"status": "failed", "error": "x"}}},
      "errors": []}, EXIT_PULL_FAILED),
    ({"status": "held", "counts": {"held": 2}, "errors": []}, EXIT_HELD),
    ({"status": "ok", "counts": {"held": 1, "held_causes": {"guardrail": 1}}, "errors": []}, EXIT_OK),
    ({"status": "warnings", "counts": {}, "errors": ["pull ninjaone.devices: record 7 set aside: no org"]}, EXIT_OK),
    ({"status": "stopped", "counts": {}, "errors": []}, EXIT_STOPPED),
])
def test_a_daemons_run_row_maps_to_the_same_codes(row, code):
    assert exit_code(report_from_row(row)) == code


# --- the commands ------------------------------------------------------------------------------------

# The CLI tests' fixture: a config over the NinjaOne and Stripe simulators served on loopback.


def run(*args):
    return CliRunner().invoke(main, list(args), env={"T_NINJA": NINJA_SECRET, "T_STRIPE": STRIPE_KEY})


@pytest.mark.parametrize("args, fragment", [
    (("sync", "--period", "2026-13"), "--period: period '2026-13' is not of the form YYYY-MM"),
    (("plan", "--period", "26-10"), "--period: period '26-10'"),
    (("resync", "--period", "2026-00"), "--period: period '2026-00'"),
    (("sync", "--connector", "nosuch"), "--connector: connector 'nosuch' is not configured (fix: use one of "
                                        "ninjaone, stripe)"),
    (("sync", "--stream", "nosuch"), "--stream: no configured connector has a stream 'nosuch'"),
    (("sync", "--connector", "stripe", "--stream", "devices"), "--stream: no chosen connector has a stream 'devices'"),
    (("resync", "--connector", "nosuch"), "--connector: connector 'nosuch' is not configured"),
])
def test_a_wrong_option_is_refused_with_exit_2_before_any_request(served, args, fragment):
    cfg, ninja, stripe = served
    result = run(*args, "--config", str(cfg))
    assert result.exit_code == EXIT_USAGE, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert ninja.requests == 0 and stripe.requests == 0


def test_sync_exits_3_when_a_stream_failed_to_pull_and_says_why_on_stderr(served, monkeypatch):
    cfg, _, _ = served
    built = report(passes=[OK_PASS, FAILED_PASS], held=["incomplete"], failed=["invoice:acme:2026-10"])
    monkeypatch.setattr(cli, "sync_once", lambda hub, **kw: built)
    result = run("sync", "--config", str(cfg))
    assert result.exit_code == EXIT_PULL_FAILED
    line = [l for l in result.stderr.splitlines() if l.startswith("exit 3: ")]
    assert line == ["exit 3: 1 stream(s) failed to pull: ninjaone.clients (HTTP 500 after 3 attempts); also 1 "
                    "action(s) held for an error or incomplete input: invoice:incomplete:2026-10 (incomplete); also "
                    "1 push(es) failed: invoice:acme:2026-10"]


def test_guardrail_holds_are_printed_and_exit_0(served, monkeypatch):
    cfg, _, _ = served
    monkeypatch.setattr(cli, "sync_once", lambda hub, **kw: report(passes=[OK_PASS], held=["guardrail"]))
    result = run("sync", "--config", str(cfg))
    assert result.exit_code == EXIT_OK and "exit " not in result.stderr
    assert ("held [guardrail] invoice:guardrail:2026-10: guardrail reason "
            "(approve with: msp-hub approve invoice:guardrail:2026-10)") in result.stdout


def test_plan_exits_4_for_an_action_held_for_an_error(served, monkeypatch):
    cfg, _, _ = served
    seen = {}

    def fake(hub, **kwargs):
        seen.update(kwargs)
        return report(held=["error"])
    monkeypatch.setattr(cli, "sync_once", fake)
    result = run("plan", "--config", str(cfg), "--period", "2026-10")
    assert result.exit_code == EXIT_HELD
    assert seen["pull_first"] is False and seen["period"] == "2026-10"
    assert "held [error] invoice:error:2026-10: error reason (fix the cause, then sync again)" in result.stdout
    assert "exit 4: 1 action(s) held for an error or incomplete input: invoice:error:2026-10 (error)" in result.stderr


def test_a_real_sync_that_pushes_everything_exits_0_and_a_refused_push_exits_1(served):
    cfg, _, stripe = served
    stripe.fail_next(402, times=1, path="/v1/invoices")
    failed = run("sync", "--config", str(cfg), "--period", "2026-10")
    assert failed.exit_code == EXIT_PUSH_FAILED, failed.output
    assert "exit 1: 1 push(es) failed: invoice:" in failed.stderr
    again = run("sync", "--config", str(cfg), "--period", "2026-10")
    assert again.exit_code == EXIT_OK, again.output


def test_a_held_lock_exits_75(served):
    cfg, _, _ = served
    from hub.store import Store
    store = Store(str(cfg.parent / "hub.db"))
    assert store.acquire_lock("sync", "daemon:other") is None
    try:
        result = run("sync", "--config", str(cfg))
    finally:
        store.release_lock("sync", "daemon:other")
        store.close()
    assert result.exit_code == EXIT_LOCKED and "daemon:other" in result.output


def test_a_database_in_a_missing_folder_is_a_config_error_not_a_traceback(tmp_path):
    from hub.errors import ConfigError
    from hub.store import Store
    with pytest.raises(ConfigError) as exc:
        Store(str(tmp_path / "nowhere" / "hub.db"))
    assert exc.value.key == "database" and "mkdir -p" in exc.value.fix
    assert f"the database folder {tmp_path / 'nowhere'} does not exist" in str(exc.value)
    assert not (tmp_path / "nowhere").exists()
    cfg = tmp_path / "msp-hub.toml"
    cfg.write_text(f'database = "missing/hub.db"\nmappings = "{mappings_for_tests(tmp_path).as_posix()}"\n')
    result = CliRunner().invoke(main, ["sync", "--config", str(cfg)])
    assert result.exit_code == EXIT_USAGE and "does not exist" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args", [("--help",), ("sync", "--help"), ("resync", "--help"), ("plan", "--help")])
def test_the_help_documents_the_exit_codes(args):
    text = CliRunner().invoke(main, list(args)).output
    for line in ("0   all good", "1   a push failed", "2   a wrong option or config", "3   a pull failed",
                 "4   something is held for an error or incomplete input", "75  another run holds the lock",
                 "the most severe wins: 3, then 4, then 1"):
        assert line in text, (args, line)


# --- resync through a daemon --------------------------------------------------------------------------

DAEMON_TOKEN = "tok-exit-daemon-8c1f3e5a"


@pytest.fixture
def daemon(tmp_path):
    """A fake daemon's admin API: POST /resync answers ``answer``, GET /runs/<id> the row ``run``."""
    import httpx
    state = {"answer": (202, {"run_id": "r1"}), "run": None, "posted": []}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == f"Bearer {DAEMON_TOKEN}"
        if request.method == "POST" and request.url.path == "/resync":
            state["posted"].append(request.content)
            status, body = state["answer"]
            return httpx.Response(status, json=body)
        if request.url.path == "/runs/r1":
            return httpx.Response(200, json=state["run"])
        return httpx.Response(200, json={})
    with serve(handler) as url:
        port = int(url.rsplit(":", 1)[1])
        cfg = tmp_path / "msp-hub.toml"
        cfg.write_text(f"""
database = "hub.db"
mappings = "{mappings_for_tests(tmp_path).as_posix()}"
[admin]
port = {port}
token_file = "token.txt"
""")
        (tmp_path / "token.txt").write_text(DAEMON_TOKEN)
        yield cfg, state


@pytest.mark.parametrize("row, code, line", [
    ({"id": "r1", "status": "ok", "counts": {"records": {"ninjaone.devices": 4}, "pushed": 1}, "errors": []},
     EXIT_OK, None),
    ({"id": "r1", "status": "failed", "counts": {"failed": 0}, "errors": ["pull ninjaone.devices: HTTP 500"]},
     EXIT_PULL_FAILED, "exit 3: 1 stream(s) failed to pull: ninjaone.devices (HTTP 500)"),
    ({"id": "r1", "status": "failed", "counts": {"failed": 2}, "errors": ["push invoice:a:2026-10: HTTP 402"]},
     EXIT_PUSH_FAILED, "exit 1: 1 push(es) failed: 2 action(s)"),
    ({"id": "r1", "status": "held", "counts": {"held": 3}, "errors": []},
     EXIT_HELD, "exit 4: 1 action(s) held for an error or incomplete input: 3 action(s) (error)"),
    ({"id": "r1", "status": "crashed", "counts": {}, "errors": ["run stopped: KeyError('x')"]},
     cli.EXIT_CRASHED, "exit 70: run r1 crashed; see the daemon's log"),
])
def test_resync_through_the_daemon_exits_with_the_code_of_the_run_it_followed(daemon, row, code, line):
    cfg, state = daemon
    state["run"] = row
    for args in ((), ("--json",)):
        result = run("resync", "--config", str(cfg), *args)
        assert result.exit_code == code, result.output
        exits = [l for l in result.stderr.splitlines() if l.startswith("exit ")]
        assert exits == ([line] if line else [])


def test_resync_through_the_daemon_exits_2_when_the_daemon_refuses_the_scope(daemon):
    cfg, state = daemon
    state["answer"] = (400, {"error": "streams: no configured connector has a stream 'nosuch'"})
    result = run("resync", "--config", str(cfg), "--stream", "nosuch")
    assert result.exit_code == EXIT_USAGE and "no configured connector has a stream 'nosuch'" in result.output
    bad = run("resync", "--config", str(cfg), "--period", "2026-13")
    assert bad.exit_code == EXIT_USAGE and len(state["posted"]) == 1   # refused here, never sent
