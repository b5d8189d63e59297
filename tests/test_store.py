"""One store suite, run against both backends: the SQLite file (the embedded default) and a
PostgreSQL schema on a real server (the session's ``postgres`` fixture). Every public method
family of the Store, and what must hold across processes: one lock holder, one sender per action."""

import threading
from datetime import datetime, timedelta, timezone

import pytest

from hub.records import Action, Alert, Client, Device, ProductLine, Ticket, TimeEntry
from hub.store import CANCELLED, FAILED, HELD, PENDING, SENDING, SENT, Store

T0 = datetime(2026, 10, 3, 8, 30, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path):
    """The database of one test: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "hub.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(database):
    s = Store(database)
    yield s
    s.close()


@pytest.fixture
def other(database, store):
    """A second Store on the same database: another connection, as another process has."""
    s = Store(database)
    yield s
    s.close()


def device(i, client="1", status="approved", name=None, **kw):
    return Device("ninjaone", str(i), client, name or f"pc-{i}", "WINDOWS_WORKSTATION", status,
                  created_at=T0, last_contact=T0 + timedelta(hours=i), **kw)


def invoice(key="invoice:acme:2026-10", client="acme", period="2026-10", total=1200):
    return Action(key, "invoice", "stripe", client, {"lines": [{"code": "tier:gold:workstation", "amount": total}]},
                  period)


# --- pages, cursors and records ----------------------------------------------------------------


def test_a_page_and_its_cursor_are_stored_together_and_upserted(store):
    n = store.write_page("devices", [device(1), device(2, client="2")], "ninjaone", "devices", {"after": 2},
                         rejected=[("99", "no organization")])
    assert n == 2 and store.count("devices") == 2
    assert store.get_cursor("ninjaone", "devices") == {"after": 2}
    store.write_page("devices", [device(1, name="renamed")], "ninjaone", "devices", {"after": 3},
                     rejected=[("99", "still no organization")])
    assert store.count("devices") == 2
    assert [d.name for d in store.iter_devices("ninjaone")] == ["renamed", "pc-2"]
    assert store.cursors()[0]["cursor"] == {"after": 3}
    rejected = list(store.db.query("select source_id, error from rejected_records"))
    assert rejected == [{"source_id": "99", "error": "still no organization"}]
    assert store.get_cursor("ninjaone", "other") is None


def test_records_read_back_with_their_types(store):
    entry = TimeEntry("cw", "7", "c1", "jdoe", T0, T0 + timedelta(hours=1), "1.25", "billable", "remote", "tech",
                      ticket_id="55", hourly_rate=12000, invoiced=True, notes="fixed it", updated_at=T0)
    product = ProductLine("cw", "8", "c1", "SSD", "disk", "2", 9900, "EUR", "billable", invoiced=False)
    ticket = Ticket("cw", "9", "c1", "alert:1", "disk full", "NOC", "New", closed=False, touched=True)
    store.write_page("time_entries", [entry], "cw", "time_entries", None)
    store.write_page("products", [product], "cw", "products", None)
    store.write_page("tickets", [ticket], "cw", "tickets", None)
    store.write_page("devices", [device(3, os_name="Windows 11", serial_number="007")], "ninjaone", "devices", None)
    got = next(store.iter_records("time_entries", "cw"))
    assert got == entry and got.invoiced is True and isinstance(got.hourly_rate, int)
    assert got.started_at.tzinfo is not None
    assert next(store.iter_records("products", "cw")) == product
    back = next(store.iter_records("tickets", "cw"))
    assert back == ticket and back.closed is False and back.touched is True
    d = store.record_by_id("devices", "ninjaone", "3")
    assert d == device(3, os_name="Windows 11", serial_number="007") and d.serial_number == "007"
    assert store.record_by_id("devices", "ninjaone", "4") is None
    # Text that looks like a number stays text.
    assert store.rows("devices")[0]["source_id"] == "3" and store.rows("tickets")[0]["closed"] == 0


def test_iteration_filters_orders_and_counts(store):
    store.write_page("clients", [Client("ninjaone", "1", "Acme", T0, country="FR"), Client("ninjaone", "2", "Beta")],
                     "ninjaone", "organizations", None)
    # Keys sort bytewise on both backends ("10" before "9", upper case before lower case).
    store.write_page("devices", [device(9), device(10), device(11, client="2", status="pending"),
                                 device(12, client="3")], "ninjaone", "devices", None)
    assert [d.source_id for d in store.iter_devices("ninjaone")] == ["10", "11", "12", "9"]
    assert [d.source_id for d in store.iter_devices("ninjaone", "1")] == ["10", "9"]
    assert [d.source_id for d in store.iter_records("devices", "ninjaone", where="approval_status = ? and name like ?",
                                                    args=["approved", "pc-1%"])] == ["10", "12"]
    assert [c.name for c in store.iter_clients()] == ["Acme", "Beta"]
    assert next(store.iter_records("clients", "ninjaone")).country == "FR"
    assert store.sources("devices") == ["ninjaone"] and store.sources("alerts") == []
    assert store.device_counts() == {("ninjaone", "1"): 2, ("ninjaone", "2"): 1, ("ninjaone", "3"): 1}
    assert store.orphans("devices", "ninjaone") == [{"source_id": "12", "client_source_id": "3"}]


def test_a_complete_page_marks_the_rest_of_the_source_inactive(store):
    def alert(uid):
        return Alert("ninjaone", uid, "1", "5", "pc-5", "WINDOWS_SERVER", "CONDITION", "disk", "MAJOR", "HIGH", "full")
    store.write_page("alerts", [alert("a"), alert("b")], "ninjaone", "alerts", None, complete=True)
    store.write_page("alerts", [alert("b")], "ninjaone", "alerts", None, complete=True)
    assert [a.source_id for a in store.iter_records("alerts", "ninjaone", where="active = 1")] == ["b"]
    assert {r["source_id"]: r["active"] for r in store.rows("alerts")} == {"a": 0, "b": 1}


def test_a_complete_page_with_a_scope_marks_only_that_part_inactive(store):
    from hub.records import Patch

    def patch(kind, pid, installed=None):
        return Patch("ninjaone", f"{kind}:5:{pid}" + (f":{installed.isoformat()}" if installed else ""), "1", "5",
                     kind, pid, f"patch {pid}", "critical", "installed" if installed else "pending", installed)
    done = datetime(2026, 11, 2, tzinfo=timezone.utc)
    store.write_page("patches", [patch("os", "k1"), patch("os", "k2"), patch("software", "s1"),
                                 patch("os", "k0", done)], "ninjaone", "os_patches", None)
    store.write_page("patches", [patch("os", "k2")], "ninjaone", "os_patches", None, complete=True,
                     scope={"kind": "os", "installed_at": None})
    assert {r["source_id"]: r["active"] for r in store.rows("patches")} == {
        "os:5:k1": 0, "os:5:k2": 1, "software:5:s1": 1, f"os:5:k0:{done.isoformat()}": 1}
    with pytest.raises(ValueError, match="'nope' is not a column of patches"):
        store.write_page("patches", [], "ninjaone", "os_patches", None, complete=True, scope={"nope": 1})


# --- links, locks ------------------------------------------------------------------------------


def test_links(store):
    assert store.get_link("acme", "stripe") is None
    store.set_link("acme", "stripe", "cus_1")
    store.set_link("acme", "stripe", "cus_2")
    assert store.get_link("acme", "stripe") == "cus_2"


def test_the_lock_has_one_holder_until_released_or_stale(store, other):
    assert store.acquire_lock("sync", "first") is None
    taken = other.acquire_lock("sync", "second")
    assert taken["holder"] == "first" and isinstance(taken["pid"], int)
    store.heartbeat("sync", "first")
    other.release_lock("sync", "second")          # not the holder: nothing happens
    assert store.lock_info("sync")["holder"] == "first"
    store.release_lock("sync", "first")
    assert other.acquire_lock("sync", "second") is None
    # A holder silent for longer than stale_after is presumed dead.
    assert store.acquire_lock("sync", "third", stale_after=0.0) is None
    assert other.lock_info("sync")["holder"] == "third"


def test_a_dead_holders_lock_is_taken_over(store):
    store.acquire_lock("sync", "crashed")
    with store.db.atomic():
        store.db.execute("update locks set pid = ? where name = ?", [999999999, "sync"])
    assert store.acquire_lock("sync", "next") is None


def race(database, n, fn):
    """``fn(store, i)`` in ``n`` threads, each with its own Store on ``database`` (its own
    connection, as a process has), all released at once; their results by i."""
    barrier, out = threading.Barrier(n), {}

    def run(i):
        s = Store(database)
        try:
            barrier.wait()
            out[i] = fn(s, i)
        finally:
            s.close()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == n, "a racer failed"
    return out


def test_stores_racing_for_the_lock_get_one_holder(database, store):
    for round_ in range(5):
        got = race(database, 6, lambda s, i: s.acquire_lock("sync", f"holder-{round_}-{i}"))
        winners = [i for i, r in got.items() if r is None]
        assert len(winners) == 1, got
        assert all(r["holder"] == f"holder-{round_}-{winners[0]}" for r in got.values() if r is not None)
        assert store.lock_info("sync")["holder"] == f"holder-{round_}-{winners[0]}"
        store.release_lock("sync", f"holder-{round_}-{winners[0]}")


# --- the outbox --------------------------------------------------------------------------------


def test_the_outbox_life_cycle(store):
    row = store.record_action(invoice(), "run1", ledger=[("device", "ninjaone:1", "1", 600),
                                                         ("device", "ninjaone:2", "1", 600)],
                              snapshot=[{"code": "tier:gold:workstation", "quantity": "2"}],
                              block={"client_id": "acme", "agreement": "7", "number": 2, "hours": "10", "rate": 9000,
                                     "started_at": "2026-10-01", "source": "renewal"})
    assert (row["status"], row["attempts"], row["payload"]["lines"][0]["amount"]) == (PENDING, 0, 1200)
    assert row["approved"] == 0 and row["progress"] == {} and row["details"] == {}
    assert store.billed_item_ids("acme") == {"ninjaone:1", "ninjaone:2"}
    assert store.billed_item_ids("acme", exclude_key=invoice().key) == frozenset()
    assert store.billed_item_ids("acme", kinds=["time"]) == frozenset()
    assert store.get_snapshot("acme", "2026-10") == [{"code": "tier:gold:workstation", "quantity": "2"}]
    assert [b["number"] for b in store.blocks("acme", "7")] == [2] and store.blocks("acme", "7")[0]["rate"] == 9000
    # Planned again before any attempt: the new payload and ledger replace the old.
    store.record_action(invoice(total=600), "run2", ledger=[("device", "ninjaone:1", "1", 600)],
                        block={"client_id": "acme", "agreement": "7", "number": 2, "hours": "99", "rate": 1,
                               "started_at": "2026-10-01", "source": "renewal"})
    assert store.get_action(invoice().key)["payload"]["lines"][0]["amount"] == 600
    assert store.billed_item_ids("acme") == {"ninjaone:1"}
    assert store.blocks("acme", "7")[0]["hours"] == "10"          # a sold block is never rewritten
    assert store.mark_sending(invoice().key) == 0
    store.save_progress(invoice().key, {"customer": "cus_1"})
    store.mark_failed(invoice().key, "timeout")
    failed = store.get_action(invoice().key)
    assert (failed["status"], failed["attempts"], failed["last_error"], failed["progress"]) == \
        (FAILED, 1, "timeout", {"customer": "cus_1"})
    # Attempted: a new plan does not change what may be at the vendor.
    store.record_action(invoice(total=1), "run3", ledger=[])
    assert store.get_action(invoice().key)["payload"]["lines"][0]["amount"] == 600
    assert store.mark_sending(invoice().key) == 1
    store.mark_sent(invoice().key, "in_1", "invoice in_1", {"number": "F-1", "adopted": False})
    sent = store.get_action(invoice().key)
    assert (sent["status"], sent["vendor_id"], sent["details"], sent["last_error"]) == \
        (SENT, "in_1", {"adopted": False, "number": "F-1"}, None)
    assert store.retry_action(invoice().key)["status"] == SENT
    assert store.cancel_action(invoice().key)["status"] == SENT
    assert store.previous_invoice("acme", "2026-11") == ("2026-10", [{"code": "tier:gold:workstation",
                                                                      "quantity": "2"}])
    assert store.sent_per_period("invoice", "invoice:acme") == {"2026-10": 1}
    assert store.count_by_status("actions") == {SENT: 1}
    assert [a["key"] for a in store.actions(status=SENT, kind="invoice")] == [invoice().key]
    assert store.actions(status=PENDING) == [] and store.get_action("nope") is None


def test_held_approved_retried_and_cancelled(store):
    store.record_action(invoice(), "run1")
    store.mark_failed(invoice().key, "over the guardrail", status=HELD)
    assert store.approved_keys() == frozenset()
    row = store.approve(invoice().key, who="ops@msp", why="checked")
    assert (row["status"], row["approved"]) == (PENDING, 1)
    assert store.approved_keys() == {invoice().key}
    assert [(a["target"], a["who"], a["why"]) for a in store.approvals(invoice().key)] == \
        [(invoice().key, "ops@msp", "checked")]
    assert store.approve("nope") is None
    assert store.cancel_action(invoice().key)["status"] == CANCELLED
    assert store.billed_item_ids("acme") == frozenset()
    assert store.retry_action(invoice().key)["status"] == PENDING


def test_one_of_several_stores_claims_an_action(database, store):
    store.record_action(invoice(), "run1")
    got = race(database, 6, lambda s, i: s.claim_action(invoice().key, PENDING, 0))
    assert sorted(got.values(), key=str) == [0, None, None, None, None, None]
    row = store.get_action(invoice().key)
    assert (row["status"], row["attempts"]) == (SENDING, 1)
    # A claim by what was read before: stale once another took it.
    assert store.claim_action(invoice().key, PENDING, 0) is None
    assert store.claim_action(invoice().key, SENDING, 1) == 1
    store.mark_sent(invoice().key, "in_1", "sent")
    assert store.claim_action(invoice().key, SENT, 2) is None


def test_a_sending_action_is_claimed_by_an_overlapping_pusher_only_once_stale(store):
    store.record_action(invoice(), "run1")
    assert store.mark_sending(invoice().key) == 0
    # Under the run lock: the pusher that left it sending is dead, it is claimed at once.
    assert store.claim_action(invoice().key, SENDING, 1) == 1
    # Without: only once nothing was recorded about it for stale_after seconds.
    assert store.claim_action(invoice().key, SENDING, 2, stale_after=600) is None
    store.db["actions"].update(invoice().key, {"updated_at": (datetime.now(timezone.utc)
                                                              - timedelta(seconds=601)).isoformat()})
    assert store.claim_action(invoice().key, SENDING, 2, stale_after=600) == 2


def test_adopted_tickets(store):
    for key, adopted in (("ticket:a", True), ("ticket:b", False), ("ticket:c", None)):
        store.record_action(Action(key, "ticket", "cw", "acme", {}), "run1")
        store.mark_sending(key)
        store.mark_sent(key, key[-1] + "1", "ticket", {"adopted": adopted} if adopted is not None else None)
    assert store.adopted_tickets("cw") == {"a1"}


# --- stream passes, approvals, runs --------------------------------------------------------------


def test_stream_passes_and_their_states(store):
    run, _ = store.start_run("sync")
    ids = [store.record_pass("ninjaone", "devices", run, "t0", "complete", 10, sweep_count=10),
           store.record_pass("ninjaone", "devices", run, "t1", "failed", 3, error="500 " * 1000),
           store.record_pass("ninjaone", "alerts", run, "t1", "complete", 2)]
    assert ids == sorted(ids) and len(set(ids)) == 3 and all(isinstance(i, int) for i in ids)
    states = store.stream_states()
    devices = states[("ninjaone", "devices")]
    assert (devices["last"]["id"], devices["last_complete"]["id"], devices["last_failed"]["id"],
            devices["last_sweep"]["id"]) == (ids[1], ids[0], ids[1], ids[0])
    assert len(devices["last_failed"]["error"]) == 2000
    assert states[("ninjaone", "alerts")]["last_sweep"] is None
    assert [p["id"] for p in store.stream_passes("ninjaone", limit=2)] == [ids[2], ids[1]]
    assert [p["id"] for p in store.stream_passes(stream="devices")] == [ids[1], ids[0]]


def test_approvals_by_target(store):
    first = store.record_approval("pass:1", "ops", "looked")
    store.record_approval("run:2", "ops")
    assert [a["target"] for a in store.approvals()] == ["pass:1", "run:2"]
    assert [a["at"] for a in store.approvals("pass:1")] == [first["at"]]
    assert all(isinstance(a["id"], int) for a in store.approvals())


def test_runs_their_origin_abandonment_and_pruning(store):
    old, _ = store.start_run("sync", trigger="cron", job="nightly", scope={"connectors": ["ninjaone"]})
    store.record_pass("ninjaone", "devices", old, "t0", "complete", 1)
    store.record_pass("ninjaone", "devices", old, "t1", "complete", 1)
    store.finish_run(old, "ok", {"pushed": 2}, [])
    newer, _ = store.start_run("plan", trigger="cli")
    store.finish_run(newer, "ok", {}, ["warning"])
    running, _ = store.start_run("sync")
    got = store.get_run(old)
    assert (got["trigger"], got["job"], got["scope"], got["counts"], got["pid"]) == \
        ("cron", "nightly", '{"connectors": ["ninjaone"]}', '{"pushed": 2}', got["pid"])
    assert isinstance(got["pid"], int)
    assert [r["id"] for r in store.runs(limit=2)][0] in (running, newer) and len(store.runs()) == 3
    assert store.count_by_status("runs") == {"ok": 2, "running": 1}
    # The run's process is alive (this one): not abandoned, unless the lock says so.
    assert store.mark_abandoned_runs() == []
    assert store.mark_abandoned_runs(lock_held=True, keep=running) == []
    other, _ = store.start_run("sync")
    assert store.mark_abandoned_runs(lock_held=True, keep=running) == [other]
    assert store.get_run(other)["status"] == "abandoned"
    # Pruning keeps running runs and each stream's latest pass of every kind.
    pruned = store.prune_runs(datetime.now(timezone.utc) + timedelta(seconds=1))
    assert pruned == {"runs": 3, "stream_passes": 1}     # the older of two complete passes
    assert store.get_run(running) is not None and store.get_run(old) is None
    assert len(store.stream_passes()) == 1


# --- notifications -----------------------------------------------------------------------------


def test_notifications(store):
    store.record_notification("invoice:x", "held", "f1", {"why": "guardrail"}, "t1", run_id="r1")
    store.record_notification("invoice:x", "held", "f1", {"why": "guardrail"}, "t2")
    n = store.get_notification("invoice:x")
    assert (n["first_sent_at"], n["last_sent_at"], n["sends"], n["item"]) == ("t1", "t2", 2, {"why": "guardrail"})
    store.record_notification("invoice:x", "held", "f2", {"why": "other"}, "t3")
    assert (store.get_notification("invoice:x")["first_sent_at"], store.get_notification("invoice:x")["sends"]) == \
        ("t3", 1)
    store.record_notification("stream:a.b", "stream", "f", {}, "t3")
    store.touch_notifications(["invoice:x", "stream:a.b"], "t4")
    assert [(n["subject"], n["last_sent_at"], n["sends"]) for n in store.notifications()] == \
        [("invoice:x", "t4", 2), ("stream:a.b", "t4", 2)]
    store.forget_notifications(iter(["invoice:x"]))
    assert [n["subject"] for n in store.notifications()] == ["stream:a.b"]
    assert store.get_notification("invoice:x") is None


# --- what each invoice billed: snapshots, device approvals, corrections ------------------------


def test_snapshots_of_earlier_periods(store):
    for period in ("2026-08", "2026-09", "2026-10"):
        store.record_action(invoice(f"invoice:acme:{period}", period=period), "r",
                            snapshot=[{"code": "x", "period": period}])
    store.cancel_action("invoice:acme:2026-09")
    snaps = store.invoice_snapshots("acme", before="2026-10")
    assert [(s["period"], s["status"], s["attempts"], s["lines"]) for s in snaps] == \
        [("2026-08", PENDING, 0, [{"code": "x", "period": "2026-08"}])]
    assert store.invoice_snapshots("acme", before="2026-11", exclude_key="invoice:acme:2026-10")[0]["period"] == \
        "2026-08"
    assert store.get_snapshot("acme", "2026-09") is None
    assert store.snapshot_lines("invoice:acme:2026-10") == [{"code": "x", "period": "2026-10"}]
    assert store.snapshot_lines("nope") is None


def test_device_approvals_are_noted_once(store):
    t = [(T0 + timedelta(days=i)).isoformat() for i in range(5)]
    store.write_page("devices", [device(1), device(2, status="pending"), device(3, client="2", status="pending")],
                     "ninjaone", "devices", None)
    assert store.note_device_approvals(t[1]) == 0
    store.write_page("devices", [device(2), device(3, client="2")], "ninjaone", "devices", None)
    assert store.note_device_approvals(t[2], source="ninjaone", client_source_id="1") == 1
    assert store.note_device_approvals(t[3]) == 1
    assert store.note_device_approvals(t[4]) == 0
    seen = store.approvals_seen("ninjaone")
    assert {k: (v["first_status"], v["approved_seen_at"]) for k, v in seen.items()} == {
        "1": ("approved", None), "2": ("pending", T0 + timedelta(days=2)), "3": ("pending", T0 + timedelta(days=3))}
    assert all(v["noted_at"] for v in seen.values())
    assert set(store.approvals_seen("ninjaone", "2")) == {"3"}


def test_device_approval_times_read_back_as_datetimes(store):
    store.write_page("devices", [device(2, status="pending")], "ninjaone", "devices", None)
    store.note_device_approvals(T0.isoformat())
    store.write_page("devices", [device(2)], "ninjaone", "devices", None)
    store.note_device_approvals((T0 + timedelta(days=1)).isoformat())
    assert store.approvals_seen("ninjaone")["2"]["approved_seen_at"] == T0 + timedelta(days=1)


def test_corrections_and_what_they_free(store):
    store.record_action(invoice(), "r", ledger=[("device", "ninjaone:1", "1", 600), ("time", "cw:7", "1", 600)])
    store.mark_sending(invoice().key)
    store.mark_sent(invoice().key, "in_1", "sent")
    void = Action("invoice_void:acme:2026-10", "invoice_void", "stripe", "acme", {"invoice": "in_1"}, "2026-10")
    c = store.record_correction(void, "r2", {"invoice_key": invoice().key, "kind": "invoice_void", "client_id": "acme",
                                              "period": "2026-10", "requested_by": "ops", "reason": "wrong",
                                              "amount": 1200, "currency": "EUR", "reissue_key": "invoice:acme:2026-10:r1",
                                              "frees": "all"})
    assert (c["status"], c["amount"], c["frees"], c["lines"]) == (PENDING, 1200, "all", None)
    again = store.record_correction(void, "r3", {"invoice_key": "other", "kind": "invoice_void", "client_id": "acme",
                                                  "requested_by": "x", "reason": "y"})
    assert again["invoice_key"] == invoice().key                           # exactly once
    credit = Action("credit_note:acme:2026-10", "credit_note", "stripe", "acme", {}, "2026-10")
    store.record_correction(credit, "r4", {"invoice_key": invoice().key, "kind": "credit_note", "client_id": "acme",
                                           "period": "2026-10", "requested_by": "ops", "reason": "one line",
                                           "lines": ["time"], "frees": [["time", "cw:7"]],
                                           "reissue_key": "invoice:acme:2026-10:r2"}, held="vetoed")
    assert store.get_correction(credit.key)["status"] == HELD
    assert [x["action_key"] for x in store.corrections(invoice().key)] == [void.key, credit.key]
    assert [x["action_key"] for x in store.corrections(client_id="acme", period="2026-10")] == [void.key, credit.key]
    assert store.freed_by_corrections("acme") == {} and store.voided_keys("acme") == frozenset()
    assert store.live_billed_item_ids("acme") == {"ninjaone:1", "cw:7"}
    store.approve(credit.key)
    store.mark_sending(credit.key)
    store.mark_sent(credit.key, "cn_1", "credit note")
    assert store.freed_by_corrections("acme") == {invoice().key: {("time", "cw:7")}}
    assert store.live_billed_item_ids("acme") == {"ninjaone:1"}
    store.mark_sending(void.key)
    store.mark_sent(void.key, "in_1", "voided")
    assert store.freed_by_corrections("acme") == {invoice().key: "all"}
    assert store.live_billed_item_ids("acme") == frozenset() and store.voided_keys("acme") == {invoice().key}


def test_a_store_reopened_keeps_everything(database, store):
    store.record_action(invoice(), "r")
    store.close()
    again = Store(database)
    try:
        assert again.get_action(invoice().key)["status"] == PENDING
    finally:
        again.close()


def test_json_members_read_as_the_daemon_reads_them(store):
    run, _ = store.start_run("sync")
    store.finish_run(run, "ok", {"holder": "daemon:nightly", "pushed": 3}, [])
    rows = store.db.query("select id from runs where json_extract(counts, '$.holder') = ?", ["daemon:nightly"])
    assert [r["id"] for r in rows] == [run]


# --- PostgreSQL only: schemas, the schema from the migrations, threads --------------------------


def test_two_schemas_of_one_database_never_see_each_other(pg_url):
    a, b = Store(pg_url, schema="tenant_a"), Store(pg_url, schema="tenant_b")
    try:
        a.write_page("devices", [device(1)], "ninjaone", "devices", {"after": 1})
        a.record_action(invoice(), "r")
        a.set_link("acme", "stripe", "cus_a")
        assert b.count("devices") == 0 and b.get_action(invoice().key) is None and b.get_cursor("ninjaone", "devices") is None
        assert b.get_link("acme", "stripe") is None
        # The same keys in both, apart.
        b.record_action(invoice(total=5), "r")
        assert a.claim_action(invoice().key, PENDING, 0) == 0
        assert b.get_action(invoice().key)["status"] == PENDING
        assert b.get_action(invoice().key)["payload"]["lines"][0]["amount"] == 5
        # The same lock name in both: two holders, one per schema.
        assert a.acquire_lock("sync", "a") is None and b.acquire_lock("sync", "b") is None
        # And nothing in public.
        public = Store(pg_url)
        try:
            assert public.count("devices") == 0 and public.actions() == []
        finally:
            public.close()
        names = {r["nspname"] for r in a.db.query("select nspname from pg_namespace where nspname like 'tenant_%'")}
        assert names == {"tenant_a", "tenant_b"}
    finally:
        a.close()
        b.close()


def test_the_schema_is_made_from_the_sqlite_migrations(pg_url, tmp_path):
    pg, lite = Store(pg_url), Store(str(tmp_path / "hub.db"))
    try:
        def columns(s, sql, args):
            return {(r["t"], r["c"]) for r in s.db.query(sql, args)}
        on_pg = columns(pg, "select table_name as t, column_name as c from information_schema.columns "
                            "where table_schema = ? and table_name != ?", ["public", "_hub_migrations"])
        on_lite = {(t, r[1]) for t in lite.db.table_names() if t != "_sqlite_migrations"
                   for r in lite.db.execute(f'PRAGMA table_info("{t}")').fetchall()}
        assert on_pg == on_lite and ("actions", "approved") in on_pg
        pg_indexes = {r["indexname"] for r in pg.db.query("select indexname from pg_indexes where schemaname = 'public'")}
        lite_indexes = {r["name"] for r in lite.db.query("select name from sqlite_master where type = 'index' "
                                                         "and name not like 'sqlite_%' and tbl_name != '_sqlite_migrations'")}
        assert lite_indexes and lite_indexes <= pg_indexes
        types = {r["column_name"]: r["data_type"] for r in pg.db.query(
            "select column_name, data_type from information_schema.columns where table_schema = 'public' "
            "and table_name = 'actions'")}
        assert (types["attempts"], types["approved"], types["key"]) == ("bigint", "bigint", "text")
        defaults = next(pg.db.query("select column_default from information_schema.columns where table_schema = "
                                    "'public' and table_name = 'actions' and column_name = 'attempts'"))
        assert defaults["column_default"] == "0"
    finally:
        pg.close()
        lite.close()


def test_a_restart_changes_nothing_and_a_new_migration_reaches_postgresql(pg_url):
    from sqlite_utils.migrations import Migrations

    from hub.db import sync_schema
    from hub.store import DATA_STEPS, migrations
    store = Store(pg_url)
    try:
        store.write_page("devices", [device(1), device(2)], "ninjaone", "devices", None)
        assert sync_schema(store.db, migrations, DATA_STEPS) == []          # a restart: nothing to do
        later = Migrations("hub")
        later._migrations = list(migrations._migrations)

        @later()
        def m099_widgets(db):
            db["widgets"].create({"id": int, "name": str, "size": int}, pk="id", not_null={"name"})
            db["devices"].add_column("colour", str)
            db["devices"].create_index(["colour"])

        def paint(db):
            db.execute("update devices set colour = ?", ["blue"])

        assert sync_schema(store.db, later, {"m099_widgets": paint}) == ["m099_widgets"]
        assert sync_schema(store.db, later, {"m099_widgets": paint}) == []
        assert [r["colour"] for r in store.db.query("select colour from devices")] == ["blue", "blue"]
        new_id = store.db.execute("insert into widgets (name, size) values (?, ?) returning id", ["w", 3]).fetchone()[0]
        assert new_id == 1
        assert "idx_devices_colour" in {r["indexname"] for r in store.db.query(
            "select indexname from pg_indexes where schemaname = 'public'")}
        # The store's own reads still work with the new column.
        assert [d.source_id for d in store.iter_devices("ninjaone")] == ["1", "2"]
    finally:
        store.close()


def test_stores_opening_a_new_schema_at_once_all_get_it(pg_url):
    barrier, errors, stores = threading.Barrier(5), [], []

    def open_one():
        barrier.wait()
        try:
            stores.append(Store(pg_url, schema="tenant_new"))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)
    threads = [threading.Thread(target=open_one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == [] and len(stores) == 5
        assert [r["n"] for r in stores[0].db.query("select count(*) as n from _hub_migrations")] == \
            [len(__import__("hub.store").store.migrations._migrations)]
    finally:
        for s in stores:
            s.close()


def test_one_postgresql_store_shared_by_threads(pg_url):
    store = Store(pg_url)
    errors = []

    def work(t):
        try:
            for i in range(20):
                key = f"invoice:c{t}:{i}"
                store.record_action(invoice(key, client=f"c{t}"), "r", ledger=[("device", f"{t}:{i}", "1", 1)])
                assert store.mark_sending(key) == 0
                store.mark_sent(key, f"in_{t}_{i}", "sent")
                assert store.get_action(key)["status"] == SENT
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert store.count_by_status("actions") == {SENT: 120} and store.count("billed_items") == 120
    finally:
        store.close()


def test_a_failed_connection_names_the_server_and_never_the_password(postgres):
    from hub.db import redact_url
    from hub.errors import ConfigError
    url = f"postgresql://hub@127.0.0.1:{postgres.port + 1 if postgres.port < 65535 else 1}/nowhere"
    with pytest.raises(ConfigError) as err:
        Store(url, password="s3cret-pw")
    assert "s3cret-pw" not in str(err.value) and "127.0.0.1" in str(err.value) and err.value.key == "database"
    assert redact_url("postgresql://hub:s3cret-pw@db:5432/x") == "postgresql://hub:***@db:5432/x"


def test_the_table_helpers_tests_use_work_on_both_backends(store):
    run, _ = store.start_run("sync")
    store.db["runs"].update(run, {"started_at": "2026-01-01T00:00:00+00:00", "status": "ok"})
    store.record_action(invoice(), "r", snapshot=[{"code": "x"}])
    store.db["snapshots"].update(("acme", "2026-10"), {"lines": '[{"code": "y"}]'})
    assert (store.get_run(run)["started_at"], store.get_run(run)["status"]) == ("2026-01-01T00:00:00+00:00", "ok")
    assert store.get_snapshot("acme", "2026-10") == [{"code": "y"}]
    assert store.db["runs"].count == 1 and [r["id"] for r in store.db["runs"].rows] == [run]


def _claim_all(database, keys, start, out):
    """A process's push loop, without the run lock: each action claimed as read (a sending one only
    when stale), the ones it won sent; which it won goes to ``out``."""
    s = Store(database)
    try:
        start.wait()
        won = []
        for key in keys:
            row = s.get_action(key)
            if s.claim_action(key, row["status"], row["attempts"], stale_after=600) is not None:
                won.append(key)
                s.mark_sent(key, f"v-{key}", "sent")
        out.put(won)
    finally:
        s.close()


def test_processes_sending_one_outbox_send_each_action_once(database, store):
    import multiprocessing
    keys = [f"invoice:c{i}:2026-10" for i in range(30)]
    for key in keys:
        store.record_action(invoice(key, client=key.split(":")[1]), "r")
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(database, keys, start, out)) for _ in range(3)]
    for p in procs:
        p.start()
    start.set()
    won = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sorted(k for w in won for k in w) == sorted(keys)
    assert {(a["status"], a["attempts"]) for a in store.actions()} == {(SENT, 1)}
