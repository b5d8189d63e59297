"""Month after month: the past is never re-priced, late facts are billed once both ways.

End to end against the NinjaOne, ConnectWise and Stripe simulators, one database, the hub's
clock moved from month to month (the run on the 1st invoices the month that ended). Each
invoiced period keeps what its snapshot billed, thing by thing (BILLING.md, "Month after month",
"Devices"): a device reclassified, a tier changed or an approval given later never touches it; a
time entry edited after it was invoiced is charged or credited the difference once, on the next
invoice; a credit that makes an invoice negative waits for a person.
"""

import json
from datetime import datetime, timezone

import pytest

from hub.engine import sync_once
from tests.test_psa_billing import PsaEnv, at, invoice, lines

UTC = timezone.utc
DEC_1 = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)     # the monthly run that invoices November
JAN_1 = datetime(2027, 1, 1, 7, 0, tzinfo=UTC)      # ... December
FEB_1 = datetime(2027, 2, 1, 7, 0, tzinfo=UTC)      # ... January
LOOSE = {"guardrails": {"invoice_max_change_percent": 1000, "invoice_max_device_change_percent": 1000,
                        "first_invoice_max": "1000000.00"}}


def ts(year, month, day):
    return datetime(year, month, day, 9, tzinfo=UTC).timestamp()


def edit_device(sim, device_id, **fields):
    """Change a device's raw NinjaOne fields, as the RMM does (a reclassification, a contact)."""
    sim._devices[device_id].update(fields)
    sim._put_device(sim._devices[device_id])


def keep_alive(sim, org, when):
    """Every approved device of ``org`` was seen at ``when`` (the RMM keeps reporting them)."""
    for d in sim.device_ids:
        if sim.device(d)["organizationId"] == org:
            edit_device(sim, d, lastContact=when, lastUpdate=when)


def deltas(item):
    return {c: l for c, l in lines(item).items() if c.startswith("delta:")}


def acme_sent(env, period):
    return [i for i in env.invoices() if i["metadata"]["msp_hub_action_key"] == f"invoice:acme:{period}"]


@pytest.fixture
def psa(tmp_path):
    env = PsaEnv(tmp_path, billing=LOOSE)
    env.cw.add_agreement(env.co["elm"], "Break/Fix")
    return env


def acme_workstation(env):
    return next(d for d in env.ninja.device_ids if env.ninja.device(d)["organizationId"] == 1
                and env.ninja.device(d)["nodeClass"] == "WINDOWS_WORKSTATION"
                and env.ninja.device(d)["approvalStatus"] == "APPROVED")


def test_a_reclassified_device_never_touches_the_months_it_was_billed_in(psa):
    oct_ = invoice(sync_once(psa.hub()), "acme")
    moved = acme_workstation(psa)
    assert str(moved) in {i["id"] for i in lines(oct_)["tier:gold:workstation"].items}
    edit_device(psa.ninja, moved, nodeClass="WINDOWS_SERVER")        # turned into a server in November
    nov = invoice(sync_once(psa.hub(clock=DEC_1)), "acme", "2026-11")
    assert nov.status == "create" and deltas(nov) == {}              # October keeps it as a workstation
    assert str(moved) in {i["id"] for i in lines(nov)["tier:gold:server"].items}
    assert str(moved) not in {i["id"] for i in lines(nov)["tier:gold:workstation"].items}
    keep_alive(psa.ninja, 1, ts(2026, 12, 15))
    dec = invoice(sync_once(psa.hub(clock=JAN_1)), "acme", "2026-12")
    assert deltas(dec) == {} and len(acme_sent(psa, "2026-10")) == len(acme_sent(psa, "2026-11")) == 1


