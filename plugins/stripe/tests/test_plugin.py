"""The Stripe connector: mapping, settings, the hook, and pushing invoices exactly once."""

from __future__ import annotations

import importlib.metadata

import pytest

import plugins.stripe.plugin as stripe_plugin
from hub import Action, ConfigError, CredentialsError, MappingError, RetryableError, VendorError
from hub.config import config_from_dict
from hub.plugins import get_plugin_manager
from plugins.stripe.plugin import (
    LINES_PER_REQUEST,
    StripeConnector,
    StripeSettings,
    customer_search_query,
    format_amount,
    idempotency_key,
    to_customer_params,
    to_invoice_params,
    to_line_params,
)
from plugins.stripe.tests.helpers import (
    API_KEY,
    PAYLOAD,
    Crash,
    FakeContext,
    crash_after,
    make_action,
    make_lines,
)

KEY = "invoice:acme:2026-10"


def known_customer(sim, context, client_id="acme", name="Acme Dental"):
    """Create the client's customer in the simulator and link it, as an earlier push would have."""
    customer = sim._create_customer({"name": name, "metadata": {"msp_hub_client_id": client_id}})
    context.set_link(client_id, "stripe", customer["id"])
    return customer["id"]


def invoices_for(sim, action_key=KEY):
    return [inv for inv in sim.invoices.values() if inv["metadata"].get("msp_hub_action_key") == action_key]


def lines_of(sim, invoice_id):
    return sim._lines[invoice_id]


def requests_since(sim, since):
    return [f"{e['method']} {e['path']}" for e in sim.log[since:]]


# --- mapping -------------------------------------------------------------------------------------

def test_idempotency_key_names_the_action_and_the_step():
    assert idempotency_key(KEY, "create") == "msp-hub:invoice:acme:2026-10:create"


def test_idempotency_key_is_hashed_when_too_long_for_stripe():
    long_key = "invoice:" + "x" * 300 + ":2026-10"
    key = idempotency_key(long_key, "add_lines")
    assert len(key) <= 255 and key.endswith(":add_lines")
    assert key == idempotency_key(long_key, "add_lines")
    assert key != idempotency_key(long_key + "y", "add_lines")


def test_to_invoice_params_makes_a_draft_that_sweeps_nothing():
    settings = StripeSettings(api_key=API_KEY)
    params = to_invoice_params(make_action(), "cus_1", settings)
    assert params == {
        "customer": "cus_1", "currency": "eur", "collection_method": "send_invoice", "days_until_due": 30,
        "auto_advance": False, "pending_invoice_items_behavior": "exclude",
        "description": "Managed services, October 2026",
        "metadata": {"msp_hub_action_key": KEY, "msp_hub_client_id": "acme", "msp_hub_period": "2026-10"},
    }


def test_to_invoice_params_charge_automatically_has_no_due_days():
    settings = StripeSettings(api_key=API_KEY, collection_method="charge_automatically")
    params = to_invoice_params(make_action(), "cus_1", settings)
    assert params["collection_method"] == "charge_automatically" and "days_until_due" not in params


def test_to_line_params_keeps_the_hub_amount_and_makes_the_period_end_inclusive():
    line = {"code": "server", "description": "Servers", "quantity": "2.5", "unit_amount": 1000, "amount": 2500}
    assert to_line_params(line, 1790812800, 1793491200, "eur") == {
        "amount": 2500, "description": "Servers (2.5 x 10.00 EUR)",
        "period": {"start": 1790812800, "end": 1793491199},
        "metadata": {"msp_hub_line": "server", "msp_hub_quantity": "2.5", "msp_hub_unit_amount": "1000"},
    }


def test_to_line_params_sends_a_whole_quantity_with_its_unit_amount():
    line = {"code": "ws", "description": "Workstations", "quantity": "5", "unit_amount": 12000, "amount": 60000}
    assert to_line_params(line, 1790812800, 1793491200, "eur") == {
        "description": "Workstations", "quantity": 5,
        "price_data": {"currency": "eur", "product_data": {"name": "Workstations"}, "unit_amount": 12000},
        "period": {"start": 1790812800, "end": 1793491199},
        "metadata": {"msp_hub_line": "ws", "msp_hub_quantity": "5", "msp_hub_unit_amount": "12000"},
    }


