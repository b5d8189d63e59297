"""Late changes of a month already invoiced, billed thing by thing with what that month's invoice
recorded (BILLING.md, "Month after month").

A device the RMM reports only after the invoice of a month that two contracts shared (an upgrade
inside it, both prorating) is billed once, each contract its own days of the device, at the price
that invoice recorded for the contract's tier line. The overage of a prepaid block, invoiced, is
compared entry by entry with what is beyond the block's balance now: hours no longer beyond it are
credited, more hours beyond it are charged, once.

End to end against the NinjaOne, ConnectWise and Stripe simulators, one database, the hub's clock
on the 1st of each month (see tests/test_five_months.py for the prices).
"""

from hub.engine import sync_once
from tests.test_five_months import LONG_AGO, RUNS, FiveMonths, amounts, month_run, stripe, ts
from tests.test_late_changes import edit_entry
from tests.test_psa_billing import invoice, lines


def upgraded_in_november(tmp_path):
    """Birchwood on Silver until November 15, on Gold from November 16 (both prorating), one
    workstation all along; November invoiced on December 1."""
    env = FiveMonths(tmp_path)
    env.cw.add_agreement(env.co["birchwood"], "Managed Silver", start="2024-01-01T00:00:00Z",
                         end="2026-11-15T00:00:00Z", status="Expired")
    gold = env.cw.add_agreement(env.co["birchwood"], "Managed Gold", start="2026-11-16T00:00:00Z")
    env.device(2, "BIRCH-WS1")
    november = invoice(month_run(env, "2026-11"), env.cid("birchwood"), "2026-11")
    assert november.total == 5000 + 6000                  # 15/30 x 100.00 + 15/30 x 120.00
    return env, gold


def late_lines(item, period="2026-11"):
    return {c: l for c, l in lines(item).items() if c.startswith(f"delta:{period}:")}


def test_each_contract_bills_its_days_of_the_late_device_once_and_names_them(tmp_path):
    env, _ = upgraded_in_november(tmp_path)
    birch = env.cid("birchwood")
    late = env.device(2, "BIRCH-LATE", created=ts(2026, 11, 10))
    december = invoice(month_run(env, "2026-12"), birch, "2026-12")
    got = late_lines(december)
    assert {c: (l.quantity, l.unit_amount, l.amount) for c, l in got.items()} == {
        "delta:2026-11:tier:silver:workstation": ("0.2", 10000, 2000),      # November 10-15: 6/30
        "delta:2026-11:tier:gold:workstation": ("0.5", 12000, 6000)}        # November 16-30: 15/30
    silver, gold = got["delta:2026-11:tier:silver:workstation"], got["delta:2026-11:tier:gold:workstation"]
    assert [(i["ref"], i["days"], i["period"]) for i in silver.items] == [(str(late), "6/30", "2026-11")]
    assert [(i["ref"], i["days"], i["period"]) for i in gold.items] == [(str(late), "15/30", "2026-11")]
    assert "2026-11-01 to 2026-11-15" in silver.description and "2026-11-16 to 2026-11-30" in gold.description
    assert "Late change for 2026-11" in silver.description
    # No device left unbilled to note; the one billing note says where the prorating option came
    # from (the other, of VAT, says how a client without an address is taxed).
    assert [n for n in december.bill.notes if "taxed as a client in" not in n] == [
        'contract options: proration: on (agreement_types.toml [types."Managed Gold"])']
    # January bills the device for January only: its November shares were billed once, in December.
    january = invoice(month_run(env, "2027-01"), birch, "2027-01")
    assert not [c for c in lines(january) if c.startswith("delta:")]
    assert january.total == 2 * 12000
    assert stripe(env)[f"invoice:{birch}:2026-12"] == 2 * 12000 + 2000 + 6000


def test_a_late_device_of_the_whole_shared_month_is_priced_as_that_month_recorded(tmp_path):
    env, _ = upgraded_in_november(tmp_path)
    birch = env.cid("birchwood")
    # Gold's workstation price goes up after November was invoiced: November keeps 120.00.
    path = env.mappings / "tiers.toml"
    path.write_text(path.read_text().replace('workstation = "120.00"', 'workstation = "130.00"', 1))
    env.device(2, "BIRCH-OLD", created=LONG_AGO)                    # in use all November, reported late
    env.device(2, "BIRCH-SRV", node_class="WINDOWS_SERVER", created=LONG_AGO)
    december = invoice(month_run(env, "2026-12"), birch, "2026-12")
    assert {c: (l.quantity, l.unit_amount, l.amount) for c, l in late_lines(december).items()} == {
        "delta:2026-11:tier:silver:workstation": ("0.5", 10000, 5000),
        "delta:2026-11:tier:gold:workstation": ("0.5", 12000, 6000),
        # November billed no server line: the tier's price, each contract its 15 days.
        "delta:2026-11:tier:silver:server": ("0.5", 20000, 10000),
        "delta:2026-11:tier:gold:server": ("0.5", 24000, 12000)}
    assert "its price then" in late_lines(december)["delta:2026-11:tier:gold:workstation"].rule
    assert "the tier's price" in late_lines(december)["delta:2026-11:tier:gold:server"].rule
    assert amounts(december)["tier:gold:workstation"] == ("2", 13000, 26000)
    assert december.total == 26000 + 24000 + 5000 + 6000 + 10000 + 12000


