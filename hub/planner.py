"""Plan: what every vendor should get, from the stored records, the mappings and the outbox.

For each hub client (``hub.linking``) and period: its contract (``mappings/`` first, else its PSA
agreement), its invoice (devices, time, products, late changes of earlier periods, plugins'
lines, the monthly minimum), the renewal of a prepaid block that fell to its warning threshold
(with a notice in the PSA), and the quantities of its per-device agreement additions. Nothing is
stored or sent here; ``hub.engine.push`` records and sends what the plan says.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Iterable

from hub import alerting, clientdetails, i18n, reconcile, tax, timebilling
from hub.completeness import Gate
from hub.connectors import client_master
from hub.guardrails import InvoiceGuardrails, check_invoice, count_billed_devices, previous_from_snapshot
from hub.errors import HubError
from hub.linking import HubClient, Registry, link_clients
from hub.mappings import Contract, contract_from_agreement, options_note
from hub.mentions import invoice_mentions
from hub.money import format_minor, format_quantity, round_half_up, round_times
from hub.periods import Period, parse_period
from hub.quantities import Guardrails, QuantityCheck, check_quantities, unbilled_classes
from hub.records import DO_NOT_BILL, NO_CHARGE, Action, BillingLine
from hub.store import SENDING, SENT

if TYPE_CHECKING:  # pragma: no cover
    from hub.engine import Hub, RunReport

INVOICE, TICKET, AGREEMENT_QUANTITY = "invoice", "ticket", "agreement_quantity"
# Line-code prefixes whose items are recorded as billed (never billed twice).
LEDGER_PREFIXES = ("time:", "flat:", "overage:", "product:", "delta:")
KIND_PRIORITY = {"managed": 0, "block": 1, "time_and_materials": 2}


@dataclass
class PlanItem:
    """One planned action and how it compares with what was already pushed.

    ``status``: ``create`` (new, will be pushed), ``retry`` (stored, not yet confirmed sent),
    ``unchanged`` (already sent, nothing new), ``changed_after_sent`` (the sent invoice no longer
    matches the data: reported, never rewritten; a late change becomes a delta line on the next
    invoice), ``preview`` (the period has not ended), ``held`` (an error, a guardrail, a veto,
    incomplete input or the review window keeps it back: see ``cause``), ``empty`` (nothing to
    bill), ``skipped`` (no action: e.g. an agreement quantity of an older period; the reason says why).
    """

    kind: str
    client_id: str
    client_name: str
    period: str
    status: str
    action: Action | None
    bill: reconcile.Bill | None = None
    reasons: tuple[str, ...] = ()
    quantity: QuantityCheck | None = None
    ledger: tuple[tuple[str, str, str, int], ...] = ()
    snapshot: list[dict] | None = None
    block: dict | None = None
    # Why a held item is held: "error" (a contract, mapping or record error: fix it), "incomplete"
    # (a stream that feeds it failed, is stale or suspect: resync), "guardrail" (a surprising
    # change: approve), "veto" (a plugin), "review" (the review window: approve the run).
    cause: str | None = None

    @property
    def total(self) -> int:
        return self.bill.total if self.bill else 0

    def to_json(self) -> dict[str, Any]:
        bill = self.bill
        out = {"kind": self.kind, "client_id": self.client_id, "client_name": self.client_name,
               "period": self.period, "status": self.status, "key": self.action.key if self.action else None,
               "reasons": list(self.reasons)}
        if self.cause:
            out["cause"] = self.cause
        if bill is not None:
            payload = self.action.payload if self.action is not None and self.kind == INVOICE else {}
            taxes = [l.get("tax") for l in payload.get("lines", ())] if "tax" in payload else []
            out.update({"total": self.total, "currency": bill.currency,
                        "lines": [dict(line_json(line), **({"tax": taxes[i]} if i < len(taxes) else {}))
                                  for i, line in enumerate(bill.lines)],
                        "excluded": [vars(e) for e in bill.excluded], "notes": list(bill.notes),
                        "not_billed": [dict(r) for r in bill.reported]})
        if bill is not None and self.action is not None and "tax" in self.action.payload:
            block = self.action.payload["tax"]
            out.update({"tax": block, "total_tax": block["total_tax"], "total_with_tax": block["total_with_tax"]})
            if "customer" in self.action.payload:
                out["customer"] = self.action.payload["customer"]
        if self.quantity is not None:
            out["quantities"] = self.quantity.to_json()
        if self.action is not None and self.kind != INVOICE:
            out["payload"] = self.action.payload
        return out


def line_json(line: BillingLine) -> dict[str, Any]:
    return {"code": line.code, "description": line.description, "quantity": line.quantity,
            "unit_amount": line.unit_amount, "amount": line.amount, "currency": line.currency,
            "rule": line.rule, "items": list(line.items)}


def invoice_key(client_id: str, period: str) -> str:
    return f"{INVOICE}:{client_id}:{period}"


def invoice_payload(bill: reconcile.Bill, client_name: str, period: Period, description: str | None = None,
                    vat: "InvoiceTax | None" = None, *, language: str = "en",
                    mentions: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the invoicing connector sends: the lines before tax and their ``total``; with ``vat``
    (``invoice_tax``), each taxed line's ``tax`` (percent and name), the invoice's ``tax`` block
    (treatment, mention, per rate the base and the tax, total_tax, total_with_tax, automatic) and
    the ``customer`` (its billing details and Stripe's ``tax_exempt``); with ``mentions``
    (``hub.mentions.invoice_mentions``), the MSP's legal mentions as ``footer`` and ``custom_fields``,
    and the customer's ``locale`` (its own, else the MSP's default)."""
    payload = {"client_name": client_name, "currency": bill.currency, "period": period.name,
               "period_start": period.start.isoformat(), "period_end": period.end.isoformat(),
               "description": description or i18n.text("invoice.description", language, client=client_name,
                                                        period=i18n.period(period.name, language)),
               "total": bill.total,
               "lines": [{"code": l.code, "description": l.description, "quantity": l.quantity,
                          "unit_amount": l.unit_amount, "amount": l.amount} for l in bill.lines]}
    if vat is not None and not vat.problems:
        per_line, block = tax.invoice_tax([l.amount for l in bill.lines], vat.rates, vat.decision, vat.rules)
        for line, t in zip(payload["lines"], per_line):
            if t is not None:
                line["tax"] = t
        payload["tax"] = block
        payload["customer"] = dict(vat.details.to_payload(), tax_exempt=vat.decision.tax_exempt)
    mentions = mentions or {}
    payload.update({k: v for k, v in mentions.items() if k in ("footer", "custom_fields")})
    locale = (vat.details.locale if vat is not None else None) or mentions.get("locale")
    if locale:
        payload["locale"] = locale
        if "customer" in payload:
            payload["customer"].setdefault("locale", locale)
    return payload


def invoice_dress(hub: "Hub") -> dict[str, Any]:
    """The language and the legal mentions every invoice of this MSP carries (``[billing.invoice]``)."""
    settings = billing_settings(hub).invoice_settings
    return {"language": settings.language, "mentions": invoice_mentions(settings)}


@dataclass(frozen=True)
class InvoiceTax:
    """The VAT of one invoice: the client's ``details``, its treatment (``decision``), the rate
    of each line (``rates``, one percent per line of the bill), the MSP's ``rules``, and the
    ``problems`` that hold it (the treatment cannot be decided, a line's rate is ambiguous)."""

    details: clientdetails.ClientDetails
    decision: tax.Decision
    rates: tuple[str, ...]
    rules: tax.TaxRules
    problems: tuple[str, ...] = ()

    @property
    def notes(self) -> tuple[str, ...]:
        return self.decision.notes


def tax_rules(hub: "Hub") -> tax.TaxRules:
    reads = getattr(hub, "plan_reads", None)
    if reads is not None:
        return reads.memo("tax_rules", lambda: billing_settings(hub).tax.rules())
    return hub.config.billing_settings.tax.rules()


def line_vat_rate(line: BillingLine, contract: Contract, m, default: str) -> tuple[str, str | None]:
    """The VAT percent of one line and, when its work types name different rates, the problem.

    An add-on line takes its add-on's ``vat_rate`` (tiers.toml), a product line its catalog
    item's (``[vat_rates]`` of tiers.toml), a time, flat-rate or overage line its work type's
    (time.toml), a late change of an earlier period's add-on line its add-on's; else (and for a
    late change of time or a product) ``default``: the contract's ``vat_rate``, else
    ``[billing.tax] default_rate``."""
    code = line.code
    if code.startswith("delta:"):      # a late change of an earlier period: the rate of what it changes
        rest = code.split(":", 2)[2] if code.count(":") >= 2 else ""
        if rest.startswith("addon:"):
            return line_vat_rate(replace(line, code=rest), contract, m, default)
        if rest.startswith("time:"):
            return line_vat_rate(replace(line, code=rest), contract, m, default)
        if rest.startswith("product:"):
            item = next((str(i["catalog_item"]) for i in line.items if i.get("catalog_item")), None)
            return ((m.vat_rates.get(item) if m is not None and item else None) or default), None
        return default, None
    if code.startswith("addon:"):
        addon = m.addons.get(code.split(":")[1]) if m is not None else None
        return (addon.vat_rate if addon is not None and addon.vat_rate else default), None
    if code.startswith("product:"):
        item = code[len("product:"):].split("@")[0]
        return ((m.vat_rates.get(item) if m is not None else None) or default), None
    if code.startswith(("time:", "flat:", "overage:")):
        kinds = contract.time.work_types or (m.time.work_types if m is not None else {})
        items = line.items[:1] if code.startswith("flat:") else line.items
        named = {str(i["work_type"]) for i in items if i.get("work_type") is not None}
        rates = {(kinds[w].vat_rate if w in kinds and kinds[w].vat_rate else default) for w in named}
        if len(rates) > 1:
            return default, (f"line {line.code!r} bills work types {', '.join(sorted(named))}, which time.toml "
                             f"gives different VAT rates ({', '.join(sorted(rates))} %); one invoice line has one "
                             f"rate: set time_lines = \"entry\" or \"work_type\" for this contract, or give "
                             f"these work types the same vat_rate in time.toml")
        return (rates.pop() if rates else default), None
    return default, None


def psa_id_of(ctx: Context | None, client_id: str) -> str | None:
    """The client's company id in the PSA, as the registry linked it (None: not linked, or no
    registry at hand)."""
    registry = getattr(ctx, "registry", None)
    client = registry.clients.get(client_id) if registry is not None else None
    return client.links.get(ctx.psa) if client is not None and ctx.psa else None


def invoice_tax(hub: "Hub", contract: Contract, bill: reconcile.Bill, name: str | None = None, *,
                psa_id: str | None = None) -> InvoiceTax:
    """The VAT of ``contract``'s invoice ``bill`` (BILLING.md, "Tax"); ``psa_id``: the client's PSA
    company as the registry linked it (else found from the contract, its id or its name)."""
    rules = tax_rules(hub)
    details = clientdetails.details_for(hub, contract.client_id, name or contract.name, contract, psa_id=psa_id)
    where = (f"{contract.file} [clients.{contract.client_id}]" if contract.origin == "mappings"
             else f"{contract.file} (agreement type of {contract.origin})")
    decision = tax.decide(details, rules, contract.tax, contract.tax_mention, where=where)
    default = contract.vat_rate or rules.default_rate
    m = getattr(hub, "mappings", None)
    rates, problems = [], list(decision.problems)
    for line in bill.lines:
        rate, problem = line_vat_rate(line, contract, m, default)
        rates.append(rate)
        if problem and decision.taxed:
            problems.append(f"client {contract.name!r}: {problem}")
    return InvoiceTax(details, decision, tuple(rates), rules, tuple(problems))


def _tax_reasons(vat: InvoiceTax) -> tuple[str, ...]:
    return tuple(f"VAT: {p}" for p in vat.problems)


def reissue_of(hub: "Hub", client_id: str, period: str) -> dict | None:
    """The latest sent correction of the client's invoice for ``period`` that asked for a re-issue
    (``hub.corrections``), or None: its ``reissue_key`` is the key the period is invoiced under."""
    rows = [c for c in hub.store.corrections(client_id=client_id, period=period)
            if c["reissue_key"] and c["status"] == SENT]
    return rows[-1] if rows else None


def current_invoice_key(hub: "Hub", client_id: str, period: str) -> str:
    """The key the client's invoice for ``period`` is planned under: ``invoice:<client>:<period>``,
    or the successor key (``...:r<n>``) of a sent void or credit note that asked for a re-issue."""
    correction = reissue_of(hub, client_id, period)
    return correction["reissue_key"] if correction else invoice_key(client_id, period)


def live_snapshots(hub: "Hub", client_id: str, *, before: str, exclude_key: str | None = None) -> list[dict]:
    """``invoice_snapshots`` without those of voided invoices: a voided period is billed by its
    re-issue, or not at all, never by a late-change delta on a later invoice."""
    voided = hub.store.voided_keys(client_id)
    reads = getattr(hub, "plan_reads", None)
    if reads is None:
        return [s for s in hub.store.invoice_snapshots(client_id, before=before, exclude_key=exclude_key)
                if s["action_key"] not in voided]
    return [s for s in reads.snapshots(client_id) if s["period"] < before and s["action_key"] != exclude_key
            and s["action_key"] not in voided]


def ledger_of(lines) -> tuple[tuple[str, str, str, int], ...]:
    """What an invoice bills, item by item: (kind, item id, quantity, amount) for the ledger."""
    rows = []
    for line in lines:
        if not line.code.startswith(LEDGER_PREFIXES):
            continue
        kind = line.code.split(":", 1)[0]
        for item in line.items:
            if "id" in item:
                rows.append((kind, str(item["id"]), str(item.get("billed_hours", item.get("weight", line.quantity))),
                             line.amount))
    return tuple(rows)


def snapshot_of(lines) -> list[dict]:
    """What an invoice billed, line by line and thing by thing: each line as ``line_json`` gives it,
    with ``things``, one per device, time entry, product or flat-rate ticket it billed (its id,
    class, tier, unit price, quantity or hours, and amount). A late change of the period is
    compared with these things, never with today's contract, tier, price, class or approval. A
    snapshot without ``things`` (made before they were recorded) is final: no late change for it."""
    return [dict(line_json(line), things=things_of(line)) for line in lines]