@pytest.mark.parametrize("quantity, unit_amount, amount, description", [
    ("1.5", 8000, 12000, "Support (1.5 x 80.00 EUR)"),        # fractional hours
    ("3", 333, 1000, "Support (3 x 3.33 EUR)"),               # rounded by the plan: 3 x 3.33 != 10.00
    ("2", -500, -1000, "Support (2 x -5.00 EUR)"),            # a credit: an inline price cannot be negative
    ("1", 4900, 4900, "Support"),
])
def test_to_line_params_sends_the_amount_when_quantity_times_unit_is_not_it(quantity, unit_amount, amount,
                                                                            description):
    line = {"code": "support", "description": "Support", "quantity": quantity, "unit_amount": unit_amount,
            "amount": amount}
    params = to_line_params(line, 1790812800, 1793491200, "eur")
    if quantity == "1":  # a single unit is billed as quantity 1 of its price
        assert params["quantity"] == 1 and "amount" not in params
    else:
        assert (params["amount"], params["description"]) == (amount, description)
        assert "quantity" not in params and "price_data" not in params


def test_to_customer_params_tags_the_client_id():
    assert to_customer_params(make_action()) == {"name": "Acme Dental",
                                                 "metadata": {"msp_hub_client_id": "acme"}}


def test_customer_search_query_escapes_quotes():
    assert customer_search_query("o'brien") == "metadata['msp_hub_client_id']:'o\\'brien'"


@pytest.mark.parametrize("amount, currency, text", [
    (123450, "EUR", "1234.50 EUR"), (5, "usd", "0.05 USD"), (-250, "EUR", "-2.50 EUR"),
    (1200, "JPY", "1200 JPY"), (1234, "KWD", "1.234 KWD"),
])
def test_format_amount_uses_the_currency_minor_unit(amount, currency, text):
    assert format_amount(amount, currency) == text


def test_push_refuses_a_payload_without_lines(connect, context):
    with pytest.raises(MappingError, match="at least one line"):
        connect().push(make_action(lines=[]), context)


def test_push_names_what_the_payload_lacks(connect, context):
    action = make_action()
    del action.payload["period_end"]
    with pytest.raises(MappingError, match="payload has no period_end"):
        connect().push(action, context)


def test_push_refuses_a_fractional_amount(connect, context):
    lines = [dict(PAYLOAD["lines"][0], amount=12.5)]
    with pytest.raises(MappingError, match="integer minor units"):
        connect().push(make_action(lines=lines), context)


# --- settings and the hook -----------------------------------------------------------------------

def config(section=None, environ=None):
    raw = {"connectors": {"stripe": section}} if section is not None else {}
    return config_from_dict(raw, environ=environ if environ is not None else {"STRIPE_KEY": "sk_test_env"})


def test_settings_from_config_defaults():
    settings = StripeSettings.from_config(config({"api_key_env": "STRIPE_KEY"}))
    assert settings.api_key.reveal() == "sk_test_env"
    assert (settings.base_url, settings.days_until_due, settings.collection_method, settings.line_mode) == (
        "https://api.stripe.com", 30, "send_invoice", "add_lines")


def test_settings_from_config_reads_every_option():
    settings = StripeSettings.from_config(config({
        "api_key_env": "STRIPE_KEY", "base_url": "http://127.0.0.1:8420/", "days_until_due": 14,
        "collection_method": "charge_automatically", "line_mode": "invoiceitems"}))
    assert (settings.base_url, settings.days_until_due, settings.collection_method, settings.line_mode) == (
        "http://127.0.0.1:8420", 14, "charge_automatically", "invoiceitems")


