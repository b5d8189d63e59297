"""Exactly once when Stripe's memory and the hub's disagree: replayed 500s, a lost store, recovery.

Stripe stores a 500 under its idempotency key and replays it for about a day, so a retry with the
same key cannot get past it; the hub looks for the object and only then sends under a successor
key, recorded first. And Stripe remembers what the hub sent after the hub's store is lost: the
push finds it by the metadata it wrote instead of creating it again.
"""

from __future__ import annotations

import fnmatch

import pytest

from hub import RetryableError, VendorError
from plugins.stripe.client import ReplayedError
from plugins.stripe.plugin import idempotency_key
from plugins.stripe.tests.helpers import Crash, FakeContext, crash_after, make_action
from plugins.stripe.tests.test_plugin import (
    KEY,
    finalize_action,
    invoices_for,
    known_customer,
    lines_of,
    requests_since,
)


def keys_sent(sim, path_glob):
    return [e["idempotency_key"] for e in sim.posts() if fnmatch.fnmatchcase(e["path"], path_glob)]


# --- the client -----------------------------------------------------------------------------------

def test_a_replayed_500_is_a_replayed_error_and_is_not_retried(sim, connect, sleeps):
    client = connect().client
    sim.fail_stored_next(500, path="/v1/customers")
    with pytest.raises(ReplayedError) as info:
        client.create_customer({"name": "Acme"}, idempotency_key="k")
    assert info.value.status == 500 and "replayed the answer it stored" in str(info.value)
    assert not isinstance(info.value, RetryableError)
    assert sim.calls("POST", "/v1/customers") == 2 and len(sleeps) == 1  # the fresh 500, then its replay


# --- replayed 500s ----------------------------------------------------------------------------------

def test_a_finalize_that_met_a_stored_500_is_sent_again_under_a_successor_key(sim, connect, context):
    known_customer(sim, context)
    sim.fail_stored_next(500, path="/v1/invoices/*/finalize")
    result = connect().push(make_action(), context)

    invoice = sim.invoices[result.vendor_id]
    assert invoice["status"] == "open" and result.details["status"] == "open"
    base = idempotency_key(KEY, "finalize")
    assert keys_sent(sim, "/v1/invoices/*/finalize") == [base, base, f"{base}:r2"]
    assert context.progress["keys"] == {f"{KEY}:finalize": 2}


def test_the_successor_key_is_recorded_before_it_is_sent(sim, connect, context):
    known_customer(sim, context)
    sim.fail_stored_next(500, path="/v1/invoices/*/finalize")
    seen = []

    def handler(request):
        if request.headers.get("Idempotency-Key", "").endswith(":r2"):
            seen.append(dict(context.progress.get("keys") or {}))
        return sim.handler(request)

    connect(handler).push(make_action(), context)
    assert seen == [{f"{KEY}:finalize": 2}]


def test_a_later_attempt_reuses_the_recorded_successor_key(sim, connect, context):
    known_customer(sim, context)
    sim.fail_stored_next(500, path="/v1/invoices/*/finalize")
    state = {"armed": True}

    def dies_before_the_successor(request):
        if state["armed"] and request.headers.get("Idempotency-Key", "").endswith(":r2"):
            state["armed"] = False
            raise Crash("died before the successor finalize was sent")
        return sim.handler(request)

    with pytest.raises(Crash):
        connect(dies_before_the_successor).push(make_action(), context)
    since = len(sim.log)
    result = connect().push(make_action(), context.next_attempt())

    assert sim.invoices[result.vendor_id]["status"] == "open"
    assert [e["idempotency_key"] for e in sim.log[since:] if e["method"] == "POST"] == [
        f"{idempotency_key(KEY, 'finalize')}:r2"]  # not the base key, which would replay the 500


def test_a_finalize_whose_500_hid_a_success_is_not_sent_again(sim, connect, context):
    known_customer(sim, context)
    sim.fail_stored_next(500, path="/v1/invoices/*/finalize", run=True)
    result = connect().push(make_action(), context)

    assert result.details["status"] == "open" and sim.calls("POST", "/v1/invoices/*/finalize") == 2
    assert "keys" not in context.progress


@pytest.mark.parametrize("run", [False, True], ids=["not-created", "created-behind-the-500"])
def test_a_draft_create_that_met_a_stored_500_makes_one_invoice(sim, connect, context, run):
    known_customer(sim, context)
    sim.fail_stored_next(500, path="/v1/invoices", run=run)
    result = connect().push(make_action(), context)

    (invoice,) = invoices_for(sim)
    assert invoice["id"] == result.vendor_id and invoice["status"] == "open"
    assert len(lines_of(sim, invoice["id"])) == 3
    assert keys_sent(sim, "/v1/invoices")[-1].endswith(":create" if run else ":create:r2")


