"""Billing from the PSA, end to end against the ConnectWise, NinjaOne and Stripe simulators.

Contracts come from ConnectWise agreements (one client keeps its contract in mappings/), clients
are linked by name, time entries and products are billed by BILLING.md, prepaid blocks renew
once, and per-device agreement additions are made to agree with the RMM behind guardrails.
"""

import time
from datetime import datetime, timezone

import pytest

from hub.config import HubConfig, Secret
from hub.engine import sync_once
from hub.store import Store
from hub.testing import ConnectorPlugin, make_hub, mock_client
from plugins.connectwise.plugin import ConnectWiseConnector, ConnectWiseSettings
from plugins.connectwise.simulator import ConnectWiseSimulator
from tests.conftest import FIXTURES, NOW, SEEN, Env, fast_retry, mappings_for_tests

UTC = timezone.utc


def at(month, day, hour=9, minute=0):
    return datetime(2026, month, day, hour, minute, tzinfo=UTC).timestamp()


class PsaEnv(Env):
    """NinjaOne (orgs 1-6), ConnectWise (the same six companies by name) and Stripe."""

    def __init__(self, tmp_path, billing=None):
        super().__init__(tmp_path, devices=120,
                         mappings=mappings_for_tests(tmp_path, FIXTURES / "contracts_psa.toml"))
        # The PSA's clock is the real one: records changed now are read by the next incremental pull.
        self.cw = ConnectWiseSimulator(seed=1, companies=0, agreements=0, time_entries=0, products=0,
                                       now=time.time())
        names = ["Acme Dental", "Birchwood Legal", "Cobalt Logistics", "Driftwood Cafe", "Elm Street Clinic",
                 "Fairview Schools"]
        self.co = {n.split()[0].lower(): self.cw.add_company(n) for n in names}
        self.billing = billing or {}

    def connectors(self):
        cw = ConnectWiseConnector(
            ConnectWiseSettings(site="https://api-eu.myconnectwise.test", company_id=self.cw.company_id,
                                public_key=self.cw.public_key, private_key=Secret(self.cw.private_key, "test"),
                                client_id=self.cw.client_id),
            http=mock_client(self.cw.handler, "https://api-eu.myconnectwise.test"), retrying=fast_retry)
        return (*super().connectors(), cw)

    def hub(self, *plugins, clock=NOW):
        return make_hub(ConnectorPlugin(*self.connectors()), *plugins, mappings=self.mappings,
                        config=HubConfig(database=":memory:", billing=dict(self.billing)),
                        store=Store(self.db), clock=lambda: clock)

    def time(self, company, hours, when, work_type="Remote Support", **kw):
        return self.cw.add_time_entry(self.co[company], hours, start=when, work_type=work_type, **kw)

    def tickets(self):
        return [self.cw.record("tickets", i) for i in self.cw.ids("tickets")]


def invoice(report, client, period="2026-10"):
    return next(p for p in report.plan if p.client_id == client and p.period == period and p.kind == "invoice"
                and p.action.key.startswith("invoice:"))


def lines(item):
    return {l.code: l for l in item.bill.lines}


@pytest.fixture
def psa(tmp_path):
    env = PsaEnv(tmp_path)
    env.cw.add_agreement(env.co["acme"], "Managed Gold")
    env.cw.add_agreement(env.co["driftwood"], "Block Hours", application_units="Hours", application_limit=20)
    env.cw.add_agreement(env.co["elm"], "Break/Fix")
    return env


def block_agreement(env):
    return next(i for i in env.cw.ids("agreements") if env.cw.record("agreements", i)["type"]["name"] == "Block Hours")


