"""The lines a client reads for time (BILLING.md, "Lines the client reads"): time and materials one
line per entry by default (day in the MSP's time zone, technician, ticket, work type, hours as
rounded, rate), per ticket or per work type as contract options (time_lines); a flat-rate job one
line per ticket; a block's overage laid out the same way. Each layout keeps every entry id in its
items, so a late entry or a late change is billed once; Stripe receives the same text."""

from dataclasses import replace
from datetime import datetime, timezone
from fractions import Fraction as F

import pytest

from hub.engine import sync_once
from hub.errors import MappingError
from hub.mappings import BlockSize, Contract, TimeTerms, WorkType
from hub.periods import month
from hub.planner import ledger_of, snapshot_of
from hub.records import BILLABLE, Action, TimeEntry
from hub.timebilling import Block, bill_time
from plugins.stripe import plugin as stripe_plugin
from plugins.stripe.plugin import check_payload, line_description, to_line_params
from tests.test_late_changes import LOOSE, edit_entry
from tests.test_psa_billing import PsaEnv, at, invoice, lines

UTC = timezone.utc
OCT = month(2026, 10, "UTC")
WORK_TYPES = {
    "Remote": WorkType("Remote", rate=9500),
    "Onsite": WorkType("Onsite", rate=12500, onsite=True),
    "After Hours": WorkType("After Hours", rate=15000),
    "Virus Removal": WorkType("Virus Removal", flat_rate=14900),
}


def dt(*a):
    return datetime(*a, tzinfo=UTC)


def contract(time_lines=None, kind="time_and_materials", **kw):
    terms = TimeTerms(work_types=WORK_TYPES, **kw)
    if time_lines is not None:
        terms = replace(terms, time_lines=time_lines)
    return Contract("elm", "Elm", None, "EUR", kind=kind, time=terms, agreement="A1" if kind == "block" else None)


def entry(i, hours, work_type="Remote", when=dt(2026, 10, 5, 9), ticket="4521", member="jdoe", agreement=None):
    return TimeEntry("connectwise", str(i), "elm", member, when, None, hours, BILLABLE, work_type, "Engineer",
                     ticket, agreement)


def table(bill):
    return [(l.code, l.description, l.quantity, l.unit_amount, l.amount) for l in bill.lines]


def ids(line):
    return [i["id"] for i in line.items]


# --- one line per entry (the default) -------------------------------------------------------------

def test_by_default_each_entry_is_a_line_stating_day_technician_ticket_work_type_rounded_hours_and_rate():
    entries = [entry(1, "1.1", when=dt(2026, 10, 5, 9)),                       # 66 min: 1.25 h as rounded
               entry(2, "0.5", "Onsite", when=dt(2026, 10, 6, 14), member="asmith", ticket=None),   # 1 h minimum
               entry(3, "2", "After Hours", when=dt(2026, 10, 7, 20), ticket="4522")]
    bill = bill_time("elm", contract(), entries, [], OCT)
    assert contract().time.time_lines == "entry"
    assert table(bill) == [
        ("time:entry:1", "2026-10-05, jdoe, ticket 4521, Remote, 1.25 h × 95.00 EUR", "1.25", 9500, 11875),
        ("time:entry:2", "2026-10-06, asmith, no ticket, Onsite, 1 h × 125.00 EUR", "1", 12500, 12500),
        ("time:entry:3", "2026-10-07, jdoe, ticket 4522, After Hours, 2 h × 150.00 EUR", "2", 15000, 30000)]
    first, onsite, _ = bill.lines
    assert "1.1 h logged, rounded up to 15 min" in first.rule
    assert "0.5 h logged, on-site minimum 1 h" in onsite.rule
    assert [ids(l) for l in bill.lines] == [["1"], ["2"], ["3"]]
    assert first.items[0]["billed_hours"] == "1.25" and first.items[0]["hours"] == "1.1"


def test_an_entry_s_day_is_its_day_in_the_msp_s_time_zone():
    paris = month(2026, 11, "Europe/Paris")
    late_evening = entry(1, "1", when=dt(2026, 10, 31, 23, 30))              # November 1, 00:30 in Paris
    (line,) = bill_time("elm", contract(), [late_evening], [], paris).lines
    assert line.description.startswith("2026-11-01, jdoe, ")
    assert line.items[0]["period"] == "2026-11"


