"""Sign-in, server-side sessions and CSRF for the console.

Sign-in: the admin token (any token the JSON API accepts: a hub's ``[admin]`` token, a
deployment's ``[admin]`` token, a tenant's own), compared in constant time, once; and the admin's
name, recorded on what they approve as ``"<name> (console)"``. The session then lives on the
server (``Sessions``): the browser holds only a random id in the ``msp_hub_console`` cookie
(HttpOnly, SameSite=Strict, Path=/console, Secure when the request came over https, directly or
through a proxy saying ``X-Forwarded-Proto: https``). The token itself is never stored in the
session, written in a page or a log, or put in a URL.

A session ends on sign-out, when unused for ``idle`` seconds, or ``absolute`` seconds after its
sign-in (``hub.console.ConsoleSettings``).

CSRF: each session has its own random token; every POST must carry it, as the form field
``csrf_token`` or the header ``X-CSRF-Token`` (htmx sends the header: ``hx-headers`` on
``<body>`` in ``base.html``). The sign-in form, which has no session yet, is protected by
SameSite=Strict and by a pre-session cookie holding its own CSRF token.

The decorators:

- ``page``: a full page; without a session, a redirect to the sign-in page (``?next=`` the page).
- ``fragment``: a piece of a page htmx fetches; without a session, 401.
- ``action``: a POST; without a session 401, without the right CSRF token 403.

Inside a view, ``flask.g.session`` is the ``Session`` and ``flask.g.service`` the service of the
tenant it is looking at.
"""

from __future__ import annotations

import functools
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import flask
import structlog

log = structlog.get_logger()

COOKIE = "msp_hub_console"
PRE_COOKIE = "msp_hub_console_signin"    # the sign-in form's CSRF token, before any session
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
APPROVER_SUFFIX = " (console)"           # an approval is recorded as "<name> (console)"


@dataclass
class Session:
    """A signed-in admin: their name, the tenants their token opens, the one they look at."""

    id: str
    name: str
    tenants: list[str]
    tenant: str
    csrf: str
    created: float
    seen: float
    flashes: list[tuple[str, str]] = field(default_factory=list)   # (kind, message) shown once

    @property
    def approver(self) -> str:
        return f"{self.name}{APPROVER_SUFFIX}"


class Sessions:
    """The sessions of one console, in memory, under a lock (waitress serves in threads).

    ``clock``: for tests, a function returning the time in seconds (``time.monotonic``)."""

    def __init__(self, settings, clock: Callable[[], float] = time.monotonic):
        self.settings, self.clock = settings, clock
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def open(self, name: str, tenants: list[str]) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), name, list(tenants), tenants[0], secrets.token_urlsafe(32),
                          now, now)
        with self._lock:
            self._expire(now)
            self._by_id[session.id] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        """The live session of cookie value ``sid`` (its idle time restarted), or None."""
        if not sid:
            return None
        now = self.clock()
        with self._lock:
            self._expire(now)
            session = self._by_id.get(sid)
            if session is not None:
                session.seen = now
            return session

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)

    def _expire(self, now: float) -> None:
        for sid, s in list(self._by_id.items()):
            if now - s.seen > self.settings.idle or now - s.created > self.settings.absolute:
                del self._by_id[sid]
                log.info("console.session_expired", admin=s.name)

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_id)


def sessions() -> Sessions:
    return flask.current_app.config["CONSOLE_SESSIONS"]


def deployment():
    """The ``hub.service.TenantServices`` the console serves."""
    return flask.current_app.config["CONSOLE_DEPLOYMENT"]


def tenants_opened_by(token: str) -> list[str]:
    """The tenants ``token`` opens (compared in constant time with every accepted token), sorted."""
    given = token.strip().encode()
    d = deployment()
    return [name for name in sorted(d.services)
            if given and any(t and hmac.compare_digest(given, t.encode()) for t in d.tokens(name))]


def secure_request() -> bool:
    """Whether the request came over https (directly, or through a proxy that says so)."""
    proto = flask.request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return flask.request.is_secure or proto == "https"


def set_cookie(response: flask.Response, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/console", httponly=True, samesite="Strict",
                        secure=secure_request())


def current() -> Session | None:
    """The request's session (also ``flask.g.session``), with ``flask.g.service`` its tenant's."""
    if "session" not in flask.g:
        session = sessions().get(flask.request.cookies.get(COOKIE))
        flask.g.session = session
        if session is not None:
            flask.g.service = deployment().services[session.tenant]
    return flask.g.session


def csrf_ok(session: Session) -> bool:
    given = flask.request.headers.get(CSRF_HEADER) or flask.request.form.get(CSRF_FIELD) or ""
    return hmac.compare_digest(given.encode(), session.csrf.encode())


def page(view):
    """A full page: signed in, or redirected to the sign-in page."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if current() is None:
            return flask.redirect(flask.url_for("console.signin", next=flask.request.full_path.rstrip("?")))
        return view(*args, **kwargs)
    return wrapper


def fragment(view):
    """A fragment htmx fetches: signed in, or 401."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if current() is None:
            log.warning("console.unauthorized", path=flask.request.path, remote=flask.request.remote_addr)
            return refused("sign in first: your session has ended", 401)
        return view(*args, **kwargs)
    return wrapper


def action(view):
    """A POST: signed in (else 401) and carrying the session's CSRF token (else 403)."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        session = current()
        if session is None:
            log.warning("console.unauthorized", path=flask.request.path, remote=flask.request.remote_addr)
            return refused("sign in first: your session has ended", 401)
        if not csrf_ok(session):
            log.warning("console.csrf_refused", path=flask.request.path, admin=session.name)
            return refused("the form's security token is missing or wrong: reload the page and try again", 403)
        return view(*args, **kwargs)
    return wrapper


def refused(message: str, status: int) -> flask.Response:
    """A short HTML answer htmx can show; ``HX-Redirect`` sends htmx to the sign-in page on 401."""
    from markupsafe import escape
    response = flask.Response(f'<p class="error" role="alert">{escape(message)}</p>', status,
                              mimetype="text/html")
    if status == 401:
        response.headers["HX-Redirect"] = flask.url_for("console.signin")
    return response
