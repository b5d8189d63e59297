"""Notifications: e-mail and webhooks (JSON, Slack, Teams) when a run holds or fails something.

A held invoice nobody sees is an invoice never sent. After each run ``notify_run(hub, report)``
sends one message naming every newly held action (client, period, amount), every failed stream
read and every failed push, grouped by reason, each with the command that releases it. A
fingerprint per held thing is kept in the store, so the next run does not repeat a hold that did
not change; a new or changed one is sent again. ``send_reminders(hub, now)`` (an hourly daemon
job) repeats what is still held once ``reminder_every`` has passed since it was last sent, and
forgets what is no longer held.

Settings, ``[notify]`` in the hub config::

    reminder_every = "24h"              # s, m, h or d; the default is 24h

    [notify.email]
    smtp_host = "smtp.example.com"
    smtp_port = 587                     # default 587
    starttls = true                     # default true; a server without STARTTLS is an error
    implicit_tls = false                # true for port 465: TLS from the first byte (starttls unused)
    ca_file = "relay-ca.pem"            # optional: trust this CA (a relay with a private CA)
    username = "msp-hub@example.com"    # optional: log in when set
    password_env = "SMTP_PASSWORD"      # or password_file = "path"; never written inline
    from = "msp-hub@example.com"
    to = ["billing@example.com"]

    [[notify.webhooks]]
    name = "ops"                        # optional: names the webhook in logs (its URL is a secret)
    url_env = "SLACK_WEBHOOK_URL"       # or url_file = "path"; url = "..." only for format "json"
    format = "slack"                    # "json" (default), "slack" or "teams"

The plain JSON webhook receives (``POST``, ``Content-Type: application/json``)::

    {"type": "msp-hub.held" | "msp-hub.reminder", "run_id": "3f2a...", "mode": "sync",
     "started_at": "2026-11-22T06:00:00+00:00", "summary": "msp-hub: 1 held (1200.00 EUR)",
     "held": 1, "totals": [{"currency": "EUR", "total": 120000, "amount": "1200.00 EUR"}],
     "items": [{"subject": "invoice:acme:2026-10", "kind": "held", "key": "invoice:acme:2026-10",
                "client": "Acme", "client_id": "acme", "period": "2026-10", "total": 120000,
                "currency": "EUR", "amount": "1200.00 EUR", "cause": "review",
                "reason": "in the review window", "reasons": ["in the review window"],
                "release": "msp-hub approve invoice:acme:2026-10"}]}

``kind`` is ``held`` (an action kept back), ``stream`` (a stream read that failed: what it feeds
is held) or ``push`` (a push that failed); ``cause`` is the hold's cause (error, incomplete,
guardrail, review, veto), ``stream_failed`` or ``push_failed``. ``total`` is in minor units.

Secrets (the SMTP password, webhook URLs) are held in ``hub.config.Secret``: they are never
logged, stored or written into a message. A failed delivery is logged and never fails the run.
"""

from __future__ import annotations

import hashlib
import json
import re
import smtplib
import ssl
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Literal

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.config import HubConfig, Secret
from hub.errors import ConfigError
from hub.http import USER_AGENT
from hub.money import format_minor

log = structlog.get_logger()

SECTION = "notify"
DEFAULT_REMINDER = "24h"
WEBHOOK_TIMEOUT = 10.0
SMTP_TIMEOUT = 20.0
_EVERY = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# One process sends one message at a time: a run's notification and the hourly reminder must not
# both decide that the same hold is new.
_SENDING = threading.Lock()

# The titles of the message's sections, in the order they are shown.
CAUSES = {
    "error": "Held: a contract, mapping or record error",
    "incomplete": "Held: the data it needs was not read completely",
    "guardrail": "Held by a guardrail: a surprising change",
    "review": "Held for review",
    "veto": "Held: a plugin vetoed it",
    "stream_failed": "Stream reads that failed (what they feed is held)",
    "push_failed": "Pushes that failed",
}


# --- settings ------------------------------------------------------------------------------------

_EXAMPLES = {
    "smtp_host": 'smtp_host = "smtp.example.com"', "smtp_port": "smtp_port = 587", "starttls": "starttls = true",
    "implicit_tls": "implicit_tls = true", "ca_file": 'ca_file = "/etc/ssl/relay-ca.pem"',
    "username": 'username = "msp-hub@example.com"', "password_env": 'password_env = "SMTP_PASSWORD"',
    "password_file": 'password_file = "/run/secrets/smtp"', "from": 'from = "msp-hub@example.com"',
    "to": 'to = ["billing@example.com"]', "name": 'name = "ops"', "url": 'url = "https://hooks.example.com/hub"',
    "url_env": 'url_env = "SLACK_WEBHOOK_URL"', "url_file": 'url_file = "/run/secrets/slack-webhook"',
    "format": 'format = "slack" (one of "json", "slack", "teams")', "reminder_every": 'reminder_every = "24h"',
    "email": "write it as [notify.email]", "webhooks": "write each one as [[notify.webhooks]]",
}
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}   # a local relay may take a login without TLS
_SECRET_KEYS = {"password", "password_env", "password_file", "url", "url_env", "url_file"}


