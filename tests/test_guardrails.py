"""Invoice guardrails (BILLING.md, "When an invoice may be sent"): each limit at, just below and
just above its edge, the exact reasons, and the billed device counts they compare."""

from decimal import Decimal
from fractions import Fraction

import pytest

from hub.guardrails import (InvoiceGuardrails, PreviousInvoice, check_invoice, count_billed_devices,
                            count_snapshot_devices, exact, previous_from_snapshot)
from hub.planner import line_json
from hub.records import BillingLine

KEY = "invoice:acme:2026-10"
G = InvoiceGuardrails()


def check(total, devices, previous, g=G, currency="EUR"):
    return check_invoice(total, devices, previous, g, currency=currency, key=KEY)


def prev(total=100000, devices=100, period="2026-09", currency="EUR"):
    return PreviousInvoice(period, total, devices, currency)


def test_defaults_are_those_of_billing_md():
    assert (G.max_change_percent, G.max_device_change_percent, G.first_invoice_max) == (30, 30, 500000)


# --- the total against the previous invoice: 30 % of 1000.00 is 300.00 ---


@pytest.mark.parametrize("total, held", [
    (130000, False),     # exactly +30 %: let through
    (129999, False),     # just below
    (130001, True),      # just above
    (70000, False),      # exactly -30 %
    (70001, False),
    (69999, True),
    (100000, False),
])
def test_total_is_held_only_beyond_the_share(total, held):
    assert bool(check(total, 100, prev())) is held


def test_total_reason_says_what_moved_from_what_to_what_the_limit_and_how_to_approve():
    assert check(130001, 100, prev()) == (
        "total rose from 1000.00 EUR (2026-09) to 1300.01 EUR, by 30.001 %, more than the limit of 30 %; "
        "`msp-hub approve invoice:acme:2026-10` lets it through",)
    assert check(50000, 100, prev()) == (
        "total fell from 1000.00 EUR (2026-09) to 500.00 EUR, by 50 %, more than the limit of 30 %; "
        "`msp-hub approve invoice:acme:2026-10` lets it through",)


@pytest.mark.parametrize("limit, total, held", [
    (Decimal("12.5"), 112500, False), (Decimal("12.5"), 112501, True),
    ("12.5", 112500, False), ("12.5", 112501, True),
    (Fraction(25, 2), 112500, False), (Fraction(25, 2), 112501, True),
    (0, 100000, False), (0, 100001, True),
])
def test_limits_are_exact_whatever_their_type(limit, total, held):
    assert bool(check(total, 100, prev(), InvoiceGuardrails(max_change_percent=limit))) is held


def test_a_float_limit_is_read_by_its_decimal_text():
    # 0.3 as a binary float is 0.29999999999999998..., which would hold a change of exactly 0.3 %.
    g = InvoiceGuardrails(max_change_percent=0.3)
    assert check(100300, 100, prev(), g) == ()
    assert check(100301, 100, prev(), g)[0].startswith("total rose from 1000.00 EUR (2026-09) to 1003.01 EUR, by 0.301 %")
    assert "more than the limit of 0.3 %" in check(100301, 100, prev(), g)[0]


def test_a_previous_credit_compares_by_its_size():
    assert check(-13000, 100, prev(total=-10000)) == ()
    assert check(-13001, 100, prev(total=-10000))[0].startswith(
        "total fell from -100.00 EUR (2026-09) to -130.01 EUR, by 30.01 %")


def test_no_total_limit_lets_any_change_through():
    assert check(900000, 100, prev(), InvoiceGuardrails(max_change_percent=None)) == ()


# --- the billed device count: 30 % of 100 devices is 30 ---


@pytest.mark.parametrize("devices, held", [
    (130, False), (129, False), (131, True),
    (70, False), (71, False), (69, True),
])
def test_device_count_is_held_only_beyond_the_share(devices, held):
    assert bool(check(100000, devices, prev())) is held


def test_device_reason_is_exact():
    assert check(100000, 131, prev()) == (
        "billed devices rose from 100 (2026-09) to 131, by 31 %, more than the limit of 30 %; "
        "`msp-hub approve invoice:acme:2026-10` lets it through",)
    assert check(100000, 2, prev(devices=3)) == (
        "billed devices fell from 3 (2026-09) to 2, by 33.3333 %, more than the limit of 30 %; "
        "`msp-hub approve invoice:acme:2026-10` lets it through",)


def test_one_device_becoming_two_is_a_change_of_a_hundred_percent():
    assert check(100000, 2, prev(devices=1))[0].startswith("billed devices rose from 1 (2026-09) to 2, by 100 %")
    assert check(100000, 1, prev(devices=1)) == ()


def test_devices_growing_from_zero_have_no_share_to_compare():
    assert check(100000, 40, prev(devices=0)) == ()


def test_total_and_devices_both_moving_give_two_reasons():
    reasons = check(200000, 200, prev())
    assert [r.split(" from ")[0] for r in reasons] == ["total rose", "billed devices rose"]


# --- a drop to zero devices is always held ---


@pytest.mark.parametrize("before", [1, 2, 100])
def test_a_drop_to_zero_devices_is_always_held(before):
    g = InvoiceGuardrails(max_change_percent=None, max_device_change_percent=None)
    assert check(100000, 0, prev(devices=before), g) == (
        f"billed devices fell from {before} (2026-09) to 0; an invoice with no device after one with devices is "
        f"always held; `msp-hub approve invoice:acme:2026-10` lets it through",)
    assert len(check(100000, 0, prev(devices=before))) == 1       # not also as a share


