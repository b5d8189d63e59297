"""Tenants: one deployment serving several MSPs, each apart from the others.

Two tenants, acme and birch, each with its own NinjaOne and Stripe simulators served over HTTP,
its own folder (config, mappings, database) and its own secrets file, listed in one tenants.toml.
The tests try to cross the line: a tenant's token on the other's paths, a tenant's config naming
the other's secret variable, two tenants on one database file or one vendor account, a sync of
one tenant touching the other's simulators or rows; and they check that runs, locks, metrics,
log lines and API paths carry the tenant, while a single hub stays as it was.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import structlog
from click.testing import CliRunner

from hub.cli import main
from hub.errors import ConfigError
from hub.metrics import REGISTRY, label_tenants
from hub.testing import serve
from hub.tenants import check_apart, load_deployment, load_tenants, select
from plugins.ninjaone.simulator import NinjaOneSimulator
from plugins.stripe.simulator import StripeSimulator
from tests.conftest import mappings_for_tests

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENT_TOKEN = "deployment-token-7c1f3e9a5b2d"


class Counted:
    """A simulator's handler that counts the requests it served."""

    def __init__(self, handler):
        self.handler, self.requests = handler, 0

    def __call__(self, request):
        self.requests += 1
        return self.handler(request)


class Side:
    """One tenant's simulators, folder, config and secrets."""

    def __init__(self, root: Path, name: str, seed: int, devices: int, stack: contextlib.ExitStack):
        self.name = name
        self.ninja = NinjaOneSimulator(seed=seed, organizations=6, devices=devices, now=time.time(),
                                       client_id=f"{name}-client", client_secret=f"{name}-ninja-secret")
        self.stripe = StripeSimulator(api_key=f"sk_test_{name}_stripe")
        self.ninja_http, self.stripe_http = Counted(self.ninja.handler), Counted(self.stripe.handler)
        self.urls = {"ninja": stack.enter_context(serve(self.ninja_http)),
                     "stripe": stack.enter_context(serve(self.stripe_http))}
        self.folder = root / name
        self.folder.mkdir()
        mappings_for_tests(self.folder)
        self.token = f"{name}-admin-token-0123456789"
        self.secrets = {"NINJA_SECRET": self.ninja.client_secret, "STRIPE_KEY": self.stripe.api_key,
                        "ADMIN_TOKEN": self.token}
        self.write_config()
        self.write_secrets()

    @property
    def config(self) -> Path:
        return self.folder / "msp-hub.toml"

    @property
    def db(self) -> Path:
        return self.folder / "hub.db"

    def write_config(self, *, database: str = "hub.db", secret_var: str = "NINJA_SECRET", jobs: str = "") -> None:
        self.config.write_text(f"""
timezone = "Europe/Paris"
database = "{database}"
mappings = "mappings"

[connectors.ninjaone]
base_url = "{self.urls['ninja']}"
client_id = "{self.ninja.client_id}"
client_secret_env = "{secret_var}"
page_size = 50

[connectors.stripe]
base_url = "{self.urls['stripe']}"
api_key_env = "STRIPE_KEY"

[admin]
token_env = "ADMIN_TOKEN"

[logging]
format = "json"
level = "info"
{jobs}
""")

    def write_secrets(self, **extra: str) -> None:
        lines = [f"{k}={v}" for k, v in {**self.secrets, **extra}.items()]
        (self.folder / "secrets.env").write_text("# this tenant's secrets\n" + "\n".join(lines) + "\n")

    def rows(self, table: str) -> list[dict]:
        if not self.db.exists():
            return []
        conn = sqlite3.connect(self.db)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(f"select * from {table}")]   # noqa: S608 (a test's table)
        finally:
            conn.close()

    def invoice_keys(self) -> list[str]:
        return sorted(i["metadata"]["msp_hub_action_key"] for i in self.stripe.list_objects("invoice"))


class Deployment:
    def __init__(self, root: Path, stack: contextlib.ExitStack):
        self.root = root
        self.acme = Side(root, "acme", 3, 40, stack)
        self.birch = Side(root, "birch", 4, 60, stack)
        self.file = root / "tenants.toml"
        self.write()

    def write(self, extra: str = "") -> None:
        self.file.write_text(f"""
[tenants.acme]
config = "acme/msp-hub.toml"
secrets_file = "acme/secrets.env"

[tenants.birch]
config = "birch/msp-hub.toml"
secrets_file = "birch/secrets.env"
{extra}""")

    def cli(self, *args, env: dict | None = None):
        return CliRunner().invoke(main, ["--tenants", str(self.file), *args], env=env or {})


