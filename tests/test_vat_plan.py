"""VAT on the plan, end to end against the NinjaOne and Stripe simulators (BILLING.md, "Tax").

The client's billing details come from ``hub.clientdetails.details_for``; here each test says
them by hand (``Details``), as the PSA company or the contract would.
"""

import io
import json

import pytest

from hub.clientdetails import ClientDetails
from hub.cli import render_plan
from hub.config import HubConfig
from hub.engine import sync_once
from hub.hookspecs import hookimpl
from hub.records import BillingLine
from hub.store import Store
from hub.testing import ConnectorPlugin, make_hub
from tests.conftest import NOW
from tests.test_psa_billing import at, invoice, psa  # noqa: F401 - the psa fixture

CLIENTS = ("acme", "birchwood", "cobalt", "driftwood", "elmstreet")
REVERSE = "Autoliquidation — TVA due par le preneur, article 283-2 du CGI"


class Details:
    """``details_for`` answering per client id; a client not named has only its name."""

    def __init__(self, **by_client):
        self.by_client = by_client

    def __call__(self, hub, client_id, name, contract, psa_id=None):
        spec = self.by_client.get(client_id)
        if spec is None:
            return ClientDetails(name)
        country, vat = spec
        address = {"line1": "1 Hauptstrasse", "city": "Berlin", "country": country} if country else None
        return ClientDetails(name, email=f"billing@{client_id}.example", address=address, vat_number=vat,
                             sources={"address": f"connectwise company {client_id}",
                                      "vat_number": f"connectwise company {client_id}"})


@pytest.fixture
def details(monkeypatch):
    def use(**by_client):
        monkeypatch.setattr("hub.clientdetails.details_for", Details(**by_client))
    return use


def hub_of(env, *plugins, tax=None, billing=None, clock=NOW):
    config = HubConfig(database=env.db, billing=dict(billing or {}, **({"tax": tax} if tax else {})))
    return make_hub(ConnectorPlugin(*env.connectors()), *plugins, config=config, mappings=env.mappings,
                    store=Store(env.db), clock=lambda: clock)


def item(report, client, period="2026-10"):
    return next(p for p in report.plan if p.kind == "invoice" and p.client_id == client and p.period == period)


def append(path, text):
    path.write_text(path.read_text() + text)


def stripe_invoice(env, client):
    return next(i for i in env.invoices() if i["metadata"]["msp_hub_client_id"] == client)


