"""What a connector plugin needs at run time: HTTP answers turned into hub errors, retried by
the hub's policy (``hub.http.retry_policy``), and the template ``msp-hub plugin new`` writes.

    from hub.sdk import VendorClient

    api = VendorClient("acme", "https://rmm.example.com", headers={"X-API-Key": key.reveal()})
    page = api.get("/api/devices", params={"after": 10}, expect=dict)

Every request goes through ``retry_policy()``: a 429, a 5xx, a timeout, a refused connection or
a body that is not the JSON expected is retried with backoff (``Retry-After`` honoured); a 401 or
403 raises ``CredentialsError`` at once, another 4xx ``VendorError``. Messages name the vendor,
the method, the URL and the vendor's own error text, never a header or a secret.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import httpx
import tenacity

from hub.errors import CredentialsError, MalformedResponseError, RetryableError, VendorError
from hub.http import make_client, parse_retry_after, retry_policy

__all__ = ["VendorClient", "error_for", "vendor_detail"]


def vendor_detail(response: httpx.Response, *, secrets: tuple[str, ...] = ()) -> str:
    """The vendor's own error text of an answer (``detail``, ``message``, ``error``... or the
    start of the body), with every one of ``secrets`` replaced by ``[redacted]``."""
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("detail", "message", "errorMessage", "error", "error_description")
                 if body.get(k)]
        text = "; ".join(parts)
    else:
        text = response.text.strip()[:200]
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def error_for(response: httpx.Response, vendor: str, *, credentials_fix: str = "",
              secrets: tuple[str, ...] = ()) -> VendorError | None:
    """The hub error an answer stands for, or None for a success (1xx-3xx).

    401/403: ``CredentialsError`` (with ``credentials_fix`` appended, e.g. which key to change);
    429 and 5xx: ``RetryableError`` carrying the ``Retry-After`` seconds; any other status:
    ``VendorError``. Its URL has no query string (a query may hold a secret).
    """
    status = response.status_code
    if status < 400:
        return None
    request = response.request
    method, url = request.method, str(request.url.copy_with(query=None))
    detail = vendor_detail(response, secrets=secrets)
    if status in (401, 403):
        fix = f" (fix: {credentials_fix})" if credentials_fix else ""
        return CredentialsError(vendor, status, method, url, f"{detail or 'credentials refused'}{fix}")
    if status == 429 or status >= 500:
        return RetryableError(vendor, status, method, url, detail,
                              retry_after=parse_retry_after(response.headers.get("Retry-After")))
    return VendorError(vendor, status, method, url, detail)


class VendorClient:
    """A vendor's HTTP API, with the hub's errors and retry policy.

    Args:
        vendor: the connector's name (in every error message and in the process metrics).
        base_url: the API's root, e.g. ``https://rmm.example.com``.
        headers: sent with every request (the credentials: ``{"X-API-Key": secret.reveal()}``).
        http: an ``httpx.Client`` to use instead of a new one (tests pass
            ``hub.testing.mock_client(sim.handler)``).
        retrying: a callable returning a ``tenacity.Retrying`` (default ``hub.http.retry_policy``;
            tests pass ``lambda: retry_policy(sleep=lambda s: None)`` to retry without waiting).
        credentials_fix: appended to a 401/403 error, e.g. ``"set api_key_env in [connectors.acme]"``.
        timeout: seconds (or an ``httpx.Timeout``) for a new client.
    """

    def __init__(self, vendor: str, base_url: str, *, headers: dict[str, str] | None = None,
                 http: httpx.Client | None = None, retrying: Callable[[], tenacity.Retrying] | None = None,
                 credentials_fix: str = "", timeout: float | httpx.Timeout | None = None):
        self.vendor = vendor
        self.base_url = base_url.rstrip("/")
        self._secrets = tuple(v for v in (headers or {}).values() if v)
        self._http = make_client(self.base_url, http=http, headers=headers, timeout=timeout, vendor=vendor)
        self._retrying = retrying or retry_policy
        self.credentials_fix = credentials_fix
        self.requests = 0

    def get(self, path: str, *, params: dict[str, Any] | None = None, expect: type | None = dict) -> Any:
        """GET ``path``; return its JSON body, which must be of type ``expect`` (dict or list)."""
        return self.request("GET", path, params=params, expect=expect)

    def post(self, path: str, *, json_body: Any = None, headers: dict[str, str] | None = None,
             expect: type | None = dict) -> Any:
        """POST ``json_body`` to ``path`` (``headers``: e.g. an ``Idempotency-Key``); return its JSON body."""
        return self.request("POST", path, json_body=json_body, headers=headers, expect=expect)

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json_body: Any = None,
                headers: dict[str, str] | None = None, expect: type | None = dict) -> Any:
        """Send one API call under the retry policy; return its decoded JSON (None if ``expect`` is None).

        Raises ``CredentialsError``, ``VendorError``, or after the last attempt ``RetryableError``
        (``MalformedResponseError`` for a body that is not the JSON ``expect`` names).
        """
        return self._retrying()(self._attempt, method, path, params, json_body, headers, expect)

    def _attempt(self, method: str, path: str, params: dict[str, Any] | None, json_body: Any,
                 headers: dict[str, str] | None, expect: type | None) -> Any:
        url = self.base_url + path
        extra: dict[str, Any] = {} if json_body is None else {"json": json_body}
        self.requests += 1
        try:
            response = self._http.request(method, url, params=params, headers=headers, **extra)
        except httpx.TransportError as exc:   # timeouts, refused connections, broken sockets
            raise RetryableError(self.vendor, None, method, url, type(exc).__name__) from exc
        error = error_for(response, self.vendor, credentials_fix=self.credentials_fix, secrets=self._secrets)
        if error is not None:
            raise error
        if expect is None:
            return None
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if not isinstance(body, expect):
            raise MalformedResponseError(self.vendor, response.status_code, method, url,
                                         f"expected a JSON {'array' if expect is list else 'object'}, "
                                         f"got: {response.text[:80]!r}")
        return body

    def close(self) -> None:
        self._http.close()
