"""The console's blueprint: sign-in, the overview, the runs, the outbox.

Adding a page::

    @bp.get("/things")
    @page
    def things():
        with hub_of() as hub:
            rows = hub.store.things()
        return render("things.html", rows=rows)

with ``templates/things.html`` starting ``{% extends "base.html" %}`` and filling
``{% block content %}``, its words in ``hub.console.labels`` (both languages), and its link in
``NAV``. A fragment is the same with ``@fragment`` and a template named ``_things.html``; a POST is
``@bp.post(...)`` with ``@action`` (CSRF and session checked before the view runs), answering a
redirect (a plain form: ``done(...)`` with a message shown once) or a fragment (an htmx request).

Every action calls what the API and the CLI call: ``Service.trigger`` (with the scope read by
``hub.api.resync_scope``), the store's ``retry_action`` (refused as ``hub.store.retry_refusal``
says), ``cancel_action`` and ``approve``.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Iterator
from urllib.parse import urlsplit

import flask
import structlog

from hub.api import ACTION_STATUSES, OPEN_STATUSES, approvals_by_target, resync_scope, run_json
from hub.console import auth
from hub.console.auth import action, fragment, page
from hub.console.labels import label
from hub.engine import Hub, LockedError
from hub.errors import HubError, UnavailableError
from hub.service import human_seconds, stream_health
from hub.store import retry_refusal

log = structlog.get_logger()

bp = flask.Blueprint("console", __name__, template_folder="templates", static_folder="static",
                     static_url_path="/static")

# The navigation: (endpoint or path under /console, label key). Pages built later link here already.
NAV = (("console.overview", "nav.overview"), ("console.runs", "nav.runs"), ("console.plan", "nav.plan"),
       ("console.outbox", "nav.outbox"), ("console.clients", "nav.clients"), ("console.reports", "nav.reports"))
RUN_STATUSES = ("running", "ok", "partial", "failed", "abandoned")
TRIGGERS = ("cron", "api", "cli", "catch-up", "console")
CONSOLE_TRIGGER = "console"     # a resync asked from the console is recorded with this trigger


# --- helpers ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def hub_of() -> Iterator[Hub]:
    """The hub of the tenant the signed-in admin looks at (the API's own ``_open``)."""
    from hub.api import _open
    with _open(flask.g.service) as hub:
        yield hub


def language() -> str:
    service = flask.g.get("service")
    if service is None:   # the sign-in page: the first tenant's language
        service = next(iter(auth.deployment().services.values()))
    config = getattr(service, "config", None)
    try:
        return config.report_language
    except Exception:     # a config without reports settings (a test's stand-in): English
        return "en"


def render(template: str, **context: Any) -> str:
    """``template`` with what every page needs: ``t`` (labels), the session, its CSRF token, the nav."""
    lang = language()
    session = flask.g.get("session")
    return flask.render_template(template, t=lambda key: label(lang, key), lang=lang, session=session,
                                 csrf=session.csrf if session else "", nav=NAV, nav_url=nav_url,
                                 ago=ago, when=when, **context)


def nav_url(target: str) -> str:
    return flask.url_for(target) if target.startswith("console.") else auth_prefix() + target


def auth_prefix() -> str:
    from hub.console import PREFIX
    return PREFIX


def when(moment: str | None) -> str:
    """An ISO time as "2026-12-07 03:38:53 UTC" (seconds, no fraction); "-" when None."""
    from datetime import datetime, timezone
    if not moment:
        return "-"
    try:
        parsed = datetime.fromisoformat(str(moment))
    except ValueError:
        return str(moment)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc)
    return parsed.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if parsed.tzinfo is not None else "")


def status_of(hub: Hub, streams: list[dict] | None = None) -> dict[str, Any]:
    """``service.status`` read with ``hub`` when the service takes it (as ``GET /health`` does)."""
    import inspect
    service = flask.g.service
    takes_hub = "hub" in inspect.signature(service.status).parameters
    return service.status(hub, streams) if takes_hub else service.status()


def ago(seconds: float | None) -> str:
    return "-" if seconds is None else human_seconds(seconds)


def done(endpoint: str, message: str, kind: str = "ok", **values: Any) -> flask.Response:
    """Redirect to ``endpoint`` after a form, with ``message`` shown once there."""
    flask.g.session.flashes.append((kind, message))
    return flask.redirect(flask.url_for(endpoint, **values), 303)


def safe_next(target: str | None) -> str:
    """A redirect target after sign-in: a path of the console only (never another site)."""
    from hub.console import PREFIX
    if target and target.startswith(PREFIX + "/") and not urlsplit(target).netloc and not target.startswith("//"):
        return target
    return flask.url_for("console.overview")