_FRACTIONS: dict[str, Fraction] = {}


def _fraction(text: str) -> Fraction:
    """``Fraction(text)``, parsed once per text (quantities repeat: "1", "0.25", "0.5"...)."""
    got = _FRACTIONS.get(text)
    if got is None:
        got = Fraction(text)
        if len(_FRACTIONS) > 10_000:
            _FRACTIONS.clear()
        _FRACTIONS[text] = got
    return got


def things_of(line: BillingLine) -> list[dict[str, Any]]:
    """The things one line billed, each with the amount it billed on its own."""
    code, unit = line.code, line.unit_amount
    kind = code.split(":", 1)[0]
    out: list[dict[str, Any]] = []
    for item in line.items:
        if "id" not in item:
            continue
        if kind in ("tier", "addon"):
            on = code.rsplit(":", 1)[0]            # "tier:gold" or "addon:backup"
            weight = _fraction(str(item.get("weight", "1")))
            out.append({"kind": "device", "id": str(item["id"]), "on": on, "class": item.get("class"),
                        "tier": code.split(":")[1] if kind == "tier" else None, "unit": unit,
                        "quantity": format_quantity(weight), "amount": round_times(weight, unit)})
        elif kind in ("time", "overage"):
            hours = _fraction(str(item.get("overage_hours", item.get("billed_hours", "0"))))
            thing = {"kind": kind, "id": str(item["id"]), "hours": item.get("hours"),
                     "billed_hours": format_quantity(hours), "rate": unit, "work_type": item.get("work_type"),
                     "date": item.get("date"), "period": item.get("period") or line.period,
                     "amount": round_times(hours, unit)}
            if kind == "overage":
                # The block it overdrew: its item says (the code has the entry or ticket after it in
                # the entry and ticket layouts); a snapshot from before says it in "overage:<agreement>".
                thing["agreement"] = str(item.get("agreement") or code.split(":", 1)[1])
            out.append(thing)
        elif kind == "product":
            quantity = _fraction(str(item.get("quantity", "0")))
            out.append({"kind": "product", "id": str(item["id"]), "quantity": format_quantity(quantity), "unit": unit,
                        "description": item.get("description"), "date": item.get("date"),
                        "period": item.get("period") or line.period, "amount": round_times(quantity, unit)})
        elif kind == "flat":
            out.append({"kind": "flat", "id": str(item["id"]), "amount": line.amount})
        elif kind == "delta":
            out.append({"kind": "delta", "of": item.get("of"), "id": str(item.get("ref", item["id"])),
                        "period": item.get("period"), "amount": item.get("amount", line.amount),
                        "billed_hours": item.get("billed_hours"), "quantity": item.get("now_quantity")})
    return out


def is_final(snap: dict) -> bool:
    """Whether the invoice of a stored snapshot may be at the vendor (sent, or attempted): one never
    attempted still takes the next plan's lines, late changes included, so it is not compared."""
    return snap["status"] in (SENT, SENDING) or bool(snap.get("attempts"))


def is_detailed(snapshot: list[dict]) -> bool:
    """Whether a stored snapshot says what it billed thing by thing (see ``snapshot_of``)."""
    return any("things" in line for line in snapshot)


# --- what the plan reads -------------------------------------------------------------------------

class PlanReads:
    """The records the plan reads of its clients, read a window of clients at a time in one query
    per table (``Store.records_by_client``), in the order the plan takes its clients (``order``).

    ``records`` answers as ``Store.iter_records`` does for one client (same records, same order);
    a client outside ``order`` is read on its own. A few windows per table are kept (the plan asks
    for a client's time up to a period's end and for all of it), so memory is that of a window,
    whatever the number of clients."""

    WINDOW = 25          # clients read by one query
    KEPT = 4             # windows kept per table (one per system and condition)

    def __init__(self, store, order: Iterable[tuple[str, str]] = ()):
        self.store = store
        self.windows: dict[str, dict[tuple, dict]] = {}
        self.queries = 0
        # Time entries left out of the reads and counted (Store.settled_time), once the plan knows
        # the earliest period it bills and the flat-rate work types.
        self.settled: tuple[str, tuple] | None = None
        self.settled_before: str | None = None      # the name of that period
        self.flat_work_types: frozenset[str] = frozenset()   # of every contract the plan bills
        self.read_in_order(order)

    def leave_out_settled(self, first: Period, flat_work_types: Iterable[str]) -> None:
        """From now on, read no time entry ``Store.settled_time(first.start, flat_work_types)``
        names (``first``: the earliest period the plan bills): count them (``settled_count``)."""
        self.settled = self.store.settled_time(first.start, flat_work_types)
        self.settled_before = first.name
        self.windows.pop("time_entries", None)

    def settled_count(self, source: str, client_source_id: str) -> int:
        """How many settled time entries of the client its reads left out (0: none, or the client
        was read on its own, with all its entries)."""
        key = (source, client_source_id)
        if self.settled is None or key not in self.position:
            return 0
        window = self._window("time_entries", key, "", (), DATED["time_entries"][0])
        return window.get(self.store.COUNTED, {}).get(key, 0)

    def read_in_order(self, order: Iterable[tuple[str, str]]) -> None:
        """The clients (``(source, client_source_id)``) in the order the plan will ask for them."""
        self.order: dict[str, list[tuple[str, str]]] = {}      # per system, its clients in order
        self.position: dict[tuple[str, str], int] = {}
        for key in dict.fromkeys(order):
            mine = self.order.setdefault(key[0], [])
            self.position[key] = len(mine)
            mine.append(key)

    def records(self, table: str, source: str, client_source_id: str, *, where: str = "",
                args: Iterable = ()) -> list:
        key, args = (source, client_source_id), tuple(args)
        if key not in self.position:
            if not where:
                return list(self.store.iter_records(table, source, client_source_id))
            return list(self.store.iter_records(table, source, client_source_id, where=where, args=args))
        dated = DATED.get(table)
        if dated is not None and (not where or (where == dated[1] and len(args) == 1 and isinstance(args[0], str))):
            # One read of the client's records whatever the end: the dates are compared here as
            # the database compares them (the stored text; NULL is before nothing).
            got = self._window(table, key, "", (), dated[0])[key]
            if not where:
                return [record for _, record in got]
            end, null_ok = args[0], dated[2]
            return [record for stored, record in got if _stored_before(stored, end, null_ok)]
        return list(self._window(table, key, where, args, None)[key])

    def _window(self, table: str, key: tuple[str, str], where: str, args: tuple, stored: str | None) -> dict:
        kept = self.windows.setdefault(table, {})
        query = (key[0], where, args)
        window = kept.get(query)
        if window is None or key not in window:
            at = self.position[key]
            settled = self.settled if table == "time_entries" and not where else None
            window = self.store.records_by_client(table, self.order[key[0]][at:at + self.WINDOW], where=where, args=args,
                                                  stored=stored, counted=settled)
            self.queries += 1
            kept.pop(query, None)
            kept[query] = window
            while len(kept) > self.KEPT:
                kept.pop(next(iter(kept)))
        return window

    def memo(self, name: str, compute):
        """A value computed once per plan (e.g. the billing settings)."""
        memo = self.windows.setdefault("memo", {})
        if name not in memo:
            memo[name] = compute()
        return memo[name]

    SNAPSHOTS_KEPT = 4      # clients whose invoice snapshots are kept (the plan goes client by client)

    def snapshots(self, client_id: str) -> list[dict]:
        """The client's invoice snapshots (``Store.invoice_snapshots`` of every period, oldest
        first), read once while the plan is on that client (each period's late changes read them;
        the callers only read them)."""
        kept = self.windows.setdefault("snapshots", {})
        if client_id not in kept:
            kept[client_id] = self.store.invoice_snapshots(client_id, before="9999-99")
            self.queries += 1
            while len(kept) > self.SNAPSHOTS_KEPT:
                kept.pop(next(iter(kept)))
        return kept[client_id]

    SEGMENTS_KEPT = 1000    # (client, month) segments kept: the months of ~75 clients, 3 windows

    def segments(self, key: tuple, compute) -> tuple[list["Segment"], list[str]]:
        """The segments of one client and period (``segments_for``), computed once per plan while
        at most ``SEGMENTS_KEPT`` are kept (the oldest go first: memory stays bounded whatever the
        number of clients)."""
        memo = self.windows.setdefault("segments", {})
        if key not in memo:
            memo[key] = compute()
            while len(memo) > self.SEGMENTS_KEPT:
                memo.pop(next(iter(memo)))
        segments, errors = memo[key]
        return list(segments), list(errors)


# The tables the plan reads up to a date: the column, the condition the planner gives, and whether
# a record without a date passes it.
DATED = {"time_entries": ("started_at", "started_at < ?", False),
         "products": ("sold_at", "sold_at is null or sold_at < ?", True)}


def _stored_before(stored: Any, end: str, null_ok: bool) -> bool:
    """``stored < end`` as the database compares a stored value with a text (NULL: ``null_ok``;
    a number sorts before any text, a blob after)."""
    if stored is None:
        return null_ok
    if isinstance(stored, str):
        return stored < end
    return isinstance(stored, (int, float))


def billing_settings(hub: "Hub"):
    """``[billing]`` as validated settings, validated once per plan."""
    reads = getattr(hub, "plan_reads", None)
    if reads is not None:
        return reads.memo("billing_settings", lambda: hub.config.billing_settings)
    return hub.config.billing_settings


def records_of(hub: "Hub", table: str, source: str, client_source_id: str, *, where: str = "",
               args: Iterable = ()) -> list:
    """One client's records of ``table``, through the plan's ``PlanReads`` while a plan runs."""
    reads = getattr(hub, "plan_reads", None)
    if reads is not None:
        return reads.records(table, source, client_source_id, where=where, args=args)
    if not where:
        return list(hub.store.iter_records(table, source, client_source_id))
    return list(hub.store.iter_records(table, source, client_source_id, where=where, args=args))


# --- clients and contracts -----------------------------------------------------------------------

@dataclass
class Context:
    """What planning one run needs, read once: linked clients, their contracts, the PSA source."""

    registry: Registry
    contracts: dict[str, Contract]
    errors: dict[str, list[str]] = field(default_factory=dict)
    psa: str | None = None
    # The contracts whose days bill ``period`` (see ``contract_segments``); ``contracts[cid]`` is
    # the one in force at the period's end (or the last in force), used for everything else.
    segments: dict[str, list["Segment"]] = field(default_factory=dict)
    period: Period | None = None



def build_context(hub: "Hub", report: "RunReport", period: Period) -> Context:
    """Link clients across systems and find each one's contract for ``period``: the one in force
    at the period's end (``Context.contracts``), and every contract whose days bill the period
    (``Context.segments``)."""
    m = hub.mappings
    explicit = [HubClient(c.client_id, c.name, dict(c.links)) for c in m.contracts.values()]
    explicit += [HubClient(cid, name, dict(links)) for cid, (name, links) in m.links.items() if cid not in m.contracts]
    seen = {c.id for c in explicit}
    explicit += [HubClient(cid, name, dict(links)) for cid, (name, links) in sorted(m.error_links.items())
                 if cid not in seen]
    master = client_master(hub)
    pulled_clients = list(hub.store.iter_clients())
    registry = link_clients(explicit, pulled_clients, master=master)
    reads = getattr(hub, "plan_reads", None)
    if reads is not None:        # the plan takes its clients in this order
        reads.read_in_order((system, ext) for _, client in sorted(registry.clients.items())
                            for system, ext in sorted(client.links.items()))
    ctx = Context(registry, {}, psa=master, period=period)
    # A link the MSP wrote to an id its system does not have would bill the client without that
    # system's devices or time: it holds the client (only systems whose clients are pulled).
    known = {(c.source, c.source_id) for c in pulled_clients}
    states = hub.store.stream_states()
    read = {name for name, c in hub.connectors.items() for st in c.streams() if st.table == "clients"
            and ((states.get((name, st.name)) or {}).get("last") or {}).get("status") == "complete"}
    for client in explicit:
        for system, ext in sorted(client.links.items()):
            if system in read and (system, ext) not in known:
                where = "mappings/contracts.toml" if client.id in m.contracts else "mappings/links.toml"
                ctx.errors.setdefault(client.id, []).append(
                    f"client {client.id} is linked to {system} id {ext!r}, which no pulled {system} client has; "
                    f"correct the id in {where} (msp-hub clients lists the {system} ids)")
    for message in registry.conflicts:
        report.discrepancies.append(reconcile.Discrepancy("link_conflict", "", message))
        report.errors.append(message)
    for cid, client in sorted(registry.clients.items()):
        if cid in m.contract_errors:
            ctx.errors.setdefault(cid, []).append(f"contract error: {m.contract_errors[cid]}")
            continue
        mapped = m.contracts.get(cid)
        in_period, problems = psa_contracts(hub, master, client, period)
        for problem in problems:
            ctx.errors.setdefault(cid, []).append(problem)
        segments = contract_segments(in_period, period)
        # The agreements in force on the last day the client had one in the period (its end, unless
        # they ended before it), the first by kind priority.
        last = segments[-1].last if segments else None
        from_psa = sorted((c for c in in_period if last and in_force_days(c.start, c.end, last, last)),
                          key=lambda c: (KIND_PRIORITY[c.kind], c.agreement or ""))
        if mapped is not None:
            contract = replace(mapped, links=dict(client.links))
            if from_psa and (from_psa[0].kind, from_psa[0].tier) != (mapped.kind, mapped.tier):
                msg = (f"client {cid}: mappings/ says {mapped.kind} {mapped.tier or ''}".rstrip()
                       + f", the PSA's {from_psa[0].origin} says {from_psa[0].kind} {from_psa[0].tier or ''}".rstrip()
                       + "; the mappings contract is used")
                report.discrepancies.append(reconcile.Discrepancy("contract_conflict", cid, msg))
            ignored = [said for c in in_period for said in c.from_additions]
            if ignored:
                msg = (f"client {cid}: its contract in {mapped.file or 'mappings/'} wins over the PSA, so these "
                       f"agreement additions are ignored: {'; '.join(ignored)}; add the add-on or tier to that "
                       f"contract, or remove the contract to bill from the PSA")
                report.discrepancies.append(reconcile.Discrepancy("additions_ignored", cid, msg))
                report.warnings.append(msg)
            ctx.contracts[cid] = contract
            ctx.segments[cid] = [whole_period(contract, period)]
        elif from_psa:
            ctx.contracts[cid] = from_psa[0]
            ctx.segments[cid] = segments
            if len(from_psa) > 1:
                report.discrepancies.append(reconcile.Discrepancy(
                    "several_agreements", cid, f"client {cid} has {len(from_psa)} billable agreements "
                    f"({'; '.join(c.origin for c in from_psa)}); {from_psa[0].origin} is used"))
    return ctx


