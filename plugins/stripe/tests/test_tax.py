"""VAT, the client's details and legal mentions on Stripe invoices: tax rates made once, the
customer kept in step with the plan, footer and custom fields, Stripe Tax, and the totals with tax
checked before anything is finalized."""

from __future__ import annotations

import copy

import pytest

import plugins.stripe.plugin as stripe_plugin
from hub import Action, ConfigError, MappingError, VendorError
from hub.config import config_from_dict
from plugins.stripe.plugin import (
    StripeSettings,
    line_tax,
    tax_rate_key,
    to_customer_params,
    to_invoice_params,
    to_tax_rate_params,
    vat_type,
)
from plugins.stripe.tests.helpers import API_KEY, PAYLOAD, Crash, FakeContext, crash_after

ADDRESS = {"line1": "12 rue de la Paix", "city": "Paris", "postal_code": "75002", "country": "FR"}
FOOTER = ("Acme IT SAS, SIREN 123 456 789, RCS Paris. Pénalités de retard : 3 fois le taux d'intérêt légal. "
          "Indemnité forfaitaire pour frais de recouvrement : 40 EUR.")
FIELDS = [{"name": "SIRET", "value": "123 456 789 00012"}, {"name": "TVA intracommunautaire", "value": "FR12123456789"}]


def taxed(percents=("20", "20", "20"), treatment="standard", customer=None, automatic=False, **extra):
    """The sample payload with VAT on each line (None: untaxed) and the tax block the plan makes."""
    payload = copy.deepcopy(PAYLOAD)
    by_rate: dict[str, dict] = {}
    for line, percent in zip(payload["lines"], percents):
        if percent is not None:
            line["tax"] = {"percent": percent, "name": "TVA"}
            entry = by_rate.setdefault(percent, {"percent": percent, "name": "TVA", "base": 0, "tax": 0})
            entry["base"] += line["amount"]
            entry["tax"] += line_tax(line["amount"], percent)
    total_tax = sum(r["tax"] for r in by_rate.values())
    payload["tax"] = {"treatment": treatment, "country": "FR",
                      "mention": "Autoliquidation" if treatment == "reverse_charge" else None,
                      "by_rate": list(by_rate.values()), "total_tax": total_tax,
                      "total_with_tax": payload["total"] + total_tax, "automatic": automatic}
    if customer is not None:
        payload["customer"] = customer
    payload.update(extra)
    return payload


def action(payload, client_id="acme", period="2026-10") -> Action:
    return Action(key=f"invoice:{client_id}:{period}", kind="invoice", connector="stripe",
                  client_id=client_id, payload=payload, period=period)


def paths(sim, since=0):
    return [f"{e['method']} {e['path']}" for e in sim.log[since:]]


def linked_customer(sim, context, client_id="acme", **fields):
    customer = sim._create_customer({"name": "Acme Dental", "metadata": {"msp_hub_client_id": client_id}, **fields})
    context.set_link(client_id, "stripe", customer["id"])
    return customer["id"]


# --- pure mapping --------------------------------------------------------------------------------

@pytest.mark.parametrize("amount, percent, tax", [
    (6300, "20", 1260), (333, "20", 67), (2525, "5.5", 139), (1025, "10", 103), (1, "20", 0), (3, "20", 1),
])
def test_line_tax_rounds_half_up_per_line(amount, percent, tax):
    assert line_tax(amount, percent) == tax


def test_a_tax_rate_is_keyed_and_tagged_deterministically():
    assert tax_rate_key("20.0", "TVA", "fr") == tax_rate_key("20", "TVA", "FR") == "FR:20:TVA"
    assert to_tax_rate_params("5.50", "TVA", "FR") == {
        "display_name": "TVA", "percentage": "5.5", "inclusive": False, "country": "FR", "jurisdiction": "FR",
        "description": "TVA 5.5 % (FR), made by msp-hub", "metadata": {"msp_hub_tax_rate": "FR:5.5:TVA"}}