def test_a_tier_upgrade_never_reprices_an_invoiced_month_and_a_late_device_keeps_its_months_price(psa):
    oct_ = invoice(sync_once(psa.hub()), "acme")
    gold_ws = lines(oct_)["tier:gold:workstation"].unit_amount
    contracts = psa.mappings / "contracts.toml"
    contracts.write_text(contracts.read_text().replace('tier = "gold"', 'tier = "platinum"', 1))
    # A workstation in use since October 10 that the RMM reports only now.
    late = psa.ninja.add_device(1, "WINDOWS_WORKSTATION", created=at(10, 10), last_contact=ts(2026, 11, 25),
                                name="LATE-WS")
    nov = invoice(sync_once(psa.hub(clock=DEC_1)), "acme", "2026-11")
    assert {c for c in lines(nov) if c.startswith("tier:")} == {"tier:platinum:workstation", "tier:platinum:server"}
    got = deltas(nov)
    assert set(got) == {"delta:2026-10:tier:gold:workstation", "delta:2026-10:addon:backup:workstation"}
    ws = got["delta:2026-10:tier:gold:workstation"]
    assert (ws.quantity, ws.unit_amount, ws.amount) == ("1", gold_ws, gold_ws)      # October's Gold price
    assert [i["ref"] for i in ws.items] == [str(late)] and ws.items[0]["name"] == "LATE-WS"
    assert ws.description.startswith("Late change for 2026-10:") and "billed once" in ws.rule
    backup = got["delta:2026-10:addon:backup:workstation"]
    assert backup.unit_amount == lines(oct_)["addon:backup:workstation"].unit_amount
    # Billed once: the next month carries no late change for October, and no re-run pushes.
    keep_alive(psa.ninja, 1, ts(2026, 12, 15))
    dec = invoice(sync_once(psa.hub(clock=JAN_1)), "acme", "2026-12")
    assert deltas(dec) == {}
    again = sync_once(psa.hub(clock=JAN_1))
    assert not again.pushed and invoice(again, "acme", "2026-12").status == "unchanged"


def test_an_approval_never_reaches_back_into_an_invoiced_month(psa):
    pending = psa.ninja.add_device(1, "WINDOWS_WORKSTATION", approval="PENDING", created=at(10, 5),
                                   last_contact=ts(2026, 11, 20), name="PENDING-WS")
    oct_ = invoice(sync_once(psa.hub()), "acme")
    assert ("PENDING-WS", "not approved in the RMM (pending)") in {(e.name, e.reason) for e in oct_.bill.excluded}
    nov = invoice(sync_once(psa.hub(clock=DEC_1)), "acme", "2026-11")
    assert "PENDING-WS" not in {i["name"] for l in nov.bill.lines for i in l.items}
    # A device in use since November 3 that the RMM first reports on December 3, pending.
    newcomer = psa.ninja.add_device(1, "WINDOWS_WORKSTATION", approval="PENDING", created=at(11, 3),
                                    last_contact=ts(2026, 12, 3), name="NEW-WS")
    sync_once(psa.hub(clock=datetime(2026, 12, 3, 10, tzinfo=UTC)))
    # Both approved on December 5: they count for December, never for October or November.
    psa.ninja.set_approval(pending, "APPROVED")
    psa.ninja.set_approval(newcomer, "APPROVED")
    seen_dec_5 = psa.hub(clock=datetime(2026, 12, 5, 10, tzinfo=UTC))
    sync_once(seen_dec_5)
    keep_alive(psa.ninja, 1, ts(2026, 12, 15))
    dec = invoice(sync_once(psa.hub(clock=JAN_1)), "acme", "2026-12")
    assert deltas(dec) == {}
    assert {str(pending), str(newcomer)} <= {i["id"] for i in lines(dec)["tier:gold:workstation"].items}
    rows = seen_dec_5.store.approvals_seen("ninjaone", "1")
    for device in (pending, newcomer):
        row = rows[str(device)]
        assert row["first_status"] == "pending" and row["approved_seen_at"] == datetime(2026, 12, 5, 10, tzinfo=UTC)


def test_a_decommissioned_device_is_billed_for_the_month_it_was_last_seen_never_after(psa):
    sync_once(psa.hub())
    gone = psa.ninja.add_device(1, "WINDOWS_SERVER", created=at(1, 5), last_contact=ts(2026, 11, 10),
                                name="OLD-SRV")
    psa.ninja.set_approval(gone, "DECOMMISSIONED")
    nov = invoice(sync_once(psa.hub(clock=DEC_1)), "acme", "2026-11")
    assert "OLD-SRV" in {i["name"] for i in lines(nov)["tier:gold:server"].items}
    keep_alive(psa.ninja, 1, ts(2026, 12, 15))
    edit_device(psa.ninja, gone, lastContact=ts(2026, 11, 10))
    dec = invoice(sync_once(psa.hub(clock=JAN_1)), "acme", "2026-12")
    assert "OLD-SRV" not in {i["name"] for l in dec.bill.lines for i in l.items}
    assert ("OLD-SRV", "not seen during the period (last contact 2026-11-10)") in \
        {(e.name, e.reason) for e in dec.bill.excluded}


def edit_entry(env, entry, **fields):
    env.cw.time_entries.set(entry, **fields)
    env.cw.touch("time_entries", [entry])


