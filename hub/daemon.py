"""The daemon: APScheduler jobs from ``[schedule]``, the admin API in a thread, a clean stop on SIGTERM.

The only module that imports APScheduler. A job is a run scope (connectors, streams, clients,
full, dry_run) and a trigger: ``every = "15m"`` or a crontab line ``cron = "0 6 1 * *"`` read in
the hub's time zone, where ``L`` in the day field is the month's last day. ``preview_cron`` adds
a dry run of the same scope (the invoices the day before they are sent). With ``[notify]`` set,
an hourly job re-sends the reminders of what stays held (``hub.notify.send_reminders``).
A job with ``report = "scorecard"`` (or ``"kpis"``, ``"maturity"``) runs no sync: at each firing it
delivers that report for the last ended quarter or month (``hub.reports.delivery.deliver``).
"""

from __future__ import annotations

import re
import signal
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobSubmissionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from hub.config import HubConfig
from hub.errors import ConfigError, HubError
from hub.notify import NotifySettings, notify_settings, send_reminders
from hub.service import SCOPE_KEYS, ScopeError, Service, normalize_scope

log = structlog.get_logger()

JOB_KEYS = ("name", "every", "cron", "preview_cron", "misfire_grace_time", "report") + SCOPE_KEYS
SCHEDULE_KEYS = ("jobs", "misfire_grace_time", "keep_runs")   # keep_runs: hub.service.keep_runs
DEFAULT_MISFIRE_GRACE = 300
_EVERY = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
REMINDER_JOB = "notify.reminders"    # a dot: no [[schedule.jobs]] name can take it
REMINDER_EVERY = 3600                # seconds; each reminder waits for its own reminder_every
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")   # crontab numbering: 0 and 7 are Sunday


@dataclass(frozen=True)
class Job:
    """One ``[[schedule.jobs]]``: its scope (``sync_once`` keyword arguments) and its triggers."""

    name: str
    scope: dict[str, Any]
    every: int | None = None          # seconds
    cron: str | None = None
    preview_cron: str | None = None
    misfire_grace_time: int = DEFAULT_MISFIRE_GRACE
    report: str | None = None         # a report delivery job (hub.reports.delivery), not a sync


def parse_every(text: str) -> int:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"1d"`` -> seconds; ValueError otherwise."""
    m = _EVERY.match(str(text))
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def _crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday) as APScheduler 3 names (it counts 0 = Monday)."""
    if re.search(r"[a-z]", field, re.I):
        return field.lower()            # names mean the same in both
    days: set[int] = set()
    for part in field.split(","):
        rng, _, step = part.partition("/")
        if rng == "*":
            lo, hi = 0, 6
        elif "-" in rng:
            lo, hi = (int(x) for x in rng.split("-", 1))
        else:
            lo = hi = int(rng)
            if step:
                hi = 6
        if not (0 <= lo <= 7 and 0 <= hi <= 7 and lo <= hi):
            raise ValueError(f"day of week {part!r} is out of range 0-7")
        days.update(d % 7 for d in range(lo, hi + 1, int(step) if step else 1))
    return "*" if len(days) == 7 else ",".join(_WEEKDAYS[d] for d in sorted(days))


def cron_trigger(expr: str, tz: str) -> CronTrigger:
    """A CronTrigger from a standard 5-field crontab line read in ``tz``; ValueError when invalid.

    ``L`` in the day-of-month field is the month's last day (APScheduler spells it ``last``), and
    day-of-week numbers follow crontab (0 = Sunday), not APScheduler 3's own (0 = Monday).
    """
    fields = str(expr).split()
    if len(fields) != 5:
        raise ValueError(f"{expr!r} has {len(fields)} fields, a crontab line has 5 (minute hour day month weekday)")
    minute, hour, day, month, weekday = fields
    day = re.sub(r"\bL\b", "last", day)
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_crontab_weekdays(weekday),
                       timezone=tz)


