"""Invoices, notices and alert tickets in the MSP's language ([billing.invoice] language = "fr"):
French line texts with a decimal comma, dd/mm/yyyy days and month names, the mappings' names as
written; the MSP's legal mentions as footer and custom fields within Stripe's limits; the config
checked at start. English stays exactly as it was."""

import re
from dataclasses import replace
from datetime import datetime, timezone
from fractions import Fraction as F
from pathlib import Path

import pytest

from hub import i18n, planner
from hub.config import HubConfig, InvoiceSettings, config_from_dict, load_config
from hub.engine import sync_once
from hub.errors import ConfigError
from hub.mappings import BlockSize, Contract, TimeTerms, WorkType
from hub.mentions import MAX_CUSTOM_FIELDS, MAX_FIELD_NAME, MAX_FIELD_VALUE, MAX_FOOTER, invoice_mentions
from hub.periods import month
from hub.records import BILLABLE, TimeEntry
from hub.reconcile import apply_minimum, bill_devices
from hub.store import Store
from hub.testing import make_hub
from hub.timebilling import Block, bill_time, renewal_lines
from tests.conftest import ConnectorPlugin
from tests.test_contract_change import prorating
from tests.test_five_months import month_run, ts
from tests.test_late_changes import LOOSE, edit_entry
from tests.test_late_shared_month import upgraded_in_november
from tests.test_psa_billing import PsaEnv, at, block_agreement, invoice, lines
from tests.test_reconcile import contract as device_contract, dev, mappings
from tests.test_ticket_text import TextEnv, trigger

UTC = timezone.utc
OCT = month(2026, 10, "UTC")
NOV = month(2026, 11, "UTC")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "msp-hub.toml"
WORK_TYPES = {"Assistance à distance": WorkType("Assistance à distance", rate=9500),
              "Intervention sur site": WorkType("Intervention sur site", rate=12500, onsite=True),
              "Désinfection": WorkType("Désinfection", flat_rate=14900)}
BLOCK_10 = BlockSize("10h", F(10), 90000)


def dt(*a):
    return datetime(*a, tzinfo=UTC)


def time_contract(time_lines="entry", kind="time_and_materials", **kw):
    terms = replace(TimeTerms(work_types=WORK_TYPES, **kw), time_lines=time_lines)
    return Contract("elm", "Elm", None, "EUR", kind=kind, time=terms, agreement="A1" if kind == "block" else None)


def entry(i, hours, work_type="Assistance à distance", when=dt(2026, 10, 5, 9), ticket="4521", member="jdoe",
          agreement=None):
    return TimeEntry("connectwise", str(i), "elm", member, when, None, hours, BILLABLE, work_type, "Engineer",
                     ticket, agreement)


def texts(bill):
    return [(l.code, l.description) for l in bill.lines]


def numbers(bill):
    """What a line bills, whatever its language."""
    return [(l.code, l.quantity, l.unit_amount, l.amount, l.rule, l.items) for l in bill.lines]


# --- the catalog and the formats --------------------------------------------------------------------

def test_every_text_exists_in_both_languages_with_the_same_placeholders():
    assert i18n.LANGUAGES == ("en", "fr")
    for key, by_language in i18n.CATALOG.items():
        assert set(by_language) == {"en", "fr"}, key
        assert i18n.placeholders(by_language["en"]) == i18n.placeholders(by_language["fr"]), key
        assert by_language["fr"].strip(), key


