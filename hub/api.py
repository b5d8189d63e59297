"""The admin HTTP API (Flask, served by waitress): health, runs, plan, resync, outbox, metrics.

``make_app(service)`` builds the app; ``serve_api(app, host, port)`` serves it. The daemon owns
the ``service``, which offers:

    token: Secret                 the bearer token every request must carry
    open_hub() -> Hub             a hub for the calling thread; the API closes it after use
    shared_hub() -> Hub           (optional) the serving thread's hub, kept across requests and
                                  rebuilt only when the config or the mappings change; used
                                  instead of open_hub() when offered
    trigger(scope: dict) -> str   start a run in the background and return its id; raises
                                  HubError for a bad scope, LockedError when a run holds the lock
    status() -> dict              {"scheduler": {"running": bool, "jobs": [...]},
                                   "current_run": dict | None, ...}; it may take (hub, streams),
                                  which /health passes so that stream health is computed once

``POST /resync`` needs an explicit scope: ``{"connector": ...}``, ``{"stream": ...}``,
``{"client": ...}`` (or their lists) or ``{"all": true}``; its body is read as JSON whatever its
Content-Type. The run is recorded with trigger "api" ("cli" when the header X-MSP-Hub-Trigger says
so: ``msp-hub resync`` sends it).

Every endpoint, health and metrics included, answers 401 without the token. Every answer is
JSON (metrics excepted); an unexpected exception is logged and answered "internal error".

Tenants: every endpoint is served under ``/tenants/<name>`` too, for that tenant's hub, and the
paths without it serve the ``default`` tenant (or the only one). ``make_app`` takes a
``hub.service.TenantServices`` (a deployment's) as well as one service. A tenant's own token opens
its paths only: another tenant's paths answer 404, as an unknown tenant's do (a token learns no
other tenant's name); the deployment token opens every tenant's. ``GET /tenants`` lists the
tenants the token opens; ``GET /metrics`` and ``GET /health`` with the deployment token give every
tenant's (ready when every tenant is).
"""

from __future__ import annotations

import contextlib
import hmac
import inspect
import json
import re
import threading
import time
from typing import Any, Iterator

import flask
import structlog
import waitress
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from hub.engine import Hub, LockedError, sync_once
from hub.errors import HubError, UnavailableError
from hub.metrics import REGISTRY, tenants_labelled
from hub.periods import parse_period
from hub.store import retry_refusal

log = structlog.get_logger()

TRIGGER_HEADER = "X-MSP-Hub-Trigger"   # "cli": the run was asked by msp-hub resync
ACTION_STATUSES = ("pending", "sending", "failed", "held", "sent", "cancelled")
OPEN_STATUSES = ("pending", "sending", "failed", "held")   # what GET /actions lists by default
ACTION_FIELDS = ("key", "kind", "connector", "client_id", "period", "status", "attempts", "last_error",
                 "vendor_id", "summary", "run_id", "created_at", "updated_at", "sent_at")
MAX_RUNS = 500
API_APPROVER = "admin API"   # who an approval through the API is recorded as
API_REQUESTER = "api"        # who a correction through the API is recorded as (the token has no name)


# --- responses -------------------------------------------------------------------------------------

def _json(body: Any, status: int = 200, headers: dict | None = None) -> flask.Response:
    return flask.Response(json.dumps(body, default=str), status=status, headers=headers,
                          mimetype="application/json")


def _error(message: str, status: int, **extra: Any) -> flask.Response:
    return _json({"error": message, **extra}, status)


def _unauthorized() -> flask.Response:
    return _json({"error": "unauthorized"}, 401, headers={"WWW-Authenticate": "Bearer"})


def _authorized(header: str, token: str) -> bool:
    """Whether an Authorization header carries ``token``; compared in constant time."""
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


@contextlib.contextmanager
def _open(service) -> Iterator[Hub]:
    """The serving thread's hub: the service's ``shared_hub()`` (kept for the thread's next
    request, rebuilt only when the config changes) when it offers one, else ``open_hub()``."""
    shared = getattr(service, "shared_hub", None)
    hub = shared() if shared is not None else service.open_hub()
    try:
        yield hub
    finally:
        hub.close()


# --- shapes --------------------------------------------------------------------------------------

def run_json(row: dict) -> dict:
    """A row of the runs table with its counts, errors and scope decoded; ``trigger`` (cron, api,
    cli, catch-up) and ``job`` say what started it (None for a run recorded before they were)."""
    scope = row.get("scope")
    return dict(row, counts=json.loads(row.get("counts") or "{}"), errors=json.loads(row.get("errors") or "[]"),
                trigger=row.get("trigger"), job=row.get("job"), scope=json.loads(scope) if scope else None)


RESYNC_FIX = ('send a JSON object naming the scope: {"connector": "ninjaone"}, {"stream": "devices"}, '
              '{"client": "acme"} (or their lists "connectors", "streams", "clients"), or {"all": true} for everything')
_SINGULAR = {"connector": "connectors", "stream": "streams", "client": "clients"}
RESYNC_KEYS = ("all", "connector", "stream", "client", "connectors", "streams", "clients", "period", "full", "dry_run")


