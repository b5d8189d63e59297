"""The admin HTTP API: the token on every route, each endpoint, errors as JSON, nothing leaks."""

import io
import json
import re
import threading

import httpx
import pytest
import structlog

from hub.api import OPENAPI, make_app, serve_api
from hub.config import Secret
from hub.engine import LockedError
from hub.errors import HubError
from hub.logs import configure_logging
from hub.metrics import RECORDS_PULLED
from hub.records import Action
from tests.conftest import Env

TOKEN = "tok-3f9c2a71d0b84e55a6c1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KEY = "agreement_quantity:4711:88:2026-10"


class FakeService:
    """What the daemon hands the API: a token, hubs on one database file, runs it only records."""

    def __init__(self, env: Env | None = None):
        self.token = Secret(TOKEN, "test")
        self.env = env
        self.scheduler_running = True
        self.lock: dict | None = None
        self.triggered: list[dict] = []
        self.opened = self.closed = 0
        self.config: dict = {}        # attributes set on each hub's config (schedule, health)

    def open_hub(self):
        hub = self.env.hub()
        for name, value in self.config.items():
            setattr(hub.config, name, value)
        self.opened += 1
        real_close = hub.close

        def close():
            self.closed += 1
            real_close()
        hub.close = close
        return hub

    def trigger(self, scope: dict, trigger: str = "api") -> str:
        unknown = sorted(set(scope) - {"connectors", "streams", "clients", "period", "full", "dry_run"})
        if unknown:
            raise HubError(f"unknown scope key {unknown[0]!r}")
        if self.lock:
            raise LockedError(self.lock)
        self.triggered.append(scope)
        self.triggers = getattr(self, "triggers", []) + [trigger]
        return f"run{len(self.triggered)}"

    def status(self) -> dict:
        return {"scheduler": {"running": self.scheduler_running, "jobs": [{"id": "sync", "next_run": None}]},
                "current_run": None}


@pytest.fixture
def service(tmp_path):
    service = FakeService(Env(tmp_path, devices=4))
    hub = service.env.hub()
    store = hub.store
    run_id, _ = store.start_run("sync")
    store.finish_run(run_id, "partial", {"records": {"ninjaone.clients": 3, "ninjaone.devices": 4}, "pushed": 1,
                                         "failed": 1, "held": 0}, ["push invoice:acme:2026-10: HTTP 500"])
    for stream, records in (("clients", 3), ("devices", 4)):
        store.record_pass("ninjaone", stream, run_id, "2026-11-22T11:00:00+00:00", "complete", records)
    store.record_action(Action(KEY, "agreement_quantity", "connectwise", "acme", {"quantity": 0}, "2026-10"), run_id)
    store.mark_failed(KEY, "held: the RMM counts 0 devices", status="held")
    store.record_action(Action("invoice:acme:2026-10", "invoice", "stripe", "acme", {}, "2026-10"), run_id)
    store.mark_failed("invoice:acme:2026-10", "stripe: POST /v1/invoices failed with HTTP 500")
    store.record_action(Action("invoice:birch:2026-10", "invoice", "stripe", "birch", {}, "2026-10"), run_id)
    store.mark_sent("invoice:birch:2026-10", "in_1", "invoice of 12.00 EUR")
    service.run_id = run_id
    hub.close()
    return service


@pytest.fixture
def client(service):
    return make_app(service).test_client()


def pull_everything(service, status="complete", error=None):
    """Record a pass of every stream (what a run's pull leaves in the store); return their ids."""
    hub = service.env.hub()
    ids = {}
    for name, connector in hub.connectors.items():
        for stream in connector.streams():
            hub.store.write_page(stream.table, [], name, stream.name, {"since": "2026-11-22T00:00:00+00:00"})
            ids[f"{name}.{stream.name}"] = hub.store.record_pass(name, stream.name, "run-pull", "2026-11-22T11:00:00",
                                                                 status, 0, error=error)
    hub.close()
    return ids


def age_pass(service, pass_id, hours):
    """Make a recorded pass end ``hours`` ago."""
    from datetime import datetime, timedelta, timezone
    hub = service.env.hub()
    ended = (datetime.now(timezone.utc) - timedelta(hours=hours)).isoformat()
    hub.store.db["stream_passes"].update(pass_id, {"finished_at": ended})
    hub.store.db.conn.commit()
    hub.close()


