"""HTTP only: StripeClient, one method per Stripe request, over the official stripe SDK and httpx.

The official ``stripe`` SDK builds the requests (form encoding with brackets, the
``Stripe-Version`` it pins, auth headers, error classes); httpx carries them, through an
``httpx.Client`` that tests may inject (``httpx.MockTransport``). Two SDK defaults are turned off:

- its own network retries (``max_network_retries=0``): every call is retried by the hub's
  tenacity policy instead (``hub.http.retry_policy``), which honours ``Retry-After``;
- its random ``Idempotency-Key`` on every POST: each POST here takes a deterministic key from
  the caller, so a retry, or a re-run after a crash, cannot create a second object.

SDK errors become hub errors (see ``_to_hub_error``); the API key never appears in them. A 5xx
that Stripe replays from its idempotency store (``Idempotent-Replayed: true``) becomes a
``ReplayedError``, never retried: the same key would only get the same stored 500 back for a day.
Every method returns Stripe's objects as plain dicts, unchanged.
"""

from __future__ import annotations

import re
from typing import Callable, Iterator

import httpx
import stripe
import tenacity

from hub.config import Secret
from hub.errors import CredentialsError, MalformedResponseError, RetryableError, VendorError
from hub.http import make_client, parse_retry_after, retry_policy
from hub.ratelimit import RateLimiter
from hub.metrics import count_request_error

VENDOR = "stripe"
PAGE_SIZE = 100  # Stripe's largest page for list endpoints
# A Stripe key as it may appear in an error text, masked or not (sk_test_****1234, rk_live_...).
_KEY_PATTERN = re.compile(r"\b(?:sk|rk|pk)_(?:test|live)_[A-Za-z0-9*]+")


class ReplayedError(VendorError):
    """Stripe answered a POST with the error it stored under that idempotency key.

    Retrying with the same key replays the same answer until Stripe prunes the key (about 24 h),
    so the caller must look for the object and, only if it does not exist, send under a new key.
    """


class _HttpxTransport(stripe.HTTPXClient):
    """``stripe.HTTPXClient`` sending through a given ``httpx.Client``, counting requests.

    The parent constructor builds its own sync and async httpx clients; this one uses the client
    it is given (timeouts, proxies and transport are that client's) and builds nothing else.
    """

    def __init__(self, http: httpx.Client, *, owned: bool, limiter: RateLimiter | None = None):
        stripe.HTTPClient.__init__(self)
        self.limiter = limiter
        self.httpx = httpx
        self._client = http
        self._client_async = None
        self._timeout = None
        self._owned = owned
        self.requests = 0

    def request(self, method, url, headers, post_data=None):
        if self.limiter is not None:
            self.limiter.acquire()
        self.requests += 1
        try:
            # content=, not data=: the SDK hands over an already encoded form body.
            response = self._client.request(method, url, headers=headers, content=post_data)
        except httpx.HTTPError as exc:
            count_request_error(VENDOR)
            self._handle_request_error(exc)  # raises stripe.APIConnectionError
        return response.content, response.status_code, response.headers

    def close(self):
        if self._owned:  # a client handed in by the caller stays the caller's to close
            self._client.close()


