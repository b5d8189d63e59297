"""Five months of an MSP, end to end: every month invoiced, every change billed once, to the cent.

One database, the NinjaOne, ConnectWise and Stripe simulators, the hub's clock moved to the 1st of
each month (the daemon's monthly run) in Europe/Paris, where October 2026 ends summer time. The
vendors change in between as an MSP's do: devices added, one reclassified, one decommissioned, one
pending then approved after a month was invoiced; a prepaid block renewed as a new PSA agreement; a
client upgraded mid-month (Silver to Gold, both prorating); a client churned; a client onboarded;
time entries entered late and one edited down after it was invoiced (a credit). Each month's
invoice is checked line by line, each run is re-run and pushes nothing, and the sum of every Stripe
invoice equals the sum worked out by hand from BILLING.md.

The smaller tests after it take the edge cases one by one, each with the amount BILLING.md gives:
a late device of a month two contracts shared, an invoiced overage credited, late time priced by
the contract of its own month (after an upgrade and after a downgrade), a churned client's late
charge held for a person, and the line a late entry is billed on.

Prices (mappings/tiers.toml, mappings/time.toml): Silver 100.00 a workstation, 200.00 a server;
Gold 120.00 and 240.00; the backup add-on 15.00 and 45.00; Remote Support 95.00 an hour, Onsite
125.00 (1 h minimum), After Hours 150.00, Project Work 110.00; the 20 h block 1800.00. Entries are
rounded up to 15 minutes. Amounts below are in cents, each line rounded half up once.
"""

from datetime import datetime, timezone

import pytest

from hub.config import HubConfig
from hub.engine import sync_once
from hub.store import Store
from hub.testing import ConnectorPlugin, make_hub
from plugins.ninjaone.simulator import NinjaOneSimulator
from tests.test_late_changes import LOOSE, edit_device, edit_entry
from tests.test_psa_billing import PsaEnv, invoice, lines

UTC = timezone.utc
PARIS = "Europe/Paris"


def utc(year, month, day, hour=9, minute=0):
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def ts(year, month, day, hour=9, minute=0):
    return utc(year, month, day, hour, minute).timestamp()


# The monthly runs, 08:00 in Paris on the 1st (07:00 UTC in winter).
RUNS = {"2026-10": utc(2026, 11, 1, 7), "2026-11": utc(2026, 12, 1, 7), "2026-12": utc(2027, 1, 1, 7),
        "2027-01": utc(2027, 2, 1, 7), "2027-02": utc(2027, 3, 1, 7)}
LONG_AGO = ts(2026, 1, 10)


class FiveMonths(PsaEnv):
    """The PSA environment with no generated devices (every device is one the test names), billing
    in Europe/Paris, Silver and Gold agreements prorating."""

    def __init__(self, tmp_path):
        super().__init__(tmp_path, billing=LOOSE)
        self.ninja = NinjaOneSimulator(seed=3, organizations=6, devices=0, now=ts(2026, 10, 31))
        path = self.mappings / "agreement_types.toml"
        text = path.read_text()
        for tier in ("silver", "gold"):
            text = text.replace(f'tier = "{tier}"\n', f'tier = "{tier}"\nproration = true\n', 1)
        path.write_text(text)
        self.gone: set[int] = set()

    def hub(self, *plugins, clock=None):
        return make_hub(ConnectorPlugin(*self.connectors()), *plugins, mappings=self.mappings,
                        config=HubConfig(database=":memory:", timezone=PARIS, billing=dict(self.billing)),
                        store=Store(self.db), clock=lambda: clock)

    def cid(self, name):
        return f"connectwise-{self.co[name]}"

    def device(self, org, name, node_class="WINDOWS_WORKSTATION", created=LONG_AGO, approval="APPROVED"):
        return self.ninja.add_device(org, node_class, approval=approval, created=created, last_contact=created,
                                     name=name)

    def seen(self, when):
        """The RMM's clock is ``when``; every device still in use has just reported."""
        self.ninja.now = when.timestamp()
        for d in self.ninja.device_ids:
            if d not in self.gone:
                edit_device(self.ninja, d, lastContact=when.timestamp() - 3600, lastUpdate=when.timestamp() - 3600)

    def set_agreement(self, agreement, **fields):
        """An agreement edited in the PSA (its dates, its status)."""
        self.cw.agreements.put({**self.cw.agreements.get(agreement), **fields})
        self.cw.touch("agreements", [agreement])


def month_run(env, period):
    """The monthly run that invoices ``period``, then a re-run of it, which pushes nothing."""
    when = RUNS[period]
    env.seen(when)
    report = sync_once(env.hub(clock=when))
    assert not report.errors, report.errors
    again = sync_once(env.hub(clock=when))
    assert not again.pushed, again.pushed
    return report


