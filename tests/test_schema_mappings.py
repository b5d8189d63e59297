"""The mappings files' schemas: a mistake in a shared file stops the load naming the file, the
line, the key and the fix; a mistake in a contract or a link holds only the clients it concerns."""

import shutil
from fractions import Fraction
from pathlib import Path

import pytest

from hub.alerting import load_alert_rules
from hub.errors import ConfigError
from hub.mappings import Addon, BlockSize, Tier, WorkType, load_mappings
from tests.conftest import FIXTURES, ROOT

REPO_MAPPINGS = ROOT / "mappings"


@pytest.fixture
def mdir(tmp_path):
    d = tmp_path / "mappings"
    shutil.copytree(REPO_MAPPINGS, d)
    return d


def stops(mdir: Path, name: str, body: str) -> str:
    (mdir / name).write_text(body)
    with pytest.raises(ConfigError) as exc:
        load_mappings(mdir)
    return str(exc.value)


def contract_error(mdir: Path, body: str, client: str = "zed"):
    (mdir / "contracts").mkdir(exist_ok=True)
    (mdir / "contracts" / "extra.toml").write_text(body)
    m = load_mappings(mdir)
    assert "acme" in m.contracts and client not in m.contracts      # the others are still billed
    return m, m.contract_errors[client]


# --- good files load the same model as before ---------------------------------------------------

def test_the_repository_mappings_load_the_same_model():
    m = load_mappings(REPO_MAPPINGS)
    assert not m.contract_errors and not m.file_errors
    assert m.currency == "EUR"
    assert m.tiers["gold"] == Tier("gold", "Gold", {"workstation": 12000, "server": 24000},
                                   frozenset({"monitoring", "patching", "antivirus", "remote_support",
                                              "backup_monitoring"}), "silver")
    assert m.tiers["platinum"].prices == {"workstation": 18000, "server": 36000, "network": 2500}
    assert m.addons["email_security"] == Addon("email_security", "Email security", {"*": 400}, "email_security",
                                               frozenset({"workstation"}))
    assert m.addons["backup"].prices == {"workstation": 1500, "server": 4500} and m.addons["backup"].classes is None
    assert m.device_classes["ninjaone"]["NMS_PRINTER"] == "printer" and len(m.device_classes["ninjaone"]) == 18
    assert m.not_billed == {"network", "printer", "mobile"} and m.unlisted == "not_billed"
    assert m.blocks["30h"] == BlockSize("30h", Fraction(30), 255000)
    assert m.time.work_types["Onsite"] == WorkType("Onsite", 12500, True, "onsite_support", None)
    assert m.time.work_types["Virus Removal"].flat_rate == 14900
    assert (m.time.increment_minutes, m.time.onsite_minimum, m.time.warning_hours) == (15, 1, 2)
    assert m.agreement_types["Block 30h"] == {"kind": "block", "block": "30h", "beyond_balance": "carry"}
    assert m.addition_products["BACKUP-SRV"] == "backup/server"
    birchwood = m.contracts["birchwood"]
    assert (birchwood.tier, birchwood.minimum, birchwood.links, birchwood.kind) == ("silver", 650000,
                                                                                    {"ninjaone": "2"}, "managed")
    assert m.contracts["cobalt"].addons == ("backup", "email_security")
    assert m.contracts["cobalt"].time.included_services == m.tiers["platinum"].services
    rules = m.alert_rules
    assert [r.name for r in rules.rules] == ["servers", "disk-space", "informational", "catch-all"]
    assert rules.rules[0].match["severity"] == ("MAJOR", "CRITICAL") and rules.rules[2].action == "ignore"
    assert rules.fallback_company == "250" and rules.severity_priority["NONE"].startswith("Priority 4")


def test_the_test_fixtures_load_cleanly(mdir):
    for fixture in ("contracts.toml", "contracts_psa.toml"):
        shutil.copy(FIXTURES / fixture, mdir / "contracts.toml")
        m = load_mappings(mdir)
        assert not m.contract_errors and not m.file_errors and "acme" in m.contracts
    shutil.copy(FIXTURES / "contracts.toml", mdir / "contracts.toml")
    m = load_mappings(mdir)
    assert sorted(m.contracts) == ["acme", "birchwood", "cobalt", "driftwood", "elmstreet"]
    assert m.contracts["driftwood"].proration is True and m.contracts["driftwood"].addons == ("email_security",)


# --- shared files stop the load ----------------------------------------------------------------