def test_the_layout_does_not_depend_on_the_order_the_entries_come_in():
    entries = [entry(i, "0.75", when=dt(2026, 10, 1 + i % 7, 9 + i % 3)) for i in range(12)]
    forward = bill_time("elm", contract(), entries, [], OCT)
    backward = bill_time("elm", contract(), list(reversed(entries)), [], OCT)
    assert table(forward) == table(backward)
    codes = [l.code for l in forward.lines]
    assert len(codes) == len(set(codes)) == 12


# --- one line per ticket ---------------------------------------------------------------------------

def test_per_ticket_hours_are_summed_after_each_entry_s_rounding_and_entries_without_ticket_share_a_line():
    entries = [entry(1, "0.1"), entry(2, "0.1", when=dt(2026, 10, 6, 9)),     # 6 min each: 0.25 h each
               entry(3, "1", "After Hours", when=dt(2026, 10, 7, 9)),          # another rate on ticket 4521
               entry(4, "1", ticket="4522"),
               entry(5, "0.5", ticket=None), entry(6, "0.25", "Remote", ticket=None, when=dt(2026, 10, 8, 9))]
    bill = bill_time("elm", contract("ticket"), entries, [], OCT)
    assert table(bill) == [
        ("time:ticket:4521@9500", "Ticket 4521: Remote, 0.5 h × 95.00 EUR (2 entries)", "0.5", 9500, 4750),
        ("time:ticket:4521@15000", "Ticket 4521: After Hours, 1 h × 150.00 EUR (1 entry)", "1", 15000, 15000),
        ("time:ticket:4522", "Ticket 4522: Remote, 1 h × 95.00 EUR (1 entry)", "1", 9500, 9500),
        ("time:no-ticket", "Time without a ticket: Remote, 0.75 h × 95.00 EUR (2 entries)", "0.75", 9500, 7125)]
    assert [ids(l) for l in bill.lines] == [["1", "2"], ["3"], ["4"], ["5", "6"]]
    assert [i["billed_hours"] for i in bill.lines[0].items] == ["0.25", "0.25"]   # not 0.2 h rounded once


# --- one line per work type ------------------------------------------------------------------------

def test_per_work_type_is_one_line_per_work_type_and_rate():
    entries = [entry(1, "1.1"), entry(2, "1", ticket="4522"), entry(3, "0.5", "After Hours")]
    bill = bill_time("elm", contract("work_type"), entries, [], OCT)
    assert table(bill) == [
        ("time:After Hours", "After Hours time (2026-10)", "0.5", 15000, 7500),
        ("time:Remote", "Remote time (2026-10)", "2.25", 9500, 21375)]
    assert ids(bill.lines[1]) == ["1", "2"]


# --- flat rate, late entries, errors -----------------------------------------------------------------

@pytest.mark.parametrize("time_lines", ["entry", "ticket", "work_type"])
def test_a_flat_rate_job_is_one_line_per_ticket_in_every_layout(time_lines):
    entries = [entry(1, "1", ticket="77"), entry(2, "0.5", "Virus Removal", ticket="77"), entry(3, "1", ticket="78")]
    bill = bill_time("elm", contract(time_lines), entries, [], OCT)
    flat = [l for l in bill.lines if l.code.startswith("flat:")]
    assert [(l.code, l.description, l.amount) for l in flat] == [
        ("flat:77", "Virus Removal, ticket 77 (flat rate)", 14900)]
    time_ = [l for l in bill.lines if l.code.startswith("time:")]
    assert [i["id"] for l in time_ for i in l.items] == ["3"] and sum(l.amount for l in time_) == 9500


def test_a_late_entry_is_its_own_line_naming_its_period_and_the_entry():
    late = entry(9, "1.1", "After Hours", when=dt(2026, 9, 28, 9))
    own = entry(10, "1", "After Hours")
    bill = bill_time("elm", contract(), [late, own], [], OCT)
    assert table(bill) == [
        ("time:entry:10", "2026-10-05, jdoe, ticket 4521, After Hours, 1 h × 150.00 EUR", "1", 15000, 15000),
        ("time:entry:9", "Late entry 9 of 2026-09: 2026-09-28, jdoe, ticket 4521, After Hours, 1.25 h × 150.00 EUR",
         "1.25", 15000, 18750)]
    assert "dated in 2026-09, entered after it was planned and never billed" in bill.lines[1].rule
    assert bill.lines[1].items[0]["period"] == "2026-09"
    # Already billed (the hub's ledger has it): never a second time.
    again = bill_time("elm", contract(), [late, own], [], OCT, already_billed=frozenset({"9"}))
    assert [l.code for l in again.lines] == ["time:entry:10"]