# --- the token on every route -------------------------------------------------------------------

def _routes():
    app = make_app(FakeService())
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: KEY if m.group(1) == "key" else "x", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield pytest.param(method, path, id=f"{method} {rule.rule}")


ROUTES = list(_routes())
BAD_AUTH = {"none": {}, "wrong": {"Authorization": "Bearer tok-3f9c2a71d0b84e55a6c2"},
            "prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"}, "basic": {"Authorization": f"Basic {TOKEN}"},
            "bare": {"Authorization": TOKEN}, "empty": {"Authorization": "Bearer "}}


@pytest.fixture
def refusing():
    """A service with no database: a refused request must not reach one."""
    service = FakeService()
    return service, make_app(service).test_client()


@pytest.mark.parametrize("auth", BAD_AUTH.values(), ids=BAD_AUTH.keys())
@pytest.mark.parametrize("method, path", ROUTES)
def test_every_route_refuses_a_missing_or_wrong_token(refusing, method, path, auth):
    service, client = refusing
    response = client.open(path, method=method, headers=auth, json={})
    assert response.status_code == 401
    assert response.get_json() == {"error": "unauthorized"}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert service.opened == 0 and service.triggered == []


@pytest.mark.parametrize("method, path", ROUTES)
def test_every_route_answers_with_the_token(client, service, method, path):
    pull_everything(service)
    response = client.open(path, method=method, headers=AUTH, json={})
    if method == "POST" and path.startswith("/invoices/"):   # a correction without a reason is refused
        assert response.status_code == 400 and "reason is required" in response.get_json()["error"]
    elif path == "/resync":                                    # a resync without a scope is refused
        assert response.status_code == 400 and '{"all": true}' in response.get_json()["error"]
    elif path.startswith(("/reports/", "/clients/links/")):   # sample arguments ("x", no months, no answers)
        assert response.status_code in (400, 404) and response.get_json()["error"]
    elif method == "POST" and path.endswith("/retry"):    # the sample action is held: it is approved, not retried
        assert response.status_code == 409 and "/approve" in response.get_json()["error"]
    else:
        assert response.status_code in (200, 202, 404)   # 404: the sample run id "x" does not exist
        assert response.status_code != 404 or path == "/runs/x"
    assert service.opened == service.closed   # every hub opened is closed


@pytest.mark.parametrize("method, path", [("GET", "/nowhere"), ("OPTIONS", "/runs"), ("DELETE", "/runs"),
                                          ("GET", "/static/app.js"), ("GET", "/runs/")])
def test_unknown_paths_and_methods_refuse_without_the_token_and_list_nothing(refusing, method, path):
    service, client = refusing
    response = client.open(path, method=method)
    assert response.status_code == 401 and response.get_json() == {"error": "unauthorized"}
    assert "Allow" not in response.headers


def test_an_empty_configured_token_lets_nobody_in(service):
    service.token = Secret("", "test")
    response = make_app(service).test_client().get("/health", headers={"Authorization": "Bearer "})
    assert response.status_code == 401


# --- endpoints -----------------------------------------------------------------------------------

def test_health_is_ready_when_the_scheduler_runs_and_every_stream_has_pulled(client, service):
    pull_everything(service)
    response = client.get("/health", headers=AUTH)
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["ready"] is True and body["reasons"] == []
    assert body["scheduler"]["running"] is True and body["current_run"] is None
    ninja = body["connectors"]["ninjaone"]
    assert set(ninja["streams"]) == {"clients", "devices", "alerts", "alert_events"}
    assert ninja["last_success"] is not None
    assert body["connectors"]["stripe"] == {"last_success": None, "streams": {}}   # pulls nothing


def test_health_is_503_with_reasons_when_a_stream_never_pulled_or_the_scheduler_stopped(client, service):
    service.scheduler_running = False
    response = client.get("/health", headers=AUTH)
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "ok" and body["ready"] is False
    assert "the scheduler is not running" in body["reasons"]
    # The seeded run pulled clients and devices without error; alerts never pulled.
    assert "ninjaone.alerts has never pulled successfully" in body["reasons"]
    assert body["connectors"]["ninjaone"]["streams"]["clients"] is not None
    assert body["connectors"]["ninjaone"]["last_success"] is None