def _address(value: str) -> str:
    if "@" not in value or any(c.isspace() for c in value) or any(c in value for c in "<>,;\"'"):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


class _EmailModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    smtp_host: str = Field(min_length=1)
    smtp_port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    implicit_tls: bool = False
    ca_file: str | None = Field(None, min_length=1)
    username: str | None = Field(None, min_length=1)
    password_env: str | None = Field(None, min_length=1)
    password_file: str | None = Field(None, min_length=1)
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)

    @field_validator("sender")
    @classmethod
    def _sender(cls, v: str) -> str:
        return _address(v)

    @field_validator("to")
    @classmethod
    def _to(cls, v: list[str]) -> list[str]:
        return [_address(a) for a in v]


class _WebhookModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(None, min_length=1)
    url: str | None = Field(None, min_length=1)
    url_env: str | None = Field(None, min_length=1)
    url_file: str | None = Field(None, min_length=1)
    format: Literal["json", "slack", "teams"] = "json"


class _NotifyModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    email: _EmailModel | None = None
    webhooks: list[_WebhookModel] = Field(default_factory=list)
    reminder_every: str = DEFAULT_REMINDER


_KNOWN = {(): sorted(_NotifyModel.model_fields), ("email",): sorted(
    (f.alias or n) for n, f in _EmailModel.model_fields.items()), ("webhooks",): sorted(_WebhookModel.model_fields)}


@dataclass(frozen=True)
class EmailChannel:
    """``[notify.email]`` checked, its password resolved (None without ``username``)."""

    host: str
    port: int
    starttls: bool
    username: str | None
    password: Secret | None
    sender: str
    to: tuple[str, ...]
    implicit_tls: bool = False
    ca_file: str | None = None

    @property
    def label(self) -> str:
        return "email"


@dataclass(frozen=True)
class WebhookChannel:
    """One ``[[notify.webhooks]]``: its URL (a Secret) and body format; ``label`` names it in logs."""

    label: str
    format: str
    url: Secret


@dataclass(frozen=True)
class NotifySettings:
    """``[notify]`` checked and its secrets resolved; ``enabled`` when any channel is configured."""

    email: EmailChannel | None = None
    webhooks: tuple[WebhookChannel, ...] = ()
    reminder_every: timedelta = timedelta(hours=24)

    @property
    def enabled(self) -> bool:
        return self.email is not None or bool(self.webhooks)

    def secret_values(self) -> list[str]:
        """The SMTP password and webhook URLs, for the log redactor (``hub.logs.configure_logging``)."""
        values = [w.url.reveal() for w in self.webhooks]
        if self.email is not None and self.email.password is not None:
            values.append(self.email.password.reveal())
        return values


def _loc(loc: tuple) -> str:
    out = SECTION
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _config_error(exc: ValidationError, file: str) -> ConfigError:
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    key, last = _loc(loc), str(next((p for p in reversed(loc) if isinstance(p, str)), SECTION))
    table = tuple(p for p in loc[:-1] if isinstance(p, str))
    value = err.get("input")
    scalar = isinstance(value, (str, int, float, bool)) and last not in _SECRET_KEYS
    shown = f", got {value!r}" if scalar else ""   # a table or list may hold a secret: never echoed
    kind = err["type"]
    if kind == "extra_forbidden":
        if last == "password":
            return ConfigError("secrets are not written in the config file", file=file, key=key,
                               fix='use password_env = "VARIABLE" or password_file = "path" instead')
        return ConfigError(f"unknown key '{last}'", file=file, key=key,
                           fix=f"use one of {', '.join(_KNOWN.get(table, []))}")
    if kind == "missing":
        return ConfigError("missing", file=file, key=key, fix=f"add {_EXAMPLES.get(last, last)}")
    if kind == "literal_error":
        return ConfigError(f"must be one of \"json\", \"slack\", \"teams\"{shown}", file=file, key=key,
                           fix=f"write {_EXAMPLES['format']}")
    if kind.startswith("model_") or kind == "dict_type":
        return ConfigError(f"must be a table{shown}", file=file, key=key, fix=_EXAMPLES.get(last, "write it as a table"))
    msg = err["msg"].removeprefix("Value error, ")
    return ConfigError(f"{msg}{shown if 'input' not in msg and last not in ('from', 'to') else ''}", file=file,
                       key=key, fix=f"write {_EXAMPLES.get(last, last)}")