# --- contracts that change inside a period --------------------------------------------------------

# Agreement statuses whose days bill: an expired agreement billed the days up to its end date.
IN_FORCE_STATUSES = ("active", "expired")


@dataclass(frozen=True)
class Segment:
    """A contract and the calendar days of a period (local, inclusive) it bills.

    ``prorated``: it bills ``days`` over the period's days (it prorates and was not in force
    the whole period); otherwise it bills the whole period. ``note`` explains the split on the
    lines it bills (empty when one contract was in force the whole period).
    """

    contract: Contract
    first: date
    last: date
    prorated: bool = False
    note: str = ""

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def _last_day(period: Period) -> date:
    return period.first_day + timedelta(days=period.days - 1)


def whole_period(contract: Contract, period: Period, note: str = "") -> Segment:
    return Segment(contract, period.first_day, _last_day(period), False, note)


def in_force_days(start: str | None, end: str | None, first: date, last: date) -> tuple[date, date] | None:
    """The days from ``first`` to ``last`` (inclusive) on which an agreement running from
    ``start`` to ``end`` (ISO dates, inclusive; None: open) is in force, or None.

    Raises ValueError when a date is not an ISO date."""
    lo = max(first, date.fromisoformat(start[:10])) if start else first
    hi = min(last, date.fromisoformat(end[:10])) if end else last
    return (lo, hi) if lo <= hi else None


def psa_contracts(hub: "Hub", master: str | None, client: HubClient, period: Period) -> tuple[list[Contract], list[str]]:
    """The contracts the client's PSA agreements stand for, in force on at least one day of
    ``period``, and the errors of those that cannot be read (they hold the client)."""
    if not master or master not in client.links:
        return [], []
    out, errors = [], []
    first, last = period.first_day, _last_day(period)
    additions = records_of(hub, "additions", master, client.links[master])
    for a in records_of(hub, "agreements", master, client.links[master]):
        if a.status not in IN_FORCE_STATUSES or (a.status == "expired" and not a.end_date):
            continue
        try:
            days = in_force_days(a.start_date, a.end_date, first, last)
        except ValueError:
            errors.append(f"{a.source} agreement {a.name!r} (id {a.source_id}) of client {client.name!r} runs from "
                          f"{a.start_date!r} to {a.end_date!r}, which are not dates, so the days it is in force in "
                          f"{period.name} cannot be told; correct its start and end dates in {a.source}")
            continue
        if days is None:
            continue
        try:
            # Its additions bill as they stand on its last day in the period (an add-on whose addition
            # was cancelled stops from the first period it is not in force at the end of).
            out.append(contract_from_agreement(client.id, client.name, client.links, a, hub.mappings,
                                               additions, days[1].isoformat()))
        except HubError as exc:
            errors.append(str(exc))
    return out, errors


def contract_segments(contracts: list[Contract], period: Period) -> list[Segment]:
    """Which contract bills which days of ``period`` (BILLING.md, Devices).

    Day by day, the contract in force is the first by kind priority (then agreement id) among
    those in force that day; consecutive days of one contract are one segment. When every one of
    them prorates, each bills its own days over the period's days; otherwise the one in force at
    the period's end (or the last one in force) bills the whole period.
    """
    ranked = sorted(contracts, key=lambda c: (KIND_PRIORITY[c.kind], c.agreement or ""))
    runs: list[list] = []
    for n in range(period.days):
        day = period.first_day + timedelta(days=n)
        c = next((c for c in ranked if in_force_days(c.start, c.end, day, day)), None)
        if c is None:
            continue
        if runs and runs[-1][0] is c and runs[-1][2] == day - timedelta(days=1):
            runs[-1][2] = day
        else:
            runs.append([c, day, day])
    if not runs:
        return []
    whole = runs[0][1] == period.first_day and runs[-1][2] == _last_day(period)
    if len(runs) == 1 and whole:
        return [whole_period(runs[0][0], period)]

    def span(c, first, last):
        return f"{c.origin}, from {first.isoformat()} to {last.isoformat()}"

    if all(c.proration for c, _, _ in runs):
        out = []
        for i, (c, first, last) in enumerate(runs):
            days = (last - first).days + 1
            note = f"{span(c, first, last)}: {days} of {period.days} days (the contract prorates)"
            if i > 0:
                note += f", replacing {runs[i - 1][0].origin}"
            if i + 1 < len(runs):
                note += f", replaced by {runs[i + 1][0].origin} on {runs[i + 1][1].isoformat()}"
            out.append(Segment(c, first, last, True, note))
        return out
    end = runs[-1][0]
    fixed = sorted({c.origin for c, _, _ in runs if not c.proration})
    if len(runs) == 1:
        which = "it does not prorate"
    elif len(fixed) == len({c.origin for c, _, _ in runs}):
        which = "none of them prorates"
    else:
        which = f"{', '.join(fixed)} {'does' if len(fixed) == 1 else 'do'} not prorate"
    note = ("; ".join(span(c, first, last) for c, first, last in runs)
            + f"; {which}, so {end.origin}, "
            + ("in force at the period's end" if runs[-1][2] == _last_day(period) else "the last one in force")
            + ", bills the whole period")
    return [whole_period(end, period, note)]


def segments_for(hub: "Hub", contract: Contract, period: Period) -> tuple[list[Segment], list[str]]:
    """The segments of ``contract``'s client for ``period`` (any period, not only the one the
    context was built for), and the errors of agreements that cannot be read. A contract from
    mappings/ is in force the whole period."""
    if contract.origin == "mappings":
        return [whole_period(contract, period)], []
    master = client_master(hub)

    def compute():
        client = HubClient(contract.client_id, contract.name, dict(contract.links))
        contracts, errors = psa_contracts(hub, master, client, period)
        return contract_segments(contracts, period), errors

    reads = getattr(hub, "plan_reads", None)
    if reads is None:
        return compute()
    return reads.segments((master, contract.client_id, contract.name, tuple(sorted(contract.links.items())),
                           period.name, period.tz, period.start, period.end), compute)


def contract_on(segments: list[Segment], day: date) -> Contract | None:
    """The contract that bills ``day`` (e.g. a time entry's local day): the one whose segment
    holds it; None when no contract was in force that day."""
    return next((s.contract for s in segments if s.first <= day <= s.last), None)


def _segment_period(period: Period, seg: Segment) -> Period:
    """``period`` cut to the segment's days (same name: its lines keep the period's name)."""
    from zoneinfo import ZoneInfo
    zone = ZoneInfo(period.tz)
    start = datetime.combine(seg.first, datetime.min.time(), zone).astimezone(timezone.utc)
    end = datetime.combine(seg.last + timedelta(days=1), datetime.min.time(), zone).astimezone(timezone.utc)
    return Period(period.name, period.tz, start, end, seg.first, seg.days)


def invoice_language(hub: "Hub") -> str:
    """The language of what the hub writes for clients: invoice lines, notices, alert tickets
    (``[billing.invoice] language``)."""
    return billing_settings(hub).invoice_settings.language


def bill_devices_in_force(hub: "Hub", contract: Contract, period: Period,
                          segments: list[Segment] | None = None) -> reconcile.Bill:
    """The device lines of one client's invoice for ``period``: the sum of the shares of the
    contracts in force in it (``segments_for``), each line explaining its contract's days.

    A prorating contract in force part of the period counts the devices seen in its days, each
    weighted by the days it was there (from its creation day, when later) over the period's days.
    """
    errors: list[str] = []
    if segments is None:
        segments, errors = segments_for(hub, contract, period)
    segments = [s for s in segments if s.contract.tier]
    empty = reconcile.Bill(contract.client_id, period.name, contract.currency, (), errors=tuple(errors))
    if not segments:
        return empty
    devices = client_devices(hub, contract)
    if len(segments) == 1 and not segments[0].prorated:
        seg = segments[0]
        bill = reconcile.bill_devices(seg.contract, hub.mappings, devices, period, invoice_language(hub))
        if seg.note:
            bill = replace(bill, lines=tuple(replace(l, rule=f"{l.rule}; {seg.note}") for l in bill.lines))
        return replace(bill, errors=tuple(errors) + bill.errors)
    by_id = {}
    for d in devices:
        by_id.setdefault(str(d.source_id), d)
    merged: dict[str, dict] = {}
    excluded, notes, counted = [], [], set()
    lang = invoice_language(hub)
    for seg in segments:
        part = reconcile.bill_devices(seg.contract, hub.mappings, devices, _segment_period(period, seg),
                                      invoice_language(hub))
        errors += [e for e in part.errors if e not in errors]
        notes += [n for n in part.notes if n not in notes]
        excluded += part.excluded
        for line in part.lines:
            items, quantity = [], Fraction(0)
            for item in line.items:
                d = by_id.get(str(item["id"]))
                since = seg.first
                if d is not None and seg.contract.proration and d.created_at is not None and d.created_at >= period.start:
                    since = max(since, period.local_day(d.created_at))
                days = (seg.last - since).days + 1
                weight = Fraction(days, period.days)
                quantity += weight
                counted.add(str(item["id"]))
                items.append({**item, "weight": format_quantity(weight), "days": f"{days}/{period.days}",
                              "contract": seg.contract.origin})
            description = i18n.text("line.days", lang, description=line.description,
                                    first=i18n.day(seg.first.isoformat(), lang), last=i18n.day(seg.last.isoformat(), lang))
            rule = f"{line.rule}; {seg.note}"
            got = merged.get(line.code)
            if got is None:
                merged[line.code] = {"line": line, "quantity": quantity, "items": items, "description": description,
                                     "rule": rule}
            else:
                got["quantity"] += quantity
                # One contract after another on the same line (same tier): one item per device,
                # its days added, so that the line counts each device once.
                known = {str(i["id"]): n for n, i in enumerate(got["items"])}
                for item in items:
                    n = known.get(str(item["id"]))
                    if n is None:
                        got["items"].append(item)
                        continue
                    was = got["items"][n]
                    days = int(was["days"].split("/")[0]) + int(item["days"].split("/")[0])
                    got["items"][n] = {**was, "weight": format_quantity(Fraction(days, period.days)),
                                       "days": f"{days}/{period.days}",
                                       "contract": f"{was['contract']}; {item['contract']}"}
                got["description"] = i18n.text("line.more_days", lang, description=got["description"],
                                               first=i18n.day(seg.first.isoformat(), lang),
                                               last=i18n.day(seg.last.isoformat(), lang))
                got["rule"] += f" | {seg.note}"
    lines = []
    for g in merged.values():
        line = g["line"]
        lines.append(replace(line, description=g["description"], quantity=format_quantity(g["quantity"]),
                             amount=round_half_up(g["quantity"] * line.unit_amount), rule=g["rule"],
                             items=tuple(g["items"])))
    seen_excluded, kept = set(), []
    for e in excluded:
        if e.source_id in counted or (e.source_id, e.reason) in seen_excluded:
            continue
        seen_excluded.add((e.source_id, e.reason))
        kept.append(e)
    return reconcile.Bill(contract.client_id, period.name, contract.currency, tuple(lines), tuple(kept),
                          tuple(errors), tuple(notes))


def report_unbilled(hub: "Hub", report: "RunReport", ctx: Context) -> None:
    """Every client no contract bills, every orphan record: reported, never billed silently."""
    counts = hub.store.device_counts()
    for rec in ctx.registry.unmapped:
        n = counts.get((rec.source, rec.source_id), 0)
        msg = (f"{rec.source} client {rec.name!r} (id {rec.source_id}) has {n} device(s) and is linked to no hub "
               f"client; add it to mappings/links.toml (or a contract in mappings/contracts.toml) with "
               f"{rec.source} = \"{rec.source_id}\"")
        suggestion = next((s for s in ctx.registry.suggestions if (s.system, s.source_id) == (rec.source, rec.source_id)), None)
        if suggestion:
            msg += f"; it looks like {suggestion.client_name!r} ({suggestion.client_id}, confidence {suggestion.confidence:.2f})"
        report.discrepancies.append(reconcile.Discrepancy("client_without_contract", f"{rec.source}:{rec.source_id}",
                                                          msg, {"name": rec.name, "devices": n}))
        report.warnings.append(msg)
    for cid, client in sorted(ctx.registry.clients.items()):
        if cid in ctx.contracts or cid in ctx.errors:
            continue
        n = sum(counts.get((s, x), 0) for s, x in client.links.items())
        if n:
            report.discrepancies.append(reconcile.Discrepancy(
                "revenue_found", cid, f"client {client.name!r} ({cid}) has {n} device(s) in the RMM and no billing "
                f"agreement; add an agreement in the PSA or a contract in mappings/contracts.toml", {"devices": n}))
    if ctx.psa:
        for table in ("time_entries", "agreements", "products"):
            orphans = hub.store.orphans(table, ctx.psa)
            if orphans:
                ids = ", ".join(f"{o['source_id']} (company {o['client_source_id']})" for o in orphans[:5])
                msg = (f"{len(orphans)} {ctx.psa} {table.replace('_', ' ')} belong to a company that was not pulled: "
                       f"{ids}{' ...' if len(orphans) > 5 else ''}; they are not billed until the company exists")
                report.discrepancies.append(reconcile.Discrepancy("unknown_company", table, msg))
                report.warnings.append(msg)
    for cid, messages in sorted(ctx.errors.items()):
        for message in messages:
            report.errors.append(f"client {cid}: {message}")


# --- bills -------------------------------------------------------------------------------------

def client_devices(hub: "Hub", contract: Contract):
    return [d for system, ext in sorted(contract.links.items()) for d in records_of(hub, "devices", system, ext)]


