"""StripeSimulator: a stateful, deterministic fake of the Stripe v1 endpoints the plugin uses.

Serves customers (create, retrieve, update, list, search; their tax ids: create, list, delete),
tax rates (create, retrieve, list), invoices (create a draft, retrieve, list,
search, list lines, add_lines, finalize, void), invoice items (create, list) and credit notes
(create, retrieve, list by invoice or customer) with Stripe's paths,
form-encoded bracket params, auth, list and error shapes, and idempotency semantics:

- a POST with an ``Idempotency-Key`` seen before with the same path and params gets the stored
  status and body again, with ``Idempotent-Replayed: true``; with other params it gets
  ``400 idempotency_error``. Only requests that ran are stored (2xx and 5xx answers; a 4xx from
  validation is not), as Stripe does;
- ``expire_idempotency_keys()`` forgets every key, as Stripe's pruning after 24 h does.

Lines and invoice items take an ``amount``, or a ``quantity`` with a unit amount (an add_lines
line's ``price_data[unit_amount]``, an invoice item's ``unit_amount_decimal``): the simulator then
computes the amount as Stripe does, quantity times unit amount.

Tax: a line (or invoice item) takes ``tax_rates`` (ids of exclusive percentage tax rates; else the
invoice's ``default_tax_rates`` apply); each rate's tax is computed on the line's amount and rounded
half up, shown in the line's ``taxes`` and, summed per rate, in the invoice's ``total_taxes``;
``total`` is the subtotal plus the tax. An invoice with ``automatic_tax[enabled]`` is taxed as
Stripe Tax would, simply: ``automatic_tax_percent`` (20) on every line of a customer whose
``tax_exempt`` is ``none``, none otherwise; it cannot be finalized without the customer's country
(``customer_tax_location_invalid``). The customer's address, e-mail, name, tax-exempt status and
tax ids are copied onto the invoice when it is finalized, as Stripe does.

Search (``/v1/customers/search``, ``/v1/invoices/search``) takes the subset of Stripe's query
language the hub uses: clauses ``metadata['key']:'value'`` and ``field:'value'`` (customers:
``name``, ``email``; invoices: ``customer``, ``status``, ``currency``, ``number``) joined by
``AND``, with ``\\`` escapes; it pages with ``page`` / ``next_page``.

Knobs: ``fail_next(status, times=1, retry_after=None, path=None, should_retry=None)`` answers the
next matching requests (``path`` is exact or a glob such as ``/v1/invoices/*/add_lines``) with an
error before they run; ``fail_stored_next(status=500, times=1, path=None, run=False)`` answers
the next matching keyed POSTs that have no stored answer yet with ``status`` and stores it under
their key, as Stripe stores a 500 of a request that started (``run=True``: the request did its
work first, so the object exists although the answer is a 500; the key then replays the 500
with ``Idempotent-Replayed: true``); ``garbage_next(times=1, path=None)`` answers 200 with a
truncated body; ``timeout_next(times=1, path=None)`` raises ``httpx.ReadTimeout``;
``search_lag = True`` hides new customers and invoices from search until ``index_search()``
(Stripe's search is eventually consistent).
``requests`` counts requests served and ``requests_by_path`` counts them per path; ``log`` lists
each one (method, path, params, idempotency key, status, replayed); ``list_objects(kind)`` returns
every ``"customer"``, ``"invoice"``, ``"invoiceitem"``, ``"tax_rate"``, ``"tax_id"`` or
``"credit_note"`` as the API shows it, oldest first; ``mark_paid(invoice_id)`` makes an open invoice
paid, as the client's payment would.

Mount it with ``httpx.MockTransport(sim.handler)`` or serve it with ``hub.testing.serve(sim.handler)``.
Objects follow the shapes of the current API (``shared/vendor-specs/stripe/fixtures3.json``).
"""

from __future__ import annotations

import base64
import collections
import decimal
import fnmatch
import json
import random
import re
import string
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx

API_VERSION = "2026-10-28.endive"
EPOCH = 1_790_000_000  # the simulator's clock starts here and ticks one second per object
MAX_ITEMS_PER_INVOICE = 250
TAX_TYPES = {"amusement_tax", "communications_tax", "gst", "hst", "igst", "jct", "lease_tax", "pst", "qst", "rst",
             "sales_tax", "service_tax", "vat"}
ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")
# Tax id types the simulator validates, with the format of their value (spaces, dots, dashes removed).
TAX_ID_FORMATS = {"eu_vat": r"(AT|BE|BG|CY|CZ|DE|DK|EE|EL|ES|FI|FR|HR|HU|IE|IT|LT|LU|LV|MT|NL|PL|PT|RO|SE|SI|SK|XI)"
                            r"[0-9A-Z]{2,13}",
                  "gb_vat": r"GB([0-9]{9}|[0-9]{12}|(GD|HA)[0-9]{3})", "ch_vat": r"CHE[0-9]{9}(MWST|TVA|IVA)?",
                  "no_vat": r"(NO)?[0-9]{9}(MVA)?"}
LINES_IN_INVOICE = 10  # an invoice embeds its first 10 lines, like Stripe


class StripeError(Exception):
    """An error answer: status and Stripe's error object."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, stored: bool = False):
        super().__init__(message)
        self.status, self.stored = status, stored
        self.error = {"type": type, "message": message}
        if code:
            self.error["code"] = code
        if param:
            self.error["param"] = param


@dataclass
class _Fault:
    status: int
    times: int
    path: str | None
    retry_after: float | None = None
    should_retry: bool | None = None
    garbage: bool = False
    timeout: bool = False
    stored: bool = False
    run: bool = False


def parse_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Nest Stripe's bracket params: ``lines[0][period][start]=1`` -> {"lines": [{"period": {...}}]}."""
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        match = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", raw_key)
        if not match:
            raise StripeError(400, f"Invalid parameter name: {raw_key}", param=raw_key)
        parts = [match.group(1)] + re.findall(r"\[([^\[\]]*)\]", match.group(2))
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # "expand[]"
                part = str(sum(1 for k in node if k.isdigit())) if isinstance(node, dict) else "0"
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise StripeError(400, f"Invalid parameter: {raw_key}", param=raw_key)
    return _lists(root)