def parse_duration(text: Any) -> timedelta:
    """``"30m"``, ``"24h"``, ``"1d"`` -> timedelta; ValueError otherwise."""
    m = _EVERY.match(str(text)) if isinstance(text, str) else None
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration")
    return timedelta(seconds=int(m.group(1)) * _UNIT_SECONDS[m.group(2)])


def raw_section(config: HubConfig) -> Any:
    """The ``[notify]`` table of ``config`` (None when absent), whether or not HubConfig declares it."""
    raw = getattr(config, SECTION, None)
    if raw is None:
        raw = vars(config).get(SECTION)
    return raw


def notify_settings(config: HubConfig, raw: dict[str, Any] | None = None) -> NotifySettings:
    """Check ``[notify]`` (``raw``, else the config's own table) and resolve its secrets.

    Called at start-up, before any request, so that a mistake stops the hub with a ConfigError
    naming the file, the key and the fix. No ``[notify]`` table: nothing is sent.
    """
    if raw is None:
        raw = raw_section(config)
    file = config.file
    if raw is None:
        return NotifySettings()
    if not isinstance(raw, dict):
        raise ConfigError("must be a table", file=file, key=SECTION, fix="write it as [notify]")
    email_raw = raw.get("email")
    if isinstance(email_raw, dict) and "password" in email_raw:
        raise ConfigError("secrets are not written in the config file", file=file, key="notify.email.password",
                          fix='use password_env = "VARIABLE" or password_file = "path" instead')
    try:
        model = _NotifyModel.model_validate(raw)
    except ValidationError as exc:
        raise _config_error(exc, file) from None
    try:
        every = parse_duration(model.reminder_every)
    except ValueError:
        raise ConfigError(f"{model.reminder_every!r} is not a duration", file=file, key="notify.reminder_every",
                          fix='write a whole number and a unit: "12h", "24h" or "1d"') from None
    email = None
    if model.email is not None:
        m, section = model.email, email_raw
        password = None
        if m.username is not None:
            password = config._secret(section, "notify.email", "password", True)
        elif m.password_env or m.password_file:
            raise ConfigError("a password without a username is never used", file=file, key="notify.email.username",
                              fix=f"add {_EXAMPLES['username']}, or remove the password")
        if m.username is not None and not (m.starttls or m.implicit_tls) and m.smtp_host not in _LOOPBACK:
            raise ConfigError(f"the password would cross the network to {m.smtp_host} in clear", file=file,
                              key="notify.email.starttls", fix="set starttls = true (or implicit_tls = true on port 465)")
        if m.smtp_port == 465 and not m.implicit_tls:
            raise ConfigError("port 465 speaks TLS from the first byte", file=file, key="notify.email.smtp_port",
                              fix="add implicit_tls = true, or use smtp_port = 587 with starttls = true")
        ca_file = None
        if m.ca_file is not None:
            path = Path(m.ca_file).expanduser()
            if config.path and not path.is_absolute():
                path = config.path.parent / path
            try:
                ssl.create_default_context(cafile=str(path))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load CA certificates from {path}: {getattr(exc, 'strerror', None) or exc}",
                                  file=file, key="notify.email.ca_file",
                                  fix="point it at a readable PEM file of the relay's CA") from None
            ca_file = str(path)
        email = EmailChannel(m.smtp_host, m.smtp_port, m.starttls, m.username, password, m.sender, tuple(m.to),
                             m.implicit_tls, ca_file)
    hooks = []
    labels: set[str] = set()
    for i, (w, section) in enumerate(zip(model.webhooks, raw.get("webhooks", []))):
        where = f"notify.webhooks[{i}]"
        given = [k for k in ("url", "url_env", "url_file") if getattr(w, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"needs exactly one of url, url_env and url_file, got {', '.join(given) or 'none'}",
                              file=file, key=f"{where}.url_env",
                              fix=f"write {_EXAMPLES['url_env']} (or url_file; url only for format \"json\")")
        if w.url is not None:
            if w.format != "json":
                raise ConfigError(f"a {w.format.title()} webhook URL is a secret and is not written in the config file",
                                  file=file, key=f"{where}.url",
                                  fix='use url_env = "VARIABLE" or url_file = "path" instead')
            url = Secret(w.url, f"{where}.url")
        else:
            url = config._secret({k: v for k, v in section.items() if k != "url"}, where, "url", True)
        if not url.reveal().startswith(("https://", "http://")):
            raise ConfigError(f"the URL from {url.origin} is not an http(s) URL", file=file, key=f"{where}.{given[0]}",
                              fix="give the webhook's full address, starting with https://")
        label = w.name or f"webhook[{i}]"
        if label in labels:
            raise ConfigError(f"another webhook is named {label!r}", file=file, key=f"{where}.name",
                              fix="give each webhook its own name")
        labels.add(label)
        hooks.append(WebhookChannel(label, w.format, url))
    return NotifySettings(email, tuple(hooks), every)


# --- what to tell ----------------------------------------------------------------------------------

_FIX = re.compile(r"\(fix: (.+?)\)\s*$")


def _fixes(reasons: list[str]) -> list[str]:
    out = []
    for reason in reasons:
        m = _FIX.search(reason) or re.search(r"\bfix: (.+)$", reason)
        if m and m.group(1) not in out:
            out.append(m.group(1).strip())
    return out


def _resync(connector: str, stream: str) -> str:
    return f"msp-hub resync --connector {connector} --stream {stream}"


def _failed_passes(report) -> list[tuple[str, str]]:
    out = []
    for name, p in sorted((getattr(report, "passes", None) or {}).items()):
        if (p or {}).get("status") == "failed" and "." in name and not name.startswith("plugin:"):
            connector, stream = name.split(".", 1)
            out.append((connector, stream))
    return out


def _stream_names(hub) -> list[tuple[str, str]]:
    out = []
    for name, connector in sorted(getattr(hub, "connectors", {}).items()):
        try:
            out += [(name, s.name) for s in connector.streams()]
        except Exception:  # a connector that cannot list its streams names none
            continue
    return out


# An msp-hub command quoted in a reason: the command, an optional key (it has ":", "." or "/"),
# then flags with their values; the sentence around it is left out.
_COMMAND = re.compile(r"msp-hub [a-z][\w-]*(?: [^\s;,()-]*[:./][^\s;,().]+[^\s;,()]*)?(?: --[\w-]+(?: (?!--)[^\s;,()]+)?)*")


def _commands(reasons: list[str]) -> list[str]:
    """The msp-hub commands the reasons themselves name (the planner writes the exact release)."""
    out: list[str] = []
    for reason in reasons:
        for m in _COMMAND.finditer(reason):
            command = m.group(0).rstrip(".")
            if command not in out:
                out.append(command)
    return out


def release_command(hub, report, held: dict[str, Any]) -> str:
    """What releases a held action: the command its reason names, else an approval (guardrail,
    review), a resync of the stream it needs (incomplete), or the fix its reason names (error, veto)."""
    cause, key, reasons = held.get("cause"), held.get("key"), list(held.get("reasons") or [])
    text = " ".join(reasons)
    named_commands = _commands(reasons)
    if cause in ("guardrail", "review"):
        return "; ".join(named_commands) or f"msp-hub approve {key}"
    if cause == "incomplete":
        if named_commands:
            return "; ".join(named_commands)
        failed = _failed_passes(report)
        read = [tuple(name.split(".", 1)) for name in sorted(getattr(report, "passes", None) or {}) if "." in name]
        named = [p for p in failed + read + _stream_names(hub) if f"{p[0]}.{p[1]}" in text]
        chosen = list(dict.fromkeys(named)) or failed
        if chosen:
            return "; ".join(_resync(c, s) for c, s in chosen)
        return "msp-hub resync (the reason names no single stream: this re-reads every stream)"
    fixes = _fixes(reasons) or named_commands
    if fixes:
        return "; ".join(fixes)
    if cause == "veto":
        return "the plugin that vetoed it says why above; once that is resolved the next run plans it again"
    return "correct what the reason names; the next run plans it again"


def _amount(total: Any, currency: Any) -> str | None:
    if isinstance(total, int) and not isinstance(total, bool) and isinstance(currency, str) and currency:
        return format_minor(total, currency)
    return None


def collect(hub, report) -> list[dict[str, Any]]:
    """Everything the run holds or failed, as notification items (see the module docstring)."""
    items: list[dict[str, Any]] = []
    for h in getattr(report, "held", None) or []:
        reasons = [str(r) for r in (h.get("reasons") or [])]
        cause = h.get("cause") or "error"
        items.append({"subject": str(h["key"]), "kind": "held", "key": h["key"], "action": h.get("kind"),
                      "client": h.get("client_name") or h.get("client_id"), "client_id": h.get("client_id"),
                      "period": h.get("period"), "total": h.get("total"), "currency": h.get("currency"),
                      "amount": _amount(h.get("total"), h.get("currency")), "cause": cause,
                      "reason": "; ".join(reasons) or "(no reason given)", "reasons": reasons,
                      "release": release_command(hub, report, {**h, "cause": cause})})
    for connector, stream in _failed_passes(report):
        p = report.passes[f"{connector}.{stream}"]
        error = str(p.get("error") or "the read failed")
        items.append({"subject": f"stream:{connector}.{stream}", "kind": "stream", "key": f"{connector}.{stream}",
                      "action": None, "client": None, "client_id": None, "period": None, "total": None,
                      "currency": None, "amount": None, "cause": "stream_failed",
                      "reason": f"{connector}.{stream}: {error}", "reasons": [error],
                      "release": _resync(connector, stream)})
    for f in getattr(report, "failed", None) or []:
        error = str(f.get("error") or "the push failed")
        fixes = _fixes([error])
        release = "; ".join(fixes) if fixes else \
            "the next msp-hub sync retries it (msp-hub actions --status failed lists them)"
        items.append({"subject": f"push:{f['key']}", "kind": "push", "key": f["key"], "action": None,
                      "client": None, "client_id": None, "period": None, "total": None, "currency": None,
                      "amount": None, "cause": "push_failed", "reason": error, "reasons": [error],
                      "release": release})
    return items


_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
_HEX_ID = re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b")


def _stable(text: str) -> str:
    """A reason without what changes from run to run though the reason does not: the moment it
    was seen, the run id, a vendor's request id ("failed at 05:00 (run 3f2a...)" each run)."""
    return _HEX_ID.sub("<id>", _UUID.sub("<id>", _MOMENT.sub("<time>", text)))


def fingerprint(item: dict[str, Any]) -> str:
    """What makes a hold the same hold: its cause, reasons (see ``_stable``), amount and release."""
    basis = {k: item.get(k) for k in ("subject", "cause", "total", "currency", "release")}
    basis["reasons"] = [_stable(r) for r in item.get("reasons") or []]
    return hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _groups(items: list[dict[str, Any]]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """Items grouped by cause (in CAUSES order), then by reason text: (cause, reason, items)."""
    order = {c: i for i, c in enumerate(CAUSES)}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault((item["cause"], item["reason"]), []).append(item)
    return [(c, r, g) for (c, r), g in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1]))]