@pytest.mark.parametrize("call, en, fr", [
    (lambda lang: i18n.number(F(5, 4), lang), "1.25", "1,25"),
    (lambda lang: i18n.number("3", lang), "3", "3"),
    (lambda lang: i18n.hours(F(3, 2), lang), "1.5 h", "1,5 h"),
    (lambda lang: i18n.money(9500, "EUR", lang), "95.00 EUR", "95,00 EUR"),
    (lambda lang: i18n.money(123456789, "EUR", lang), "1234567.89 EUR", "1\u202f234\u202f567,89 EUR"),
    (lambda lang: i18n.money(-1050, "eur", lang), "-10.50 EUR", "-10,50 EUR"),
    (lambda lang: i18n.money(1500, "JPY", lang), "1500 JPY", "1\u202f500 JPY"),
    (lambda lang: i18n.day("2026-10-05", lang), "2026-10-05", "05/10/2026"),
    (lambda lang: i18n.day(None, lang), None, None),
    (lambda lang: i18n.period("2026-11", lang), "2026-11", "novembre 2026"),
    (lambda lang: i18n.period("2026-02", lang), "2026-02", "février 2026"),
    (lambda lang: i18n.of_period("2026-10", lang), "of 2026-10", "d'octobre 2026"),
    (lambda lang: i18n.of_period("2026-08", lang), "of 2026-08", "d'août 2026"),
    (lambda lang: i18n.of_period("2026-09", lang), "of 2026-09", "de septembre 2026"),
    (lambda lang: i18n.device_class("server", lang), "server", "serveur"),
    (lambda lang: i18n.device_class("workstation", lang), "workstation", "poste de travail"),
    (lambda lang: i18n.device_class("kiosk", lang), "kiosk", "kiosk"),       # the MSP's own class: as written
    (lambda lang: i18n.which_entries(["7"], lang), "entry 7", "saisie 7"),
    (lambda lang: i18n.which_entries([str(i) for i in range(1, 8)], lang),
     "entries 1, 2, 3, 4, 5 and 2 more", "saisies 1, 2, 3, 4, 5 et 2 autres"),
    (lambda lang: i18n.count_entries(1, lang), "1 entry", "1 saisie"),
    (lambda lang: i18n.count_entries(3, lang), "3 entries", "3 saisies"),
])
def test_numbers_amounts_days_and_months_are_written_as_each_language_writes_them(call, en, fr):
    assert (call("en"), call("fr")) == (en, fr)


def test_an_unknown_language_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match=r"language 'de' is not one of en, fr; set \[billing.invoice\] language"):
        i18n.text("line.minimum", "de", period="2026-10")


# --- device lines and the minimum ---------------------------------------------------------------------

def test_device_and_addon_lines_in_french_name_the_tier_and_addon_as_the_msp_wrote_them():
    devices = [dev(1), dev(2, "WINDOWS_SERVER")]
    en = bill_devices(device_contract(addons=["backup"]), mappings(), devices, OCT)
    fr = bill_devices(device_contract(addons=["backup"]), mappings(), devices, OCT, "fr")
    assert texts(fr) == [("tier:gold:server", "Infogérance Gold, serveur (octobre 2026)"),
                         ("tier:gold:workstation", "Infogérance Gold, poste de travail (octobre 2026)"),
                         ("addon:backup:server", "Cloud backup, serveur (octobre 2026)"),
                         ("addon:backup:workstation", "Cloud backup, poste de travail (octobre 2026)")]
    assert texts(en) == [("tier:gold:server", "Gold managed services, server (2026-10)"),
                         ("tier:gold:workstation", "Gold managed services, workstation (2026-10)"),
                         ("addon:backup:server", "Cloud backup, server (2026-10)"),
                         ("addon:backup:workstation", "Cloud backup, workstation (2026-10)")]
    assert numbers(fr) == numbers(en)                   # the same amounts; the rules stay in English
    assert bill_devices(device_contract(), mappings(), devices, OCT) == \
        bill_devices(device_contract(), mappings(), devices, OCT, "en")


def test_the_minimum_top_up_line_in_both_languages():
    bill = bill_devices(device_contract(minimum=50000), mappings(), [dev(1)], NOV.previous())
    fr = apply_minimum(bill, device_contract(minimum=50000), "fr").lines[-1]
    en = apply_minimum(bill, device_contract(minimum=50000)).lines[-1]
    assert (fr.code, fr.description, fr.amount) == ("minimum", "Complément au minimum mensuel (octobre 2026)", 38000)
    assert (en.code, en.description, en.amount) == ("minimum", "Monthly minimum top-up (2026-10)", 38000)


