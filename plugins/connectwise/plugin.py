"""ConnectWise PSA in hub vocabulary: mapping functions, settings, the connector and its hookimpl.

Streams (all incremental on ``lastUpdated``, forward-only by id, one transaction per page):

- ``clients`` (``/company/companies``), ``agreements`` (``/finance/agreements``), ``time_entries``
  (``/time/entries``), ``products`` (``/procurement/products``): one request per 1,000 records
  changed since the cursor (at least one per run), plus one for the empty page that ends a read
  whose answers carry no Link header (see ``ConnectWiseClient.iter_pages``: a short page is never
  taken for the end), plus the ``/count`` on a full pass.
  A company carries its billing details (address, ``country`` coded ISO 3166-1 alpha-2,
  ``taxIdentifier`` as the VAT number) and its billing e-mail is its ``invoiceToEmailAddress``,
  else the e-mail of its ``billingContact``, else of its ``defaultContact``: those contacts are
  read with ``GET /company/contacts`` (``id in (...)``, only ``id,communicationItems``), one
  request per 100 contacts of a page of companies (plus the empty page ending each read, without
  Link headers), and only for the companies the pass reads (changed since the cursor), each
  contact once per pass. A contact's e-mail changed without its company changing is seen on the
  next full pass (``msp-hub resync --connector connectwise --stream clients --full``).
- ``additions``: the API lists additions per agreement only (``/finance/agreements/{id}/additions``),
  so a run reads the agreements changed since the cursor and asks for the additions of each: two
  requests per agreement (its page and the empty one that ends it, when no Link header says so),
  plus one per 1,000 agreements. Editing an addition need not touch its agreement, so every
  ``additions_sweep_hours`` (default 24; 0 = every run) a run reads the additions of every
  agreement instead: about 2A + A/1000 requests for A agreements.
- ``tickets`` (table ``tickets``): the tickets the hub made, found by ``externalXRef like
  "msp-hub:%"``, each with ``touched`` (see below). One request per 1,000 tickets changed, one per
  board among them (its statuses, once per run), and one per 100 tickets whose record shows no
  touch (``GET /time/entries`` with ``chargeToId in (...)``, only ``id,chargeToId`` asked for);
  each of those reads one more for its empty last page when the answers carry no Link header.
- ``adopted_tickets`` (table ``tickets``): the tickets made outside the hub that it adopted for
  an alert (their ids, from the engine through ``follow_tickets``), read whole on every pass: one
  request per 100, with ``touched`` as above.
- ``configurations`` (``/company/configurations``) and ``service_tickets`` (``/service/tickets``,
  every ticket of every company, whoever opened it: the ``tickets`` stream above keeps only the
  hub's), only when ``report_streams`` turns them on (off by default): read like ``clients``,
  incremental on ``lastUpdated`` with the ``/count`` on a full pass, asking only for the fields
  the reports read (``fields=``, see ``CONFIGURATION_FIELDS`` and ``SERVICE_TICKET_FIELDS``): one
  request per 1,000 records changed (at least one per run), plus the empty last page without
  Link headers. Only the reports read their tables: a failed pass of one holds no invoice and no
  ticket. A configuration or ticket deleted in ConnectWise stays in the store as last read.

A ticket is **touched** once a person worked on it; the hub never closes such a ticket. Read from
the ticket itself, for free: ``actualHours`` above 0 (time logged); open in a status other than the
one the hub opens tickets in (the board's default, else its first open status: the hub never sets
another while a ticket is open); closed by someone (``closedBy``) other than the hub's API member
(``api_member``, else the member that created the ticket, ``_info.enteredBy``: the hub made it).
Failing those, one request asks whether time is charged to it. ``_info.updatedBy`` is not used:
the hub's own next write (a note on a re-trigger) overwrites it, and an e-mail from the customer
sets it too. The audit trail (``/system/audittrail``) would cost a request per ticket and mean
parsing free text. A status set back to the board's default, or time logged without moving
``lastUpdated``, is not seen by the stream; the close push asks again right before it acts.

Pushes (``action_kinds``): ``agreement_quantity`` (one PATCH), ``ticket`` (a lookup by
``externalXRef``, batched: see below; then, when the payload has ``psa_ticket_id`` or ``adopt_refs``, a GET of that
ticket and one lookup per reference, and a ticket of the alert's company found that way is
adopted, for its notes and at most a POST of one internal note instead of the create; else at
most a board, a priority and a type lookup, each once per run, and a POST; then, when the payload names the device's ``configuration``, one configuration lookup
(serial number or name), and on a match the ticket's configurations, at most a POST associating
it and its internal note), ``ticket_note`` (a ticket lookup, the ticket's notes, then at most a POST),
an adopted ticket is read by its id (``ticket_id``) instead of the lookup;
``ticket_close`` (the lookup, the board's statuses once per run, at most one time count, at most a
PATCH of the status, the notes and at most a POST: 3 to 6 requests) and ``ticket_reopen`` (the
lookup, the statuses, at most a PATCH, the notes, at most a POST: 3 to 5). Each lookup or list
that finds something costs one more request, for the empty page that ends it, while the answers
carry no Link header (a single page says nothing of what follows). ConnectWise has no
idempotency key, so every push looks before it creates, and a create is never resent blindly
after an unclear failure; closing a closed ticket or reopening an open one changes nothing, and a
note carries ``[msp-hub:<action key>]`` so that it is added once.

Lookups are batched across the pushes of a run: the first ``ticket`` or ``ticket_note`` push that
needs its ticket looks up, in one request (``externalXRef in (...)``, paged, the URL kept under
``MAX_CONDITIONS_URL``), the references of the unsent ticket and note actions that follow it in
the outbox (as the engine sends them, by key), and the first ``ticket`` push naming a device's
configuration looks up those of the following ticket pushes likewise; each later push takes its
answer instead of a request of its own. An alert storm thus costs about one request a ticket
(its POST), plus one per batch (about 20 references) and a constant. Exactly once: see ``_by_ref``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Callable, Iterator
from urllib.parse import quote as url_quote, urlsplit

import httpx
import structlog
import tenacity

from hub import Action, Client, ConfigError, MappingError, Page, PushResult, Stream, VendorError, hookimpl, map_records
from hub.errors import IncompleteError, MalformedResponseError
from hub.config import HubConfig, Secret
from hub.http import retry_policy
from hub.ratelimit import RateLimiter, account_key, limiter_for, read_rate
from hub.money import exponent
from hub.records import (BILLABLE, DO_NOT_BILL, NO_CHARGE, NO_DEFAULT, Agreement, AgreementAddition, Configuration,
                         ProductLine, ServiceTicket, Ticket, TimeEntry)

from plugins.connectwise.client import (API_PATH, DEFAULT_API_VERSION, DEFAULT_CODEBASE, MAX_CONDITIONS_URL,
                                        MAX_EXTERNAL_REF, MAX_PAGE_SIZE, VENDOR, ConnectWiseClient, quote,
                                        ref_batches)

log = structlog.get_logger()
# What the mapping has said once in this process (a vendor variant it accepts).
_SAID: set[str] = set()

SOURCE = "connectwise"
DEFAULT_CURRENCY = "EUR"
DEFAULT_OVERLAP_SECONDS = 300
DEFAULT_SWEEP_HOURS = 24
MAX_SUMMARY = 100  # Ticket.summary, "Max length: 100" in the spec
SETTINGS_KEYS = ("site", "base_url", "codebase", "company_id", "public_key", "private_key_env", "private_key_file",
                 "client_id", "api_version", "page_size", "currency", "overlap_seconds", "additions_sweep_hours",
                 "api_member", "rate_limit", "report_streams")
# Streams only the reports read (hub.reports): off unless ``report_streams`` turns them on.
REPORT_STREAMS = ("configurations", "service_tickets")
ACTION_KINDS = frozenset({"agreement_quantity", "ticket", "ticket_note", "ticket_close", "ticket_reopen"})
HUB_REF_PREFIX = "msp-hub:"   # the externalXRef of every ticket the hub makes starts with it
LOOKUP_SECONDS = 900          # boards, statuses, priorities and types are read again after this
REF_SECONDS = 300             # a batched ticket lookup serves the pushes of the next 5 minutes only
BATCHED_KINDS = ("ticket", "ticket_note")   # the pushes whose ticket lookups are batched
LEFT_OPEN_NOTE = "The alert cleared in the RMM; the ticket was left open because a technician worked on it ({why})."

_UTC = timezone.utc
_fromisoformat = datetime.fromisoformat
_BILLABLE = {"Billable": BILLABLE, "DoNotBill": DO_NOT_BILL, "NoCharge": NO_CHARGE, "NoDefault": NO_DEFAULT}
_AGREEMENT_STATUSES = ("active", "cancelled", "expired", "inactive")
_TICKET_CHARGES = ("ServiceTicket", "ProjectTicket")
_INVOICED_STATUSES = ("Billed", "BilledAgreement")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CODEBASE = re.compile(r"^v(4_6_release|\d{4}_\d+)$")


# --- mapping -----------------------------------------------------------------------------------
# These run once per record on pulls of a million time entries, so they avoid needless work.

def _when(value: Any) -> datetime | None:
    """A ConnectWise datetime (``2025-06-01T08:30:00Z``) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=_UTC)
    return moment if moment.utcoffset() == timedelta(0) else moment.astimezone(_UTC)


def _date(value: Any) -> str | None:
    """A ConnectWise datetime used as a date (agreement start, addition effective) as ISO date."""
    moment = _when(value)
    return None if moment is None else moment.date().isoformat()


@lru_cache(maxsize=4096)
def _decimal_text(value: Any) -> str:
    """A JSON number as a plain decimal string: 2.0 -> "2", 0.25 -> "0.25" (never an exponent).

    ConnectWise sends decimals as JSON numbers; the shortest repr of the float parsed from them
    is the decimal the server wrote, so going through ``repr`` loses nothing.
    """
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


