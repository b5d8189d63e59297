"""Time billing rules of BILLING.md ("Time", "Prepaid blocks", "Money"), on literal records."""

from dataclasses import replace
from datetime import datetime, timezone
from fractions import Fraction as F

import pytest

from hub.errors import MappingError
from hub.mappings import BlockSize, Contract, TimeTerms, WorkType
from hub.periods import month
from hub.records import BILLABLE, DO_NOT_BILL, NO_CHARGE, NO_DEFAULT, ProductLine, TimeEntry
from hub.timebilling import (ALREADY_BILLED, DRAWN, FLAT_REPLACED, INCLUDED, INVOICED_BY_PSA, LATER_PERIOD,
                             NO_HOURS, NON_BILLABLE, NOT_CHARGED, PENDING, Block, bill_time, billable_hours,
                             draw_down, draw_down_agreements, prepaid_order, renewal_lines)

UTC = timezone.utc
OCT = month(2026, 10, "UTC")


def dt(*a):
    return datetime(*a, tzinfo=UTC)


WORK_TYPES = {
    "Remote": WorkType("Remote", rate=12000, service="remote"),
    "Onsite": WorkType("Onsite", rate=15000, onsite=True, service="onsite"),
    "Project": WorkType("Project", rate=18000),
    "Virus removal": WorkType("Virus removal", flat_rate=14900, service="security"),
    "Data recovery": WorkType("Data recovery", flat_rate=30000),
    "Unpriced": WorkType("Unpriced"),
}
BLOCK_10 = BlockSize("10h", F(10), 90000)      # 90.00 EUR per hour
BLOCK_20 = BlockSize("20h", F(20), 160000)     # 80.00 EUR per hour


def terms(**kw):
    """These tests read the rules on lines per work type; each layout of time_lines (one line per
    entry is the default) is tested in test_time_lines.py."""
    return TimeTerms(work_types=WORK_TYPES, **{"time_lines": "work_type", **kw})


def contract(kind="time_and_materials", agreement=None, **kw):
    return Contract("acme", "Acme", "gold" if kind == "managed" else None, "EUR", kind=kind,
                    time=terms(**kw), agreement=agreement)


def entry(i, hours="1", work_type="Remote", when=dt(2026, 10, 5, 9), billable=BILLABLE, ticket=None,
          agreement=None, invoiced=False, rate=None, member="jdoe"):
    return TimeEntry("connectwise", str(i), "acme", member, when, None, hours, billable, work_type, "Engineer",
                     ticket, agreement, rate, invoiced)


def product(i, item="SSD-1TB", qty="1", price=9900, billable=BILLABLE, when=dt(2026, 10, 7), invoiced=False,
            currency="EUR", description="1 TB SSD"):
    return ProductLine("connectwise", str(i), "acme", item, description, qty, price, currency, billable,
                       invoiced=invoiced, sold_at=when)


def blocks(*starts, size=BLOCK_10):
    return [Block.of_size(n, size, when) for n, when in enumerate(starts, start=1)]


def by_code(bill):
    return {line.code: line for line in bill.lines}


def reasons(bill):
    return {r.id: r.reason for r in bill.reported}


# --- rounding and the on-site minimum ---


@pytest.mark.parametrize("hours, increment, expected", [
    ("0.1167", 15, F(1, 4)),       # 7 minutes
    ("0.25", 15, F(1, 4)),         # 15 minutes
    ("0.2667", 15, F(1, 2)),       # 16 minutes
    ("0", 15, F(0)),               # nothing logged, nothing billed
    ("1", 15, F(1)),
    ("1.01", 15, F(5, 4)),
    ("0.11", 6, F(1, 5)),
    ("0.6", 30, F(1)),
    ("0.6", 0, F(3, 5)),           # no increment: actual hours
])
def test_entry_is_rounded_up_to_the_increment(hours, increment, expected):
    assert billable_hours(entry(1, hours), terms(increment_minutes=increment)) == expected


@pytest.mark.parametrize("hours, minimum, expected", [
    ("0.5", F(1), F(1)),
    ("0.01", F(1), F(1)),
    ("1.1", F(1), F(5, 4)),
    ("1.5", F(2), F(2)),
    ("0", F(1), F(0)),             # an entry of 0 hours is no visit: no minimum
])
def test_onsite_work_counts_at_least_the_minimum(hours, minimum, expected):
    assert billable_hours(entry(1, hours, "Onsite"), terms(onsite_minimum=minimum)) == expected


def test_remote_work_has_no_minimum():
    assert billable_hours(entry(1, "0.5", "Remote"), terms()) == F(1, 2)


@pytest.mark.parametrize("hours", ["-0.5", "abc", "", "NaN", "Infinity"])
def test_negative_or_unparsable_hours_are_an_error_naming_the_entry(hours):
    with pytest.raises(MappingError) as err:
        billable_hours(entry(42, hours, member="asmith", when=dt(2026, 10, 3, 8)), terms())
    assert "42" in str(err.value) and "asmith" in str(err.value) and "2026-10-03" in str(err.value)


def test_unbillable_hours_hold_that_entry_only():
    bill = bill_time("acme", contract(), [entry(1, "-1"), entry(2, "2")], [], OCT)
    assert len(bill.errors) == 1 and "time entry 1 " in bill.errors[0]
    assert by_code(bill)["time:Remote"].quantity == "2"


# --- time and materials ---


def test_time_and_materials_one_line_per_work_type_with_the_sum_of_rounded_hours():
    entries = [entry(1, "0.1"), entry(2, "1.3", when=dt(2026, 10, 20)), entry(3, "0.5", "Project"),
               entry(4, "0.5", "Onsite", ticket="T9")]
    bill = bill_time("acme", contract(), entries, [], OCT)
    assert not bill.errors and not bill.reported
    lines = by_code(bill)
    assert set(lines) == {"time:Remote", "time:Project", "time:Onsite"}
    remote = lines["time:Remote"]
    assert (remote.quantity, remote.unit_amount, remote.amount, remote.currency) == ("1.75", 12000, 21000, "EUR")
    assert [(i["id"], i["hours"], i["billed_hours"], i["date"], i["period"]) for i in remote.items] == [
        ("1", "0.1", "0.25", "2026-10-05", "2026-10"), ("2", "1.3", "1.5", "2026-10-20", "2026-10")]
    assert "rounded up to 15 min" in remote.rule and "120.00 EUR per hour" in remote.rule
    onsite = lines["time:Onsite"]
    assert (onsite.quantity, onsite.amount) == ("1", 15000)
    assert "on-site work counts at least 1 h" in onsite.rule
    assert onsite.items[0]["adjustment"] == "on-site minimum 1 h" and onsite.items[0]["ticket"] == "T9"
    assert bill.total == 21000 + 9000 + 15000


@pytest.mark.parametrize("work_type, default_rate, psa_rate, rate, source", [
    ("Project", None, 99900, 18000, "rate of work type 'Project' in the mappings"),
    ("Cabling", 10000, 99900, 10000, "contract's default rate"),
    ("Unpriced", 10000, None, 10000, "contract's default rate"),
    ("Cabling", None, 11000, 11000, "the PSA's hourly rate"),
])
def test_rate_comes_from_the_work_type_then_the_contract_default_then_the_psa(work_type, default_rate,
                                                                              psa_rate, rate, source):
    bill = bill_time("acme", contract(default_rate=default_rate), [entry(1, "2", work_type, rate=psa_rate)], [], OCT)
    (line,) = bill.lines
    assert (line.unit_amount, line.amount) == (rate, 2 * rate)
    assert source in line.rule