@pytest.mark.parametrize("section, key", [
    ({"api_key_env": "STRIPE_KEY", "line_mode": "bulk"}, "connectors.stripe.line_mode"),
    ({"api_key_env": "STRIPE_KEY", "days_until_due": "30"}, "connectors.stripe.days_until_due"),
    ({"api_key_env": "STRIPE_KEY", "collection_method": "cash"}, "connectors.stripe.collection_method"),
    ({"api_key_env": "STRIPE_KEY", "base_url": "api.stripe.com"}, "connectors.stripe.base_url"),
    ({"api_key_env": "STRIPE_KEY", "days_until_do": 30}, "connectors.stripe.days_until_do"),
    ({"api_key": "sk_test_inline"}, "connectors.stripe.api_key"),
    ({}, "connectors.stripe.api_key"),
])
def test_settings_errors_name_the_key_and_the_fix(section, key):
    with pytest.raises(ConfigError) as info:
        StripeSettings.from_config(config(section))
    assert info.value.key == key and info.value.fix
    assert "sk_test_inline" not in str(info.value)


def test_hook_register_connectors_returns_nothing_without_a_section():
    pm = get_plugin_manager(stripe_plugin, load_entrypoints=False)
    assert [c for result in pm.hook.register_connectors(config=config()) for c in result] == []


def test_hook_register_connectors_returns_the_stripe_connector():
    pm = get_plugin_manager(stripe_plugin, load_entrypoints=False)
    connectors = [c for result in pm.hook.register_connectors(config=config({"api_key_env": "STRIPE_KEY"}))
                  for c in result]
    assert len(connectors) == 1
    connector = connectors[0]
    try:
        assert isinstance(connector, StripeConnector)
        assert (connector.name, connector.action_kinds, connector.streams()) == (
            "stripe", frozenset({"invoice", "invoice_finalize", "invoice_void", "credit_note"}), [])
    finally:
        connector.close()


def test_entry_point_loads_this_module():
    (ep,) = [ep for ep in importlib.metadata.entry_points(group="msp_hub") if ep.name == "stripe"]
    assert ep.value == "plugins.stripe.plugin" and ep.load() is stripe_plugin


# --- push: the happy paths -----------------------------------------------------------------------

def test_push_for_a_known_customer_makes_exactly_four_requests(sim, connect, context):
    known_customer(sim, context)
    connector = connect()
    result = connector.push(make_action(), context)

    assert sim.requests == 4 and connector.client.requests == 4
    assert requests_since(sim, 0)[0] == "GET /v1/invoices"  # the customer's invoices, looked at first
    (invoice,) = invoices_for(sim)
    assert result.vendor_id == invoice["id"]
    assert invoice["status"] == "open" and invoice["number"]
    assert result.details["number"] == invoice["number"] and result.details["total"] == 13700
    assert "13.70" not in result.summary and "137.00 EUR" in result.summary
    assert [line["amount"] for line in lines_of(sim, invoice["id"])] == [6300, 2500, 4900]
    assert context.progress == {"invoice_id": invoice["id"], "step": "finalized"}


def test_push_for_a_new_client_creates_the_customer_in_six_requests(sim, connect, context):
    result = connect().push(make_action(), context)

    assert requests_since(sim, 0) == [
        "GET /v1/customers/search", "POST /v1/customers", "GET /v1/invoices/search", "POST /v1/invoices",
        f"POST /v1/invoices/{result.vendor_id}/add_lines", f"POST /v1/invoices/{result.vendor_id}/finalize"]
    (customer,) = sim.customers.values()
    assert customer["name"] == "Acme Dental" and customer["metadata"] == {"msp_hub_client_id": "acme"}
    assert context.get_link("acme", "stripe") == customer["id"]
    assert sim.invoices[result.vendor_id]["customer"] == customer["id"]


