"""A base for vendor simulators: routes, an auth check, paging, injected faults and a clock.

A simulator is a plain object whose ``handler(httpx.Request) -> httpx.Response`` answers like the
vendor's API. Mount it without sockets with ``hub.testing.mock_client(sim.handler)``, or serve it
over real HTTP with ``hub.testing.serve(sim.handler)`` (the ``serve_simulator`` fixture does).

A subclass registers its endpoints in ``__init__`` with ``self.route(method, path, function)``;
each function takes the ``httpx.Request`` (and the path's ``{parameters}`` as keyword arguments)
and returns an ``httpx.Response`` (``self.json(...)`` builds one). Paging is done by ``self.page_by_number(...)`` or ``self.page_by_cursor(...)``.
Every request is checked for the credentials first (``auth_header``/``auth_value``: a 401
otherwise), then the faults queued by ``fail_next``, ``timeout_next`` and ``garbage_next`` are
applied, in the order they were queued.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from email.utils import formatdate
from typing import Any, Callable, Sequence

import httpx

Route = Callable[..., httpx.Response]


class Simulator:
    """Answer HTTP requests like a vendor API, with faults on demand.

    Args:
        auth_header: the header that carries the credentials (``Authorization``, ``X-API-Key``).
        auth_value: its expected value; a request without it gets a 401. None: no check.
        now: the simulator's clock in epoch seconds (default: the real time when created);
            ``advance(seconds)`` moves it, and every answer carries it as its ``Date`` header.
        page_size: the page size used when a request does not ask for one.
        max_page_size: the most a request may ask for (larger requests are cut to it, as APIs do).

    Attributes: ``requests`` (how many were answered), ``log`` (``(method, path, query)`` of each),
    ``requests_by_path`` (a Counter), ``effects`` (a Counter the subclass increments for each
    write that changed something: a conformance check counts pushes by it).
    """

    def __init__(self, *, auth_header: str = "Authorization", auth_value: str | None = "Bearer test-token",
                 now: float | None = None, page_size: int = 50, max_page_size: int = 500):
        self.auth_header, self.auth_value = auth_header, auth_value
        self.now = time.time() if now is None else float(now)
        self.page_size, self.max_page_size = page_size, max_page_size
        self.requests = 0
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self.requests_by_path: Counter[str] = Counter()
        self.effects: Counter[str] = Counter()
        self._routes: dict[tuple[str, str], Route] = {}
        self._patterns: list[tuple[str, re.Pattern[str], Route]] = []
        self._faults: list[dict[str, Any]] = []
        self._lock = threading.RLock()

    # --- set-up --------------------------------------------------------------------------------

    def route(self, method: str, path: str, function: Route) -> None:
        """Answer ``method path`` with ``function(request)``.

        ``path`` is exact (``/api/devices``) or has ``{name}`` parts, each matching one path
        segment and passed as a keyword argument (text): ``/api/agents/{agent_id}/`` calls
        ``function(request, agent_id="17")``. Exact paths win over patterns; patterns are tried in
        the order they were registered.
        """
        if "{" not in path:
            self._routes[(method.upper(), path)] = function
            return
        regex = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(path))
        self._patterns.append((method.upper(), re.compile(regex + "$"), function))

    def advance(self, seconds: float) -> None:
        """Move the simulator's clock forward (or back, with a negative number)."""
        with self._lock:
            self.now += seconds

    # --- faults --------------------------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1, retry_after: float | None = None,
                  path: str | None = None, *, method: str | None = None, after_apply: bool = False) -> None:
        """Answer the next ``times`` requests (to ``path``, or any) with ``status`` (429, 503, 401...).

        ``retry_after`` adds a ``Retry-After`` header (seconds). ``after_apply`` serves the request
        first, then answers with the error: a write that took effect but whose answer was lost.
        """
        self._queue({"kind": "status", "status": status, "times": times, "retry_after": retry_after,
                     "path": path, "method": method, "after_apply": after_apply})

    def timeout_next(self, times: int = 1, path: str | None = None, *, method: str | None = None,
                     after_apply: bool = False) -> None:
        """Raise ``httpx.ReadTimeout`` for the next ``times`` requests (a 500 when served over HTTP);
        with ``after_apply`` the request is served first (its effect happens, its answer is lost)."""
        self._queue({"kind": "timeout", "times": times, "path": path, "method": method,
                     "after_apply": after_apply})

    def garbage_next(self, times: int = 1, path: str | None = None, *, method: str | None = None) -> None:
        """Answer the next ``times`` requests with a 200 whose body is truncated JSON."""
        self._queue({"kind": "garbage", "times": times, "path": path, "method": method, "after_apply": False})

    def clear_faults(self) -> None:
        """Forget every fault still queued."""
        with self._lock:
            self._faults.clear()

    def _queue(self, fault: dict[str, Any]) -> None:
        if fault["times"] < 1:
            raise ValueError(f"times must be at least 1, got {fault['times']}")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, method: str, path: str) -> dict[str, Any] | None:
        for fault in self._faults:
            if fault["path"] not in (None, path) or fault["method"] not in (None, method):
                continue
            fault["times"] -= 1
            if fault["times"] <= 0:
                self._faults.remove(fault)
            return fault
        return None

    # --- answers -------------------------------------------------------------------------------

    def json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        """A JSON answer."""
        return httpx.Response(status, content=json.dumps(body).encode(),
                              headers={"Content-Type": "application/json", **(headers or {})})

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """An error answer as ``{"detail": message}`` (override to follow the vendor's shape)."""
        return self.json(status, {"detail": message}, headers)

    def size(self, request: httpx.Request, param: str) -> int:
        """The page size a request asks for in ``param`` (default ``page_size``, at most ``max_page_size``)."""
        raw = request.url.params.get(param)
        if raw is None:
            return self.page_size
        return max(1, min(int(raw), self.max_page_size))

    def page_by_number(self, request: httpx.Request, items: Sequence[dict[str, Any]], *,
                       page_param: str = "page", size_param: str = "page_size") -> httpx.Response:
        """Serve ``items`` by page number (1-based): ``{"count", "next", "results"}``.

        ``next`` is the next page's number, or null on the last page. A page past the end is an
        empty ``results`` with ``next`` null.
        """
        size = self.size(request, size_param)
        page = int(request.url.params.get(page_param, "1"))
        if page < 1:
            return self.error(400, f"{page_param} must be 1 or more")
        chunk = list(items[(page - 1) * size: page * size])
        more = page * size < len(items)
        return self.json(200, {"count": len(items), "next": page + 1 if more else None, "results": chunk})

    def page_by_cursor(self, request: httpx.Request, items: Sequence[dict[str, Any]], *, key: str = "id",
                       cursor_param: str = "after", size_param: str = "limit") -> httpx.Response:
        """Serve ``items`` (sorted by ``key``) after the cursor: ``{"results", "next_cursor"}``.

        The cursor is the ``key`` of the last record served; ``next_cursor`` is null on the last page.
        """
        size = self.size(request, size_param)
        after = request.url.params.get(cursor_param)
        rest = [i for i in items if after is None or i[key] > type(i[key])(after)]
        chunk = rest[:size]
        more = len(rest) > size
        return self.json(200, {"results": chunk, "next_cursor": str(chunk[-1][key]) if more else None})

    # --- the server ----------------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        """Answer one request: log it, check the credentials, apply a queued fault, route it."""
        method, path = request.method, request.url.path
        with self._lock:
            self.requests += 1
            self.requests_by_path[path] += 1
            self.log.append((method, path, dict(request.url.params)))
            fault = self._take_fault(method, path)
            if fault is not None and not fault["after_apply"]:
                response = self._faulty(fault, request)
            else:
                response = self._serve(method, path, request)
                if fault is not None:
                    response = self._faulty(fault, request)
            response.headers["Date"] = formatdate(self.now, usegmt=True)
            return response

    def _serve(self, method: str, path: str, request: httpx.Request) -> httpx.Response:
        if self.auth_value is not None and request.headers.get(self.auth_header) != self.auth_value:
            return self.error(401, "Authentication credentials were not provided or are invalid.")
        function = self._routes.get((method, path))
        if function is not None:
            return function(request)
        known = any(p == path for _, p in self._routes)
        for wanted, pattern, function in self._patterns:
            found = pattern.match(path)
            if found and wanted == method:
                return function(request, **found.groupdict())
            known = known or bool(found)
        if known:
            return self.error(405, f"Method {method} not allowed.")
        return self.error(404, "Not found.")

    def _faulty(self, fault: dict[str, Any], request: httpx.Request) -> httpx.Response:
        if fault["kind"] == "timeout":
            raise httpx.ReadTimeout("simulated timeout", request=request)
        if fault["kind"] == "garbage":
            return httpx.Response(200, content=b'{"results": [{"id": 1, "name": "trunc',
                                  headers={"Content-Type": "application/json"})
        headers = {} if fault["retry_after"] is None else {"Retry-After": f"{fault['retry_after']:g}"}
        return self.error(fault["status"], "simulated fault", headers)