def test_work_type_with_no_rate_anywhere_is_an_error_and_the_rest_is_billed():
    bill = bill_time("acme", contract(), [entry(1, "2", "Cabling"), entry(2, "1")], [], OCT)
    assert [line.code for line in bill.lines] == ["time:Remote"]
    (error,) = bill.errors
    assert "time entry 1" in error and 'add [work_types."Cabling"] rate = "..." to mappings/time.toml' in error


def test_psa_rates_differing_within_a_work_type_give_one_line_per_rate():
    bill = bill_time("acme", contract(), [entry(1, "1", "Cabling", rate=10000),
                                          entry(2, "1", "Cabling", rate=11000)], [], OCT)
    assert sorted((line.code, line.amount) for line in bill.lines) == [
        ("time:Cabling@10000", 10000), ("time:Cabling@11000", 11000)]


def test_rounding_happens_once_per_line_half_up():
    odd = WorkType("Odd", rate=3333)                     # 33.33 per hour
    c = Contract("acme", "Acme", None, "EUR", kind="time_and_materials",
                 time=TimeTerms(work_types={"Odd": odd}, time_lines="work_type"))
    three = [entry(i, "0.25", "Odd") for i in range(3)]
    (line,) = bill_time("acme", c, three, [], OCT).lines
    assert (line.quantity, line.amount) == ("0.75", 2500)    # 2499.75 -> 2500, not 3 × 833 = 2499
    (half,) = bill_time("acme", c, three[:2], [], OCT).lines
    assert (half.quantity, half.amount) == ("0.5", 1667)     # 1666.5 -> 1667


def test_amounts_are_in_the_contracts_currency():
    c = Contract("acme", "Acme", None, "JPY", kind="time_and_materials", time=terms())
    (line,) = bill_time("acme", c, [entry(1, "1", "Project")], [], OCT).lines
    assert line.currency == "JPY" and "18000 JPY" in line.rule


# --- what never reaches a line ---


@pytest.mark.parametrize("billable, reason", [(DO_NOT_BILL, NON_BILLABLE), (NO_CHARGE, NOT_CHARGED)])
def test_non_billable_and_no_charge_are_reported_never_billed(billable, reason):
    bill = bill_time("acme", contract(), [entry(1, "3", billable=billable), entry(2, "1")],
                     [product(5, billable=billable)], OCT)
    assert [line.code for line in bill.lines] == ["time:Remote"]
    assert reasons(bill) == {"1": reason, "5": reason}
    assert [i["id"] for i in bill.lines[0].items] == ["2"]


def test_no_default_is_billable():
    bill = bill_time("acme", contract(), [entry(1, "1", billable=NO_DEFAULT)], [product(2, billable=NO_DEFAULT)], OCT)
    assert {line.code for line in bill.lines} == {"time:Remote", "product:SSD-1TB"}


def test_unknown_billable_option_is_an_error():
    bill = bill_time("acme", contract(), [entry(1, billable="maybe")], [], OCT)
    assert not bill.lines and "'maybe'" in bill.errors[0]


@pytest.mark.parametrize("invoiced, already, reason", [
    (True, frozenset(), INVOICED_BY_PSA),
    (False, frozenset({"1", "5"}), ALREADY_BILLED),
])
def test_records_already_invoiced_are_never_billed_again(invoiced, already, reason):
    bill = bill_time("acme", contract(), [entry(1, "2", invoiced=invoiced), entry(2, "1", "Project")],
                     [product(5, invoiced=invoiced)], OCT, already_billed=already)
    assert [line.code for line in bill.lines] == ["time:Project"]
    assert reasons(bill) == {"1": reason, "5": reason}


def test_zero_hour_entry_bills_nothing_and_is_reported():
    bill = bill_time("acme", contract(), [entry(1, "0", "Onsite")], [], OCT)
    assert not bill.lines and reasons(bill) == {"1": NO_HOURS}


# --- periods ---


def test_late_entry_of_an_earlier_period_is_billed_on_its_own_line_naming_its_period():
    late = entry(1, "1", when=dt(2026, 9, 28, 14))
    bill = bill_time("acme", contract(), [late, entry(2, "1")], [], OCT)
    own, earlier = bill.lines
    assert (own.code, own.period, own.quantity) == ("time:Remote", "2026-10", "1")
    assert [(i["id"], i["date"], i["period"]) for i in own.items] == [("2", "2026-10-05", "2026-10")]
    assert (earlier.code, earlier.period, earlier.quantity) == ("time:Remote:2026-09", "2026-10", "1")
    assert earlier.description == "Late entries of 2026-09: Remote time (entry 1)"
    assert [(i["id"], i["date"], i["period"]) for i in earlier.items] == [("1", "2026-09-28", "2026-09")]
    assert "dated in 2026-09, entered after it was planned and never billed" in earlier.rule


def test_records_after_the_period_wait_for_their_own_invoice():
    bill = bill_time("acme", contract(), [entry(1, "1", when=dt(2026, 11, 1))],
                     [product(2, when=dt(2026, 11, 2))], OCT)
    assert not bill.lines and reasons(bill) == {"1": LATER_PERIOD, "2": LATER_PERIOD}


def test_an_entry_belongs_to_the_period_of_its_local_time():
    paris = month(2026, 10, "Europe/Paris")
    night = entry(1, "1", when=dt(2026, 10, 31, 23, 30))          # 1 November 00:30 in Paris
    evening = entry(2, "1", when=dt(2026, 9, 30, 22, 30))         # 1 October 00:30 in Paris
    bill = bill_time("acme", contract(), [night, evening], [], paris)
    (line,) = bill.lines
    assert [(i["id"], i["date"], i["period"]) for i in line.items] == [("2", "2026-10-01", "2026-10")]
    assert reasons(bill) == {"1": LATER_PERIOD}


# --- managed scope ---


def test_managed_contract_includes_its_services_and_bills_time_outside_them():
    c = contract("managed", included_services=frozenset({"remote", "onsite", "security"}))
    entries = [entry(1, "2"), entry(2, "1", "Onsite"), entry(3, "1.5", "Project"), entry(4, "1", "Unpriced", rate=9000)]
    bill = bill_time("acme", c, entries, [], OCT)
    assert reasons(bill) == {"1": INCLUDED, "2": INCLUDED}
    lines = by_code(bill)
    assert set(lines) == {"time:Project", "time:Unpriced"}
    assert lines["time:Project"].amount == 27000
    assert "outside the services included in contract Acme (onsite, remote, security)" in lines["time:Project"].rule


def test_managed_contract_without_the_service_bills_that_work_type():
    c = contract("managed", included_services=frozenset({"onsite"}))
    bill = bill_time("acme", c, [entry(1, "2"), entry(2, "1", "Onsite")], [], OCT)
    assert [line.code for line in bill.lines] == ["time:Remote"] and reasons(bill) == {"2": INCLUDED}


# --- flat-rate jobs ---