def test_every_post_carries_its_deterministic_idempotency_key(sim, connect, context):
    result = connect().push(make_action(), context)
    invoice_id = result.vendor_id
    assert [(e["path"], e["idempotency_key"]) for e in sim.posts()] == [
        ("/v1/customers", "msp-hub:customer:acme:create"),
        ("/v1/invoices", f"msp-hub:{KEY}:create"),
        (f"/v1/invoices/{invoice_id}/add_lines", f"msp-hub:{KEY}:add_lines"),
        (f"/v1/invoices/{invoice_id}/finalize", f"msp-hub:{KEY}:finalize"),
    ]


def test_the_draft_is_sent_as_stripe_expects(sim, connect, context):
    connect(days_until_due=14).push(make_action(), context)
    create = next(e for e in sim.posts() if e["path"] == "/v1/invoices")
    assert create["params"]["auto_advance"] == "false"
    assert create["params"]["pending_invoice_items_behavior"] == "exclude"
    assert create["params"]["days_until_due"] == "14" and create["params"]["currency"] == "eur"
    add = next(e for e in sim.posts() if e["path"].endswith("/add_lines"))
    assert add["params"]["lines"][0] == {
        "quantity": "42", "description": "Managed workstations",
        "price_data": {"currency": "eur", "product_data": {"name": "Managed workstations"}, "unit_amount": "150"},
        "period": {"start": "1790812800", "end": "1793491199"},
        "metadata": {"msp_hub_line": "workstation", "msp_hub_quantity": "42", "msp_hub_unit_amount": "150"}}
    assert add["params"]["lines"][1] == {
        "amount": "2500", "description": "Managed servers (prorated) (2.5 x 10.00 EUR)",
        "period": {"start": "1790812800", "end": "1793491199"},
        "metadata": {"msp_hub_line": "server", "msp_hub_quantity": "2.5", "msp_hub_unit_amount": "1000"}}


def test_pending_items_of_the_customer_stay_off_the_invoice(sim, connect, context):
    customer_id = known_customer(sim, context)
    sim._create_invoice_item({"customer": customer_id, "currency": "eur", "amount": "999"})
    result = connect().push(make_action(), context)
    assert sim._export_invoice(sim.invoices[result.vendor_id])["total"] == 13700


def test_many_lines_are_sent_in_chunks(sim, connect, context):
    known_customer(sim, context)
    lines = make_lines(LINES_PER_REQUEST * 2 + 7)
    result = connect().push(make_action(lines=lines, total=sum(l["amount"] for l in lines)), context)

    adds = [e for e in sim.posts() if e["path"].endswith("/add_lines")]
    assert [len(e["params"]["lines"]) for e in adds] == [50, 50, 7]
    assert [e["idempotency_key"] for e in adds] == [
        f"msp-hub:{KEY}:add_lines", f"msp-hub:{KEY}:add_lines:50", f"msp-hub:{KEY}:add_lines:100"]
    assert [l["metadata"]["msp_hub_line"] for l in lines_of(sim, result.vendor_id)] == [l["code"] for l in lines]


def test_invoiceitems_mode_posts_one_item_per_line(sim, connect, context):
    known_customer(sim, context)
    result = connect(line_mode="invoiceitems").push(make_action(), context)

    items = [e for e in sim.posts() if e["path"] == "/v1/invoiceitems"]
    assert [e["idempotency_key"] for e in items] == [f"msp-hub:{KEY}:line:{i}" for i in range(3)]
    assert all(e["params"]["invoice"] == result.vendor_id and e["params"]["currency"] == "eur" for e in items)
    # list, create, 3 items, the draft read back to check its total, finalize
    assert sim.requests == 1 + 1 + 3 + 1 + 1
    assert result.details["total"] == 13700 and result.details["status"] == "open"


# --- push: crashes and re-runs -------------------------------------------------------------------

def test_rerun_after_a_crash_before_the_draft_was_saved_finds_the_draft(sim, connect, context):
    known_customer(sim, context)
    with pytest.raises(Crash):
        connect(crash_after(sim, "/v1/invoices")).push(make_action(), context)
    assert context.progress == {} and len(invoices_for(sim)) == 1

    since = len(sim.log)
    result = connect().push(make_action(), context.next_attempt())

    (invoice,) = invoices_for(sim)
    assert result.vendor_id == invoice["id"] and invoice["status"] == "open"
    assert len(lines_of(sim, invoice["id"])) == 3
    assert requests_since(sim, since) == [
        "GET /v1/invoices", f"POST /v1/invoices/{invoice['id']}/add_lines",
        f"POST /v1/invoices/{invoice['id']}/finalize"]