def resync_scope(body: Any) -> dict:
    """The scope of ``POST /resync``: a JSON object that names what to run, ``connector``,
    ``stream``, ``client`` (or their plural lists) or ``{"all": true}``, with ``period``, ``full``
    and ``dry_run`` as options. Raises ValueError with the message to answer."""
    if not isinstance(body, dict):
        raise ValueError(f"the body must be a JSON object (the run's scope); {RESYNC_FIX}")
    unknown = sorted(set(body) - set(RESYNC_KEYS))
    if unknown:
        raise ValueError(f"unknown scope key {unknown[0]!r}; use one of {', '.join(RESYNC_KEYS)}")
    scope = dict(body)
    every = scope.pop("all", None)
    if every is not None and every is not True:
        raise ValueError(f'"all" must be true, got {every!r}; {RESYNC_FIX}')
    for one, many in _SINGULAR.items():
        if one in scope:
            if many in scope:
                raise ValueError(f'give "{one}" or "{many}", not both')
            value = scope.pop(one)
            scope[many] = value if isinstance(value, list) else [value]
    named = [k for k in _SINGULAR.values() if scope.get(k)]
    if every and named:
        raise ValueError(f'"all" runs everything: remove {", ".join(named)}, or remove "all"')
    if not every and not named:
        raise ValueError(f"the scope is missing: {RESYNC_FIX}")
    return scope


def action_json(row: dict) -> dict:
    """An outbox row without its payload and push progress."""
    return {name: row.get(name) for name in ACTION_FIELDS}


def pull_health(hub: Hub, streams: list[dict] | None = None) -> dict[str, dict]:
    """Per connector: each stream's last complete pass (its end time, None if it never completed
    one) and ``last_success``, its stalest stream's (None if one never completed a pass).

    ``streams``: ``hub.service.stream_health(hub)``, computed here when not given."""
    from hub.service import stream_health
    streams = stream_health(hub) if streams is None else streams
    out: dict[str, dict] = {name: {"last_success": None, "streams": {}} for name in sorted(hub.connectors)}
    for s in streams:
        out[s["connector"]]["streams"][s["stream"]] = s["last_success"]
    for c in out.values():
        times = list(c["streams"].values())
        c["last_success"] = min(times) if times and all(times) else None
    return out


def approvals_by_target(hub: Hub) -> dict[str, list[dict]]:
    """Every recorded approval (who, at, why), by the target it let through."""
    out: dict[str, list[dict]] = {}
    for a in hub.store.approvals():
        out.setdefault(a["target"], []).append({"who": a["who"], "at": a["at"], "why": a["why"]})
    return out


# --- tenants -------------------------------------------------------------------------------------

_TENANT_PATH = re.compile(r"^/tenants/([^/]+)(/.*)?$")
UNTENANTED = ("/openapi.json", "/tenants")   # paths that need a valid token but no tenant


class _Current:
    """The service of the request's tenant (``flask.g.service``), for the routes."""

    def __getattr__(self, name: str):
        return getattr(flask.g.service, name)


def _filtered(text: bytes, tenant: str) -> bytes:
    """The lines of a Prometheus exposition that are not another tenant's samples."""
    mine = f'tenant="{tenant}"'.encode()
    return b"".join(line for line in text.splitlines(keepends=True)
                    if line.startswith(b"#") or b'tenant="' not in line or mine in line)


# --- the app -------------------------------------------------------------------------------------

