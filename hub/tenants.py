"""Tenants: one deployment serving many MSPs.

A tenant is one MSP: its own config file (``msp-hub.toml``, with its mappings folder and its
database) and its own secrets. A deployment lists them in ``tenants.toml``::

    [tenants.acme]
    config = "acme/msp-hub.toml"          # relative to tenants.toml
    secrets_file = "acme/secrets.env"     # KEY=value lines; the tenant's secrets, and only its own

    [admin]                               # optional: the one admin API of the deployment's daemon
    host = "127.0.0.1"
    port = 8765
    token_env = "MSP_HUB_ADMIN_TOKEN"     # a deployment token: opens every tenant's paths

    [logging]                             # optional: the daemon's log format and level
    format = "json"

Without ``tenants.toml`` a deployment is one tenant, ``default``, and nothing changes for it.

A tenant's own ``[admin]`` token opens its paths of the admin API (``/tenants/<name>/...``) and
no other's; its ``[admin]`` host and port are not used (the deployment serves one API).

Every tenant's data lives apart: on SQLite, in its own database file (two tenants may not share
one); on PostgreSQL, in its own schema (``tenant_<name>``) of the shared database. A tenant's
secrets come from its ``secrets_file`` only: never from the process environment, so that one
tenant's config cannot name another's variable.

Keys sent to vendors (Stripe's Idempotency-Key and invoice metadata, ConnectWise's externalXRef)
stay what a single hub sends, for every tenant: each is scoped by the vendor account the
tenant's own secrets open (Stripe keys and searches are per account, externalXRef per PSA), so
``load_tenants`` refuses two tenants that share a vendor secret (the same account), and a hub
that becomes a tenant keeps its keys byte-identical: what it planned before the move is found
and never sent twice after it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hub.config import HubConfig, load_config, read_toml
from hub.errors import ConfigError

DEFAULT = "default"
NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
KNOWN_KEYS = {"config", "secrets_file"}
TOP_KEYS = ("tenants", "workers", "admin", "logging")   # [workers]: the Procrastinate workers (hub.workers)
ADMIN_KEYS = ("host", "port", "token_env", "token_file", "session_idle", "session_max")
LOGGING_KEYS = ("format", "level")
TENANTS_ENV, TENANT_ENV = "MSP_HUB_TENANTS", "MSP_HUB_TENANT"   # the CLI's --tenants and --tenant


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


@dataclass(frozen=True)
class Deployment:
    """A ``tenants.toml``: its tenants by name, and its ``[admin]`` and ``[logging]`` tables."""

    path: Path
    tenants: dict[str, Tenant]
    admin: dict[str, Any] = field(default_factory=dict)
    logging: dict[str, Any] = field(default_factory=dict)

    @property
    def file(self) -> str:
        return str(self.path)

    def tenant(self, name: str) -> Tenant:
        """The tenant ``name``; a ConfigError naming the known ones otherwise."""
        if name not in self.tenants:
            raise ConfigError(f"no tenant {name!r}", file=self.file, key=f"tenants.{name}",
                              fix=f"use one of {', '.join(sorted(self.tenants))}, or add [tenants.{name}]")
        return self.tenants[name]

    def token(self):
        """The deployment token of ``[admin]`` (a Secret; None when not set): it opens every tenant."""
        return HubConfig(path=self.path, admin=self.admin).admin_secret(required=False)


def load_deployment(path: str | Path, *, check: bool = True) -> Deployment:
    """Read a ``tenants.toml`` (names, keys, files); with ``check``, load every tenant's config and
    refuse two tenants sharing a SQLite file or a vendor secret (``check_apart``)."""
    path = Path(path)
    raw, _text = read_toml(path, missing_fix="write a tenants.toml with one [tenants.NAME] table per MSP")
    file = str(path)
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}", file=file, key=unknown[0],
                          fix="tenants.toml holds [tenants.NAME] tables, and [admin], [logging] and [workers] tables")
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
    sections: dict[str, dict] = {}
    for section, known in (("admin", ADMIN_KEYS), ("logging", LOGGING_KEYS)):
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError("must be a table", file=file, key=section, fix=f"write [{section}]")
        for key in table:
            if key not in known:
                raise ConfigError(f"unknown key {key!r}", file=file, key=f"{section}.{key}",
                                  fix=f"use one of {', '.join(known)}")
        sections[section] = dict(table)
    deployment = Deployment(path, out, sections["admin"], sections["logging"])
    if check:
        check_apart(deployment)
    return deployment


def load_tenants(path: str | Path) -> dict[str, Tenant]:
    """The tenants of a deployment file, by name (checked: names, keys, files, no shared SQLite
    file, no shared vendor secret)."""
    return load_deployment(path).tenants


def _vendor_secrets(config: HubConfig) -> dict[str, str]:
    """A config's connector secrets and admin token: value -> the key it comes from."""
    out: dict[str, str] = {}
    for name, section in config.connectors.items():
        if not isinstance(section, dict):
            continue
        for key in section:
            for suffix in ("_env", "_file"):
                if key.endswith(suffix):
                    try:
                        secret = config.secret(name, key[: -len(suffix)])
                    except ConfigError:
                        continue
                    out.setdefault(secret.reveal(), f"connectors.{name}.{key}")
    try:
        token = config.admin_secret(required=False)
    except ConfigError:
        token = None
    if token is not None:
        out.setdefault(token.reveal(), "admin.token")
    return out