def test_each_contract_kind_is_billed_by_its_rules(psa):
    agreement = block_agreement(psa)
    remote = psa.time("acme", 2.0, at(10, 6), "Remote Support")             # in Gold's services: included
    onsite = psa.time("acme", 0.5, at(10, 7), "Onsite")                     # not in Gold: 1 h minimum at 125
    psa.time("driftwood", 5.0, at(10, 8), agreement_id=agreement)          # drawn from the block
    elm_remote = psa.time("elm", 70 / 60, at(10, 9), "Remote Support")      # 1.25 h at 95
    after = psa.time("elm", 0.5, at(10, 10), "After Hours")                 # 0.5 h at 150
    psa.time("elm", 1.0, at(10, 11), "Remote Support", charge_id=77)       # replaced by the flat rate
    psa.time("elm", 0.5, at(10, 11, 14), "Virus Removal", charge_id=77)    # ticket 77: 149 once
    psa.time("elm", 1.0, at(10, 12), billable="NoCharge")
    psa.time("elm", 1.0, at(10, 13), billable="DoNotBill")
    psa.cw.add_product(psa.co["elm"], "SSD-1TB", quantity=2, price=109.99, updated=at(10, 14))
    report = sync_once(psa.hub())

    acme = lines(invoice(report, "acme"))
    # One line per entry (the default layout of time and materials).
    assert acme[f"time:entry:{onsite}"].amount == 12500 and acme[f"time:entry:{onsite}"].quantity == "1"
    assert f"time:entry:{remote}" not in acme and "tier:gold:workstation" in acme
    drift = invoice(report, "connectwise-" + str(psa.co["driftwood"]))
    assert drift.status == "empty" and any(r["reason"] == "drawn_from_block" for r in drift.bill.reported)
    elm = lines(invoice(report, "connectwise-" + str(psa.co["elm"])))
    assert elm[f"time:entry:{elm_remote}"].amount == 11875 and elm[f"time:entry:{elm_remote}"].quantity == "1.25"
    assert elm[f"time:entry:{after}"].amount == 7500
    assert elm["flat:77"].amount == 14900
    assert elm["product:SSD-1TB"].amount == 21998
    assert sum(l.amount for l in elm.values()) == 11875 + 7500 + 14900 + 21998
    pushed = {p["key"] for p in report.pushed}
    assert f"invoice:connectwise-{psa.co['elm']}:2026-10" in pushed and "invoice:acme:2026-10" in pushed
    stripe_elm = [i for i in psa.invoices() if i["metadata"]["msp_hub_client_id"] == f"connectwise-{psa.co['elm']}"]
    assert len(stripe_elm) == 1 and stripe_elm[0]["subtotal"] == 11875 + 7500 + 14900 + 21998


def test_block_threshold_plans_one_renewal_and_one_notice_across_reruns(psa):
    agreement = block_agreement(psa)
    for day, hours in ((5, 8.0), (12, 6.5), (19, 4.0)):                     # 18.5 of 20 h: 1.5 h left
        psa.time("driftwood", hours, at(10, day), agreement_id=agreement)
    report = sync_once(psa.hub())
    drift = f"connectwise-{psa.co['driftwood']}"
    assert f"renewal:{drift}:{agreement}:2" in {p["key"] for p in report.pushed}
    assert f"notice:{drift}:{agreement}:1" in {p["key"] for p in report.pushed}
    renewal = [i for i in psa.invoices() if i["metadata"]["msp_hub_action_key"].startswith("renewal:")]
    assert len(renewal) == 1 and renewal[0]["subtotal"] == 180000
    notices = [t for t in psa.tickets() if t.get("externalXRef", "").startswith("msp-hub:notice:")]
    assert len(notices) == 1 and notices[0]["company"]["id"] == psa.co["driftwood"]

    for _ in range(2):
        again = sync_once(psa.hub())
        assert not [p for p in again.pushed if p["key"].startswith(("renewal:", "notice:"))]
    assert len([i for i in psa.invoices() if i["metadata"]["msp_hub_action_key"].startswith("renewal:")]) == 1
    assert len([t for t in psa.tickets() if t.get("externalXRef", "").startswith("msp-hub:notice:")]) == 1

    # Time after the renewal draws on block 2: no overage, no second renewal.
    psa.time("driftwood", 3.0, at(11, 25), agreement_id=agreement)      # after the renewal on 22 November
    later = sync_once(psa.hub(), period="2026-11")
    assert not [p for p in later.pushed if p["key"].startswith(("renewal:", "notice:"))]
    nov = invoice(later, drift, "2026-11")
    assert f"overage:{agreement}" not in lines(nov)
    assert any(r["reason"] == "drawn_from_block" for r in nov.bill.reported)


