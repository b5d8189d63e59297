"""The Stripe connector: settings, hub invoices mapped to Stripe params, the push flow, the hook.

An ``invoice`` action becomes one finalized Stripe invoice, exactly once:

1. the customer: the link (an MSP's mapping, or an earlier push; never a new customer for a
   linked client), else the customer found by search on ``metadata.msp_hub_client_id``, else a
   create, with the client's details when the payload has them (``customer``: ``email``,
   ``address``, ``preferred_locales`` from its ``locale``, ``tax_exempt``, its VAT number as
   ``tax_id_data`` of type ``eu_vat``, or ``gb_vat``/``ch_vat``/``no_vat`` by its prefix);
2. the invoice Stripe may already have for the action (``metadata.msp_hub_action_key``): the id
   saved in the action's progress, else the customer's invoices listed (consistent) when the
   customer existed before this push, else a search of invoices (it finds one sent on another
   customer); found open, paid or void, the push is done and returns it;
   otherwise, for a customer that existed and a payload with the client's details: the customer
   read (``GET /v1/customers/{id}``, tax ids embedded) and compared, and only what differs
   written, once (``POST /v1/customers/{id}``; a changed VAT number is added with ``POST
   .../tax_ids`` and the old one deleted); a rerun compares equal and writes nothing, and the
   result says what was updated (``details["customer_updated"]``);
   and the tax rates the lines use (``lines[].tax``): found by ``metadata.msp_hub_tax_rate``
   (``FR:20:TVA``) among the active tax rates (listed once per connector, then remembered, and
   forgotten when a push fails), else created once (``POST /v1/tax_rates``, exclusive, its
   idempotency key from the rate's key and how many of that key were archived);
3. else a draft invoice (``POST /v1/invoices``, ``auto_advance=false``,
   ``pending_invoice_items_behavior=exclude``: nothing else is swept onto it and Stripe does not
   finalize it on its own), with the MSP's legal mentions (``footer``, ``custom_fields``) and, when
   Stripe Tax computes the tax (``tax.automatic`` and ``[connectors.stripe] automatic_tax``, which
   must agree; the client needs an address), ``automatic_tax[enabled]=true`` and no tax rates;
4. the lines the draft lacks in one ``POST /v1/invoices/{id}/add_lines`` (chunked above
   ``LINES_PER_REQUEST``), or with ``line_mode = "invoiceitems"`` one ``POST /v1/invoiceitems``
   per line. A line is sent as quantity x unit amount when that is the plan's amount to the cent
   (an add_lines line takes its unit amount in ``price_data``, with an inline product named like
   the line; an invoice item in ``unit_amount_decimal``), else as the plan's amount, its
   description stating the quantity: ``"Support hours (1.5 x 80.00 EUR)"``, unless the hub's
   text already states it (a time line: ``"2026-11-03, jdoe, ticket 4521, Remote Support,
   1.25 h × 95.00 EUR"``), which is then sent as it is; a taxed line carries its rate
   (``tax_rates``), an untaxed one none;
5. the draft's subtotal checked against the plan's lines, and (with tax rates) Stripe's tax and
   total against the plan's ``tax.total_tax`` and ``total_with_tax`` (per line, half up): if they
   differ (a line added in the dashboard, a rate edited...), the draft is left as it is and the
   push fails, naming both figures;
6. ``POST /v1/invoices/{id}/finalize`` -- unless the payload says ``"finalize": false``: then the
   draft stays for the MSP to review and the result says ``{"draft": true, "invoice_id": ...}``;
   an ``invoice_finalize`` action (``{"invoice_key", "invoice_id"}``) finalizes it later, once
   (an invoice already finalized is success).

Requests per invoice: 4 for a known customer (list its invoices, create, add_lines, finalize), 6
with a new customer (search customers, create it, search invoices, create, add_lines, finalize);
with ``invoiceitems``, one per line plus one read of the draft instead of add_lines. Pushed again
after the store was lost, a sent invoice costs 2 GETs and no POST. The client's details add one
GET for a known customer (5 a month for a French client once its rates are known), plus one POST
when they changed and a POST and a DELETE when its VAT number changed; the tax rates add one GET
per connector (the first taxed invoice of a run), plus one POST per rate Stripe does not have yet:
a new French client's first invoice costs 8 (search, create customer, search invoices, list tax
rates, create the rate, create, add_lines, finalize).

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
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Callable, Iterator

import httpx
import tenacity

from hub import Action, ConfigError, MappingError, PushResult, VendorError, hookimpl, i18n
from hub.config import Secret
from hub.ratelimit import RateLimiter, account_key, limiter_for, read_rate
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
                "line_mode", "automatic_tax", "rate_limit"}
# Stripe's published rate limits (https://docs.stripe.com/rate-limits): 100 requests a second in
# live mode, 25 in test mode (a sandbox). They bind api.stripe.com only: a Stripe-compatible server
# (the simulator, localstripe) publishes none, so none is the default there.
STRIPE_API = "https://api.stripe.com"
LIVE_RATE, TEST_RATE = 100.0, 25.0


def default_rate_limit(api_key: str, base_url: str) -> tuple[float, str]:
    """The default ``rate_limit`` (requests a second) for a key and a server, and why: Stripe's
    live limit for a live key (``sk_live_``/``rk_live_``), else its test limit, on api.stripe.com;
    0 (none) on any other server."""
    if base_url.rstrip("/") != STRIPE_API:
        return 0.0, "no limit is published for a server other than api.stripe.com"
    if api_key.startswith(("sk_live_", "rk_live_")):
        return LIVE_RATE, "Stripe's live-mode limit, https://docs.stripe.com/rate-limits"
    return TEST_RATE, "Stripe's test-mode limit, https://docs.stripe.com/rate-limits"
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
        automatic_tax = false                 # true: Stripe Tax computes the VAT (automatic_tax)
        # base_url = "https://api.stripe.com"
        # rate_limit = 25                     # requests a second, 0 = none; see below

    ``automatic_tax = true`` asks Stripe Tax for the tax of every invoice (``automatic_tax[enabled]``,
    no tax rates sent); the plan must say so too (``tax.automatic``), and the client needs an address.

    ``rate_limit`` (requests a second, shared by every process using the hub's database; 0 = none)
    defaults to Stripe's published limits on api.stripe.com: 100 for a live key (``sk_live_``,
    ``rk_live_``), 25 for any other (test mode); no limit on another server.
    """

    api_key: Secret
    base_url: str = "https://api.stripe.com"
    days_until_due: int = 30
    collection_method: str = "send_invoice"
    line_mode: str = "add_lines"
    automatic_tax: bool = False
    rate_limit: float = 0.0

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
        automatic = section.get("automatic_tax", cls.automatic_tax)
        if not isinstance(automatic, bool):
            raise ConfigError(f"must be true or false, got {automatic!r}", file=file, key=f"{where}.automatic_tax",
                              fix="write automatic_tax = true (Stripe Tax) or automatic_tax = false (tax rates)")
        default, why = default_rate_limit(api_key.reveal(), base_url)
        rate = read_rate(section, config=config, connector=NAME, default=default, why=why)
        return cls(api_key=api_key, base_url=base_url.rstrip("/"), days_until_due=days,
                   collection_method=method, line_mode=mode, automatic_tax=automatic, rate_limit=rate)


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
    check_tax(action, payload)
    check_customer(action, payload)
    check_legal_mentions(action, payload)
    return payload