def test_flat_rate_job_is_billed_once_per_ticket_replacing_its_hours():
    entries = [entry(1, "0.5", "Virus removal", ticket="T1"), entry(2, "2", "Remote", ticket="T1"),
               entry(3, "1", "Virus removal", ticket="T1", when=dt(2026, 10, 6)),
               entry(4, "1", "Remote", ticket="T2")]
    bill = bill_time("acme", contract(), entries, [], OCT)
    lines = by_code(bill)
    assert set(lines) == {"flat:T1", "time:Remote"}
    flat = lines["flat:T1"]
    assert (flat.quantity, flat.unit_amount, flat.amount) == ("1", 14900, 14900)
    assert [i["id"] for i in flat.items] == ["flat:T1", "1", "2", "3"]
    assert "billed once per ticket at 149.00 EUR" in flat.rule and "3 entries (3.5 h logged)" in flat.rule
    assert [i["id"] for i in lines["time:Remote"].items] == ["4"]
    assert reasons(bill) == {"1": FLAT_REPLACED, "2": FLAT_REPLACED, "3": FLAT_REPLACED}


def test_flat_rate_ticket_already_billed_is_not_billed_again_nor_its_new_entries():
    entries = [entry(1, "0.5", "Virus removal", ticket="T1"), entry(2, "2", ticket="T1", when=dt(2026, 10, 20))]
    bill = bill_time("acme", contract(), entries, [], OCT, already_billed=frozenset({"flat:T1", "1"}))
    assert not bill.lines
    assert reasons(bill) == {"1": ALREADY_BILLED, "2": FLAT_REPLACED}


def test_flat_rate_job_invoiced_by_the_psa_is_not_billed():
    entries = [entry(1, "0.5", "Virus removal", ticket="T1", invoiced=True), entry(2, "2", ticket="T1")]
    bill = bill_time("acme", contract(), entries, [], OCT)
    assert not bill.lines and reasons(bill) == {"1": INVOICED_BY_PSA, "2": FLAT_REPLACED}


def test_non_billable_flat_work_does_not_make_a_flat_job():
    entries = [entry(1, "0.5", "Virus removal", ticket="T1", billable=DO_NOT_BILL), entry(2, "2", ticket="T1")]
    bill = bill_time("acme", contract(), entries, [], OCT)
    assert [line.code for line in bill.lines] == ["time:Remote"]


def test_two_flat_prices_on_one_ticket_hold_the_ticket():
    entries = [entry(1, "1", "Virus removal", ticket="T1"), entry(2, "1", "Data recovery", ticket="T1"),
               entry(3, "1", ticket="T2")]
    bill = bill_time("acme", contract(), entries, [], OCT)
    assert [line.code for line in bill.lines] == ["time:Remote"]
    assert len(bill.errors) == 1 and "ticket T1" in bill.errors[0]


def test_flat_rate_work_on_no_ticket_is_an_error():
    bill = bill_time("acme", contract(), [entry(1, "1", "Virus removal")], [], OCT)
    assert not bill.lines and "on no ticket" in bill.errors[0]


def test_managed_contract_including_the_flat_jobs_service_does_not_bill_it():
    c = contract("managed", included_services=frozenset({"security", "remote"}))
    bill = bill_time("acme", c, [entry(1, "1", "Virus removal", ticket="T1"), entry(2, "1", ticket="T1")], [], OCT)
    assert not bill.lines and reasons(bill) == {"1": INCLUDED, "2": INCLUDED}


def test_flat_job_whose_flat_work_is_after_the_period_replaces_earlier_entries_and_waits():
    entries = [entry(1, "2", ticket="T1"), entry(2, "1", "Virus removal", ticket="T1", when=dt(2026, 11, 3))]
    bill = bill_time("acme", contract(), entries, [], OCT)
    assert not bill.lines and reasons(bill) == {"1": FLAT_REPLACED, "2": FLAT_REPLACED}
    nov = bill_time("acme", contract(), entries, [], month(2026, 11))
    assert [line.code for line in nov.lines] == ["flat:T1"]


# --- products ---


def test_products_are_billed_at_price_times_quantity_one_line_per_catalog_item():
    products = [product(1, qty="2.5", price=1999), product(2, qty="1", price=1999, when=dt(2026, 10, 9)),
                product(3, item="CABLE", qty="3", price=250, description="Patch cable")]
    bill = bill_time("acme", contract(), [], products, OCT)
    lines = by_code(bill)
    assert (lines["product:SSD-1TB"].quantity, lines["product:SSD-1TB"].amount) == ("3.5", 6997)  # 6996.5
    assert [i["id"] for i in lines["product:SSD-1TB"].items] == ["1", "2"]
    assert (lines["product:CABLE"].description, lines["product:CABLE"].amount) == ("Patch cable", 750)


@pytest.mark.parametrize("bad, message", [
    (product(1, qty="-1"), "not a quantity"),
    (product(1, qty="two"), "not a quantity"),
    (product(1, currency="USD"), "priced in USD"),
])
def test_product_that_cannot_be_billed_is_an_error(bad, message):
    bill = bill_time("acme", contract(), [], [bad, product(2, item="CABLE")], OCT)
    assert [line.code for line in bill.lines] == ["product:CABLE"]
    assert len(bill.errors) == 1 and message in bill.errors[0] and "product 1" in bill.errors[0]


def test_late_product_of_an_earlier_period_is_billed_with_its_own_date():
    (line,) = bill_time("acme", contract(), [], [product(1, when=dt(2026, 9, 29))], OCT).lines
    assert (line.items[0]["date"], line.items[0]["period"]) == ("2026-09-29", "2026-09")
    assert "includes products of 2026-09 not billed before" in line.rule


def test_undated_product_is_billed_now():
    (line,) = bill_time("acme", contract(), [], [product(1, when=None)], OCT).lines
    assert line.items[0]["date"] is None and line.amount == 9900


# --- prepaid blocks ---


def on_block(i, hours, when, **kw):
    return entry(i, hours, when=when, agreement="AG1", **kw)


def test_drawdown_uses_block_one_then_the_next_once_started():
    two = blocks(dt(2026, 9, 1), dt(2026, 10, 15))
    entries = [on_block(1, "8", dt(2026, 9, 20)), on_block(2, "3", dt(2026, 10, 16)), on_block(3, "1", dt(2026, 10, 20))]
    d = draw_down(entries, two, terms(), agreement="AG1")
    assert d.balances == {1: 0, 2: 8}
    assert [(a.entry_id, a.kind, a.hours, a.block) for a in d.allocations] == [
        ("1", "drawn", 8, 1), ("2", "drawn", 2, 1), ("2", "drawn", 1, 2), ("3", "drawn", 1, 2)]
    assert d.overage == {} and d.warning_block == 1


def test_an_entry_draws_only_on_blocks_started_before_it():
    two = blocks(dt(2026, 9, 1), dt(2026, 10, 15))
    entries = [on_block(1, "9", dt(2026, 9, 20)), on_block(2, "3", dt(2026, 10, 10))]
    d = draw_down(entries, two, terms(), agreement="AG1")
    assert d.overage == {"2": 2} and d.balances == {1: 0, 2: 10}
    assert d.overage_blocks == {"2": 1}


def test_drawdown_is_in_start_order_whatever_the_input_order_and_other_agreements_do_not_draw():
    entries = [on_block(2, "6", dt(2026, 10, 9)), on_block(1, "6", dt(2026, 10, 2)),
               entry(3, "5", when=dt(2026, 10, 1)), on_block(4, "1", dt(2026, 10, 3), billable=DO_NOT_BILL)]
    d = draw_down(entries, blocks(dt(2026, 9, 1)), terms(), agreement="AG1")
    assert d.overage == {"2": 2} and d.hours == {"1": 6, "2": 6}


