"""The plugin kit: the template and `msp-hub plugin new`, the Simulator base, hub.sdk.VendorClient,
the pytest fixtures and assert_plugin_conforms catching connectors that break the rules."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import structlog
from click.testing import CliRunner

from hub.cli import main
from hub.connectors import Page, PushResult, Stream, map_records
from hub.engine import RunReport, pull
from hub.errors import CredentialsError, MalformedResponseError, MappingError, RetryableError, VendorError
from hub.http import retry_policy
from hub.records import APPROVED, Action, Device
from hub.sdk import VendorClient, error_for
from hub.sdk.new import new_plugin
from hub.testing import ConnectorPlugin, Simulator, assert_plugin_conforms, mock_client
from hub.testing.fixtures import hub_config, hub_for, no_wait_retry, serve_simulator  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=timezone.utc)


# --- the template ---------------------------------------------------------------------------------

def test_plugin_new_writes_a_package_with_its_entry_point_and_refuses_to_overwrite_it(tmp_path):
    result = CliRunner().invoke(main, ["plugin", "new", "acme_rmm", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "acme_rmm"
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert written == ["README.md", "acme_rmm/__init__.py", "acme_rmm/client.py", "acme_rmm/plugin.py",
                       "acme_rmm/simulator.py", "conftest.py", "device_classes.toml", "pyproject.toml",
                       "tests/mappings/contracts.toml", "tests/mappings/device_classes.toml",
                       "tests/mappings/tiers.toml", "tests/test_plugin.py"]
    pyproject = (root / "pyproject.toml").read_text()
    assert 'name = "msp-hub-acme-rmm"' in pyproject
    assert '[project.entry-points.msp_hub]\nacme_rmm = "acme_rmm.plugin"' in pyproject
    assert "{{" not in "".join((root / f).read_text() for f in written)
    assert "class AcmeRmmSimulator(Simulator)" in (root / "acme_rmm/simulator.py").read_text()

    (root / "acme_rmm/plugin.py").write_text("# changed by its author\n")
    again = CliRunner().invoke(main, ["plugin", "new", "acme_rmm", "--dir", str(tmp_path)])
    assert again.exit_code == 2
    assert f"folder {root} already exists; nothing was written" in again.output
    assert (root / "acme_rmm/plugin.py").read_text() == "# changed by its author\n"


@pytest.mark.parametrize("name, why", [
    ("Acme", "is not valid"), ("acme-rmm", "is not valid"), ("1acme", "is not valid"), ("a", "is not valid"),
    ("acme__rmm", "is not valid"), ("acme_", "is not valid"), ("class", "is taken"), ("ninjaone", "is taken"),
    ("hub", "is taken"),
])
def test_plugin_new_refuses_a_name_that_cannot_be_a_package_or_a_connector(tmp_path, name, why):
    result = CliRunner().invoke(main, ["plugin", "new", name, "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert f"plugin name {name!r} {why}" in result.output and "fix:" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_generated_plugin_passes_its_own_tests_conformance_and_billing_included(tmp_path):
    root = new_plugin("toy_rmm", tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(root)])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    for test in ("test_the_connector_passes_the_conformance_suite",
                 "test_a_hub_with_the_plugin_pulls_the_devices_and_bills_them_by_tier",
                 "test_a_refused_key_is_a_credentials_error_naming_the_setting"):
        assert f"PASSED tests/test_plugin.py::{test}" in done.stdout
    assert "\n6 passed in " in done.stdout
    assert "[debug" not in done.stdout and "[info" not in done.stdout   # the fixtures keep tests quiet


def test_the_template_files_ship_in_the_package_data():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"hub.sdk" = ["template/*.tmpl", "template/**/*.tmpl"]' in pyproject
    assert all(p.suffix == ".tmpl" for p in (ROOT / "hub/sdk/template").rglob("*") if p.is_file())


# --- the Simulator base ----------------------------------------------------------------------------

class ItemsSimulator(Simulator):
    """Items paged by cursor at /items and by number at /numbered; POST /items creates one once per key."""

    def __init__(self, items: int = 7, **kwargs):
        super().__init__(page_size=3, now=NOW.timestamp(), **kwargs)
        self.items = [{"id": n, "name": f"item {n}", "kind": "workstation"} for n in range(1, items + 1)]
        self.created: dict[str, dict] = {}
        self.route("GET", "/items", lambda r: self.page_by_cursor(r, self.items))
        self.route("GET", "/numbered", lambda r: self.page_by_number(r, self.items))
        self.route("POST", "/items", self._create)

    def _create(self, request):
        key = request.headers.get("Idempotency-Key")
        if key not in self.created:
            self.created[key] = {"id": f"obj-{len(self.created) + 1}"}
            self.effects["created"] += 1
        return self.json(201, self.created[key])

    def add_unmappable(self, table):
        self.items.append({"id": len(self.items) + 1, "name": None, "kind": "workstation"})
        return str(len(self.items))


AUTH = {"Authorization": "Bearer test-token"}


def test_the_simulator_checks_credentials_and_pages_by_cursor_and_by_number():
    sim = ItemsSimulator()
    http = mock_client(sim.handler)
    assert http.get("/items").status_code == 401
    assert http.get("/items", headers={"Authorization": "Bearer wrong"}).json() == {
        "detail": "Authentication credentials were not provided or are invalid."}
    first = http.get("/items", headers=AUTH).json()
    assert [i["id"] for i in first["results"]] == [1, 2, 3] and first["next_cursor"] == "3"
    last = http.get("/items", params={"after": "6"}, headers=AUTH).json()
    assert [i["id"] for i in last["results"]] == [7] and last["next_cursor"] is None
    page3 = http.get("/numbered", params={"page": 3, "page_size": 3}, headers=AUTH).json()
    assert page3 == {"count": 7, "next": None, "results": [sim.items[6]]}
    assert http.get("/numbered", params={"page": 1, "page_size": 2}, headers=AUTH).json()["next"] == 2
    assert http.get("/nowhere", headers=AUTH).status_code == 404
    assert http.delete("/items", headers=AUTH).status_code == 405
    assert sim.requests == 8 and sim.requests_by_path["/items"] == 5


def test_a_route_with_path_parameters_passes_them_and_an_exact_route_wins():
    sim = Simulator(auth_value=None)
    sim.route("GET", "/agents/{agent_id}/checks/{check}", lambda r, agent_id, check: sim.json(200, [agent_id, check]))
    sim.route("GET", "/agents/{agent_id}/", lambda r, agent_id: sim.json(200, {"id": agent_id}))
    sim.route("GET", "/agents/summary/", lambda r: sim.json(200, "summary"))
    http = mock_client(sim.handler)
    assert http.get("/agents/17/").json() == {"id": "17"}
    assert http.get("/agents/17/checks/disk").json() == ["17", "disk"]
    assert http.get("/agents/summary/").json() == "summary"
    assert http.put("/agents/17/").status_code == 405
    assert http.get("/agents/17/extra/").status_code == 404


def test_the_simulator_serves_faults_in_order_then_recovers_and_dates_answers_on_its_clock():
    sim = ItemsSimulator()
    http = mock_client(sim.handler)
    sim.fail_next(429, times=2, retry_after=7, path="/items")
    sim.garbage_next(path="/numbered")
    assert [http.get("/items", headers=AUTH).status_code for _ in range(3)] == [429, 429, 200]
    limited = (sim.fail_next(503, retry_after=2), http.get("/items", headers=AUTH))[1]
    assert limited.headers["Retry-After"] == "2"
    with pytest.raises(ValueError):
        http.get("/numbered", headers=AUTH).json()
    sim.timeout_next()
    with pytest.raises(httpx.ReadTimeout):
        http.get("/items", headers=AUTH)
    sim.fail_next(500, times=5)
    sim.clear_faults()
    assert http.get("/items", headers=AUTH).status_code == 200
    sim.advance(3600)
    assert http.get("/items", headers=AUTH).headers["Date"] == "Thu, 03 Dec 2026 10:00:00 GMT"
    with pytest.raises(ValueError, match="times must be at least 1"):
        sim.fail_next(503, times=0)


def test_a_fault_after_apply_acts_on_the_request_then_loses_its_answer():
    sim = ItemsSimulator()
    http = mock_client(sim.handler)
    sim.timeout_next(after_apply=True, method="POST")
    with pytest.raises(httpx.ReadTimeout):
        http.post("/items", headers={**AUTH, "Idempotency-Key": "k1"})
    assert sim.effects["created"] == 1
    assert http.post("/items", headers={**AUTH, "Idempotency-Key": "k1"}).json() == {"id": "obj-1"}
    assert sim.effects["created"] == 1


# --- hub.sdk.VendorClient and error_for -------------------------------------------------------------

def client_for(sim, sleeps=None, **kwargs) -> VendorClient:
    policy = (lambda: retry_policy(sleep=sleeps.append)) if sleeps is not None else \
        (lambda: retry_policy(sleep=lambda s: None))
    return VendorClient("toy", "http://simulator.test", headers=AUTH, http=mock_client(sim.handler),
                        retrying=policy, **kwargs)


def test_the_vendor_client_retries_a_429_as_long_as_retry_after_says_and_returns_the_body():
    sim, sleeps = ItemsSimulator(), []
    sim.fail_next(429, times=2, retry_after=3)
    assert client_for(sim, sleeps).get("/items")["next_cursor"] == "3"
    assert sleeps == [3.0, 3.0]


def test_the_vendor_client_gives_up_on_a_5xx_after_the_policy_attempts():
    sim = ItemsSimulator()
    sim.fail_next(503, times=10, retry_after=0)
    with pytest.raises(RetryableError, match=r"toy: GET http://simulator.test/items failed with HTTP 503: simulated fault"):
        client_for(sim).get("/items", params={"after": 2})
    assert sim.requests == 5


def test_the_vendor_client_turns_a_401_into_a_credentials_error_at_once_with_the_fix():
    sim = ItemsSimulator(auth_value="Bearer another")
    with pytest.raises(CredentialsError, match=r"HTTP 401: .*\(fix: set token_env in \[connectors.toy\]\)"):
        client_for(sim, credentials_fix="set token_env in [connectors.toy]").get("/items")
    assert sim.requests == 1


def test_a_garbled_body_is_retried_then_a_malformed_response_error_and_a_timeout_is_retryable():
    sim = ItemsSimulator()
    sim.garbage_next()
    assert client_for(sim).get("/items")["results"][0]["id"] == 1
    sim.garbage_next(times=5)
    with pytest.raises(MalformedResponseError, match="expected a JSON object"):
        client_for(sim).get("/items")
    sim.timeout_next(times=5)
    with pytest.raises(RetryableError, match="failed with no response: ReadTimeout"):
        client_for(sim).get("/items")


def test_error_for_maps_each_status_and_keeps_secrets_and_queries_out_of_the_message():
    request = httpx.Request("GET", "http://v.test/api/x?token=s3cret")
    def answer(status, body, headers=None):
        return httpx.Response(status, json=body, headers=headers, request=request)
    assert error_for(answer(200, {}), "v") is None
    not_found = error_for(answer(404, {"detail": "no such thing"}), "v")
    assert type(not_found) is VendorError and str(not_found) == "v: GET http://v.test/api/x failed with HTTP 404: no such thing"
    forbidden = error_for(answer(403, {"message": "key s3cret is read-only"}), "v", secrets=("s3cret",))
    assert isinstance(forbidden, CredentialsError) and "s3cret" not in str(forbidden) and "[redacted]" in str(forbidden)
    busy = error_for(answer(503, {}, {"Retry-After": "12"}), "v")
    assert isinstance(busy, RetryableError) and busy.retry_after == 12.0


# --- the fixtures -----------------------------------------------------------------------------------

def test_serve_simulator_serves_it_over_http(serve_simulator):
    sim = ItemsSimulator()
    url = serve_simulator(sim)
    assert url.startswith("http://127.0.0.1:")
    assert httpx.get(url + "/items", headers=AUTH).json()["next_cursor"] == "3"


def test_hub_for_builds_a_hub_whose_runs_print_no_debug_or_info_lines(hub_for, capsys):
    sim = ItemsSimulator()
    hub = hub_for(ConnectorPlugin(ItemsConnector(sim)))
    report = RunReport("r1", "sync", NOW)
    pull(hub, report)
    assert report.passes["items.devices"]["status"] == "complete"
    structlog.get_logger().warning("still.shown")
    out = capsys.readouterr().out
    assert "sync.stream_pulled" not in out and "sync.page_stored" not in out and "still.shown" in out


def test_hub_config_builds_a_config_whose_secrets_come_from_its_environ(hub_config):
    config = hub_config(connectors={"toy": {"token_env": "TOY_TOKEN"}}, environ={"TOY_TOKEN": "t0k"})
    assert config.secret("toy", "token").reveal() == "t0k"


# --- assert_plugin_conforms catches what breaks the rules -------------------------------------------

def to_device(raw):
    if not raw.get("name"):
        raise MappingError(f"item {raw.get('id')} has no name")
    return Device("items", str(raw["id"]), "1", raw["name"], raw["kind"], APPROVED)


class ItemsConnector:
    """A small, correct connector over ItemsSimulator; the flags break one rule each."""

    name = "items"
    action_kinds = frozenset({"ticket"})

    def __init__(self, sim, *, swallow=False, skip_ahead=False, careless_push=False, miscount=False):
        self.sim, self.swallow, self.skip_ahead, self.careless_push = sim, swallow, skip_ahead, careless_push
        self.miscount = miscount
        self.api = client_for(sim)

    def streams(self):
        return [Stream("items", "devices", "devices", self._devices)]

    def _devices(self, cursor, started):
        after, read = (cursor or {}).get("after"), (cursor or {}).get("read", 0)
        try:
            while True:
                body = self.api.get("/items", params={"limit": 3} | ({"after": after} if after else {}))
                records, rejected = map_records(body["results"], to_device)
                after = body["next_cursor"]
                read += len(body["results"]) - (1 if self.miscount and rejected else 0)
                saved = {"after": str(len(self.sim.items)), "read": read} if self.skip_ahead and after else (
                    {"after": after, "read": read} if after else None)
                yield Page(records, saved, rejected=rejected, sweep_count=None if after else read)
                if after is None:
                    return
        except VendorError:
            if not self.swallow:
                raise

    def push(self, action, context):
        key = f"{action.key}-{context.attempts}" if self.careless_push else action.key
        body = self.api.post("/items", json_body=action.payload, headers={"Idempotency-Key": key})
        return PushResult(body["id"], "created")

    def close(self):
        self.api.close()


ACTION = Action("ticket:items:1", "ticket", "items", "c1", {"summary": "disk full"})


def test_a_correct_connector_passes_every_check_of_the_suite():
    sim = ItemsSimulator()
    report = assert_plugin_conforms(ItemsConnector(sim), sim, actions=[ACTION])
    assert report.not_run == []
    assert "a 401 fails only the stream's pass, recorded as failed" in report.passed
    assert "a pass failed midway resumes from its cursor to the same records" in report.passed
    assert "ticket ticket:items:1 is pushed once (an answer lost, then retried)" in report.passed
    assert sim.effects["created"] == 1


def test_the_suite_fails_a_stream_that_swallows_a_vendor_error():
    sim = ItemsSimulator()
    with pytest.raises(AssertionError, match="items.devices: a 401 must fail the stream's pass, its pass is 'complete'"):
        assert_plugin_conforms(ItemsConnector(sim, swallow=True), sim)


def test_the_suite_fails_a_cursor_that_passes_unread_data():
    sim = ItemsSimulator()
    with pytest.raises(AssertionError, match="records are missing .* the saved cursor passed unread data"):
        assert_plugin_conforms(ItemsConnector(sim, skip_ahead=True), sim)


def test_the_suite_fails_a_push_that_a_retry_repeats():
    sim = ItemsSimulator()
    with pytest.raises(AssertionError, match="pushed again after a lost answer, it made 'obj-2' besides 'obj-1'"):
        assert_plugin_conforms(ItemsConnector(sim, careless_push=True), sim, actions=[ACTION])


def test_the_suite_fails_a_sweep_count_that_leaves_out_the_rejected_records():
    sim = ItemsSimulator()
    sim.add_unmappable("devices")
    with pytest.raises(AssertionError, match="devices: the page ending the sweep says it read 7 records, the pass read 8"):
        assert_plugin_conforms(ItemsConnector(sim, miscount=True), sim)


def test_the_suite_says_which_faults_a_simulator_cannot_make():
    class Plain:
        """A simulator with only fail_next (and a fault list to clear)."""

        def __init__(self):
            self.inner = ItemsSimulator()
            self._faults = self.inner._faults
            self.handler = self.inner.handler
            self.items = self.inner.items

        def fail_next(self, status, times=1, retry_after=None):
            self.inner.fail_next(status, times, retry_after)
    sim = Plain()
    report = assert_plugin_conforms(ItemsConnector(sim), sim)
    assert report.not_run == ["a timeout (the simulator has no timeout_next())",
                              "a malformed page (the simulator has no garbage_next())",
                              "a record that fails mapping (the simulator has no add_unmappable(table))"]