def test_rerun_after_idempotency_keys_expired_still_finds_the_draft_by_metadata(sim, connect, context):
    known_customer(sim, context)
    with pytest.raises(Crash):
        connect(crash_after(sim, "/v1/invoices")).push(make_action(), context)
    sim.expire_idempotency_keys()  # more than 24 h passed: a blind create would make a second invoice

    result = connect().push(make_action(), context.next_attempt())
    (invoice,) = invoices_for(sim)
    assert result.vendor_id == invoice["id"] and len(lines_of(sim, invoice["id"])) == 3


def test_rerun_after_a_crash_after_add_lines_only_finalizes(sim, connect, context):
    known_customer(sim, context)
    with pytest.raises(Crash):
        connect(crash_after(sim, "/v1/invoices/*/add_lines")).push(make_action(), context)
    assert context.progress["step"] == "created"
    sim.expire_idempotency_keys()
    since = len(sim.log)

    result = connect().push(make_action(), context.next_attempt())
    assert len(lines_of(sim, result.vendor_id)) == 3
    assert requests_since(sim, since) == [f"GET /v1/invoices/{result.vendor_id}",
                                          f"POST /v1/invoices/{result.vendor_id}/finalize"]


def test_rerun_after_a_crash_after_finalize_changes_nothing(sim, connect, context):
    known_customer(sim, context)
    with pytest.raises(Crash):
        connect(crash_after(sim, "/v1/invoices/*/finalize")).push(make_action(), context)
    since = len(sim.log)

    result = connect().push(make_action(), context.next_attempt())
    assert requests_since(sim, since) == [f"GET /v1/invoices/{result.vendor_id}"]
    assert "already open" in result.summary
    assert result.details["number"] == sim.invoices[result.vendor_id]["number"]


def test_rerun_after_a_crash_between_chunks_adds_only_the_missing_lines(sim, connect, context):
    known_customer(sim, context)
    lines = make_lines(120)
    action = make_action(lines=lines, total=sum(l["amount"] for l in lines))
    handler = crash_after(sim, "/v1/invoices/*/add_lines")
    sim_calls = {"n": 0}

    def second_chunk_crash(request):  # let the first chunk through, die after the second
        if request.url.path.endswith("/add_lines"):
            sim_calls["n"] += 1
            if sim_calls["n"] == 1:
                return sim.handler(request)
        return handler(request)

    with pytest.raises(Crash):
        connect(second_chunk_crash).push(action, context)
    assert len(lines_of(sim, context.progress["invoice_id"])) == 100
    sim.expire_idempotency_keys()

    result = connect().push(action, context.next_attempt())
    assert [l["metadata"]["msp_hub_line"] for l in lines_of(sim, result.vendor_id)] == [l["code"] for l in lines]
    assert result.details["total"] == action.payload["total"]


def test_rerun_in_invoiceitems_mode_skips_the_items_already_attached(sim, connect, context):
    known_customer(sim, context)
    with pytest.raises(Crash):
        connect(crash_after(sim, "/v1/invoiceitems"), line_mode="invoiceitems").push(make_action(), context)
    sim.expire_idempotency_keys()

    result = connect(line_mode="invoiceitems").push(make_action(), context.next_attempt())
    assert [l["metadata"]["msp_hub_line"] for l in lines_of(sim, result.vendor_id)] == [
        "workstation", "server", "backup"]


