"""Tenants: one deployment serving many MSPs.

A tenant is one MSP: its own config file (``msp-hub.toml``, with its mappings folder and its
database) and its own secrets. A deployment lists them in ``tenants.toml``::

    [tenants.acme]
    config = "acme/msp-hub.toml"          # relative to tenants.toml
    secrets_file = "acme/secrets.env"     # KEY=value lines; the tenant's secrets, and only its own

Without ``tenants.toml`` a deployment is one tenant, ``default``, and nothing changes for it.

Every tenant's data lives apart: on SQLite, in its own database file (two tenants may not share
one); on PostgreSQL, in its own schema (``tenant_<name>``) of the shared database. A tenant's
secrets come from its ``secrets_file`` only: never from the process environment, so that one
tenant's config cannot name another's variable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from hub.config import HubConfig, load_config, read_toml
from hub.errors import ConfigError

DEFAULT = "default"
NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
KNOWN_KEYS = {"config", "secrets_file"}


def check_name(name: str, *, file: str = "<tenants>") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"invalid tenant name {name!r}", file=file, key=f"tenants.{name}",
                          fix="use lower-case letters, digits and dashes, starting with a letter (at most 40)")
    return name


def schema_of(tenant: str) -> str | None:
    """The PostgreSQL schema holding a tenant's data (None: the default tenant's, ``public``)."""
    return None if tenant == DEFAULT else "tenant_" + tenant.replace("-", "_")


def read_secrets(path: Path, *, file: str, key: str) -> dict[str, str]:
    """``KEY=value`` lines (``#`` comments, blank lines, optional ``export`` and quotes)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the secrets file {path}: {exc.strerror}", file=file, key=key,
                          fix="point it at a readable file of KEY=value lines") from None
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].strip()
        name, sep, value = line.partition("=")
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name.strip()):
            raise ConfigError(f"line {number} of {path} is not KEY=value", file=file, key=key,
                              fix="write one NAME=value per line")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[name.strip()] = value
    return out


@dataclass(frozen=True)
class Tenant:
    name: str
    config_path: Path
    secrets_file: Path | None = None

    @property
    def schema(self) -> str | None:
        return schema_of(self.name)

    def environ(self) -> dict[str, str] | None:
        """The tenant's secrets (None for the default tenant: the process environment)."""
        if self.secrets_file is None:
            return None if self.name == DEFAULT else {}
        return read_secrets(self.secrets_file, file=str(self.config_path), key="secrets_file")

    def load_config(self, *, environ: dict[str, str] | None = None) -> HubConfig:
        config = load_config(self.config_path, environ=environ if environ is not None else self.environ())
        return replace(config, tenant=self.name)


def load_tenants(path: str | Path) -> dict[str, Tenant]:
    """The tenants of a deployment file, by name (checked: names, keys, files, no shared SQLite file)."""
    path = Path(path)
    raw, _text = read_toml(path, missing_fix="write a tenants.toml with one [tenants.NAME] table per MSP")
    file = str(path)
    unknown = set(raw) - {"tenants", "workers"}   # [workers]: the Procrastinate workers (hub.workers)
    if unknown:
        raise ConfigError(f"unknown key {sorted(unknown)[0]!r}", file=file, key=sorted(unknown)[0],
                          fix="tenants.toml holds [tenants.NAME] tables and a [workers] table")
    tables = raw.get("tenants")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError("no tenant", file=file, key="tenants", fix="add a [tenants.NAME] table with config = \"...\"")
    out: dict[str, Tenant] = {}
    for name, table in tables.items():
        check_name(name, file=file)
        if not isinstance(table, dict):
            raise ConfigError("must be a table", file=file, key=f"tenants.{name}", fix=f"write [tenants.{name}]")
        for key in table:
            if key not in KNOWN_KEYS:
                raise ConfigError(f"unknown key {key!r}", file=file, key=f"tenants.{name}.{key}",
                                  fix=f"use one of {', '.join(sorted(KNOWN_KEYS))}")
        if "config" not in table:
            raise ConfigError("missing", file=file, key=f"tenants.{name}.config",
                              fix="point it at the tenant's msp-hub.toml")
        config = Path(str(table["config"]))
        config = config if config.is_absolute() else path.parent / config
        secrets = table.get("secrets_file")
        secrets = None if secrets is None else (Path(str(secrets)) if Path(str(secrets)).is_absolute()
                                                else path.parent / str(secrets))
        out[name] = Tenant(name, config, secrets)
    return out


def single(config_path: str | Path) -> dict[str, Tenant]:
    """The one tenant of a deployment without tenants.toml."""
    return {DEFAULT: Tenant(DEFAULT, Path(config_path))}
