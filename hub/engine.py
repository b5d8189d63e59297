"""The sync engine: pull -> store -> reconcile -> plan -> push (see DESIGN.md).

``Hub`` ties a config, a plugin manager, a store and the mappings together; ``sync_once()`` is
the plain synchronous function that the CLI, the tests and the daemon call.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import pluggy
import structlog

from hub import reconcile
from hub.config import HubConfig
from hub.linking import Registry
from hub.metrics import ACTIONS_FAILED, ACTIONS_PUSHED, RECORDS_PULLED, RUN_SECONDS, RUNS
from hub.planner import PlanItem, plan
from hub.quantities import QuantityCheck
from hub.errors import ConfigError, HubError
from hub.mappings import Mappings, load_mappings
from hub.periods import Period, last_ended_period, parse_period
from hub.plugins import broken_plugins, collect_connectors, get_plugin_manager
from hub.store import (FAILED, HELD, PASS_COMPLETE, PASS_FAILED, PASS_STOPPED, PENDING, SENDING, SENT, Store,
                       action_from_row, open_store)

log = structlog.get_logger()

INVOICE = "invoice"
LOCK = "sync"   # the store lock every pulling or pushing run takes


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
    # Each held action: key, kind, client_id, client_name, period, total, currency, reasons and
    # cause: "error" (a contract, mapping or record error), "incomplete" (a stream that feeds it
    # failed or is stale), "guardrail" (a surprising change), "review" (the review window), "veto".
    held: list[dict[str, Any]] = field(default_factory=list)
    # Per "connector.stream" this run read: status (complete, failed, stopped), records, error.
    passes: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Standing warnings (a known unlinked client, revenue found): reported, not failures of the run.
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    quantities: list[QuantityCheck] = field(default_factory=list)
    alert_log: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False
    lock_holder: str | None = None
    registry: Registry | None = None
    seconds: float = 0.0
    # What started the run: cron, api, cli, catch-up; the scheduled job (None outside the
    # daemon); the scope it was given ({} for everything).
    trigger: str | None = None
    job: str | None = None
    scope: dict[str, Any] = field(default_factory=dict)

    @property
    def records_total(self) -> int:
        return sum(self.records.values())

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "mode": self.mode, "started_at": self.started_at.isoformat(),
                "records": self.records, "plan": [p.to_json() for p in self.plan],
                "discrepancies": [vars(d) for d in self.discrepancies], "pushed": self.pushed,
                "failed": self.failed, "held": self.held, "errors": self.errors,
                "quantities": [q.to_json() for q in self.quantities], "alert_log": self.alert_log,
                "stopped": self.stopped, "trigger": self.trigger, "job": self.job, "scope": self.scope,
                "seconds": round(self.seconds, 3)}


class Hub:
    """A configured hub: plugin manager, connectors, store and mappings."""

    def __init__(self, config: HubConfig, *, pm: pluggy.PluginManager | None = None,
                 store: Store | None = None, mappings: Mappings | None = None,
                 clock: Callable[[], datetime] | None = None):
        self.config = config
        self.pm = pm or get_plugin_manager()
        self.store = store or open_store(config)
        self.mappings = mappings or load_mappings(config.mappings)
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        from hub.notify import notify_settings
        self.notify_settings = notify_settings(config)   # a wrong [notify] fails now, before any request
        # A plugin whose register_connectors raises (not a config error) is left out as broken.
        self.connectors: dict[str, Any] = collect_connectors(self.pm, config)

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
         streams: Iterable[str] | None = None, full: bool = False, stop: threading.Event | None = None,
         progress: Callable[[dict], None] | None = None) -> None:
    """Pull every stream of every connector (or the chosen ones) from its saved cursor.

    Each page is stored with its cursor in one transaction. A failing stream is recorded in the
    report and the other streams go on; its cursor stays at the last committed page. ``full``
    reads from the start and leaves the saved cursors alone (a backfill). ``stop`` is checked
    after every committed page: the run ends there, nothing half-written.
    """
    wanted_c, wanted_s = set(connectors or []), set(streams or [])
    if not wanted_c and not wanted_s:
        for broken in broken_plugins(hub.pm):
            # Its connectors are missing from this run: a failed pass, so the run does not end 0.
            report.passes[f"plugin:{broken.name}"] = {"status": PASS_FAILED, "records": 0,
                                                      "error": broken.message, "sweep_count": None}
            report.errors.append(f"pull plugin:{broken.name}: {broken.message}")
    for name in sorted(hub.connectors):
        if wanted_c and name not in wanted_c:
            continue
        for stream in hub.connectors[name].streams():
            if wanted_s and stream.name not in wanted_s:
                continue
            if stop is not None and stop.is_set():
                report.stopped = True
                return
            if not pull_stream(hub, report, name, stream, full=full, stop=stop, progress=progress):
                return


def pull_stream(hub: Hub, report: RunReport, name: str, stream, *, full: bool, stop: threading.Event | None,
                progress: Callable[[dict], None] | None) -> bool:
    """Pull one stream and record how its pass ended (complete, failed, stopped) in the store.

    Returns False when the run must stop here (``stop`` was set). Any exception of the stream
    (a vendor error, a read that ended early, a plugin bug) fails this stream's pass only: its
    cursor stays at the last committed page, and whatever the stream feeds is held by the plan.
    """
    slog = log.bind(run_id=report.run_id, connector=name, stream=stream.name)
    key = f"{name}.{stream.name}"
    report.records.setdefault(key, 0)
    saved = hub.store.get_cursor(name, stream.name)
    started = hub.clock().isoformat()    # the hub's clock, as the periods the plan compares it with
    pages, read, sweep_count = 0, 0, None

    def finish(status: str, error: str | None = None) -> None:
        if stream.table == "devices" and pages:
            # When the hub first saw each device approved: an approval never reaches back into a
            # period invoiced before it (noted at pull time, whichever job pulled the devices).
            hub.store.note_device_approvals(hub.clock().isoformat(), name)
        hub.store.record_pass(name, stream.name, report.run_id, started, status, read,
                              sweep_count=sweep_count, error=error, finished_at=hub.clock().isoformat())
        report.passes[key] = {"status": status, "records": read, "error": error, "sweep_count": sweep_count}

    try:
        follow = getattr(hub.connectors.get(name), "follow_tickets", None)
        if stream.table == "tickets" and callable(follow):
            follow(hub.store.adopted_tickets(name))   # the tickets it adopted, which it must read too
        for page in stream.iter_pages(None if full else saved, report.started_at):
            n = hub.store.write_page(stream.table, page.records, name, stream.name,
                                     saved if full else page.cursor, complete=page.complete,
                                     rejected=page.rejected, scope=page.scope)
            for rid, why in page.rejected:
                report.errors.append(f"pull {key}: record {rid} set aside: {why}")
                slog.error("sync.record_rejected", record=rid, error=why)
            report.records[key] += n
            read += n + len(page.rejected)
            if page.sweep_count is not None:
                sweep_count = page.sweep_count
            pages += 1
            RECORDS_PULLED.labels(name, stream.name).inc(n)
            slog.debug("sync.page_stored", records=n, pages=pages)
            if progress:
                progress({"event": "page", "connector": name, "stream": stream.name, "records": n, "pages": pages})
            if report.lock_holder:
                hub.store.heartbeat(LOCK, report.lock_holder)
            if stop is not None and stop.is_set():
                report.stopped = True
                finish(PASS_STOPPED, "stopped before the end of the stream (the service was stopping)")
                slog.info("sync.stopped", pages=pages)
                return False
    except Exception as exc:  # noqa: BLE001 - one stream's failure must not stop the others
        error = str(exc) if isinstance(exc, HubError) else f"{exc.__class__.__name__}: {exc}"
        report.errors.append(f"pull {key}: {error}")
        finish(PASS_FAILED, error)
        if isinstance(exc, HubError):
            slog.error("sync.stream_failed", error=error, pages=pages)
        else:
            slog.exception("sync.stream_crashed", error=error, pages=pages)
        return True
    finish(PASS_COMPLETE)
    slog.info("sync.stream_pulled", records=report.records[key], pages=pages)
    return True


# --- push --------------------------------------------------------------------------------------

class _PushContext:
    """What a connector may read and record while it pushes one action (see hub.connectors)."""

    def __init__(self, store: Store, key: str, attempts: int, progress: dict,
                 links: dict[str, dict[str, str]] | None = None):
        self.store, self.key, self.attempts, self.progress = store, key, attempts, dict(progress)
        self.links = links or {}

    def get_link(self, client_id: str, system: str) -> str | None:
        """The MSP's explicit link (contracts, links.toml) first, else the one a connector saved."""
        return self.links.get(client_id, {}).get(system) or self.store.get_link(client_id, system)

    def set_link(self, client_id: str, system: str, external_id: str) -> None:
        self.store.set_link(client_id, system, external_id)

    def save_progress(self, **progress: Any) -> None:
        self.progress.update(progress)
        self.store.save_progress(self.key, self.progress)


