"""``msp-hub check``: one cheap authenticated request per configured connector, before a first sync.

Each connector's optional ``check()`` (see ``hub.connectors.Connector``) sends one request, tried
once. A failure is reported with the connector, the HTTP status (None: no answer), the vendor's
message and the fix: which config key or secret to look at.
"""

from __future__ import annotations

from typing import Any

from hub.errors import CredentialsError, HubError, VendorError


def _secret_keys(section: dict[str, Any], connector: str) -> str:
    """The config keys that hold the connector's secrets (``*_env``/``*_file``), with where they point."""
    keys = [f"connectors.{connector}.{k} ({v if k.endswith('_file') else '$' + str(v)})"
            for k, v in sorted(section.items()) if k.endswith(("_env", "_file"))]
    return " and ".join(keys) or f"the secrets of [connectors.{connector}]"


def _address_key(section: dict[str, Any], connector: str) -> str:
    for key in ("base_url", "site"):
        if key in section:
            return f"connectors.{connector}.{key} (now {section[key]!r})"
    return f"connectors.{connector}.base_url (the vendor's default address now)"


def fix_for(config, connector: str, exc: BaseException) -> str:
    """What to change for a failed check of ``connector``: the config key or secret involved."""
    section = config.connector_section(connector) or {}
    status = getattr(exc, "status", None)
    if isinstance(exc, CredentialsError) or status in (401, 403):
        return (f"check {_secret_keys(section, connector)}, and the other identifiers of "
                f"[connectors.{connector}] (client or company id, keys, scope): the vendor refused them")
    if status is None and isinstance(exc, VendorError):
        return f"check {_address_key(section, connector)} and that this host can reach it"
    if status == 404:
        return f"check {_address_key(section, connector)}: the vendor has no such API there"
    if isinstance(exc, VendorError):
        return "the vendor's message says what is wrong; try again later if it is a 429 or a 5xx"
    return f"the {connector} plugin failed: report it with the message above"


def check_connectors(hub, connectors: list[str] | None = None) -> list[dict[str, Any]]:
    """Run every configured connector's ``check()`` (or those named); one dict per connector:
    ``connector``, ``ok`` (True, False, or None when it has no check), ``request`` (what was
    sent), ``status`` (HTTP status of a failure, None when no answer), ``message`` and ``fix``."""
    out: list[dict[str, Any]] = []
    for name, connector in sorted(hub.connectors.items()):
        if connectors and name not in connectors:
            continue
        row: dict[str, Any] = {"connector": name, "ok": None, "request": None, "status": None,
                               "message": None, "fix": None}
        check = getattr(connector, "check", None)
        if check is None:
            row["message"] = "this connector offers no check(); its first sync tests its credentials"
            out.append(row)
            continue
        try:
            row["request"] = check()
            row["ok"] = True
        except VendorError as exc:
            row.update(ok=False, status=exc.status, request=f"{exc.method} {exc.url}",
                       message=exc.detail or str(exc), fix=fix_for(hub.config, name, exc))
        except HubError as exc:
            row.update(ok=False, message=str(exc), fix=fix_for(hub.config, name, exc))
        except Exception as exc:   # a plugin's own bug: named, not a traceback
            row.update(ok=False, message=f"{exc.__class__.__name__}: {exc}", fix=fix_for(hub.config, name, exc))
        out.append(row)
    return out
