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


# --- each guardrail at, just below and just above its limit ---


def reasons(old, new, **kw):
    return held_reasons(Decimal(old), new, Guardrails(**kw))


@pytest.mark.parametrize("old, new, held", [
    ("100", 110, False), ("100", 109, False), ("100", 111, True),      # +10, +9, +11 devices
    ("100", 90, False), ("100", 91, False), ("100", 89, True),         # -10, -9, -11 devices
])
def test_device_limit_holds_only_beyond_the_number(old, new, held):
    assert reasons(old, new, max_change_percent=None, max_change_devices=10) == (
        [f"changes by {abs(new - int(old))} devices, more than the limit of 10"] if held else [])


@pytest.mark.parametrize("old, new, held", [
    ("40", 50, False), ("40", 49, False), ("40", 51, True),            # +25 %, +22.5 %, +27.5 %
    ("40", 30, False), ("40", 31, False), ("40", 29, True),            # -25 %, -22.5 %, -27.5 %
    ("400", 500, False), ("400", 501, True),                           # +25 %, +25.25 %
])
def test_share_limit_holds_only_beyond_the_share(old, new, held):
    assert bool(reasons(old, new, max_change_percent=25, max_change_devices=None)) is held


def test_share_reason_is_exact():
    assert reasons("40", 51, max_change_percent=25, max_change_devices=None) == [
        "changes by 28 %, more than the limit of 25 %"]
    assert reasons("400", 501, max_change_percent=25.5, max_change_devices=None) == []
    assert reasons("400", 503, max_change_percent=25.5, max_change_devices=None) == [
        "changes by 26 %, more than the limit of 25.5 %"]


@pytest.mark.parametrize("old, new, held", [("1", 2, True), ("1", 1, False), ("2", 3, True), ("0", 5, False)])
def test_share_of_small_quantities(old, new, held):
    # From 1 to 2 is +100 %; from 0 there is no share to compare (and no division by zero).
    assert bool(reasons(old, new, max_change_percent=25, max_change_devices=None)) is held


def test_fractional_psa_quantity_is_compared_exactly():
    assert reasons("0.5", 1, max_change_percent=100, max_change_devices=None) == []
    assert reasons("0.5", 2, max_change_percent=100, max_change_devices=None) == [
        "changes by 300 %, more than the limit of 100 %"]
    assert reasons("10.5", 0, allow_zero=True, max_change_percent=None, max_change_devices=10) == [
        "changes by 10.5 devices, more than the limit of 10"]


@pytest.mark.parametrize("old, allow_zero, expected", [
    ("1", False, ["would set the quantity to 0 (from 1); approve it explicitly"]),
    ("1", True, []),
    ("0", False, []),
])
def test_setting_zero_is_held_unless_allowed(old, allow_zero, expected):
    assert reasons(old, 0, allow_zero=allow_zero, max_change_percent=None, max_change_devices=None) == expected


def test_every_limit_can_be_turned_off():
    assert reasons("100", 500, max_change_percent=None, max_change_devices=None) == []


def test_every_reason_of_one_change_is_listed():
    assert reasons("20", 0) == ["would set the quantity to 0 (from 20); approve it explicitly",
                                "changes by 20 devices, more than the limit of 10",
                                "changes by 100 %, more than the limit of 25 %"]


def test_check_to_json_is_exact():
    (c,) = check_quantities("acme", "gold", [add(2, "MSP-SRV", "10")], PRODUCTS, [line("tier:gold:server", 3)],
                            Guardrails())
    assert c.to_json() == {"client_id": "acme", "agreement_id": "77", "addition_id": "2", "product": "MSP-SRV",
                           "line": "tier:gold:server", "psa_quantity": "10", "rmm_count": 3, "reconciled": 3,
                           "status": "held", "reasons": ["changes by 70 %, more than the limit of 25 %"]}
    (ok,) = check_quantities("acme", "gold", [add(1, "MSP-WS", "2.50")], PRODUCTS, [line("tier:gold:workstation", 3)],
                             Guardrails())
    assert ok.to_json() == {"client_id": "acme", "agreement_id": "77", "addition_id": "1", "product": "MSP-WS",
                            "line": "tier:gold:workstation", "psa_quantity": "2.50", "rmm_count": 3, "reconciled": 3,
                            "status": "update", "reasons": []}


@pytest.mark.parametrize("qty", ["abc", "", "NaN", "Infinity", None])
def test_unreadable_psa_quantity_is_held_with_its_reason_until_approved(qty):
    (c,) = check_quantities("acme", "gold", [add(1, "MSP-WS", qty)], PRODUCTS, [line("tier:gold:workstation", 3)],
                            Guardrails())
    assert (c.psa_quantity, c.rmm_count, c.reconciled, c.status) == (Decimal(0), 3, 3, "held")
    assert c.reasons == (f"the PSA quantity {qty!r} of addition 1 is not a number, so the change to 3 cannot be "
                         f"checked; correct it in the PSA, or approve writing 3",)
    (ok,) = check_quantities("acme", "gold", [add(1, "MSP-WS", qty)], PRODUCTS, [line("tier:gold:workstation", 3)],
                             Guardrails(), approved=frozenset({"1"}))
    assert ok.status == "update" and ok.reconciled == 3


