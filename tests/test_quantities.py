"""The three counts of per-device agreement additions, and the guardrails on writing them."""

from decimal import Decimal

import pytest

from hub.quantities import Guardrails, check_quantities, held_reasons, line_code_for, unbilled_classes
from hub.records import AgreementAddition, BillingLine


def add(i, product, qty, cancelled=None):
    return AgreementAddition("connectwise", str(i), "77", "250", product, "", qty, 12000, "EUR", "billable",
                             cancelled_date=cancelled)


def line(code, n):
    return BillingLine("acme", "2026-10", code, code, str(n), 100, 100 * n, "EUR", "rule",
                       tuple({"id": str(k)} for k in range(n)))


PRODUCTS = {"MSP-WS": "workstation", "MSP-SRV": "server", "BCK-WS": "backup/workstation"}


@pytest.mark.parametrize("old, new, held", [
    ("40", 42, False), ("40", 40, False), ("10", 0, True), ("0", 0, False), ("100", 111, True),
    ("10", 13, True), ("40", 49, False), ("40", 51, True),
])
def test_guardrails(old, new, held):
    assert bool(held_reasons(Decimal(old), new, Guardrails(max_change_percent=25, max_change_devices=10))) is held


def test_three_counts_per_addition_and_what_to_do():
    lines = [line("tier:gold:workstation", 42), line("tier:gold:server", 3), line("addon:backup:workstation", 42)]
    checks = check_quantities("acme", "gold", [add(1, "MSP-WS", "40"), add(2, "MSP-SRV", "10"), add(3, "BCK-WS", "42"),
                                               add(4, "OTHER", "5"), add(5, "MSP-WS", "1", cancelled="2026-01-01")],
                              PRODUCTS, lines, Guardrails())
    got = {c.addition_id: (c.psa_quantity, c.rmm_count, c.reconciled, c.status) for c in checks}
    assert got == {"1": (Decimal(40), 42, 42, "update"), "2": (Decimal(10), 3, 3, "held"), "3": (Decimal(42), 42, 42, "ok")}
    assert "70 %" in next(c for c in checks if c.addition_id == "2").reasons[0]


def test_an_approved_change_is_no_longer_held():
    checks = check_quantities("acme", "gold", [add(2, "MSP-SRV", "10")], PRODUCTS, [line("tier:gold:server", 0)],
                              Guardrails(), approved=frozenset({"2"}))
    assert checks[0].status == "update" and checks[0].reasons


def test_device_lines_no_addition_carries_are_revenue_found():
    lines = [line("tier:gold:workstation", 5), line("tier:gold:server", 2), line("minimum", 1)]
    checks = check_quantities("acme", "gold", [add(1, "MSP-WS", "5")], PRODUCTS, lines, Guardrails())
    assert unbilled_classes(lines, checks) == {"tier:gold:server": 2}
    assert line_code_for("backup/server", "gold") == "addon:backup:server"
