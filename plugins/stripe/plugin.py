"""The Stripe connector: settings, hub invoices mapped to Stripe params, the push flow, the hook.

An ``invoice`` action becomes one finalized Stripe invoice, exactly once:

1. the customer: the stored link, else (on a retry) a search by metadata, else a create;
2. a draft invoice (``POST /v1/invoices``, ``auto_advance=false``, ``pending_invoice_items_behavior
   =exclude``, so nothing else is swept onto it and Stripe does not finalize it on its own);
3. every line in one ``POST /v1/invoices/{id}/add_lines`` (chunked above ``LINES_PER_REQUEST``),
   or with ``line_mode = "invoiceitems"`` one ``POST /v1/invoiceitems`` per line;
4. ``POST /v1/invoices/{id}/finalize``.

So a push is 3 requests for a known customer, 4 with the customer's creation.

Exactly once rests on three things. Every POST carries an ``Idempotency-Key`` derived from the
action key and the step (``msp-hub:invoice:acme:2026-10:create``), so a retry within Stripe's
24 h key lifetime gets the first answer back instead of a second object. After each step the
invoice id and step are saved with ``context.save_progress``. And a retry never creates blindly:
it recovers the invoice (the saved id, else the customer's invoices listed and matched on
``metadata.msp_hub_action_key``, which still works after the keys are pruned) and continues from
its state: a draft gets its missing lines, then is finalized; an open, paid or void invoice is done.

Customer lookup on a retry uses search, though Stripe's search is eventually consistent (usually
under a minute), because ``GET /v1/customers`` cannot filter on metadata and would mean reading
every customer. Search missing a customer just created is harmless: the create that follows
uses the same idempotency key as the lost one, so within 24 h Stripe replays the first customer,
and after 24 h search has long caught up.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import httpx
import tenacity

from hub import Action, ConfigError, MappingError, PushResult, VendorError, hookimpl
from hub.config import Secret
from plugins.stripe.client import VENDOR, StripeClient

NAME = "stripe"
LINE_MODES = ("add_lines", "invoiceitems")
COLLECTION_METHODS = ("send_invoice", "charge_automatically")
SETTING_KEYS = {"base_url", "api_key_env", "api_key_file", "days_until_due", "collection_method",
                "line_mode"}
# Stripe documents no limit on lines per add_lines request; it does limit an invoice to 250
# invoice items (https://docs.stripe.com/changelog/2016-02-22/no-more-than-250-invoice-items,
# raisable on request). Chunks of 50 keep each request small; MSP invoices rarely need two.
LINES_PER_REQUEST = 50
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

def idempotency_key(action_key: str, step: str) -> str:
    """``msp-hub:<action key>:<step>``; hashed when it would pass Stripe's 255 characters."""
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
    """The invoice payload, or a MappingError naming what is missing or wrong."""
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
    return payload


def to_customer_params(action: Action) -> dict[str, Any]:
    """POST /v1/customers params for the action's client."""
    return {"name": action.payload["client_name"],
            "metadata": {"msp_hub_client_id": action.client_id}}


def customer_search_query(client_id: str) -> str:
    """Stripe search query for the customer created for ``client_id``."""
    escaped = client_id.replace("\\", "\\\\").replace("'", "\\'")
    return f"metadata['msp_hub_client_id']:'{escaped}'"


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


def to_line_params(line: dict[str, Any], period_start: int, period_end: int) -> dict[str, Any]:
    """One add_lines line: the amount as computed by the hub, never recomputed by Stripe.

    ``period_end`` is the hub's exclusive end; Stripe's ``period.end`` is inclusive, hence -1.
    """
    metadata = {"msp_hub_line": str(line["code"])}
    if "quantity" in line:
        metadata["msp_hub_quantity"] = str(line["quantity"])
    if "unit_amount" in line:
        metadata["msp_hub_unit_amount"] = str(line["unit_amount"])
    return {"amount": line["amount"], "description": line["description"],
            "period": {"start": period_start, "end": max(period_start, period_end - 1)},
            "metadata": metadata}


def to_invoice_item_params(line_params: dict[str, Any], *, customer_id: str, invoice_id: str,
                           currency: str) -> dict[str, Any]:
    """POST /v1/invoiceitems params: the same line, attached to the draft invoice."""
    return {"customer": customer_id, "invoice": invoice_id, "currency": currency, **line_params}


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
    """The engine's PushResult for a Stripe invoice."""
    number = invoice.get("number") or invoice["id"]
    total = invoice.get("total")
    currency = str(invoice.get("currency") or payload["currency"])
    summary = f"Stripe invoice {number} ({invoice.get('status')}) for {payload['client_name']}"
    if total is not None:
        summary += f": {format_amount(total, currency)}"
    if note:
        summary += f"; {note}"
    return PushResult(vendor_id=invoice["id"], summary=summary,
                      details={"number": invoice.get("number"), "total": total,
                               "currency": currency.upper(), "status": invoice.get("status"),
                               "customer": invoice.get("customer"),
                               "hosted_invoice_url": invoice.get("hosted_invoice_url")})


# --- the connector -------------------------------------------------------------------------------