def test_hours_beyond_the_balance_are_billed_as_overage(psa):
    agreement = block_agreement(psa)
    psa.time("driftwood", 15.0, at(10, 5), agreement_id=agreement)
    second = psa.time("driftwood", 8.0, at(10, 6), agreement_id=agreement)  # 3 h beyond the 20 h block
    report = sync_once(psa.hub())
    drift = invoice(report, f"connectwise-{psa.co['driftwood']}")
    over = [line for code, line in lines(drift).items() if code.startswith(f"overage:{agreement}")]
    # The hours of the second entry beyond the balance, on its own line (time_lines "entry").
    assert [(o.code, o.quantity, o.unit_amount, o.amount) for o in over] == [
        (f"overage:{agreement}:entry:{second}", "3", 9000, 27000)]


def test_carry_policy_moves_the_excess_into_the_next_block_instead_of_billing_it(tmp_path):
    env = PsaEnv(tmp_path)
    agreement = env.cw.add_agreement(env.co["driftwood"], "Block 30h", application_units="Hours", application_limit=30)
    env.time("driftwood", 32.0, at(10, 5), agreement_id=agreement)
    report = sync_once(env.hub())
    drift = invoice(report, f"connectwise-{env.co['driftwood']}")
    assert not [c for c in lines(drift) if c.startswith("overage:")]
    assert any(p["key"].startswith(f"renewal:connectwise-{env.co['driftwood']}") for p in report.pushed)


def test_a_change_after_invoicing_becomes_a_delta_line_on_the_next_invoice(psa):
    first = sync_once(psa.hub())
    oct_acme = invoice(first, "acme")
    ws_before = lines(oct_acme)["tier:gold:workstation"]
    # A workstation created in October that the RMM reports only now, and a late October entry.
    psa.ninja.add_device(1, "WINDOWS_WORKSTATION", created=at(10, 10), last_contact=SEEN, name="LATE-WS")
    entry = psa.time("elm", 1.0, at(10, 30), "After Hours")
    nov = sync_once(psa.hub(), period="2026-11")
    acme_nov = lines(invoice(nov, "acme", "2026-11"))
    delta = acme_nov["delta:2026-10:tier:gold:workstation"]
    assert delta.quantity == "1" and delta.amount == ws_before.unit_amount and delta.items[0]["name"] == "LATE-WS"
    elm_nov = lines(invoice(nov, f"connectwise-{psa.co['elm']}", "2026-11"))
    late = elm_nov[f"time:entry:{entry}"]                          # its own line, naming its period
    assert late.amount == 15000 and late.items[0]["period"] == "2026-10"
    assert late.description.startswith(f"Late entry {entry} of 2026-10: 2026-10-30, ")
    assert late.description.endswith(", jsmith, ticket 0, After Hours, 1 h × 150.00 EUR")
    # The sent October invoices are never rewritten.
    assert sum(1 for i in psa.invoices() if i["metadata"]["msp_hub_action_key"] == "invoice:acme:2026-10") == 1
    again = sync_once(psa.hub(), period="2026-10")
    assert invoice(again, "acme").status == "changed_after_sent" and not again.pushed
    # And the delta is billed once: the next run's November plan no longer has it as new.
    dec = sync_once(psa.hub(), period="2026-12")
    assert not [c for c in lines(invoice(dec, "acme", "2026-12")) if c.startswith("delta:2026-10")]


def test_agreement_quantities_three_counts_guardrails_and_approval(psa):
    agreement = next(i for i in psa.cw.ids("agreements") if psa.cw.record("agreements", i)["type"]["name"] == "Managed Gold")
    dry = sync_once(psa.hub(), dry_run=True)
    counts = {l.code: len(l.items) for l in invoice(dry, "acme").bill.lines}
    ws, srv = counts["tier:gold:workstation"], counts["tier:gold:server"]
    small = psa.cw.add_addition(agreement, "MS-WS", quantity=ws - 2)               # +2: written
    big = psa.cw.add_addition(agreement, "MS-SRV", quantity=srv + 15)              # -15: held
    psa.cw.touch("agreements", [agreement])                                         # as an edit in ConnectWise does
    report = sync_once(psa.hub())
    checks = {q.addition_id: q for q in report.quantities}
    assert (checks[str(small)].psa_quantity, checks[str(small)].rmm_count, checks[str(small)].status) == (ws - 2, ws, "update")
    assert checks[str(big)].status == "held" and "more than the limit" in checks[str(big)].reasons[0]
    assert psa.cw.record("additions", small)["quantity"] == ws
    assert psa.cw.record("additions", big)["quantity"] == srv + 15
    held_key = f"agreement_quantity:{agreement}:{big}:2026-10"
    assert held_key in {h["key"] for h in report.held}

    hub = psa.hub()
    hub.store.approve(held_key)
    after = sync_once(hub)
    assert held_key in {p["key"] for p in after.pushed}
    assert psa.cw.record("additions", big)["quantity"] == srv
    final = sync_once(psa.hub())
    assert all(q.status == "ok" for q in final.quantities) and not final.pushed