@lru_cache(maxsize=4096)
def _minor(value: Any, currency: str) -> int:
    """An amount (JSON number) in integer minor units of ``currency``, rounded half up."""
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return int(number.scaleb(exponent(currency)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _ref_id(ref: Any) -> str | None:
    """The id of a reference object (``{"id": 250, "name": ...}``) as text, or None."""
    if isinstance(ref, dict):
        ref_id = ref.get("id")
        if ref_id is not None:
            return str(ref_id)
    return None


def _ref_name(ref: Any, key: str = "name") -> str:
    return str(ref.get(key) or "") if isinstance(ref, dict) else ""


def _billable(value: Any, what: str) -> str:
    if value is None:
        return NO_DEFAULT
    option = _BILLABLE.get(value)
    if option is None:
        raise MappingError(f"connectwise {what} has billable option {value!r}, not one of {', '.join(_BILLABLE)}")
    return option


def _record_id(raw: Any, what: str) -> str:
    if not isinstance(raw, dict) or raw.get("id") is None:
        raise MappingError(f"connectwise {what} without an id: {str(raw)[:120]}")
    return str(raw["id"])


def _updated(raw: dict) -> datetime | None:
    info = raw.get("_info")
    return _when(info.get("lastUpdated")) if isinstance(info, dict) else None


def company_currency(raw: dict[str, Any]) -> str | None:
    """A company's currency code, upper case, or None when it has none.

    The 2022.1 ``CurrencyReference`` carries the code in ``currencyCode``. A reference with
    ``isoCode`` in its place (as other versions and fakes send) is read too, and said once in the
    log, so that it is not mistaken for a company without a currency.
    """
    ref = raw.get("currency")
    if not isinstance(ref, dict):
        return None
    code = ref.get("currencyCode")
    if code is None and ref.get("isoCode") is not None:
        code = ref["isoCode"]
        if "currency.isoCode" not in _SAID:
            _SAID.add("currency.isoCode")
            log.warning("connectwise.currency_iso_code", company=raw.get("id"),
                     detail="companies carry currency.isoCode where the 2022.1 type has currency.currencyCode; "
                            "it is read as the currency code")
    return code.strip().upper() if isinstance(code, str) and code.strip() else None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def company_country(raw: dict[str, Any]) -> str | None:
    """A company's country (a ``CountryReference``): its ISO 3166-1 alpha-2 code when the hub can
    tell it (from ``identifier`` when that is a code, else from ``name``), else the name as read
    (``hub.clientdetails`` names it as a country it cannot code)."""
    from hub.clientdetails import country_code
    ref = raw.get("country")
    if not isinstance(ref, dict):
        return _text(ref)
    for key in ("identifier", "name"):
        code = country_code(ref.get(key))
        if code is not None:
            return code
    return _text(ref.get("name")) or _text(ref.get("identifier")) or \
        (f"country id {ref['id']}" if ref.get("id") is not None else None)


def billing_contact_id(raw: dict[str, Any]) -> tuple[int, str] | None:
    """(contact id, how it is named) whose e-mail a company is invoiced at, when the company has
    no ``invoiceToEmailAddress``: its billing contact, else its default contact; None: neither."""
    if _text(raw.get("invoiceToEmailAddress")):
        return None
    for key, label in (("billingContact", "billing contact"), ("defaultContact", "default contact")):
        ref = raw.get(key)
        if isinstance(ref, dict) and str(ref.get("id", "")).isdigit():
            return int(ref["id"]), label
    return None


def to_client(raw: dict[str, Any], currency: str | None = None,
              contact_emails: dict[int, str | None] | None = None) -> Client:
    """A ConnectWise company as a hub Client, with its billing details as ConnectWise has them.

    With ``currency`` (the connector's, that every ConnectWise amount is read in), a company whose
    own currency is another is a MappingError: its agreement and time amounts would be billed in
    the wrong currency.

    The address (``addressLine1``, ``addressLine2``, ``city``, ``state``, ``zip``, ``country``),
    ``taxIdentifier`` as the VAT number, and the billing e-mail: ``invoiceToEmailAddress``, else
    the e-mail of the billing contact, else of the default contact, from ``contact_emails``
    (contact id -> e-mail, read by the connector). Values are kept as read: ``hub.clientdetails``
    judges them.
    """
    company_id = _record_id(raw, "company")
    name = raw.get("name") or raw.get("identifier") or company_id
    own = company_currency(raw) if currency is not None else None
    if own is not None and own != currency.upper():
        raise MappingError(f"connectwise company {company_id} ({name}) is in {own} in ConnectWise, but "
                           f"[connectors.connectwise] currency is {currency.upper()}: its amounts would be billed "
                           f"in the wrong currency, so it is set aside (fix: set currency = \"{own}\" if every "
                           f"company uses it, or correct the company's currency in ConnectWise)")
    email, email_from = _text(raw.get("invoiceToEmailAddress")), None
    if email is not None:
        email_from = "invoiceToEmailAddress"
    else:
        contact = billing_contact_id(raw)
        if contact is not None and contact_emails and contact_emails.get(contact[0]):
            email, email_from = contact_emails[contact[0]], f"{contact[1]} {contact[0]}"
    try:
        return Client(SOURCE, company_id, name, _updated(raw),
                      address_line1=_text(raw.get("addressLine1")), address_line2=_text(raw.get("addressLine2")),
                      city=_text(raw.get("city")), state=_text(raw.get("state")), postal_code=_text(raw.get("zip")),
                      country=company_country(raw), vat_number=_text(raw.get("taxIdentifier")),
                      email=email, email_from=email_from)
    except ValueError as exc:
        raise MappingError(f"connectwise company {company_id} has a bad lastUpdated: {exc}") from None


def to_agreement(raw: dict[str, Any]) -> Agreement:
    """A ConnectWise agreement as a hub Agreement (``type_name`` is the agreement type's name)."""
    agreement_id = _record_id(raw, "agreement")
    what = f"agreement {agreement_id} ({raw.get('name') or 'no name'})"
    company = _ref_id(raw.get("company"))
    if company is None:
        raise MappingError(f"connectwise {what} has no company id")
    status = raw.get("agreementStatus")
    if status is None:
        status = "cancelled" if raw.get("cancelledFlag") else "active"
    elif str(status).lower() not in _AGREEMENT_STATUSES:
        raise MappingError(f"connectwise {what} has agreementStatus {status!r}, not one of "
                           f"Active, Cancelled, Expired, Inactive")
    units, limit = raw.get("applicationUnits"), raw.get("applicationLimit")
    try:
        return Agreement(
            SOURCE, agreement_id, company, raw.get("name") or agreement_id, _ref_name(raw.get("type")),
            str(status).lower(), _date(raw.get("startDate")),
            None if raw.get("noEndingDateFlag") else _date(raw.get("endDate")),
            _ref_name(raw.get("billingCycle")) or None, units.lower() if isinstance(units, str) else None,
            None if limit is None else _decimal_text(limit), _updated(raw))
    except (ValueError, TypeError, InvalidOperation) as exc:
        raise MappingError(f"connectwise {what}: {exc}") from None


def to_addition(raw: dict[str, Any], agreement: Agreement, currency: str = DEFAULT_CURRENCY) -> AgreementAddition:
    """An addition of ``agreement`` (already mapped) as a hub AgreementAddition.

    Additions carry no company: the client is the agreement's. ``unit_price`` is in minor units
    of ``currency`` (ConnectWise amounts carry no currency of their own).
    """
    addition_id = _record_id(raw, f"addition of agreement {agreement.source_id}")
    what = f"addition {addition_id} of agreement {agreement.source_id}"
    quantity, price = raw.get("quantity"), raw.get("unitPrice")
    try:
        return AgreementAddition(
            SOURCE, addition_id, agreement.source_id, agreement.client_source_id,
            _ref_name(raw.get("product"), "identifier"),
            raw.get("description") or raw.get("invoiceDescription") or "",
            "0" if quantity is None else _decimal_text(quantity),
            0 if price is None else _minor(price, currency), currency,
            _billable(raw.get("billCustomer"), what), _date(raw.get("effectiveDate")),
            _date(raw.get("cancelledDate")), _updated(raw))
    except (ValueError, TypeError, InvalidOperation) as exc:
        raise MappingError(f"connectwise {what}: {exc}") from None


def to_time_entry(raw: dict[str, Any], currency: str = DEFAULT_CURRENCY) -> TimeEntry:
    """A ConnectWise time entry as a hub TimeEntry.

    What the hub bills on stays as ConnectWise has it: an entry without a company gets an empty
    ``client_source_id`` and negative hours stay negative, for the hub's checks to report. An
    entry without an id or a ``timeStart`` (both required by the API) is refused. ``actualHours``
    is optional and nullable in the spec: a null is never 0 hours. It is computed as the PSA does,
    ``timeEnd - timeStart - hoursDeduct`` to the hundredth, when both times are there; else (or
    when the end is before the start) the entry is refused with the fix.
    """
    # Inlined lookups: this runs a million times on a first pull (see benchmarks/pull_time_entries.py).
    get = raw.get
    entry_id = get("id")
    if entry_id is None:
        raise MappingError(f"connectwise time entry without an id: {str(raw)[:120]}")
    try:
        start = get("timeStart")
        if not start:
            raise MappingError(f"connectwise time entry {entry_id} has no timeStart")
        start = _fromisoformat(start)
        if start.tzinfo is not _UTC:
            start = _when(get("timeStart"))
        end = get("timeEnd")
        if end:
            end = _fromisoformat(end)
            if end.tzinfo is not _UTC:
                end = _when(get("timeEnd"))
        else:
            end = None
        info = get("_info")
        updated = info.get("lastUpdated") if info else None
        if updated:
            updated = _fromisoformat(updated)
            if updated.tzinfo is not _UTC:
                updated = _when(info.get("lastUpdated"))
        else:
            updated = None
        company, member, agreement = get("company"), get("member"), get("agreement")
        work_type, work_role = get("workType"), get("workRole")
        hours, rate, invoice = get("actualHours"), get("hourlyRate"), get("invoice")
        option = get("billableOption")
        billable = _BILLABLE.get(option) if option is not None else NO_DEFAULT
        if billable is None:
            raise MappingError(f"connectwise time entry {entry_id} has billable option {option!r}, "
                               f"not one of {', '.join(_BILLABLE)}")
        ticket_id = None
        if get("chargeToType") in _TICKET_CHARGES:
            charge = get("chargeToId")
            # No ticket has id 0: a charge to ticket 0 is charged to no ticket.
            ticket_id = str(charge) if charge not in (None, 0, "0") else _ref_id(get("ticket"))
        return TimeEntry(
            SOURCE, str(entry_id),
            str(company["id"]) if company and company.get("id") is not None else "",
            (member.get("identifier") or member.get("name") or "") if member else "",
            start, end, _decimal_text(hours) if hours is not None else _computed_hours(entry_id, start, end, get),
            billable,
            (work_type.get("name") or "") if work_type else "", (work_role.get("name") or "") if work_role else "",
            ticket_id, str(agreement["id"]) if agreement and agreement.get("id") is not None else None,
            None if rate is None else _minor(rate, currency),
            bool(invoice and invoice.get("id") is not None) or get("status") in _INVOICED_STATUSES,
            get("notes") or "", updated)
    except MappingError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, InvalidOperation) as exc:
        raise MappingError(f"connectwise time entry {entry_id}: {exc}") from None


def _computed_hours(entry_id: Any, start: datetime, end: datetime | None, get: Callable[[str], Any]) -> str:
    """The hours of a time entry whose ``actualHours`` is null: ``timeEnd - timeStart - hoursDeduct``."""
    fix = "enter the end time or the actual hours of the entry in ConnectWise (Time > Time Entries)"
    if end is None:
        raise MappingError(f"connectwise time entry {entry_id} has no actualHours and no timeEnd to compute them "
                           f"from; a null is not 0 hours, so it is set aside (fix: {fix})")
    if end < start:
        raise MappingError(f"connectwise time entry {entry_id} has no actualHours and its timeEnd "
                           f"{end.isoformat()} is before its timeStart {start.isoformat()}; it is set aside "
                           f"(fix: {fix})")
    deduct = get("hoursDeduct")
    hours = Decimal(int((end - start).total_seconds())) / 3600 - (Decimal(repr(deduct)) if deduct else 0)
    return _decimal_text(hours.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def to_product_line(raw: dict[str, Any], currency: str = DEFAULT_CURRENCY) -> ProductLine:
    """A ConnectWise product line (``/procurement/products``) as a hub ProductLine."""
    product_id = _record_id(raw, "product")
    what = f"product {product_id}"
    quantity, price = raw.get("quantity"), raw.get("price")
    try:
        return ProductLine(
            SOURCE, product_id, _ref_id(raw.get("company")) or "",
            _ref_name(raw.get("catalogItem"), "identifier"),
            raw.get("description") or raw.get("customerDescription") or "",
            "0" if quantity is None else _decimal_text(quantity),
            0 if price is None else _minor(price, currency), currency,
            _billable(raw.get("billableOption"), what), _ref_id(raw.get("ticket")), _ref_id(raw.get("agreement")),
            _ref_id(raw.get("invoice")) is not None, _when(raw.get("purchaseDate")), _updated(raw))
    except (ValueError, TypeError, InvalidOperation) as exc:
        raise MappingError(f"connectwise {what}: {exc}") from None


def to_ticket(raw: dict[str, Any], touched: bool) -> Ticket:
    """A ConnectWise service ticket the hub made as a hub Ticket; ``touched`` is decided by the caller
    (it needs the board's statuses and maybe a request). ``closed_at`` is kept only while closed."""
    ticket_id = _record_id(raw, "ticket")
    company = _ref_id(raw.get("company"))
    if company is None:
        raise MappingError(f"connectwise ticket {ticket_id} has no company id")
    closed = bool(raw.get("closedFlag"))
    try:
        return Ticket(SOURCE, ticket_id, company, raw.get("externalXRef") or "", raw.get("summary") or "",
                      _ref_name(raw.get("board")), _ref_name(raw.get("status")), closed, bool(touched),
                      _when(raw.get("closedDate")) if closed else None, _updated(raw))
    except (ValueError, TypeError) as exc:
        raise MappingError(f"connectwise ticket {ticket_id}: {exc}") from None


def _calendar_date(value: Any) -> str | None:
    """A ConnectWise datetime that stands for a day (a warranty's end) as that ISO date, as
    written: ``2027-03-31T00:00:00Z`` -> ``2027-03-31`` (not moved to another day by a time zone)."""
    if value is None or value == "":
        return None
    return datetime.fromisoformat(value).date().isoformat()


def to_configuration(raw: dict[str, Any]) -> Configuration:
    """A ConnectWise configuration (``/company/configurations``) as a hub Configuration.

    ``warrantyExpirationDate`` becomes ``warranty_end`` (an ISO date, None when not set: not
    known, never "expired"). ``active`` is ``activeFlag``; when the answer has none, a status
    named Inactive says inactive. A configuration without a company cannot be placed with a
    client, and one without a name breaks the spec (it is required): both are set aside.
    """
    config_id = _record_id(raw, "configuration")
    company = _ref_id(raw.get("company"))
    fix = "open it in ConnectWise (Company > Configurations) and set it"
    if company is None:
        raise MappingError(f"connectwise configuration {config_id} ({raw.get('name') or 'no name'}) has no company "
                           f"id, so no client can be given it; it is set aside (fix: {fix})")
    name = _text(raw.get("name"))
    if name is None:
        raise MappingError(f"connectwise configuration {config_id} of company {company} has no name (required by "
                           f"the API); it is set aside (fix: {fix})")
    status = _ref_name(raw.get("status"))
    flag = raw.get("activeFlag")
    active = flag if isinstance(flag, bool) else status.strip().lower() != "inactive"
    try:
        return Configuration(SOURCE, config_id, company, name, _ref_name(raw.get("type")), status, active,
                             _text(raw.get("serialNumber")), _text(raw.get("deviceIdentifier")),
                             _calendar_date(raw.get("warrantyExpirationDate")), _updated(raw))
    except (ValueError, TypeError) as exc:
        raise MappingError(f"connectwise configuration {config_id} ({name}) has a bad date "
                           f"(warrantyExpirationDate {raw.get('warrantyExpirationDate')!r} or _info.lastUpdated): "
                           f"{exc}; it is set aside (fix: {fix} again)") from None


def to_service_ticket(raw: dict[str, Any]) -> ServiceTicket:
    """Any ConnectWise service ticket (``/service/tickets``) as a hub ServiceTicket.

    ``opened_at`` is ``_info.dateEntered``, ``closed_at`` the ``closedDate`` of a closed ticket
    (None while open: a reopened ticket may keep the date it was closed before), ``priority``
    the priority's name (``Priority 1 - Emergency Response``...), ``external_ref`` its
    ``externalXRef`` (the hub's own tickets carry ``msp-hub:...``). A ticket without a company is
    set aside (the API requires one; no client could be given it).
    """
    ticket_id = _record_id(raw, "service ticket")
    company = _ref_id(raw.get("company"))
    if company is None:
        raise MappingError(f"connectwise service ticket {ticket_id} ({str(raw.get('summary') or '')[:60]!r}) has "
                           f"no company id, so no client can be given it; it is set aside (fix: set its company "
                           f"in ConnectWise, Service Desk > Service Tickets)")
    closed = bool(raw.get("closedFlag"))
    info = raw.get("_info") if isinstance(raw.get("_info"), dict) else {}
    try:
        return ServiceTicket(SOURCE, ticket_id, company, str(raw.get("summary") or ""), _ref_name(raw.get("board")),
                             _ref_name(raw.get("status")), _ref_name(raw.get("priority")), closed,
                             _when(info.get("dateEntered")), _when(raw.get("closedDate")) if closed else None,
                             _text(raw.get("externalXRef")), _updated(raw))
    except (ValueError, TypeError) as exc:
        raise MappingError(f"connectwise service ticket {ticket_id} has a bad date (_info.dateEntered "
                           f"{info.get('dateEntered')!r}, closedDate {raw.get('closedDate')!r} or _info.lastUpdated): "
                           f"{exc}; it is set aside (fix: report it to ConnectWise support)") from None


# --- settings ----------------------------------------------------------------------------------

_SITE_EXAMPLE = 'site = "https://api-eu.myconnectwise.net" (api-na, api-au... or your own host)'
_SITE_FORMS = ("use the host (api-eu.myconnectwise.net), https://<host>, or the API URL "
               "https://<host>/v4_6_release/apis/3.0 (any codebase, or /apis/3.0 without one)")
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}   # a local simulator or tunnel may speak plain http


def _split_site(value: Any, fail: Callable[[str, str], ConfigError]) -> tuple[str, str | None]:
    """``(https://host[:port], codebase or None)`` from a bare host, ``https://host`` or a pasted API URL.

    Accepted: ``host``, ``https://host``, ``https://host/<codebase>``, ``https://host/<codebase>/apis/3.0``
    and ``https://host/apis/3.0``, with or without trailing slashes; the codebase is ``v4_6_release``
    or ``vYYYY_N``. Anything else (another path, a query, a login, http:// to a remote host) is refused.
    """
    if not isinstance(value, str) or not value.strip():
        raise fail("missing" if value is None else "must be a non-empty string", _SITE_EXAMPLE)
    text = value.strip()
    url = text if "://" in text else "https://" + text
    if "@" in re.split(r"[/?#]", url.split("://", 1)[1], maxsplit=1)[0]:   # never echoed: may hold a key
        raise fail("must not carry a login (user:password@)",
                   "drop the user:password@ part; the keys go in public_key and private_key_env")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise fail(f"is not a URL ({exc}), got {text!r}", _SITE_EXAMPLE) from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise fail(f"must be an https URL, got {text!r}", _SITE_EXAMPLE)
    if not host:
        raise fail(f"has no host, got {text!r}", _SITE_EXAMPLE)
    if scheme == "http" and host not in _LOOPBACK:
        raise fail(f"is plain http to {host}, which would send the API keys unencrypted, got {text!r}",
                   f"use https://{parts.netloc} (http:// is only for 127.0.0.1 or localhost)")
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        raise fail(f"must not carry a query or fragment, got {text!r}", _SITE_FORMS)
    segments = parts.path.rstrip("/").split("/")[1:] if parts.path.rstrip("/") else []
    codebase = None
    if segments and _CODEBASE.match(segments[0]):
        codebase, segments = segments[0], segments[1:]
    if segments not in ([], ["apis", "3.0"]):
        raise fail(f"is not a ConnectWise API URL: unexpected path {parts.path!r} in {text!r}", _SITE_FORMS)
    netloc = host if ":" not in host else f"[{host}]"
    return f"{scheme}://{netloc}{'' if port is None else f':{port}'}", codebase


@dataclass(frozen=True)
class ConnectWiseSettings:
    """The ``[connectors.connectwise]`` section, validated::

        [connectors.connectwise]
        site = "https://api-eu.myconnectwise.net"    # or your on-premise host, or the pasted API URL
        company_id = "mycompany"                      # the company you log in with
        public_key = "..."                            # an API member's key pair
        private_key_env = "CW_PRIVATE_KEY"            # or private_key_file = "secrets/cw"
        client_id = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"   # from developer.connectwise.com
        # codebase = "v4_6_release"   api_version = "2022.1"   page_size = 1000
        # currency = "EUR"   overlap_seconds = 300   additions_sweep_hours = 24
        # api_member = "msphub-api"   # the API member's identifier; default: who created each hub ticket
        # rate_limit = 10             # requests a second, 0 (the default) = none
        # report_streams = true       # or ["service_tickets"]: what the quarterly reports read

    ``report_streams`` turns on the streams only the reports read (``REPORT_STREAMS``):
    ``configurations`` (every company's configurations and their warranty dates) and
    ``service_tickets`` (every service ticket, whoever opened it). ``true`` is both, a list names
    some, ``false`` (the default) none: a hub that makes no report pays no request for them. On,
    each costs one request per sync once its first pass is done (one per 1,000 records changed,
    plus the empty page that ends a read without Link headers), and billing never waits for them.

    ConnectWise publishes no fixed quota: its "PSA API Requests" guide answers volume beyond
    capacity with 429 and a numeric Retry-After, which the client honours. So ``rate_limit`` is
    off by default; set it to pace the hub below what your site allows (shared by every process
    using the hub's database).
    """

    site: str
    company_id: str
    public_key: str
    private_key: Secret
    client_id: str
    codebase: str = DEFAULT_CODEBASE
    api_version: str = DEFAULT_API_VERSION
    page_size: int = MAX_PAGE_SIZE
    currency: str = DEFAULT_CURRENCY
    overlap_seconds: int = DEFAULT_OVERLAP_SECONDS
    additions_sweep_hours: int = DEFAULT_SWEEP_HOURS
    api_member: str | None = None
    rate_limit: float = 0.0
    report_streams: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: HubConfig) -> ConnectWiseSettings:
        """Read and check the section; a ConfigError names the key and the fix."""
        section = config.connector_settings(SOURCE, SETTINGS_KEYS, secrets=("private_key",))

        def fail(key: str, message: str, fix: str) -> ConfigError:
            return ConfigError(message, file=config.file, key=f"connectors.{SOURCE}.{key}", fix=fix)

        if "site" in section and "base_url" in section:
            raise fail("base_url", "given together with site", "keep only site")
        key = "site" if "site" in section or "base_url" not in section else "base_url"
        site, site_codebase = _split_site(section.get(key), lambda message, fix: fail(key, message, fix))
        def text(key: str, fix: str) -> str:
            value = section.get(key)
            if not isinstance(value, str) or not value.strip():
                raise fail(key, "missing" if value is None else "must be a non-empty string", fix)
            return value.strip()

        company_id = text("company_id", "use the company id you log in to ConnectWise with")
        public_key = text("public_key", "copy the public key of an API member (System > Members > API Members)")
        client_id = text("client_id", "register a clientId at https://developer.connectwise.com and paste the GUID")
        if not _GUID.match(client_id):
            raise fail("client_id", f"must be a GUID, got {client_id!r}",
                       "paste the clientId GUID from https://developer.connectwise.com (My Account > Client IDs)")

        codebase = section.get("codebase", site_codebase or DEFAULT_CODEBASE)
        if not isinstance(codebase, str) or not _CODEBASE.match(codebase.strip("/")):
            raise fail("codebase", f"must look like v4_6_release or v2024_1, got {codebase!r}",
                       f'use codebase = "{DEFAULT_CODEBASE}", or the Codebase of '
                       f"https://<site>/login/companyinfo/<company_id>")
        if site_codebase and codebase.strip("/") != site_codebase:
            raise fail("codebase", f"is {codebase.strip('/')!r} but {key} names the codebase {site_codebase!r}",
                       f"keep one: remove codebase, or make {key} the host only "
                       f"(e.g. {key} = {site.split('://', 1)[1]!r})")
        api_version = section.get("api_version", DEFAULT_API_VERSION)
        if not isinstance(api_version, str) or not re.match(r"^\d{4}\.\d+$", api_version):
            raise fail("api_version", f"must look like 2022.1, got {api_version!r}",
                       f'use api_version = "{DEFAULT_API_VERSION}" (the version this connector is tested with)')

        page_size = section.get("page_size", MAX_PAGE_SIZE)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise fail("page_size", f"must be an integer from 1 to {MAX_PAGE_SIZE}, got {page_size!r}",
                       f"use page_size = {MAX_PAGE_SIZE} or leave it out")
        currency = section.get("currency", DEFAULT_CURRENCY)
        if not isinstance(currency, str) or not re.match(r"^[A-Za-z]{3}$", currency):
            raise fail("currency", f"must be an ISO 4217 code, got {currency!r}",
                       'use the currency of your ConnectWise amounts, e.g. currency = "EUR"')
        overlap = section.get("overlap_seconds", DEFAULT_OVERLAP_SECONDS)
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap <= 86_400:
            raise fail("overlap_seconds", f"must be whole seconds from 0 to 86400, got {overlap!r}",
                       f"use overlap_seconds = {DEFAULT_OVERLAP_SECONDS}")
        sweep = section.get("additions_sweep_hours", DEFAULT_SWEEP_HOURS)
        if isinstance(sweep, bool) or not isinstance(sweep, int) or not 0 <= sweep <= 24 * 31:
            raise fail("additions_sweep_hours", f"must be whole hours from 0 to 744, got {sweep!r}",
                       f"use additions_sweep_hours = {DEFAULT_SWEEP_HOURS} (0 reads every agreement each run)")

        api_member = section.get("api_member")
        if api_member is not None and (not isinstance(api_member, str) or not api_member.strip()):
            raise fail("api_member", f"must be a member identifier, got {api_member!r}",
                       "use the Member ID of the API member (System > Members > API Members), or leave it out")

        reports = section.get("report_streams", False)
        names = ", ".join(f'"{n}"' for n in REPORT_STREAMS)
        if isinstance(reports, bool):
            reports = REPORT_STREAMS if reports else ()
        elif isinstance(reports, list) and all(isinstance(n, str) for n in reports):
            unknown = [n for n in reports if n not in REPORT_STREAMS]
            if unknown:
                raise fail("report_streams", f"names {', '.join(map(repr, unknown))}, not a report stream",
                           f"use report_streams = true (all of them), false, or a list of {names}")
            reports = tuple(n for n in REPORT_STREAMS if n in reports)
        else:
            raise fail("report_streams", f"must be true, false or a list of stream names, got {reports!r}",
                       f"use report_streams = true (all of them), false, or a list of {names}")
        rate = read_rate(section, config=config, connector=SOURCE, default=0.0,
                         why="ConnectWise publishes no quota; set one to pace the hub below what your site allows")
        private_key = config.secret(SOURCE, "private_key")
        log.info("connectwise.site", host=site, codebase=codebase.strip("/"),
                 codebase_from=f"{key} URL" if site_codebase else "codebase" if "codebase" in section else "default",
                 api_root=f"{site}/{codebase.strip('/')}{API_PATH}")
        return cls(site=site, company_id=company_id, public_key=public_key, private_key=private_key,
                   client_id=client_id, codebase=codebase.strip("/"), api_version=api_version,
                   page_size=page_size, currency=currency.upper(), overlap_seconds=overlap,
                   additions_sweep_hours=sweep, api_member=api_member.strip() if api_member else None,
                   rate_limit=rate, report_streams=reports)


