"""Contracts that change inside a period: the PSA's agreement dates decide which contract bills
which days (BILLING.md, Devices).

End to end: a client of the ConnectWise simulator moves from Managed Silver to Managed Gold on
October 16 (the old agreement ends on the 15th), with and without proration; its devices come
from the NinjaOne simulator. Units: which contract bills which days, with literal contracts.
"""

from dataclasses import replace
from datetime import date
from fractions import Fraction
from types import SimpleNamespace

import pytest

from hub import planner, reconcile
from hub.engine import sync_once
from hub.linking import HubClient
from hub.mappings import Contract
from hub.money import format_quantity, round_half_up
from hub.periods import parse_period
from hub.records import Agreement
from tests.conftest import SEEN
from tests.test_psa_billing import PsaEnv, at, invoice, lines

OCTOBER = parse_period("2026-10")


def prorating(env):
    """Silver and Gold agreements prorate (agreement_types.toml of the test's mappings)."""
    path = env.mappings / "agreement_types.toml"
    text = path.read_text()
    for tier in ("silver", "gold"):
        text = text.replace(f'tier = "{tier}"\n', f'tier = "{tier}"\nproration = true\n', 1)
    path.write_text(text)


def org_of(env, name):
    return next(oid for oid, o in env.ninja._orgs.items() if o["name"] == name)


def setup(tmp_path, *, prorate, old_status="Expired"):
    env = PsaEnv(tmp_path)
    if prorate:
        prorating(env)
    company = env.co["birchwood"]
    env.silver = env.cw.add_agreement(company, "Managed Silver", start="2024-01-01T00:00:00Z",
                                      end="2026-10-15T00:00:00Z", status=old_status)
    env.gold = env.cw.add_agreement(company, "Managed Gold", start="2026-10-16T00:00:00Z")
    env.cid = f"connectwise-{company}"
    org = org_of(env, "Birchwood Legal")
    env.new_ws = env.ninja.add_device(org, "WINDOWS_WORKSTATION", created=at(10, 20), last_contact=SEEN,
                                      name="NEW-WS")
    env.gone_ws = env.ninja.add_device(org, "WINDOWS_WORKSTATION", created=at(1, 5), last_contact=at(10, 10),
                                       name="GONE-WS")
    return env


def counts(hub, contract, period, leave_out):
    """Workstations and servers counted for the whole period, without the devices ``leave_out``."""
    devices = [d for d in planner.client_devices(hub, contract) if str(d.source_id) not in leave_out]
    bill = reconcile.bill_devices(contract, hub.mappings, devices, period)
    got = {l.code.rsplit(":", 1)[1]: Fraction(l.quantity) for l in bill.lines}
    return got.get("workstation", Fraction(0)), got.get("server", Fraction(0))


def test_an_upgrade_that_prorates_bills_each_contract_its_own_days(tmp_path):
    env = setup(tmp_path, prorate=True)
    hub = env.hub()
    report = sync_once(hub)
    ctx = planner.build_context(hub, report, OCTOBER)

    # The contract in force at the period's end is Gold; Silver bills October 1-15, Gold 16-31.
    assert ctx.contracts[env.cid].agreement == str(env.gold)
    segs = ctx.segments[env.cid]
    assert [(s.contract.agreement, s.first, s.last, s.days, s.prorated) for s in segs] == [
        (str(env.silver), date(2026, 10, 1), date(2026, 10, 15), 15, True),
        (str(env.gold), date(2026, 10, 16), date(2026, 10, 31), 16, True)]

    bill = planner.bill_devices_in_force(hub, ctx.contracts[env.cid], OCTOBER)
    assert not bill.errors
    by_code = {l.code: l for l in bill.lines}
    assert set(by_code) == {"tier:silver:workstation", "tier:silver:server", "tier:gold:workstation",
                            "tier:gold:server"}
    ws, srv = counts(hub, ctx.contracts[env.cid], OCTOBER, {str(env.new_ws), str(env.gone_ws)})
    assert ws > 0 and srv > 0
    expected = {"tier:silver:workstation": (Fraction(15, 31) * (ws + 1), 10000),   # with GONE-WS
                "tier:silver:server": (Fraction(15, 31) * srv, 20000),
                "tier:gold:workstation": (Fraction(16, 31) * ws + Fraction(12, 31), 12000),   # NEW-WS: 20-31
                "tier:gold:server": (Fraction(16, 31) * srv, 24000)}
    for code, (quantity, unit) in expected.items():
        line = by_code[code]
        assert (line.quantity, line.unit_amount, line.amount) == (format_quantity(quantity), unit,
                                                                  round_half_up(quantity * unit)), code
    assert bill.total == sum(round_half_up(q * u) for q, u in expected.values())

    # Each line says which contract billed which days; each device its days.
    silver_ws, gold_ws = by_code["tier:silver:workstation"], by_code["tier:gold:workstation"]
    assert "2026-10-01 to 2026-10-15" in silver_ws.description and "2026-10-16 to 2026-10-31" in gold_ws.description
    assert f"agreement {env.silver} (Managed Silver), from 2026-10-01 to 2026-10-15: 15 of 31 days" in silver_ws.rule
    assert f"replaced by connectwise agreement {env.gold} (Managed Gold) on 2026-10-16" in silver_ws.rule
    assert f"agreement {env.gold} (Managed Gold), from 2026-10-16 to 2026-10-31: 16 of 31 days" in gold_ws.rule
    new = next(i for i in gold_ws.items if i["id"] == str(env.new_ws))
    assert (new["days"], new["weight"]) == ("12/31", format_quantity(Fraction(12, 31)))
    assert not any(i["id"] == str(env.new_ws) for i in silver_ws.items)
    gone = next(i for i in silver_ws.items if i["id"] == str(env.gone_ws))
    assert gone["days"] == "15/31" and not any(i["id"] == str(env.gone_ws) for i in gold_ws.items)
    # A device counted under one contract is not listed as excluded because the other did not see it.
    assert not {e.source_id for e in bill.excluded} & {str(env.new_ws), str(env.gone_ws)}

    # September was Silver's alone: the upgrade never reaches back.
    september = planner.bill_devices_in_force(hub, ctx.contracts[env.cid], OCTOBER.previous())
    assert {l.code for l in september.lines} == {"tier:silver:workstation", "tier:silver:server"}
    assert all("to 2026" not in l.description for l in september.lines)