@pytest.mark.parametrize("number, kind", [
    ("FR12 123 456 789", "eu_vat"), ("DE123456789", "eu_vat"), ("GB123456789", "gb_vat"),
    ("CHE-123.456.789 MWST", "ch_vat"), ("US12-3456789", None),
])
def test_vat_type_follows_the_country_prefix(number, kind):
    assert vat_type(number) == kind


def test_a_new_customer_carries_the_clients_details():
    customer = {"name": "Acme Dental SARL", "email": "compta@acme.fr", "address": dict(ADDRESS, line2=None),
                "vat_number": "FR12123456789", "tax_exempt": "none"}
    assert to_customer_params(action(taxed(customer=customer, locale="fr-FR"))) == {
        "name": "Acme Dental SARL", "email": "compta@acme.fr", "address": ADDRESS,
        "preferred_locales": ["fr-FR"], "tax_exempt": "none",
        "tax_id_data": [{"type": "eu_vat", "value": "FR12123456789"}],
        "metadata": {"msp_hub_client_id": "acme"}}


def test_the_invoice_carries_footer_custom_fields_and_stripe_tax_only_when_both_ask():
    payload = taxed(footer=FOOTER, custom_fields=FIELDS, automatic=True)
    params = to_invoice_params(action(payload), "cus_1", StripeSettings(api_key=API_KEY, automatic_tax=True))
    assert params["footer"] == FOOTER and params["custom_fields"] == FIELDS
    assert params["automatic_tax"] == {"enabled": True}
    assert "automatic_tax" not in to_invoice_params(action(payload), "cus_1", StripeSettings(api_key=API_KEY))


# --- refused before anything is sent -------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"custom_fields": [{"name": "Pénalités", "value": "x" * 141}]}, "value has 141 characters, Stripe takes at most 140"),
    ({"custom_fields": [{"name": "n" * 41, "value": "v"}]}, "has 41 characters, Stripe takes at most 40"),
    ({"custom_fields": FIELDS * 2 + [FIELDS[0]]}, "5 custom fields, Stripe takes at most 4"),
    ({"footer": "x" * 5001}, "footer has 5001 characters"),
    ({"locale": "French"}, "locale 'French' is not a language tag"),
    ({"customer": {"vat_number": "US12-3456789"}}, "correct it in the PSA company's tax identifier"),
    ({"customer": {"tax_exempt": "reverse", "vat_number": "DE123456789"}}, "lines workstation, server, backup carry VAT"),
    ({"customer": {"tax_exempt": "partial"}}, "tax_exempt 'partial'"),
    ({"customer": {"address": {"country": "France"}}}, "not a two-letter ISO code"),
])
def test_a_payload_stripe_would_refuse_is_refused_with_the_fix_and_nothing_is_sent(sim, connect, context,
                                                                                  changes, message):
    with pytest.raises(MappingError, match=message) as info:
        connect().push(action(taxed(**changes)), context)
    assert "Nothing was sent" in str(info.value) and sim.requests == 0
    held = stripe_plugin.veto_action(action=action(taxed(**changes)))
    assert message.split(" ")[0] in held and "Nothing was sent" not in held


def test_a_tax_block_that_does_not_add_up_is_refused(sim, connect, context):
    payload = taxed()
    payload["tax"]["total_tax"] += 1
    payload["tax"]["total_with_tax"] += 1
    with pytest.raises(MappingError, match="adds up to 27.40 EUR but tax.total_tax is 27.41 EUR"):
        connect().push(action(payload), context)
    payload = taxed()
    payload["tax"]["total_with_tax"] += 1
    with pytest.raises(MappingError, match="total_with_tax is 164.41 EUR"):
        connect().push(action(payload), context)
    assert sim.requests == 0


def test_a_line_tax_without_a_rate_is_refused(sim, connect, context):
    payload = taxed()
    payload["lines"][0]["tax"] = {"percent": "vingt", "name": "TVA"}
    with pytest.raises(MappingError, match=r"line 0 \(workstation\) tax must be"):
        connect().push(action(payload), context)
    assert sim.requests == 0


# --- VAT by tax rates ----------------------------------------------------------------------------

