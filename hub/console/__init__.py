"""The admin console: server-rendered pages (Flask blueprint, Jinja templates, htmx) under ``/console``.

The daemon serves it on the admin API's host and port (``mount``): requests to ``/console...`` go
to the console's own Flask app, ``/`` redirects to ``/console/``, and every other path goes to the
JSON API unchanged (its bearer token, its 401 answers). The console calls the same functions the
API and the CLI call (``hub.service.Service.trigger``, ``hub.service.stream_health``, the store's
``retry_action``/``cancel_action``/``approve``): it never re-implements an action.

Structure (one obvious way to add a page):

- ``hub.console.auth``: sign-in with an admin token, the server-side sessions, the CSRF token;
  ``page``, ``fragment`` and ``action`` decorate every view (see there).
- ``hub.console.views``: the blueprint ``bp`` and its pages. A page is a function decorated with
  ``@bp.get("/name")`` and ``@page``, rendering ``templates/name.html`` (which extends
  ``base.html``) through ``render(...)``; a fragment (what htmx fetches) is ``@fragment`` and
  renders a template whose name starts with ``_``; a POST is ``@bp.post(...)`` and ``@action``
  (the CSRF token is checked before the view runs). ``NAV`` lists the navigation's links.
- ``hub.console.labels``: the words of the pages in English and French (``[reports] language``,
  else ``[billing.invoice] language``); a template writes ``t("key")``.

Sessions (``[admin]`` of the config, or of ``tenants.toml`` for a deployment): ``session_idle``
(default ``"30m"``) ends a session left unused that long; ``session_max`` (default ``"12h"``)
ends any session that long after its sign-in. Sessions live in the daemon's memory: a restart
signs everyone out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flask

from hub.errors import ConfigError

PREFIX = "/console"
DEFAULT_IDLE = 30 * 60          # session_idle: "30m"
DEFAULT_MAX = 12 * 3600         # session_max: "12h"
SESSION_KEYS = ("session_idle", "session_max")


@dataclass(frozen=True)
class ConsoleSettings:
    """How long a console session lasts: ``idle`` seconds unused, ``absolute`` seconds in all."""

    idle: int = DEFAULT_IDLE
    absolute: int = DEFAULT_MAX


def console_settings(admin: dict[str, Any], file: str = "msp-hub.toml") -> ConsoleSettings:
    """``session_idle`` and ``session_max`` of an ``[admin]`` table (durations such as "30m", "12h",
    "1d", or seconds); the defaults when absent."""
    from hub.service import duration_seconds
    out = {}
    for key, default in (("session_idle", DEFAULT_IDLE), ("session_max", DEFAULT_MAX)):
        value = admin.get(key, default)
        try:
            seconds = duration_seconds(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"is not a duration: {exc}", file=file, key=f"admin.{key}",
                              fix=f'write a duration such as {key} = "{"30m" if key == "session_idle" else "12h"}"') from None
        if seconds <= 0:
            raise ConfigError(f"must be longer than zero, got {value!r}", file=file, key=f"admin.{key}",
                              fix=f'write a duration such as {key} = "{"30m" if key == "session_idle" else "12h"}"')
        out[key] = seconds
    if out["session_idle"] > out["session_max"]:
        raise ConfigError(f"session_idle ({admin.get('session_idle')}) is longer than session_max "
                          f"({admin.get('session_max', '12h')})", file=file, key="admin.session_idle",
                          fix="make session_idle shorter than session_max")
    return ConsoleSettings(idle=out["session_idle"], absolute=out["session_max"])


def make_console(service, settings: ConsoleSettings | None = None) -> flask.Flask:
    """The console's Flask app over ``service`` (one ``Service``) or a ``TenantServices``."""
    from hub.console.auth import Sessions
    from hub.console.views import bp
    from hub.console import reports as _reports  # noqa: F401  (the reports' pages register on bp)
    from hub.console import clients, review  # noqa: F401  (their pages register on bp)
    from hub.service import TenantServices
    deployment = service if isinstance(service, TenantServices) else TenantServices.single(service)
    app = flask.Flask("hub.console", static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024, CONSOLE_DEPLOYMENT=deployment,
                      CONSOLE_SESSIONS=Sessions(settings or ConsoleSettings()))
    app.register_blueprint(bp, url_prefix=PREFIX)
    return app


class Mounted:
    """A WSGI app: the console under ``/console`` and ``/`` (a redirect), the API everywhere else."""

    def __init__(self, api, console: flask.Flask):
        self.api, self.console = api, console

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/":
            start_response("302 Found", [("Location", f"{PREFIX}/"), ("Content-Length", "0")])
            return [b""]
        if path == PREFIX or path.startswith(PREFIX + "/"):
            return self.console(environ, start_response)
        return self.api(environ, start_response)


def mount(api, service, admin: dict[str, Any] | None = None, file: str = "msp-hub.toml") -> Mounted:
    """The admin API ``api`` (``hub.api.make_app``) with the console beside it; ``admin``: the
    ``[admin]`` table that may set ``session_idle`` and ``session_max``."""
    return Mounted(api, make_console(service, console_settings(admin or {}, file)))
