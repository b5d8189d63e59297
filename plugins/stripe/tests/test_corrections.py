"""Voids and credit notes pushed to Stripe exactly once, and the simulator's credit notes."""

from __future__ import annotations

import pytest

from hub import Action, MappingError, VendorError
from plugins.stripe.plugin import idempotency_key, to_credit_note_params
from plugins.stripe.tests.helpers import Crash, FakeContext, crash_after, make_action
from plugins.stripe.tests.test_plugin import KEY, known_customer

VOID_KEY, CREDIT_KEY = f"void:{KEY}", f"credit:{KEY}:1"


@pytest.fixture
def sent(sim, connect, context):
    """An invoice the hub sent (open in Stripe): its id."""
    known_customer(sim, context)
    return connect().push(make_action(), context).vendor_id


def void_action(invoice_id, invoice_key=KEY):
    return Action(VOID_KEY, "invoice_void", "stripe", "acme",
                  {"invoice_key": invoice_key, "invoice_id": invoice_id, "reason": "wrong tier",
                   "requested_by": "alice@msp"}, "2026-10")


def credit_action(invoice_id, n=1, **body):
    payload = {"invoice_key": KEY, "invoice_id": invoice_id, "reason": "hours entered twice",
               "requested_by": "alice@msp", "currency": "EUR", **body}
    return Action(f"credit:{KEY}:{n}", "credit_note", "stripe", "acme", payload, "2026-10")


def posts_to(sim, glob):
    return [e for e in sim.posts() if __import__("fnmatch").fnmatchcase(e["path"], glob)]


# --- void ------------------------------------------------------------------------------------------

def test_a_void_voids_the_open_invoice_once_under_the_actions_idempotency_key(sim, connect, sent):
    result = connect().push(void_action(sent), FakeContext())
    assert sim.invoices[sent]["status"] == "void" and result.vendor_id == sent
    assert f"voided (wrong tier)" in result.summary and result.details["status"] == "void"
    assert [e["idempotency_key"] for e in posts_to(sim, "/v1/invoices/*/void")] == [idempotency_key(VOID_KEY, "void")]


def test_a_void_of_an_invoice_already_void_sends_nothing(sim, connect, sent):
    sim.invoices[sent]["status"] = "void"
    result = connect().push(void_action(sent), FakeContext())
    assert "already void in Stripe, nothing sent" in result.summary
    assert posts_to(sim, "/v1/invoices/*/void") == []


def test_a_void_of_a_paid_invoice_is_refused_naming_a_credit_note(sim, connect, sent):
    sim.mark_paid(sent)
    with pytest.raises(VendorError) as info:
        connect().push(void_action(sent), FakeContext())
    assert "is paid in Stripe; nothing was sent" in str(info.value)
    assert f"msp-hub invoice credit {KEY}" in str(info.value)
    assert posts_to(sim, "/v1/invoices/*/void") == [] and sim.invoices[sent]["status"] == "paid"


def test_a_void_of_an_invoice_made_for_another_action_sends_nothing(sim, connect, sent):
    with pytest.raises(VendorError, match="was made for 'invoice:acme:2026-10', not 'invoice:acme:2026-09'"):
        connect().push(void_action(sent, invoice_key="invoice:acme:2026-09"), FakeContext())
    assert sim.invoices[sent]["status"] == "open"


def test_a_crash_after_stripe_voided_is_done_on_the_next_push_without_a_second_request(sim, connect, sent):
    context = FakeContext()
    with pytest.raises(Crash):
        connect(crash_after(sim, "/v1/invoices/*/void")).push(void_action(sent), context)
    assert sim.invoices[sent]["status"] == "void"
    result = connect().push(void_action(sent), context.next_attempt())
    assert result.vendor_id == sent and len(posts_to(sim, "/v1/invoices/*/void")) == 1


def test_a_void_payload_without_its_reason_is_refused_before_any_request(sim, connect, sent):
    action = void_action(sent)
    action.payload.pop("reason")
    before = len(sim.log)
    with pytest.raises(MappingError, match="its payload lacks reason"):
        connect().push(action, FakeContext())
    assert len(sim.log) == before


# --- credit notes -----------------------------------------------------------------------------------

def test_a_credit_note_of_lines_credits_those_stripe_lines_whole(sim, connect, sent):
    action = credit_action(sent, lines=[{"code": "server", "description": "Managed servers", "amount": 2500}])
    result = connect().push(action, FakeContext())
    note = sim.credit_notes[result.vendor_id]
    server = next(l for l in sim._lines[sent] if l["metadata"]["msp_hub_line"] == "server")
    assert [(l["type"], l["invoice_line_item"], l["amount"]) for l in note["lines"]["data"]] == \
        [("invoice_line_item", server["id"], 2500)]
    assert note["total"] == 2500 and note["type"] == "pre_payment" and note["reason"] == "order_change"
    assert note["memo"] == "hours entered twice (asked by alice@msp)"
    assert note["metadata"]["msp_hub_action_key"] == CREDIT_KEY
    assert sim.invoices[sent]["pre_payment_credit_notes_amount"] == 2500 and sim.invoices[sent]["status"] == "open"
    assert "25.00 EUR" in result.summary and result.details["invoice_key"] == KEY
    assert [e["idempotency_key"] for e in posts_to(sim, "/v1/credit_notes")] == \
        [idempotency_key(CREDIT_KEY, "credit_note")]


