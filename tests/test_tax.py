"""VAT rules (BILLING.md, "Tax"): the treatment of a client, the rate of a line, the tax per rate."""

import pytest
from pydantic import ValidationError

from hub import tax
from hub.clientdetails import ClientDetails
from hub.config import BillingSettings
from hub.tax import TaxRules, by_rate, decide, invoice_tax, line_tax, normalize_rate

RULES = TaxRules()


def client(country=None, vat=None, *, address=True, name="Acme"):
    addr = ({"line1": "1 rue de la Paix", "city": "Paris", **({"country": country} if country else {})}
            if address else None)
    return ClientDetails(name, address=addr, vat_number=vat,
                         sources={"address": "connectwise company 250", "vat_number": "connectwise company 250"})


# --- treatment ---------------------------------------------------------------------------------

def test_a_client_in_the_msp_country_is_taxed_at_the_standard_rate():
    d = decide(client("FR", "FR12345678901"), RULES)
    assert (d.treatment, d.mention, d.tax_exempt, d.problems, d.notes) == ("standard", None, "none", (), ())


def test_a_client_with_no_address_and_no_vat_number_is_domestic_with_a_note():
    d = decide(client(address=False), RULES)
    assert d.treatment == "standard" and d.problems == ()
    assert d.notes == ("no address: taxed as a client in FR",)


def test_an_address_without_country_is_domestic_with_its_own_note():
    d = decide(client(None), RULES)
    assert d.treatment == "standard" and d.notes == ("no country in the address: taxed as a client in FR",)


def test_an_eu_business_with_a_vat_number_is_reverse_charged_with_the_mention():
    d = decide(client("DE", "DE 123.456-789"), RULES)
    assert (d.treatment, d.tax_exempt, d.problems) == ("reverse_charge", "reverse", ())
    assert d.mention == "Autoliquidation — TVA due par le preneur, article 283-2 du CGI"


def test_the_reverse_charge_mention_is_configurable():
    d = decide(client("BE", "BE0123456789"), TaxRules(reverse_charge_mention="Reverse charge"))
    assert d.mention == "Reverse charge"


def test_an_eu_client_without_vat_number_is_held_with_the_reason_and_the_fix():
    d = decide(client("DE"), RULES, where="contracts.toml [clients.acme]")
    assert d.problems and len(d.problems) == 1
    assert "client 'Acme' is in DE, another EU country, but has no VAT number" in d.problems[0]
    assert "add the VAT number to the PSA company's tax identifier" in d.problems[0]
    assert "set tax = \"standard\" in contracts.toml [clients.acme]" in d.problems[0]


def test_an_eu_client_without_vat_number_whose_contract_says_standard_pays_vat():
    d = decide(client("DE"), RULES, "standard")
    assert (d.treatment, d.problems, d.tax_exempt) == ("standard", (), "none")


def test_a_client_outside_the_eu_gets_no_vat_and_the_mention():
    d = decide(client("US"), RULES)
    assert (d.treatment, d.tax_exempt, d.problems) == ("outside_eu", "exempt", ())
    assert d.mention == "TVA non applicable, article 259-1 du CGI"
    assert decide(client("CH"), TaxRules(outside_eu_mention="Hors UE")).mention == "Hors UE"


def test_greece_is_el_in_a_vat_number():
    assert decide(client("GR", "EL123456789"), RULES).treatment == "reverse_charge"
    d = decide(client("GR", "GR123456789"), RULES)
    assert len(d.problems) == 1 and "starts with GR, but a VAT number of GR starts with EL" in d.problems[0]
    d = decide(client("DE", "EL123456789"), RULES)
    assert len(d.problems) == 1 and "is of GR" in d.problems[0] and "(a VAT number of DE starts with DE)" in d.problems[0]


def test_a_vat_number_of_another_country_than_the_address_is_held():
    d = decide(client("DE", "IT12345678901"), RULES)
    assert len(d.problems) == 1
    assert "VAT number IT12345678901 (from connectwise company 250) is of IT" in d.problems[0]
    assert "is in DE" in d.problems[0] and "cannot be decided" in d.problems[0]
    assert "correct the VAT number or the address" in d.problems[0]


@pytest.mark.parametrize("number", ["DE1", "12345678", "DE12345678901234567", "QQ123456789", "DE12345$789"])
def test_a_malformed_vat_number_is_held(number):
    d = decide(client("DE", number), RULES)
    assert len(d.problems) == 1 and f"VAT number {number!r}" in d.problems[0] and "is malformed" in d.problems[0]


def test_an_unknown_country_code_is_held():
    d = decide(client("XX"), RULES)
    assert len(d.problems) == 1
    assert "country 'XX' of its address (from connectwise company 250) is not an ISO 3166-1 country code" \
        in d.problems[0]


def test_reverse_charge_by_contract_without_vat_number_is_held():
    d = decide(client("FR"), RULES, "reverse_charge", where="contracts.toml [clients.acme]")
    assert len(d.problems) == 1
    assert "contracts.toml [clients.acme] says tax = \"reverse_charge\" but the client has no VAT number" \
        in d.problems[0]