def _totals(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sums: dict[str, int] = {}
    for i in items:
        if i["kind"] == "held" and i["amount"] is not None:
            sums[i["currency"].upper()] = sums.get(i["currency"].upper(), 0) + i["total"]
    return [{"currency": c, "total": t, "amount": format_minor(t, c)} for c, t in sorted(sums.items())]


def _what(item: dict[str, Any]) -> str:
    if item["kind"] == "held":
        parts = [str(item["client"] or "?")]
        if item.get("client_id") and item["client_id"] != item["client"]:
            parts[0] += f" ({item['client_id']})"
        if item.get("action") and item["action"] != "invoice":   # a ticket, an agreement quantity...
            parts[0] = f"{str(item['action']).replace('_', ' ')} for {parts[0]}"
        if item.get("period"):
            parts.append(str(item["period"]))
        if item["amount"] is not None:
            parts.append(item["amount"])
        return ", ".join(parts) + f" [{item['key']}]"
    if item["kind"] == "push":
        return f"push of {item['key']}"
    return f"stream {item['key']}"


@dataclass
class Message:
    """One notification, rendered per channel from the same items."""

    type: str                     # "held" or "reminder"
    run_id: str | None
    mode: str | None
    started_at: str | None
    items: list[dict[str, Any]]

    @property
    def summary(self) -> str:
        held = [i for i in self.items if i["kind"] == "held"]
        streams = sum(i["kind"] == "stream" for i in self.items)
        pushes = sum(i["kind"] == "push" for i in self.items)
        parts = []
        if held:
            totals = " + ".join(t["amount"] for t in _totals(self.items))
            parts.append(f"{len(held)} still held" if self.type == "reminder" else f"{len(held)} held")
            if totals:
                parts[-1] += f" ({totals})"
        if streams:
            parts.append(f"{streams} stream read{'s' if streams > 1 else ''} failed")
        if pushes:
            parts.append(f"{pushes} push{'es' if pushes > 1 else ''} failed")
        prefix = "msp-hub reminder" if self.type == "reminder" else "msp-hub"
        return f"{prefix}: {', '.join(parts)}"

    def _intro(self) -> str:
        if self.type == "reminder":
            return "These are still held, unchanged since they were first reported. Nothing below was sent."
        when = f", started {self.started_at}" if self.started_at else ""
        return f"Run {self.run_id} ({self.mode}{when}). Nothing below was sent: each entry says why and what releases it."

    def text(self) -> str:
        """The plain-text body (e-mail)."""
        lines = [self.summary, "", self._intro()]
        for cause, reason, group in _groups(self.items):
            releases = {i["release"] for i in group}
            lines += ["", f"== {CAUSES.get(cause, cause)} ==", f"Why: {reason}"]
            for i in group:
                lines.append(f"  - {_what(i)}")
                if self.type == "reminder" and i.get("first_sent_at"):
                    lines.append(f"    first reported: {i['first_sent_at']}")
                if len(releases) > 1:
                    lines.append(f"    release: {i['release']}")
            if len(releases) == 1:
                lines.append(f"Release: {group[0]['release']}")
        return "\n".join(lines) + "\n"

    def json_body(self) -> dict[str, Any]:
        """The documented JSON webhook body (see the module docstring)."""
        keep = ("subject", "kind", "key", "client", "client_id", "period", "total", "currency", "amount", "cause",
                "reason", "reasons", "release")
        return {"type": f"msp-hub.{self.type}", "run_id": self.run_id, "mode": self.mode,
                "started_at": self.started_at, "summary": self.summary,
                "held": sum(i["kind"] == "held" for i in self.items), "totals": _totals(self.items),
                "items": [{k: i.get(k) for k in keep} for i in self.items]}

    def slack_body(self) -> dict[str, Any]:
        """A Slack incoming-webhook body: ``text`` in mrkdwn (also the notification's fallback) and
        blocks (https://api.slack.com/messaging/webhooks, https://api.slack.com/reference/block-kit/blocks)."""
        sections = []
        for cause, reason, group in _groups(self.items):
            releases = {i["release"] for i in group}
            rows = [f"*{_slack(CAUSES.get(cause, cause))}*", f"Why: {_slack(reason)}"]
            for i in group:
                row = f"• {_slack(_what(i))}"
                if len(releases) > 1:
                    row += f"\n    release: {_code(i['release'])}"
                rows.append(row)
            if len(releases) == 1:
                rows.append(f"Release: {_code(group[0]['release'])}")
            sections.append("\n".join(rows))
        text = "\n\n".join([f"*{_slack(self.summary)}*", _slack(self._intro())] + sections)
        # A section block's text holds at most 3000 characters and a message at most 50 blocks.
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": self.summary[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _slack(self._intro())[:3000]}}]
        shown = 0
        for s in sections:
            if len(blocks) + 3 > 50:   # keep room for the "more" line
                break
            blocks += [{"type": "divider"}, {"type": "section", "text": {"type": "mrkdwn", "text": _clip(s, 3000)}}]
            shown += 1
        if shown < len(sections):
            blocks.append({"type": "context", "elements": [
                {"type": "mrkdwn", "text": f"{len(sections) - shown} more groups: see msp-hub actions --status held"}]})
        return {"text": _clip(text, 39000), "blocks": blocks}

    def teams_body(self) -> dict[str, Any]:
        """A Teams webhook body: an Adaptive Card (1.4) in a ``message`` with one attachment.

        This is the format of the Teams Workflows "Post to a channel when a webhook request is
        received" flow, which replaces the retired Office 365 connectors (MessageCard), and which
        the remaining connector webhooks also accept:
        https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using#send-adaptive-cards-using-an-incoming-webhook
        """
        body: list[dict[str, Any]] = [
            {"type": "TextBlock", "text": self.summary, "weight": "Bolder", "size": "Medium", "wrap": True},
            {"type": "TextBlock", "text": self._intro(), "wrap": True, "isSubtle": True}]
        for cause, reason, group in _groups(self.items):
            releases = {i["release"] for i in group}
            body.append({"type": "TextBlock", "text": CAUSES.get(cause, cause), "weight": "Bolder", "wrap": True,
                         "separator": True, "spacing": "Medium"})
            body.append({"type": "TextBlock", "text": f"Why: {reason}", "wrap": True})
            facts = [{"title": _what(i), "value": i["release"] if len(releases) > 1 else ""} for i in group]
            body.append({"type": "FactSet", "facts": facts})
            if len(releases) == 1:
                body.append({"type": "TextBlock", "text": f"Release: {group[0]['release']}", "wrap": True,
                             "fontType": "Monospace"})
        card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                "version": "1.4", "body": body, "msteams": {"width": "Full"}}
        return {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}