# --- the connector -----------------------------------------------------------------------------

def _iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class ConnectWiseConnector:
    """ConnectWise PSA as the engine sees it: its streams (six, and the report streams when on) and five kinds of push.

    A stream's cursor is ``{"since": <iso or None>, "after_id": n, "started_at": <iso>}`` while a
    pass is under way (a failed run resumes after the last committed page, with the same query)
    and ``{"since": <iso>}`` once it finished, where ``since`` is when that pass started **on
    ConnectWise's clock**: the ``Date`` header of the pass's first answer, so a record changed
    behind the pass is read again by the next one whatever the hub's clock says. A pass asks for
    ``lastUpdated > since - overlap_seconds``; the upsert makes the overlap harmless.

    A full pass (no ``since``: the first one, or a backfill) of a stream with a ``/count``
    endpoint asks it first, with the same conditions, and keeps ``read`` and ``expected`` in its
    cursor while under way. Reading fewer records than the count said is an IncompleteError (the
    engine then holds what the stream feeds) and the next run reads the stream from the start
    again. The page that ends a full pass carries ``sweep_count``: every record it read, those set
    aside included (a pass resumed from a cursor without ``read`` gives none).

    Boards, their statuses and types, and priorities are looked up once per run: a ``tickets``
    pass starts with none kept, and none is kept longer than ``LOOKUP_SECONDS``.
    """

    name = SOURCE
    action_kinds = ACTION_KINDS
    vendor_clock_keys = frozenset({"since", "started_at"})   # ConnectWise's clock: may pass the hub's

    def __init__(self, settings: ConnectWiseSettings, *, http: httpx.Client | None = None,
                 retrying: Callable[[], tenacity.Retrying] | None = None, limiter: RateLimiter | None = None):
        self.settings = settings
        self._retrying = retrying or retry_policy
        if limiter is None:   # this process only; register_connectors shares it through the store
            limiter = RateLimiter(account_key(VENDOR, *rate_account(settings)), settings.rate_limit)
        self.client = ConnectWiseClient(settings.site, settings.company_id, settings.public_key,
                                        settings.private_key, settings.client_id, codebase=settings.codebase,
                                        api_version=settings.api_version, http=http, retrying=retrying,
                                        page_size=settings.page_size, limiter=limiter)
        self._lookups: dict[tuple, Any] = {}
        self._lookups_at = time.monotonic()
        # Batched ticket lookups: reference (lower case) -> (when looked up, the tickets found),
        # each answer used once; and the unsent actions' references in push order (see _by_ref).
        self._refs: dict[str, tuple[float, list[dict]]] = {}
        self._queue: tuple[float, list[dict], dict[str, int]] | None = None
        # Batched configuration lookups: action key -> (when looked up, the configurations found).
        self._configs: dict[str, tuple[float, list[dict]]] = {}

    def streams(self) -> list[Stream]:
        currency = self.settings.currency
        return [
            Stream(SOURCE, "clients", "clients", self._clients(self._incremental(
                "clients", self.client.iter_companies, self._to_clients, self._counter("/company/companies")))),
            Stream(SOURCE, "agreements", "agreements", self._incremental(
                "agreements", self.client.iter_agreements, _each(to_agreement), self._counter("/finance/agreements"))),
            Stream(SOURCE, "additions", "additions", self._additions),
            Stream(SOURCE, "time_entries", "time_entries", self._incremental(
                "time_entries", self.client.iter_time_entries, _each(lambda raw: to_time_entry(raw, currency)),
                self._counter("/time/entries"))),
            Stream(SOURCE, "products", "products", self._incremental(
                "products", self.client.iter_products, _each(lambda raw: to_product_line(raw, currency)),
                self._counter("/procurement/products"))),
            Stream(SOURCE, "tickets", "tickets", self._incremental(
                "tickets", self._iter_hub_tickets, self._to_tickets,
                lambda: self.client.count_tickets_by_ref(HUB_REF_PREFIX))),
            Stream(SOURCE, "adopted_tickets", "tickets", self._adopted_tickets),
        ] + self._report_streams()

    def _report_streams(self) -> list[Stream]:
        """The streams only the reports read, those ``report_streams`` turns on. Their tables
        (``configurations``, ``service_tickets``) feed no invoice and no ticket push, so the
        completeness gate (``hub.completeness``) never holds an action for a failed pass of one."""
        wanted = self.settings.report_streams
        out = []
        if "configurations" in wanted:
            out.append(Stream(SOURCE, "configurations", "configurations", self._incremental(
                "configurations", self.client.iter_configurations, _each(to_configuration),
                self._counter("/company/configurations"))))
        if "service_tickets" in wanted:
            out.append(Stream(SOURCE, "service_tickets", "service_tickets", self._incremental(
                "service_tickets", self.client.iter_service_tickets, _each(to_service_ticket),
                self._counter("/service/tickets"))))
        return out

    def _clients(self, iter_pages: Callable[..., Iterator[Page]]) -> Callable[..., Iterator[Page]]:
        """The clients stream: each pass starts with an empty cache of contacts' e-mails."""
        def pages(cursor: dict[str, Any] | None, run_started_at: datetime) -> Iterator[Page]:
            self._contact_emails: dict[int, str | None] = {}
            yield from iter_pages(cursor, run_started_at)
        return pages

    def _to_clients(self, raws: list[dict]) -> tuple[list, tuple]:
        """A page of companies as Clients, reading the e-mail of the contacts they are invoiced at
        (those without ``invoiceToEmailAddress``) in one request per 100 not read in this pass."""
        cache = getattr(self, "_contact_emails", None)
        if cache is None:
            cache = self._contact_emails = {}
        wanted = {c[0] for raw in raws if isinstance(raw, dict) and (c := billing_contact_id(raw)) is not None} - set(cache)
        if wanted:
            found = self.client.contact_emails(sorted(wanted))
            cache.update({i: found.get(i) for i in wanted})
        currency = self.settings.currency
        return map_records(raws, lambda raw: to_client(raw, currency, cache))

    def follow_tickets(self, ids: frozenset[str]) -> None:
        """The tickets made outside the hub that it adopted (their ids): ``adopted_tickets`` reads them."""
        self._followed = frozenset(str(i) for i in ids if str(i).isdigit())

    def _adopted_tickets(self, cursor: dict[str, Any] | None, run_started_at: datetime) -> Iterator[Page]:
        """Every pass reads the adopted tickets whole (``id in (...)``, 100 a request): they carry
        another integration's reference, or none, so the ``tickets`` stream never lists them. A
        person closing or working on one is seen like on the hub's own tickets."""
        ids = sorted(int(i) for i in getattr(self, "_followed", frozenset()))
        for start in range(0, len(ids), 100):
            part = ids[start:start + 100]
            for raws in self.client.iter_pages("/service/tickets", f"id in ({', '.join(map(str, part))})"):
                records, rejected = self._to_tickets(raws)
                yield Page(records, None, rejected=rejected)

    def _counter(self, path: str) -> Callable[[], int]:
        """The ``/count`` of a collection, unfiltered: what a full pass of it must read."""
        return lambda: self.client.count(path)

    # Cursors follow ConnectWise's clock, never the hub's: a hub clock ahead of ConnectWise's by
    # more than the overlap would otherwise skip, for good, what changed in between. A pass's
    # start is the Date header of its first answer (the count, or the first page). That is safe
    # where the highest lastUpdated seen is not: a record saved while a long pass reads (after
    # its page went by) has a lastUpdated below later records the pass does read, and a pass that
    # reads nothing sees no lastUpdated at all. The overlap still covers the server that stamps
    # lastUpdated and the one that writes Date being a little apart, and late commits.
    def _vendor_now(self) -> str | None:
        moment = self.client.server_time
        return None if moment is None else moment.isoformat()

    def _pass_end(self, stream: str, started: str | None, since: str | None) -> str | None:
        """The ``since`` a finished pass leaves: its start on ConnectWise's clock. With no Date
        header seen (a proxy strips it), the pass cannot tell ConnectWise's time: it keeps the
        previous ``since`` (the next pass reads the same changes again, never fewer) and says so."""
        if started is not None:
            return started
        log.warning("connectwise.no_date_header", stream=stream, kept_since=since,
                    fix="let the Date header of ConnectWise's answers through to the hub (a proxy strips it); "
                        "until then each pass of this stream reads again every change since the cursor")
        return since

    def _last_id(self, stream: str, page: list[dict]) -> Any:
        last = page[-1]
        if not isinstance(last, dict) or last.get("id") is None:
            raise MalformedResponseError(VENDOR, 200, "GET", self.client.api_root,
                                         f"the last {stream} record of a page has no id, so no cursor can follow "
                                         f"it; the pass stops here (fix: report it to ConnectWise support)")
        return last["id"]

    def _incomplete(self, stream: str, read: int, expected: int, what: str = "records") -> IncompleteError:
        return IncompleteError(
            f"connectwise {stream}: the full pass read {read} {what} but ConnectWise counted {expected} when it "
            f"started (GET .../count with the same conditions); records were lost from a page or deleted while "
            f"it read, so nothing this stream feeds is pushed and the next run reads {stream} again from the "
            f"start (fix: msp-hub resync --connector connectwise --stream {stream} --full; if it recurs, check "
            f"that the API member's security role can see every record)")

    def _overlapped(self, since: str | None) -> datetime | None:
        return None if since is None else _iso(since) - timedelta(seconds=self.settings.overlap_seconds)

    def _incremental(self, stream: str, fetch: Callable[..., Iterator[list[dict]]],
                     to_records: Callable[[list[dict]], list], count: Callable[[], int] | None = None):
        def iter_pages(cursor: dict[str, Any] | None, run_started_at: datetime) -> Iterator[Page]:
            cursor = cursor or {}
            since = cursor.get("since")
            resumed = "after_id" in cursor   # a pass a failed run left under way: same query, from there
            after, started = (cursor["after_id"], cursor.get("started_at")) if resumed else (None, None)
            full = since is None
            read = (cursor.get("read") if resumed else 0) if full else None
            expected = cursor.get("expected") if resumed else None
            self.client.server_time = None
            if full and not resumed and count is not None:
                expected = count()
                started = self._vendor_now()
            for raw in fetch(since=self._overlapped(since), after_id=after):
                if started is None and not resumed:   # a resumed pass keeps the start it had, or none
                    started = self._vendor_now()
                records, rejected = to_records(raw)
                page_cursor = {"since": since, "after_id": self._last_id(stream, raw), "started_at": started}
                if read is not None:
                    read += len(raw)
                    page_cursor["read"] = read
                    if expected is not None:
                        page_cursor["expected"] = expected
                yield Page(records, page_cursor, rejected=rejected)
            if started is None and not resumed:
                started = self._vendor_now()   # a pass that read nothing: its one answer
            if read is not None and expected is not None and read < expected:
                yield Page([], {"since": None})   # the next run starts this full pass again
                raise self._incomplete(stream, read, expected)
            yield Page([], {"since": self._pass_end(stream, started, since)}, sweep_count=read)
        return iter_pages

    def _additions(self, cursor: dict[str, Any] | None, run_started_at: datetime) -> Iterator[Page]:
        """Additions of the agreements changed since the cursor, or of every agreement on a sweep."""
        # On a sweep (every agreement: the first pass and one every additions_sweep_hours) the
        # cursor also carries what it read so far: additions (for sweep_count) and agreements,
        # with the /count they must reach; "sweep_started_at" is the hub's clock, for the sweep
        # schedule, which the hub keeps (since follows ConnectWise's).
        cursor = cursor or {}
        since, swept_at = cursor.get("since"), cursor.get("swept_at")
        self.client.server_time = None
        if "after_id" in cursor:
            after, started, sweep = cursor["after_id"], cursor.get("started_at"), cursor.get("sweep", True)
            sweep_started = cursor.get("sweep_started_at") or run_started_at.isoformat()
            read, agreements, expected = cursor.get("read"), cursor.get("agreements_read"), cursor.get("expected")
        else:
            after, started, sweep_started = None, None, run_started_at.isoformat()
            sweep = since is None or swept_at is None or (
                run_started_at - _iso(swept_at) >= timedelta(hours=self.settings.additions_sweep_hours))
            read, agreements, expected = (0 if sweep else None), 0, None
            if sweep:
                expected = self.client.count("/finance/agreements")
                started = self._vendor_now()
        currency = self.settings.currency

        def under_way(agreement_id: Any) -> dict[str, Any]:
            state = {"since": since, "swept_at": swept_at, "sweep": sweep, "after_id": agreement_id,
                     "started_at": started}
            if sweep:
                state["sweep_started_at"] = sweep_started
            for key, value in (("read", read), ("agreements_read", agreements), ("expected", expected)):
                if value is not None:
                    state[key] = value
            return state

        resumed, position = "after_id" in cursor, after
        for page in self.client.iter_agreements(since=None if sweep else self._overlapped(since), after_id=after):
            if started is None and not resumed:   # a resumed pass keeps the start it had, or none
                started = self._vendor_now()
            for raw in page:
                if agreements is not None:
                    agreements += 1
                if isinstance(raw, dict) and raw.get("id") is not None:
                    position = raw["id"]
                try:
                    agreement = to_agreement(raw)
                except MappingError as exc:   # its additions cannot be placed; the others go on
                    rid = raw.get("id") if isinstance(raw, dict) else None
                    yield Page([], under_way(position), rejected=((str(rid) if rid is not None else
                                                                  "(an agreement without an id)", str(exc)),))
                    continue
                raws = [r for additions in self.client.iter_additions(raw["id"]) for r in additions]
                if read is not None:
                    read += len(raws)
                records, rejected = map_records(raws, lambda r: to_addition(r, agreement, currency))
                if records or rejected:
                    yield Page(records, under_way(raw["id"]), rejected=rejected)
        if started is None and not resumed:
            started = self._vendor_now()
        if expected is not None and agreements is not None and agreements < expected:
            # The next run sweeps again (from the start, or its first pass over).
            yield Page([], {"since": since, "swept_at": None} if since is not None else {"since": None})
            raise self._incomplete("additions", agreements, expected, "agreements")
        yield Page([], {"since": self._pass_end("additions", started, since),
                        "swept_at": sweep_started if sweep else swept_at}, sweep_count=read)

    # --- tickets and whether a person touched them ----------------------------------------------

    def _iter_hub_tickets(self, since: datetime | None, after_id: int | None) -> Iterator[list[dict]]:
        self._forget_lookups()  # a new pass, a new run: statuses are read again
        yield from self.client.iter_tickets_by_ref(HUB_REF_PREFIX, since=since, after_id=after_id)

    def _to_tickets(self, raws: list[dict]) -> tuple[list[Ticket], tuple[tuple[str, str], ...]]:
        """A page of hub tickets as Tickets: touched from the records, then one request per 100 for time."""
        why = {raw.get("id"): self._touch_in_record(raw) for raw in raws}
        untold = [i for i, reason in why.items() if reason is None and isinstance(i, int)]
        if untold:
            for ticket_id in self.client.tickets_with_time(untold):
                why[ticket_id] = "time logged"
        return map_records(raws, lambda raw: to_ticket(raw, why.get(raw.get("id")) is not None))

    def _touched(self, ticket: dict) -> str | None:
        """Why a person worked on ``ticket`` (asking the API for time if the record does not say), or None."""
        why = self._touch_in_record(ticket)
        if why is None:
            entries = self.client.count_ticket_time(ticket["id"])
            if entries:
                why = f"{entries} time entr{'y' if entries == 1 else 'ies'} logged"
        return why

    def _touch_in_record(self, raw: dict) -> str | None:
        """What the ticket record itself shows of a person's work: time, a status or a close not the hub's."""
        hours = raw.get("actualHours")
        if isinstance(hours, (int, float)) and not isinstance(hours, bool) and hours > 0:
            return f"{_decimal_text(hours)} h logged"
        info = raw.get("_info") if isinstance(raw.get("_info"), dict) else {}
        hub_member = str(self.settings.api_member or info.get("enteredBy") or "").strip().lower()
        status = raw.get("status") if isinstance(raw.get("status"), dict) else {}
        if raw.get("closedFlag"):
            closed_by = str(raw.get("closedBy") or "").strip()
            return f"closed by {closed_by}" if closed_by and closed_by.lower() != hub_member else None
        board = _ref_id(raw.get("board"))
        if board is None or not status:
            return None
        opening = self._opening_status(int(board))
        if status.get("id") is not None:
            same = status["id"] == opening["id"]
        else:
            same = str(status.get("name") or "").lower() == str(opening.get("name") or "").lower()
        return None if same else f"status set to {status.get('name') or status.get('id')}"

    # --- lookups, kept for the run ----------------------------------------------------------------

    def _forget_lookups(self) -> None:
        self._lookups.clear()
        self._lookups_at = time.monotonic()

    def _lookup(self, key: tuple, fetch: Callable[[], Any]) -> Any:
        if time.monotonic() - self._lookups_at > LOOKUP_SECONDS:
            self._forget_lookups()
        if key not in self._lookups:
            self._lookups[key] = fetch()
        return self._lookups[key]

    def _board_id(self, name: str) -> int:
        board = self._lookup(("board", name.lower()), lambda: self.client.find_board(name))
        if board is None:
            raise VendorError(VENDOR, None, "GET", self.client.api_root + "/service/boards",
                              f"no service board named {name!r}; create it in ConnectWise or change the "
                              f"board in the alert rules")
        return board["id"]

    def _statuses(self, board_id: int) -> list[dict]:
        """The active statuses of a board, in board order (sortOrder, then id)."""
        statuses = self._lookup(("statuses", board_id), lambda: self.client.list_board_statuses(board_id))
        return sorted((s for s in statuses if not s.get("inactive")),
                      key=lambda s: (s.get("sortOrder") or 0, s.get("id") or 0))

    def _opening_status(self, board_id: int) -> dict:
        """The status the hub opens tickets in: the board's default, else its first open status."""
        statuses = self._statuses(board_id)
        found = next((s for s in statuses if s.get("defaultFlag") and not s.get("closedStatus")), None) or \
            next((s for s in statuses if not s.get("closedStatus")), None)
        if found is None:
            raise VendorError(VENDOR, None, "GET", f"{self.client.api_root}/service/boards/{board_id}/statuses",
                              f"board {board_id} has no active open status; add one in ConnectWise "
                              f"(Service Desk > Service Boards > Statuses)")
        return found

    def _closing_status(self, board_id: int) -> dict:
        """The status the hub closes tickets with: a closed one, "Closed" first, then one like
        ">Closed", then one like "Resolved", then the first in board order."""
        def rank(status: dict) -> int:
            name = str(status.get("name") or "").strip().lower()
            return 0 if name == "closed" else 1 if "closed" in name else 2 if "resolved" in name else 3

        closed = [s for s in self._statuses(board_id) if s.get("closedStatus")]
        if not closed:
            raise VendorError(VENDOR, None, "GET", f"{self.client.api_root}/service/boards/{board_id}/statuses",
                              f"board {board_id} has no active closed status; mark one \"Closed status\" in "
                              f"ConnectWise (Service Desk > Service Boards > Statuses)")
        return min(closed, key=rank)  # min keeps board order among equals

    def _priority_id(self, name: str) -> int:
        priority = self._lookup(("priority", name.lower()), lambda: self.client.find_priority(name))
        if priority is None:
            raise VendorError(VENDOR, None, "GET", self.client.api_root + "/service/priorities",
                              f"no priority named {name!r}; use a name from Service Desk > Priorities in the "
                              f"alert rules")
        return priority["id"]

    def _type_id(self, board_id: int, board: str, name: str) -> int:
        found = self._lookup(("type", board_id, name.lower()), lambda: self.client.find_board_type(board_id, name))
        if found is None:
            raise VendorError(VENDOR, None, "GET", f"{self.client.api_root}/service/boards/{board_id}/types",
                              f"board {board!r} has no active type named {name!r}; add it to the board in "
                              f"ConnectWise or change the type in the alert rules")
        return found["id"]

    # --- push ----------------------------------------------------------------------------------

    def push(self, action: Action, context) -> PushResult:
        """Send one action; see the module docstring for what each kind costs."""
        if action.kind == "agreement_quantity":
            return self._push_quantity(action)
        if action.kind == "ticket":
            return self._push_ticket(action, context)
        if action.kind == "ticket_note":
            return self._push_note(action, context)
        if action.kind == "ticket_close":
            return self._push_close(action)
        if action.kind == "ticket_reopen":
            return self._push_reopen(action)
        raise ValueError(f"the connectwise connector cannot push {action.kind!r} actions")

    def _push_quantity(self, action: Action) -> PushResult:
        payload = action.payload or {}
        agreement_id = _payload_id(action, "agreement_id")
        addition_id = _payload_id(action, "addition_id")
        try:
            quantity = Decimal(str(payload.get("quantity")))
            if not quantity.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            raise MappingError(f"action {action.key}: quantity must be a decimal string like \"42\", "
                               f"got {payload.get('quantity')!r}") from None
        value = int(quantity) if quantity == quantity.to_integral_value() else float(quantity)
        addition = self.client.patch_addition(agreement_id, addition_id,
                                              [{"op": "replace", "path": "quantity", "value": value}])
        return PushResult(str(addition.get("id", addition_id)),
                          f"agreement {agreement_id} addition {addition_id} quantity set to {_decimal_text(value)}",
                          {"agreement_id": str(agreement_id), "quantity": _decimal_text(value)})

    def _push_ticket(self, action: Action, context) -> PushResult:
        payload = action.payload or {}
        ref = _payload_text(action, "external_ref")
        if len(ref) > MAX_EXTERNAL_REF:
            raise MappingError(f"action {action.key}: external_ref is {len(ref)} characters; "
                               f"ConnectWise keeps {MAX_EXTERNAL_REF}")
        summary = _payload_text(action, "summary")
        board = _payload_text(action, "board")
        company = str(payload.get("company_id") or context.get_link(action.client_id, SOURCE) or "").strip()
        if not company:
            raise MappingError(f"action {action.key}: no company_id in the payload and client "
                               f"{action.client_id} has no link to a ConnectWise company")
        if payload.get("priority") is not None and payload.get("priority_id") is not None:
            raise MappingError(f"action {action.key}: give priority (a name) or priority_id, not both")
        priority = _payload_text(action, "priority") if payload.get("priority") is not None else None
        ticket_type = _payload_text(action, "type") if payload.get("type") is not None else None
        body: dict[str, Any] = {
            "summary": summary[:MAX_SUMMARY], "externalXRef": ref,
            "company": {"id": int(company)} if company.isdigit() else {"identifier": company},
            "initialDescription": payload.get("initial_description") or summary}
        if payload.get("priority_id") is not None:
            body["priority"] = {"id": _payload_id(action, "priority_id")}

        def lookup_or_create() -> tuple[dict, bool]:
            # Always look first: a create whose answer was lost may have made the ticket.
            tries.append(1)
            found = self._by_ref(ref, action, context, first_try=len(tries) == 1)
            if found:
                return min(found, key=lambda t: t["id"]), False
            # Then for the ticket the alert already has (another integration's, or a person's).
            adopted, how, passed = self._adoptable(payload, company)
            passed_over[:] = passed
            if adopted is not None:
                found_by[:] = [how]
                note, added = self._note_once(adopted["id"], _adoption_note(payload, how), action.key, True)
                adoption_note[:] = [note, added]
                return adopted, False
            board_id = self._board_id(board)
            extra: dict[str, Any] = {"board": {"id": board_id}}
            if priority is not None:
                extra["priority"] = {"id": self._priority_id(priority)}
            if ticket_type is not None:
                extra["type"] = {"id": self._type_id(board_id, board, ticket_type)}
            created = self.client.create_ticket({**body, **extra})
            # A note of this run on the new ticket finds it here, without a lookup.
            self._refs[ref.lower()] = (time.monotonic(), [created])
            return created, True

        tries: list[int] = []
        passed_over: list[str] = []
        found_by: list[str] = []
        adoption_note: list[Any] = []
        ticket, created = self._retrying()(lookup_or_create)
        details: dict[str, Any] = {"created": created, "external_ref": ref}
        if passed_over:
            details["not_adopted"] = list(passed_over)
        if found_by:
            note, added = adoption_note
            closed = bool(ticket.get("closedFlag"))
            details.update(adopted=True, found_by=found_by[0], ticket_id=str(ticket["id"]),
                           ticket_external_ref=ticket.get("externalXRef") or "", ticket_closed=closed,
                           note_id=str(note["id"]), note_created=added)
            return PushResult(str(ticket["id"]),
                              f"ticket {ticket['id']} adopted (found by {found_by[0]}, on "
                              f"{_ref_name(ticket.get('board')) or 'its board'}{', closed' if closed else ''}): "
                              f"{str(ticket.get('summary') or '')[:60]}; note {note['id']} "
                              f"{'added' if added else 'already there'}", details)
        verb = "created" if created else "found by externalXRef"
        tries.clear()

        def associate() -> dict[str, Any]:
            tries.append(1)
            return self._associate_configuration(action, int(ticket["id"]), company, context, len(tries) == 1)

        associated = self._retrying()(associate)
        details.update(associated)
        why = f" ({'; '.join(passed_over)})" if passed_over else ""
        return PushResult(str(ticket["id"]), f"ticket {ticket['id']} {verb} on {board}: {summary[:60]}{why}",
                          details)

    def _associate_configuration(self, action: Action, ticket_id: int, company: str, context=None,
                                 first_try: bool = False) -> dict[str, Any]:
        """Associate the ticket with its device's configuration, found in the ticket's company by
        serial number, else by name (``payload["configuration"]``), and say so in an internal note.

        Once only: the ticket's configurations are read first (a retry, or a technician, may have
        associated it), and the note carries its marker. Several configurations matching, or none,
        associate nothing; the action's details say which and why. Returns those details.
        """
        wanted = (action.payload or {}).get("configuration")
        if not isinstance(wanted, dict):
            return {}
        keys = _configuration_keys(wanted)
        tried = [f"{label} {value!r}" for _, label, value in keys]
        found, how, matched_by = [], "", ""
        if keys:
            # One request for both keys (and, batched, for the next pushes' too); the serial number
            # wins over the name, as ConnectWise compares (without regard to case).
            every = self._configurations(action, company, keys, context, first_try)
            for field, label, value in keys:
                found = [c for c in every if str(c.get(field) or "").strip().casefold() == value.casefold()]
                found = [c for c in found if c.get("activeFlag") is not False] or found
                if found:
                    how, matched_by = f"matched by {label} {value}", label
                    break
        if not found:
            why = (f"no configuration of company {company} has {' or '.join(tried)}" if tried
                   else "the device has no serial number or name to match")
            return {"configuration": None, "configuration_match": f"{why}: none associated"}
        if len(found) > 1:
            ids = ", ".join(str(c["id"]) for c in found)
            return {"configuration": None,
                    "configuration_match": f"{len(found)} configurations of company {company} are "
                                           f"{how} ({ids}): none associated; make the {matched_by} unique in "
                                           f"ConnectWise or mark the old configurations inactive"}
        config = found[0]
        config_id, name = int(config["id"]), config.get("name") or f"configuration {config['id']}"
        linked = {c.get("id") for page in self.client.iter_pages(f"/service/tickets/{ticket_id}/configurations")
                  for c in page}
        if config_id not in linked:
            self.client.associate_configuration(ticket_id, config_id)
        note, _ = self._note_once(ticket_id, f"Associated with configuration {name} (id {config_id}), {how}.",
                                  f"{action.key}:configuration", True)
        return {"configuration": str(config_id), "configuration_match": f"{name} (id {config_id}), {how}",
                "configuration_note_id": str(note["id"])}

    def _adoptable(self, hints: dict, company: str) -> tuple[dict | None, str, list[str]]:
        """The ticket an alert already has in ConnectWise, from a create payload's ``psa_ticket_id``
        (the RMM's own integration made it) then its ``adopt_refs`` (the external references another
        integration writes), each only if it belongs to the alert's ``company``: (ticket or None,
        how it was found, why each candidate was passed over)."""
        passed: list[str] = []
        company = str(company or "").strip()
        if not company:
            return None, "", ["no company to check a ticket against: nothing adopted"]
        psa_id = str(hints.get("psa_ticket_id") or "").strip()
        if psa_id:
            if not psa_id.isdigit():
                passed.append(f"psaTicketId {psa_id!r} is not a ConnectWise ticket id")
            else:
                try:
                    ticket = self.client.get_ticket(int(psa_id))
                except VendorError as exc:
                    if exc.status != 404:
                        raise
                    ticket = None
                    passed.append(f"psaTicketId {psa_id}: no such ticket in ConnectWise")
                if ticket is not None:
                    other = _other_company(ticket, company)
                    if other is None:
                        return ticket, f"psaTicketId {psa_id}", passed
                    passed.append(f"psaTicketId {psa_id} is a ticket of company {other}, not of company {company}")
        for adopt_ref in hints.get("adopt_refs") or ():
            if not isinstance(adopt_ref, str) or not adopt_ref.strip():
                continue
            if len(adopt_ref) > MAX_EXTERNAL_REF:
                passed.append(f"externalXRef {adopt_ref!r} is longer than ConnectWise's {MAX_EXTERNAL_REF} "
                              f"characters: no ticket can carry it, not looked for")
                continue
            found = self.client.find_tickets(adopt_ref)
            mine = [t for t in found if _other_company(t, company) is None]
            if mine:
                return min(mine, key=lambda t: t["id"]), f"externalXRef {adopt_ref!r}", passed
            for t in found:
                passed.append(f"ticket {t.get('id')} with externalXRef {adopt_ref!r} is of company "
                              f"{_other_company(t, company)}, not of company {company}")
        return None, "", passed

    def _alert_ticket(self, action: Action, ref: str | None, found: list[dict] | None = None) -> dict:
        """The ticket a note, close or reopen addresses: by ``ticket_id`` (an adopted ticket), else
        by the hub's externalXRef (``found``: the tickets a lookup of it found already), else found
        as its create found it (``adopt``: the create's result is not recorded yet); a 404
        VendorError if none."""
        payload = action.payload or {}
        if payload.get("ticket_id") not in (None, ""):
            return self.client.get_ticket(_payload_id(action, "ticket_id"))
        if found is None:
            found = self.client.find_tickets(ref) if ref else []
        if found:
            return min(found, key=lambda t: t["id"])
        adopt = payload.get("adopt")
        if isinstance(adopt, dict) and adopt:
            ticket, _, _ = self._adoptable(adopt, str(adopt.get("company_id") or ""))
            if ticket is not None:
                return ticket
        raise VendorError(VENDOR, 404, "GET", self.client.api_root + "/service/tickets",
                          f"no ticket with externalXRef {ref!r} yet")

    def _push_note(self, action: Action, context=None) -> PushResult:
        payload = action.payload or {}
        text = _payload_text(action, "text")
        internal = bool(payload.get("internal", False))
        tries: list[int] = []

        def lookup_or_create() -> tuple[int, dict, bool]:
            tries.append(1)
            ticket_id = self._note_ticket(action, context, first_try=len(tries) == 1)
            return (ticket_id, *self._note_once(ticket_id, text, action.key, internal))

        ticket_id, note, created = self._retrying()(lookup_or_create)
        verb = "added to" if created else "already on"
        return PushResult(str(note["id"]), f"{'internal' if internal else 'discussion'} note {note['id']} "
                                           f"{verb} ticket {ticket_id}", {"ticket_id": str(ticket_id), "created": created})

    def _push_close(self, action: Action) -> PushResult:
        """Close the ticket with the board's closed status and the note, unless a person worked on
        it (asked again now: a technician may have started since the plan): then only a note."""
        payload = action.payload or {}
        ref = _payload_text(action, "external_ref")
        note = _payload_text(action, "note")
        left_open = _payload_text(action, "touched_note") if payload.get("touched_note") is not None else None
        internal = bool(payload.get("internal", False))

        def close_once() -> tuple[dict, bool, str | None, dict, bool]:
            ticket = self._alert_ticket(action, ref)
            was_closed = bool(ticket.get("closedFlag"))
            why = None if was_closed else (_opened_by_hand(ticket) or self._touched(ticket))
            if not was_closed and why is None:
                status = self._closing_status(int(_ref_id(ticket.get("board")) or 0))
                ticket = self.client.patch_ticket(ticket["id"], [
                    {"op": "replace", "path": "status", "value": {"id": status["id"]}}])
            text = note if why is None else (left_open or LEFT_OPEN_NOTE.format(why=why))
            return (ticket, was_closed, why, *self._note_once(ticket["id"], text, action.key, internal))

        ticket, was_closed, why, added, created = self._retrying()(close_once)
        closed = bool(ticket.get("closedFlag"))
        if why is not None:
            what = f"left open ({why})"
        elif was_closed:
            what = "already closed"
        else:
            what = f"closed ({_ref_name(ticket.get('status')) or 'closed status'})"
        return PushResult(str(ticket["id"]), f"ticket {ticket['id']} {what}; note {added['id']} "
                                             f"{'added' if created else 'already there'}",
                          {"closed": closed, "touched": why or "", "note_id": str(added["id"]),
                           "note_created": created})

    def _push_reopen(self, action: Action) -> PushResult:
        """Put a closed ticket back in the status the hub opens tickets in, and add the note."""
        payload = action.payload or {}
        ref = _payload_text(action, "external_ref")
        note = _payload_text(action, "note")
        internal = bool(payload.get("internal", False))

        def reopen_once() -> tuple[dict, bool, dict, bool]:
            ticket = self._alert_ticket(action, ref)
            was_closed = bool(ticket.get("closedFlag"))
            if was_closed:
                status = self._opening_status(int(_ref_id(ticket.get("board")) or 0))
                ticket = self.client.patch_ticket(ticket["id"], [
                    {"op": "replace", "path": "status", "value": {"id": status["id"]}}])
            return (ticket, was_closed, *self._note_once(ticket["id"], note, action.key, internal))

        ticket, was_closed, added, created = self._retrying()(reopen_once)
        what = f"reopened ({_ref_name(ticket.get('status')) or 'open status'})" if was_closed else "already open"
        return PushResult(str(ticket["id"]), f"ticket {ticket['id']} {what}; note {added['id']} "
                                             f"{'added' if created else 'already there'}",
                          {"closed": bool(ticket.get("closedFlag")), "reopened": was_closed,
                           "note_id": str(added["id"]), "note_created": created})

    def _note_once(self, ticket_id: int, text: str, key: str, internal: bool) -> tuple[dict, bool]:
        """The note marked ``[msp-hub:<key>]`` on the ticket, added if it is not there yet; (note, added)."""
        marker = f"[msp-hub:{key}]"
        for note in self.client.list_ticket_notes(ticket_id):
            if marker in (note.get("text") or ""):
                return note, False
        return self.client.create_ticket_note(ticket_id, {
            "text": f"{text}\n\n{marker}", "detailDescriptionFlag": not internal,
            "internalAnalysisFlag": internal}), True

    def _note_ticket(self, action: Action, context=None, *, first_try: bool = False) -> int:
        payload = action.payload or {}
        if payload.get("ticket_id") not in (None, ""):
            return _payload_id(action, "ticket_id")
        ref = payload.get("ticket_external_ref")
        if not isinstance(ref, str) or not ref.strip():
            raise MappingError(f"action {action.key}: payload needs ticket_id or ticket_external_ref")
        found = self._by_ref(ref.strip(), action, context, first_try=first_try) if context is not None else None
        return self._alert_ticket(action, ref, found)["id"]

    # --- batched ticket lookups ----------------------------------------------------------------

    def _by_ref(self, ref: str, action: Action, context, *, first_try: bool) -> list[dict]:
        """The tickets whose ``externalXRef`` is ``ref``, for a ``ticket`` or ``ticket_note`` push,
        from a batched lookup when one answered for it (looking one up for the next unsent pushes
        of this connector when none did), else looked up alone.

        Exactly once: a batch's answer is used once, by the first try of the push it was asked
        for, within ``REF_SECONDS``. A ticket it found is used (a ticket found stays found). That
        it found none is believed only by a ``ticket`` push never attempted before
        (``context.attempts == 0``): such a ticket can only be made by that push, so none can have
        appeared since the batch was read. A push tried before (its create may have reached
        ConnectWise, even from another process), a retry within the push, and a note all look
        again, alone.
        """
        key = ref.lower()
        entry = self._refs.pop(key, None)
        if entry is None and first_try:
            self._look_up_batch(ref, action.key, context)
            entry = self._refs.pop(key, None)
        if entry is not None and time.monotonic() - entry[0] <= REF_SECONDS:
            found = entry[1]
            if found or (first_try and action.kind == "ticket" and getattr(context, "attempts", 1) == 0):
                return list(found)
        return self.client.find_tickets(ref)

    def _look_up_batch(self, ref: str, key: str, context) -> None:
        """Look up ``ref`` with the references of the unsent pushes after action ``key`` (as the
        engine sends them, by key), as many as one request holds; keep each answer."""
        refs = [ref]
        following = self._following_refs(key, context)
        seen = {ref.lower()}
        for other in following:
            if other.lower() not in seen and other.lower() not in self._refs:
                seen.add(other.lower())
                refs.append(other)
            if len(refs) >= 200:   # far more than one batch holds
                break
        batch = ref_batches(refs)[0]
        found = self.client.find_tickets_by_refs(batch)
        now = time.monotonic()
        for stale in [k for k, (at, _) in self._refs.items() if now - at > REF_SECONDS]:
            del self._refs[stale]
        for other in batch:
            self._refs[other.lower()] = (now, found[other])

    def _configurations(self, action: Action, company: str, keys: list[tuple[str, str, str]], context,
                        first_try: bool) -> list[dict]:
        """The configurations of ``company`` matching any of ``keys``, from a batched lookup made for
        this push (configurations are not the hub's: an answer only has to be recent), else alone."""
        entry = self._configs.pop(action.key, None)
        if entry is None and first_try and context is not None:
            self._look_up_configurations(action, company, keys, context)
            entry = self._configs.pop(action.key, None)
        if entry is not None and time.monotonic() - entry[0] <= REF_SECONDS:
            return entry[1]
        return [c for page in self.client.iter_pages("/company/configurations",
                                                     _configuration_conditions([(company, keys)]))
                for c in page]

    def _look_up_configurations(self, action: Action, company: str, keys: list[tuple[str, str, str]],
                                context) -> None:
        """Look up the configurations of this push and of the next unsent ``ticket`` pushes in one
        request (as many as fit the URL); keep each push's share."""
        wanted = [(action.key, company, keys)]
        for row in self._following(action.key, context):
            if row["kind"] != "ticket" or row["key"] in self._configs:
                continue
            payload = row["payload"]
            other_keys = _configuration_keys(payload.get("configuration"))
            other = str(payload.get("company_id") or context.get_link(row["client_id"], SOURCE) or "").strip()
            if not other_keys or not other:
                continue
            trial = wanted + [(row["key"], other, other_keys)]
            if len(url_quote(_configuration_conditions([(c, k) for _, c, k in trial]), safe="")) > MAX_CONDITIONS_URL:
                break
            wanted = trial
        if len(wanted) == 1:
            return   # nothing to batch with: the push looks alone
        every = [c for page in self.client.iter_pages(
            "/company/configurations", _configuration_conditions([(c, k) for _, c, k in wanted])) for c in page]
        now = time.monotonic()
        for stale in [k for k, (at, _) in self._configs.items() if now - at > REF_SECONDS]:
            del self._configs[stale]
        for key, owner, owner_keys in wanted:
            self._configs[key] = (now, [c for c in every if _owned_by(c, owner)
                                        and any(_same(c.get(f), v) for f, _, v in owner_keys)])

    def _following(self, key: str, context) -> list[dict]:
        """This connector's unsent ``ticket``/``ticket_note`` actions after ``key`` (as the engine
        sends them, by key), read from the outbox once (again when ``key`` is not among them, or
        after ``REF_SECONDS``); [] when the push context offers no outbox."""
        unsent = getattr(getattr(context, "store", None), "unsent_actions", None)
        if unsent is None:
            return []
        now = time.monotonic()
        if self._queue is None or key not in self._queue[2] or now - self._queue[0] > REF_SECONDS:
            rows = [dict(r, payload=r["payload"] if isinstance(r["payload"], dict) else {})
                    for r in unsent(SOURCE, BATCHED_KINDS)]
            self._queue = (now, rows, {r["key"]: i for i, r in enumerate(rows)})
        _, rows, index = self._queue
        at = index.get(key)
        return rows[at + 1:] if at is not None else []

    def _following_refs(self, key: str, context) -> list[str]:
        """The ticket references of this connector's unsent ``ticket``/``ticket_note`` actions
        after ``key``, read from the outbox once (again when ``key`` is not among them, or after
        ``REF_SECONDS``); [] when the push context offers no outbox."""
        refs = []
        for row in self._following(key, context):
            payload = row["payload"]
            if row["kind"] == "ticket_note" and payload.get("ticket_id") not in (None, ""):
                continue
            other = payload.get("external_ref" if row["kind"] == "ticket" else "ticket_external_ref")
            if isinstance(other, str) and other.strip() and len(other.strip()) <= MAX_EXTERNAL_REF:
                refs.append(other.strip())
        return refs

    def check(self) -> str:
        """One cheap authenticated request, tried once: GET /company/companies?pageSize=1.
        Returns what it did; raises the VendorError of the failure (hub.check names the fix)."""
        self.client._attempt("GET", "/company/companies", {"pageSize": 1}, None, False, list)
        return "GET /company/companies?pageSize=1"

    def close(self) -> None:
        self.client.close()


