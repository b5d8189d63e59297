"""A client's billing details: from its ConnectWise company (pulled through the simulator) and its
contract in contracts.toml; the country table, VAT number normalisation, missing and bad values."""

from datetime import datetime, timezone

import pytest

from hub.clientdetails import ClientDetails, clean_vat, country_code, details_for, vat_problem, with_prefix
from hub.engine import RunReport
from hub.engine import pull as pull_streams
from hub.linking import master_client_id
from tests.conftest import FIXTURES
from tests.test_psa_billing import PsaEnv

UTC = timezone.utc
RUN = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def pull(hub):
    report = RunReport("r1", "sync", RUN)
    pull_streams(hub, report, connectors=["connectwise"], streams=["clients"])
    assert not report.errors, report.errors
    return report


def with_contract_keys(env, text):
    """The PSA tests' contracts with ``text`` added to Acme Dental's table."""
    contracts = (FIXTURES / "contracts_psa.toml").read_text()
    assert contracts.count("[clients.") == 1 and contracts.index("[clients.acme]") >= 0   # acme's is the last table
    (env.mappings / "contracts.toml").write_text(contracts.rstrip("\n") + "\n" + text)


@pytest.fixture
def env(tmp_path):
    return PsaEnv(tmp_path)


def test_the_details_come_from_the_psa_company_of_a_client_linked_by_name(env):
    acme = env.co["acme"]
    company = env.cw.record("companies", acme)
    hub = env.hub()
    pull(hub)
    details = details_for(hub, "acme", "Acme Dental", hub.mappings.contracts["acme"])
    label = f"connectwise company {acme}"
    assert details.address == {"line1": company["addressLine1"], "postal_code": company["zip"],
                               "city": company["city"], "country": "FR"}
    assert details.country == "FR" and details.country_known and details.in_eu
    assert details.vat_number == company["taxIdentifier"]
    assert details.email == "billing@acmedental.example.fr"
    assert details.locale is None
    contact = company["defaultContact"]["id"]
    assert details.sources == {"address": label, "vat_number": f"{label} taxIdentifier",
                               "email": f"{label} default contact {contact}"}
    assert details.problems == {}
    assert details.to_payload() == {"name": "Acme Dental", "email": "billing@acmedental.example.fr",
                                    "address": details.address, "vat_number": company["taxIdentifier"]}


def test_a_psa_only_client_is_found_by_its_id_and_a_spaced_number_is_normalised(env):
    hermes = env.cw.add_company("Hermes Conseil", address=("5 rue Royale", "1000", "Bruxelles"), country="Belgique",
                                tax_identifier="be 0.123.456.749", email=None, invoice_email="ap@hermes.be")
    hub = env.hub()
    pull(hub)
    cid = master_client_id("connectwise", str(hermes))
    details = details_for(hub, cid, "Hermes Conseil", None)
    assert details.vat_number == "BE0123456749"
    assert details.country == "BE" and details.in_eu
    assert details.email == "ap@hermes.be"
    assert details.sources["email"] == f"connectwise company {hermes} invoiceToEmailAddress"
    # The registry's link, when the caller has it, is used as it is.
    assert details_for(hub, "anything", "Another Name", None, psa_id=str(hermes)) == \
        ClientDetails("Another Name", details.email, details.address, details.vat_number, None, details.sources)


def test_a_number_without_prefix_gets_the_address_countrys_and_greece_is_el(env):
    athens = env.cw.add_company("Athens Shipping", address=("1 Odos Ermou", "10563", "Athens"), country="Greece",
                                tax_identifier="094 259 216")
    paris = env.cw.add_company("Paris Studio", tax_identifier="40303265045")
    hub = env.hub()
    pull(hub)
    greek = details_for(hub, master_client_id("connectwise", str(athens)), "Athens Shipping", None)
    assert greek.vat_number == "EL094259216" and greek.country == "GR"
    assert greek.sources["vat_number"].endswith("(prefix EL added: the address's country)")
    french = details_for(hub, master_client_id("connectwise", str(paris)), "Paris Studio", None)
    assert french.vat_number == "FR40303265045" and french.problems == {}