def push(hub: Hub, report: RunReport, items: list[PlanItem], *, clients: Iterable[str] = (),
         stop: threading.Event | None = None, progress: Callable[[dict], None] | None = None,
         kinds: frozenset[str] | None = None) -> None:
    """Store the plan's new actions, then send every unsent action of the outbox, exactly once.

    ``clients`` restricts the push to those hub clients' actions, ``kinds`` to those action
    kinds (None: all); ``stop`` is checked before each.
    """
    only = set(clients)
    links = explicit_links(hub)
    items = [i for i in items if kinds is None or (i.action is not None and i.action.kind in kinds)]
    items = hold_for_broken_plugins(hub, report, items)
    for item in items:
        action = item.action
        if action is None:
            continue
        if item.status in ("create", "retry") and not action.connector:
            report.errors.append(f"{action.key}: no configured connector can push {action.kind} actions")
            continue
        if item.status == "create":
            hub.store.record_action(action, report.run_id, ledger=item.ledger, snapshot=item.snapshot, block=item.block)
        elif item.status == "held" and action.connector:
            stored = hub.store.get_action(action.key)
            if item.cause in ("guardrail", "veto", "review"):
                # Kept in the outbox as held, so that a person can approve it (msp-hub approve KEY).
                stored = hub.store.record_action(action, report.run_id)
            if stored and stored["status"] in (PENDING, FAILED, HELD) and stored["attempts"] == 0:
                # Never sent: it waits, whatever an earlier run stored. (One that was attempted
                # may be at the vendor already: it is completed with the payload it was sent with.)
                hub.store.mark_failed(action.key, "; ".join(item.reasons), status=HELD)
    for row in hub.store.actions():
        if row["status"] not in (PENDING, SENDING, FAILED) or (only and row["client_id"] not in only) \
                or (kinds is not None and row["kind"] not in kinds):
            continue
        if report.lock_holder:
            hub.store.heartbeat(LOCK, report.lock_holder)
        if stop is not None and stop.is_set():
            report.stopped = True
            return
        action = action_from_row(row)
        target = hub.connectors.get(row["connector"])
        if target is None:
            report.errors.append(f"action {row['key']}: connector {row['connector']!r} is not configured")
            continue
        alog = log.bind(run_id=report.run_id, connector=target.name, action=row["key"])
        # Claimed only if still as read: of several processes that read it, exactly one sends it.
        attempts = hub.store.claim_action(row["key"], row["status"], row["attempts"])
        if attempts is None:
            alog.info("push.skipped", reason="claimed by another process since it was read")
            continue
        try:
            result = target.push(action, _PushContext(hub.store, row["key"], attempts, row["progress"], links))
        except Exception as exc:  # noqa: BLE001 - a vendor's refusal, or a plugin's bug: this action only
            if isinstance(exc, HubError):
                error = str(exc)
                alog.error("push.failed", error=error, attempt=attempts + 1)
            else:
                # Raised after mark_sending: the request may have reached the vendor, as after a
                # timeout. It stays in the outbox as failed with its attempt counted; the next run
                # sends it again with the same idempotency key, so it is never sent twice.
                error = (f"{exc.__class__.__name__}: {exc} (raised by the {target.name} connector while "
                         f"pushing; outcome unknown: the next sync retries it with the same key)")
                alog.exception("push.crashed", error=error, attempt=attempts + 1)
            hub.store.mark_failed(row["key"], error)
            report.failed.append({"key": row["key"], "error": error})
            report.errors.append(f"push {row['key']}: {error}")
            ACTIONS_FAILED.labels(row["kind"], target.name).inc()
            if progress:
                progress({"event": "action", "key": row["key"], "status": "failed"})
            continue
        hub.store.mark_sent(row["key"], result.vendor_id, result.summary, result.details)
        report.pushed.append({"key": row["key"], "vendor_id": result.vendor_id, "summary": result.summary})
        alog.info("push.sent", vendor_id=result.vendor_id, attempt=attempts + 1)
        ACTIONS_PUSHED.labels(row["kind"], target.name).inc()
        if progress:
            progress({"event": "action", "key": row["key"], "status": "sent"})