def amounts(item):
    """{code: (quantity, unit, amount)} of an invoice's lines."""
    return {c: (l.quantity, l.unit_amount, l.amount) for c, l in lines(item).items()}


def ids(item, code):
    return {i["id"] for i in lines(item)[code].items}


def late(item):
    return {c for c in lines(item) if c.startswith("delta:")}


def stripe(env):
    return {i["metadata"]["msp_hub_action_key"]: i["subtotal"] for i in env.invoices()}


def test_five_months_of_changes_are_each_billed_once_to_the_cent(tmp_path):
    env = FiveMonths(tmp_path)
    co = env.co
    acme, birch, cobalt, drift, elm, fair = ("acme", env.cid("birchwood"), env.cid("cobalt"), env.cid("driftwood"),
                                             env.cid("elm"), env.cid("fairview"))

    # Acme (org 1): Gold with backup from contracts.toml, not prorating.
    ws1, ws2, moved = (env.device(1, n) for n in ("ACME-WS1", "ACME-WS2", "ACME-MOVE"))
    srv = env.device(1, "ACME-SRV", "WINDOWS_SERVER")
    old_srv = env.device(1, "ACME-OLD-SRV", "WINDOWS_SERVER")
    # Birchwood (org 2): Managed Silver, upgraded in January. Cobalt (org 3): Managed Gold, churns.
    silver = env.cw.add_agreement(co["birchwood"], "Managed Silver", start="2024-01-01T00:00:00Z")
    for name, cls in (("BIRCH-WS1", "WINDOWS_WORKSTATION"), ("BIRCH-WS2", "WINDOWS_WORKSTATION"),
                      ("BIRCH-SRV", "WINDOWS_SERVER")):
        env.device(2, name, cls)
    cobalt_gold = env.cw.add_agreement(co["cobalt"], "Managed Gold", start="2024-01-01T00:00:00Z")
    for name in ("COBALT-WS1", "COBALT-WS2", "COBALT-WS3"):
        env.device(3, name)
    # Driftwood: a 20 h block (90.00 an hour) from September to November.
    old_block = env.cw.add_agreement(co["driftwood"], "Block Hours", name="Driftwood block 2026-09",
                                     application_units="Hours", application_limit=20,
                                     start="2026-09-01T00:00:00Z", end="2026-11-30T00:00:00Z")
    for day, hours in ((6, 6.0), (20, 4.0)):
        env.time("driftwood", hours, ts(2026, 10, day), agreement_id=old_block)
    # Elm Street: break/fix. October in Paris runs from 2026-09-30 22:00 UTC (summer time) to
    # 2026-10-31 23:00 UTC (winter time).
    env.cw.add_agreement(co["elm"], "Break/Fix", start="2024-01-01T00:00:00Z")
    first = env.time("elm", 1.0, ts(2026, 9, 30, 22, 30))               # October 1, 00:30 in Paris
    waived = env.time("elm", 2.0, ts(2026, 10, 10), "After Hours")
    last = env.time("elm", 1.5, ts(2026, 10, 31, 22, 30))               # October 31, 23:30 in Paris
    november_1 = env.time("elm", 1.0, ts(2026, 10, 31, 23, 30))         # November 1, 00:30 in Paris

    # ---- 2026-10, invoiced on November 1 ----
    october = month_run(env, "2026-10")
    acme_oct = invoice(october, acme, "2026-10")
    # 3 workstations at 120.00 + 15.00 backup; 2 servers at 240.00 + 45.00.
    assert amounts(acme_oct) == {"tier:gold:workstation": ("3", 12000, 36000), "tier:gold:server": ("2", 24000, 48000),
                                 "addon:backup:workstation": ("3", 1500, 4500),
                                 "addon:backup:server": ("2", 4500, 9000)}
    # 2 workstations at 100.00 and a server at 200.00, all month.
    assert amounts(invoice(october, birch, "2026-10")) == {"tier:silver:workstation": ("2", 10000, 20000),
                                                           "tier:silver:server": ("1", 20000, 20000)}
    assert amounts(invoice(october, cobalt, "2026-10")) == {"tier:gold:workstation": ("3", 12000, 36000)}
    # 10 of the block's 20 h: drawn from it, nothing to bill.
    assert invoice(october, drift, "2026-10").status == "empty"
    # Remote 1 h (95.00) + 1.5 h (142.50) on either side of the daylight-saving month; After Hours
    # 2 h (300.00), one line per entry, dated in Paris. The entry at 23:30 UTC on October 31 is November's.
    elm_oct = invoice(october, elm, "2026-10")
    assert amounts(elm_oct) == {f"time:entry:{first}": ("1", 9500, 9500), f"time:entry:{last}": ("1.5", 9500, 14250),
                                f"time:entry:{waived}": ("2", 15000, 30000)}
    assert lines(elm_oct)[f"time:entry:{first}"].description.startswith("2026-10-01, ")
    assert lines(elm_oct)[f"time:entry:{last}"].description.startswith("2026-10-31, ")
    assert not [p for p in october.plan if p.client_id == fair and p.kind == "invoice" and p.period == "2026-10"]

    # ---- November ----
    new_ws = env.device(1, "ACME-NEW", created=ts(2026, 11, 15))         # added mid-month (no proration)
    pending = env.device(1, "ACME-PEND", created=ts(2026, 11, 3), approval="PENDING")
    env.time("driftwood", 8.5, ts(2026, 11, 12), agreement_id=old_block)   # 18.5 of 20 h: 1.5 h left
    onsite = env.time("elm", 0.5, ts(2026, 11, 12), "Onsite")              # the 1 h on-site minimum
    env.device(6, "FAIR-WS1", created=ts(2026, 11, 20))                    # Fairview, before its contract

    # ---- 2026-11, invoiced on December 1 ----
    november = month_run(env, "2026-11")
    acme_nov = invoice(november, acme, "2026-11")
    # 4 workstations (ACME-NEW for the whole month; ACME-PEND pending, not counted), 2 servers.
    assert amounts(acme_nov) == {"tier:gold:workstation": ("4", 12000, 48000), "tier:gold:server": ("2", 24000, 48000),
                                 "addon:backup:workstation": ("4", 1500, 6000),
                                 "addon:backup:server": ("2", 4500, 9000)}
    assert str(pending) not in ids(acme_nov, "tier:gold:workstation")
    assert amounts(invoice(november, birch, "2026-11")) == amounts(invoice(october, birch, "2026-10"))
    assert amounts(invoice(november, cobalt, "2026-11")) == amounts(invoice(october, cobalt, "2026-10"))
    # Remote 1 h (95.00, from October 31 in UTC) and Onsite 0.5 h billed 1 h (125.00).
    assert amounts(invoice(november, elm, "2026-11")) == {f"time:entry:{november_1}": ("1", 9500, 9500),
                                                          f"time:entry:{onsite}": ("1", 12500, 12500)}
    # The block falls to 1.5 h: one renewal (a 20 h block, 1800.00) and one notice.
    assert invoice(november, drift, "2026-11").status == "empty"
    assert {p["key"] for p in november.pushed if p["key"].startswith(("renewal:", "notice:"))} == {
        f"renewal:{drift}:{old_block}:2", f"notice:{drift}:{old_block}:1"}

    # ---- December ----
    # The renewal is entered in the PSA as a new agreement; the old one expires.
    new_block = env.cw.add_agreement(co["driftwood"], "Block Hours", name="Driftwood block 2026-12",
                                     application_units="Hours", application_limit=20, start="2026-12-01T00:00:00Z")
    env.set_agreement(old_block, agreementStatus="Expired")
    late_block = env.time("driftwood", 1.0, ts(2026, 11, 27), agreement_id=old_block)   # November's, entered late
    env.time("driftwood", 6.0, ts(2026, 12, 9), agreement_id=new_block)
    # ACME-PEND approved on December 5; the hourly pull of that day sees it.
    env.ninja.set_approval(pending, "APPROVED")
    env.seen(utc(2026, 12, 5, 10))
    mid_december = sync_once(env.hub(clock=utc(2026, 12, 5, 10)))
    assert not mid_december.pushed and not mid_december.errors          # nothing ended since December 1
    # Elm: an October entry waived to 0.5 h, a November entry entered late, December's own work.
    edit_entry(env, waived, actualHours=0.5)
    late_entry = env.time("elm", 1.0, ts(2026, 11, 20), "After Hours")
    december_remote = env.time("elm", 3.0, ts(2026, 12, 8))
    # Cobalt leaves: its agreement ends on December 20.
    env.set_agreement(cobalt_gold, endDate="2026-12-20T00:00:00Z", noEndingDateFlag=False)
    # Fairview is onboarded: Managed Silver from December 1; a second workstation on December 17
    # in Paris (23:30 UTC on the 16th).
    env.cw.add_agreement(co["fairview"], "Managed Silver", start="2026-12-01T00:00:00Z")
    env.device(6, "FAIR-WS2", created=ts(2026, 12, 16, 23, 30))

    # ---- 2026-12, invoiced on January 1; ACME-OLD-SRV was last seen on December 10, then
    # decommissioned ----
    env.seen(RUNS["2026-12"])
    edit_device(env.ninja, old_srv, lastContact=ts(2026, 12, 10), lastUpdate=ts(2026, 12, 10))
    env.ninja.set_approval(old_srv, "DECOMMISSIONED")
    env.gone.add(old_srv)
    december = month_run(env, "2026-12")
    acme_dec = invoice(december, acme, "2026-12")
    # 5 workstations (ACME-PEND approved on December 5 counts for December, never for November);
    # 2 servers (ACME-OLD-SRV seen on December 10).
    assert amounts(acme_dec) == {"tier:gold:workstation": ("5", 12000, 60000), "tier:gold:server": ("2", 24000, 48000),
                                 "addon:backup:workstation": ("5", 1500, 7500),
                                 "addon:backup:server": ("2", 4500, 9000)}
    assert {str(pending), str(new_ws)} <= ids(acme_dec, "tier:gold:workstation")
    assert str(old_srv) in ids(acme_dec, "tier:gold:server")
    assert late(acme_dec) == set()                                      # the approval never reaches back
    # Cobalt: 3 workstations for 20 of December's 31 days: 3 x 20/31 x 120.00 = 232.258... -> 232.26.
    cobalt_dec = amounts(invoice(december, cobalt, "2026-12"))
    assert list(cobalt_dec) == ["tier:gold:workstation"] and cobalt_dec["tier:gold:workstation"][1:] == (12000, 23226)
    # Fairview: FAIR-WS1 all month, FAIR-WS2 from December 17 (15 of 31 days in Paris; 16 in UTC):
    # (1 + 15/31) x 100.00 = 148.387... -> 148.39.
    fair_dec = amounts(invoice(december, fair, "2026-12"))
    assert list(fair_dec) == ["tier:silver:workstation"] and fair_dec["tier:silver:workstation"][1:] == (10000, 14839)
    # Elm: December's 3 h remote (285.00); November's late entry, 1 h After Hours (150.00); the
    # October entry waived from 2 h to 0.5 h, credited 1.5 h x 150.00 (-225.00).
    elm_dec = invoice(december, elm, "2026-12")
    got = amounts(elm_dec)
    assert got[f"time:entry:{december_remote}"] == ("3", 9500, 28500)
    assert got[f"delta:2026-10:time:{waived}"] == ("-1.5", 15000, -22500)
    late_lines = [l for l in elm_dec.bill.lines if any(str(i.get("id")) == str(late_entry) for i in l.items)]
    assert [(l.amount, l.items[0]["period"]) for l in late_lines] == [(15000, "2026-11")]
    assert elm_dec.total == 28500 + 15000 - 22500
    # Driftwood: the old block's late hour draws on the old block, the new block's hours on the
    # new one; nothing as time and materials, no second renewal.
    drift_dec = invoice(december, drift, "2026-12")
    assert drift_dec.status == "empty" and not drift_dec.bill.lines
    assert not [p for p in december.pushed if p["key"].startswith(("renewal:", "notice:"))]
    assert not [l for p in december.plan if p.client_id == drift and p.bill for l in p.bill.lines]
    drawn = {r["id"]: r for p in december.plan if p.client_id == drift and p.period == "2026-11"
             for r in p.bill.reported}
    assert drawn[str(late_block)]["reason"] == "drawn_from_block"
    assert f"of agreement {old_block}" in drawn[str(late_block)]["detail"]
    assert amounts(invoice(december, birch, "2026-12")) == amounts(invoice(october, birch, "2026-10"))

    # ---- January ----
    edit_device(env.ninja, moved, nodeClass="WINDOWS_SERVER")            # reclassified in January
    env.set_agreement(silver, endDate="2027-01-15T00:00:00Z", noEndingDateFlag=False, agreementStatus="Expired")
    env.cw.add_agreement(co["birchwood"], "Managed Gold", start="2027-01-16T00:00:00Z")
    env.time("driftwood", 5.0, ts(2027, 1, 14), agreement_id=new_block)
    project = env.time("elm", 2.0, ts(2027, 1, 12), "Project Work")

    # ---- 2027-01, invoiced on February 1 ----
    january = month_run(env, "2027-01")
    acme_jan = invoice(january, acme, "2027-01")
    # ACME-MOVE is a server now: 4 workstations, 2 servers; no late change for November or December.
    assert amounts(acme_jan) == {"tier:gold:workstation": ("4", 12000, 48000), "tier:gold:server": ("2", 24000, 48000),
                                 "addon:backup:workstation": ("4", 1500, 6000),
                                 "addon:backup:server": ("2", 4500, 9000)}
    assert ids(acme_jan, "tier:gold:server") == {str(srv), str(moved)}
    assert ids(acme_jan, "tier:gold:workstation") == {str(d) for d in (ws1, ws2, new_ws, pending)}
    assert late(acme_jan) == set()
    assert ("ACME-OLD-SRV", "not seen during the period (last contact 2026-12-10)") in {
        (e.name, e.reason) for e in acme_jan.bill.excluded}
    # Birchwood: Silver January 1-15, Gold 16-31, both prorating.
    #   Silver workstations 2 x 15/31 x 100.00 = 96.774... -> 96.77; server 15/31 x 200.00 -> 96.77.
    #   Gold workstations 2 x 16/31 x 120.00 = 123.870... -> 123.87; server 16/31 x 240.00 -> 123.87.
    birch_jan = invoice(january, birch, "2027-01")
    assert {c: a[1:] for c, a in amounts(birch_jan).items()} == {
        "tier:silver:workstation": (10000, 9677), "tier:silver:server": (20000, 9677),
        "tier:gold:workstation": (12000, 12387), "tier:gold:server": (24000, 12387)}
    assert late(birch_jan) == set()
    # Cobalt churned: no contract, no invoice.
    assert not [p for p in january.plan if p.client_id == cobalt and p.bill and p.bill.lines]
    assert amounts(invoice(january, fair, "2027-01")) == {"tier:silver:workstation": ("2", 10000, 20000)}
    assert amounts(invoice(january, elm, "2027-01")) == {f"time:entry:{project}": ("2", 11000, 22000)}
    assert not invoice(january, drift, "2027-01").bill.lines                       # 11 of the new 20 h

    # ---- 2027-02, invoiced on March 1 ----
    february = month_run(env, "2027-02")
    assert amounts(invoice(february, acme, "2027-02")) == amounts(acme_jan)
    assert amounts(invoice(february, birch, "2027-02")) == {"tier:gold:workstation": ("2", 12000, 24000),
                                                            "tier:gold:server": ("1", 24000, 24000)}
    assert amounts(invoice(february, fair, "2027-02")) == {"tier:silver:workstation": ("2", 10000, 20000)}

    # An older month forced again in March pushes nothing.
    forced = sync_once(env.hub(clock=RUNS["2027-02"]), period="2026-12")
    assert not forced.pushed and not forced.errors
    assert {p.status for p in forced.plan if p.kind == "invoice"} <= {"unchanged", "changed_after_sent", "empty"}

    # ---- Everything Stripe holds, each once ----
    sent = stripe(env)
    assert len(sent) == len(env.invoices())                             # no action key twice
    expected = {
        # Acme: 3 x 135.00 + 2 x 285.00 = 975.00; 4 ws = 1110.00; 5 ws = 1245.00; then 4 ws and 2
        # servers (ACME-MOVE a server, ACME-OLD-SRV gone) = 1110.00 in January and February.
        **{f"invoice:acme:{p}": a for p, a in (("2026-10", 97500), ("2026-11", 111000), ("2026-12", 124500),
                                               ("2027-01", 111000), ("2027-02", 111000))},
        # Birchwood: 2 x 100.00 + 200.00 = 400.00 a month under Silver; January split 96.77 + 96.77
        # + 123.87 + 123.87 = 441.28; February 2 x 120.00 + 240.00 = 480.00.
        **{f"invoice:{birch}:{p}": a for p, a in (("2026-10", 40000), ("2026-11", 40000), ("2026-12", 40000),
                                                  ("2027-01", 44128), ("2027-02", 48000))},
        # Cobalt: 3 x 120.00 = 360.00 in October and November; 232.26 for December 1-20.
        **{f"invoice:{cobalt}:{p}": a for p, a in (("2026-10", 36000), ("2026-11", 36000), ("2026-12", 23226))},
        # Driftwood: the one renewal of its 20 h block, 1800.00; its hours never as T&M.
        f"renewal:{drift}:{old_block}:2": 180000,
        # Elm: 237.50 + 300.00 = 537.50; 95.00 + 125.00 = 220.00; 285.00 + 150.00 - 225.00 = 210.00;
        # 2 h x 110.00 = 220.00; nothing in February.
        **{f"invoice:{elm}:{p}": a for p, a in (("2026-10", 53750), ("2026-11", 22000), ("2026-12", 21000),
                                                ("2027-01", 22000))},
        # Fairview: 148.39 for December, then 2 x 100.00.
        **{f"invoice:{fair}:{p}": a for p, a in (("2026-12", 14839), ("2027-01", 20000), ("2027-02", 20000))},
    }
    assert sent == expected
    assert sum(sent.values()) == 555000 + 212128 + 95226 + 180000 + 118750 + 54839 == 1215943