@pytest.fixture
def deployment(tmp_path):
    with contextlib.ExitStack() as stack:
        yield Deployment(tmp_path, stack)


@pytest.fixture
def labelled():
    """Metrics labelled by tenant for one test (the process's metrics go back to a single hub's after)."""
    label_tenants(True)
    yield
    label_tenants(False)


@pytest.fixture
def log_lines():
    from hub.logs import configure_logging
    saved = structlog.get_config()
    buffer = io.StringIO()
    configure_logging(fmt="json", level="info", stream=buffer)
    yield buffer
    structlog.configure(**saved)


# --- what a tenant owns: files, secrets --------------------------------------------------------------

def test_two_tenants_on_one_database_file_are_refused_naming_both(deployment):
    deployment.birch.write_config(database="../acme/hub.db")
    with pytest.raises(ConfigError, match=r"tenants 'acme' and 'birch' share the database file") as exc:
        load_tenants(deployment.file)
    assert exc.value.key == "database" and "a database file of its own" in str(exc.value)


def test_two_tenants_on_one_vendor_account_are_refused(deployment):
    deployment.birch.write_secrets(STRIPE_KEY=deployment.acme.stripe.api_key)
    with pytest.raises(ConfigError, match=r"tenants 'acme' \(connectors.stripe.api_key_env\) and 'birch' "
                                          r"\(connectors.stripe.api_key_env\) share a secret"):
        load_tenants(deployment.file)


def test_a_tenant_token_equal_to_the_deployment_token_is_refused(deployment, monkeypatch):
    monkeypatch.setenv("T_DEPLOYMENT_TOKEN", deployment.acme.token)
    deployment.write('\n[admin]\ntoken_env = "T_DEPLOYMENT_TOKEN"\n')
    with pytest.raises(ConfigError, match="tenant 'acme''s admin.token is the deployment's admin token"):
        load_tenants(deployment.file)


def test_a_tenants_config_cannot_name_another_tenants_secret_variable(deployment, monkeypatch):
    # birch's secrets file holds BIRCH_NINJA; the process environment has it too: acme still cannot read it.
    deployment.birch.write_secrets(BIRCH_NINJA=deployment.birch.ninja.client_secret)
    monkeypatch.setenv("BIRCH_NINJA", deployment.birch.ninja.client_secret)
    deployment.acme.write_config(secret_var="BIRCH_NINJA")
    tenant = load_deployment(deployment.file, check=False).tenant("acme")
    config = tenant.load_config()
    with pytest.raises(ConfigError, match="environment variable BIRCH_NINJA is not set or empty") as exc:
        config.secret("ninjaone", "client_secret")
    assert exc.value.key == "connectors.ninjaone.client_secret_env"
    result = deployment.cli("--tenant", "acme", "sync")
    assert result.exit_code == 2 and "BIRCH_NINJA is not set" in result.output
    assert deployment.birch.ninja_http.requests == 0 and deployment.acme.stripe_http.requests == 0


def test_tenants_toml_is_checked_key_by_key(deployment):
    deployment.write('\n[admin]\ntoken = "inline"\n')
    with pytest.raises(ConfigError, match="unknown key 'token'") as exc:
        load_tenants(deployment.file)
    assert exc.value.key == "admin.token"
    deployment.write('\n[cluster]\nx = 1\n')
    with pytest.raises(ConfigError, match="unknown key 'cluster'"):
        load_tenants(deployment.file)


def test_the_tenant_a_command_works_on(deployment):
    with pytest.raises(ConfigError, match="2 tenants: say which") as exc:
        select(str(deployment.file), None, environ={})
    assert "acme, birch" in str(exc.value)
    assert select(str(deployment.file), "birch", environ={}).config_path == deployment.birch.config
    assert select(None, None, environ={"MSP_HUB_TENANTS": str(deployment.file), "MSP_HUB_TENANT": "acme"}).name == "acme"
    with pytest.raises(ConfigError, match="no tenant 'cedar'") as exc:
        select(str(deployment.file), "cedar", environ={})
    assert "use one of acme, birch" in str(exc.value)
    assert select(None, None, environ={}) is None    # a single hub: no tenants file, nothing chosen
    with pytest.raises(ConfigError, match="no tenants file is given"):
        select(None, "acme", environ={})


# --- runs: data, keys, locks ------------------------------------------------------------------------

