"""``msp-hub worker``: one worker process; its queue's schema applied first when missing."""

from __future__ import annotations

from pathlib import Path

import structlog

from hub.errors import ConfigError
from hub.workers.settings import WorkerSettings, load_deployment

log = structlog.get_logger()

SCHEMA_LOCK = 0x6D73_7068   # pg_advisory_lock key: one process applies the schema, the others wait


def connect(settings: WorkerSettings):
    """A psycopg connection to the queue's database; ConfigError naming the key when it fails."""
    import psycopg
    try:
        return psycopg.connect(settings.conninfo(), autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if settings.password:
            reason = reason.replace(settings.password, "[redacted]")
        raise ConfigError(f"cannot connect to the queue's database: {reason}", file=settings.file,
                          key="workers.database",
                          fix="check the URL, that PostgreSQL runs there, and the password "
                              "(database_password_env, database_password_file or PGPASSWORD)") from None


def ensure_schema(settings: WorkerSettings) -> bool:
    """Apply Procrastinate's schema to the queue's database when it is missing; True when applied.

    Several workers starting together take an advisory lock, so that one applies it."""
    from procrastinate.schema import SchemaManager
    with connect(settings) as conn:
        conn.execute("select pg_advisory_lock(%s)", [SCHEMA_LOCK])
        try:
            present = conn.execute("select to_regclass('procrastinate_jobs') is not null").fetchone()[0]
            if present:
                return False
            with conn.transaction():
                conn.execute(SchemaManager.get_schema())
            log.info("worker.schema_applied", database=settings.database)
            return True
        finally:
            conn.execute("select pg_advisory_unlock(%s)", [SCHEMA_LOCK])


def run_worker(tenants_path: str | Path, *, name: str | None = None, level: str = "info") -> None:
    """Run one worker until SIGTERM or SIGINT.

    On a signal the worker takes no new job; the run in flight ends after its current page or
    push, committed, and its job goes back to the queue (another worker, or this one restarted,
    runs it again: its pushes were recorded, nothing is sent twice). SIGKILL loses nothing either:
    the job's worker stops sending heartbeats and ``retry_stalled`` queues it again after
    ``[workers] stalled_after``. Logs are JSON lines on stderr, each run's with its tenant and job.
    """
    from hub.logs import configure_logging
    from hub.workers.app import make_app, worker_name

    deployment = load_deployment(tenants_path)
    settings = deployment.settings
    secrets = [settings.password or ""]
    for tenant in deployment.tenants().values():
        secrets.extend((tenant.environ() or {}).values())
    configure_logging(fmt="json", level=level, secrets=secrets)
    import logging
    logging.getLogger("httpx").setLevel(logging.WARNING)   # one line per request: the runs' own events say enough
    from hub.metrics import label_tenants
    label_tenants(True)   # a worker serves tenants: every metric it counts carries its tenant
    ensure_schema(settings)
    app = make_app(deployment)
    name = name or worker_name()
    log.info("worker.started", worker=name, tenants=len(deployment.tenants()), concurrency=settings.concurrency,
             tick=settings.tick, stalled_after=settings.stalled_after)
    app.run_worker(name=name, concurrency=settings.concurrency, update_heartbeat_interval=settings.heartbeat,
                   stalled_worker_timeout=settings.stalled_after, shutdown_graceful_timeout=0,
                   fetch_job_polling_interval=min(5.0, float(settings.heartbeat)), install_signal_handlers=True)
    log.info("worker.stopped", worker=name)
