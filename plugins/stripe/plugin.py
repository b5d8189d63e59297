"""The Stripe connector: settings, hub invoices mapped to Stripe params, the push flow, the hook.

An ``invoice`` action becomes one finalized Stripe invoice, exactly once:

1. the customer: the link (an MSP's mapping, or an earlier push; never a new customer for a
   linked client), else the customer found by search on ``metadata.msp_hub_client_id``, else a
   create;
2. the invoice Stripe may already have for the action (``metadata.msp_hub_action_key``): the id
   saved in the action's progress, else the customer's invoices listed (consistent) when the
   customer existed before this push, else a search of invoices (it finds one sent on another
   customer); found open, paid or void, the push is done and returns it;
3. else a draft invoice (``POST /v1/invoices``, ``auto_advance=false``,
   ``pending_invoice_items_behavior=exclude``: nothing else is swept onto it and Stripe does not
   finalize it on its own);
4. the lines the draft lacks in one ``POST /v1/invoices/{id}/add_lines`` (chunked above
   ``LINES_PER_REQUEST``), or with ``line_mode = "invoiceitems"`` one ``POST /v1/invoiceitems``
   per line. A line is sent as quantity x unit amount when that is the plan's amount to the cent
   (an add_lines line takes its unit amount in ``price_data``, with an inline product named like
   the line; an invoice item in ``unit_amount_decimal``), else as the plan's amount, its
   description stating the quantity: ``"Support hours (1.5 x 80.00 EUR)"``, unless the hub's
   text already states it (a time line: ``"2026-11-03, jdoe, ticket 4521, Remote Support,
   1.25 h × 95.00 EUR"``), which is then sent as it is;
5. the draft's subtotal checked against the plan's lines: if they differ (a line added in the
   dashboard...), the draft is left as it is and the push fails, naming both totals;
6. ``POST /v1/invoices/{id}/finalize`` -- unless the payload says ``"finalize": false``: then the
   draft stays for the MSP to review and the result says ``{"draft": true, "invoice_id": ...}``;
   an ``invoice_finalize`` action (``{"invoice_key", "invoice_id"}``) finalizes it later, once
   (an invoice already finalized is success).

Requests per invoice: 4 for a known customer (list its invoices, create, add_lines, finalize), 6
with a new customer (search customers, create it, search invoices, create, add_lines, finalize);
with ``invoiceitems``, one per line plus one read of the draft instead of add_lines. Pushed again
after the store was lost, a sent invoice costs 2 GETs and no POST.

Exactly once rests on four things. Every POST carries an ``Idempotency-Key`` derived from the
action key and the step (``msp-hub:invoice:acme:2026-10:create``), so a retry within Stripe's
24 h key lifetime gets the first answer back instead of a second object. Stripe also stores a 500
under its key and replays it for a day: a replayed 5xx (``ReplayedError``) is never retried with
that key; the object is looked for by its metadata and, only if it does not exist, the POST is
sent under the step's successor key (``...:create:r2``), saved in the progress BEFORE it is sent
and used by every later attempt (see ``StripeConnector._send``). After each step the invoice id and
step are saved with ``context.save_progress``. And nothing is created before Stripe is asked
whether it already has it, by the metadata the hub writes, which still works after the keys are
pruned and after the hub's store is lost or restored from an old backup.

Search is eventually consistent (usually under a minute), so it is used only where nothing
consistent exists (``GET /v1/customers`` cannot filter on metadata) or as an extra net, and
never alone where it matters: a customer search missing a customer just created is harmless,
as the create that follows uses the same idempotency key as the lost one (within 24 h Stripe
replays the first customer; after 24 h search has long caught up), and a replayed 500 of a
customer create is checked against the newest page of customers as well.

``sent_objects()`` lists every customer and invoice the hub sent, from Stripe's list endpoints,
to rebuild the links and the outbox of a lost store.

Corrections (``hub.corrections``): an ``invoice_void`` action reads the invoice first (already
void: done, nothing sent; paid, draft or uncollectible: refused, a paid one naming a credit note)
then ``POST /v1/invoices/{id}/void``; a ``credit_note`` action looks for the credit note it may
already have made (``GET /v1/credit_notes?invoice=``, ``metadata.msp_hub_action_key``) before
``POST /v1/credit_notes`` with the invoice's lines (found by the ``msp_hub_line`` metadata, each
credited whole with its taxes) or an amount, Stripe's ``reason``, the person's reason in
``memo``, and on a paid invoice ``credit_amount`` (the customer's balance). Both go through
``_send``: the action key's idempotency key, a replayed 5xx looked up before a successor key.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterator

import httpx
import tenacity

from hub import Action, ConfigError, MappingError, PushResult, VendorError, hookimpl
from hub.config import Secret
from plugins.stripe.client import VENDOR, ReplayedError, StripeClient

NAME = "stripe"
INVOICE = "invoice"
FINALIZE = "invoice_finalize"   # finalizes a draft an invoice action left for review
VOID = "invoice_void"           # voids a sent, open invoice (hub.corrections)
CREDIT_NOTE = "credit_note"     # issues a credit note on a sent invoice (hub.corrections)
# Stripe's credit note reasons (``reason`` of POST /v1/credit_notes); the person's own words go in ``memo``.
CREDIT_NOTE_REASONS = ("duplicate", "fraudulent", "order_change", "product_unsatisfactory")
MAX_KEYS_PER_PUSH = 3           # successive idempotency keys one step may use in one push
LINE_MODES = ("add_lines", "invoiceitems")
COLLECTION_METHODS = ("send_invoice", "charge_automatically")
SETTING_KEYS = {"base_url", "api_key_env", "api_key_file", "days_until_due", "collection_method",
                "line_mode"}
# Stripe documents no limit on lines per add_lines request; it does limit an invoice to 250
# invoice items (https://docs.stripe.com/changelog/2016-02-22/no-more-than-250-invoice-items,
# raisable on request). Chunks of 50 keep each request small; MSP invoices rarely need two.
LINES_PER_REQUEST = 50
MAX_LINES = 250                 # invoice items per invoice (above)
# A line's description (and the inline product's name, made from it) is at most 5000 characters
# (maxLength of `description` on POST /v1/invoiceitems and of `product_data.name`, Stripe's OpenAPI).
MAX_DESCRIPTION = 5000
MAX_IDEMPOTENCY_KEY = 255
# Currencies whose minor unit is not 1/100 (https://docs.stripe.com/currencies#zero-decimal).
_ZERO_DECIMAL = {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND",
                 "VUV", "XAF", "XOF", "XPF"}
_THREE_DECIMAL = {"BHD", "JOD", "KWD", "OMR", "TND"}


# --- settings ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StripeSettings:
    """``[connectors.stripe]``: where Stripe is, the key, and how invoices are sent.

    ``line_mode`` is ``"add_lines"`` (one request for all lines) or ``"invoiceitems"`` (one
    ``POST /v1/invoiceitems`` per line, for Stripe-compatible servers without ``add_lines``)::

        [connectors.stripe]
        api_key_env = "STRIPE_API_KEY"        # or api_key_file = "secrets/stripe"
        days_until_due = 30                   # with collection_method = "send_invoice"
        collection_method = "send_invoice"    # or "charge_automatically"
        line_mode = "add_lines"               # or "invoiceitems"
        # base_url = "https://api.stripe.com"
    """

    api_key: Secret
    base_url: str = "https://api.stripe.com"
    days_until_due: int = 30
    collection_method: str = "send_invoice"
    line_mode: str = "add_lines"

    def __post_init__(self):
        if isinstance(self.api_key, str):
            object.__setattr__(self, "api_key", Secret(self.api_key, "settings"))

    @classmethod
    def from_config(cls, config) -> StripeSettings | None:
        """Read ``[connectors.stripe]`` of a ``HubConfig``; None when the section is absent."""
        if config.connector_section(NAME) is None:
            return None
        section = config.connector_settings(NAME, SETTING_KEYS, secrets=("api_key",))
        file, where = config.file, f"connectors.{NAME}"
        api_key = config.secret(NAME, "api_key")
        base_url = section.get("base_url", cls.base_url)
        if not isinstance(base_url, str) or not base_url.startswith(("https://", "http://")):
            raise ConfigError("must be an http(s) URL", file=file, key=f"{where}.base_url",
                              fix='write base_url = "https://api.stripe.com", or remove it')
        days = section.get("days_until_due", cls.days_until_due)
        if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 1825:
            raise ConfigError(f"must be a whole number of days from 0 to 1825, got {days!r}", file=file,
                              key=f"{where}.days_until_due", fix="write days_until_due = 30")
        method = section.get("collection_method", cls.collection_method)
        if method not in COLLECTION_METHODS:
            raise ConfigError(f"unknown collection method {method!r}", file=file,
                              key=f"{where}.collection_method",
                              fix=f"use one of {', '.join(repr(m) for m in COLLECTION_METHODS)}")
        mode = section.get("line_mode", cls.line_mode)
        if mode not in LINE_MODES:
            raise ConfigError(f"unknown line mode {mode!r}", file=file, key=f"{where}.line_mode",
                              fix=f"use one of {', '.join(repr(m) for m in LINE_MODES)}")
        return cls(api_key=api_key, base_url=base_url.rstrip("/"), days_until_due=days,
                   collection_method=method, line_mode=mode)


# --- mapping: hub actions to Stripe params (pure) ------------------------------------------------

def idempotency_key(action_key: str, step: str, generation: int = 1) -> str:
    """``msp-hub:<action key>:<step>``, ``...:<step>:r<n>`` for the n-th key of a step (see
    ``StripeConnector._send``); hashed when it would pass Stripe's 255 characters."""
    if generation > 1:
        step = f"{step}:r{generation}"
    key = f"msp-hub:{action_key}:{step}"
    if len(key) > MAX_IDEMPOTENCY_KEY:
        key = f"msp-hub:{hashlib.sha256(action_key.encode()).hexdigest()}:{step}"
    return key


