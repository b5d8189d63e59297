"""The plan at scale: ``msp-hub plan --json`` written as the plan is made, and the set-based reads
the planner uses, against a store seeded as benchmarks/plan_scale.py seeds it (PSA contracts of
every kind, devices, a year of time entries, products and alerts), small."""

import importlib.util
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from hub import planner
from hub.cli import _run, main
from hub.config import load_config
from hub.engine import Hub, dumps, sync_once
from hub.store import Store
from hub.testing import ConnectorPlugin, make_hub
from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("plan_scale", ROOT / "benchmarks" / "plan_scale.py")
plan_scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plan_scale)


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    """A config and a store of 6 clients (10 devices, 60 time entries, 4 alerts each), its first
    sync pushed (to connectors that record nothing): what ``plan`` reads afterwards."""
    import shutil
    for name, value in plan_scale.SECRETS.items():
        monkeypatch.setenv(name, value)
    shutil.copytree(ROOT / "examples" / "psa-driven" / "mappings", tmp_path / "mappings")
    config_path = tmp_path / "msp-hub.toml"
    config_path.write_text(plan_scale.CONFIG.format(db=(tmp_path / "hub.db").as_posix()))
    config = load_config(config_path)
    real = Hub(config)
    s = plan_scale.Seeded(6, 10, 60, 4, datetime.now(timezone.utc))
    pages = {"connectwise": {"clients": s.pages(s.cw_clients, True), "agreements": s.pages(s.agreements, False),
                             "additions": s.pages(s.additions, False), "time_entries": s.pages(s.time_entries, False),
                             "products": s.pages(s.products, False)},
             "ninjaone": {"clients": s.pages(s.orgs, True), "devices": s.pages(s.rmm_devices, True),
                          "alerts": s.pages(s.rmm_alerts, False)}}
    connectors = [plan_scale.Bench(c, pages.get(name, {})) for name, c in sorted(real.connectors.items())]
    hub = make_hub(ConnectorPlugin(*connectors), config=config, mappings=real.mappings,
                   store=Store(str(tmp_path / "hub.db")))
    real.store.close()
    first = sync_once(hub)
    assert first.pushed and not first.errors, first.errors
    hub.close()
    return config_path


def _without_run(text: str) -> str:
    """The JSON text without what differs from one run to the next (its id, start and duration)."""
    return re.sub(r'\n  "(run_id|started_at|seconds)": [^\n]*', "", text)


def test_plan_json_is_written_as_made_and_says_what_the_plan_says(seeded):
    result = CliRunner().invoke(main, ["plan", "--config", str(seeded), "--json"])
    assert result.exit_code == 0, result.output
    kept = _run(str(seeded), dict(period=None), read_only=True, dry_run=True, pull_first=False)
    assert len(kept.plan) > 10 and {p.kind for p in kept.plan} >= {"invoice", "agreement_quantity"}
    assert _without_run(result.stdout) == _without_run(dumps(kept.to_json()) + "\n")
    streamed = json.loads(result.stdout)
    assert [p["key"] for p in streamed["plan"]] == [p.action.key if p.action else None for p in kept.plan]