def test_a_sync_of_one_tenant_never_touches_the_others_vendors_or_rows(deployment):
    acme, birch = deployment.acme, deployment.birch
    result = deployment.cli("--tenant", "acme", "sync")
    assert result.exit_code == 0, result.output
    assert acme.ninja_http.requests > 0 and acme.invoice_keys()
    assert birch.ninja_http.requests == 0 and birch.stripe_http.requests == 0
    assert not birch.db.exists()
    # The keys sent to the vendor are the single hub's, byte for byte: no tenant in them.
    assert all(re.fullmatch(r"invoice:[a-z]+:\d{4}-\d{2}", k) for k in acme.invoice_keys())
    assert acme.invoice_keys() == sorted(r["key"] for r in acme.rows("actions") if r["kind"] == "invoice")

    result = deployment.cli("--tenant", "birch", "sync")
    assert result.exit_code == 0, result.output
    assert birch.invoice_keys()
    assert {r["id"] for r in acme.rows("runs")}.isdisjoint({r["id"] for r in birch.rows("runs")})
    # Each store holds its own tenant's devices only: the simulators differ in their device ids.
    acme_devices = {r["source_id"] for r in acme.rows("devices")}
    birch_devices = {r["source_id"] for r in birch.rows("devices")}
    assert acme_devices == {str(d) for d in acme.ninja.device_ids}
    assert birch_devices == {str(d) for d in birch.ninja.device_ids}
    assert len(acme_devices) == 40 and len(birch_devices) == 60
    acme_stripe = acme.stripe_http.requests
    assert deployment.cli("--tenant", "birch", "sync").exit_code == 0
    assert acme.stripe_http.requests == acme_stripe    # birch's second sync: still nothing at acme's


def test_each_tenant_has_its_own_run_lock_and_its_holder_names_the_tenant(deployment):
    from hub.engine import Hub, lock_holder_of, sync_once
    from hub.engine import LockedError
    acme = load_deployment(deployment.file).tenant("acme").load_config()
    birch = load_deployment(deployment.file).tenant("birch").load_config()
    holding = Hub(acme)
    try:
        holder = lock_holder_of(holding, "daemon:invoices", "run-1")
        assert holder.startswith("acme/daemon:invoices:run-1:")
        assert holding.store.acquire_lock("sync", holder) is None
        with pytest.raises(LockedError, match="acme/daemon:invoices"):
            sync_once(Hub(acme))
        other = Hub(birch)
        try:
            report = sync_once(other)     # acme's run holds acme's lock only
        finally:
            other.close()
        assert report.pushed and deployment.birch.invoice_keys()
    finally:
        holding.close()
    assert deployment.acme.stripe_http.requests == 0


def test_a_single_hubs_lock_holder_is_unchanged(env):
    from hub.engine import lock_holder_of
    hub = env.hub()
    assert re.fullmatch(rf"cli:run-9:{os.getpid()}:\d+", lock_holder_of(hub, "cli", "run-9"))


# --- metrics and logs ---------------------------------------------------------------------------------

def test_metrics_carry_the_tenant_of_the_run(deployment, labelled):
    assert deployment.cli("--tenant", "acme", "sync").exit_code == 0
    assert deployment.cli("--tenant", "birch", "sync").exit_code == 0

    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    assert value("msp_hub_records_pulled_total", tenant="acme", connector="ninjaone", stream="devices") == 40
    assert value("msp_hub_records_pulled_total", tenant="birch", connector="ninjaone", stream="devices") == 60
    runs = [(s.labels["tenant"], s.labels["mode"], s.value) for m in REGISTRY.collect() for s in m.samples
            if s.name == "msp_hub_runs_total" and s.value]
    assert sorted(runs) == [("acme", "sync", 1.0), ("birch", "sync", 1.0)]
    assert value("msp_hub_vendor_requests_total", tenant="birch", vendor="stripe", status="2xx") > 0
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name.startswith("msp_hub_"):
                assert sample.labels.get("tenant") in ("acme", "birch"), sample


def test_a_single_hubs_metrics_have_no_tenant_label(env):
    from hub.engine import sync_once
    sync_once(env.hub())
    samples = [s for m in REGISTRY.collect() for s in m.samples if s.name.startswith("msp_hub_")]
    assert samples and not any("tenant" in s.labels for s in samples)


