"""The store's two backends: SQLite (embedded, the default) and PostgreSQL (psycopg 3, for scale).

Both offer the same small surface, which is all the Store uses, so that its SQL is written once:

- ``query(sql, args)``: the rows as dicts;
- ``execute(sql, args)``: a cursor (iterable of tuples, ``fetchone()``, ``fetchall()``, ``rowcount``);
- ``executemany(sql, rows)``;
- ``with db.atomic():`` a transaction (nested blocks are savepoints);
- ``with db.exclusive(name):`` a transaction that holds a lock named ``name`` against every other
  connection (SQLite: ``BEGIN IMMEDIATE``, the whole file; PostgreSQL: a transaction-level
  advisory lock, released at commit or rollback);
- ``close()``.

The SQL is portable: ``?`` placeholders, identifiers bare or in double quotes, ``INSERT ... ON
CONFLICT (cols) DO UPDATE / DO NOTHING``, ``RETURNING``, no SQLite-only function.

SQLite is sqlite-utils' ``Database`` (its table helpers stay available to the tests). On
PostgreSQL the schema is made from the same sqlite-utils migrations (:func:`sync_schema`): they run
on an in-memory SQLite database, whose tables, columns, types, primary keys and indexes are then
created in the PostgreSQL schema; text columns are ``COLLATE "C"`` (bytewise, as SQLite orders and
compares), integers ``bigint``, an ``INTEGER`` primary key an identity column.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

from sqlite_utils import Database

MIGRATIONS_TABLE = "_hub_migrations"


def is_postgres_url(database: object) -> bool:
    return isinstance(database, str) and database.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """``url`` without any password it holds (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = (f"{parts.username}:***@" if parts.username else ":***@") + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def url_has_password(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.password is not None or bool(re.search(r"(^|[?&])password=", parts.query))


# --- SQLite ------------------------------------------------------------------------------------


class SqliteDatabase(Database):
    """sqlite-utils' Database with the backends' common surface."""

    backend = "sqlite"
    schema = None

    def executemany(self, sql: str, rows: Iterable) -> sqlite3.Cursor:
        return self.conn.executemany(sql, rows)

    @contextmanager
    def exclusive(self, name: str) -> Iterator["SqliteDatabase"]:
        """A write transaction taken at once (``BEGIN IMMEDIATE``): one writer at a time on the file."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if conn.in_transaction:
            conn.execute("COMMIT")


# --- PostgreSQL --------------------------------------------------------------------------------


_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")


def to_pyformat(sql: str) -> str:
    """``?`` placeholders (outside quotes) as psycopg's ``%s``, and ``%`` escaped as ``%%``."""
    def sub(m: re.Match) -> str:
        t = m.group(0)
        if t == "?":
            return "%s"
        if t == "%":
            return "%%"
        return t.replace("%", "%%")
    return _TOKENS.sub(sub, sql)


class _Result:
    """A fetched statement's rows (tuples) and row count: the part of a DB-API cursor the store uses."""

    __slots__ = ("rows", "rowcount", "description", "_i")

    def __init__(self, rows: list[tuple], rowcount: int, description):
        self.rows, self.rowcount, self.description, self._i = rows, rowcount, description, 0

    def __iter__(self):
        return iter(self.rows)

    def fetchone(self):
        if self._i < len(self.rows):
            self._i += 1
            return self.rows[self._i - 1]
        return None

    def fetchall(self) -> list[tuple]:
        out, self._i = self.rows[self._i:], len(self.rows)
        return out


class _PgTable:
    """What tests read of a table on either backend: ``rows`` (dicts) and ``count``."""

    def __init__(self, db: "PostgresDatabase", name: str):
        self.db, self.name = db, name

    @property
    def rows(self) -> Iterator[dict]:
        return self.db.query(f'select * from "{self.name}"')

    @property
    def count(self) -> int:
        return self.db.execute(f'select count(*) from "{self.name}"').fetchone()[0]

    def exists(self) -> bool:
        return self.name in self.db.table_names()

    @property
    def pks(self) -> list[str]:
        return [r["attname"] for r in self.db.query(
            "select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid "
            "and a.attnum = any(i.indkey) where i.indrelid = to_regclass(?) and i.indisprimary "
            "order by array_position(i.indkey, a.attnum)", [f'"{self.db.schema}"."{self.name}"'])]

    def update(self, pk, values: dict) -> "_PgTable":
        """sqlite-utils' ``table.update(pk, {...})``: set ``values`` on the row whose primary key is
        ``pk`` (a value, or a tuple for a compound key)."""
        keys = pk if isinstance(pk, (tuple, list)) else (pk,)
        sets = ", ".join(f"{_q(n)} = ?" for n in values)
        where = " AND ".join(f"{_q(n)} = ?" for n in self.pks)
        self.db.execute(f"UPDATE {_q(self.name)} SET {sets} WHERE {where}", [*values.values(), *keys])
        return self


def _loose_dumpers(conn) -> None:
    """Python ints and bools are sent as untyped literals, which PostgreSQL types by where they go
    (an integer column, a text column, a LIMIT), as SQLite's type affinity does; a bool is 1 or 0,
    as SQLite stores it."""
    from psycopg.adapt import Dumper

    class LooseInt(Dumper):
        oid = 0

        def dump(self, obj):
            return str(int(obj)).encode()

    conn.adapters.register_dumper(int, LooseInt)
    conn.adapters.register_dumper(bool, LooseInt)


def advisory_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for ``parts`` (the schema and the lock's name)."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresDatabase:
    """One psycopg connection (autocommit outside ``atomic()``), in ``schema`` (created when missing,
    first on the ``search_path``). Shared between threads: every statement, and every transaction
    as a whole, holds the connection's lock."""

    backend = "postgres"

    def __init__(self, url: str, *, schema: str | None = None, password: str | None = None):
        import psycopg
        self.url = url
        self.schema = schema or "public"
        self._lock = threading.RLock()
        self._sql_cache: dict[str, str] = {}
        kwargs: dict[str, Any] = {"autocommit": True}
        if password is not None:
            kwargs["password"] = password
        try:
            self.conn = psycopg.connect(url, **kwargs)
        except psycopg.OperationalError as exc:
            from hub.errors import ConfigError
            raise ConfigError(f"cannot connect to the PostgreSQL database {redact_url(url)}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__}",
                              key="database", fix="check that the server runs and the URL (host, port, user, "
                              "database) and password (database_password_env / database_password_file or "
                              "PGPASSWORD) are right") from None
        _loose_dumpers(self.conn)
        quoted = '"' + self.schema.replace('"', '""') + '"'
        if self.conn.execute("select to_regnamespace(%s)", [quoted]).fetchone()[0] is None:
            with self.conn.transaction():
                # Two processes creating the same schema at once: one waits for the other.
                self.conn.execute("select pg_advisory_xact_lock(%s)", [advisory_key("schema", self.schema)])
                self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        self.conn.execute(f"SET search_path TO {quoted}")

    # --- the common surface ----------------------------------------------------------------------

    def _sql(self, sql: str) -> str:
        out = self._sql_cache.get(sql)
        if out is None:
            out = self._sql_cache[sql] = to_pyformat(sql)
        return out

    def execute(self, sql: str, args: Iterable = ()) -> _Result:
        with self._lock:
            cur = self.conn.execute(self._sql(sql), list(args))
            rows = cur.fetchall() if cur.description else []
            return _Result(rows, cur.rowcount, cur.description)

    def query(self, sql: str, args: Iterable = ()) -> Iterator[dict]:
        from psycopg.rows import dict_row
        with self._lock:
            cur = self.conn.cursor(row_factory=dict_row)
            rows = cur.execute(self._sql(sql), list(args)).fetchall()
        return iter(rows)

    def executemany(self, sql: str, rows: Iterable) -> None:
        rows = [list(r) for r in rows]
        if not rows:
            return
        with self._lock:
            with self.conn.cursor() as cur:
                cur.executemany(self._sql(sql), rows)

    @contextmanager
    def atomic(self) -> Iterator["PostgresDatabase"]:
        with self._lock:
            with self.conn.transaction():
                yield self

    @contextmanager
    def exclusive(self, name: str) -> Iterator["PostgresDatabase"]:
        """A transaction holding the advisory lock ``name`` of this schema: every connection to the
        database (any process, any machine) taking the same one waits for its commit."""
        with self.atomic():
            self.conn.execute("select pg_advisory_xact_lock(%s)", [advisory_key(self.schema, name)])
            yield self

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # --- helpers -----------------------------------------------------------------------------------

    def table_names(self) -> list[str]:
        return [r["table_name"] for r in self.query(
            "select table_name from information_schema.tables where table_schema = ? order by table_name",
            [self.schema])]

    def __getitem__(self, table: str) -> _PgTable:
        return _PgTable(self, table)


# --- one schema from the sqlite-utils migrations --------------------------------------------------


def sqlite_schema(migrations) -> dict[str, dict]:
    """The tables the migrations make, read from an in-memory SQLite database: per table, its
    ``columns`` (name, declared type, not null, default SQL, primary key position) in order and its
    ``indexes`` (name, columns, unique)."""
    mem = Database(memory=True)
    try:
        migrations.apply(mem)
        out: dict[str, dict] = {}
        for (name,) in mem.execute("select name from sqlite_master where type = 'table' and name not like 'sqlite_%' "
                                   "and name != ? order by name", [migrations.migrations_table]).fetchall():
            cols = [{"name": r[1], "type": (r[2] or "").upper(), "notnull": bool(r[3]), "default": r[4], "pk": r[5]}
                    for r in mem.execute(f'PRAGMA table_info("{name}")').fetchall()]
            indexes = []
            for r in mem.execute(f'PRAGMA index_list("{name}")').fetchall():
                index, unique, origin = r[1], bool(r[2]), r[3]
                if origin != "c":
                    continue
                icols = [c[2] for c in sorted(mem.execute(f'PRAGMA index_info("{index}")').fetchall())]
                indexes.append({"name": index, "columns": icols, "unique": unique})
            out[name] = {"columns": cols, "indexes": indexes}
        return out
    finally:
        mem.close()


_PG_TYPES = {"TEXT": 'text COLLATE "C"', "INTEGER": "bigint", "INT": "bigint", "FLOAT": "double precision",
             "REAL": "double precision", "BLOB": "bytea", "": 'text COLLATE "C"'}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _column_sql(col: dict, *, identity: bool = False) -> str:
    if identity:
        return f"{_q(col['name'])} bigint GENERATED BY DEFAULT AS IDENTITY"
    sql = f"{_q(col['name'])} {_PG_TYPES.get(col['type'], _PG_TYPES['TEXT'])}"
    if col["default"] is not None:
        sql += f" DEFAULT {col['default']}"
    if col["notnull"]:
        sql += " NOT NULL"
    return sql


def _index_name(name: str) -> str:
    """PostgreSQL keeps 63 bytes of a name: a longer one keeps its start and a hash of the whole."""
    if len(name.encode()) <= 63:
        return name
    return name[:54] + "_" + hashlib.blake2b(name.encode(), digest_size=4).hexdigest()


def sync_schema(db: PostgresDatabase, migrations, data_steps: dict[str, Callable] | None = None) -> list[str]:
    """Bring ``db``'s schema to what ``migrations`` make; return the migrations newly recorded.

    Nothing is read or changed when every migration is recorded in ``_hub_migrations`` (a restart).
    Otherwise, in one transaction holding the schema's advisory lock (two processes starting at
    once: the second finds everything done): the missing tables are created, missing columns added
    and missing indexes created, then each new migration's data step (``data_steps``: name ->
    function of the db, portable SQL) runs and the migration is recorded. What this does not do: a
    migration's data change is not read from the sqlite-utils function (only its tables, columns and
    indexes are); a migration that rewrites rows registers a data step; a column's type changed or
    a column dropped by a migration (sqlite-utils ``transform``) is not applied to an existing
    schema (the sync adds, it never alters or drops).
    """
    names = [m.name for m in migrations._migrations]
    if next(db.query("select to_regclass(?) as t", [f'"{db.schema}".{MIGRATIONS_TABLE}']))["t"] is None:
        with db.exclusive("schema-sync"):   # CREATE ... IF NOT EXISTS races with itself: one at a time
            db.execute(f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (migration_set text COLLATE \"C\" NOT NULL, "
                       f"name text COLLATE \"C\" NOT NULL, applied_at text COLLATE \"C\" NOT NULL, "
                       f"PRIMARY KEY (migration_set, name))")
    applied = {r["name"] for r in db.query(f"select name from {MIGRATIONS_TABLE} where migration_set = ?",
                                           [migrations.name])}
    if all(n in applied for n in names):
        return []
    wanted = sqlite_schema(migrations)
    with db.exclusive("schema-sync"):
        applied = {r["name"] for r in db.query(f"select name from {MIGRATIONS_TABLE} where migration_set = ?",
                                               [migrations.name])}
        new = [n for n in names if n not in applied]
        if not new:
            return []
        have: dict[str, set[str]] = {}
        for r in db.query("select table_name, column_name from information_schema.columns where table_schema = ?",
                          [db.schema]):
            have.setdefault(r["table_name"], set()).add(r["column_name"])
        indexes = {r["indexname"] for r in db.query("select indexname from pg_indexes where schemaname = ?",
                                                    [db.schema])}
        for table, spec in wanted.items():
            cols = spec["columns"]
            pk = [c["name"] for c in sorted((c for c in cols if c["pk"]), key=lambda c: c["pk"])]
            if table not in have:
                identity = len(pk) == 1 and next(c for c in cols if c["name"] == pk[0])["type"] in ("INTEGER", "INT")
                parts = [_column_sql(c, identity=identity and c["name"] == pk[0]) for c in cols]
                if pk:
                    parts.append(f"PRIMARY KEY ({', '.join(_q(p) for p in pk)})")
                db.execute(f"CREATE TABLE {_q(table)} ({', '.join(parts)})")
            else:
                for c in cols:
                    if c["name"] not in have[table]:
                        db.execute(f"ALTER TABLE {_q(table)} ADD COLUMN {_column_sql(c)}")
            for index in spec["indexes"]:
                name = _index_name(index["name"])
                if name not in indexes:
                    db.execute(f"CREATE {'UNIQUE ' if index['unique'] else ''}INDEX {_q(name)} ON {_q(table)} "
                               f"({', '.join(_q(c) for c in index['columns'])})")
        # SQLite's json_extract for the few queries outside the store that read a JSON column's
        # member (``json_extract(counts, '$.holder')``): the member as text.
        db.execute("CREATE OR REPLACE FUNCTION json_extract(doc text, path text) RETURNS text LANGUAGE sql "
                   "IMMUTABLE AS $$ SELECT (doc::jsonb) #>> string_to_array(substr(path, 3), '.') $$")
        now = datetime.now(timezone.utc).isoformat()
        for name in new:
            step = (data_steps or {}).get(name)
            if step is not None:
                step(db)
            db.execute(f"INSERT INTO {MIGRATIONS_TABLE} (migration_set, name, applied_at) VALUES (?, ?, ?)",
                       [migrations.name, name, now])
        return new