def parse_schedule(config: HubConfig, streams: dict[str, list[str]] | None = None) -> list[Job]:
    """Check ``[schedule]`` and return its jobs; a ConfigError names the key and the fix.

    ``streams`` (each configured connector's stream names) lets the jobs' scopes be checked too.
    """
    file, section = config.file, config.schedule
    for key in section:
        if key not in SCHEDULE_KEYS:
            raise ConfigError(f"unknown key '{key}'", file=file, key=f"schedule.{key}",
                              fix=f"use one of {', '.join(SCHEDULE_KEYS)}")
    default_grace = section.get("misfire_grace_time", DEFAULT_MISFIRE_GRACE)
    if isinstance(default_grace, bool) or not isinstance(default_grace, int) or default_grace < 1:
        raise ConfigError(f"must be a number of seconds, got {default_grace!r}", file=file,
                          key="schedule.misfire_grace_time", fix=f"write misfire_grace_time = {DEFAULT_MISFIRE_GRACE}")
    raw_jobs = section.get("jobs", [])
    if not isinstance(raw_jobs, list) or not all(isinstance(j, dict) for j in raw_jobs):
        raise ConfigError("must be an array of tables", file=file, key="schedule.jobs",
                          fix='write each job as [[schedule.jobs]] with name = "..." and every = "15m" or cron = "..."')
    jobs: list[Job] = []
    for i, raw in enumerate(raw_jobs):
        where = f"schedule.jobs[{i}]"
        name = raw.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"missing or invalid name {name!r}", file=file, key=f"{where}.name",
                              fix='give each job a name in lower case letters, digits, "-" or "_", e.g. name = "alerts"')
        label = f'job "{name}": '
        if any(j.name == name for j in jobs):
            raise ConfigError(f"{label}another job has the same name", file=file, key=f"{where}.name",
                              fix="give each job its own name")
        for key in raw:
            if key not in JOB_KEYS:
                raise ConfigError(f"{label}unknown key '{key}'", file=file, key=f"{where}.{key}",
                                  fix=f"use one of {', '.join(JOB_KEYS)}")
        if "period" in raw:
            raise ConfigError(f"{label}a scheduled job cannot fix a period", file=file, key=f"{where}.period",
                              fix="remove it: each run plans the last ended period (and previews the current one)")
        every = cron = preview = None
        if ("every" in raw) == ("cron" in raw):
            raise ConfigError(f"{label}needs exactly one of every and cron", file=file, key=f"{where}.every",
                              fix='write every = "15m" (s, m, h or d) or cron = "0 6 1 * *"')
        if "every" in raw:
            try:
                every = parse_every(raw["every"])
            except ValueError:
                raise ConfigError(f"{label}every = {raw['every']!r} is not a duration", file=file, key=f"{where}.every",
                                  fix='write a whole number and a unit: "30s", "15m", "1h" or "1d"') from None
        for key in ("cron", "preview_cron"):
            if key in raw:
                try:
                    cron_trigger(raw[key], config.timezone)
                except (ValueError, TypeError) as exc:
                    raise ConfigError(f"{label}{key} = {raw[key]!r} is not a crontab line: {exc}", file=file,
                                      key=f"{where}.{key}",
                                      fix='write "minute hour day month weekday", e.g. "0 6 1 * *" (06:00 on '
                                          'the 1st) or "0 6 L * *" (06:00 on the last day)') from None
        cron, preview = raw.get("cron"), raw.get("preview_cron")
        grace = raw.get("misfire_grace_time", default_grace)
        if isinstance(grace, bool) or not isinstance(grace, int) or grace < 1:
            raise ConfigError(f"{label}misfire_grace_time must be a number of seconds, got {grace!r}", file=file,
                              key=f"{where}.misfire_grace_time", fix=f"write misfire_grace_time = {default_grace}")
        if "report" in raw:
            jobs.append(_report_job(config, raw, name, where, every, grace))
            continue
        scope_raw = {k: raw[k] for k in SCOPE_KEYS if k in raw}
        try:
            scope = normalize_scope(scope_raw, streams)
        except ScopeError as exc:
            raise ConfigError(f"{label}{str(exc).split(' (fix: ')[0]}", file=file, key=f"{where}.{exc.key}",
                              fix=exc.fix) from None
        jobs.append(Job(name, scope, every, cron, preview, grace))
    return jobs


def _report_job(config: HubConfig, raw: dict[str, Any], name: str, where: str, every: int | None,
                grace: int) -> Job:
    """A ``[[schedule.jobs]]`` with ``report``: checked with ``[reports.delivery]`` now, at start."""
    from hub.reports.delivery import delivery_settings
    file, label, report = config.file, f'job "{name}": ', raw["report"]
    extra = sorted(k for k in raw if k in SCOPE_KEYS or k == "preview_cron")
    if extra:
        raise ConfigError(f"{label}a report job runs no sync: '{extra[0]}' does not apply", file=file,
                          key=f"{where}.{extra[0]}", fix="remove it, or make a separate sync job")
    settings = delivery_settings(config)
    if report not in settings.reports:
        raise ConfigError(f"{label}report = {report!r} is not among [reports.delivery] reports "
                          f"({', '.join(settings.reports)})", file=file, key=f"{where}.report",
                          fix=f'use one of them, or add "{report}" to reports in [reports.delivery]'
                          if isinstance(report, str) and report in ("scorecard", "kpis", "maturity")
                          else "use \"scorecard\", \"kpis\" or \"maturity\"")
    return Job(name, {}, every, raw.get("cron"), None, grace, report)