def test_an_entry_changed_after_invoicing_is_charged_or_credited_once_and_a_negative_invoice_waits(psa):
    elm = f"connectwise-{psa.co['elm']}"
    raised = psa.time("elm", 1.0, at(10, 10), "After Hours")
    dropped = psa.time("elm", 2.0, at(10, 12), "After Hours")
    oct_ = invoice(sync_once(psa.hub()), elm)
    rate = lines(oct_)[f"time:entry:{raised}"].unit_amount
    assert [(c, l.quantity, l.amount) for c, l in lines(oct_).items() if c.startswith("time:")] == [
        (f"time:entry:{raised}", "1", rate), (f"time:entry:{dropped}", "2", 2 * rate)]
    edit_entry(psa, raised, actualHours=2.0)                      # one more hour found after invoicing
    edit_entry(psa, dropped, billableOption="NoCharge")           # waived after invoicing
    november = psa.time("elm", 4.0, at(11, 5), "After Hours")
    nov = invoice(sync_once(psa.hub(clock=DEC_1)), elm, "2026-11")
    got = deltas(nov)
    up, down = got[f"delta:2026-10:time:{raised}"], got[f"delta:2026-10:time:{dropped}"]
    assert (up.quantity, up.unit_amount, up.amount) == ("1", rate, rate)
    assert (down.quantity, down.unit_amount, down.amount) == ("-2", rate, -2 * rate)
    assert "no charge" in down.rule and "credit" in down.rule and "1 h billed, 2 h now" in up.description
    assert lines(nov)[f"time:entry:{november}"].amount == 4 * rate and nov.total == 3 * rate
    assert nov.status == "create" and set(got) == {f"delta:2026-10:time:{raised}", f"delta:2026-10:time:{dropped}"}
    stripe_nov = [i for i in psa.invoices() if i["metadata"]["msp_hub_action_key"] == f"invoice:{elm}:2026-11"]
    assert len(stripe_nov) == 1 and stripe_nov[0]["subtotal"] == 3 * rate
    # A re-run pushes nothing; the next month bills no change twice.
    assert not sync_once(psa.hub(clock=DEC_1)).pushed
    # Back to 1 hour in December: a credit of the hour charged in November, and nothing else to
    # bill, so the invoice would be negative: it waits for a person, with the amount and why.
    edit_entry(psa, raised, actualHours=1.0)
    run = sync_once(psa.hub(clock=JAN_1))
    dec = invoice(run, elm, "2026-12")
    credit = deltas(dec)[f"delta:2026-10:time:{raised}"]
    assert (credit.quantity, credit.amount) == ("-1", -rate) and dec.total == -rate
    assert dec.status == "held" and dec.cause == "guardrail"
    assert any("below zero" in r and f"msp-hub approve invoice:{elm}:2026-12" in r for r in dec.reasons)
    assert not [i for i in psa.invoices() if i["metadata"]["msp_hub_action_key"] == f"invoice:{elm}:2026-12"]
    # December is still an ended month not invoiced: the next run plans it again, its credit still
    # waiting there for a person; January is billed without taking that credit a second time.
    psa.time("elm", 3.0, at(1, 7) + 365 * 86400, "After Hours")          # January 7, 2027
    feb = sync_once(psa.hub(clock=FEB_1))
    jan = invoice(feb, elm, "2027-01")
    assert jan.status == "create" and jan.total == 3 * rate and deltas(jan) == {}
    dec_again = invoice(feb, elm, "2026-12")
    assert dec_again.status == "held" and deltas(dec_again)[f"delta:2026-10:time:{raised}"].amount == -rate
    mar = invoice(sync_once(psa.hub(clock=datetime(2027, 3, 1, 7, tzinfo=UTC))), elm, "2027-02")
    assert mar.status == "empty" and deltas(mar) == {}


def test_a_product_changed_after_invoicing_is_charged_the_difference_once(psa):
    elm = f"connectwise-{psa.co['elm']}"
    product = psa.cw.add_product(psa.co["elm"], "SSD-1TB", quantity=1, price=90.0, updated=at(10, 15))
    oct_ = invoice(sync_once(psa.hub()), elm)
    assert lines(oct_)["product:SSD-1TB"].amount == 9000
    record = psa.cw.products.get(product)
    record["quantity"] = 3.0                                     # two more disks delivered on the same line
    psa.cw.products.put(record)
    psa.cw.touch("products", [product])
    psa.time("elm", 1.0, at(11, 5), "After Hours")
    nov = invoice(sync_once(psa.hub(clock=DEC_1)), elm, "2026-11")
    line = deltas(nov)[f"delta:2026-10:product:{product}"]
    assert (line.quantity, line.unit_amount, line.amount) == ("2", 9000, 18000)
    assert "1 billed, 3 now" in line.description
    dec = invoice(sync_once(psa.hub(clock=JAN_1)), elm, "2026-12")
    assert dec.status == "empty" and deltas(dec) == {}