def test_never_writes_zero_without_approval(psa):
    at_file = psa.mappings / "agreement_types.toml"
    at_file.write_text(at_file.read_text() + '"MS-NET" = "network"\n')        # Gold bills no network device
    agreement = next(i for i in psa.cw.ids("agreements") if psa.cw.record("agreements", i)["type"]["name"] == "Managed Gold")
    addition = psa.cw.add_addition(agreement, "MS-NET", quantity=4)
    psa.cw.touch("agreements", [agreement])
    psa.billing = {"guardrails": {"max_change_percent": 1000, "max_change_devices": 1000}}
    report = sync_once(psa.hub())
    check = next(q for q in report.quantities if q.addition_id == str(addition))
    assert (check.psa_quantity, check.rmm_count, check.status) == (4, 0, "held")
    assert "to 0" in check.reasons[0]
    assert psa.cw.record("additions", addition)["quantity"] == 4
    psa.billing = {"guardrails": {"allow_zero": True, "max_change_percent": 1000, "max_change_devices": 1000}}
    sync_once(psa.hub())
    assert psa.cw.record("additions", addition)["quantity"] == 0


def test_clients_are_linked_by_name_and_the_unmapped_are_reported_never_billed(psa):
    psa.ninja.add_organization("Zebra Unrelated", id=7)
    psa.ninja.add_device(7, "WINDOWS_WORKSTATION", last_contact=SEEN)
    report = sync_once(psa.hub())
    reg = report.registry
    assert reg.clients[f"connectwise-{psa.co['elm']}"].links["ninjaone"] == "5"
    assert reg.clients[f"connectwise-{psa.co['elm']}"].how["ninjaone"] == "name"
    assert reg.clients["acme"].links == {"ninjaone": "1", "connectwise": str(psa.co["acme"])}
    assert [(u.source, u.source_id) for u in reg.unmapped] == [("ninjaone", "7")]
    assert any("Zebra Unrelated" in e and "never" not in e for e in report.warnings)
    kinds = {(d.kind, d.subject) for d in report.discrepancies}
    assert ("revenue_found", f"connectwise-{psa.co['fairview']}") in kinds     # devices, no agreement
    billed = {i["metadata"]["msp_hub_client_id"] for i in psa.invoices()}
    assert f"connectwise-{psa.co['fairview']}" not in billed and "ninjaone-7" not in billed


def test_bad_psa_input_gets_a_precise_error_and_the_rest_goes_on(psa):
    psa.cw.add_agreement(psa.co["birchwood"], "Managed Bronze")                # type not mapped
    psa.cw.add_agreement(psa.co["cobalt"], "Break/Fix")
    psa.time("cobalt", 1.0, at(10, 3), actualHours=-1.5)                         # negative hours
    psa.time("elm", 1.0, at(10, 4))
    psa.cw.add_time_entry(9999, 1.0, start=at(10, 4))                            # unknown company
    report = sync_once(psa.hub())
    errors = "\n".join(report.errors)
    assert "'Managed Bronze'" in errors and "agreement_types.toml" in errors
    assert f"client connectwise-{psa.co['cobalt']} 2026-10: time entry" in errors and "-1.5 is negative" in errors
    assert "company 9999" in "\n".join(report.warnings)
    pushed = {p["key"] for p in report.pushed}
    assert f"invoice:connectwise-{psa.co['elm']}:2026-10" in pushed and "invoice:acme:2026-10" in pushed
    assert not [k for k in pushed if str(psa.co["cobalt"]) in k or str(psa.co["birchwood"]) in k]