def blocks_for(hub: "Hub", contract: Contract) -> list[timebilling.Block]:
    """Every prepaid block of the client, each naming its agreement (BILLING.md, "Prepaid blocks").

    The agreements: the contract's own (block contracts) and every PSA agreement of the client
    whose type agreement_types.toml maps as a block, current or expired, whatever its status and
    dates (MSPs renew a block as a new agreement; time charged to the old one is still block time).
    Each has block 1 (its own hours, from its start date: the contract's block for its own
    agreement, else the one its type gives, the PSA's applicationLimit first) and the renewals the
    hub sold for it (store table ``blocks``).
    """
    m = hub.mappings
    own = contract.agreement if contract.kind == "block" else None
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)

    def blocks_of(agreement: str, size, start: datetime) -> list[timebilling.Block]:
        first = timebilling.Block.of_size(1, size, start, agreement=agreement)
        sold = [timebilling.Block(r["number"], Fraction(r["hours"]), r["rate"], datetime.fromisoformat(r["started_at"]),
                                  agreement=agreement)
                for r in hub.store.blocks(contract.client_id, agreement)]
        return [first] + sold

    out: list[timebilling.Block] = []
    seen: set[str] = set()
    for system, ext in sorted(contract.links.items()):
        for a in records_of(hub, "agreements", system, ext):
            if a.source_id in seen:
                continue
            if a.source_id == own:
                size = contract.time.block
            elif (m.agreement_types.get(a.type_name) or {}).get("kind") == "block":
                size = contract_from_agreement(contract.client_id, contract.name, contract.links, a, m).time.block
            else:
                continue
            if size is None:
                continue
            seen.add(a.source_id)
            start = (datetime.fromisoformat(a.start_date[:10]).replace(tzinfo=timezone.utc) if a.start_date
                     else epoch)
            out += blocks_of(a.source_id, size, start)
    if own is not None and own not in seen and contract.time.block is not None:
        out += blocks_of(own, contract.time.block, epoch)
    return out


def time_records(hub: "Hub", contract: Contract, period: Period | None):
    """The client's time entries and products that an invoice for ``period`` may bill (all of
    them up to the period's end: a late entry of an earlier period is billed on the next invoice)."""
    end = period.end.isoformat() if period else "9999"
    entries, products = [], []
    for system, ext in sorted(contract.links.items()):
        entries += records_of(hub, "time_entries", system, ext, where="started_at < ?", args=[end])
        products += records_of(hub, "products", system, ext, where="sold_at is null or sold_at < ?", args=[end])
    return entries, products


def flat_work_types(hub: "Hub", contracts: Iterable[Contract]) -> frozenset[str]:
    """The work types billed at a flat rate per ticket by the mappings' time terms or any of
    ``contracts`` (during a plan: those of every contract the plan bills, and ``contracts``)."""
    reads = getattr(hub, "plan_reads", None)
    known = getattr(reads, "flat_work_types", frozenset()) if reads is not None else frozenset()
    terms = [getattr(hub.mappings, "time", None)] + [c.time for c in contracts]
    return known | {n for t in terms if t is not None for n, w in t.work_types.items() if w.flat_rate is not None}


def _same_contract(a: Contract, b: Contract) -> bool:
    return (a.origin, a.agreement, a.kind, a.tier) == (b.origin, b.agreement, b.kind, b.tier)


def entries_by_own_contract(hub: "Hub", contract: Contract, period: Period, entries: list,
                            blocks: Iterable[timebilling.Block] = (), *, others_only: bool = False,
                            done: frozenset[str] = frozenset()
                            ) -> tuple[list, list[tuple[Contract, str, list]], list[str]]:
    """Split a client's time entries by the contract that bills them (BILLING.md, "Month after
    month"): an entry dated in a period is billed, scope, included services and rates, by the
    contract in force on its own day (``segments_for``, ``contract_on``), never by today's.

    Returns the entries ``contract`` bills, the groups ``(contract, period name, entries)`` another
    contract bills, and the errors of agreements whose dates cannot be read for an entry's period
    (those entries are not billed). Entries ``contract`` keeps: those of its own days, those dated
    after ``period`` or without a readable date (``bill_time`` reports them), those charged to a
    prepaid agreement (drawn from their block, whatever the contract), and those dated on a day no
    contract was in force (``others_only``: left out, as a client with no contract bills none).

    An entry dated before ``period`` that no contract can bill (not billable, no charge, invoiced
    by the PSA, or among ``done``, the ids the hub billed already) is kept without looking for the
    contract of its day: ``bill_time`` says why it is not billed, whichever contract reads it, and
    an old month whose agreements cannot be read holds nothing for it.
    """
    prepaid = {b.agreement for b in blocks if b.agreement} | ({contract.agreement} if contract.kind == "block" else set())
    cache: dict[str, tuple[list[Segment], list[str]]] = {}
    names: dict[date, str] = {}
    on_day: dict[date, Any] = {}      # the contract in force on a day
    kept, errors = [], []
    others: dict[tuple[str, str], tuple[Contract, str, list]] = {}
    unbillable = (timebilling.DO_NOT_BILL, timebilling.NO_CHARGE)
    # A flat-rate job is decided by all the entries of its ticket: those stay with their day's contract.
    flat_types = flat_work_types(hub, [contract])
    flat_tickets = {e.ticket_id for e in entries if e.ticket_id is not None and e.work_type in flat_types}
    for e in entries:
        moment = e.started_at
        if (not isinstance(moment, datetime) or moment.tzinfo is None or moment >= period.end
                or timebilling.entry_problem(e) is not None or e.agreement_source_id in prepaid):
            if not others_only:
                kept.append(e)
            continue
        if (moment < period.start and (e.invoiced is True or e.billable in unbillable or e.source_id in done)
                and (e.ticket_id is None or e.ticket_id not in flat_tickets)):
            if not others_only:
                kept.append(e)
            continue
        day = period.local_day(moment)
        name = names.get(day)
        if name is None:
            name = names[day] = day.strftime("%Y-%m")
        if name not in cache:
            own = period if name == period.name else parse_period(name, period.tz)
            cache[name] = segments_for(hub, contract, own)
            for problem in cache[name][1]:
                errors.append(f"{problem}; the time entries of {name} are not billed until it is corrected")
        segments, problems = cache[name]
        if problems:
            continue
        billing = on_day.get(day, on_day)
        if billing is on_day:
            billing = on_day[day] = contract_on(segments, day)
        if billing is None:
            if not others_only:
                kept.append(e)
        elif _same_contract(billing, contract):
            kept.append(e)
        elif billing.kind == "block" and not others_only:
            kept.append(e)     # its block is drawn by the contract's own run (blocks_for names every block)
        else:
            group = others.setdefault((name, billing.origin), (billing, name, []))
            group[2].append(e)
    return kept, sorted(others.values(), key=lambda g: (g[1], g[0].origin)), errors


def time_of_own_contracts(hub: "Hub", contract: Contract, period: Period, groups, already: frozenset[str]
                          ) -> tuple[list[BillingLine], list[dict], list[str]]:
    """Bill each group of ``entries_by_own_contract`` by its own contract, on ``period``'s invoice:
    lines naming the entries' period (``bill_time``'s late lines), each saying which contract
    priced it."""
    lines, reported, errors = [], [], []
    for other, name, entries in groups:
        if other.currency != contract.currency:
            errors.append(f"time entries of {name} ({', '.join(str(e.source_id) for e in entries)}) are billed by "
                          f"{other.origin}, in {other.currency}, and client {contract.client_id}'s invoice is in "
                          f"{contract.currency}; bill them by hand or align the currencies. They are not billed")
            continue
        tb = timebilling.bill_time(contract.client_id, other, entries, [], period, already_billed=already,
                                   language=invoice_language(hub))
        for line in tb.lines:
            lines.append(replace(line, code=f"{line.code}@{other.agreement or other.origin}",
                                 rule=f"{line.rule}; priced by {other.origin}, the contract in force on the "
                                      f"entries' days (BILLING.md, Month after month)"))
        reported += [_reported(r) for r in tb.reported]
        errors += list(tb.errors)
    return lines, reported, errors


def device_deltas(hub: "Hub", contract: Contract, period: Period, exclude_key: str,
                  claimed: frozenset[str] = frozenset(), notes: list[str] | None = None) -> list[BillingLine]:
    """Devices that count for an invoiced period and that its invoice did not bill, thing by thing.

    Each invoiced period keeps the tier, prices and classes its snapshot recorded: a device it
    billed is final (reclassified, moved to another tier or repriced since, it is never billed
    again); a device it did not bill and that counts for it (reported late by the RMM) is billed
    once on the next invoice at that period's price. A device approved after the period (the hub
    first saw it approved at or after the period's end) never counts for it. Devices that stopped
    counting are not credited (a device that disappears during a period is billed for the whole
    period). Periods whose snapshot has no detail are final. Why a late device is not billed (its
    period billed no device tier to price it with) is added to ``notes``.
    """
    if not contract.tier:
        return []
    billed = hub.store.live_billed_item_ids(contract.client_id, exclude_key=exclude_key, kinds=("delta",)) | claimed
    devices = client_devices(hub, contract)
    if not devices:
        return []
    seen: dict[tuple[str, str], dict] = {}
    for system, ext in sorted(contract.links.items()):
        seen.update({(system, sid): row for sid, row in hub.store.approvals_seen(system, ext).items()})
    lines: list[BillingLine] = []
    for snap in live_snapshots(hub, contract.client_id, before=period.name, exclude_key=exclude_key):
        if not is_detailed(snap["lines"]) or not is_final(snap):
            continue
        earlier = parse_period(snap["period"], period.tz)
        lines += _late_devices(hub, contract, period, earlier, snap, devices, seen, billed, notes)
    return lines


def _known_after(seen: dict | None, snap: dict) -> bool:
    return seen is None or not seen.get("noted_at") or not snap.get("created_at") or \
        seen["noted_at"] > snap["created_at"]


def approved_in_time(device, seen: dict | None, period: Period) -> bool:
    """Whether ``device`` was approved for ``period`` as the hub knows it: first stored approved
    (or decommissioned: it was managed), or first seen approved before the period's end."""
    if seen is None or seen["first_status"] in reconcile.COUNTED_STATES:
        return True
    return seen["approved_seen_at"] is not None and seen["approved_seen_at"] < period.end


def _late_devices(hub: "Hub", contract: Contract, period: Period, earlier: Period, snap: dict,
                  devices, seen: dict, billed: frozenset[str], notes: list[str] | None = None) -> list[BillingLine]:
    """The devices the hub first knew after ``earlier`` was invoiced (reported late by the RMM)
    that count for it: a device it knew then was decided then, whatever its later contacts say.

    Each is billed with what the snapshot recorded: its tier and, line by line, its price. A month
    that two contracts shared (an upgrade inside it, both prorating: several tiers billed) bills
    each contract's share of a late device, its days by the segments of that month
    (``segments_for``) at the price the snapshot recorded for that contract's tier line."""
    snapshot = snap["lines"]
    codes = {line["code"]: line for line in snapshot}
    tiers = {c.split(":")[1] for c in codes if c.startswith("tier:")}
    billed_on: dict[str, set[str]] = {}
    for line in snapshot:
        for t in line.get("things", []):
            if t.get("kind") == "device":
                billed_on.setdefault(t["on"], set()).add(t["id"])
    on_tier = set().union(*(ids for on, ids in billed_on.items() if on.startswith("tier:")))
    candidates = [d for d in devices if str(d.source_id) not in on_tier
                  and _known_after(seen.get((d.source, str(d.source_id))), snap)
                  and approved_in_time(d, seen.get((d.source, str(d.source_id))), earlier)]
    if not candidates:
        return []
    addons = tuple(sorted({c.split(":")[1] for c in codes if c.startswith("addon:")}))
    if len(tiers) == 1:
        prorated = any("prorated by days" in (line.get("rule") or "") for line in snapshot)
        # One tier billed every class: no addition named another then (whatever they name now); an
        # add-on an addition switched on counts the classes it counts today.
        then = replace(contract, tier=next(iter(tiers)), addons=addons, proration=prorated, minimum=0,
                       class_tiers={}, addon_classes={a: c for a, c in contract.addon_classes.items() if a in addons})
        shares = list(reconcile.bill_devices(then, hub.mappings, candidates, earlier, invoice_language(hub)).lines)
    else:
        shares, why = _shared_month_shares(hub, contract, earlier, tiers, addons, candidates)
        if why is not None:
            _note_unpriced(period, earlier, candidates, why, notes)
            return []
    out = []
    for line in shares:
        on = line.code.rsplit(":", 1)[0]
        unit = codes[line.code]["unit_amount"] if line.code in codes else line.unit_amount
        items = []
        for i in line.items:
            ref = f"{earlier.name}:{on}:{i['id']}"
            if str(i["id"]) in billed_on.get(on, set()) or ref in billed:
                continue
            weight = Fraction(i["weight"])
            items.append({**i, "id": ref, "ref": str(i["id"]), "of": "device", "period": earlier.name,
                          "amount": round_times(weight, unit)})
        if not items:
            continue
        qty = sum((Fraction(i["weight"]) for i in items), Fraction(0))
        price = "its price then" if line.code in codes else "the tier's price (the period billed no such line)"
        lang = invoice_language(hub)
        out.append(BillingLine(
            contract.client_id, period.name, f"delta:{earlier.name}:{line.code}",
            i18n.text("line.late_change", lang, period=i18n.period(earlier.name, lang), description=line.description),
            format_quantity(qty), unit,
            round_half_up(qty * unit), line.currency,
            f"{line.rule}; counted after the {earlier.name} invoice was made, billed once on the next one at "
            f"{price}, {format_minor(unit, line.currency)}", tuple(items)))
    return out


def _note_unpriced(period: Period, earlier: Period, candidates, why: str, notes: list[str] | None) -> None:
    """Name the late devices that count for ``earlier`` but that nothing prices (``why``)."""
    late = [d for d in candidates if reconcile.why_not_counted(d, earlier) is None
            and reconcile.device_problem(d) is None]
    if late and notes is not None and earlier == period.previous():
        names = ", ".join(f"{d.name} ({d.source} id {d.source_id})" for d in late[:5])
        notes.append(f"{len(late)} device(s) reported after the {earlier.name} invoice count for {earlier.name} "
                     f"({names}{' ...' if len(late) > 5 else ''}), but {why}; they are not billed for "
                     f"{earlier.name}")


