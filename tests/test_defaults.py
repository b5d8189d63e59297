"""Contract options (BILLING.md, "Defaults"): one global default in mappings/defaults.toml (or, for
the time options, time.toml's [defaults]), overridden per agreement type or per contract; every
mistake names the file, the line, the key and the fix; the plan says where an option came from."""

import shutil
from fractions import Fraction
from pathlib import Path

import pytest

from hub.engine import sync_once
from hub.errors import ConfigError
from hub.mappings import contract_from_agreement, load_mappings, options_note
from hub.records import Agreement
from tests.conftest import ROOT
from tests.test_psa_billing import PsaEnv, at, invoice, lines


@pytest.fixture
def mdir(tmp_path):
    d = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", d)
    return d


def write(mdir: Path, name: str, body: str) -> None:
    (mdir / name).write_text(body)


def add_types(mdir: Path, body: str) -> None:
    path = mdir / "agreement_types.toml"
    text = path.read_text()
    head, sep, tail = text.partition("[additions]")        # types first, then the additions table
    path.write_text(head + body + "\n" + sep + tail)


def agreement(type_name: str) -> Agreement:
    return Agreement("connectwise", "77", "5", "Elm agreement", type_name, "active", start_date="2026-01-01")


def from_type(m, type_name: str):
    return contract_from_agreement("elm", "Elm", {"connectwise": "5"}, agreement(type_name), m)


GLOBAL = ('proration = true\nminimum = "50.00"\nincrement_minutes = 30\nonsite_minimum_hours = "2"\n'
          'warning_hours = "3"\nbeyond_balance = "carry"\ndefault_rate = "80.00"\ntime_lines = "ticket"\n')


def test_the_global_defaults_apply_to_a_contract_and_an_agreement_type(mdir):
    write(mdir, "defaults.toml", GLOBAL)
    m = load_mappings(mdir)
    for c in (m.contracts["acme"], from_type(m, "Break/Fix")):
        t = c.time
        assert (c.proration, c.minimum) == (True, 5000)
        assert (t.increment_minutes, t.onsite_minimum, t.warning_hours, t.beyond_balance, t.default_rate,
                t.time_lines) == (30, Fraction(2), Fraction(3), "carry", 8000, "ticket")
        assert set(t.sources.values()) == {"defaults.toml"}


def test_an_agreement_type_and_a_contract_override_each_global_default(mdir):
    write(mdir, "defaults.toml", GLOBAL)
    add_types(mdir, '[types."Break/Fix Plus"]\nkind = "time_and_materials"\nproration = false\nminimum = "0"\n'
                    'increment_minutes = 6\nonsite_minimum_hours = "0.5"\nwarning_hours = "1"\n'
                    'beyond_balance = "overage"\ndefault_rate = "99.00"\ntime_lines = "entry"\n')
    (mdir / "contracts.toml").write_text(
        (mdir / "contracts.toml").read_text() +
        '\n[clients.zed]\nname = "Zed"\ntier = "silver"\nproration = false\nminimum = "10.00"\n'
        'increment_minutes = 10\nonsite_minimum_hours = "1.5"\nwarning_hours = "4"\nbeyond_balance = "overage"\n'
        'default_rate = "70.00"\ntime_lines = "work_type"\n')
    m = load_mappings(mdir)
    typed, zed = from_type(m, "Break/Fix Plus"), m.contracts["zed"]
    assert (typed.proration, typed.minimum, typed.time.increment_minutes, typed.time.onsite_minimum,
            typed.time.warning_hours, typed.time.beyond_balance, typed.time.default_rate, typed.time.time_lines) == (
        False, 0, 6, Fraction(1, 2), Fraction(1), "overage", 9900, "entry")
    assert (zed.proration, zed.minimum, zed.time.increment_minutes, zed.time.onsite_minimum,
            zed.time.warning_hours, zed.time.beyond_balance, zed.time.default_rate, zed.time.time_lines) == (
        False, 1000, 10, Fraction(3, 2), Fraction(4), "overage", 7000, "work_type")
    assert set(typed.time.sources.values()) == {'agreement_types.toml [types."Break/Fix Plus"]'}
    assert set(zed.time.sources.values()) == {"contracts.toml [clients.zed]"}
    # A contract that overrides one option keeps the global default of the others.
    acme = m.contracts["acme"]
    assert (acme.proration, acme.time.time_lines) == (True, "ticket")


def test_without_any_default_file_each_option_is_billing_md_s_rule(mdir):
    (mdir / "defaults.toml").unlink()
    m = load_mappings(mdir)
    c = m.contracts["acme"]
    assert (c.proration, c.minimum, c.time.increment_minutes, c.time.onsite_minimum, c.time.warning_hours,
            c.time.beyond_balance, c.time.default_rate, c.time.time_lines) == (
        False, 0, 15, Fraction(1), Fraction(2), "overage", None, "entry")
    assert c.time.sources == {} and options_note(c) is None


def test_time_toml_defaults_are_still_read_for_the_time_options(mdir):
    (mdir / "defaults.toml").unlink()
    time_toml = mdir / "time.toml"
    time_toml.write_text('[defaults]\nincrement_minutes = 6\nwarning_hours = "5"\n' + time_toml.read_text())
    write(mdir, "defaults.toml", "proration = true\n")
    m = load_mappings(mdir)
    c = m.contracts["acme"]
    assert (c.time.increment_minutes, c.time.warning_hours, c.proration) == (6, Fraction(5), True)
    assert c.time.sources == {"increment_minutes": "time.toml [defaults]", "warning_hours": "time.toml [defaults]",
                              "proration": "defaults.toml"}


