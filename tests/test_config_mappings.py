"""Config and mappings: loading, and errors that name the file, the key and the fix."""

import shutil
from pathlib import Path

import pytest

from hub.config import Secret, config_from_dict, load_config
from hub.errors import ConfigError
from hub.mappings import load_mappings

REPO_MAPPINGS = Path(__file__).resolve().parents[1] / "mappings"


@pytest.fixture
def mdir(tmp_path):
    d = tmp_path / "mappings"
    shutil.copytree(REPO_MAPPINGS, d)
    return d


def test_repository_mappings_load_cleanly():
    m = load_mappings(REPO_MAPPINGS)
    assert not m.contract_errors
    assert m.tiers["platinum"].services >= m.tiers["gold"].services >= m.tiers["silver"].services
    assert m.client_for("ninjaone", "1") == "acme"


def test_unknown_tier_is_an_error_for_that_client_only(mdir):
    (mdir / "contracts").mkdir(exist_ok=True)
    (mdir / "contracts" / "zed.toml").write_text('[clients.zed]\nlinks = { ninjaone = "9" }\ntier = "diamond"\n')
    m = load_mappings(mdir)
    assert "acme" in m.contracts and "zed" not in m.contracts
    msg = m.contract_errors["zed"]
    assert "zed.toml" in msg and "clients.zed.tier" in msg and "'diamond'" in msg and "gold" in msg


def test_malformed_contract_file_loses_only_its_clients(mdir):
    (mdir / "contracts").mkdir(exist_ok=True)
    (mdir / "contracts" / "broken.toml").write_text('[clients.broken\ntier = "gold"\n')
    m = load_mappings(mdir)
    assert "acme" in m.contracts
    (key, msg), = m.contract_errors.items()          # the client its header names is held
    assert key == "broken" and "broken.toml, line 1, key 'clients.broken'" in msg and "not valid TOML" in msg
    assert not m.file_errors


def test_malformed_tiers_file_stops_the_load_with_its_name(mdir):
    (mdir / "tiers.toml").write_text("currency = \n")
    with pytest.raises(ConfigError, match=r"tiers.toml: not valid TOML"):
        load_mappings(mdir)


@pytest.mark.parametrize("body, fragment", [
    ('[tiers.a]\nprices = { workstation = "1.005" }\n', "tiers.a.prices.workstation"),
    ('[tiers.a]\nincludes = "b"\nprices = { workstation = "1" }\n', "includes unknown tier 'b'"),
    ('[tiers.a]\nincludes = "b"\nprices = { workstation = "1" }\n[tiers.b]\nincludes = "a"\nprices = { workstation = "1" }\n', "loop"),
    ('[tiers.a]\nname = "A"\n', "tiers.a.prices"),
])
def test_tier_errors_name_the_key(mdir, body, fragment):
    (mdir / "tiers.toml").write_text(body)
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        load_mappings(mdir)


def test_config_resolves_secrets_from_env_and_files(tmp_path):
    (tmp_path / "secret.txt").write_text("s3cret-from-file\n")
    cfg = config_from_dict({"connectors": {"a": {"key_env": "A_KEY"}, "b": {"key_file": str(tmp_path / "secret.txt")}}},
                           environ={"A_KEY": "s3cret-from-env"})
    a = cfg.secret("a", "key")
    assert isinstance(a, Secret) and a.reveal() == "s3cret-from-env"
    assert "s3cret" not in repr(a) and "s3cret" not in str(a)
    assert cfg.secret("b", "key").reveal() == "s3cret-from-file"
    assert sorted(cfg.secret_values()) == ["s3cret-from-env", "s3cret-from-file"]


@pytest.mark.parametrize("section, env, fragment", [
    ({"key_env": "MISSING"}, {}, "key 'connectors.a.key_env': environment variable MISSING is not set"),
    ({"key": "inline"}, {}, "secrets are not written in the config file"),
    ({}, {}, "key 'connectors.a.key': missing secret"),
    ({"key_file": "/nonexistent/file"}, {}, "cannot read secret file"),
])
def test_missing_or_inline_secret_is_a_precise_error(section, env, fragment):
    cfg = config_from_dict({"connectors": {"a": section}}, environ=env)
    with pytest.raises(ConfigError) as exc:
        cfg.secret("a", "key")
    assert fragment in str(exc.value) and "fix:" in str(exc.value)
    assert "inline" not in str(exc.value)


def test_config_file_errors(tmp_path):
    bad = tmp_path / "hub.toml"
    bad.write_text("timezone = 'Mars/Olympus'\n")
    with pytest.raises(ConfigError, match="hub.toml, line 1, key 'timezone': unknown time zone"):
        load_config(bad)
    bad.write_text("[connectors\n")
    with pytest.raises(ConfigError, match="hub.toml: not valid TOML"):
        load_config(bad)
    bad.write_text("databse = 'x.db'\n")
    with pytest.raises(ConfigError, match="unknown key 'databse'"):
        load_config(bad)
    bad.write_text("database = 'x.db'\nmappings = 'm'\n")
    cfg = load_config(bad)
    assert cfg.database == str(tmp_path / "x.db") and cfg.mappings == tmp_path / "m"