def test_the_contracts_keys_win_and_say_so(env):
    with_contract_keys(env, 'email = "factures@acme-dental.fr"\nvat_number = "de 123.456.789"\nlocale = "de-DE"\n'
                            '[clients.acme.address]\nline1 = "Friedrichstrasse 1"\npostal_code = "10117"\n'
                            'city = "Berlin"\ncountry = "DE"\n')
    hub = env.hub()
    assert hub.mappings.contract_errors == {}
    pull(hub)
    details = details_for(hub, "acme", "Acme Dental", hub.mappings.contracts["acme"])
    assert details.email == "factures@acme-dental.fr"
    assert details.vat_number == "DE123456789"
    assert details.locale == "de-DE"
    # The contract's address replaces the company's whole: no French street with a Berlin city.
    assert details.address == {"line1": "Friedrichstrasse 1", "postal_code": "10117", "city": "Berlin", "country": "DE"}
    assert details.sources == {"email": "contracts.toml [clients.acme]", "vat_number": "contracts.toml [clients.acme]",
                               "locale": "contracts.toml [clients.acme]",
                               "address": "contracts.toml [clients.acme.address]"}


def test_a_contract_key_over_a_contract_from_the_psa_agreement_still_counts(env):
    # A contract read from a PSA agreement carries no details: the client's own table in
    # contracts.toml is looked up by its id.
    with_contract_keys(env, 'locale = "fr-FR"\n')
    hub = env.hub()
    pull(hub)
    from dataclasses import replace
    from_psa = replace(hub.mappings.contracts["acme"], details={}, origin="agreement 1")
    assert details_for(hub, "acme", "Acme Dental", from_psa).locale == "fr-FR"


@pytest.mark.parametrize("text, key, says", [
    ('email = "factures at acme"\n', "clients.acme.email", "must be an e-mail address"),
    ('vat_number = "FR1"\n', "clients.acme.vat_number", "too short or too long"),
    ('[clients.acme.address]\ncity = "London"\ncountry = "UK"\n', "clients.acme.address.country",
     'write country = "GB"'),
    ('vat_number = "FR 123"\n', "clients.acme.vat_number", "FR VAT number"),
    ('vat_number = "GR094259216"\n', "clients.acme.vat_number", "Greek VAT numbers start with EL"),
    ('locale = "french"\n', "clients.acme.locale", "locale tag"),
    ('[clients.acme.address]\ncity = "Lyon"\ncountry = "France"\n', "clients.acme.address.country",
     'write country = "FR"'),
    ('[clients.acme.address]\ncity = "Lyon"\n', "clients.acme.address.country", "missing"),
    ('[clients.acme.address]\ntown = "Lyon"\ncountry = "FR"\n', "clients.acme.address.town", ""),
])
def test_a_bad_detail_in_contracts_toml_holds_the_client_naming_the_key(env, text, key, says):
    with_contract_keys(env, text)
    hub = env.hub()
    error = hub.mappings.contract_errors["acme"]
    assert key in error and says in error
    assert "contracts.toml" in error
    assert set(hub.mappings.contract_errors) == {"acme"}      # the other clients are not concerned


def test_bad_values_from_the_psa_are_kept_as_read_and_flagged(env):
    odd = env.cw.add_company("Odd Company", country="Atlantis", tax_identifier="12345678901234", email="compta@")
    hub = env.hub()
    pull(hub)
    cid = master_client_id("connectwise", str(odd))
    details = details_for(hub, cid, "Odd Company", None)
    assert details.email == "compta@" and details.vat_number == "12345678901234"
    assert details.country == "Atlantis" and not details.country_known and details.in_eu is None
    assert set(details.problems) == {"email", "country", "vat_number"}
    assert "'compta@' is not an e-mail address" in details.problems["email"]
    assert f"[clients.{cid}]" in details.problems["email"]
    assert "cannot tell which country 'Atlantis' is" in details.problems["country"]
    assert "no country prefix and the client's country is not known" in details.problems["vat_number"]
    # A SIRET (14 digits) in taxIdentifier of a French company is not a VAT number once prefixed.
    siret = env.cw.add_company("Siret Only", tax_identifier="303 265 045 00018")
    pull(hub)
    wrong = details_for(hub, master_client_id("connectwise", str(siret)), "Siret Only", None)
    assert wrong.vat_number == "FR30326504500018"
    assert "does not have the form of a FR VAT number" in wrong.problems["vat_number"]


def test_a_contract_value_replaces_a_flagged_psa_value(env):
    env.cw.add_company("Odd Company", country="Atlantis", tax_identifier="garbage!", email="compta@")
    (env.mappings / "contracts.toml").write_text((FIXTURES / "contracts_psa.toml").read_text() + (
        '\n[clients.odd]\nname = "Odd Company"\ntier = "gold"\nemail = "compta@odd.fr"\nvat_number = "FR40303265045"\n'
        '[clients.odd.address]\ncity = "Lyon"\ncountry = "FR"\n'))
    hub = env.hub()
    pull(hub)
    details = details_for(hub, "odd", "Odd Company", hub.mappings.contracts["odd"])
    assert details.problems == {}
    assert (details.email, details.vat_number, details.country) == ("compta@odd.fr", "FR40303265045", "FR")


