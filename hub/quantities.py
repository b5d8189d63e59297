"""Agreement quantities: the PSA's quantity, the RMM's count, and the reconciled quantity.

For each per-device agreement addition, the quantity the PSA bills should be the number of
devices the invoice counted on the lines it carries (an add-on's or a tier's, one class or several;
BILLING.md, "Devices": a mid-period device counts as one). The reconciled quantity is written back
unless a guardrail holds it for approval.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Iterable

from hub.mappings import AdditionProduct, addition_product
from hub.records import AgreementAddition, BillingLine


@dataclass(frozen=True)
class Guardrails:
    """When a quantity change waits for a person: to 0, or larger than a share or a number."""

    allow_zero: bool = False
    max_change_percent: float | None = 25.0
    max_change_devices: int | None = 10


@dataclass(frozen=True)
class QuantityCheck:
    """The three counts of one addition, and what to do: ``ok``, ``update`` or ``held``."""

    client_id: str
    agreement_id: str
    addition_id: str
    product: str
    line_code: str
    psa_quantity: Decimal
    rmm_count: int
    reconciled: int
    status: str
    reasons: tuple[str, ...] = ()
    line_codes: tuple[str, ...] = ()     # the lines it counts (``line_code`` joins them with "+")

    def to_json(self) -> dict:
        return {"client_id": self.client_id, "agreement_id": self.agreement_id, "addition_id": self.addition_id,
                "product": self.product, "line": self.line_code, "psa_quantity": str(self.psa_quantity),
                "rmm_count": self.rmm_count, "reconciled": self.reconciled, "status": self.status,
                "reasons": list(self.reasons)}


def line_code_for(counts: str, tier: str | None) -> str:
    """``"workstation"`` -> ``tier:<tier>:workstation``; ``"backup/server"`` -> ``addon:backup:server``."""
    if "/" in counts:
        addon, dclass = counts.split("/", 1)
        return f"addon:{addon}:{dclass}"
    return f"tier:{tier}:{counts}"


def held_reasons(old: Decimal, new: int, rules: Guardrails) -> list[str]:
    """Why a change from ``old`` to ``new`` needs approval (empty: it may be written)."""
    reasons = []
    change = abs(Decimal(new) - old)
    if new == 0 and old != 0 and not rules.allow_zero:
        reasons.append(f"would set the quantity to 0 (from {old}); approve it explicitly")
    if rules.max_change_devices is not None and change > rules.max_change_devices:
        reasons.append(f"changes by {change} devices, more than the limit of {rules.max_change_devices}")
    if rules.max_change_percent is not None and old > 0 and change * 100 / old > Decimal(str(rules.max_change_percent)):
        reasons.append(f"changes by {change * 100 / old:.0f} %, more than the limit of {rules.max_change_percent:g} %")
    return reasons


def counted_codes(spec: "str | AdditionProduct", product: str, tier: str | None, codes: Iterable[str],
                  class_tiers: dict[str, str] | None = None) -> tuple[str, ...]:
    """The invoice lines whose devices an addition counts (``[additions]`` of agreement_types.toml).

    An add-on: its lines of the classes named (none named: all of its lines); a tier named: that
    tier's lines of the classes named (or all of them); neither: the line of each class named at
    the tier it is billed at (the contract's, or one an addition names), none named: every tier
    line (every device billed under the tier). A line not on the invoice counts 0 devices.
    """
    spec = addition_product(product, spec)
    codes = sorted(set(codes))
    names = sorted(spec.classes) if spec.classes is not None else None
    if spec.addon is not None:
        prefix = f"addon:{spec.addon}:"
    elif spec.tier is not None:
        prefix = f"tier:{spec.tier}:"
    elif names is None:
        return tuple(c for c in codes if c.startswith("tier:")) or (f"tier:{tier}:*",)
    else:
        return tuple(f"tier:{(class_tiers or {}).get(n, tier)}:{n}" for n in names)
    if names is None:
        return tuple(c for c in codes if c.startswith(prefix)) or (f"{prefix}*",)
    return tuple(f"{prefix}{n}" for n in names)


def check_quantities(client_id: str, tier: str | None, additions: Iterable[AgreementAddition],
                     products: dict[str, "str | AdditionProduct"], lines: Iterable[BillingLine], rules: Guardrails,
                     *, approved: frozenset[str] = frozenset(),
                     class_tiers: dict[str, str] | None = None) -> list[QuantityCheck]:
    """Compare each mapped, active addition with the devices its invoice lines counted.

    Args:
        products: catalog item -> what it counts (``"workstation"``, ``"backup/workstation"``, or an
            AdditionProduct: an add-on or a tier and several classes, see ``counted_codes``).
        lines: the client's billing lines of the period (device lines carry the devices counted).
        approved: addition ids whose held change a person approved.
        class_tiers: device class -> the tier an addition bills it at, when not the contract's.
    """
    lines = list(lines)
    devices: dict[str, set[str]] = {}
    for line in lines:
        devices.setdefault(line.code, set()).update(str(i.get("id", n)) for n, i in enumerate(line.items))
    out = []
    for add in sorted(additions, key=lambda a: (a.agreement_source_id, a.source_id)):
        if add.product not in products or add.cancelled_date:
            continue
        codes = counted_codes(products[add.product], add.product, tier, devices, class_tiers)
        code = "+".join(codes)
        rmm = len(set().union(*(devices.get(c, set()) for c in codes)))
        try:
            read: Decimal | None = Decimal(str(add.quantity).strip())
        except InvalidOperation:
            read = None
        psa = read if read is not None and read.is_finite() else Decimal(0)
        if read is None or not read.is_finite():
            # Nothing to compare with: never overwritten without a person (BILLING.md: no silent fallback).
            reasons = (f"the PSA quantity {add.quantity!r} of addition {add.source_id} is not a number, so the "
                       f"change to {rmm} cannot be checked; correct it in the PSA, or approve writing {rmm}",)
            status = "held" if add.source_id not in approved else "update"
        elif psa == rmm:
            status, reasons = "ok", ()
        else:
            reasons = tuple(held_reasons(psa, rmm, rules))
            status = "held" if reasons and add.source_id not in approved else "update"
        out.append(QuantityCheck(client_id, add.agreement_source_id, add.source_id, add.product, code,
                                 psa, rmm, rmm, status, reasons, codes))
    return out


def unbilled_classes(lines: Iterable[BillingLine], checks: Iterable[QuantityCheck]) -> dict[str, int]:
    """Device lines the invoice bills but no PSA addition carries ("revenue found" in the PSA)."""
    covered = {code for c in checks for code in (c.line_codes or (c.line_code,))}
    return {l.code: len(l.items) for l in lines if l.code.startswith(("tier:", "addon:"))
            and l.code not in covered and l.items}