def test_rerun_after_a_crash_before_the_customer_link_was_saved_reuses_the_customer(sim, connect, context):
    sim.search_lag = True  # search has not indexed the new customer yet
    with pytest.raises(Crash):
        connect(crash_after(sim, "/v1/customers")).push(make_action(), context)
    assert context.links == {}

    connect().push(make_action(), context.next_attempt())
    assert len(sim.customers) == 1  # the create replayed the first customer through its key
    create = [e for e in sim.log if e["path"] == "/v1/customers"]
    assert [e["replayed"] for e in create] == [False, True]


def test_rerun_a_day_later_finds_the_customer_by_search(sim, connect, context):
    with pytest.raises(Crash):
        connect(crash_after(sim, "/v1/customers")).push(make_action(), context)
    sim.expire_idempotency_keys()

    connect().push(make_action(), context.next_attempt())
    assert len(sim.customers) == 1 and sim.calls("POST", "/v1/customers") == 1
    assert sim.calls("GET", "/v1/customers/search") == 2  # once on each run


def test_a_voided_invoice_is_not_billed_again(sim, connect, context):
    known_customer(sim, context)
    first = connect().push(make_action(), context)
    sim._void(first.vendor_id, {})
    sim.expire_idempotency_keys()

    again = connect().push(make_action(), FakeContext(links=context.links).next_attempt())
    assert again.vendor_id == first.vendor_id and "void" in again.summary
    assert len(sim.invoices) == 1


def test_a_draft_with_more_lines_than_the_action_is_refused(sim, connect, context):
    known_customer(sim, context)
    with pytest.raises(Crash):
        connect(crash_after(sim, "/v1/invoices/*/add_lines")).push(make_action(), context)
    with pytest.raises(VendorError, match="already has 3 lines"):
        connect().push(make_action(lines=PAYLOAD["lines"][:2], total=6300 + 2500), context.next_attempt())
    assert sim.invoices[context.progress["invoice_id"]]["status"] == "draft"


# --- push: errors --------------------------------------------------------------------------------

def test_push_survives_429_with_retry_after(sim, connect, context, sleeps):
    known_customer(sim, context)
    sim.fail_next(429, times=2, retry_after=3, path="/v1/invoices")
    result = connect().push(make_action(), context)
    assert sleeps == [3, 3] and sim.requests == 6
    assert len(invoices_for(sim)) == 1 and sim.invoices[result.vendor_id]["status"] == "open"


def test_push_survives_a_5xx_on_add_lines(sim, connect, context):
    known_customer(sim, context)
    sim.fail_next(503, path="/v1/invoices/*/add_lines")
    result = connect().push(make_action(), context)
    assert len(lines_of(sim, result.vendor_id)) == 3


def test_push_gives_up_after_the_policy_attempts(sim, connect, context, sleeps):
    known_customer(sim, context)
    sim.fail_next(500, times=10, path="/v1/invoices")
    with pytest.raises(RetryableError) as info:
        connect().push(make_action(), context)
    assert info.value.status == 500 and len(sleeps) == 4


def test_reused_key_with_other_params_is_a_vendor_error(sim, connect, context):
    customer_id = known_customer(sim, context)
    client = connect().client
    client.create_invoice({"customer": customer_id, "currency": "eur", "description": "October"},
                          idempotency_key="msp-hub:k:create")
    with pytest.raises(VendorError) as info:
        client.create_invoice({"customer": customer_id, "currency": "eur", "description": "October (corrected)"},
                              idempotency_key="msp-hub:k:create")
    error = info.value
    assert type(error) is VendorError and error.status == 400
    assert "same parameters" in str(error) and "idempotency_error" in str(error)


def test_wrong_api_key_is_a_credentials_error_without_the_key(sim, connect, context):
    secret = "sk_test_51WrongKeyThatMustNotLeak0000"
    with pytest.raises(CredentialsError) as info:
        connect(api_key=secret).push(make_action(), context)
    assert info.value.status == 401
    assert secret not in str(info.value) and "sk_test" not in str(info.value)
    assert "Invalid API Key" in str(info.value)


# --- lines: quantity x unit amount, to the cent ----------------------------------------------------