def test_health_is_503_when_the_hub_cannot_open(client, service):
    def fail():
        raise HubError("hub.db: database is locked (fix: stop the other process)")
    service.open_hub = fail
    response = client.get("/health", headers=AUTH)
    assert response.status_code == 503
    assert response.get_json()["reasons"] == [
        "the hub cannot open: hub.db: database is locked (fix: stop the other process)",
        "the scheduler is not running"]


def test_runs_lists_the_latest_with_counts_and_errors_and_one_run_by_id(client, service):
    runs = client.get("/runs?limit=5", headers=AUTH).get_json()["runs"]
    assert [r["id"] for r in runs] == [service.run_id]
    assert runs[0]["counts"]["records"]["ninjaone.devices"] == 4 and runs[0]["status"] == "partial"
    one = client.get(f"/runs/{service.run_id}", headers=AUTH)
    assert one.status_code == 200 and one.get_json()["errors"] == ["push invoice:acme:2026-10: HTTP 500"]
    assert client.get("/runs/nope", headers=AUTH).get_json() == {"error": "no run 'nope'"}


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "501"])
def test_runs_refuses_a_bad_limit(client, limit):
    response = client.get(f"/runs?limit={limit}", headers=AUTH)
    assert response.status_code == 400 and "limit" in response.get_json()["error"]


def test_plan_is_the_report_of_a_plan_run(client):
    response = client.get("/plan?period=2026-10", headers=AUTH)
    assert response.status_code == 200
    body = response.get_json()
    assert body["mode"] == "plan" and isinstance(body["plan"], list) and body["records"] == {}
    assert client.get("/plan?period=October", headers=AUTH).status_code == 400


def test_resync_starts_a_run_with_the_scope_and_answers_202(client, service):
    scope = {"connectors": ["ninjaone"], "streams": ["devices"], "full": True}
    response = client.post("/resync", headers=AUTH, json=scope)
    assert response.status_code == 202 and response.get_json() == {"run_id": "run1"}
    assert response.headers["Location"] == "/runs/run1"
    assert client.post("/resync", headers=AUTH).status_code == 400   # no body: no scope, refused
    assert client.post("/resync", headers=AUTH, json={"all": True}).status_code == 202
    assert len(service.triggered) == 2 and service.triggered[0] == scope


@pytest.mark.parametrize("body, message", [
    (json.dumps({"bogus": 1}), "unknown scope key 'bogus'; use one of all, connector, stream, client, connectors, "
                               "streams, clients, period, full, dry_run"),
])
def test_resync_answers_400_with_the_message_for_a_bad_scope(client, service, body, message):
    response = client.post("/resync", headers={**AUTH, "Content-Type": "application/json"}, data=body)
    assert response.status_code == 400 and response.get_json() == {"error": message}
    assert service.triggered == []


def test_resync_answers_409_with_the_holder_when_a_run_holds_the_lock(client, service):
    service.lock = {"holder": "daemon:abc123:41:7", "pid": 41, "host": "hub-1", "since": "2026-11-22T12:00:00+00:00"}
    response = client.post("/resync", headers=AUTH, json={"connectors": ["ninjaone"]})
    assert response.status_code == 409
    body = response.get_json()
    assert body["holder"] == {"holder": "daemon:abc123:41:7", "pid": 41, "host": "hub-1",
                              "since": "2026-11-22T12:00:00+00:00"}
    assert "a run is in progress" in body["error"]


def test_actions_lists_the_open_ones_with_their_last_error_and_filters_by_status(client):
    listed = client.get("/actions", headers=AUTH).get_json()["actions"]
    assert {a["key"]: a["status"] for a in listed} == {KEY: "held", "invoice:acme:2026-10": "failed"}
    failed = client.get("/actions?status=failed", headers=AUTH).get_json()["actions"]
    assert [(a["key"], a["last_error"]) for a in failed] == [
        ("invoice:acme:2026-10", "stripe: POST /v1/invoices failed with HTTP 500")]
    assert "payload" not in failed[0]
    assert client.get("/actions?status=pending", headers=AUTH).get_json() == {"actions": []}
    assert client.get("/actions?status=weird", headers=AUTH).status_code == 400