@bp.after_request
def no_store(response: flask.Response) -> flask.Response:
    """Pages hold an admin's data and a CSRF token: never cached, never framed."""
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                "frame-ancestors 'none'")
    return response


# --- sign-in -------------------------------------------------------------------------------------

@bp.route("/signin", methods=["GET", "POST"])
def signin():
    """The sign-in form (GET) and the sign-in (POST: the token and a name, once)."""
    pre = flask.request.cookies.get(auth.PRE_COOKIE, "")
    error = None
    if flask.request.method == "POST":
        given = flask.request.form.get(auth.CSRF_FIELD, "")
        if not pre or not auth.hmac.compare_digest(given.encode(), pre.encode()):
            log.warning("console.csrf_refused", path=flask.request.path)
            return auth.refused("the form's security token is missing or wrong: reload the page and try again", 403)
        tenants = auth.tenants_opened_by(flask.request.form.get("token", ""))
        name = " ".join(flask.request.form.get("name", "").split())[:80]
        if not tenants:
            log.warning("console.signin_refused", remote=flask.request.remote_addr)
            error = "signin.bad"
        elif not name:
            error = "signin.no_name"
        else:
            session = auth.sessions().open(name, tenants)
            log.info("console.signed_in", admin=name, tenants=tenants, remote=flask.request.remote_addr)
            response = flask.redirect(safe_next(flask.request.args.get("next")), 303)
            auth.set_cookie(response, auth.COOKIE, session.id)
            response.delete_cookie(auth.PRE_COOKIE, path="/console")
            return response
    pre = pre or auth.secrets.token_urlsafe(32)
    flask.g.session = None
    body = render("signin.html", pre_csrf=pre, error=error, ended="ended" in flask.request.args)
    response = flask.make_response(body, 401 if error else 200)
    auth.set_cookie(response, auth.PRE_COOKIE, pre, max_age=3600)
    return response


@bp.post("/signout")
@action
def signout():
    auth.sessions().close(flask.g.session.id)
    log.info("console.signed_out", admin=flask.g.session.name)
    response = flask.redirect(flask.url_for("console.signin"), 303)
    response.delete_cookie(auth.COOKIE, path="/console")
    return response


@bp.post("/tenant")
@action
def switch_tenant():
    """Look at another tenant the token opens (a tenant not among them: 404, as the API answers)."""
    name = flask.request.form.get("tenant", "")
    if name not in flask.g.session.tenants:
        return auth.refused(f"no tenant {name!r}", 404)
    flask.g.session.tenant = name
    return flask.redirect(flask.url_for("console.overview"), 303)


# --- overview ------------------------------------------------------------------------------------

@bp.get("/")
@page
def overview():
    """Each connector's streams (last pass, status, age against the maximum, last error), the
    outbox's counts, the next jobs, and a resync per connector, stream and client."""
    with hub_of() as hub:
        streams = stream_health(hub)
        counts = {s: len(hub.store.actions(status=s)) for s in ("pending", "held", "failed")}
        status = status_of(hub, streams)
        clients = sorted({a["client_id"] for a in hub.store.actions() if a.get("client_id")})
    by_connector: dict[str, list[dict]] = {}
    for s in streams:
        by_connector.setdefault(s["connector"], []).append(s)
    return render("overview.html", by_connector=by_connector, counts=counts, status=status,
                  jobs=(status.get("scheduler") or {}).get("jobs", []), clients=clients,
                  current=status.get("current_run"))


@bp.post("/resync")
@action
def resync():
    """Start a run of one scope (``connector``, ``stream`` or ``client``, or ``all``): the same
    scope model and ``Service.trigger`` as ``POST /resync``; answers the progress fragment."""
    form = flask.request.form
    body: dict[str, Any] = {k: form[k] for k in ("connector", "stream", "client") if form.get(k)}
    if form.get("all"):
        body["all"] = True
    try:
        scope = resync_scope(body)
        run_id = flask.g.service.trigger(scope, CONSOLE_TRIGGER)
    except (ValueError, HubError) as exc:   # a bad scope; LockedError and UnavailableError are HubErrors
        status = 409 if isinstance(exc, LockedError) else 503 if isinstance(exc, UnavailableError) else 400
        return flask.Response(render("_message.html", kind="error", message=str(exc)), status)
    log.info("console.resync_started", run_id=run_id, scope=sorted(scope), admin=flask.g.session.name)
    return progress_of(run_id)


@bp.get("/runs/<run_id>/progress")
@fragment
def progress(run_id: str):
    """A run's progress; polled by htmx every second until the run ends (the fragment then stops)."""
    return progress_of(run_id)


