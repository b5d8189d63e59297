"""Agreement additions drive contracts: an MSP whose contracts are ConnectWise agreements runs with
no contracts.toml and no links.toml (examples/psa-driven/), its additions switching add-ons on,
counting several classes and naming a tier; end to end against the simulators."""

import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hub.config import load_config
from hub.engine import Hub, sync_once
from hub.errors import ConfigError
from hub.mappings import load_mappings
from hub.testing import serve
from plugins.connectwise.simulator import ConnectWiseSimulator
from plugins.ninjaone.simulator import NinjaOneSimulator
from plugins.stripe.simulator import StripeSimulator
from tests.conftest import NOW, ROOT, SEEN

EXAMPLE = ROOT / "examples" / "psa-driven"
CREATED = datetime(2026, 6, 1, tzinfo=timezone.utc).timestamp()


def _set(text: str, section: str, key: str, value: str) -> str:
    """``key = "..."`` of ``[section]`` set to ``value`` (the example's simulator addresses and ids)."""
    head = text.index(f"[{section}]")
    end = text.find("\n[", head + 1)
    end = len(text) if end < 0 else end
    part, n = re.subn(rf'(?m)^{key} = "[^"]*"', f'{key} = "{value}"', text[head:end], count=1)
    assert n == 1, f"{section}.{key} not in the example"
    return text[:head] + part + text[end:]


class PsaDriven:
    """The example folder copied, the three simulators served over HTTP and its config pointing at them."""

    def __init__(self, tmp_path: Path):
        self.folder = tmp_path / "psa-driven"
        shutil.copytree(EXAMPLE, self.folder)
        self.ninja = NinjaOneSimulator(seed=5, organizations=0, devices=0, now=SEEN)
        self.cw = ConnectWiseSimulator(seed=5, companies=0, agreements=0, time_entries=0, products=0,
                                       now=time.time())
        self.stripe = StripeSimulator(api_key="sk_test_psa_driven")
        self.orgs, self.co = {}, {}
        for name in ("Acme Dental", "Birchwood Legal"):
            self.orgs[name] = self.ninja.add_organization(name)
            self.co[name] = self.cw.add_company(name)

    def devices(self, name: str, node_class: str, n: int) -> None:
        for _ in range(n):
            self.ninja.add_device(self.orgs[name], node_class, created=CREATED, last_contact=SEEN)

    def client(self, name: str) -> str:
        return f"connectwise-{self.co[name]}"

    def sync(self, urls: dict[str, str], clock=NOW):
        config = self.folder / "msp-hub.toml"
        text = config.read_text()
        text = _set(text, "connectors.ninjaone", "base_url", urls["ninja"])
        text = _set(text, "connectors.connectwise", "site", urls["cw"])
        text = _set(text, "connectors.stripe", "base_url", urls["stripe"])
        config.write_text(text)
        cfg = load_config(config, environ={"NINJAONE_CLIENT_SECRET": self.ninja.client_secret,
                                           "CONNECTWISE_PRIVATE_KEY": self.cw.private_key,
                                           "STRIPE_API_KEY": self.stripe.api_key})
        hub = Hub(cfg, clock=lambda: clock)
        try:
            return sync_once(hub)
        finally:
            hub.close()


def _invoice(report, client, period="2026-10"):
    return next(p for p in report.plan if p.client_id == client and p.period == period and p.kind == "invoice"
                and p.action.key.startswith("invoice:"))


def _quantities(report, client):
    return {q.product: q for q in report.quantities if q.client_id == client}


def test_the_example_has_no_contract_file_and_its_additions_load():
    folder = EXAMPLE / "mappings"
    assert not (folder / "contracts.toml").exists() and not (folder / "links.toml").exists()
    assert not (folder / "contracts").exists()
    m = load_mappings(folder)
    assert m.contracts == {} and m.links == {}
    backup = m.addition_products["BACKUP-DEV"]
    assert (backup.addon, backup.classes) == ("backup", frozenset({"workstation", "server"}))
    silver = m.addition_products["ARGENT-POSTE"]
    assert (silver.tier, silver.classes) == ("silver", frozenset({"workstation"}))


