"""``msp-hub backup``: a consistent copy of the store while the daemon may be running.

SQLite's online backup API (``sqlite3.Connection.backup``) copies the database page by page under a
read transaction: in WAL mode the daemon keeps writing meanwhile, and the copy is the database as
of one commit (nothing half-written). The copy is a single self-contained file (journal mode
DELETE, no ``-wal`` beside it); restoring it is copying it back over the database with the daemon
stopped (and removing the old ``-wal`` and ``-shm`` files).

A PostgreSQL store is not copied: ``pg_dump`` does that (consistent too, under one snapshot), of
the tenant's schema; the command refuses and says so rather than write a file that is not a backup.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from hub.db import is_postgres_url, redact_url
from hub.errors import ConfigError, HubError


class BackupError(HubError):
    """The backup could not be written; the message names the file and the fix."""


def backup_name(database: Path, now: datetime | None = None) -> str:
    """``msp-hub-20261206T230500Z.db`` for ``msp-hub.db``: sorts by time, never overwrites."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"{database.stem}-{stamp}{database.suffix or '.db'}"


def target_path(database: Path, path: str | os.PathLike | None, now: datetime | None = None) -> Path:
    """Where the copy goes: PATH as given, a timestamped file in PATH if it is a folder, or a
    timestamped file next to the database when no PATH is given."""
    if path is None:
        return database.parent / backup_name(database, now)
    target = Path(path)
    if target.is_dir():
        return target / backup_name(database, now)
    return target


def backup_store(database: str | os.PathLike, path: str | os.PathLike | None = None, *,
                 now: datetime | None = None, schema: str | None = None) -> Path:
    """Copy the store at ``database`` to ``path`` (see :func:`target_path`); return the copy's path.
    A PostgreSQL store (``schema``: the tenant's, None: ``public``) is refused: pg_dump backs it up."""
    if is_postgres_url(os.fspath(database)):
        schema = schema or "public"
        url = redact_url(os.fspath(database))
        raise ConfigError(f"the store is the PostgreSQL database {url} (schema {schema}): msp-hub backup copies only "
                          "a SQLite store", key="database",
                          fix=f"back it up with PostgreSQL's pg_dump: pg_dump --schema={schema} --format=custom "
                              f"--file=msp-hub-{schema}.dump '{url}' (restore with pg_restore)")
    if os.fspath(database) == ":memory:":
        raise ConfigError("an in-memory database cannot be backed up", key="database",
                          fix='set database = "path/to/msp-hub.db" in the config')
    source = Path(database)
    if not source.is_file():
        raise ConfigError(f"the database {source} does not exist: nothing to back up", key="database",
                          fix="check database in the config (a relative path is relative to the config file), "
                              "or run a sync first")
    target = target_path(source, path, now)
    if target.exists():
        raise BackupError(f"{target} already exists; a backup never overwrites a file "
                          "(fix: give another PATH, or move that file away)")
    if not target.parent.is_dir():
        raise BackupError(f"the folder {target.parent} does not exist (fix: create it, or give a PATH in an "
                          "existing folder)")
    if target.resolve() == source.resolve():
        raise BackupError(f"{target} is the database itself (fix: give another PATH)")
    partial = target.with_name(target.name + ".partial")
    try:
        src = sqlite3.connect(source, timeout=30)
        try:
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")
                check = dst.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise BackupError(f"the copy of {source} fails SQLite's quick_check: {check} "
                                      "(fix: run `sqlite3 DATABASE 'PRAGMA integrity_check'` on the store)")
            finally:
                dst.close()
        finally:
            src.close()
        os.replace(partial, target)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"could not back up {source} to {target}: {exc} (fix: check that both are readable/"
                          "writable by this user and that the disk has room)") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target