def test_an_upgrade_that_does_not_prorate_bills_the_whole_period_at_the_contract_in_force_at_its_end(tmp_path):
    # The PSA still says Active for the agreement that ended on the 15th: its end date decides.
    env = setup(tmp_path, prorate=False, old_status="Active")
    hub = env.hub()
    report = sync_once(hub)
    ctx = planner.build_context(hub, report, OCTOBER)

    assert ctx.contracts[env.cid].agreement == str(env.gold)
    [seg] = ctx.segments[env.cid]
    assert (seg.contract.agreement, seg.first, seg.last, seg.prorated) == (str(env.gold), date(2026, 10, 1),
                                                                          date(2026, 10, 31), False)
    assert "none of them prorates" in seg.note and "in force at the period's end, bills the whole period" in seg.note

    bill = planner.bill_devices_in_force(hub, ctx.contracts[env.cid], OCTOBER)
    ws, srv = counts(hub, ctx.contracts[env.cid], OCTOBER, set())
    by_code = {l.code: l for l in bill.lines}
    assert set(by_code) == {"tier:gold:workstation", "tier:gold:server"}
    assert (by_code["tier:gold:workstation"].quantity, by_code["tier:gold:workstation"].amount) == (
        format_quantity(ws), round_half_up(ws * 12000))
    assert {str(env.new_ws), str(env.gone_ws)} <= {i["id"] for i in by_code["tier:gold:workstation"].items}
    assert all(f"agreement {env.silver} (Managed Silver), from 2026-10-01 to 2026-10-15" in l.rule
               for l in bill.lines)

    # The invoice the run pushed bills October at Gold, not at the Silver agreement the PSA still
    # calls active, and its device lines are those of the contracts in force.
    oct_invoice = invoice(report, env.cid)
    assert oct_invoice.status == "create" and report.pushed
    sent = lines(oct_invoice)
    assert {c for c in sent if c.startswith("tier:")} == set(by_code)
    assert all(sent[c].amount == by_code[c].amount for c in by_code)


def contract(agreement, tier, *, start=None, end=None, proration=False, kind="managed"):
    return Contract("c1", "Client", tier, "EUR", {"connectwise": "9"}, proration=proration, kind=kind,
                    agreement=agreement, origin=f"connectwise agreement {agreement} ({tier})", start=start, end=end)


def spans(segments):
    return [(s.contract.agreement, s.first.day, s.last.day, s.prorated) for s in segments]


def test_when_only_one_of_the_two_contracts_prorates_the_one_at_the_end_bills_the_whole_period():
    old = contract("1", "silver", end="2026-10-15")
    new = contract("2", "gold", start="2026-10-16", proration=True)
    [seg] = planner.contract_segments([new, old], OCTOBER)
    assert spans([seg]) == [("2", 1, 31, False)]
    assert "connectwise agreement 1 (silver) does not prorate" in seg.note


def test_a_prorating_contract_that_ends_or_starts_inside_the_period_bills_only_its_days():
    churned = contract("1", "silver", end="2026-10-09", proration=True)
    assert spans(planner.contract_segments([churned], OCTOBER)) == [("1", 1, 9, True)]
    onboarded = contract("2", "gold", start="2026-10-25", proration=True)
    assert spans(planner.contract_segments([onboarded], OCTOBER)) == [("2", 25, 31, True)]
    fixed = contract("3", "gold", start="2026-10-25")
    [seg] = planner.contract_segments([fixed], OCTOBER)
    assert spans([seg]) == [("3", 1, 31, False)] and "it does not prorate" in seg.note
    assert planner.contract_segments([contract("4", "gold", end="2026-09-30")], OCTOBER) == []