def test_psa_driven_msp_bills_add_ons_and_tiers_from_agreement_additions(tmp_path):
    env = PsaDriven(tmp_path)
    env.devices("Acme Dental", "WINDOWS_WORKSTATION", 5)
    env.devices("Acme Dental", "WINDOWS_SERVER", 2)
    env.devices("Birchwood Legal", "WINDOWS_WORKSTATION", 3)
    env.devices("Birchwood Legal", "WINDOWS_SERVER", 1)
    acme = env.cw.add_agreement(env.co["Acme Dental"], "Managed Gold")
    env.cw.add_addition(acme, "MS-WS", quantity=5)
    env.cw.add_addition(acme, "MS-SRV", quantity=2)
    backup = env.cw.add_addition(acme, "BACKUP-DEV", quantity=6, unit_price=15.0)   # 7 devices: one more
    birch = env.cw.add_agreement(env.co["Birchwood Legal"], "Managed Gold")
    env.cw.add_addition(birch, "ARGENT-POSTE", quantity=3, unit_price=100.0)
    env.cw.add_addition(birch, "MS-SRV", quantity=1)
    env.cw.add_addition(birch, "BACKUP-DEV", quantity=4, unit_price=15.0, cancelled="2026-09-30T00:00:00Z")

    with serve(env.ninja.handler) as n, serve(env.cw.handler) as c, serve(env.stripe.handler) as s:
        report = env.sync({"ninja": n, "cw": c, "stripe": s})

    assert not report.errors, report.errors
    a = _invoice(report, env.client("Acme Dental"))
    lines = {l.code: l for l in a.bill.lines}
    # The agreement type (Managed Gold) has no add-on: backup is on because of the BACKUP-DEV addition,
    # counting its workstations and its servers.
    assert set(lines) == {"tier:gold:workstation", "tier:gold:server", "addon:backup:workstation",
                          "addon:backup:server"}
    assert (lines["addon:backup:workstation"].quantity, lines["addon:backup:workstation"].amount) == ("5", 7500)
    assert (lines["addon:backup:server"].quantity, lines["addon:backup:server"].amount) == ("2", 9000)
    assert "switched on by an agreement addition" in lines["addon:backup:server"].rule
    assert a.status == "create"
    q = _quantities(report, env.client("Acme Dental"))
    assert (q["BACKUP-DEV"].psa_quantity, q["BACKUP-DEV"].rmm_count, q["BACKUP-DEV"].status) == (6, 7, "update")
    assert q["BACKUP-DEV"].line_codes == ("addon:backup:server", "addon:backup:workstation")
    assert (q["MS-WS"].rmm_count, q["MS-WS"].status) == (5, "ok")
    assert (q["MS-SRV"].rmm_count, q["MS-SRV"].status) == (2, "ok")
    # The reconciled quantity reached the PSA.
    assert env.cw.record("additions", backup)["quantity"] == 7

    b = _invoice(report, env.client("Birchwood Legal"))
    lines = {l.code: l for l in b.bill.lines}
    # ARGENT-POSTE bills Birchwood's workstations at Silver, its server stays at the agreement's Gold;
    # its backup addition was cancelled before the period's end: no backup.
    assert set(lines) == {"tier:silver:workstation", "tier:gold:server"}
    assert (lines["tier:silver:workstation"].quantity, lines["tier:silver:workstation"].amount) == ("3", 30000)
    assert "by agreement addition ARGENT-POSTE" in lines["tier:silver:workstation"].rule
    assert lines["tier:gold:server"].amount == 24000
    q = _quantities(report, env.client("Birchwood Legal"))
    assert (q["ARGENT-POSTE"].line_code, q["ARGENT-POSTE"].rmm_count, q["ARGENT-POSTE"].status) == \
        ("tier:silver:workstation", 3, "ok")
    assert (q["MS-SRV"].line_code, q["MS-SRV"].status) == ("tier:gold:server", "ok")
    assert "BACKUP-DEV" not in q

    invoices = {i["metadata"]["msp_hub_action_key"]: i for i in env.stripe.list_objects("invoice")}
    assert invoices[f"invoice:{env.client('Acme Dental')}:2026-10"]["subtotal"] == 5 * 12000 + 2 * 24000 + 7500 + 9000
    assert invoices[f"invoice:{env.client('Birchwood Legal')}:2026-10"]["subtotal"] == 30000 + 24000