def late_entry_env(tmp_path):
    """Elm Street on break/fix: one After Hours hour in October, invoiced on November 1; then an
    October hour entered late and two hours of November's own."""
    env = FiveMonths(tmp_path)
    env.cw.add_agreement(env.co["elm"], "Break/Fix", start="2024-01-01T00:00:00Z")
    env.time("elm", 1.0, ts(2026, 10, 5), "After Hours")
    month_run(env, "2026-10")
    entry = env.time("elm", 1.0, ts(2026, 10, 20), "After Hours")        # entered in November
    env.time("elm", 2.0, ts(2026, 11, 10), "After Hours")
    return env, entry, invoice(month_run(env, "2026-11"), env.cid("elm"), "2026-11")


def test_a_late_entry_is_billed_once_at_its_rate_on_the_next_invoice(tmp_path):
    env, entry, nov = late_entry_env(tmp_path)
    # 1 h of October, late, and 2 h of November, at 150.00: 450.00, once.
    assert nov.total == 45000
    assert [i["subtotal"] for i in env.invoices()
            if i["metadata"]["msp_hub_action_key"] == f"invoice:{env.cid('elm')}:2026-11"] == [45000]
    assert [i["period"] for l in nov.bill.lines for i in l.items if str(i["id"]) == str(entry)] == ["2026-10"]