def strip_detail(store, client, period):
    """Make a snapshot as one recorded before things were: its lines only."""
    snap = store.get_snapshot(client, period)
    store.db["snapshots"].update((client, period), {"lines": json.dumps(
        [{k: v for k, v in line.items() if k != "things"} for line in snap])})


def test_a_period_invoiced_without_detail_is_final(psa):
    elm = f"connectwise-{psa.co['elm']}"
    entry = psa.time("elm", 1.0, at(10, 10), "After Hours")
    hub = psa.hub()
    sync_once(hub)
    strip_detail(hub.store, elm, "2026-10")
    strip_detail(hub.store, "acme", "2026-10")
    edit_entry(psa, entry, actualHours=3.0)
    psa.ninja.add_device(1, "WINDOWS_WORKSTATION", created=at(10, 10), last_contact=ts(2026, 11, 25), name="LATE")
    november = psa.time("elm", 1.0, at(11, 5), "After Hours")
    run = sync_once(psa.hub(clock=DEC_1))
    assert deltas(invoice(run, elm, "2026-11")) == {} and deltas(invoice(run, "acme", "2026-11")) == {}
    assert lines(invoice(run, elm, "2026-11"))[f"time:entry:{november}"].quantity == "1"


def test_a_credit_for_a_client_with_no_next_invoice_is_held_with_its_amount(psa):
    from hub.engine import RunReport
    from hub.periods import parse_period
    from hub.planner import build_context, held_credits
    elm = f"connectwise-{psa.co['elm']}"
    waived = psa.time("elm", 2.0, at(10, 12), "After Hours")
    rate = lines(invoice(sync_once(psa.hub()), elm))[f"time:entry:{waived}"].unit_amount
    # The client leaves at the end of October; an October entry is waived afterwards.
    agreement = next(i for i in psa.cw.ids("agreements") if psa.cw.record("agreements", i)["company"]["id"] == psa.co["elm"])
    psa.cw.agreements.get(agreement).update(agreementStatus="Cancelled", cancelledFlag=True)
    psa.cw.touch("agreements", [agreement])
    edit_entry(psa, waived, billableOption="NoCharge")
    hub = psa.hub(clock=DEC_1)
    run = sync_once(hub)
    # No contract, so no next invoice: the run holds the credit on its own, nothing is sent.
    assert [(i.kind, i.status, i.cause, i.total) for i in run.plan if i.client_id == elm] == [
        ("invoice", "held", "guardrail", -2 * rate)]
    assert f"invoice:{elm}:2026-11" not in {p["key"] for p in run.pushed}
    nov = parse_period("2026-11")
    items = held_credits(hub, build_context(hub, RunReport("t", "plan", DEC_1), nov), nov, DEC_1)
    assert [(i.client_id, i.status, i.cause, i.total) for i in items] == [(elm, "held", "guardrail", -2 * rate)]
    (line,) = items[0].bill.lines
    assert line.code == f"delta:2026-10:time:{waived}" and line.amount == -2 * rate
    reason = items[0].reasons[0]
    assert "has no contract for 2026-11" in reason and "credit of 300.00 EUR" in reason
    assert f"msp-hub approve invoice:{elm}:2026-11" in reason
    # Approved by a person, it goes as an invoice of its own, once.
    hub.store.record_action(items[0].action, "t")
    hub.store.approve(items[0].action.key, who="ops@msp.example", why="refund the waived hours")
    again = held_credits(hub, build_context(hub, RunReport("t", "plan", DEC_1), nov), nov, DEC_1)
    assert [(i.status, i.total) for i in again] == [("create", -2 * rate)]


