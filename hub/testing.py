"""The harness plugin authors reuse: serve a simulator over HTTP, build hubs, check conformance."""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

import httpx

from dataclasses import fields
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hub.config import HubConfig
from hub.engine import Hub, RunReport, pull
from hub.hookspecs import hookimpl
from hub.mappings import Mappings, load_mappings
from hub.plugins import get_plugin_manager
from hub.store import RECORD_TABLES, Store

Handler = Callable[[httpx.Request], httpx.Response]


def _make_request_handler(handler: Handler):
    class _RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: with Nagle's algorithm on, the body waits for the
        # client's delayed ACK (about 40 ms a request on Linux loopback).
        disable_nagle_algorithm = True

        def _serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            host = self.headers.get("Host", "127.0.0.1")
            request = httpx.Request(self.command, f"http://{host}{self.path}",
                                    headers=list(self.headers.items()), content=body)
            try:
                response = handler(request)
                content = response.content
            except Exception as exc:  # a simulator bug must show as a 500, not a hung socket
                response = httpx.Response(500, text=f"simulator error: {exc!r}")
                content = response.content
            # The simulator's own Date header (its clock may run ahead or behind) is the only one.
            self.send_response_only(response.status_code)
            if "date" not in response.headers:
                self.send_header("Date", self.date_time_string())
            for name, value in response.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
            pass

    return _RequestHandler