def test_the_line_of_a_late_entry_names_its_period_and_the_entry(tmp_path):
    env, entry, nov = late_entry_env(tmp_path)
    late_lines = [l for l in nov.bill.lines if any(str(i["id"]) == str(entry) for i in l.items)]
    assert [(l.quantity, l.amount) for l in late_lines] == [("1", 15000)]       # a line of its own
    assert "2026-10" in late_lines[0].description and str(entry) in late_lines[0].description
    own = [line for line in nov.bill.lines if line.code.startswith("time:") and line not in late_lines]
    assert [(line.quantity, line.amount, line.items[0]["period"]) for line in own] == [("2", 30000, "2026-11")]


def test_a_device_reported_late_for_a_month_two_contracts_shared_is_billed_each_its_days(tmp_path):
    env = FiveMonths(tmp_path)
    birch = env.cid("birchwood")
    # Birchwood moves from Silver to Gold on November 16, both prorating; one workstation all along.
    env.cw.add_agreement(env.co["birchwood"], "Managed Silver", start="2024-01-01T00:00:00Z",
                         end="2026-11-15T00:00:00Z", status="Expired")
    env.cw.add_agreement(env.co["birchwood"], "Managed Gold", start="2026-11-16T00:00:00Z")
    env.device(2, "BIRCH-WS1")
    november = invoice(month_run(env, "2026-11"), birch, "2026-11")
    # 15/30 x 100.00 = 50.00 under Silver, 15/30 x 120.00 = 60.00 under Gold.
    assert november.total == 5000 + 6000
    # A workstation in use since November 10 that the RMM reports only in December.
    env.device(2, "BIRCH-LATE", created=ts(2026, 11, 10))
    december = invoice(month_run(env, "2026-12"), birch, "2026-12")
    # December: 2 x 120.00. November, late, each contract its own days of BIRCH-LATE: Silver
    # November 10-15, 6/30 x 100.00 = 20.00; Gold November 16-30, 15/30 x 120.00 = 60.00.
    assert lines(december)["tier:gold:workstation"].amount == 24000
    assert sum(l.amount for c, l in lines(december).items() if c.startswith("delta:2026-11:")) == 2000 + 6000
    assert december.total == 24000 + 2000 + 6000


