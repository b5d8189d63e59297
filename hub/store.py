"""The store: one SQLite file (WAL; the embedded default) or a PostgreSQL schema. The only module
that writes SQL, written once for both backends (hub.db: ``?`` placeholders, portable SQL).

Tables: ``clients`` and ``devices`` (canonical records, key (source, source_id)), ``links``
(a hub client's id in each system), ``cursors`` (one per connector and stream), ``runs``, and
``actions`` (the outbox: deterministic key, payload, status, vendor id, attempts, last error).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import fields
from datetime import datetime, timedelta, timezone
from typing import Iterable, Iterator

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from hub.db import PostgresDatabase, SqliteDatabase, is_postgres_url, redact_url, sync_schema

from hub.records import (Action, Agreement, AgreementAddition, Alert, AlertEvent, AntivirusStatus, BackupJob, Client,
                         Configuration, Device, DeviceHealth, Patch, ProductLine, ServiceTicket, Ticket, TimeEntry)

migrations = Migrations("hub")

# Action statuses. ``sending`` means a push started and its outcome is not recorded: the vendor
# may or may not have acted, so the next push of that action looks before it creates.
PENDING, SENDING, SENT, FAILED, HELD, CANCELLED = "pending", "sending", "sent", "failed", "held", "cancelled"
LOCK_STALE_AFTER = 600.0   # seconds without a heartbeat after which a lock's holder is presumed dead


@migrations()
def m001_initial(db: Database) -> None:
    db["clients"].create({"source": str, "source_id": str, "name": str, "updated_at": str},
                         pk=("source", "source_id"))
    db["devices"].create({"source": str, "source_id": str, "client_source_id": str, "name": str,
                          "node_class": str, "approval_status": str, "created_at": str,
                          "last_contact": str, "updated_at": str}, pk=("source", "source_id"))
    db["devices"].create_index(["source", "client_source_id"])
    db["links"].create({"client_id": str, "system": str, "external_id": str, "updated_at": str},
                       pk=("client_id", "system"))
    db["cursors"].create({"connector": str, "stream": str, "cursor": str, "updated_at": str},
                         pk=("connector", "stream"))
    db["runs"].create({"id": str, "mode": str, "started_at": str, "finished_at": str, "status": str,
                       "counts": str, "errors": str}, pk="id")
    db["actions"].create({"key": str, "kind": str, "connector": str, "client_id": str, "period": str,
                          "payload": str, "status": str, "vendor_id": str, "attempts": int,
                          "last_error": str, "progress": str, "summary": str, "run_id": str,
                          "created_at": str, "updated_at": str, "sent_at": str}, pk="key",
                         not_null={"kind", "connector", "status"}, defaults={"attempts": 0})
    db["actions"].create_index(["status"])


@migrations()
def m002_psa(db: Database) -> None:
    db["agreements"].create({"source": str, "source_id": str, "client_source_id": str, "name": str,
                             "type_name": str, "status": str, "start_date": str, "end_date": str,
                             "billing_cycle": str, "application_units": str, "application_limit": str,
                             "updated_at": str}, pk=("source", "source_id"))
    db["agreements"].create_index(["source", "client_source_id"])
    db["additions"].create({"source": str, "source_id": str, "agreement_source_id": str,
                            "client_source_id": str, "product": str, "description": str, "quantity": str,
                            "unit_price": int, "currency": str, "bill_customer": str, "effective_date": str,
                            "cancelled_date": str, "updated_at": str}, pk=("source", "source_id"))
    db["additions"].create_index(["source", "agreement_source_id"])
    db["time_entries"].create({"source": str, "source_id": str, "client_source_id": str, "member": str,
                               "started_at": str, "ended_at": str, "hours": str, "billable": str,
                               "work_type": str, "work_role": str, "ticket_id": str,
                               "agreement_source_id": str, "hourly_rate": int, "invoiced": int,
                               "notes": str, "updated_at": str}, pk=("source", "source_id"))
    db["time_entries"].create_index(["source", "client_source_id", "started_at"])
    db["products"].create({"source": str, "source_id": str, "client_source_id": str, "catalog_item": str,
                           "description": str, "quantity": str, "unit_price": int, "currency": str,
                           "billable": str, "ticket_id": str, "agreement_source_id": str, "invoiced": int,
                           "sold_at": str, "updated_at": str}, pk=("source", "source_id"))
    db["products"].create_index(["source", "client_source_id"])
    # What the hub itself decided and must remember: blocks of hours it sold, per-period snapshots
    # of what each invoice counted, and every item already billed (never billed twice).
    db["blocks"].create({"client_id": str, "agreement": str, "number": int, "hours": str, "rate": int,
                         "started_at": str, "source": str, "action_key": str}, pk=("client_id", "agreement", "number"))
    db["snapshots"].create({"client_id": str, "period": str, "action_key": str, "lines": str,
                            "created_at": str}, pk=("client_id", "period"))
    db["billed_items"].create({"kind": str, "item_id": str, "client_id": str, "period": str, "action_key": str,
                               "quantity": str, "amount": int}, pk=("kind", "item_id", "action_key"))


@migrations()
def m003_approvals(db: Database) -> None:
    db["actions"].add_column("approved", int, not_null_default=0)
    db["billed_items"].create_index(["client_id"])


@migrations()
def m004_alerts(db: Database) -> None:
    db["alerts"].create({"source": str, "source_id": str, "client_source_id": str, "device_source_id": str,
                         "device_name": str, "device_class": str, "source_type": str, "condition": str,
                         "severity": str, "priority": str, "message": str, "created_at": str, "updated_at": str,
                         "active": int}, pk=("source", "source_id"), defaults={"active": 1})
    db["alerts"].create_index(["source", "active"])
    db["alert_events"].create({"source": str, "source_id": str, "series_uid": str, "device_source_id": str,
                               "status": str, "occurred_at": str, "severity": str, "message": str,
                               "updated_at": str}, pk=("source", "source_id"))
    db["alert_events"].create_index(["source", "series_uid"])
    db["tickets"].create({"source": str, "source_id": str, "client_source_id": str, "external_ref": str,
                          "summary": str, "board": str, "status": str, "closed": int, "touched": int,
                          "closed_at": str, "updated_at": str}, pk=("source", "source_id"))
    db["tickets"].create_index(["source", "external_ref"])


@migrations()
def m005_push_details(db: Database) -> None:
    db["actions"].add_column("details", str)


@migrations()
def m006_locks(db: Database) -> None:
    db["locks"].create({"name": str, "holder": str, "pid": int, "host": str, "acquired_at": str,
                        "heartbeat_at": str}, pk="name")


@migrations()
def m007_rejected(db: Database) -> None:
    db["rejected_records"].create({"connector": str, "stream": str, "source_id": str, "error": str,
                                   "seen_at": str}, pk=("connector", "stream", "source_id"))


@migrations()
def m008_trust(db: Database) -> None:
    # One row per stream per run that pulled it: whether the pass read the vendor's whole change
    # set (complete), failed, or stopped; planning holds what a stream feeds until it is complete.
    db["stream_passes"].create({"id": int, "connector": str, "stream": str, "run_id": str, "started_at": str,
                                "finished_at": str, "status": str, "records": int, "sweep_count": int,
                                "error": str}, pk="id")
    db["stream_passes"].create_index(["connector", "stream", "finished_at"])
    # Who let what through, when and why: an action key, a suspect stream pass, a review run.
    db["approvals"].create({"id": int, "target": str, "who": str, "at": str, "why": str}, pk="id")
    db["approvals"].create_index(["target"])
    db["runs"].add_column("pid", int)
    db["runs"].add_column("host", str)


@migrations()
def m009_notifications(db: Database) -> None:
    # One row per held thing already notified (an action key, ``stream:<c>.<s>``, ``push:<key>``):
    # the fingerprint of what was sent, so an unchanged hold is not sent again; the item itself
    # (no secret) for the reminders; when it was first and last sent.
    db["notifications"].create({"subject": str, "kind": str, "fingerprint": str, "item": str, "run_id": str,
                                "first_sent_at": str, "last_sent_at": str, "sends": int}, pk="subject",
                               not_null={"kind", "fingerprint", "item", "first_sent_at", "last_sent_at"},
                               defaults={"sends": 1})


@migrations()
def m010_month_after_month(db: Database) -> None:
    # When the hub first knew each device and first saw it approved: only a device it did not know
    # when a period was invoiced can be billed late for it, and an approval never reaches back into
    # a period invoiced before it. ``first_status`` is the state the hub first stored the device in
    # (first stored approved: approved since its creation, nothing says otherwise); ``noted_at`` is
    # the wall-clock time it was first noted, comparable with a snapshot's ``created_at``;
    # ``first_seen_at`` and ``approved_seen_at`` are the hub's clock.
    db["device_approvals"].create({"source": str, "source_id": str, "first_status": str, "first_seen_at": str,
                                   "approved_seen_at": str, "noted_at": str}, pk=("source", "source_id"))
    _m010_note_known_devices(db)


def _m010_note_known_devices(db) -> None:
    """m010's data step (portable SQL: it runs on SQLite in the migration, on PostgreSQL when the
    migration is new to an existing schema): every device already stored is noted."""
    db.execute("insert into device_approvals (source, source_id, first_status, first_seen_at, approved_seen_at, "
               "noted_at) select source, source_id, approval_status, updated_at, null, ? from devices", [now_iso()])


@migrations()
def m011_ticket_adoption(db: Database) -> None:
    # The PSA ticket the RMM's own integration made for an alert (NinjaOne's psaTicketId): the
    # hub adopts it instead of making a second one.
    db["alerts"].add_column("psa_ticket_id", str)


@migrations()
def m012_device_details(db: Database) -> None:
    # What an alert ticket tells a technician about its device, where the RMM reports it: the
    # operating system, IP addresses (comma-separated), serial number and the console page.
    for column in ("os_name", "ip_addresses", "serial_number", "console_url"):
        db["devices"].add_column(column, str)


@migrations()
def m013_client_details(db: Database) -> None:
    # A client's billing details as its system holds them (a PSA company's address, tax number
    # and billing e-mail), which the invoice's customer carries.
    for column in ("address_line1", "address_line2", "city", "state", "postal_code", "country", "vat_number",
                   "email", "email_from"):
        db["clients"].add_column(column, str)


@migrations()
def m014_corrections(db: Database) -> None:
    # Every correction of a sent invoice (a void or a credit note): the invoice action it corrects,
    # the outbox action that sends it, who asked and why, when, what it credits, and the key the
    # corrected invoice is re-issued under (none: no re-issue). ``frees`` says what the invoice
    # billed that the re-issue bills again once the correction is sent: "all" (a void) or the codes
    # of the credited lines (JSON list); nothing without a re-issue.
    db["corrections"].create({"action_key": str, "invoice_key": str, "kind": str, "client_id": str,
                              "period": str, "requested_by": str, "reason": str, "requested_at": str,
                              "amount": int, "currency": str, "lines": str, "reissue_key": str,
                              "frees": str}, pk="action_key", not_null={"invoice_key", "kind", "requested_by",
                                                                        "reason", "requested_at"})
    db["corrections"].create_index(["invoice_key"])
    db["corrections"].create_index(["client_id", "period"])


@migrations()
def m015_run_origin(db: Database) -> None:
    # What started each run: its trigger ("cron", "api", "cli", "catch-up"), the scheduled job's
    # name (none outside the daemon) and its scope (JSON, {} for everything). started_at is indexed
    # for pruning and for the newest-first listing.
    for column in ("trigger", "job", "scope"):
        db["runs"].add_column(column, str)
    db["runs"].create_index(["started_at"])
    db["stream_passes"].create_index(["run_id"])


@migrations()
def m016_rate_limits(db: Database) -> None:
    # One row per vendor account (a hashed key, never a credential): the next free time, in epoch
    # seconds, of its client-side rate limit, shared by every process using this database, and
    # the one-off token of the request that took the last slot.
    db["rate_limits"].create({"limiter": str, "tat": float, "holder": str}, pk="limiter")


@migrations()
def m017_report_streams(db: Database) -> None:
    # What the quarterly reports read: device warranties, antivirus, patches, backup jobs, device
    # health, the PSA's configurations and every service ticket (records keyed like the others).
    for column in ("warranty_start", "warranty_end"):
        db["devices"].add_column(column, str)
    for table, cls in (("antivirus", AntivirusStatus), ("patches", Patch), ("backups", BackupJob),
                       ("device_health", DeviceHealth), ("configurations", Configuration),
                       ("service_tickets", ServiceTicket)):
        columns = {f.name: (int if f.type in ("bool", "int") else str) for f in fields(cls)}
        # ``active``: 0 once a pass that reads the whole current set (write_page(complete=True))
        # no longer holds the row, as for alerts.
        db[table].create({**columns, "active": int}, pk=("source", "source_id"), defaults={"active": 1})
        db[table].create_index(["source", "client_source_id"])


@migrations()
def m018_scorecards(db: Database) -> None:
    # A client's scorecard as presented (frozen): the computed figures as JSON, re-rendered
    # identically later and read as the next quarter's "previous" column.
    db["scorecards"].create({"client_id": str, "quarter": str, "frozen_at": str, "frozen_by": str, "data": str},
                            pk=("client_id", "quarter"), not_null={"frozen_at", "data"})


@migrations()
def m019_maturity(db: Database) -> None:
    # The MSP's answers to the maturity self-assessment, each time it answered (when, who, the
    # twenty answers as JSON, the overall score and stage as computed then): the path over time.
    db["maturity_answers"].create({"id": int, "answered_at": str, "answered_by": str, "answers": str,
                                   "overall": str, "stage": str}, pk="id",
                                  not_null={"answered_at", "answers", "overall", "stage"})
    db["maturity_answers"].create_index(["answered_at"])
    # One row per report document delivered (report, client, period; client "" for the MSP's own
    # reports): the file written and its digest, and the e-mail: recorded as sending before the
    # SMTP server is spoken to, so that a rerun never e-mails it twice.
    db["report_deliveries"].create({"report": str, "client_id": str, "period": str, "file": str, "sha256": str,
                                    "language": str, "produced_at": str, "recipient": str, "status": str,
                                    "attempts": int, "last_error": str, "sent_at": str, "updated_at": str},
                                   pk=("report", "client_id", "period"), not_null={"status"}, defaults={"attempts": 0})


# Migrations whose data change (beyond tables, columns and indexes) must also run on PostgreSQL:
# name -> a function of the db in portable SQL (see hub.db.sync_schema).
DATA_STEPS = {"m010_month_after_month": _m010_note_known_devices}

PASS_COMPLETE, PASS_FAILED, PASS_STOPPED = "complete", "failed", "stopped"


RECORD_TABLES = {"clients": Client, "devices": Device, "agreements": Agreement, "additions": AgreementAddition,
                 "time_entries": TimeEntry, "products": ProductLine, "alerts": Alert, "alert_events": AlertEvent,
                 "tickets": Ticket, "antivirus": AntivirusStatus, "patches": Patch, "backups": BackupJob,
                 "device_health": DeviceHealth, "configurations": Configuration, "service_tickets": ServiceTicket}
_FIELDS = {table: [f.name for f in fields(cls)] for table, cls in RECORD_TABLES.items()}


def _upsert_sql(table: str, names: list[str]) -> str:
    cols = ", ".join(f'"{n}"' for n in names)
    updates = ", ".join(f'"{n}" = excluded."{n}"' for n in names if n not in ("source", "source_id"))
    return (f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join("?" for _ in names)}) '
            f"ON CONFLICT (source, source_id) DO UPDATE SET {updates}")


_UPSERT_SQL = {table: _upsert_sql(table, names) for table, names in _FIELDS.items()}


_DATETIME_AT = {table: [i for i, f in enumerate(fields(cls)) if "datetime" in str(f.type)]
                for table, cls in RECORD_TABLES.items()}


def _row(record, names: list[str], datetime_at: list[int]) -> list:
    """A record's values in column order, datetimes as ISO text (no deep copy, unlike asdict)."""
    d = record.__dict__
    row = [d[n] for n in names]
    for i in datetime_at:
        if row[i] is not None:
            row[i] = row[i].isoformat()
    return row