def to_epoch(value: str | datetime) -> int:
    """An ISO timestamp (or datetime) to epoch seconds; a naive one is taken as UTC."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp())


def check_payload(action: Action) -> dict[str, Any]:
    """The invoice payload, or a MappingError naming what is missing or wrong.

    Refused: a missing field, a line without code, description or integer amount, a quantity
    that is not a number, a description Stripe would refuse (over ``MAX_DESCRIPTION`` characters as
    sent), more lines than an invoice takes (``MAX_LINES``), a ``finalize`` that is not true or
    false, and lines whose amounts do not add up to the payload's ``total`` (nothing is sent that
    would not bill the plan's total).
    """
    payload = action.payload or {}
    missing = [k for k in ("client_name", "currency", "period_start", "period_end", "lines")
               if k not in payload]
    if missing:
        raise MappingError(f"action {action.key}: payload has no {', '.join(missing)}")
    if not payload["lines"]:
        raise MappingError(f"action {action.key}: an invoice needs at least one line")
    for i, line in enumerate(payload["lines"]):
        absent = [k for k in ("code", "description", "amount") if k not in line]
        if absent:
            raise MappingError(f"action {action.key}: line {i} has no {', '.join(absent)}")
        if isinstance(line["amount"], bool) or not isinstance(line["amount"], int):
            raise MappingError(f"action {action.key}: line {i} amount must be integer minor units")
        if "quantity" in line and _decimal(line["quantity"]) is None:
            raise MappingError(f"action {action.key}: line {i} ({line['code']}) quantity "
                               f"{line['quantity']!r} is not a number")
        sent = line_description(line, str(payload["currency"]))
        if len(sent) > MAX_DESCRIPTION:
            raise MappingError(f"action {action.key}: line {i} ({line['code']}) description has {len(sent)} "
                               f"characters, Stripe takes at most {MAX_DESCRIPTION}; shorten it where it is made. "
                               f"Nothing was sent")
    if len(payload["lines"]) > MAX_LINES:
        raise MappingError(f"action {action.key}: the invoice has {len(payload['lines'])} lines, Stripe takes at most "
                           f"{MAX_LINES} per invoice; give this client's contract fewer lines (time_lines = "
                           f"\"ticket\" or \"work_type\" in its contract or agreement type). Nothing was sent")
    if "finalize" in payload and not isinstance(payload["finalize"], bool):
        raise MappingError(f"action {action.key}: payload finalize must be true or false, "
                           f"got {payload['finalize']!r}")
    total = payload.get("total")
    lines_sum = sum(line["amount"] for line in payload["lines"])
    if total is not None and total != lines_sum:
        currency = str(payload["currency"])
        raise MappingError(f"action {action.key}: the lines add up to {format_amount(lines_sum, currency)} "
                           f"but the payload total is {format_amount(total, currency)}; nothing was sent")
    return payload


def check_finalize_payload(action: Action) -> dict[str, Any]:
    """An ``invoice_finalize`` payload (``invoice_key``, ``invoice_id``), or a MappingError."""
    payload = action.payload or {}
    missing = [k for k in ("invoice_key", "invoice_id") if not payload.get(k)]
    if missing:
        raise MappingError(f"action {action.key}: payload has no {', '.join(missing)}")
    return payload


def to_customer_params(action: Action) -> dict[str, Any]:
    """POST /v1/customers params for the action's client."""
    return {"name": action.payload["client_name"],
            "metadata": {"msp_hub_client_id": action.client_id}}


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def customer_search_query(client_id: str) -> str:
    """Stripe search query for the customer created for ``client_id``."""
    return f"metadata['msp_hub_client_id']:'{_quote(client_id)}'"


