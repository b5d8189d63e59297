"""Pure time billing: time entries, products and prepaid blocks in; billing lines out.

The rules are those of BILLING.md ("Time", "Prepaid blocks", "Money", "Periods"). No database,
HTTP or clock here: the engine passes the client's records, the period and what it already
pushed, so every rule is tested with literal lists. Each line names the rule that produced it and
lists what it counted (each item has an ``id``: the entry's or product's source id, or
``flat:<ticket id>`` for a flat-rate job), so the engine can record what was billed.

Decisions where BILLING.md leaves a choice (each is the default; a contract needing another
behaviour gets an option in ``TimeTerms``):

* An entry of 0 actual hours bills nothing, even on-site: there was no visit to charge a minimum
  for. It is reported (``no_hours``).
* ``no_default`` is billable: the mappings give a work type no billable option of its own, so
  nothing says otherwise. ``do_not_bill`` and ``no_charge`` are reported, never billed.
* Rate of time and materials: the work type's ``rate`` in the mappings, else the contract's
  ``default_rate``, else the hourly rate the PSA gave for the entry; with none of the three the
  entry is an error naming the fix, and the client's other lines are still billed.
* A ticket is a flat-rate job when any billable entry on it has a work type with a ``flat_rate``
  (on a managed contract, unless that work type's service is included). It is billed once, in the
  period of its first flat-rate entry (or later if that one was late), and every entry of the
  ticket is replaced by it, whatever its own work type or period; those entries neither draw a
  block nor reach a time line. Two different flat prices on one ticket, or a flat-rate entry with
  no ticket, are errors. A job the PSA already invoiced (all its flat-rate entries invoiced) is
  not billed again.
* Late records: an entry or product dated before the period that was never billed (not invoiced
  by the PSA, not in ``already_billed``) is billed now, with its own date and period in the
  items. Records dated after the period wait for their own invoice. A product with no date is
  billed on the current invoice.
* Overage of a block is billed on the invoice of the entry's period (or the next one, if late),
  never twice, and not when the PSA invoiced the entry. Overage hours before any block started
  are priced at block 1's rate when the contract has no ``overage_rate``.
* Renewed blocks: MSPs renew a block as a new agreement in the PSA, so a client may have several
  block agreements, current or expired. Time charged to any of them draws down the agreement it
  was charged to, never time and materials. Hours an agreement cannot cover follow the contract's
  ``beyond_balance``: its overage (line ``overage:<agreement>``), or carried into the first block
  of the next agreement. Hours left on an earlier agreement stay its own (its balance is its hours
  minus the entries charged to it): a late entry charged to it still draws them; they are not
  moved to the next agreement.
* Lines the client reads (``TimeTerms.time_lines``, default ``entry``): time and materials one
  line per entry, per ticket and rate, or per work type and rate (``_tm_lines``). A block's
  overage follows the same option (one line per entry's hours beyond the balance, per ticket, or
  one per rate): a client that reads each intervention reads each one that overdrew its block,
  with the hours of it beyond the balance. A flat-rate job is one line per ticket whatever the
  option. Every layout's items carry each entry id, so what was billed is compared entry by entry.
* A product with an unparsable or negative quantity, or priced in another currency, is an error.
* One bad record holds its client, never the run: nothing here raises for a record. An entry whose
  hours are negative or unparsable, whose start is not a time-zone-aware date, with no work type,
  or with a PSA rate that is not an amount; on a managed contract, an entry whose work type the
  mappings do not name (whether the contract includes it cannot be decided); a product with a
  bad date, no catalog item, price or currency: each is an error naming the record and the fix
  (``TimeBill.errors``, which holds the client's invoice); the others are billed. A bad entry
  on a prepaid agreement holds the agreement's overage (its balance is not known) and, in
  ``draw_down``, any renewal (``warning_block`` is None).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Iterable, Sequence

from hub import i18n
from hub.errors import MappingError
from hub.mappings import BlockSize, Contract, TimeTerms, WorkType
from hub.money import format_minor, format_quantity, round_half_up, round_times
from hub.periods import Period
from hub.records import BILLABLE, DO_NOT_BILL, NO_CHARGE, NO_DEFAULT, BillingLine, ProductLine, TimeEntry

# Why a record was looked at and not billed (ReportedItem.reason).
NON_BILLABLE = "non_billable"
NOT_CHARGED = "no_charge"
INCLUDED = "included"
DRAWN = "drawn_from_block"
PENDING = "carried_pending"
INVOICED_BY_PSA = "invoiced_by_psa"
ALREADY_BILLED = "already_billed"
FLAT_REPLACED = "flat_rate_replaced"
NO_HOURS = "no_hours"
LATER_PERIOD = "later_period"

# How hours of an entry were allocated in a prepaid agreement (Allocation.kind).
ALLOC_DRAWN = "drawn"        # drawn from the block's balance
ALLOC_CARRIED = "carried"    # beyond the balance, deducted from this (later) block when it started
ALLOC_PENDING = "pending"    # beyond the balance, waiting for a block not yet sold
ALLOC_OVERAGE = "overage"    # beyond the balance, billed at the overage rate

OVERAGE, CARRY = "overage", "carry"


def _hours_text(h: Fraction) -> str:
    return f"{format_quantity(h)} h"


def _entry_label(entry: TimeEntry) -> str:
    when = entry.started_at
    day = when.date().isoformat() if isinstance(when, datetime) else "no start date"
    return f"time entry {entry.source_id} ({entry.member}, {day})"


def _moment_problem(moment: Any) -> str | None:
    """Why a record's date cannot place it in a period (None: it can): not a date, or no time zone."""
    if not isinstance(moment, datetime):
        return f"{moment!r} is not a date and time"
    if moment.tzinfo is None or moment.utcoffset() is None:
        return f"{moment.isoformat()} has no time zone"
    return None


def entry_problem(entry: TimeEntry) -> str | None:
    """An error naming the entry when its start cannot place it in a period, else None."""
    moment = entry.started_at
    if moment.__class__ is datetime and moment.tzinfo is _UTC:
        return None                 # the usual case, decided without a call
    problem = _moment_problem(moment)
    if problem is None:
        return None
    return (f"time entry {entry.source_id} ({entry.member}): start {problem}, so its period cannot be "
            f"decided; correct the entry in the PSA (or its mapping in the {entry.source} plugin). It is not billed")


_UTC = timezone.utc
# Hours as the PSA writes them -> exact hours (a few distinct texts for a million entries).
_HOURS: dict[str, Fraction] = {}
# (hours text, increment, on-site minimum or None) -> the hours billed.
_BILLED: dict[tuple[str, int, Fraction | None], Fraction] = {}


def actual_hours(entry: TimeEntry) -> Fraction:
    """The hours logged, exactly; MappingError naming the entry when negative or unparsable."""
    text = str(entry.hours)
    known = _HOURS.get(text)
    if known is not None:
        return known
    hours = _parse_hours(entry, text)
    if len(_HOURS) > 10_000:
        _HOURS.clear()
    _HOURS[text] = hours
    return hours


