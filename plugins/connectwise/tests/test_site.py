"""``site`` takes a bare host, https://host or the API URL pasted from ConnectWise, and says back what it used."""

from __future__ import annotations

import logging

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from hub import ConfigError
from hub.config import config_from_dict
from hub.http import retry_policy
from hub.testing import mock_client, serve
from plugins.connectwise.plugin import ConnectWiseConnector, ConnectWiseSettings
from plugins.connectwise.simulator import ConnectWiseSimulator

GUID = "3f5e8b0c-4f8e-4c1a-9d3e-6a1b2c3d4e5f"
ENV = {"CW_PRIVATE_KEY": "sim-private-key"}


def config(**section):
    section = {"site": "https://api-eu.myconnectwise.net", "company_id": "msphub", "public_key": "sim-public-key",
               "private_key_env": "CW_PRIVATE_KEY", "client_id": GUID, **section}
    section = {k: v for k, v in section.items() if v is not None}
    return config_from_dict({"connectors": {"connectwise": section}}, environ=ENV)


@pytest.mark.parametrize("site, host, codebase", [
    ("api-eu.myconnectwise.net", "https://api-eu.myconnectwise.net", "v4_6_release"),
    ("  api-eu.myconnectwise.net/  ", "https://api-eu.myconnectwise.net", "v4_6_release"),
    ("https://api-na.myconnectwise.net", "https://api-na.myconnectwise.net", "v4_6_release"),
    ("https://api-na.myconnectwise.net//", "https://api-na.myconnectwise.net", "v4_6_release"),
    ("https://api-eu.myconnectwise.net/v4_6_release/apis/3.0", "https://api-eu.myconnectwise.net", "v4_6_release"),
    ("https://api-au.myconnectwise.net/v2025_1/apis/3.0/", "https://api-au.myconnectwise.net", "v2025_1"),
    ("api-au.myconnectwise.net/v2024_12/apis/3.0", "https://api-au.myconnectwise.net", "v2024_12"),
    ("https://cw.example.com/v2025_1", "https://cw.example.com", "v2025_1"),
    ("https://cw.example.com/apis/3.0/", "https://cw.example.com", "v4_6_release"),
    ("HTTPS://CW.Example.com:8443/v4_6_release/apis/3.0", "https://cw.example.com:8443", "v4_6_release"),
    ("http://127.0.0.1:8080/v2025_1/apis/3.0", "http://127.0.0.1:8080", "v2025_1"),
    ("http://localhost:8080", "http://localhost:8080", "v4_6_release"),
    ("http://[::1]:8080/apis/3.0", "http://[::1]:8080", "v4_6_release"),
])
def test_site_takes_the_host_and_the_codebase_apart(site, host, codebase):
    settings = ConnectWiseSettings.from_config(config(site=site))
    assert (settings.site, settings.codebase) == (host, codebase)


def test_a_base_url_is_taken_apart_like_a_site():
    settings = ConnectWiseSettings.from_config(config(site=None, base_url="https://na.myconnectwise.net/v2025_1/apis/3.0"))
    assert (settings.site, settings.codebase) == ("https://na.myconnectwise.net", "v2025_1")


def test_codebase_given_twice_is_fine_when_it_agrees():
    settings = ConnectWiseSettings.from_config(config(site="https://cw.example.com/v2025_1/apis/3.0",
                                                      codebase="v2025_1/"))
    assert (settings.site, settings.codebase) == ("https://cw.example.com", "v2025_1")


def test_a_codebase_key_applies_to_a_site_without_one():
    settings = ConnectWiseSettings.from_config(config(site="https://cw.example.com/apis/3.0", codebase="v2024_1"))
    assert (settings.site, settings.codebase) == ("https://cw.example.com", "v2024_1")


def test_codebase_in_the_url_and_a_different_codebase_key_is_refused_naming_both():
    with pytest.raises(ConfigError) as info:
        ConnectWiseSettings.from_config(config(site="https://cw.example.com/v2025_1/apis/3.0", codebase="v2024_1"))
    error = info.value
    assert error.key == "connectors.connectwise.codebase"
    assert "'v2024_1'" in str(error) and "'v2025_1'" in str(error) and "site" in str(error)
    assert "remove codebase" in error.fix and "site = 'cw.example.com'" in error.fix