def test_every_line_carries_the_default_rate_and_the_plan_shows_before_tax_tax_and_with_tax(env):
    report = sync_once(hub_of(env))
    acme = item(report, "acme")
    payload = acme.action.payload
    assert payload["total"] == sum(l["amount"] for l in payload["lines"]) == acme.total     # before tax
    assert all(l["tax"] == {"percent": "20", "name": "TVA"} for l in payload["lines"])
    expected = sum((l["amount"] * 20 + 50) // 100 for l in payload["lines"])               # half up, per line
    assert payload["tax"] == {"treatment": "standard", "country": "FR", "mention": None,
                              "by_rate": [{"percent": "20", "name": "TVA", "base": acme.total, "tax": expected}],
                              "total_tax": expected, "total_with_tax": acme.total + expected, "automatic": False}
    assert payload["customer"] == {"name": "Acme Dental", "tax_exempt": "none"}
    assert "no address: taxed as a client in FR" in acme.bill.notes
    shown = json.loads(json.dumps(acme.to_json()))                     # msp-hub plan --json, the API
    assert shown["total"] == acme.total and shown["total_tax"] == expected
    assert shown["total_with_tax"] == acme.total + expected and shown["tax"]["by_rate"] == payload["tax"]["by_rate"]
    assert all(l["tax"] == {"percent": "20", "name": "TVA"} for l in shown["lines"])
    # Pushed; the Stripe invoice's amounts before tax are the plan's.
    assert stripe_invoice(env, "acme")["total_excluding_tax"] == acme.total


def test_the_config_names_the_default_rate_and_the_tax(env):
    acme = item(sync_once(hub_of(env, tax={"default_rate": "21", "name": "BTW", "country": "BE"}), dry_run=True),
                "acme")
    block = acme.action.payload["tax"]
    assert block["country"] == "BE" and [(r["percent"], r["name"]) for r in block["by_rate"]] == [("21", "BTW")]
    assert block["total_tax"] == sum((l.amount * 21 + 50) // 100 for l in acme.bill.lines)


def test_an_add_on_at_another_rate_is_taxed_at_its_rate_and_the_plan_shows_each_rate(env):
    tiers = env.mappings / "tiers.toml"
    tiers.write_text(tiers.read_text().replace('[addons.backup]\nname = "Cloud backup"',
                                               '[addons.backup]\nname = "Cloud backup"\nvat_rate = "5.5"'))
    report = sync_once(hub_of(env), dry_run=True)
    acme = item(report, "acme")
    rates = {l["code"]: l["tax"]["percent"] for l in acme.action.payload["lines"]}
    assert {c for c, r in rates.items() if r == "5.5"} == {c for c in rates if c.startswith("addon:backup:")} != set()
    assert {r for c, r in rates.items() if c.startswith("tier:")} == {"20"}
    block = acme.action.payload["tax"]
    backup = sum(l.amount for l in acme.bill.lines if l.code.startswith("addon:backup:"))
    assert [(r["percent"], r["base"]) for r in block["by_rate"]] == [("20", acme.total - backup), ("5.5", backup)]
    assert block["total_tax"] == sum(r["tax"] for r in block["by_rate"])
    assert block["total_with_tax"] == acme.total + block["total_tax"]
    out = io.StringIO()
    render_plan(report, out=out)
    text = out.getvalue()
    assert "before tax" in text and "with tax" in text
    assert f"tax: TVA 5.5 % on {backup / 100:.2f} EUR" in text and "tax: TVA 20 % on" in text


def test_a_contract_rate_applies_to_its_lines_and_an_add_on_rate_still_wins(env):
    contracts = env.mappings / "contracts.toml"
    contracts.write_text(contracts.read_text().replace('name = "Acme Dental"', 'name = "Acme Dental"\nvat_rate = "10"'))
    tiers = env.mappings / "tiers.toml"
    tiers.write_text(tiers.read_text().replace('[addons.backup]\nname = "Cloud backup"',
                                               '[addons.backup]\nname = "Cloud backup"\nvat_rate = "5.5"'))
    report = sync_once(hub_of(env), dry_run=True)
    acme = item(report, "acme")
    rates = {l["code"].split(":")[0]: l["tax"]["percent"] for l in acme.action.payload["lines"]}
    assert rates == {"tier": "10", "addon": "5.5"}
    assert "vat_rate: 10 % (contracts.toml [clients.acme])" in " ".join(acme.bill.notes)
    assert {l["tax"]["percent"] for l in item(report, "birchwood").action.payload["lines"]} == {"20"}


def test_reverse_charge_for_an_eu_business_with_a_vat_number(env, details):
    details(acme=("DE", "DE123456789"))
    report = sync_once(hub_of(env))
    acme = item(report, "acme")
    payload = acme.action.payload
    assert acme.status == "create" and all("tax" not in l for l in payload["lines"])
    assert payload["tax"] == {"treatment": "reverse_charge", "country": "FR", "mention": REVERSE, "by_rate": [],
                              "total_tax": 0, "total_with_tax": acme.total, "automatic": False}
    assert payload["customer"]["tax_exempt"] == "reverse" and payload["customer"]["vat_number"] == "DE123456789"
    assert payload["customer"]["address"]["country"] == "DE"
    assert payload["total"] == acme.total
    out = io.StringIO()
    render_plan(report, out=out)
    assert f"tax: reverse charge: {REVERSE}" in out.getvalue()


def test_an_eu_client_without_vat_number_is_held_and_nothing_else_is(env, details):
    details(acme=("DE", None))
    report = sync_once(hub_of(env))
    acme = item(report, "acme")
    assert acme.status == "held" and acme.cause == "error"
    assert len(acme.reasons) == 1 and acme.reasons[0].startswith("VAT: client 'Acme Dental' is in DE")
    assert "add the VAT number to the PSA company's tax identifier" in acme.reasons[0]
    assert "set tax = \"standard\" in" in acme.reasons[0] and "[clients.acme]" in acme.reasons[0]
    assert "tax" not in acme.action.payload
    held = {h["key"]: h for h in report.held}
    assert held["invoice:acme:2026-10"]["cause"] == "error"
    assert {i["metadata"]["msp_hub_client_id"] for i in env.invoices()} == set(CLIENTS) - {"acme"}
    # The contract says standard: it is invoiced with French VAT.
    contracts = env.mappings / "contracts.toml"
    contracts.write_text(contracts.read_text().replace('name = "Acme Dental"', 'name = "Acme Dental"\ntax = "standard"'))
    again = sync_once(hub_of(env))
    acme = item(again, "acme")
    assert acme.status == "create" and acme.action.payload["tax"]["treatment"] == "standard"
    assert "invoice:acme:2026-10" in {p["key"] for p in again.pushed}


def test_a_client_outside_the_eu_gets_no_french_vat_and_the_mention(env, details):
    details(cobalt=("US", None))
    cobalt = item(sync_once(hub_of(env), dry_run=True), "cobalt")
    block = cobalt.action.payload["tax"]
    assert (block["treatment"], block["mention"], block["total_tax"]) == \
        ("outside_eu", "TVA non applicable, article 259-1 du CGI", 0)
    assert cobalt.action.payload["customer"]["tax_exempt"] == "exempt"
    assert all("tax" not in l for l in cobalt.action.payload["lines"])


@pytest.mark.parametrize("country, vat, says", [
    ("DE", "IT12345678901", "is of IT but its address (from connectwise company acme) is in DE"),
    ("DE", "DE1", "is malformed"),
    ("ZZ", None, "country 'ZZ' of its address (from connectwise company acme) is not an ISO 3166-1 country code"),
])
def test_a_contradiction_holds_the_client_as_undecidable(env, details, country, vat, says):
    details(acme=(country, vat))
    report = sync_once(hub_of(env))
    acme = item(report, "acme")
    assert acme.status == "held" and acme.cause == "error" and says in acme.reasons[0]
    assert "acme" not in {i["metadata"]["msp_hub_client_id"] for i in env.invoices()}


def test_reverse_charge_by_contract_without_vat_number_is_held(env, details):
    contracts = env.mappings / "contracts.toml"
    contracts.write_text(contracts.read_text().replace('name = "Acme Dental"',
                                                       'name = "Acme Dental"\ntax = "reverse_charge"'))
    details(acme=("DE", None))
    acme = item(sync_once(hub_of(env)), "acme")
    assert acme.status == "held"
    assert "says tax = \"reverse_charge\" but the client has no VAT number" in acme.reasons[0]


def test_an_exempt_contract_has_no_vat_and_its_mention(env):
    contracts = env.mappings / "contracts.toml"
    contracts.write_text(contracts.read_text().replace(
        'name = "Acme Dental"', 'name = "Acme Dental"\ntax = "exempt"\ntax_mention = "Exonération, article 261-4 du CGI"'))
    acme = item(sync_once(hub_of(env), dry_run=True), "acme")
    assert acme.action.payload["tax"]["treatment"] == "exempt"
    assert acme.action.payload["tax"]["mention"] == "Exonération, article 261-4 du CGI"
    assert acme.action.payload["customer"]["tax_exempt"] == "exempt"
    assert all("tax" not in l for l in acme.action.payload["lines"])


def test_a_defaults_file_can_set_the_tax_of_every_contract(env):
    append(env.mappings / "defaults.toml", '\nvat_rate = "8.5"\n')
    report = sync_once(hub_of(env), dry_run=True)
    assert {l["tax"]["percent"] for c in CLIENTS for l in item(report, c).action.payload["lines"]} == {"8.5"}


def test_automatic_tax_is_said_in_the_payload_and_needs_a_country(env, details):
    details(acme=("FR", None))
    report = sync_once(hub_of(env, tax={"automatic": True}))
    acme, birch = item(report, "acme"), item(report, "birchwood")
    assert acme.status == "create" and acme.action.payload["tax"]["automatic"] is True
    assert acme.action.payload["tax"]["total_tax"] > 0                  # the plan's estimate
    assert birch.status == "held" and "no address with a country" in birch.reasons[0]
    assert "Stripe Tax" in birch.reasons[0]
    out = io.StringIO()
    render_plan(report, out=out)
    assert "these figures are an estimate" in out.getvalue()
    off = item(sync_once(hub_of(env), dry_run=True), "acme")
    assert off.action.payload["tax"]["automatic"] is False


def test_a_negative_line_gets_a_negative_tax(env):
    class Credit:
        @hookimpl
        def add_billing_lines(self, client_id, period, lines):
            if client_id != "acme":
                return []
            return [BillingLine(client_id, period, "credit:goodwill", "Goodwill credit", "1", -1234, -1234, "EUR",
                                "a credit")]
    acme = item(sync_once(hub_of(env, Credit()), dry_run=True), "acme")
    line = next(l for l in acme.action.payload["lines"] if l["code"] == "credit:goodwill")
    assert line["amount"] == -1234 and line["tax"] == {"percent": "20", "name": "TVA"}
    others = sum((l.amount * 20 + 50) // 100 for l in acme.bill.lines if l.amount > 0)
    assert acme.action.payload["tax"]["total_tax"] == others - 247          # -12.34 × 20 % = -2.468 -> -2.47


def test_a_change_of_treatment_alone_trips_no_guardrail_and_leaves_the_sent_invoice_unchanged(env, details):
    # A limit of 10 %: October's 20 % of VAT, compared with November's total, would trip it.
    strict = {"guardrails": {"invoice_max_change_percent": 10}}
    october = sync_once(hub_of(env, billing=strict))
    assert "invoice:acme:2026-10" in {p["key"] for p in october.pushed}
    sent = item(october, "acme")
    details(acme=("DE", "DE123456789"))                                   # the client moved: reverse charge
    assert item(sync_once(hub_of(env, billing=strict), dry_run=True), "acme").status == "unchanged"  # sent
    report = sync_once(hub_of(env, billing=strict, clock=NOW.replace(month=12, day=3)))
    november = item(report, "acme", "2026-11")
    assert november.action.payload["tax"]["treatment"] == "reverse_charge"
    assert abs(november.total - sent.total) * 100 <= 10 * sent.total     # before tax: within the limit
    assert abs(november.action.payload["tax"]["total_with_tax"] - sent.action.payload["tax"]["total_with_tax"]) \
        * 100 > 10 * sent.total                                           # with tax: it would not be
    assert november.status == "create" and november.reasons == ()
    assert "invoice:acme:2026-11" in {p["key"] for p in report.pushed}


def test_a_work_type_and_a_psa_catalog_item_name_their_rates(psa):
    append(psa.mappings / "tiers.toml", '\n[vat_rates]\n"SSD-1TB" = "5.5"\n')
    time_toml = psa.mappings / "time.toml"
    time_toml.write_text(time_toml.read_text().replace('[work_types."After Hours"]\nrate = "150.00"',
                                                       '[work_types."After Hours"]\nrate = "150.00"\nvat_rate = "10"'))
    elm_remote = psa.time("elm", 1.25, at(10, 9), "Project Work")
    after = psa.time("elm", 0.5, at(10, 10), "After Hours")
    psa.cw.add_product(psa.co["elm"], "SSD-1TB", quantity=2, price=109.99, updated=at(10, 14))
    elm = invoice(sync_once(psa.hub(), dry_run=True), "connectwise-" + str(psa.co["elm"]))
    rates = {l["code"]: l["tax"]["percent"] for l in elm.action.payload["lines"]}
    assert rates[f"time:entry:{elm_remote}"] == "20" and rates[f"time:entry:{after}"] == "10"
    assert rates["product:SSD-1TB"] == "5.5"
    block = elm.action.payload["tax"]
    assert [(r["percent"], r["base"], r["tax"]) for r in block["by_rate"]] == [
        ("20", elm.total - 7500 - 21998, sum((a * 20 + 50) // 100 for c, a in
                                             ((l.code, l.amount) for l in elm.bill.lines) if rates[c] == "20")),
        ("10", 7500, 750), ("5.5", 21998, 1210)]                        # 219.98 × 5.5 % = 12.0989 -> 12.10


def test_a_late_change_of_time_or_a_product_keeps_the_rate_of_its_work_type_or_catalog_item(psa):
    from hub.mappings import load_mappings
    from hub.planner import line_vat_rate
    append(psa.mappings / "tiers.toml", '\n[vat_rates]\n"SSD-1TB" = "5.5"\n')
    time_toml = psa.mappings / "time.toml"
    time_toml.write_text(time_toml.read_text().replace('[work_types."After Hours"]\nrate = "150.00"',
                                                       '[work_types."After Hours"]\nrate = "150.00"\nvat_rate = "10"'))
    m = load_mappings(psa.mappings)
    contract = next(iter(m.contracts.values()))

    def rate(code, **item):
        line = BillingLine("x", "2026-11", code, "late", "1", -100, -100, "EUR", "r", ({"id": "1", **item},))
        return line_vat_rate(line, contract, m, "20")

    assert rate("delta:2026-10:time:4711", work_type="After Hours") == ("10", None)
    assert rate("delta:2026-10:time:4711", work_type="Remote Support") == ("20", None)
    assert rate("delta:2026-10:product:88", catalog_item="SSD-1TB") == ("5.5", None)
    assert rate("delta:2026-10:product:88", catalog_item="CABLE") == ("20", None)


def test_a_line_of_work_types_at_two_rates_is_held_with_the_fix(psa):
    # Admin and Project Work at one hourly rate, on one ticket: one line, two VAT rates.
    time_toml = psa.mappings / "time.toml"
    time_toml.write_text(time_toml.read_text().replace('[work_types."Admin"]\nrate = "95.00"',
                                                       '[work_types."Admin"]\nrate = "110.00"\nvat_rate = "10"'))
    defaults = psa.mappings / "defaults.toml"
    defaults.write_text(defaults.read_text().replace('time_lines = "entry"', 'time_lines = "ticket"'))
    psa.time("acme", 1.0, at(10, 9), "Project Work", charge_id=5)
    psa.time("acme", 1.0, at(10, 10), "Admin", charge_id=5)
    acme = invoice(sync_once(psa.hub()), "acme")
    assert acme.status == "held" and acme.cause == "error"
    assert any("bills work types Admin, Project Work, which time.toml gives different VAT rates (10, 20 %)"
               in r and "set time_lines = \"entry\"" in r for r in acme.reasons)


def test_a_wrong_tax_option_names_the_file_the_key_and_the_fix(env):
    from hub.errors import ConfigError
    from hub.mappings import load_mappings
    contracts = env.mappings / "contracts.toml"
    contracts.write_text(contracts.read_text().replace('name = "Acme Dental"', 'name = "Acme Dental"\ntax = "reverse"'))
    m = load_mappings(env.mappings)
    assert "acme" in m.contract_errors and "tax" in m.contract_errors["acme"]
    tiers = env.mappings / "tiers.toml"
    tiers.write_text(tiers.read_text().replace('[addons.backup]\nname = "Cloud backup"',
                                               '[addons.backup]\nname = "Cloud backup"\nvat_rate = "vingt"'))
    with pytest.raises(ConfigError) as exc:
        load_mappings(env.mappings)
    assert "addons.backup.vat_rate" in str(exc.value) and "tiers.toml" in str(exc.value)


def test_a_late_change_of_an_add_on_takes_its_rate_and_other_late_changes_the_contracts(env):
    from hub.mappings import load_mappings
    from hub.planner import line_vat_rate
    tiers = env.mappings / "tiers.toml"
    tiers.write_text(tiers.read_text().replace('[addons.backup]\nname = "Cloud backup"',
                                               '[addons.backup]\nname = "Cloud backup"\nvat_rate = "5.5"'))
    m = load_mappings(env.mappings)
    acme = m.contracts["acme"]

    def rate(code):
        return line_vat_rate(BillingLine("acme", "2026-11", code, "x", "1", -100, -100, "EUR", "r"), acme, m, "20")

    assert rate("delta:2026-10:addon:backup:workstation") == ("5.5", None)
    assert rate("delta:2026-10:tier:gold:workstation") == ("20", None)
    assert rate("delta:2026-10:time:4711") == ("20", None)
    assert rate("addon:email_security:workstation") == ("20", None)
    assert rate("minimum") == ("20", None)
