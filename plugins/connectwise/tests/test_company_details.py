"""A ConnectWise company's billing details: address, country, taxIdentifier and billing e-mail,
mapped from literal dicts and read through the clients stream against the simulator."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from hub.engine import RunReport, pull
from hub.testing import ConnectorPlugin, make_hub
from plugins.connectwise.client import contact_email
from plugins.connectwise.plugin import company_country, to_client
from plugins.connectwise.simulator import ConnectWiseSimulator, french_vat
from plugins.connectwise.tests.test_plugin import connector_for, stream

RUN_START = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)

COMPANY = {
    "id": 250, "identifier": "AcmeDental", "name": "Acme Dental",
    "addressLine1": " 12 rue de la République ", "addressLine2": "Bâtiment B", "city": "Lyon", "state": "",
    "zip": "69002", "country": {"id": 75, "name": "France"}, "taxIdentifier": "FR 40 303 265 045",
    "defaultContact": {"id": 7, "name": "Marie Curie"}, "_info": {"lastUpdated": "2025-05-12T10:20:31Z"},
}


def test_to_client_reads_the_address_tax_identifier_and_the_default_contacts_email():
    client = to_client(COMPANY, "EUR", {7: "compta@acme.fr"})
    assert (client.address_line1, client.address_line2, client.city, client.state, client.postal_code,
            client.country) == ("12 rue de la République", "Bâtiment B", "Lyon", None, "69002", "FR")
    assert client.vat_number == "FR 40 303 265 045"          # as read: hub.clientdetails normalises it
    assert (client.email, client.email_from) == ("compta@acme.fr", "default contact 7")


def test_the_invoice_address_then_the_billing_contact_win_over_the_default_contact():
    billing = dict(COMPANY, billingContact={"id": 9, "name": "Compta"})
    assert to_client(billing, "EUR", {7: "a@acme.fr", 9: "factures@acme.fr"}).email_from == "billing contact 9"
    assert to_client(billing, "EUR", {7: "a@acme.fr", 9: "factures@acme.fr"}).email == "factures@acme.fr"
    invoiced = dict(billing, invoiceToEmailAddress="ap@acme.fr")
    client = to_client(invoiced, "EUR", {7: "a@acme.fr", 9: "factures@acme.fr"})
    assert (client.email, client.email_from) == ("ap@acme.fr", "invoiceToEmailAddress")


def test_a_company_without_any_of_it_has_none_of_it():
    client = to_client({"id": 3, "name": "Bare", "_info": {"lastUpdated": "2025-05-12T10:20:31Z"}}, "EUR", {})
    assert (client.address_line1, client.city, client.postal_code, client.country, client.vat_number,
            client.email, client.email_from) == (None,) * 7
    # A contact without an e-mail gives none either.
    assert to_client(COMPANY, "EUR", {7: None}).email is None


@pytest.mark.parametrize("ref, expected", [
    ({"id": 75, "name": "France"}, "FR"), ({"id": 1, "identifier": "US", "name": "United States"}, "US"),
    ({"id": 82, "name": "Deutschland"}, "DE"), ({"id": 5, "name": "Royaume-Uni"}, "GB"),
    ({"id": 9, "name": "Grèce"}, "GR"), ({"id": 999, "name": "Atlantis"}, "Atlantis"),
    ({"id": 999}, "country id 999"), (None, None),
])
def test_the_country_reference_becomes_an_iso_code_or_stays_the_name(ref, expected):
    assert company_country({"country": ref}) == expected


def test_a_contacts_email_is_its_default_email_item():
    contact = {"id": 7, "communicationItems": [
        {"type": {"name": "Direct"}, "value": "+33 4 00 00 00 00", "communicationType": "Phone", "defaultFlag": True},
        {"type": {"name": "Email"}, "value": "old@acme.fr", "communicationType": "Email", "defaultFlag": False},
        {"type": {"name": "Email"}, "value": "new@acme.fr", "communicationType": "Email", "defaultFlag": True}]}
    assert contact_email(contact) == "new@acme.fr"
    contact["communicationItems"][2]["defaultFlag"] = False
    assert contact_email(contact) == "old@acme.fr"
    assert contact_email({"id": 8, "communicationItems": []}) is None


def test_the_simulator_seeds_french_companies_with_a_vat_number_and_a_contact():
    sim = ConnectWiseSimulator(seed=1, companies=2, agreements=0, time_entries=0, products=0)
    company = sim.record("companies", sim.ids("companies")[0])
    assert company["country"]["name"] == "France" and company["zip"] and company["city"]
    assert company["taxIdentifier"] == french_vat(400_000_000 + company["id"] * 1_009)
    contact = sim.record("contacts", company["defaultContact"]["id"])
    assert contact_email(contact) == f"billing@{company['identifier'].lower()}.example.fr"
    # A valid French key: (12 + 3 * (SIREN mod 97)) mod 97.
    assert french_vat(303265045) == "FR40303265045"


def test_the_clients_stream_reads_contacts_once_per_hundred_companies_and_stores_the_details():
    sim = ConnectWiseSimulator(seed=1, companies=0, agreements=0, time_entries=0, products=0)
    ids = [sim.add_company(f"Company {n}") for n in range(150)]
    sim.add_company("Invoiced", invoice_email="ap@invoiced.fr")          # needs no contact read
    sim.add_company("Nobody", email=None, tax_identifier=None, address=None, country=None)
    hub = make_hub(ConnectorPlugin(connector_for(sim, page_size=1000)))
    pull(hub, RunReport("r1", "sync", RUN_START), streams=["clients"])
    contact_reads = [q for _, p, q in sim.log if p == "/company/contacts"]
    # 150 contacts in one page of companies: two reads (100 + 50), each with the empty page ending it.
    assert sim.requests_by_path["/company/contacts"] == len(contact_reads) == 4
    assert all(q.get("fields") == "id,communicationItems" for q in contact_reads)
    rows = {r["source_id"]: r for r in hub.store.rows("clients")}
    first = rows[str(ids[0])]
    assert first["email"] == "billing@company0.example.fr"
    assert first["email_from"].startswith("default contact ")
    assert (first["country"], first["vat_number"]) == ("FR", french_vat(400_000_000 + ids[0] * 1_009))
    invoiced = next(r for r in rows.values() if r["name"] == "Invoiced")
    assert (invoiced["email"], invoiced["email_from"]) == ("ap@invoiced.fr", "invoiceToEmailAddress")
    nobody = next(r for r in rows.values() if r["name"] == "Nobody")
    assert (nobody["email"], nobody["vat_number"], nobody["country"], nobody["city"]) == (None,) * 4


def test_an_incremental_pass_reads_only_the_contacts_of_changed_companies():
    sim = ConnectWiseSimulator(seed=1, companies=5, agreements=0, time_entries=0, products=0)
    connector = connector_for(sim)
    clients = stream(connector, "clients")
    sim.now += 3600                              # the companies were last changed an hour before the pass
    pages = list(clients.iter_pages(None, RUN_START))
    assert sim.requests_by_path["/company/contacts"] >= 1
    cursor = pages[-1].cursor
    before = sim.requests_by_path["/company/contacts"]
    sim.now += 3600
    list(clients.iter_pages(cursor, RUN_START))                     # nothing changed: no contact read
    assert sim.requests_by_path["/company/contacts"] == before
    changed = sim.ids("companies")[2]
    contact = sim.contacts.get(sim.record("companies", changed)["defaultContact"]["id"])
    contact["communicationItems"][0]["value"] = "nouveau@example.fr"   # an edit in ConnectWise
    sim.touch("companies", [changed])
    records = [r for page in clients.iter_pages(cursor, RUN_START) for r in page.records]
    assert [r.source_id for r in records] == [str(changed)]
    assert records[0].email == "nouveau@example.fr"
    # One read, of that contact: its page and the empty page that ends it (a single page has no Link).
    assert sim.requests_by_path["/company/contacts"] == before + 2
    assert [q["conditions"] for _, p, q in sim.log if p == "/company/contacts"][-1] == f"id in ({contact['id']})"