def test_french_vat_at_the_default_rate_makes_one_tax_rate_and_bills_the_total_with_tax(sim, connect, context):
    customer = {"name": "Acme Dental", "email": "compta@acme.fr", "address": ADDRESS,
                "vat_number": "FR12123456789", "tax_exempt": "none", "locale": "fr-FR"}
    result = connect().push(action(taxed(customer=customer, footer=FOOTER, custom_fields=FIELDS,
                                         locale="fr-FR")), context)

    invoice_id = result.vendor_id
    assert paths(sim) == [
        "GET /v1/customers/search", "POST /v1/customers", "GET /v1/invoices/search", "GET /v1/tax_rates",
        "POST /v1/tax_rates", "POST /v1/invoices", f"POST /v1/invoices/{invoice_id}/add_lines",
        f"POST /v1/invoices/{invoice_id}/finalize"]
    (rate,) = sim.tax_rates.values()
    assert (rate["display_name"], rate["percentage"], rate["inclusive"], rate["country"]) == ("TVA", 20.0, False, "FR")
    assert rate["metadata"] == {"msp_hub_tax_rate": "FR:20:TVA"}
    assert next(e for e in sim.posts() if e["path"] == "/v1/tax_rates")["idempotency_key"] == \
        "msp-hub:tax_rate:FR:20:TVA:create"
    invoice = sim._export_invoice(sim.invoices[invoice_id])
    assert [line["taxes"][0]["tax_rate_details"]["tax_rate"] for line in invoice["lines"]["data"]] == [rate["id"]] * 3
    assert (invoice["subtotal"], invoice["total"]) == (13700, 16440)
    assert [(t["amount"], t["taxable_amount"]) for t in invoice["total_taxes"]] == [(2740, 13700)]
    assert invoice["footer"] == FOOTER and invoice["custom_fields"] == FIELDS
    assert invoice["customer_tax_ids"] == [{"type": "eu_vat", "value": "FR12123456789"}]
    assert invoice["customer_address"]["city"] == "Paris"
    (stripe_customer,) = sim.customers.values()
    assert stripe_customer["preferred_locales"] == ["fr-FR"] and stripe_customer["email"] == "compta@acme.fr"
    assert result.details["total"] == 16440 and result.details["tax"] == 2740
    assert "164.40 EUR (tax 27.40 EUR)" in result.summary and "customer_updated" not in result.details


def test_the_tax_rate_is_found_again_never_made_twice(sim, connect, context):
    connector = connect()
    connector.push(action(taxed()), context)
    since = len(sim.log)
    connector.push(action(taxed(), period="2026-11"), FakeContext(links=context.links))
    assert "GET /v1/tax_rates" not in paths(sim, since)   # remembered by the connector
    since = len(sim.log)
    connect().push(action(taxed(), period="2026-12"), FakeContext(links=context.links))
    assert paths(sim, since)[:2] == ["GET /v1/invoices", "GET /v1/tax_rates"]  # a new process lists them once
    assert len(sim.tax_rates) == 1 and sim.calls("POST", "/v1/tax_rates") == 1
    assert all(sim._export_invoice(inv)["total"] == 16440 for inv in sim.invoices.values())


def test_an_archived_or_foreign_tax_rate_is_not_reused(sim, connect, context):
    sim._create_tax_rate({"display_name": "TVA", "percentage": "20", "inclusive": "false", "active": "false",
                          "metadata": {"msp_hub_tax_rate": "FR:20:TVA"}})
    sim._create_tax_rate({"display_name": "TVA", "percentage": "20", "inclusive": "false"})  # the MSP's own
    connect().push(action(taxed()), context)
    used = {line["taxes"][0]["tax_rate_details"]["tax_rate"] for inv in sim.invoices.values()
            for line in sim._lines[inv["id"]]}
    (made,) = [r for r in sim.tax_rates.values() if r["active"] and r["metadata"]]
    assert used == {made["id"]}


