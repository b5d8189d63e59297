"""Invoice guardrails: when an invoice waits for a person before it is pushed (BILLING.md).

A push is final, so a surprising invoice is held until someone approves it with
``msp-hub approve <key>``: a total or a billed device count that moves by more than the
configured share against the client's previous invoice, a drop to zero devices, a first invoice
above the configured amount, a currency that differs from the previous invoice's. Pure functions:
the new invoice's figures, the previous one's and the limits in; the reasons to hold out, each a
sentence naming what moved, from what to what, the limit and the command that lets it through.

Arithmetic is exact: totals are integer minor units, shares are compared as fractions (a change
is held only when it is strictly more than the limit: exactly the limit goes through), and
limits given as floats (from a config file) are read through their decimal text.

Decisions where BILLING.md leaves a choice:

* A previous invoice whose total was 0 gives no share to compare with: the new total is then
  checked like a first invoice's (above ``first_invoice_max`` it is held).
* A device count growing from 0 gives no share either: it is not held on the device count (the
  total's guardrails still apply).
* Totals are compared before tax, like with like: the new invoice's ``total`` (the sum of its
  lines before VAT) against the previous invoice's lines as billed, before VAT. A change of the
  client's VAT treatment alone (standard to reverse charge, a new rate) moves no total and holds
  nothing; the tax is the plan's to show, not a surprise in what is billed.
* Billed devices are the distinct device ids on the tier and add-on lines of the period
  (``tier:...``, ``addon:...``); late lines of earlier periods (``delta:...``) do not count.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Iterable, Mapping

from hub.money import format_minor, format_quantity
from hub.records import BillingLine

DEVICE_LINE_PREFIXES = ("tier:", "addon:")

Share = int | Fraction | Decimal | float | str


@dataclass(frozen=True)
class InvoiceGuardrails:
    """The limits past which an invoice waits for approval.

    ``max_change_percent``: the total may move up or down by at most this share (in percent) of
    the previous invoice's total; ``max_device_change_percent``: the same for the billed device
    count; None turns either off. ``first_invoice_max``: a client's first invoice above this
    amount (minor units of the invoice's currency) is held; None turns it off. A drop to zero
    devices (from more than zero) is always held.
    """

    max_change_percent: Share | None = 30
    max_device_change_percent: Share | None = 30
    first_invoice_max: int | None = 500000


@dataclass(frozen=True)
class PreviousInvoice:
    """What the hub invoiced the client for its previous invoiced period: ``total`` before tax in
    minor units, ``devices`` billed (see ``count_billed_devices``), ``currency`` when known."""

    period: str
    total: int
    devices: int
    currency: str | None = None


def exact(value: Share) -> Fraction:
    """A limit as an exact fraction: ``30``, ``"30.5"``, ``Decimal("30.5")``; a float by its
    shortest decimal text (``30.1`` is 301/10, not the nearest binary fraction). ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, (int, Fraction)):
        return Fraction(value)
    try:
        d = Decimal(str(value).strip())
    except ArithmeticError:
        raise ValueError(f"{value!r} is not a number") from None
    if not d.is_finite():
        raise ValueError(f"{value!r} is not a number")
    return Fraction(d)


def _percent(limit: Share) -> str:
    return f"{format_quantity(exact(limit))} %"


def _moved_by(old: int, new: int) -> Fraction:
    """The change from ``old`` to ``new`` as a share of ``old``, in percent (``old`` not 0)."""
    return Fraction(abs(new - old) * 100, abs(old))


def _approve(key: str) -> str:
    return f"`msp-hub approve {key}` lets it through"


def check_invoice(new_total: int, new_devices: int, previous: PreviousInvoice | None, g: InvoiceGuardrails, *,
                  currency: str, key: str) -> tuple[str, ...]:
    """The reasons to hold an invoice until a person approves it; empty: let it through.

    Args:
        new_total: the invoice's total before tax, minor units of ``currency``.
        new_devices: the devices it bills (``count_billed_devices``).
        previous: the client's previous invoice; None for its first one.
        g: the limits.
        currency: the invoice's currency, for the amounts in the reasons.
        key: the invoice's action key, named in the approval command of each reason.
    """
    reasons = []
    approve = _approve(key)
    new_text = format_minor(new_total, currency)
    if previous is None or previous.total == 0:
        if g.first_invoice_max is not None and new_total > g.first_invoice_max:
            what = ("first invoice of the client" if previous is None
                    else f"first invoice since a total of {format_minor(0, currency)} in {previous.period}")
            reasons.append(f"total {new_text} on the {what} is above the limit of "
                           f"{format_minor(g.first_invoice_max, currency)} for a first invoice; {approve}")
    if previous is None:
        return tuple(reasons)
    if previous.currency is not None and previous.currency.upper() != currency.upper():
        reasons.append(f"currency changed from {previous.currency.upper()} ({previous.period}) to "
                       f"{currency.upper()}, so the totals cannot be compared; {approve}")
    elif previous.total != 0 and g.max_change_percent is not None:
        share = _moved_by(previous.total, new_total)
        if share > exact(g.max_change_percent):
            way = "rose" if new_total > previous.total else "fell"
            reasons.append(f"total {way} from {format_minor(previous.total, currency)} ({previous.period}) to "
                           f"{new_text}, by {format_quantity(share)} %, more than the limit of "
                           f"{_percent(g.max_change_percent)}; {approve}")
    if previous.devices > 0 and new_devices == 0:
        reasons.append(f"billed devices fell from {previous.devices} ({previous.period}) to 0; an invoice with no "
                       f"device after one with devices is always held; {approve}")
    elif previous.devices > 0 and g.max_device_change_percent is not None:
        share = _moved_by(previous.devices, new_devices)
        if share > exact(g.max_device_change_percent):
            way = "rose" if new_devices > previous.devices else "fell"
            reasons.append(f"billed devices {way} from {previous.devices} ({previous.period}) to {new_devices}, by "
                           f"{format_quantity(share)} %, more than the limit of "
                           f"{_percent(g.max_device_change_percent)}; {approve}")
    return tuple(reasons)


def _device_ids(lines: Iterable[tuple[str, Iterable[Mapping[str, Any]]]]) -> int:
    ids = set()
    for code, items in lines:
        if code.startswith(DEVICE_LINE_PREFIXES):
            ids.update(str(i["id"]) for i in items if i.get("id") is not None)
    return len(ids)


def count_billed_devices(lines: Iterable[BillingLine]) -> int:
    """The distinct devices a bill's tier and add-on lines bill (a device on both counts once)."""
    return _device_ids((line.code, line.items) for line in lines)


def count_snapshot_devices(snapshot: Iterable[Mapping[str, Any]]) -> int:
    """The same count for a stored snapshot: line dicts shaped like ``hub.planner.line_json``."""
    return _device_ids((str(line.get("code", "")), line.get("items") or ()) for line in snapshot)


def previous_from_snapshot(period: str, snapshot: Iterable[Mapping[str, Any]]) -> PreviousInvoice:
    """The previous invoice of a stored snapshot: its total, billed devices and currency (None
    when its lines name none or several)."""
    lines = list(snapshot)
    currencies = {str(line["currency"]).upper() for line in lines if line.get("currency")}
    return PreviousInvoice(period, sum(int(line.get("amount", 0)) for line in lines), count_snapshot_devices(lines),
                           currencies.pop() if len(currencies) == 1 else None)


__all__ = ["InvoiceGuardrails", "PreviousInvoice", "check_invoice", "count_billed_devices",
           "count_snapshot_devices", "exact", "previous_from_snapshot"]