@pytest.mark.parametrize("name, body, where, fragments", [
    ("tiers.toml", 'curency = "EUR"\n[tiers.a]\nprices = { workstation = "1" }\n', "line 1, key 'curency'",
     ["unknown key 'curency'", "did you mean 'currency'?", "use one of addons, currency, tiers"]),
    ("tiers.toml", '[tiers.a]\nservice = ["x"]\nprices = { workstation = "1" }\n', "line 2, key 'tiers.a.service'",
     ["did you mean 'services'?"]),
    ("tiers.toml", '[tiers.a]\nprices = { workstation = "1" }\n[addons.b]\nprice = "1"\nclases = ["server"]\n',
     "line 5, key 'addons.b.clases'", ["did you mean 'classes'?"]),
    ("tiers.toml", '[tiers.a]\nprices = { workstation = 120.1 }\n', "line 2, key 'tiers.a.prices.workstation'",
     ["a price is not written as a float (120.1)", "\"120.10\""]),
    ("tiers.toml", '[tiers.a]\nprices = { workstation = "1" }\n[addons.b]\nprice = "1"\nprices = { server = "2" }\n',
     "line 3, key 'addons.b'", ["needs either price or prices"]),
    ("tiers.toml", '[tiers.a]\nservices = "monitoring"\nprices = { workstation = "1" }\n',
     "line 2, key 'tiers.a.services'", ["must be a list"]),
    ("tiers.toml", 'currency = "euro"\n[tiers.a]\nprices = { workstation = "1" }\n', "line 1, key 'currency'",
     ["ISO 4217"]),
    ("time.toml", '[defaults]\nincrement_minute = 15\n', "line 2, key 'defaults.increment_minute'",
     ["did you mean 'increment_minutes'?"]),
    ("time.toml", '[defaults]\nincrement_minutes = 90\n', "line 2, key 'defaults.increment_minutes'", ["<= 60"]),
    ("time.toml", '[work_types."Remote Support"]\nrat = "95.00"\n', "line 2, key 'work_types.\"Remote Support\".rat'",
     ["did you mean 'rate'?"]),
    ("time.toml", '[work_types.Admin]\nrate = 95.5\n', "line 2, key 'work_types.Admin.rate'", ["float"]),
    ("time.toml", '[work_types.Admin]\nonsite = "yes"\n', "line 2, key 'work_types.Admin.onsite'", ["true or false"]),
    ("time.toml", '[blocks."10h"]\nhours = 0\nprice = "950.00"\n', "line 2, key 'blocks.10h.hours'",
     ["must be more than 0"]),
    ("time.toml", '[blocks."10h"]\nhours = 10\n', "line 1, key 'blocks.10h.price'", ["missing"]),
    ("agreement_types.toml", '[types."Managed Gold"]\nkind = "managed"\ntiers = "gold"\n',
     "line 3, key 'types.\"Managed Gold\".tiers'", ["did you mean 'tier'?"]),
    ("agreement_types.toml", '[types.Gold]\ntier = "gold"\nproration = "yes"\n', "line 3, key 'types.Gold.proration'",
     ["must be true or false"]),
    ("agreement_types.toml", '[additions]\n"MS-WS" = "workstaton"\n', "line 2, key 'additions.MS-WS'",
     ["device class 'workstaton'", "workstation"]),
    ("agreement_types.toml", '[additions]\n"BK" = "backups/server"\n', "line 2, key 'additions.BK'",
     ["add-on 'backups'"]),
    ("agreement_types.toml", '[type.Gold]\ntier = "gold"\n', "line 1, key 'type'", ["did you mean 'types'?"]),
])
def test_a_mistake_in_a_shared_file_stops_the_load(mdir, name, body, where, fragments):
    msg = stops(mdir, name, body)
    assert f"{name}, {where}" in msg and "(fix: " in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg


def test_a_device_class_no_tier_prices_and_not_declared_is_an_error(mdir):
    text = (mdir / "device_classes.toml").read_text()
    lines = text.splitlines()
    n = next(i for i, line in enumerate(lines, 1) if line.startswith("WINDOWS_SERVER"))
    msg = stops(mdir, "device_classes.toml", text.replace('WINDOWS_SERVER = "server"', 'WINDOWS_SERVER = "sever"'))
    assert f"device_classes.toml, line {n}, key 'ninjaone.WINDOWS_SERVER': node class WINDOWS_SERVER maps to " \
           f"device class 'sever', which no tier prices and not_billed does not list" in msg
    assert "did you mean 'server'?" in msg and 'add "sever" to not_billed' in msg