def test_another_rate_on_one_line_makes_a_second_rate_and_no_rate_for_an_untaxed_line(sim, connect, context):
    result = connect().push(action(taxed(percents=("20", "5.5", None))), context)
    by_key = {r["metadata"]["msp_hub_tax_rate"]: r["id"] for r in sim.tax_rates.values()}
    assert set(by_key) == {"FR:20:TVA", "FR:5.5:TVA"}
    add = next(e for e in sim.posts() if e["path"].endswith("/add_lines"))
    assert [line.get("tax_rates") for line in add["params"]["lines"]] == [
        [by_key["FR:20:TVA"]], [by_key["FR:5.5:TVA"]], None]
    invoice = sim._export_invoice(sim.invoices[result.vendor_id])
    assert sorted((t["amount"], t["taxable_amount"]) for t in invoice["total_taxes"]) == [(138, 2500), (1260, 6300)]
    assert invoice["total"] == 13700 + 1260 + 138 == result.details["total"]


def test_invoiceitems_mode_carries_the_tax_rates_too(sim, connect, context):
    result = connect(line_mode="invoiceitems").push(action(taxed(percents=("20", "5.5", "20"))), context)
    items = [e["params"] for e in sim.posts() if e["path"] == "/v1/invoiceitems"]
    assert all(len(item["tax_rates"]) == 1 for item in items)
    assert result.details["total"] == 13700 + 1260 + 138 + 980


def test_a_crash_after_the_tax_rate_was_made_does_not_duplicate_it(sim, connect, context):
    with pytest.raises(Crash):
        connect(crash_after(sim, "/v1/tax_rates")).push(action(taxed()), context)
    assert len(sim.tax_rates) == 1
    result = connect().push(action(taxed()), context.next_attempt())       # found by the list
    sim.expire_idempotency_keys()
    connect().push(action(taxed(), period="2026-11"), FakeContext(links=context.links))
    assert len(sim.tax_rates) == 1 and result.details["total"] == 16440


def test_a_stored_500_of_the_tax_rate_create_finds_the_rate_made(sim, connect, context):
    sim.fail_stored_next(500, path="/v1/tax_rates", run=True)
    result = connect().push(action(taxed()), context)
    creates = [e for e in sim.log if e["path"] == "/v1/tax_rates" and e["method"] == "POST"]
    assert [(e["status"], e["replayed"]) for e in creates] == [(500, False), (500, True)]  # retried, replayed
    assert len(sim.tax_rates) == 1 and result.details["tax"] == 2740


def test_stripe_computing_another_tax_is_never_finalized(sim, connect, context):
    # a rate with the hub's key but another percentage (edited by hand in another tool)
    sim._create_tax_rate({"display_name": "TVA", "percentage": "19.6", "inclusive": "false",
                          "metadata": {"msp_hub_tax_rate": "FR:20:TVA"}})
    with pytest.raises(VendorError) as info:
        connect().push(action(taxed()), context)
    text = str(info.value)
    assert "tax 26.85 EUR and total 163.85 EUR in Stripe" in text
    assert "plan has tax 27.40 EUR and total 164.40 EUR" in text and "not finalized" in text
    (invoice,) = sim.invoices.values()
    assert invoice["status"] == "draft" and sim.calls("POST", "/v1/invoices/*/finalize") == 0


def test_a_payload_without_tax_sends_no_tax_request(sim, connect, context):
    result = connect().push(action(copy.deepcopy(PAYLOAD)), context)
    assert not [p for p in paths(sim) if "tax" in p] and result.details["total"] == 13700
    assert "tax" not in result.details


# --- reverse charge, outside the EU --------------------------------------------------------------

def test_reverse_charge_with_a_vat_number_sends_no_rate_and_marks_the_customer(sim, connect, context):
    customer = {"name": "Zahnarzt GmbH", "address": {"city": "Berlin", "country": "DE"},
                "vat_number": "DE123456789", "tax_exempt": "reverse"}
    payload = taxed(percents=(None, None, None), treatment="reverse_charge", customer=customer,
                    footer="Autoliquidation : TVA due par le preneur, article 283-2 du CGI.")
    result = connect().push(action(payload, client_id="zahnarzt"), context)
    assert sim.calls("GET", "/v1/tax_rates") == 0 and not sim.tax_rates
    invoice = sim._export_invoice(sim.invoices[result.vendor_id])
    assert (invoice["total"], invoice["customer_tax_exempt"]) == (13700, "reverse")
    assert invoice["customer_tax_ids"] == [{"type": "eu_vat", "value": "DE123456789"}]
    assert invoice["footer"].startswith("Autoliquidation")
    assert "tax" not in result.details