def test_retry_and_cancel_change_an_action_whose_key_holds_colons(client):
    cancelled = client.post(f"/actions/{KEY}/cancel", headers=AUTH)
    assert cancelled.status_code == 200 and cancelled.get_json()["action"]["status"] == "cancelled"
    retried = client.post(f"/actions/{KEY}/retry", headers=AUTH)
    assert retried.status_code == 200 and retried.get_json()["action"]["status"] == "pending"
    assert [a["key"] for a in client.get("/actions?status=pending", headers=AUTH).get_json()["actions"]] == [KEY]


def test_approve_lets_a_held_action_through_recorded_as_the_admin_api_with_why(client, service):
    approved = client.post(f"/actions/{KEY}/approve", headers=AUTH, json={"why": "the client left"})
    assert approved.status_code == 200, approved.get_json()
    action = approved.get_json()["action"]
    assert action["status"] == "pending"
    [approval] = action["approvals"]
    assert approval["who"] == "admin API" and approval["why"] == "the client left" and approval["at"]
    listed = {a["key"]: a for a in client.get("/actions", headers=AUTH).get_json()["actions"]}
    assert listed[KEY]["approvals"] == [approval] and listed["invoice:acme:2026-10"]["approvals"] == []
    hub = service.env.hub()
    assert hub.store.approvals(KEY) == [dict(approval, id=1, target=KEY)]
    assert hub.store.get_action(KEY)["approved"] == 1
    hub.close()


def test_approve_without_a_body_records_an_empty_why(client):
    approved = client.post(f"/actions/{KEY}/approve", headers=AUTH)
    assert approved.status_code == 200 and approved.get_json()["action"]["approvals"][0]["why"] == ""


@pytest.mark.parametrize("path, body, status, message", [
    ("/actions/invoice:nobody:2026-10/approve", {}, 404, "no action 'invoice:nobody:2026-10' in the outbox"),
    ("/actions/invoice:birch:2026-10/approve", {}, 409, r"action 'invoice:birch:2026-10' was already sent as \S+ at "
                                                        r"\S+; there is nothing to approve"),
    (f"/actions/{KEY}/approve", {"why": 3}, 400, 'the body must be a JSON object {"why": "..."} (or empty)'),
    (f"/actions/{KEY}/approve", {"who": "me"}, 400, 'the body must be a JSON object {"why": "..."} (or empty)'),
    (f"/actions/{KEY}/approve", ["why"], 400, 'the body must be a JSON object {"why": "..."} (or empty)'),
])
def test_approve_refuses_what_it_cannot_approve_and_records_nothing(client, service, path, body, status, message):
    response = client.post(path, headers=AUTH, json=body)
    assert response.status_code == status and re.fullmatch(message if status == 409 else re.escape(message),
                                                           response.get_json()["error"])
    hub = service.env.hub()
    assert hub.store.approvals() == [] and hub.store.get_action(KEY)["status"] == "held"
    hub.close()


@pytest.mark.parametrize("verb", ["retry", "cancel"])
def test_retry_and_cancel_answer_404_for_an_unknown_key_and_409_for_a_sent_action(client, verb):
    missing = client.post(f"/actions/invoice:nobody:2026-10/{verb}", headers=AUTH)
    assert missing.status_code == 404
    assert missing.get_json() == {"error": "no action 'invoice:nobody:2026-10' in the outbox"}
    sent = client.post(f"/actions/invoice:birch:2026-10/{verb}", headers=AUTH)
    assert sent.status_code == 409 and sent.get_json()["action"]["status"] == "sent"


def test_metrics_are_the_prometheus_text_of_the_hub_registry(client):
    RECORDS_PULLED.labels(connector="ninjaone", stream="devices").inc(4)
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    for name in ("msp_hub_records_pulled", "msp_hub_actions_pushed", "msp_hub_actions_failed",
                 "msp_hub_vendor_requests", "msp_hub_vendor_rate_limited", "msp_hub_run_seconds", "msp_hub_runs"):
        assert re.search(rf"^# TYPE {name}(_total)? (counter|histogram)$", text, re.M), name
    assert 'msp_hub_records_pulled_total{connector="ninjaone",stream="devices"}' in text