@pytest.mark.parametrize("hours, warning, expected", [
    ("8", F(2), 1),          # balance exactly at the threshold
    ("9", F(2), 1),          # below
    ("7.75", F(2), None),    # 2.25 h left
    ("7", F(3), 1),          # the contract's own threshold
    ("12", F(2), 1),         # overdrawn: 0 left
])
def test_warning_block_is_reported_at_or_below_the_threshold(hours, warning, expected):
    d = draw_down([on_block(1, hours, dt(2026, 10, 2))], blocks(dt(2026, 9, 1)), terms(warning_hours=warning))
    assert d.warning_block == expected


def test_warning_names_the_latest_block_at_or_below_the_threshold():
    two = blocks(dt(2026, 9, 1), dt(2026, 10, 1))
    assert draw_down([on_block(1, "10", dt(2026, 9, 2)), on_block(2, "8.5", dt(2026, 10, 2))], two,
                     terms()).warning_block == 2
    assert draw_down([on_block(1, "10", dt(2026, 9, 2))], two, terms()).warning_block == 1
    assert draw_down([], two, terms()).warning_block is None


def test_invoiced_entries_still_draw_down():
    d = draw_down([on_block(1, "9", dt(2026, 10, 2), invoiced=True)], blocks(dt(2026, 9, 1)), terms())
    assert d.balances == {1: 1} and d.warning_block == 1


def test_overage_policy_bills_hours_beyond_the_balance_at_the_blocks_rate():
    c = contract("block", "AG1")
    entries = [on_block(1, "7", dt(2026, 10, 2)), on_block(2, "4.1", dt(2026, 10, 9)), entry(3, "1", "Project")]
    bill = bill_time("acme", c, entries, [], OCT, blocks=blocks(dt(2026, 9, 1)))
    lines = by_code(bill)
    assert set(lines) == {"overage:AG1", "time:Project"}
    over = lines["overage:AG1"]
    assert (over.quantity, over.unit_amount, over.amount) == ("1.25", 9000, 11250)
    assert [(i["id"], i["billed_hours"], i["overage_hours"]) for i in over.items] == [("2", "4.25", "1.25")]
    assert "hourly rate of block 1" in over.rule and "block 1 0 h" in over.rule
    assert [(r.id, r.reason, r.hours) for r in bill.reported] == [("1", DRAWN, "7"), ("2", DRAWN, "3")]
    assert bill.drawdown.warning_block == 1


def test_overage_rate_of_the_contract_replaces_the_blocks_rate():
    c = contract("block", "AG1", overage_rate=11000)
    bill = bill_time("acme", c, [on_block(1, "12", dt(2026, 10, 2))], [], OCT, blocks=blocks(dt(2026, 9, 1)))
    (line,) = bill.lines
    assert (line.quantity, line.amount) == ("2", 22000) and "contract's overage rate" in line.rule


def test_carry_policy_bills_nothing_and_deducts_from_the_next_block():
    c = contract("block", "AG1", beyond_balance="carry")
    entries = [on_block(1, "12", dt(2026, 10, 2))]
    one = bill_time("acme", c, entries, [], OCT, blocks=blocks(dt(2026, 9, 1)))
    assert not one.lines and one.drawdown.carried == 2
    assert [(r.reason, r.hours) for r in one.reported] == [(DRAWN, "10"), (PENDING, "2")]
    two = bill_time("acme", c, entries, [], OCT, blocks=blocks(dt(2026, 9, 1), dt(2026, 10, 20)))
    assert not two.lines and two.drawdown.carried == 0 and two.drawdown.balances == {1: 0, 2: 8}
    assert [(a.kind, a.hours, a.block) for a in two.drawdown.for_entry("1")] == [("drawn", 10, 1), ("carried", 2, 2)]


def test_carried_in_hours_are_deducted_when_the_block_starts():
    b = [Block(1, F(10), 9000, dt(2026, 9, 1), carried_in=F(3))]
    d = draw_down([on_block(1, "6", dt(2026, 10, 2))], b, terms())
    assert d.balances == {1: 1} and d.warning_block == 1


def test_only_overage_of_this_period_or_never_billed_before_is_billed():
    c = contract("block", "AG1")
    entries = [on_block(1, "11", dt(2026, 9, 10)),                     # 1 h over, billed in September
               on_block(2, "1", dt(2026, 9, 25)),                      # late: over, never billed
               on_block(3, "2", dt(2026, 10, 5)),
               on_block(4, "1", dt(2026, 11, 2))]                      # next period
    bill = bill_time("acme", c, entries, [], OCT, blocks=blocks(dt(2026, 9, 1)), already_billed=frozenset({"1"}))
    (line,) = bill.lines
    assert [(i["id"], i["overage_hours"], i["period"]) for i in line.items] == [
        ("2", "1", "2026-09"), ("3", "2", "2026-10")]
    assert line.quantity == "3" and "includes entries of 2026-09" in line.rule
    r = {(x.id, x.reason) for x in bill.reported}
    assert ("1", ALREADY_BILLED) in r and ("4", LATER_PERIOD) in r and ("1", DRAWN) in r


def test_overage_of_an_entry_invoiced_by_the_psa_is_not_billed():
    c = contract("block", "AG1")
    bill = bill_time("acme", c, [on_block(1, "12", dt(2026, 10, 2), invoiced=True)], [], OCT,
                     blocks=blocks(dt(2026, 9, 1)))
    assert not bill.lines and (("1", INVOICED_BY_PSA) in {(x.id, x.reason) for x in bill.reported})


def test_block_contract_bills_time_not_charged_to_the_agreement_as_time_and_materials():
    c = contract("block", "AG1")
    entries = [on_block(1, "2", dt(2026, 10, 2)), entry(2, "2", agreement="OTHER"), entry(3, "1")]
    bill = bill_time("acme", c, entries, [], OCT, blocks=blocks(dt(2026, 9, 1)))
    (line,) = bill.lines
    assert line.code == "time:Remote" and [i["id"] for i in line.items] == ["2", "3"]
    assert bill.drawdown.balances == {1: 8}


def test_flat_rate_ticket_on_a_block_does_not_draw_it():
    c = contract("block", "AG1")
    entries = [on_block(1, "3", dt(2026, 10, 2), ticket="T1"),
               on_block(2, "1", dt(2026, 10, 2), ticket="T1", work_type="Virus removal")]
    bill = bill_time("acme", c, entries, [], OCT, blocks=blocks(dt(2026, 9, 1)))
    assert [line.code for line in bill.lines] == ["flat:T1"] and bill.drawdown.balances == {1: 10}


def test_a_bad_entry_on_the_agreement_holds_the_overage_not_the_other_lines():
    c = contract("block", "AG1")
    entries = [on_block(1, "x", dt(2026, 10, 2)), on_block(2, "12", dt(2026, 10, 3)), entry(3, "1")]
    bill = bill_time("acme", c, entries, [], OCT, blocks=blocks(dt(2026, 9, 1)))
    assert [line.code for line in bill.lines] == ["time:Remote"]
    (error,) = bill.errors
    assert error.startswith("prepaid agreement AG1: time entry 1 (jdoe, 2026-10-02): hours 'x' is not a number")
    assert "correct the entry in the PSA" in error and "overage is not billed until it is corrected" in error
    assert bill.drawdown.failed == {"1"} and bill.drawdown.warning_block is None