def test_an_invoiced_overage_is_credited_when_its_entry_is_edited_down(tmp_path):
    env = FiveMonths(tmp_path)
    drift = env.cid("driftwood")
    block = env.cw.add_agreement(env.co["driftwood"], "Block Hours", application_units="Hours", application_limit=20,
                                 start="2026-09-01T00:00:00Z")
    env.time("driftwood", 15.0, ts(2026, 10, 5), agreement_id=block)
    entry = env.time("driftwood", 6.0, ts(2026, 10, 8), agreement_id=block)
    october = invoice(month_run(env, "2026-10"), drift, "2026-10")
    # 21 h on a 20 h block: 1 h of the second entry beyond the balance at the overage rate, 90.00.
    assert amounts(october) == {f"overage:{block}:entry:{entry}": ("1", 9000, 9000)}
    edit_entry(env, entry, actualHours=5.0)                 # one hour too many, corrected in November
    after_hours = env.time("driftwood", 1.0, ts(2026, 11, 8), "After Hours")
    november = invoice(month_run(env, "2026-11"), drift, "2026-11")
    # November: 1 h After Hours, 150.00; October's block is no longer overdrawn (20 of 20 h): the
    # hour of overage billed in October is credited, -90.00.
    assert lines(november)[f"time:entry:{after_hours}"].amount == 15000
    assert sum(l.amount for c, l in lines(november).items() if c.startswith("delta:2026-10:")) == -9000
    assert november.total == 15000 - 9000