def test_per_ticket_late_entries_are_on_a_line_of_their_period():
    late = entry(9, "1", when=dt(2026, 9, 28, 9))
    bill = bill_time("elm", contract("ticket"), [late, entry(10, "1")], [], OCT)
    assert table(bill) == [
        ("time:ticket:4521", "Ticket 4521: Remote, 1 h × 95.00 EUR (1 entry)", "1", 9500, 9500),
        ("time:ticket:4521:2026-09", "Late entries of 2026-09, ticket 4521: Remote, 1 h × 95.00 EUR (entry 9)",
         "1", 9500, 9500)]


def test_an_unknown_layout_is_an_error_naming_the_fix_and_bills_no_time():
    bill = bill_time("elm", contract("entries"), [entry(1, "1")], [], OCT)
    assert bill.lines == ()
    assert bill.errors == ("contract of elm has time_lines 'entries'; use \"entry\", \"ticket\" or \"work_type\" "
                           "(mappings/defaults.toml or the contract). Its 1 time entries are not billed",)


def test_the_snapshot_and_ledger_record_each_entry_whatever_the_layout():
    entries = [entry(1, "1.1"), entry(2, "1", ticket="4522"), entry(3, "0.5", ticket=None)]
    per = {mode: bill_time("elm", contract(mode), entries, [], OCT).lines for mode in ("entry", "ticket", "work_type")}
    things = {mode: sorted((t["id"], t["billed_hours"], t["amount"]) for line in snapshot_of(got) for t in line["things"])
              for mode, got in per.items()}
    assert things["entry"] == things["ticket"] == things["work_type"] == [
        ("1", "1.25", 11875), ("2", "1", 9500), ("3", "0.5", 4750)]
    assert {mode: sorted(row[1] for row in ledger_of(got)) for mode, got in per.items()} == {
        mode: ["1", "2", "3"] for mode in per}


# --- a block's overage follows the layout -------------------------------------------------------

BLOCK_10 = BlockSize("10h", F(10), 90000)        # 90.00 an hour


@pytest.mark.parametrize("time_lines, expected", [
    ("entry", [("overage:A1:entry:2", "Hours beyond the prepaid block (2026-10): 2026-10-06, jdoe, ticket 4521, "
                                      "Remote, 1 h × 90.00 EUR", "1", ["2"]),
               ("overage:A1:entry:3", "Hours beyond the prepaid block (2026-10): 2026-10-07, jdoe, ticket 4522, "
                                      "Remote, 2 h × 90.00 EUR", "2", ["3"])]),
    ("ticket", [("overage:A1:ticket:4521", "Hours beyond the prepaid block (2026-10), ticket 4521: 1 h × 90.00 EUR "
                                           "(1 entry)", "1", ["2"]),
                ("overage:A1:ticket:4522", "Hours beyond the prepaid block (2026-10), ticket 4522: 2 h × 90.00 EUR "
                                           "(1 entry)", "2", ["3"])]),
    ("work_type", [("overage:A1", "Hours beyond the prepaid block (2026-10)", "3", ["2", "3"])]),
])
def test_the_overage_of_a_block_follows_the_layout(time_lines, expected):
    entries = [entry(1, "9", agreement="A1", when=dt(2026, 10, 5, 9)),
               entry(2, "2", agreement="A1", when=dt(2026, 10, 6, 9)),                # 1 h beyond the 10 h
               entry(3, "2", agreement="A1", when=dt(2026, 10, 7, 9), ticket="4522")]  # 2 h beyond
    blocks = [Block.of_size(1, BLOCK_10, dt(2026, 10, 1))]
    bill = bill_time("elm", contract(time_lines, kind="block", block=BLOCK_10), entries, [], OCT, blocks=blocks)
    assert [(l.code, l.description, l.quantity, ids(l)) for l in bill.lines] == expected
    assert sum(l.amount for l in bill.lines) == 3 * 9000
    things = [t for line in snapshot_of(bill.lines) for t in line["things"]]
    assert {(t["id"], t["agreement"], t["billed_hours"]) for t in things} == {("2", "A1", "1"), ("3", "A1", "2")}


# --- what Stripe is sent ------------------------------------------------------------------------------

def payload_line(description, quantity, unit, amount):
    return {"code": "time:entry:1", "description": description, "quantity": quantity, "unit_amount": unit,
            "amount": amount}