def test_block_contract_without_agreement_bills_no_time():
    bill = bill_time("acme", contract("block"), [entry(1, "1")], [product(2)], OCT)
    assert [line.code for line in bill.lines] == ["product:SSD-1TB"] and "names no PSA agreement" in bill.errors[0]


def test_overage_without_any_block_or_rate_is_an_error():
    d = draw_down([on_block(1, "1", dt(2026, 10, 2))], [], terms())
    assert d.failed == {"1"} and d.overage == {} and d.allocations == () and d.hours == {}
    (error,) = d.errors
    assert error.startswith("time entry 1 (jdoe, 2026-10-02): 1 h beyond the prepaid balance")
    assert "set overage_rate in its time terms" in error
    assert draw_down([on_block(1, "1", dt(2026, 10, 2))], [], terms(beyond_balance="carry")).carried == 1


def test_block_rate_is_price_over_hours():
    assert Block.of_size(2, BLOCK_20, dt(2026, 10, 1)).rate == 8000
    assert Block.of_size(1, BlockSize("3h", F(3), 10000), dt(2026, 10, 1)).rate == 3333


# --- renewals ---


@pytest.mark.parametrize("renewal, code, amount, which", [
    (None, "block:10h", 90000, "the contract's block size"),
    (BLOCK_20, "block:20h", 160000, "the contract's renewal size"),
])
def test_renewal_line_sells_a_new_block_and_explains_why(renewal, code, amount, which):
    c = contract("block", "AG1", block=BLOCK_10, renewal=renewal)
    (line,) = renewal_lines("acme", c, 1, "2026-10", balance=F(3, 2))
    assert (line.code, line.quantity, line.amount, line.period) == (code, "1", amount, "2026-10")
    assert "balance of block 1 fell to 1.5 h, at or below the warning threshold of 2 h" in line.rule
    assert which in line.rule and line.items[0]["id"] == "renewal:AG1:1" and line.items[0]["block"] == 2


def test_renewal_without_a_block_size_is_an_error():
    with pytest.raises(MappingError, match="no block size"):
        renewal_lines("acme", contract("block", "AG1"), 1, "2026-10")


# --- one bad record holds its client, never the run ---


def test_negative_hours_on_a_block_are_an_error_not_an_exception():
    entries = [on_block(1, "3", dt(2026, 10, 2)), on_block(7, "-2.5", dt(2026, 10, 3), member="asmith"),
               on_block(3, "1", dt(2026, 10, 4))]
    d = draw_down(entries, blocks(dt(2026, 9, 1)), terms(warning_hours=F(8)), agreement="AG1")
    assert d.failed == {"7"} and d.hours == {"1": 3, "3": 1} and d.balances == {1: 6}
    (error,) = d.errors
    assert error == ("time entry 7 (asmith, 2026-10-03): hours -2.5 is negative; correct the entry in the PSA; "
                     "it draws nothing from the prepaid block and is not billed")
    # The balance (6 h, at or below the 8 h threshold) is not known while an entry is wrong: no renewal.
    assert d.warning_block is None
    assert draw_down(entries[:1] + entries[2:], blocks(dt(2026, 9, 1)), terms(warning_hours=F(8)),
                     agreement="AG1").warning_block == 1


def test_negative_hours_on_a_block_hold_the_overage_and_name_the_entry_in_the_bill():
    c = contract("block", "AG1")
    entries = [on_block(7, "-1", dt(2026, 10, 3)), on_block(8, "12", dt(2026, 10, 4)), entry(9, "1")]
    bill = bill_time("acme", c, entries, [product(2)], OCT, blocks=blocks(dt(2026, 9, 1)))
    assert [line.code for line in bill.lines] == ["time:Remote", "product:SSD-1TB"]
    (error,) = bill.errors
    assert error.startswith("prepaid agreement AG1: time entry 7 (jdoe, 2026-10-03): hours -1 is negative")
    assert "correct the entry in the PSA" in error


def test_unknown_overage_policy_is_an_error_and_draws_nothing():
    d = draw_down([on_block(1, "1", dt(2026, 10, 2))], blocks(dt(2026, 9, 1)), terms(beyond_balance="bill"),
                  agreement="AG1")
    assert d.allocations == () and d.balances == {1: 10} and d.warning_block is None
    assert d.errors == ("beyond_balance 'bill' is not one of \"overage\" or \"carry\"; set it in the contract's "
                        "time terms (mappings/time.toml [defaults] or the contract)",)
    bill = bill_time("acme", contract("block", "AG1", beyond_balance="bill"), [on_block(1, "1", dt(2026, 10, 2))],
                     [], OCT, blocks=blocks(dt(2026, 9, 1)))
    assert bill.lines == () and bill.errors[0].startswith("prepaid agreement AG1: beyond_balance 'bill'")


@pytest.mark.parametrize("when, problem", [
    (None, "start None is not a date and time"),
    ("2026-10-05", "start '2026-10-05' is not a date and time"),
    (datetime(2026, 10, 5, 9), "start 2026-10-05T09:00:00 has no time zone"),
])
def test_entry_whose_start_cannot_place_it_in_a_period_is_an_error_naming_it(when, problem):
    bill = bill_time("acme", contract(), [entry(1, "2"), entry(5, "1", when=when, member="asmith")], [], OCT)
    assert by_code(bill)["time:Remote"].quantity == "2"
    (error,) = bill.errors
    assert error.startswith(f"time entry 5 (asmith): {problem}, so its period cannot be decided")
    assert "correct the entry in the PSA" in error and "It is not billed" in error


def test_entry_with_a_bad_start_on_a_block_is_an_error_and_blocks_no_renewal():
    entries = [on_block(1, "9", dt(2026, 10, 2)), on_block(5, "1", None)]
    d = draw_down(entries, blocks(dt(2026, 9, 1)), terms(), agreement="AG1")
    assert d.failed == {"5"} and d.hours == {"1": 9} and d.warning_block is None
    assert d.errors[0].startswith("time entry 5 (jdoe): start None is not a date and time")


def test_non_billable_entry_with_a_bad_start_is_not_an_error():
    bill = bill_time("acme", contract(), [entry(1, "2"), entry(5, "1", when=None, billable=DO_NOT_BILL)], [], OCT)
    assert bill.errors == () and by_code(bill)["time:Remote"].quantity == "2"


def test_unknown_work_type_on_a_managed_contract_is_an_error_the_rest_is_billed():
    c = contract("managed", included_services=frozenset({"remote"}))
    bill = bill_time("acme", c, [entry(1, "2", "Cabling", rate=9000), entry(2, "1", "Project"), entry(3, "1")],
                     [], OCT)
    assert [line.code for line in bill.lines] == ["time:Project"] and reasons(bill) == {"3": INCLUDED}
    (error,) = bill.errors
    assert error.startswith("time entry 1 (jdoe, 2026-10-05): work type 'Cabling' is not in mappings/time.toml, "
                            "so whether managed contract Acme includes it cannot be decided")
    assert '[work_types."Cabling"]' in error


@pytest.mark.parametrize("work_type", ["", "  ", None])
def test_entry_without_a_work_type_is_an_error(work_type):
    bill = bill_time("acme", contract(default_rate=10000), [entry(1, "2", work_type), entry(2, "1")], [], OCT)
    assert [line.code for line in bill.lines] == ["time:Remote"]
    (error,) = bill.errors
    assert error.startswith("time entry 1 (jdoe, 2026-10-05): no work type") and "set its work type in the PSA" in error