def test_a_key_set_in_both_defaults_files_names_both_places(mdir):
    time_toml = mdir / "time.toml"
    time_toml.write_text('[defaults]\nincrement_minutes = 6\n' + time_toml.read_text())
    write(mdir, "defaults.toml", "proration = true\nincrement_minutes = 30\n")
    with pytest.raises(ConfigError) as exc:
        load_mappings(mdir)
    msg = str(exc.value)
    assert "defaults.toml, line 2, key 'increment_minutes'" in msg
    assert f"set both here and in {time_toml} [defaults], line 2" in msg
    assert "(fix: delete increment_minutes from one of the two files" in msg


@pytest.mark.parametrize("body, where, fragments", [
    ("prorate = true\n", "line 1, key 'prorate'", ["unknown key 'prorate'", "did you mean 'proration'?"]),
    ('proration = "yes"\n', "line 1, key 'proration'", ["must be true or false"]),
    ('minimum = 50.5\n', "line 1, key 'minimum'", ["a price is not written as a float"]),
    ("increment_minutes = 90\n", "line 1, key 'increment_minutes'", ["<= 60"]),
    ('onsite_minimum_hours = "one"\n', "line 1, key 'onsite_minimum_hours'", ["must be a number of hours"]),
    ('beyond_balance = "bill"\n', "line 1, key 'beyond_balance'", ["'overage'", "'carry'"]),
    ('proration = true\ntime_lines = "entries"\n', "line 2, key 'time_lines'",
     ["must be 'entry', 'ticket' or 'work_type', got 'entries'"]),
])
def test_a_mistake_in_defaults_toml_stops_the_load_naming_the_line_key_and_fix(mdir, body, where, fragments):
    write(mdir, "defaults.toml", body)
    with pytest.raises(ConfigError) as exc:
        load_mappings(mdir)
    msg = str(exc.value)
    assert f"defaults.toml, {where}" in msg and "(fix: " in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg


def test_a_bad_option_in_an_agreement_type_stops_the_load(mdir):
    add_types(mdir, '[types."Break/Fix Plus"]\nkind = "time_and_materials"\ntime_lines = "per_entry"\n')
    with pytest.raises(ConfigError) as exc:
        load_mappings(mdir)
    assert "key 'types.\"Break/Fix Plus\".time_lines': must be 'entry', 'ticket' or 'work_type'" in str(exc.value)


def test_a_bad_option_in_a_contract_holds_that_client_only(mdir):
    (mdir / "contracts.toml").write_text((mdir / "contracts.toml").read_text() +
                                         '\n[clients.zed]\nname = "Zed"\ntier = "silver"\ntime_lines = "tickets"\n')
    m = load_mappings(mdir)
    assert "acme" in m.contracts and "zed" not in m.contracts
    assert "key 'clients.zed.time_lines': must be 'entry', 'ticket' or 'work_type', got 'tickets'" in \
        m.contract_errors["zed"]


def test_the_note_says_where_each_option_not_at_the_rule_came_from(mdir):
    write(mdir, "defaults.toml", 'proration = true\nincrement_minutes = 15\ntime_lines = "entry"\n')
    (mdir / "contracts.toml").write_text(
        (mdir / "contracts.toml").read_text() +
        '\n[clients.zed]\nname = "Zed"\ntier = "silver"\ntime_lines = "work_type"\nproration = false\n')
    m = load_mappings(mdir)
    # A global default equal to BILLING.md's rule is not worth a word; one that is not, is.
    assert options_note(m.contracts["acme"]) == "contract options: proration: on (defaults.toml)"
    # What a contract sets itself is always said, with the table it is in.
    assert options_note(m.contracts["zed"]) == (
        "contract options: proration: off (contracts.toml [clients.zed]); "
        "time_lines: one line per work type (contracts.toml [clients.zed])")
    assert options_note(m.contracts["birchwood"]) == (
        "contract options: proration: on (defaults.toml); minimum: 6500.00 EUR (contracts.toml [clients.birchwood])")


def test_the_plan_bills_by_the_defaults_and_says_where_they_came_from(tmp_path):
    env = PsaEnv(tmp_path)
    (env.mappings / "defaults.toml").write_text('proration = true\n')
    add_types(env.mappings, '[types."Break/Fix Half Hours"]\nkind = "time_and_materials"\nincrement_minutes = 30\n')
    env.cw.add_agreement(env.co["elm"], "Break/Fix Half Hours")
    entry = env.time("elm", 0.4, at(10, 9), "Remote Support")                 # 24 minutes: billed 30
    late_ws = env.ninja.add_device(1, "WINDOWS_WORKSTATION", created=at(10, 17), last_contact=at(11, 20),
                                   name="ACME-NEW")                          # acme: contracts.toml, no proration key
    report = sync_once(env.hub())
    acme = invoice(report, "acme")
    weights = {i["id"]: i["weight"] for i in lines(acme)["tier:gold:workstation"].items}
    assert weights[str(late_ws)] == "0.4839"                                 # October 17-31: 15/31
    assert "contract options: proration: on (defaults.toml)" in acme.bill.notes
    elm = invoice(report, f"connectwise-{env.co['elm']}")
    line = lines(elm)[f"time:entry:{entry}"]
    assert (line.quantity, line.amount) == ("0.5", 4750)                      # 0.5 h × 95.00
    assert 'rounded up to 30 min (agreement_types.toml [types."Break/Fix Half Hours"])' in line.rule
    assert elm.bill.notes[0] == ('contract options: proration: on (defaults.toml); increment_minutes: 30 min '
                                 '(agreement_types.toml [types."Break/Fix Half Hours"])')
