"""What a connector plugin hands the engine: its streams to pull and its push of actions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterator, Protocol

from hub.errors import MappingError


@dataclass(frozen=True)
class Page:
    """One page of canonical records and the cursor that is true once they are committed.

    The engine upserts ``records`` and saves ``cursor`` in one transaction, so a crash never moves
    a cursor past data that was not stored. ``cursor`` is a JSON-serialisable dict or None.
    ``complete`` says the page holds the whole current set of a snapshot stream (the active
    alerts): the store marks the source's other records of that table inactive in the same
    transaction. ``rejected`` lists the vendor records that could not be mapped (see
    ``map_records``): they are recorded and reported, and the stream goes on past them.
    ``sweep_count``: on the page that ends a full sweep of the vendor's set (every device, every
    company), the number of vendor records the whole sweep read (rejected ones included); the
    engine compares it with the last complete sweep and holds what the stream feeds when it fell
    sharply. None on every other page and for incremental reads.
    """

    records: list
    cursor: dict[str, Any] | None
    complete: bool = False   # the records are the whole current set (e.g. every active alert)
    rejected: tuple[tuple[str, str], ...] = ()   # (vendor id, why) of records set aside
    sweep_count: int | None = None               # records read by the full sweep this page ends
    # With ``complete``: the part of the table the page is the whole current set of, as column ->
    # value (None: the column is NULL), e.g. the waiting patches of a table that also holds
    # installations. None: every record of the source in the table.
    scope: dict[str, Any] | None = None


@dataclass(frozen=True)
class Stream:
    """A kind of record a connector can pull.

    ``table`` is the store table the records go to (``clients``, ``devices``...).
    ``iter_pages(cursor, run_started_at)`` yields Pages starting from the saved ``cursor`` (None on
    the first run); a timestamp of the hub's clock inside a cursor must never pass
    ``run_started_at``. A timestamp of the vendor's clock (e.g. the ``Date`` header of a pass's
    first answer) follows the vendor and may: the connector names such keys in its
    ``vendor_clock_keys`` (a frozenset, default empty), which the conformance check leaves alone.
    """

    connector: str
    name: str
    table: str
    iter_pages: Callable[[dict[str, Any] | None, datetime], Iterator[Page]]


@dataclass
class PushResult:
    """What a push did: the vendor's id of the created object and a short human summary."""

    vendor_id: str
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class PushContext(Protocol):
    """The store-backed helpers a connector may use while pushing one action.

    ``attempts`` is how many times this action was sent before (0 on the first send): a connector
    whose vendor may have acted on an earlier attempt looks before it creates. ``store``: the
    tenant's Store, to read only (e.g. ``store.unsent_actions(connector, kinds)`` to look up, in
    one request, what the pushes that follow will need).
    """

    attempts: int
    progress: dict[str, Any]
    store: Any

    def get_link(self, client_id: str, system: str) -> str | None:
        """The client's id in ``system``, if known."""

    def set_link(self, client_id: str, system: str, external_id: str) -> None:
        """Remember the client's id in ``system`` (committed at once)."""

    def save_progress(self, **progress: Any) -> None:
        """Record how far a multi-request push got (e.g. the draft invoice id), committed at once."""


class Connector(Protocol):
    """A vendor as the engine sees it. Plugins return these from ``register_connectors``.

    ``name``: the config section and the ``source`` of its records. ``action_kinds``: the kinds of
    Action it can push (e.g. ``{"invoice"}``). ``streams()``: what it can pull.
    ``push(action, context)``: send one action exactly once (use ``action.key`` as the idempotency
    key); return a PushResult, or raise ``hub.errors.VendorError``.
    Optional ``follow_tickets(ids)``: before it pulls a stream of table ``tickets``, the engine
    hands the connector the ids of the tickets made outside the hub that its pushes adopted for an
    alert (a result whose details say ``adopted``), for the stream to read them too.
    Optional ``check()``: one cheap authenticated request, tried once (no retry), for
    ``msp-hub check``; returns a short description of the request, raises ``hub.errors.VendorError``
    (``CredentialsError`` for refused credentials) naming the HTTP status and the vendor's message.
    """

    name: str
    action_kinds: frozenset[str]

    def streams(self) -> list[Stream]: ...

    def push(self, action, context: PushContext) -> PushResult: ...

    def close(self) -> None: ...


def map_records(raws: list[dict], to_record: Callable[[dict], Any]) -> tuple[list, tuple[tuple[str, str], ...]]:
    """Map a page of vendor dicts; one that cannot be mapped is set aside, not the page.

    Any exception of ``to_record`` (a MappingError, or a KeyError on a record without ``id``)
    sets that record aside. Returns the records and ``(vendor id, message)`` of each record set
    aside, for ``Page``; a record without an id is named by its place in the page.
    """
    try:
        return [to_record(r) for r in raws], ()
    except Exception:
        pass
    records, rejected = [], []
    for n, raw in enumerate(raws):
        try:
            records.append(to_record(raw))
        except Exception as exc:
            rid = raw.get("id", raw.get("uid")) if isinstance(raw, dict) else None
            if rid is None:
                rid = f"(no id, record {n + 1} of its page)"
            why = str(exc) if isinstance(exc, MappingError) else f"cannot be mapped: {exc.__class__.__name__} {exc}"
            rejected.append((str(rid), why))
    return records, tuple(rejected)


def client_master(hub: Any) -> str | None:
    """The system whose companies are the hub's clients (of ``hub``, a ``hub.engine.Hub``):
    ``billing.client_master``, else a configured connector that pulls agreements (the PSA), else none."""
    chosen = hub.config.billing.get("client_master")
    if chosen:
        return str(chosen)
    for name, connector in sorted(hub.connectors.items()):
        if any(s.table == "agreements" for s in connector.streams()):
            return name
    return None