def test_outside_the_eu_no_vat_and_a_british_vat_number_is_a_gb_vat(sim, connect, context):
    customer = {"name": "Acme Ltd", "address": {"city": "London", "country": "GB"}, "vat_number": "GB123456789"}
    result = connect().push(action(taxed(percents=(None, None, None), treatment="outside_eu", customer=customer),
                                   client_id="acme-uk"), context)
    assert [(t["type"], t["value"]) for t in sim.tax_ids.values()] == [("gb_vat", "GB123456789")]
    assert result.details["total"] == 13700


# --- Stripe Tax ----------------------------------------------------------------------------------

def test_stripe_tax_on_sends_automatic_tax_and_no_rates(sim, connect, context):
    payload = taxed(customer={"address": ADDRESS}, automatic=True)
    result = connect(automatic_tax=True).push(action(payload), context)
    create = next(e for e in sim.posts() if e["path"] == "/v1/invoices")
    assert create["params"]["automatic_tax"] == {"enabled": "true"}
    assert sim.calls("GET", "/v1/tax_rates") == 0 and not sim.tax_rates
    add = next(e for e in sim.posts() if e["path"].endswith("/add_lines"))
    assert not any("tax_rates" in line for line in add["params"]["lines"])
    assert result.details["status"] == "open" and result.details["total"] == 16440


def test_stripe_tax_checks_only_the_subtotal(sim, connect, context):
    sim.automatic_tax_percent = "19"   # Stripe Tax decides the rate, not the plan
    result = connect(automatic_tax=True).push(action(taxed(customer={"address": ADDRESS}, automatic=True)), context)
    assert result.details["status"] == "open" and result.details["tax"] != 2740


def test_stripe_tax_without_the_clients_address_is_refused_with_the_fix(sim, connect, context):
    with pytest.raises(MappingError, match="Stripe Tax needs the address of Acme Dental") as info:
        connect(automatic_tax=True).push(action(taxed(automatic=True)), context)
    assert "fill in the company's address in the PSA" in str(info.value) and sim.requests == 0


@pytest.mark.parametrize("setting, automatic, message", [
    (False, True, "automatic_tax is false"), (True, False, "the plan computed the VAT by rate"),
])
def test_stripe_tax_and_the_plan_must_agree(sim, connect, context, setting, automatic, message):
    with pytest.raises(MappingError, match=message):
        connect(automatic_tax=setting).push(action(taxed(customer={"address": ADDRESS}, automatic=automatic)),
                                            context)
    assert sim.requests == 0


def test_simulated_stripe_tax_refuses_to_finalize_without_a_location(sim):
    customer = sim._create_customer({"name": "Nowhere"})
    invoice = sim._create_invoice({"customer": customer["id"], "currency": "eur", "automatic_tax": {"enabled": "true"},
                                   "collection_method": "charge_automatically"})
    from plugins.stripe.simulator import StripeError
    with pytest.raises(StripeError) as info:
        sim._finalize(invoice["id"], {})
    assert info.value.error["code"] == "customer_tax_location_invalid"


def test_settings_read_automatic_tax():
    def settings(value):
        return StripeSettings.from_config(config_from_dict(
            {"connectors": {"stripe": {"api_key_env": "K", "automatic_tax": value}}}, environ={"K": "sk_test_x"}))
    assert settings(True).automatic_tax is True and settings(False).automatic_tax is False
    with pytest.raises(ConfigError) as info:
        settings("yes")
    assert info.value.key == "connectors.stripe.automatic_tax" and info.value.fix


# --- the customer kept in step -------------------------------------------------------------------

