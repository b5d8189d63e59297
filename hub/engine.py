"""The sync engine: pull -> store -> reconcile -> plan -> push (see DESIGN.md).

``Hub`` ties a config, a plugin manager, a store and the mappings together; ``sync_once()`` is
the plain synchronous function that the CLI, the tests and the daemon call.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import pluggy
import structlog

from hub import reconcile
from hub.config import HubConfig
from hub.linking import Registry
from hub.planner import PlanItem, plan
from hub.quantities import QuantityCheck
from hub.errors import ConfigError, HubError, VendorError
from hub.mappings import Mappings, load_mappings
from hub.periods import Period, last_ended_period, parse_period
from hub.plugins import get_plugin_manager
from hub.store import FAILED, HELD, PENDING, SENDING, SENT, Store, action_from_row

log = structlog.get_logger()

INVOICE = "invoice"


@dataclass
class RunReport:
    """What one run did: records per stream, the plan, the pushes and every error (no secrets)."""

    run_id: str
    mode: str
    started_at: datetime
    records: dict[str, int] = field(default_factory=dict)
    plan: list[PlanItem] = field(default_factory=list)
    discrepancies: list[reconcile.Discrepancy] = field(default_factory=list)
    pushed: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    quantities: list[QuantityCheck] = field(default_factory=list)
    alert_log: list[dict[str, Any]] = field(default_factory=list)
    registry: Registry | None = None
    seconds: float = 0.0

    @property
    def records_total(self) -> int:
        return sum(self.records.values())

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "mode": self.mode, "started_at": self.started_at.isoformat(),
                "records": self.records, "plan": [p.to_json() for p in self.plan],
                "discrepancies": [vars(d) for d in self.discrepancies], "pushed": self.pushed,
                "failed": self.failed, "held": self.held, "errors": self.errors,
                "quantities": [q.to_json() for q in self.quantities], "alert_log": self.alert_log,
                "seconds": round(self.seconds, 3)}


class Hub:
    """A configured hub: plugin manager, connectors, store and mappings."""

    def __init__(self, config: HubConfig, *, pm: pluggy.PluginManager | None = None,
                 store: Store | None = None, mappings: Mappings | None = None,
                 clock: Callable[[], datetime] | None = None):
        self.config = config
        self.pm = pm or get_plugin_manager()
        self.store = store or Store(config.database)
        self.mappings = mappings or load_mappings(config.mappings)
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.connectors: dict[str, Any] = {}
        for batch in self.pm.hook.register_connectors(config=config):
            for connector in batch or []:
                if connector.name in self.connectors:
                    raise ConfigError(f"two plugins provide a connector named {connector.name!r}",
                                      file=config.file, key=f"connectors.{connector.name}",
                                      fix="uninstall one of the plugins")
                self.connectors[connector.name] = connector

    def close(self) -> None:
        for c in self.connectors.values():
            c.close()
        self.store.close()

    def invoice_connector(self):
        """The connector that pushes invoices (``billing.invoice_connector`` picks among several)."""
        able = sorted(n for n, c in self.connectors.items() if INVOICE in c.action_kinds)
        chosen = self.config.billing.get("invoice_connector")
        if chosen:
            if chosen not in able:
                raise ConfigError(f"connector {chosen!r} cannot push invoices", file=self.config.file,
                                  key="billing.invoice_connector", fix=f"use one of {', '.join(able) or '(none configured)'}")
            return self.connectors[chosen]
        if len(able) > 1:
            raise ConfigError(f"several connectors push invoices: {', '.join(able)}", file=self.config.file,
                              key="billing.invoice_connector", fix="name the one to use")
        return self.connectors[able[0]] if able else None


# --- pull --------------------------------------------------------------------------------------

def pull(hub: Hub, report: RunReport, *, connectors: Iterable[str] | None = None,
         streams: Iterable[str] | None = None) -> None:
    """Pull every stream of every connector (or the chosen ones) from its saved cursor.

    Each page is stored with its cursor in one transaction. A failing stream is recorded in the
    report and the other streams go on; its cursor stays at the last committed page.
    """
    wanted_c, wanted_s = set(connectors or []), set(streams or [])
    for name in sorted(hub.connectors):
        if wanted_c and name not in wanted_c:
            continue
        for stream in hub.connectors[name].streams():
            if wanted_s and stream.name not in wanted_s:
                continue
            slog = log.bind(run_id=report.run_id, connector=name, stream=stream.name)
            key = f"{name}.{stream.name}"
            report.records.setdefault(key, 0)
            cursor = hub.store.get_cursor(name, stream.name)
            pages = 0
            try:
                for page in stream.iter_pages(cursor, report.started_at):
                    report.records[key] += hub.store.write_page(stream.table, page.records, name, stream.name, page.cursor,
                                                                complete=page.complete)
                    pages += 1
                    slog.debug("sync.page_stored", records=len(page.records), pages=pages)
            except HubError as exc:
                report.errors.append(f"pull {key}: {exc}")
                slog.error("sync.stream_failed", error=str(exc), pages=pages)
                continue
            slog.info("sync.stream_pulled", records=report.records[key], pages=pages)


# --- push --------------------------------------------------------------------------------------

class _PushContext:
    """What a connector may read and record while it pushes one action (see hub.connectors)."""

    def __init__(self, store: Store, key: str, attempts: int, progress: dict):
        self.store, self.key, self.attempts, self.progress = store, key, attempts, dict(progress)

    def get_link(self, client_id: str, system: str) -> str | None:
        return self.store.get_link(client_id, system)

    def set_link(self, client_id: str, system: str, external_id: str) -> None:
        self.store.set_link(client_id, system, external_id)

    def save_progress(self, **progress: Any) -> None:
        self.progress.update(progress)
        self.store.save_progress(self.key, self.progress)


def push(hub: Hub, report: RunReport, items: list[PlanItem]) -> None:
    """Store the plan's new actions, then send every unsent action of the outbox, exactly once."""
    for item in items:
        action = item.action
        if action is None:
            continue
        if item.status in ("create", "retry") and not action.connector:
            report.errors.append(f"{action.key}: no configured connector can push {action.kind} actions")
            continue
        if item.status == "create":
            hub.store.record_action(action, report.run_id, ledger=item.ledger, snapshot=item.snapshot, block=item.block)
        elif item.status == "held" and action.connector and not (item.bill and item.bill.errors):
            stored = hub.store.record_action(action, report.run_id)
            if stored["status"] != SENT:
                hub.store.mark_failed(action.key, "; ".join(item.reasons), status=HELD)
            report.held.append({"key": action.key, "reasons": list(item.reasons)})
    for row in hub.store.actions():
        if row["status"] not in (PENDING, SENDING, FAILED):
            continue
        action = action_from_row(row)
        target = hub.connectors.get(row["connector"])
        if target is None:
            report.errors.append(f"action {row['key']}: connector {row['connector']!r} is not configured")
            continue
        alog = log.bind(run_id=report.run_id, connector=target.name, action=row["key"])
        attempts = hub.store.mark_sending(row["key"])
        try:
            result = target.push(action, _PushContext(hub.store, row["key"], attempts, row["progress"]))
        except HubError as exc:   # a vendor's refusal, or a payload the connector cannot send
            hub.store.mark_failed(row["key"], str(exc))
            report.failed.append({"key": row["key"], "error": str(exc)})
            report.errors.append(f"push {row['key']}: {exc}")
            alog.error("push.failed", error=str(exc), attempt=attempts + 1)
            continue
        hub.store.mark_sent(row["key"], result.vendor_id, result.summary, result.details)
        report.pushed.append({"key": row["key"], "vendor_id": result.vendor_id, "summary": result.summary})
        alog.info("push.sent", vendor_id=result.vendor_id, attempt=attempts + 1)