# Serial numbers a machine reports when its maker set none: matching them would pick any machine.
_PLACEHOLDER_SERIALS = {"0", "none", "n/a", "na", "default string", "to be filled by o.e.m.", "system serial number",
                        "not specified", "not applicable", "0123456789", "123456789", "chassis serial number"}


def _configuration_keys(wanted: Any) -> list[tuple[str, str, str]]:
    """(field, label, value) of what finds a device's configuration: its real serial number, its name."""
    if not isinstance(wanted, dict):
        return []
    return [(field, label, value.strip()) for field, label, value in (
        ("serialNumber", "serial number", wanted.get("serial_number")), ("name", "name", wanted.get("name")))
        if isinstance(value, str) and value.strip() and (field != "serialNumber" or _real_serial(value))]


def _configuration_conditions(wanted: list[tuple[str, list[tuple[str, str, str]]]]) -> str:
    """The conditions finding the configurations of each (company, keys): for one, ``company/id = 5
    and (serialNumber = "..." or name = "...")``; for several, ``in (...)`` lists of companies and
    of each field's values (a superset, each push keeps its company's matches)."""
    if len(wanted) == 1:
        company, keys = wanted[0]
        owner = f"company/id = {int(company)}" if company.isdigit() else f"company/identifier = {quote(company)}"
        either = " or ".join(f"{field} = {quote(value)}" for field, _, value in keys)
        return f"{owner} and ({either})"
    ids = sorted({int(c) for c, _ in wanted if c.isdigit()})
    names = sorted({c for c, _ in wanted if not c.isdigit()})
    owners = ([f"company/id in ({', '.join(map(str, ids))})"] if ids else []) + \
             ([f"company/identifier in ({', '.join(map(quote, names))})"] if names else [])
    values: dict[str, list[str]] = {}
    for _, keys in wanted:
        for field, _, value in keys:
            if value not in values.setdefault(field, []):
                values[field].append(value)
    either = " or ".join(f"{field} in ({', '.join(map(quote, vs))})" for field, vs in values.items())
    return f"({' or '.join(owners)}) and ({either})"