def _parse_hours(entry: TimeEntry, text: str) -> Fraction:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        raise MappingError(f"{_entry_label(entry)}: hours {entry.hours!r} is not a number of hours; "
                           f"correct the entry in the PSA")
    if value < 0:
        raise MappingError(f"{_entry_label(entry)}: hours {entry.hours} is negative; correct the entry in the PSA")
    return Fraction(value)


def billable_hours(entry: TimeEntry, terms: TimeTerms) -> Fraction:
    """Actual hours rounded up to the contract's increment; an on-site entry counts at least
    ``terms.onsite_minimum``. 0 actual hours bill nothing (no minimum without work). An increment
    of 0 minutes or less means no rounding. MappingError naming the entry (id, member, date) for
    negative or unparsable hours."""
    actual = actual_hours(entry)
    if actual == 0:
        return Fraction(0)
    wt = terms.work_types.get(entry.work_type)
    onsite = terms.onsite_minimum if wt is not None and wt.onsite else None
    key = (str(entry.hours), terms.increment_minutes, onsite)
    hours = _BILLED.get(key)
    if hours is None:
        hours = actual
        if terms.increment_minutes > 0:
            step = Fraction(terms.increment_minutes, 60)
            hours = math.ceil(actual / step) * step
        if onsite is not None:
            hours = max(hours, onsite)
        if len(_BILLED) > 10_000:
            _BILLED.clear()
        _BILLED[key] = hours
    return hours


def _adjustment(entry: TimeEntry, actual: Fraction, billed: Fraction, terms: TimeTerms) -> str:
    """Which rule changed an entry's hours, for its item."""
    if billed == actual:
        return ""
    wt = terms.work_types.get(entry.work_type)
    if wt is not None and wt.onsite and billed == terms.onsite_minimum:
        return f"on-site minimum {_hours_text(terms.onsite_minimum)}"
    return f"rounded up to {terms.increment_minutes} min"


def is_billable(entry: TimeEntry | ProductLine) -> bool:
    """BILLABLE, or NO_DEFAULT (no work type setting says otherwise); see the module docstring."""
    return entry.billable in (BILLABLE, NO_DEFAULT)


# --- prepaid blocks ---


@dataclass(frozen=True)
class Block:
    """One prepaid block of an agreement: block 1 starts with the agreement; later ones are
    renewals the hub sold. ``rate``: minor units per hour (price / hours), the default overage
    rate. ``carried_in``: hours owed to this block before the entries drawn here (e.g. carried
    from an earlier agreement), deducted from it when it starts, like carried hours (what it
    cannot cover passes on to the next block). ``agreement``: the PSA agreement the block belongs
    to (numbers count per agreement); None: the contract's own agreement."""

    number: int
    hours: Fraction
    rate: int
    started_at: datetime
    carried_in: Fraction = Fraction(0)
    agreement: str | None = None

    @classmethod
    def of_size(cls, number: int, size: BlockSize, started_at: datetime,
                carried_in: Fraction = Fraction(0), agreement: str | None = None) -> "Block":
        """A block of ``size``; its hourly rate is price / hours, rounded half up to a minor unit."""
        return cls(number, Fraction(size.hours), round_half_up(Fraction(size.price) / Fraction(size.hours)),
                   started_at, Fraction(carried_in), agreement)


@dataclass(frozen=True)
class Allocation:
    """Hours of one entry and where they went. ``block``: the block drawn from (None for overage
    or pending hours); ``rate``: the overage rate per hour, for overage hours only."""

    entry_id: str
    kind: str
    hours: Fraction
    block: int | None = None
    rate: int | None = None


@dataclass(frozen=True)
class Drawdown:
    """The state of a prepaid agreement after its entries, deterministic for the same input.

    ``allocations`` in entry order; ``hours``: billable hours per entry counted; ``balances``:
    hours left per block number; ``overage``: hours per entry beyond the balance (billed at the
    overage rate); ``overage_blocks``: the block whose rate prices each entry's overage (None
    when the contract's overage rate does); ``carried``: hours pending for a block not yet sold;
    ``warning_block``: the latest block whose balance is at or below the warning threshold (None
    when an entry could not be counted: the balance is not known, so no renewal is decided).
    ``errors``: one message per entry that could not be counted (negative or unparsable hours, no
    start date, overage with no rate), or for a policy the hub does not know; ``failed``: the ids
    of those entries, which neither draw nor bill.
    """

    allocations: tuple[Allocation, ...]
    hours: dict[str, Fraction]
    balances: dict[int, Fraction]
    overage: dict[str, Fraction]
    overage_blocks: dict[str, int | None]
    carried: Fraction
    warning_block: int | None
    errors: tuple[str, ...] = ()
    failed: frozenset[str] = frozenset()

    def for_entry(self, entry_id: str) -> tuple[Allocation, ...]:
        index = self.__dict__.get("_by_entry")
        if index is None:           # built once: an agreement's entries are asked for one by one
            index = {}
            for a in self.allocations:
                index.setdefault(a.entry_id, []).append(a)
            object.__setattr__(self, "_by_entry", index)
        return tuple(index.get(entry_id, ()))


def _work_type(entry: TimeEntry, terms: TimeTerms) -> WorkType | None:
    return terms.work_types.get(entry.work_type)


def _flat_work_types(entries: Iterable[TimeEntry], terms: TimeTerms,
                     included: frozenset[str]) -> dict[str | None, list[TimeEntry]]:
    """Ticket id -> its billable entries of a flat-rate work type (key None: such entries with no ticket)."""
    out: dict[str | None, list[TimeEntry]] = defaultdict(list)
    for e in entries:
        wt = _work_type(e, terms)
        if is_billable(e) and wt is not None and wt.flat_rate is not None and wt.service not in included:
            out[e.ticket_id].append(e)
    return out