@contextlib.contextmanager
def serve(handler: Handler, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``handler(httpx.Request) -> httpx.Response`` over real HTTP; yield its base URL.

    Used by the demo and the benchmarks so that they measure real requests over loopback.
    The server stops when the block ends.
    """
    server = ThreadingHTTPServer((host, port), _make_request_handler(handler))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="simulator", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def mock_client(handler: Handler, base_url: str = "http://simulator.test") -> httpx.Client:
    """An httpx.Client whose requests go straight to ``handler`` (no sockets)."""
    return httpx.Client(transport=httpx.MockTransport(handler), base_url=base_url)


# --- hubs for tests ------------------------------------------------------------------------------

class ConnectorPlugin:
    """A plugin that registers ready-made connectors (e.g. one whose client talks to a simulator)."""

    def __init__(self, *connectors, name: str | None = None):
        self.connectors = list(connectors)
        self.__name__ = name or "connectors:" + ",".join(c.name for c in connectors)

    @hookimpl
    def register_connectors(self):
        return list(self.connectors)


def empty_mappings(currency: str = "EUR") -> Mappings:
    """Mappings with no tier and no contract: enough to pull, nothing to bill."""
    return Mappings(currency, {}, {}, {}, {})


def make_hub(*plugins, config: HubConfig | None = None, mappings: Mappings | str | Path | None = None,
             store: Store | None = None, clock=None) -> Hub:
    """A hub on an in-memory database with only ``plugins`` registered (no entry points).

    Args:
        plugins: plugin objects or modules; wrap ready-made connectors in ``ConnectorPlugin``.
        config: defaults to an empty ``HubConfig`` (UTC, no connector sections).
        mappings: a ``Mappings``, or a folder to load; defaults to ``empty_mappings()``.
        store: defaults to a fresh in-memory ``Store``.
        clock: a callable returning the aware UTC "now" the engine uses.
    Returns:
        a ``hub.engine.Hub``; close it with ``hub.close()``.
    """
    if mappings is None:
        mappings = empty_mappings()
    elif not isinstance(mappings, Mappings):
        mappings = load_mappings(mappings)
    return Hub(config or HubConfig(database=":memory:"), pm=get_plugin_manager(*plugins, load_entrypoints=False),
               store=store or Store(":memory:"), mappings=mappings, clock=clock)


def _timestamps(cursor, skip: frozenset[str] = frozenset()) -> list[datetime]:
    """The hub's-clock timestamps of a cursor (``skip``: keys on the vendor's clock)."""
    out = []
    for key, value in (cursor or {}).items():
        if key in skip:
            continue
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                continue
            out.append(moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))
    return out


def _snapshot(hub: Hub, tables: set[str]) -> dict[str, list[dict]]:
    return {t: hub.store.rows(t) for t in tables}


def assert_plugin_conforms(connector, simulator) -> None:
    """Check that a connector behaves as the engine expects; raise AssertionError if not.

    Runs full pulls of every stream of ``connector`` against ``simulator`` and checks that:
    records are canonical types (``hub.records``) with the connector's name as ``source`` and
    unique ``(source, source_id)`` keys; the saved cursor never passes the run's start (keys named
    in the connector's ``vendor_clock_keys`` follow the vendor's clock and are left alone); a second
    sync changes nothing; and a sync survives a 429 injected with ``simulator.fail_next(429,
    times=1, retry_after=0)``.

    Args:
        connector: a ``hub.connectors.Connector`` whose client talks to ``simulator``.
        simulator: the vendor simulator, offering ``fail_next(status, times=, retry_after=)``.
    """
    hub = make_hub(ConnectorPlugin(connector))
    vendor_keys = frozenset(getattr(connector, "vendor_clock_keys", ()))
    streams = connector.streams()
    assert streams, f"connector {connector.name!r} has no stream to pull"
    tables = {s.table for s in streams}
    for stream in streams:
        cls = RECORD_TABLES.get(stream.table)
        assert cls is not None, f"stream {stream.name!r} writes to unknown table {stream.table!r}"
        seen: set[tuple[str, str]] = set()
        started = datetime.now(timezone.utc)
        for page in stream.iter_pages(None, started):
            for record in page.records:
                assert isinstance(record, cls), f"{stream.name}: {record!r} is not a {cls.__name__}"
                assert record.source == connector.name, f"{stream.name}: source {record.source!r} != {connector.name!r}"
                assert isinstance(record.source_id, str) and record.source_id, f"{stream.name}: source_id must be non-empty text"
                key = (record.source, record.source_id)
                assert key not in seen, f"{stream.name}: duplicate key {key}"
                seen.add(key)
                for name in (f.name for f in fields(record) if "datetime" in str(f.type)):
                    value = getattr(record, name, None)
                    assert value is None or (isinstance(value, datetime) and value.utcoffset() == timedelta(0)), \
                        f"{stream.name}: {name} must be an aware UTC datetime, got {value!r}"
            for moment in _timestamps(page.cursor, vendor_keys):
                assert moment <= started, f"{stream.name}: cursor {page.cursor} passes the run start {started}"
        assert seen, f"stream {stream.name!r} pulled nothing from the simulator"

    first = RunReport("conformance-1", "sync", datetime.now(timezone.utc))
    pull(hub, first)
    assert not first.errors, f"first sync failed: {first.errors}"
    for stream in streams:
        for moment in _timestamps(hub.store.get_cursor(connector.name, stream.name), vendor_keys):
            assert moment <= first.started_at, f"{stream.name}: saved cursor passes the run start"
    before = _snapshot(hub, tables)
    second = RunReport("conformance-2", "sync", datetime.now(timezone.utc))
    pull(hub, second)
    assert not second.errors, f"second sync failed: {second.errors}"
    assert _snapshot(hub, tables) == before, "a second sync over unchanged data changed stored records"

    simulator.fail_next(429, times=1, retry_after=0)
    third = RunReport("conformance-3", "sync", datetime.now(timezone.utc))
    pull(hub, third)
    assert not third.errors, f"a sync did not survive an injected 429: {third.errors}"
    assert _snapshot(hub, tables) == before, "records changed after a 429 was survived"


class MemoryPushContext:
    """A ``hub.connectors.PushContext`` kept in memory, as the engine's store-backed one behaves.

    Args:
        links: ``{(client id, system): external id}`` already known.
        attempts: how many times the action was sent before (0 on a first push).
    ``saved`` lists every ``save_progress`` call; ``next_attempt()`` is the context the engine
    hands the same action on its next attempt.
    """

    def __init__(self, links: dict | None = None, attempts: int = 0):
        self.links: dict[tuple[str, str], str] = dict(links or {})
        self.attempts = attempts
        self.progress: dict = {}
        self.saved: list[dict] = []

    def get_link(self, client_id: str, system: str) -> str | None:
        return self.links.get((client_id, system))

    def set_link(self, client_id: str, system: str, external_id: str) -> None:
        self.links[(client_id, system)] = external_id

    def save_progress(self, **progress) -> None:
        self.progress.update(progress)
        self.saved.append(dict(progress))

    def next_attempt(self) -> "MemoryPushContext":
        self.attempts += 1
        return self