class StripeConnector:
    """Pushes ``invoice`` actions to Stripe (see the module docstring); pulls nothing."""

    name = NAME
    action_kinds = frozenset({"invoice"})

    def __init__(self, settings: StripeSettings, *, http: httpx.Client | None = None,
                 retrying: Callable[[], tenacity.Retrying] | None = None):
        self.settings = settings
        self.client = StripeClient(settings.base_url, settings.api_key, http=http, retrying=retrying)

    def streams(self) -> list:
        return []

    def close(self) -> None:
        self.client.close()

    def push(self, action: Action, context) -> PushResult:
        """Send one invoice action exactly once; return the Stripe invoice as a PushResult."""
        if action.kind not in self.action_kinds:
            raise ValueError(f"the stripe connector cannot push {action.kind!r} actions")
        payload = check_payload(action)
        progress = context.progress or {}
        recovering = context.attempts > 0 or bool(progress.get("invoice_id"))

        customer_id = self._customer(action, context)
        invoice = self._recover_invoice(action, customer_id, progress) if recovering else None
        if invoice is None:
            invoice = self.client.create_invoice(to_invoice_params(action, customer_id, self.settings),
                                                 idempotency_key=idempotency_key(action.key, "create"))
            context.save_progress(invoice_id=invoice["id"], step="created")
            present = 0
        elif invoice["status"] != "draft":
            context.save_progress(invoice_id=invoice["id"], step="finalized")
            return to_push_result(invoice, payload, note=f"already {invoice['status']} in Stripe")
        else:
            present = self._count_our_lines(invoice)

        invoice = self._add_lines(action, payload, invoice, customer_id, present, context)
        invoice = self.client.finalize_invoice(invoice["id"],
                                               idempotency_key=idempotency_key(action.key, "finalize"))
        context.save_progress(invoice_id=invoice["id"], step="finalized")
        note = ""
        if invoice.get("total") is not None and invoice["total"] != payload.get("total", invoice["total"]):
            note = f"Stripe's total differs from the hub's {format_amount(payload['total'], payload['currency'])}"
        return to_push_result(invoice, payload, note)

    # --- steps ---

    def _customer(self, action: Action, context) -> str:
        """The client's Stripe customer id: linked, found again on a retry, or created."""
        customer_id = context.get_link(action.client_id, NAME)
        if customer_id:
            return customer_id
        if context.attempts > 0:
            found = self.client.search_customers(customer_search_query(action.client_id))
            ours = [c for c in found if (c.get("metadata") or {}).get("msp_hub_client_id") == action.client_id]
            if ours:
                customer_id = min(ours, key=lambda c: (c.get("created") or 0, c["id"]))["id"]
        if not customer_id:
            customer = self.client.create_customer(
                to_customer_params(action),
                idempotency_key=idempotency_key(f"customer:{action.client_id}", "create"))
            customer_id = customer["id"]
        context.set_link(action.client_id, NAME, customer_id)
        return customer_id

    def _recover_invoice(self, action: Action, customer_id: str, progress: dict) -> dict | None:
        """The invoice an earlier attempt created for this action, if any."""
        invoice_id = progress.get("invoice_id")
        if invoice_id:
            try:
                return self.client.retrieve_invoice(invoice_id)
            except VendorError as exc:
                if exc.status != 404:
                    raise
        matches = [inv for inv in self.client.iter_invoices(customer=customer_id)
                   if (inv.get("metadata") or {}).get("msp_hub_action_key") == action.key]
        if not matches:
            return None
        # A live invoice wins over a void one; among equals, the newest (lists come newest first).
        live = [inv for inv in matches if inv.get("status") != "void"]
        return (live or matches)[0]

    def _count_our_lines(self, invoice: dict) -> int:
        """How many of this connector's lines a draft already has (pages the lines if needed)."""
        lines = invoice.get("lines") or {}
        data = lines.get("data") or []
        if lines.get("has_more"):
            data = list(self.client.iter_invoice_lines(invoice["id"]))
        return sum(1 for line in data if is_our_line(line))

    def _add_lines(self, action: Action, payload: dict, invoice: dict, customer_id: str,
                   present: int, context) -> dict:
        """Add the lines the draft does not have yet, in order, each request with its own key."""
        lines = payload["lines"]
        if present > len(lines):
            raise VendorError(VENDOR, None, "POST", f"/v1/invoices/{invoice['id']}/add_lines",
                              f"draft invoice {invoice['id']} already has {present} lines from msp-hub "
                              f"but the action has {len(lines)}; check the draft in Stripe")
        start, end = to_epoch(payload["period_start"]), to_epoch(payload["period_end"])
        params = [to_line_params(line, start, end) for line in lines]
        invoice_id = invoice["id"]
        if self.settings.line_mode == "invoiceitems":
            currency = str(payload["currency"]).lower()
            for i in range(present, len(params)):
                self.client.create_invoice_item(
                    to_invoice_item_params(params[i], customer_id=customer_id, invoice_id=invoice_id,
                                           currency=currency),
                    idempotency_key=idempotency_key(action.key, f"line:{i}"))
                context.save_progress(invoice_id=invoice_id, step=f"line:{i}")
            return invoice
        for first in range(present, len(params), LINES_PER_REQUEST):
            chunk = params[first:first + LINES_PER_REQUEST]
            step = "add_lines" if first == 0 else f"add_lines:{first}"
            invoice = self.client.add_invoice_lines(invoice_id, chunk,
                                                    idempotency_key=idempotency_key(action.key, step))
            context.save_progress(invoice_id=invoice_id, step=step)
        return invoice


# --- hook ----------------------------------------------------------------------------------------

@hookimpl
def register_connectors(config):
    """The Stripe connector when ``[connectors.stripe]`` is configured, else nothing."""
    settings = StripeSettings.from_config(config)
    return [] if settings is None else [StripeConnector(settings)]