def draw_down(entries: Iterable[TimeEntry], blocks: Sequence[Block], terms: TimeTerms, *,
              agreement: str | None = None) -> Drawdown:
    """Draw the billable entries charged to a prepaid agreement down its blocks (BILLING.md,
    "Prepaid blocks").

    Entries (billable or no-default; with ``agreement``, only those charged to it) are taken in
    order (started_at, source_id), whatever their invoice status. Each draws on block 1, then the
    next block, among the blocks started at or before it. Hours beyond the balance are, with
    ``terms.beyond_balance == "overage"``, overage priced at ``terms.overage_rate`` (default: the
    hourly rate of the latest block started, block 1 before any); with ``"carry"``, deducted from
    the next block when it starts, and pending until one is sold. Entries of a flat-rate ticket do
    not draw: the flat price replaces their hours.

    Nothing here raises for one bad record: an entry whose hours or start cannot be counted, or
    whose overage has no rate, is an error naming it (``errors``, ``failed``) and draws nothing;
    an unknown ``beyond_balance`` policy is an error and nothing is drawn. With any error the
    balance is not known, so ``warning_block`` is None (no renewal is decided on a wrong balance).
    """
    if terms.beyond_balance not in (OVERAGE, CARRY):
        return Drawdown((), {}, {b.number: Fraction(b.hours) for b in blocks}, {}, {}, Fraction(0), None,
                        (f"beyond_balance {terms.beyond_balance!r} is not one of \"overage\" or \"carry\"; set it "
                         f"in the contract's time terms (mappings/time.toml [defaults] or the contract)",))
    errors: list[str] = []
    failed: set[str] = set()
    checked = []
    for e in entries:
        problem = entry_problem(e)
        if problem is None:
            checked.append(e)
        elif is_billable(e) and (agreement is None or e.agreement_source_id == agreement):
            errors.append(problem)
            failed.add(e.source_id)
    entries = checked
    flat = _flat_work_types(entries, terms, frozenset())
    no_ticket = {e.source_id for e in flat.pop(None, [])}
    drawing = sorted((e for e in entries if is_billable(e)
                      and (agreement is None or e.agreement_source_id == agreement)
                      and e.source_id not in no_ticket and e.ticket_id not in flat),
                     key=lambda e: (e.started_at, str(e.source_id)))
    by_number = sorted(blocks, key=lambda b: b.number)
    starts = sorted(blocks, key=lambda b: (b.started_at, b.number))
    balance = {b.number: Fraction(b.hours) for b in blocks}
    started: list[Block] = []
    pending: list[list[Any]] = []      # [entry id (None: a block's carried_in), hours] waiting for a block
    per_entry: dict[str, list[Allocation]] = {}
    hours: dict[str, Fraction] = {}
    overage: dict[str, Fraction] = {}
    overage_blocks: dict[str, int | None] = {}

    def start(block: Block) -> None:
        started.append(block)
        started.sort(key=lambda b: b.number)
        if block.carried_in > 0:
            pending.insert(0, [None, Fraction(block.carried_in)])
        while pending and balance[block.number] > 0:
            entry_id, h = pending[0]
            take = min(balance[block.number], h)
            balance[block.number] -= take
            if entry_id is not None:
                per_entry[entry_id].append(Allocation(entry_id, ALLOC_CARRIED, take, block.number))
            if take == h:
                pending.pop(0)
            else:
                pending[0][1] = h - take

    queue = list(starts)
    for e in drawing:
        while queue and queue[0].started_at <= e.started_at:
            start(queue.pop(0))
        try:
            h = billable_hours(e, terms)
        except MappingError as exc:
            errors.append(f"{exc}; it draws nothing from the prepaid block and is not billed")
            failed.add(e.source_id)
            continue
        hours[e.source_id] = h
        allocs = per_entry.setdefault(e.source_id, [])
        rest = h
        for b in started:
            if rest == 0:
                break
            take = min(balance[b.number], rest)
            if take > 0:
                balance[b.number] -= take
                rest -= take
                allocs.append(Allocation(e.source_id, ALLOC_DRAWN, take, b.number))
        if rest == 0:
            continue
        if terms.beyond_balance == CARRY:
            pending.append([e.source_id, rest])
            continue
        if terms.overage_rate is not None:
            rate, rate_block = terms.overage_rate, None
        elif started or by_number:
            priced = started[-1] if started else by_number[0]
            rate, rate_block = priced.rate, priced.number
        else:
            errors.append(f"{_entry_label(e)}: {_hours_text(rest)} beyond the prepaid balance, but the agreement "
                          f"has no block and the contract no overage_rate; give the contract a block or set "
                          f"overage_rate in its time terms. It is not billed")
            failed.add(e.source_id)
            del per_entry[e.source_id]
            del hours[e.source_id]
            continue
        allocs.append(Allocation(e.source_id, ALLOC_OVERAGE, rest, None, rate))
        overage[e.source_id] = rest
        overage_blocks[e.source_id] = rate_block
    for b in queue:                     # blocks sold after the last entry still absorb carried hours
        start(b)
    for entry_id, h in pending:
        if entry_id is not None:
            per_entry[entry_id].append(Allocation(entry_id, ALLOC_PENDING, h))
    warning = [b.number for b in by_number if balance[b.number] <= terms.warning_hours]
    return Drawdown(
        allocations=tuple(a for e in drawing for a in per_entry.get(e.source_id, ())),
        hours=hours, balances=balance, overage=overage, overage_blocks=overage_blocks,
        carried=sum((h for _, h in pending), Fraction(0)),
        warning_block=max(warning) if warning and not errors else None,
        errors=tuple(errors), failed=frozenset(failed))


def prepaid_order(blocks: Sequence[Block], current: str | None = None) -> list[tuple[str, list[Block]]]:
    """The prepaid agreements of ``blocks`` (a block's ``agreement``, else ``current``) with their
    blocks in number order, oldest agreement first: by the start of its first block, then its id.
    ``current`` (the contract's own agreement) is included even without a block, after the others."""
    own: dict[str, list[Block]] = defaultdict(list)
    for b in blocks:
        agreement = b.agreement if b.agreement is not None else current
        if agreement is not None:
            own[agreement].append(b)
    order = sorted(own, key=lambda a: (min(b.started_at for b in own[a]), a))
    if current is not None and current not in own:
        order.append(current)
    return [(a, sorted(own.get(a, []), key=lambda b: b.number)) for a in order]


def draw_down_agreements(entries: Iterable[TimeEntry], blocks: Sequence[Block], terms: TimeTerms, *,
                         current: str | None = None) -> dict[str, Drawdown]:
    """Draw every prepaid agreement of a client down its own blocks (BILLING.md, "Prepaid blocks").

    MSPs renew a block as a new agreement in the PSA: time charged to any block agreement of the
    client, the current one (``current``, blocks with no ``agreement``) or an earlier, expired one,
    draws down the blocks of the agreement it was charged to (``draw_down`` per agreement), never
    another's. Agreements are taken oldest first (``prepaid_order``). Hours beyond an agreement's
    balance follow ``terms.beyond_balance``: with ``"overage"`` they are that agreement's overage;
    with ``"carry"`` what its own later blocks cannot absorb is deducted from the first block of
    the next agreement when it starts (its ``carried_in``), and pending while there is none. Hours
    left on an earlier agreement stay its own (a block's balance is its hours minus the entries
    charged to it): an entry still charged to it draws them; they never move to the next one.

    When an agreement's carried hours are not known (one of its entries is an error) under
    ``"carry"``, every later agreement gets an error saying so and no warning block: no overage or
    renewal is decided on a balance that is not known.
    """
    entries = list(entries)
    out: dict[str, Drawdown] = {}
    carried, unknown = Fraction(0), None
    for agreement, own in prepaid_order(blocks, current):
        if carried > 0 and own:
            own = [replace(own[0], carried_in=own[0].carried_in + carried)] + own[1:]
        d = draw_down(entries, own, terms, agreement=agreement)
        if unknown is not None:
            d = replace(d, warning_block=None, errors=d.errors + (
                f"the hours carried beyond the balance of prepaid agreement {unknown} into this one are not known "
                f"until that agreement's entries are corrected",))
        out[agreement] = d
        if terms.beyond_balance == CARRY:
            carried = d.carried if own else carried + d.carried
            if d.errors:
                unknown = unknown or agreement
    return out


# --- the bill ---