def test_an_addition_whose_line_is_absent_counts_zero_devices():
    (c,) = check_quantities("acme", "gold", [add(2, "MSP-SRV", "1")], PRODUCTS, [line("tier:gold:workstation", 4)],
                            Guardrails())
    assert (c.line_code, c.rmm_count, c.status) == ("tier:gold:server", 0, "held")
    assert c.reasons[0] == "would set the quantity to 0 (from 1); approve it explicitly"
    (zero,) = check_quantities("acme", "gold", [add(2, "MSP-SRV", "0")], PRODUCTS, [], Guardrails())
    assert (zero.rmm_count, zero.status) == (0, "ok")


def test_unmapped_and_cancelled_additions_are_skipped_not_the_ones_after_them():
    adds = [add(1, "OTHER", "5"), add(2, "MSP-WS", "1", cancelled="2026-01-01"), add(3, "MSP-WS", "3")]
    checks = check_quantities("acme", "gold", adds, PRODUCTS, [line("tier:gold:workstation", 3)], Guardrails())
    assert [(c.addition_id, c.status) for c in checks] == [("3", "ok")]


def test_line_code_splits_an_addon_at_its_first_slash_only():
    assert line_code_for("backup/workstation", "gold") == "addon:backup:workstation"
    assert line_code_for("backup/nas/raid", "gold") == "addon:backup:nas/raid"
    assert line_code_for("server", "silver") == "tier:silver:server"


def test_addon_lines_no_addition_carries_are_revenue_found_too():
    lines = [line("addon:backup:workstation", 4), line("tier:gold:workstation", 4), line("time:Remote", 2)]
    checks = check_quantities("acme", "gold", [add(1, "MSP-WS", "4")], PRODUCTS, lines, Guardrails())
    assert unbilled_classes(lines, checks) == {"addon:backup:workstation": 4}


# --- additions that name an add-on or a tier and several classes (agreement_types.toml tables) ---

from hub.mappings import AdditionProduct  # noqa: E402


def devices_line(code, ids):
    return BillingLine("acme", "2026-10", code, code, str(len(ids)), 100, 100 * len(ids), "EUR", "rule",
                       tuple({"id": i} for i in ids))


RICH = {"BACKUP-DEV": AdditionProduct("BACKUP-DEV", addon="backup", classes=frozenset({"workstation", "server"})),
        "BACKUP-ANY": AdditionProduct("BACKUP-ANY", addon="backup"),
        "ARGENT-POSTE": AdditionProduct("ARGENT-POSTE", tier="silver", classes=frozenset({"workstation"})),
        "MS-ALL": AdditionProduct("MS-ALL"),
        "MS-WS": "workstation"}


def test_an_addition_counts_the_devices_of_every_class_it_names():
    lines = [devices_line("tier:gold:server", ["s1", "s2"]), devices_line("tier:silver:workstation", ["w1", "w2", "w3"]),
             devices_line("addon:backup:workstation", ["w1", "w2", "w3"]), devices_line("addon:backup:server", ["s1"]),
             devices_line("addon:backup:nas", ["n1"])]
    checks = {c.product: c for c in check_quantities(
        "acme", "gold", [add(1, "BACKUP-DEV", "4"), add(2, "BACKUP-ANY", "5"), add(3, "ARGENT-POSTE", "3"),
                         add(4, "MS-ALL", "5"), add(5, "MS-WS", "3")],
        RICH, lines, Guardrails(), class_tiers={"workstation": "silver"})}
    assert (checks["BACKUP-DEV"].line_code, checks["BACKUP-DEV"].rmm_count, checks["BACKUP-DEV"].status) == \
        ("addon:backup:server+addon:backup:workstation", 4, "ok")
    # No classes named: every line of the add-on.
    assert (checks["BACKUP-ANY"].rmm_count, checks["BACKUP-ANY"].status) == (5, "ok")
    assert (checks["ARGENT-POSTE"].line_code, checks["ARGENT-POSTE"].rmm_count) == ("tier:silver:workstation", 3)
    # No classes and no tier: every device billed under a tier; a class an addition bills at another
    # tier is counted on that tier's line.
    assert (checks["MS-ALL"].rmm_count, checks["MS-ALL"].status) == (5, "ok")
    assert (checks["MS-WS"].line_code, checks["MS-WS"].rmm_count) == ("tier:silver:workstation", 3)
    assert unbilled_classes(lines, list(checks.values())) == {}


def test_a_line_counted_by_no_addition_is_still_revenue_found_with_several_classes():
    lines = [devices_line("addon:backup:workstation", ["w1"]), devices_line("addon:backup:server", ["s1", "s2"])]
    only_ws = {"BK": AdditionProduct("BK", addon="backup", classes=frozenset({"workstation"}))}
    checks = check_quantities("acme", "gold", [add(1, "BK", "1")], only_ws, lines, Guardrails())
    assert (checks[0].rmm_count, checks[0].status) == (1, "ok")
    assert unbilled_classes(lines, checks) == {"addon:backup:server": 2}