def test_a_late_entry_is_billed_by_the_contract_of_its_own_period(tmp_path):
    env = FiveMonths(tmp_path)
    elm = env.cid("elm")
    break_fix = env.cw.add_agreement(env.co["elm"], "Break/Fix", start="2024-01-01T00:00:00Z")
    env.device(5, "ELM-WS")
    remote = env.time("elm", 1.0, ts(2026, 11, 11), "Remote Support")
    assert amounts(invoice(month_run(env, "2026-11"), elm, "2026-11")) == {f"time:entry:{remote}": ("1", 9500, 9500)}
    # From December 1 Elm is on Managed Gold, which includes remote support.
    env.set_agreement(break_fix, endDate="2026-11-30T00:00:00Z", noEndingDateFlag=False, agreementStatus="Expired")
    env.cw.add_agreement(env.co["elm"], "Managed Gold", start="2026-12-01T00:00:00Z")
    late_entry = env.time("elm", 2.0, ts(2026, 11, 20), "Remote Support")   # November's, entered in December
    env.time("elm", 1.0, ts(2026, 12, 3), "Remote Support")                 # December's: included in Gold
    december = invoice(month_run(env, "2026-12"), elm, "2026-12")
    # December: one workstation at Gold, 120.00. November, late, under break/fix: 2 h x 95.00 = 190.00.
    assert lines(december)["tier:gold:workstation"].amount == 12000
    billed = [l for l in december.bill.lines if any(str(i.get("id")) == str(late_entry) for i in l.items)]
    assert [l.amount for l in billed] == [19000]
    assert december.total == 12000 + 19000