def test_classes_the_tiers_do_not_price_must_be_declared_not_billed(mdir):
    text = (mdir / "device_classes.toml").read_text()
    msg = stops(mdir, "device_classes.toml", text.replace('not_billed = ["network", "printer", "mobile"]',
                                                          'not_billed = ["network", "mobile"]'))
    assert "key 'ninjaone.NMS_PRINTER'" in msg and "'printer'" in msg
    msg = stops(mdir, "device_classes.toml", 'not_billed = "printer"\n[ninjaone]\nMAC = "workstation"\n')
    assert "device_classes.toml, line 1, key 'not_billed': must be a list" in msg
    msg = stops(mdir, "device_classes.toml", 'ninjaone = "workstation"\n')
    assert "device_classes.toml, line 1, key 'ninjaone': must be a table" in msg


def test_unlisted_node_classes_are_not_billed_unless_the_file_says_error(mdir):
    text = (mdir / "device_classes.toml").read_text()
    assert 'unlisted = "not_billed"' in text
    (mdir / "device_classes.toml").write_text(text.replace('unlisted = "not_billed"\n', ""))
    assert load_mappings(mdir).unlisted == "not_billed"                   # the default, when unset
    (mdir / "device_classes.toml").write_text(text.replace('unlisted = "not_billed"', 'unlisted = "error"'))
    assert load_mappings(mdir).unlisted == "error"


@pytest.mark.parametrize("value, got", [('"eror"', "'eror'"), ('"not billed"', "'not billed'"), ("true", "True")])
def test_an_unknown_unlisted_value_stops_the_load_naming_the_values(mdir, value, got):
    text = (mdir / "device_classes.toml").read_text()
    n = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("unlisted"))
    msg = stops(mdir, "device_classes.toml", text.replace('unlisted = "not_billed"', f"unlisted = {value}"))
    assert f"device_classes.toml, line {n}, key 'unlisted': must be 'not_billed' or 'error', got {got} " \
           f"(fix: use 'not_billed' or 'error')" in msg


@pytest.mark.parametrize("body, where, fragments", [
    ('[[rule]]\nname = "a"\nmatch = { severity = ["MAJOR"] }\n[[rule]]\nname = "b"\n'
     'match = { severity = ["MINOR"] }\n[[rule]]\nname = "c"\nmatchh = { severity = ["NONE"] }\n[[rule]]\nname = "all"\n',
     "line 9, key 'rule[2].matchh'", ["unknown key 'matchh'", "did you mean 'match'?"]),
    ('[settings]\nstorm_treshold = 5\n[[rule]]\nname = "all"\n', "line 2, key 'settings.storm_treshold'",
     ["did you mean 'storm_threshold'?"]),
    ('[settings]\nstorm_threshold = "20"\n[[rule]]\nname = "all"\n', "line 2, key 'settings.storm_threshold'",
     ["must be a whole number"]),
    ('[[rule]]\nname = "x"\nmatch = { severity = ["CRITCAL"] }\n[[rule]]\nname = "all"\n',
     "line 3, key 'rule[0].match.severity'", ["unknown severity 'CRITCAL'"]),
    ('[[rule]]\nname = "x"\nmatch = { colour = ["red"] }\n[[rule]]\nname = "all"\n',
     "line 3, key 'rule[0].match.colour'", ["cannot match on 'colour'"]),
    ('[[rule]]\nname = "all"\nauto_close = "no"\n', "line 3, key 'rule[0].auto_close'", ["true or false"]),
    ('[[rule]]\nname = "all"\n[[maintenance]]\nclient = "a"\nstart = "2026-11-01T00:00:00Z"\n'
     'end = "2026-11-02T00:00:00Z"\nreason = "x"\n', "line 7, key 'maintenance[0].reason'", ["unknown key 'reason'"]),
])
def test_alert_rule_mistakes_name_the_rule_and_the_key(tmp_path, body, where, fragments):
    f = tmp_path / "alert_rules.toml"
    f.write_text(body)
    with pytest.raises(ConfigError) as exc:
        load_alert_rules(f)
    msg = str(exc.value)
    assert f"alert_rules.toml, {where}" in msg and "(fix: " in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg


# --- contracts and links hold only their clients ----------------------------------------------

