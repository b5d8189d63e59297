"""The Procrastinate app of the workers: tasks per tenant, the schedule tick, stalled jobs retried.

Tasks (each argument JSON, so that any worker on any machine can run any job):

- ``msp_hub.sync(tenant, job, scope)``: one ``sync_once`` on the tenant's hub (pull, plan, push).
- ``msp_hub.pull(tenant, job, scope)``: the same as a dry run (pull and plan, nothing pushed).
- ``msp_hub.tick``: periodic (``[workers] tick``, every minute by default, deferred once per
  tick whatever the number of workers: Procrastinate records each periodic deferral in the
  database); reads every tenant's ``[schedule]`` and defers the jobs that fired since the tick
  before.
- ``msp_hub.retry_stalled``: periodic too; a job whose worker stopped sending heartbeats for
  ``[workers] stalled_after`` (killed, its machine gone) goes back to the queue for another worker.
- ``msp_hub.clean``: hourly; finished jobs older than ``[workers] keep_jobs`` leave the queue.

Every run of a tenant takes the job lock ``tenant:<name>``: one tenant has one run at a time,
whichever worker takes it. Its queueing lock ``tenant:<name>:<job>`` keeps at most one run of a
job waiting: a tenant's syncs never pile up behind a slow one. Pushes are exactly once whichever
worker sends them: the tenant's store records each action before it is sent and the connectors
look before they create (a worker killed mid-push leaves an action ``sending`` that the next run
completes with the same idempotency key).
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import datetime, timezone
from typing import Any

import structlog
from procrastinate import App, BaseRetryStrategy, JobContext, PsycopgConnector, RetryDecision
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.jobs import Job as QueuedJob

from hub.errors import HubError
from hub.logs import tenant_scope
from hub.workers.settings import Deployment

log = structlog.get_logger()

SYNC, PULL, TICK, RETRY_STALLED = "msp_hub.sync", "msp_hub.pull", "msp_hub.tick", "msp_hub.retry_stalled"
CLEAN = "msp_hub.clean"
CONTROL_PRIORITY = 100        # the tick and the stalled-job check before any waiting run
TRIGGER = "worker"            # the trigger recorded with a worker's runs
LOCKED_RETRY_WAIT = 30        # seconds before a run refused by the tenant's store lock is tried again
MAX_ATTEMPTS = 60             # a job stopped (SIGTERM) or locked out this many times fails for good: 30
                              # minutes of a lock held (a dead process on another host holds it 10)


class RunStopped(Exception):
    """The run ended early because its worker is stopping: the job goes back to the queue."""


class RunRetry(BaseRetryStrategy):
    """A run stopped by its worker's shutdown goes back to the queue at once; one refused by the
    tenant's store lock (a CLI run in flight) waits ``LOCKED_RETRY_WAIT`` seconds; any other
    failure is final (a HubError: the same input would fail the same way; the run row says why)."""

    def get_retry_decision(self, *, exception: BaseException, job: QueuedJob) -> RetryDecision | None:
        from hub.engine import LockedError
        if job.attempts >= MAX_ATTEMPTS:
            return None
        if isinstance(exception, RunStopped):
            return RetryDecision(retry_in={"seconds": 0})
        if isinstance(exception, LockedError):
            return RetryDecision(retry_in={"seconds": LOCKED_RETRY_WAIT})
        return None


def tenant_lock(tenant: str) -> str:
    return f"tenant:{tenant}"


def queueing_lock(tenant: str, job: str) -> str:
    return f"tenant:{tenant}:{job}"


class _AbortStop(threading.Event):
    """The engine's ``stop`` event, also set when the worker asks its running jobs to stop."""

    def __init__(self, context: JobContext):
        super().__init__()
        self._context = context

    def is_set(self) -> bool:   # the engine checks it after each page and before each push
        return super().is_set() or self._context.should_abort()


def _record_refused(config, job: str, scope: dict[str, Any], error: str) -> str | None:
    """A run row saying why a job could not start (the hub could not be built): ``refused``."""
    from hub.store import open_store
    try:
        store = open_store(config)
    except Exception:  # noqa: BLE001 - the store itself is what is wrong: the job's failure says it
        return None
    try:
        run_id, _ = store.start_run("sync", None, trigger=TRIGGER, job=job, scope=scope)
        store.finish_run(run_id, "refused", {"holder": f"worker:{job}"}, [error])
        return run_id
    finally:
        store.close()


