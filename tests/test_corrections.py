"""Correcting a sent invoice end to end: a void or a credit note, the re-issue, the audit trail,
a crash at every step, the command and the API, against the Stripe (and PSA) simulators."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from hub import corrections
from hub.cli import main
from hub.corrections import CorrectionError
from hub.engine import sync_once
from hub.records import Action
from hub.store import Store, system_user
from plugins.stripe.tests.helpers import Crash, crash_after
from tests.conftest import Env
from tests.test_late_changes import DEC_1, LOOSE, deltas, edit_entry
from tests.test_psa_billing import PsaEnv, at, invoice, lines

KEY = "invoice:cobalt:2026-10"
R1 = f"{KEY}:r1"


@pytest.fixture
def env(tmp_path):
    """Five clients invoiced for 2026-10 in Stripe (cobalt: 552.00 EUR, open)."""
    env = Env(tmp_path, devices=20)
    hub = env.hub()
    sync_once(hub)
    hub.close()
    return env


def stripe_invoices(env, key):
    return [i for i in env.invoices() if i["metadata"]["msp_hub_action_key"] == key]


def run(env, **kw):
    hub = env.hub(**kw)
    try:
        return sync_once(hub)
    finally:
        hub.close()


def correct(env, fn, *args, **kw):
    hub = env.hub()
    try:
        return fn(hub, *args, **kw)
    finally:
        hub.close()


# --- void and re-issue ------------------------------------------------------------------------------

def test_a_void_with_a_reissue_voids_once_then_bills_the_period_again_under_the_successor_key(env):
    original = stripe_invoices(env, KEY)[0]
    before = len(env.stripe.invoices)
    c = correct(env, corrections.request_void, KEY, reason="billed on the wrong tier", by="alice", reissue=True)
    assert (c["action_key"], c["status"], c["reissue_key"], c["requested_by"]) == (f"void:{KEY}", "pending", R1, "alice")
    first = run(env)                 # the void is sent; the re-issue waits until it is confirmed
    assert [p["key"] for p in first.pushed] == [f"void:{KEY}"]
    assert env.stripe.invoices[original["id"]]["status"] == "void"
    second = run(env)
    assert [p["key"] for p in second.pushed] == [R1]
    reissued = stripe_invoices(env, R1)
    assert len(reissued) == 1 and reissued[0]["status"] == "open" and reissued[0]["total"] == original["total"]
    assert reissued[0]["id"] != original["id"]
    assert invoice(second, "cobalt").action.key == R1 and "re-issue of " + KEY in " ".join(invoice(second, "cobalt").reasons)
    third = run(env)                 # nothing twice
    assert third.pushed == [] and invoice(third, "cobalt").status == "unchanged"
    assert len(env.stripe.invoices) == before + 1
    story = correct(env, corrections.history, KEY)
    assert [(x["action_key"], x["status"], x["requested_by"], x["reason"]) for x in story["corrections"]] == [
        (f"void:{KEY}", "sent", "alice", "billed on the wrong tier")]
    assert [(r["key"], r["status"], r["vendor_id"]) for r in story["reissues"]] == [(R1, "sent", reissued[0]["id"])]


def test_a_void_without_a_reissue_bills_nothing_again_and_a_later_change_makes_no_delta(tmp_path):
    psa = PsaEnv(tmp_path, billing=LOOSE)
    psa.cw.add_agreement(psa.co["elm"], "Break/Fix")
    elm = f"connectwise-{psa.co['elm']}"
    entry = psa.time("elm", 1.0, at(10, 10), "After Hours")
    run(psa)
    key = f"invoice:{elm}:2026-10"
    correct(psa, corrections.request_void, key, reason="the client left before October", by="bob")
    assert [p["key"] for p in run(psa).pushed] == [f"void:{key}"]
    edit_entry(psa, entry, actualHours=3.0)           # changed after the void: nothing is owed for October
    psa.time("elm", 2.0, at(11, 5), "After Hours")
    report = run(psa, clock=DEC_1)
    nov = invoice(report, elm, "2026-11")
    assert deltas(nov) == {} and f"time:entry:{entry}" not in lines(nov)
    assert [i["metadata"]["msp_hub_action_key"] for i in psa.invoices() if i["metadata"]["msp_hub_client_id"] == elm] \
        == [key, f"invoice:{elm}:2026-11"]


# --- credit notes and re-issue -------------------------------------------------------------------------

@pytest.fixture
def elm(tmp_path):
    """Elm Street (time and materials) invoiced for 2026-10: two After Hours entries, 1 h and 2 h."""
    psa = PsaEnv(tmp_path, billing=LOOSE)
    psa.cw.add_agreement(psa.co["elm"], "Break/Fix")
    psa.elm = f"connectwise-{psa.co['elm']}"
    psa.wrong = psa.time("elm", 1.0, at(10, 10), "After Hours")
    psa.right = psa.time("elm", 2.0, at(10, 12), "After Hours")
    psa.key = f"invoice:{psa.elm}:2026-10"
    oct_ = invoice(run(psa), psa.elm)
    psa.rate = lines(oct_)[f"time:entry:{psa.wrong}"].unit_amount
    return psa


def test_a_partial_credit_note_and_its_reissue_bill_the_corrected_line_once(elm):
    code = f"time:entry:{elm.wrong}"
    edit_entry(elm, elm.wrong, actualHours=3.0)      # it was 3 hours, not 1
    c = correct(elm, corrections.request_credit, elm.key, lines=[code], reason="1 h instead of 3 h", by="carol",
                reissue=True)
    assert c["amount"] == elm.rate * 12 // 10 and c["lines"][0]["code"] == code and c["reissue_key"] == f"{elm.key}:r1"
    assert [p["key"] for p in run(elm).pushed] == [f"credit:{elm.key}:1"]
    notes = elm.stripe.list_objects("credit_note")
    assert len(notes) == 1 and notes[0]["total"] == elm.rate * 12 // 10 and notes[0]["memo"] == "1 h instead of 3 h (asked by carol)"
    second = run(elm)
    assert [p["key"] for p in second.pushed] == [f"{elm.key}:r1"]
    reissue = invoice(second, elm.elm)
    assert [(l.code, l.amount) for l in reissue.bill.lines] == [(code, 3 * elm.rate)]   # only the credited line
    assert [i["subtotal"] for i in elm.invoices() if i["metadata"]["msp_hub_action_key"] == f"{elm.key}:r1"] == [3 * elm.rate]
    # November: no delta for the corrected entry (its re-issue billed it as it is), nothing billed twice.
    nov = invoice(run(elm, clock=DEC_1), elm.elm, "2026-11")
    assert deltas(nov) == {} and code not in lines(nov)
    assert len(elm.stripe.list_objects("credit_note")) == 1


def test_a_full_credit_note_leaves_nothing_to_credit(elm):
    hub = elm.hub()
    total = hub.store.get_action(elm.key)["payload"]["tax"]["total_with_tax"]
    hub.close()
    correct(elm, corrections.request_credit, elm.key, amount=total, reason="not ours to bill", by="dan")
    run(elm)
    original = [i for i in elm.invoices() if i["metadata"]["msp_hub_action_key"] == elm.key][0]
    assert original["status"] == "paid" and original["pre_payment_credit_notes_amount"] == total
    with pytest.raises(CorrectionError, match=r"0.01 EUR would credit .* above the invoice's .* 0.00 EUR left"):
        correct(elm, corrections.request_credit, elm.key, amount=1, reason="again")


def test_an_over_credit_is_refused_naming_the_amounts_and_nothing_is_recorded(elm):
    correct(elm, corrections.request_credit, elm.key, amount=elm.rate, reason="goodwill")
    hub = elm.hub()
    total = hub.store.get_action(elm.key)["payload"]["tax"]["total_with_tax"]
    hub.close()
    with pytest.raises(CorrectionError) as info:
        correct(elm, corrections.request_credit, elm.key, amount=total, reason="too much")
    message = str(info.value)
    assert f"credit of {elm.key!r}" in message and "credit at most what is left" in message
    assert f"{elm.rate / 100:.2f} EUR credited already" in message and f"{(total - elm.rate) / 100:.2f} EUR left" in message
    hub = elm.hub()
    assert [c["action_key"] for c in hub.store.corrections(elm.key)] == [f"credit:{elm.key}:1"]
    hub.close()


def test_a_void_of_a_paid_invoice_is_refused_at_push_and_a_credit_note_replaces_it(env):
    original = stripe_invoices(env, KEY)[0]
    correct(env, corrections.request_void, KEY, reason="wrong tier", by="eve")
    env.stripe.mark_paid(original["id"])               # paid before the void went out
    report = run(env)
    assert [f["key"] for f in report.failed] == [f"void:{KEY}"]
    assert "is paid in Stripe; nothing was sent" in report.failed[0]["error"]
    assert f"msp-hub invoice credit {KEY}" in report.failed[0]["error"]
    assert env.stripe.invoices[original["id"]]["status"] == "paid"
    c = correct(env, corrections.request_credit, KEY, amount=1000, reason="wrong tier", by="eve")
    assert [p["key"] for p in run(env).pushed] == [c["action_key"]]
    hub = env.hub()
    assert hub.store.get_action(f"void:{KEY}")["status"] == "cancelled"
    hub.close()
    assert env.stripe.list_objects("credit_note")[0]["type"] == "post_payment"


@pytest.mark.parametrize("setup, args, fragment", [
    (None, ("invoice:nobody:2026-10",), "no action 'invoice:nobody:2026-10' in the outbox"),
    ("pending", ("invoice:cobalt:2026-11",), "is pending, not sent: nothing at the vendor to correct"),
    ("ticket", ("ticket:ninjaone:1",), "is a ticket action, not an invoice"),
    ("voided", (KEY,), f"invoice {KEY!r} is already being voided"),
])
def test_a_void_is_refused_naming_the_key_and_the_fix(env, setup, args, fragment):
    hub = env.hub()
    if setup == "pending":
        hub.store.record_action(Action("invoice:cobalt:2026-11", "invoice", "stripe", "cobalt", {}, "2026-11"), "r")
    elif setup == "ticket":
        hub.store.record_action(Action("ticket:ninjaone:1", "ticket", "stripe", "cobalt", {}, None), "r")
        hub.store.mark_sent("ticket:ninjaone:1", "1", "ticket")
    elif setup == "voided":
        corrections.request_void(hub, KEY, reason="first")
    before = len(hub.store.corrections())
    with pytest.raises(CorrectionError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        corrections.request_void(hub, *args, reason="why")
    assert len(hub.store.corrections()) == before
    with pytest.raises(CorrectionError, match="needs --reason"):
        corrections.request_void(hub, KEY, reason="  ")
    hub.close()


def test_a_credit_of_an_unknown_or_already_credited_line_is_refused(elm):
    code = f"time:entry:{elm.wrong}"
    with pytest.raises(CorrectionError, match=r"no line 'nope' on the invoice; its lines are "):
        correct(elm, corrections.request_credit, elm.key, lines=["nope"], reason="x")
    correct(elm, corrections.request_credit, elm.key, lines=[code], reason="x")
    with pytest.raises(CorrectionError, match=f"line\\(s\\) '{code}' were already credited"):
        correct(elm, corrections.request_credit, elm.key, lines=[code], reason="x")
    with pytest.raises(CorrectionError, match="an amount credits no line, so there is nothing to re-issue"):
        correct(elm, corrections.request_credit, elm.key, amount=100, reason="x", reissue=True)


# --- crash at every step ---------------------------------------------------------------------------

def test_a_correction_is_recorded_once_whatever_asks_again(env):
    first = correct(env, corrections.request_void, KEY, reason="r", reissue=True)
    with pytest.raises(CorrectionError, match="already being voided"):
        correct(env, corrections.request_void, KEY, reason="r", reissue=True)
    hub = Store(env.db)
    assert [a["key"] for a in hub.actions(kind="invoice_void")] == [first["action_key"]]
    hub.close()


def test_a_crash_after_stripe_voided_before_it_was_recorded_voids_once_and_reissues_once(env):
    original = stripe_invoices(env, KEY)[0]
    correct(env, corrections.request_void, KEY, reason="wrong tier", reissue=True)
    env.stripe_handler = crash_after(env.stripe, "/v1/invoices/*/void")
    with pytest.raises(Crash):
        run(env)
    env.stripe_handler = env.stripe.handler
    hub = env.hub()
    assert hub.store.get_action(f"void:{KEY}")["status"] == "sending"
    hub.close()
    run(env)          # the void is found done in Stripe: recorded sent, nothing sent again
    run(env)          # the re-issue
    assert env.stripe.calls("POST", "/v1/invoices/*/void") == 1
    assert env.stripe.invoices[original["id"]]["status"] == "void"
    assert len(stripe_invoices(env, R1)) == 1 and run(env).pushed == []


def test_a_crash_while_the_reissue_is_sent_makes_one_reissue(env):
    correct(env, corrections.request_void, KEY, reason="wrong tier", reissue=True)
    run(env)
    env.stripe_handler = crash_after(env.stripe, "/v1/invoices")       # the re-issue's draft is created
    with pytest.raises(Crash):
        run(env)
    env.stripe_handler = env.stripe.handler
    report = run(env)
    assert [p["key"] for p in report.pushed] == [R1]
    assert len(stripe_invoices(env, R1)) == 1 and stripe_invoices(env, R1)[0]["status"] == "open"
    assert run(env).pushed == []


def test_a_crash_after_stripe_issued_the_credit_note_issues_one_and_reissues_once(elm):
    code = f"time:entry:{elm.wrong}"
    correct(elm, corrections.request_credit, elm.key, lines=[code], reason="wrong hours", reissue=True)
    elm.stripe_handler = crash_after(elm.stripe, "/v1/credit_notes")
    with pytest.raises(Crash):
        run(elm)
    elm.stripe_handler = elm.stripe.handler
    hub = elm.hub()
    assert hub.store.get_action(f"credit:{elm.key}:1")["status"] == "sending"
    hub.close()
    assert invoice(run(elm), elm.elm).action.key == elm.key   # confirmed now; planned before it was
    second = run(elm)
    assert [p["key"] for p in second.pushed] == [f"{elm.key}:r1"]
    assert len(elm.stripe.list_objects("credit_note")) == 1
    assert [i["subtotal"] for i in elm.invoices() if i["metadata"]["msp_hub_action_key"] == f"{elm.key}:r1"] == [elm.rate]
    assert run(elm).pushed == []


# --- the ledger --------------------------------------------------------------------------------------

def test_the_ledger_frees_what_a_sent_correction_with_a_reissue_billed_and_nothing_else(tmp_path):
    store = Store(str(tmp_path / "hub.db"))
    inv = Action("invoice:c:2026-10", "invoice", "stripe", "c", {"total": 300, "currency": "EUR"}, "2026-10")
    store.record_action(inv, "r", ledger=[("time", "1", "1", 100), ("time", "2", "1", 200)])
    store.mark_sent(inv.key, "in_1", "sent")
    void = Action("void:invoice:c:2026-10", "invoice_void", "stripe", "c", {}, "2026-10")
    store.record_correction(void, "r", {"invoice_key": inv.key, "kind": "invoice_void", "client_id": "c",
                                        "period": "2026-10", "requested_by": "a", "reason": "b",
                                        "reissue_key": "invoice:c:2026-10:r1", "frees": "all"})
    assert store.live_billed_item_ids("c") == {"1", "2"}        # not sent yet: still billed
    store.mark_sent(void.key, "in_1", "voided")
    assert store.live_billed_item_ids("c") == frozenset()
    r1 = Action("invoice:c:2026-10:r1", "invoice", "stripe", "c", {}, "2026-10")
    store.record_action(r1, "r", ledger=[("time", "1", "1", 100)])
    assert store.live_billed_item_ids("c") == {"1"}              # the re-issue holds what it billed
    assert store.live_billed_item_ids("c", exclude_key=r1.key) == frozenset()
    assert store.voided_keys("c") == {inv.key}
    store.close()


# --- the command and the API ----------------------------------------------------------------------------

@pytest.fixture
def cli(env, monkeypatch):
    monkeypatch.setattr("hub.cli._open_hub", lambda path, **_: env.hub())
    return env


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_the_command_voids_now_records_who_and_why_and_shows_the_history(cli):
    result = invoke("invoice", "void", KEY, "--reason", "wrong tier", "--reissue", "--now", "--json")
    assert result.exit_code == 0, result.output
    c = json.loads(result.output[result.output.index("{\n"):])      # after the push's log line
    assert (c["status"], c["requested_by"], c["reason"], c["reissue_key"]) == ("sent", system_user(), "wrong tier", R1)
    assert stripe_invoices(cli, KEY)[0]["status"] == "void"
    text = invoke("invoice", "history", KEY)
    assert text.exit_code == 0 and f"void:{KEY}  sent  662.40 EUR  asked by {system_user()}" in text.output
    assert f"re-issued as {R1} once sent" in text.output
    listed = invoke("actions", "--json")
    row = next(r for r in json.loads(listed.output) if r["key"] == f"void:{KEY}")
    assert row["payload"]["reason"] == "wrong tier" and row["payload"]["requested_by"] == system_user()
    assert (row["correction"]["requested_by"], row["correction"]["reason"]) == (system_user(), "wrong tier")
    assert f"    asked by {system_user()} at " in invoke("actions").output                # who and why, in text too


def test_the_command_credits_an_amount_by_a_named_person_on_the_next_sync(cli):
    result = invoke("invoice", "credit", KEY, "--amount", "120.00", "--reason", "outage", "--by", "frank")
    assert result.exit_code == 0, result.output
    assert f"recorded credit:{KEY}:1; the next sync sends it" in result.output
    assert run(cli).pushed[0]["key"] == f"credit:{KEY}:1"
    assert cli.stripe.list_objects("credit_note")[0]["total"] == 12000


@pytest.mark.parametrize("args, fragment", [
    (("void", "nope:1", "--reason", "x"), "no action 'nope:1' in the outbox"),
    (("credit", KEY, "--amount", "1.001", "--reason", "x"), "--amount: '1.001' has more decimals than EUR allows"),
    (("credit", KEY, "--amount", "999.00", "--reason", "x"), "above the invoice's 662.40 EUR"),
    (("credit", KEY, "--reason", "x"), "give either --lines CODE ... or --amount X"),
    (("history", "nope:1"), "no action 'nope:1' in the outbox"),
])
def test_the_command_refuses_with_exit_2_naming_the_key_and_the_fix(cli, args, fragment):
    result = invoke("invoice", *args)
    assert result.exit_code == 2 and fragment in result.output, result.output
    hub = cli.hub()
    assert hub.store.corrections() == []
    hub.close()


def test_the_api_voids_credits_and_shows_the_history_behind_the_token(env):
    from hub.api import make_app
    from tests.test_api import AUTH, FakeService
    service = FakeService(env)
    client = make_app(service).test_client()
    assert client.post(f"/invoices/{KEY}/void", json={"reason": "x"}).status_code == 401
    assert client.post(f"/invoices/{KEY}/void", json={}, headers=AUTH).status_code == 400
    missing = client.post("/invoices/invoice:nobody:2026-10/void", json={"reason": "x"}, headers=AUTH)
    assert missing.status_code == 404 and "no action 'invoice:nobody:2026-10'" in missing.get_json()["error"]
    other = "invoice:birchwood:2026-10"
    made = client.post(f"/invoices/{other}/credit", json={"reason": "goodwill", "amount": "10.00"}, headers=AUTH)
    assert made.status_code == 201
    assert made.get_json()["correction"]["requested_by"] == "api" and made.get_json()["correction"]["amount"] == 1000
    too_much = client.post(f"/invoices/{other}/credit", json={"reason": "x", "amount": "99999.00"}, headers=AUTH)
    assert too_much.status_code == 409 and "credit at most what is left" in too_much.get_json()["error"]
    now = client.post(f"/invoices/{KEY}/void", json={"reason": "wrong tier", "reissue": True, "now": True},
                      headers=AUTH)
    assert now.status_code == 200 and now.get_json()["correction"]["status"] == "sent"
    assert stripe_invoices(env, KEY)[0]["status"] == "void"
    again = client.post(f"/invoices/{KEY}/void", json={"reason": "again"}, headers=AUTH)
    assert again.status_code == 409 and "already voided" in again.get_json()["error"]
    story = client.get(f"/invoices/{KEY}/history", headers=AUTH).get_json()
    assert [(c["action_key"], c["requested_by"], c["status"]) for c in story["corrections"]] == [
        (f"void:{KEY}", "api", "sent")]
    paths = client.get("/openapi.json", headers=AUTH).get_json()["paths"]
    assert {"/invoices/{key}/void", "/invoices/{key}/credit", "/invoices/{key}/history"} <= set(paths)


def test_a_second_credit_note_with_a_reissue_waits_for_the_first_then_reissues_its_own_lines(elm):
    wrong, right = f"time:entry:{elm.wrong}", f"time:entry:{elm.right}"
    correct(elm, corrections.request_credit, elm.key, lines=[wrong], reason="first", reissue=True)
    with pytest.raises(CorrectionError, match=f"has a re-issue under {elm.key}:r1 \\(not sent yet"):
        correct(elm, corrections.request_credit, elm.key, lines=[right], reason="second", reissue=True)
    run(elm)
    run(elm)                                                     # the credit note, then r1
    edit_entry(elm, elm.right, actualHours=4.0)
    c = correct(elm, corrections.request_credit, elm.key, lines=[right], reason="second", reissue=True)
    assert c["reissue_key"] == f"{elm.key}:r2"
    run(elm)
    report = run(elm)
    assert [p["key"] for p in report.pushed] == [f"{elm.key}:r2"]
    assert [(l.code, l.amount) for l in invoice(report, elm.elm).bill.lines] == [(right, 4 * elm.rate)]
    assert [i["subtotal"] for i in elm.invoices() if i["metadata"]["msp_hub_action_key"].startswith(f"{elm.key}:r")] \
        == [elm.rate, 4 * elm.rate]
    nov = invoice(run(elm, clock=DEC_1), elm.elm, "2026-11")
    assert deltas(nov) == {} and wrong not in lines(nov) and right not in lines(nov)


def test_an_invoice_finalized_after_its_review_can_be_voided_but_a_draft_cannot(env):
    hub = env.hub()
    hub.store.record_action(Action("invoice:cobalt:2026-09", "invoice", "stripe", "cobalt",
                                   {"total": 100, "currency": "EUR"}, "2026-09"), "r")
    hub.store.mark_sent("invoice:cobalt:2026-09", "in_draft", "a draft", {"draft": True})
    with pytest.raises(CorrectionError, match="is a draft waiting for review"):
        corrections.request_void(hub, "invoice:cobalt:2026-09", reason="x")
    hub.store.record_action(Action("finalize:invoice:cobalt:2026-09", "invoice_finalize", "stripe", "cobalt", {},
                                   "2026-09"), "r")
    hub.store.mark_sent("finalize:invoice:cobalt:2026-09", "in_draft", "finalized")
    assert corrections.request_void(hub, "invoice:cobalt:2026-09", reason="x")["status"] == "pending"
    hub.close()


def test_a_cancelled_void_asked_again_goes_back_in_the_outbox_with_who_asked(env):
    hub = env.hub()
    corrections.request_void(hub, KEY, reason="first", by="ann")
    hub.store.cancel_action(f"void:{KEY}")
    again = corrections.request_void(hub, KEY, reason="after all", by="ben")
    assert again["status"] == "pending"
    assert [(a["who"], a["why"]) for a in hub.store.approvals(f"void:{KEY}")] == [("ben", "asked again: after all")]
    hub.close()


def test_a_void_after_a_credit_note_is_refused_naming_the_credit_of_what_is_left(env):
    correct(env, corrections.request_credit, KEY, amount=1200, reason="goodwill")
    with pytest.raises(CorrectionError, match=r"already has credit notes \(12.00 EUR credited\): it is not voided; "
                                              rf"credit what is left instead: msp-hub invoice credit {KEY}"):
        correct(env, corrections.request_void, KEY, reason="wrong")


class Freeze:
    """A site plugin that vetoes every void (an accounting freeze)."""

    from hub.hookspecs import hookimpl

    @hookimpl
    def veto_action(self, action):
        return "accounting freeze until the audit ends" if action.kind == corrections.VOID else None


def test_a_correction_a_plugin_vetoes_waits_held_until_a_person_approves_it(env):
    hub = env.hub(Freeze())
    try:
        c = corrections.request_void(hub, KEY, reason="wrong tier", by="alice")
    finally:
        hub.close()
    assert c["status"] == "held" and "accounting freeze until the audit ends" in c["last_error"]
    assert f"msp-hub actions approve void:{KEY}" in c["last_error"]
    assert run(env).pushed == [] and stripe_invoices(env, KEY)[0]["status"] == "open"   # never sent held

    hub = env.hub()
    try:
        hub.store.approve(f"void:{KEY}", who="bob", why="the audit is over")
    finally:
        hub.close()
    assert [p["key"] for p in run(env).pushed] == [f"void:{KEY}"]
    assert stripe_invoices(env, KEY)[0]["status"] == "void"