def test_openapi_describes_every_route_and_only_those(client):
    app = client.application
    routes = {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.rule), m.lower())
              for r in app.url_map.iter_rules() for m in r.methods - {"HEAD", "OPTIONS"}}
    body = client.get("/openapi.json", headers=AUTH).get_json()
    assert body == json.loads(json.dumps(OPENAPI)) and body["openapi"].startswith("3.")
    described = {(path, method) for path, ops in body["paths"].items() for method in ops}
    assert described == routes
    for path, ops in body["paths"].items():
        for method, op in ops.items():
            assert "401" in op["responses"], (method, path)
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == set(re.findall(r"{(\w+)}", path)), (method, path)


# --- errors and leaks ----------------------------------------------------------------------------

@pytest.fixture
def log_lines():
    saved = structlog.get_config()
    buffer = io.StringIO()
    configure_logging(fmt="json", level="debug", stream=buffer)   # no redaction: prove nothing is logged
    yield buffer
    structlog.configure(**saved)


def test_an_unexpected_exception_is_a_json_500_and_logged_with_its_traceback(client, service, log_lines):
    def broken():
        raise RuntimeError("status table missing")
    service.status = broken
    response = client.get("/health", headers=AUTH)
    assert response.status_code == 500 and response.get_json() == {"error": "internal error"}
    events = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    failed = [e for e in events if e["event"] == "api.request_failed"]
    assert len(failed) == 1 and "RuntimeError: status table missing" in failed[0]["exception"]
    assert TOKEN not in log_lines.getvalue()


def test_unknown_paths_with_the_token_are_json_404_and_bad_bodies_json_413(client):
    missing = client.get("/nowhere", headers=AUTH)
    assert missing.status_code == 404 and missing.get_json() == {"error": "not found"}
    wrong = client.delete("/runs", headers=AUTH)
    assert wrong.status_code == 405 and wrong.get_json() == {"error": "method not allowed"}
    big = client.post("/resync", headers=AUTH, data=b"x" * (65 * 1024), content_type="application/json")
    assert big.status_code == 413 and big.get_json() == {"error": "request entity too large"}


def test_no_response_or_log_line_holds_the_token(client, service, log_lines):
    pull_everything(service)
    seen = []
    for auth in ({}, AUTH, {"Authorization": f"Bearer {TOKEN}x"}):
        for param in ROUTES:
            method, path = param.values
            response = client.open(path, method=method, headers=auth, json={})
            seen.append(response.get_data(as_text=True) + str(response.headers))
    seen.append(client.get(f"/nowhere?token={TOKEN}", headers=AUTH).get_data(as_text=True))
    assert all(TOKEN not in text for text in seen)
    logged = log_lines.getvalue()
    assert "api.unauthorized" in logged and "api.request" in logged and TOKEN not in logged


# --- serving ---------------------------------------------------------------------------------------