def test_every_log_line_of_a_tenants_run_names_the_tenant(deployment, log_lines, labelled):
    from hub.engine import Hub, sync_once
    hub = Hub(load_deployment(deployment.file).tenant("birch").load_config())
    try:
        sync_once(hub)
    finally:
        hub.close()
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    run = [line for line in lines if line.get("event", "").startswith(("sync.", "pull.", "push."))]
    assert run and all(line.get("tenant") == "birch" for line in run), run[:3]
    structlog.contextvars.clear_contextvars()


# --- the admin API ------------------------------------------------------------------------------------

@pytest.fixture
def api(deployment, monkeypatch, labelled):
    from hub.api import make_app
    from hub.service import Service, TenantServices
    from hub.config import Secret
    assert deployment.cli("--tenant", "acme", "sync").exit_code == 0
    assert deployment.cli("--tenant", "birch", "sync").exit_code == 0
    tenants = load_deployment(deployment.file).tenants
    services = {name: Service(tenant=t) for name, t in tenants.items()}
    app = make_app(TenantServices.of(services, Secret(DEPLOYMENT_TOKEN, "test")))
    return app.test_client()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_a_tenants_token_opens_its_own_paths_only(api, deployment):
    acme, birch = bearer(deployment.acme.token), bearer(deployment.birch.token)
    mine = api.get("/tenants/acme/actions?status=sent", headers=acme)
    assert mine.status_code == 200
    keys = {a["key"] for a in mine.get_json()["actions"]}
    assert keys == set(deployment.acme.invoice_keys())
    for method, path in (("GET", "/tenants/birch/actions"), ("GET", "/tenants/birch/runs"),
                         ("GET", "/tenants/birch/metrics"), ("GET", "/tenants/birch/plan"),
                         ("POST", "/tenants/birch/resync"), ("POST", f"/tenants/birch/actions/{sorted(keys)[0]}/cancel")):
        answer = api.open(path, method=method, headers=acme, json={"all": True})
        assert answer.status_code == 404 and answer.get_json() == {"error": "no tenant 'birch'"}, path
    # An unknown tenant answers the same: a token learns no other tenant's name.
    assert api.get("/tenants/cedar/actions", headers=acme).get_json() == {"error": "no tenant 'cedar'"}
    assert api.get("/tenants", headers=acme).get_json() == {"tenants": ["acme"]}
    assert api.get("/tenants/birch/runs", headers=birch).status_code == 200
    assert api.get("/tenants/acme/runs", headers=bearer("not-a-token-at-all-000")).status_code == 401
    assert deployment.birch.rows("actions") and all(r["status"] == "sent" for r in deployment.birch.rows("actions")
                                                    if r["kind"] == "invoice")   # nothing was cancelled


def test_the_deployment_token_opens_every_tenant(api, deployment):
    whole = bearer(DEPLOYMENT_TOKEN)
    assert api.get("/tenants", headers=whole).get_json() == {"tenants": ["acme", "birch"]}
    for side in (deployment.acme, deployment.birch):
        sent = api.get(f"/tenants/{side.name}/actions?status=sent", headers=whole).get_json()["actions"]
        assert {a["key"] for a in sent} == set(side.invoice_keys())
    # Without a default tenant, the paths without /tenants/<name> say how to address one.
    answer = api.get("/actions", headers=whole)
    assert answer.status_code == 404 and "/tenants/<name>/" in answer.get_json()["error"]
    assert api.get("/openapi.json", headers=whole).get_json()["paths"]["/tenants/{tenant}/actions"]
    # The deployment's health: every tenant's, each reason named after its tenant.
    health = api.get("/health", headers=whole)
    assert health.status_code == 503 and sorted(health.get_json()["tenants"]) == ["acme", "birch"]
    assert "acme: the scheduler is not running" in health.get_json()["reasons"]
    assert "tenants" not in api.get("/tenants/acme/health", headers=whole).get_json()


def stored_runs(text: str) -> dict[str, float]:
    """The runs each tenant's store holds, from an exposition's msp_hub_stored_runs samples."""
    out: dict[str, float] = {}
    for labels, value in re.findall(r"^msp_hub_stored_runs\{([^}]*)\} (\S+)$", text, re.M):
        tenant = re.search(r'tenant="([^"]*)"', labels).group(1)
        out[tenant] = out.get(tenant, 0.0) + float(value)
    return out