@dataclass(frozen=True)
class ReportedItem:
    """A time entry or product looked at and not billed, and why (for reports).

    ``kind``: ``time`` or ``product``; ``reason``: one of the reason constants of this module
    (``non_billable``, ``included``, ``drawn_from_block``...); ``detail`` names the rule;
    ``hours``: the hours concerned (e.g. drawn from a block), when hours are concerned.
    """

    kind: str
    id: str
    reason: str
    detail: str
    date: str | None = None
    ticket: str | None = None
    hours: str | None = None


@dataclass(frozen=True)
class TimeBill:
    """The time-and-materials part of one client's invoice for one period.

    ``errors``: records that cannot be billed as the mappings stand (each names the fix; they are
    not billed, the others are). ``drawdown``: the contract's own prepaid agreement's state (block
    contracts); ``drawdowns``: every prepaid agreement's state, by agreement id (earlier, expired
    block agreements too).
    """

    lines: tuple[BillingLine, ...]
    reported: tuple[ReportedItem, ...] = ()
    errors: tuple[str, ...] = ()
    drawdown: Drawdown | None = None
    drawdowns: dict[str, Drawdown] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


def _local(moment: datetime | None, period: Period) -> tuple[str | None, str | None]:
    """(local date, its period name) of a moment, in the MSP's time zone."""
    if moment is None:
        return None, None
    day = period.local_day(moment)
    text = day.isoformat()
    return text, (text[:7] if day.year >= 1000 else day.strftime("%Y-%m"))


def _rate(entry: TimeEntry, terms: TimeTerms) -> tuple[int, str] | None:
    """The hourly rate of an entry billed as time and materials, and where it comes from."""
    wt = _work_type(entry, terms)
    if wt is not None and wt.rate is not None:
        return wt.rate, f"the rate of work type {entry.work_type!r} in the mappings"
    if terms.default_rate is not None:
        return terms.default_rate, f"the contract's default rate (work type {entry.work_type!r} has no rate in the mappings)"
    if entry.hourly_rate is not None:
        return entry.hourly_rate, (f"the PSA's hourly rate for the entry (work type {entry.work_type!r} has no rate "
                                   f"in the mappings and the contract no default rate)")
    return None


def _unique_codes(lines: list[BillingLine]) -> list[BillingLine]:
    """Lines sharing a code (one work type or product at two prices) get the unit price appended."""
    count: dict[str, int] = defaultdict(int)
    for line in lines:
        count[line.code] += 1
    out = []
    for line in lines:
        if count[line.code] > 1:
            line = BillingLine(line.client_id, line.period, f"{line.code}@{line.unit_amount}", line.description,
                               line.quantity, line.unit_amount, line.amount, line.currency, line.rule, line.items)
        out.append(line)
    return out


class _Run:
    """The state of one bill_time call: lines, reported items and errors as they are found."""

    def __init__(self, client_id: str, contract: Contract, period: Period, already_billed: frozenset[str],
                 language: str = i18n.DEFAULT_LANGUAGE):
        self.client_id, self.contract, self.period = client_id, contract, period
        self.lang = language
        self.terms = contract.time
        self.cur = contract.currency
        self.already_billed = already_billed
        self.reported: list[ReportedItem] = []
        self.errors: list[str] = []

    def report(self, e: TimeEntry, reason: str, detail: str, hours: Fraction | None = None) -> None:
        date, _ = _local(e.started_at, self.period)
        self.reported.append(ReportedItem("time", e.source_id, reason, detail, date, e.ticket_id,
                                          None if hours is None else format_quantity(hours)))

    def done_before(self, e: TimeEntry) -> bool:
        """Report and return True when the PSA or the hub already billed the entry."""
        if e.invoiced:
            self.report(e, INVOICED_BY_PSA, "invoiced by the PSA; never billed again")
            return True
        if e.source_id in self.already_billed:
            self.report(e, ALREADY_BILLED, "already billed by the hub; never billed again")
            return True
        return False

    def later(self, moment: datetime | None) -> bool:
        return moment is not None and moment >= self.period.end

    def item(self, e: TimeEntry, **extra: Any) -> dict[str, Any]:
        date, period = _local(e.started_at, self.period)
        return {"id": e.source_id, "date": date, "member": e.member, "ticket": e.ticket_id,
                "work_type": e.work_type, "hours": e.hours, **extra, "period": period}

    def line(self, code: str, description: str, quantity: Fraction, unit: int, rule: str,
             items: Iterable[dict[str, Any]]) -> BillingLine:
        return BillingLine(self.client_id, self.period.name, code, description, format_quantity(quantity), unit,
                           round_times(quantity, unit), self.cur, rule, tuple(items))

    def late_note(self, items: list[dict[str, Any]], what: str = "entries") -> str:
        earlier = sorted({i["period"] for i in items if i["period"] and i["period"] < self.period.name})
        return f"; includes {what} of {', '.join(earlier)} not billed before" if earlier else ""