@pytest.mark.parametrize("table, key, words", [
    ('[additions."BK"]\naddon = "backups"\n', "additions.BK.addon", "unknown add-on 'backups'"),
    ('[additions."AP"]\ntier = "argent"\n', "additions.AP.tier", "unknown tier 'argent'"),
    ('[additions."BK"]\naddon = "backup"\nclasses = ["sever"]\n', "additions.BK.classes",
     "device class 'sever'"),
    ('[additions."BK"]\naddon = "backup"\ntier = "silver"\n', "additions.BK", "both add-on 'backup' and tier"),
    ('[additions."BK"]\naddon = "backup"\nclasses = []\n', "additions.BK.classes", "is empty"),
    ('[additions."BK"]\naddon = "backup"\ncolour = "red"\n', "additions.BK.colour", ""),
    ('[additions."AP"]\ntier = "silver"\nclasses = ["network"]\n', "additions.AP.classes",
     "tier 'silver' does not price"),
    ('[additions."BK"]\naddon = "backup"\nclasses = ["network"]\n', "additions.BK.classes",
     "add-on 'backup' does not price"),
    ('[additions]\n"MS-WS" = 3\n', "additions.MS-WS", "must be a string or a table, got 3"),
])
def test_a_wrong_addition_table_names_the_file_key_line_and_fix(tmp_path, table, key, words):
    folder = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", folder)
    (folder / "contracts.toml").unlink()
    (folder / "agreement_types.toml").write_text('[types."Managed Gold"]\nkind = "managed"\ntier = "gold"\n\n' + table)
    with pytest.raises(ConfigError) as exc:
        load_mappings(folder)
    text = str(exc.value)
    last = key.rsplit(".", 1)[1]
    line = next((5 + n for n, row in enumerate(table.splitlines()) if re.match(rf'"?{last}"? =', row)), 5)
    assert f"agreement_types.toml, line {line}, key '{key}'" in text, text
    assert words in text and "fix:" in text


# --- against the in-process simulators (tests/test_psa_billing.py's setup) ------------------------

from tests.test_psa_billing import PsaEnv, at, invoice, lines  # noqa: E402


def _agreement(env, company, type_name="Managed Silver"):
    return env.cw.add_agreement(env.co[company], type_name)


def test_a_contract_in_mappings_wins_and_the_plan_names_the_ignored_additions(tmp_path):
    env = PsaEnv(tmp_path)
    gold = _agreement(env, "acme", "Managed Gold")        # acme has a contract in mappings/contracts.toml
    env.cw.add_addition(gold, "ARGENT-POSTE", quantity=3)
    env.cw.add_addition(gold, "MAIL-SEC", quantity=3)
    report = sync_once(env.hub(), dry_run=True)
    acme = lines(invoice(report, "acme"))
    assert "tier:silver:workstation" not in acme and "tier:gold:workstation" in acme
    assert not [c for c in acme if c.startswith("addon:email_security")]
    ignored = [d for d in report.discrepancies if d.kind == "additions_ignored"]
    assert len(ignored) == 1 and ignored[0].subject == "acme"
    assert "ARGENT-POSTE" in ignored[0].message and "MAIL-SEC" in ignored[0].message
    assert "contracts.toml wins over the PSA" in ignored[0].message


