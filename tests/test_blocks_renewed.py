"""Renewed blocks stay blocks, month after month, end to end against the simulators.

MSPs renew a prepaid block as a new agreement in the PSA and let the old one expire. Time charged
to the old agreement is still block time (BILLING.md, "Prepaid blocks"): it draws down the block
it was charged to and never comes back as time and materials; what the old block could not cover
is billed once as overage or carried into the new block, as the contract says; a renewal is
planned once per block, for the latest agreement only. One database, the hub's clock moved from
month to month, each month's invoice checked line by line, re-runs pushing nothing.
"""

from datetime import datetime, timezone

import pytest

from hub.engine import sync_once
from tests.test_psa_billing import PsaEnv, at, invoice, lines

UTC = timezone.utc


def on(month, day=2, year=2026):
    """The hub's clock on a day of the month after the one to invoice (the daemon's monthly run)."""
    return datetime(year, month, day, 8, 0, tzinfo=UTC)


def expire(env, agreement):
    """The old agreement as the PSA shows it once the renewal took over."""
    record = env.cw.agreements.get(agreement)
    env.cw.agreements.put({**record, "agreementStatus": "Expired"})
    env.cw.touch("agreements", [agreement])


def stripe_of(env, client):
    return sorted((i["metadata"]["msp_hub_action_key"], i["subtotal"]) for i in env.invoices()
                  if i["metadata"]["msp_hub_client_id"] == client)


def reported(item):
    return {r["id"]: r for r in item.bill.reported}


def run_twice(env, when):
    """The monthly run, then a re-run of it: the re-run pushes nothing."""
    report = sync_once(env.hub(clock=when))
    again = sync_once(env.hub(clock=when))
    assert not again.pushed, again.pushed
    return report


@pytest.fixture
def renewed(tmp_path):
    """Driftwood: a 20 h block from September to October (90.00 an hour), renewed in the PSA as a
    new 20 h agreement from November 1."""
    env = PsaEnv(tmp_path)
    old = env.cw.add_agreement(env.co["driftwood"], "Block Hours", name="Driftwood block 2026-09",
                               application_units="Hours", application_limit=20,
                               start="2026-09-01T00:00:00Z", end="2026-10-31T00:00:00Z")
    new = env.cw.add_agreement(env.co["driftwood"], "Block Hours", name="Driftwood block 2026-11",
                               application_units="Hours", application_limit=20, start="2026-11-01T00:00:00Z")
    return env, str(old), str(new), f"connectwise-{env.co['driftwood']}"


def test_time_of_the_expired_block_is_never_billed_as_time_and_materials(renewed):
    env, old, new, drift = renewed
    for day, hours in ((5, 8.0), (12, 6.0), (19, 3.0)):              # 17 of the old 20 h: 3 h left
        env.time("driftwood", hours, at(10, day), agreement_id=int(old))

    # November 2: October is invoiced. All drawn from the old block; no renewal (3 h > 2 h).
    october = run_twice(env, on(11))
    oct_inv = invoice(october, drift, "2026-10")
    assert oct_inv.status == "empty" and not oct_inv.bill.lines
    assert {r["reason"] for r in oct_inv.bill.reported} == {"drawn_from_block"}
    assert not [p for p in october.plan if p.client_id == drift and p.kind == "invoice" and p.action
                and p.action.key.startswith("renewal:")]

    # In November: time on the new agreement, an October entry on the old one entered late (4 h,
    # 1 h beyond its balance), and work outside any agreement.
    expire(env, int(old))
    late = env.time("driftwood", 4.0, at(10, 28), agreement_id=int(old))
    env.time("driftwood", 5.0, at(11, 6), agreement_id=int(new))
    after_hours = env.time("driftwood", 1.0, at(11, 9), "After Hours")
    november = run_twice(env, on(12))
    # October had nothing to bill when it was first planned; the late entry gives it something, and
    # every ended period with something to bill is invoiced: its overage goes on an October invoice.
    octo = invoice(november, drift, "2026-10")
    assert octo.status == "create" and set(lines(octo)) == {f"overage:{old}:entry:{late}"}
    over = lines(octo)[f"overage:{old}:entry:{late}"]
    assert (over.quantity, over.unit_amount, over.amount) == ("1", 9000, 9000)
    assert [(i["id"], i["overage_hours"], i["period"]) for i in over.items] == [(str(late), "1", "2026-10")]
    nov = invoice(november, drift, "2026-11")
    assert nov.status == "create"
    nov_lines = lines(nov)
    assert set(nov_lines) == {f"time:entry:{after_hours}"}         # never the old block's hours as T&M
    assert nov_lines[f"time:entry:{after_hours}"].amount == 15000
    drawn = {i: r for i, r in reported(nov).items() if r["reason"] == "drawn_from_block"}
    assert str(late) not in drawn and drawn
    assert f"of agreement {new}" in next(r["detail"] for r in drawn.values() if r["hours"] == "5")
    # The expired block is overdrawn, but it was renewed: no renewal is planned for it.
    assert not [p for p in november.pushed if p["key"].startswith(("renewal:", "notice:"))]

    # In December the new block falls to 1.5 h: one renewal, of the new agreement.
    for day, hours in ((3, 6.0), (10, 4.0), (17, 3.5)):
        env.time("driftwood", hours, at(12, day), agreement_id=int(new))
    december = run_twice(env, on(1, year=2027))
    assert {p["key"] for p in december.pushed if p["key"].startswith(("renewal:", "notice:"))} == {
        f"renewal:{drift}:{new}:2", f"notice:{drift}:{new}:1"}
    dec = invoice(december, drift, "2026-12")
    assert dec.status == "empty" and not dec.bill.lines          # nothing billed twice, nothing as T&M

    # January: a month later, nothing new is billed and the renewal is not planned again.
    january = run_twice(env, on(2, year=2027))
    assert not [p for p in january.pushed if p["key"].startswith(("renewal:", "notice:"))]
    jan = invoice(january, drift, "2027-01")
    assert not jan.bill.lines

    # Over the four months: the overage hour, the T&M hour and one block, each once.
    assert stripe_of(env, drift) == sorted([(f"invoice:{drift}:2026-10", 9000), (f"invoice:{drift}:2026-11", 15000),
                                            (f"renewal:{drift}:{new}:2", 180000)])


