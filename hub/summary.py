"""The hub's built-in run summary: logs one line when a sync run ends (a plugin like any other)."""

from __future__ import annotations

import structlog

from hub.hookspecs import hookimpl

log = structlog.get_logger()


@hookimpl
def sync_finished(run):
    log.info("sync.finished", run_id=run.run_id, mode=run.mode, records=run.records_total,
             pushed=len(run.pushed), errors=len(run.errors), seconds=round(run.seconds, 3))