def test_changed_details_update_the_customer_once_and_a_rerun_writes_nothing(sim, connect, context):
    customer_id = linked_customer(sim, context, email="old@acme.fr",
                                  address={"line1": "1 rue Vieille", "line2": "Bât. B", "city": "Lyon",
                                           "country": "FR"})
    old = sim._create_tax_id(sim.customers[customer_id], {"type": "eu_vat", "value": "FR99999999999"})
    details = {"name": "Acme Dental", "email": "compta@acme.fr", "address": ADDRESS,
               "vat_number": "FR12 123 456 789", "tax_exempt": "none", "locale": "fr-FR"}
    result = connect().push(action(taxed(customer=details)), context)

    assert paths(sim)[:6] == [
        "GET /v1/invoices", f"GET /v1/customers/{customer_id}", f"POST /v1/customers/{customer_id}",
        f"POST /v1/customers/{customer_id}/tax_ids", f"DELETE /v1/customers/{customer_id}/tax_ids/{old['id']}",
        "GET /v1/tax_rates"]
    update = next(e for e in sim.posts() if e["path"] == f"/v1/customers/{customer_id}")
    assert update["params"] == {"email": "compta@acme.fr", "preferred_locales": ["fr-FR"],
                                "address": {**ADDRESS, "line2": "", "state": ""}}
    stripe_customer = sim.customers[customer_id]
    assert stripe_customer["address"] == {**ADDRESS, "line2": None, "state": None}
    assert [t["value"] for t in sim._tax_ids_of(customer_id)] == ["FR12 123 456 789"]
    assert result.details["customer_updated"] == ["email", "address", "preferred_locales", "VAT number"]
    assert f"customer {customer_id} updated: email, address, preferred_locales, VAT number" in result.summary
    assert sim.invoices[result.vendor_id]["customer_tax_ids"] == [{"type": "eu_vat", "value": "FR12 123 456 789"}]

    since = len(sim.log)
    again = connect().push(action(taxed(customer=details), period="2026-11"), FakeContext(links=context.links))
    assert not [p for p in paths(sim, since) if "/v1/customers" in p and not p.startswith("GET")]
    assert "customer_updated" not in again.details


def test_a_crash_after_the_customer_update_does_not_write_it_again(sim, connect, context):
    customer_id = linked_customer(sim, context)
    details = {"email": "compta@acme.fr", "vat_number": "FR12123456789"}
    with pytest.raises(Crash):
        connect(crash_after(sim, f"/v1/customers/{customer_id}")).push(action(taxed(customer=details)), context)
    since = len(sim.log)
    result = connect().push(action(taxed(customer=details)), context.next_attempt())
    assert f"POST /v1/customers/{customer_id}" not in paths(sim, since)
    assert len(sim._tax_ids_of(customer_id)) == 1 and result.details["customer_updated"] == ["VAT number"]
    assert sim.customers[customer_id]["email"] == "compta@acme.fr"


def test_a_customer_the_payload_says_nothing_about_is_not_read(sim, connect, context):
    linked_customer(sim, context)
    connect().push(action(taxed()), context)
    assert sim.calls("GET", "/v1/customers/*") == 0


def test_a_sent_invoice_pushed_again_does_not_touch_the_customer(sim, connect, context):
    customer_id = linked_customer(sim, context)
    details = {"email": "compta@acme.fr"}
    connect().push(action(taxed(customer=details)), context)
    sim.customers[customer_id]["email"] = "changed@acme.fr"
    since = len(sim.log)
    result = connect().push(action(taxed(customer=details)), FakeContext(links=context.links))
    assert paths(sim, since) == ["GET /v1/invoices"] and "already open" in result.summary


def test_a_french_invoice_of_a_known_client_costs_five_requests_once_its_rate_is_known(sim, connect, context):
    details = {"email": "compta@acme.fr", "address": ADDRESS, "vat_number": "FR12123456789", "locale": "fr-FR"}
    connector = connect()
    connector.push(action(taxed(customer=details)), context)
    since = len(sim.log)
    result = connector.push(action(taxed(customer=details), period="2026-11"), FakeContext(links=context.links))
    assert [p.split("/in_")[0] for p in paths(sim, since)] == [
        "GET /v1/invoices", f"GET /v1/customers/{result.details['customer']}", "POST /v1/invoices",
        "POST /v1/invoices", "POST /v1/invoices"]
    assert result.details["total"] == 16440 and "customer_updated" not in result.details


