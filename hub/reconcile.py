"""Pure billing functions: contracts, mappings and usage in a period in; billing lines out.

No database, HTTP or clock here (the period and records are passed in), so every rule of
BILLING.md is tested with literal lists. Each line names the rule that produced it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from fractions import Fraction
from typing import Iterable

from hub import i18n
from hub.mappings import Contract, Mappings, Tier
from hub.money import format_minor, format_quantity, round_half_up
from hub.periods import Period
from hub.records import APPROVED, DECOMMISSIONED, BillingLine, Device

DEVICE_RULE = ("counts devices approved in the RMM, created on or before the period's end and "
               "last seen on or after its start")
# Approval states that count: a device decommissioned in the RMM was managed until it disappeared,
# so it counts like one that disappears, for the periods in which it was last seen (BILLING.md).
COUNTED_STATES = (APPROVED, DECOMMISSIONED)


@dataclass(frozen=True)
class Exclusion:
    """A device that was looked at and not billed, and why."""

    source_id: str
    name: str
    reason: str


@dataclass(frozen=True)
class Bill:
    """What one client owes for one period, or why it cannot be billed (``errors``)."""

    client_id: str
    period: str
    currency: str
    lines: tuple[BillingLine, ...]
    excluded: tuple[Exclusion, ...] = ()
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    reported: tuple[dict, ...] = ()      # time and products seen and not billed, and why

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


@dataclass
class _Counted:
    weight: Fraction
    device: Device
    device_class: str


def device_weight(device: Device, period: Period, proration: bool) -> Fraction:
    """1 for a whole period; with proration, the days from its creation day to the period's end."""
    if not proration or device.created_at is None or device.created_at < period.start:
        return Fraction(1)
    created_day = period.local_day(device.created_at)
    days = period.days - (created_day - period.first_day).days
    return Fraction(days, period.days)


def _moment_problem(name: str, moment: object) -> str | None:
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        return f"{name} {moment!r} is not a date and time"
    if moment.tzinfo is None or moment.utcoffset() is None:
        return f"{name} {moment.isoformat()} has no time zone"
    return None


def device_problem(device: Device) -> str | None:
    """Why a device's dates cannot say whether it counts for a period (None: they can)."""
    return _moment_problem("created", device.created_at) or _moment_problem("last contact", device.last_contact)


def _device_label(d: Device) -> str:
    return f"device {d.name!r} ({d.source} id {d.source_id})"


def _names(devices: list[Device], shown: int = 3) -> str:
    names = sorted(str(d.name) for d in devices)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(repr(n) for n in names[:shown]) + more


def why_not_counted(device: Device, period: Period) -> str | None:
    """The reason a device does not count for ``period``, or None when it counts."""
    if device.approval_status not in COUNTED_STATES:
        return f"not approved in the RMM ({device.approval_status})"
    if device.created_at is not None and device.created_at >= period.end:
        return "created after the period"
    if device.last_contact is None:
        return "never seen by the RMM"
    if device.last_contact < period.start:
        return f"not seen during the period (last contact {device.last_contact.date().isoformat()})"
    return None


def _tier_label(tier: Tier, tiers: dict[str, Tier]) -> str:
    chain, t, seen = [], tier, {tier.id}
    while t.includes and t.includes in tiers and t.includes not in seen:
        t = tiers[t.includes]
        seen.add(t.id)
        chain.append(t.name)
    return f"tier {tier.name}" + (f" (includes {', '.join(chain)})" if chain else "")


def _line(client_id: str, period: Period, currency: str, code: str, description: str,
          counted: list[_Counted], unit: int, rule: str) -> BillingLine:
    quantity = sum((c.weight for c in counted), Fraction(0))
    items = tuple({"id": c.device.source_id, "name": c.device.name, "class": c.device_class,
                   "weight": format_quantity(c.weight)}
                  for c in sorted(counted, key=lambda c: (str(c.device.source), str(c.device.source_id))))
    return BillingLine(client_id, period.name, code, description, format_quantity(quantity), unit,
                       round_half_up(quantity * unit), currency, rule, items)