def make_app(service) -> flask.Flask:
    """The admin API over ``service``, or over every tenant of a ``TenantServices`` (see the
    module docstring)."""
    from hub.logs import tenant_scope
    from hub.service import TenantServices
    tenanted = isinstance(service, TenantServices)   # a single hub's app stays what it was: no tenant paths
    deployment = service if tenanted else TenantServices.single(service)
    service = _Current()
    app = flask.Flask("hub.api", static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024, TRAP_HTTP_EXCEPTIONS=False)

    @app.url_value_preprocessor
    def drop_tenant(endpoint, values):
        if values:
            values.pop("tenant", None)

    @app.before_request
    def require_token():
        # Runs before routing errors are raised, so an unknown path or method also gets 401.
        header, path = flask.request.headers.get("Authorization", ""), flask.request.path
        opens = [name for name in sorted(deployment.services)
                 if any(_authorized(header, t) for t in deployment.tokens(name))]
        if not opens:
            log.warning("api.unauthorized", method=flask.request.method, path=path,
                        remote=flask.request.remote_addr)
            return _unauthorized()
        flask.g.started = time.perf_counter()
        flask.g.opens = opens
        flask.g.whole = deployment.token is not None and _authorized(header, deployment.token.reveal())
        m = _TENANT_PATH.match(path)
        name = m.group(1) if m else deployment.unprefixed
        if m is None and (path in UNTENANTED or (path in ("/metrics", "/health") and flask.g.whole)):
            flask.g.service = None    # the deployment's /metrics and /health: every tenant's
            return None
        if name is None:
            return _error("this deployment serves several tenants: use /tenants/<name>/... (GET /tenants lists "
                          "them)", 404)
        if name not in opens:   # unknown, or not this token's: the same answer either way
            log.warning("api.tenant_refused", method=flask.request.method, path=path, tenant=name,
                        remote=flask.request.remote_addr)
            return _error(f"no tenant {name!r}", 404)
        flask.g.service, flask.g.tenant = deployment.services[name], name
        scope = tenant_scope(name) if (tenants_labelled() or name != "default") else None
        if scope is not None:
            scope.__enter__()
            flask.g.scope = scope
        return None

    @app.teardown_request
    def leave_tenant(exc):
        scope = flask.g.pop("scope", None)
        if scope is not None:
            scope.__exit__(None, None, None)

    @app.after_request
    def log_request(response: flask.Response) -> flask.Response:
        if "started" in flask.g:
            log.debug("api.request", method=flask.request.method, path=flask.request.path,
                      status=response.status_code, ms=round((time.perf_counter() - flask.g.started) * 1000, 1))
        return response

    def tenants():
        return _json({"tenants": list(flask.g.opens)})

    if tenanted:
        app.add_url_rule("/tenants", "tenants", tenants, methods=["GET"])

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _error((exc.name or "error").lower(), exc.code or 500)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):
        log.exception("api.request_failed", method=flask.request.method, path=flask.request.path)
        return _error("internal error", 500)

    def health_of(svc) -> dict:
        """One hub's health: ready only when the scheduler runs and every stream is healthy."""
        from hub.service import stream_health
        reasons: list[str] = []
        connectors: dict[str, dict] = {}
        streams: list[dict] = []
        try:
            with _open(svc) as hub:     # one hub, the streams' health computed once
                streams = stream_health(hub)
                connectors = pull_health(hub, streams)
                takes_hub = "hub" in inspect.signature(svc.status).parameters
                status = svc.status(hub, streams) if takes_hub else svc.status()
        except HubError as exc:   # e.g. the database cannot open; the message names the fix
            status = {}
            reasons.append(f"the hub cannot open: {exc}")
        scheduler = status.get("scheduler") or {}
        if not scheduler.get("running"):
            reasons.append("the scheduler is not running")
        reasons += [s["reason"] for s in streams if s["reason"]]
        return {"status": "ok", "ready": not reasons, "reasons": reasons, "scheduler": scheduler,
                "current_run": status.get("current_run"), "connectors": connectors,
                "streams": [{k: s[k] for k in ("connector", "stream", "healthy", "reason", "last_success",
                                               "age_seconds", "max_age_seconds", "max_age_basis",
                                               "last_error")} | {"last_status": (s["last_pass"] or {}).get("status")}
                            for s in streams]}

    @app.get("/health")
    def health():
        """Live (200 or 503 with a JSON body) and ready only when the scheduler runs and every
        stream's last pass succeeded within its maximum age (``hub.service.stream_health``).
        The deployment's (its token, no tenant in the path): ready when every tenant is, each
        tenant's reasons named after it."""
        if flask.g.get("service") is None:
            tenants = {}
            for name, svc in sorted(deployment.services.items()):
                with tenant_scope(name):
                    tenants[name] = health_of(svc)
            reasons = [f"{name}: {r}" for name, body in tenants.items() for r in body["reasons"]]
            return _json({"status": "ok", "ready": not reasons, "reasons": reasons, "tenants": tenants},
                         200 if not reasons else 503)
        body = health_of(service)
        return _json(body, 200 if body["ready"] else 503)

    @app.get("/runs")
    def runs():
        text = flask.request.args.get("limit", "20")
        if not text.isdigit() or not 1 <= int(text) <= MAX_RUNS:
            return _error(f"limit must be a whole number from 1 to {MAX_RUNS}", 400)
        with _open(service) as hub:
            rows = hub.store.runs(limit=int(text))
        return _json({"runs": [run_json(r) for r in rows]})

    @app.get("/runs/<run_id>")
    def run(run_id: str):
        with _open(service) as hub:
            row = hub.store.get_run(run_id)
        if row is None:
            return _error(f"no run {run_id!r}", 404)
        return _json(run_json(row))

    @app.get("/plan")
    def plan():
        period = flask.request.args.get("period") or None
        if period is not None:
            try:
                parse_period(period)
            except ValueError as exc:
                return _error(str(exc), 400)
        with _open(service) as hub:
            report = sync_once(hub, dry_run=True, pull_first=False, period=period)
        return _json(report.to_json())

    @app.post("/resync")
    def resync():
        raw = flask.request.get_data()
        if not raw.strip():
            return _error(f"the scope is missing: {RESYNC_FIX}", 400)
        try:   # read as JSON whatever the Content-Type says (curl -d sends a form's)
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(f"the body is not JSON ({exc}); {RESYNC_FIX}", 400)
        try:
            scope = resync_scope(body)
        except ValueError as exc:
            return _error(str(exc), 400)
        try:   # a resync the CLI hands over says so (msp-hub resync); any other caller is "api"
            by_cli = flask.request.headers.get(TRIGGER_HEADER, "").strip().lower() == "cli"
            run_id = service.trigger(scope, "cli") if by_cli else service.trigger(scope)
        except LockedError as exc:
            return _error(str(exc), 409, holder={"holder": exc.holder, "pid": exc.pid, "host": exc.host,
                                                 "since": exc.since})
        except UnavailableError as exc:
            return _error(str(exc), 503)
        except HubError as exc:
            return _error(str(exc), 400)
        log.info("api.resync_started", run_id=run_id, scope=sorted(scope))
        prefix = f"/tenants/{flask.g.tenant}" if _TENANT_PATH.match(flask.request.path) else ""
        return _json({"run_id": run_id}, 202, headers={"Location": f"{prefix}/runs/{run_id}"})

    @app.get("/actions")
    def actions():
        status = flask.request.args.get("status")
        if status is not None and status not in ACTION_STATUSES:
            return _error(f"status must be one of {', '.join(ACTION_STATUSES)}", 400)
        with _open(service) as hub:
            rows = hub.store.actions(status=status)
            approvals = approvals_by_target(hub)
        if status is None:
            rows = [r for r in rows if r["status"] in OPEN_STATUSES]
        return _json({"actions": [dict(action_json(r), approvals=approvals.get(r["key"], [])) for r in rows]})

    def change_action(key: str, verb: str):
        with _open(service) as hub:
            row = hub.store.get_action(key)
            if row is None:
                return _error(f"no action {key!r} in the outbox", 404)
            why = retry_refusal(row, f'POST /actions/{key}/approve with {{"why": "..."}}') if verb == "retry" else None
            if why:
                return _error(why, 409, action=action_json(row))
            row = getattr(hub.store, f"{verb}_action")(key)
        if row["status"] == "sent":
            return _error(f"action {key!r} was already sent", 409, action=action_json(row))
        if verb == "cancel" and row["status"] != "cancelled":
            return _error(f"action {key!r} is being sent; it cannot be cancelled now", 409, action=action_json(row))
        log.info(f"api.action_{verb}", action=key, status=row["status"])
        return _json({"action": action_json(row)})

    # ``path``: action keys hold ':' and may hold '/'.
    @app.post("/actions/<path:key>/retry")
    def retry_action(key: str):
        return change_action(key, "retry")

    @app.post("/actions/<path:key>/cancel")
    def cancel_action(key: str):
        return change_action(key, "cancel")

    @app.post("/actions/<path:key>/approve")
    def approve(key: str):
        """A person lets a held action through; recorded with who ("admin API"), when and why."""
        body = flask.request.get_json(silent=True) if flask.request.get_data() else {}
        if not isinstance(body, dict) or set(body) - {"why"} or not isinstance(body.get("why", ""), str):
            return _error('the body must be a JSON object {"why": "..."} (or empty)', 400)
        why = body.get("why", "")
        from hub.service import ApprovalRefused, approve_action
        with _open(service) as hub:
            row = hub.store.get_action(key)
            if row is None:
                return _error(f"no action {key!r} in the outbox", 404)
            try:   # the one approval path of the CLI, the console and this API
                approve_action(hub, key, API_APPROVER, why)
            except ApprovalRefused as exc:
                return _error(str(exc), 409, action=action_json(row))
            row = hub.store.get_action(key)
            approvals = approvals_by_target(hub).get(key, [])
        log.info("api.action_approve", action=key, status=row["status"], why=why)
        return _json({"action": dict(action_json(row), approvals=approvals)})

    def json_object(allowed: set[str], required: set[str] = frozenset()) -> dict | flask.Response:
        """The request's JSON object with only ``allowed`` keys and every ``required`` one; else 400."""
        body = flask.request.get_json(silent=True) if flask.request.get_data() else {}
        if not isinstance(body, dict) or set(body) - allowed or required - set(body):
            need = ", ".join(sorted(required)) or "nothing"
            return _error(f"the body must be a JSON object with {', '.join(sorted(allowed))} "
                          f"(required: {need})", 400)
        return body

    # --- the console's other actions: links, reports (the same functions the CLI calls) ----------

    @app.post("/clients/links/<verb>")
    def link(verb: str):
        """Accept (writes mappings/links.toml) or reject (recorded in the store) a suggested link."""
        from hub.clientlinks import LinkRefused, accept_link, reject_link
        if verb not in ("accept", "reject"):
            return _error("use /clients/links/accept or /clients/links/reject", 404)
        body = json_object({"system", "source_id", "client_id", "why"}, {"system", "source_id", "client_id"})
        if isinstance(body, flask.Response):
            return body
        with _open(service) as hub:
            try:
                said = (accept_link if verb == "accept" else reject_link)(
                    hub, str(body["system"]), str(body["source_id"]), str(body["client_id"]), who=API_APPROVER,
                    why=str(body.get("why", "")))
            except LinkRefused as exc:
                return _error(str(exc), 409)
        log.info(f"api.link_{verb}", system=body["system"], source_id=body["source_id"], client=body["client_id"])
        return _json({"result": said})

    def report_format(allowed: tuple[str, ...]) -> str | flask.Response:
        fmt = flask.request.args.get("format", "json")
        return fmt if fmt in allowed else _error(f"format {fmt!r}: use one of {', '.join(allowed)}", 400)

    def report_body(fmt: str, body: bytes) -> flask.Response:
        kinds = {"json": "application/json", "html": "text/html; charset=utf-8", "pdf": "application/pdf",
                 "csv": "text/csv; charset=utf-8"}
        return flask.Response(body, status=200, content_type=kinds[fmt])

    @app.get("/reports/scorecards/<client_id>/<quarter>")
    def scorecard(client_id: str, quarter: str):
        """A client's scorecard of a quarter (frozen, else computed now), as JSON, HTML or PDF."""
        from hub.reports import scorecard as sc
        fmt = report_format(("json", "html", "pdf"))
        if isinstance(fmt, flask.Response):
            return fmt
        with _open(service) as hub:
            try:
                card = sc.scorecard_for(hub, client_id, quarter)
                return report_body(fmt, sc.render_for(hub, card, fmt, flask.request.args.get("lang") or None))
            except HubError as exc:
                return _error(str(exc), 400)

    @app.post("/reports/scorecards/<client_id>/<quarter>/freeze")
    def freeze(client_id: str, quarter: str):
        """Freeze the scorecard as presented (msp-hub report scorecard --freeze); a quarter already
        frozen is refused (409) unless the body says {"refreeze": true}."""
        from hub.reports import scorecard as sc
        body = json_object({"refreeze"})
        if isinstance(body, flask.Response):
            return body
        refreeze = body.get("refreeze", False) is True
        with _open(service) as hub:
            try:
                name = sc.quarter(quarter, hub.config.timezone).name
                old = hub.store.frozen_scorecard(client_id, name)
                if old is not None and not refreeze:
                    return _error(f"the scorecard of {client_id} for {name} was frozen at {old['frozen_at']} by "
                                  f"{old['frozen_by']}; send {{\"refreeze\": true}} to replace it", 409)
                card = sc.freeze(hub, sc.build(hub, client_id, name), who=API_APPROVER, refreeze=refreeze)
            except HubError as exc:
                return _error(str(exc), 400)
        log.info("api.scorecard_frozen", client=client_id, quarter=card.quarter, refreeze=refreeze)
        return _json({"client_id": client_id, "quarter": card.quarter, "frozen": card.frozen})

    @app.get("/reports/kpis")
    def kpis():
        """The revenue KPIs of ?from=YYYY-MM&to=YYYY-MM, as JSON, CSV or HTML."""
        from hub.reports import kpis as k
        fmt = report_format(("json", "csv", "html"))
        if isinstance(fmt, flask.Response):
            return fmt
        first, last = flask.request.args.get("from"), flask.request.args.get("to")
        if not first or not last:
            return _error("give the months: /reports/kpis?from=2026-01&to=2026-11", 400)
        with _open(service) as hub:
            try:
                return report_body(fmt, k.render(k.build(hub, first, last), fmt, flask.request.args.get("lang") or None))
            except (ValueError, HubError) as exc:
                return _error(str(exc), 400)

    @app.post("/reports/maturity")
    def maturity():
        """Record a maturity self-assessment ({"answers": {"processus": [5 integers], ...}}), checked
        as answers.toml is; answers the scores, stage, next steps and signals (JSON)."""
        from hub.reports import maturity as m
        body = json_object({"answers", "answered_by"}, {"answers"})
        if isinstance(body, flask.Response):
            return body
        raw = body["answers"] if isinstance(body["answers"], dict) else {"answers": body["answers"]}
        if "answered_by" in body:
            raw = {**raw, "answered_by": body["answered_by"]}
        with _open(service) as hub:
            try:
                answers = m.parse_answers(raw, file="the request's answers")
                assessment = m.assess(hub, answers, save=True, by=API_APPROVER)
            except HubError as exc:
                return _error(str(exc), 400)
            lang = hub.config.report_language
        log.info("api.maturity_recorded", overall=m.number(assessment.score.overall, "en"))
        return _json(assessment.as_json(lang), 201)

    def correction_body(allowed: set[str]) -> dict | flask.Response:
        body = flask.request.get_json(silent=True) if flask.request.get_data() else None
        if not isinstance(body, dict) or set(body) - allowed:
            return _error(f"the body must be a JSON object with {', '.join(sorted(allowed))} (reason required)", 400)
        if not isinstance(body.get("reason"), str) or not body["reason"].strip():
            return _error("reason is required: why the invoice is corrected is recorded with who and when", 400)
        if not isinstance(body.get("reissue", False), bool) or not isinstance(body.get("now", False), bool):
            return _error("reissue and now are true or false", 400)
        return body

    def correct(key: str, kind: str):
        from hub import corrections
        from hub.money import to_minor
        allowed = {"reason", "reissue", "now"} | ({"lines", "amount"} if kind == "credit" else set())
        body = correction_body(allowed)
        if isinstance(body, flask.Response):
            return body
        who = getattr(service, "token_name", None) or API_REQUESTER
        with _open(service) as hub:
            try:
                if kind == "void":
                    row = corrections.request_void(hub, key, reason=body["reason"], by=who,
                                                   reissue=body.get("reissue", False), run_id="api")
                else:
                    lines = body.get("lines") or []
                    if not isinstance(lines, list) or not all(isinstance(c, str) for c in lines):
                        return _error("lines is a list of line codes", 400)
                    amount = body.get("amount")
                    if amount is not None:
                        invoice = hub.store.get_action(key)
                        currency = str((invoice or {}).get("payload", {}).get("currency") or "EUR")
                        try:
                            amount = to_minor(str(amount), currency)
                        except ValueError as exc:
                            return _error(f"amount: {exc}", 400)
                    row = corrections.request_credit(hub, key, reason=body["reason"], lines=lines, amount=amount,
                                                     by=who, reissue=body.get("reissue", False), run_id="api")
            except HubError as exc:      # a CorrectionError, or no connector able to send it
                missing = hub.store.get_action(key) is None
                return _error(str(exc), 404 if missing else 409)
            if body.get("now"):
                try:
                    report = corrections.push_corrections(hub, row["client_id"], holder="api")
                except LockedError as exc:
                    return _error(f"recorded; not sent now: {exc}", 409, correction=corrections.correction_json(row))
                row = hub.store.get_correction(row["action_key"])
                if report.failed:
                    return _error(f"recorded; the push failed: {report.failed[0]['error']}", 502,
                                  correction=corrections.correction_json(row))
        log.info(f"api.invoice_{kind}", invoice=key, action=row["action_key"], by=who)
        return _json({"correction": corrections.correction_json(row)}, 201 if row["status"] != "sent" else 200)

    @app.post("/invoices/<path:key>/void")
    def void_invoice(key: str):
        return correct(key, "void")

    @app.post("/invoices/<path:key>/credit")
    def credit_invoice(key: str):
        return correct(key, "credit")

    @app.get("/invoices/<path:key>/history")
    def invoice_history(key: str):
        from hub import corrections
        with _open(service) as hub:
            try:
                out = corrections.history(hub, key)
            except corrections.CorrectionError as exc:
                return _error(str(exc), 404)
        out["corrections"] = [corrections.correction_json(c) for c in out["corrections"]]
        return _json(out)

    @app.get("/metrics")
    def metrics():
        from hub.metrics import store_metrics, tenants_store_metrics
        tenant = flask.g.get("tenant")
        if flask.g.get("service") is None:
            hubs = {}   # the deployment token, unprefixed: every tenant's metrics
            try:
                for name, each in sorted(deployment.services.items()):
                    hubs[name] = each.open_hub()
                from_store = tenants_store_metrics({name: h.store for name, h in hubs.items()})
            finally:
                for h in hubs.values():
                    h.close()
            return flask.Response(generate_latest(REGISTRY) + from_store, mimetype=None,
                                  content_type=CONTENT_TYPE_LATEST)
        with _open(service) as hub:
            from_store = store_metrics(hub.store, tenant)
        process = generate_latest(REGISTRY)
        if tenants_labelled():   # a tenant's metrics, never another's samples
            process = _filtered(process, tenant)
        return flask.Response(process + from_store, mimetype=None, content_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json")
    def openapi():
        return _json(TENANTS_OPENAPI if tenanted else OPENAPI)

    if not tenanted:
        return app
    # Every tenant's paths: the same routes under /tenants/<tenant> (the tenant is picked, and the
    # token checked, by require_token; drop_tenant keeps it out of the views' arguments).
    for rule in list(app.url_map.iter_rules()):
        if rule.rule in UNTENANTED or rule.endpoint == "static" or rule.rule.startswith("/tenants/"):
            continue
        app.add_url_rule(f"/tenants/<tenant>{rule.rule}", endpoint=f"tenant.{rule.endpoint}",
                         view_func=app.view_functions[rule.endpoint], methods=rule.methods - {"HEAD", "OPTIONS"})
    return app


# --- serving -------------------------------------------------------------------------------------

class ApiServer:
    """The app served by waitress. ``run()`` blocks until ``close()`` is called from another thread.

    waitress' own ``run()`` returns only once every keep-alive connection is gone, so the loop
    here polls once at a time and, when told to stop, closes the listening socket and every open
    connection itself, in the thread that serves them.
    """

    def __init__(self, server):
        self._server = server
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running = False
        self.host, self.port = server.effective_host, server.effective_port

    def run(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            self._running = True
        server = self._server
        try:
            while not self._stop.is_set() and server._map:
                server.asyncore.loop(timeout=server.adj.asyncore_loop_timeout, map=server._map, count=1)
        finally:
            with self._lock:
                self._running = False
                self._close_all()

    def close(self) -> None:
        """Stop serving; safe to call more than once and before ``run()``."""
        with self._lock:
            if self._stop.is_set():
                return
            self._stop.set()
            if self._running:
                self._server.trigger.pull_trigger()   # wakes the poll in run(), which closes
            else:
                self._close_all()

    def _close_all(self) -> None:
        for channel in list(self._server._map.values()):
            channel.close()
        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)


def serve_api(app: flask.Flask, host: str, port: int) -> ApiServer:
    """Bind ``host:port`` (0 picks a free port: see ``.port``) and return a server to ``run()``;
    16 threads answer at once (with 4, twenty clients queued: the do-nothing route's p99 was 111 ms
    under benchmarks/api_load.py, 50 ms with 16)."""
    return ApiServer(waitress.create_server(app, host=host, port=port, threads=16, ident="msp-hub"))


# --- the description -----------------------------------------------------------------------------

def _op(summary: str, responses: dict[int, str], *, params: list[dict] | None = None, body: dict | None = None,
        content: str = "application/json") -> dict:
    op: dict[str, Any] = {"summary": summary, "security": [{"bearer": []}], "responses": {}}
    for code, description in {**responses, 401: "No token or a wrong token."}.items():
        media = content if code < 300 else "application/json"
        schema = {"$ref": "#/components/schemas/Error"} if code >= 400 else {"type": "object"}
        if media != "application/json":
            schema = {"type": "string"}
        op["responses"][str(code)] = {"description": description, "content": {media: {"schema": schema}}}
    op["responses"]["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    return op


def _param(name: str, where: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": where, "required": where == "path", "schema": schema, "description": description}


_KEY = _param("key", "path", {"type": "string"}, "The action's key, e.g. invoice:acme:2026-10.")
_CORRECTION_BODY = {"type": "object", "additionalProperties": False, "required": ["reason"], "properties": {
    "reason": {"type": "string", "description": "Why the invoice is corrected (recorded, and the credit note's memo)."},
    "reissue": {"type": "boolean", "description": "Once sent, re-issue the corrected invoice under invoice:<client>:"
                                                  "<period>:r<n> (a void: everything; a credit note: its lines)."},
    "now": {"type": "boolean", "description": "Send it at once (under the run lock) instead of on the next sync."}}}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "msp-hub admin API", "version": "1",
             "description": "Served by `msp-hub daemon` on 127.0.0.1. Every request needs "
                            "`Authorization: Bearer <token>`."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {"Error": {"type": "object", "required": ["error"],
                              "properties": {"error": {"type": "string"}}}},
    },
    "security": [{"bearer": []}],
    "paths": {
        "/health": {"get": _op(
            "Liveness and readiness: the scheduler runs, and every stream's last pass succeeded and its last "
            "complete pass is within its maximum age ([health] max_age, else 3 x its most frequent job's "
            "interval, else 26 h).",
            {200: "Ready; each stream's last complete pass, age and maximum age.",
             503: "Live but not ready; `reasons` names each stream, its age, its limit and its last error."})},
        "/runs": {"get": _op(
            "The latest runs, newest first, with their trigger (cron, api, cli, catch-up), job, scope, counts "
            "and errors.",
            {200: "The runs.", 400: "A bad limit."},
            params=[_param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_RUNS, "default": 20},
                           "How many runs.")])},
        "/runs/{run_id}": {"get": _op(
            "One run: mode, status, counts and errors.", {200: "The run.", 404: "No such run."},
            params=[_param("run_id", "path", {"type": "string"}, "The run's id.")])},
        "/plan": {"get": _op(
            "What a sync would push, planned from the data already pulled (no vendor request).",
            {200: "The run report of a plan.", 400: "A bad period."},
            params=[_param("period", "query", {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
                           "Plan this period (default: the last ended and the current).")])},
        "/resync": {"post": _op(
            "Start a run in the background of an explicit scope: a connector, a stream, a client (or their "
            "lists), or {\"all\": true} for everything; an empty body is refused. The body is read as JSON "
            "whatever its Content-Type.",
            {202: "Started; `run_id` names it (GET /runs/{run_id}).", 400: "A bad scope.",
             409: "A run of that scope holds the lock; `holder` says which.",
             503: "The daemon is stopping; try again after it restarts."},
            body={"type": "object", "additionalProperties": False, "properties": {
                "all": {"type": "boolean", "enum": [True], "description": "Run everything."},
                "connector": {"type": "string"}, "stream": {"type": "string"}, "client": {"type": "string"},
                "connectors": {"type": "array", "items": {"type": "string"}},
                "streams": {"type": "array", "items": {"type": "string"}},
                "clients": {"type": "array", "items": {"type": "string"}},
                "period": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
                "full": {"type": "boolean", "description": "Re-read the streams without moving their cursors."},
                "dry_run": {"type": "boolean", "description": "Pull and plan, push nothing."}}})},
        "/actions": {"get": _op(
            "The outbox: actions with their status, attempts, last error and approvals (who, when, why).",
            {200: "The actions.", 400: "An unknown status."},
            params=[_param("status", "query", {"type": "string", "enum": list(ACTION_STATUSES)},
                           "Only this status (default: pending, sending, failed and held).")])},
        "/actions/{key}/retry": {"post": _op(
            "Put a failed, held or cancelled action back in the outbox for the next push.",
            {200: "The action, now pending.", 404: "No such action.", 409: "The action was already sent."},
            params=[_KEY])},
        "/actions/{key}/approve": {"post": _op(
            "Approve a held action (a guardrail or a review held it); recorded as approved by \"admin API\", "
            "with the time and the reason given.",
            {200: "The action, now pending, with its approvals.", 400: "A bad body.", 404: "No such action.",
             409: "The action was already sent or cancelled."},
            params=[_KEY], body={"type": "object", "additionalProperties": False,
                                 "properties": {"why": {"type": "string", "description": "Why it may go."}}})},
        "/actions/{key}/cancel": {"post": _op(
            "Take an unsent action out of the outbox (kept as cancelled).",
            {200: "The action, now cancelled.", 404: "No such action.", 409: "The action was already sent."},
            params=[_KEY])},
        "/invoices/{key}/void": {"post": _op(
            "Void a sent, open invoice: records an invoice_void action (key void:<key>) with who (the token's "
            "name, else \"api\"), when and why; the next sync sends it, or at once with now.",
            {200: "Sent now (now: true); the correction.", 201: "Recorded; the correction.",
             400: "A bad body.", 404: "No such action.", 409: "Not a sent invoice, already voided or credited, "
             "or a run holds the lock (now).", 502: "Recorded, but the push failed (now)."},
            params=[_KEY], body=_CORRECTION_BODY)},
        "/invoices/{key}/credit": {"post": _op(
            "Issue a credit note on a sent invoice: whole lines (their codes) or an amount (\"120.00\"); "
            "records a credit_note action (key credit:<key>:<n>); never more in all than the invoice.",
            {200: "Sent now (now: true); the correction.", 201: "Recorded; the correction.",
             400: "A bad body.", 404: "No such action.", 409: "Not a sent invoice, voided, a line credited "
             "already or an amount above what is left.", 502: "Recorded, but the push failed (now)."},
            params=[_KEY], body={**_CORRECTION_BODY, "properties": {
                **_CORRECTION_BODY["properties"],
                "lines": {"type": "array", "items": {"type": "string"},
                          "description": "Codes of lines credited whole."},
                "amount": {"type": "string", "description": "An amount to credit, e.g. \"120.00\"."}}})},
        "/invoices/{key}/history": {"get": _op(
            "An action (an invoice), its corrections (who, when, why, what was sent) and its re-issues; any "
            "other action has no correction.",
            {200: "The action and its corrections.", 404: "No such action."},
            params=[_KEY])},
        "/clients/links/{verb}": {"post": _op(
            "Accept a suggested link (written to mappings/links.toml) or reject it (recorded in the store, not "
            "suggested again); recorded as by \"admin API\".",
            {200: "What was written or recorded.", 400: "A bad body.", 404: "Not accept or reject.",
             409: "No such suggestion, or it cannot be accepted there (the message names the fix)."},
            params=[_param("verb", "path", {"type": "string", "enum": ["accept", "reject"]}, "accept or reject")],
            body={"type": "object", "additionalProperties": False, "required": ["system", "source_id", "client_id"],
                  "properties": {"system": {"type": "string"}, "source_id": {"type": "string"},
                                 "client_id": {"type": "string"}, "why": {"type": "string"}}})},
        "/reports/scorecards/{client_id}/{quarter}": {"get": _op(
            "A client's scorecard of a quarter (the frozen one, else computed from the store).",
            {200: "The scorecard (?format=json|html|pdf, ?lang=en|fr).", 400: "A bad client, quarter or format."},
            params=[_param("client_id", "path", {"type": "string"}, "The hub client."),
                    _param("quarter", "path", {"type": "string"}, "YYYY-Qn, e.g. 2026-Q4."),
                    _param("format", "query", {"type": "string", "enum": ["json", "html", "pdf"]}, "Default json."),
                    _param("lang", "query", {"type": "string", "enum": ["en", "fr"]}, "Default: [reports] language.")])},
        "/reports/scorecards/{client_id}/{quarter}/freeze": {"post": _op(
            "Freeze the scorecard as presented (stored as computed, re-rendered identically; next quarter's "
            "previous column); recorded as by \"admin API\".",
            {200: "The quarter and who froze it when.", 400: "A bad client or quarter.",
             409: "Frozen already (send refreeze: true)."},
            params=[_param("client_id", "path", {"type": "string"}, "The hub client."),
                    _param("quarter", "path", {"type": "string"}, "YYYY-Qn.")],
            body={"type": "object", "additionalProperties": False,
                  "properties": {"refreeze": {"type": "boolean", "description": "Replace a frozen scorecard."}}})},
        "/reports/kpis": {"get": _op(
            "The revenue KPIs of a range of months.",
            {200: "The KPIs (?format=json|csv|html).", 400: "A bad range or format."},
            params=[_param("from", "query", {"type": "string"}, "First month, YYYY-MM."),
                    _param("to", "query", {"type": "string"}, "Last month, YYYY-MM."),
                    _param("format", "query", {"type": "string", "enum": ["json", "csv", "html"]}, "Default json."),
                    _param("lang", "query", {"type": "string", "enum": ["en", "fr"]}, "Default: [reports] language.")])},
        "/reports/maturity": {"post": _op(
            "Record a maturity self-assessment (its answers checked as answers.toml is) with the date and "
            "\"admin API\"; the scores, stage, next steps and signals from data.",
            {201: "The assessment.", 400: "Answers missing or out of range (the message names which)."},
            body={"type": "object", "additionalProperties": False, "required": ["answers"], "properties": {
                "answers": {"type": "object", "description": "processus, technologie, clients, revenus: five "
                                                             "integers 1 to 5 each."},
                "answered_by": {"type": "string"}}})},
        "/metrics": {"get": _op("Prometheus metrics of the process (msp_hub_*).", {200: "Text exposition format."},
                                content="text/plain")},
        "/openapi.json": {"get": _op("This description.", {200: "OpenAPI 3."})},
    },
}


def _tenant_paths(paths: dict[str, dict]) -> dict[str, dict]:
    """Every path again under ``/tenants/{tenant}``, for that tenant (404: not a tenant this token opens)."""
    tenant = _param("tenant", "path", {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,39}$"}, "The tenant's name.")
    out: dict[str, dict] = {}
    for path, ops in paths.items():
        if path in UNTENANTED:
            continue
        out[f"/tenants/{{tenant}}{path}"] = {
            method: {**op, "summary": f"{op['summary']} (tenant)", "parameters": [tenant, *op.get("parameters", [])],
                     "responses": {**op["responses"], "404": {
                         "description": op["responses"].get("404", {}).get("description", "") +
                         " No such tenant, or not one this token opens.",
                         "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}
            for method, op in ops.items()}
    return out


# What a deployment serving tenants describes: every path, again under /tenants/{tenant}, and /tenants.
TENANTS_OPENAPI: dict[str, Any] = {**OPENAPI, "paths": {
    **OPENAPI["paths"], **_tenant_paths(OPENAPI["paths"]),
    "/tenants": {"get": _op("The tenants this token opens (every one for the deployment token).", {200: "Their names."})}}}