def invoice_search_query(action_key: str) -> str:
    """Stripe search query for the invoice created for the action ``action_key``."""
    return f"metadata['msp_hub_action_key']:'{_quote(action_key)}'"


def to_invoice_params(action: Action, customer_id: str, settings: StripeSettings) -> dict[str, Any]:
    """POST /v1/invoices params: a draft that sweeps nothing and waits for us to finalize it."""
    payload = action.payload
    params: dict[str, Any] = {
        "customer": customer_id,
        "currency": str(payload["currency"]).lower(),
        "collection_method": settings.collection_method,
        "auto_advance": False,
        "pending_invoice_items_behavior": "exclude",
        "metadata": {"msp_hub_action_key": action.key, "msp_hub_client_id": action.client_id,
                     "msp_hub_period": str(payload.get("period") or action.period or "")},
    }
    if settings.collection_method == "send_invoice":
        params["days_until_due"] = settings.days_until_due
    if payload.get("description"):
        params["description"] = payload["description"]
    return params


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def whole_quantity(line: dict[str, Any]) -> int | None:
    """The line's quantity when Stripe can bill it as quantity x unit amount to the cent.

    That is a whole quantity of at least 1, a non-negative integer ``unit_amount`` (an inline
    price cannot be negative) and ``quantity * unit_amount == amount``; else None, and the line
    is sent as its amount with the quantity in its description.
    """
    quantity, unit = _decimal(line.get("quantity")), line.get("unit_amount")
    if quantity is None or isinstance(unit, bool) or not isinstance(unit, int) or unit < 0:
        return None
    if quantity != quantity.to_integral_value() or quantity < 1 or quantity * unit != line["amount"]:
        return None
    return int(quantity)


def states_quantity(line: dict[str, Any], currency: str) -> bool:
    """Whether the line's own description states its quantity × unit amount, as the hub's time
    lines do (``"... Remote Support, 1.25 h × 95.00 EUR"``)."""
    unit = line.get("unit_amount")
    if "quantity" not in line or isinstance(unit, bool) or not isinstance(unit, int):
        return False
    said = rf"(?<![\d.]){re.escape(str(line['quantity']))}(?: h)? [×x] {re.escape(format_amount(unit, currency))}"
    return re.search(said, str(line["description"])) is not None


def line_description(line: dict[str, Any], currency: str) -> str:
    """The description of a line sent as one amount: ``"Support (1.5 x 80.00 EUR)"`` when the
    line has a quantity other than 1 and a unit amount that its description does not state
    (``states_quantity``), else the line's own description."""
    quantity, unit = _decimal(line.get("quantity")), line.get("unit_amount")
    if quantity is None or quantity == 1 or isinstance(unit, bool) or not isinstance(unit, int):
        return str(line["description"])
    if states_quantity(line, currency):
        return str(line["description"])
    return f"{line['description']} ({line['quantity']} x {format_amount(unit, currency)})"