def _owned_by(configuration: dict, company: str) -> bool:
    """Whether a configuration belongs to ``company`` (an id, or an identifier)."""
    ref = configuration.get("company") if isinstance(configuration.get("company"), dict) else {}
    if company.isdigit():
        return str(ref.get("id")) == company
    return str(ref.get("identifier") or "").casefold() == company.casefold()


def _same(actual: Any, value: str) -> bool:
    return str(actual or "").strip().casefold() == value.casefold()


def _real_serial(value: str) -> bool:
    """Whether a serial number can identify one machine (not blank, not a maker's placeholder)."""
    text = value.strip().lower()
    return len(text) >= 4 and text not in _PLACEHOLDER_SERIALS and len(set(text)) > 1


def _other_company(ticket: dict, company: str) -> str | None:
    """None when ``ticket`` belongs to ``company`` (an id, or an identifier), else the company it names."""
    theirs = ticket.get("company") if isinstance(ticket.get("company"), dict) else {}
    if company.isdigit():
        same = str(theirs.get("id")) == company
    else:
        same = str(theirs.get("identifier") or "").strip().lower() == company.lower()
    if same:
        return None
    return str(theirs.get("identifier") or theirs.get("name") or theirs.get("id") or "(none)") + (
        f" (id {theirs['id']})" if theirs.get("id") is not None and theirs.get("identifier") else "")


