"""Shared HTTP plumbing: make_client() and the tenacity retry policy every vendor client uses."""

from __future__ import annotations

import email.utils
import time
from typing import Callable

import httpx
import tenacity

from hub.errors import RetryableError

USER_AGENT = "msp-hub/0.1 (+https://github.com/msp-hub/msp-hub)"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def make_client(base_url: str, *, http: httpx.Client | None = None, headers: dict | None = None,
                timeout: float | httpx.Timeout | None = None, vendor: str | None = None) -> httpx.Client:
    """Return ``http`` if given (tests inject a MockTransport client), else a new httpx.Client.

    ``headers`` are sent by either client: merged into a given ``http`` client (a header of the
    same name is replaced), never dropped. With ``vendor``, every response is counted in the
    process metrics (requests by status class, and 429s) whichever client it is.
    """
    if http is not None:
        client = http
        if headers:
            client.headers.update(headers)
    else:
        client = httpx.Client(base_url=base_url, timeout=timeout or DEFAULT_TIMEOUT,
                              headers={"User-Agent": USER_AGENT, **(headers or {})})
    if vendor:
        from hub.metrics import count_response
        hook = count_response(vendor)
        hook.vendor = vendor  # type: ignore[attr-defined]  # so one client never counts twice
        if not any(getattr(h, "vendor", None) == vendor for h in client.event_hooks["response"]):
            client.event_hooks["response"] = [*client.event_hooks["response"], hook]
    return client


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _WaitRetryAfter(tenacity.wait.wait_base):
    """Wait what the vendor's Retry-After said (capped), else exponential backoff with jitter."""

    def __init__(self, fallback: tenacity.wait.wait_base, cap: float):
        self.fallback, self.cap = fallback, cap

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            return min(exc.retry_after, self.cap)
        return self.fallback(retry_state)


def _refused_twice(state: tenacity.RetryCallState) -> bool:
    """Stop after a second refused connection: nothing listens at the address (a wrong host or
    port, a vendor down), so five tries with backoff for every stream would only delay the error."""
    exc = state.outcome.exception() if state.outcome is not None else None
    return state.attempt_number >= 2 and isinstance(getattr(exc, "__cause__", None), httpx.ConnectError)


def retry_policy(*, attempts: int = 5, max_wait: float = 60.0, initial: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> tenacity.Retrying:
    """The retry policy for vendor requests: RetryableError only, Retry-After honoured; a
    connection refused twice is not tried again.

    Returns a ``tenacity.Retrying``; use it as ``policy(fn, *args)`` or ``for attempt in policy``.
    After the last attempt the RetryableError itself is raised (``reraise=True``).
    """
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(RetryableError),
        stop=tenacity.stop_after_attempt(attempts) | _refused_twice,
        wait=_WaitRetryAfter(tenacity.wait_exponential_jitter(multiplier=initial, max=max_wait), cap=max_wait),
        sleep=sleep,
        reraise=True,
    )