def bill_time(client_id: str, contract: Contract, entries: Iterable[TimeEntry], products: Iterable[ProductLine],
              period: Period, *, blocks: Sequence[Block] = (), already_billed: frozenset[str] = frozenset(),
              language: str = i18n.DEFAULT_LANGUAGE) -> TimeBill:
    """Bill one client's time and products for one period (BILLING.md, "Time", "Prepaid blocks").

    ``entries``/``products``: the client's records as the engine has them, possibly from earlier
    periods (a record never billed is billed now, with its own date). ``blocks``: the prepaid
    blocks of the client: of the contract's agreement (block contracts; a block with no
    ``agreement``) and of its other block agreements, current or expired (a block naming its
    ``agreement``), whatever the contract's kind. Time charged to any of them is block time, drawn
    from the agreement it was charged to (``draw_down_agreements``), never time and materials.
    ``already_billed``: the item ids the hub already pushed (entry and product source ids,
    ``flat:<ticket id>``). ``language``: that of the line descriptions (hub.i18n); the rules
    explaining them stay in English.

    Non-billable and no-charge records, records invoiced by the PSA or already billed, time
    included in a managed contract's services, time drawn from a block and hours replaced by a
    flat rate are reported, not billed. The rest is billed: time and materials and a block's
    overage laid out by the contract's ``time_lines`` (per entry, per ticket, per work type: see
    ``_tm_lines``), one line per flat-rate ticket, one per catalog item.
    See the module docstring for the choices made where BILLING.md leaves one.
    """
    run = _Run(client_id, contract, period, already_billed, language)
    terms = contract.time
    kind = contract.kind
    received = list(entries)
    current = contract.agreement if kind == "block" else None
    prepaid = {a for a, _ in prepaid_order(blocks, current)}
    dated = []
    for e in received:
        problem = entry_problem(e)
        if problem is None:
            dated.append(e)
        elif e.billable in (DO_NOT_BILL, NO_CHARGE):
            continue
        elif is_billable(e) and e.agreement_source_id is not None and e.agreement_source_id in prepaid:
            continue                    # draw_down names it, as an entry of the prepaid agreement
        else:
            run.errors.append(problem)
    entries = sorted(dated, key=lambda e: (e.started_at, str(e.source_id)))
    lines: list[BillingLine] = []
    if kind not in ("managed", "block", "time_and_materials"):
        run.errors.append(f"contract of {client_id} has kind {contract.kind!r}; use managed, block or "
                          f"time_and_materials. Its time is not billed")
        entries = []
    if kind == "block" and contract.agreement is None:
        run.errors.append(f"block contract of {client_id} names no PSA agreement; set the agreement its hours "
                          f"are drawn from. Its time is not billed")
        entries = []
    included = terms.included_services if kind == "managed" else frozenset()

    time_entries: list[TimeEntry] = []
    for e in entries:
        if e.billable == DO_NOT_BILL:
            run.report(e, NON_BILLABLE, "not billable in the PSA; never reaches an invoice")
        elif e.billable == NO_CHARGE:
            run.report(e, NOT_CHARGED, "no charge in the PSA; never reaches an invoice")
        elif not is_billable(e):
            run.errors.append(f"{_entry_label(e)}: billable option {e.billable!r} is unknown; "
                              f"the PSA mapping must give one of billable, do_not_bill, no_charge, no_default")
        else:
            time_entries.append(e)

    flat_by_ticket = _flat_work_types(time_entries, terms, included)
    no_ticket = {e.source_id for e in flat_by_ticket.pop(None, [])}
    for e in time_entries:
        if e.source_id in no_ticket:
            run.errors.append(f"{_entry_label(e)}: work type {e.work_type!r} has a flat rate per ticket, but the "
                              f"entry is on no ticket; charge it to the ticket of the job in the PSA. "
                              f"It is not billed")
    lines += _flat_lines(run, time_entries, flat_by_ticket)
    time_entries = [e for e in time_entries if e.source_id not in no_ticket and e.ticket_id not in flat_by_ticket]

    drawdowns: dict[str, Drawdown] = {}
    if kind not in ("managed", "block", "time_and_materials") or (kind == "block" and contract.agreement is None):
        pass                            # an error above: nothing of the client is billed
    elif prepaid:
        drawdowns = draw_down_agreements(received, blocks, terms, current=current)
        for agreement, d in drawdowns.items():
            on_block = [e for e in time_entries if e.agreement_source_id == agreement]
            if d.errors:
                # The balance after a bad entry is not known, so no overage of the agreement is billed.
                run.errors.extend(f"prepaid agreement {agreement}: {e}; the agreement's overage is not "
                                  f"billed until it is corrected" for e in d.errors)
            else:
                lines += _overage_lines(run, on_block, d, agreement)
        time_entries = [e for e in time_entries if e.agreement_source_id not in drawdowns]
    drawdown = drawdowns.get(current) if current is not None else None
    if kind == "block" and drawdown is None:
        drawdown = draw_down([], [b for b in blocks if b.agreement is None], terms, agreement=contract.agreement)

    lines += _tm_lines(run, time_entries, included)
    lines += _product_lines(run, products)
    return TimeBill(tuple(_unique_codes(lines)), tuple(run.reported), tuple(run.errors), drawdown, drawdowns)


def _flat_lines(run: _Run, entries: list[TimeEntry], flat: dict[str | None, list[TimeEntry]]) -> list[BillingLine]:
    """One line per flat-rate ticket not billed before; every entry of the ticket is replaced."""
    lines = []
    terms = run.terms
    by_ticket: dict[Any, list[TimeEntry]] = defaultdict(list)
    for e in entries:
        if e.ticket_id in flat:
            by_ticket[e.ticket_id].append(e)
    for ticket in sorted(flat, key=str):
        on_ticket = by_ticket.get(ticket, [])
        flats = flat[ticket]
        prices = {_work_type(e, terms).flat_rate for e in flats}   # type: ignore[union-attr]
        if len(prices) > 1:
            kinds = ", ".join(sorted({f"{e.work_type!r}" for e in flats}))
            run.errors.append(f"ticket {ticket}: work types {kinds} have different flat rates; a ticket is one "
                              f"flat-rate job: change the work type of all but one in the PSA. Its "
                              f"{len(on_ticket)} entries are not billed")
            continue
        key = f"flat:{ticket}"
        job = flats[0]
        price = prices.pop()
        unbilled_flats = [e for e in flats if not e.invoiced]
        replaced = f"replaced by the flat rate of ticket {ticket} ({job.work_type})"
        if key in run.already_billed:
            why = f"{replaced}, already billed by the hub"
        elif not unbilled_flats:
            why = f"{replaced}, invoiced by the PSA"
        elif run.later(unbilled_flats[0].started_at):
            why = f"{replaced}, billed with the period of its flat-rate work"
        else:
            why = None
        if why is not None:
            for e in on_ticket:
                if not run.done_before(e):
                    run.report(e, FLAT_REPLACED, why)
            continue
        first = unbilled_flats[0]
        date, job_period = _local(first.started_at, run.period)
        items = [{"id": key, "ticket": ticket, "work_type": first.work_type, "date": date, "period": job_period}]
        for e in on_ticket:
            if not run.done_before(e):
                items.append(run.item(e, billed_hours="0"))
                run.report(e, FLAT_REPLACED, replaced)
        hours = sum((actual_hours(e) for e in on_ticket if _parsable(e)), Fraction(0))
        lines.append(run.line(key, i18n.text("line.flat", run.lang, work_type=first.work_type, ticket=ticket),
                              Fraction(1), price,
                              f"flat rate: {first.work_type} is billed once per ticket at "
                              f"{format_minor(price, run.cur)}, replacing the hours of the ticket's "
                              f"{len(on_ticket)} entries ({_hours_text(hours)} logged)", items))
    return lines


def _parsable(e: TimeEntry) -> bool:
    try:
        actual_hours(e)
    except MappingError:
        return False
    return True


def _overage_lines(run: _Run, on_block: list[TimeEntry], d: Drawdown, agreement: str) -> list[BillingLine]:
    """Report what the blocks of ``agreement`` absorbed; bill overage of entries of this period or
    earlier, once."""
    terms = run.terms
    own = agreement == run.contract.agreement and run.contract.kind == "block"
    groups: dict[int, list[tuple[TimeEntry, Fraction]]] = defaultdict(list)
    priced_by: dict[int, set[int | None]] = defaultdict(set)
    for e in on_block:
        h = d.hours.get(e.source_id, Fraction(0))
        if h == 0:
            run.report(e, NO_HOURS, "0 hours logged; nothing to draw or bill")
            continue
        for a in d.for_entry(e.source_id):
            if a.kind in (ALLOC_DRAWN, ALLOC_CARRIED):
                how = "drawn from" if a.kind == ALLOC_DRAWN else "carried beyond the balance into"
                run.report(e, DRAWN, f"{_hours_text(a.hours)} {how} prepaid block {a.block} of agreement "
                                     f"{agreement}", a.hours)
            elif a.kind == ALLOC_PENDING:
                run.report(e, PENDING, f"{_hours_text(a.hours)} beyond the balance of agreement {agreement}, "
                                       f"carried into the next block (contract: carry); not billed", a.hours)
        over = d.overage.get(e.source_id)
        if over is None or run.done_before(e):
            continue
        if run.later(e.started_at):
            run.report(e, LATER_PERIOD, "overage of a later period; billed with that period", over)
            continue
        rate = next(a.rate for a in d.for_entry(e.source_id) if a.kind == ALLOC_OVERAGE)
        groups[rate].append((e, over))
        priced_by[rate].add(d.overage_blocks[e.source_id])
    lines = []
    balances = ", ".join(f"block {n} {_hours_text(b)}" for n, b in sorted(d.balances.items())) or "no block"
    title = (i18n.text("line.overage_title", run.lang) if own
             else i18n.text("line.overage_title_of", run.lang, agreement=agreement))
    for rate in sorted(groups):
        numbers = sorted(n for n in priced_by[rate] if n is not None)
        source = ("the contract's overage rate" if not numbers else
                  f"the hourly rate of block {', '.join(map(str, numbers))} (price over hours)")
        rule = (f"prepaid block: hours beyond the balance of agreement {agreement} (balance left: {balances}) are "
                f"overage (contract: overage), billed at {format_minor(rate, run.cur)} per hour, {source}; "
                f"{_increment_note(terms)}")
        # The contract's time_lines (see _tm_lines) lays out the overage too: the hours of each
        # entry beyond the balance, of each ticket, or (work_type) all of them at this rate.
        for code, description, counted in _overage_groups(run, agreement, title, rate, groups[rate]):
            items = [run.item(e, billed_hours=format_quantity(d.hours[e.source_id]), agreement=agreement,
                              overage_hours=format_quantity(h), adjustment=_adjustment(
                                  e, actual_hours(e), d.hours[e.source_id], terms)) for e, h in counted]
            quantity = sum((h for _, h in counted), Fraction(0))
            lines.append(run.line(code, description, quantity, rate,
                                  f"{rule}{_onsite_note(counted, terms)}{run.late_note(items)}", items))
    return lines