def _slack(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(release: str) -> str:
    """A release command as inline code (copied as is); a sentence stays text."""
    parts = [f"`{_slack(p)}`" if p.startswith("msp-hub ") else _slack(p) for p in release.split("; ")]
    return "; ".join(parts)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- delivery --------------------------------------------------------------------------------------

class DeliveryError(Exception):
    """A channel did not take the message; the text names no secret."""


def _redact(text: str, settings: NotifySettings) -> str:
    for s in sorted(settings.secret_values(), key=len, reverse=True):
        if s:
            text = text.replace(s, "[redacted]")
    return text


def send_email(channel: EmailChannel, message: Message) -> None:
    """Send the plain-text message through the MSP's SMTP server (TLS from the first byte with
    ``implicit_tls``, else STARTTLS when set; login when a username is set). The server's
    certificate is verified (against ``ca_file`` when given). A server that does not offer
    STARTTLS when it is required is an error: nothing is sent in clear."""
    mail = EmailMessage()
    mail["Subject"] = message.summary
    mail["From"] = channel.sender
    mail["To"] = ", ".join(channel.to)
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = make_msgid(domain=channel.sender.rsplit("@", 1)[-1])
    mail.set_content(message.text())
    send_mail(channel, mail)


def send_mail(channel: EmailChannel, mail: EmailMessage) -> None:
    """Send a ready ``mail`` (its own From, To and Subject) through the SMTP server of ``channel``,
    as ``send_email`` does: TLS and login as configured, the certificate verified; any failure
    is a DeliveryError naming no secret (the reports' delivery sends its PDFs through it)."""
    try:
        context = ssl.create_default_context(cafile=channel.ca_file)
        if channel.implicit_tls:
            smtp = smtplib.SMTP_SSL(channel.host, channel.port, timeout=SMTP_TIMEOUT, context=context)
        else:
            smtp = smtplib.SMTP(channel.host, channel.port, timeout=SMTP_TIMEOUT)
        with smtp:
            smtp.ehlo()
            if channel.starttls and not channel.implicit_tls:
                smtp.starttls(context=context)
                smtp.ehlo()
            if channel.username is not None:
                smtp.login(channel.username, channel.password.reveal() if channel.password else "")
            refused = smtp.send_message(mail)
    except smtplib.SMTPResponseException as exc:
        detail = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise DeliveryError(f"SMTP {channel.host}:{channel.port} answered {exc.smtp_code}: {detail}") from None
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise DeliveryError(f"SMTP {channel.host}:{channel.port}: {type(exc).__name__}: {exc}") from None
    if refused:
        raise DeliveryError(f"SMTP {channel.host}:{channel.port} refused {', '.join(sorted(refused))}")


def post_webhook(channel: WebhookChannel, message: Message, *, http: httpx.Client | None = None) -> None:
    """POST the message in the channel's format; anything but a 2xx answer is a DeliveryError."""
    body = {"json": message.json_body, "slack": message.slack_body, "teams": message.teams_body}[channel.format]()
    try:
        if http is None:
            with httpx.Client(timeout=WEBHOOK_TIMEOUT, follow_redirects=False,
                              headers={"User-Agent": USER_AGENT}) as client:
                response = client.post(channel.url.reveal(), json=body)
        else:
            response = http.post(channel.url.reveal(), json=body)
    except httpx.HTTPError as exc:   # the exception's text can hold the URL: name its type only
        raise DeliveryError(f"{channel.label}: {type(exc).__name__} (no answer)") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"{channel.label}: HTTP {response.status_code}")