def test_hours_an_expired_block_could_not_cover_are_carried_into_the_new_one(tmp_path):
    env = PsaEnv(tmp_path)
    old = env.cw.add_agreement(env.co["driftwood"], "Block 30h", application_units="Hours", application_limit=30,
                               start="2026-09-01T00:00:00Z", end="2026-10-31T00:00:00Z")
    new = env.cw.add_agreement(env.co["driftwood"], "Block 30h", application_units="Hours", application_limit=30,
                               start="2026-11-01T00:00:00Z")
    drift = f"connectwise-{env.co['driftwood']}"
    env.time("driftwood", 20.0, at(10, 6), agreement_id=old)
    env.time("driftwood", 12.0, at(10, 20), agreement_id=old)           # 2 h beyond the old 30 h: carried
    october = run_twice(env, on(11))
    oct_inv = invoice(october, drift, "2026-10")
    assert not oct_inv.bill.lines
    assert sorted((r["reason"], r["hours"]) for r in oct_inv.bill.reported) == [
        ("carried_pending", "2"), ("drawn_from_block", "10"), ("drawn_from_block", "20")]

    # The new block starts with the 2 h owed: 26 h of November leave it at 2 h, the threshold.
    expire(env, old)
    env.time("driftwood", 26.0, at(11, 10), agreement_id=new)
    november = run_twice(env, on(12))
    nov = invoice(november, drift, "2026-11")
    assert not nov.bill.lines and nov.status == "empty"
    assert {p["key"] for p in november.pushed} >= {f"renewal:{drift}:{new}:2"}
    renewal = next(p for p in november.plan if p.action and p.action.key == f"renewal:{drift}:{new}:2")
    assert "block 1 has 2 h left" in " ".join(renewal.reasons)
    assert stripe_of(env, drift) == [(f"renewal:{drift}:{new}:2", 255000)]
    assert not [k for k, _ in stripe_of(env, drift) if f":{old}:" in k]


def test_blocks_of_every_block_agreement_and_the_renewal_of_the_latest_only(tmp_path):
    from dataclasses import replace

    from hub import planner
    from hub.mappings import contract_from_agreement
    from hub.periods import month

    env = PsaEnv(tmp_path)
    co = env.co["driftwood"]
    old = env.cw.add_agreement(co, "Block Hours", application_units="Hours", application_limit=20,
                               start="2026-09-01T00:00:00Z", end="2026-10-31T00:00:00Z", status="Expired")
    new = env.cw.add_agreement(co, "Block 10h", application_units="Hours", application_limit=10,
                               start="2026-11-01T00:00:00Z")
    env.cw.add_agreement(co, "Managed Gold", start="2026-01-01T00:00:00Z")          # not a block: no block
    env.time("driftwood", 19.0, at(10, 5), agreement_id=old)                        # old: 1 h left
    env.time("driftwood", 9.0, at(11, 5), agreement_id=new)                         # new: 1 h left
    sync_once(env.hub(clock=on(12)), dry_run=True)
    hub = env.hub(clock=on(12))
    drift = f"connectwise-{co}"
    agreements = {a.source_id: a for a in hub.store.iter_records("agreements", "connectwise", str(co))}

    def contract_of(agreement):
        return contract_from_agreement(drift, "Driftwood Cafe", {"connectwise": str(co)}, agreements[str(agreement)],
                                       hub.mappings)

    current = contract_of(new)
    blocks = planner.blocks_for(hub, current)
    assert sorted((b.agreement, b.number, b.hours, b.rate, b.started_at.date().isoformat()) for b in blocks) == [
        (str(old), 1, 20, 9000, "2026-09-01"), (str(new), 1, 10, 9500, "2026-11-01")]

    ctx = planner.Context(None, {}, psa="connectwise")
    now, period = on(12), month(2026, 12, "UTC")
    keys = {i.action.key for i in planner.plan_renewal(hub, ctx, current, period, now)}
    assert keys == {f"renewal:{drift}:{new}:2", f"notice:{drift}:{new}:1"}
    # A month where both agreements are in force and the old one is the contract: the same renewal.
    keys = {i.action.key for i in planner.plan_renewal(hub, ctx, contract_of(old), period, now)}
    assert keys == {f"renewal:{drift}:{new}:2", f"notice:{drift}:{new}:1"}
    # A block contract naming no agreement holds its client: no renewal is decided.
    assert planner.plan_renewal(hub, ctx, replace(current, agreement=None), period, now) == []