def test_plan_json_of_an_empty_plan_is_the_same_text(seeded):
    result = CliRunner().invoke(main, ["plan", "--config", str(seeded), "--json", "--period", "2019-01"])
    kept = _run(str(seeded), dict(period="2019-01"), read_only=True, dry_run=True, pull_first=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["plan"] == [p.to_json() for p in kept.plan]
    assert _without_run(result.stdout) == _without_run(dumps(kept.to_json()) + "\n")


def test_a_plan_sink_receives_every_item_and_the_report_keeps_none(seeded):
    kept = _run(str(seeded), dict(period=None), read_only=True, dry_run=True, pull_first=False)
    got = []
    streamed = _run(str(seeded), dict(period=None), read_only=True, dry_run=True, pull_first=False,
                    plan_sink=got.append)
    assert streamed.plan == [] and [p.to_json() for p in got] == [p.to_json() for p in kept.plan]
    assert streamed.held == kept.held


def test_plan_items_keep_what_a_held_item_says_whether_kept_or_sunk():
    from hub.records import Action
    held = planner.PlanItem("invoice", "acme", "Acme", "2026-10", "held",
                            Action("invoice:acme:2026-10", "invoice", "stripe", "acme", {"total": 5, "currency": "EUR"}),
                            reasons=("why",), cause="guardrail")
    fine = planner.PlanItem("invoice", "birch", "Birch", "2026-10", "unchanged", None)
    kept, sunk = planner.PlanItems(), planner.PlanItems(sink=(out := []).append)
    for items in (kept, sunk):
        items.extend([held, fine])
    assert list(kept) == [held, fine] and list(sunk) == [] and out == [held, fine]
    assert kept.held == sunk.held == [planner.held_json(held)]


# --- the set-based reads ---------------------------------------------------------------------------

def _odd_store():
    """A store with the records a plan meets: clients with and without records, two systems, time
    entries and products with odd dates (naive, another offset, none), an entry of another client."""
    from datetime import timedelta
    from hub.records import BILLABLE, Device, ProductLine, TimeEntry
    store = Store(":memory:")
    utc = timezone.utc
    base = datetime(2026, 10, 31, 22, 30, tzinfo=utc)
    entries = []
    for n, when in enumerate([base, base + timedelta(hours=2), base.replace(tzinfo=None),
                              base.astimezone(timezone(timedelta(hours=-5))), base - timedelta(days=40),
                              datetime(2026, 11, 1, tzinfo=utc)]):
        for client in ("7", "8"):
            entries.append(TimeEntry("connectwise", f"{client}{n:02d}", client, "tech", when, None, "1.25", BILLABLE,
                                     "Remote Support", "Engineer", f"t{n}"))
    entries.append(TimeEntry("connectwise", "999", "9", "tech", base, None, "1", BILLABLE, "Onsite", "Engineer"))
    store.write_page("time_entries", entries, "connectwise", "time_entries", None)
    products = [ProductLine("connectwise", f"p{n}", "7", "SSD", "SSD", "1", 100, "EUR", BILLABLE, sold_at=when)
                for n, when in enumerate([None, base, base + timedelta(hours=2), base.replace(tzinfo=None)])]
    store.write_page("products", products, "connectwise", "products", None)
    devices = [Device("ninjaone", str(n), str(n % 3), f"pc{n}", "WINDOWS_WORKSTATION", "approved") for n in range(9)]
    store.write_page("devices", devices, "ninjaone", "devices", None)
    return store


def test_records_by_client_are_the_records_of_each_client_as_iter_records_gives_them():
    store = _odd_store()
    keys = [("connectwise", "7"), ("connectwise", "8"), ("connectwise", "none"), ("ninjaone", "1"), ("ninjaone", "2")]
    end = "2026-10-31T23:00:00+00:00"
    for table, where, args in (("time_entries", "", ()), ("time_entries", "started_at < ?", [end]),
                               ("products", "sold_at is null or sold_at < ?", [end]), ("devices", "", ())):
        got = store.records_by_client(table, keys, where=where, args=args)
        assert set(got) == set(keys)
        for source, client in keys:
            assert got[(source, client)] == list(store.iter_records(table, source, client, where=where, args=args))
    assert any(got.values()) and got[("connectwise", "none")] == []
    with_dates = store.records_by_client("products", [("connectwise", "7")], stored="sold_at")[("connectwise", "7")]
    assert [r for _, r in with_dates] == list(store.iter_records("products", "connectwise", "7"))
    assert [s for s, _ in with_dates] == [r["sold_at"] for r in store.rows("products")]


def test_plan_reads_answer_as_the_store_does_for_every_end_and_client():
    store = _odd_store()
    reads = planner.PlanReads(store, [("connectwise", "7"), ("ninjaone", "1"), ("connectwise", "8")])
    ends = ["2026-10-31T23:00:00+00:00", "2026-10-31T22:30:00", "2026-11-01", "9999", "0"]
    for client in ("7", "8", "9", "none"):     # 9 and none are outside the plan's order: read on their own
        for end in ends:
            for table, where in (("time_entries", "started_at < ?"), ("products", "sold_at is null or sold_at < ?")):
                assert reads.records(table, "connectwise", client, where=where, args=[end]) == \
                    list(store.iter_records(table, "connectwise", client, where=where, args=[end])), (client, end)
        assert reads.records("time_entries", "connectwise", client) == \
            list(store.iter_records("time_entries", "connectwise", client))
    assert reads.records("devices", "ninjaone", "1") == list(store.iter_records("devices", "ninjaone", "1"))
    assert reads.queries <= 4     # one read per table and window, whatever the ends asked


@pytest.mark.parametrize("stored", [None, "2026-10-31T22:30:00+00:00", "2026-10-31T22:30:00", "2026-11", "", "zz",
                                    5, 2.5, b"2026"])
def test_a_stored_date_is_before_an_end_as_the_database_says(stored):
    import sqlite3
    conn = sqlite3.connect(":memory:")
    for end in ("2026-10-31T23:00:00+00:00", "2026-10-31", "9999", ""):
        for null_ok, sql in ((False, "select ? < ?"), (True, "select ? is null or ? < ?")):
            args = (stored, end) if not null_ok else (stored, stored, end)
            assert planner._stored_before(stored, end, null_ok) == bool(conn.execute(sql, args).fetchone()[0]), \
                (stored, end, null_ok)


def test_a_plan_reads_each_client_once_per_window_and_keeps_no_reads_after(seeded):
    config = load_config(seeded)
    hub = Hub(config)
    try:
        calls = []
        real = hub.store.iter_records
        hub.store.iter_records = lambda *a, **k: (calls.append(a), real(*a, **k))[1]
        windows = []
        by_client = hub.store.records_by_client
        hub.store.records_by_client = lambda table, keys, **k: (
            windows.append((table, {s for s, _ in keys})), by_client(table, keys, **k))[1]
        report = sync_once(hub, dry_run=True, pull_first=False)
        # 6 clients are one window: each table of each system read once, whatever the periods planned.
        read = [(table, system) for table, systems in windows for system in systems]
        assert len(read) == len(windows) and len(set(read)) == len(read), read
        assert {("devices", "ninjaone"), ("time_entries", "connectwise"), ("agreements", "connectwise")} <= set(read)
        assert report.plan and getattr(hub, "plan_reads", None) is None
        # No read of one client's records: they are read a window of clients at a time.
        assert [a for a in calls if len(a) > 2 and a[0] in ("time_entries", "products", "agreements", "additions",
                                                            "devices")] == []
        assert {a[0] for a in calls} <= {"clients", "devices", "alerts", "alert_events", "tickets"}
    finally:
        hub.close()


# --- time zones once per day, hours once per text --------------------------------------------------

@pytest.mark.parametrize("tz", ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"])
def test_local_day_is_the_zone_s_day_across_offset_changes(tz):
    from datetime import timedelta
    from zoneinfo import ZoneInfo
    from hub.periods import local_day
    start = datetime(2026, 3, 1, tzinfo=timezone.utc)
    moments = [start + timedelta(minutes=37 * n) for n in range(0, 15000)]     # through March-November
    moments += [m.astimezone(timezone(timedelta(hours=5, minutes=30))) for m in moments[::50]]
    moments += [m.astimezone(ZoneInfo("America/Los_Angeles")) for m in moments[::70]]
    for m in moments:
        assert local_day(m, tz) == m.astimezone(ZoneInfo(tz)).date(), m
    naive = datetime(2026, 10, 25, 1, 30)
    assert local_day(naive, tz) == naive.astimezone(ZoneInfo(tz)).date()


def test_hours_are_parsed_once_and_billed_by_each_contract_s_own_terms():
    from fractions import Fraction
    from hub.errors import MappingError
    from hub.mappings import TimeTerms, WorkType
    from hub.records import BILLABLE, TimeEntry
    from hub import timebilling
    when = datetime(2026, 10, 5, 9, tzinfo=timezone.utc)

    def entry(hours, work_type="Remote Support"):
        return TimeEntry("cw", "1", "7", "tech", when, None, hours, BILLABLE, work_type, "Engineer")

    quarter = TimeTerms(increment_minutes=15, work_types={"Onsite": WorkType("Onsite", rate=100, onsite=True)},
                        onsite_minimum=Fraction(1))
    tenth = TimeTerms(increment_minutes=6, work_types={}, onsite_minimum=Fraction(2))
    assert timebilling.billable_hours(entry("0.1"), quarter) == Fraction(1, 4)
    assert timebilling.billable_hours(entry("0.1"), tenth) == Fraction(1, 10)
    assert timebilling.billable_hours(entry("0.1", "Onsite"), quarter) == 1
    assert timebilling.billable_hours(entry("0.1", "Onsite"), tenth) == Fraction(1, 10)   # not on-site there
    assert timebilling.actual_hours(entry(" 1.50 ")) == Fraction(3, 2)
    for bad in ("-1", "abc"):
        with pytest.raises(MappingError, match="time entry 1"):
            timebilling.actual_hours(entry(bad))
        with pytest.raises(MappingError, match="time entry 1"):     # an error is never remembered as hours
            timebilling.actual_hours(entry(bad))


def test_a_drawdown_finds_each_entry_s_allocations_in_order():
    from fractions import Fraction
    from hub import timebilling
    allocations = tuple(timebilling.Allocation(str(n % 4), "block", Fraction(n), 1) for n in range(12))
    d = timebilling.Drawdown(allocations, {}, {}, {}, {}, Fraction(0), None)
    for entry_id in ("0", "1", "3", "missing"):
        assert d.for_entry(entry_id) == tuple(a for a in allocations if a.entry_id == entry_id)


def test_round_times_rounds_as_round_half_up_of_the_product():
    import random
    from fractions import Fraction
    from hub.money import round_half_up, round_times
    rnd = random.Random(7)
    cases = [(Fraction(1, 2), 1), (Fraction(-1, 2), 1), (Fraction(1, 2), -1), (Fraction(3, 8), 4), (Fraction(5), 0),
             (Fraction(1, 3), 3), (Fraction(-5, 6), 3), (Fraction(7, 4), Fraction(1, 2)), (Fraction(1, 4), True)]
    cases += [(Fraction(rnd.randint(-10**6, 10**6), rnd.randint(1, 10**4)), rnd.randint(-10**5, 10**5))
              for _ in range(5000)]
    for quantity, unit in cases:
        assert round_times(quantity, unit) == round_half_up(quantity * unit), (quantity, unit)


# --- time the PSA invoiced before the plan's first period: counted, not read ------------------------

def test_settled_time_is_counted_and_every_entry_that_can_bill_or_explain_a_line_is_still_read():
    from hub.records import BILLABLE, DO_NOT_BILL, TimeEntry
    store = Store(":memory:")
    utc = timezone.utc
    old, new = datetime(2026, 6, 3, 9, tzinfo=utc), datetime(2026, 11, 3, 9, tzinfo=utc)

    def entry(sid, when=old, *, invoiced=True, billable=BILLABLE, work="Remote Support", ticket="t1", agreement=None,
              client="7"):
        return TimeEntry("connectwise", sid, client, "tech", when, None, "1", billable, work, "Engineer", ticket,
                         agreement, None, invoiced)
    entries = [
        entry("settled"), entry("settled-no-ticket", ticket=None),
        entry("not-invoiced", invoiced=False),                      # billed late: read
        entry("after", new),                                        # in a period the plan bills: read
        entry("on-block", agreement="5000"),                        # draws its block whatever the PSA did: read
        entry("not-billable", billable=DO_NOT_BILL),                # explained as not billable: read
        entry("naive", old.replace(tzinfo=None)),                   # its start is a problem to report: read
        entry("flat", work="Virus Removal", ticket="t2"),           # a flat-rate job the PSA invoiced whole:
        entry("flat-mate", ticket="t2"),                            # ... settled, every entry of its ticket
        entry("flat-open", work="Virus Removal", ticket="t3"),      # a flat-rate job is decided by its entries:
        entry("flat-open-mate", ticket="t3", invoiced=False),       # ... one not invoiced keeps them all read
        entry("flat-no-ticket", work="Virus Removal", ticket=None),  # flat-rate work on no ticket: an error to report
        entry("flat-free", ticket="t2", billable=DO_NOT_BILL),       # takes no part in t2's job: t2 stays settled
        entry("other-client", client="8"),
    ]
    store.write_page("time_entries", entries, "connectwise", "time_entries", None)
    keys = [("connectwise", "7"), ("connectwise", "8"), ("connectwise", "9")]
    cut = datetime(2026, 10, 1, tzinfo=timezone(timedelta(hours=2)))     # a period's start, local
    got = store.records_by_client("time_entries", keys, counted=Store.settled_time(cut, {"Virus Removal"}))
    assert got.pop(Store.COUNTED) == {("connectwise", "7"): 4, ("connectwise", "8"): 1}
    assert [e.source_id for e in got[("connectwise", "7")]] == sorted(
        ["not-invoiced", "after", "on-block", "not-billable", "naive", "flat-open", "flat-open-mate", "flat-no-ticket",
         "flat-free"])
    assert got[("connectwise", "8")] == [] and got[("connectwise", "9")] == []
    # Without flat-rate work types, the ticket of a flat job is nothing special.
    got = store.records_by_client("time_entries", keys[:1], counted=Store.settled_time(cut, ()))
    assert got.pop(Store.COUNTED) == {("connectwise", "7"): 6}
    # Without ``counted``, every record, as before.
    assert len(store.records_by_client("time_entries", keys[:1])[("connectwise", "7")]) == 13


def test_a_plan_bills_the_same_whether_it_reads_the_settled_time_or_counts_it(seeded, monkeypatch):
    counted_plan = _run(str(seeded), dict(period=None), read_only=True, dry_run=True, pull_first=False)
    monkeypatch.setattr(planner.PlanReads, "leave_out_settled", lambda self, first, flat: None)
    read_plan = _run(str(seeded), dict(period=None), read_only=True, dry_run=True, pull_first=False)
    assert len(counted_plan.plan) == len(read_plan.plan) > 10
    counted = 0
    for mine, theirs in zip(counted_plan.plan, read_plan.plan):
        mine, theirs = mine.to_json(), theirs.to_json()
        told, listed = mine.pop("not_billed", []), theirs.pop("not_billed", [])
        assert mine == theirs
        summary = [r for r in told if "count" in r]
        assert [r for r in told if "count" not in r] == [r for r in listed if r["id"] in {t["id"] for t in told}]
        left = [r for r in listed if r["id"] not in {t["id"] for t in told}]
        assert {r["reason"] for r in left} <= {"invoiced_by_psa"}
        assert sum(r["count"] for r in summary) == len(left)
        if summary:
            assert summary[0]["reason"] == "invoiced_by_psa" and f"{len(left)} time entries dated before" in \
                summary[0]["detail"]
        counted += len(left)
    assert counted > 100        # most of a year of time was invoiced by the PSA before the plan's months


def test_the_segments_a_plan_keeps_are_bounded_and_the_plan_is_the_same(seeded, monkeypatch):
    kept = _run(str(seeded), dict(period=None), read_only=True, dry_run=True, pull_first=False)
    sizes = []
    real = planner.PlanReads.segments

    def segments(self, key, compute):
        out = real(self, key, compute)
        sizes.append(len(self.windows["segments"]))
        return out
    monkeypatch.setattr(planner.PlanReads, "segments", segments)
    monkeypatch.setattr(planner.PlanReads, "SEGMENTS_KEPT", 3)
    bounded = _run(str(seeded), dict(period=None), read_only=True, dry_run=True, pull_first=False)
    assert sizes and max(sizes) == 3
    assert [p.to_json() for p in bounded.plan] == [p.to_json() for p in kept.plan]


def test_draft_invoices_are_the_sent_invoices_whose_details_say_draft():
    from hub.records import Action
    store = Store(":memory:")
    for n, details in enumerate([{"draft": True}, {"draft": False}, {}, {"note": "draft"}, {"draft": True}]):
        key = f"invoice:c{n}:2026-10"
        store.record_action(Action(key, "invoice", "stripe", f"c{n}", {"total": n}, "2026-10"), "run-1")
        if n < 4:
            store.mark_sent(key, f"in_{n}", "sent", details)
    store.record_action(Action("ticket:x", "ticket", "connectwise", "c0", {}, None), "run-1")
    store.mark_sent("ticket:x", "1", "sent", {"draft": True})
    every = [r for r in store.actions(kind="invoice") if r["status"] == "sent" and r["details"].get("draft")]
    assert store.draft_invoices("invoice", "sent") == every and [r["key"] for r in every] == ["invoice:c0:2026-10"]


def test_actions_of_kinds_are_the_actions_with_their_payloads_cut_to_what_is_asked():
    from hub.records import Action
    store = Store(":memory:")
    for key, kind, payload in [("ticket:b", "ticket", {"external_ref": "r1", "uids": ["u1"], "description": "x" * 500}),
                               ("ticket:a", "ticket", {"external_ref": "r2"}),
                               ("ticket_note:a:u2", "ticket_note", {"uid": "u2", "note": "long text"}),
                               ("invoice:c:2026-10", "invoice", {"total": 5})]:
        store.record_action(Action(key, kind, "connectwise", "c", payload, None), "run-1")
    store.mark_sent("ticket:a", "77", "sent", {"adopted": True})
    keys = ("uids", "uid", "external_ref")
    got = store.actions_of_kinds(("ticket", "ticket_note"), keys)
    every = [r for kind in ("ticket", "ticket_note") for r in store.actions(kind=kind)]
    assert [r["key"] for r in got] == [r["key"] for r in every] == ["ticket:a", "ticket:b", "ticket_note:a:u2"]
    for mine, theirs in zip(got, every):
        assert mine["payload"] == {k: v for k, v in theirs["payload"].items() if k in keys}
        assert dict(mine, payload=None) == dict(theirs, payload=None)