def test_time_included_in_the_contract_of_its_period_is_never_billed_after_a_downgrade(tmp_path):
    env = FiveMonths(tmp_path)
    elm = env.cid("elm")
    gold = env.cw.add_agreement(env.co["elm"], "Managed Gold", start="2024-01-01T00:00:00Z")
    env.device(5, "ELM-WS")
    included = env.time("elm", 1.0, ts(2026, 11, 11), "Remote Support")
    november = invoice(month_run(env, "2026-11"), elm, "2026-11")
    # One workstation at Gold, 120.00; the remote hour is included in Gold.
    assert amounts(november) == {"tier:gold:workstation": ("1", 12000, 12000)}
    # From December 1 Elm is on break/fix; a November hour is entered late.
    env.set_agreement(gold, endDate="2026-11-30T00:00:00Z", noEndingDateFlag=False, agreementStatus="Expired")
    env.cw.add_agreement(env.co["elm"], "Break/Fix", start="2026-12-01T00:00:00Z")
    late_entry = env.time("elm", 2.0, ts(2026, 11, 20), "Remote Support")
    december = invoice(month_run(env, "2026-12"), elm, "2026-12")
    # Both hours are November's, under Gold: included. December has nothing to bill.
    billed = {str(i.get("id")) for l in december.bill.lines for i in l.items}
    assert not billed & {str(included), str(late_entry)}
    assert december.total == 0


def test_a_late_charge_of_a_churned_client_is_held_for_a_person_never_dropped(tmp_path):
    env = FiveMonths(tmp_path)
    cobalt = env.cid("cobalt")
    agreement = env.cw.add_agreement(env.co["cobalt"], "Managed Gold", start="2024-01-01T00:00:00Z",
                                     end="2026-12-20T00:00:00Z")
    env.device(3, "COBALT-WS")
    env.time("cobalt", 1.0, ts(2026, 12, 5), "After Hours")
    december = invoice(month_run(env, "2026-12"), cobalt, "2026-12")
    # 20/31 x 120.00 = 77.419... -> 77.42, and 1 h After Hours, 150.00.
    assert december.total == 7742 + 15000
    assert str(agreement) in lines(december)["tier:gold:workstation"].rule
    late_entry = env.time("cobalt", 1.0, ts(2026, 12, 10), "After Hours")    # December's, entered in January
    january = month_run(env, "2027-01")
    # Cobalt has no next invoice: the 150.00 it owes is held for a person, with its amount.
    carrying = [(p.status, l.amount) for p in january.plan if p.client_id == cobalt and p.bill
                for l in p.bill.lines if any(str(i.get("id")) == str(late_entry) for i in l.items)]
    assert carrying in ([("held", 15000)], [("create", 15000)])