def hold_for_broken_plugins(hub: Hub, report: RunReport, items: list[PlanItem]) -> list[PlanItem]:
    """While a plugin is broken, new billing actions wait (held, cause ``incomplete``).

    A broken plugin's hooks do not run: it may have added billing lines, amended or vetoed an
    action, and a sent invoice is final. Tickets go on; an action already attempted is completed
    with the payload it was sent with; the first sync after the plugin is fixed pushes the rest.
    """
    broken = broken_plugins(hub.pm)
    if not broken:
        return items
    from dataclasses import replace
    from hub.planner import held_json
    why = "; ".join(b.message for b in broken)
    out = []
    for item in items:
        if item.status == "create" and item.action is not None and item.action.kind not in TICKET_KINDS:
            item = replace(item, status="held", cause="incomplete", reasons=(
                *item.reasons, f"held while a plugin is broken (its hooks may change or hold it): {why}"))
            report.held.append(held_json(item))
        out.append(item)
    return out


def review_drafts(hub: Hub, report: RunReport, *, clients: Iterable[str] = (), stop=None, progress=None) -> None:
    """Drafts this run created under the review window: listed as held (cause ``review``) in this
    run's report, so that the notification names them with their totals and the run to approve."""
    from hub.planner import held_json, plan_finalizes
    planned = {i.action.key for i in report.plan if i.action is not None}
    only = set(clients)
    late = [i for i in plan_finalizes(hub, hub.clock()) if i.action.key not in planned
            and (not only or i.client_id in only)]
    if not late:
        return
    report.plan.extend(late)
    report.held.extend(held_json(i) for i in late if i.status == "held")
    push(hub, report, late, clients=clients, stop=stop, progress=progress)