def _overage_groups(run: "_Run", agreement: str, title: str, rate: int, counted: list[tuple[TimeEntry, Fraction]]
                    ) -> list[tuple[str, str, list[tuple[TimeEntry, Fraction]]]]:
    """(code, description, entries) of the overage lines at one rate, by the contract's time_lines."""
    mode, lang = run.terms.time_lines, run.lang
    price = i18n.money(rate, run.cur, lang)
    period = i18n.period(run.period.name, lang)
    if mode == "entry":
        out = []
        for e, h in counted:
            own = _local(e.started_at, run.period)[1]
            late = (i18n.text("line.overage_entry_late", lang, id=e.source_id, of_own=i18n.of_period(own, lang))
                    if own and own < run.period.name else "")
            out.append((f"overage:{agreement}:entry:{e.source_id}",
                        i18n.text("line.overage_entry", lang, title=title, period=period, late=late,
                                  facts=_entry_facts(e, run.period, lang), hours=i18n.hours(h, lang), price=price),
                        [(e, h)]))
        return out
    if mode == "ticket":
        by_ticket: dict[str | None, list[tuple[TimeEntry, Fraction]]] = defaultdict(list)
        for e, h in counted:
            by_ticket[e.ticket_id].append((e, h))
        out = []
        for ticket in sorted(by_ticket, key=lambda t: (t is None, str(t))):
            group = by_ticket[ticket]
            hours = sum((h for _, h in group), Fraction(0))
            which = i18n.text("ticket", lang, ticket=ticket) if ticket is not None else i18n.text("no_ticket", lang)
            out.append((f"overage:{agreement}:ticket:{ticket}" if ticket is not None else f"overage:{agreement}:no-ticket",
                        i18n.text("line.overage_ticket", lang, title=title, period=period, which=which,
                                  hours=i18n.hours(hours, lang), price=price,
                                  entries=i18n.count_entries(len(group), lang)), group))
        return out
    return [(f"overage:{agreement}", i18n.text("line.overage", lang, title=title, period=period), counted)]


def _entry_facts(e: TimeEntry, period: Period, language: str = i18n.DEFAULT_LANGUAGE) -> str:
    """What a client reads of one entry: its day (MSP's time zone), technician, ticket, work type."""
    day = i18n.day(_local(e.started_at, period)[0], language) or i18n.text("no_date", language)
    ticket = (i18n.text("ticket", language, ticket=e.ticket_id) if e.ticket_id is not None
              else i18n.text("no_ticket", language))
    return i18n.text("facts", language, day=day, member=e.member or i18n.text("no_technician", language),
                     ticket=ticket, work_type=e.work_type)


def _increment_note(terms: TimeTerms) -> str:
    source = terms.sources.get("increment_minutes")
    where = f" ({source})" if source is not None and terms.increment_minutes != 15 else ""
    if terms.increment_minutes > 0:
        return f"each entry rounded up to {terms.increment_minutes} min{where}"
    return "actual hours, not rounded (contract increment 0)"


def _onsite_note(counted: Iterable[tuple[TimeEntry, Any]], terms: TimeTerms) -> str:
    if any((wt := _work_type(e, terms)) is not None and wt.onsite for e, _ in counted):
        return f"; on-site work counts at least {_hours_text(terms.onsite_minimum)} per entry"
    return ""