def test_a_late_device_is_named_not_billed_when_the_month_s_agreements_now_give_a_tier_it_did_not_bill(tmp_path):
    env, gold = upgraded_in_november(tmp_path)
    birch = env.cid("birchwood")
    # The Gold agreement is now typed Platinum in the PSA: which price November's days had is not known.
    env.set_agreement(gold, type={"id": 99, "name": "Managed Platinum"})
    env.device(2, "BIRCH-LATE", created=ts(2026, 11, 10))
    december = invoice(month_run(env, "2026-12"), birch, "2026-12")
    assert not late_lines(december)
    late = [n for n in december.bill.notes if "reported after the 2026-11 invoice" in n]
    assert len(late) == 1
    note = late[0]
    assert "BIRCH-LATE" in note and "several tiers (gold, silver)" in note and "now give platinum," in note
    assert note.endswith("they are not billed for 2026-11")


def overdrawn_block(tmp_path):
    """Driftwood's 20 h block overdrawn by 1 h in October (15 h, then 6 h), invoiced on November 1."""
    env = FiveMonths(tmp_path)
    block = env.cw.add_agreement(env.co["driftwood"], "Block Hours", application_units="Hours", application_limit=20,
                                 start="2026-09-01T00:00:00Z")
    first = env.time("driftwood", 15.0, ts(2026, 10, 5), agreement_id=block)
    second = env.time("driftwood", 6.0, ts(2026, 10, 8), agreement_id=block)
    october = invoice(month_run(env, "2026-10"), env.cid("driftwood"), "2026-10")
    # The second entry's hour beyond the balance, on a line of its own (time_lines "entry").
    assert amounts(october) == {f"overage:{block}:entry:{second}": ("1", 9000, 9000)}
    thing = october.snapshot[0]["things"][0]
    assert (thing["kind"], thing["id"], thing["agreement"]) == ("overage", str(second), str(block))
    return env, block, first, second


def test_more_hours_beyond_the_block_after_invoicing_charge_the_difference_once(tmp_path):
    env, block, _, second = overdrawn_block(tmp_path)
    drift = env.cid("driftwood")
    edit_entry(env, second, actualHours=8.0)                  # 3 h beyond the balance now, 1 h billed
    november = invoice(month_run(env, "2026-11"), drift, "2026-11")
    late = lines(november)[f"delta:2026-10:overage:{second}"]
    assert (late.quantity, late.unit_amount, late.amount) == ("2", 9000, 18000)
    assert "1 h billed, 3 h now" in late.description and str(block) in late.description
    assert november.total == 18000
    december = invoice(month_run(env, "2026-12"), drift, "2026-12")
    assert not [c for c in lines(december) if c.startswith("delta:")]


def test_an_earlier_entry_edited_down_credits_the_later_entry_s_overage(tmp_path):
    env, _, first, second = overdrawn_block(tmp_path)
    drift = env.cid("driftwood")
    edit_entry(env, first, actualHours=14.0)                  # the block now absorbs the 6 h entry
    env.time("driftwood", 1.0, ts(2026, 11, 8), "After Hours")
    november = invoice(month_run(env, "2026-11"), drift, "2026-11")
    assert {c: l.amount for c, l in lines(november).items() if c.startswith("delta:")} == {
        f"delta:2026-10:overage:{second}": -9000}
    assert november.total == 15000 - 9000
    assert stripe(env)[f"invoice:{drift}:2026-11"] == 6000
    december = invoice(month_run(env, "2026-12"), drift, "2026-12")
    assert not [c for c in lines(december) if c.startswith("delta:")]


def test_an_overdrawing_entry_set_to_no_charge_credits_its_overage_and_a_negative_invoice_waits(tmp_path):
    env, _, _, second = overdrawn_block(tmp_path)
    drift = env.cid("driftwood")
    edit_entry(env, second, billableOption="NoCharge")
    env.seen(RUNS["2026-11"])
    report = sync_once(env.hub(clock=RUNS["2026-11"]))
    november = invoice(report, drift, "2026-11")
    late = lines(november)[f"delta:2026-10:overage:{second}"]
    assert (late.quantity, late.amount) == ("-1", -9000)
    assert "no charge" in late.rule
    # Nothing else to bill in November: the credit would make the invoice negative, so it waits.
    assert november.status == "held" and "below zero" in " ".join(november.reasons)
    assert f"invoice:{drift}:2026-11" not in stripe(env)