def _shared_month_shares(hub: "Hub", contract: Contract, earlier: Period, tiers: set[str], addons: tuple[str, ...],
                         candidates) -> tuple[list[BillingLine], str | None]:
    """The device lines of ``candidates`` for an invoiced period whose snapshot billed several tiers
    (contracts that shared it): each contract in force its own days (``segments_for``), each device
    weighted by the days it was there in them (from its creation day, when later, if the contract
    prorates) over the period's days, one line per tier and class, a device's days of one tier added
    up. The contracts are the period's own agreements (their dates, their tiers); a tier the snapshot
    did not bill is not one that priced that period, so then nothing is billed and the reason is
    returned instead (as when the agreements cannot be read, or no longer give every tier it billed)."""
    if not tiers:
        return [], "that invoice billed no device tier to price them with"
    segments, errors = segments_for(hub, contract, earlier)
    segments = [s for s in segments if s.contract.tier]
    if errors:
        return [], f"the agreements in force in {earlier.name} cannot be read ({'; '.join(errors)})"
    # The tiers those contracts bill: their own, and those their additions name for some classes (a
    # named tier whose classes had no device that month is not on its invoice).
    now = {s.contract.tier for s in segments}
    named = {t for s in segments for t, _ in s.contract.class_tiers.values()}
    if not now <= tiers <= now | named:
        # The month's agreements no longer split it as its invoice did (a tier it did not bill, or
        # one of its tiers no longer in force): which of its prices each day had is not known.
        return [], (f"that invoice billed several tiers ({', '.join(sorted(tiers))}) and the agreements in force "
                    f"in {earlier.name} now give {', '.join(sorted(now)) or 'none'}, so which of its prices each "
                    f"day had is not known")
    by_id = {str(d.source_id): d for d in candidates}
    merged: dict[str, BillingLine] = {}
    lang = invoice_language(hub)
    for seg in segments:
        then = replace(seg.contract, addons=tuple(a for a in seg.contract.addons if a in addons), minimum=0)
        part = reconcile.bill_devices(then, hub.mappings, candidates, _segment_period(earlier, seg),
                                      invoice_language(hub))
        for line in part.lines:
            items = []
            for item in line.items:
                d = by_id.get(str(item["id"]))
                since = seg.first
                if d is not None and then.proration and d.created_at is not None and d.created_at >= earlier.start:
                    since = max(since, earlier.local_day(d.created_at))
                days = (seg.last - since).days + 1
                items.append({**item, "weight": format_quantity(Fraction(days, earlier.days)),
                              "days": f"{days}/{earlier.days}", "contract": then.origin})
            got = merged.get(line.code)
            if got is None:
                merged[line.code] = replace(line, description=i18n.text(
                                                "line.days", lang, description=line.description,
                                                first=i18n.day(seg.first.isoformat(), lang),
                                                last=i18n.day(seg.last.isoformat(), lang)),
                                            rule=f"{line.rule}; {seg.note}", items=tuple(items))
                continue
            known = {str(i["id"]): n for n, i in enumerate(got.items)}
            kept = list(got.items)
            for item in items:
                n = known.get(str(item["id"]))
                if n is None:
                    kept.append(item)
                    continue
                days = int(kept[n]["days"].split("/")[0]) + int(item["days"].split("/")[0])
                kept[n] = {**kept[n], "weight": format_quantity(Fraction(days, earlier.days)),
                           "days": f"{days}/{earlier.days}", "contract": f"{kept[n]['contract']}; {item['contract']}"}
            merged[line.code] = replace(got, items=tuple(kept), rule=f"{got.rule} | {seg.note}",
                                        description=i18n.text("line.more_days", lang, description=got.description,
                                                              first=i18n.day(seg.first.isoformat(), lang),
                                                              last=i18n.day(seg.last.isoformat(), lang)))
    return list(merged.values()), None


def record_deltas(hub: "Hub", contract: Contract, period: Period, exclude_key: str,
                  claimed: frozenset[str] = frozenset()) -> list[BillingLine]:
    """Time entries and products an earlier invoice billed whose facts changed since, thing by
    thing: one line each on this invoice, naming the period and the thing. An increase (more hours,
    a larger quantity) charges the difference; a decrease, or a record now not billable or no
    charge, credits it (a negative line). The rate is the one the entry was billed at; what was
    billed is the snapshot's amount plus every late change billed since. Periods whose snapshot
    has no detail are final.

    The overage of a prepaid block (``overage`` things: the hours of an entry billed beyond its
    block's balance) is compared with what is beyond that balance now (``_overage_now``): an entry
    edited down, or an earlier entry of the block edited down, credits the overage hours no longer
    beyond it; more hours beyond it charge the difference."""
    snaps = [s for s in live_snapshots(hub, contract.client_id, before="9999-99", exclude_key=exclude_key)
             if is_final(s)]
    billed: dict[tuple[str, str], dict] = {}
    for snap in snaps:
        if snap["period"] >= period.name or not is_detailed(snap["lines"]):
            continue
        for line in snap["lines"]:
            for t in line.get("things", []):
                if t.get("kind") in ("time", "product", "overage"):
                    billed.setdefault((t["kind"], t["id"]), dict(t, invoice=snap["period"]))
    if not billed:
        return []
    for snap in snaps:
        for line in snap["lines"]:
            for t in line.get("things", []):
                thing = billed.get((t.get("of"), t["id"])) if t.get("kind") == "delta" else None
                if thing is not None:
                    thing["amount"] += int(t["amount"])
                    if t.get("billed_hours") is not None:
                        thing["billed_hours"] = t["billed_hours"]
                    if t.get("quantity") is not None:
                        thing["quantity"] = t["quantity"]
    out = []
    drawdowns: dict[str, timebilling.Drawdown] | None = None
    index: dict[tuple[str, str], dict] = {}
    for (kind, rid), thing in sorted(billed.items(), key=lambda kv: (kv[1].get("period") or "", kv[0])):
        ref = f"{thing.get('period') or thing['invoice']}:{kind}:{rid}"
        if ref in claimed:
            continue
        table = "products" if kind == "product" else "time_entries"
        record = next((r for s in sorted(contract.links) if (r := _record_by_id(hub, contract, table, s, rid, index))),
                      None)
        if record is None:
            continue           # never deleted by a pull: a record the PSA no longer has stays as billed
        if kind == "overage":
            if drawdowns is None:
                drawdowns = _overage_drawdowns(hub, contract)
            line = _overage_delta(contract, period, thing, record, ref, drawdowns, invoice_language(hub))
        else:
            line = (_time_delta if kind == "time" else _product_delta)(contract, period, thing, record, ref,
                                                                        invoice_language(hub))
        if line is not None:
            out.append(line)
    return out


def _record_by_id(hub: "Hub", contract: Contract, table: str, source: str, source_id: str, index: dict):
    """``Store.record_by_id``: while a plan runs, found among the client's records (read once,
    kept in ``index`` by the caller), else (a record that moved to another client) asked alone."""
    if getattr(hub, "plan_reads", None) is not None and source in contract.links:
        if (table, source) not in index:
            index[(table, source)] = {str(r.source_id): r for r in records_of(hub, table, source, contract.links[source])}
        found = index[(table, source)].get(str(source_id))
        if found is not None:
            return found
    return hub.store.record_by_id(table, source, source_id)


def _overage_drawdowns(hub: "Hub", contract: Contract) -> dict[str, timebilling.Drawdown]:
    """Every prepaid agreement of the client drawn down by all its time entries as the PSA has
    them now (``timebilling.draw_down_agreements``, as ``bill_time`` draws them). Entries draw in
    date order, so an entry's overage depends only on the entries before it on its block."""
    entries = [e for system, ext in sorted(contract.links.items())
               for e in records_of(hub, "time_entries", system, ext)]
    current = contract.agreement if contract.kind == "block" else None
    return timebilling.draw_down_agreements(entries, blocks_for(hub, contract), contract.time, current=current)


def _overage_delta(contract: Contract, period: Period, thing: dict, entry, ref: str,
                   drawdowns: dict[str, timebilling.Drawdown], lang: str = i18n.DEFAULT_LANGUAGE) -> BillingLine | None:
    """The late change of an entry's invoiced overage: its hours beyond its block's balance now
    against those billed, at the overage rate it was billed at. Nothing when the balance is not
    known now (an entry of the block is an error, named on this invoice's own lines), when the
    agreement is no longer a prepaid block the hub draws down, or when hours beyond the balance
    are no longer overage (the contract now carries them): what the period billed then stays."""
    rate, was = int(thing["rate"]), Fraction(str(thing["billed_hours"]))
    agreement = thing.get("agreement") or entry.agreement_source_id
    d = drawdowns.get(str(agreement)) if agreement is not None else None
    if d is None or d.errors or contract.time.beyond_balance != timebilling.OVERAGE:
        return None
    now = d.overage.get(entry.source_id, Fraction(0))
    amount = round_half_up(now * rate) - thing["amount"]
    if amount == 0:
        return None
    if entry.billable in (DO_NOT_BILL, NO_CHARGE):
        why = f"the entry is now {'no charge' if entry.billable == NO_CHARGE else 'not billable'} in the PSA"
    else:
        why = (f"the entry now has {format_quantity(d.hours.get(entry.source_id, Fraction(0)))} h, "
               f"{format_quantity(now)} h of them beyond the balance")
    own = thing.get("period") or thing["invoice"]
    sign = "credit" if amount < 0 else "charge"
    return BillingLine(
        contract.client_id, period.name, f"delta:{own}:overage:{entry.source_id}",
        i18n.text("line.late_overage", lang, period=i18n.period(own, lang), agreement=agreement, id=entry.source_id,
                  work_type=thing.get("work_type") or entry.work_type, day=i18n.day(thing.get("date"), lang) or "",
                  was=i18n.hours(was, lang), now=i18n.hours(now, lang)),
        format_quantity(now - was), rate, amount, contract.currency,
        f"overage billed on the {thing['invoice']} invoice for {format_quantity(was)} h beyond the balance of "
        f"prepaid agreement {agreement} at {format_minor(rate, contract.currency)} per hour; {why}: the "
        f"difference is a {sign}, billed once (BILLING.md, Month after month)",
        ({"id": ref, "ref": entry.source_id, "of": "overage", "period": own, "amount": amount,
          "billed_hours": format_quantity(now), "was_hours": format_quantity(was)},))


def _time_delta(contract: Contract, period: Period, thing: dict, entry, ref: str,
                lang: str = i18n.DEFAULT_LANGUAGE) -> BillingLine | None:
    rate, was = int(thing["rate"]), Fraction(str(thing["billed_hours"]))
    if entry.billable in (DO_NOT_BILL, NO_CHARGE):
        now, why = Fraction(0), f"now {'no charge' if entry.billable == NO_CHARGE else 'not billable'} in the PSA"
    else:
        try:
            now = timebilling.billable_hours(entry, contract.time)
        except HubError:
            return None        # its own invoice line names the error
        why = f"hours now {format_quantity(timebilling.actual_hours(entry))}"
    amount = round_half_up(now * rate) - thing["amount"]
    if amount == 0:
        return None
    # The facts a per-entry line states (day, technician, ticket, work type), and hours × rate.
    ticket = (i18n.text("ticket", lang, ticket=entry.ticket_id) if entry.ticket_id is not None
              else i18n.text("no_ticket", lang))
    facts = i18n.text("facts", lang, day=i18n.day(thing.get("date"), lang) or i18n.text("no_date", lang),
                      member=entry.member or i18n.text("no_technician", lang), ticket=ticket,
                      work_type=thing.get("work_type") or entry.work_type)
    sign = "credit" if amount < 0 else "charge"
    own = thing.get("period") or thing["invoice"]
    return BillingLine(
        contract.client_id, period.name, f"delta:{own}:time:{entry.source_id}",
        i18n.text("line.late_time", lang, period=i18n.period(own, lang), id=entry.source_id, facts=facts,
                  was=i18n.hours(was, lang), now=i18n.hours(now, lang), diff=i18n.hours(now - was, lang),
                  price=i18n.money(rate, contract.currency, lang)),
        format_quantity(now - was), rate, amount, contract.currency,
        f"time entry billed on the {thing['invoice']} invoice for {format_quantity(was)} h at "
        f"{format_minor(rate, contract.currency)} per hour, {why}: the difference is a {sign}, billed once "
        f"(BILLING.md, Month after month)",
        ({"id": ref, "ref": entry.source_id, "of": "time", "period": own, "amount": amount,
          "work_type": thing.get("work_type") or entry.work_type,
          "billed_hours": format_quantity(now), "was_hours": format_quantity(was)},))


def _product_delta(contract: Contract, period: Period, thing: dict, product, ref: str,
                   lang: str = i18n.DEFAULT_LANGUAGE) -> BillingLine | None:
    unit, was = int(thing["unit"]), Fraction(str(thing["quantity"]))
    if product.billable in (DO_NOT_BILL, NO_CHARGE):
        now, why = Fraction(0), "now not billed in the PSA"
    else:
        try:
            now = Fraction(str(product.quantity).strip())
        except (ValueError, ZeroDivisionError):
            return None
        why = f"quantity now {format_quantity(now)}"
    amount = round_half_up(now * unit) - thing["amount"]
    if amount == 0:
        return None
    own = thing.get("period") or thing["invoice"]
    sign = "credit" if amount < 0 else "charge"
    return BillingLine(
        contract.client_id, period.name, f"delta:{own}:product:{product.source_id}",
        i18n.text("line.late_product", lang, period=i18n.period(own, lang), id=product.source_id,
                  description=thing.get("description") or product.catalog_item, was=i18n.number(was, lang),
                  now=i18n.number(now, lang)), format_quantity(now - was), unit, amount,
        contract.currency,
        f"product billed on the {thing['invoice']} invoice, quantity {format_quantity(was)} at "
        f"{format_minor(unit, contract.currency)}, {why}: the difference is a {sign}, billed once "
        f"(BILLING.md, Month after month)",
        ({"id": ref, "ref": product.source_id, "of": "product", "period": own, "amount": amount,
          "now_quantity": format_quantity(now), "catalog_item": product.catalog_item},))