def _decoded(row, dt_at: list[int], bool_at: list[int]) -> list:
    """A stored row's values as its record holds them: ISO texts at ``dt_at`` as datetimes, the
    integers at ``bool_at`` as booleans."""
    values = list(row)
    for i in dt_at:
        if values[i]:
            values[i] = datetime.fromisoformat(values[i])
    for i in bool_at:
        values[i] = bool(values[i])
    return values


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _insert_sql(table: str, names: Iterable[str], conflict: tuple[str, ...] | None = None,
                update: bool = True) -> str:
    """``INSERT`` of ``names`` into ``table``; with ``conflict`` (the key columns) an upsert
    (``update``) or an insert that leaves an existing row alone."""
    names = list(names)
    sql = (f'INSERT INTO "{table}" ({", ".join(chr(34) + n + chr(34) for n in names)}) '
           f'VALUES ({", ".join("?" for _ in names)})')
    if conflict:
        sets = [f'"{n}" = excluded."{n}"' for n in names if n not in conflict]
        sql += f' ON CONFLICT ({", ".join(conflict)}) ' + (f'DO UPDATE SET {", ".join(sets)}' if update and sets
                                                            else "DO NOTHING")
    return sql


class Store:
    """The hub's database. ``Store(":memory:")`` for tests, ``Store(path)`` for a SQLite file,
    ``Store("postgresql://host/db", schema="tenant_acme")`` for a PostgreSQL schema (created when
    missing; None: ``public``). ``password``: the PostgreSQL password when the URL does not carry
    it (it never does in a config file); else libpq's own (``PGPASSWORD``, ``~/.pgpass``)."""

    def __init__(self, database: str = ":memory:", *, schema: str | None = None, password: str | None = None):
        path = database
        self.path = path
        self.schema = None
        if is_postgres_url(database):
            self.backend = "postgres"
            self.schema = schema or "public"
            self.db = PostgresDatabase(database, schema=schema, password=password)
            try:
                sync_schema(self.db, migrations, DATA_STEPS)
            except BaseException:
                self.db.close()
                raise
            return
        self.backend = "sqlite"
        if path != ":memory:":
            folder = os.path.dirname(os.path.abspath(os.fspath(path)))
            if not os.path.isdir(folder):
                from hub.errors import ConfigError
                raise ConfigError(f"the database folder {folder} does not exist (database = {os.fspath(path)!r})",
                                  key="database", fix=f"create it (mkdir -p {folder}) or point database at a "
                                                      "file in an existing folder")
        self.db = SqliteDatabase(memory=True) if path == ":memory:" else SqliteDatabase(path)
        if path != ":memory:":
            self.db.enable_wal()
            self.db.execute("PRAGMA busy_timeout = 10000")
            self.db.execute("PRAGMA synchronous = NORMAL")
        migrations.apply(self.db)

    def close(self) -> None:
        self.db.close()

    def describe(self) -> str:
        """Where the store is, for messages (never a password)."""
        if self.backend == "postgres":
            return f"PostgreSQL {redact_url(self.path)} (schema {self.schema})"
        return str(self.path)

    # --- portable row helpers ------------------------------------------------------------------

    def _insert(self, table: str, row: dict, *, conflict: tuple[str, ...] | None = None, update: bool = True):
        return self.db.execute(_insert_sql(table, row, conflict, update), list(row.values()))

    def _update(self, table: str, key: dict, values: dict):
        sets = ", ".join(f'"{n}" = ?' for n in values)
        where = " AND ".join(f'"{n}" = ?' for n in key)
        return self.db.execute(f'UPDATE "{table}" SET {sets} WHERE {where}', [*values.values(), *key.values()])

    # --- pulled records and cursors ------------------------------------------------------------

    def write_page(self, table: str, records: Iterable, connector: str, stream: str,
                   cursor: dict | None, *, complete: bool = False, rejected: Iterable[tuple[str, str]] = (),
                   scope: dict | None = None) -> int:
        """Upsert one page of records and save the stream's cursor in the same transaction.

        ``complete``: the page is the whole current set (``alerts``); the source's other records
        of the table are marked inactive, and these active, in the same transaction; with ``scope``
        (column -> value, None for NULL) only the source's records of that part of the table.
        ``rejected``: ``(vendor id, why)`` of records the connector could not map, kept in
        ``rejected_records`` so that they stay visible after the cursor moved past them.
        """
        records = list(records)
        rows = [_row(r, _FIELDS[table], _DATETIME_AT[table]) for r in records]
        with self.db.atomic():
            if complete:
                names = _FIELDS[table]
                where, args = "source = ?", [connector]
                for column, value in sorted((scope or {}).items()):
                    if column not in names:
                        raise ValueError(f"scope column {column!r} is not a column of {table}")
                    where += f' AND "{column}" IS NULL' if value is None else f' AND "{column}" = ?'
                    args += [] if value is None else [value]
                self.db.execute(f'UPDATE "{table}" SET active = 0 WHERE {where}', args)
            # Prepared statements: sqlite-utils' upsert_all builds and checks SQL per batch, which
            # cost more than the HTTP pull itself at 100k records.
            if rows:
                self.db.executemany(_UPSERT_SQL[table], rows)
                if complete:
                    self.db.executemany(f'UPDATE "{table}" SET active = 1 WHERE source = ? AND source_id = ?',
                                        [(r.source, r.source_id) for r in records])
            if rejected:
                self.db.executemany(
                    _insert_sql("rejected_records", ("connector", "stream", "source_id", "error", "seen_at"),
                                ("connector", "stream", "source_id")),
                    [(connector, stream, rid, why, now_iso()) for rid, why in rejected])
            self.db.execute(
                "INSERT INTO cursors (connector, stream, cursor, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (connector, stream) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
                [connector, stream, json.dumps(cursor) if cursor is not None else None, now_iso()])
        return len(rows)

    def get_cursor(self, connector: str, stream: str) -> dict | None:
        rows = list(self.db.query("select cursor from cursors where connector = ? and stream = ?",
                                  [connector, stream]))
        return json.loads(rows[0]["cursor"]) if rows and rows[0]["cursor"] else None

    def cursors(self) -> list[dict]:
        return [dict(r, cursor=json.loads(r["cursor"]) if r["cursor"] else None)
                for r in self.db.query("select * from cursors order by connector, stream")]

    def count(self, table: str) -> int:
        return next(self.db.query(f'select count(*) as n from "{table}"'))["n"]

    def iter_clients(self, source: str | None = None) -> Iterator[Client]:
        sql, args = "select * from clients", []
        if source:
            sql, args = sql + " where source = ?", [source]
        for r in self.db.query(sql + " order by source, source_id", args):
            yield Client(r["source"], r["source_id"], r["name"], _dt(r["updated_at"]))

    def iter_records(self, table: str, source: str, client_source_id: str | None = None, *,
                     where: str = "", args: Iterable = ()) -> Iterator:
        """The canonical records of ``table`` from ``source`` (optionally one client's), by key."""
        cls, names, dt_at = RECORD_TABLES[table], _FIELDS[table], _DATETIME_AT[table]
        bool_at = [i for i, f in enumerate(fields(cls)) if f.type in ("bool", bool)]
        sql, params = f'select {", ".join(chr(34) + n + chr(34) for n in names)} from "{table}" where source = ?', [source]
        if client_source_id is not None:
            sql, params = sql + " and client_source_id = ?", params + [client_source_id]
        if where:
            sql, params = f"{sql} and ({where})", params + list(args)
        for row in self.db.execute(sql + " order by source_id", params):
            yield cls(*_decoded(row, dt_at, bool_at))

    def iter_devices(self, source: str, client_source_id: str | None = None) -> Iterator[Device]:
        return self.iter_records("devices", source, client_source_id)

    def sources(self, table: str) -> list[str]:
        """The systems that stored records in ``table``."""
        return [r["source"] for r in self.db.query(f'select distinct source from "{table}" order by source')]

    def rows(self, table: str) -> list[dict]:
        """Every stored row of a record table, by key (for comparisons in tests)."""
        return list(self.db.query(f'select * from "{table}" order by source, source_id'))

    def device_counts(self) -> dict[tuple[str, str], int]:
        return {(r["source"], r["client_source_id"]): r["n"] for r in self.db.query(
            "select source, client_source_id, count(*) as n from devices group by 1, 2")}

    # --- links ---------------------------------------------------------------------------------

    def get_link(self, client_id: str, system: str) -> str | None:
        rows = list(self.db.query("select external_id from links where client_id = ? and system = ?",
                                  [client_id, system]))
        return rows[0]["external_id"] if rows else None

    def set_link(self, client_id: str, system: str, external_id: str) -> None:
        with self.db.atomic():
            self._insert("links", {"client_id": client_id, "system": system, "external_id": external_id,
                                   "updated_at": now_iso()}, conflict=("client_id", "system"))

    # --- the run lock --------------------------------------------------------------------------

    def acquire_lock(self, name: str, holder: str, *, stale_after: float = LOCK_STALE_AFTER) -> dict | None:
        """Take lock ``name`` for ``holder``; None when taken, else the live holder's row.

        A holder whose process is gone (same host) or whose heartbeat is older than
        ``stale_after`` seconds is presumed dead and its lock taken over.
        """
        now = datetime.now(timezone.utc)
        # One taker at a time across processes and machines: SQLite's write lock on the file, or a
        # PostgreSQL advisory lock of this schema held until the transaction ends.
        with self.db.exclusive(f"lock:{name}"):
            rows = list(self.db.execute("select holder, pid, host, acquired_at, heartbeat_at from locks where name = ?",
                                        [name]))
            if rows:
                h, pid, host, acquired, beat = rows[0]
                alive = (host != socket.gethostname() or _pid_alive(pid)) and \
                    (now - datetime.fromisoformat(beat)).total_seconds() < stale_after
                if alive:
                    return {"holder": h, "pid": pid, "host": host, "since": acquired, "heartbeat_at": beat}
            self._insert("locks", {"name": name, "holder": holder, "pid": os.getpid(), "host": socket.gethostname(),
                                   "acquired_at": now.isoformat(), "heartbeat_at": now.isoformat()}, conflict=("name",))
        return None

    def heartbeat(self, name: str, holder: str) -> None:
        with self.db.atomic():
            self.db.execute("update locks set heartbeat_at = ? where name = ? and holder = ?", [now_iso(), name, holder])

    def release_lock(self, name: str, holder: str) -> None:
        with self.db.atomic():
            self.db.execute("delete from locks where name = ? and holder = ?", [name, holder])

    def lock_info(self, name: str) -> dict | None:
        rows = list(self.db.query("select * from locks where name = ?", [name]))
        return rows[0] if rows else None

    # --- runs ----------------------------------------------------------------------------------

    @staticmethod
    def new_run_id() -> str:
        return uuid.uuid4().hex[:12]

    def start_run(self, mode: str, run_id: str | None = None, *, trigger: str | None = None,
                  job: str | None = None, scope: dict | None = None) -> tuple[str, datetime]:
        """Record a run as running, with what started it: ``trigger`` (cron, api, cli, catch-up),
        the scheduled ``job`` (None outside the daemon) and its ``scope`` ({} for everything)."""
        run_id, started = run_id or self.new_run_id(), datetime.now(timezone.utc)
        with self.db.atomic():
            self._insert("runs", {"id": run_id, "mode": mode, "started_at": started.isoformat(),
                                  "status": "running", "pid": os.getpid(), "host": socket.gethostname(),
                                  "trigger": trigger, "job": job,
                                  "scope": json.dumps(scope if scope is not None else {}, sort_keys=True)})
        return run_id, started

    def prune_runs(self, before: datetime) -> dict[str, int]:
        """Delete the finished runs started before ``before`` and their stream passes; return how
        many of each went. A run still ``running`` stays, and so does each stream's latest pass of
        every kind (last, last complete, last failed, last sweep): health is judged from them."""
        cutoff = before.astimezone(timezone.utc).isoformat()
        keep = ("select max(id) from stream_passes group by connector, stream union "
                "select max(id) from stream_passes where status = 'complete' group by connector, stream union "
                "select max(id) from stream_passes where status != 'complete' group by connector, stream union "
                "select max(id) from stream_passes where status = 'complete' and sweep_count is not null "
                "group by connector, stream")
        with self.db.atomic():
            passes = self.db.execute(
                "delete from stream_passes where run_id in (select id from runs where started_at < ? "
                f"and status != 'running') and id not in ({keep})", [cutoff]).rowcount
            runs = self.db.execute("delete from runs where started_at < ? and status != 'running'", [cutoff]).rowcount
        return {"runs": runs, "stream_passes": passes}

    def mark_abandoned_runs(self, *, lock_held: bool = False, keep: str | None = None) -> list[str]:
        """Runs left ``running`` by a process that died: marked ``abandoned``; returns their ids.

        A run is abandoned when its process is gone (same host) or, when the caller holds the run
        lock (``lock_held``), when it is a pulling run other than ``keep``: every pulling run holds
        that lock while it lives.
        """
        host = socket.gethostname()
        dead = []
        for r in self.db.query("select id, mode, pid, host from runs where status = 'running'"):
            if r["id"] == keep:
                continue
            gone = r["host"] == host and r["pid"] and not _pid_alive(r["pid"])
            if gone or (lock_held and r["mode"] != "plan"):
                dead.append(r["id"])
        if dead:
            with self.db.atomic():
                for rid in dead:
                    self._update("runs", {"id": rid}, {"status": "abandoned", "finished_at": now_iso(),
                                                       "errors": json.dumps(["the process running it ended before "
                                                                             "it finished (killed or crashed)"])})
        return dead

    # --- stream passes -------------------------------------------------------------------------

    def record_pass(self, connector: str, stream: str, run_id: str, started_at: str, status: str, records: int,
                    *, sweep_count: int | None = None, error: str | None = None, finished_at: str | None = None) -> int:
        """Record how one run's read of a stream ended: complete, failed or stopped."""
        row = {"connector": connector, "stream": stream, "run_id": run_id, "started_at": started_at,
               "finished_at": finished_at or now_iso(), "status": status, "records": records,
               "sweep_count": sweep_count, "error": error[:2000] if error else None}
        with self.db.atomic():
            return self.db.execute(_insert_sql("stream_passes", row) + " RETURNING id", list(row.values())).fetchone()[0]

    def stream_states(self) -> dict[tuple[str, str], dict]:
        """Per (connector, stream): ``last`` pass, ``last_complete``, ``last_failed`` (the latest
        failed or stopped pass) and ``last_sweep`` (the latest complete pass that ended a sweep)."""
        out: dict[tuple[str, str], dict] = {}
        q = ("select p.* from stream_passes p join (select connector, stream, max(id) as id from stream_passes {w} "
             "group by connector, stream) m on p.id = m.id")
        for name, where in (("last", ""), ("last_complete", "where status = 'complete'"),
                            ("last_failed", "where status != 'complete'"),
                            ("last_sweep", "where status = 'complete' and sweep_count is not null")):
            for r in self.db.query(q.format(w=where)):
                out.setdefault((r["connector"], r["stream"]), {"last": None, "last_complete": None, "last_failed": None,
                                                              "last_sweep": None})[name] = dict(r)
        return out

    def stream_passes(self, connector: str | None = None, stream: str | None = None, limit: int = 50) -> list[dict]:
        sql, args, where = "select * from stream_passes", [], []
        if connector:
            where, args = where + ["connector = ?"], args + [connector]
        if stream:
            where, args = where + ["stream = ?"], args + [stream]
        if where:
            sql += " where " + " and ".join(where)
        return list(self.db.query(sql + " order by id desc limit ?", args + [limit]))

    # --- approvals -----------------------------------------------------------------------------

    def record_approval(self, target: str, who: str, why: str = "") -> dict:
        """Record that ``who`` let ``target`` through (an action key, ``pass:<id>``, ``run:<id>``)."""
        row = {"target": target, "who": who, "at": now_iso(), "why": why}
        with self.db.atomic():
            self._insert("approvals", row)
        return row

    def sent_per_period(self, kind: str, key_prefix: str) -> dict[str, int]:
        """Each period with sent actions of ``kind`` whose key starts with ``key_prefix`` -> how many."""
        rows = self.db.query("select period, count(*) as n from actions where kind = ? and status = ? "
                             "and key like ? and period is not null group by period", [kind, SENT, f"{key_prefix}%"])
        return {r["period"]: r["n"] for r in rows}

    def adopted_tickets(self, connector: str) -> frozenset[str]:
        """The ids of the tickets made outside the hub that ``connector`` adopted for an alert."""
        rows = self.db.query("select vendor_id, details from actions where kind = 'ticket' and connector = ? "
                             "and status = ? and vendor_id is not null and details like ?",
                             [connector, SENT, '%"adopted"%'])
        return frozenset(str(r["vendor_id"]) for r in rows if json.loads(r["details"] or "{}").get("adopted"))

    def count_by_status(self, table: str) -> dict[str, int]:
        """How many rows of ``actions`` or ``runs`` have each status."""
        if table not in ("actions", "runs"):
            raise ValueError(f"no status in {table}")
        return {r["status"]: r["n"] for r in self.db.query(f'select status, count(*) as n from "{table}" group by status')}

    def approvals(self, target: str | None = None) -> list[dict]:
        if target is None:
            return list(self.db.query("select * from approvals order by id"))
        return list(self.db.query("select * from approvals where target = ? order by id", [target]))

    def finish_run(self, run_id: str, status: str, counts: dict, errors: list[str]) -> None:
        with self.db.atomic():
            self._update("runs", {"id": run_id}, {"finished_at": now_iso(), "status": status,
                                                  "counts": json.dumps(counts), "errors": json.dumps(errors)})

    def get_run(self, run_id: str) -> dict | None:
        rows = list(self.db.query("select * from runs where id = ?", [run_id]))
        return rows[0] if rows else None

    def runs(self, limit: int = 20) -> list[dict]:
        return list(self.db.query("select * from runs order by started_at desc limit ?", [limit]))

    # --- the outbox ----------------------------------------------------------------------------

    def get_action(self, key: str) -> dict | None:
        rows = list(self.db.query("select * from actions where key = ?", [key]))
        return _action_row(rows[0]) if rows else None

    def record_action(self, action: Action, run_id: str, *, ledger: Iterable[tuple[str, str, str, int]] = (),
                      snapshot: list[dict] | None = None, block: dict | None = None) -> dict:
        """Store a planned action before anything is sent; an unsent one takes the new payload.

        In the same transaction: ``ledger`` rows ``(kind, item id, quantity, amount)`` record what
        the action bills (so nothing is billed twice), ``snapshot`` keeps the lines an invoice
        counted for its period, and ``block`` the prepaid block a renewal starts. An action that
        was ever attempted keeps its payload and ledger: what may be at the vendor must not change.
        Returns the stored row.
        """
        with self.db.atomic():
            existing = self.get_action(action.key)
            payload = json.dumps(action.payload, sort_keys=True)
            fresh = existing is None or (existing["status"] in (PENDING, HELD, FAILED) and existing["attempts"] == 0)
            if existing is None:
                self._insert("actions", {
                    "key": action.key, "kind": action.kind, "connector": action.connector,
                    "client_id": action.client_id, "period": action.period, "payload": payload,
                    "status": PENDING, "attempts": 0, "progress": "{}", "run_id": run_id,
                    "created_at": now_iso(), "updated_at": now_iso()})
            elif fresh:
                self._update("actions", {"key": action.key}, {"payload": payload, "status": PENDING, "last_error": None,
                                                              "connector": action.connector, "updated_at": now_iso()})
            if fresh:
                self.db.execute("delete from billed_items where action_key = ?", [action.key])
                ledger = list(ledger)
                if ledger:
                    self.db.executemany(
                        _insert_sql("billed_items", ("kind", "item_id", "client_id", "period", "action_key", "quantity",
                                                     "amount"), ("kind", "item_id", "action_key")),
                        [(k, i, action.client_id, action.period, action.key, q, a) for k, i, q, a in ledger])
                if snapshot is not None:
                    self._insert("snapshots", {"client_id": action.client_id, "period": action.period,
                                               "action_key": action.key, "lines": json.dumps(snapshot),
                                               "created_at": now_iso()}, conflict=("client_id", "period"))
                if block is not None:
                    self._insert("blocks", {**block, "action_key": action.key},
                                 conflict=("client_id", "agreement", "number"), update=False)
        return self.get_action(action.key)

    def billed_item_ids(self, client_id: str, *, exclude_key: str | None = None, kinds: Iterable[str] = ()) -> frozenset[str]:
        """Ids of every item the hub already billed this client (outside ``exclude_key``).

        Items of a cancelled action are free again: they will be billed by the next invoice.
        """
        return frozenset(r["item_id"] for r in self._billed_rows(client_id, exclude_key, kinds))

    def _billed_rows(self, client_id: str, exclude_key: str | None, kinds: Iterable[str]) -> Iterable[dict]:
        """The client's ledger rows (kind, item_id, action_key) of actions not cancelled."""
        sql = ("select b.kind, b.item_id, b.action_key from billed_items b join actions a on a.key = b.action_key "
               "where b.client_id = ? and a.status != ?")
        args: list = [client_id, CANCELLED]
        if exclude_key:
            sql, args = sql + " and b.action_key != ?", args + [exclude_key]
        kinds = list(kinds)
        if kinds:
            sql, args = sql + f" and b.kind in ({', '.join('?' for _ in kinds)})", args + kinds
        return self.db.query(sql, args)

    def get_snapshot(self, client_id: str, period: str) -> list[dict] | None:
        """The lines an invoice for the period counted (none if that invoice was cancelled)."""
        rows = list(self.db.query("select s.lines from snapshots s join actions a on a.key = s.action_key "
                                  "where s.client_id = ? and s.period = ? and a.status != ?",
                                  [client_id, period, CANCELLED]))
        return json.loads(rows[0]["lines"]) if rows else None

    def previous_invoice(self, client_id: str, period: str) -> tuple[str, list[dict]] | None:
        """The period and lines of the client's latest sent invoice for a period before ``period``."""
        rows = list(self.db.query(
            "select s.period, s.lines from snapshots s join actions a on a.key = s.action_key "
            "where s.client_id = ? and s.period < ? and a.status = ? and a.key like 'invoice:%' "
            "order by s.period desc limit 1", [client_id, period, SENT]))
        return (rows[0]["period"], json.loads(rows[0]["lines"])) if rows else None

    def blocks(self, client_id: str, agreement: str) -> list[dict]:
        """The renewal blocks the hub sold for an agreement (block 1 is the agreement itself)."""
        return list(self.db.query("select * from blocks where client_id = ? and agreement = ? order by number",
                                  [client_id, agreement]))

    def approve(self, key: str, *, who: str = "", why: str = "") -> dict | None:
        """A person approves a held action: the guardrail that held it lets it through.

        The approval is recorded (who, when, why) in the same transaction.
        """
        with self.db.atomic():
            row = self.get_action(key)
            if row is None:
                return None
            self._update("actions", {"key": key}, {"approved": 1, "updated_at": now_iso(),
                                                   "status": PENDING if row["status"] == HELD else row["status"]})
            self._insert("approvals", {"target": key, "who": who or system_user(), "at": now_iso(), "why": why})
        return self.get_action(key)

    def retry_action(self, key: str) -> dict | None:
        """Put a failed, held or cancelled action back in the outbox for the next push."""
        with self.db.atomic():
            row = self.get_action(key)
            if row is None:
                return None
            if row["status"] != SENT:
                self._update("actions", {"key": key}, {"status": PENDING, "updated_at": now_iso()})
        return self.get_action(key)

    def cancel_action(self, key: str) -> dict | None:
        """Take an unsent action out of the outbox (kept, with status ``cancelled``).

        A sent action, or one being sent (the vendor may already have acted), is left as it is.
        """
        with self.db.atomic():
            row = self.get_action(key)
            if row is None:
                return None
            if row["status"] not in (SENT, SENDING):
                self._update("actions", {"key": key}, {"status": CANCELLED, "updated_at": now_iso()})
        return self.get_action(key)

    def approved_keys(self) -> frozenset[str]:
        return frozenset(r["key"] for r in self.db.query("select key from actions where approved = 1"))

    def orphans(self, table: str, source: str) -> list[dict]:
        """Records of ``table`` whose client is not among the pulled clients of ``source``."""
        return list(self.db.query(
            f'select t.source_id, t.client_source_id from "{table}" t left join clients c '
            f"on c.source = t.source and c.source_id = t.client_source_id "
            f"where t.source = ? and c.source_id is null order by t.source_id limit 1000", [source]))

    def mark_sending(self, key: str) -> int:
        """Record that a push starts (committed before any request); return earlier attempts."""
        with self.db.atomic():
            row = self.db.execute("UPDATE actions SET status = ?, attempts = attempts + 1, updated_at = ? WHERE key = ? "
                                  "RETURNING attempts", [SENDING, now_iso(), key]).fetchone()
        return row[0] - 1

    def claim_action(self, key: str, status: str, attempts: int, *, stale_after: float | None = None) -> int | None:
        """Claim an action for one push, as ``mark_sending`` does, only if it is still as the caller
        read it (``status`` among pending, sending and failed, and ``attempts``): one atomic
        ``UPDATE ... WHERE ... RETURNING``, so that of several processes or machines that read the
        same row exactly one sends it. Returns the earlier attempts, or None: another took it (or it
        changed) since it was read.

        A ``sending`` action is one whose push started and has no recorded outcome. Under the run
        lock (one pusher at a time) its pusher is dead and it is claimed at once. A pusher that may
        overlap another (a worker whose stalled job was retried) passes ``stale_after``: a sending
        action is then claimed only when nothing recorded anything about it for that many seconds,
        so that a push in flight elsewhere is never sent a second time meanwhile."""
        if status not in (PENDING, SENDING, FAILED):
            return None
        sql = ("UPDATE actions SET status = ?, attempts = attempts + 1, updated_at = ? "
               "WHERE key = ? AND status = ? AND attempts = ?")
        args = [SENDING, now_iso(), key, status, attempts]
        if status == SENDING and stale_after is not None:
            sql, args = sql + " AND updated_at < ?", args + [
                (datetime.now(timezone.utc) - timedelta(seconds=stale_after)).isoformat()]
        with self.db.atomic():
            row = self.db.execute(sql + " RETURNING attempts", args).fetchone()
        return row[0] - 1 if row else None

    def mark_sent(self, key: str, vendor_id: str, summary: str, details: dict | None = None) -> None:
        with self.db.atomic():
            self._update("actions", {"key": key}, {
                "status": SENT, "vendor_id": vendor_id, "summary": summary,
                "details": json.dumps(details or {}, sort_keys=True, default=str),
                "last_error": None, "sent_at": now_iso(), "updated_at": now_iso()})

    def mark_failed(self, key: str, error: str, *, status: str = FAILED) -> None:
        with self.db.atomic():
            self._update("actions", {"key": key}, {"status": status, "last_error": error[:2000], "updated_at": now_iso()})

    def save_progress(self, key: str, progress: dict) -> None:
        with self.db.atomic():
            self._update("actions", {"key": key}, {"progress": json.dumps(progress, sort_keys=True),
                                                   "updated_at": now_iso()})

    def actions(self, status: str | None = None, kind: str | None = None) -> list[dict]:
        sql, args, where = "select * from actions", [], []
        if status:
            where, args = where + ["status = ?"], args + [status]
        if kind:
            where, args = where + ["kind = ?"], args + [kind]
        if where:
            sql += " where " + " and ".join(where)
        return [_action_row(r) for r in self.db.query(sql + " order by key", args)]

    # --- notifications -------------------------------------------------------------------------

    def notifications(self) -> list[dict]:
        """Every notified item still remembered, by subject (``item`` decoded)."""
        return [dict(r, item=json.loads(r["item"])) for r in self.db.query("select * from notifications order by subject")]

    def get_notification(self, subject: str) -> dict | None:
        rows = list(self.db.query("select * from notifications where subject = ?", [subject]))
        return dict(rows[0], item=json.loads(rows[0]["item"])) if rows else None

    def record_notification(self, subject: str, kind: str, fingerprint: str, item: dict, at: str,
                            *, run_id: str | None = None) -> None:
        """Remember that ``item`` was sent at ``at``; a new fingerprint starts its first-sent time again."""
        with self.db.atomic():
            old = self.get_notification(subject)
            first = old["first_sent_at"] if old and old["fingerprint"] == fingerprint else at
            sends = old["sends"] + 1 if old and old["fingerprint"] == fingerprint else 1
            self._insert("notifications", {"subject": subject, "kind": kind, "fingerprint": fingerprint,
                                           "item": json.dumps(item, sort_keys=True, default=str), "run_id": run_id,
                                           "first_sent_at": first, "last_sent_at": at, "sends": sends},
                         conflict=("subject",))

    def touch_notifications(self, subjects: Iterable[str], at: str) -> None:
        """Record that a reminder about ``subjects`` was sent at ``at``."""
        with self.db.atomic():
            self.db.executemany("update notifications set last_sent_at = ?, sends = sends + 1 where subject = ?",
                                [(at, s) for s in subjects])

    def forget_notifications(self, subjects: Iterable[str]) -> None:
        """Forget items no longer held: held again later, they are news again."""
        with self.db.atomic():
            self.db.executemany("delete from notifications where subject = ?", [(s,) for s in subjects])

    # --- what each invoice billed --------------------------------------------------------------

    def note_device_approvals(self, at: str, source: str | None = None, client_source_id: str | None = None) -> int:
        """Record, once per device (optionally one source's, one client's), the state the hub
        first stored it in and when it first saw it approved after another state (``at``, the
        hub's clock); returns how many devices were first seen approved now."""
        where, args = "", []
        if source is not None:
            where, args = " and d.source = ?", [source]
        if client_source_id is not None:
            where, args = where + " and d.client_source_id = ?", args + [client_source_id]
        with self.db.atomic():
            self.db.execute(
                "insert into device_approvals (source, source_id, first_status, first_seen_at, approved_seen_at, "
                "noted_at) select d.source, d.source_id, d.approval_status, ?, null, ? from devices d "
                "where not exists (select 1 from device_approvals a where a.source = d.source "
                "and a.source_id = d.source_id)" + where, [at, now_iso(), *args])
            cur = self.db.execute(
                "update device_approvals set approved_seen_at = ? where approved_seen_at is null "
                "and first_status not in ('approved', 'decommissioned') and exists (select 1 from devices d "
                "where d.source = device_approvals.source and d.source_id = device_approvals.source_id "
                "and d.approval_status = 'approved'" + where + ")", [at, *args])
            return cur.rowcount

    def approvals_seen(self, source: str, client_source_id: str | None = None) -> dict[str, dict]:
        """Per device id of ``source`` (optionally one client's): ``first_status`` and
        ``approved_seen_at`` (None while the hub never saw it approved after another state) and
        ``noted_at`` (wall clock, when the hub first knew it)."""
        sql = ("select a.source_id, a.first_status, a.approved_seen_at, a.noted_at from device_approvals a "
               "join devices d on d.source = a.source and d.source_id = a.source_id where a.source = ?")
        args: list = [source]
        if client_source_id is not None:
            sql, args = sql + " and d.client_source_id = ?", args + [client_source_id]
        return {r["source_id"]: {"first_status": r["first_status"], "approved_seen_at": _dt(r["approved_seen_at"]),
                                 "noted_at": r["noted_at"]}
                for r in self.db.query(sql, args)}

    def invoice_snapshots(self, client_id: str, *, before: str, exclude_key: str | None = None) -> list[dict]:
        """The client's invoice snapshots of periods before ``before`` (not cancelled, oldest
        first): ``period``, ``action_key``, ``status``, ``attempts``, ``sent_at``, ``created_at`` (wall
        clock, when the snapshot was recorded) and ``lines`` (decoded)."""
        sql = ("select s.period, s.action_key, s.lines, s.created_at, a.status, a.attempts, a.sent_at from snapshots s "
               "join actions a on a.key = s.action_key where s.client_id = ? and s.period < ? and a.status != ?")
        args: list = [client_id, before, CANCELLED]
        if exclude_key:
            sql, args = sql + " and s.action_key != ?", args + [exclude_key]
        return [dict(r, lines=json.loads(r["lines"])) for r in self.db.query(sql + " order by s.period", args)]

    def record_by_id(self, table: str, source: str, source_id: str):
        """One stored record of ``table`` by its key, or None."""
        return next(self.iter_records(table, source, where="source_id = ?", args=[source_id]), None)


    # --- corrections of sent invoices ---------------------------------------------------------

    def record_correction(self, action: Action, run_id: str, correction: dict, *, held: str | None = None) -> dict:
        """Store a correction's outbox action and its audit row in one transaction (before anything
        is sent); ``correction``: the ``corrections`` columns but ``action_key`` and ``requested_at``;
        ``held``: why it waits for an approval (a plugin's veto), else it is pending. A key already
        in the outbox is left as it is (exactly once). Returns the correction row."""
        with self.db.atomic():
            if self.get_action(action.key) is None:
                self._insert("actions", {
                    "key": action.key, "kind": action.kind, "connector": action.connector,
                    "client_id": action.client_id, "period": action.period,
                    "payload": json.dumps(action.payload, sort_keys=True), "status": HELD if held else PENDING,
                    "attempts": 0, "last_error": held, "progress": "{}", "run_id": run_id,
                    "created_at": now_iso(), "updated_at": now_iso()})
                row = dict(correction, action_key=action.key, requested_at=now_iso())
                row["lines"] = json.dumps(row.get("lines")) if row.get("lines") is not None else None
                row["frees"] = json.dumps(row.get("frees")) if row.get("frees") is not None else None
                self._insert("corrections", row)
        return self.get_correction(action.key)

    def get_correction(self, action_key: str) -> dict | None:
        rows = list(self.db.query("select c.*, a.status, a.vendor_id, a.summary, a.sent_at, a.last_error "
                                  "from corrections c join actions a on a.key = c.action_key "
                                  "where c.action_key = ?", [action_key]))
        return _correction_row(rows[0]) if rows else None

    def corrections(self, invoice_key: str | None = None, *, client_id: str | None = None,
                    period: str | None = None) -> list[dict]:
        """Corrections (each with its action's ``status``, ``vendor_id``, ``summary``, ``sent_at``,
        ``last_error``), oldest first; of one invoice key, or of one client and period."""
        sql, args, where = ("select c.*, a.status, a.vendor_id, a.summary, a.sent_at, a.last_error "
                            "from corrections c join actions a on a.key = c.action_key"), [], []
        if invoice_key is not None:
            where, args = where + ["c.invoice_key = ?"], args + [invoice_key]
        if client_id is not None:
            where, args = where + ["c.client_id = ?"], args + [client_id]
        if period is not None:
            where, args = where + ["c.period = ?"], args + [period]
        if where:
            sql += " where " + " and ".join(where)
        return [_correction_row(r) for r in self.db.query(sql + " order by c.requested_at, c.action_key", args)]

    def freed_by_corrections(self, client_id: str) -> dict[str, object]:
        """What the client's sent corrections with a re-issue freed: invoice key -> ``"all"`` (a
        void: everything it billed) or a set of ``(kind, item id)`` (a credit note's lines)."""
        out: dict[str, object] = {}
        for r in self.db.query("select c.invoice_key, c.frees from corrections c join actions a on a.key = c.action_key "
                               "where c.client_id = ? and a.status = ? and c.reissue_key is not null "
                               "and c.frees is not null", [client_id, SENT]):
            frees = json.loads(r["frees"])
            if frees == "all" or out.get(r["invoice_key"]) == "all":
                out[r["invoice_key"]] = "all"
            else:
                out[r["invoice_key"]] = set(out.get(r["invoice_key"]) or set()) | {(k, i) for k, i in frees}
        return out

    def live_billed_item_ids(self, client_id: str, *, exclude_key: str | None = None,
                             kinds: Iterable[str] = ()) -> frozenset[str]:
        """``billed_item_ids`` without what a sent correction with a re-issue freed (the re-issue
        bills it again; once recorded, its own ledger rows hold it)."""
        freed = self.freed_by_corrections(client_id)
        if not freed:
            return self.billed_item_ids(client_id, exclude_key=exclude_key, kinds=kinds)
        out = set()
        for r in self._billed_rows(client_id, exclude_key, kinds):
            f = freed.get(r["action_key"])
            if f is None or (f != "all" and (r["kind"], r["item_id"]) not in f):
                out.add(r["item_id"])
        return frozenset(out)

    def snapshot_lines(self, action_key: str) -> list[dict] | None:
        """The lines the snapshot recorded by ``action_key`` counted (None: none, or replaced since)."""
        rows = list(self.db.query("select lines from snapshots where action_key = ?", [action_key]))
        return json.loads(rows[0]["lines"]) if rows else None

    def voided_keys(self, client_id: str) -> frozenset[str]:
        """The client's invoice keys a sent void corrected (with or without a re-issue)."""
        return frozenset(r["invoice_key"] for r in self.db.query(
            "select c.invoice_key from corrections c join actions a on a.key = c.action_key "
            "where c.client_id = ? and c.kind = 'invoice_void' and a.status = ?", [client_id, SENT]))

    # --- shared rate limits and batched pushes ------------------------------------------------

    # Portable: the same text runs on SQLite (3.35+, RETURNING) and PostgreSQL.
    TAKE_RATE_SLOT_SQL = (
        "INSERT INTO rate_limits (limiter, tat, holder) VALUES (?, ?, ?) ON CONFLICT (limiter) DO UPDATE SET "
        "tat = CASE WHEN rate_limits.tat <= ? THEN ? ELSE rate_limits.tat END, "
        "holder = CASE WHEN rate_limits.tat <= ? THEN ? ELSE rate_limits.holder END RETURNING tat, holder")

    def take_rate_slot(self, limiter: str, interval: float, now: float, token: str) -> float:
        """Take the rate limit ``limiter``'s slot for a request sent now, if it is free: one atomic
        statement (GCRA). Returns 0 when taken (the request goes; the next slot is ``interval``
        later), else the seconds until the slot frees (ask again then).

        The row holds the next free time (``tat``) and who took the slot last (``holder``, the
        caller's one-off ``token``), so a caller knows it won even when two ask at one instant.
        Processes sharing the database share the pace.
        """
        with self.db.atomic():
            rows = list(self.db.query(self.TAKE_RATE_SLOT_SQL,
                                      [limiter, now + interval, token, now, now + interval, now, token]))
        row = rows[0]
        return 0.0 if row["holder"] == token else max(float(row["tat"]) - now, 1e-6)

    def unsent_actions(self, connector: str, kinds: Iterable[str]) -> list[dict]:
        """The actions of ``connector`` of ``kinds`` a push would send (pending, sending or failed),
        by key, as the push loop meets them: ``key``, ``kind``, ``client_id``, ``payload`` (decoded),
        ``attempts``."""
        kinds = sorted(set(kinds))
        if not kinds:
            return []
        rows = self.db.query(
            f"SELECT key, kind, client_id, payload, attempts FROM actions WHERE connector = ? AND status IN (?, ?, ?) "
            f"AND kind IN ({', '.join('?' for _ in kinds)}) ORDER BY key",
            [connector, PENDING, SENDING, FAILED, *kinds])
        return [dict(r, payload=json.loads(r["payload"]) if r.get("payload") else {}) for r in rows]


    # --- what a period's plan reads --------------------------------------------------------------
    # Set-based reads: the records of many clients in one query, grouped in Python (the planner
    # reads a window of clients at a time, never one query per client and kind).

    CLIENTS_PER_QUERY = 500
    COUNTED = ("counted", None)     # records_by_client: the key of the counts of the records left out
    CLIENTS, SOURCE = object(), object()     # arguments standing for the clients and source of one query

    def records_by_client(self, table: str, keys: Iterable[tuple[str, str]], *, where: str = "",
                          args: Iterable = (), stored: str | None = None,
                          counted: tuple[str, tuple] | None = None) -> dict[tuple[str, str], list]:
        """The canonical records of ``table`` of every client of ``keys`` (``(source,
        client_source_id)``), by client: each client's as ``iter_records(table, source,
        client_source_id, where=where, args=args)`` gives them (by key), a client with none
        included (an empty list). With ``stored`` (a column), each is ``(the column's value as
        stored, the record)``.

        ``counted``: a condition and its arguments (e.g. ``settled_time``): the records meeting it
        are not made, only counted per client; the counts are under the key ``(COUNTED, None)``
        (clients with none left out are not in it)."""
        if counted is not None:
            cond, cargs = counted
            keys = list(keys)
            out = self._records_by_client(table, keys, where=f"({where}) and not ({cond})" if where else f"not ({cond})",
                                          args=(*args, *cargs), stored=stored)
            out[self.COUNTED] = self.count_by_client(table, keys, where=f"({where}) and ({cond})" if where else cond,
                                                     args=(*args, *cargs))
            return out
        return self._records_by_client(table, keys, where=where, args=args, stored=stored)

    def _records_by_client(self, table: str, keys: Iterable[tuple[str, str]], *, where: str, args: Iterable,
                           stored: str | None) -> dict[tuple[str, str], list]:
        cls, names, dt_at = RECORD_TABLES[table], _FIELDS[table], _DATETIME_AT[table]
        bool_at = [i for i, f in enumerate(fields(cls)) if f.type in ("bool", bool)]
        out: dict[tuple[str, str], list] = {}
        by_source: dict[str, list[str]] = {}
        for source, client in keys:
            if (source, client) not in out:
                out[(source, client)] = []
                by_source.setdefault(source, []).append(client)
        columns = ", ".join(f'"{n}"' for n in names)
        client_at = names.index("client_source_id")
        stored_at = names.index(stored) if stored else None
        new = object.__new__
        assert not hasattr(cls, "__post_init__") and not hasattr(cls, "__slots__"), cls
        for source, clients in sorted(by_source.items()):
            for at in range(0, len(clients), self.CLIENTS_PER_QUERY):
                part = clients[at:at + self.CLIENTS_PER_QUERY]
                sql = (f'select {columns} from "{table}" where source = ? '
                       f"and client_source_id in ({', '.join('?' for _ in part)})")
                cond, cargs = self._with_clients(where, args, source, part)
                if where:
                    sql += f" and ({cond})"
                # Ordered by client first: the client index is used (by key alone, the primary key
                # would be walked through every record of the source, for each window).
                for row in self.db.execute(sql + " order by client_source_id, source_id", [source, *part, *cargs]):
                    values = _decoded(row, dt_at, bool_at)
                    # The record as cls(*values) makes it, without the frozen dataclass's field-by-field
                    # __init__ (record classes have no __post_init__): a third of the cost at 1M rows.
                    record = new(cls)
                    record.__dict__.update(zip(names, values))
                    out[(source, values[client_at])].append(record if stored_at is None else (row[stored_at], record))
        return out

    def count_by_client(self, table: str, keys: Iterable[tuple[str, str]], *, where: str,
                        args: Iterable = ()) -> dict[tuple[str, str], int]:
        """How many records of ``table`` of each client of ``keys`` meet ``where`` (clients with
        none are left out)."""
        by_source: dict[str, list[str]] = {}
        for source, client in dict.fromkeys(keys):
            by_source.setdefault(source, []).append(client)
        out: dict[tuple[str, str], int] = {}
        for source, clients in sorted(by_source.items()):
            for at in range(0, len(clients), self.CLIENTS_PER_QUERY):
                part = clients[at:at + self.CLIENTS_PER_QUERY]
                cond, cargs = self._with_clients(where, args, source, part)
                sql = (f'select client_source_id, count(*) from "{table}" where source = ? '
                       f"and client_source_id in ({', '.join('?' for _ in part)}) and ({cond}) "
                       f"group by client_source_id")
                for client, n in self.db.execute(sql, [source, *part, *cargs]):
                    out[(source, client)] = n
        return out

    def draft_invoices(self, kind: str, status: str) -> list[dict]:
        """``actions(status=status, kind=kind)`` whose details say ``draft`` (as ``actions`` gives
        them, by key): the others' payloads, a plan's worth of invoices, are not read."""
        rows = self.db.query('select * from actions where kind = ? and status = ? and details like ? order by key',
                             [kind, status, '%"draft"%'])
        return [row for row in map(_action_row, rows) if row["details"].get("draft")]

    def actions_of_kinds(self, kinds: Iterable[str], payload_keys: Iterable[str]) -> list[dict]:
        """``actions(kind=k)`` for each of ``kinds`` in turn, each payload cut to ``payload_keys``
        as it is read (the rest of a plan's thousands of ticket texts is never held at once)."""
        wanted = tuple(payload_keys)
        out = []
        for kind in kinds:
            for r in self.db.query("select * from actions where kind = ? order by key", [kind]):
                payload = json.loads(r["payload"] or "{}")
                r["payload"] = None
                row = _action_row(r)
                row["payload"] = {k: payload[k] for k in wanted if k in payload}
                out.append(row)
        return out

    @staticmethod
    def settled_time(before: datetime, flat_work_types: Iterable[str]) -> tuple[str, tuple]:
        """The time entries no plan billing periods from ``before`` on can bill nor be changed by
        (``records_by_client``'s ``counted``): billable and invoiced by the PSA (never billed again,
        BILLING.md; a record not billable is explained as such, not counted), dated before
        ``before`` (a UTC start as the store writes it: an entry whose start is stored otherwise is
        kept, so that its problem is still reported), charged to no agreement (a block's balance
        counts every entry charged to it, whatever the PSA's invoice status), and, on the ticket of a
        flat-rate job, only when every entry of that ticket is such an entry (a flat-rate job is
        decided, and explained, by all the entries of its ticket; one whose every entry the PSA
        invoiced is "invoiced by the PSA"); an entry of a flat-rate work type on no ticket is read
        (its error is reported). What such an entry does to a plan is one explanation "invoiced by
        the PSA"; the plan counts them instead.

        The condition names the clients read as ``{clients}`` (``Store.CLIENTS`` among the
        arguments): the tickets of flat-rate work are looked for among theirs."""
        flat = sorted(set(flat_work_types))
        at = before.astimezone(timezone.utc).isoformat()

        def eligible(t: str) -> tuple[str, tuple]:
            return (f"coalesce({t}invoiced, 0) = 1 and coalesce({t}billable, '') = 'billable' and "
                    f"{t}agreement_source_id is null and coalesce({t}started_at, '') < ? and "
                    f"coalesce({t}started_at, '') like ?", (at, "%+00:00"))
        cond, args = eligible("")
        if flat:
            # A flat-rate job's entries are settled together or not at all: only when every entry of
            # its ticket is (all invoiced by the PSA, so the job is "invoiced by the PSA" whatever
            # else; one that is not keeps the whole ticket read). Entries not billable or of no
            # charge take no part in the job (bill_time explains them on their own).
            marks = ", ".join("?" for _ in flat)
            unsettled, uargs = eligible("g.")
            cond += (f" and ((ticket_id is null and (work_type is null or work_type not in ({marks}))) "
                     f"or (ticket_id is not null and (ticket_id not in "
                     f"(select f.ticket_id from time_entries f where f.source = ? and f.client_source_id in ({{clients}}) "
                     f"and f.ticket_id is not null and f.work_type in ({marks})) or ticket_id not in "
                     f"(select g.ticket_id from time_entries g where g.source = ? and g.client_source_id in ({{clients}}) "
                     f"and g.ticket_id is not null and coalesce(g.billable, '') not in ('do_not_bill', 'no_charge') "
                     f"and not ({unsettled})))))")
            args += (*flat, Store.SOURCE, Store.CLIENTS, *flat, Store.SOURCE, Store.CLIENTS, *uargs)
        return cond, args

    @staticmethod
    def _with_clients(where: str, args: Iterable, source: str, clients: list[str]) -> tuple[str, list]:
        """``where`` and ``args`` with ``{clients}`` (``Store.CLIENTS``) the clients of one query and
        ``Store.SOURCE`` their source."""
        out: list = []
        for a in args:
            if a is Store.CLIENTS:
                out += clients
            elif a is Store.SOURCE:
                out.append(source)
            else:
                out.append(a)
        return where.replace("{clients}", ", ".join("?" for _ in clients)), out

    # --- revenue KPIs (hub.reports.kpis): what the hub sent, read back ------------------------

    def sent_invoices(self, first: str, last: str) -> list[dict]:
        """The sent invoice actions (invoices, re-issues and block renewals) of periods ``first``
        to ``last`` (YYYY-MM, inclusive), by key: ``key``, ``client_id``, ``period``, ``sent_at``
        and ``payload`` (decoded)."""
        rows = self.db.query("select key, client_id, period, sent_at, payload from actions where kind = ? "
                             "and status = ? and period >= ? and period <= ? order by key",
                             ["invoice", SENT, first, last])
        return [dict(r, payload=json.loads(r["payload"] or "{}")) for r in rows]

    def sent_corrections(self) -> list[dict]:
        """The sent corrections (voids and credit notes) of every invoice, oldest first, as
        ``corrections`` gives them."""
        return [c for c in self.corrections() if c["status"] == SENT]

    def sent_snapshots(self, first: str, last: str) -> list[dict]:
        """The snapshots of periods ``first`` to ``last`` whose invoice action was sent, by client
        and period: ``client_id``, ``period``, ``action_key`` and ``lines`` (decoded)."""
        rows = self.db.query("select s.client_id, s.period, s.action_key, s.lines from snapshots s join actions a "
                             "on a.key = s.action_key where a.status = ? and s.period >= ? and s.period <= ? "
                             "order by s.client_id, s.period", [SENT, first, last])
        return [dict(r, lines=json.loads(r["lines"] or "[]")) for r in rows]

    def sent_blocks(self) -> list[dict]:
        """The prepaid blocks the hub sold by a sent renewal invoice: ``client_id``, ``agreement``,
        ``number``, ``hours``, ``rate``, ``started_at``, ``action_key`` and the action's ``period``."""
        return list(self.db.query("select b.client_id, b.agreement, b.number, b.hours, b.rate, b.started_at, "
                                  "b.action_key, a.period from blocks b join actions a on a.key = b.action_key "
                                  "where a.status = ? order by b.client_id, b.agreement, b.number", [SENT]))

    # --- client scorecards (frozen when presented) ------------------------------------------------

    def freeze_scorecard(self, client_id: str, quarter: str, data: dict, *, at: str, who: str,
                         replace: bool = False) -> bool:
        """Store a client's scorecard of a quarter as presented (``data``, JSON). False, and
        nothing changed, when that quarter is already frozen and ``replace`` is not given."""
        row = {"client_id": client_id, "quarter": quarter, "frozen_at": at, "frozen_by": who,
               "data": json.dumps(data, sort_keys=True, ensure_ascii=False)}
        with self.db.atomic():
            exists = list(self.db.query("select 1 as x from scorecards where client_id = ? and quarter = ?",
                                        [client_id, quarter]))
            if exists and not replace:
                return False
            self._insert("scorecards", row, conflict=("client_id", "quarter"))
        return True

    def frozen_scorecard(self, client_id: str, quarter: str) -> dict | None:
        """The frozen scorecard (client_id, quarter, frozen_at, frozen_by, data as a dict) or None."""
        rows = list(self.db.query("select * from scorecards where client_id = ? and quarter = ?", [client_id, quarter]))
        return dict(rows[0], data=json.loads(rows[0]["data"])) if rows else None

    def frozen_scorecards(self, client_id: str | None = None) -> list[dict]:
        """Which scorecards are frozen (client_id, quarter, frozen_at, frozen_by; not their data),
        by client and quarter."""
        sql, args = "select client_id, quarter, frozen_at, frozen_by from scorecards", []
        if client_id is not None:
            sql, args = sql + " where client_id = ?", [client_id]
        return list(self.db.query(sql + " order by client_id, quarter", args))


    # --- maturity self-assessment and report delivery (hub.reports.maturity, hub.reports.delivery) ---

    def save_maturity_answers(self, answers: dict, *, at: str, by: str, overall: str, stage: str) -> dict:
        """Keep one self-assessment (the answers per area, when and who, its overall score and stage)."""
        row = {"answered_at": at, "answered_by": by, "answers": json.dumps(answers, sort_keys=True),
               "overall": overall, "stage": stage}
        with self.db.atomic():
            rid = self.db.execute(_insert_sql("maturity_answers", row) + " RETURNING id", list(row.values())).fetchone()[0]
        return dict(row, id=rid, answers=answers)

    def maturity_history(self) -> list[dict]:
        """Every self-assessment kept, oldest first (``answers`` decoded)."""
        return [dict(r, answers=json.loads(r["answers"])) for r in self.db.query(
            "select * from maturity_answers order by answered_at, id")]

    def get_delivery(self, report: str, client_id: str, period: str) -> dict | None:
        rows = list(self.db.query("select * from report_deliveries where report = ? and client_id = ? and period = ?",
                                  [report, client_id, period]))
        return rows[0] if rows else None

    def deliveries(self, report: str | None = None) -> list[dict]:
        sql, args = "select * from report_deliveries", []
        if report:
            sql, args = sql + " where report = ?", [report]
        return list(self.db.query(sql + " order by report, period, client_id", args))

    def record_delivery(self, report: str, client_id: str, period: str, *, file: str, sha256: str, language: str,
                        status: str) -> None:
        """Record a document written (``status`` "produced", or "kept" when it is not to be e-mailed);
        an existing row is left as it is (its file was written first)."""
        row = {"report": report, "client_id": client_id, "period": period, "file": file, "sha256": sha256,
               "language": language, "produced_at": now_iso(), "status": status, "updated_at": now_iso()}
        with self.db.atomic():
            self._insert("report_deliveries", row, conflict=("report", "client_id", "period"), update=False)

    def claim_delivery(self, report: str, client_id: str, period: str, recipient: str) -> bool:
        """Mark a document as being e-mailed to ``recipient`` (committed before the SMTP server is
        spoken to), only when it is produced or its last e-mail failed: one atomic UPDATE, so that of
        several processes exactly one sends it. False: it was sent, is being sent, or is not to be."""
        with self.db.atomic():
            row = self.db.execute(
                "UPDATE report_deliveries SET status = 'sending', recipient = ?, attempts = attempts + 1, "
                "updated_at = ? WHERE report = ? AND client_id = ? AND period = ? AND status IN ('produced', 'failed') "
                "RETURNING attempts", [recipient, now_iso(), report, client_id, period]).fetchone()
        return row is not None

    def finish_delivery(self, report: str, client_id: str, period: str, *, error: str | None = None) -> None:
        """The e-mail's outcome: sent, or failed with ``error`` (e-mailed again by the next run)."""
        values = ({"status": "failed", "last_error": error[:2000], "updated_at": now_iso()} if error is not None
                  else {"status": "sent", "last_error": None, "sent_at": now_iso(), "updated_at": now_iso()})
        with self.db.atomic():
            self._update("report_deliveries", {"report": report, "client_id": client_id, "period": period}, values)


