"""Prometheus metrics of the process: counters the engine and the vendor clients increment.

Every metric lives on ``REGISTRY`` (not prometheus_client's global one), which the admin API
serves at ``GET /metrics``. Label values are names the hub chooses (connector, stream, action
kind, vendor, HTTP status class, run mode and status), never data from a request or a vendor,
so no secret and no unbounded set of values can reach a label.
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Iterator

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

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
RUNS = Counter("msp_hub_runs", "Finished runs of this process, by mode and status (ok, warnings, held, failed, "
               "stopped, crashed, refused).", ["mode", "status"], registry=REGISTRY)

RUN_STATUSES = ("ok", "warnings", "partial", "held", "failed", "stopped", "crashed", "refused", "abandoned", "running")
GAUGED_ACTION_STATUSES = ("pending", "held", "failed")


class StoreCollector:
    """Gauges computed from the store at each scrape, so that they hold whichever process ran:

    - ``msp_hub_stream_last_success_timestamp_seconds{connector,stream}``: when the stream's last
      complete pass ended (absent until it completed one);
    - ``msp_hub_stream_up{connector,stream}``: 1 when its last pass was complete, else 0;
    - ``msp_hub_actions{status}``: actions of the outbox that are pending, held or failed;
    - ``msp_hub_stored_runs{status}``: the runs recorded in the store, by status.
    """

    def __init__(self, store):
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        last_success = GaugeMetricFamily("msp_hub_stream_last_success_timestamp_seconds",
                                         "When the stream's last complete pass ended (Unix time).",
                                         labels=["connector", "stream"])
        up = GaugeMetricFamily("msp_hub_stream_up", "1 when the stream's last pass was complete, else 0.",
                               labels=["connector", "stream"])
        for (connector, stream), state in sorted(self.store.stream_states().items()):
            complete, last = state.get("last_complete"), state.get("last")
            if complete and complete.get("finished_at"):
                last_success.add_metric([connector, stream],
                                        datetime.fromisoformat(complete["finished_at"]).timestamp())
            if last:
                up.add_metric([connector, stream], 1.0 if last["status"] == "complete" else 0.0)
        yield last_success
        yield up
        yield self._by_status("actions", "msp_hub_actions", "Actions of the outbox, by status (pending, held, failed).",
                              GAUGED_ACTION_STATUSES)
        yield self._by_status("runs", "msp_hub_stored_runs", "Runs recorded in the store, by status.", RUN_STATUSES)

    def _by_status(self, table: str, name: str, documentation: str, statuses) -> GaugeMetricFamily:
        """One gauge per status of ``table`` (0 for a status no row has)."""
        counts = self.store.count_by_status(table)
        gauge = GaugeMetricFamily(name, documentation, labels=["status"])
        for status in statuses:
            gauge.add_metric([status], counts.get(status, 0))
        return gauge


def store_metrics(store) -> bytes:
    """The store's gauges (``StoreCollector``) in the Prometheus text format, computed now."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    return generate_latest(registry)


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