def credit_surprises(bill: reconcile.Bill, key: str) -> tuple[str, ...]:
    """A credit that would make an invoice negative waits for a person, with the amount and why."""
    if bill.total >= 0:
        return ()
    credits = -sum(line.amount for line in bill.lines if line.amount < 0)
    return (f"the late changes credit {format_minor(credits, bill.currency)} and make this invoice "
            f"{format_minor(bill.total, bill.currency)}, below zero: a negative invoice is not sent. The credit "
            f"waits for a person: send it as it is with: msp-hub approve {key}, or credit the invoice it "
            f"corrects with: msp-hub invoice credit <invoice key> --amount ... --reason ...",)


def late_time_without_contract(hub: "Hub", contract: Contract, period: Period, key: str
                               ) -> tuple[list[BillingLine], list[dict], list[str]]:
    """The time a client with no contract for ``period`` still owes: entries dated in an earlier
    period on a day a contract was in force, entered after that period was invoiced and never
    billed, each priced by the contract of its own day (``entries_by_own_contract``)."""
    entries, _ = time_records(hub, contract, period)
    already = hub.store.live_billed_item_ids(contract.client_id, exclude_key=key)
    earlier = [e for e in entries if isinstance(e.started_at, datetime) and e.started_at.tzinfo is not None
               and e.started_at < period.start and not e.invoiced and e.source_id not in already]
    if not earlier:
        return [], [], []
    _, groups, problems = entries_by_own_contract(hub, contract, period, earlier, others_only=True)
    lines, reported, errors = time_of_own_contracts(hub, contract, period, groups, already)
    return lines, reported, problems + errors


def held_credits(hub: "Hub", ctx: Context, period: Period, now: datetime) -> list[PlanItem]:
    """Late changes of a client with no next invoice: its contract ended (a churned client), so no
    invoice of ``period`` carries the credit or charge of an entry or product changed after it was
    invoiced, nor the charge of an entry of an invoiced period entered late (priced by the contract
    of its own day, ``late_time_without_contract``). Each is held for a person (cause ``guardrail``) with the amount and the reason, until
    the hub can issue credit notes; approving its key sends it as an invoice of its own."""
    if not period.has_ended(now):
        return []
    out = []
    for cid, client in sorted(ctx.registry.clients.items()):
        if cid in ctx.contracts or cid in ctx.errors:
            continue
        contract = Contract(cid, client.name, None, hub.mappings.currency, dict(client.links),
                            kind="time_and_materials", origin="no contract")
        key = invoice_key(cid, period.name)
        lines = record_deltas(hub, contract, period, key)
        late, reported, errors = late_time_without_contract(hub, contract, period, key)
        lines += late
        if not lines and not errors:
            continue
        bill = reconcile.Bill(cid, period.name, contract.currency, tuple(lines), errors=tuple(errors),
                              reported=tuple(reported))
        vat = invoice_tax(hub, contract, bill, client.name, psa_id=psa_id_of(ctx, cid))   # a credit carries its VAT
        action = Action(key, INVOICE, connector_for(hub, INVOICE), cid,
                        invoice_payload(bill, client.name, period, vat=vat, **invoice_dress(hub)), period.name)
        status, reasons = _status_against_outbox(hub, key, action.payload["lines"], period=period, force=False,
                                                 now=now)
        cause = None
        stored = hub.store.get_action(key)
        if status == "create" and not (stored and stored["approved"]):
            what = "credit" if bill.total < 0 else "charge"
            status, cause = "held", "guardrail"
            reasons = (f"client {client.name!r} ({cid}) has no contract for {period.name}, so no next invoice "
                       f"carries the late changes of its invoiced periods: a {what} of "
                       f"{format_minor(abs(bill.total), bill.currency)} ({'; '.join(l.description for l in lines)}). "
                       f"It waits for a person: send it as an invoice of its own with: msp-hub approve {key}, "
                       f"or credit an invoice it concerns with: msp-hub invoice credit <invoice key> --amount "
                       f"... --reason ...",)
        item = PlanItem(INVOICE, cid, client.name, period.name, status, action, bill, reasons,
                        ledger=ledger_of(lines), snapshot=snapshot_of(lines), cause=cause)
        errors = list(errors) + list(_tax_reasons(vat))
        out.append(_hold(item, [], "error", extra_errors=errors) if errors else item)
    return out


def compute_bill(hub: "Hub", contract: Contract, period: Period, claimed: frozenset[str] = frozenset()) -> reconcile.Bill:
    """One client's invoice for one period: devices, time and products, the plugins' lines, the
    monthly minimum, then the late changes of earlier periods (outside the minimum: they belong to
    the periods they change, not to this one)."""
    key = current_invoice_key(hub, contract.client_id, period.name)
    bill = bill_devices_in_force(hub, contract, period)   # each contract in force its own days
    entries, products = time_records(hub, contract, period)
    if entries or products or contract.kind == "block":
        already = hub.store.live_billed_item_ids(contract.client_id, exclude_key=key) | claimed
        blocks = blocks_for(hub, contract)
        # Each entry is billed by the contract in force on its own day, never by today's.
        entries, others, problems = entries_by_own_contract(hub, contract, period, entries, blocks, done=already)
        tb = timebilling.bill_time(contract.client_id, contract, entries, products, period,
                                   blocks=blocks, already_billed=already, language=invoice_language(hub))
        own, reported, errors = time_of_own_contracts(hub, contract, period, others, already)
        bill = replace(bill, lines=bill.lines + tuple(tb.lines) + tuple(own),
                       errors=bill.errors + tuple(problems) + tuple(tb.errors) + tuple(errors),
                       reported=bill.reported + tuple(_reported(r) for r in tb.reported) + tuple(reported)
                       + settled_reported(hub, contract))
    # Where each contract option that is not BILLING.md's default came from (defaults.toml, the
    # agreement type, the contract), said once per invoice.
    notes: list[str] = [n for n in (options_note(contract),) if n]
    deltas = device_deltas(hub, contract, period, key, claimed, notes) + record_deltas(hub, contract, period, key, claimed)
    extra: list[BillingLine] = []
    for lines in hub.pm.hook.add_billing_lines(client_id=contract.client_id, contract=contract, period=period.name,
                                               lines=bill.lines):
        extra.extend(lines or [])
    if extra:
        bad = [l.code for l in extra if l.currency != bill.currency]
        errors = bill.errors + tuple(f"a plugin added line {c!r} in another currency than {bill.currency}" for c in bad)
        bill = replace(bill, lines=bill.lines + tuple(sorted(extra, key=lambda l: l.code)), errors=errors)
    bill = reconcile.apply_minimum(bill, contract, invoice_language(hub))
    if deltas or notes:
        bill = replace(bill, lines=bill.lines + tuple(deltas), notes=bill.notes + tuple(notes))
    return bill


def settled_reported(hub: "Hub", contract: Contract) -> tuple[dict, ...]:
    """The time entries the plan's reads left out as settled (``Store.settled_time``: invoiced by
    the PSA before the earliest period the plan bills, nothing else reading them), as one
    explanation with their number instead of one per entry."""
    reads = getattr(hub, "plan_reads", None)
    if reads is None or reads.settled is None:
        return ()
    n = sum(reads.settled_count(system, ext) for system, ext in sorted(contract.links.items()))
    if not n:
        return ()
    before = reads.settled_before
    return ({"kind": "time", "id": f"settled-before:{before}", "reason": timebilling.INVOICED_BY_PSA,
             "detail": f"{n} time entries dated before {before}, invoiced by the PSA; never billed again",
             "date": None, "ticket": None, "hours": None, "count": n},)


def _reported(item) -> dict:
    return dict(item) if isinstance(item, dict) else dict(vars(item))


# --- the plan ------------------------------------------------------------------------------------

def connector_for(hub: "Hub", kind: str) -> str:
    """The name of the connector that pushes ``kind`` actions, or "" when none is configured."""
    if kind == INVOICE:
        c = hub.invoice_connector()
        return c.name if c else ""
    able = sorted(n for n, c in hub.connectors.items() if kind in c.action_kinds)
    return able[0] if able else ""


def _status_against_outbox(hub: "Hub", key: str, payload_lines, *, period: Period, force: bool, now: datetime,
                           push_now: bool = False) -> tuple[str, tuple[str, ...]]:
    stored = hub.store.get_action(key)
    if stored and stored["status"] == SENT:
        same = payload_lines is None or _pre_tax(stored["payload"].get("lines")) == _pre_tax(payload_lines)
        if same:
            return "unchanged", ()
        return "changed_after_sent", (f"sent as {stored['vendor_id']}; the data has changed since. The sent invoice is "
                                      f"not rewritten: a late change is billed as a delta line on the next invoice.",)
    if not (push_now or force or period.has_ended(now)):
        return "preview", (f"period {period.name} has not ended; pushed after {period.end.date()} "
                           f"(or force it with --period {period.name})",)
    if stored and stored["attempts"] > 0:
        return "retry", (f"attempted {stored['attempts']} time(s): {stored['last_error'] or 'outcome unknown'}",)
    return "create", ()


def _pre_tax(lines) -> list | None:
    """Invoice lines without their ``tax``: what was billed, compared with what would be billed now
    (an invoice sent before the hub computed VAT, or whose client's treatment changed, bills the
    same lines)."""
    if lines is None:
        return None
    return [{k: v for k, v in line.items() if k != "tax"} for line in lines]


def _vet(hub: "Hub", item: PlanItem) -> PlanItem:
    """Let plugins amend (first answer) or veto (any answer) a planned action."""
    if item.action is None or item.status not in ("create", "retry"):
        return item
    amended = hub.pm.hook.amend_action(action=item.action)
    if amended is not None:
        if amended.key != item.action.key:
            return replace(item, status="held", cause="error",
                           reasons=(f"a plugin changed the key of {item.action.key} to {amended.key}",))
        item = replace(item, action=amended)
    vetoes = tuple(r for r in hub.pm.hook.veto_action(action=item.action) if r)
    return replace(item, status="held", reasons=vetoes, cause="veto") if vetoes else item


def review_settings(hub: "Hub") -> tuple[bool, timedelta | None]:
    """``[billing.review]``: whether invoices wait in draft for an approval, and the delay after
    which a run's drafts are finalized when nothing of that run was held."""
    review = billing_settings(hub).review
    return review.enabled, review.finalize_delay


def plan_invoice(hub: "Hub", contract: Contract, period: Period, *, force: bool, now: datetime,
                 claimed: frozenset[str] = frozenset(), psa_id: str | None = None) -> PlanItem:
    bill = compute_bill(hub, contract, period, claimed)
    key = current_invoice_key(hub, contract.client_id, period.name)
    correction = reissue_of(hub, contract.client_id, period.name) if key != invoice_key(contract.client_id, period.name) else None
    credited = correction is not None and correction["kind"] == "credit_note"
    snapshot = None
    if credited:
        # The re-issue after a credit note bills the credited lines again, as they are now; the
        # other lines of the credited invoice still stand (its snapshot keeps them).
        codes = {line["code"] for line in correction["lines"] or []}
        bill = replace(bill, lines=tuple(l for l in bill.lines if l.code in codes))
        before = hub.store.get_snapshot(contract.client_id, period.name) or []
        snapshot = [line for line in before if line.get("code") not in codes] + snapshot_of(bill.lines)
    vat = invoice_tax(hub, contract, bill, psa_id=psa_id)
    if vat.notes:
        bill = replace(bill, notes=tuple(bill.notes) + vat.notes)
    payload = invoice_payload(bill, contract.name, period, vat=vat, **invoice_dress(hub))
    if review_settings(hub)[0]:
        payload["finalize"] = False      # created as a draft; finalized once the run is approved
    action = Action(key, INVOICE, connector_for(hub, INVOICE), contract.client_id, payload, period.name)
    if bill.errors:
        return PlanItem(INVOICE, contract.client_id, contract.name, period.name, "held", action, bill, bill.errors,
                        cause="error")
    status, reasons = _status_against_outbox(hub, key, action.payload["lines"], period=period, force=force, now=now)
    if status in ("create", "retry", "preview") and not bill.lines:
        status, reasons = "empty", ("nothing to bill in the period",)
    cause = None
    if vat.problems and status in ("create", "retry"):
        status, reasons, cause = "held", _tax_reasons(vat), "error"
    elif vat.problems and status == "preview":
        reasons = reasons + _tax_reasons(vat)
    if status == "create":
        # A re-issue after a credit note is a part of an invoice: no month-to-month change to
        # compare it with, only its credits are checked.
        surprises = credit_surprises(bill, key) if credited else invoice_surprises(hub, contract, period, bill, key)
        if surprises:
            status, reasons, cause = "held", surprises, "guardrail"
    if correction is not None:
        reasons = reasons + (f"re-issue of {correction['invoice_key']} after {correction['action_key']} "
                             f"({correction['reason']}, asked by {correction['requested_by']})",)
    item = PlanItem(INVOICE, contract.client_id, contract.name, period.name, status, action, bill, reasons,
                    ledger=ledger_of(bill.lines), snapshot=snapshot if credited else snapshot_of(bill.lines),
                    cause=cause)
    return _vet(hub, item)


def invoice_surprises(hub: "Hub", contract: Contract, period: Period, bill: reconcile.Bill, key: str) -> tuple[str, ...]:
    """The invoice guardrails (BILLING.md): why this invoice waits for a person, compared with the
    client's previous invoice; nothing once a person approved its key."""
    stored = hub.store.get_action(key)
    if stored and stored["approved"]:
        return ()
    g = billing_settings(hub).guardrails
    limits = InvoiceGuardrails(g.invoice_max_change_percent, g.invoice_max_device_change_percent,
                               g.first_invoice_max_minor(bill.currency))
    previous = hub.store.previous_invoice(contract.client_id, period.name)
    before = previous_from_snapshot(*previous) if previous else None
    return credit_surprises(bill, key) + \
        check_invoice(bill.total, count_billed_devices(bill.lines), before, limits, currency=bill.currency, key=key)