def test_a_tenants_metrics_hold_its_samples_only_and_the_deployments_all(api, deployment):
    text = api.get("/tenants/acme/metrics", headers=bearer(deployment.acme.token)).get_data(as_text=True)
    assert 'tenant="acme"' in text and 'tenant="birch"' not in text
    assert stored_runs(text) == {"acme": 1.0}
    assert re.search(r'^msp_hub_records_pulled_total\{connector="ninjaone",stream="devices",tenant="acme"\} 40\.0$',
                     text, re.M) or re.search(r'^msp_hub_records_pulled_total\{tenant="acme",connector="ninjaone",'
                                              r'stream="devices"\} 40\.0$', text, re.M), text
    whole = api.get("/metrics", headers=bearer(DEPLOYMENT_TOKEN)).get_data(as_text=True)
    assert stored_runs(whole) == {"acme": 1.0, "birch": 1.0}
    assert whole.count("# TYPE msp_hub_stored_runs gauge") == 1


def test_a_resync_through_a_tenants_path_runs_on_that_tenants_hub(api, deployment):
    birch_before = deployment.birch.ninja_http.requests
    answer = api.post("/tenants/acme/resync", headers=bearer(deployment.acme.token), json={"connector": "ninjaone"})
    assert answer.status_code == 202 and answer.headers["Location"].startswith("/tenants/acme/runs/")
    run_id = answer.get_json()["run_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = api.get(f"/tenants/acme/runs/{run_id}", headers=bearer(deployment.acme.token)).get_json()
        if row.get("status") not in (None, "running"):
            break
        time.sleep(0.1)
    assert row["status"] in ("ok", "warnings")   # warnings: a client of the mappings is not linked
    assert api.get(f"/tenants/birch/runs/{run_id}", headers=bearer(deployment.birch.token)).status_code == 404
    assert deployment.birch.ninja_http.requests == birch_before


# --- the CLI ------------------------------------------------------------------------------------------

def test_msp_hub_tenants_lists_them(deployment):
    result = deployment.cli("tenants", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["name"], Path(r["database"]).name, r["schema"]) for r in rows] == [
        ("acme", "hub.db", "tenant_acme"), ("birch", "hub.db", "tenant_birch")]
    assert deployment.cli("tenants").output.splitlines()[0].split() == ["TENANT", "CONFIG", "DATABASE", "SECRETS"]
    refused = CliRunner().invoke(main, ["tenants"], env={"MSP_HUB_TENANTS": ""})
    assert refused.exit_code == 2 and "give --tenants tenants.toml" in refused.output


def test_the_cli_needs_to_know_which_tenant(deployment):
    result = deployment.cli("actions")
    assert result.exit_code == 2 and "2 tenants: say which" in result.output and "--tenant NAME" in result.output
    both = deployment.cli("--tenant", "acme", "actions", "--config", str(deployment.birch.config))
    assert both.exit_code == 2 and "give --config or --tenant acme, not both" in both.output
    by_env = CliRunner().invoke(main, ["actions", "--json"], env={"MSP_HUB_TENANTS": str(deployment.file),
                                                                 "MSP_HUB_TENANT": "birch"})
    assert by_env.exit_code == 0, by_env.output
    assert deployment.birch.db.exists() and not deployment.acme.db.exists()


def test_the_example_deployment_is_valid():
    folder = ROOT / "examples" / "tenants"
    deployment = load_deployment(folder / "tenants.toml")
    assert sorted(deployment.tenants) == ["acme", "birch"]
    configs = check_apart(deployment)
    assert len({c.database for c in configs.values()}) == 2


# --- the daemon ---------------------------------------------------------------------------------------