def bill_devices(contract: Contract, mappings: Mappings, devices: Iterable[Device], period: Period,
                 language: str = i18n.DEFAULT_LANGUAGE) -> Bill:
    """Bill one client's devices for one period under its tier and add-ons (BILLING.md, Devices).

    Nothing here raises for one bad record: a tier or add-on the mappings do not define, a device
    whose dates are not time-zone-aware or with no node class, is an error on this client's bill
    (``Bill.errors``, which holds its invoice) naming the thing and the fix; such a device is never
    silently dropped. A node class that ``device_classes.toml`` does not name is not billed, one
    note per class (how many devices, which, and the line to add); with ``unlisted = "error"`` in
    that file it is an error per device instead. A device whose class the tier does not price
    (printer, network...) is excluded, listed. ``language``: that of the line descriptions (hub.i18n).
    """
    cur = contract.currency
    tier = mappings.tiers.get(contract.tier) if isinstance(contract.tier, str) else None
    if tier is None:
        where = contract.file or contract.origin
        return Bill(contract.client_id, period.name, cur, (), errors=(
            f"contract of {contract.client_id} ({where}) names tier {contract.tier!r}, which mappings/tiers.toml "
            f"does not define; define [tiers.{contract.tier}] or name one of "
            f"{', '.join(sorted(mappings.tiers)) or 'no tier defined'}. Its devices are not billed",))
    excluded: list[Exclusion] = []
    errors: list[str] = []
    notes: list[str] = []
    seen: list[_Counted] = []
    unlisted: dict[tuple[str, str, bool], list[Device]] = defaultdict(list)
    for d in devices:
        problem = device_problem(d) if d.approval_status in COUNTED_STATES else None
        if problem:
            errors.append(f"{_device_label(d)}: {problem}, so whether it counts for {period.name} cannot be "
                          f"decided; correct its mapping in the {d.source} plugin. It is not billed")
            continue
        reason = why_not_counted(d, period)
        if reason:
            excluded.append(Exclusion(d.source_id, d.name, reason))
            continue
        if not isinstance(d.node_class, str) or not d.node_class.strip():
            errors.append(f"{_device_label(d)} has no node class ({d.node_class!r}), so its billable class cannot be "
                          f"decided; check the device in {d.source} and the node class the {d.source} plugin reads, "
                          f"then sync again. It is not billed")
            continue
        source_classes = mappings.device_classes.get(d.source)
        dclass = (source_classes or {}).get(d.node_class)
        if dclass is None and mappings.unlisted != "error":
            unlisted[(d.source, d.node_class, source_classes is not None)].append(d)
            continue
        if dclass is None:
            section = (f"under [{d.source}]" if source_classes is not None
                       else f"in a new [{d.source}] section (it has none)")
            errors.append(f"{_device_label(d)} has node class {d.node_class!r}, which mappings/device_classes.toml "
                          f"does not map; add {d.node_class} = \"workstation\" (or another class, e.g. \"printer\" "
                          f"to list it as not billed) {section}. It is not billed")
            continue
        seen.append(_Counted(device_weight(d, period, contract.proration), d, dclass))

    for (source, node_class, has_section), found in sorted(unlisted.items()):
        section = f"under [{source}]" if has_section else f"in a new [{source}] section"
        notes.append(f"{source} node class {node_class!r} is named by no mapping: {len(found)} device(s) not billed "
                     f"({_names(found)}); add {node_class} = \"workstation\" (or another class) {section} of "
                     f"mappings/device_classes.toml to bill it")
    # The tier each class is billed at: the contract's, or the one an agreement addition names.
    named: dict[str, tuple[Tier, str]] = {}
    for dclass, (tid, product) in sorted(contract.class_tiers.items()):
        if tid in mappings.tiers:
            named[dclass] = (mappings.tiers[tid], product)
        else:
            errors.append(f"agreement addition {product} of {contract.origin} bills class {dclass!r} at tier {tid!r}, "
                          f"which mappings/tiers.toml does not define; define [tiers.{tid}] or map {product} to "
                          f"another tier in agreement_types.toml. Its {dclass} devices are not billed")
    by_class: dict[tuple[str, str], list[_Counted]] = defaultdict(list)
    for c in seen:
        if c.device_class in contract.class_tiers and c.device_class not in named:
            continue
        at = named.get(c.device_class, (tier, None))[0]
        if c.device_class in at.prices:
            by_class[(at.id, c.device_class)].append(c)
        else:
            excluded.append(Exclusion(c.device.source_id, c.device.name,
                                      f"class {c.device_class!r} is not billed by tier {at.name}"))
    prorated = "; prorated by days from creation (contract option)" if contract.proration else ""
    lines = []
    for tid, dclass in sorted(by_class):
        at, product = named.get(dclass, (tier, None))
        unit = at.prices[dclass]
        by = (f"; billed at tier {at.name} by agreement addition {product} of {contract.origin}"
              if product is not None else "")
        lines.append(_line(contract.client_id, period, cur, f"tier:{at.id}:{dclass}",
                           i18n.text("line.device", language, tier=at.name,
                                     device_class=i18n.device_class(dclass, language),
                                     period=i18n.period(period.name, language)), by_class[(tid, dclass)], unit,
                           f"{_tier_label(at, mappings.tiers)}: {dclass} at {format_minor(unit, cur)} per device per "
                           f"month; {DEVICE_RULE}{prorated}{by}"))
    label = _tier_label(tier, mappings.tiers)
    billed = [c for key in by_class for c in by_class[key]]
    for aid in contract.addons:
        addon = mappings.addons.get(aid)
        if addon is None:
            errors.append(f"contract of {contract.client_id} names add-on {aid!r}, which mappings/tiers.toml does "
                          f"not define; define [addons.{aid}] or remove it from the contract. It is not billed")
            continue
        if addon.service and addon.service in tier.services:
            notes.append(f"add-on {addon.name} is included in {label}; not billed separately")
            continue
        classes = contract.addon_classes.get(aid) or addon.classes
        if classes is None:
            pool, scope = billed, "the devices billed under the tier"
        else:
            pool, scope = [c for c in seen if c.device_class in classes], f"devices of class {', '.join(sorted(classes))}"
        if aid in contract.addon_classes:
            scope += f"; switched on by an agreement addition of {contract.origin}"
        groups: dict[str, list[_Counted]] = defaultdict(list)
        for c in pool:
            groups[c.device_class].append(c)
        for dclass in sorted(groups):
            unit = addon.price_for(dclass)
            if unit is None:
                errors.append(f"add-on {aid!r} has no price for class {dclass!r}; add {dclass} = \"0.00\" "
                              f"(or a price) to [addons.{aid}].prices in tiers.toml")
                continue
            lines.append(_line(contract.client_id, period, cur, f"addon:{aid}:{dclass}",
                               i18n.text("line.addon", language, addon=addon.name,
                                         device_class=i18n.device_class(dclass, language),
                                         period=i18n.period(period.name, language)), groups[dclass], unit,
                               f"add-on {addon.name}: {format_minor(unit, cur)} per device per month, "
                               f"counting {scope}{prorated}"))
    return Bill(contract.client_id, period.name, cur, tuple(lines), tuple(excluded), tuple(errors), tuple(notes))


def apply_minimum(bill: Bill, contract: Contract, language: str = i18n.DEFAULT_LANGUAGE) -> Bill:
    """Top the bill up to the contract's monthly minimum with one explained line (its description
    in ``language``)."""
    if contract.minimum <= 0 or bill.total >= contract.minimum:
        return bill
    top_up = contract.minimum - bill.total
    line = BillingLine(contract.client_id, bill.period, "minimum",
                       i18n.text("line.minimum", language, period=i18n.period(bill.period, language)),
                       "1", top_up, top_up, contract.currency,
                       f"contract minimum {format_minor(contract.minimum, contract.currency)} per month; "
                       f"lines total {format_minor(bill.total, contract.currency)}")
    return replace(bill, lines=bill.lines + (line,))


@dataclass(frozen=True)
class Discrepancy:
    """Something in one system that the others do not account for (e.g. a client with no contract)."""

    kind: str
    subject: str
    message: str
    details: dict = field(default_factory=dict)