def deliver(settings: NotifySettings, message: Message, *, run_id: str | None = None) -> list[dict[str, Any]]:
    """Send ``message`` on every channel; one result per channel. Failures are logged, never raised."""
    results = []
    channels: list[Any] = ([settings.email] if settings.email else []) + list(settings.webhooks)
    for channel in channels:
        result = {"channel": channel.label, "format": getattr(channel, "format", "email"), "type": message.type,
                  "subject": message.summary, "items": [i["subject"] for i in message.items]}
        try:
            if isinstance(channel, EmailChannel):
                send_email(channel, message)
            else:
                post_webhook(channel, message)
        except Exception as exc:  # one channel's failure must not stop the others, nor the run
            error = _redact(str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}", settings)
            log.error("notify.send_failed", channel=channel.label, format=result["format"], run_id=run_id,
                      items=len(message.items), error=error)
            results.append({**result, "status": "failed", "error": error})
            continue
        log.info("notify.sent", channel=channel.label, format=result["format"], run_id=run_id, type=message.type,
                 items=len(message.items))
        results.append({**result, "status": "sent", "error": None})
    return results


# --- after a run, and reminders --------------------------------------------------------------------

def _settings(hub, settings: NotifySettings | None) -> NotifySettings:
    if settings is not None:
        return settings
    cached = getattr(hub, "notify_settings", None)
    return cached if isinstance(cached, NotifySettings) else notify_settings(hub.config)