def test_two_additions_naming_two_tiers_for_one_class_hold_the_client(tmp_path):
    env = PsaEnv(tmp_path)
    with open(env.mappings / "agreement_types.toml", "a") as f:
        f.write('\n[additions."OR-POSTE"]\ntier = "gold"\nclasses = ["workstation"]\n')
    silver = _agreement(env, "birchwood")
    env.cw.add_addition(silver, "ARGENT-POSTE", quantity=3)
    env.cw.add_addition(silver, "OR-POSTE", quantity=3)
    report = sync_once(env.hub())
    birch = invoice(report, f"connectwise-{env.co['birchwood']}")
    assert (birch.status, birch.cause) == ("held", "error")
    problem = next(r for r in birch.reasons if "two tiers" in r)
    assert "ARGENT-POSTE" in problem and "OR-POSTE" in problem and "cancel one of them" in problem
    assert not [i for i in env.invoices() if i["metadata"]["msp_hub_client_id"] == birch.client_id]
    # Other clients are billed.
    assert invoice(report, "acme").status == "create"


def test_an_add_on_addition_on_an_agreement_that_bills_no_devices_holds_the_client(tmp_path):
    env = PsaEnv(tmp_path)
    breakfix = _agreement(env, "elm", "Break/Fix")
    env.cw.add_addition(breakfix, "BACKUP-DEV", quantity=4)
    report = sync_once(env.hub(), dry_run=True)
    elm = invoice(report, f"connectwise-{env.co['elm']}")
    assert elm.status == "held"
    assert any("BACKUP-DEV" in r and "bills no devices" in r for r in elm.reasons)


def test_only_billable_effective_additions_switch_an_add_on_on(tmp_path):
    env = PsaEnv(tmp_path)
    silver = _agreement(env, "birchwood")
    env.cw.add_addition(silver, "BACKUP-DEV", quantity=4, bill_customer="DoNotBill")
    env.cw.add_addition(silver, "MAIL-SEC", quantity=4, effective="2026-11-01T00:00:00Z")   # after October
    report = sync_once(env.hub(), dry_run=True)
    birch = lines(invoice(report, f"connectwise-{env.co['birchwood']}"))
    assert "tier:silver:workstation" in birch
    assert not [c for c in birch if c.startswith("addon:")]


def test_an_add_on_from_a_cancelled_addition_stops_and_its_month_keeps_what_it_billed(tmp_path):
    env = PsaEnv(tmp_path)
    silver = _agreement(env, "birchwood")
    backup = env.cw.add_addition(silver, "BACKUP-DEV", quantity=1)
    october = sync_once(env.hub())
    birch = f"connectwise-{env.co['birchwood']}"
    oct_lines = lines(invoice(october, birch))
    assert "addon:backup:workstation" in oct_lines
    snapshot = next(p for p in october.plan if p.client_id == birch and p.kind == "invoice").snapshot
    assert any(t["on"] == "addon:backup" for line in snapshot for t in line["things"])

    # Cancelled on 10 November; a workstation created in October is reported only now.
    env.cw.add_addition(silver, "BACKUP-DEV", quantity=1, id=backup, cancelled="2026-11-10T00:00:00Z")
    env.cw.touch("agreements", [silver])
    org = int(next(c.source_id for c in env.hub().store.iter_clients() if c.name == "Birchwood Legal"
                   and c.source == "ninjaone"))
    env.ninja.add_device(org, "WINDOWS_WORKSTATION", created=at(10, 10), last_contact=SEEN, name="LATE-WS")
    december = datetime(2026, 12, 3, 12, tzinfo=timezone.utc)
    november = sync_once(env.hub(clock=december), period="2026-11")
    nov = lines(invoice(november, birch, "2026-11"))
    assert not [c for c in nov if c.startswith("addon:")]            # no longer in force at November's end
    late = nov["delta:2026-10:addon:backup:workstation"]              # October billed backup: once, for it
    assert late.quantity == "1" and late.items[0]["name"] == "LATE-WS"
    assert late.unit_amount == oct_lines["addon:backup:workstation"].unit_amount
    assert "delta:2026-10:tier:silver:workstation" in nov
    again = sync_once(env.hub(clock=datetime(2027, 1, 4, 12, tzinfo=timezone.utc)), period="2026-12")
    assert not [c for c in lines(invoice(again, birch, "2026-12")) if c.startswith("delta:2026-10")]