def test_missing_fields_stay_none_and_a_client_without_psa_has_only_its_name(env):
    bare = env.cw.add_company("Bare Company", address=None, country=None, tax_identifier=None, email=None)
    hub = env.hub()
    pull(hub)
    details = details_for(hub, master_client_id("connectwise", str(bare)), "Bare Company", None)
    assert details == ClientDetails("Bare Company")
    assert details.to_payload() == {"name": "Bare Company"}
    assert details.country is None and details.in_eu is None
    # No PSA company of that name, no link: nothing but the name.
    assert details_for(hub, "nobody", "Nobody Ltd", None) == ClientDetails("Nobody Ltd")


@pytest.mark.parametrize("name, code", [
    ("France", "FR"), ("france", "FR"), ("FR", "FR"), ("fr", "FR"), ("Allemagne", "DE"), ("Deutschland", "DE"),
    ("United Kingdom", "GB"), ("UK", "GB"), ("Royaume-Uni", "GB"), ("Suisse", "CH"), ("Norway", "NO"),
    ("United States of America", "US"), ("USA", "US"), ("Canada", "CA"), ("Pays-Bas", "NL"),
    ("The Netherlands", "NL"), ("Czech Republic", "CZ"), ("Österreich", "AT"), ("España", "ES"),
    ("Grèce", "GR"), ("EL", "GR"), ("Luxembourg", "LU"), ("Côte d'Ivoire", "CI"),
    ("Atlantis", None), ("", None), ("ZZ", None), (None, None),
])
def test_the_country_table(name, code):
    assert country_code(name) == code


def test_every_eu_member_is_in_the_table():
    from hub.clientdetails import COUNTRIES, EU
    assert len(EU) == 27 and EU <= set(COUNTRIES)


@pytest.mark.parametrize("raw, clean, problem", [
    ("fr 40 303 265 045", "FR40303265045", None), ("FR40.303.265.045", "FR40303265045", None),
    ("DE-123456789", "DE123456789", None), ("BE0123456749", "BE0123456749", None),
    ("EL094259216", "EL094259216", None), ("NL123456789B01", "NL123456789B01", None),
    ("ATU12345678", "ATU12345678", None), ("CHE-123.456.789 MWST", "CHE123456789MWST", None),
    ("GB 123 4567 89", "GB123456789", None), ("IT12345678901", "IT12345678901", None),
    ("123456789", "123456789", None),
    ("FR4030326504", "FR4030326504", "does not have the form of a FR VAT number"),
    ("DE12345678", "DE12345678", "does not have the form of a DE VAT number"),
    ("GR094259216", "GR094259216", "Greek VAT numbers start with EL"),
    ("FR40_303", "FR40_303", "has characters a VAT number never has"),
])
def test_vat_numbers_are_normalised_and_their_form_checked(raw, clean, problem):
    assert clean_vat(raw) == clean
    why = vat_problem(clean)
    assert (why is None) if problem is None else (problem in why)


def test_a_prefix_is_added_from_the_country_only_when_missing():
    assert with_prefix("40303265045", "FR") == ("FR40303265045", "FR")
    assert with_prefix("094259216", "GR") == ("EL094259216", "EL")
    assert with_prefix("DE123456789", "FR") == ("DE123456789", None)      # its own prefix is kept
    assert with_prefix("40303265045", None) == ("40303265045", None)


def test_without_a_psa_the_contract_alone_says(tmp_path):
    from tests.conftest import Env
    env = Env(tmp_path)
    contracts = (env.mappings / "contracts.toml").read_text()
    (env.mappings / "contracts.toml").write_text(
        contracts + '\n[clients.hermes]\nname = "Hermes"\ntier = "gold"\nvat_number = "0123.456.749"\n'
                    'email = "ap@hermes.be"\n[clients.hermes.address]\ncity = "Bruxelles"\ncountry = "BE"\n')
    hub = env.hub()
    details = details_for(hub, "hermes", "Hermes", hub.mappings.contracts["hermes"])
    assert details.vat_number == "BE0123456749"
    assert details.sources["vat_number"] == "contracts.toml [clients.hermes] (prefix BE added: the address's country)"
    assert details.to_payload() == {"name": "Hermes", "email": "ap@hermes.be", "vat_number": "BE0123456749",
                                    "address": {"city": "Bruxelles", "country": "BE"}}
    acme = details_for(hub, "acme", "Acme Dental", hub.mappings.contracts["acme"])
    assert acme == ClientDetails("Acme Dental")