@pytest.mark.parametrize("run", [False, True], ids=["not-added", "added-behind-the-500"])
def test_add_lines_that_met_a_stored_500_adds_each_line_once(sim, connect, context, run):
    known_customer(sim, context)
    sim.fail_stored_next(500, path="/v1/invoices/*/add_lines", run=run)
    result = connect().push(make_action(), context)
    assert [l["metadata"]["msp_hub_line"] for l in lines_of(sim, result.vendor_id)] == [
        "workstation", "server", "backup"]
    assert result.details["total"] == 13700


def test_an_invoice_item_that_met_a_stored_500_is_created_once(sim, connect, context):
    known_customer(sim, context)
    sim.fail_stored_next(500, path="/v1/invoiceitems", run=True)
    result = connect(line_mode="invoiceitems").push(make_action(), context)
    assert len(lines_of(sim, result.vendor_id)) == 3 and len(sim.invoice_items) == 3


@pytest.mark.parametrize("run", [False, True], ids=["not-created", "created-behind-the-500"])
def test_a_customer_create_that_met_a_stored_500_makes_one_customer(sim, connect, context, run):
    sim.search_lag = True  # a customer made behind the 500 is not searchable yet: the list finds it
    sim.fail_stored_next(500, path="/v1/customers", run=run)
    connect().push(make_action(), context)
    (customer,) = sim.customers.values()
    assert context.get_link("acme", "stripe") == customer["id"]
    assert ("customer:acme:create" in (context.progress.get("keys") or {})) is not run


def test_a_step_that_keeps_meeting_stored_500s_stops_and_names_it(sim, connect, context):
    known_customer(sim, context)
    sim.fail_stored_next(500, times=10, path="/v1/invoices/*/finalize")
    with pytest.raises(VendorError) as info:
        connect().push(make_action(), context)
    assert "under 3 successive idempotency keys for step finalize of invoice:acme:2026-10" in str(info.value)
    assert sim.invoices[context.progress["invoice_id"]]["status"] == "draft"
    assert context.progress["keys"] == {f"{KEY}:finalize": 4}

    sim._stored_faults.clear()
    result = connect().push(make_action(), context.next_attempt())
    assert result.details["status"] == "open"
    assert keys_sent(sim, "/v1/invoices/*/finalize")[-1] == f"{idempotency_key(KEY, 'finalize')}:r4"


# --- a lost store -------------------------------------------------------------------------------------

def test_a_lost_store_rerun_days_later_creates_nothing_twice(sim, connect, context):
    first = connect().push(make_action(), context)
    sim.expire_idempotency_keys()  # days later: Stripe forgot the keys
    since = len(sim.log)

    again = connect().push(make_action(), FakeContext())  # the store was deleted

    assert again.vendor_id == first.vendor_id and "already open" in again.summary
    assert len(sim.customers) == 1 and len(sim.invoices) == 1
    assert requests_since(sim, since) == ["GET /v1/customers/search", "GET /v1/invoices"]


def test_a_store_restored_from_an_old_backup_finds_the_invoice(sim, connect, context):
    customer_id = known_customer(sim, context)
    first = connect().push(make_action(), context)
    sim.expire_idempotency_keys()
    backup = FakeContext(links={("acme", "stripe"): customer_id})  # the link, but not the action

    again = connect().push(make_action(), backup)
    assert again.vendor_id == first.vendor_id and len(sim.invoices) == 1
    assert backup.progress == {"invoice_id": first.vendor_id, "step": "finalized"}


def test_a_lost_store_after_a_crash_completes_the_draft_stripe_has(sim, connect, context):
    with pytest.raises(Crash):
        connect(crash_after(sim, "/v1/invoices/*/add_lines")).push(make_action(), context)
    sim.expire_idempotency_keys()

    result = connect().push(make_action(), FakeContext())
    (invoice,) = invoices_for(sim)
    assert result.vendor_id == invoice["id"] and invoice["status"] == "open"
    assert len(lines_of(sim, invoice["id"])) == 3 and len(sim.customers) == 1


def test_an_invoice_sent_on_a_customer_no_longer_linked_is_found_by_search(sim, connect):
    linked = sim._create_customer({"name": "ACME DENTAL LTD"})  # linked by the MSP: no hub metadata
    first = connect().push(make_action(), FakeContext(links={("acme", "stripe"): linked["id"]}))
    sim.expire_idempotency_keys()

    again = connect().push(make_action(), FakeContext())  # the link and the store are gone
    assert again.vendor_id == first.vendor_id and len(sim.invoices) == 1
    assert sim.calls("GET", "/v1/invoices/search") == 1


# --- what the hub sent, from Stripe ------------------------------------------------------------------