def test_stripe_sends_a_time_line_s_text_as_the_hub_wrote_it():
    stated = payload_line("2026-10-05, jdoe, ticket 4521, Remote, 1.25 h × 95.00 EUR", "1.25", 9500, 11875)
    assert line_description(stated, "EUR") == stated["description"]                # no second "(1.25 x ...)"
    params = to_line_params(stated, 0, 10, "EUR")
    assert (params["amount"], params["description"]) == (11875, stated["description"])
    # A credit of a late change states its negative hours × rate the same way.
    credit = payload_line("Late change for 2026-10: entry 7 (2026-10-09, jdoe, ticket 4521, After Hours), 2 h billed, "
                          "0.5 h now, -1.5 h × 150.00 EUR", "-1.5", 15000, -22500)
    assert line_description(credit, "EUR") == credit["description"]
    # A line that does not state its quantity still gets it from the plugin.
    plain = payload_line("Support hours", "1.5", 8000, 12000)
    assert line_description(plain, "EUR") == "Support hours (1.5 x 80.00 EUR)"
    # Another quantity or rate in the text is not the line's: the plugin states the line's own.
    other = payload_line("Remote, 1.5 h × 95.00 EUR", "1.25", 9500, 11875)
    assert line_description(other, "EUR") == "Remote, 1.5 h × 95.00 EUR (1.25 x 95.00 EUR)"


def test_stripe_refuses_a_description_too_long_or_too_many_lines_before_sending():
    base = {"client_name": "Elm", "currency": "EUR", "period_start": "2026-10-01T00:00:00+00:00",
            "period_end": "2026-11-01T00:00:00+00:00"}
    long = payload_line("x" * 5001, "1", 9500, 9500)
    with pytest.raises(MappingError, match=r"line 0 \(time:entry:1\) description has 5001 characters, Stripe "
                                           r"takes at most 5000"):
        check_payload(Action("invoice:elm:2026-10", "invoice", "stripe", "elm", {**base, "lines": [long]}))
    many = [dict(payload_line("Remote, 1 h × 95.00 EUR", "1", 9500, 9500), code=f"time:entry:{i}") for i in range(251)]
    with pytest.raises(MappingError, match=r"the invoice has 251 lines, Stripe takes at most 250 per invoice; .*"
                                           r"time_lines = \"ticket\""):
        check_payload(Action("invoice:elm:2026-10", "invoice", "stripe", "elm", {**base, "lines": many}))
    check_payload(Action("invoice:elm:2026-10", "invoice", "stripe", "elm", {**base, "lines": many[:250]}))


# --- end to end: ConnectWise and Stripe simulators ----------------------------------------------------

def sent_lines(env, key):
    """The invoice items Stripe holds for the invoice of action ``key``: (description, quantity, amount)."""
    (inv,) = [i for i in env.invoices() if i["metadata"]["msp_hub_action_key"] == key]
    return sorted((i["description"], i["quantity"], i["amount"], i["metadata"]["msp_hub_line"])
                  for i in env.stripe.list_objects("invoiceitem") if i["invoice"] == inv["id"])


def test_stripe_receives_one_line_per_entry_with_the_same_facts(tmp_path):
    env = PsaEnv(tmp_path)
    env.cw.add_agreement(env.co["elm"], "Break/Fix")
    remote = env.time("elm", 70 / 60, at(10, 9), "Remote Support", charge_id=4521)     # 1.25 h as rounded
    after = env.time("elm", 2.0, at(10, 10), "After Hours", charge_id=4522)
    elm = f"connectwise-{env.co['elm']}"
    report = sync_once(env.hub())
    got = lines(invoice(report, elm))
    assert set(got) == {f"time:entry:{remote}", f"time:entry:{after}"}
    assert sent_lines(env, f"invoice:{elm}:2026-10") == [
        # Fractional hours: one amount, the text as the hub wrote it, stating hours × rate.
        ("2026-10-09, jsmith, ticket 4521, Remote Support, 1.25 h × 95.00 EUR", 1, 11875, f"time:entry:{remote}"),
        # Whole hours: quantity × unit amount, the same text.
        ("2026-10-10, jsmith, ticket 4522, After Hours, 2 h × 150.00 EUR", 2, 30000, f"time:entry:{after}")]


def test_stripe_receives_one_line_per_ticket(tmp_path):
    env = PsaEnv(tmp_path)
    (env.mappings / "defaults.toml").write_text('time_lines = "ticket"\n')
    env.cw.add_agreement(env.co["elm"], "Break/Fix")
    env.time("elm", 0.1, at(10, 9), "Remote Support", charge_id=4521)
    env.time("elm", 0.1, at(10, 12), "Remote Support", charge_id=4521)
    elm = f"connectwise-{env.co['elm']}"
    sync_once(env.hub())
    assert sent_lines(env, f"invoice:{elm}:2026-10") == [
        ("Ticket 4521: Remote Support, 0.5 h × 95.00 EUR (2 entries)", 1, 4750, "time:ticket:4521")]