class StripeClient:
    """Stripe's v1 API as the hub uses it: customers and their tax ids, tax rates, invoices, invoice items.

    Args:
        base_url: ``https://api.stripe.com``, or a simulator's / a Stripe-compatible server's URL.
        api_key: the secret (``sk_...``) or restricted (``rk_...``) key.
        http: an ``httpx.Client`` to send through (tests inject a MockTransport); the caller then owns it.
        retrying: a callable returning the ``tenacity.Retrying`` wrapped around each request;
            default ``hub.http.retry_policy``.
        limiter: the account's client-side rate limit (``hub.ratelimit``), waited on before every
            request, retries included; None: no limit.

    ``requests`` counts the HTTP requests sent, retries included. ``close()`` closes the httpx
    client only when this object made it.
    """

    def __init__(self, base_url: str, api_key: Secret | str, *, http: httpx.Client | None = None,
                 retrying: Callable[[], tenacity.Retrying] | None = None, limiter: RateLimiter | None = None):
        key = api_key.reveal() if isinstance(api_key, Secret) else str(api_key)
        self._secret = key
        self._transport = _HttpxTransport(make_client(base_url, http=http, vendor=VENDOR), owned=http is None,
                                          limiter=limiter)
        self._retrying = retrying or retry_policy
        self._sdk = stripe.StripeClient(key, base_addresses={"api": base_url.rstrip("/")},
                                        http_client=self._transport, max_network_retries=0)

    @property
    def requests(self) -> int:
        return self._transport.requests

    def close(self) -> None:
        self._transport.close()

    # --- customers ---------------------------------------------------------------------------

    def create_customer(self, params: dict, *, idempotency_key: str) -> dict:
        """POST /v1/customers."""
        return self._call("POST", "/v1/customers", self._sdk.v1.customers.create,
                          params, {"idempotency_key": idempotency_key})

    def search_customers(self, query: str) -> list[dict]:
        """GET /v1/customers/search, every page (Stripe's search is eventually consistent)."""
        return list(self._iter_search("/v1/customers/search", self._sdk.v1.customers.search, query))

    def iter_customers(self) -> Iterator[dict]:
        """GET /v1/customers, every page, newest first."""
        yield from self._iter_pages("/v1/customers", self._sdk.v1.customers.list, {"limit": PAGE_SIZE})

    def recent_customers(self) -> list[dict]:
        """GET /v1/customers, the newest page only (consistent, unlike search)."""
        return self._call("GET", "/v1/customers", self._sdk.v1.customers.list, {"limit": PAGE_SIZE})["data"]

    def retrieve_customer(self, customer_id: str, *, expand: list[str] | None = None) -> dict:
        """GET /v1/customers/{id} (``expand=["tax_ids"]`` embeds its first tax ids)."""
        params = {"expand": expand} if expand else {}
        return self._call("GET", f"/v1/customers/{customer_id}",
                          lambda p: self._sdk.v1.customers.retrieve(customer_id, p), params)

    def update_customer(self, customer_id: str, params: dict, *, idempotency_key: str) -> dict:
        """POST /v1/customers/{id}."""
        return self._call("POST", f"/v1/customers/{customer_id}",
                          lambda p, o: self._sdk.v1.customers.update(customer_id, p, o),
                          params, {"idempotency_key": idempotency_key})

    def iter_customer_tax_ids(self, customer_id: str) -> Iterator[dict]:
        """GET /v1/customers/{id}/tax_ids, every page."""
        yield from self._iter_pages(f"/v1/customers/{customer_id}/tax_ids",
                                    lambda p: self._sdk.v1.customers.tax_ids.list(customer_id, p),
                                    {"limit": PAGE_SIZE})

    def create_customer_tax_id(self, customer_id: str, params: dict, *, idempotency_key: str) -> dict:
        """POST /v1/customers/{id}/tax_ids (``type``, ``value``)."""
        return self._call("POST", f"/v1/customers/{customer_id}/tax_ids",
                          lambda p, o: self._sdk.v1.customers.tax_ids.create(customer_id, p, o),
                          params, {"idempotency_key": idempotency_key})

    def delete_customer_tax_id(self, customer_id: str, tax_id: str) -> dict:
        """DELETE /v1/customers/{id}/tax_ids/{tax_id}."""
        return self._call("DELETE", f"/v1/customers/{customer_id}/tax_ids/{tax_id}",
                          lambda: self._sdk.v1.customers.tax_ids.delete(customer_id, tax_id))

    # --- tax rates ---------------------------------------------------------------------------

    def create_tax_rate(self, params: dict, *, idempotency_key: str) -> dict:
        """POST /v1/tax_rates."""
        return self._call("POST", "/v1/tax_rates", self._sdk.v1.tax_rates.create,
                          params, {"idempotency_key": idempotency_key})

    def iter_tax_rates(self, *, active: bool | None = None) -> Iterator[dict]:
        """GET /v1/tax_rates, every page, newest first (Stripe has no search for tax rates)."""
        params: dict = {"limit": PAGE_SIZE}
        if active is not None:
            params["active"] = active
        yield from self._iter_pages("/v1/tax_rates", self._sdk.v1.tax_rates.list, params)

    # --- invoices ----------------------------------------------------------------------------

    def create_invoice(self, params: dict, *, idempotency_key: str) -> dict:
        """POST /v1/invoices (a draft)."""
        return self._call("POST", "/v1/invoices", self._sdk.v1.invoices.create,
                          params, {"idempotency_key": idempotency_key})

    def retrieve_invoice(self, invoice_id: str) -> dict:
        """GET /v1/invoices/{id}."""
        return self._call("GET", f"/v1/invoices/{invoice_id}",
                          lambda: self._sdk.v1.invoices.retrieve(invoice_id))

    def search_invoices(self, query: str) -> list[dict]:
        """GET /v1/invoices/search, every page (eventually consistent, like every Stripe search)."""
        return list(self._iter_search("/v1/invoices/search", self._sdk.v1.invoices.search, query))

    def iter_invoices(self, *, customer: str | None = None, status: str | None = None) -> Iterator[dict]:
        """GET /v1/invoices (of one customer, or of the account), every page, newest first."""
        params: dict = {"limit": PAGE_SIZE}
        if customer:
            params["customer"] = customer
        if status:
            params["status"] = status
        yield from self._iter_pages("/v1/invoices", self._sdk.v1.invoices.list, params)

    def iter_invoice_lines(self, invoice_id: str) -> Iterator[dict]:
        """GET /v1/invoices/{id}/lines, every page."""
        yield from self._iter_pages(f"/v1/invoices/{invoice_id}/lines",
                                    lambda p: self._sdk.v1.invoices.line_items.list(invoice_id, p),
                                    {"limit": PAGE_SIZE})

    def add_invoice_lines(self, invoice_id: str, lines: list[dict], *, idempotency_key: str) -> dict:
        """POST /v1/invoices/{id}/add_lines; returns the updated invoice."""
        return self._call("POST", f"/v1/invoices/{invoice_id}/add_lines",
                          lambda p, o: self._sdk.v1.invoices.add_lines(invoice_id, p, o),
                          {"lines": lines}, {"idempotency_key": idempotency_key})

    def finalize_invoice(self, invoice_id: str, *, idempotency_key: str) -> dict:
        """POST /v1/invoices/{id}/finalize; returns the finalized invoice."""
        return self._call("POST", f"/v1/invoices/{invoice_id}/finalize",
                          lambda p, o: self._sdk.v1.invoices.finalize_invoice(invoice_id, p, o),
                          {}, {"idempotency_key": idempotency_key})

    def void_invoice(self, invoice_id: str, *, idempotency_key: str) -> dict:
        """POST /v1/invoices/{id}/void; returns the voided invoice."""
        return self._call("POST", f"/v1/invoices/{invoice_id}/void",
                          lambda p, o: self._sdk.v1.invoices.void_invoice(invoice_id, p, o),
                          {}, {"idempotency_key": idempotency_key})

    # --- credit notes ------------------------------------------------------------------------

    def create_credit_note(self, params: dict, *, idempotency_key: str) -> dict:
        """POST /v1/credit_notes."""
        return self._call("POST", "/v1/credit_notes", self._sdk.v1.credit_notes.create,
                          params, {"idempotency_key": idempotency_key})

    def iter_credit_notes(self, invoice_id: str) -> Iterator[dict]:
        """GET /v1/credit_notes?invoice=..., every page."""
        return self._iter_pages("/v1/credit_notes", self._sdk.v1.credit_notes.list,
                                {"invoice": invoice_id, "limit": 100})

    # --- invoice items -----------------------------------------------------------------------

    def create_invoice_item(self, params: dict, *, idempotency_key: str) -> dict:
        """POST /v1/invoiceitems."""
        return self._call("POST", "/v1/invoiceitems", self._sdk.v1.invoice_items.create,
                          params, {"idempotency_key": idempotency_key})

    # --- plumbing ----------------------------------------------------------------------------

    def _iter_pages(self, path: str, fn: Callable, params: dict) -> Iterator[dict]:
        """Follow ``has_more`` with ``starting_after``; raise if a page does not move on."""
        seen: set[str] = set()
        params = dict(params)
        while True:
            page = self._call("GET", path, fn, dict(params))
            data = page["data"]
            yield from data
            if not page.get("has_more") or not data:
                return
            last = data[-1]["id"]
            if last in seen:
                raise MalformedResponseError(VENDOR, 200, "GET", path,
                                             f"the page after {last} came back twice")
            seen.add(last)
            params["starting_after"] = last

    def _iter_search(self, path: str, fn: Callable, query: str) -> Iterator[dict]:
        """Follow a search result's ``next_page`` with ``page``; raise if a page token repeats."""
        params: dict = {"query": query, "limit": PAGE_SIZE}
        seen: set[str] = set()
        while True:
            page = self._call("GET", path, fn, dict(params))
            yield from page["data"]
            token = page.get("next_page")
            if not page.get("has_more") or not token:
                return
            if token in seen:
                raise MalformedResponseError(VENDOR, 200, "GET", path, f"search page {token} came back twice")
            seen.add(token)
            params["page"] = token

    def _call(self, method: str, path: str, fn: Callable, *args) -> dict:
        """Run one SDK call under the retry policy; return its object as a plain dict."""
        def once():
            try:
                result = fn(*args)
            except stripe.StripeError as exc:
                raise self._to_hub_error(exc, method, path) from None
            return result.to_dict() if isinstance(result, stripe.StripeObject) else result
        return self._retrying()(once)

    def _to_hub_error(self, exc: stripe.StripeError, method: str, path: str) -> VendorError:
        """Map an SDK error to the hub's tree (see ``hub.errors``)."""
        status = exc.http_status
        headers = exc.headers or {}
        error = (exc.json_body or {}).get("error") if isinstance(exc.json_body, dict) else None
        error = error if isinstance(error, dict) else {}
        detail = self._detail(exc, error)
        should_retry = headers.get("stripe-should-retry") if headers else None
        if isinstance(exc, stripe.APIConnectionError):
            return RetryableError(VENDOR, None, method, path, self._redact(exc.user_message or ""))
        if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
            return CredentialsError(VENDOR, status, method, path, detail)
        if str(headers.get("idempotent-replayed", "")).lower() == "true" and status is not None and status >= 500:
            return ReplayedError(VENDOR, status, method, path,
                                 f"{detail}; Stripe replayed the answer it stored under this idempotency key")
        if should_retry == "false":  # Stripe says a retry would only replay this answer
            return VendorError(VENDOR, status, method, path, detail)
        if (isinstance(exc, stripe.RateLimitError) or should_retry == "true"
                or (status is not None and (status == 409 or status >= 500))):
            return RetryableError(VENDOR, status, method, path, detail,
                                  retry_after=parse_retry_after(headers.get("retry-after")))
        if isinstance(exc, stripe.APIError) and not error:
            # The body was not Stripe's JSON at all (truncated, HTML from a proxy...).
            return MalformedResponseError(VENDOR, status, method, path, "the response body is not Stripe JSON")
        return VendorError(VENDOR, status, method, path, detail)

    def _detail(self, exc: stripe.StripeError, error: dict) -> str:
        """Stripe's own words: type, code, message and param, with any key removed."""
        message = error.get("message") or exc.user_message or ""
        tags = [t for t in (error.get("type"), error.get("code")) if t]
        text = f"{message} [{', '.join(tags)}]" if tags else message
        if error.get("param"):
            text += f" (param: {error['param']})"
        return self._redact(text)

    def _redact(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "[redacted]")
        return _KEY_PATTERN.sub("[redacted]", text)