def to_line_params(line: dict[str, Any], period_start: int, period_end: int, currency: str) -> dict[str, Any]:
    """One add_lines line: quantity x unit amount when that is the hub's amount to the cent
    (``price_data`` with an inline product named like the line, as this API version takes a unit
    amount on a line), else the hub's amount, with the quantity written in the description.

    ``period_end`` is the hub's exclusive end; Stripe's ``period.end`` is inclusive, hence -1.
    """
    metadata = {"msp_hub_line": str(line["code"])}
    if "quantity" in line:
        metadata["msp_hub_quantity"] = str(line["quantity"])
    if "unit_amount" in line:
        metadata["msp_hub_unit_amount"] = str(line["unit_amount"])
    params: dict[str, Any] = {"description": str(line["description"]),
                              "period": {"start": period_start, "end": max(period_start, period_end - 1)},
                              "metadata": metadata}
    quantity = whole_quantity(line)
    if quantity is None:
        params["amount"] = line["amount"]
        params["description"] = line_description(line, currency)
    else:
        params["quantity"] = quantity
        params["price_data"] = {"currency": currency.lower(),
                                "product_data": {"name": str(line["description"] or line["code"])},
                                "unit_amount": line["unit_amount"]}
    return params


def to_invoice_item_params(line_params: dict[str, Any], *, customer_id: str, invoice_id: str,
                           currency: str) -> dict[str, Any]:
    """POST /v1/invoiceitems params: the same line, attached to the draft invoice; a priced line
    becomes ``quantity`` with ``unit_amount_decimal`` (an invoice item needs no product)."""
    params = {"customer": customer_id, "invoice": invoice_id, "currency": currency,
              **{k: v for k, v in line_params.items() if k != "price_data"}}
    if "price_data" in line_params:
        params["unit_amount_decimal"] = str(line_params["price_data"]["unit_amount"])
    return params


def format_amount(amount: int, currency: str) -> str:
    """Minor units as a human amount: ``format_amount(123450, "EUR") == "1234.50 EUR"``."""
    cur = currency.upper()
    places = 0 if cur in _ZERO_DECIMAL else 3 if cur in _THREE_DECIMAL else 2
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10 ** places)
    return f"{sign}{whole}.{frac:0{places}d} {cur}" if places else f"{sign}{whole} {cur}"


def is_our_line(line: dict[str, Any]) -> bool:
    """Whether an invoice line was added by this connector."""
    return "msp_hub_line" in (line.get("metadata") or {})


def to_push_result(invoice: dict[str, Any], payload: dict[str, Any], note: str = "") -> PushResult:
    """The engine's PushResult for a Stripe invoice (``details["draft"]`` when it is one)."""
    number = invoice.get("number") or invoice["id"]
    total = invoice.get("total")
    currency = str(invoice.get("currency") or payload.get("currency") or "")
    who = payload.get("client_name") or invoice.get("customer_name") or invoice.get("customer")
    summary = f"Stripe invoice {number} ({invoice.get('status')}) for {who}"
    if total is not None and currency:
        summary += f": {format_amount(total, currency)}"
    if note:
        summary += f"; {note}"
    details = {"number": invoice.get("number"), "total": total, "currency": currency.upper(),
               "status": invoice.get("status"), "customer": invoice.get("customer"),
               "hosted_invoice_url": invoice.get("hosted_invoice_url"), "invoice_id": invoice["id"]}
    if invoice.get("status") == "draft":
        details["draft"] = True
    return PushResult(vendor_id=invoice["id"], summary=summary, details=details)


def _newest_live(matches: list[dict]) -> dict | None:
    """A live invoice wins over a void one; among equals, the newest (lists come newest first)."""
    if not matches:
        return None
    live = [inv for inv in matches if inv.get("status") != "void"]
    return (live or matches)[0]


# --- the connector -------------------------------------------------------------------------------

