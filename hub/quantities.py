"""Agreement quantities: the PSA's quantity, the RMM's count, and the reconciled quantity.

For each per-device agreement addition, the quantity the PSA bills should be the number of
devices the invoice counted (BILLING.md, "Devices": a mid-period device counts as one). The
reconciled quantity is written back unless a guardrail holds it for approval.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Iterable

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


def check_quantities(client_id: str, tier: str | None, additions: Iterable[AgreementAddition],
                     products: dict[str, str], lines: Iterable[BillingLine], rules: Guardrails,
                     *, approved: frozenset[str] = frozenset()) -> list[QuantityCheck]:
    """Compare each mapped, active addition with the devices its invoice line counted.

    Args:
        products: catalog item -> what it counts (``"workstation"``, ``"backup/workstation"``).
        lines: the client's billing lines of the period (device lines carry the devices counted).
        approved: addition ids whose held change a person approved.
    """
    counted = {line.code: len(line.items) for line in lines}
    out = []
    for add in sorted(additions, key=lambda a: (a.agreement_source_id, a.source_id)):
        if add.product not in products or add.cancelled_date:
            continue
        code = line_code_for(products[add.product], tier)
        rmm = counted.get(code, 0)
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
                                 psa, rmm, rmm, status, reasons))
    return out


def unbilled_classes(lines: Iterable[BillingLine], checks: Iterable[QuantityCheck]) -> dict[str, int]:
    """Device lines the invoice bills but no PSA addition carries ("revenue found" in the PSA)."""
    covered = {c.line_code for c in checks}
    return {l.code: len(l.items) for l in lines if l.code.startswith(("tier:", "addon:"))
            and l.code not in covered and l.items}