def _now(hub) -> datetime:
    clock = getattr(hub, "clock", None)
    return clock() if clock else datetime.now(timezone.utc)


def _resolved(hub, row: dict[str, Any], report=None) -> bool:
    """Whether a notified item is no longer held (then it is forgotten)."""
    item, kind = row["item"], row["kind"]
    store = hub.store
    if kind == "stream":
        connector, stream = item["key"].split(".", 1)
        p = (getattr(report, "passes", None) or {}).get(item["key"])
        if p is not None:
            return p.get("status") == "complete"
        last = (store.stream_states().get((connector, stream)) or {}).get("last")
        return bool(last) and last["status"] == "complete"
    action = store.get_action(item["key"])
    if kind == "push":
        return action is None or action["status"] != "failed"
    if action is not None and (action["status"] in ("sent", "sending", "cancelled")
                               or (action.get("approved") and item["cause"] in ("guardrail", "review"))):
        return True
    if report is not None:   # this run planned the same client's period and did not hold this action
        return any(p.client_id == item.get("client_id") and p.period == item.get("period")
                   and p.kind == item.get("action") for p in getattr(report, "plan", None) or [])
    return False


def notify_run(hub, report, *, settings: NotifySettings | None = None) -> list[dict[str, Any]]:
    """After a recorded run: one message about what it newly held or failed; returns the deliveries.

    Never raises: a wrong setting or a channel that fails is logged (``notify.failed``,
    ``notify.send_failed``) and the run stands. A ``plan`` run (nothing pulled, shown to the
    person who asked for it) sends nothing. A hold already sent and unchanged is not sent
    again; what was sent is remembered only when at least one channel took the message, so a
    failed delivery is tried again after the next run.
    """
    try:
        with _SENDING:
            return _notify_run(hub, report, settings)
    except Exception as exc:  # a notification must never fail a run
        try:
            secrets = _settings(hub, settings)
            error = _redact(str(exc) if isinstance(exc, ConfigError) else repr(exc), secrets)
        except Exception:
            error = str(exc) if isinstance(exc, ConfigError) else type(exc).__name__
        log.error("notify.failed", run_id=getattr(report, "run_id", None), error=error)
        return []