# --- time, flat rates, products, blocks ---------------------------------------------------------------

def test_a_time_entry_line_in_french_has_a_french_day_decimal_comma_and_amount():
    entries = [entry(1, "1.1"),                                                   # 1,25 h as rounded
               entry(2, "0.5", "Intervention sur site", when=dt(2026, 10, 6, 14), member="asmith", ticket=None)]
    fr = bill_time("elm", time_contract(), entries, [], OCT, language="fr")
    en = bill_time("elm", time_contract(), entries, [], OCT)
    assert texts(fr) == [
        ("time:entry:1", "05/10/2026, jdoe, ticket 4521, Assistance à distance, 1,25 h × 95,00 EUR"),
        ("time:entry:2", "06/10/2026, asmith, sans ticket, Intervention sur site, 1 h × 125,00 EUR")]
    assert texts(en) == [
        ("time:entry:1", "2026-10-05, jdoe, ticket 4521, Assistance à distance, 1.25 h × 95.00 EUR"),
        ("time:entry:2", "2026-10-06, asmith, no ticket, Intervention sur site, 1 h × 125.00 EUR")]
    assert numbers(fr) == numbers(en)


def test_an_entry_without_technician_and_a_late_entry_in_french():
    late = entry(9, "1", when=dt(2026, 9, 28, 9), member=None)
    fr = bill_time("elm", time_contract(), [late], [], OCT, language="fr")
    assert texts(fr) == [("time:entry:9", "Saisie tardive 9 de septembre 2026 : 28/09/2026, sans technicien, "
                                          "ticket 4521, Assistance à distance, 1 h × 95,00 EUR")]
    en = bill_time("elm", time_contract(), [late], [], OCT)
    assert texts(en) == [("time:entry:9", "Late entry 9 of 2026-09: 2026-09-28, no technician, ticket 4521, "
                                          "Assistance à distance, 1 h × 95.00 EUR")]


def test_per_ticket_and_per_work_type_lines_in_french():
    entries = [entry(1, "1"), entry(2, "0.5", ticket="4521"), entry(3, "2", ticket=None),
               entry(4, "1", when=dt(2026, 9, 28, 9))]
    by_ticket = bill_time("elm", time_contract("ticket"), entries, [], OCT, language="fr")
    assert texts(by_ticket) == [
        ("time:ticket:4521", "Ticket 4521 : Assistance à distance, 1,5 h × 95,00 EUR (2 saisies)"),
        ("time:no-ticket", "Temps sans ticket : Assistance à distance, 2 h × 95,00 EUR (1 saisie)"),
        ("time:ticket:4521:2026-09", "Saisies tardives de septembre 2026, ticket 4521 : Assistance à distance, "
                                     "1 h × 95,00 EUR (saisie 4)")]
    assert texts(bill_time("elm", time_contract("ticket"), entries, [], OCT)) == [
        ("time:ticket:4521", "Ticket 4521: Assistance à distance, 1.5 h × 95.00 EUR (2 entries)"),
        ("time:no-ticket", "Time without a ticket: Assistance à distance, 2 h × 95.00 EUR (1 entry)"),
        ("time:ticket:4521:2026-09", "Late entries of 2026-09, ticket 4521: Assistance à distance, "
                                     "1 h × 95.00 EUR (entry 4)")]
    by_type = bill_time("elm", time_contract("work_type"), entries, [], OCT, language="fr")
    assert texts(by_type) == [
        ("time:Assistance à distance", "Assistance à distance, temps passé (octobre 2026)"),
        ("time:Assistance à distance:2026-09", "Saisies tardives de septembre 2026 : Assistance à distance, "
                                               "temps passé (saisie 4)")]
    assert texts(bill_time("elm", time_contract("work_type"), entries, [], OCT)) == [
        ("time:Assistance à distance", "Assistance à distance time (2026-10)"),
        ("time:Assistance à distance:2026-09", "Late entries of 2026-09: Assistance à distance time (entry 4)")]