MIXED_LINES = [
    {"code": "workstation", "description": "Managed workstations", "quantity": "5", "unit_amount": 12000,
     "amount": 60000},
    {"code": "hours", "description": "Support hours", "quantity": "1.5", "unit_amount": 8000, "amount": 12000},
    {"code": "servers", "description": "Servers (prorated)", "quantity": "3", "unit_amount": 333, "amount": 1000},
    {"code": "credit", "description": "Goodwill credit", "quantity": "1", "unit_amount": -500, "amount": -500},
]
MIXED_TOTAL = 60000 + 12000 + 1000 - 500


@pytest.mark.parametrize("line_mode", ["add_lines", "invoiceitems"])
def test_lines_keep_their_quantity_and_add_up_to_the_plan_total(sim, connect, context, line_mode):
    known_customer(sim, context)
    result = connect(line_mode=line_mode).push(make_action(lines=MIXED_LINES, total=MIXED_TOTAL), context)

    lines = lines_of(sim, result.vendor_id)
    assert [(l["quantity"], l["pricing"]["unit_amount_decimal"], l["amount"]) for l in lines] == [
        (5, "12000", 60000), (1, "12000", 12000), (1, "1000", 1000), (1, "-500", -500)]
    assert [l["description"] for l in lines] == [
        "Managed workstations", "Support hours (1.5 x 80.00 EUR)", "Servers (prorated) (3 x 3.33 EUR)",
        "Goodwill credit"]
    assert sum(l["amount"] for l in lines) == MIXED_TOTAL
    assert result.details["total"] == MIXED_TOTAL and sim._export_invoice(sim.invoices[result.vendor_id])[
        "total"] == MIXED_TOTAL


def test_lines_that_do_not_add_up_to_the_total_send_nothing(sim, connect, context):
    known_customer(sim, context)
    with pytest.raises(MappingError, match=r"lines add up to 137\.00 EUR but the payload total is 137\.01 EUR"):
        connect().push(make_action(total=13701), context)
    assert sim.requests == 0


def test_a_quantity_that_is_not_a_number_is_refused(sim, connect, context):
    lines = [dict(PAYLOAD["lines"][0], quantity="forty-two")]
    with pytest.raises(MappingError, match=r"line 0 \(workstation\) quantity 'forty-two' is not a number"):
        connect().push(make_action(lines=lines, total=6300), context)


def test_a_draft_whose_total_differs_from_the_plan_is_not_finalized(sim, connect, context):
    customer_id = known_customer(sim, context)
    with pytest.raises(Crash):
        connect(crash_after(sim, "/v1/invoices/*/add_lines")).push(make_action(), context)
    draft_id = context.progress["invoice_id"]
    # someone added a line to the draft in the dashboard meanwhile
    sim._create_invoice_item({"customer": customer_id, "invoice": draft_id, "currency": "eur", "amount": "100"})

    with pytest.raises(VendorError) as info:
        connect().push(make_action(), context.next_attempt())
    assert f"draft invoice {draft_id} for {KEY} totals 138.00 EUR in Stripe but the plan's lines total " \
           "137.00 EUR; it was not finalized" in str(info.value)
    assert sim.invoices[draft_id]["status"] == "draft" and sim.calls("POST", "/v1/invoices/*/finalize") == 0


# --- a client linked by the MSP --------------------------------------------------------------------

def test_a_client_linked_to_an_existing_customer_is_invoiced_on_it(sim, connect):
    existing = sim._create_customer({"name": "ACME DENTAL LTD", "email": "billing@acme.example"})  # no hub metadata
    context = FakeContext(links={("acme", "stripe"): existing["id"]})

    result = connect().push(make_action(), context)

    assert sim.invoices[result.vendor_id]["customer"] == existing["id"]
    assert list(sim.customers) == [existing["id"]]
    assert sim.calls("POST", "/v1/customers") == 0 and sim.calls("GET", "/v1/customers/search") == 0


# --- review window: drafts, then invoice_finalize --------------------------------------------------