def plan_renewal(hub: "Hub", ctx: Context, contract: Contract, period: Period, now: datetime) -> list[PlanItem]:
    """A renewal invoice and a PSA notice, once per block whose balance fell to the threshold.

    Only the client's latest block agreement is renewed (by start date, ``timebilling.prepaid_order``):
    an earlier one was renewed by the agreements after it. Its balance is the one the invoices use
    (``draw_down_agreements``: hours carried from earlier agreements included). A block contract
    that names no agreement is an error that holds the client (``timebilling.bill_time``): no
    renewal is decided for it."""
    if contract.kind != "block" or contract.agreement is None:
        return []
    blocks = blocks_for(hub, contract)
    entries, _ = time_records(hub, contract, None)
    chain = timebilling.prepaid_order(blocks, contract.agreement)
    if not chain:
        return []
    agreement, own = chain[-1]
    dd = timebilling.draw_down_agreements(entries, blocks, contract.time, current=contract.agreement)[agreement]
    latest = own[-1].number if own else 0
    if dd.warning_block is None or dd.warning_block != latest:
        return []
    number = latest + 1
    size = contract.time.renewal or contract.time.block
    balance = dd.balances.get(latest, Fraction(0))
    lang = invoice_language(hub)
    lines = timebilling.renewal_lines(contract.client_id, contract, latest, period.name, balance=balance,
                                      agreement=agreement, language=lang)
    bill = reconcile.Bill(contract.client_id, period.name, contract.currency, tuple(lines))
    key = f"renewal:{contract.client_id}:{agreement}:{number}"
    vat = invoice_tax(hub, contract, bill, psa_id=psa_id_of(ctx, contract.client_id))
    payload = invoice_payload(bill, contract.name, period,
                              i18n.text("invoice.renewal", lang, client=contract.name,
                                        hours=i18n.number(Fraction(size.hours), lang)), vat=vat,
                              **invoice_dress(hub))
    action = Action(key, INVOICE, connector_for(hub, INVOICE), contract.client_id, payload, period.name)
    status, reasons = _status_against_outbox(hub, key, None, period=period, force=True, now=now, push_now=True)
    cause = None
    if vat.problems and status in ("create", "retry"):
        status, reasons, cause = "held", reasons + _tax_reasons(vat), "error"
    block = {"client_id": contract.client_id, "agreement": agreement or "", "number": number,
             "hours": str(size.hours), "rate": round_half_up(Fraction(size.price) / size.hours),
             "started_at": now.isoformat(), "source": "renewal"}
    items = [_vet(hub, PlanItem(INVOICE, contract.client_id, contract.name, period.name, status, action, bill,
                                reasons + (f"block {latest} has {format_quantity(balance)} h left, at or below "
                                           f"the warning threshold of {format_quantity(contract.time.warning_hours)} h",),
                                block=block, cause=cause))]
    ticketer = connector_for(hub, TICKET)
    company = contract.links.get(ctx.psa or "", "")
    if ticketer and company:
        nkey = f"notice:{contract.client_id}:{agreement}:{latest}"
        text = i18n.text("notice.low.text", lang, block=latest, agreement=agreement,
                         hours=i18n.number(balance, lang), threshold=i18n.number(contract.time.warning_hours, lang),
                         size=i18n.number(Fraction(size.hours), lang),
                         price=i18n.money(size.price, contract.currency, lang))
        notice = Action(nkey, TICKET, ticketer, contract.client_id,
                        {"external_ref": f"msp-hub:{nkey}"[:100], "company_id": company,
                         "board": str(hub.config.billing.get("notice_board", "Help Desk")),
                         "summary": i18n.text("notice.low.summary", lang, hours=i18n.number(balance, lang))[:100],
                         "initial_description": text}, period.name)
        nstatus, nreasons = _status_against_outbox(hub, nkey, None, period=period, force=True, now=now, push_now=True)
        ncause = None
        renewal = items[0]
        if renewal.status == "held" and nstatus in ("create", "retry"):
            # The notice says the renewal was invoiced: it waits for it, never goes before it.
            nstatus, ncause = "held", renewal.cause
            nreasons = nreasons + (f"waits for its renewal invoice {key}, held: {'; '.join(renewal.reasons[:1])}",)
        items.append(_vet(hub, PlanItem(TICKET, contract.client_id, contract.name, period.name, nstatus, notice,
                                        reasons=nreasons, cause=ncause)))
    return items


def guardrails(hub: "Hub") -> Guardrails:
    g = hub.config.billing.get("guardrails", {})
    return Guardrails(allow_zero=bool(g.get("allow_zero", False)),
                      max_change_percent=g.get("max_change_percent", 25.0),
                      max_change_devices=g.get("max_change_devices", 10))


def approved_quantities(hub: "Hub") -> frozenset[str]:
    """The additions whose quantity change a person approved (read once per plan: a plan approves
    nothing)."""
    def read() -> frozenset[str]:
        return frozenset(k.rsplit(":", 2)[1] for k in hub.store.approved_keys() if k.startswith(AGREEMENT_QUANTITY + ":"))
    reads = getattr(hub, "plan_reads", None)
    return reads.memo("approved_quantities", read) if reads is not None else read()


def plan_quantities(hub: "Hub", ctx: Context, contract: Contract, item: PlanItem, report: "RunReport",
                    *, force: bool, now: datetime) -> list[PlanItem]:
    """The three counts of each per-device addition, and an update action where they differ.

    Agreement quantities follow the latest invoiced period: a run of an older period (``sync
    --period`` of a past month) writes none, and its plan says why (status ``skipped``).
    """
    from hub.periods import last_ended_period
    period = parse_period(item.period, hub.config.timezone)
    if ctx.psa is None or ctx.psa not in contract.links or item.bill is None or not contract.tier:
        return []
    last = last_ended_period(now, hub.config.timezone)
    later, p = [], period.next()
    while p.name <= last.next().name:          # an invoice of a later period (the current one, forced)
        stored = hub.store.get_action(invoice_key(contract.client_id, p.name))
        if stored and stored["status"] == SENT:
            later.append(p.name)
        p = p.next()
    if period.name < last.name or later:
        newer = later[-1] if later else last.name
        why = (f"agreement quantities follow the latest invoiced period: {period.name} is older than {newer} "
               f"({'invoiced' if later else 'the last ended period'}), so its counts are not written to the "
               f"agreement; the run of {newer} sets them")
        return [PlanItem(AGREEMENT_QUANTITY, contract.client_id, contract.name, period.name, "skipped", None,
                         reasons=(why,))]
    pusher = connector_for(hub, AGREEMENT_QUANTITY)
    additions = records_of(hub, "additions", ctx.psa, contract.links[ctx.psa])
    if contract.agreement:
        # Only the additions of agreements in force at the period's end: an expired agreement's
        # additions (the Silver one a client left mid-month) are never given the new count.
        last = period.local_day(period.end - timedelta(microseconds=1)).isoformat()
        in_force = {a.source_id for a in records_of(hub, "agreements", ctx.psa, contract.links[ctx.psa])
                    if (not a.start_date or a.start_date[:10] <= last) and (not a.end_date or a.end_date[:10] >= last)}
        additions = [a for a in additions if a.agreement_source_id in in_force or a.agreement_source_id == contract.agreement]
    approved = approved_quantities(hub)
    checks = check_quantities(contract.client_id, contract.tier, additions, hub.mappings.addition_products,
                              item.bill.lines, guardrails(hub), approved=approved,
                              class_tiers={c: t for c, (t, _) in contract.class_tiers.items()})
    report.quantities.extend(checks)
    if additions:
        for code, n in sorted(unbilled_classes(item.bill.lines, checks).items()):
            report.discrepancies.append(reconcile.Discrepancy(
                "revenue_found", contract.client_id, f"client {contract.name!r} ({contract.client_id}) is invoiced for "
                f"{n} device(s) on {code} that no addition of its {ctx.psa} agreement carries; add one to keep the "
                f"PSA in step", {"line": code, "devices": n}))
    out = []
    for c in checks:
        if c.status == "ok":
            continue
        key = f"{AGREEMENT_QUANTITY}:{c.agreement_id}:{c.addition_id}:{period.name}"
        action = Action(key, AGREEMENT_QUANTITY, pusher, contract.client_id,
                        {"agreement_id": c.agreement_id, "addition_id": c.addition_id, "quantity": str(c.reconciled),
                         "previous": str(c.psa_quantity), "product": c.product}, period.name)
        status, reasons = _status_against_outbox(hub, key, None, period=period, force=force, now=now)
        cause = None
        if c.status == "held" and status in ("create", "retry"):
            status, reasons, cause = "held", c.reasons, "guardrail"
        out.append(_vet(hub, PlanItem(AGREEMENT_QUANTITY, contract.client_id, contract.name, period.name, status,
                                      action, reasons=reasons, quantity=c, cause=cause)))
    return out


def plan(hub: "Hub", report: "RunReport", periods: list[Period], *, force: bool = False,
         clients: Iterable[str] = (), kinds: frozenset[str] | None = None) -> list[PlanItem]:
    """Work out, for each client and period, what each vendor should get and how it differs.

    Nothing is stored or sent here. ``force`` plans a period that has not ended as if it had;
    ``clients`` restricts the plan to those hub clients; ``kinds`` to those action kinds (None:
    all): billing (invoices, renewals, quantities) is planned when ``invoice`` is among them.
    """
    now = hub.clock()
    file_errors = mapping_file_errors(hub)
    for cid, message in sorted(hub.mappings.contract_errors.items()):
        report.errors.append(f"contract {cid}: {message}")
        report.discrepancies.append(reconcile.Discrepancy("contract_error", cid, message))
    ended = [p for p in periods if force or p.has_ended(now)]
    latest = ended[-1] if ended else periods[0]   # the period whose counts the agreements follow
    hub.plan_reads = PlanReads(hub.store)
    try:
        return _plan(hub, report, periods, latest, now, force=force, clients=clients, kinds=kinds,
                     file_errors=file_errors)
    finally:
        hub.plan_reads = None


def _plan(hub: "Hub", report: "RunReport", periods: list[Period], latest: Period, now: datetime, *, force: bool,
          clients: Iterable[str], kinds: frozenset[str] | None, file_errors: list[str]) -> list[PlanItem]:
    ctx = build_context(hub, report, latest)
    only = set(clients)
    if only:
        unknown = sorted(only - set(ctx.registry.clients))
        if unknown:
            raise HubError(f"unknown client(s) {', '.join(unknown)}; list them with: msp-hub clients")
        ctx.contracts = {c: k for c, k in ctx.contracts.items() if c in only}
        ctx.errors = {c: e for c, e in ctx.errors.items() if c in only}
    report.registry = ctx.registry
    report_unbilled(hub, report, ctx)
    reads = getattr(hub, "plan_reads", None)
    if reads is not None:
        # Time invoiced by the PSA before the earliest period this plan bills is counted, not read.
        first = min(periods, key=lambda p: p.start)
        reads.flat_work_types = flat_work_types(hub, ctx.contracts.values())
        reads.leave_out_settled(first, reads.flat_work_types)
    gate = Gate(hub, report)
    items = PlanItems(getattr(hub, "plan_sink", None))
    billing = kinds is None or INVOICE in kinds
    # The contexts of the periods billed: the latest's, or a missed ended period's as it was then.
    contexts: list[tuple[Period, Context]] = []
    for period in (periods if billing else []):
        pctx = ctx if period is latest or not period.has_ended(now) else catch_up_context(hub, report, period, only)
        if pctx is not None:
            contexts.append((period, pctx))
    cids = sorted({cid for _, pctx in contexts for cid in (*pctx.contracts, *pctx.errors)}
                  | (set(ctx.contracts) if billing else set()))
    reads = getattr(hub, "plan_reads", None)
    if reads is not None:
        # Client by client, every period then the renewal: each client's records are read once per
        # plan, a window of clients at a time.
        links = {cid: c.links for _, pctx in reversed(contexts) for cid, c in pctx.registry.clients.items()}
        links.update({cid: c.links for cid, c in ctx.contracts.items()})
        reads.read_in_order((system, ext) for cid in cids for system, ext in sorted(links.get(cid, {}).items()))
    # Items are made, and listed, client by client: its periods in order, then its renewal.
    for cid in cids:
        claimed: set[str] = set()   # items an earlier period of this plan bills already
        for period, pctx in contexts:
            if cid not in pctx.contracts and cid not in pctx.errors:
                continue
            ended = period.has_ended(now)
            if pctx is not ctx:
                stored = hub.store.get_action(current_invoice_key(hub, cid, period.name))
                if stored and stored["status"] == SENT:
                    continue   # a missed period is planned only for the clients not invoiced for it
            if cid not in pctx.contracts:   # a contract or mapping error: hold, never bill another way
                items.append(held_for_errors(hub, pctx, cid, period, pctx.errors[cid]))
                continue
            contract = pctx.contracts[cid]
            item = plan_invoice(hub, contract, period, force=force, now=now,
                                claimed=frozenset(claimed), psa_id=psa_id_of(pctx, cid))
            claimed.update(i for _, i, _, _ in item.ledger)
            if item.status == "held" and item.bill and item.bill.errors:
                report.errors.extend(f"client {cid} {period.name}: {e}" for e in item.bill.errors)
            gated = [item]
            if period is latest and (force or ended):
                gated += plan_quantities(hub, ctx, contract, item, report, force=force, now=now)
            problems = gate.problems(gate.billing_streams(contract), after=period.end if ended else None,
                                     this_run=not ended)
            extra = pctx.errors.get(cid, [])
            items.extend(_hold(i, problems, "incomplete", extra_errors=extra, file_errors=file_errors) for i in gated)
        contract = ctx.contracts.get(cid) if billing else None
        renewals = plan_renewal(hub, ctx, contract, periods[-1], now) if contract is not None else []
        if renewals:
            problems = gate.problems(gate.billing_streams(contract), after=None, this_run=True)
            items.extend(_hold(i, problems, "incomplete", extra_errors=ctx.errors.get(cid, []), file_errors=file_errors)
                         for i in renewals)
    if billing:
        ended = [p for p in periods if p.has_ended(now)]
        if ended:   # late changes of a client with no next invoice (a churned client): held
            items.extend(i for i in held_credits(hub, ctx, ended[-1], now) if not only or i.client_id in only)
        items.extend(i for i in plan_finalizes(hub, now) if not only or i.client_id in only)
    if kinds is None or kinds & set(ALERT_KINDS):
        problems = gate.ticket_problems()
        items.extend(_hold(i, problems, "incomplete") for i in plan_alerts(hub, report, ctx, now)
                     if not only or i.client_id in only)
    if items.sink is None:
        report.plan = list(items)
    report.held = items.held
    return report.plan


