"""``msp-hub check``: one cheap authenticated request per configured connector, against the simulators
served over HTTP; a failure names the connector, the HTTP status, the vendor's message and the fix."""

import json
import socket
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.demo import seed_connectwise, seed_ninjaone
from hub.periods import last_ended_period
from hub.testing import serve
from plugins.stripe.simulator import StripeSimulator
from tests.conftest import mappings_for_tests


class Counting:
    """A simulator's handler that counts the requests it answers."""

    def __init__(self, handler):
        self.handler, self.paths = handler, []

    def __call__(self, request):
        self.paths.append(request.url.path)
        return self.handler(request)


def dead_url() -> str:
    """An address where nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def world(tmp_path):
    ninja = seed_ninjaone(20)
    cw = seed_connectwise(last_ended_period(datetime.now(timezone.utc), "Europe/Paris"))
    stripe = StripeSimulator(api_key="sk_test_check_4b2")
    handlers = {"ninja": Counting(ninja.handler), "cw": Counting(cw.handler), "stripe": Counting(stripe.handler)}
    with serve(handlers["ninja"]) as n_url, serve(handlers["cw"]) as c_url, serve(handlers["stripe"]) as s_url:
        cfg = tmp_path / "msp-hub.toml"

        def write(ninja_url=n_url, cw_url=c_url, stripe_url=s_url):
            cfg.write_text(f"""
database = "hub.db"
mappings = "{mappings_for_tests(tmp_path).as_posix()}"
[connectors.ninjaone]
base_url = "{ninja_url}"
client_id = "{ninja.client_id}"
client_secret_env = "C_NINJA"
[connectors.connectwise]
site = "{cw_url}"
company_id = "{cw.company_id}"
public_key = "{cw.public_key}"
private_key_env = "C_CW"
client_id = "{cw.client_id}"
[connectors.stripe]
base_url = "{stripe_url}"
api_key_env = "C_STRIPE"
""")
        write()
        env = {"C_NINJA": ninja.client_secret, "C_CW": cw.private_key, "C_STRIPE": stripe.api_key}
        yield cfg, env, handlers, write


def check(cfg, env, *args):
    return CliRunner().invoke(main, ["check", "--config", str(cfg), *args], env=env)


def test_check_sends_one_request_per_connector_and_exits_0(world):
    cfg, env, handlers, _ = world
    result = check(cfg, env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines == ["ok      connectwise: GET /company/companies?pageSize=1",
                     "ok      ninjaone: GET /v2/organizations?pageSize=1 (OAuth token accepted)",
                     "ok      stripe: GET /v1/customers?limit=1"]
    assert handlers["cw"].paths[-1].endswith("/company/companies") and len(handlers["cw"].paths) == 1
    assert len(handlers["ninja"].paths) == 2 and handlers["ninja"].paths[-1] == "/v2/organizations"  # token, then it
    assert handlers["stripe"].paths == ["/v1/customers"]


def test_a_refused_secret_names_the_connector_status_message_and_the_key_to_fix(world):
    cfg, env, _, _ = world
    result = check(cfg, dict(env, C_STRIPE="sk_test_wrong_key_0"))
    assert result.exit_code == 1, result.output
    failed = [l for l in result.stdout.splitlines() if l.startswith("FAILED")]
    assert len(failed) == 1 and failed[0].startswith("FAILED  stripe: GET /v1/customers -> HTTP 401: ")
    assert "sk_test_wrong_key_0" not in result.output
    assert "fix: check connectors.stripe.api_key_env ($C_STRIPE)" in result.stdout
    assert "exit 1: 1 connector check(s) failed: stripe" in result.stderr
    assert result.stdout.count("ok      ") == 2          # the others were still checked


def test_a_refused_private_key_and_client_secret_are_named(world):
    cfg, env, _, _ = world
    result = check(cfg, dict(env, C_CW="wrong", C_NINJA="wrong"), "--json")
    assert result.exit_code == 1, result.output
    body = json.loads(result.stdout)
    assert body["ok"] is False
    rows = {r["connector"]: r for r in body["connectors"]}
    assert rows["stripe"]["ok"] is True
    # ConnectWise cloud answers a wrong key pair with 404 "cannot route", its own way of refusing
    assert rows["connectwise"]["ok"] is False and rows["connectwise"]["status"] in (401, 404)
    assert "connectors.connectwise.private_key_env ($C_CW)" in rows["connectwise"]["fix"]
    assert rows["ninjaone"]["ok"] is False and rows["ninjaone"]["status"] in (400, 401)
    assert "connectors.ninjaone.client_secret_env ($C_NINJA)" in rows["ninjaone"]["fix"]
    assert rows["ninjaone"]["message"]


def test_no_answer_names_the_address_key_and_fails_fast(world):
    cfg, env, _, write = world
    url = dead_url()
    write(stripe_url=url)
    result = check(cfg, env, "--connector", "stripe")
    assert result.exit_code == 1, result.output
    assert "FAILED  stripe: GET /v1/customers -> no answer: " in result.stdout
    assert f"fix: check connectors.stripe.base_url (now '{url}') and that this host can reach it" in result.stdout
    assert "connectwise" not in result.stdout and "ninjaone" not in result.stdout


def test_an_unknown_connector_is_refused_naming_the_configured_ones(world):
    cfg, env, handlers, _ = world
    result = check(cfg, env, "--connector", "nosuch")
    assert result.exit_code == 2
    assert "--connector: 'nosuch' is not configured (fix: use one of connectwise, ninjaone, stripe)" in result.output
    assert all(h.paths == [] for h in handlers.values())


def test_a_missing_secret_is_refused_before_any_request(world):
    cfg, env, handlers, _ = world
    result = check(cfg, {k: v for k, v in env.items() if k != "C_CW"} | {"C_CW": None})
    assert result.exit_code == 2
    assert "connectors.connectwise.private_key_env" in result.output and "C_CW is not set" in result.output
    assert all(h.paths == [] for h in handlers.values())
