"""Prometheus metrics of the process: counters the engine and the vendor clients increment.

Every metric lives on ``REGISTRY`` (not prometheus_client's global one), which the admin API
serves at ``GET /metrics``. Label values are names the hub chooses (connector, stream, action
kind, vendor, HTTP status class, run mode and status, tenant), never data from a request or a
vendor, so no secret and no unbounded set of values can reach a label.

A deployment serving tenants (``tenants.toml``) calls ``label_tenants(True)`` once: from then on
every metric, the store's gauges included, carries a ``tenant`` label, the tenant whose run (or
request) is in flight in the calling context (``TENANT``; "default" outside any). Without
tenants, the metrics are exactly those of a single hub: no ``tenant`` label.
"""

from __future__ import annotations

import contextlib
import contextvars
from datetime import datetime
from typing import Callable, Iterator

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

REGISTRY = CollectorRegistry()

# The tenant whose run or request is in flight in this context (a thread, or a copy of its context).
TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("msp_hub_tenant", default="default")
_LABELLED = [False]     # whether every metric carries the tenant label (label_tenants)


@contextlib.contextmanager
def tenant_context(name: str) -> Iterator[None]:
    """Count what happens inside under tenant ``name`` (the engine wraps each run in it)."""
    token = TENANT.set(name)
    try:
        yield
    finally:
        TENANT.reset(token)


class _Metric:
    """A prometheus_client metric whose ``labels()`` adds ``tenant`` when tenants are labelled.

    Callers keep labelling as before (``RUNS.labels(mode, status)``); ``label_tenants`` rebuilds
    the underlying metric with or without the ``tenant`` label (counts start again from zero)."""

    def __init__(self, cls, name: str, documentation: str, labelnames: list[str], **kwargs):
        self.cls, self.name, self.documentation, self.labelnames, self.kwargs = cls, name, documentation, \
            tuple(labelnames), kwargs
        self.metric = None
        self.build()

    def build(self) -> None:
        if self.metric is not None:
            REGISTRY.unregister(self.metric)
        names = ("tenant", *self.labelnames) if _LABELLED[0] else self.labelnames
        self.metric = self.cls(self.name, self.documentation, list(names), registry=REGISTRY, **self.kwargs)

    def labels(self, *values: str, **named: str):
        if values:
            named = dict(zip(self.labelnames, values), **named)
        if _LABELLED[0]:
            named.setdefault("tenant", TENANT.get())
        return self.metric.labels(**named)


RECORDS_PULLED = _Metric(Counter, "msp_hub_records_pulled", "Records pulled from a vendor and stored.",
                         ["connector", "stream"])
ACTIONS_PUSHED = _Metric(Counter, "msp_hub_actions_pushed", "Actions of the outbox a vendor accepted.",
                         ["kind", "connector"])
ACTIONS_FAILED = _Metric(Counter, "msp_hub_actions_failed", "Pushes of an action that failed.",
                         ["kind", "connector"])
VENDOR_REQUESTS = _Metric(Counter, "msp_hub_vendor_requests", "Requests to a vendor API, by status class "
                          "(2xx, 3xx, 4xx, 429, 5xx, or error when no response came).", ["vendor", "status"])
VENDOR_RATE_LIMITED = _Metric(Counter, "msp_hub_vendor_rate_limited",
                              "Responses 429 (too many requests) from a vendor.", ["vendor"])
# A run takes from under a second (a plan) to an hour (a first pull of a large RMM).
RUN_SECONDS = _Metric(Histogram, "msp_hub_run_seconds", "Duration of a run.", ["mode"],
                      buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600))
RUNS = _Metric(Counter, "msp_hub_runs", "Finished runs of this process, by mode and status (ok, warnings, held, "
               "failed, stopped, crashed, refused).", ["mode", "status"])
_METRICS = (RECORDS_PULLED, ACTIONS_PUSHED, ACTIONS_FAILED, VENDOR_REQUESTS, VENDOR_RATE_LIMITED, RUN_SECONDS, RUNS)


def label_tenants(on: bool = True) -> None:
    """Give every metric a ``tenant`` label (on) or none (off, a single hub: the default).

    A deployment with tenants calls it once at start; it rebuilds the process's metrics (their
    counts start again), so it is not meant to be switched while runs are counted."""
    if _LABELLED[0] == on:
        return
    _LABELLED[0] = on
    for metric in _METRICS:
        metric.build()


def tenants_labelled() -> bool:
    return _LABELLED[0]


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

    def __init__(self, store, tenant: str | None = None):
        self.store = store
        self.tenant = tenant if tenant is not None else TENANT.get()

    def _labels(self, names: list[str]) -> list[str]:
        return ["tenant", *names] if _LABELLED[0] else names

    def _values(self, values: list[str]) -> list[str]:
        return [self.tenant, *values] if _LABELLED[0] else values

    def collect(self) -> Iterator[GaugeMetricFamily]:
        last_success = GaugeMetricFamily("msp_hub_stream_last_success_timestamp_seconds",
                                         "When the stream's last complete pass ended (Unix time).",
                                         labels=self._labels(["connector", "stream"]))
        up = GaugeMetricFamily("msp_hub_stream_up", "1 when the stream's last pass was complete, else 0.",
                               labels=self._labels(["connector", "stream"]))
        for (connector, stream), state in sorted(self.store.stream_states().items()):
            complete, last = state.get("last_complete"), state.get("last")
            if complete and complete.get("finished_at"):
                last_success.add_metric(self._values([connector, stream]),
                                        datetime.fromisoformat(complete["finished_at"]).timestamp())
            if last:
                up.add_metric(self._values([connector, stream]), 1.0 if last["status"] == "complete" else 0.0)
        yield last_success
        yield up
        yield self._by_status("actions", "msp_hub_actions", "Actions of the outbox, by status (pending, held, failed).",
                              GAUGED_ACTION_STATUSES)
        yield self._by_status("runs", "msp_hub_stored_runs", "Runs recorded in the store, by status.", RUN_STATUSES)

    def _by_status(self, table: str, name: str, documentation: str, statuses) -> GaugeMetricFamily:
        """One gauge per status of ``table`` (0 for a status no row has)."""
        counts = self.store.count_by_status(table)
        gauge = GaugeMetricFamily(name, documentation, labels=self._labels(["status"]))
        for status in statuses:
            gauge.add_metric(self._values([status]), counts.get(status, 0))
        return gauge


def store_metrics(store, tenant: str | None = None) -> bytes:
    """The store's gauges (``StoreCollector``) in the Prometheus text format, computed now;
    labelled with ``tenant`` (else the context's) when tenants are labelled."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(store, tenant))
    return generate_latest(registry)


def tenants_store_metrics(stores: dict[str, object]) -> bytes:
    """The gauges of several tenants' stores (name -> store) in one exposition: one family each,
    a sample per tenant, so that a scrape of the deployment gets every tenant's."""
    class _All:
        def collect(self):
            families: dict[str, GaugeMetricFamily] = {}
            for name, store in sorted(stores.items()):
                for family in StoreCollector(store, name).collect():
                    into = families.setdefault(family.name, family)
                    if into is not family:
                        into.samples.extend(family.samples)
            yield from families.values()

    registry = CollectorRegistry()
    registry.register(_All())
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
