"""The harness plugin authors reuse: serve a simulator over HTTP, build hubs, check conformance."""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

import httpx

Handler = Callable[[httpx.Request], httpx.Response]


def _make_request_handler(handler: Handler):
    class _RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

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
            self.send_response(response.status_code)
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