def test_a_connectwise_400_fails_that_action_with_its_error_body(psa):
    agreement = block_agreement(psa)
    psa.time("driftwood", 19.0, at(10, 5), agreement_id=agreement)
    psa.cw.fail_next(400, path="/service/tickets", method="POST",
                     body={"code": "InvalidObject", "message": "ticket object is invalid",
                           "errors": [{"code": "InvalidField", "message": "The board is inactive.",
                                       "resource": "ticket", "field": "board"}]})
    report = sync_once(psa.hub())
    failed = {f["key"]: f["error"] for f in report.failed}
    (key, error), = failed.items()
    assert key.startswith("notice:") and "board" in error and "HTTP 400" in error
    assert any(p["key"].startswith("renewal:") for p in report.pushed)            # the rest went on
    assert sync_once(psa.hub()).pushed[0]["key"] == key                           # retried next run


def test_time_of_a_cancelled_invoice_is_billed_by_the_next_one(psa):
    entry = psa.time("elm", 1.0, at(10, 9), "After Hours")
    psa.stripe.fail_next(400, times=2, path="/v1/invoices")          # acme's and elm's invoices
    first = sync_once(psa.hub())
    key = f"invoice:connectwise-{psa.co['elm']}:2026-10"
    assert key in {f["key"] for f in first.failed}
    hub = psa.hub()
    hub.store.cancel_action(key)
    nov = sync_once(psa.hub(), period="2026-11")
    line = lines(invoice(nov, f"connectwise-{psa.co['elm']}", "2026-11"))[f"time:entry:{entry}"]
    assert line.amount == 15000 and line.items[0]["period"] == "2026-10"


def test_an_addition_of_an_add_on_in_its_short_form_switches_it_on_for_its_class(tmp_path):
    env = PsaEnv(tmp_path)
    silver = env.cw.add_agreement(env.co["birchwood"], "Managed Silver")       # the type has no add-on
    backup = env.cw.add_addition(silver, "BACKUP-WS", quantity=1)            # "backup/workstation"
    report = sync_once(env.hub())
    birch = lines(invoice(report, f"connectwise-{env.co['birchwood']}"))
    assert [c for c in birch if c.startswith("addon:")] == ["addon:backup:workstation"]
    assert len(birch["addon:backup:workstation"].items) == len(birch["tier:silver:workstation"].items)
    check = next(q for q in report.quantities if q.addition_id == str(backup))
    assert (check.line_code, check.rmm_count) == ("addon:backup:workstation", len(birch["tier:silver:workstation"].items))


def test_a_renewal_held_for_its_vat_holds_its_notice_too_then_both_go_once(psa):
    agreement = block_agreement(psa)
    for day, hours in ((5, 8.0), (12, 6.5), (19, 4.0)):                     # 18.5 of 20 h: 1.5 h left
        psa.time("driftwood", hours, at(10, day), agreement_id=agreement)
    company = psa.cw.companies.get(psa.co["driftwood"])
    vat = company.pop("taxIdentifier")                                       # a Belgian client, no VAT number
    company["country"] = {"id": 21, "name": "Belgium"}
    report = sync_once(psa.hub())
    drift = f"connectwise-{psa.co['driftwood']}"
    plan = {p.action.key: p for p in report.plan if p.action}
    renewal, notice = plan[f"renewal:{drift}:{agreement}:2"], plan[f"notice:{drift}:{agreement}:1"]
    assert renewal.status == "held" and any(r.startswith("VAT: ") for r in renewal.reasons)
    assert notice.status == "held" and any(f"waits for its renewal invoice renewal:{drift}" in r for r in notice.reasons)
    assert not [p for p in report.pushed if p["key"].startswith(("renewal:", "notice:"))]

    company["taxIdentifier"] = "BE0403170701"                               # the fix: its VAT number
    company["country"] = {"id": 21, "name": "Belgium"}
    psa.cw.companies.touch(psa.co["driftwood"], time.time())
    report = sync_once(psa.hub())
    assert {f"renewal:{drift}:{agreement}:2", f"notice:{drift}:{agreement}:1"} <= {p["key"] for p in report.pushed}
    assert vat and not sync_once(psa.hub()).pushed
