"""The config file's schema: unknown keys, wrong types and bad values are errors at load, naming
the file, the line, the key path and the fix; the sections' defaults are filled."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.config import (BillingSettings, ConfigFile, HubConfig, ReportSettings, load_config, parse_duration)
from hub.errors import ConfigError
from hub.testing import serve
from plugins.ninjaone.simulator import NinjaOneSimulator
from tests.conftest import ROOT, SEEN

EXAMPLE = ROOT / "examples" / "msp-hub.toml"


def load(tmp_path: Path, body: str):
    f = tmp_path / "hub.toml"
    f.write_text(body)
    return load_config(f)


def error(tmp_path: Path, body: str) -> str:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, body)
    return str(exc.value)


def test_defaults_are_filled_in_the_plain_dicts_and_the_typed_view(tmp_path):
    cfg = load(tmp_path, "")
    assert cfg.billing == {
        "notice_board": "Help Desk",
        "guardrails": {"allow_zero": False, "max_change_percent": 25, "max_change_devices": 10,
                       "invoice_max_change_percent": 30, "invoice_max_device_change_percent": 30,
                       "first_invoice_max": "10000.00"},
        "completeness": {"max_count_drop_percent": 50},
        "review": {"enabled": False},
        "tax": {"country": "FR", "default_rate": "20", "name": "TVA",
                "reverse_charge_mention": "Autoliquidation — TVA due par le preneur, article 283-2 du CGI",
                "outside_eu_mention": "TVA non applicable, article 259-1 du CGI",
                "exempt_mention": "Exonération de TVA", "automatic": False},
    }
    assert cfg.logging == {}            # unset: the command and the daemon keep their own defaults
    s = cfg.billing_settings
    assert isinstance(s, BillingSettings) and s.invoice_connector is None and s.review.finalize_delay is None
    assert s.guardrails.first_invoice_max_minor("EUR") == 1000000
    assert s.guardrails.first_invoice_max_minor("JPY") == 10000
    odd = load(tmp_path, '[billing.guardrails]\nfirst_invoice_max = "99.50"\n').billing_settings.guardrails
    with pytest.raises(ConfigError, match=r"key 'billing\.guardrails\.first_invoice_max': '99\.50' has more decimals "
                                          r"than JPY allows"):
        odd.first_invoice_max_minor("JPY")
    assert cfg.health_settings.max_ages() == {} and cfg.notify == {}


def test_written_values_are_kept_and_typed(tmp_path):
    cfg = load(tmp_path, """