@pytest.mark.parametrize("site, message, fix", [
    ("https://api-eu.myconnectwise.net/v4_6_release/apis/3.0/company/companies", "unexpected path",
     "/v4_6_release/apis/3.0"),
    ("https://api-eu.myconnectwise.net/v4_6_release/login/companyinfo/msphub", "unexpected path",
     "/v4_6_release/apis/3.0"),
    ("https://api-eu.myconnectwise.net/v4_6/apis/3.0", "unexpected path", "any codebase"),
    ("https://api-eu.myconnectwise.net/apis/2.0", "unexpected path", "/apis/3.0"),
    ("https://api-eu.myconnectwise.net//v4_6_release/apis/3.0", "unexpected path", "/apis/3.0"),
    ("https://api-eu.myconnectwise.net/v4_6_release/apis/3.0?pageSize=10", "query", "/apis/3.0"),
    ("https://api-eu.myconnectwise.net/#/companies", "fragment", "/apis/3.0"),
    ("https://api-eu.myconnectwise.net?member=me@example.com", "query or fragment", "/apis/3.0"),
    ("http://api-eu.myconnectwise.net/v4_6_release/apis/3.0", "unencrypted", "https://api-eu.myconnectwise.net"),
    ("http://cw.example.com:8080", "unencrypted", "https://cw.example.com:8080"),
    ("https://msphub+key:secret@api-eu.myconnectwise.net", "login", "private_key_env"),
    ("ftp://msphub+key:secret@cw.example", "login", "private_key_env"),
    ("https://msphub+key:secret@cw.example.com:port", "login", "private_key_env"),
    ("http://msphub+key:secret@cw.example.com", "login", "private_key_env"),
    ("ftp://cw.example", "https URL", "api-eu.myconnectwise.net"),
    ("https://", "no host", "api-eu.myconnectwise.net"),
    ("https://cw.example.com:port", "not a URL", "api-eu.myconnectwise.net"),
    ("   ", "non-empty", "api-eu.myconnectwise.net"),
])
def test_a_url_that_is_not_connectwise_shaped_names_the_key_and_the_fix(site, message, fix):
    with pytest.raises(ConfigError) as info:
        ConnectWiseSettings.from_config(config(site=site))
    assert info.value.key == "connectors.connectwise.site"
    assert message in str(info.value) and fix in info.value.fix
    assert "secret" not in str(info.value) and "secret" not in info.value.fix


def test_the_error_names_base_url_when_that_is_the_key_used():
    with pytest.raises(ConfigError) as info:
        ConnectWiseSettings.from_config(config(site=None, base_url="https://cw.example.com/api"))
    assert info.value.key == "connectors.connectwise.base_url"


@pytest.fixture
def info_logs():
    """Info lines captured whatever level an earlier test left structlog filtering at."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(**saved)


def test_the_host_and_codebase_used_are_said_back_without_a_secret(info_logs):
    ConnectWiseSettings.from_config(config(site="https://api-eu.myconnectwise.net/v2025_1/apis/3.0/"))
    ConnectWiseSettings.from_config(config(site="api-na.myconnectwise.net", codebase="v2024_1"))
    ConnectWiseSettings.from_config(config(site="api-au.myconnectwise.net"))
    said = [(e["host"], e["codebase"], e["codebase_from"], e["api_root"], e["log_level"])
            for e in info_logs if e["event"] == "connectwise.site"]
    assert said == [
        ("https://api-eu.myconnectwise.net", "v2025_1", "site URL",
         "https://api-eu.myconnectwise.net/v2025_1/apis/3.0", "info"),
        ("https://api-na.myconnectwise.net", "v2024_1", "codebase",
         "https://api-na.myconnectwise.net/v2024_1/apis/3.0", "info"),
        ("https://api-au.myconnectwise.net", "v4_6_release", "default",
         "https://api-au.myconnectwise.net/v4_6_release/apis/3.0", "info")]
    assert "sim-private-key" not in repr(info_logs) and "sim-public-key" not in repr(info_logs)


# --- against the simulator --------------------------------------------------------------------

def test_a_pasted_api_url_pulls_from_the_simulator_over_real_http():
    sim = ConnectWiseSimulator(seed=3, companies=3, agreements=2, time_entries=4, products=1)
    with serve(sim.handler) as url:
        settings = ConnectWiseSettings.from_config(config(site=f"{url}/v2025_1/apis/3.0/", company_id=sim.company_id,
                                                          public_key=sim.public_key, client_id=sim.client_id))
        assert (settings.site, settings.codebase) == (url, "v2025_1")
        connector = ConnectWiseConnector(settings, retrying=lambda: retry_policy(sleep=lambda s: None))
        try:
            clients = next(s for s in connector.streams() if s.name == "clients")
            records = [c for page in clients.iter_pages(None, None) for c in page.records]
        finally:
            connector.close()
    assert sorted(c.source_id for c in records) == sorted(str(i) for i in sim.ids("companies"))


def test_the_codebase_taken_from_the_url_is_the_one_requested():
    sim = ConnectWiseSimulator(seed=3, companies=2, agreements=1, time_entries=1, products=1)
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.scheme}://{request.url.host}{request.url.path}")
        return sim.handler(request)

    settings = ConnectWiseSettings.from_config(config(
        site="https://api-eu.myconnectwise.net/v2024_1/apis/3.0", company_id=sim.company_id,
        public_key=sim.public_key, client_id=sim.client_id))
    connector = ConnectWiseConnector(settings, http=mock_client(handler),
                                     retrying=lambda: retry_policy(sleep=lambda s: None))
    try:
        clients = next(s for s in connector.streams() if s.name == "clients")
        assert sum(len(page.records) for page in clients.iter_pages(None, None)) == 2
    finally:
        connector.close()
    assert seen and all(u.startswith("https://api-eu.myconnectwise.net/v2024_1/apis/3.0/company/") for u in seen)