class StripeConnector:
    """Pushes ``invoice``, ``invoice_finalize``, ``invoice_void`` and ``credit_note`` actions to Stripe (see the module docstring);
    pulls nothing. ``sent_objects()`` lists what the hub sent, to rebuild a lost store."""

    name = NAME
    action_kinds = frozenset({INVOICE, FINALIZE, VOID, CREDIT_NOTE})

    def __init__(self, settings: StripeSettings, *, http: httpx.Client | None = None,
                 retrying: Callable[[], tenacity.Retrying] | None = None):
        self.settings = settings
        self.client = StripeClient(settings.base_url, settings.api_key, http=http, retrying=retrying)

    def streams(self) -> list:
        return []

    def close(self) -> None:
        self.client.close()

    def push(self, action: Action, context) -> PushResult:
        """Send one action exactly once; return the Stripe invoice as a PushResult."""
        if action.kind == FINALIZE:
            return self._push_finalize(action, context)
        if action.kind == VOID:
            return self._push_void(action, context)
        if action.kind == CREDIT_NOTE:
            return self._push_credit_note(action, context)
        if action.kind != INVOICE:
            raise ValueError(f"the stripe connector cannot push {action.kind!r} actions")
        payload = check_payload(action)
        progress = context.progress or {}

        customer_id, existed = self._customer(action, context)
        invoice = self._find_invoice(action, customer_id, existed, progress)
        if invoice is None:
            invoice = self._send(
                context, action.key, "create",
                lambda key: self.client.create_invoice(to_invoice_params(action, customer_id, self.settings),
                                                       idempotency_key=key),
                lambda: _newest_live(self._invoices_of(customer_id, action.key)))
            context.save_progress(invoice_id=invoice["id"], step="created")
        elif progress.get("invoice_id") != invoice["id"]:
            context.save_progress(invoice_id=invoice["id"], step="found")
        if invoice["status"] != "draft":
            context.save_progress(invoice_id=invoice["id"], step="finalized")
            return to_push_result(invoice, payload, note=f"already {invoice['status']} in Stripe")
        present = self._our_lines(invoice)

        invoice = self._add_lines(action, payload, invoice, present, context)
        self._check_subtotal(action, payload, invoice)
        if payload.get("finalize", True) is False:
            context.save_progress(invoice_id=invoice["id"], step="drafted")
            return to_push_result(invoice, payload, note="a draft, left for review")
        invoice = self._finalize(action.key, invoice["id"], context)
        context.save_progress(invoice_id=invoice["id"], step="finalized")
        return to_push_result(invoice, payload)

    def sent_objects(self) -> Iterator[dict[str, Any]]:
        """Everything the hub sent to this Stripe account, from Stripe itself (no store needed).

        Yields ``{"object": "customer", "client_id", "customer_id", "name"}`` for every customer
        carrying ``metadata.msp_hub_client_id``, then ``{"object": "invoice", "action_key",
        "invoice_id", "status", "customer", "total", "currency", "number", "client_id",
        "period"}`` for every invoice carrying ``metadata.msp_hub_action_key``, newest first,
        paging through ``GET /v1/customers`` and ``GET /v1/invoices`` (consistent, unlike search).
        """
        for customer in self.client.iter_customers():
            client_id = (customer.get("metadata") or {}).get("msp_hub_client_id")
            if client_id:
                yield {"object": "customer", "client_id": client_id, "customer_id": customer["id"],
                       "name": customer.get("name")}
        for invoice in self.client.iter_invoices():
            metadata = invoice.get("metadata") or {}
            if metadata.get("msp_hub_action_key"):
                yield {"object": "invoice", "action_key": metadata["msp_hub_action_key"],
                       "invoice_id": invoice["id"], "status": invoice.get("status"),
                       "customer": invoice.get("customer"), "total": invoice.get("total"),
                       "currency": invoice.get("currency"), "number": invoice.get("number"),
                       "client_id": metadata.get("msp_hub_client_id"),
                       "period": metadata.get("msp_hub_period")}

    # --- exactly once ---

    def _send(self, context, base: str, step: str, send: Callable[[str], Any],
              lookup: Callable[[], Any]) -> Any:
        """POST ``send(key)`` under the step's current idempotency key.

        When Stripe replays a 5xx it stored under that key (``ReplayedError``), the object may or
        may not exist: ``lookup()`` looks for it and returns it if found. Only if it does not exist
        is the same POST sent under the step's next key (``<key>:r2``, ``:r3``...), which is saved
        in the action's progress BEFORE it is sent, so every later attempt uses it too.
        """
        label = f"{base}:{step}"
        error: ReplayedError | None = None
        for _ in range(MAX_KEYS_PER_PUSH):
            generation = int(((context.progress or {}).get("keys") or {}).get(label, 1))
            try:
                return send(idempotency_key(base, step, generation))
            except ReplayedError as exc:
                error = exc
            found = lookup()
            if found is not None:
                return found
            keys = dict((context.progress or {}).get("keys") or {})
            keys[label] = generation + 1
            context.save_progress(keys=keys)
        assert error is not None
        raise VendorError(VENDOR, error.status, error.method, error.url,
                          f"Stripe answered {error.status} under {MAX_KEYS_PER_PUSH} successive idempotency "
                          f"keys for step {step} of {base}, and the object was not created; the next "
                          f"attempt continues with a new key: push again later ({error.detail})")

    # --- customers ---

    def _customer(self, action: Action, context) -> tuple[str, bool]:
        """The client's Stripe customer id, and whether it existed before this push.

        Linked (by a mapping, or an earlier push), else found by its ``msp_hub_client_id``
        metadata, else created; never created for a linked client.
        """
        customer_id = context.get_link(action.client_id, NAME)
        if customer_id:
            return customer_id, True
        found = self._find_customer(action.client_id)
        if found:
            context.set_link(action.client_id, NAME, found)
            return found, True
        customer = self._send(
            context, f"customer:{action.client_id}", "create",
            lambda key: self.client.create_customer(to_customer_params(action), idempotency_key=key),
            lambda: self._find_customer(action.client_id, consistent=True))
        customer_id = customer if isinstance(customer, str) else customer["id"]
        context.set_link(action.client_id, NAME, customer_id)
        return customer_id, False

    def _find_customer(self, client_id: str, *, consistent: bool = False) -> str | None:
        """The oldest customer carrying ``client_id`` in its metadata: by search, and with
        ``consistent`` also in the newest page of customers (search lags behind a create)."""
        found = self.client.search_customers(customer_search_query(client_id))
        if consistent:
            found += self.client.recent_customers()
        ours = [c for c in found if (c.get("metadata") or {}).get("msp_hub_client_id") == client_id]
        return min(ours, key=lambda c: (c.get("created") or 0, c["id"]))["id"] if ours else None

    # --- invoices ---

    def _invoices_of(self, customer_id: str, action_key: str) -> list[dict]:
        """The customer's invoices made for ``action_key`` (a consistent list, newest first)."""
        return [inv for inv in self.client.iter_invoices(customer=customer_id)
                if (inv.get("metadata") or {}).get("msp_hub_action_key") == action_key]

    def _find_invoice(self, action: Action, customer_id: str, existed: bool, progress: dict) -> dict | None:
        """The invoice Stripe already has for this action, if any: the saved id, else the
        customer's invoices (when the customer existed before this push), else a search."""
        invoice_id = progress.get("invoice_id")
        if invoice_id:
            try:
                invoice = self.client.retrieve_invoice(invoice_id)
            except VendorError as exc:
                if exc.status != 404:
                    raise
            else:
                owner = (invoice.get("metadata") or {}).get("msp_hub_action_key")
                if owner != action.key:
                    raise VendorError(VENDOR, None, "GET", f"/v1/invoices/{invoice_id}",
                                      f"the progress of {action.key} names invoice {invoice_id}, which "
                                      f"Stripe says was made for {owner!r}; nothing was sent: clear the "
                                      f"action's progress in the store, then push again")
                return invoice
        if existed:
            return _newest_live(self._invoices_of(customer_id, action.key))
        found = self.client.search_invoices(invoice_search_query(action.key))
        return _newest_live([inv for inv in found
                             if (inv.get("metadata") or {}).get("msp_hub_action_key") == action.key])

    def _our_lines(self, invoice: dict) -> int:
        """How many of this connector's lines a draft has (pages the lines if needed)."""
        lines = invoice.get("lines") or {}
        data = lines.get("data") or []
        if lines.get("has_more"):
            data = list(self.client.iter_invoice_lines(invoice["id"]))
        return sum(1 for line in data if is_our_line(line))


    def _add_lines(self, action: Action, payload: dict, invoice: dict, present: int, context) -> dict:
        """Add the lines the draft does not have yet, in order, each request with its own key;
        return the draft as Stripe has it after."""
        lines = payload["lines"]
        invoice_id = invoice["id"]
        if present > len(lines):
            raise VendorError(VENDOR, None, "POST", f"/v1/invoices/{invoice_id}/add_lines",
                              f"draft invoice {invoice_id} already has {present} lines from msp-hub "
                              f"but the action has {len(lines)}; check the draft in Stripe")
        currency = str(payload["currency"]).lower()
        start, end = to_epoch(payload["period_start"]), to_epoch(payload["period_end"])
        params = [to_line_params(line, start, end, currency) for line in lines]

        def has(count: int):  # the draft, if it already has ``count`` of our lines
            draft = self.client.retrieve_invoice(invoice_id)
            return draft if self._our_lines(draft) >= count else None

        if self.settings.line_mode == "invoiceitems":
            for i in range(present, len(params)):
                item = to_invoice_item_params(params[i], customer_id=invoice["customer"],
                                              invoice_id=invoice_id, currency=currency)
                self._send(context, action.key, f"line:{i}",
                           lambda key, item=item: self.client.create_invoice_item(item, idempotency_key=key),
                           lambda i=i: has(i + 1))
                context.save_progress(invoice_id=invoice_id, step=f"line:{i}")
            return self.client.retrieve_invoice(invoice_id) if present < len(params) else invoice
        for first in range(present, len(params), LINES_PER_REQUEST):
            chunk = params[first:first + LINES_PER_REQUEST]
            step = "add_lines" if first == 0 else f"add_lines:{first}"
            invoice = self._send(
                context, action.key, step,
                lambda key, chunk=chunk: self.client.add_invoice_lines(invoice_id, chunk, idempotency_key=key),
                lambda count=first + len(chunk): has(count))
            context.save_progress(invoice_id=invoice_id, step=step)
        return invoice

    def _check_subtotal(self, action: Action, payload: dict, invoice: dict) -> None:
        """Refuse to go on when the draft's lines do not add up to the plan's: it stays a draft."""
        expected = sum(line["amount"] for line in payload["lines"])
        subtotal = invoice.get("subtotal")
        if subtotal is not None and subtotal != expected:
            currency = str(payload["currency"])
            raise VendorError(VENDOR, None, "POST", f"/v1/invoices/{invoice['id']}/finalize",
                              f"draft invoice {invoice['id']} for {action.key} totals "
                              f"{format_amount(subtotal, currency)} in Stripe but the plan's lines total "
                              f"{format_amount(expected, currency)}; it was not finalized: correct or "
                              f"delete the draft in Stripe, then push again")

    def _finalize(self, base: str, invoice_id: str, context) -> dict:
        """Finalize a draft exactly once; an invoice already finalized is success (returned)."""
        def finalized() -> dict | None:
            invoice = self.client.retrieve_invoice(invoice_id)
            return invoice if invoice["status"] != "draft" else None

        def send(key: str) -> dict:
            try:
                return self.client.finalize_invoice(invoice_id, idempotency_key=key)
            except ReplayedError:
                raise
            except VendorError as exc:  # finalized meanwhile (in the dashboard): Stripe says 400
                if exc.status != 400:
                    raise
                done = finalized()
                if done is None:
                    raise
                return done

        return self._send(context, base, "finalize", send, finalized)

    def _push_finalize(self, action: Action, context) -> PushResult:
        """An ``invoice_finalize`` action: finalize the reviewed draft of ``invoice_key``."""
        payload = check_finalize_payload(action)
        invoice_id = str(payload["invoice_id"])
        try:
            invoice = self.client.retrieve_invoice(invoice_id)
        except VendorError as exc:
            if exc.status != 404:
                raise
            raise VendorError(VENDOR, 404, "GET", f"/v1/invoices/{invoice_id}",
                              f"invoice {invoice_id} of {payload['invoice_key']} does not exist in Stripe "
                              f"(deleted during review?); push the invoice action again to make a new draft") from None
        owner = (invoice.get("metadata") or {}).get("msp_hub_action_key")
        if owner != payload["invoice_key"]:
            raise VendorError(VENDOR, None, "POST", f"/v1/invoices/{invoice_id}/finalize",
                              f"invoice {invoice_id} was made for {owner!r}, not {payload['invoice_key']!r}; "
                              f"nothing was finalized: check the invoice_id of {action.key}")
        if invoice["status"] != "draft":
            context.save_progress(invoice_id=invoice_id, step="finalized")
            return to_push_result(invoice, payload, note=f"already {invoice['status']} in Stripe")
        invoice = self._finalize(action.key, invoice_id, context)
        context.save_progress(invoice_id=invoice_id, step="finalized")
        return to_push_result(invoice, payload)


    # --- corrections: void, credit note ---

    def _corrected_invoice(self, action: Action, payload: dict[str, Any], path: str) -> dict:
        """The Stripe invoice a correction names, checked to be the one the hub sent for ``invoice_key``."""
        invoice_id = str(payload["invoice_id"])
        try:
            invoice = self.client.retrieve_invoice(invoice_id)
        except VendorError as exc:
            if exc.status != 404:
                raise
            raise VendorError(VENDOR, 404, "GET", f"/v1/invoices/{invoice_id}",
                              f"invoice {invoice_id} of {payload['invoice_key']} does not exist in Stripe; "
                              f"nothing was sent for {action.key}: check the invoice in the dashboard") from None
        owner = (invoice.get("metadata") or {}).get("msp_hub_action_key")
        if owner != payload["invoice_key"]:
            raise VendorError(VENDOR, None, "POST", path,
                              f"invoice {invoice_id} was made for {owner!r}, not {payload['invoice_key']!r}; "
                              f"nothing was sent for {action.key}: check its invoice_id")
        return invoice

    def _push_void(self, action: Action, context) -> PushResult:
        """An ``invoice_void`` action: void the open invoice ``invoice_id``, exactly once. Its status
        is read first: already void is done (nothing sent); paid, draft or uncollectible is refused
        (a paid invoice is corrected by a credit note)."""
        payload = check_correction_payload(action)
        invoice_id = str(payload["invoice_id"])
        path = f"/v1/invoices/{invoice_id}/void"
        invoice = self._corrected_invoice(action, payload, path)
        status = invoice.get("status")
        if status == "void":
            context.save_progress(invoice_id=invoice_id, step="voided")
            return void_result(invoice, payload, note="already void in Stripe, nothing sent")
        if status != "open":
            fix = (f"a paid invoice is not voided: cancel {action.key} and credit it instead with "
                   f"msp-hub invoice credit {payload['invoice_key']} --lines CODE ... (or --amount X) --reason ...")
            if status == "draft":
                fix = "a draft is not voided: delete it in the Stripe dashboard, then cancel " + action.key
            raise VendorError(VENDOR, None, "POST", path, f"invoice {invoice.get('number') or invoice_id} of "
                              f"{payload['invoice_key']} is {status} in Stripe; nothing was sent: {fix}")

        def voided() -> dict | None:
            found = self.client.retrieve_invoice(invoice_id)
            return found if found.get("status") == "void" else None

        def send(key: str) -> dict:
            try:
                return self.client._call("POST", path, lambda p, o: self.client._sdk.v1.invoices.void_invoice(
                    invoice_id, p, o), {}, {"idempotency_key": key})
            except ReplayedError:
                raise
            except VendorError as exc:   # voided meanwhile (the dashboard, a lost answer): Stripe says 400
                done = voided() if exc.status == 400 else None
                if done is None:
                    raise
                return done

        invoice = self._send(context, action.key, "void", send, voided)
        context.save_progress(invoice_id=invoice_id, step="voided")
        return void_result(invoice, payload)

    def _credit_notes_of(self, invoice_id: str, action_key: str) -> dict | None:
        """The credit note the hub issued for ``action_key`` on the invoice (its metadata), or None."""
        for note in self.client._iter_pages("/v1/credit_notes", self.client._sdk.v1.credit_notes.list,
                                            {"invoice": invoice_id, "limit": 100}):
            if (note.get("metadata") or {}).get("msp_hub_action_key") == action_key:
                return note
        return None

    def _push_credit_note(self, action: Action, context) -> PushResult:
        """A ``credit_note`` action: one Stripe credit note on ``invoice_id``, exactly once (found by
        its metadata before anything is sent; the POST carries the action's idempotency key)."""
        payload = check_correction_payload(action)
        invoice_id = str(payload["invoice_id"])
        found = self._credit_notes_of(invoice_id, action.key)
        if found is not None:
            context.save_progress(credit_note_id=found["id"], step="issued")
            return credit_note_result(found, payload, "already issued in Stripe, nothing sent")
        invoice = self._corrected_invoice(action, payload, "/v1/credit_notes")
        if invoice.get("status") not in ("open", "paid"):
            raise VendorError(VENDOR, None, "POST", "/v1/credit_notes",
                              f"invoice {invoice.get('number') or invoice_id} of {payload['invoice_key']} is "
                              f"{invoice.get('status')} in Stripe: only an open or paid invoice takes a credit note; "
                              f"nothing was sent: cancel {action.key}")
        lines = list(self.client.iter_invoice_lines(invoice_id)) if payload.get("lines") else []
        params = to_credit_note_params(action, invoice, lines)
        note = self._send(context, action.key, "credit_note",
                          lambda key: self.client._call("POST", "/v1/credit_notes", self.client._sdk.v1.credit_notes.create,
                                                        params, {"idempotency_key": key}),
                          lambda: self._credit_notes_of(invoice_id, action.key))
        context.save_progress(credit_note_id=note["id"], step="issued")
        return credit_note_result(note, payload)