def test_a_late_device_of_a_month_billed_at_two_tiers_by_an_addition_is_billed_at_its_class_tier(tmp_path):
    env = PsaEnv(tmp_path)
    gold = _agreement(env, "birchwood", "Managed Gold")
    env.cw.add_addition(gold, "ARGENT-POSTE", quantity=1)
    birch = f"connectwise-{env.co['birchwood']}"
    october = lines(invoice(sync_once(env.hub()), birch))
    assert {"tier:silver:workstation", "tier:gold:server"} <= set(october)
    org = int(next(c.source_id for c in env.hub().store.iter_clients() if c.name == "Birchwood Legal"
                   and c.source == "ninjaone"))
    env.ninja.add_device(org, "WINDOWS_WORKSTATION", created=at(10, 10), last_contact=SEEN, name="LATE-WS")
    env.ninja.add_device(org, "WINDOWS_SERVER", created=at(10, 10), last_contact=SEEN, name="LATE-SRV")
    november = sync_once(env.hub(clock=datetime(2026, 12, 3, 12, tzinfo=timezone.utc)), period="2026-11")
    nov = lines(invoice(november, birch, "2026-11"))
    ws, srv = nov["delta:2026-10:tier:silver:workstation"], nov["delta:2026-10:tier:gold:server"]
    assert (ws.items[0]["name"], ws.unit_amount) == ("LATE-WS", october["tier:silver:workstation"].unit_amount)
    assert (srv.items[0]["name"], srv.unit_amount) == ("LATE-SRV", october["tier:gold:server"].unit_amount)
    assert not [c for c in nov if c.startswith("delta:") and c not in (ws.code, srv.code)]


# --- the contract an agreement and its additions stand for ----------------------------------------

from hub.mappings import contract_from_agreement  # noqa: E402
from hub.records import Agreement, AgreementAddition  # noqa: E402


def _addition(i, product, *, agreement="40", cancelled=None, effective=None, bill="billable"):
    return AgreementAddition("connectwise", str(i), agreement, "250", product, "", "1", 0, "EUR", bill,
                             effective_date=effective, cancelled_date=cancelled)


def _contract(type_name, additions, on="2026-10-31"):
    m = load_mappings(ROOT / "mappings")
    a = Agreement("connectwise", "40", "250", "Acme", type_name, "active", "2024-01-01")
    return contract_from_agreement("c", "Acme", {}, a, m, additions, on)


def test_the_add_on_of_the_type_stays_its_own_and_additions_of_one_add_on_add_up_their_classes():
    platinum = _contract("Managed Platinum", [_addition(1, "BACKUP-WS")])
    assert (platinum.addons, platinum.addon_classes, platinum.from_additions) == (("backup",), {}, ())
    gold = _contract("Managed Gold", [_addition(1, "BACKUP-WS"), _addition(2, "BACKUP-SRV"),
                                      _addition(3, "MAIL-SEC", agreement="41")])     # another agreement's
    assert gold.addons == ("backup",)
    assert gold.addon_classes == {"backup": frozenset({"workstation", "server"})}
    assert [s.split(":")[0] for s in gold.from_additions] == [
        "addition BACKUP-SRV (id 2) of connectwise agreement 40 (Managed Gold)",
        "addition BACKUP-WS (id 1) of connectwise agreement 40 (Managed Gold)"]


@pytest.mark.parametrize("kw, active", [
    ({}, True), ({"cancelled": "2026-10-31"}, False), ({"cancelled": "2026-11-01"}, True),
    ({"effective": "2026-10-31"}, True), ({"effective": "2026-11-01"}, False), ({"bill": "no_charge"}, False),
])
def test_an_addition_acts_when_billable_effective_and_not_cancelled_on_the_day(kw, active):
    c = _contract("Managed Gold", [_addition(1, "ARGENT-POSTE", **kw)])
    assert (c.class_tiers == {"workstation": ("silver", "ARGENT-POSTE")}) is active