def test_zero_devices_after_zero_devices_is_not_a_drop():
    assert check(100000, 0, prev(devices=0)) == ()


# --- a first invoice above the configured amount ---


@pytest.mark.parametrize("total, held", [(500000, False), (499999, False), (500001, True), (0, False)])
def test_first_invoice_is_held_only_above_the_amount(total, held):
    assert bool(check(total, 10, None)) is held


def test_first_invoice_reason_is_exact_and_the_limit_configurable():
    assert check(500001, 10, None) == (
        "total 5000.01 EUR on the first invoice of the client is above the limit of 5000.00 EUR for a first "
        "invoice; `msp-hub approve invoice:acme:2026-10` lets it through",)
    assert check(100001, 10, None, InvoiceGuardrails(first_invoice_max=100000))
    assert check(100000, 10, None, InvoiceGuardrails(first_invoice_max=100000)) == ()
    assert check(9_000_000, 10, None, InvoiceGuardrails(first_invoice_max=None)) == ()


def test_first_invoice_limit_reads_minor_units_of_the_currency():
    assert check(500001, 10, None, currency="JPY") == (
        "total 500001 JPY on the first invoice of the client is above the limit of 500000 JPY for a first "
        "invoice; `msp-hub approve invoice:acme:2026-10` lets it through",)


def test_a_previous_total_of_zero_is_checked_like_a_first_invoice():
    assert check(500000, 10, prev(total=0, devices=10)) == ()
    assert check(500001, 10, prev(total=0, devices=10)) == (
        "total 5000.01 EUR on the first invoice since a total of 0.00 EUR in 2026-09 is above the limit of "
        "5000.00 EUR for a first invoice; `msp-hub approve invoice:acme:2026-10` lets it through",)


def test_a_change_of_currency_is_held_and_not_compared():
    assert check(100000, 100, prev(currency="usd")) == (
        "currency changed from USD (2026-09) to EUR, so the totals cannot be compared; "
        "`msp-hub approve invoice:acme:2026-10` lets it through",)
    assert check(100000, 100, prev(currency="eur")) == ()
    assert check(100000, 100, prev(currency=None)) == ()


@pytest.mark.parametrize("value, fraction", [(30, Fraction(30)), ("30.5", Fraction(61, 2)), (30.1, Fraction(301, 10)),
                                             (Decimal("0.25"), Fraction(1, 4)), (Fraction(1, 3), Fraction(1, 3))])
def test_exact_reads_limits_without_binary_error(value, fraction):
    assert exact(value) == fraction


@pytest.mark.parametrize("value", [True, "abc", "nan", float("inf"), None])
def test_exact_refuses_what_is_not_a_number(value):
    with pytest.raises(ValueError, match="is not a number"):
        exact(value)


# --- billed devices of a bill and of a stored snapshot ---


def line(code, *ids, amount=1000, currency="EUR"):
    return BillingLine("acme", "2026-10", code, code, str(len(ids)), 100, amount, currency, "rule",
                       tuple({"id": i, "name": f"PC-{i}"} for i in ids))


LINES = [line("tier:gold:workstation", "1", "2", "3"), line("tier:gold:server", "4"),
         line("addon:backup:workstation", "1", "2", "3"), line("addon:netmon:network", "9"),
         line("delta:2026-09:tier:gold:workstation", "2026-09:tier:gold:workstation:7"),
         line("time:Remote", "10001", "10002"), line("product:SSD", "3001"), line("flat:T1", "flat:T1"),
         BillingLine("acme", "2026-10", "minimum", "Monthly minimum", "1", 500, 500, "EUR", "rule")]


def test_billed_devices_are_the_distinct_devices_of_tier_and_addon_lines():
    assert count_billed_devices(LINES) == 5          # 1, 2, 3, 4 and the network device 9
    assert count_billed_devices([line("tier:gold:workstation", "1", "2")]) == 2
    assert count_billed_devices([line("time:Remote", "1")]) == 0
    assert count_billed_devices([]) == 0


def test_snapshot_devices_are_counted_like_the_bills():
    snapshot = [line_json(l) for l in LINES]
    assert count_snapshot_devices(snapshot) == 5
    assert count_snapshot_devices([{"code": "tier:gold:server", "items": [{"id": 4}, {"id": "4"}, {"name": "x"}]},
                                   {"code": "tier:gold:workstation"}]) == 1


def test_previous_invoice_from_a_snapshot():
    snapshot = [line_json(l) for l in LINES]
    assert previous_from_snapshot("2026-09", snapshot) == PreviousInvoice("2026-09", 8500, 5, "EUR")
    mixed = snapshot + [line_json(line("product:X", "1", currency="USD"))]
    assert previous_from_snapshot("2026-09", mixed).currency is None
    assert previous_from_snapshot("2026-09", []) == PreviousInvoice("2026-09", 0, 0, None)


def test_a_snapshot_line_without_an_amount_or_a_code_counts_nothing():
    snapshot = [{"code": "tier:gold:server", "amount": 2400, "currency": "EUR", "items": [{"id": "4"}]},
                {"code": "note", "currency": "EUR"}, {"amount": 100, "items": [{"id": "5"}]}]
    assert previous_from_snapshot("2026-09", snapshot) == PreviousInvoice("2026-09", 2500, 1, "EUR")