def check_correction_payload(action: Action) -> dict[str, Any]:
    """The payload of an ``invoice_void`` or ``credit_note`` action (``hub.corrections``), checked."""
    payload = action.payload or {}
    required = ["invoice_key", "invoice_id", "reason", "requested_by"]
    if action.kind == CREDIT_NOTE:
        required.append("currency")
    missing = [k for k in required if not payload.get(k)]
    if action.kind == CREDIT_NOTE and bool(payload.get("lines")) == (payload.get("amount") is not None):
        missing.append("lines or amount (exactly one)")
    if action.kind == CREDIT_NOTE and payload.get("reason_code", "order_change") not in CREDIT_NOTE_REASONS:
        missing.append(f"reason_code one of {', '.join(CREDIT_NOTE_REASONS)}")
    if missing:
        raise MappingError(f"action {action.key}: its payload lacks {', '.join(missing)}; nothing was sent "
                           f"(record corrections with msp-hub invoice void|credit)")
    return payload


def to_credit_note_params(action: Action, invoice: dict[str, Any], stripe_lines: list[dict]) -> dict[str, Any]:
    """POST /v1/credit_notes params: the hub's lines credited whole (each Stripe line found by the
    ``msp_hub_line`` metadata the invoice push wrote, its amount with its taxes), or an ``amount``;
    Stripe's ``reason`` (``order_change`` unless the payload says ``reason_code``) and the person's
    reason and name in ``memo``; on a paid invoice the amount goes to the customer's balance
    (``credit_amount``), applied to their next invoice."""
    payload = action.payload
    params: dict[str, Any] = {
        "invoice": invoice["id"], "reason": payload.get("reason_code", "order_change"),
        "memo": f"{payload['reason']} (asked by {payload['requested_by']})"[:MAX_DESCRIPTION],
        "metadata": {"msp_hub_action_key": action.key, "msp_hub_invoice_key": str(payload["invoice_key"]),
                     "msp_hub_client_id": str(action.client_id or "")},
    }
    if payload.get("lines"):
        by_code = {(line.get("metadata") or {}).get("msp_hub_line"): line for line in stripe_lines}
        missing = [line["code"] for line in payload["lines"] if line["code"] not in by_code]
        if missing:
            raise VendorError(VENDOR, None, "POST", "/v1/credit_notes",
                              f"invoice {invoice.get('number') or invoice['id']} has no line {', '.join(map(repr, missing))} "
                              f"in Stripe (edited in the dashboard?); nothing was sent: cancel {action.key} and "
                              f"credit an --amount instead")
        params["lines"] = []
        for line in payload["lines"]:
            theirs = by_code[line["code"]]
            amount = int(theirs["amount"]) + sum(int(t.get("amount", 0)) for t in theirs.get("taxes") or [])
            params["lines"].append({"type": "invoice_line_item", "invoice_line_item": theirs["id"], "amount": amount})
        total = sum(line["amount"] for line in params["lines"])
    else:
        params["amount"] = total = int(payload["amount"])
    if invoice.get("status") == "paid":
        params["credit_amount"] = total
    return params