@pytest.mark.parametrize("rate", [-100, "120.00", 1.5, True])
def test_psa_rate_that_is_not_an_amount_is_an_error(rate):
    bill = bill_time("acme", contract(), [entry(1, "2", "Cabling", rate=rate), entry(2, "1")], [], OCT)
    assert [line.code for line in bill.lines] == ["time:Remote"]
    (error,) = bill.errors
    assert error.startswith(f"time entry 1 (jdoe, 2026-10-05): hourly rate {rate!r} (the PSA's hourly rate")


def test_psa_rate_of_zero_is_a_rate():
    (line,) = bill_time("acme", contract(), [entry(1, "2", "Cabling", rate=0)], [], OCT).lines
    assert (line.unit_amount, line.amount) == (0, 0)


@pytest.mark.parametrize("bad, message", [
    (product(1, when=datetime(2026, 10, 7)), "product 1 ('SSD-1TB'): sale date 2026-10-07T00:00:00 has no time zone"),
    (product(1, when="2026-10-07"), "product 1 ('SSD-1TB'): sale date '2026-10-07' is not a date and time"),
    (product(1, item=""), "product 1 (''): no catalog item"),
    (product(1, item=None), "product 1 (None): no catalog item"),
    (product(1, price=None), "product 1 ('SSD-1TB'): price None is not an amount in minor units"),
    (product(1, price=99.5), "product 1 ('SSD-1TB'): price 99.5 is not an amount in minor units"),
    (product(1, currency=None), "product 1 ('SSD-1TB'): no currency, the contract bills in EUR"),
])
def test_product_with_a_bad_field_is_an_error_naming_it_the_rest_is_billed(bad, message):
    bill = bill_time("acme", contract(), [entry(3, "1")], [bad, product(2, item="CABLE", when=dt(2026, 10, 8))], OCT)
    assert [line.code for line in bill.lines] == ["time:Remote", "product:CABLE"]
    (error,) = bill.errors
    assert error.startswith(message) and error.endswith("It is not billed")


def test_non_billable_product_with_a_bad_date_is_reported_not_an_error():
    bill = bill_time("acme", contract(), [], [product(1, when=datetime(2026, 10, 7), billable=NO_CHARGE)], OCT)
    assert bill.errors == () and reasons(bill) == {"1": NOT_CHARGED}


def test_negative_hours_hold_only_their_client_end_to_end(tmp_path):
    """Against the simulators: a negative entry on a block agreement once stopped the whole run."""
    from hub.engine import sync_once
    from tests.test_psa_billing import PsaEnv, at, block_agreement, invoice

    env = PsaEnv(tmp_path)
    env.cw.add_agreement(env.co["acme"], "Managed Gold")
    env.cw.add_agreement(env.co["driftwood"], "Block Hours", application_units="Hours", application_limit=20)
    env.cw.add_agreement(env.co["elm"], "Break/Fix")
    bad = env.time("driftwood", 1.0, at(10, 8), agreement_id=block_agreement(env))
    env.cw.time_entries.set(bad, actualHours=-1.5)
    env.time("elm", 1.0, at(10, 9))
    report = sync_once(env.hub())
    drift, elm = (f"connectwise-{env.co[n]}" for n in ("driftwood", "elm"))
    held = invoice(report, drift)
    assert held.status == "held" and len(held.reasons) == 1
    assert held.reasons[0].startswith(f"prepaid agreement {block_agreement(env)}: time entry {bad} (jsmith, "
                                      f"2026-10-08): hours -1.5 is negative; correct the entry in the PSA")
    assert invoice(report, elm).status in ("create", "sent") and invoice(report, "acme").status in ("create", "sent")
    pushed = {p["key"] for p in report.pushed}
    assert pushed == {f"invoice:{elm}:2026-10", "invoice:acme:2026-10"}
    assert not [p for p in report.plan if p.client_id == drift and p.action.key.startswith("renewal:")]


def test_records_whose_ids_are_not_text_are_still_ordered():
    entries = [entry(2, "1", when=dt(2026, 10, 5)), replace(entry(1, "1", when=dt(2026, 10, 5)), source_id=1)]
    products = [product(2), replace(product(1), source_id=1)]
    bill = bill_time("acme", contract(), entries, products, OCT)
    assert bill.errors == () and [[i["id"] for i in line.items] for line in bill.lines] == [[1, "2"], [1, "2"]]


def test_entry_with_a_bad_start_on_the_block_is_named_once_as_an_entry_of_the_agreement():
    c = contract("block", "AG1")
    entries = [on_block(1, "12", dt(2026, 10, 2)), on_block(5, "1", None), entry(6, "1", when=None)]
    bill = bill_time("acme", c, entries, [], OCT, blocks=blocks(dt(2026, 9, 1)))
    assert bill.lines == () and bill.drawdown.failed == {"5"}
    assert [e[:60] for e in bill.errors] == [
        "time entry 6 (jdoe): start None is not a date and time, so i",
        "prepaid agreement AG1: time entry 5 (jdoe): start None is no"]


def test_block_contract_without_agreement_draws_nothing_from_anyone():
    bill = bill_time("acme", contract("block"), [on_block(1, "12", dt(2026, 10, 2)), entry(2, "1")], [], OCT,
                     blocks=blocks(dt(2026, 9, 1)))
    assert bill.lines == () and bill.drawdown.allocations == () and bill.drawdown.balances == {1: 10}
    assert len(bill.errors) == 1 and "names no PSA agreement" in bill.errors[0]


@pytest.mark.parametrize("invoiced, billed", [(True, frozenset()), (False, frozenset({"1"}))])
def test_a_product_never_billed_again_is_reported_whatever_its_fields(invoiced, billed):
    bad = replace(product(1, when=datetime(2026, 10, 7), invoiced=invoiced), catalog_item=None, unit_price=None,
                  currency=None)
    bill = bill_time("acme", contract(), [], [bad, product(2)], OCT, already_billed=billed)
    assert bill.errors == () and [l.code for l in bill.lines] == ["product:SSD-1TB"]
    assert reasons(bill) == {"1": INVOICED_BY_PSA if invoiced else ALREADY_BILLED}


# --- drawdown and time lines at their edges ---


def test_an_entry_starting_at_the_same_instant_as_a_block_draws_on_it():
    two = blocks(dt(2026, 9, 1), dt(2026, 10, 10))
    d = draw_down([on_block(1, "10", dt(2026, 9, 2)), on_block(2, "3", dt(2026, 10, 10))], two, terms())
    assert d.overage == {} and d.balances == {1: 0, 2: 7}
    one_second_before = draw_down([on_block(1, "10", dt(2026, 9, 2)), on_block(2, "3", dt(2026, 10, 9, 23, 59, 59))],
                                  two, terms())
    assert one_second_before.overage == {"2": 3} and one_second_before.balances == {1: 0, 2: 10}


@pytest.mark.parametrize("carried_in, balance", [(F(1), F(8)), (F(1, 2), F(17, 2)), (F(0), F(9)), (F(12), F(0))])
def test_carried_in_hours_at_their_edge(carried_in, balance):
    b = [Block(1, F(10), 9000, dt(2026, 9, 1), carried_in=carried_in)]
    assert draw_down([on_block(1, "1", dt(2026, 10, 2))], b, terms()).balances == {1: balance}