def test_a_flat_rate_ticket_in_french():
    entries = [entry(1, "1", "Désinfection", ticket="T1"), entry(2, "2", "Désinfection", ticket="T1")]
    assert texts(bill_time("elm", time_contract(), entries, [], OCT, language="fr")) == [
        ("flat:T1", "Désinfection, ticket T1 (forfait)")]
    assert texts(bill_time("elm", time_contract(), entries, [], OCT)) == [
        ("flat:T1", "Désinfection, ticket T1 (flat rate)")]


@pytest.mark.parametrize("time_lines, fr, en", [
    ("entry", ["Heures au-delà du bloc prépayé (octobre 2026) : 06/10/2026, jdoe, ticket 4521, "
               "Assistance à distance, 1 h × 90,00 EUR",
               "Heures au-delà du bloc prépayé (octobre 2026) : 07/10/2026, jdoe, ticket 4522, "
               "Assistance à distance, 2 h × 90,00 EUR"],
     ["Hours beyond the prepaid block (2026-10): 2026-10-06, jdoe, ticket 4521, Assistance à distance, "
      "1 h × 90.00 EUR",
      "Hours beyond the prepaid block (2026-10): 2026-10-07, jdoe, ticket 4522, Assistance à distance, "
      "2 h × 90.00 EUR"]),
    ("ticket", ["Heures au-delà du bloc prépayé (octobre 2026), ticket 4521 : 1 h × 90,00 EUR (1 saisie)",
                "Heures au-delà du bloc prépayé (octobre 2026), ticket 4522 : 2 h × 90,00 EUR (1 saisie)"],
     ["Hours beyond the prepaid block (2026-10), ticket 4521: 1 h × 90.00 EUR (1 entry)",
      "Hours beyond the prepaid block (2026-10), ticket 4522: 2 h × 90.00 EUR (1 entry)"]),
    ("work_type", ["Heures au-delà du bloc prépayé (octobre 2026)"], ["Hours beyond the prepaid block (2026-10)"]),
])
def test_a_block_s_overage_in_both_languages(time_lines, fr, en):
    entries = [entry(1, "9", agreement="A1", when=dt(2026, 10, 5, 9)),
               entry(2, "2", agreement="A1", when=dt(2026, 10, 6, 9)),
               entry(3, "2", agreement="A1", when=dt(2026, 10, 7, 9), ticket="4522")]
    blocks = [Block.of_size(1, BLOCK_10, dt(2026, 10, 1))]
    c = time_contract(time_lines, kind="block", block=BLOCK_10)
    got = {lang: bill_time("elm", c, entries, [], OCT, blocks=blocks, language=lang) for lang in ("fr", "en")}
    assert [l.description for l in got["fr"].lines] == fr
    assert [l.description for l in got["en"].lines] == en
    assert numbers(got["fr"]) == numbers(got["en"])


def test_the_renewal_of_a_block_in_both_languages():
    c = time_contract(kind="block", block=BlockSize("20h", F(45, 2), 180000))
    (fr,) = renewal_lines("elm", c, 1, "2026-10", balance=F(3, 2), language="fr")
    (en,) = renewal_lines("elm", c, 1, "2026-10", balance=F(3, 2))
    assert fr.description == "Bloc prépayé de 22,5 heures (bloc 2)"
    assert en.description == "Prepaid block of 22.5 hours (block 2)"
    assert replace(fr, description=en.description) == en


# --- [billing.invoice] ---------------------------------------------------------------------------------

FULL = {"language": "fr", "legal_name": "Exemple Infogérance SAS", "address": "12 rue de la Paix, 75002 Paris",
        "siret": "123 456 789 00012", "vat_number": "FR 40 123456789", "rcs": "RCS Paris 123 456 789",
        "share_capital": "10 000 €", "payment_terms": "30 jours à réception de facture"}