def run_tenant(deployment: Deployment, context: JobContext | None, tenant: str, job: str,
               scope: dict[str, Any], *, dry_run: bool = False, stop: threading.Event | None = None) -> dict[str, Any]:
    """One run of ``tenant`` through the engine; returns a summary of the run.

    A HubError (a wrong config, mappings or scope) is recorded as the run's failure in the
    tenant's store when the store can be opened, then raised: the job fails and is not retried
    (the same input would fail the same way). The tenant's store lock held elsewhere (a CLI run)
    raises LockedError, retried later; a run stopped by its worker's shutdown raises RunStopped,
    so that another worker runs it again.
    """
    from hub.engine import Hub, sync_once
    from hub.service import normalize_scope

    job_id = context.job.id if context is not None else None
    with tenant_scope(tenant), structlog.contextvars.bound_contextvars(job=job, job_id=job_id):
        config = deployment.tenant(tenant).load_config()
        try:
            hub = Hub(config)
        except HubError as exc:
            run_id = _record_refused(config, job, scope, str(exc))
            log.error("worker.run_refused", error=str(exc), run_id=run_id)
            raise
        try:
            try:
                kwargs = normalize_scope(scope, {n: [s.name for s in c.streams()] for n, c in hub.connectors.items()})
            except HubError as exc:
                hub.store.finish_run(hub.store.start_run("sync", None, trigger=TRIGGER, job=job, scope=scope)[0],
                                     "refused", {"holder": f"worker:{job}"}, [str(exc)])
                raise
            if dry_run:
                kwargs["dry_run"] = True
            if stop is None:
                stop = _AbortStop(context) if context is not None else threading.Event()
            report = sync_once(hub, stop=stop, holder=f"worker:{job}:{job_id}", trigger=TRIGGER, job=job, **kwargs)
            status = (hub.store.get_run(report.run_id) or {}).get("status")
        finally:
            hub.close()
        summary = {"tenant": tenant, "run_id": report.run_id, "status": status, "pushed": len(report.pushed),
                   "failed": len(report.failed), "held": len(report.held), "records": report.records_total}
        if report.stopped:
            log.info("worker.run_stopped", **summary)
            raise RunStopped(f"run {report.run_id} of tenant {tenant} stopped before its end (the worker is stopping)")
        log.info("worker.run_finished", **summary)
        return summary