def _notify_run(hub, report, settings: NotifySettings | None) -> list[dict[str, Any]]:
    settings = _settings(hub, settings)
    if not settings.enabled or getattr(report, "mode", None) == "plan":
        return []
    items = collect(hub, report)
    current = {i["subject"] for i in items}
    known = {r["subject"]: r for r in hub.store.notifications()}
    gone = [s for s, r in known.items() if s not in current and _resolved(hub, r, report)]
    if gone:
        hub.store.forget_notifications(gone)
    fresh = [i for i in items if i["subject"] not in known or known[i["subject"]]["fingerprint"] != fingerprint(i)]
    if not fresh:
        return []
    message = Message("held", report.run_id, report.mode,
                      report.started_at.isoformat() if getattr(report, "started_at", None) else None, fresh)
    results = deliver(settings, message, run_id=report.run_id)
    if any(r["status"] == "sent" for r in results):
        at = _now(hub).isoformat()
        for i in fresh:
            hub.store.record_notification(i["subject"], i["kind"], fingerprint(i), i, at, run_id=report.run_id)
    return results


def send_reminders(hub, now: datetime | None = None, *, settings: NotifySettings | None = None) -> list[dict[str, Any]]:
    """Re-send what is still held and was last sent ``reminder_every`` ago or more; forget what is
    no longer held. Returns the deliveries (none when nothing is due). Never raises."""
    try:
        with _SENDING:
            return _send_reminders(hub, now, settings)
    except Exception as exc:
        error = str(exc) if isinstance(exc, ConfigError) else type(exc).__name__
        log.error("notify.reminders_failed", error=error)
        return []


def _send_reminders(hub, now: datetime | None, settings: NotifySettings | None) -> list[dict[str, Any]]:
    settings = _settings(hub, settings)
    now = now or _now(hub)
    rows = hub.store.notifications()
    gone = [r["subject"] for r in rows if _resolved(hub, r)]
    if gone:
        hub.store.forget_notifications(gone)
    if not settings.enabled:
        return []
    due = [r for r in rows if r["subject"] not in gone
           and now - datetime.fromisoformat(r["last_sent_at"]) >= settings.reminder_every]
    if not due:
        return []
    items = [{**r["item"], "first_sent_at": r["first_sent_at"]} for r in due]
    results = deliver(settings, Message("reminder", None, None, None, items))
    if any(r["status"] == "sent" for r in results):
        hub.store.touch_notifications([r["subject"] for r in due], now.isoformat())
    return results