def _opened_by_hand(ticket: dict) -> str | None:
    """Why an adopted ticket counts as touched from the start: it carries no external reference,
    so no integration made it: a person opened it (the hub never closes such a ticket)."""
    if str(ticket.get("externalXRef") or "").strip():
        return None
    info = ticket.get("_info") if isinstance(ticket.get("_info"), dict) else {}
    by = str(info.get("enteredBy") or "").strip()
    return f"opened by hand{f' by {by}' if by else ''}"


def _adoption_note(payload: dict, how: str) -> str:
    """The internal note that says, on a ticket the hub adopted, which alert it follows now."""
    uids = ", ".join(str(u) for u in payload.get("uids") or ()) or "?"
    device = payload.get("device") or "?"
    cleared = ("closed when the alert clears, unless a technician worked on it" if payload.get("auto_close", True)
               else "noted when the alert clears (the rule does not auto-close)")
    return (f"Linked to msp-hub for alert {uids} (device {device}, rule {payload.get('rule') or '?'}), found by "
            f"{how}: msp-hub made no second ticket. Re-triggers are noted here; the ticket is {cleared}.")


def _each(to_record: Callable[[dict], Any]) -> Callable[[list[dict]], tuple[list, tuple]]:
    """A page mapper from a record mapper: a record that cannot be mapped is set aside."""
    return lambda raws: map_records(raws, to_record)


def _payload_text(action: Action, key: str) -> str:
    value = (action.payload or {}).get(key)
    if not isinstance(value, str) or not value.strip():
        raise MappingError(f"action {action.key}: payload needs {key} (non-empty text)")
    return value.strip()


def _payload_id(action: Action, key: str) -> int:
    value = (action.payload or {}).get(key)
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise MappingError(f"action {action.key}: payload needs {key} as a ConnectWise id like \"42\", got {value!r}")
    return int(str(value).strip())


@hookimpl
def register_connectors(config):
    """The ConnectWise connector when ``[connectors.connectwise]`` is configured."""
    if config.connector_section(SOURCE) is None:
        return []
    settings = ConnectWiseSettings.from_config(config)
    return [ConnectWiseConnector(settings, limiter=limiter_for(config, VENDOR, rate_account(settings),
                                                               settings.rate_limit))]


def rate_account(settings: ConnectWiseSettings) -> tuple[str, str]:
    """What names the ConnectWise account of a rate limit (hashed into its key): site and company."""
    return settings.site, settings.company_id.lower()