def triggers(job: Job, tz: str) -> list[tuple[str, BaseTrigger, dict[str, Any]]]:
    """The scheduler jobs of one ``Job``: (id, trigger, scope), its preview as ``<name>.preview``."""
    out: list[tuple[str, BaseTrigger, dict[str, Any]]] = []
    if job.every:
        out.append((job.name, IntervalTrigger(seconds=job.every, timezone=timezone.utc), job.scope))
    if job.cron:
        out.append((job.name, cron_trigger(job.cron, tz), job.scope))
    if job.preview_cron:
        out.append((f"{job.name}.preview", cron_trigger(job.preview_cron, tz), {**job.scope, "dry_run": True}))
    return out


DONE = ("ok", "warnings", "held", "partial", "failed")   # run statuses of a run that went to its end
LOOKBACK_DAYS = (1, 7, 32, 93, 367)                      # how far back a previous firing is looked for


def previous_firing(trigger: BaseTrigger, now: datetime) -> datetime | None:
    """The last firing time of ``trigger`` at or before ``now`` (within a year), None when none."""
    for days in LOOKBACK_DAYS:
        moment, last = trigger.get_next_fire_time(None, now - timedelta(days=days)), None
        while moment is not None and moment <= now:
            last = moment
            moment = trigger.get_next_fire_time(moment, moment + timedelta(seconds=1))
        if last is not None:
            return last
    return None


def missed_firings(service: Service, jobs: list[Job], now: datetime | None = None) -> dict[str, datetime]:
    """The cron jobs whose last firing before ``now`` did not run to its end: job id -> that firing.

    APScheduler keeps its jobs in memory, so a daemon that was down (a deploy, a reboot) when the
    invoicing job should have fired would only run it a month later. At start, each cron job (not
    its dry-run preview, not an interval job, which fires soon anyway) is compared with the runs
    the store recorded for it: when no run of that job started at or after its previous firing
    time went to its end (a run stopped by SIGTERM, killed or crashed did not), it runs at once.
    A new database (no run at all) catches nothing up: the first firing comes at its time.
    """
    now = now or datetime.now(timezone.utc)
    jobs = [j for j in jobs if j.cron and not j.scope.get("dry_run") and not j.report]
    if not jobs:
        return {}
    hub = service.open_hub()
    try:
        db = hub.store.db
        if not next(iter(db.query("select 1 as one from runs limit 1")), None):
            return {}
        out: dict[str, datetime] = {}
        for job in jobs:
            fired = previous_firing(cron_trigger(job.cron, service.config.timezone), now)
            if fired is None:
                continue
            since = fired.astimezone(timezone.utc)
            runs = db.query("select status, started_at from runs where json_extract(counts, '$.holder') = ? "
                            "and started_at >= ?", [f"daemon:{job.name}", (since - timedelta(days=1)).isoformat()])
            if not any(r["status"] in DONE and datetime.fromisoformat(r["started_at"]) >= since for r in runs):
                out[job.name] = since
        return out
    finally:
        hub.close()


def build_scheduler(service: Service, jobs: list[Job], *, catch_up: bool = True) -> BackgroundScheduler:
    """A UTC BackgroundScheduler running ``service.run_job`` for every job: one instance of a job at
    a time, missed firings coalesced into one, a firing later than ``misfire_grace_time`` skipped;
    a job waits for another job's run in flight for as long as its grace time, then is skipped.

    With ``catch_up``, a cron job whose last firing did not run to its end while the daemon was
    down or stopping (``missed_firings``) runs as soon as the scheduler starts."""
    scheduler = BackgroundScheduler(timezone=timezone.utc)
    add_jobs(scheduler, service, jobs, catch_up=catch_up)
    listen(scheduler)
    return scheduler