def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_daemon_runs_every_tenants_jobs_on_its_own_hub(deployment):
    port = free_port()
    job = '\n[schedule]\n[[schedule.jobs]]\nname = "devices"\nevery = "2s"\nconnectors = ["ninjaone"]\n'
    deployment.acme.write_config(jobs=job)
    deployment.birch.write_config(jobs=job.replace('"2s"', '"3s"'))
    deployment.write(f'\n[admin]\nport = {port}\ntoken_env = "T_DEPLOYMENT_TOKEN"\n\n[logging]\nformat = "json"\n')
    log = open(deployment.root / "daemon.log", "wb")
    env = {**os.environ, "T_DEPLOYMENT_TOKEN": DEPLOYMENT_TOKEN, "PYTHONUNBUFFERED": "1"}
    env.pop("MSP_HUB_TENANT", None)
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "--tenants", str(deployment.file), "daemon"], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    api = f"http://127.0.0.1:{port}"
    try:
        def runs(name, token):
            try:
                answer = httpx.get(f"{api}/tenants/{name}/runs", headers=bearer(token), timeout=2)
            except httpx.TransportError:
                return []
            return answer.json()["runs"] if answer.status_code == 200 else []

        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and proc.poll() is None:
            if all(any(r["status"] in ("ok", "warnings") for r in runs(s.name, s.token)) for s in (deployment.acme, deployment.birch)):
                break
            time.sleep(0.2)
        text = (deployment.root / "daemon.log").read_text(errors="replace")
        assert proc.poll() is None, text
        for side in (deployment.acme, deployment.birch):
            done = [r for r in runs(side.name, side.token) if r["status"] in ("ok", "warnings")]
            assert done and all(r["job"] == "devices" for r in done), text
            assert {r["id"] for r in side.rows("runs")} >= {r["id"] for r in done}
            assert {r["source_id"] for r in side.rows("devices")} == {str(d) for d in side.ninja.device_ids}
        status = httpx.get(f"{api}/tenants/acme/health", headers=bearer(DEPLOYMENT_TOKEN), timeout=5).json()
        assert [j["id"] for j in status["scheduler"]["jobs"]] == ["devices"]
        whole = httpx.get(f"{api}/health", headers=bearer(DEPLOYMENT_TOKEN), timeout=5).json()
        assert {name: body["scheduler"]["running"] for name, body in whole["tenants"].items()} == \
            {"acme": True, "birch": True}
        assert httpx.get(f"{api}/tenants/birch/runs", headers=bearer(deployment.acme.token)).status_code == 404
        # msp-hub resync --tenant acme hands the run to the daemon, on acme's paths with acme's token.
        for _ in range(50):   # refused (75) while a scheduled run holds acme's lock: try again
            result = deployment.cli("--tenant", "acme", "resync", "--connector", "ninjaone", "--no-wait")
            if result.exit_code != 75:
                break
            time.sleep(0.1)
        assert result.exit_code == 0, result.output
        run_id = result.stdout.strip()
        assert httpx.get(f"{api}/tenants/acme/runs/{run_id}", headers=bearer(deployment.acme.token)).status_code == 200
        assert httpx.get(f"{api}/tenants/birch/runs/{run_id}", headers=bearer(DEPLOYMENT_TOKEN)).status_code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0
    events = [json.loads(line) for line in (deployment.root / "daemon.log").read_text().splitlines()
              if line.startswith("{")]
    started = next(e for e in events if e["event"] == "daemon.started")
    assert started["tenants"] == ["acme", "birch"] and started["jobs"] == ["acme/devices", "birch/devices"]
    finished = [e for e in events if e["event"] == "daemon.job_finished"]
    assert {e["tenant"] for e in finished} == {"acme", "birch"}
    assert all(e.get("tenant") in ("acme", "birch") for e in events if e["event"].startswith(("sync.", "daemon.job")))


def test_the_apis_request_log_names_the_tenant_and_the_refusals(api, deployment):
    from hub.logs import configure_logging
    saved = structlog.get_config()
    buffer = io.StringIO()
    configure_logging(fmt="json", level="debug", stream=buffer)
    try:
        assert api.get("/tenants/birch/runs", headers=bearer(deployment.birch.token)).status_code == 200
        assert api.get("/tenants/birch/runs", headers=bearer(deployment.acme.token)).status_code == 404
    finally:
        structlog.configure(**saved)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    served = [line for line in lines if line["event"] == "api.request" and line["status"] == 200]
    assert served and served[0]["tenant"] == "birch" and served[0]["path"] == "/tenants/birch/runs"
    refused = [line for line in lines if line["event"] == "api.tenant_refused"]
    assert [(r["tenant"], r["path"]) for r in refused] == [("birch", "/tenants/birch/runs")]
    assert deployment.acme.token not in buffer.getvalue() and deployment.birch.token not in buffer.getvalue()


def test_a_tenants_service_reads_its_secrets_file_again_when_it_changes(deployment):
    from hub.service import Service
    service = Service(tenant=load_deployment(deployment.file).tenant("acme"))
    hub = service.open_hub()
    assert hub.config.secret("stripe", "api_key").reveal() == deployment.acme.stripe.api_key
    hub.close()
    deployment.acme.write_secrets(STRIPE_KEY="sk_test_acme_rotated_key_longer")
    hub = service.open_hub()
    try:
        assert hub.config.secret("stripe", "api_key").reveal() == "sk_test_acme_rotated_key_longer"
        assert hub.config.tenant == "acme" and service.token.reveal() == deployment.acme.token
    finally:
        hub.close()