# --- the simulator validates these requests as Stripe does ---------------------------------------

@pytest.fixture
def client(sim):
    from hub.testing import mock_client
    from plugins.stripe.client import StripeClient
    from plugins.stripe.tests.helpers import BASE_URL, quiet_retry_policy
    made = StripeClient(BASE_URL, API_KEY, http=mock_client(sim.handler, BASE_URL), retrying=quiet_retry_policy)
    yield made
    made.close()


@pytest.mark.parametrize("params, param", [
    ({"display_name": "TVA", "inclusive": False}, "percentage"),
    ({"display_name": "T" * 51, "inclusive": False, "percentage": "20"}, "display_name"),
    ({"display_name": "TVA", "inclusive": False, "percentage": "120"}, "percentage"),
    ({"display_name": "TVA", "inclusive": False, "percentage": "20", "country": "France"}, "country"),
    ({"display_name": "TVA", "inclusive": False, "percentage": "20", "tax_type": "tva"}, "tax_type"),
    ({"display_name": "TVA", "inclusive": False, "percentage": "20", "rate": "20"}, "rate"),
])
def test_simulated_tax_rate_params_are_validated(client, params, param):
    with pytest.raises(VendorError) as info:
        client.create_tax_rate(params, idempotency_key="k")
    assert info.value.status == 400 and f"(param: {param})" in info.value.detail


def test_simulated_tax_ids_are_validated_and_deleted_once(sim, client):
    customer = client.create_customer({"name": "A"}, idempotency_key="c")
    with pytest.raises(VendorError, match="tax_id_invalid"):
        client.create_customer_tax_id(customer["id"], {"type": "eu_vat", "value": "US123"}, idempotency_key="t1")
    with pytest.raises(VendorError, match="param: tax_id_data"):
        client.create_customer({"name": "B", "tax_id_data": [{"type": "fr_vat", "value": "FR12123456789"}]},
                               idempotency_key="c2")
    made = client.create_customer_tax_id(customer["id"], {"type": "eu_vat", "value": "FR12123456789"},
                                         idempotency_key="t2")
    assert made["country"] == "FR" and made["owner"] == {"customer": customer["id"], "type": "customer"}
    assert client.delete_customer_tax_id(customer["id"], made["id"])["deleted"] is True
    with pytest.raises(VendorError) as gone:
        client.delete_customer_tax_id(customer["id"], made["id"])
    assert gone.value.status == 404 and not sim.tax_ids


def test_simulated_invoice_refuses_five_custom_fields_and_an_archived_rate(sim, client):
    customer = client.create_customer({"name": "A"}, idempotency_key="c")
    base = {"customer": customer["id"], "currency": "eur", "collection_method": "charge_automatically"}
    with pytest.raises(VendorError, match="param: custom_fields"):
        client.create_invoice({**base, "custom_fields": FIELDS * 2 + [FIELDS[0]]}, idempotency_key="i1")
    archived = client.create_tax_rate({"display_name": "TVA", "inclusive": False, "percentage": "20",
                                       "active": False}, idempotency_key="r1")
    with pytest.raises(VendorError, match=r"param: default_tax_rates\[0\]"):
        client.create_invoice({**base, "default_tax_rates": [archived["id"]]}, idempotency_key="i2")


def test_simulated_default_tax_rates_apply_to_lines_without_their_own(sim, client):
    customer = client.create_customer({"name": "A"}, idempotency_key="c")
    r20 = client.create_tax_rate({"display_name": "TVA", "inclusive": False, "percentage": "20"}, idempotency_key="r")
    r10 = client.create_tax_rate({"display_name": "TVA", "inclusive": False, "percentage": "10"}, idempotency_key="s")
    invoice = client.create_invoice({"customer": customer["id"], "currency": "eur", "default_tax_rates": [r20["id"]],
                                     "collection_method": "charge_automatically"}, idempotency_key="i")
    invoice = client.add_invoice_lines(invoice["id"], [{"amount": 1005, "description": "a"},
                                                       {"amount": 1005, "description": "b", "tax_rates": [r10["id"]]}],
                                       idempotency_key="l")
    assert sorted(t["amount"] for t in invoice["total_taxes"]) == [101, 201]   # 100.5 and 201.0, half up
    assert (invoice["subtotal"], invoice["total"], invoice["amount_due"]) == (2010, 2312, 2312)