def explicit_links(hub: Hub) -> dict[str, dict[str, str]]:
    """Each hub client's ids in other systems as the MSP wrote them (contracts, links.toml)."""
    m = hub.mappings
    out = {cid: dict(links) for cid, (_, links) in m.links.items()}
    for cid, contract in m.contracts.items():
        out.setdefault(cid, {}).update(contract.links)
    return out


# --- one run -----------------------------------------------------------------------------------

def periods_for(hub: Hub, period: str | None) -> tuple[list[Period], bool]:
    """The periods a run plans: the forced one; else every ended period from the first one the hub
    invoices (``first_period``) up to the last ended, at most ``catch_up_months`` of them, then the
    current one (a preview). A missed month (a daemon down on the 1st) is invoiced by the next run;
    the plan bills an older one only for the clients not invoiced for it yet."""
    tz = hub.config.timezone
    if period:
        return [parse_period(period, tz)], True
    last = last_ended_period(hub.clock(), tz)
    start = max(first_period(hub, last).name, horizon(hub, last).name)
    ended: list[Period] = []
    p = last
    while p.name >= start:
        ended.insert(0, p)
        p = p.previous()
    return ended + [last.next()], False


def horizon(hub: Hub, last: Period) -> Period:
    """The oldest period a run catches up: ``catch_up_months`` ended periods, ``last`` included."""
    p = last
    for _ in range(hub.config.billing_settings.catch_up - 1):
        p = p.previous()
    return p


