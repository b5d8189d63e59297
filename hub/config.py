"""The hub's one TOML config file: load_config(), HubConfig, and secrets from env vars or files.

A secret is never written inline: a key ``client_secret`` is given as ``client_secret_env =
"VAR"`` (an environment variable) or ``client_secret_file = "path"`` (a file, stripped). Its
value is wrapped in ``Secret``, whose repr and str hide it, so it cannot reach a log by accident.
"""

from __future__ import annotations

import os
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from hub.errors import ConfigError

KNOWN_TOP_LEVEL = {"timezone", "database", "mappings", "connectors", "schedule", "logging", "billing", "admin"}


class Secret:
    """A secret value that does not print itself. ``reveal()`` returns it."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str):
        self._value, self.origin = value, origin

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(from {self.origin})"

    __str__ = __repr__


@dataclass
class HubConfig:
    """The loaded config. ``path`` is the file it came from (None when built in code)."""

    path: Path | None = None
    timezone: str = "UTC"
    database: str = "msp-hub.db"
    mappings: Path = Path("mappings")
    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    logging: dict[str, Any] = field(default_factory=dict)
    billing: dict[str, Any] = field(default_factory=dict)
    admin: dict[str, Any] = field(default_factory=dict)
    environ: dict[str, str] | None = None  # for tests; None means os.environ

    @property
    def file(self) -> str:
        return str(self.path) if self.path else "<config>"

    def connector_section(self, name: str) -> dict[str, Any] | None:
        """The ``[connectors.<name>]`` table, or None when that connector is not configured."""
        section = self.connectors.get(name)
        if section is None:
            return None
        if not isinstance(section, dict):
            raise ConfigError("must be a table", file=self.file, key=f"connectors.{name}",
                              fix=f"write it as [connectors.{name}]")
        return section

    def connector_settings(self, name: str, known: Iterable[str], secrets: Iterable[str] = ()) -> dict[str, Any]:
        """The ``[connectors.<name>]`` table, checked: present, and no key outside ``known``.

        ``secrets`` are the secret keys (``api_key``), which ``secret()`` reads from ``<key>_env``
        or ``<key>_file``; writing one inline is left to ``secret()`` to explain.
        """
        section = self.connector_section(name)
        if section is None:
            raise ConfigError("missing", file=self.file, key=f"connectors.{name}", fix=f"add a [connectors.{name}] table")
        allowed = set(known) | set(secrets)
        for key in section:
            if key not in allowed:
                raise ConfigError(f"unknown key '{key}'", file=self.file, key=f"connectors.{name}.{key}",
                                  fix=f"use one of {', '.join(sorted(set(known)))}")
        return section

    def secret(self, connector: str, key: str, *, required: bool = True) -> Secret | None:
        """Resolve ``<key>_env`` or ``<key>_file`` of ``[connectors.<connector>]`` to a Secret."""
        return self._secret(self.connector_section(connector) or {}, f"connectors.{connector}", key, required)

    def admin_secret(self, key: str = "token", *, required: bool = True) -> Secret | None:
        """Resolve ``<key>_env`` or ``<key>_file`` of ``[admin]`` (the admin API's token) to a Secret."""
        return self._secret(self.admin, "admin", key, required)

    def _secret(self, section: dict[str, Any], table: str, key: str, required: bool) -> Secret | None:
        where = f"{table}.{key}"
        if key in section:
            raise ConfigError("secrets are not written in the config file", file=self.file, key=where,
                              fix=f"use {key}_env = \"VARIABLE\" or {key}_file = \"path\" instead")
        env = self.environ if self.environ is not None else os.environ
        if f"{key}_env" in section:
            var = section[f"{key}_env"]
            value = env.get(str(var))
            if not value:
                raise ConfigError(f"environment variable {var} is not set or empty", file=self.file,
                                  key=f"{where}_env", fix=f"export {var}=... before starting msp-hub")
            return Secret(value, f"${var}")
        if f"{key}_file" in section:
            p = Path(str(section[f"{key}_file"])).expanduser()
            if self.path and not p.is_absolute():
                p = self.path.parent / p
            try:
                value = p.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read secret file {p}: {exc.strerror}", file=self.file,
                                  key=f"{where}_file", fix="point it at a readable file") from None
            if not value:
                raise ConfigError(f"secret file {p} is empty", file=self.file, key=f"{where}_file",
                                  fix="write the secret into that file")
            return Secret(value, str(p))
        if required:
            raise ConfigError("missing secret", file=self.file, key=where,
                              fix=f"set {key}_env = \"VARIABLE\" or {key}_file = \"path\"")
        return None

    def secret_values(self) -> list[str]:
        """Every configured secret's value (for redaction); unreadable ones are skipped."""
        values = []
        for name, section in self.connectors.items():
            if not isinstance(section, dict):
                continue
            for k in section:
                for suffix in ("_env", "_file"):
                    if k.endswith(suffix):
                        try:
                            s = self.secret(name, k[: -len(suffix)])
                        except ConfigError:
                            continue
                        values.append(s.reveal())
        if "token_env" in self.admin or "token_file" in self.admin:
            try:
                values.append(self.admin_secret().reveal())
            except ConfigError:
                pass
        return values


def load_config(path: str | Path, *, environ: dict[str, str] | None = None) -> HubConfig:
    """Read and validate the config file; relative paths in it are relative to the file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path),
                          fix="pass --config PATH, or copy examples/msp-hub.toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path),
                          fix="correct the syntax at that line") from None
    return config_from_dict(raw, path=path, environ=environ)


def config_from_dict(raw: dict[str, Any], *, path: Path | None = None,
                     environ: dict[str, str] | None = None) -> HubConfig:
    """Validate a parsed config table into a HubConfig."""
    file = str(path) if path else "<config>"
    unknown = sorted(set(raw) - KNOWN_TOP_LEVEL)
    if unknown:
        raise ConfigError(f"unknown key '{unknown[0]}'", file=file, key=unknown[0],
                          fix=f"use one of {', '.join(sorted(KNOWN_TOP_LEVEL))}")
    base = path.parent if path else Path.cwd()
    tz = raw.get("timezone", "UTC")
    try:
        zoneinfo.ZoneInfo(str(tz))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {tz!r}", file=file, key="timezone",
                          fix="use an IANA name such as \"Europe/Paris\"") from None
    for key in ("connectors", "schedule", "logging", "billing", "admin"):
        if key in raw and not isinstance(raw[key], dict):
            raise ConfigError("must be a table", file=file, key=key, fix=f"write it as [{key}]")
    database = str(raw.get("database", "msp-hub.db"))
    if database != ":memory:" and not Path(database).is_absolute():
        database = str(base / database)
    mappings = Path(str(raw.get("mappings", "mappings")))
    if not mappings.is_absolute():
        mappings = base / mappings
    return HubConfig(path=path, timezone=str(tz), database=database, mappings=mappings,
                     connectors=dict(raw.get("connectors", {})), schedule=dict(raw.get("schedule", {})),
                     logging=dict(raw.get("logging", {})), billing=dict(raw.get("billing", {})),
                     admin=dict(raw.get("admin", {})), environ=environ)