class PlanItems(list):
    """The items of one plan, in the order they are made, and ``held``: what ``held_json`` says of
    each held one. With a ``sink`` (``hub.plan_sink``, e.g. ``msp-hub plan --json`` writing each
    item as it comes), every item goes to it as soon as it is made and is not kept: memory stays
    that of one client whatever the number of clients."""

    def __init__(self, sink=None):
        super().__init__()
        self.sink = sink
        self.held: list[dict[str, Any]] = []

    def append(self, item: PlanItem) -> None:
        if item.status == "held" and item.action is not None:
            self.held.append(held_json(item))
        if self.sink is None:
            super().append(item)
        else:
            self.sink(item)

    def extend(self, items: Iterable[PlanItem]) -> None:
        for item in items:
            self.append(item)


def catch_up_context(hub: "Hub", report: "RunReport", period: Period, only: set[str]) -> Context | None:
    """The clients and contracts of a missed ended period older than the last one, as they were in
    that period (an agreement that began later does not bill it, one that ended since still does);
    None when every one of them was invoiced for it already: no bill is computed for an invoiced
    past, only its clients are read (``catch_up_months`` - 1 contexts at most per run)."""
    scratch = type(report)(report.run_id, report.mode, report.started_at)   # its findings are the latest period's
    pctx = build_context(hub, scratch, period)
    if only:
        pctx.contracts = {c: k for c, k in pctx.contracts.items() if c in only}
        pctx.errors = {c: e for c, e in pctx.errors.items() if c in only}
    for cid in sorted(set(pctx.contracts) | set(pctx.errors)):
        stored = hub.store.get_action(current_invoice_key(hub, cid, period.name))
        if not stored or stored["status"] != SENT:
            return pctx
    return None


FINALIZE = "invoice_finalize"


def plan_finalizes(hub: "Hub", now: datetime) -> list[PlanItem]:
    """Under the review window: finalize each draft invoice once a person approved the run that
    made it (``msp-hub approve --run RUN``), or ``finalize_after`` past its creation when nothing
    of that run was held. Until then it is held (cause ``review``), listed with its total."""
    _, after = review_settings(hub)
    drafts = hub.store.draft_invoices(INVOICE, SENT)
    if not drafts:
        return []
    approved = {a["target"].removeprefix("run:"): a for a in hub.store.approvals() if a["target"].startswith("run:")}
    items = []
    for row in drafts:
        key = f"finalize:{row['key']}"
        stored = hub.store.get_action(key)
        payload = row["payload"]
        bill = reconcile.Bill(row["client_id"], row["period"] or "", payload.get("currency", hub.mappings.currency), ())
        action = Action(key, FINALIZE, row["connector"], row["client_id"],
                        {"invoice_key": row["key"], "invoice_id": row["vendor_id"], "total": payload.get("total", 0),
                         "currency": payload.get("currency")}, row["period"])
        name = payload.get("client_name", row["client_id"])
        if stored and stored["status"] == SENT:
            status, reasons, cause = "unchanged", (), None
        elif stored and stored["attempts"] > 0:
            status, reasons, cause = "retry", (f"attempted {stored['attempts']} time(s)",), None
        elif stored and stored["approved"]:
            status, reasons, cause = "create", ("approved on its own",), None
        elif row["run_id"] in approved:
            a = approved[row["run_id"]]
            status, reasons, cause = "create", (f"run {row['run_id']} approved by {a['who']} at {a['at'][:19]}",), None
        elif after is not None and row["sent_at"] and _run_clean(hub, row["run_id"]) and \
                now - datetime.fromisoformat(row["sent_at"]) >= after:
            status, reasons, cause = "create", (f"nothing of run {row['run_id']} was held and its review window of "
                                                f"{after} has passed",), None
        else:
            status, cause = "held", "review"
            reasons = (f"draft {row['vendor_id']} of {format_minor(payload.get('total', 0), bill.currency)} waits for "
                       f"review; finalize the run's drafts with: msp-hub approve --run {row['run_id']}",)
        items.append(PlanItem(FINALIZE, row["client_id"], name, row["period"] or "", status, action,
                              None, reasons, cause=cause))
    return items


def _run_clean(hub: "Hub", run_id: str) -> bool:
    run = hub.store.get_run(run_id)
    return bool(run) and run["status"] in ("ok", "warnings")


def mapping_file_errors(hub: "Hub") -> list[str]:
    """Errors of a whole mappings file whose clients cannot be told apart: they hold every invoice."""
    out = [f"{f}: {m}" for f, m in sorted((getattr(hub.mappings, "file_errors", None) or {}).items())]
    out += [m for k, m in sorted(hub.mappings.contract_errors.items()) if k.endswith(".toml")]
    return out


def _hold(item: PlanItem, problems: list[str], cause: str, *, extra_errors: list[str] = (),
          file_errors: list[str] = ()) -> PlanItem:
    """Hold an item that would be pushed (``create``), or that looks empty, because its inputs
    cannot be trusted (an invoice that is empty because its time failed to pull is held too)."""
    if item.status not in ("create", "held", "empty") or item.action is None:
        return item
    if extra_errors or file_errors:
        errs = tuple(extra_errors) + tuple(f"mappings file error: {e}" for e in file_errors)
        return replace(item, status="held", cause="error", reasons=errs + tuple(problems) +
                       (item.reasons if item.status == "held" else ()))
    if not problems:
        return item
    reasons = tuple(problems) + (item.reasons if item.status == "held" else ())
    if item.status == "held" and item.cause == "error":
        return replace(item, reasons=reasons)
    return replace(item, status="held", cause=cause, reasons=reasons)


def held_for_errors(hub: "Hub", ctx: Context, cid: str, period: Period, errors: list[str]) -> PlanItem:
    """The held invoice of a client whose contract or mapping has an error: nothing is billed,
    not even through its PSA agreement, until the error is fixed."""
    client = ctx.registry.clients.get(cid)
    name = client.name if client else cid
    bill = reconcile.Bill(cid, period.name, hub.mappings.currency, ())
    action = Action(invoice_key(cid, period.name), INVOICE, connector_for(hub, INVOICE), cid,
                    invoice_payload(bill, name, period, **invoice_dress(hub)), period.name)
    return PlanItem(INVOICE, cid, name, period.name, "held", action, bill,
                    tuple(errors) + ("fix the contract, then run a sync: the client is invoiced once, on its own "
                                     "customer",), cause="error")


def held_json(item: PlanItem) -> dict[str, Any]:
    """What a report and a notification say of a held action."""
    payload = item.action.payload
    return {"key": item.action.key, "kind": item.kind, "client_id": item.client_id, "client_name": item.client_name,
            "period": item.period, "total": item.total if item.bill else payload.get("total", 0),
            "currency": item.bill.currency if item.bill else payload.get("currency"),
            "reasons": list(item.reasons), "cause": item.cause or "error"}


# --- alerts -> tickets -----------------------------------------------------------------------------

ALERT_KINDS = ("ticket", "ticket_note", "ticket_close", "ticket_reopen")


# What hub_tickets reads of an alert action's payload.
TICKET_PAYLOAD_KEYS = ("uids", "uid", "external_ref", "device", "condition", "auto_close", "psa_ticket_id", "adopt_refs",
                       "company_id", "parent", "ticket_external_ref")


def hub_tickets(hub: "Hub") -> tuple[list[alerting.HubTicket], frozenset[str]]:
    """The tickets the hub made or adopted, from the outbox and the PSA's copy, and every alert uid
    acted on. An adopted ticket (its create action's result says ``adopted``) is addressed by its id
    from then on; until that result is recorded, by how the create looks for it."""
    rows = hub.store.actions_of_kinds(ALERT_KINDS, TICKET_PAYLOAD_KEYS)
    known: set[str] = set()
    tickets: dict[str, alerting.HubTicket] = {}
    for r in sorted(rows, key=lambda r: r["key"]):
        p = r["payload"]
        known.update(p.get("uids", []))
        if p.get("uid"):
            known.add(p["uid"])
        if r["kind"] == "ticket":
            adopted = r["status"] == SENT and bool((r["details"] or {}).get("adopted")) and r["vendor_id"]
            # Until its result is recorded, a create that may adopt is found again as it looks.
            adopt = {k: p[k] for k in ("psa_ticket_id", "adopt_refs", "company_id") if p.get(k)} \
                if r["status"] != SENT else {}
            tickets[r["key"]] = alerting.HubTicket(r["key"], p["external_ref"], p.get("device", ""), p.get("condition", ""),
                                                   r["client_id"] or None, set(p.get("uids", [])),
                                                   auto_close=bool(p.get("auto_close", True)),
                                                   ticket_id=str(r["vendor_id"]) if adopted else None,
                                                   adopt=adopt if ("psa_ticket_id" in adopt or "adopt_refs" in adopt) else {})
            if adopted and r["details"].get("ticket_closed"):   # adopted as a person had left it: closed
                tickets[r["key"]].closed, tickets[r["key"]].closed_at = True, datetime.fromisoformat(r["sent_at"])
    last_hub_action: dict[str, tuple[str, str]] = {}
    # The first ticket (in key order) of each external reference: a note or a close names its
    # ticket by reference (one lookup, not a scan of every ticket per action).
    order = {k: n for n, k in enumerate(tickets)}
    by_ref: dict[Any, str] = {}
    for k, t in tickets.items():
        by_ref.setdefault(t.external_ref, k)
    for r in sorted(rows, key=lambda r: r["sent_at"] or r["created_at"] or ""):
        p = r["payload"]
        parent = p.get("parent")
        if not parent:
            found = [k for k in (by_ref.get(p.get("external_ref")), by_ref.get(p.get("ticket_external_ref")))
                     if k is not None]
            parent = min(found, key=order.__getitem__) if found else None
        if parent in tickets and r["kind"] != "ticket":
            if p.get("uid"):
                tickets[parent].uids.add(p["uid"])
            if r["kind"] in ("ticket_close", "ticket_reopen") and r["status"] == SENT:
                # A close the PSA side left open (a technician worked on it) leaves it open.
                tickets[parent].closed = r["kind"] == "ticket_close" and r["details"].get("closed", True)
                tickets[parent].closed_at = datetime.fromisoformat(r["sent_at"]) if r["kind"] == "ticket_close" else None
                last_hub_action[parent] = (r["kind"], r["sent_at"])
    adopted = {t.ticket_id: k for k, t in tickets.items() if t.ticket_id}
    for source in {r["connector"] for r in rows if r["kind"] == "ticket"}:
        for t in hub.store.iter_records("tickets", source):
            key = adopted.get(t.source_id) or t.external_ref.removeprefix("msp-hub:")
            mine = tickets.get(key)
            if mine is None:
                continue
            acted = last_hub_action.get(key)
            if acted is None or (t.updated_at and t.updated_at.isoformat() > acted[1]):
                mine.closed, mine.closed_at = t.closed, t.closed_at
    return list(tickets.values()), frozenset(known)


def _ticket_facts(hub: "Hub", registry, alerts: list) -> alerting.TicketFacts:
    """What alert tickets tell beyond the alert: the alerting devices and organizations as the RMM
    last reported them (read for those alerts only), the clients' names, the MSP's time zone."""
    devices, orgs = {}, {}
    wanted: dict[str, tuple[set[str], set[str]]] = {}
    for a in alerts:
        ids = wanted.setdefault(a.source, (set(), set()))
        ids[0].add(a.device_source_id)
        ids[1].add(a.client_source_id)
    for source, (device_ids, org_ids) in wanted.items():
        for table, ids, found in (("devices", device_ids, devices), ("clients", org_ids, orgs)):
            ids = sorted(i for i in ids if i)
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                for record in hub.store.iter_records(table, source, where=f"source_id in ({', '.join('?' * len(chunk))})",
                                                     args=chunk):
                    found[(source, record.source_id)] = record
    return alerting.TicketFacts(
        timezone=hub.config.timezone, language=invoice_language(hub),
        device=lambda a: devices.get((a.source, a.device_source_id)),
        client_name=lambda c: registry.clients[c].name if c in registry.clients else None,
        organization=lambda a: getattr(orgs.get((a.source, a.client_source_id)), "name", None))


def plan_alerts(hub: "Hub", report: "RunReport", ctx: Context, now: datetime) -> list[PlanItem]:
    """Ticket actions for the RMM's alerts (hub.alerting), compared with the outbox."""
    rules = hub.mappings.alert_rules
    if rules is None:
        return []
    sources = hub.store.sources("alerts")
    if not sources:
        return []
    alerts = [a for s in sources for a in hub.store.iter_records("alerts", s, where="active = 1")]
    since = (now - timedelta(days=30)).isoformat()
    events = [e for s in sources for e in hub.store.iter_records("alert_events", s, where="occurred_at >= ?", args=[since])]
    tickets, known = hub_tickets(hub)
    registry = ctx.registry

    def client_of(a):
        return registry.client_for(a.source, a.client_source_id) if a.client_source_id else None

    def company_of(cid):
        return registry.clients[cid].links.get(ctx.psa or "") if cid in registry.clients else None

    plan_ = alerting.plan_alert_tickets(alerts, events, tickets, rules, client_of, company_of, now,
                                        decide=lambda a, c: hub.pm.hook.alert_rule(alert=a, client_id=c),
                                        known_uids=known, facts=_ticket_facts(hub, registry, alerts))
    report.alert_log.extend(plan_.log)
    for entry in plan_.log:
        if "no ticket" in entry["what"] and "before the hub saw it" not in entry["what"]:
            report.warnings.append(f"alert {entry['uid']}: {entry['what']}")
    items = []
    for intent in plan_.intents:
        client = intent.client_id or ""
        name = registry.clients[client].name if client in registry.clients else "(unmapped)"
        action = Action(intent.key, intent.kind, connector_for(hub, intent.kind), client, intent.payload, None)
        stored = hub.store.get_action(intent.key)
        if stored and stored["status"] == SENT:
            status, reasons = "unchanged", ()
        elif stored and stored["attempts"] > 0:
            status, reasons = "retry", (f"attempted {stored['attempts']} time(s): {stored['last_error'] or 'outcome unknown'}",)
        else:
            status, reasons = "create", ()
        why = (f"rule {intent.rule}: {intent.reason}" if intent.rule else intent.reason,)
        items.append(_vet(hub, PlanItem(intent.kind, client, name, now.strftime("%Y-%m"), status, action,
                                        reasons=why + reasons)))
    return items
