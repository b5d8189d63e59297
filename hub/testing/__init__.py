"""The test kit plugin authors reuse: serve a simulator over HTTP, build hubs, check conformance.

Public surface (documented in docs/testing.md):

* ``serve(handler)`` / ``mock_client(handler)``: a simulator over real HTTP, or without sockets;
* ``Simulator``: a base for vendor simulators (routes, auth check, paging, faults, a clock);
* ``make_hub(*plugins)``, ``ConnectorPlugin``, ``empty_mappings()``: a hub around a plugin;
* ``assert_plugin_conforms(connector, simulator)``: the checks every connector must pass;
* ``MemoryPushContext``: the context a push receives, kept in memory;
* ``hub.testing.fixtures``: the same as pytest fixtures (``pytest_plugins = ["hub.testing.fixtures"]``).
"""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import httpx
import structlog

from hub.config import HubConfig
from hub.engine import Hub
from hub.hookspecs import hookimpl
from hub.mappings import Mappings, load_mappings
from hub.plugins import get_plugin_manager
from hub.store import Store

__all__ = ["serve", "mock_client", "Simulator", "make_hub", "ConnectorPlugin", "empty_mappings",
           "assert_plugin_conforms", "ConformanceReport", "MemoryPushContext", "quiet_logging"]

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


def _below_warning(logger, method_name, event_dict):
    if method_name in ("debug", "info"):
        raise structlog.DropEvent
    return event_dict


def quiet_logging() -> None:
    """Drop structlog's debug and info lines while structlog keeps its default set-up (printing
    every line), as in tests: warnings and errors still print. A process that configured logging
    (``hub.logs.configure_logging``) is left alone, and ``structlog.testing.capture_logs`` still
    captures every line (it replaces the processors while it runs)."""
    config = structlog.get_config()
    processors = config["processors"]
    if _below_warning in processors or not isinstance(config["logger_factory"], structlog.PrintLoggerFactory):
        return
    structlog.configure(processors=[_below_warning, *processors])


def make_hub(*plugins, config: HubConfig | None = None, mappings: Mappings | str | Path | None = None,
             store: Store | None = None, clock=None, quiet: bool = True) -> Hub:
    """A hub on an in-memory database with only ``plugins`` registered (no entry points).

    Args:
        plugins: plugin objects or modules; wrap ready-made connectors in ``ConnectorPlugin``.
        config: defaults to an empty ``HubConfig`` (UTC, no connector sections).
        mappings: a ``Mappings``, or a folder to load; defaults to ``empty_mappings()``.
        store: defaults to a fresh in-memory ``Store``.
        clock: a callable returning the aware UTC "now" the engine uses.
        quiet: drop the debug and info log lines (``quiet_logging()``); warnings still print.
    Returns:
        a ``hub.engine.Hub``; close it with ``hub.close()``.
    """
    if quiet:
        quiet_logging()
    if mappings is None:
        mappings = empty_mappings()
    elif not isinstance(mappings, Mappings):
        mappings = load_mappings(mappings)
    return Hub(config or HubConfig(database=":memory:"), pm=get_plugin_manager(*plugins, load_entrypoints=False),
               store=store or Store(":memory:"), mappings=mappings, clock=clock)


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


from hub.testing.conformance import ConformanceReport, assert_plugin_conforms  # noqa: E402
from hub.testing.simulator import Simulator  # noqa: E402