def _lists(node):
    """Dicts keyed 0..n-1 become lists."""
    if not isinstance(node, dict):
        return node
    node = {k: _lists(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node):
        keys = sorted(node, key=int)
        if [int(k) for k in keys] == list(range(len(keys))):
            return [node[k] for k in keys]
    return node


def _int(value, param: str, *, minimum: int | None = None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise StripeError(400, f"Invalid integer: {value}", param=param) from None
    if minimum is not None and number < minimum:
        raise StripeError(400, f"This value must be greater than or equal to {minimum}.", param=param)
    return number


def _bool(value, param: str) -> bool:
    if value in ("true", "false"):
        return value == "true"
    raise StripeError(400, f"Invalid boolean: {value}", param=param)


def _metadata(value, param: str = "metadata") -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise StripeError(400, "Invalid object", param=param)
    if len(value) > 50:
        raise StripeError(400, "Metadata can have at most 50 keys.", param=param)
    for k, v in value.items():
        if len(k) > 40:
            raise StripeError(400, "Metadata keys can be at most 40 characters.", param=f"{param}[{k}]")
        if not isinstance(v, str) or len(v) > 500:
            raise StripeError(400, "Metadata values can be at most 500 characters.", param=f"{param}[{k}]")
    return dict(value)


def _unknown(params: dict, allowed: set[str]) -> None:
    for key in params:
        if key not in allowed:
            raise StripeError(400, f"Received unknown parameter: {key}", param=key)


class StripeSimulator:
    """A stateful fake Stripe account; ``handler(request) -> httpx.Response``."""

    def __init__(self, api_key: str = "sk_test_hub", seed: int = 0):
        self.api_key = api_key
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._clock = EPOCH
        self.customers: dict[str, dict] = {}
        self.invoices: dict[str, dict] = {}
        self.invoice_items: dict[str, dict] = {}
        self.tax_rates: dict[str, dict] = {}
        self.tax_ids: dict[str, dict] = {}
        self.automatic_tax_percent = "20"
        self._lines: dict[str, list[dict]] = {}  # invoice id -> its line items, oldest first
        self.credit_notes: dict[str, dict] = {}
        self._idempotency: dict[str, tuple[str, int, bytes]] = {}
        self._faults: list[_Fault] = []
        self._stored_faults: list[_Fault] = []
        self._unsearchable: set[str] = set()
        self.search_lag = False
        self.requests = 0
        self.requests_by_path: collections.Counter[str] = collections.Counter()
        self.log: list[dict[str, Any]] = []

    # --- knobs -----------------------------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1, retry_after: float | None = None,
                  path: str | None = None, should_retry: bool | None = None) -> None:
        """Answer the next ``times`` requests (matching ``path``, a glob) with ``status``, unrun."""
        self._faults.append(_Fault(status, times, path, retry_after, should_retry))

    def fail_stored_next(self, status: int = 500, times: int = 1, path: str | None = None,
                         run: bool = False) -> None:
        """Answer the next ``times`` keyed POSTs (matching ``path``) with ``status`` and store that
        answer under their idempotency key, so that the key replays it; ``run``: do the work first."""
        self._stored_faults.append(_Fault(status, times, path, stored=True, run=run))

    def garbage_next(self, times: int = 1, path: str | None = None) -> None:
        """Answer the next ``times`` matching requests with 200 and a truncated JSON body, unrun."""
        self._faults.append(_Fault(200, times, path, garbage=True))

    def timeout_next(self, times: int = 1, path: str | None = None) -> None:
        """Raise ``httpx.ReadTimeout`` for the next ``times`` matching requests, unrun (a 500 over HTTP)."""
        self._faults.append(_Fault(0, times, path, timeout=True))

    def expire_idempotency_keys(self) -> None:
        """Forget every idempotency key, as Stripe does once a key is 24 h old."""
        self._idempotency.clear()

    def index_search(self) -> None:
        """Make every customer and invoice visible to search (see ``search_lag``)."""
        self._unsearchable.clear()

    def posts(self) -> list[dict[str, Any]]:
        """The logged POST requests, in order."""
        return [entry for entry in self.log if entry["method"] == "POST"]

    def calls(self, method: str, path: str) -> int:
        """How many ``method`` requests went to ``path`` (a glob), e.g. ``calls("GET", "/v1/invoices")``."""
        return sum(1 for e in self.log if e["method"] == method and fnmatch.fnmatchcase(e["path"], path))

    def list_objects(self, kind: str) -> list[dict]:
        """Every object of ``kind`` ("customer", "invoice", "invoiceitem", "credit_note") as the API shows it."""
        with self._lock:
            if kind == "customer":
                return [dict(c) for c in self.customers.values()]
            if kind == "invoice":
                return [self._export_invoice(inv) for inv in self.invoices.values()]
            if kind == "invoiceitem":
                return [dict(i) for i in self.invoice_items.values()]
            if kind == "tax_rate":
                return [dict(r) for r in self.tax_rates.values()]
            if kind == "tax_id":
                return [dict(t) for t in self.tax_ids.values()]
            if kind == "credit_note":
                return [dict(n) for n in self.credit_notes.values()]
        raise ValueError(f"unknown kind {kind!r}; use customer, invoice, invoiceitem, tax_rate, tax_id or credit_note")

    # --- HTTP ------------------------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            return self._handle(request)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path
        self.requests += 1
        self.requests_by_path[path] += 1
        entry = {"method": method, "path": path, "params": None, "status": None, "replayed": False,
                 "idempotency_key": request.headers.get("Idempotency-Key")}
        self.log.append(entry)
        fault = self._take_fault(self._faults, path)
        if fault is not None:
            if fault.timeout:
                raise httpx.ReadTimeout("simulated timeout", request=request)
            response = self._fault_response(fault)
            entry["status"] = response.status_code
            return response
        try:
            self._authenticate(request)
            if method == "POST":
                params = parse_form(parse_qsl(request.content.decode(), keep_blank_values=True))
            else:
                params = parse_form(parse_qsl(request.url.query.decode(), keep_blank_values=True))
            entry["params"] = params
        except StripeError as exc:
            response = self._error_response(exc)
            entry["status"] = response.status_code
            return response
        key = entry["idempotency_key"] if method == "POST" else None
        if key is not None:
            replay = self._replay(key, path, params)
            if replay is not None:
                entry["status"], entry["replayed"] = replay.status_code, True
                return replay
        stored_fault = self._take_fault(self._stored_faults, path) if key is not None else None
        if stored_fault is None or stored_fault.run:
            try:
                status, body = 200, self._route(method, path, params)
            except StripeError as exc:
                status, body = exc.status, {"error": exc.error}
        if stored_fault is not None:
            status = stored_fault.status
            body = {"error": {"type": "api_error", "message": "An unknown error occurred (simulated, stored)."}}
        content = json.dumps(body, indent=2).encode()
        if key is not None and (status < 400 or status >= 500):
            self._idempotency[key] = (self._fingerprint(path, params), status, content)
        entry["status"] = status
        return self._response(status, content, key)

    @staticmethod
    def _take_fault(faults: list[_Fault], path: str) -> _Fault | None:
        for fault in faults:
            if fault.path is None or fnmatch.fnmatchcase(path, fault.path):
                fault.times -= 1
                if fault.times <= 0:
                    faults.remove(fault)
                return fault
        return None

    def _fault_response(self, fault: _Fault) -> httpx.Response:
        if fault.garbage:
            return httpx.Response(200, content=b'{"id": "in_', headers={"Content-Type": "application/json"})
        if fault.status == 429:
            error = {"type": "invalid_request_error", "code": "rate_limit",
                     "message": "Too many requests hit the API too quickly. We recommend an exponential "
                                "backoff of your requests."}
        elif fault.status >= 500:
            error = {"type": "api_error", "message": "An unknown error occurred (simulated)."}
        else:
            error = {"type": "invalid_request_error", "message": f"Simulated error {fault.status}."}
        headers = {"Content-Type": "application/json", "Request-Id": self._id("req_", 14)}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        if fault.should_retry is not None:
            headers["Stripe-Should-Retry"] = "true" if fault.should_retry else "false"
        return httpx.Response(fault.status, content=json.dumps({"error": error}).encode(), headers=headers)

    def _authenticate(self, request: httpx.Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        key = None
        if scheme.lower() == "bearer":
            key = value.strip()
        elif scheme.lower() == "basic":
            try:
                key = base64.b64decode(value).decode().partition(":")[0]
            except ValueError:
                key = None
        if not key:
            raise StripeError(401, "You did not provide an API key. You need to provide your API key "
                                   "in the Authorization header, using Bearer auth "
                                   "(e.g. 'Authorization: Bearer YOUR_SECRET_KEY').")
        if key != self.api_key:
            masked = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else "****"
            raise StripeError(401, f"Invalid API Key provided: {masked}", code="api_key_invalid")

    def _replay(self, key: str, path: str, params: dict) -> httpx.Response | None:
        if len(key) > 255:
            return self._error_response(StripeError(
                400, "Idempotency keys can be at most 255 characters long.", type="idempotency_error"))
        stored = self._idempotency.get(key)
        if stored is None:
            return None
        fingerprint, status, content = stored
        if fingerprint != self._fingerprint(path, params):
            return self._error_response(StripeError(
                400, "Keys for idempotent requests can only be used with the same parameters they were "
                     f"first used with. Try using a key other than '{key}' if you meant to execute a "
                     "different request.", type="idempotency_error"))
        return self._response(status, content, key, replayed=True)

    @staticmethod
    def _fingerprint(path: str, params: dict) -> str:
        return json.dumps([path, params], sort_keys=True)

    def _response(self, status: int, content: bytes, key: str | None, replayed: bool = False):
        headers = {"Content-Type": "application/json", "Request-Id": self._id("req_", 14),
                   "Stripe-Version": API_VERSION}
        if key is not None:
            headers["Idempotency-Key"] = key
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return httpx.Response(status, content=content, headers=headers)

    def _error_response(self, exc: StripeError) -> httpx.Response:
        return self._response(exc.status, json.dumps({"error": exc.error}).encode(), None)

    # --- routing ---------------------------------------------------------------------------------

    def _route(self, method: str, path: str, params: dict) -> dict:
        parts = path.strip("/").split("/")
        if parts[:1] != ["v1"] or len(parts) < 2:
            raise self._unrecognized(method, path)
        resource, rest = parts[1], parts[2:]
        if resource == "customers":
            if method == "POST" and not rest:
                return self._create_customer(params)
            if method == "GET" and rest == ["search"]:
                return self._search_customers(params)
            if method == "GET" and not rest:
                return self._list("/v1/customers", list(self.customers.values()), params, {"email"},
                                  lambda c: not params.get("email") or c["email"] == params["email"])
            if method == "GET" and len(rest) == 1:
                return self._retrieve_customer(rest[0], params)
            if method == "POST" and len(rest) == 1:
                return self._update_customer(rest[0], params)
            if len(rest) >= 2 and rest[1] == "tax_ids":
                customer = self._customer(rest[0], "id")
                if method == "POST" and len(rest) == 2:
                    return self._create_tax_id(customer, params)
                if method == "GET" and len(rest) == 2:
                    return self._list(f"/v1/customers/{customer['id']}/tax_ids", self._tax_ids_of(customer["id"]),
                                      params, set(), None)
                if method == "DELETE" and len(rest) == 3:
                    return self._delete_tax_id(customer, rest[2], params)
        if resource == "tax_rates":
            if method == "POST" and not rest:
                return self._create_tax_rate(params)
            if method == "GET" and not rest:
                active = _bool(params["active"], "active") if "active" in params else None
                inclusive = _bool(params["inclusive"], "inclusive") if "inclusive" in params else None
                return self._list("/v1/tax_rates", list(self.tax_rates.values()), params, {"active", "inclusive"},
                                  lambda r: (active is None or r["active"] == active)
                                  and (inclusive is None or r["inclusive"] == inclusive))
            if method == "GET" and len(rest) == 1:
                _unknown(params, {"expand"})
                return self._tax_rate(rest[0], "id")
        if resource == "invoices":
            if method == "POST" and not rest:
                return self._create_invoice(params)
            if method == "GET" and not rest:
                return self._list_invoices(params)
            if method == "GET" and rest == ["search"]:
                return self._search_invoices(params)
            if rest:
                invoice_id, action = rest[0], rest[1:]
                if method == "GET" and not action:
                    _unknown(params, {"expand"})
                    return self._export_invoice(self._invoice(invoice_id))
                if method == "GET" and action == ["lines"]:
                    invoice = self._invoice(invoice_id)
                    return self._list(f"/v1/invoices/{invoice_id}/lines", self._lines[invoice["id"]],
                                      params, set(), None, newest_first=False)
                if method == "POST" and action == ["add_lines"]:
                    return self._add_lines(invoice_id, params)
                if method == "POST" and action == ["finalize"]:
                    return self._finalize(invoice_id, params)
                if method == "POST" and action == ["void"]:
                    return self._void(invoice_id, params)
        if resource == "credit_notes":
            if method == "POST" and not rest:
                return self._create_credit_note(params)
            if method == "GET" and not rest:
                invoice, customer = params.get("invoice"), params.get("customer")
                return self._list("/v1/credit_notes", list(self.credit_notes.values()), params, {"invoice", "customer"},
                                  lambda cn: (not invoice or cn["invoice"] == invoice)
                                  and (not customer or cn["customer"] == customer))
            if method == "GET" and len(rest) == 1:
                _unknown(params, {"expand"})
                note = self.credit_notes.get(rest[0])
                if note is None:
                    raise StripeError(404, f"No such credit note: '{rest[0]}'", code="resource_missing", param="id")
                return note
        if resource == "invoiceitems":
            if method == "POST" and not rest:
                return self._create_invoice_item(params)
            if method == "GET" and not rest:
                return self._list_invoice_items(params)
            if method == "GET" and len(rest) == 1:
                item = self.invoice_items.get(rest[0])
                if item is None:
                    raise StripeError(404, f"No such invoiceitem: '{rest[0]}'", code="resource_missing",
                                      param="id")
                return item
        raise self._unrecognized(method, path)

    @staticmethod
    def _unrecognized(method: str, path: str) -> StripeError:
        return StripeError(404, f"Unrecognized request URL ({method}: {path}). Please see "
                                "https://stripe.com/docs or we can help at https://support.stripe.com/.")

    def _id(self, prefix: str, length: int = 24) -> str:
        return prefix + "".join(self._rng.choice(string.ascii_letters + string.digits) for _ in range(length))

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _list(self, url: str, objects: list[dict], params: dict, filters: set[str], keep,
              newest_first: bool = True) -> dict:
        _unknown(params, {"limit", "starting_after", "ending_before", "expand"} | filters)
        limit = _int(params.get("limit", 10), "limit", minimum=1)
        if limit > 100:
            raise StripeError(400, "This value must be less than or equal to 100.", param="limit")
        items = [o for o in objects if keep is None or keep(o)]
        if newest_first:
            items = list(reversed(items))  # objects are kept in creation order
        after = params.get("starting_after")
        if after:
            ids = [o["id"] for o in items]
            if after not in ids:
                raise StripeError(400, f"Invalid starting_after id: {after}", param="starting_after")
            items = items[ids.index(after) + 1:]
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}

    # --- customers -------------------------------------------------------------------------------

    def _customer(self, customer_id: str, param: str) -> dict:
        customer = self.customers.get(customer_id)
        if customer is None:
            raise StripeError(404 if param == "id" else 400, f"No such customer: '{customer_id}'",
                              code="resource_missing", param=param)
        return customer

    def _address(self, value, param: str) -> dict | None:
        """A customer address (line1, line2, city, postal_code, state, country); "" unsets it."""
        if value == "":
            return None
        if not isinstance(value, dict):
            raise StripeError(400, "Invalid object", param=param)
        _unknown({f"{param}[{k}]": v for k, v in value.items()},
                 {f"{param}[{k}]" for k in ADDRESS_FIELDS})
        country = value.get("country")
        if country and not re.fullmatch(r"[A-Z]{2}", country):
            raise StripeError(400, f"Country '{country}' is unknown. Try using a 2-character alphanumeric "
                                   "country code instead, such as 'US', 'EG', or 'GB'.", param=f"{param}[country]")
        return {k: (value.get(k) or None) for k in ADDRESS_FIELDS}

    def _customer_fields(self, params: dict) -> dict:
        """The fields shared by a customer's create and update params, validated."""
        fields: dict[str, Any] = {}
        for key in ("name", "email", "description", "phone"):
            if key in params:
                if not isinstance(params[key], str):
                    raise StripeError(400, "Invalid string", param=key)
                fields[key] = params[key] or None
        if fields.get("email") and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", fields["email"]):
            raise StripeError(400, f"Invalid email address: {fields['email']}", code="email_invalid", param="email")
        if "address" in params:
            fields["address"] = self._address(params["address"], "address")
        if "preferred_locales" in params:
            locales = params["preferred_locales"]
            locales = [] if locales == "" else locales
            if not isinstance(locales, list) or not all(
                    isinstance(x, str) and re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", x) for x in locales):
                raise StripeError(400, f"Invalid preferred_locales: {locales}", param="preferred_locales")
            fields["preferred_locales"] = locales
        if "tax_exempt" in params:
            if params["tax_exempt"] not in ("none", "exempt", "reverse"):
                raise StripeError(400, f"Invalid tax_exempt: must be one of none, exempt, or reverse",
                                  param="tax_exempt")
            fields["tax_exempt"] = params["tax_exempt"]
        return fields

    def _retrieve_customer(self, customer_id: str, params: dict) -> dict:
        _unknown(params, {"expand"})
        expand = params.get("expand") or []
        if not isinstance(expand, list) or any(x != "tax_ids" for x in expand):
            raise StripeError(400, f"This property cannot be expanded ({expand}).", param="expand")
        customer = dict(self._customer(customer_id, "id"))
        if expand:
            ids = list(reversed(self._tax_ids_of(customer_id)))
            customer["tax_ids"] = {"object": "list", "data": ids[:10], "has_more": len(ids) > 10,
                                   "total_count": len(ids), "url": f"/v1/customers/{customer_id}/tax_ids"}
        return customer

    def _update_customer(self, customer_id: str, params: dict) -> dict:
        customer = self._customer(customer_id, "id")
        _unknown(params, {"name", "email", "description", "metadata", "phone", "address", "preferred_locales",
                          "tax_exempt", "expand"})
        fields = self._customer_fields(params)
        if "metadata" in params:
            customer["metadata"].update(_metadata(params["metadata"]))
        customer.update(fields)
        return customer

    def _create_customer(self, params: dict) -> dict:
        _unknown(params, {"name", "email", "description", "metadata", "phone", "address", "preferred_locales",
                          "tax_exempt", "tax_id_data", "expand"})
        fields = self._customer_fields(params)
        data = params.get("tax_id_data") or []
        if not isinstance(data, list):
            raise StripeError(400, "Invalid array", param="tax_id_data")
        checked = [self._tax_id_fields(d, f"tax_id_data[{i}]") for i, d in enumerate(data)]
        customer_id = self._id("cus_", 14)
        customer = {
            "id": customer_id, "object": "customer",
            "address": None, "balance": 0, "created": self._tick(), "currency": None,
            "default_source": None, "delinquent": False, "description": params.get("description"),
            "discount": None, "email": params.get("email"),
            "invoice_prefix": "".join(self._rng.choice(string.ascii_uppercase + string.digits) for _ in range(8)),
            "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                                 "rendering_options": None},
            "livemode": False, "metadata": _metadata(params.get("metadata")),
            "name": params.get("name"), "next_invoice_sequence": 1, "phone": params.get("phone"),
            "preferred_locales": [], "shipping": None, "tax_exempt": "none", "test_clock": None,
        }
        customer.update(fields)
        self.customers[customer_id] = customer
        for kind, value in checked:
            self._new_tax_id(customer_id, kind, value)
        if self.search_lag:
            self._unsearchable.add(customer_id)
        return customer

    # --- customer tax ids ------------------------------------------------------------------------

    def _tax_ids_of(self, customer_id: str) -> list[dict]:
        return [t for t in self.tax_ids.values() if t["customer"] == customer_id]

    def _tax_id_fields(self, raw, param: str) -> tuple[str, str]:
        if not isinstance(raw, dict):
            raise StripeError(400, "Invalid object", param=param)
        _unknown({f"{param}[{k}]": v for k, v in raw.items()}, {f"{param}[type]", f"{param}[value]"})
        kind, value = raw.get("type"), raw.get("value")
        if kind not in TAX_ID_FORMATS:
            raise StripeError(400, f"Invalid value for type: {kind}", param=f"{param}[type]")
        if not value:
            raise StripeError(400, "Missing required param: value.", param=f"{param}[value]")
        if not re.fullmatch(TAX_ID_FORMATS[kind], re.sub(r"[\s.\-]", "", value).upper()):
            raise StripeError(400, f"Invalid value for {kind}.", code="tax_id_invalid", param=f"{param}[value]")
        return kind, value

    def _new_tax_id(self, customer_id: str, kind: str, value: str) -> dict:
        tax_id = {"id": self._id("txi_"), "object": "tax_id", "country": value[:2].upper().replace("EL", "GR"),
                  "created": self._tick(), "customer": customer_id, "livemode": False,
                  "owner": {"customer": customer_id, "type": "customer"}, "type": kind, "value": value,
                  "verification": {"status": "pending", "verified_address": None, "verified_name": None}}
        self.tax_ids[tax_id["id"]] = tax_id
        return tax_id

    def _create_tax_id(self, customer: dict, params: dict) -> dict:
        _unknown(params, {"type", "value", "expand"})
        kind, value = self._tax_id_fields(params, "")
        return self._new_tax_id(customer["id"], kind, value)

    def _delete_tax_id(self, customer: dict, tax_id: str, params: dict) -> dict:
        _unknown(params, set())
        found = self.tax_ids.get(tax_id)
        if found is None or found["customer"] != customer["id"]:
            raise StripeError(404, f"No such tax_id: '{tax_id}'", code="resource_missing", param="id")
        del self.tax_ids[tax_id]
        return {"id": tax_id, "object": "tax_id", "deleted": True}

    # --- tax rates -------------------------------------------------------------------------------

    def _tax_rate(self, rate_id: str, param: str) -> dict:
        rate = self.tax_rates.get(rate_id)
        if rate is None:
            raise StripeError(404 if param == "id" else 400, f"No such tax rate: '{rate_id}'",
                              code="resource_missing", param=param)
        return rate

    def _create_tax_rate(self, params: dict) -> dict:
        _unknown(params, {"display_name", "percentage", "inclusive", "active", "country", "description",
                          "jurisdiction", "metadata", "state", "tax_type", "expand"})
        for required in ("display_name", "inclusive", "percentage"):
            if required not in params:
                raise StripeError(400, f"Missing required param: {required}.", param=required)
        name = params["display_name"]
        if not name or len(name) > 50:
            raise StripeError(400, "display_name must be 1 to 50 characters.", param="display_name")
        try:
            percentage = decimal.Decimal(str(params["percentage"]))
        except decimal.InvalidOperation:
            raise StripeError(400, f"Invalid decimal: {params['percentage']}", param="percentage") from None
        if not percentage.is_finite() or not 0 <= percentage <= 100:
            raise StripeError(400, "percentage must be between 0 and 100.", param="percentage")
        country = params.get("country")
        if country is not None and not re.fullmatch(r"[A-Z]{2}", country):
            raise StripeError(400, f"Invalid country: {country}", param="country")
        for key in ("description", "jurisdiction"):
            if key in params and len(params[key]) > (5000 if key == "description" else 50):
                raise StripeError(400, f"{key} is too long.", param=key)
        if params.get("tax_type") is not None and params["tax_type"] not in TAX_TYPES:
            raise StripeError(400, f"Invalid tax_type: {params['tax_type']}", param="tax_type")
        rate = {"id": self._id("txr_"), "object": "tax_rate",
                "active": _bool(params["active"], "active") if "active" in params else True,
                "country": country, "created": self._tick(), "description": params.get("description"),
                "display_name": name, "effective_percentage": float(percentage), "flat_amount": None,
                "inclusive": _bool(params["inclusive"], "inclusive"), "jurisdiction": params.get("jurisdiction"),
                "jurisdiction_level": None, "livemode": False, "metadata": _metadata(params.get("metadata")),
                "percentage": float(percentage), "rate_type": "percentage", "state": params.get("state"),
                "tax_type": params.get("tax_type")}
        self.tax_rates[rate["id"]] = rate
        return rate

    def _rate_ids(self, value, param: str) -> list[str]:
        """``tax_rates`` / ``default_tax_rates``: ids of existing, active tax rates ("" = none)."""
        if value in (None, ""):
            return []
        if not isinstance(value, list):
            raise StripeError(400, "Invalid array", param=param)
        for i, rate_id in enumerate(value):
            rate = self._tax_rate(rate_id, f"{param}[{i}]")
            if not rate["active"]:
                raise StripeError(400, f"Tax rate {rate_id} is archived and cannot be applied.", param=f"{param}[{i}]")
        if len(value) > 5:
            raise StripeError(400, "At most 5 tax rates can be applied.", param=param)
        return list(value)

    def _taxes(self, invoice: dict, rate_ids: list[str], amount: int) -> list[dict]:
        """A line's ``taxes``: each exclusive rate on its amount, half up (or Stripe Tax's)."""
        def tax(percent: decimal.Decimal) -> int:
            return int((decimal.Decimal(amount) * percent / 100).to_integral_value(rounding=decimal.ROUND_HALF_UP))

        if invoice["automatic_tax"]["enabled"]:
            customer = self.customers[invoice["customer"]]
            exempt = customer["tax_exempt"] != "none"
            return [{"amount": 0 if exempt else tax(decimal.Decimal(self.automatic_tax_percent)),
                     "tax_behavior": "exclusive", "tax_rate_details": None,
                     "taxability_reason": {"none": "standard_rated", "exempt": "customer_exempt",
                                           "reverse": "reverse_charge"}[customer["tax_exempt"]],
                     "taxable_amount": amount, "type": "tax_rate_details"}]
        out = []
        for rate_id in rate_ids or invoice["default_tax_rates"]:
            rate = self.tax_rates[rate_id]
            percent = decimal.Decimal(str(rate["percentage"]))
            out.append({"amount": 0 if rate["inclusive"] else tax(percent), "tax_behavior":
                        "inclusive" if rate["inclusive"] else "exclusive",
                        "tax_rate_details": {"tax_rate": rate_id}, "taxability_reason": "standard_rated",
                        "taxable_amount": amount, "type": "tax_rate_details"})
        return out

    def _search_customers(self, params: dict) -> dict:
        return self._search("/v1/customers/search", list(self.customers.values()), params,
                            {"name", "email"}, lambda c: c)

    def _search_invoices(self, params: dict) -> dict:
        page = self._search("/v1/invoices/search", list(self.invoices.values()), params,
                            {"customer", "status", "currency", "number"}, lambda inv: inv)
        page["data"] = [self._export_invoice(inv) for inv in page["data"]]
        return page

    def _search(self, url: str, objects: list[dict], params: dict, fields: set[str], view) -> dict:
        """Stripe's search over ``objects``: ``metadata['k']:'v'`` and ``field:'v'`` clauses, AND."""
        _unknown(params, {"query", "limit", "page", "expand"})
        query = params.get("query")
        if not query:
            raise StripeError(400, "Missing required param: query.", param="query")
        clauses = []
        for clause in re.split(r"\s+AND\s+", query.strip()):
            match = re.fullmatch(r"(metadata\['((?:[^'\\]|\\.)+)'\]|[a-z_]+)\s*:\s*'((?:[^'\\]|\\.)*)'",
                                 clause.strip())
            if not match or (not match.group(2) and match.group(1) not in fields):
                raise StripeError(400, f"The query is invalid: {clause!r} is not supported here.",
                                  param="query")
            unescape = lambda s: re.sub(r"\\(.)", r"\1", s)  # noqa: E731
            field = ("metadata", unescape(match.group(2))) if match.group(2) else (match.group(1), None)
            clauses.append((field, unescape(match.group(3))))

        def keep(obj):
            if obj["id"] in self._unsearchable:
                return False
            for (name, meta_key), value in clauses:
                actual = obj["metadata"].get(meta_key) if name == "metadata" else obj.get(name)
                if actual != value:
                    return False
            return True

        limit = _int(params.get("limit", 10), "limit", minimum=1)
        if limit > 100:
            raise StripeError(400, "This value must be less than or equal to 100.", param="limit")
        offset = 0
        if params.get("page"):
            token = str(params["page"])
            if not re.fullmatch(r"page_\d+", token):
                raise StripeError(400, f"Invalid page: {token}", param="page")
            offset = int(token[5:])
        found = [view(o) for o in reversed(objects) if keep(o)]
        more = len(found) > offset + limit
        return {"object": "search_result", "data": found[offset:offset + limit], "has_more": more,
                "next_page": f"page_{offset + limit}" if more else None, "url": url}

    # --- invoices --------------------------------------------------------------------------------

    def _invoice(self, invoice_id: str) -> dict:
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            raise StripeError(404, f"No such invoice: '{invoice_id}'", code="resource_missing", param="id")
        return invoice

    def _export_invoice(self, invoice: dict) -> dict:
        """The invoice with its totals and first lines, as Stripe shows it."""
        lines = self._lines[invoice["id"]]
        subtotal = sum(line["amount"] for line in lines)
        by_rate: dict[Any, dict] = {}
        for line in lines:
            for tax in line["taxes"]:
                rate = (tax["tax_rate_details"] or {}).get("tax_rate")
                entry = by_rate.setdefault(rate, {**tax, "amount": 0, "taxable_amount": 0})
                entry["amount"] += tax["amount"]
                entry["taxable_amount"] += tax["taxable_amount"]
        tax_amount = sum(t["amount"] for t in by_rate.values())
        total = subtotal + tax_amount
        paid = total if invoice["status"] == "paid" else 0
        return {
            **{k: v for k, v in invoice.items() if not k.startswith("_")},
            "amount_due": total, "amount_paid": paid, "amount_remaining": total - paid,
            "subtotal": subtotal, "subtotal_excluding_tax": subtotal,
            "total": total, "total_excluding_tax": subtotal, "total_taxes": list(by_rate.values()),
            "lines": {"object": "list", "data": lines[:LINES_IN_INVOICE],
                      "has_more": len(lines) > LINES_IN_INVOICE, "total_count": len(lines),
                      "url": f"/v1/invoices/{invoice['id']}/lines"},
        }

    def _create_invoice(self, params: dict) -> dict:
        _unknown(params, {"customer", "currency", "collection_method", "days_until_due", "due_date",
                          "auto_advance", "pending_invoice_items_behavior", "description", "footer",
                          "custom_fields", "default_tax_rates", "automatic_tax", "metadata", "expand"})
        custom_fields = params.get("custom_fields") or None
        if custom_fields is not None:
            if not isinstance(custom_fields, list) or len(custom_fields) > 4:
                raise StripeError(400, "custom_fields can have at most 4 entries.", param="custom_fields")
            for i, field in enumerate(custom_fields):
                if not isinstance(field, dict) or set(field) != {"name", "value"}:
                    raise StripeError(400, "Each custom field needs a name and a value.", param=f"custom_fields[{i}]")
                if not field["name"] or len(field["name"]) > 40:
                    raise StripeError(400, "A custom field's name must be 1 to 40 characters.",
                                      param=f"custom_fields[{i}][name]")
                if not field["value"] or len(field["value"]) > 140:
                    raise StripeError(400, "A custom field's value must be 1 to 140 characters.",
                                      param=f"custom_fields[{i}][value]")
        footer = params.get("footer")
        if footer is not None and len(footer) > 5000:
            raise StripeError(400, "footer must be at most 5000 characters.", param="footer")
        automatic = params.get("automatic_tax")
        if automatic is not None:
            if not isinstance(automatic, dict) or "enabled" not in automatic:
                raise StripeError(400, "Missing required param: automatic_tax[enabled].", param="automatic_tax[enabled]")
            _unknown({f"automatic_tax[{k}]": v for k, v in automatic.items()},
                     {"automatic_tax[enabled]", "automatic_tax[liability]"})
            automatic = _bool(automatic["enabled"], "automatic_tax[enabled]")
        default_rates = self._rate_ids(params.get("default_tax_rates"), "default_tax_rates")
        if automatic and default_rates:
            raise StripeError(400, "You cannot use default_tax_rates with automatic_tax enabled.",
                              param="default_tax_rates")
        if not params.get("customer"):
            raise StripeError(400, "Missing required param: customer.", param="customer")
        customer = self._customer(params["customer"], "customer")
        method = params.get("collection_method", "charge_automatically")
        if method not in ("charge_automatically", "send_invoice"):
            raise StripeError(400, f"Invalid collection_method: {method}", param="collection_method")
        days = params.get("days_until_due")
        days = None if days is None else _int(days, "days_until_due", minimum=0)
        if method == "send_invoice" and days is None and params.get("due_date") is None:
            raise StripeError(400, "Missing required param: days_until_due.", param="days_until_due")
        if method == "charge_automatically" and days is not None:
            raise StripeError(400, "You can only set days_until_due when collection_method is send_invoice.",
                              param="days_until_due")
        behavior = params.get("pending_invoice_items_behavior", "exclude")
        if behavior not in ("include", "exclude"):
            raise StripeError(400, f"Invalid pending_invoice_items_behavior: {behavior}",
                              param="pending_invoice_items_behavior")
        auto_advance = _bool(params["auto_advance"], "auto_advance") if "auto_advance" in params else False
        currency = str(params.get("currency") or customer.get("currency") or "usd")
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise StripeError(400, f"Invalid currency: {currency}", param="currency")
        invoice_id = self._id("in_")
        created = self._tick()
        invoice = {
            "id": invoice_id, "object": "invoice",
            "account_country": "US", "account_name": "msp-hub simulator", "account_tax_ids": None,
            "amount_overpaid": 0, "amount_shipping": 0, "application": None,
            "attempt_count": 0, "attempted": False, "auto_advance": auto_advance,
            "automatic_tax": {"disabled_reason": None, "enabled": bool(automatic),
                              "liability": {"type": "self"} if automatic else None,
                              "provider": "stripe" if automatic else None,
                              "status": "requires_location_inputs" if automatic and not
                              (customer["address"] or {}).get("country") else "complete" if automatic else None},
            "automatically_finalizes_at": None, "billing_reason": "manual",
            "collection_method": method, "created": created, "currency": currency,
            "custom_fields": custom_fields, "customer": customer["id"], "customer_account": None,
            "customer_address": customer["address"], "customer_email": customer["email"],
            "customer_name": customer["name"], "customer_phone": customer["phone"],
            "customer_shipping": None, "customer_tax_exempt": customer["tax_exempt"],
            "customer_tax_ids": [], "default_payment_method": None, "default_source": None,
            "default_tax_rates": default_rates, "description": params.get("description"), "discounts": [],
            "due_date": None, "effective_at": None, "ending_balance": None,
            "footer": footer, "from_invoice": None, "hosted_invoice_url": None,
            "invoice_pdf": None, "issuer": {"type": "self"}, "last_finalization_error": None,
            "latest_revision": None, "livemode": False,
            "metadata": _metadata(params.get("metadata")), "next_payment_attempt": None,
            "number": None, "on_behalf_of": None, "parent": None,
            "payment_settings": {"default_mandate": None, "payment_method_options": None,
                                 "payment_method_types": None},
            "period_end": created, "period_start": created,
            "post_payment_credit_notes_amount": 0, "pre_payment_credit_notes_amount": 0,
            "receipt_number": None, "rendering": None, "shipping_cost": None, "shipping_details": None,
            "starting_balance": customer["balance"], "statement_descriptor": None, "status": "draft",
            "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None,
                                   "paid_at": None, "voided_at": None},
            "test_clock": None, "total_discount_amounts": [], "total_pretax_credit_amounts": [],
            "total_taxes": [], "webhooks_delivered_at": None,
            "_days_until_due": days, "_due_date": params.get("due_date"),
        }
        self.invoices[invoice_id] = invoice
        self._lines[invoice_id] = []
        if self.search_lag:
            self._unsearchable.add(invoice_id)
        if behavior == "include":
            for item in self.invoice_items.values():
                if item["customer"] == customer["id"] and item["invoice"] is None and item["currency"] == currency:
                    self._attach(invoice, item)
        return self._export_invoice(invoice)

    def _list_invoices(self, params: dict) -> dict:
        status = params.get("status")
        if status is not None and status not in ("draft", "open", "paid", "uncollectible", "void"):
            raise StripeError(400, f"Invalid status: {status}", param="status")
        customer, method = params.get("customer"), params.get("collection_method")
        page = self._list("/v1/invoices", list(self.invoices.values()), params,
                          {"customer", "status", "collection_method"},
                          lambda inv: (not customer or inv["customer"] == customer)
                          and (not status or inv["status"] == status)
                          and (not method or inv["collection_method"] == method))
        page["data"] = [self._export_invoice(inv) for inv in page["data"]]
        return page

    def _editable(self, invoice: dict, param: str | None = None) -> None:
        if invoice["status"] != "draft":
            raise StripeError(400, f"This invoice is {invoice['status']}: lines can only be added to "
                                   "or changed on a draft invoice.", code="invoice_not_editable", param=param)

    def _check_capacity(self, invoice: dict, adding: int) -> None:
        if len(self._lines[invoice["id"]]) + adding > MAX_ITEMS_PER_INVOICE:
            raise StripeError(400, f"An invoice can have at most {MAX_ITEMS_PER_INVOICE} invoice items.",
                              code="invoice_too_many_items")

    def _line_fields(self, raw: dict, prefix: str, currency: str) -> dict:
        """Validate the amount (or quantity and unit amount), description, period and metadata of a
        line (``prefix`` "lines[0]", unit amount in ``price_data``) or of an invoice item (``prefix``
        "", unit amount in ``unit_amount_decimal``)."""
        def name(field: str) -> str:
            return f"{prefix}[{field}]" if prefix else field

        fields = {"description": raw.get("description"),
                  "metadata": _metadata(raw.get("metadata"), name("metadata")),
                  "tax_rates": self._rate_ids(raw.get("tax_rates"), name("tax_rates"))}
        priced = raw.get("price_data") if prefix else raw.get("unit_amount_decimal")
        if priced is not None and "amount" in raw:
            raise StripeError(400, f"You may only specify one of these parameters: amount, "
                                   f"{'price_data' if prefix else 'unit_amount_decimal'}.", param=name("amount"))
        if priced is None:
            if "amount" not in raw:
                raise StripeError(400, "Missing required param: amount.", param=name("amount"))
            fields["amount"] = _int(raw["amount"], name("amount"))
            fields["unit_amount_decimal"] = str(fields["amount"])
            if "quantity" in raw and _int(raw["quantity"], name("quantity"), minimum=0) != 1:
                raise StripeError(400, "When amount is given, quantity must be 1 (or absent).",
                                  param=name("quantity"))
        else:
            if prefix:
                unit = self._price_data(priced, name("price_data"), currency)
            else:
                try:
                    unit = decimal.Decimal(str(priced))
                except decimal.InvalidOperation:
                    raise StripeError(400, f"Invalid decimal: {priced}", param="unit_amount_decimal") from None
            quantity = _int(raw.get("quantity", 1), name("quantity"), minimum=0)
            exact = unit * quantity
            fields["amount"] = int(exact.to_integral_value(rounding=decimal.ROUND_HALF_EVEN))
            fields["quantity"] = quantity
            fields["unit_amount_decimal"] = str(unit)
            if prefix:
                fields["product_name"] = priced["product_data"]["name"] if "product_data" in priced else None
        period = raw.get("period")
        if period is not None:
            if not isinstance(period, dict) or "start" not in period or "end" not in period:
                raise StripeError(400, "period needs start and end.", param=name("period"))
            start = _int(period["start"], name("period") + "[start]")
            end = _int(period["end"], name("period") + "[end]")
            if end < start:
                raise StripeError(400, "The period end must be greater than or equal to the start.",
                                  param=name("period") + "[end]")
            fields["period"] = {"start": start, "end": end}
        else:
            fields["period"] = {"start": self._clock, "end": self._clock}
        return fields

    def _price_data(self, data, param: str, currency: str) -> decimal.Decimal:
        """An inline price's unit amount, validated as Stripe does (one-time, non-negative)."""
        if not isinstance(data, dict):
            raise StripeError(400, "Invalid object", param=param)
        _unknown({f"{param}[{k}]": v for k, v in data.items()},
                 {f"{param}[{k}]" for k in ("currency", "product", "product_data", "unit_amount",
                                            "unit_amount_decimal", "tax_behavior")})
        if data.get("currency") != currency:
            raise StripeError(400, f"The price currency {data.get('currency')} does not match the invoice's "
                                   f"{currency}.", param=f"{param}[currency]")
        product = data.get("product_data")
        if not data.get("product") and not (isinstance(product, dict) and product.get("name")):
            raise StripeError(400, "One of product or product_data[name] is required.", param=f"{param}[product]")
        if ("unit_amount" in data) == ("unit_amount_decimal" in data):
            raise StripeError(400, "Exactly one of unit_amount and unit_amount_decimal is required.",
                              param=f"{param}[unit_amount]")
        if "unit_amount" in data:
            return decimal.Decimal(_int(data["unit_amount"], f"{param}[unit_amount]", minimum=0))
        try:
            unit = decimal.Decimal(str(data["unit_amount_decimal"]))
        except decimal.InvalidOperation:
            raise StripeError(400, f"Invalid decimal: {data['unit_amount_decimal']}",
                              param=f"{param}[unit_amount_decimal]") from None
        if unit < 0:
            raise StripeError(400, "This value must be greater than or equal to 0.",
                              param=f"{param}[unit_amount_decimal]")
        return unit

    def _new_item(self, customer_id: str, currency: str, fields: dict) -> dict:
        item_id = self._id("ii_")
        details = None
        if "product_name" in fields:  # an inline price_data line: Stripe makes a price (and product)
            details = {"price": self._id("price_"), "product": self._id("prod_", 14)}
        description = fields["description"]
        if description is None and fields.get("product_name"):
            description = fields["product_name"]
        item = {
            "id": item_id, "object": "invoiceitem", "amount": fields["amount"], "currency": currency,
            "customer": customer_id, "customer_account": None, "date": self._tick(),
            "description": description, "discountable": fields["amount"] >= 0,
            "discounts": [], "invoice": None, "livemode": False, "metadata": fields["metadata"],
            "net_amount": fields["amount"], "parent": None, "period": fields["period"],
            "pricing": {"type": "price_details", "price_details": details,
                        "unit_amount_decimal": fields["unit_amount_decimal"]},
            "proration": False, "quantity": fields.get("quantity", 1), "quantity_decimal": None,
            "tax_rates": [dict(self.tax_rates[r]) for r in fields["tax_rates"]], "test_clock": None,
        }
        self.invoice_items[item_id] = item
        return item

    def _attach(self, invoice: dict, item: dict) -> None:
        item["invoice"] = invoice["id"]
        self._lines[invoice["id"]].append({
            "id": self._id("il_"), "object": "line_item", "amount": item["amount"],
            "currency": item["currency"], "description": item["description"],
            "discount_amounts": [], "discountable": item["discountable"], "discounts": [],
            "invoice": invoice["id"], "livemode": False, "metadata": dict(item["metadata"]),
            "parent": {"type": "invoice_item_details",
                       "invoice_item_details": {"invoice_item": item["id"], "proration": False,
                                                "proration_details": {"credited_items": None},
                                                "subscription": None},
                       "subscription_item_details": None},
            "period": dict(item["period"]), "pretax_credit_amounts": [],
            "pricing": dict(item["pricing"]), "quantity": item["quantity"], "quantity_decimal": None,
            "subscription": None, "subtotal": item["amount"],
            "taxes": self._taxes(invoice, [r["id"] for r in item["tax_rates"]], item["amount"]),
        })

    def _add_lines(self, invoice_id: str, params: dict) -> dict:
        _unknown(params, {"lines", "invoice_metadata", "expand"})
        invoice = self._invoice(invoice_id)
        lines = params.get("lines")
        if not isinstance(lines, list) or not lines:
            raise StripeError(400, "Missing required param: lines.", param="lines")
        self._editable(invoice, "lines")
        self._check_capacity(invoice, len(lines))
        checked = []
        for i, raw in enumerate(lines):  # validate every line before adding any: the request is atomic
            if not isinstance(raw, dict):
                raise StripeError(400, "Invalid object", param=f"lines[{i}]")
            _unknown({f"lines[{i}][{k}]": v for k, v in raw.items()},
                     {f"lines[{i}][{k}]" for k in ("amount", "description", "period", "metadata",
                                                   "quantity", "discountable", "tax_rates",
                                                   "price_data")})
            checked.append(self._line_fields(raw, f"lines[{i}]", invoice["currency"]))
        for fields in checked:
            self._attach(invoice, self._new_item(invoice["customer"], invoice["currency"], fields))
        if params.get("invoice_metadata"):
            invoice["metadata"].update(_metadata(params["invoice_metadata"], "invoice_metadata"))
        return self._export_invoice(invoice)

    def _finalize(self, invoice_id: str, params: dict) -> dict:
        _unknown(params, {"auto_advance", "expand"})
        invoice = self._invoice(invoice_id)
        if invoice["status"] != "draft":
            raise StripeError(400, "This invoice is already finalized, you can't re-finalize a "
                                   "non-draft invoice.", code="invoice_unexpected_state")
        customer = self.customers[invoice["customer"]]
        if invoice["automatic_tax"]["enabled"] and not (customer["address"] or {}).get("country"):
            raise StripeError(400, "The customer's location isn't recognized: automatic tax needs a valid "
                                   "address to finalize this invoice.", code="customer_tax_location_invalid")
        now = self._tick()
        invoice["number"] = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
        customer["next_invoice_sequence"] += 1
        invoice.update({"customer_address": customer["address"], "customer_email": customer["email"],
                        "customer_name": customer["name"], "customer_phone": customer["phone"],
                        "customer_tax_exempt": customer["tax_exempt"],
                        "customer_tax_ids": [{"type": t["type"], "value": t["value"]}
                                             for t in self._tax_ids_of(customer["id"])]})
        total = self._export_invoice(invoice)["total"]
        invoice["status"] = "paid" if total <= 0 else "open"
        invoice["status_transitions"]["finalized_at"] = now
        if invoice["status"] == "paid":
            invoice["status_transitions"]["paid_at"] = now
        invoice["effective_at"] = now
        if invoice["collection_method"] == "send_invoice":
            invoice["due_date"] = (int(invoice["_due_date"]) if invoice["_due_date"]
                                   else now + 86400 * (invoice["_days_until_due"] or 0))
        invoice["hosted_invoice_url"] = f"https://invoice.stripe.com/i/{invoice_id}"
        invoice["invoice_pdf"] = f"https://pay.stripe.com/invoice/{invoice_id}/pdf"
        invoice["ending_balance"] = 0
        return self._export_invoice(invoice)

    def _void(self, invoice_id: str, params: dict) -> dict:
        _unknown(params, {"expand"})
        invoice = self._invoice(invoice_id)
        if invoice["status"] != "open":
            raise StripeError(400, f"You can only void open invoices; this one is {invoice['status']}.",
                              code="invoice_unexpected_state")
        invoice["status"] = "void"
        invoice["status_transitions"]["voided_at"] = self._tick()
        return self._export_invoice(invoice)

    def mark_paid(self, invoice_id: str) -> dict:
        """The client paid an open invoice (as a payment, or ``POST /v1/invoices/{id}/pay``, would)."""
        with self._lock:
            invoice = self._invoice(invoice_id)
            if invoice["status"] != "open":
                raise ValueError(f"invoice {invoice_id} is {invoice['status']}, not open")
            invoice["status"] = "paid"
            invoice["status_transitions"]["paid_at"] = self._tick()
            return self._export_invoice(invoice)

    # --- credit notes ----------------------------------------------------------------------------

    def _create_credit_note(self, params: dict) -> dict:
        """``POST /v1/credit_notes``: on an open invoice (pre-payment: it lowers what is due; fully
        credited, the invoice is paid) or a paid one (post-payment: refund, customer balance credit
        and out-of-band amounts must add up to the note's total), by ``lines`` (``invoice_line_item``
        with an ``amount`` or ``quantity``, or ``custom_line_item`` with ``unit_amount`` and
        ``quantity``) or by ``amount``; never above what the invoice has left to credit."""
        _unknown(params, {"invoice", "amount", "lines", "reason", "memo", "metadata", "credit_amount",
                          "refund_amount", "out_of_band_amount", "effective_at", "email_type", "expand"})
        if not params.get("invoice"):
            raise StripeError(400, "Missing required param: invoice.", param="invoice")
        invoice = self.invoices.get(params["invoice"])
        if invoice is None:
            raise StripeError(400, f"No such invoice: '{params['invoice']}'", code="resource_missing", param="invoice")
        if invoice["status"] not in ("open", "paid"):
            raise StripeError(400, f"You can only create a credit note for an open or paid invoice; this one is "
                                   f"{invoice['status']}.", code="invoice_unexpected_state")
        reason = params.get("reason")
        if reason is not None and reason not in ("duplicate", "fraudulent", "order_change", "product_unsatisfactory"):
            raise StripeError(400, "Invalid reason: must be one of duplicate, fraudulent, order_change, or "
                                   "product_unsatisfactory", param="reason")
        if params.get("memo") is not None and len(str(params["memo"])) > 5000:
            raise StripeError(400, "Invalid string: memo must be at most 5000 characters", param="memo")
        by_id = {line["id"]: line for line in self._lines[invoice["id"]]}
        lines = params.get("lines")
        note_lines: list[dict] = []
        if lines is not None:
            if not isinstance(lines, list) or not lines:
                raise StripeError(400, "Invalid array", param="lines")
            for i, raw in enumerate(lines):
                if not isinstance(raw, dict):
                    raise StripeError(400, "Invalid object", param=f"lines[{i}]")
                _unknown(raw, {"type", "invoice_line_item", "amount", "quantity", "description", "unit_amount",
                               "unit_amount_decimal", "tax_rates"})
                kind = raw.get("type")
                if kind == "invoice_line_item":
                    line = by_id.get(raw.get("invoice_line_item") or "")
                    if line is None:
                        raise StripeError(400, f"No such invoice line item: '{raw.get('invoice_line_item')}' on "
                                               f"invoice {invoice['id']}", param=f"lines[{i}][invoice_line_item]")
                    full = line["amount"] + sum(int(t.get("amount", 0)) for t in line.get("taxes") or [])
                    if "amount" in raw:
                        amount = _int(raw["amount"], f"lines[{i}][amount]", minimum=0)
                    elif "quantity" in raw:
                        quantity = _int(raw["quantity"], f"lines[{i}][quantity]", minimum=1)
                        amount = round(full * quantity / max(1, line["quantity"] or 1))
                    else:
                        raise StripeError(400, "Missing required param: lines[][amount] or lines[][quantity].",
                                          param=f"lines[{i}]")
                    before = sum(cl["amount"] for note in self.credit_notes.values() if note["invoice"] == invoice["id"]
                                 for cl in note["lines"]["data"] if cl.get("invoice_line_item") == line["id"])
                    if before + amount > full:
                        raise StripeError(400, f"The credit note amount for line item {line['id']} ({amount}) "
                                               f"exceeds what is left to credit on it ({full - before}).",
                                          param=f"lines[{i}][amount]")
                    note_lines.append({"amount": amount, "description": line["description"],
                                       "invoice_line_item": line["id"], "quantity": line["quantity"],
                                       "type": kind, "unit_amount": None, "unit_amount_decimal": None})
                elif kind == "custom_line_item":
                    unit = _int(raw.get("unit_amount"), f"lines[{i}][unit_amount]", minimum=0)
                    quantity = _int(raw.get("quantity", 1), f"lines[{i}][quantity]", minimum=1)
                    if not raw.get("description"):
                        raise StripeError(400, "Missing required param: lines[][description].",
                                          param=f"lines[{i}][description]")
                    note_lines.append({"amount": unit * quantity, "description": raw["description"],
                                       "quantity": quantity, "type": kind, "unit_amount": unit,
                                       "unit_amount_decimal": str(unit)})
                else:
                    raise StripeError(400, "Invalid lines[][type]: must be one of custom_line_item or "
                                           "invoice_line_item", param=f"lines[{i}][type]")
            total = sum(line["amount"] for line in note_lines)
            if "amount" in params and _int(params["amount"], "amount") != total:
                raise StripeError(400, f"The amount ({params['amount']}) must equal the sum of the lines ({total}).",
                                  param="amount")
        elif "amount" in params:
            total = _int(params["amount"], "amount", minimum=1)
        else:
            raise StripeError(400, "You must pass either amount or lines.", param="lines")
        shown = self._export_invoice(invoice)
        done = invoice["pre_payment_credit_notes_amount"] + invoice["post_payment_credit_notes_amount"]
        if done + total > shown["total"]:
            raise StripeError(400, f"The credit note total ({total}) is greater than the amount left to credit on "
                                   f"the invoice ({shown['total'] - done}).", param="amount")
        parts = {k: _int(params[k], k, minimum=0) for k in ("credit_amount", "refund_amount", "out_of_band_amount")
                 if k in params}
        customer = self.customers[invoice["customer"]]
        if invoice["status"] == "paid":
            if sum(parts.values()) != total:
                raise StripeError(400, f"The sum of credit amount, refund amount and out of band amount "
                                       f"({sum(parts.values())}) must equal the credit note amount ({total}).")
            kind = "post_payment"
            invoice["post_payment_credit_notes_amount"] += total
            customer["balance"] -= parts.get("credit_amount", 0)
        else:
            if parts:
                raise StripeError(400, "credit_amount, refund_amount and out_of_band_amount are only for a paid "
                                       "invoice.", param=next(iter(parts)))
            kind = "pre_payment"
            invoice["pre_payment_credit_notes_amount"] += total
            if invoice["pre_payment_credit_notes_amount"] >= shown["total"]:
                invoice["status"] = "paid"
                invoice["status_transitions"]["paid_at"] = self._tick()
        note_id = self._id("cn_")
        created = self._tick()
        count = sum(1 for n in self.credit_notes.values() if n["invoice"] == invoice["id"]) + 1
        for line in note_lines:
            line.update({"id": self._id("cnli_"), "object": "credit_note_line_item", "discount_amount": 0,
                         "discount_amounts": [], "livemode": False, "tax_rates": [], "taxes": None,
                         "pretax_credit_amounts": [], "metadata": None})
        note = {
            "id": note_id, "object": "credit_note", "amount": total, "amount_shipping": 0, "created": created,
            "currency": invoice["currency"], "customer": invoice["customer"], "customer_account": None,
            "customer_balance_transaction": None, "discount_amount": 0, "discount_amounts": [],
            "effective_at": created, "invoice": invoice["id"],
            "lines": {"object": "list", "data": note_lines, "has_more": False,
                      "url": f"/v1/credit_notes/{note_id}/lines"},
            "livemode": False, "memo": params.get("memo"), "metadata": _metadata(params.get("metadata")),
            "number": f"{invoice['number']}-CN-{count:02d}", "out_of_band_amount": parts.get("out_of_band_amount"),
            "pdf": f"https://pay.stripe.com/credit_notes/{note_id}/pdf", "reason": reason, "refunds": [],
            "shipping_cost": None, "status": "issued", "subtotal": total, "subtotal_excluding_tax": total,
            "total": total, "total_excluding_tax": total, "total_taxes": [], "pretax_credit_amounts": [],
            "type": kind, "voided_at": None,
            "pre_payment_amount": total if kind == "pre_payment" else 0,
            "post_payment_amount": total if kind == "post_payment" else 0,
        }
        self.credit_notes[note_id] = note
        return note

    # --- invoice items ---------------------------------------------------------------------------

    def _create_invoice_item(self, params: dict) -> dict:
        _unknown(params, {"customer", "invoice", "amount", "currency", "description", "period",
                          "metadata", "quantity", "unit_amount_decimal", "discountable", "tax_rates", "expand"})
        if not params.get("customer"):
            raise StripeError(400, "Missing required param: customer.", param="customer")
        customer = self._customer(params["customer"], "customer")
        invoice = None
        if params.get("invoice"):
            invoice = self.invoices.get(params["invoice"])
            if invoice is None:
                raise StripeError(400, f"No such invoice: '{params['invoice']}'", code="resource_missing",
                                  param="invoice")
            if invoice["customer"] != customer["id"]:
                raise StripeError(400, "The invoice belongs to another customer.", param="invoice")
            self._editable(invoice, "invoice")
            self._check_capacity(invoice, 1)
        currency = params.get("currency")
        if not currency:
            raise StripeError(400, "Missing required param: currency.", param="currency")
        if invoice is not None and currency != invoice["currency"]:
            raise StripeError(400, f"The currency {currency} does not match the invoice's "
                                   f"{invoice['currency']}.", param="currency")
        item = self._new_item(customer["id"], currency, self._line_fields(params, "", currency))
        if invoice is not None:
            self._attach(invoice, item)
        return item

    def _list_invoice_items(self, params: dict) -> dict:
        pending = _bool(params["pending"], "pending") if "pending" in params else None
        return self._list("/v1/invoiceitems", list(self.invoice_items.values()), params,
                          {"customer", "invoice", "pending"},
                          lambda ii: (not params.get("customer") or ii["customer"] == params["customer"])
                          and (not params.get("invoice") or ii["invoice"] == params["invoice"])
                          and (pending is None or (ii["invoice"] is None) == pending))