def finalize_action(invoice_id, invoice_key=KEY):
    return Action(key=f"{invoice_key}:finalize", kind="invoice_finalize", connector="stripe", client_id="acme",
                  payload={"invoice_key": invoice_key, "invoice_id": invoice_id}, period="2026-10")


def test_finalize_false_leaves_a_complete_draft_for_review(sim, connect, context):
    known_customer(sim, context)
    result = connect().push(make_action(finalize=False), context)

    invoice = sim.invoices[result.vendor_id]
    assert invoice["status"] == "draft" and invoice["auto_advance"] is False
    assert result.details["draft"] is True and result.details["invoice_id"] == invoice["id"]
    assert result.details["total"] == 13700 and len(lines_of(sim, invoice["id"])) == 3
    assert sim.calls("POST", "/v1/invoices/*/finalize") == 0
    assert context.progress["step"] == "drafted"


def test_finalize_false_rerun_returns_the_draft_without_finalizing(sim, connect, context):
    known_customer(sim, context)
    first = connect().push(make_action(finalize=False), context)
    again = connect().push(make_action(finalize=False), context.next_attempt())
    assert again.vendor_id == first.vendor_id and again.details["draft"] is True
    assert len(sim.invoices) == 1 and sim.calls("POST", "/v1/invoices/*/finalize") == 0


def test_a_finalize_that_is_not_a_boolean_is_refused(connect, context):
    with pytest.raises(MappingError, match="finalize must be true or false, got 'no'"):
        connect().push(make_action(finalize="no"), context)


def test_invoice_finalize_finalizes_the_reviewed_draft_once(sim, connect, context):
    known_customer(sim, context)
    draft = connect().push(make_action(finalize=False), context)
    action = finalize_action(draft.vendor_id)
    finalizing = FakeContext()

    result = connect().push(action, finalizing)
    invoice = sim.invoices[draft.vendor_id]
    assert invoice["status"] == "open" and invoice["number"] and result.vendor_id == invoice["id"]
    assert "draft" not in result.details and result.details["status"] == "open"
    assert [e["idempotency_key"] for e in sim.posts() if e["path"].endswith("/finalize")] == [
        f"msp-hub:{KEY}:finalize:finalize"]

    since = len(sim.log)
    again = connect().push(action, finalizing.next_attempt())  # a retry, or a crash after the finalize
    assert again.vendor_id == invoice["id"] and "already open" in again.summary
    assert requests_since(sim, since) == [f"GET /v1/invoices/{invoice['id']}"]


def test_invoice_finalize_of_a_draft_finalized_in_the_dashboard_is_success(sim, connect, context):
    known_customer(sim, context)
    draft = connect().push(make_action(finalize=False), context)
    sim._finalize(draft.vendor_id, {})
    result = connect().push(finalize_action(draft.vendor_id), FakeContext())
    assert result.details["status"] == "open" and sim.calls("POST", "/v1/invoices/*/finalize") == 0


def test_invoice_finalize_refuses_an_invoice_of_another_action(sim, connect, context):
    known_customer(sim, context)
    draft = connect().push(make_action(finalize=False), context)
    with pytest.raises(VendorError, match=r"was made for 'invoice:acme:2026-10', not 'invoice:acme:2026-09'"):
        connect().push(finalize_action(draft.vendor_id, invoice_key="invoice:acme:2026-09"), FakeContext())
    assert sim.invoices[draft.vendor_id]["status"] == "draft"


def test_invoice_finalize_of_a_deleted_draft_names_the_fix(sim, connect):
    with pytest.raises(VendorError, match="in_gone of invoice:acme:2026-10 does not exist in Stripe") as info:
        connect().push(finalize_action("in_gone"), FakeContext())
    assert "push the invoice action again" in str(info.value)


def test_invoice_finalize_needs_its_payload(connect):
    action = Action(key="f", kind="invoice_finalize", connector="stripe", client_id="acme", payload={})
    with pytest.raises(MappingError, match="payload has no invoice_key, invoice_id"):
        connect().push(action, FakeContext())