def test_a_snapshot_records_each_thing_an_invoice_billed():
    from hub.planner import is_detailed, snapshot_of
    from hub.records import BillingLine
    devices = BillingLine("acme", "2026-10", "tier:gold:workstation", "Gold, workstation", "1.5", 12000, 18000, "EUR",
                          "rule", ({"id": "7", "name": "PC-7", "class": "workstation", "weight": "1"},
                                   {"id": "8", "name": "PC-8", "class": "workstation", "weight": "0.5"}))
    time_ = BillingLine("acme", "2026-10", "time:After Hours", "After Hours time", "1.25", 15000, 18750, "EUR", "rule",
                        ({"id": "10001", "hours": "1.1", "billed_hours": "1.25", "work_type": "After Hours",
                          "date": "2026-10-09", "period": "2026-09"},))
    product = BillingLine("acme", "2026-10", "product:SSD-1TB", "SSD", "2", 9000, 18000, "EUR", "rule",
                          ({"id": "3001", "quantity": "2", "description": "SSD", "date": "2026-10-15",
                            "period": "2026-10"},))
    flat = BillingLine("acme", "2026-10", "flat:Virus Removal", "Virus removal", "1", 9900, 9900, "EUR", "rule",
                       ({"id": "flat:55", "ticket": "55"},))
    snap = snapshot_of([devices, time_, product, flat])
    assert is_detailed(snap) and not is_detailed([{k: v for k, v in l.items() if k != "things"} for l in snap])
    assert snap[0]["things"] == [
        {"kind": "device", "id": "7", "on": "tier:gold", "class": "workstation", "tier": "gold", "unit": 12000,
         "quantity": "1", "amount": 12000},
        {"kind": "device", "id": "8", "on": "tier:gold", "class": "workstation", "tier": "gold", "unit": 12000,
         "quantity": "0.5", "amount": 6000}]
    assert snap[1]["things"] == [{"kind": "time", "id": "10001", "hours": "1.1", "billed_hours": "1.25", "rate": 15000,
                                  "work_type": "After Hours", "date": "2026-10-09", "period": "2026-09",
                                  "amount": 18750}]
    assert [(t["kind"], t["id"], t["quantity"], t["unit"], t["amount"]) for t in snap[2]["things"]] == \
        [("product", "3001", "2", 9000, 18000)]
    assert snap[3]["things"] == [{"kind": "flat", "id": "flat:55", "amount": 9900}]


def test_a_late_device_of_a_month_billed_without_a_device_tier_is_named_not_billed(psa):
    contracts = psa.mappings / "contracts.toml"
    elm_links = f'links = {{ ninjaone = "5", connectwise = "{psa.co["elm"]}" }}'
    psa.time("elm", 1.0, at(10, 10), "After Hours")
    sync_once(psa.hub())                                  # October: time and materials, no device tier
    elm = f"connectwise-{psa.co['elm']}"
    contracts.write_text(contracts.read_text() + f'\n[clients.{elm}]\nname = "Elm Street Clinic"\n{elm_links}\n'
                         'tier = "silver"\n')             # managed from November: the same client, a tier
    late = psa.ninja.add_device(5, "WINDOWS_WORKSTATION", created=at(10, 3), last_contact=ts(2026, 11, 25),
                                name="ELM-LATE")
    run = sync_once(psa.hub(clock=DEC_1))
    nov = invoice(run, elm, "2026-11")
    assert deltas(nov) == {}
    assert [n for n in nov.bill.notes if "count for 2026-10" in n] == [
        "1 device(s) reported after the 2026-10 invoice count for 2026-10 (ELM-LATE (ninjaone id " + str(late) +
        ")), but that invoice billed no device tier to price them with; they are not billed for 2026-10"]
    assert "ELM-LATE" in {i["name"] for i in lines(nov)["tier:silver:workstation"].items}


@pytest.mark.parametrize("status, attempts, final", [
    ("sent", 1, True), ("sending", 1, True), ("failed", 2, True),   # may be at the vendor
    ("pending", 0, False), ("held", 0, False), ("failed", 0, False),  # still takes the next plan's lines
])
def test_only_an_invoice_that_may_be_at_the_vendor_is_compared_with_late_facts(status, attempts, final):
    from hub.planner import is_final
    assert is_final({"status": status, "attempts": attempts, "lines": []}) is final


def test_a_late_change_is_outside_the_monthly_minimum_of_the_invoice_that_carries_it(psa):
    contracts = psa.mappings / "contracts.toml"
    contracts.write_text(contracts.read_text().replace('addons = ["backup"]', 'addons = ["backup"]\nminimum = "90000.00"', 1))
    oct_ = invoice(sync_once(psa.hub()), "acme")
    assert oct_.total == 9_000_000 and lines(oct_)["minimum"].amount > 0
    psa.ninja.add_device(1, "WINDOWS_WORKSTATION", created=at(10, 10), last_contact=ts(2026, 11, 25), name="LATE-WS")
    nov = invoice(sync_once(psa.hub(clock=DEC_1)), "acme", "2026-11")
    late = sum(l.amount for l in deltas(nov).values())
    assert late == lines(oct_)["tier:gold:workstation"].unit_amount + lines(oct_)["addon:backup:workstation"].unit_amount
    own = sum(l.amount for c, l in lines(nov).items() if not c.startswith("delta:"))
    assert own == 9_000_000 and nov.total == 9_000_000 + late     # the top-up does not swallow it
    assert {l.code for l in nov.bill.lines[-2:]} == set(deltas(nov))       # after the minimum line