def sent_invoice_periods(hub: Hub) -> dict[str, int]:
    """Each period that has sent invoices -> how many (renewals aside); one query, no payload read."""
    return hub.store.sent_per_period(INVOICE, f"{INVOICE}:")


def first_period(hub: Hub, last: Period) -> Period:
    """``[billing] first_period``; by default the earliest period the hub sent an invoice for (it
    has been invoicing since then), else the last ended one (a new hub does not bill the past)."""
    tz = hub.config.timezone
    configured = hub.config.billing_settings.first_period
    if configured:
        return parse_period(configured, tz)
    sent = sent_invoice_periods(hub)
    return parse_period(min(sent), tz) if sent else last


def report_beyond_horizon(hub: Hub, report: RunReport) -> None:
    """The ended periods since ``first_period`` older than the catch-up horizon that nothing was
    invoiced for (a month went uninvoiced): an error of the run naming the period and the fix,
    never billed nor dropped silently. (A client missing from an invoiced period was planned by
    every run while the period was within the horizon: its plan said why.)"""
    last = last_ended_period(hub.clock(), hub.config.timezone)
    first, oldest = first_period(hub, last), horizon(hub, last)
    if first.name >= oldest.name:
        return
    sent = sent_invoice_periods(hub)
    months = hub.config.billing_settings.catch_up
    where = f"{hub.config.file}, key 'billing.catch_up_months' = {months}"
    p = first
    while p.name < oldest.name:
        fix = (f"invoice it with: msp-hub sync --period {p.name}, or if nothing is owed for it set "
               f"billing.first_period = \"{p.next().name}\"")
        if not sent.get(p.name):
            report.errors.append(f"period {p.name}: nothing was invoiced for it, and it is older than the "
                                 f"{months} ended period(s) a run catches up ({where}): {fix}")
        p = p.next()


ALERT_STREAMS = frozenset({"alerts", "alert_events", "tickets"})
TICKET_KINDS = frozenset({"ticket", "ticket_note", "ticket_close", "ticket_reopen"})


def allowed_kinds(hub: Hub, connectors, streams, actions) -> frozenset[str] | None:
    """The action kinds a run may plan and push (None: all of them); see ``sync_once``."""
    if actions is not None:
        return frozenset(actions)
    if not connectors and not streams:
        return None
    chosen = {s.name for name, c in hub.connectors.items() if not connectors or name in connectors
              for s in c.streams() if not streams or s.name in streams}
    return TICKET_KINDS if chosen & ALERT_STREAMS else frozenset()


class LockedError(HubError):
    """Another live run holds the run lock; ``holder``, ``pid``, ``host``, ``since`` say which."""

    def __init__(self, info: dict):
        self.holder, self.pid, self.host = info["holder"], info["pid"], info["host"]
        self.since = info.get("since") or info.get("acquired_at")
        super().__init__(f"a run is in progress ({self.holder}, pid {self.pid} on {self.host}, since {self.since}); "
                         f"try again when it ends")


def lock_holder_of(hub: Hub, holder: str, run_id: str | None) -> str:
    """The run lock's holder: who, which run, which process and thread; a tenant other than the
    default is named first (``acme/daemon:invoices:...``). The lock itself lives in the tenant's
    own store, so one tenant's run never waits for another's."""
    name = f"{holder}:{run_id or 'run'}:{os.getpid()}:{threading.get_ident()}"
    tenant = getattr(hub.config, "tenant", "default")
    return name if tenant == "default" else f"{tenant}/{name}"


