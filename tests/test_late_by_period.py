"""Time is billed by the contract in force on its own day (BILLING.md, "Month after month").

An entry dated in a period is priced (scope, included services, rates) by the contract in force on
its day, whichever invoice carries it: a late entry of an invoiced period by that period's contract,
an entry of the first half of a month that changed contract by the contract of that half. A client
with no next invoice (its contract ended) has the late time it owes held for a person, with the
amount, never dropped.

End-to-end against the simulators, with the five-month environment of tests/test_five_months.py
(Remote Support 95.00 an hour, included in Gold; After Hours 150.00; Gold 120.00 a workstation,
Silver 100.00; Silver and Gold prorate).
"""

from hub.engine import sync_once
from hub.store import Store
from tests.test_five_months import RUNS, FiveMonths, month_run, ts
from tests.test_psa_billing import invoice, lines


def carrying(item, entry):
    """The lines of an invoice that bill ``entry``."""
    return [l for l in item.bill.lines if any(str(i.get("id")) == str(entry) for i in l.items)]


def reported(item, entry):
    return [r for r in item.bill.reported if str(r.get("id")) == str(entry)]


def elm_moves_to_gold(env):
    """Elm on break/fix until November 30, on Managed Gold from December 1."""
    break_fix = env.cw.add_agreement(env.co["elm"], "Break/Fix", start="2024-01-01T00:00:00Z")
    env.device(5, "ELM-WS")
    return break_fix


def test_an_entry_of_a_month_that_changed_contract_is_priced_by_the_contract_of_its_day(tmp_path):
    env = FiveMonths(tmp_path)
    birch = env.cid("birchwood")
    # Birchwood moves from Silver (remote support billed) to Gold (included) on November 16.
    silver = env.cw.add_agreement(env.co["birchwood"], "Managed Silver", start="2024-01-01T00:00:00Z",
                                  end="2026-11-15T00:00:00Z", status="Expired")
    env.cw.add_agreement(env.co["birchwood"], "Managed Gold", start="2026-11-16T00:00:00Z")
    env.device(2, "BIRCH-WS")
    under_silver = env.time("birchwood", 1.0, ts(2026, 11, 10), "Remote Support")
    under_gold = env.time("birchwood", 2.0, ts(2026, 11, 20), "Remote Support")
    november = invoice(month_run(env, "2026-11"), birch, "2026-11")
    # 15/30 x 100.00 + 15/30 x 120.00; the hour of November 10 under Silver, 95.00; November 20's
    # two hours are included in Gold.
    [billed] = carrying(november, under_silver)
    assert billed.amount == 9500
    assert "Managed Silver" in billed.rule and str(silver) in billed.rule
    assert not carrying(november, under_gold)
    assert [r["reason"] for r in reported(november, under_gold)] == ["included"]
    assert november.total == 5000 + 6000 + 9500


def test_a_late_entry_billed_by_its_own_period_contract_is_billed_once(tmp_path):
    env = FiveMonths(tmp_path)
    elm = env.cid("elm")
    break_fix = elm_moves_to_gold(env)
    month_run(env, "2026-11")
    env.set_agreement(break_fix, endDate="2026-11-30T00:00:00Z", noEndingDateFlag=False, agreementStatus="Expired")
    env.cw.add_agreement(env.co["elm"], "Managed Gold", start="2026-12-01T00:00:00Z")
    late_entry = env.time("elm", 1.5, ts(2026, 11, 25), "Remote Support")   # November's, entered in December
    december = invoice(month_run(env, "2026-12"), elm, "2026-12")
    # 1.5 h x 95.00 under break/fix, on a line naming November and the contract that priced it.
    [billed] = carrying(december, late_entry)
    assert billed.amount == 14250
    assert "2026-11" in billed.description and str(break_fix) in billed.rule
    january = invoice(month_run(env, "2027-01"), elm, "2027-01")
    # January: the workstation at Gold; November's hour is never billed again.
    assert not carrying(january, late_entry)
    assert january.total == 12000


def test_a_late_entry_included_in_its_own_period_contract_is_reported_as_included(tmp_path):
    env = FiveMonths(tmp_path)
    elm = env.cid("elm")
    gold = env.cw.add_agreement(env.co["elm"], "Managed Gold", start="2024-01-01T00:00:00Z")
    env.device(5, "ELM-WS")
    month_run(env, "2026-11")
    env.set_agreement(gold, endDate="2026-11-30T00:00:00Z", noEndingDateFlag=False, agreementStatus="Expired")
    env.cw.add_agreement(env.co["elm"], "Break/Fix", start="2026-12-01T00:00:00Z")
    late_entry = env.time("elm", 2.0, ts(2026, 11, 20), "Remote Support")
    december_hour = env.time("elm", 1.0, ts(2026, 12, 3), "Remote Support")
    december = invoice(month_run(env, "2026-12"), elm, "2026-12")
    # November's hours are included in Gold, its contract: reported, never billed; December's hour
    # is break/fix time, 95.00.
    assert not carrying(december, late_entry)
    assert [r["reason"] for r in reported(december, late_entry)] == ["included"]
    assert [l.amount for l in carrying(december, december_hour)] == [9500]
    assert december.total == 9500


def test_a_churned_clients_late_charge_waits_for_a_person_then_is_billed_once(tmp_path):
    env = FiveMonths(tmp_path)
    cobalt = env.cid("cobalt")
    env.cw.add_agreement(env.co["cobalt"], "Managed Gold", start="2024-01-01T00:00:00Z", end="2026-12-20T00:00:00Z")
    env.device(3, "COBALT-WS")
    month_run(env, "2026-12")
    # Two hours of December 10 entered in January: remote support (included in Gold) and after hours.
    included = env.time("cobalt", 1.0, ts(2026, 12, 10), "Remote Support")
    late_entry = env.time("cobalt", 1.0, ts(2026, 12, 10, 20), "After Hours")
    key = f"invoice:{cobalt}:2027-01"
    january = invoice(month_run(env, "2027-01"), cobalt, "2027-01")
    assert january.status == "held" and january.cause == "guardrail"
    assert [l.amount for l in carrying(january, late_entry)] == [15000]
    assert not carrying(january, included)
    assert january.total == 15000
    [reason] = january.reasons
    assert "150.00" in reason and "no contract for 2027-01" in reason and f"msp-hub approve {key}" in reason
    # A person approves it: the next run sends it, once.
    Store(env.db).approve(key, who="ops", why="bill the late hour")
    sent = sync_once(env.hub(clock=RUNS["2027-01"]))
    assert key in {p.action.key for p in sent.plan if p.status == "create"}
    assert {i["metadata"]["msp_hub_action_key"]: i["subtotal"] for i in env.invoices()}[key] == 15000
    february = month_run(env, "2027-02")
    assert not [p for p in february.plan if p.client_id == cobalt and p.bill and carrying(p, late_entry)]


def test_a_churned_clients_late_time_outside_its_contract_is_not_held(tmp_path):
    env = FiveMonths(tmp_path)
    cobalt = env.cid("cobalt")
    env.cw.add_agreement(env.co["cobalt"], "Managed Gold", start="2024-01-01T00:00:00Z", end="2026-12-20T00:00:00Z")
    env.device(3, "COBALT-WS")
    month_run(env, "2026-12")
    # A December hour included in Gold, entered in January: nothing is owed, nothing waits.
    env.time("cobalt", 2.0, ts(2026, 12, 15), "Remote Support")
    january = month_run(env, "2027-01")
    assert not [p for p in january.plan if p.client_id == cobalt and p.kind == "invoice"]