def _tm_lines(run: _Run, entries: list[TimeEntry], included: frozenset[str]) -> list[BillingLine]:
    """Time and materials, laid out by the contract's ``time_lines`` (BILLING.md, "Lines the
    client reads"); every line is quantity (hours as rounded) × hourly rate:

    * ``entry`` (the default): one line per billable entry, stating its day in the MSP's time
      zone, technician, ticket, work type, hours as rounded and rate (``time:entry:<entry id>``);
    * ``ticket``: one line per ticket and rate, hours summed after each entry's rounding, entries
      without a ticket on one "no ticket" line (``time:ticket:<ticket id>``, ``time:no-ticket``);
    * ``work_type``: one line per work type and rate (``time:<work type>``).

    The entries of an earlier period billed late (never billed before) are on lines of their own
    that name the period (and, per entry, the entry) (BILLING.md, "Month after month"): the code
    gets ``:<period>`` in the ticket and work type layouts. Each line's items carry every entry id
    it bills, so what an invoice billed is compared entry by entry whatever the layout."""
    terms, contract = run.terms, run.contract
    if terms.time_lines not in ("entry", "ticket", "work_type"):
        billable = [e for e in entries if not e.invoiced and e.source_id not in run.already_billed]
        if billable:
            run.errors.append(f"contract of {run.client_id} has time_lines {terms.time_lines!r}; use \"entry\", "
                              f"\"ticket\" or \"work_type\" (mappings/defaults.toml or the contract). Its "
                              f"{len(billable)} time entries are not billed")
        return []
    groups: dict[tuple[str, int, str, str], list[tuple[TimeEntry, Fraction]]] = defaultdict(list)
    for e in entries:
        if run.done_before(e):
            continue
        try:
            h = billable_hours(e, terms)
        except MappingError as exc:
            run.errors.append(f"{exc}; it is not billed")
            continue
        if h == 0:
            run.report(e, NO_HOURS, "0 hours logged; nothing to bill")
            continue
        if run.later(e.started_at):
            run.report(e, LATER_PERIOD, "after the period; billed with its own period", h)
            continue
        wt = _work_type(e, terms)
        if not isinstance(e.work_type, str) or not e.work_type.strip():
            run.errors.append(f"{_entry_label(e)}: no work type, so neither its rate nor whether contract "
                              f"{contract.name} includes it can be decided; set its work type in the PSA. "
                              f"It is not billed")
            continue
        if wt is None and contract.kind == "managed":
            run.errors.append(f"{_entry_label(e)}: work type {e.work_type!r} is not in mappings/time.toml, so "
                              f"whether managed contract {contract.name} includes it cannot be decided; add "
                              f"[work_types.\"{e.work_type}\"] with service = \"...\" (included) or a rate. "
                              f"It is not billed")
            continue
        if wt is not None and wt.service is not None and wt.service in included:
            run.report(e, INCLUDED, f"work type {e.work_type!r} delivers {wt.service!r}, included in contract "
                                    f"{contract.name}", h)
            continue
        rate = _rate(e, terms)
        if rate is not None and (isinstance(rate[0], bool) or not isinstance(rate[0], int) or rate[0] < 0):
            run.errors.append(f"{_entry_label(e)}: hourly rate {rate[0]!r} ({rate[1]}) is not an amount of zero "
                              f"or more in minor units; correct it where it comes from. It is not billed")
            continue
        if rate is None:
            run.errors.append(f"{_entry_label(e)}: work type {e.work_type!r} has no rate (none in the mappings, "
                              f"no default rate in the contract, none from the PSA); add "
                              f"[work_types.\"{e.work_type}\"] rate = \"...\" to mappings/time.toml. "
                              f"It is not billed")
            continue
        own = _local(e.started_at, run.period)[1]
        groups[(e.work_type, rate[0], rate[1], own if own and own < run.period.name else "")].append((e, h))
    scope = ""
    if contract.kind == "managed":
        services = ", ".join(sorted(included)) or "no time services"
        scope = f"; outside the services included in contract {contract.name} ({services})"
    if terms.time_lines == "entry":
        return _entry_lines(run, groups, scope)
    if terms.time_lines == "ticket":
        return _ticket_lines(run, groups, scope)
    lines = []
    for (work_type, rate, source, late), counted in sorted(groups.items(),
                                                          key=lambda kv: (kv[0][3] != "", kv[0][3], kv[0][0], kv[0][1])):
        items = [run.item(e, billed_hours=format_quantity(h), adjustment=_adjustment(e, actual_hours(e), h, terms))
                 for e, h in counted]
        quantity = sum((h for _, h in counted), Fraction(0))
        rule = (f"time and materials: {work_type} at {format_minor(rate, run.cur)} per hour, {source}; "
                f"{_increment_note(terms)}{_onsite_note(counted, terms)}{scope}")
        if late:
            ids = [str(e.source_id) for e, _ in counted]
            lines.append(run.line(
                f"time:{work_type}:{late}",
                i18n.text("line.time_late", run.lang, of_late=i18n.of_period(late, run.lang), work_type=work_type,
                          which=i18n.which_entries(ids, run.lang)), quantity,
                rate, f"{rule}{_late_rule(late)}", items))
            continue
        lines.append(run.line(f"time:{work_type}", i18n.text("line.time", run.lang, work_type=work_type,
                                                             period=i18n.period(run.period.name, run.lang)),
                              quantity, rate, rule, items))
    return lines


def _late_rule(late: str) -> str:
    return f"; dated in {late}, entered after it was planned and never billed: billed once, on this invoice"


def _entry_lines(run: _Run, groups: dict[tuple[str, int, str, str], list[tuple[TimeEntry, Fraction]]],
                 scope: str) -> list[BillingLine]:
    """One line per entry (``_tm_lines``): the period's entries by date, then the late ones."""
    terms = run.terms
    flat = [(late, e, h, rate, source) for (_, rate, source, late), counted in groups.items() for e, h in counted]
    lines = []
    for late, e, h, rate, source in sorted(flat, key=lambda f: (f[0] != "", f[0], f[1].started_at, str(f[1].source_id))):
        actual = actual_hours(e)
        adjustment = _adjustment(e, actual, h, terms)
        price = format_minor(rate, run.cur)
        text = i18n.text("line.entry", run.lang, facts=_entry_facts(e, run.period, run.lang),
                         hours=i18n.hours(h, run.lang), price=i18n.money(rate, run.cur, run.lang))
        logged = f"{_hours_text(actual)} logged" + (f", {adjustment}" if adjustment else ", not rounded")
        rule = (f"time and materials, one line per entry: {e.work_type} at {price} per hour, {source}; {logged} "
                f"({_increment_note(terms)}){_onsite_note([(e, h)], terms)}{scope}")
        item = run.item(e, billed_hours=format_quantity(h), adjustment=adjustment)
        if late:
            lines.append(run.line(f"time:entry:{e.source_id}",
                                  i18n.text("line.entry_late", run.lang, id=e.source_id,
                                            of_late=i18n.of_period(late, run.lang), text=text), h, rate,
                                  f"{rule}{_late_rule(late)}", [item]))
        else:
            lines.append(run.line(f"time:entry:{e.source_id}", text, h, rate, rule, [item]))
    return lines


def _ticket_lines(run: _Run, groups: dict[tuple[str, int, str, str], list[tuple[TimeEntry, Fraction]]],
                  scope: str) -> list[BillingLine]:
    """One line per ticket and rate (``_tm_lines``); entries without a ticket on one line per rate."""
    terms = run.terms
    tickets: dict[tuple[str, str | None, int], list[tuple[TimeEntry, Fraction, str]]] = defaultdict(list)
    for (_, rate, source, late), counted in groups.items():
        for e, h in counted:
            tickets[(late, e.ticket_id, rate)].append((e, h, source))
    lines = []
    for (late, ticket, rate), got in sorted(tickets.items(), key=lambda kv: (kv[0][0] != "", kv[0][0],
                                                                          kv[0][1] is None, str(kv[0][1]), kv[0][2])):
        got.sort(key=lambda g: (g[0].started_at, str(g[0].source_id)))
        counted = [(e, h) for e, h, _ in got]
        quantity = sum((h for _, h in counted), Fraction(0))
        price = format_minor(rate, run.cur)
        kinds = ", ".join(dict.fromkeys(e.work_type for e, _ in counted))
        sources = "; ".join(dict.fromkeys(source for _, _, source in got))
        lang = run.lang
        ids = [str(e.source_id) for e, _ in counted]
        n = i18n.count_entries(len(ids), lang) if not late else i18n.which_entries(ids, lang)
        text = i18n.text("line.ticket_text", lang, kinds=kinds, hours=i18n.hours(quantity, lang),
                         price=i18n.money(rate, run.cur, lang), entries=n)
        code = f"time:ticket:{ticket}" if ticket is not None else "time:no-ticket"
        items = [run.item(e, billed_hours=format_quantity(h), adjustment=_adjustment(e, actual_hours(e), h, terms))
                 for e, h in counted]
        rule = (f"time and materials, one line per ticket: hours of each entry as rounded, summed, at {price} per "
                f"hour, {sources}; {_increment_note(terms)}{_onsite_note(counted, terms)}{scope}")
        if late:
            key = "line.ticket_late" if ticket is not None else "line.no_ticket_late"
            lines.append(run.line(f"{code}:{late}", i18n.text(key, lang, of_late=i18n.of_period(late, lang), ticket=ticket,
                                                              text=text),
                                  quantity, rate, f"{rule}{_late_rule(late)}", items))
        else:
            key = "line.ticket" if ticket is not None else "line.no_ticket"
            lines.append(run.line(code, i18n.text(key, lang, ticket=ticket, text=text), quantity, rate, rule, items))
    return lines