def add_jobs(scheduler: BackgroundScheduler, service: Service, jobs: list[Job], *, catch_up: bool = True,
             prefix: str = "") -> None:
    """Add ``service``'s jobs (and its reminder job) to ``scheduler``, their ids after ``prefix``
    (``"<tenant>/"`` when one scheduler serves several tenants), and point the service's
    ``scheduler_info`` at them (their ids without the prefix)."""
    now = datetime.now(timezone.utc)
    missed = missed_firings(service, jobs, now) if catch_up else {}
    for job in jobs:
        for job_id, trigger, scope in triggers(job, service.config.timezone):
            first = {"next_run_time": now} if job_id in missed else {}
            if first:
                service.catch_up.add(job_id)   # its run is recorded with trigger "catch-up"
                log.warning("daemon.catch_up", job=prefix + job_id, missed_firing=missed[job_id].isoformat(),
                            reason="its last firing did not run to its end (the daemon was down or stopped "
                                   "mid-run): it runs now")
            if job.report:
                scheduler.add_job(run_report_job, trigger, args=(service, job.name, job.report), id=prefix + job_id,
                                  name=prefix + job_id, max_instances=1, coalesce=True,
                                  misfire_grace_time=job.misfire_grace_time)
                continue
            scheduler.add_job(service.run_job, trigger, args=(job_id, scope, job.misfire_grace_time),
                              id=prefix + job_id, name=prefix + job_id, max_instances=1, coalesce=True,
                              misfire_grace_time=job.misfire_grace_time, **first)

    add_reminder_job(scheduler, service, prefix=prefix)
    service.scheduler_info = lambda: {"running": scheduler.running,
                                      "jobs": {j.id[len(prefix):]: j.next_run_time for j in scheduler.get_jobs()
                                               if j.id.startswith(prefix)}}


def listen(scheduler: BackgroundScheduler) -> None:
    """Log the firings skipped (a previous one still running) and missed."""
    def on_event(event: JobSubmissionEvent) -> None:
        if event.code == EVENT_JOB_MAX_INSTANCES:
            log.info("daemon.job_skipped", job=event.job_id, reason="its previous firing is still running or waiting")
        else:
            log.warning("daemon.job_missed", job=event.job_id, scheduled_at=str(event.scheduled_run_time))

    scheduler.add_listener(on_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)


def add_reminder_job(scheduler: BackgroundScheduler, service: Service, *, prefix: str = "") -> None:
    """The hourly reminder job, when ``[notify]`` has a channel; a wrong ``[notify]`` raises ConfigError now."""
    settings = notify_settings(service.config)
    if not settings.enabled:
        return
    scheduler.add_job(run_reminders, IntervalTrigger(seconds=REMINDER_EVERY, timezone=timezone.utc),
                      args=(service, settings), id=prefix + REMINDER_JOB, name=prefix + REMINDER_JOB, max_instances=1,
                      coalesce=True, misfire_grace_time=REMINDER_EVERY)


def run_reminders(service: Service, settings: NotifySettings) -> list[dict[str, Any]]:
    """One firing of the reminder job on a fresh hub, under the service's tenant; every error is
    logged, none reaches the scheduler."""
    from hub.logs import tenant_scope
    with tenant_scope(service.config.tenant):
        return _run_reminders(service, settings)


def _run_reminders(service: Service, settings: NotifySettings) -> list[dict[str, Any]]:
    hub = None
    try:
        hub = service.open_hub()
        return send_reminders(hub, settings=settings)
    except Exception as exc:  # the scheduler must keep running the other jobs
        log.error("daemon.reminders_failed", error=str(exc) if isinstance(exc, HubError) else type(exc).__name__)
        return []
    finally:
        if hub is not None:
            hub.close()


def run_report_job(service: Service, name: str, report: str):
    """One firing of a report job: deliver ``report`` for the last ended period on a fresh hub, under
    the service's tenant (``hub.reports.delivery.deliver``); what was not delivered is logged, and
    no error reaches the scheduler. Returns the DeliveryResult (None when it could not run)."""
    from hub.logs import tenant_scope
    from hub.reports.delivery import deliver
    with tenant_scope(service.config.tenant):
        hub = None
        try:
            hub = service.open_hub()
            result = deliver(hub, report)
        except Exception as exc:  # the scheduler must keep running the other jobs
            log.error("daemon.report_failed", job=name, report=report,
                      error=str(exc) if isinstance(exc, HubError) else type(exc).__name__)
            return None
        finally:
            if hub is not None:
                hub.close()
        level = log.info if result.ok else log.warning
        level("daemon.report_delivered", job=name, report=report, period=result.period, written=len(result.written),
              emailed=len(result.sent), problems=result.lines()[1:])
        return result