def test_serve_api_serves_over_http_on_loopback_and_closes(service):
    server = serve_api(make_app(service), "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=5) as http:
            refused = http.get("/runs")
            assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
            runs = http.get("/runs", headers=AUTH)
            assert runs.status_code == 200 and runs.json()["runs"][0]["id"] == service.run_id
            assert "waitress" not in runs.headers.get("Server", "")
            server.close()   # with the keep-alive connection still open
            thread.join(timeout=3)
            assert not thread.is_alive()
    finally:
        server.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{server.port}/health", headers=AUTH, timeout=1)


def test_a_server_closed_before_it_runs_releases_its_port(service):
    server = serve_api(make_app(service), "127.0.0.1", 0)
    server.close()
    server.run()   # returns at once
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{server.port}/health", headers=AUTH, timeout=1)


def test_resync_while_the_daemon_stops_is_503():
    from hub.errors import UnavailableError

    class Stopping(FakeService):
        def trigger(self, scope):
            raise UnavailableError("the daemon is stopping; run the resync after it restarts")
    answer = make_app(Stopping()).test_client().post("/resync", json={"all": True}, headers=AUTH)
    assert answer.status_code == 503 and "stopping" in answer.get_json()["error"]


def test_a_resync_the_cli_hands_over_is_recorded_as_the_cli_s(client, service):
    assert client.post("/resync", headers={**AUTH, "X-MSP-Hub-Trigger": "cli"}, json={"all": True}).status_code == 202
    assert client.post("/resync", headers={**AUTH, "X-MSP-Hub-Trigger": "cron"}, json={"all": True}).status_code == 202
    assert client.post("/resync", headers=AUTH, json={"all": True}).status_code == 202
    assert service.triggers == ["cli", "api", "api"]          # only "cli" is taken from the header


# --- the console's other actions, through the API: reports and links ------------------------------

WORKED = {"processus": [5, 5, 5, 4, 4], "technologie": [4, 3, 3, 3, 3], "clients": [4, 4, 4, 4, 3],
          "revenus": [3, 3, 3, 2, 2]}


def test_a_maturity_assessment_is_recorded_through_the_api_as_the_cli_records_it(client, service):
    incomplete = client.post("/reports/maturity", headers=AUTH, json={"answers": {**WORKED, "revenus": [3, 3]}})
    assert incomplete.status_code == 400 and "revenus" in incomplete.get_json()["error"]
    assert "has 2 answer(s); the area has five statements" in incomplete.get_json()["error"]
    hub = service.env.hub()
    assert hub.store.maturity_history() == []          # nothing recorded
    hub.close()
    recorded = client.post("/reports/maturity", headers=AUTH, json={"answers": WORKED})
    body = recorded.get_json()
    assert recorded.status_code == 201 and body["overall_exact"] == "71/20" and body["stage"] == "proactivite"
    assert [body["areas"][a]["points"] for a in ("processus", "technologie", "clients", "revenus")] == [23, 16, 19, 13]
    hub = service.env.hub()
    assert [(h["answered_by"], h["stage"]) for h in hub.store.maturity_history()] == [("admin API", "proactivite")]
    hub.close()
    assert client.post("/reports/maturity", headers=AUTH, json={"answers": WORKED, "who": "me"}).status_code == 400


def test_a_scorecard_is_read_and_frozen_through_the_api_once_unless_refrozen(client, service):
    pdf = client.get("/reports/scorecards/acme/2026-Q3?format=pdf", headers=AUTH)
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF") and pdf.content_type == "application/pdf"
    frozen = client.post("/reports/scorecards/acme/2026-Q3/freeze", headers=AUTH)
    assert frozen.status_code == 200 and frozen.get_json()["frozen"]["by"] == "admin API"
    again = client.post("/reports/scorecards/acme/2026-Q3/freeze", headers=AUTH)
    assert again.status_code == 409 and 'send {"refreeze": true}' in again.get_json()["error"]
    assert client.post("/reports/scorecards/acme/2026-Q3/freeze", headers=AUTH, json={"refreeze": True}).status_code == 200
    card = client.get("/reports/scorecards/acme/2026-Q3", headers=AUTH).get_json()
    assert card["client_id"] == "acme" and card["quarter"] == "2026-Q3" and card["frozen"]["by"] == "admin API"
    bad = client.get("/reports/scorecards/acme/2026Q3", headers=AUTH)
    assert bad.status_code == 400 and "YYYY-Qn" in bad.get_json()["error"]
    assert client.get("/reports/scorecards/acme/2026-Q3?format=doc", headers=AUTH).status_code == 400


def test_the_kpis_and_the_links_answer_through_the_api(client):
    csv = client.get("/reports/kpis?from=2026-09&to=2026-10&format=csv", headers=AUTH)
    assert csv.status_code == 200 and csv.data.decode().splitlines()[0] == \
        "metric,period,subject_id,subject,currency,value,unit"
    assert client.get("/reports/kpis?from=2026-09", headers=AUTH).status_code == 400
    nothing = client.post("/clients/links/accept", headers=AUTH,
                          json={"system": "ninjaone", "source_id": "999", "client_id": "acme"})
    assert nothing.status_code == 409 and nothing.get_json()["error"]
    assert client.post("/clients/links/accept", headers=AUTH, json={"system": "ninjaone"}).status_code == 400
    assert client.post("/clients/links/merge", headers=AUTH, json={}).status_code == 404