def write(tmp_path, body):
    path = tmp_path / "msp-hub.toml"
    path.write_text(body)
    return path


def test_the_settings_default_to_english_and_no_mentions():
    s = config_from_dict({}).billing_settings.invoice_settings
    assert (s.language, s.customer_locale, s.has_mentions) == ("en", None, False)
    assert "invoice" not in config_from_dict({}).billing
    fr = config_from_dict({"billing": {"invoice": {"language": "fr"}}}).billing_settings.invoice_settings
    assert (fr.language, fr.customer_locale) == ("fr", "fr-FR")


@pytest.mark.parametrize("missing, fix", [
    ("legal_name", 'add legal_name = "Exemple Infogérance SAS" to [billing.invoice]'),
    ("address", 'add address = "12 rue de la Paix, 75002 Paris" to [billing.invoice]'),
    ("siret", 'add siren = "123 456 789" (or siret = "123 456 789 00012") to [billing.invoice]'),
    ("vat_number", 'add vat_number = "FR40123456789" to [billing.invoice]'),
    ("payment_terms", 'add payment_terms = "30 jours à réception de facture" to [billing.invoice]'),
])
def test_a_french_invoice_missing_a_mandatory_mention_stops_the_start_naming_the_key(tmp_path, missing, fix):
    body = "[billing.invoice]\n" + "".join(f'{k} = "{v}"\n' for k, v in FULL.items() if k != missing)
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, body))
    key = "siren" if missing == "siret" else missing
    assert f"line 1, key 'billing.invoice.{key}': a French invoice must carry the seller's" in str(exc.value)
    assert f"(fix: {fix})" in str(exc.value)


def test_mentions_are_optional_in_english_and_when_none_is_set():
    partial = {"language": "en", "legal_name": "Example MSP Ltd"}
    assert config_from_dict({"billing": {"invoice": partial}}).billing_settings.invoice_settings.legal_name == \
        "Example MSP Ltd"
    assert config_from_dict({"billing": {"invoice": {"language": "fr", "footer": "Merci."}}}).billing_settings


@pytest.mark.parametrize("key, value, message", [
    ("siren", "12345", "a SIREN is 9 digits, got '12345'"),
    ("siret", "123 456 789", "a SIRET is 14 digits, got '123 456 789'"),
    ("vat_number", "123", "'123' is not a VAT number"),
    ("locale", "French", "'French' is not a locale"),
    ("language", "de", "must be 'en' or 'fr', got 'de'"),
    ("payment_terms", "x" * 141, "is 141 characters long; an invoice takes at most 140 here"),
    ("footer", "x" * 2001, "is 2001 characters long; an invoice takes at most 2000 here"),
])
def test_a_wrong_value_is_an_error_naming_the_key(tmp_path, key, value, message):
    body = f'[billing.invoice]\n{key} = "{value}"\n'
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, body))
    assert f"line 2, key 'billing.invoice.{key}': {message}" in str(exc.value)


def test_a_siret_of_another_company_than_the_siren_is_an_error():
    with pytest.raises(ConfigError, match=r"key 'billing.invoice.siret': SIRET 98765432100012 does not start with "
                                          r"SIREN 123456789"):
        config_from_dict({"billing": {"invoice": {**FULL, "siren": "123456789", "siret": "98765432100012"}}})


def test_the_example_config_documents_every_invoice_key():
    text = EXAMPLE.read_text()
    assert load_config(EXAMPLE).billing_settings.invoice_settings.language == "en"
    missing = [k for k in InvoiceSettings.model_fields if not re.search(rf"^[#\s]*{k}\s*=", text, re.M)]
    assert missing == [] and "[billing.invoice]" in text


# --- legal mentions -------------------------------------------------------------------------------------

def settings(**kw):
    return config_from_dict({"billing": {"invoice": kw}}).billing_settings.invoice_settings