# --- tax, the client's details, legal mentions (all optional in the payload) ---------------------

TAX_TREATMENTS = ("standard", "reverse_charge", "outside_eu", "exempt")
TAX_EXEMPT = ("none", "exempt", "reverse")
ADDRESS_KEYS = ("line1", "line2", "city", "postal_code", "state", "country")
MAX_CUSTOM_FIELDS = 4          # Stripe: custom_fields, at most 4
MAX_CUSTOM_FIELD_NAME = 40     # custom_fields[][name] maxLength
MAX_CUSTOM_FIELD_VALUE = 140   # custom_fields[][value] maxLength
MAX_FOOTER = 5000              # footer maxLength
MAX_TAX_NAME = 50              # tax_rates display_name maxLength
# Tax id types by the VAT number's country prefix (Stripe's ``tax_id_data[][type]``); EL is Greece.
EU_VAT_PREFIXES = {"AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "EL", "ES", "FI", "FR", "HR", "HU", "IE",
                   "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "XI"}
OTHER_VAT_TYPES = {"GB": "gb_vat", "CH": "ch_vat", "NO": "no_vat"}
VAT_TYPES = ("eu_vat", *OTHER_VAT_TYPES.values())
NOT_SENT = "Nothing was sent"


def percent_text(value: Any) -> str:
    """A tax percentage as a plain decimal string: ``"20"``, ``"5.5"``."""
    number = _decimal(value)
    if number is None:
        raise ValueError(f"not a number: {value!r}")
    return format(number.normalize(), "f")


def line_tax(amount: int, percent: Any) -> int:
    """The tax on one line: amount x percent / 100, rounded half up to the minor unit (as the plan
    does, and Stripe with tax rates on invoice items)."""
    exact = Decimal(amount) * Decimal(percent_text(percent)) / 100
    return int(exact.to_integral_value(rounding=ROUND_HALF_UP))


def tax_rate_key(percent: Any, name: str, country: str | None) -> str:
    """The deterministic key of a tax rate, kept in its ``metadata.msp_hub_tax_rate``: ``FR:20:TVA``."""
    return f"{(country or '-').upper()}:{percent_text(percent)}:{name}"


def to_tax_rate_params(percent: Any, name: str, country: str | None) -> dict[str, Any]:
    """POST /v1/tax_rates params: an exclusive rate (prices are before tax), tagged with its key."""
    text = percent_text(percent)
    params: dict[str, Any] = {"display_name": name, "percentage": text, "inclusive": False,
                              "description": f"{name} {text} %" + (f" ({country.upper()})" if country else "")
                                             + ", made by msp-hub",
                              "metadata": {"msp_hub_tax_rate": tax_rate_key(percent, name, country)}}
    if country:
        params["country"] = country.upper()
        params["jurisdiction"] = country.upper()
    return params


def vat_type(number: str) -> str | None:
    """Stripe's tax id type for a VAT number, by its country prefix; None when unknown."""
    prefix = normal_vat(number)[:2]
    if prefix in EU_VAT_PREFIXES:
        return "eu_vat"
    if normal_vat(number).startswith("CHE"):
        return "ch_vat"
    return OTHER_VAT_TYPES.get(prefix)


def normal_vat(number: str) -> str:
    """A VAT number without spaces, dots or dashes, upper case (to compare two spellings)."""
    return re.sub(r"[\s.\-]", "", str(number)).upper()


def is_automatic(payload: dict[str, Any]) -> bool:
    """Whether the plan asks Stripe Tax for this invoice (``tax.automatic``)."""
    return bool((payload.get("tax") or {}).get("automatic"))


def uses_stripe_tax(payload: dict[str, Any], settings: StripeSettings) -> bool:
    """Whether the invoice is sent with ``automatic_tax[enabled]``: ``automatic_tax = true`` in the
    settings, and the plan asks it too (or, from an older plan, says nothing of tax)."""
    return settings.automatic_tax and (payload.get("tax") is None or is_automatic(payload))


def check_tax(action: Action, payload: dict[str, Any]) -> None:
    """The payload's ``lines[].tax`` and ``tax`` block, when present: well formed, and the tax per
    line (half up) adding up to ``tax.total_tax``, the total with tax to ``total_with_tax``."""
    where = f"action {action.key}"
    for i, line in enumerate(payload["lines"]):
        tax = line.get("tax")
        if tax is None:
            continue
        name = tax.get("name") if isinstance(tax, dict) else None
        percent = _decimal(tax.get("percent")) if isinstance(tax, dict) else None
        if percent is None or not 0 <= percent <= 100 or not isinstance(name, str) or not name.strip():
            raise MappingError(f"{where}: line {i} ({line['code']}) tax must be {{\"percent\": \"20\", "
                               f"\"name\": \"TVA\"}} (a percentage from 0 to 100 and a name), got {tax!r}; "
                               f"correct the rate in [billing.tax] or in the contract. {NOT_SENT}")
        if len(name) > MAX_TAX_NAME:
            raise MappingError(f"{where}: line {i} ({line['code']}) tax name {name!r} has {len(name)} characters, "
                               f"Stripe takes at most {MAX_TAX_NAME}; shorten the name in [billing.tax]. {NOT_SENT}")
    block = payload.get("tax")
    if block is None:
        return
    currency = str(payload["currency"])
    if not isinstance(block, dict):
        raise MappingError(f"{where}: payload tax must be an object, got {block!r}. {NOT_SENT}")
    if block.get("treatment", "standard") not in TAX_TREATMENTS:
        raise MappingError(f"{where}: unknown tax treatment {block.get('treatment')!r}; use one of "
                           f"{', '.join(TAX_TREATMENTS)}. {NOT_SENT}")
    if "automatic" in block and not isinstance(block["automatic"], bool):
        raise MappingError(f"{where}: tax.automatic must be true or false, got {block['automatic']!r}. {NOT_SENT}")
    for key in ("total_tax", "total_with_tax"):
        value = block.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise MappingError(f"{where}: tax.{key} must be integer minor units, got {value!r}. {NOT_SENT}")
    lines_sum = sum(line["amount"] for line in payload["lines"])
    if block["total_with_tax"] != lines_sum + block["total_tax"]:
        raise MappingError(f"{where}: tax.total_with_tax is {format_amount(block['total_with_tax'], currency)} but "
                           f"the lines ({format_amount(lines_sum, currency)}) plus the tax "
                           f"({format_amount(block['total_tax'], currency)}) make "
                           f"{format_amount(lines_sum + block['total_tax'], currency)}. {NOT_SENT}")
    if block.get("automatic"):
        return
    taxed = sum(line_tax(line["amount"], line["tax"]["percent"]) for line in payload["lines"] if line.get("tax"))
    if taxed != block["total_tax"]:
        raise MappingError(f"{where}: the tax of the lines, each rounded half up, adds up to "
                           f"{format_amount(taxed, currency)} but tax.total_tax is "
                           f"{format_amount(block['total_tax'], currency)}; Stripe would bill the former. {NOT_SENT}")


def check_customer(action: Action, payload: dict[str, Any]) -> None:
    """The payload's ``customer`` block, when present: known keys, a tax-exempt status Stripe
    knows, a VAT number Stripe can type, and no VAT on the lines of an exempt or reverse-charge
    customer (Stripe would print both)."""
    customer = payload.get("customer")
    if customer is None:
        return
    where = f"action {action.key}"
    if not isinstance(customer, dict):
        raise MappingError(f"{where}: payload customer must be an object, got {customer!r}. {NOT_SENT}")
    for key in ("name", "email", "vat_number", "locale"):
        if key in customer and customer[key] is not None and not isinstance(customer[key], str):
            raise MappingError(f"{where}: customer {key} must be text, got {customer[key]!r}. {NOT_SENT}")
    exempt = customer.get("tax_exempt")
    if exempt is not None and exempt not in TAX_EXEMPT:
        raise MappingError(f"{where}: customer tax_exempt {exempt!r} is not one of {', '.join(TAX_EXEMPT)}. "
                           f"{NOT_SENT}")
    address = customer.get("address")
    if address is not None:
        if not isinstance(address, dict) or any(k not in ADDRESS_KEYS for k in address):
            raise MappingError(f"{where}: customer address must have only the keys {', '.join(ADDRESS_KEYS)}, "
                               f"got {address!r}. {NOT_SENT}")
        country = address.get("country")
        if country is not None and not re.fullmatch(r"[A-Za-z]{2}", str(country)):
            raise MappingError(f"{where}: customer address country {country!r} is not a two-letter ISO code; "
                               f"correct the client's country in the PSA. {NOT_SENT}")
    vat = customer.get("vat_number")
    if vat and vat_type(vat) is None:
        raise MappingError(f"{where}: the VAT number {vat!r} of {payload['client_name']} does not start with a "
                           f"country Stripe takes a VAT number from (EU, GB, CH, NO); correct it in the PSA "
                           f"company's tax identifier. {NOT_SENT}")
    if exempt in ("exempt", "reverse"):
        taxed = [str(line["code"]) for line in payload["lines"] if line.get("tax")]
        if taxed:
            raise MappingError(f"{where}: customer tax_exempt is {exempt!r} but lines {', '.join(taxed)} carry "
                               f"VAT; an invoice cannot be both, correct the client's tax treatment. {NOT_SENT}")


def check_legal_mentions(action: Action, payload: dict[str, Any]) -> None:
    """``footer`` (at most ``MAX_FOOTER`` characters) and ``custom_fields`` (at most 4, name at most
    40, value at most 140 characters), as Stripe takes them; ``locale`` text."""
    where = f"action {action.key}"
    footer = payload.get("footer")
    if footer is not None:
        if not isinstance(footer, str):
            raise MappingError(f"{where}: footer must be text, got {footer!r}. {NOT_SENT}")
        if len(footer) > MAX_FOOTER:
            raise MappingError(f"{where}: the footer has {len(footer)} characters, Stripe takes at most "
                               f"{MAX_FOOTER}; shorten footer in [billing.invoice]. {NOT_SENT}")
    fields = payload.get("custom_fields")
    if fields is not None:
        if not isinstance(fields, list) or not all(isinstance(f, dict) for f in fields):
            raise MappingError(f"{where}: custom_fields must be a list of {{name, value}}, got {fields!r}. {NOT_SENT}")
        if len(fields) > MAX_CUSTOM_FIELDS:
            raise MappingError(f"{where}: {len(fields)} custom fields, Stripe takes at most {MAX_CUSTOM_FIELDS} per "
                               f"invoice; move the others into footer in [billing.invoice]. {NOT_SENT}")
        for i, field in enumerate(fields):
            name, value = field.get("name"), field.get("value")
            if not isinstance(name, str) or not name or not isinstance(value, str) or not value:
                raise MappingError(f"{where}: custom field {i} needs a name and a value, got {field!r}; "
                                   f"complete it in [billing.invoice]. {NOT_SENT}")
            if len(name) > MAX_CUSTOM_FIELD_NAME:
                raise MappingError(f"{where}: custom field {i} name {name!r} has {len(name)} characters, Stripe "
                                   f"takes at most {MAX_CUSTOM_FIELD_NAME}; shorten it in [billing.invoice]. {NOT_SENT}")
            if len(value) > MAX_CUSTOM_FIELD_VALUE:
                raise MappingError(f"{where}: custom field {i} ({name}) value has {len(value)} characters, Stripe "
                                   f"takes at most {MAX_CUSTOM_FIELD_VALUE}; shorten it in [billing.invoice], or "
                                   f"move the text into footer. {NOT_SENT}")
    locale = payload.get("locale")
    if locale is not None and (not isinstance(locale, str) or not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", locale)):
        raise MappingError(f"{where}: locale {locale!r} is not a language tag such as \"fr-FR\"; correct "
                           f"locale in [billing.invoice]. {NOT_SENT}")


def check_finalize_payload(action: Action) -> dict[str, Any]:
    """An ``invoice_finalize`` payload (``invoice_key``, ``invoice_id``), or a MappingError."""
    payload = action.payload or {}
    missing = [k for k in ("invoice_key", "invoice_id") if not payload.get(k)]
    if missing:
        raise MappingError(f"action {action.key}: payload has no {', '.join(missing)}")
    return payload


def customer_locale(payload: dict[str, Any]) -> str | None:
    """The client's preferred locale: the customer block's, else the payload's ``locale``."""
    return (payload.get("customer") or {}).get("locale") or payload.get("locale")


def wanted_customer(payload: dict[str, Any]) -> dict[str, Any]:
    """The Stripe customer fields the payload's ``customer`` asks for (only those it names; the
    client's name only from there), as Stripe shows them: ``name``, ``email``, ``address`` (all six keys, None when unset), ``preferred_locales``,
    ``tax_exempt``, ``vat_number``."""
    customer = payload.get("customer") or {}
    wanted: dict[str, Any] = {}
    if customer.get("name"):
        wanted["name"] = customer["name"]
    if customer.get("email"):
        wanted["email"] = customer["email"]
    if customer.get("address"):
        address = customer["address"]
        wanted["address"] = {k: (str(address[k]).upper() if k == "country" else str(address[k]))
                             if address.get(k) else None for k in ADDRESS_KEYS}
    locale = customer_locale(payload)
    if locale:
        wanted["preferred_locales"] = [locale]
    if customer.get("tax_exempt"):
        wanted["tax_exempt"] = customer["tax_exempt"]
    if customer.get("vat_number"):
        wanted["vat_number"] = customer["vat_number"]
    return wanted


def to_customer_params(action: Action) -> dict[str, Any]:
    """POST /v1/customers params for the action's client: its name and, when the payload has them,
    e-mail, address, preferred locale, tax-exempt status and VAT number (``tax_id_data``)."""
    wanted = wanted_customer(action.payload)
    params: dict[str, Any] = {"name": wanted.get("name") or action.payload["client_name"],
                              "metadata": {"msp_hub_client_id": action.client_id}}
    if "email" in wanted:
        params["email"] = wanted["email"]
    if "address" in wanted:
        params["address"] = {k: v for k, v in wanted["address"].items() if v}
    if "preferred_locales" in wanted:
        params["preferred_locales"] = wanted["preferred_locales"]
    if "tax_exempt" in wanted:
        params["tax_exempt"] = wanted["tax_exempt"]
    if "vat_number" in wanted:
        params["tax_id_data"] = [{"type": vat_type(wanted["vat_number"]), "value": wanted["vat_number"]}]
    return params


def customer_changes(wanted: dict[str, Any], customer: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """POST /v1/customers/{id} params that make Stripe's ``customer`` what the payload wants (only
    the fields the payload names; an unset address field is sent empty, which unsets it), and the
    names of the fields changed. The VAT number is not here (see ``vat_changes``)."""
    params: dict[str, Any] = {}
    for key in ("name", "email", "tax_exempt"):
        if key in wanted and customer.get(key) != wanted[key]:
            params[key] = wanted[key]
    if "address" in wanted:
        current = customer.get("address") or {}
        if any((current.get(k) or None) != v for k, v in wanted["address"].items()):
            params["address"] = {k: v or "" for k, v in wanted["address"].items()}
    if "preferred_locales" in wanted and list(customer.get("preferred_locales") or []) != wanted["preferred_locales"]:
        params["preferred_locales"] = wanted["preferred_locales"]
    return params, list(params)


def vat_changes(wanted: dict[str, Any], tax_ids: list[dict]) -> tuple[dict[str, str] | None, list[str]]:
    """The tax id to add (``{"type", "value"}``, None when Stripe has it) and the ids of the VAT
    numbers to delete (other VAT numbers: the client's changed), when the payload has one."""
    if "vat_number" not in wanted:
        return None, []
    number = wanted["vat_number"]
    vats = [t for t in tax_ids if t.get("type") in VAT_TYPES]
    same = [t for t in vats if normal_vat(t.get("value") or "") == normal_vat(number)]
    stale = [t["id"] for t in vats if t not in same]
    return (None if same else {"type": vat_type(number), "value": number}), stale


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def customer_search_query(client_id: str) -> str:
    """Stripe search query for the customer created for ``client_id``."""
    return f"metadata['msp_hub_client_id']:'{_quote(client_id)}'"


def invoice_search_query(action_key: str) -> str:
    """Stripe search query for the invoice created for the action ``action_key``."""
    return f"metadata['msp_hub_action_key']:'{_quote(action_key)}'"


def to_invoice_params(action: Action, customer_id: str, settings: StripeSettings) -> dict[str, Any]:
    """POST /v1/invoices params: a draft that sweeps nothing and waits for us to finalize it; with
    the payload's ``footer`` and ``custom_fields`` (the MSP's legal mentions), and
    ``automatic_tax[enabled]`` when Stripe Tax computes the tax (settings and payload agree)."""
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
    if payload.get("footer"):
        params["footer"] = payload["footer"]
    if payload.get("custom_fields"):
        params["custom_fields"] = [{"name": f["name"], "value": f["value"]} for f in payload["custom_fields"]]
    if uses_stripe_tax(payload, settings):
        params["automatic_tax"] = {"enabled": True}
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
    q = str(line["quantity"])
    forms = [(q, format_amount(unit, currency))]             # "1.25 h × 95.00 EUR"
    if _decimal(q) is not None:                               # "1,25 h × 95,00 EUR", as French lines say it
        forms.append((i18n.number(q, "fr"), i18n.money(unit, currency, "fr")))
    said = "|".join(rf"(?<![\d.,]){re.escape(a)}(?: h)? [×x] {re.escape(b)}" for a, b in forms)
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


def to_line_params(line: dict[str, Any], period_start: int, period_end: int, currency: str,
                   tax_rate: str | None = None) -> dict[str, Any]:
    """One add_lines line: quantity x unit amount when that is the hub's amount to the cent
    (``price_data`` with an inline product named like the line, as this API version takes a unit
    amount on a line), else the hub's amount, with the quantity written in the description.

    ``period_end`` is the hub's exclusive end; Stripe's ``period.end`` is inclusive, hence -1.
    ``tax_rate``: the id of the line's Stripe tax rate (``tax_rates``), none for an untaxed line.
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
    if tax_rate:
        params["tax_rates"] = [tax_rate]
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


def invoice_tax(invoice: dict[str, Any]) -> int | None:
    """The tax Stripe computed on an invoice: the sum of its ``total_taxes`` (None if it has none)."""
    taxes = invoice.get("total_taxes")
    return None if taxes is None else sum(int(t.get("amount") or 0) for t in taxes)


def to_push_result(invoice: dict[str, Any], payload: dict[str, Any], note: str = "",
                   updated: list[str] | None = None) -> PushResult:
    """The engine's PushResult for a Stripe invoice (``details["draft"]`` when it is one;
    ``details["customer_updated"]``: the customer fields this push changed in Stripe)."""
    number = invoice.get("number") or invoice["id"]
    total = invoice.get("total")
    currency = str(invoice.get("currency") or payload.get("currency") or "")
    who = payload.get("client_name") or invoice.get("customer_name") or invoice.get("customer")
    summary = f"Stripe invoice {number} ({invoice.get('status')}) for {who}"
    if total is not None and currency:
        summary += f": {format_amount(total, currency)}"
    tax = invoice_tax(invoice)
    if tax and currency:
        summary += f" (tax {format_amount(tax, currency)})"
    if note:
        summary += f"; {note}"
    if updated:
        summary += f"; customer {invoice.get('customer')} updated: {', '.join(updated)}"
    details = {"number": invoice.get("number"), "total": total, "currency": currency.upper(),
               "status": invoice.get("status"), "customer": invoice.get("customer"),
               "hosted_invoice_url": invoice.get("hosted_invoice_url"), "invoice_id": invoice["id"]}
    if tax:
        details["tax"] = tax
    if updated:
        details["customer_updated"] = list(updated)
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
                 retrying: Callable[[], tenacity.Retrying] | None = None, limiter: RateLimiter | None = None):
        self.settings = settings
        if limiter is None:   # this process only; register_connectors shares it through the store
            limiter = RateLimiter(rate_key(settings), settings.rate_limit)
        self.client = StripeClient(settings.base_url, settings.api_key, http=http, retrying=retrying,
                                   limiter=limiter)
        self._rate_ids: dict[str, str] = {}   # tax rate key -> Stripe id, found or made by this connector

    def streams(self) -> list:
        return []

    def close(self) -> None:
        self.client.close()

    def check(self) -> str:
        """One cheap authenticated request, tried once: GET /v1/customers?limit=1.
        Returns what it did; raises the VendorError of the failure (hub.check names the fix)."""
        import stripe
        try:
            self.client._sdk.v1.customers.list({"limit": 1})
        except stripe.StripeError as exc:
            raise self.client._to_hub_error(exc, "GET", "/v1/customers") from None
        return "GET /v1/customers?limit=1"

    def push(self, action: Action, context) -> PushResult:
        """Send one action exactly once; return the Stripe invoice as a PushResult. A failed push
        forgets the tax rates remembered (one archived meanwhile is looked up again next time)."""
        try:
            return self._push(action, context)
        except Exception:
            self._rate_ids.clear()
            raise

    def _push(self, action: Action, context) -> PushResult:
        if action.kind == FINALIZE:
            return self._push_finalize(action, context)
        if action.kind == VOID:
            return self._push_void(action, context)
        if action.kind == CREDIT_NOTE:
            return self._push_credit_note(action, context)
        if action.kind != INVOICE:
            raise ValueError(f"the stripe connector cannot push {action.kind!r} actions")
        payload = check_payload(action)
        automatic = self._automatic(action, payload)
        progress = context.progress or {}

        customer_id, existed = self._customer(action, context)
        invoice = self._find_invoice(action, customer_id, existed, progress)
        updated: list[str] = []
        if invoice is None or invoice["status"] == "draft":
            if existed and (payload.get("customer") or payload.get("locale")):
                updated = self._update_customer(action, payload, customer_id, context)
            rates = {} if automatic else self._tax_rates(action, payload, context)
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

        invoice = self._add_lines(action, payload, invoice, present, context, rates)
        self._check_subtotal(action, payload, invoice)
        if not automatic:
            self._check_tax(action, payload, invoice)
        if payload.get("finalize", True) is False:
            context.save_progress(invoice_id=invoice["id"], step="drafted")
            return to_push_result(invoice, payload, note="a draft, left for review", updated=updated)
        invoice = self._finalize(action.key, invoice["id"], context)
        context.save_progress(invoice_id=invoice["id"], step="finalized")
        return to_push_result(invoice, payload, updated=updated)

    def sent_objects(self) -> Iterator[dict[str, Any]]:
        """Everything the hub sent to this Stripe account, from Stripe itself (no store needed).

        Yields ``{"object": "customer", "client_id", "customer_id", "name"}`` for every customer
        carrying ``metadata.msp_hub_client_id``, then ``{"object": "invoice", "action_key",
        "invoice_id", "status", "customer", "total" (before tax: Stripe's subtotal), "currency", "number",
        "client_id", "period"}`` for every invoice carrying ``metadata.msp_hub_action_key``, newest first,
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
                       "customer": invoice.get("customer"), "total": invoice.get("subtotal", invoice.get("total")),
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

    # --- tax ---

    def _automatic(self, action: Action, payload: dict) -> bool:
        """Whether Stripe Tax computes this invoice's tax: the plan (``tax.automatic``) and
        ``[connectors.stripe] automatic_tax`` must agree, and the client needs an address."""
        block = payload.get("tax")
        wants = uses_stripe_tax(payload, self.settings) or is_automatic(payload)
        if block is not None and wants != self.settings.automatic_tax:
            if wants:
                raise MappingError(f"action {action.key}: the plan asks Stripe Tax (tax.automatic) but "
                                   f"[connectors.stripe] automatic_tax is false; set automatic_tax = true once "
                                   f"Stripe Tax is active in the Stripe account, or let the plan use tax rates. "
                                   f"{NOT_SENT}")
            raise MappingError(f"action {action.key}: [connectors.stripe] automatic_tax = true asks Stripe Tax, but "
                               f"the plan computed the VAT by rate (tax.automatic is false); make them agree: "
                               f"automatic_tax = false in [connectors.stripe], or Stripe Tax in the plan's "
                               f"[billing.tax]. {NOT_SENT}")
        if not wants:
            return False
        address = (payload.get("customer") or {}).get("address") or {}
        if not address.get("country"):
            raise MappingError(f"action {action.key}: Stripe Tax needs the address of {payload['client_name']} (at "
                               f"least its country) and the payload has none; fill in the company's address in "
                               f"the PSA (or the contract), or set automatic_tax = false in [connectors.stripe]. "
                               f"{NOT_SENT}")
        return True

    def _tax_rates(self, action: Action, payload: dict, context) -> dict[str, str]:
        """Rate key -> Stripe tax rate id for every rate the lines use: found by its
        ``metadata.msp_hub_tax_rate`` among the active tax rates (listed once per connector, then
        remembered), else created once (idempotency key from the rate key; a rate archived in
        Stripe is replaced by a new one under the key's next step, ``create:a1``...)."""
        country = (payload.get("tax") or {}).get("country")
        wanted: dict[str, tuple[str, str]] = {}
        for line in payload["lines"]:
            if line.get("tax"):
                tax = line["tax"]
                wanted[tax_rate_key(tax["percent"], tax["name"], country)] = (tax["percent"], tax["name"])
        if not wanted:
            return {}
        if any(k not in self._rate_ids for k in wanted):
            active, archived = self._listed_rates()
            self._rate_ids.update(active)
            for key in [k for k in wanted if k not in self._rate_ids]:
                percent, name = wanted[key]
                params = to_tax_rate_params(percent, name, country)
                step = f"create:a{archived[key]}" if archived.get(key) else "create"
                rate = self._send(context, f"tax_rate:{key}", step,
                                  lambda k, params=params: self.client.create_tax_rate(params, idempotency_key=k),
                                  lambda key=key: self._listed_rates()[0].get(key))
                self._rate_ids[key] = rate if isinstance(rate, str) else rate["id"]
        return {k: self._rate_ids[k] for k in wanted}

    def _listed_rates(self) -> tuple[dict[str, str], dict[str, int]]:
        """The tax rates this hub made, by key: the id of the oldest active one, and how many of
        that key were archived (``GET /v1/tax_rates``, every page)."""
        active: dict[str, str] = {}
        archived: dict[str, int] = {}
        for rate in sorted(self.client.iter_tax_rates(), key=lambda r: (r.get("created") or 0, r["id"])):
            key = (rate.get("metadata") or {}).get("msp_hub_tax_rate")
            if not key:
                continue
            if rate.get("active", True):
                active.setdefault(key, rate["id"])
            else:
                archived[key] = archived.get(key, 0) + 1
        return active, archived

    # --- customers ---

    def _update_customer(self, action: Action, payload: dict, customer_id: str, context) -> list[str]:
        """Make an existing customer's details what the payload says, once: compare, then write
        only what differs (a rerun writes nothing). Returns the names of the fields changed."""
        customer = self.client.retrieve_customer(customer_id, expand=["tax_ids"])
        if customer.get("deleted"):
            raise VendorError(VENDOR, None, "GET", f"/v1/customers/{customer_id}",
                              f"the Stripe customer {customer_id} of {action.client_id} was deleted; remove the "
                              f"client's stripe link (or link another customer), then push again. {NOT_SENT}")
        wanted = wanted_customer(payload)
        params, changed = customer_changes(wanted, customer)
        tax_ids = customer.get("tax_ids") or {}
        ids = list(tax_ids.get("data") or [])
        if tax_ids.get("has_more"):
            ids = list(self.client.iter_customer_tax_ids(customer_id))
        add, stale = vat_changes(wanted, ids)
        if params:
            digest = hashlib.sha256(repr(sorted(params.items())).encode()).hexdigest()[:12]
            self._send(context, action.key, f"customer:{digest}",
                       lambda key: self.client.update_customer(customer_id, params, idempotency_key=key),
                       lambda: None)
        if add:
            self._send(context, action.key, f"tax_id:{normal_vat(add['value'])}",
                       lambda key: self.client.create_customer_tax_id(customer_id, add, idempotency_key=key),
                       lambda: None)
        for tax_id in stale:
            try:
                self.client.delete_customer_tax_id(customer_id, tax_id)
            except VendorError as exc:
                if exc.status != 404:  # 404: deleted already (an earlier attempt, or the dashboard)
                    raise
        if add or stale:
            changed.append("VAT number")
        return changed

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


    def _add_lines(self, action: Action, payload: dict, invoice: dict, present: int, context,
                   rates: dict[str, str] | None = None) -> dict:
        """Add the lines the draft does not have yet, in order, each request with its own key, a
        taxed line with its tax rate (``rates``: rate key -> Stripe id); return the draft as Stripe
        has it after."""
        lines = payload["lines"]
        invoice_id = invoice["id"]
        if present > len(lines):
            raise VendorError(VENDOR, None, "POST", f"/v1/invoices/{invoice_id}/add_lines",
                              f"draft invoice {invoice_id} already has {present} lines from msp-hub "
                              f"but the action has {len(lines)}; check the draft in Stripe")
        currency = str(payload["currency"]).lower()
        start, end = to_epoch(payload["period_start"]), to_epoch(payload["period_end"])
        country = (payload.get("tax") or {}).get("country")
        rates = rates or {}
        params = [to_line_params(line, start, end, currency,
                                 rates.get(tax_rate_key(line["tax"]["percent"], line["tax"]["name"], country))
                                 if line.get("tax") else None)
                  for line in lines]

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

    def _check_tax(self, action: Action, payload: dict, invoice: dict) -> None:
        """Refuse to finalize when Stripe's tax or total with tax is not the plan's (the plan
        computes the tax per line, half up): the draft stays, both figures are in the error."""
        block = payload.get("tax")
        if not block:
            return
        currency = str(payload["currency"])
        tax, total = invoice_tax(invoice) or 0, invoice.get("total")
        if tax != block["total_tax"] or (total is not None and total != block["total_with_tax"]):
            raise VendorError(VENDOR, None, "POST", f"/v1/invoices/{invoice['id']}/finalize",
                              f"draft invoice {invoice['id']} for {action.key} has tax {format_amount(tax, currency)} "
                              f"and total {format_amount(total if total is not None else 0, currency)} in Stripe "
                              f"but the plan has tax {format_amount(block['total_tax'], currency)} and total "
                              f"{format_amount(block['total_with_tax'], currency)}; it was not finalized: check "
                              f"the tax rates on the draft's lines and the customer's tax status in Stripe, "
                              f"then delete the draft and push again")

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
        invoice = self._hub_invoice(payload, f"/v1/invoices/{invoice_id}/finalize",
                                    " (deleted during review?); push the invoice action again to make a new draft",
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
        return self._hub_invoice(payload, path, f"; nothing was sent for {action.key}: check the invoice in the "
                                                f"dashboard", f"nothing was sent for {action.key}: check its invoice_id")

    def _hub_invoice(self, payload: dict[str, Any], path: str, missing: str, mismatch: str) -> dict:
        """The invoice ``payload["invoice_id"]``, checked to be the one the hub sent for
        ``payload["invoice_key"]`` (its metadata); a VendorError whose text ends with ``missing``
        when Stripe has none, with ``mismatch`` when it was made for another action."""
        invoice_id = str(payload["invoice_id"])
        try:
            invoice = self.client.retrieve_invoice(invoice_id)
        except VendorError as exc:
            if exc.status != 404:
                raise
            raise VendorError(VENDOR, 404, "GET", f"/v1/invoices/{invoice_id}",
                              f"invoice {invoice_id} of {payload['invoice_key']} does not exist in Stripe"
                              f"{missing}") from None
        owner = (invoice.get("metadata") or {}).get("msp_hub_action_key")
        if owner != payload["invoice_key"]:
            raise VendorError(VENDOR, None, "POST", path,
                              f"invoice {invoice_id} was made for {owner!r}, not {payload['invoice_key']!r}; "
                              f"{mismatch}")
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
                return self.client.void_invoice(invoice_id, idempotency_key=key)
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
        for note in self.client.iter_credit_notes(invoice_id):
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
                          lambda key: self.client.create_credit_note(params, idempotency_key=key),
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
    if settings is None:
        return []
    return [StripeConnector(settings, limiter=limiter_for(config, VENDOR, rate_account(settings), settings.rate_limit))]


def rate_account(settings: StripeSettings) -> tuple[str, str]:
    """What names the Stripe account of a rate limit (hashed into its key, never stored)."""
    return settings.base_url, settings.api_key.reveal()


def rate_key(settings: StripeSettings) -> str:
    return account_key(VENDOR, *rate_account(settings))