# --- one run -----------------------------------------------------------------------------------

def periods_for(hub: Hub, period: str | None) -> tuple[list[Period], bool]:
    """The periods a run plans: the forced one, else the last ended and the current (preview)."""
    tz = hub.config.timezone
    if period:
        return [parse_period(period, tz)], True
    last = last_ended_period(hub.clock(), tz)
    return [last, last.next()], False


def sync_once(hub: Hub, *, dry_run: bool = False, pull_first: bool = True, period: str | None = None,
              connectors: Iterable[str] | None = None, streams: Iterable[str] | None = None) -> RunReport:
    """Pull, plan and (unless ``dry_run``) push; record the run; tell the plugins it finished."""
    mode = "plan" if not pull_first else ("dry-run" if dry_run else "sync")
    run_id, started = hub.store.start_run(mode)
    report = RunReport(run_id, mode, started)
    t0 = time.perf_counter()
    status = "ok"
    try:
        if pull_first:
            pull(hub, report, connectors=connectors, streams=streams)
        periods, force = periods_for(hub, period)
        items = plan(hub, report, periods, force=force)
        if not dry_run and pull_first:
            push(hub, report, items)
    except BaseException as exc:
        status = "crashed"
        report.errors.append(f"run stopped: {exc!r}")
        raise
    finally:
        report.seconds = time.perf_counter() - t0
        if status == "ok" and report.errors:
            status = "partial"
        hub.store.finish_run(run_id, status, {"records": report.records, "pushed": len(report.pushed),
                                              "failed": len(report.failed), "held": len(report.held)},
                             report.errors)
    notify_finished(hub.pm, report)
    return report


def notify_finished(pm: pluggy.PluginManager, report: RunReport) -> None:
    """Call every ``sync_finished``; one plugin's exception is logged and the others still run."""
    for impl in pm.hook.sync_finished.get_hookimpls():
        try:
            impl.function(**{name: report for name in impl.argnames})
        except Exception as exc:  # a notification plugin must not fail the run
            log.error("sync.finished_hook_failed", run_id=report.run_id, plugin=impl.plugin_name, error=repr(exc))


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)
