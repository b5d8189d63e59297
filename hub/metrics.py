"""Prometheus metrics of the process: counters the engine and the vendor clients increment.

Every metric lives on ``REGISTRY`` (not prometheus_client's global one), which the admin API
serves at ``GET /metrics``. Label values are names the hub chooses (connector, stream, action
kind, vendor, HTTP status class, run mode and status), never data from a request or a vendor,
so no secret and no unbounded set of values can reach a label.
"""

from __future__ import annotations

from typing import Callable

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()

RECORDS_PULLED = Counter("msp_hub_records_pulled", "Records pulled from a vendor and stored.",
                         ["connector", "stream"], registry=REGISTRY)
ACTIONS_PUSHED = Counter("msp_hub_actions_pushed", "Actions of the outbox a vendor accepted.",
                         ["kind", "connector"], registry=REGISTRY)
ACTIONS_FAILED = Counter("msp_hub_actions_failed", "Pushes of an action that failed.",
                         ["kind", "connector"], registry=REGISTRY)
VENDOR_REQUESTS = Counter("msp_hub_vendor_requests", "Requests to a vendor API, by status class "
                          "(2xx, 3xx, 4xx, 429, 5xx, or error when no response came).",
                          ["vendor", "status"], registry=REGISTRY)
VENDOR_RATE_LIMITED = Counter("msp_hub_vendor_rate_limited", "Responses 429 (too many requests) from a vendor.",
                              ["vendor"], registry=REGISTRY)
# A run takes from under a second (a plan) to an hour (a first pull of a large RMM).
RUN_SECONDS = Histogram("msp_hub_run_seconds", "Duration of a run.", ["mode"], registry=REGISTRY,
                        buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600))
RUNS = Counter("msp_hub_runs", "Finished runs, by mode and status (ok, partial, crashed, ...).",
               ["mode", "status"], registry=REGISTRY)


def status_class(status_code: int) -> str:
    """The label of an HTTP status: "429" on its own (rate limiting), else "2xx", "4xx", "5xx"..."""
    if status_code == 429:
        return "429"
    return f"{status_code // 100}xx"


def count_response(vendor: str) -> Callable[[httpx.Response], None]:
    """An httpx response event hook counting ``vendor``'s responses.

    Attach it with ``httpx.Client(event_hooks={"response": [count_response("ninjaone")]})``.
    It reads only the status code. Requests that got no response never reach a response hook:
    count those with ``count_request_error(vendor)``.
    """
    def hook(response: httpx.Response) -> None:
        VENDOR_REQUESTS.labels(vendor=vendor, status=status_class(response.status_code)).inc()
        if response.status_code == 429:
            VENDOR_RATE_LIMITED.labels(vendor=vendor).inc()

    return hook


def count_request_error(vendor: str) -> None:
    """Count a request to ``vendor`` that got no response (timeout, refused, reset)."""
    VENDOR_REQUESTS.labels(vendor=vendor, status="error").inc()