def test_carried_hours_larger_than_a_block_pass_on_to_the_next_and_come_before_later_entries():
    c = terms(beyond_balance="carry")
    two = blocks(dt(2026, 9, 1), dt(2026, 10, 15))
    entries = [on_block(1, "15", dt(2026, 9, 2)), on_block(2, "2", dt(2026, 9, 3))]
    d = draw_down(entries, two, c)
    assert [(a.entry_id, a.kind, a.hours, a.block) for a in d.allocations] == [
        ("1", "drawn", 10, 1), ("1", "carried", 5, 2), ("2", "carried", 2, 2)]
    assert d.balances == {1: 0, 2: 3} and d.carried == 0
    small = [Block(1, F(10), 9000, dt(2026, 9, 1)), Block(2, F(4), 9000, dt(2026, 10, 15), carried_in=F(1))]
    d = draw_down(entries, small, c)
    # Block 2 first takes what it was sold owing (1 h), then the entries' pending hours in order.
    assert [(a.kind, a.hours, a.block) for a in d.for_entry("1")] == [("drawn", 10, 1), ("carried", 3, 2),
                                                                      ("pending", 2, None)]
    assert d.carried == 4 and [(a.kind, a.hours) for a in d.for_entry("2")] == [("pending", 2)]


def test_a_block_with_exactly_one_hour_left_takes_one_hour_carried():
    c = terms(beyond_balance="carry")
    b = [Block(1, F(10), 9000, dt(2026, 9, 1)), Block(2, F(1), 9000, dt(2026, 10, 15))]
    d = draw_down([on_block(1, "12", dt(2026, 9, 2))], b, c)
    assert d.balances == {1: 0, 2: 0} and d.carried == 1


def test_overage_before_any_block_started_is_priced_by_block_one():
    two = [Block.of_size(1, BLOCK_10, dt(2026, 10, 1)), Block.of_size(2, BLOCK_20, dt(2026, 10, 20))]
    d = draw_down([on_block(1, "2", dt(2026, 9, 5))], two, terms())
    assert d.overage == {"1": 2} and d.overage_blocks == {"1": 1}
    assert [a.rate for a in d.allocations] == [9000]
    later = draw_down([on_block(1, "12", dt(2026, 10, 2)), on_block(2, "21", dt(2026, 10, 21))], two, terms())
    assert later.overage_blocks == {"1": 1, "2": 2} and [a.rate for a in later.for_entry("2") if a.rate] == [8000]


def test_an_entry_drawing_several_blocks_stops_once_covered():
    three = blocks(dt(2026, 9, 1), dt(2026, 9, 2), dt(2026, 9, 3))
    d = draw_down([on_block(1, "15", dt(2026, 10, 2)), on_block(2, "1", dt(2026, 10, 3))], three, terms())
    assert [(a.entry_id, a.hours, a.block) for a in d.allocations] == [("1", 10, 1), ("1", 5, 2), ("2", 1, 2)]
    assert d.balances == {1: 0, 2: 4, 3: 10}


def test_a_non_billable_or_other_agreements_entry_with_a_bad_start_is_no_drawdown_error():
    entries = [on_block(1, "1", None, billable=DO_NOT_BILL), entry(2, "1", when=None, agreement="AG2"),
               on_block(3, "1", dt(2026, 10, 2))]
    d = draw_down(entries, blocks(dt(2026, 9, 1)), terms(), agreement="AG1")
    assert d.errors == () and d.balances == {1: 9}


@pytest.mark.parametrize("increment, hours, billed", [(1, "0.01", F(1, 60)), (1, "0.0166", F(1, 60)),
                                                      (1, "0.0167", F(2, 60)), (2, "0.01", F(1, 30))])
def test_an_increment_of_one_minute_rounds_to_the_minute(increment, hours, billed):
    assert billable_hours(entry(1, hours), terms(increment_minutes=increment)) == billed


def test_the_increment_note_names_the_increment_or_its_absence():
    (one,) = bill_time("acme", contract(increment_minutes=1), [entry(1, "0.01")], [], OCT).lines
    assert "each entry rounded up to 1 min" in one.rule and one.items[0]["adjustment"] == "rounded up to 1 min"
    (none,) = bill_time("acme", contract(increment_minutes=0), [entry(1, "0.01")], [], OCT).lines
    assert "actual hours, not rounded (contract increment 0)" in none.rule and none.items[0]["adjustment"] == ""


def test_the_onsite_adjustment_names_the_minimum_only_for_onsite_work():
    c = contract(onsite_minimum=F(1, 2), increment_minutes=30)
    bill = bill_time("acme", c, [entry(1, "0.1", "Onsite"), entry(2, "0.1", "Remote")], [], OCT)
    lines = by_code(bill)
    assert lines["time:Onsite"].items[0]["adjustment"] == "on-site minimum 0.5 h"
    assert lines["time:Remote"].items[0]["adjustment"] == "rounded up to 30 min"


def test_entries_set_aside_never_stop_the_ones_after_them():
    entries = [entry(1, "0", when=dt(2026, 10, 1)), entry(2, "2", when=dt(2026, 10, 2)),
               entry(3, "1", "Cabling", when=dt(2026, 10, 3)), entry(4, "1", when=dt(2026, 10, 4)),
               entry(5, "1", when=dt(2026, 11, 2)), entry(6, "1", "Virus removal", when=dt(2026, 10, 5)),
               entry(7, "1", "Project", when=dt(2026, 10, 6))]
    bill = bill_time("acme", contract(), entries, [], OCT)
    assert {l.code: [i["id"] for i in l.items] for l in bill.lines} == {"time:Remote": ["2", "4"], "time:Project": ["7"]}
    assert reasons(bill) == {"1": NO_HOURS, "5": LATER_PERIOD}
    assert [e.split(":")[0] for e in bill.errors] == ["time entry 6 (jdoe, 2026-10-05)", "time entry 3 (jdoe, 2026-10-03)"]


def test_managed_entries_included_never_stop_the_ones_after_them():
    c = contract("managed", included_services=frozenset({"remote"}))
    bill = bill_time("acme", c, [entry(1, "1"), entry(2, "1", "Project", when=dt(2026, 10, 6))], [], OCT)
    assert [l.code for l in bill.lines] == ["time:Project"] and reasons(bill) == {"1": INCLUDED}


def test_time_lines_are_ordered_by_work_type_then_rate():
    entries = [entry(1, "1", "Zeta", rate=5000), entry(2, "1", "Alpha", rate=9000), entry(3, "1", "Alpha", rate=7000)]
    bill = bill_time("acme", contract(), entries, [], OCT)
    assert [(l.code, l.unit_amount) for l in bill.lines] == [("time:Alpha@7000", 7000), ("time:Alpha@9000", 9000),
                                                              ("time:Zeta", 5000)]


def test_the_overage_of_a_zero_hour_or_later_entry_never_stops_the_others():
    c = contract("block", "AG1")
    entries = [on_block(1, "0", dt(2026, 10, 1)), on_block(2, "12", dt(2026, 10, 2)), on_block(3, "1", dt(2026, 10, 3))]
    (line,) = bill_time("acme", c, entries, [], OCT, blocks=blocks(dt(2026, 9, 1))).lines
    assert [(i["id"], i["overage_hours"]) for i in line.items] == [("2", "2"), ("3", "1")]