def progress_of(run_id: str):
    with hub_of() as hub:
        row = hub.store.get_run(run_id)
        current = status_of(hub).get("current_run")
    run = run_json(row) if row else None
    live = current if current and current.get("run_id", current.get("id")) == run_id else None
    ended = bool(run and run.get("finished_at")) or (run is None and live is None)
    return render("_progress.html", run_id=run_id, run=run, live=live, ended=ended)


# --- runs ----------------------------------------------------------------------------------------

def _connectors_of(run: dict) -> set[str]:
    scope = run.get("scope") or {}
    named = set(scope.get("connectors") or [])
    pulled = {key.split(".")[0] for key in ((run.get("counts") or {}).get("records") or {})}
    return named | pulled


@bp.get("/runs")
@page
def runs():
    """The timeline of runs, newest first, filtered by status, trigger and connector."""
    args = flask.request.args
    want = {k: args.get(k, "") for k in ("status", "trigger", "connector")}
    with hub_of() as hub:
        rows = [run_json(r) for r in hub.store.runs(limit=200)]
        connectors = sorted(hub.connectors)
    shown = [r for r in rows
             if (not want["status"] or r.get("status") == want["status"])
             and (not want["trigger"] or r.get("trigger") == want["trigger"])
             and (not want["connector"] or want["connector"] in _connectors_of(r))]
    return render("runs.html", runs=shown, want=want, statuses=RUN_STATUSES, triggers=TRIGGERS,
                  connectors=connectors, duration=duration)


def duration(run: dict) -> str:
    from datetime import datetime
    if not run.get("started_at") or not run.get("finished_at"):
        return "-"
    seconds = (datetime.fromisoformat(run["finished_at"]) - datetime.fromisoformat(run["started_at"])).total_seconds()
    return human_seconds(max(0, seconds))


@bp.get("/runs/<run_id>")
@page
def run(run_id: str):
    """One run: what ``msp-hub runs show`` and ``GET /runs/<id>`` give, and its actions."""
    with hub_of() as hub:
        row = hub.store.get_run(run_id)
        actions = [a for a in hub.store.actions() if a.get("run_id") == run_id] if row else []
    if row is None:
        flask.abort(404)
    run = run_json(row)
    return render("run.html", run=run, c=run["counts"], actions=actions, duration=duration,
                  scope_text=json.dumps(run["scope"]) if run["scope"] else "-")


# --- outbox --------------------------------------------------------------------------------------

@bp.get("/outbox")
@page
def outbox():
    """Every action (the open ones by default), with retry, cancel and approve."""
    status = flask.request.args.get("status", "open")
    with hub_of() as hub:
        if status in ACTION_STATUSES:
            rows = hub.store.actions(status=status)
        else:
            rows = hub.store.actions()
            if status != "all":
                status = "open"
                rows = [r for r in rows if r["status"] in OPEN_STATUSES]
        approvals = approvals_by_target(hub)
    return render("outbox.html", rows=rows, status=status, statuses=ACTION_STATUSES, approvals=approvals)


@bp.post("/outbox/<verb>")
@action
def change(verb: str):
    """Retry, cancel or approve one action (its key in the form), as the API and the CLI do."""
    key = flask.request.form.get("key", "")
    back = flask.request.form.get("status", "open")
    if verb not in ("retry", "cancel", "approve"):
        flask.abort(404)
    with hub_of() as hub:
        row = hub.store.get_action(key)
        if row is None:
            return done("console.outbox", f"no action {key!r} in the outbox", "error", status=back)
        if verb == "retry":
            why = retry_refusal(row, "the Approve button (or msp-hub actions approve)")
            if why:
                return done("console.outbox", why, "error", status=back)
            row = hub.store.retry_action(key)
        elif verb == "cancel":
            row = hub.store.cancel_action(key)
        else:
            from hub.service import ApprovalRefused, approve_action
            try:   # the one approval path of the CLI, the API and the console
                approve_action(hub, key, flask.g.session.approver, flask.request.form.get("why", ""))
            except ApprovalRefused as exc:
                return done("console.outbox", str(exc), "error", status=back)
            row = hub.store.get_action(key)
    if row["status"] == "sent":
        return done("console.outbox", f"action {key!r} was already sent", "error", status=back)
    if verb == "cancel" and row["status"] != "cancelled":
        return done("console.outbox", f"action {key!r} is being sent; it cannot be cancelled now", "error",
                    status=back)
    log.info(f"console.action_{verb}", action=key, status=row["status"], admin=flask.g.session.name)
    return done("console.outbox", f"{verb}: {key} is now {row['status']}", status=back)
