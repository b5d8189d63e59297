"""structlog set-up: JSON lines or console, and a processor that redacts configured secrets."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterable, Iterator

import structlog


class Redactor:
    """Replace every occurrence of a known secret value in an event with ``[redacted]``."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def _clean(self, value):
        if isinstance(value, str):
            for s in self.secrets:
                if s in value:
                    value = value.replace(s, "[redacted]")
            return value
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._clean(v) for v in value)
        return value

    def __call__(self, logger, method_name, event_dict):
        return self._clean(event_dict) if self.secrets else event_dict


class _Handler(logging.StreamHandler):
    """The process's one log handler: writes each rendered line, with its newline, in one call
    under the handler's lock. With no stream given it writes to the current ``sys.stderr``."""

    def __init__(self, stream=None):
        super().__init__(stream or sys.stderr)
        self._fixed = stream is not None

    def emit(self, record: logging.LogRecord) -> None:
        if not self._fixed:
            self.stream = sys.stderr
        super().emit(record)


def configure_logging(*, fmt: str = "console", level: str = "info", secrets: Iterable[str] = (),
                      stream=None) -> None:
    """Configure logging for the process: ``fmt`` is ``json`` (one object a line) or ``console``.

    Every line goes through one pipeline: structlog's events and the standard library's records
    (APScheduler, waitress, ``warnings``) reach one handler on the root logger, whose structlog
    ``ProcessorFormatter`` stamps, redacts and renders them; in JSON mode each is one object on
    its own line, written whole under the handler's lock, so two threads never fuse lines.
    APScheduler logs from ``warning`` up (its per-firing info lines are the daemon's own events).
    """
    number = getattr(logging, level.upper(), logging.INFO)
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    stamped = [structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True)]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *stamped, structlog.processors.format_exc_info,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*stamped, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info,
                    Redactor(secrets), renderer])
    handler = _Handler(stream)
    handler.setFormatter(formatter)
    handler._msp_hub = True   # type: ignore[attr-defined]  # replaced, not added to, by the next call
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_msp_hub", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(number)
    logging.getLogger("apscheduler").setLevel(max(number, logging.WARNING))
    logging.captureWarnings(True)


@contextlib.contextmanager
def tenant_scope(tenant: str) -> Iterator[None]:
    """Everything inside is the tenant's: its metrics are counted under ``tenant`` and, in a
    deployment serving tenants (or for a tenant other than the default), every log line carries
    ``tenant`` (bound in structlog's context variables). A single hub's lines stay as they were."""
    from hub.metrics import tenant_context, tenants_labelled
    bind = tenant != "default" or tenants_labelled()
    with tenant_context(tenant):
        if bind:
            with structlog.contextvars.bound_contextvars(tenant=tenant):
                yield
        else:
            yield