def sync_once(hub: Hub, **kwargs: Any) -> RunReport:
    """``run_once`` under the hub's tenant: its metrics labelled and its log lines bound with it
    (``hub.logs.tenant_scope``). See ``run_once`` for the arguments."""
    from hub.logs import tenant_scope
    with tenant_scope(getattr(hub.config, "tenant", "default")):
        return run_once(hub, **kwargs)


def run_once(hub: Hub, *, dry_run: bool = False, pull_first: bool = True, period: str | None = None,
             connectors: Iterable[str] | None = None, streams: Iterable[str] | None = None,
             clients: Iterable[str] = (), full: bool = False, stop: threading.Event | None = None,
             run_id: str | None = None, holder: str = "cli",
             progress: Callable[[dict], None] | None = None, actions: Iterable[str] | None = None,
             trigger: str = "cli", job: str | None = None) -> RunReport:
    """Pull, plan and (unless ``dry_run``) push; record the run; tell the plugins it finished.

    A run that pulls or pushes takes the store's run lock, so that two never overlap whoever
    started them (daemon, CLI, API); a live holder makes this raise LockedError, a dead one's lock
    is taken over. ``clients`` restricts the plan and the push to those hub clients; ``full``
    re-reads the chosen streams without moving their cursors; ``stop`` ends the run after the
    current page or action. ``progress`` receives one dict per page and per action.

    ``actions``: the action kinds the run may plan and push. By default an unscoped run does
    everything, and a run scoped to connectors or streams only what those streams feed (the alert
    streams feed tickets; billing waits for an unscoped run, such as the scheduled invoice job).

    ``trigger`` (cron, api, cli, catch-up) and ``job`` (the scheduled job's name) are recorded
    with the run, with its scope, so that a listing of runs says what started each.
    """
    scope = run_scope(period, connectors, streams, clients) | ({"full": True} if full else {}) \
        | ({"dry_run": True} if dry_run and pull_first else {})
    origin = {"trigger": trigger, "job": job, "scope": scope}
    mode = "plan" if not pull_first else ("dry-run" if dry_run else "sync")
    lock_holder = None
    if pull_first:
        lock_holder = lock_holder_of(hub, holder, run_id)
        taken = hub.store.acquire_lock(LOCK, lock_holder)
        if taken is not None:
            if run_id:   # a run someone was promised (an API 202) says why it did not happen
                hub.store.start_run(mode, run_id, **origin)
                hub.store.finish_run(run_id, "refused", {}, [str(LockedError(taken))])
            raise LockedError(taken)
    kinds = allowed_kinds(hub, connectors, streams, actions)
    try:
        periods, force = periods_for(hub, period)     # a wrong period is refused before any request
    except ValueError as exc:
        if lock_holder:
            hub.store.release_lock(LOCK, lock_holder)
        raise HubError(f"--period: {exc} (fix: write it as YYYY-MM, e.g. 2026-10)") from None
    try:
        run_id, started = hub.store.start_run(mode, run_id, **origin)
        for dead in hub.store.mark_abandoned_runs(lock_held=lock_holder is not None, keep=run_id):
            log.warning("sync.run_abandoned", run_id=dead)
        report = RunReport(run_id, mode, started, lock_holder=lock_holder, **origin)
        t0 = time.perf_counter()
        status = "ok"
        try:
            if pull_first:
                pull(hub, report, connectors=connectors, streams=streams, full=full, stop=stop, progress=progress)
            if not report.stopped:
                if lock_holder:
                    hub.store.heartbeat(LOCK, lock_holder)
                billing = kinds is None or INVOICE in kinds
                if billing and not force:
                    report_beyond_horizon(hub, report)
                items = plan(hub, report, periods, force=force, clients=clients, kinds=kinds)
                if not dry_run and pull_first:
                    push(hub, report, items, clients=clients, stop=stop, progress=progress, kinds=kinds)
                    if not report.stopped and billing:
                        review_drafts(hub, report, clients=clients, stop=stop, progress=progress)
                    elif not report.stopped and actions is None:
                        push_recorded_invoices(hub, report, clients=clients, stop=stop, progress=progress)
        except BaseException as exc:
            status = "crashed"
            report.errors.append(f"run stopped: {exc!r}")
            raise
        finally:
            report.seconds = time.perf_counter() - t0
            if status == "ok":
                status = run_status(report)
            hub.store.finish_run(run_id, status, {"holder": holder, "scope": run_scope(period, connectors, streams, clients),
                                                  "records": report.records, "pushed": len(report.pushed),
                                                  "failed": len(report.failed), "held": len(report.held),
                                                  "passes": report.passes, "warnings": report.warnings[:200],
                                                  "held_causes": held_causes(report)},
                                 report.errors)
            RUNS.labels(mode, status).inc()
            RUN_SECONDS.labels(mode).observe(report.seconds)
    finally:
        if lock_holder:
            hub.store.release_lock(LOCK, lock_holder)
    if pull_first:
        from hub.notify import notify_run
        notify_run(hub, report)        # people are told what waits; never fails the run
    notify_finished(hub.pm, report)
    return report