@pytest.mark.parametrize("body, where, fragments", [
    ('[clients.zed]\nlinks = { ninjaone = "9" }\ntierr = "gold"\n', "line 3, key 'clients.zed.tierr'",
     ["unknown key 'tierr'", "did you mean 'tier'?"]),
    ('[clients.zed]\ntier = "gold"\nproration = "yes"\n', "line 3, key 'clients.zed.proration'", ["true or false"]),
    ('[clients.zed]\ntier = "gold"\nminimum = 65.5\n', "line 3, key 'clients.zed.minimum'",
     ["a price is not written as a float (65.5)"]),
    ('[clients.zed]\ntier = "gold"\nkind = "monthly"\n', "line 3, key 'clients.zed.kind'",
     ["'managed', 'block' or 'time_and_materials'"]),
    ('[clients.zed]\ntier = "gold"\ncurrency = "USD"\n', "line 3, key 'clients.zed.currency'",
     ["currency USD differs from the tiers' currency EUR"]),
    ('[clients.zed]\ntier = "gold"\nlinks = 6\n', "line 3, key 'clients.zed.links'", ["must be a table"]),
    ('[clients.zed]\ntier = "gold"\naddons = ["backups"]\n', "line 3, key 'clients.zed.addons'",
     ["unknown add-on 'backups'"]),
    ('[clients.zed]\ntier = "gld"\n', "line 2, key 'clients.zed.tier'", ["unknown tier 'gld'", "did you mean 'gold'?"]),
])
def test_a_contract_mistake_holds_that_client_only(mdir, body, where, fragments):
    m, msg = contract_error(mdir, body)
    assert f"extra.toml, {where}" in msg and "(fix: " in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg
    assert not m.file_errors


def test_one_contract_in_two_files_holds_that_client(mdir):
    (mdir / "contracts").mkdir(exist_ok=True)
    (mdir / "contracts" / "extra.toml").write_text('# acme again\n[clients.acme]\ntier = "gold"\n')
    m = load_mappings(mdir)
    assert "acme" not in m.contracts and "birchwood" in m.contracts
    assert "extra.toml, line 2, key 'clients.acme': client 'acme' is already defined in" in m.contract_errors["acme"]


def test_a_malformed_contracts_file_holds_each_client_it_names(mdir):
    (mdir / "contracts").mkdir(exist_ok=True)
    (mdir / "contracts" / "broken.toml").write_text(
        '[clients.zed]\ntier = "gold"\n\n[clients."harbor insurance"]\ntier = \n\n[clients.acme]\ntier = "gold"\n')
    m = load_mappings(mdir)
    assert set(m.contract_errors) == {"zed", "harbor insurance", "acme"}
    assert "broken.toml, line 4, key 'clients.harbor insurance': the file is not valid TOML" \
           in m.contract_errors["harbor insurance"]
    assert "broken.toml, line 1, key 'clients.zed'" in m.contract_errors["zed"]
    assert "acme" not in m.contracts and "birchwood" in m.contracts     # acme is also in contracts.toml: held
    assert not m.file_errors


def test_a_malformed_contracts_file_without_headers_is_a_file_error(mdir):
    (mdir / "contracts").mkdir(exist_ok=True)
    (mdir / "contracts" / "broken.toml").write_text('clients = { zed = { tier = "gold" }\n')
    m = load_mappings(mdir)
    (file, msg), = m.file_errors.items()
    assert file.endswith("broken.toml") and "not valid TOML" in msg and "no [clients.<id>] header" in msg
    assert not m.contract_errors and "acme" in m.contracts


def test_an_unknown_top_level_key_in_a_contracts_file_is_a_file_error(mdir):
    (mdir / "contracts").mkdir(exist_ok=True)
    (mdir / "contracts" / "typo.toml").write_text('[client.zed]\ntier = "gold"\n')
    m = load_mappings(mdir)
    msg = m.file_errors[str(mdir / "contracts" / "typo.toml")]
    assert "typo.toml, line 1, key 'client': unknown key 'client'" in msg and "did you mean 'clients'?" in msg


def test_a_bad_links_entry_holds_the_client_it_names(mdir):
    (mdir / "links.toml").write_text('[clients.harbor]\nname = "Harbor Insurance"\nninjaone = "8"\n'
                                     '[clients.quay]\nninjaone = ["8", "9"]\n[clients.dock]\nname = 5\n')
    m = load_mappings(mdir)
    assert m.links["harbor"] == ("Harbor Insurance", {"ninjaone": "8"})
    assert "quay" not in m.links and "dock" not in m.links
    assert "links.toml, line 5, key 'clients.quay.ninjaone': must be an id" in m.contract_errors["quay"]
    assert "links.toml, line 7, key 'clients.dock.name': must be a string" in m.contract_errors["dock"]
    assert "acme" in m.contracts and not m.file_errors


def test_a_malformed_links_file_holds_the_clients_it_names(mdir):
    (mdir / "links.toml").write_text('[clients.harbor]\nninjaone = "8"\n[clients.quay]\nninjaone = \n')
    m = load_mappings(mdir)
    assert set(m.contract_errors) == {"harbor", "quay"} and not m.links
    assert "links.toml, line 3, key 'clients.quay': the file is not valid TOML" in m.contract_errors["quay"]
    (mdir / "links.toml").write_text('[client.harbor]\nninjaone = "8"\n')
    m = load_mappings(mdir)
    assert "did you mean 'clients'?" in m.file_errors[str(mdir / "links.toml")]