[billing]
invoice_connector = "stripe"
client_master = "connectwise"
[billing.guardrails]
max_change_percent = 12.5
first_invoice_max = "1200.50"
[billing.review]
enabled = true
finalize_after = "3d"
[logging]
format = "console"
level = "debug"
[health.max_age]
ninjaone.devices = "2h"
"connectwise.time_entries" = "1d"
[notify]
anything = "its own module checks it"
""")
    assert cfg.billing["invoice_connector"] == "stripe" and cfg.billing.get("client_master") == "connectwise"
    assert cfg.billing["guardrails"]["max_change_percent"] == 12.5
    assert cfg.billing_settings.guardrails.first_invoice_max_minor("EUR") == 120050
    assert cfg.billing_settings.review.enabled and cfg.billing_settings.review.finalize_delay == timedelta(days=3)
    assert cfg.logging == {"format": "console", "level": "debug"}
    assert cfg.health_settings.max_ages() == {"ninjaone.devices": timedelta(hours=2),
                                              "connectwise.time_entries": timedelta(days=1)}
    assert cfg.notify == {"anything": "its own module checks it"}


@pytest.mark.parametrize("body, key, line, fragments", [
    ("databse = 'x.db'\n", "databse", 1,
     ["unknown key 'databse'", "use one of admin, billing, connectors, database, health", "did you mean 'database'?"]),
    ("[billing]\nnotice_bord = 'x'\n", "billing.notice_bord", 2, ["did you mean 'notice_board'?", "client_master"]),
    ("[billing.guardrails]\nallow_zero = false\nmax_chnage_percent = 3\n", "billing.guardrails.max_chnage_percent", 3,
     ["did you mean 'max_change_percent'?", "invoice_max_change_percent", "first_invoice_max"]),
    ("[billing.completeness]\nmax_drop = 3\n", "billing.completeness.max_drop", 2, ["use one of max_count_drop_percent"]),
    ("[billing.review]\nenable = true\n", "billing.review.enable", 2, ["did you mean 'enabled'?", "finalize_after"]),
    ("[logging]\nformat = 'json'\nlevl = 'info'\n", "logging.levl", 3, ["did you mean 'level'?"]),
    ("[health]\nmax_ages = {}\n", "health.max_ages", 2, ["did you mean 'max_age'?"]),
])
def test_unknown_keys_name_the_line_the_key_and_the_closest_known_key(tmp_path, body, key, line, fragments):
    msg = error(tmp_path, body)
    assert f"hub.toml, line {line}, key '{key}': unknown key" in msg and "(fix: use one of" in msg
    for fragment in fragments:
        assert fragment in msg


@pytest.mark.parametrize("body, key, fragments", [
    ("[billing.guardrails]\nmax_change_percent = \"lots\"\n", "billing.guardrails.max_change_percent",
     ["must be a number, got 'lots'", "write a number without quotes"]),
    ("[billing.guardrails]\nmax_change_percent = -5\n", "billing.guardrails.max_change_percent", ["must be >= 0"]),
    ("[billing.guardrails]\nallow_zero = \"no\"\n", "billing.guardrails.allow_zero", ["must be true or false"]),
    ("[billing.guardrails]\nmax_change_devices = 2.5\n", "billing.guardrails.max_change_devices",
     ["must be a whole number, got 2.5"]),
    ("[billing.guardrails]\ninvoice_max_change_percent = true\n", "billing.guardrails.invoice_max_change_percent",
     ["must be a number, got True"]),
    ("[billing.guardrails]\ninvoice_max_device_change_percent = -1\n",
     "billing.guardrails.invoice_max_device_change_percent", ["must be >= 0"]),
    ("[billing.guardrails]\nfirst_invoice_max = 120.1\n", "billing.guardrails.first_invoice_max",
     ["a price is not written as a float (120.1)", "\"120.10\""]),
    ("[billing.guardrails]\nfirst_invoice_max = \"five\"\n", "billing.guardrails.first_invoice_max",
     ["'five' is not an amount"]),
    ("[billing.completeness]\nmax_count_drop_percent = 101\n", "billing.completeness.max_count_drop_percent",
     ["must be <= 100, got 101"]),
    ("[billing.review]\nenabled = 1\n", "billing.review.enabled", ["must be true or false, got 1"]),
    ("[billing.review]\nfinalize_after = \"3 weeks\"\n", "billing.review.finalize_after",
     ["'3 weeks' is not a duration", "\"72h\""]),
    ("[billing]\nnotice_board = 7\n", "billing.notice_board", ["must be a string, got 7"]),
    ("[logging]\nformat = \"xml\"\n", "logging.format", ["must be 'json' or 'console', got 'xml'"]),
    ("[logging]\nlevel = \"loud\"\n", "logging.level", ["must be 'debug', 'info', 'warning' or 'error'"]),
    ("[health.max_age]\nninjaone = \"2h\"\n", "health.max_age", ["'ninjaone' does not name a stream as connector.stream"]),
    ("[health.max_age]\n\"ninjaone.devices\" = \"soon\"\n", "health.max_age",
     ["max age of ninjaone.devices 'soon' is not a duration"]),
    ("notify = 3\n", "notify", ["must be a table, got 3"]),
    ("billing = \"yes\"\n", "billing", ["must be a table"]),
    ("[connectors]\nninjaone = 3\n", "connectors.ninjaone", ["must be a table"]),
])
def test_wrong_types_and_values_are_errors_at_load(tmp_path, body, key, fragments):
    msg = error(tmp_path, body)
    assert re.search(rf"hub\.toml, line \d+, key '{re.escape(key)}': ", msg), msg
    assert "(fix: " in msg
    for fragment in fragments:
        assert fragment in msg


def test_several_errors_say_how_many_more_there_are(tmp_path):
    msg = error(tmp_path, "[billing.guardrails]\nmax_change_percent = 'lots'\nmax_change_devices = 'many'\n")
    assert "max_change_percent" in msg and "1 more error(s) in this file" in msg


def test_a_database_folder_that_does_not_exist_is_an_error_at_load(tmp_path):
    msg = error(tmp_path, "timezone = 'UTC'\ndatabase = \"missing/dir/hub.db\"\n")
    folder = tmp_path / "missing" / "dir"
    assert f"hub.toml, line 2, key 'database': the database's folder {folder} does not exist" in msg
    assert f"create {folder}" in msg
    (tmp_path / "missing" / "dir").mkdir(parents=True)
    assert load(tmp_path, "database = \"missing/dir/hub.db\"\n").database == str(folder / "hub.db")
    assert load(tmp_path, "database = \":memory:\"\n").database == ":memory:"


def test_the_typed_view_checks_a_config_built_in_code():
    assert HubConfig().billing_settings.guardrails.max_change_percent == 25
    with pytest.raises(ConfigError, match=r"key 'billing\.guardrails\.max_change_percent': must be a number"):
        HubConfig(billing={"guardrails": {"max_change_percent": "lots"}}).billing_settings


@pytest.mark.parametrize("text, expected", [
    ("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)), ("72h", timedelta(hours=72)),
    ("3d", timedelta(days=3)), (" 2h ", timedelta(hours=2)),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "3", "h", "0h", "1.5h", "3w", "-2h", "2 hours", 72])
def test_parse_duration_refuses_what_is_not_a_duration(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_example_config_documents_every_key():
    text = EXAMPLE.read_text()
    cfg = load_config(EXAMPLE)
    assert cfg.logging == {"format": "json", "level": "info"}
    keys = set(ConfigFile.model_fields)
    for section in ("guardrails", "completeness", "review"):
        keys |= set(BillingSettings.model_fields[section].annotation.model_fields)
    keys |= set(BillingSettings.model_fields) | {"max_age", "format", "level"}
    keys |= set(ReportSettings.model_fields)
    missing = sorted(k for k in keys if not re.search(rf"^[#\s]*({k}\s*=|\[[\w.]*\b{k}\b)", text, re.M))
    assert missing == []


def test_a_wrong_value_stops_the_command_before_any_request(tmp_path):
    ninja = NinjaOneSimulator(seed=5, organizations=2, devices=5, now=SEEN, client_secret="s3cret-x")
    with serve(ninja.handler) as url:
        cfg = tmp_path / "msp-hub.toml"
        cfg.write_text(f"""mappings = "{(ROOT / 'mappings').as_posix()}"
[connectors.ninjaone]
base_url = "{url}"
client_id = "{ninja.client_id}"
client_secret_env = "T_NINJA"
[billing.guardrails]
max_change_percent = "lots"
""")
        result = CliRunner().invoke(main, ["sync", "--config", str(cfg), "--dry-run"], env={"T_NINJA": "s3cret-x"})
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "msp-hub.toml, line 7, key 'billing.guardrails.max_change_percent': must be a number" in result.output
    assert ninja.requests == 0