def run_scope(period, connectors, streams, clients) -> dict[str, Any]:
    """What a run was scoped to, recorded with it (empty: an unscoped run)."""
    scope = {"period": period, "connectors": sorted(connectors or []), "streams": sorted(streams or []),
             "clients": sorted(clients or [])}
    return {k: v for k, v in scope.items() if v}


def push_recorded_invoices(hub: Hub, report: RunReport, *, clients: Iterable[str] = (),
                           stop: threading.Event | None = None, progress: Callable[[dict], None] | None = None) -> None:
    """Send the invoices an earlier run planned and recorded but did not finish sending (stopped
    mid-push, killed): a scoped run (the alerts or time job) sends them within minutes, rather than
    the next month's invoicing run. Nothing new is planned: only what an unscoped run stored,
    checked and let through is sent, with the payload it stored. Only the clients with such an
    invoice are pushed (their failed invoices, if any, are retried with them)."""
    only = set(clients)
    waiting = {r["client_id"] for status in (PENDING, SENDING) for r in hub.store.actions(status=status, kind=INVOICE)
               if not only or r["client_id"] in only}
    if waiting:
        log.info("sync.recorded_invoices", run_id=report.run_id, clients=sorted(waiting))
        push(hub, report, [], clients=sorted(waiting), stop=stop, progress=progress, kinds=frozenset({INVOICE}))


def held_causes(report: RunReport) -> dict[str, int]:
    out: dict[str, int] = {}
    for h in report.held:
        out[h.get("cause") or "error"] = out.get(h.get("cause") or "error", 0) + 1
    return out


def run_status(report: RunReport) -> str:
    """How a finished run ended, the most severe first: ``stopped``; ``failed`` (a stream's pass or
    a push failed); ``held`` (something waits for an error to be fixed or a stream to be complete);
    ``partial`` (other errors, e.g. a record set aside); ``warnings`` (standing warnings only, such
    as a client left unlinked on purpose); ``ok``."""
    if report.stopped:
        return "stopped"
    if report.failed or any(p["status"] == PASS_FAILED for p in report.passes.values()):
        return "failed"
    if any(h.get("cause") in ("error", "incomplete") for h in report.held):
        return "held"
    if report.errors:
        return "partial"
    return "warnings" if report.warnings else "ok"


def notify_finished(pm: pluggy.PluginManager, report: RunReport) -> None:
    """Call every ``sync_finished``; one plugin's exception is logged and the others still run."""
    for impl in pm.hook.sync_finished.get_hookimpls():
        try:
            impl.function(**{name: report for name in impl.argnames})
        except Exception as exc:  # a notification plugin must not fail the run
            log.error("sync.finished_hook_failed", run_id=report.run_id, plugin=impl.plugin_name, error=repr(exc))


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)