def test_overlapping_agreements_bill_each_day_once_by_kind_priority():
    managed = contract("7", "gold", start="2026-10-10", proration=True)
    block = contract("3", None, kind="block", proration=True)
    assert spans(planner.contract_segments([block, managed], OCTOBER)) == [("3", 1, 9, True), ("7", 10, 31, True)]
    whole = contract("5", "gold", proration=True)
    assert spans(planner.contract_segments([whole], OCTOBER)) == [("5", 1, 31, False)]


@pytest.mark.parametrize("start,end", [("2026-13-01", None), (None, "last friday")])
def test_an_agreement_date_that_is_not_a_date_holds_the_client_with_a_message(start, end):
    agreement = Agreement("connectwise", "41", "9", "Birchwood Managed Gold", "Managed Gold", "active", start, end)
    hub = SimpleNamespace(store=SimpleNamespace(iter_records=lambda table, source, client: [agreement]))
    client = HubClient("c", "Birchwood Legal", {"connectwise": "9"})
    contracts, errors = planner.psa_contracts(hub, "connectwise", client, OCTOBER)
    assert contracts == [] and errors == [
        f"connectwise agreement 'Birchwood Managed Gold' (id 41) of client 'Birchwood Legal' runs from {start!r} to "
        f"{end!r}, which are not dates, so the days it is in force in 2026-10 cannot be told; correct its start and "
        f"end dates in connectwise"]


def test_a_segment_is_cut_at_local_midnight_across_a_daylight_saving_change():
    paris = parse_period("2026-10", "Europe/Paris")     # summer time ends on October 25
    seg = planner.Segment(contract("2", "gold", start="2026-10-16", proration=True), date(2026, 10, 16),
                          date(2026, 10, 31), True)
    cut = planner._segment_period(paris, seg)
    assert (cut.start.isoformat(), cut.end.isoformat()) == ("2026-10-15T22:00:00+00:00", "2026-10-31T23:00:00+00:00")
    assert (cut.name, cut.first_day, cut.days) == ("2026-10", date(2026, 10, 16), 16)
    assert cut.end == paris.end


def test_a_change_that_keeps_the_tier_bills_each_device_once_on_one_line(tmp_path):
    env = PsaEnv(tmp_path)
    prorating(env)
    path = env.mappings / "agreement_types.toml"
    path.write_text(path.read_text() + '\n[types."Managed Gold Backup"]\nkind = "managed"\ntier = "gold"\n'
                                       'addons = ["backup"]\nproration = true\n')
    company = env.co["birchwood"]
    old = env.cw.add_agreement(company, "Managed Gold", end="2026-10-15T00:00:00Z", status="Expired")
    new = env.cw.add_agreement(company, "Managed Gold Backup", start="2026-10-16T00:00:00Z")
    hub = env.hub()
    report = sync_once(hub)
    ctx = planner.build_context(hub, report, OCTOBER)
    cid = f"connectwise-{company}"
    assert [s.contract.agreement for s in ctx.segments[cid]] == [str(old), str(new)]
    bill = planner.bill_devices_in_force(hub, ctx.contracts[cid], OCTOBER)
    by_code = {l.code: l for l in bill.lines}
    ws, _ = counts(hub, ctx.contracts[cid], OCTOBER, set())
    gold_ws = by_code["tier:gold:workstation"]
    # Every workstation was there all month: 15 days under one agreement and 16 under the other.
    assert len(gold_ws.items) == ws and {i["days"] for i in gold_ws.items} == {"31/31"}
    assert gold_ws.quantity == format_quantity(ws) and gold_ws.amount == round_half_up(ws * 12000)
    assert "2026-10-01 to 2026-10-15 and 2026-10-16 to 2026-10-31" in gold_ws.description
    # The backup add-on bills only the new agreement's days.
    backup = by_code["addon:backup:workstation"]
    assert backup.quantity == format_quantity(Fraction(16, 31) * ws) and {i["days"] for i in backup.items} == {"16/31"}


def test_the_contract_that_bills_a_day_is_the_one_whose_segment_holds_it():
    old = contract("1", "silver", end="2026-10-15", proration=True)
    new = contract("2", "gold", start="2026-10-16", proration=True)
    split = planner.contract_segments([old, new], OCTOBER)
    assert [planner.contract_on(split, date(2026, 10, d)).agreement for d in (1, 15, 16, 31)] == ["1", "1", "2", "2"]
    # Not prorating: the contract at the end bills every day; before the first contract, none.
    whole = planner.contract_segments([replace(old, proration=False), new], OCTOBER)
    assert planner.contract_on(whole, date(2026, 10, 3)).agreement == "2"
    late = planner.contract_segments([contract("3", "gold", start="2026-10-20", proration=True)], OCTOBER)
    assert planner.contract_on(late, date(2026, 10, 19)) is None