def test_french_legal_mentions_as_footer_and_custom_fields():
    m = invoice_mentions(settings(**FULL, footer="Merci de votre confiance."))
    assert m["footer"].split("\n") == [
        "Exemple Infogérance SAS, au capital de 10 000 €, 12 rue de la Paix, 75002 Paris",
        "SIRET 123 456 789 00012 · N° TVA intracommunautaire FR40123456789 · RCS Paris 123 456 789",
        "Conditions de paiement : 30 jours à réception de facture. Pas d'escompte pour paiement anticipé.",
        "Pénalités de retard : 3 fois le taux d'intérêt légal. Indemnité forfaitaire pour frais de recouvrement "
        "en cas de retard de paiement : 40 €.",
        "Merci de votre confiance."]
    assert m["custom_fields"] == [{"name": "SIRET", "value": "123 456 789 00012"},
                                  {"name": "N° TVA intracommunautaire", "value": "FR40123456789"},
                                  {"name": "RCS", "value": "RCS Paris 123 456 789"},
                                  {"name": "Conditions de paiement", "value": "30 jours à réception de facture"}]
    assert m["locale"] == "fr-FR"


def test_the_configured_penalty_rate_indemnity_and_discount_replace_the_defaults():
    m = invoice_mentions(settings(**{k: v for k, v in FULL.items() if k != "siret"}, siren="123456789",
                                  late_penalty="taux BCE majoré de 10 points", recovery_indemnity="40.50",
                                  early_payment_discount="Escompte de 2 % pour paiement sous 8 jours",
                                  locale="fr-BE"))
    assert "Pénalités de retard : taux BCE majoré de 10 points." in m["footer"]
    assert "recouvrement en cas de retard de paiement : 40,50 €." in m["footer"]
    assert "Escompte de 2 % pour paiement sous 8 jours." in m["footer"]
    assert m["custom_fields"][0] == {"name": "SIREN", "value": "123 456 789"}
    assert m["locale"] == "fr-BE"


def test_english_mentions_and_no_mentions_at_all():
    m = invoice_mentions(settings(**FULL), "en")
    assert m["footer"].split("\n")[2:] == [
        "Payment terms: 30 jours à réception de facture. No discount for early payment.",
        "Late payment penalties: three times the French legal interest rate. Fixed indemnity for recovery costs in "
        "case of late payment: 40 EUR."]
    assert [f["name"] for f in m["custom_fields"]] == ["SIRET", "VAT number", "Trade register (RCS)", "Payment terms"]
    assert invoice_mentions(settings()) == {}                          # English, nothing set: as before
    assert invoice_mentions(settings(language="fr")) == {"locale": "fr-FR"}
    assert invoice_mentions(settings(footer="Thank you.")) == {"footer": "Thank you."}


def test_the_longest_mentions_allowed_stay_within_stripe_s_limits():
    longest = {**FULL, "legal_name": "N" * 140, "address": "A" * 140, "rcs": "R" * 140, "share_capital": "C" * 60,
               "payment_terms": "P" * 140, "late_penalty": "L" * 140, "early_payment_discount": "E" * 140,
               "recovery_indemnity": "99999.99", "footer": "F" * 2000}
    for lang in ("fr", "en"):
        m = invoice_mentions(settings(**longest), lang)
        assert len(m["footer"]) <= MAX_FOOTER and m["footer"].endswith("F" * 2000)
        assert 0 < len(m["custom_fields"]) <= MAX_CUSTOM_FIELDS
        assert all(len(f["name"]) <= MAX_FIELD_NAME and len(f["value"]) <= MAX_FIELD_VALUE
                   for f in m["custom_fields"])


# --- end to end: the invoice, the notice and the alert ticket a French client's PSA receives --------------