def test_under_per_entry_lines_a_late_entry_and_a_late_change_are_each_billed_once(tmp_path):
    env = PsaEnv(tmp_path, billing=LOOSE)                 # no guardrail on the month-to-month change
    env.cw.add_agreement(env.co["elm"], "Break/Fix")
    elm = f"connectwise-{env.co['elm']}"
    edited = env.time("elm", 1.0, at(10, 9), "After Hours", charge_id=4521)
    sync_once(env.hub())
    late = env.time("elm", 0.5, at(10, 20), "Remote Support", charge_id=4530)        # October's, entered later
    edit_entry(env, edited, actualHours=1.5)                                          # half an hour found later
    own = env.time("elm", 1.0, at(11, 3), "Remote Support", charge_id=4531)
    dec_1 = datetime(2026, 12, 1, 7, tzinfo=UTC)
    nov = invoice(sync_once(env.hub(clock=dec_1)), elm, "2026-11")
    assert {c: (l.description, l.amount) for c, l in lines(nov).items()} == {
        f"time:entry:{own}": ("2026-11-03, jsmith, ticket 4531, Remote Support, 1 h × 95.00 EUR", 9500),
        f"time:entry:{late}": (f"Late entry {late} of 2026-10: 2026-10-20, jsmith, ticket 4530, Remote Support, "
                               f"0.5 h × 95.00 EUR", 4750),
        f"delta:2026-10:time:{edited}": (f"Late change for 2026-10: entry {edited} (2026-10-09, jsmith, ticket 4521, "
                                         f"After Hours), 1 h billed, 1.5 h now, 0.5 h × 150.00 EUR", 7500)}
    assert nov.status == "create", (nov.status, nov.reasons)
    assert sent_lines(env, f"invoice:{elm}:2026-11") == sorted([
        ("2026-11-03, jsmith, ticket 4531, Remote Support, 1 h × 95.00 EUR", 1, 9500, f"time:entry:{own}"),
        (f"Late entry {late} of 2026-10: 2026-10-20, jsmith, ticket 4530, Remote Support, 0.5 h × 95.00 EUR",
         1, 4750, f"time:entry:{late}"),
        (f"Late change for 2026-10: entry {edited} (2026-10-09, jsmith, ticket 4521, After Hours), 1 h billed, "
         f"1.5 h now, 0.5 h × 150.00 EUR", 1, 7500, f"delta:2026-10:time:{edited}")])
    # The next month bills neither again.
    jan_1 = datetime(2027, 1, 1, 7, tzinfo=UTC)
    dec = invoice(sync_once(env.hub(clock=jan_1)), elm, "2026-12")
    assert dec.status == "empty" and not dec.bill.lines


def test_an_invoice_stripe_would_refuse_is_held_in_the_plan_naming_the_fix(tmp_path):
    env = PsaEnv(tmp_path)
    env.cw.add_agreement(env.co["elm"], "Break/Fix")
    for i in range(251):                                      # a busy month billed one line per entry
        env.time("elm", 0.25, at(10, 1 + i % 28, 8 + i % 10), "Remote Support", charge_id=5000 + i % 20)
    elm = f"connectwise-{env.co['elm']}"
    report = sync_once(env.hub(stripe_plugin))   # its veto_action, as its entry point registers it
    item = invoice(report, elm)
    assert item.status == "held" and len(item.bill.lines) == 251
    assert any("the invoice has 251 lines, Stripe takes at most 250 per invoice" in r and 'time_lines = "ticket"' in r
               for r in item.reasons), item.reasons
    assert not [i for i in env.invoices() if i["metadata"]["msp_hub_action_key"] == f"invoice:{elm}:2026-10"]

    (env.mappings / "defaults.toml").write_text('time_lines = "ticket"\n')   # the fix the reason names
    item = invoice(sync_once(env.hub(stripe_plugin)), elm)
    assert item.status == "create" and len(item.bill.lines) == 20, (item.status, item.reasons)
    [sent] = [i for i in env.invoices() if i["metadata"]["msp_hub_action_key"] == f"invoice:{elm}:2026-10"]
    assert sent["subtotal"] == 251 * 2375                        # a quarter hour at 95.00 EUR, each entry once