def test_the_daylight_saving_month_counts_devices_by_their_local_days(tmp_path):
    env = FiveMonths(tmp_path)
    birch = env.cid("birchwood")
    env.cw.add_agreement(env.co["birchwood"], "Managed Silver", start="2024-01-01T00:00:00Z")   # prorating
    env.device(2, "BIRCH-WS1")
    last = env.device(2, "BIRCH-LAST")                               # last seen October 31, 23:30 in Paris
    env.gone.add(last)
    edit_device(env.ninja, last, lastContact=ts(2026, 10, 31, 22, 30), lastUpdate=ts(2026, 10, 31, 22, 30))
    env.ninja.set_approval(last, "DECOMMISSIONED")
    env.device(2, "BIRCH-NOV", created=ts(2026, 10, 31, 23, 30))   # created November 1, 00:30 in Paris
    env.device(2, "BIRCH-DST", created=ts(2026, 10, 25, 10))          # created the day summer time ends
    october = invoice(month_run(env, "2026-10"), birch, "2026-10")
    # BIRCH-WS1 and BIRCH-LAST all month, BIRCH-DST October 25-31 (7 of 31 days, not 7 x 24 + 1
    # hours): (2 + 7/31) x 100.00 = 222.580... -> 222.58. BIRCH-NOV is November's.
    assert amounts(october) == {"tier:silver:workstation": ("2.2258", 10000, 22258)}
    assert {i["name"]: i["weight"] for i in lines(october)["tier:silver:workstation"].items} == {
        "BIRCH-WS1": "1", "BIRCH-LAST": "1", "BIRCH-DST": "0.2258"}       # 7/31
    november = invoice(month_run(env, "2026-11"), birch, "2026-11")
    # BIRCH-WS1, BIRCH-DST and BIRCH-NOV (from November 1: the whole month); BIRCH-LAST never after.
    assert amounts(november) == {"tier:silver:workstation": ("3", 10000, 30000)}
    assert {i["name"] for i in lines(november)["tier:silver:workstation"].items} == {"BIRCH-WS1", "BIRCH-DST",
                                                                                   "BIRCH-NOV"}


def test_a_missed_monthly_run_bills_each_late_change_once_on_the_first_invoice_after_it(tmp_path):
    env = FiveMonths(tmp_path)
    elm = env.cid("elm")
    env.cw.add_agreement(env.co["elm"], "Break/Fix", start="2024-01-01T00:00:00Z")
    env.device(1, "ACME-WS")
    cut = env.time("elm", 2.0, ts(2026, 10, 10), "After Hours")
    month_run(env, "2026-10")
    # In November: an October hour entered late, an invoiced entry cut from 2 h to 1 h, a
    # workstation in use since October 3 first reported; then no run on December 1.
    late_entry = env.time("elm", 1.0, ts(2026, 10, 20), "After Hours")
    edit_entry(env, cut, actualHours=1.0)
    env.time("elm", 1.0, ts(2026, 11, 20), "Remote Support")
    admin = env.time("elm", 1.0, ts(2026, 12, 20), "Admin")
    env.device(1, "ACME-LATE", created=ts(2026, 10, 3))
    january = month_run(env, "2026-12")
    # November, caught up: 1 h remote (95.00); October's late hour (150.00) and the hour cut
    # (-150.00). Acme: 2 workstations at 120.00 + 15.00, and ACME-LATE for October, 135.00.
    nov, dec = invoice(january, elm, "2026-11"), invoice(january, elm, "2026-12")
    assert [l.amount for l in nov.bill.lines if any(str(i.get("id")) == str(late_entry) for i in l.items)] == [15000]
    assert amounts(nov)[f"delta:2026-10:time:{cut}"] == ("-1", 15000, -15000)
    assert nov.total == 9500 + 15000 - 15000
    # December: 1 h admin (95.00), and no late change a second time.
    assert amounts(dec) == {f"time:entry:{admin}": ("1", 9500, 9500)}
    acme_nov, acme_dec = invoice(january, "acme", "2026-11"), invoice(january, "acme", "2026-12")
    assert acme_nov.total == 2 * 13500 + 13500 and late(acme_nov) == {
        "delta:2026-10:tier:gold:workstation", "delta:2026-10:addon:backup:workstation"}
    assert acme_dec.total == 2 * 13500 and late(acme_dec) == set()
    assert sorted((i["metadata"]["msp_hub_action_key"], i["subtotal"]) for i in env.invoices()) == [
        ("invoice:acme:2026-10", 13500), ("invoice:acme:2026-11", 40500), ("invoice:acme:2026-12", 27000),
        (f"invoice:{elm}:2026-10", 30000), (f"invoice:{elm}:2026-11", 9500), (f"invoice:{elm}:2026-12", 9500)]