def test_a_french_msp_s_renewal_invoice_and_notice_are_in_french(tmp_path):
    psa = PsaEnv(tmp_path, billing={"invoice": {"language": "fr"}})
    psa.cw.add_agreement(psa.co["driftwood"], "Block Hours", application_units="Hours", application_limit=20)
    agreement = block_agreement(psa)
    for day, hours in ((5, 8.0), (12, 6.5), (19, 4.0)):                     # 18.5 of 20 h: 1.5 h left
        psa.time("driftwood", hours, at(10, day), agreement_id=agreement)
    sync_once(psa.hub())
    (notice,) = [t for t in psa.tickets() if t.get("externalXRef", "").startswith("msp-hub:notice:")]
    assert notice["summary"] == "Heures prépayées bientôt épuisées : 1,5 h restantes"
    description = psa.cw.initial_description(notice["id"])
    assert description.startswith(f"Le bloc prépayé 1 du contrat {agreement} n'a plus que 1,5 h (seuil 2 h). "
                                  "Un renouvellement de 20 h à ")
    (renewal,) = [i for i in psa.invoices() if i["metadata"]["msp_hub_action_key"].startswith("renewal:")]
    assert renewal["subtotal"] == 180000 and renewal["description"].startswith("Renouvellement du bloc prépayé pour ")
    items = [i for i in psa.stripe.list_objects("invoiceitem") if i.get("invoice") == renewal["id"]]
    assert [i["description"] for i in items] == ["Bloc prépayé de 20 heures (bloc 2)"]


class FrenchTextEnv(TextEnv):
    def hub(self, *plugins, clock=None):
        return make_hub(ConnectorPlugin(*self.connectors()), *plugins, mappings=self.mappings,
                        config=HubConfig(database=":memory:", timezone=self.tz,
                                         billing={"invoice": {"language": "fr"}}),
                        store=Store(self.db), clock=lambda: clock)


def test_a_french_msp_s_alert_ticket_is_in_french(tmp_path):
    env = FrenchTextEnv(tmp_path)
    device = env.ninja.device(env.device[1], detailed=True)
    uid = trigger(env, env.device[1], message="CPU au-dessus de 90 %")
    env.sync()
    lines = env.description(uid).split("\n")
    assert lines[0] == f"Alerte MAJOR sur {device['displayName']}"
    assert lines[1].startswith("Déclenchée : ") and lines[2] == "Client : Acme Dental (acme)"
    assert lines[3:6] == ["Organisation NinjaOne : Acme Dental (id 1)",
                          f"Appareil : {device['displayName']} (WINDOWS_WORKSTATION)", "Système : Windows 11 Pro"]
    assert lines[-8:] == ["", "Message de l'alerte :", "CPU au-dessus de 90 %", "",
                          "Source : CONDITION_AGENT_CPU", "Gravité : MAJOR, priorité HIGH", f"Id de l'alerte : {uid}",
                          "Règle : cpu"]


def test_a_late_device_of_a_month_two_contracts_shared_is_described_in_french(tmp_path):
    env, _ = upgraded_in_november(tmp_path)
    env.billing = {**env.billing, "invoice": {"language": "fr"}}
    birch = env.cid("birchwood")
    env.device(2, "BIRCH-LATE", created=ts(2026, 11, 10))
    december = invoice(month_run(env, "2026-12"), birch, "2026-12")
    assert {c: l.description for c, l in lines(december).items()} == {
        "tier:gold:workstation": "Infogérance Gold, poste de travail (décembre 2026)",
        "delta:2026-11:tier:silver:workstation": "Régularisation sur novembre 2026 : Infogérance Silver, poste "
                                                 "de travail (novembre 2026), du 01/11/2026 au 15/11/2026",
        "delta:2026-11:tier:gold:workstation": "Régularisation sur novembre 2026 : Infogérance Gold, poste "
                                               "de travail (novembre 2026), du 16/11/2026 au 30/11/2026"}