def test_a_credit_note_of_an_amount_on_a_paid_invoice_credits_the_customers_balance(sim, connect, sent):
    sim.mark_paid(sent)
    result = connect().push(credit_action(sent, amount=1200), FakeContext())
    note = sim.credit_notes[result.vendor_id]
    assert note["total"] == 1200 and note["type"] == "post_payment" and note["lines"]["data"] == []
    assert sim.customers[sim.invoices[sent]["customer"]]["balance"] == -1200


def test_a_credit_note_already_issued_is_found_by_its_metadata_and_not_sent_again(sim, connect, sent):
    context = FakeContext()
    with pytest.raises(Crash):
        connect(crash_after(sim, "/v1/credit_notes")).push(credit_action(sent, amount=500), context)
    assert len(sim.credit_notes) == 1
    sim.expire_idempotency_keys()          # found by its metadata, not only by Stripe's key memory
    result = connect().push(credit_action(sent, amount=500), context.next_attempt())
    assert "already issued in Stripe, nothing sent" in result.summary
    assert len(sim.credit_notes) == 1 and len(posts_to(sim, "/v1/credit_notes")) == 1


def test_a_credit_note_of_a_line_stripe_does_not_have_is_refused_before_it_is_sent(sim, connect, sent):
    action = credit_action(sent, lines=[{"code": "gone", "description": "x", "amount": 100}])
    with pytest.raises(VendorError, match="has no line 'gone' in Stripe"):
        connect().push(action, FakeContext())
    assert sim.credit_notes == {}


def test_a_credit_note_on_a_void_invoice_is_refused_naming_the_action(sim, connect, sent):
    sim.invoices[sent]["status"] = "void"
    with pytest.raises(VendorError, match=f"is void in Stripe: only an open or paid invoice takes a credit note"):
        connect().push(credit_action(sent, amount=100), FakeContext())


def test_credit_note_params_name_the_action_and_take_the_lines_taxes():
    invoice = {"id": "in_1", "status": "open", "number": "A-1"}
    stripe_lines = [{"id": "il_1", "amount": 1000, "metadata": {"msp_hub_line": "a"},
                     "taxes": [{"amount": 200}]}]
    params = to_credit_note_params(credit_action("in_1", lines=[{"code": "a", "description": "A", "amount": 1000}]),
                                   invoice, stripe_lines)
    assert params["lines"] == [{"type": "invoice_line_item", "invoice_line_item": "il_1", "amount": 1200}]
    assert "credit_amount" not in params and params["invoice"] == "in_1"


# --- the simulator's credit notes ---------------------------------------------------------------------

def test_the_simulator_refuses_a_credit_note_above_what_is_left_to_credit(sim, connect, sent):
    total = sim.list_objects("invoice")[0]["total"]
    connect().push(credit_action(sent, amount=total - 100), FakeContext())
    with pytest.raises(VendorError, match=r"greater than the amount left to credit on the invoice \(100\)"):
        connect().push(credit_action(sent, n=2, amount=101), FakeContext())
    connect().push(credit_action(sent, n=3, amount=100), FakeContext())
    assert sim.invoices[sent]["status"] == "paid"     # fully credited before payment


def test_the_simulator_validates_credit_note_params_like_stripe(sim, connect, sent):
    client = connect().client

    def create(params):
        return client._call("POST", "/v1/credit_notes", client._sdk.v1.credit_notes.create, params,
                            {"idempotency_key": str(params)})

    with pytest.raises(VendorError, match="Invalid reason"):
        create({"invoice": sent, "amount": 100, "reason": "oops"})
    with pytest.raises(VendorError, match="You must pass either amount or lines"):
        create({"invoice": sent})
    with pytest.raises(VendorError, match="only for a paid invoice"):
        create({"invoice": sent, "amount": 100, "credit_amount": 100})
    sim.mark_paid(sent)
    with pytest.raises(VendorError, match=r"must equal the credit note amount \(100\)"):
        create({"invoice": sent, "amount": 100})
    note = create({"invoice": sent, "lines": [{"type": "custom_line_item", "description": "goodwill",
                                               "unit_amount": 100, "quantity": 2}], "out_of_band_amount": 200})
    assert note["total"] == 200 and note["out_of_band_amount"] == 200
    listed = client._call("GET", "/v1/credit_notes", client._sdk.v1.credit_notes.list, {"invoice": sent})
    assert [n["id"] for n in listed["data"]] == [note["id"]]