def _product_lines(run: _Run, products: Iterable[ProductLine]) -> list[BillingLine]:
    """Parts and products: price × quantity, one line per (catalog item, price)."""
    groups: dict[tuple[str, int], list[tuple[ProductLine, Fraction]]] = defaultdict(list)
    checked = []
    for p in products:
        what = f"product {p.source_id} ({p.catalog_item!r})"
        problem = None if p.sold_at is None else _moment_problem(p.sold_at)
        if p.billable in (DO_NOT_BILL, NO_CHARGE) or p.invoiced or p.source_id in run.already_billed:
            pass                        # never billed: reported below, whatever its fields
        elif problem is not None:
            run.errors.append(f"{what}: sale date {problem}, so its period cannot be decided; correct it in the "
                              f"PSA. It is not billed")
            continue
        elif not isinstance(p.catalog_item, str) or not p.catalog_item.strip():
            run.errors.append(f"{what}: no catalog item, so it has no line to go on; set its catalog item in "
                              f"the PSA. It is not billed")
            continue
        elif isinstance(p.unit_price, bool) or not isinstance(p.unit_price, int):
            run.errors.append(f"{what}: price {p.unit_price!r} is not an amount in minor units; correct its "
                              f"price in the PSA. It is not billed")
            continue
        elif not isinstance(p.currency, str) or not p.currency.strip():
            run.errors.append(f"{what}: no currency, the contract bills in {run.cur}; price it in {run.cur} in "
                              f"the PSA. It is not billed")
            continue
        if problem is not None:
            p = replace(p, sold_at=None)      # never billed: its date only labels the report
        checked.append(p)
    for p in sorted(checked, key=lambda p: (p.sold_at is None, p.sold_at or datetime.min, str(p.source_id))):
        date, _ = _local(p.sold_at, run.period)
        label = f"product {p.source_id} ({p.catalog_item}, {date or 'undated'})"

        def report(reason: str, detail: str) -> None:
            run.reported.append(ReportedItem("product", p.source_id, reason, detail, date, p.ticket_id))

        if p.billable == DO_NOT_BILL:
            report(NON_BILLABLE, "not billable in the PSA; never reaches an invoice")
        elif p.billable == NO_CHARGE:
            report(NOT_CHARGED, "no charge in the PSA; never reaches an invoice")
        elif not is_billable(p):
            run.errors.append(f"{label}: billable option {p.billable!r} is unknown; the PSA mapping must give "
                              f"one of billable, do_not_bill, no_charge, no_default")
        elif p.invoiced:
            report(INVOICED_BY_PSA, "invoiced by the PSA; never billed again")
        elif p.source_id in run.already_billed:
            report(ALREADY_BILLED, "already billed by the hub; never billed again")
        elif run.later(p.sold_at):
            report(LATER_PERIOD, "sold after the period; billed with its own period")
        elif p.currency.upper() != run.cur.upper():
            run.errors.append(f"{label}: priced in {p.currency}, the contract bills in {run.cur}; "
                              f"price it in {run.cur} in the PSA. It is not billed")
        else:
            try:
                q = Decimal(str(p.quantity).strip())
                ok = q.is_finite() and q >= 0
            except InvalidOperation:
                ok = False
            if not ok:
                run.errors.append(f"{label}: quantity {p.quantity!r} is not a quantity of zero or more; "
                                  f"correct it in the PSA. It is not billed")
                continue
            groups[(p.catalog_item, p.unit_price)].append((p, Fraction(q)))
    lines = []
    for (catalog_item, price), counted in sorted(groups.items()):
        items = []
        for p, q in counted:
            date, period = _local(p.sold_at, run.period)
            items.append({"id": p.source_id, "date": date, "description": p.description, "ticket": p.ticket_id,
                          "quantity": format_quantity(q), "period": period})
        descriptions = {p.description for p, _ in counted}
        description = descriptions.pop() if len(descriptions) == 1 else catalog_item
        quantity = sum((q for _, q in counted), Fraction(0))
        lines.append(run.line(f"product:{catalog_item}", description, quantity, price,
                              f"parts and products: price {format_minor(price, run.cur)} times quantity, billable "
                              f"and not yet invoiced{run.late_note(items, 'products')}", items))
    return lines


# --- renewals ---


def renewal_lines(client_id: str, contract: Contract, block_number: int, period_name: str, *,
                  balance: Fraction | None = None, agreement: str | None = None,
                  language: str = i18n.DEFAULT_LANGUAGE) -> tuple[BillingLine, ...]:
    """The invoice for a new prepaid block, planned once when block ``block_number``'s balance
    reached the warning threshold (BILLING.md, "Prepaid blocks"). Size and price come from
    ``contract.time.renewal``, else ``contract.time.block``; MappingError when neither is set.
    ``balance``: the block's hours left, for the explanation; ``agreement``: the block's agreement
    when it is not the contract's own (a block renewed as a new agreement in the PSA); ``language``:
    that of the line's description."""
    terms = contract.time
    size = terms.renewal or terms.block
    if size is None:
        raise MappingError(f"client {client_id}: block {block_number} needs a renewal, but contract "
                           f"{contract.name} has no block size; give its time terms a block (hours and price)")
    which = "the contract's renewal size" if terms.renewal is not None else "the contract's block size"
    hours = Fraction(size.hours)
    fell = (f"balance of block {block_number} fell to {_hours_text(balance)}" if balance is not None
            else f"balance of block {block_number} fell")
    per_hour = round_half_up(Fraction(size.price) / hours)
    rule = (f"prepaid block: {fell}, at or below the warning threshold of {_hours_text(terms.warning_hours)}; "
            f"a new block of {_hours_text(hours)} at {format_minor(size.price, contract.currency)} "
            f"({format_minor(per_hour, contract.currency)} per hour), {which}")
    item = {"id": f"renewal:{agreement or contract.agreement or client_id}:{block_number}", "after_block": block_number,
            "block": block_number + 1, "hours": format_quantity(hours),
            "balance": None if balance is None else format_quantity(balance)}
    return (BillingLine(client_id, period_name, f"block:{size.id}",
                        i18n.text("line.renewal", language, hours=i18n.number(hours, language),
                                  block=block_number + 1), "1",
                        size.price, size.price, contract.currency, rule, (item,)),)


__all__ = ["ALREADY_BILLED", "Allocation", "Block", "DRAWN", "Drawdown", "FLAT_REPLACED", "INCLUDED",
           "INVOICED_BY_PSA", "LATER_PERIOD", "NON_BILLABLE", "NOT_CHARGED", "NO_HOURS", "PENDING",
           "ReportedItem", "TimeBill", "actual_hours", "bill_time", "billable_hours", "draw_down",
           "draw_down_agreements", "is_billable", "prepaid_order", "renewal_lines"]