def test_a_line_of_two_contracts_in_force_names_their_days_in_french(tmp_path):
    env = PsaEnv(tmp_path, billing={"invoice": {"language": "fr"}})
    prorating(env)
    company = env.co["birchwood"]
    env.cw.add_agreement(company, "Managed Silver", end="2026-10-15T00:00:00Z", status="Expired")
    env.cw.add_agreement(company, "Managed Gold", start="2026-10-16T00:00:00Z")
    env.cw.add_agreement(env.co["cobalt"], "Managed Gold", end="2026-10-15T00:00:00Z", status="Expired")
    env.cw.add_agreement(env.co["cobalt"], "Managed Gold", start="2026-10-16T00:00:00Z")
    hub = env.hub()
    report = sync_once(hub)
    ctx = planner.build_context(hub, report, OCT)
    split = planner.bill_devices_in_force(hub, ctx.contracts[f"connectwise-{company}"], OCT)
    assert {l.code: l.description for l in split.lines if "workstation" in l.code} == {
        "tier:silver:workstation": "Infogérance Silver, poste de travail (octobre 2026), du 01/10/2026 au 15/10/2026",
        "tier:gold:workstation": "Infogérance Gold, poste de travail (octobre 2026), du 16/10/2026 au 31/10/2026"}
    kept = planner.bill_devices_in_force(hub, ctx.contracts[f"connectwise-{env.co['cobalt']}"], OCT)
    assert {l.code: l.description for l in kept.lines if "workstation" in l.code} == {
        "tier:gold:workstation": "Infogérance Gold, poste de travail (octobre 2026), du 01/10/2026 au 15/10/2026 "
                                 "et du 16/10/2026 au 31/10/2026"}


def test_late_entries_and_late_changes_of_time_and_products_in_french(tmp_path):
    env = PsaEnv(tmp_path, billing={**LOOSE, "invoice": {"language": "fr"}})
    env.cw.add_agreement(env.co["elm"], "Break/Fix")
    elm = f"connectwise-{env.co['elm']}"
    edited = env.time("elm", 1.0, at(10, 9), "After Hours", charge_id=4521)
    product = env.cw.add_product(env.co["elm"], "SSD-1TB", quantity=1, price=90.0, updated=at(10, 15))
    sync_once(env.hub())
    late = env.time("elm", 0.5, at(10, 20), "Remote Support", charge_id=4530)        # October's, entered later
    edit_entry(env, edited, actualHours=1.5)
    record = env.cw.products.get(product)
    record["quantity"] = 3.0
    env.cw.products.put(record)
    env.cw.touch("products", [product])
    nov = invoice(sync_once(env.hub(clock=datetime(2026, 12, 1, 7, tzinfo=UTC))), elm, "2026-11")
    assert {c: (l.description, l.amount) for c, l in lines(nov).items()} == {
        f"time:entry:{late}": (f"Saisie tardive {late} d'octobre 2026 : 20/10/2026, jsmith, ticket 4530, "
                               f"Remote Support, 0,5 h × 95,00 EUR", 4750),
        f"delta:2026-10:time:{edited}": (f"Régularisation sur octobre 2026 : saisie {edited} (09/10/2026, jsmith, "
                                         f"ticket 4521, After Hours), 1 h facturées, 1,5 h désormais, "
                                         f"0,5 h × 150,00 EUR", 7500),
        f"delta:2026-10:product:{product}": (f"Régularisation sur octobre 2026 : produit {product} (1 TB SSD), "
                                             f"1 facturé(s), 3 désormais", 18000)}


def test_stripe_sends_a_french_time_line_as_written_without_an_english_quantity():
    from plugins.stripe.plugin import line_description
    line = {"code": "time:entry:1", "description": "05/10/2026, jdoe, ticket 4521, Assistance à distance, "
                                                   "1,25 h × 95,00 EUR",
            "quantity": "1.25", "unit_amount": 9500, "amount": 11875}
    assert line_description(line, "EUR") == line["description"]
    other = dict(line, description="Assistance, 1,5 h × 95,00 EUR")       # another quantity: stated
    assert line_description(other, "EUR") == "Assistance, 1,5 h × 95,00 EUR (1.25 x 95.00 EUR)"