def make_app(deployment: Deployment) -> App:
    """The Procrastinate app on the queue's database, with the tasks bound to ``deployment``."""
    settings = deployment.settings
    app = App(connector=PsycopgConnector(conninfo=settings.conninfo(), min_size=1,
                                         max_size=settings.concurrency + 4))
    retry = RunRetry()

    @app.task(name=SYNC, pass_context=True, retry=retry)
    def sync(context: JobContext, tenant: str, job: str = "manual", scope: dict | None = None,
             fired_at: str | None = None) -> dict[str, Any]:
        return run_tenant(deployment, context, tenant, job, scope or {})

    @app.task(name=PULL, pass_context=True, retry=retry)
    def pull(context: JobContext, tenant: str, job: str = "manual", scope: dict | None = None,
             fired_at: str | None = None) -> dict[str, Any]:
        return run_tenant(deployment, context, tenant, job, scope or {}, dry_run=True)

    # The tick and the stalled-job check jump ahead of the waiting runs (priority). Every tick is
    # kept: each covers its own window of the schedules, so a tick run late (every worker was
    # busy) still defers its firings, once. One stalled-job check waiting is enough.
    @app.periodic(cron=settings.tick, periodic_id="schedules", priority=CONTROL_PRIORITY)
    @app.task(name=TICK, pass_context=True)
    async def tick(context: JobContext, timestamp: int) -> dict[str, int]:
        return await defer_due(app, deployment, timestamp)

    @app.periodic(cron=settings.tick, periodic_id="stalled", priority=CONTROL_PRIORITY, queueing_lock=RETRY_STALLED)
    @app.task(name=RETRY_STALLED, pass_context=True)
    async def retry_stalled(context: JobContext, timestamp: int) -> int:
        return await retry_stalled_jobs(app, settings.stalled_after)

    @app.periodic(cron="17 * * * *", periodic_id="clean", queueing_lock=CLEAN)
    @app.task(name=CLEAN, pass_context=True)
    async def clean(context: JobContext, timestamp: int) -> None:
        # Finished jobs older than keep_jobs leave the queue (the ticks alone add two a minute);
        # failed ones stay for a person to see (msp-hub queue status).
        await app.job_manager.delete_old_jobs(nb_hours=max(1, settings.keep_jobs // 3600), include_failed=False)

    return app


async def defer_due(app: App, deployment: Deployment, timestamp: int) -> dict[str, int]:
    """Defer each tenant's scheduled jobs that fired since the previous tick; returns counts.

    The tenants' configs are read in a thread (the worker's heartbeats go on meanwhile). One
    tenant's broken config is logged and skipped: the other tenants' jobs are deferred.
    """
    import asyncio
    now = datetime.fromtimestamp(timestamp, timezone.utc)
    due, broken = await asyncio.to_thread(due_firings, deployment, timestamp)
    counts = {"deferred": 0, "waiting": 0, "broken": broken}
    for name, firing in due:
        deferred = await defer_run_async(app, name, firing.job, firing.scope, fired_at=firing.at.isoformat())
        counts["deferred" if deferred else "waiting"] += 1
    log.info("worker.tick", at=now.isoformat(), **counts)
    return counts


def due_firings(deployment: Deployment, timestamp: int) -> tuple[list[tuple[str, Any]], int]:
    """(tenant, firing) of every tenant's schedule since the tick before ``timestamp``, and how
    many tenants' schedules could not be read."""
    from hub.daemon import parse_schedule
    from hub.workers.schedule import firings, previous_tick
    now = datetime.fromtimestamp(timestamp, timezone.utc)
    since = previous_tick(deployment.settings.tick, timestamp)
    try:
        tenants = deployment.tenants()
    except HubError as exc:
        log.error("worker.tenants_unreadable", error=str(exc))
        return [], 0
    due, broken = [], 0
    for name, tenant in sorted(tenants.items()):
        try:
            config = tenant.load_config()
            jobs = parse_schedule(config)
        except HubError as exc:
            broken += 1
            log.error("worker.schedule_unreadable", tenant=name, error=str(exc))
            continue
        due.extend((name, f) for f in firings(jobs, config.timezone, since, now))
    return due, broken


def _deferrer(app: App, tenant: str, job: str, task: str):
    return app.configure_task(task, lock=tenant_lock(tenant), queueing_lock=queueing_lock(tenant, job))


async def defer_run_async(app: App, tenant: str, job: str, scope: dict[str, Any], *, fired_at: str | None = None,
                          task: str = SYNC) -> int | None:
    """Queue a run of ``tenant``; the job id, or None when the same job of the tenant already waits."""
    try:
        return await _deferrer(app, tenant, job, task).defer_async(tenant=tenant, job=job, scope=scope, fired_at=fired_at)
    except AlreadyEnqueued:
        log.info("worker.job_waiting", tenant=tenant, job=job, reason="the same job of this tenant is already queued")
        return None


def defer_run(app: App, tenant: str, job: str, scope: dict[str, Any], *, task: str = SYNC) -> int | None:
    """``defer_run_async`` from synchronous code (the CLI), the app opened with ``app.open()``."""
    try:
        return _deferrer(app, tenant, job, task).defer(tenant=tenant, job=job, scope=scope, fired_at=None)
    except AlreadyEnqueued:
        return None


async def retry_stalled_jobs(app: App, stalled_after: float) -> int:
    """Put back in the queue the jobs of workers silent for ``stalled_after`` seconds; returns how many.

    When the same job of the tenant already waits (its queueing lock), the stalled one is marked
    failed instead: the waiting one does the same run.
    """
    from procrastinate.exceptions import UniqueViolation
    from procrastinate.jobs import Status
    manager, n = app.job_manager, 0
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after):
        try:
            await manager.retry_job(job)
            n += 1
            log.warning("worker.stalled_job_retried", job_id=job.id, task=job.task_name, lock=job.lock,
                        worker_id=job.worker_id, stalled_after=stalled_after)
        except UniqueViolation:
            await manager.finish_job(job, status=Status.FAILED, delete_job=False)
            log.warning("worker.stalled_job_dropped", job_id=job.id, task=job.task_name, lock=job.lock,
                        reason="the same job of this tenant already waits in the queue")
    return n


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