def test_reverse_charge_by_contract_with_a_vat_number_of_another_eu_country():
    d = decide(client("ES", "ESX1234567X"), RULES, "reverse_charge")
    assert (d.treatment, d.tax_exempt, d.problems) == ("reverse_charge", "reverse", ())


def test_reverse_charge_by_contract_for_a_domestic_client_is_held():
    d = decide(client("FR", "FR12345678901"), RULES, "reverse_charge")
    assert d.problems and "is in FR (the MSP country)" in d.problems[0]


def test_an_exempt_contract_names_its_mention_or_the_configs():
    d = decide(client("FR"), RULES, "exempt", "Exonération, article 261-4 du CGI")
    assert (d.treatment, d.tax_exempt, d.mention) == ("exempt", "exempt", "Exonération, article 261-4 du CGI")
    assert decide(client("FR"), RULES, "exempt").mention == "Exonération de TVA"


def test_a_vat_number_without_address_decides_by_its_prefix():
    d = decide(client(address=False, vat="NL123456789B01"), RULES)
    assert d.treatment == "reverse_charge"


def test_stripe_tax_needs_an_address_with_a_country():
    auto = TaxRules(automatic=True)
    d = decide(client(address=False), auto)
    assert len(d.problems) == 1 and "no address with a country" in d.problems[0] and "Stripe Tax" in d.problems[0]
    assert decide(client("FR"), auto).problems == ()


# --- amounts -----------------------------------------------------------------------------------

@pytest.mark.parametrize("amount, percent, expected", [
    (10000, "20", 2000), (1, "20", 0), (3, "20", 1), (25, "20", 5), (1234, "5.5", 68), (1190, "5.5", 65),
    (-1234, "5.5", -68), (-3, "20", -1), (999, "10", 100), (0, "20", 0), (1000, "0", 0),
])
def test_line_tax_rounds_half_up_in_minor_units(amount, percent, expected):
    assert line_tax(amount, percent) == expected


def test_tax_is_rounded_per_line_then_summed_per_rate():
    # 3 lines of 0.03 at 20 %: 0.006 each -> 0.01 each, 0.03 in all (not 0.02 on the sum of 0.09).
    rows = by_rate([(3, "20"), (3, "20"), (3, "20"), (1190, "5.5"), (500, None)], "TVA")
    assert rows == [{"percent": "20", "name": "TVA", "base": 9, "tax": 3},
                    {"percent": "5.5", "name": "TVA", "base": 1190, "tax": 65}]


def test_negative_lines_get_negative_tax():
    per_line, block = invoice_tax([10000, -2500], ["20", "20"], decide(client("FR"), RULES), RULES)
    assert block["by_rate"] == [{"percent": "20", "name": "TVA", "base": 7500, "tax": 1500}]
    assert block["total_tax"] == 1500 and block["total_with_tax"] == 9000
    assert per_line == [{"percent": "20", "name": "TVA"}] * 2


def test_an_untaxed_invoice_has_no_line_tax_and_no_rate():
    per_line, block = invoice_tax([10000, 500], ["20", "5.5"], decide(client("DE", "DE123456789"), RULES), RULES)
    assert per_line == [None, None]
    assert block == {"treatment": "reverse_charge", "country": "FR",
                     "mention": "Autoliquidation — TVA due par le preneur, article 283-2 du CGI",
                     "by_rate": [], "total_tax": 0, "total_with_tax": 10500, "automatic": False}


def test_automatic_is_carried_in_the_block_and_the_estimate_said():
    auto = TaxRules(automatic=True)
    _, block = invoice_tax([10000], ["20"], decide(client("FR"), auto), auto)
    assert block["automatic"] is True and block["total_tax"] == 2000
    assert tax.describe(block, "EUR") == ["TVA 20 % on 100.00 EUR: 20.00 EUR",
                                          "tax computed by Stripe Tax: these figures are an estimate"]


# --- rates and settings ------------------------------------------------------------------------

@pytest.mark.parametrize("value, text", [("20", "20"), (20, "20"), ("5.50", "5.5"), (5.5, "5.5"), ("0", "0"),
                                         ("2.1", "2.1"), ("8.25", "8.25")])
def test_a_rate_is_normalized(value, text):
    assert normalize_rate(value) == text


@pytest.mark.parametrize("value", ["abc", "-1", "100", "150", "1.23456", True, None, "nan"])
def test_a_rate_that_is_not_a_percent_is_refused(value):
    with pytest.raises(ValueError):
        normalize_rate(value)


def test_billing_tax_settings_defaults_and_checks():
    s = BillingSettings.model_validate({}).tax
    assert s.rules() == TaxRules("FR", "20", "TVA")
    s = BillingSettings.model_validate({"tax": {"country": "be", "default_rate": "21", "automatic": True}}).tax
    assert (s.country, s.default_rate, s.automatic) == ("BE", "21", True)
    with pytest.raises(ValidationError, match="default_rate"):
        BillingSettings.model_validate({"tax": {"default_rate": "vingt"}})
    with pytest.raises(ValidationError, match="country"):
        BillingSettings.model_validate({"tax": {"country": "France"}})
    with pytest.raises(ValidationError, match="rate"):
        BillingSettings.model_validate({"tax": {"rate": "20"}})
