"""structlog set-up: JSON lines or console, and a processor that redacts configured secrets."""

from __future__ import annotations

import logging
import sys
from typing import Iterable

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


def configure_logging(*, fmt: str = "console", level: str = "info", secrets: Iterable[str] = (),
                      stream=None) -> None:
    """Configure structlog for the process: ``fmt`` is ``json`` (one object a line) or ``console``."""
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            Redactor(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