def open_store(config) -> Store:
    """The store a config names: its ``database`` (a SQLite file or a PostgreSQL URL), in its
    tenant's schema on PostgreSQL, with its ``database_password``."""
    from hub.tenants import schema_of
    password = config.database_password.reveal() if getattr(config, "database_password", None) is not None else None
    return Store(config.database, schema=schema_of(config.tenant), password=password)


def system_user() -> str:
    try:
        import getpass
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:  # no user name (a container without passwd entry)
        return f"uid {os.getuid()}@{socket.gethostname()}"


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _action_row(r: dict) -> dict:
    return dict(r, payload=json.loads(r["payload"] or "{}"), progress=json.loads(r["progress"] or "{}"),
                details=json.loads(r.get("details") or "{}"))



def _correction_row(r: dict) -> dict:
    return dict(r, lines=json.loads(r["lines"]) if r.get("lines") else None,
                frees=json.loads(r["frees"]) if r.get("frees") else None)



def sent_text(row: dict) -> str:
    """``was already sent as <vendor id> at <time>``, of a sent action's row."""
    return (f"was already sent" + (f" as {row['vendor_id']}" if row.get("vendor_id") else "")
            + (f" at {row['sent_at']}" if row.get("sent_at") else ""))


def retry_refusal(row: dict, approve: str) -> str | None:
    """Why the action ``row`` cannot be retried (None: it can). A held action is not retried: the
    next sync would plan it again and hold it again for the same reason; it is approved instead
    (``approve``: how, in the caller's words)."""
    key = row["key"]
    if row["status"] == SENT:
        return f"action {key!r} {sent_text(row)}; there is nothing to retry"
    if row["status"] == SENDING:
        return f"action {key!r} is being sent; wait for the run sending it (msp-hub runs)"
    if row["status"] == HELD:
        return (f"action {key!r} is held ({row.get('last_error') or 'no reason recorded'}); a retry would hold it "
                f"again: if it may go, approve it ({approve}), else fix the cause and sync again")
    return None

def action_from_row(row: dict) -> Action:
    return Action(row["key"], row["kind"], row["connector"], row["client_id"], row["payload"], row["period"])