def void_result(invoice: dict[str, Any], payload: dict[str, Any], note: str = "") -> PushResult:
    number = invoice.get("number") or invoice["id"]
    summary = f"Stripe invoice {number} of {payload['invoice_key']} voided ({payload['reason']})"
    if note:
        summary += f"; {note}"
    return PushResult(vendor_id=invoice["id"], summary=summary,
                      details={"invoice_id": invoice["id"], "number": invoice.get("number"),
                               "status": invoice.get("status"), "invoice_key": payload["invoice_key"]})


def credit_note_result(note: dict[str, Any], payload: dict[str, Any], text: str = "") -> PushResult:
    currency = str(note.get("currency") or payload.get("currency") or "")
    summary = (f"Stripe credit note {note.get('number') or note['id']} of {format_amount(int(note['total']), currency)} "
               f"on {payload['invoice_key']} ({payload['reason']})")
    if text:
        summary += f"; {text}"
    return PushResult(vendor_id=note["id"], summary=summary,
                      details={"credit_note_id": note["id"], "number": note.get("number"), "total": note.get("total"),
                               "currency": currency.upper(), "type": note.get("type"), "invoice_id": note.get("invoice"),
                               "invoice_key": payload["invoice_key"], "pdf": note.get("pdf")})


# --- hook ----------------------------------------------------------------------------------------

@hookimpl
def veto_action(action):
    """Hold, in the plan already, an invoice Stripe would refuse (``check_payload``): too many
    lines, a description too long, lines that do not add up. The reason names the fix."""
    if action.kind != "invoice" or action.connector != NAME or not (action.payload or {}).get("lines"):
        return None
    try:
        check_payload(action)
    except MappingError as exc:
        return str(exc).replace(". Nothing was sent", "").replace("; nothing was sent", "")
    return None


@hookimpl
def register_connectors(config):
    """The Stripe connector when ``[connectors.stripe]`` is configured, else nothing."""
    settings = StripeSettings.from_config(config)
    return [] if settings is None else [StripeConnector(settings)]