def test_sent_objects_lists_customers_and_invoices_the_hub_sent(sim, connect, context):
    connector = connect()
    october = connector.push(make_action(), context)
    draft = connector.push(make_action(period="2026-11", finalize=False), FakeContext(links=context.links))
    globex = connector.push(make_action(client_id="globex", client_name="Globex"), FakeContext(links=context.links))
    sim._create_customer({"name": "Not from the hub"})
    for n in range(101):  # enough hub invoices for a second page
        customer = sim.invoices[globex.vendor_id]["customer"]
        sim._create_invoice({"customer": customer, "collection_method": "send_invoice", "days_until_due": "30",
                             "currency": "eur", "metadata": {"msp_hub_action_key": f"invoice:globex:old-{n}"}})
    sim._create_invoice({"customer": customer, "collection_method": "send_invoice", "days_until_due": "30"})
    since = len(sim.log)

    objects = list(connector.sent_objects())

    customers = [o for o in objects if o["object"] == "customer"]
    assert sorted((c["client_id"], c["customer_id"]) for c in customers) == sorted(
        [("acme", context.get_link("acme", "stripe")), ("globex", sim.invoices[globex.vendor_id]["customer"])])
    invoices = {o["action_key"]: o for o in objects if o["object"] == "invoice"}
    assert len(invoices) == 3 + 101
    assert invoices[KEY] == {
        "object": "invoice", "action_key": KEY, "invoice_id": october.vendor_id, "status": "open",
        "customer": context.get_link("acme", "stripe"), "total": 13700, "currency": "eur",
        "number": sim.invoices[october.vendor_id]["number"], "client_id": "acme", "period": "2026-10"}
    assert invoices["invoice:acme:2026-11"]["status"] == "draft"
    assert invoices["invoice:acme:2026-11"]["invoice_id"] == draft.vendor_id
    assert requests_since(sim, since) == ["GET /v1/customers", "GET /v1/invoices", "GET /v1/invoices"]


def test_progress_naming_another_action_s_invoice_is_refused(sim, connect, context):
    known_customer(sim, context)
    october = connect().push(make_action(), context)
    november = FakeContext(links=context.links)
    november.progress = {"invoice_id": october.vendor_id}  # a corrupted or mixed-up outbox row
    with pytest.raises(VendorError) as info:
        connect().push(make_action(period="2026-11"), november)
    assert f"the progress of invoice:acme:2026-11 names invoice {october.vendor_id}, which Stripe says was " \
           f"made for '{KEY}'; nothing was sent" in str(info.value)
    assert len(sim.invoices) == 1


# --- end to end through the engine ------------------------------------------------------------------

def test_engine_a_month_whose_finalize_met_a_stored_500_is_invoiced_in_one_run(tmp_path):
    from hub.engine import sync_once
    from tests.conftest import Env

    env = Env(tmp_path)
    env.stripe.fail_stored_next(500, path="/v1/invoices/*/finalize")  # the first client's finalize
    hub = env.hub()
    report = sync_once(hub)
    hub.close()

    assert not report.failed and len(report.pushed) == 5
    assert {i["status"] for i in env.invoices()} == {"open"} and len(env.invoices()) == 5
    assert sum(1 for e in env.stripe.posts() if e["idempotency_key"].endswith(":finalize:r2")) == 1


def test_engine_a_deleted_store_run_again_days_later_sends_nothing_twice(tmp_path):
    import os

    from hub.engine import sync_once
    from tests.conftest import Env

    env = Env(tmp_path)
    hub = env.hub()
    first = sync_once(hub)
    hub.close()
    sent = {p["key"]: p["vendor_id"] for p in first.pushed}
    assert len(sent) == 5
    os.remove(env.db)                       # the store is lost
    env.stripe.expire_idempotency_keys()    # and Stripe forgot the keys
    posts = len(env.stripe.posts())

    hub = env.hub()
    again = sync_once(hub)
    hub.close()

    assert {p["key"]: p["vendor_id"] for p in again.pushed} == sent
    assert all("already open in Stripe" in p["summary"] for p in again.pushed)
    assert len(env.stripe.list_objects("customer")) == 5 and len(env.invoices()) == 5
    assert len(env.stripe.posts()) == posts


def test_invoice_finalize_that_met_a_stored_500_finalizes_once(sim, connect, context):
    known_customer(sim, context)
    draft = connect().push(make_action(finalize=False), context)
    sim.fail_stored_next(500, path="/v1/invoices/*/finalize")
    finalizing = FakeContext()
    with pytest.raises(Crash):
        connect(crash_after(sim, "/v1/invoices/*/finalize")).push(finalize_action(draft.vendor_id), finalizing)

    result = connect().push(finalize_action(draft.vendor_id), finalizing.next_attempt())
    assert result.details["status"] == "open" and sim.invoices[draft.vendor_id]["number"]
    base = idempotency_key(f"{KEY}:finalize", "finalize")
    assert keys_sent(sim, "/v1/invoices/*/finalize") == [base, base, f"{base}:r2"]