def run_daemon(config_path: str | Path | None = None, *, environ: dict[str, str] | None = None,
               tenants_file: str | Path | None = None) -> int:
    """Run the scheduled jobs and the admin API until SIGTERM or SIGINT; return the exit code (0).

    With ``tenants_file`` (a ``tenants.toml``), every tenant is served: one scheduler holding each
    tenant's own ``[schedule]`` jobs (ids ``<tenant>/<job>``), each job run on its own tenant's hub,
    and one admin API for all of them at the deployment's ``[admin]`` address.

    On a signal: the stop event is set (the run in flight ends after its current page, committed),
    the scheduler shuts down waiting for its jobs, the triggered runs are joined, the API stops.
    """
    from hub.api import make_app
    from hub.console import mount

    if tenants_file is not None:
        return run_tenants_daemon(tenants_file, environ=environ)
    service = Service(config_path, environ=environ)
    jobs = parse_schedule(service.config, service.streams)
    scheduler = build_scheduler(service, jobs)
    app = mount(make_app(service), service, service.config.admin, service.config.file)   # the console beside the API
    return _serve(app, service.admin, [service], scheduler, file=service.config.file, no_jobs=not jobs)


def run_tenants_daemon(tenants_file: str | Path, *, environ: dict[str, str] | None = None) -> int:
    """``run_daemon`` for every tenant of ``tenants_file`` (see there)."""
    from hub.api import make_app
    from hub.console import mount
    from hub.logs import configure_logging
    from hub.metrics import label_tenants
    from hub.service import TenantServices, admin_settings
    from hub.tenants import check_apart, load_deployment

    deployment = load_deployment(tenants_file, check=False)
    configs = check_apart(deployment)
    admin = admin_settings(HubConfig(path=deployment.path, admin=deployment.admin, environ=environ))
    secrets = [s for c in configs.values() for s in c.secret_values()] + ([admin.token.reveal()] if admin.token else [])
    configure_logging(fmt=deployment.logging.get("format", "console"), level=deployment.logging.get("level", "info"),
                      secrets=secrets)
    label_tenants(True)
    services = {name: Service(tenant=tenant) for name, tenant in sorted(deployment.tenants.items())}
    for name, service in services.items():
        if admin.token is None and service.token is None:
            raise ConfigError(f"no token opens tenant {name!r}'s admin API paths", file=deployment.file,
                              key="admin.token_env", fix=f"set a deployment token in [admin] of {deployment.file}, or "
                                                         f"an [admin] token_env in {service.config.file}")
    scheduler = BackgroundScheduler(timezone=timezone.utc)
    jobs: dict[str, list[Job]] = {}
    for name, service in services.items():
        jobs[name] = parse_schedule(service.config, service.streams)
        add_jobs(scheduler, service, jobs[name], prefix=f"{name}/")
    listen(scheduler)
    every = TenantServices.of(services, admin.token)
    app = mount(make_app(every), every, deployment.admin, deployment.file)   # the console beside the API
    return _serve(app, admin, list(services.values()), scheduler,
                  file=deployment.file, no_jobs=not any(jobs.values()), tenants=sorted(services))


def _serve(app, admin, services: list[Service], scheduler: BackgroundScheduler, *, file: str, no_jobs: bool,
           tenants: list[str] | None = None) -> int:
    """Serve the admin API and run the scheduler until a signal (see ``run_daemon``)."""
    from hub.api import serve_api

    try:
        server = serve_api(app, admin.host, admin.port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {admin.host}:{admin.port}: {exc.strerror or exc}",
                          file=file, key="admin.port",
                          fix="stop the daemon already running there, or choose another port") from None
    api = threading.Thread(target=server.run, name="admin-api", daemon=True)
    done = threading.Event()

    def on_signal(signum, frame):
        log.info("daemon.stopping", signal=signal.Signals(signum).name)
        for service in services:
            service.stop.set()
        done.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        api.start()
        scheduler.start()
        log.info("daemon.started", admin=admin.url, jobs=sorted(j.id for j in scheduler.get_jobs()), config=file,
                 **({"tenants": tenants} if tenants is not None else {}))
        if no_jobs:
            log.warning("daemon.no_jobs", fix="add [[schedule.jobs]] to the config")
        while not done.wait(1.0):   # a timeout keeps the main thread responsive to signals
            pass
    finally:
        for service in services:
            service.stop.set()
        if scheduler.running:
            scheduler.shutdown(wait=True)
        for service in services:
            service.join()
        server.close()
        api.join(timeout=10)
        for s, handler in previous.items():
            signal.signal(s, handler)
        log.info("daemon.stopped")
    return 0