def test_a_flat_job_set_aside_never_stops_the_next_ticket():
    entries = [entry(1, "1", "Virus removal", ticket="T1"), entry(2, "1", "Data recovery", ticket="T1"),
               entry(3, "1", "Virus removal", ticket="T2"), entry(4, "1", "Virus removal", ticket="T3")]
    bill = bill_time("acme", contract(), entries, [], OCT, already_billed=frozenset({"flat:T2"}))
    assert [l.code for l in bill.lines] == ["flat:T3"] and "ticket T1" in bill.errors[0]


def test_undated_products_come_after_dated_ones_in_date_order():
    products = [product(1, when=None), product(2, when=dt(2026, 10, 9)), product(3, when=dt(2026, 10, 2))]
    (line,) = bill_time("acme", contract(), [], products, OCT).lines
    assert [i["id"] for i in line.items] == ["3", "2", "1"]


# --- blocks renewed as new agreements ---


def old_and_new(old_size=BLOCK_10, new_size=BLOCK_10):
    """AG0, a block from August to September, renewed in the PSA as AG1 from October 1."""
    return [Block.of_size(1, old_size, dt(2026, 8, 1), agreement="AG0"),
            Block.of_size(1, new_size, dt(2026, 10, 1), agreement="AG1")]


def on_old(i, hours, when, **kw):
    return entry(i, hours, when=when, agreement="AG0", **kw)


def test_time_of_an_expired_block_agreement_draws_its_own_block_never_time_and_materials():
    c = contract("block", "AG1")
    entries = [on_old(1, "6", dt(2026, 9, 2)), on_old(2, "2", dt(2026, 10, 3)), on_block(3, "3", dt(2026, 10, 4)),
               entry(4, "1", "Project")]
    bill = bill_time("acme", c, entries, [], OCT, blocks=old_and_new())
    assert [line.code for line in bill.lines] == ["time:Project"]
    assert [(r.id, r.reason, r.hours) for r in bill.reported] == [("1", DRAWN, "6"), ("2", DRAWN, "2"),
                                                                  ("3", DRAWN, "3")]
    assert "of agreement AG0" in bill.reported[1].detail and "of agreement AG1" in bill.reported[2].detail
    assert bill.drawdowns["AG0"].balances == {1: 2} and bill.drawdowns["AG1"].balances == {1: 7}
    assert bill.drawdown is bill.drawdowns["AG1"]


def test_hours_left_on_the_expired_block_stay_its_own():
    c = contract("block", "AG1")
    entries = [on_old(1, "4", dt(2026, 9, 2)), on_block(2, "12", dt(2026, 10, 4))]
    bill = bill_time("acme", c, entries, [], OCT, blocks=old_and_new())
    over = by_code(bill)["overage:AG1"]
    assert (over.quantity, over.amount) == ("2", 18000)
    assert bill.drawdowns["AG0"].balances == {1: 6}


def test_overage_of_the_expired_block_is_billed_once_at_its_rate_on_its_own_line():
    c = contract("block", "AG1")
    entries = [on_old(1, "9", dt(2026, 9, 2)), on_old(2, "3", dt(2026, 9, 28)), on_block(3, "3", dt(2026, 10, 4))]
    blocks_ = old_and_new(new_size=BLOCK_20)
    bill = bill_time("acme", c, entries, [], OCT, blocks=blocks_)
    (over,) = bill.lines
    assert (over.code, over.quantity, over.unit_amount, over.amount) == ("overage:AG0", "2", 9000, 18000)
    assert over.description == "Hours beyond the prepaid block of agreement AG0 (2026-10)"
    assert [(i["id"], i["overage_hours"], i["period"]) for i in over.items] == [("2", "2", "2026-09")]
    assert "includes entries of 2026-09 not billed before" in over.rule
    again = bill_time("acme", c, entries, [], month(2026, 11, "UTC"), blocks=blocks_, already_billed=frozenset({"2"}))
    assert again.lines == () and reasons(again)["2"] == ALREADY_BILLED


def test_carry_moves_what_the_expired_block_could_not_cover_into_the_new_block():
    c = contract("block", "AG1", beyond_balance="carry")
    entries = [on_old(1, "12", dt(2026, 9, 2)), on_block(2, "5", dt(2026, 10, 4))]
    bill = bill_time("acme", c, entries, [], OCT, blocks=old_and_new())
    assert bill.lines == ()
    assert [(r.id, r.reason, r.hours) for r in bill.reported] == [("1", DRAWN, "10"), ("1", PENDING, "2"),
                                                                  ("2", DRAWN, "5")]
    assert bill.drawdowns["AG1"].balances == {1: 3} and bill.drawdowns["AG1"].warning_block is None
    assert bill.drawdowns["AG0"].carried == 2 and bill.drawdowns["AG1"].carried == 0
    # Without the renewal, the 2 h wait for a block; with overage they are billed instead.
    assert bill_time("acme", c, entries[:1], [], OCT, blocks=old_and_new()[:1]).drawdowns["AG0"].carried == 2
    over = bill_time("acme", contract("block", "AG1"), entries, [], OCT, blocks=old_and_new())
    assert [(l.code, l.quantity) for l in over.lines] == [("overage:AG0", "2")]
    assert over.drawdowns["AG1"].balances == {1: 5}


def test_carried_hours_not_known_hold_the_later_agreements_balance():
    c = contract("block", "AG1", beyond_balance="carry")
    entries = [on_old(1, "x", dt(2026, 9, 2)), on_block(2, "9", dt(2026, 10, 4))]
    d = draw_down_agreements(entries, old_and_new(), c.time, current="AG1")
    assert d["AG0"].failed == {"1"} and d["AG1"].warning_block is None
    assert "carried beyond the balance of prepaid agreement AG0" in d["AG1"].errors[-1]
    bill = bill_time("acme", c, entries, [], OCT, blocks=old_and_new())
    assert any(e.startswith("prepaid agreement AG1: the hours carried") for e in bill.errors)
    # With overage nothing is carried: the new agreement's balance is known.
    known = draw_down_agreements(entries, old_and_new(), terms(), current="AG1")
    assert known["AG1"].errors == () and known["AG1"].warning_block == 1


def test_block_agreements_are_taken_oldest_first_the_current_one_even_without_a_block():
    late_first = [Block.of_size(1, BLOCK_10, dt(2026, 10, 1), agreement="B"),
                  Block.of_size(2, BLOCK_10, dt(2026, 9, 15), agreement="A"),
                  Block.of_size(1, BLOCK_10, dt(2026, 8, 1), agreement="A"),
                  Block.of_size(1, BLOCK_10, dt(2026, 10, 1), agreement="AA")]
    order = prepaid_order(late_first, "CUR")
    assert [(a, [b.number for b in bs]) for a, bs in order] == [("A", [1, 2]), ("AA", [1]), ("B", [1]), ("CUR", [])]
    assert [a for a, _ in prepaid_order(blocks(dt(2026, 9, 1)), "AG1")] == ["AG1"]
    assert prepaid_order(blocks(dt(2026, 9, 1)), None) == []


def test_time_on_a_block_agreement_is_block_time_whatever_the_current_contract():
    c = contract("managed", "AG9")                  # the client moved from a block to a managed contract
    entries = [on_old(1, "4", dt(2026, 9, 2)), on_old(2, "7", dt(2026, 10, 3)), entry(3, "1", "Project")]
    bill = bill_time("acme", c, entries, [], OCT, blocks=old_and_new()[:1])
    assert [(l.code, l.quantity) for l in bill.lines] == [("overage:AG0", "1"), ("time:Project", "1")]
    assert bill.drawdown is None and bill.drawdowns["AG0"].balances == {1: 0}
