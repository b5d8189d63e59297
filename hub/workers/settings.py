"""``[workers]`` in tenants.toml: where the Procrastinate queue lives and how workers run.

::

    [workers]
    database = "postgresql://msp_hub@db.internal:5432/msp_hub"   # no password here
    database_password_env = "MSP_HUB_QUEUE_PASSWORD"             # or database_password_file, or PGPASSWORD
    concurrency = 1            # runs at a time in one worker process (one tenant each)
    heartbeat = "10s"          # how often a worker says it is alive
    stalled_after = "60s"      # a worker silent this long is dead: its jobs are run again elsewhere
    tick = "* * * * *"         # when the tenants' [schedule]s are read (a 6th field counts seconds)
    keep_jobs = "7d"           # finished jobs are deleted from the queue after this long (failed ones stay)

The queue's database is PostgreSQL only: Procrastinate keeps its jobs, locks and periodic
deferrals there (no other broker). A password never sits in the file: it comes from the variable
``database_password_env`` names, the file ``database_password_file`` names (its first line), or
libpq's own ``PGPASSWORD``/``.pgpass``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hub.config import read_toml
from hub.daemon import parse_every
from hub.errors import ConfigError
from hub.tenants import Tenant, check_apart
from hub.tenants import load_deployment as tenants_deployment

KEYS = ("database", "database_password_env", "database_password_file", "concurrency", "heartbeat",
        "stalled_after", "tick", "keep_jobs")
DEFAULT_HEARTBEAT = 10
DEFAULT_STALLED_AFTER = 60
DEFAULT_TICK = "* * * * *"
DEFAULT_KEEP_JOBS = 7 * 86400
MAX_CONCURRENCY = 64


@dataclass(frozen=True)
class WorkerSettings:
    """The checked ``[workers]`` table (``password`` stays out of repr and logs)."""

    file: str
    database: str                       # the URL as written (no password)
    password: str | None = None
    concurrency: int = 1
    heartbeat: int = DEFAULT_HEARTBEAT            # seconds
    stalled_after: int = DEFAULT_STALLED_AFTER    # seconds
    tick: str = DEFAULT_TICK
    keep_jobs: int = DEFAULT_KEEP_JOBS            # seconds

    def __repr__(self) -> str:
        return (f"WorkerSettings(file={self.file!r}, database={self.database!r}, concurrency={self.concurrency}, "
                f"heartbeat={self.heartbeat}, stalled_after={self.stalled_after}, tick={self.tick!r})")

    def conninfo(self) -> str:
        """The libpq connection string, the password added when one was given."""
        from psycopg.conninfo import make_conninfo
        return make_conninfo(self.database, password=self.password) if self.password else self.database


def _seconds(table: dict[str, Any], key: str, default: int, file: str) -> int:
    value = table.get(key)
    if value is None:
        return default
    try:
        return parse_every(value) if isinstance(value, str) else int("x")
    except ValueError:
        raise ConfigError(f"{value!r} is not a duration", file=file, key=f"workers.{key}",
                          fix=f'write a whole number and a unit (s, m, h or d), e.g. {key} = "{default}s"') from None


def parse_workers(table: Any, *, file: str, base: Path, environ: dict[str, str] | None = None) -> WorkerSettings:
    """Check a ``[workers]`` table; a ConfigError names the key and the fix."""
    env = os.environ if environ is None else environ
    if not isinstance(table, dict):
        raise ConfigError("must be a table", file=file, key="workers", fix="write [workers] with database = \"postgresql://...\"")
    for key in table:
        if key not in KEYS:
            raise ConfigError(f"unknown key '{key}'", file=file, key=f"workers.{key}", fix=f"use one of {', '.join(KEYS)}")
    database = table.get("database")
    if not isinstance(database, str) or not database:
        raise ConfigError("missing", file=file, key="workers.database",
                          fix='name the PostgreSQL database of the queue: database = "postgresql://user@host:5432/msp_hub"')
    parts = urlsplit(database)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"{parts.scheme or database!r} is not PostgreSQL: the workers' queue lives in PostgreSQL only",
                          file=file, key="workers.database",
                          fix='write database = "postgresql://user@host:5432/msp_hub"')
    if parts.password is not None or "password=" in parts.query:
        raise ConfigError("holds a password", file=file, key="workers.database",
                          fix="remove it from the URL and set database_password_env (or database_password_file, "
                              "or PGPASSWORD) instead")
    password = None
    if "database_password_env" in table and "database_password_file" in table:
        raise ConfigError("database_password_env and database_password_file are both set", file=file,
                          key="workers.database_password_file", fix="keep one of them")
    if "database_password_env" in table:
        name = table["database_password_env"]
        if not isinstance(name, str) or not name:
            raise ConfigError("must be the name of an environment variable", file=file,
                              key="workers.database_password_env", fix='write database_password_env = "MSP_HUB_QUEUE_PASSWORD"')
        password = env.get(name)
        if not password:
            raise ConfigError(f"the environment variable {name} is not set", file=file,
                              key="workers.database_password_env",
                              fix=f"export {name}=... in the worker's environment (e.g. its EnvironmentFile)")
    if "database_password_file" in table:
        raw = table["database_password_file"]
        path = Path(str(raw)) if Path(str(raw)).is_absolute() else base / str(raw)
        try:
            password = (path.read_text().splitlines() or [""])[0].strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}", file=file, key="workers.database_password_file",
                              fix="point it at a readable file whose first line is the password") from None
        if not password:
            raise ConfigError(f"{path} is empty", file=file, key="workers.database_password_file",
                              fix="write the password on its first line")
    concurrency = table.get("concurrency", 1)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ConfigError(f"must be a whole number from 1 to {MAX_CONCURRENCY}, got {concurrency!r}", file=file,
                          key="workers.concurrency", fix="write concurrency = 1 (one run at a time in each worker)")
    heartbeat = _seconds(table, "heartbeat", DEFAULT_HEARTBEAT, file)
    stalled = _seconds(table, "stalled_after", DEFAULT_STALLED_AFTER, file)
    if stalled < 2 * heartbeat:
        raise ConfigError(f"stalled_after ({stalled} s) must be at least twice heartbeat ({heartbeat} s)", file=file,
                          key="workers.stalled_after",
                          fix=f'write stalled_after = "{max(DEFAULT_STALLED_AFTER, 3 * heartbeat)}s"')
    tick = table.get("tick", DEFAULT_TICK)
    if not isinstance(tick, str) or len(tick.split()) not in (5, 6) or not _valid_cron(tick):
        raise ConfigError(f"{tick!r} is not a crontab line", file=file, key="workers.tick",
                          fix=f'write tick = "{DEFAULT_TICK}" (every minute; a 6th field counts seconds)')
    keep = _seconds(table, "keep_jobs", DEFAULT_KEEP_JOBS, file)
    if keep < 3600:
        raise ConfigError(f"keep_jobs ({keep} s) is shorter than an hour", file=file, key="workers.keep_jobs",
                          fix='write keep_jobs = "7d"')
    return WorkerSettings(file, database, password, concurrency, heartbeat, stalled, tick, keep)


def _valid_cron(expr: str) -> bool:
    import croniter
    return croniter.croniter.is_valid(expr)


@dataclass(frozen=True)
class Deployment:
    """tenants.toml: its tenants and its ``[workers]``. ``tenants()`` reads the file again (and
    checks the tenants apart), so that a tenant added while the workers run is scheduled at the
    next tick; ``tenant(name)`` reads it again without loading every tenant's config (a job's
    tenant was checked by the tick or the command that deferred it)."""

    path: Path
    settings: WorkerSettings

    def tenants(self) -> dict[str, Tenant]:
        return checked_tenants(self.path)

    def tenant(self, name: str) -> Tenant:
        return tenants_deployment(self.path, check=False).tenant(name)


def checked_tenants(path: str | Path) -> dict[str, Tenant]:
    """The tenants of tenants.toml, checked apart (no shared file or secret); a tenant whose own
    config is broken stays listed: its runs fail with its error, the other tenants' go on."""
    deployment = tenants_deployment(path, check=False)
    check_apart(deployment, broken={})
    return deployment.tenants


def load_deployment(path: str | Path, *, environ: dict[str, str] | None = None) -> Deployment:
    """tenants.toml with its ``[workers]`` table checked (a ConfigError when it is missing)."""
    path = Path(path)
    checked_tenants(path)                    # the tenants checked first, with their own messages
    raw, _text = read_toml(path, missing_fix="write a tenants.toml with [tenants.NAME] tables and a [workers] table")
    if "workers" not in raw:
        raise ConfigError("no [workers] table", file=str(path), key="workers",
                          fix='add [workers] with database = "postgresql://user@host:5432/msp_hub"')
    return Deployment(path, parse_workers(raw["workers"], file=str(path), base=path.parent, environ=environ))