def check_apart(deployment: Deployment, *, broken: dict[str, ConfigError] | None = None) -> dict[str, HubConfig]:
    """Load every tenant's config and check that no two share what must be the tenant's own:

    - a SQLite database file (each tenant's rows live in its own file; PostgreSQL tenants share a
      database, each in its own schema);
    - a vendor secret or admin token (the same value: the same vendor account, where the keys
      the hub sends would be shared, or a token that would open two tenants), nor the deployment
      token.

    Returns the configs by tenant name; a ConfigError names both tenants, the key and the fix.
    ``broken``: where a tenant whose own config does not load is noted (and left out of the
    check) instead of refusing the whole deployment: its own runs fail with that error, the
    others go on."""
    configs: dict[str, HubConfig] = {}
    files: dict[str, str] = {}
    secrets: dict[str, tuple[str, str]] = {}
    try:   # the daemon needs it (and says so); a command working on one tenant does not
        deployment_token = deployment.token()
    except ConfigError:
        deployment_token = None
    for name, tenant in sorted(deployment.tenants.items()):
        try:
            config = tenant.load_config()
        except ConfigError as exc:
            if broken is None:
                raise
            broken[name] = exc
            continue
        configs[name] = config
        database = str(config.database)
        if not database.startswith(("postgresql://", "postgres://")):
            if database == ":memory:":
                raise ConfigError(f"tenant {name!r} keeps its data in memory", file=config.file, key="database",
                                  fix="give each tenant a database file of its own")
            real = os.path.realpath(database)
            if real in files:
                raise ConfigError(f"tenants {files[real]!r} and {name!r} share the database file {database}",
                                  file=config.file, key="database",
                                  fix=f"give tenant {name!r} a database file of its own, e.g. database = \"{name}.db\"")
            files[real] = name
        for value, key in _vendor_secrets(config).items():
            if deployment_token is not None and value == deployment_token.reveal():
                raise ConfigError(f"tenant {name!r}'s {key} is the deployment's admin token", file=config.file,
                                  key=key, fix="give the tenant a secret of its own")
            if value in secrets and secrets[value][0] != name:
                other, other_key = secrets[value]
                raise ConfigError(f"tenants {other!r} ({other_key}) and {name!r} ({key}) share a secret: one vendor "
                                  f"account or token for two tenants", file=config.file, key=key,
                                  fix=f"give tenant {name!r} its own account's secret in its secrets_file")
            secrets.setdefault(value, (name, key))
    return configs


def find_tenants_file(given: str | None = None, environ: dict[str, str] | None = None) -> str | None:
    """The tenants.toml to use: ``given`` (--tenants), else ``$MSP_HUB_TENANTS``; None without one."""
    env = os.environ if environ is None else environ
    return given or env.get(TENANTS_ENV) or None


def select(tenants_file: str | None, name: str | None, environ: dict[str, str] | None = None) -> Tenant | None:
    """The tenant a command works on: ``name`` (--tenant, else ``$MSP_HUB_TENANT``) of the tenants
    file (--tenants, else ``$MSP_HUB_TENANTS``); None when no tenants file is given (a single
    hub). A tenants file with several tenants needs a name; one with a single tenant picks it."""
    env = os.environ if environ is None else environ
    file = find_tenants_file(tenants_file, env)
    name = name or env.get(TENANT_ENV) or None
    if file is None:
        if name is not None and name != DEFAULT:
            raise ConfigError(f"tenant {name!r} is chosen but no tenants file is given", file=TENANTS_ENV,
                              key="--tenant", fix=f"give --tenants tenants.toml (or set {TENANTS_ENV})")
        return None
    deployment = load_deployment(file)
    if name is None:
        if len(deployment.tenants) != 1:
            raise ConfigError(f"{len(deployment.tenants)} tenants: say which", file=file, key="--tenant",
                              fix=f"give --tenant NAME (or set {TENANT_ENV}), one of "
                                  f"{', '.join(sorted(deployment.tenants))}")
        name = next(iter(deployment.tenants))
    return deployment.tenant(name)


def single(config_path: str | Path) -> dict[str, Tenant]:
    """The one tenant of a deployment without tenants.toml."""
    return {DEFAULT: Tenant(DEFAULT, Path(config_path))}