def test_a_rate_archived_while_remembered_is_looked_up_again_after_the_failure(sim, connect, context):
    connector = connect()
    connector.push(action(taxed()), context)
    (old,) = sim.tax_rates.values()
    old["active"] = False                          # archived in the dashboard between two pushes
    with pytest.raises(VendorError, match="archived"):
        connector.push(action(taxed(), period="2026-11"), FakeContext(links=context.links))
    retry = FakeContext(links=context.links)
    result = connector.push(action(taxed(), period="2026-11"), retry)
    (new,) = [r for r in sim.tax_rates.values() if r["active"]]
    assert new["id"] != old["id"] and result.details["tax"] == 2740
    assert [e["idempotency_key"] for e in sim.posts() if e["path"] == "/v1/tax_rates"] == [
        "msp-hub:tax_rate:FR:20:TVA:create", "msp-hub:tax_rate:FR:20:TVA:create:a1"]


def test_stripe_tax_on_and_an_older_payload_without_tax_asks_stripe_tax(sim, connect, context):
    payload = copy.deepcopy(PAYLOAD)
    payload["customer"] = {"address": ADDRESS}
    connect(automatic_tax=True).push(action(payload), context)
    create = next(e for e in sim.posts() if e["path"] == "/v1/invoices")
    assert create["params"]["automatic_tax"] == {"enabled": "true"}


def test_a_client_name_is_not_written_over_a_linked_customers_name_without_a_customer_block(sim, connect,
                                                                                           context):
    customer_id = linked_customer(sim, context)
    sim.customers[customer_id]["name"] = "ACME DENTAL SARL (legal name)"
    result = connect().push(action(taxed(locale="fr-FR")), context)
    assert sim.customers[customer_id]["name"] == "ACME DENTAL SARL (legal name)"
    assert sim.customers[customer_id]["preferred_locales"] == ["fr-FR"]
    assert result.details["customer_updated"] == ["preferred_locales"]


@pytest.mark.parametrize("method, glob", [
    ("POST", "/v1/customers/cus_*"), ("POST", "/v1/customers/*/tax_ids"), ("DELETE", "/v1/customers/*/tax_ids/*"),
    ("POST", "/v1/tax_rates"), ("POST", "/v1/invoices"), ("POST", "/v1/invoices/*/add_lines"),
    ("POST", "/v1/invoices/*/finalize"),
])
def test_a_crash_at_any_step_of_a_changed_client_leaves_one_invoice_and_the_new_details(sim, connect, context,
                                                                                       method, glob):
    customer_id = linked_customer(sim, context, email="old@acme.fr")
    sim._create_tax_id(sim.customers[customer_id], {"type": "eu_vat", "value": "FR99999999999"})
    details = {"email": "compta@acme.fr", "vat_number": "FR12123456789", "address": ADDRESS}
    with pytest.raises(Crash):
        connect(crash_after(sim, glob, method)).push(action(taxed(customer=details)), context)
    result = connect().push(action(taxed(customer=details)), context.next_attempt())

    (invoice,) = sim.invoices.values()
    assert invoice["status"] == "open" and result.vendor_id == invoice["id"] and result.details["total"] == 16440
    assert [t["value"] for t in sim._tax_ids_of(customer_id)] == ["FR12123456789"]
    assert sim.customers[customer_id]["email"] == "compta@acme.fr" and len(sim.tax_rates) == 1
    assert sim.calls("POST", f"/v1/customers/{customer_id}") == 1
    assert sim.calls("POST", f"/v1/customers/{customer_id}/tax_ids") == 1
