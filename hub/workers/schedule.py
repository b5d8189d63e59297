"""Which scheduled jobs of a tenant fire between two ticks of the workers' periodic task.

The single-machine daemon hands ``[schedule]`` to APScheduler; workers read the same table with
``hub.daemon.parse_schedule`` and, at each tick, defer the jobs whose firing falls since the
previous tick. ``every`` firings are counted from the Unix epoch (``every = "15m"`` fires at :00,
:15, :30 and :45), so every worker computes the same firings whichever started first; ``cron``
and ``preview_cron`` are read in the hub's time zone as the daemon reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from hub.daemon import Job, cron_trigger


@dataclass(frozen=True)
class Firing:
    job: str                   # the job's name, ``<name>.preview`` for its dry run
    scope: dict[str, Any]
    at: datetime               # when it fired (UTC)


def firings(jobs: list[Job], tz: str, since: datetime, until: datetime) -> list[Firing]:
    """Each firing of ``jobs`` in (since, until], at most one per job id (the latest: missed
    firings are coalesced into one run, as the daemon coalesces them)."""
    out: list[Firing] = []
    for job in jobs:
        if job.every:
            last = int(until.timestamp()) // job.every * job.every
            if last > since.timestamp():
                out.append(Firing(job.name, job.scope, datetime.fromtimestamp(last, timezone.utc)))
        for job_id, expr, scope in ((job.name, job.cron, job.scope),
                                    (f"{job.name}.preview", job.preview_cron, {**job.scope, "dry_run": True})):
            if not expr:
                continue
            trigger, moment, last = cron_trigger(expr, tz), since + timedelta(microseconds=1), None
            fire = trigger.get_next_fire_time(None, moment)
            while fire is not None and fire <= until:
                last = fire
                fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
            if last is not None:
                out.append(Firing(job_id, scope, last.astimezone(timezone.utc)))
    return out


def previous_tick(cron: str, timestamp: float) -> datetime:
    """The tick before the one at ``timestamp`` (the periodic task's crontab, read in UTC)."""
    import croniter
    prev = croniter.croniter(cron, timestamp).get_prev(float)
    return datetime.fromtimestamp(prev, timezone.utc)
