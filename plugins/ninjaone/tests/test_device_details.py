"""Device details for alert tickets: the detailed device records, the console link, their settings."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import respx

from hub import ConfigError
from hub.config import Secret, config_from_dict
from hub.http import retry_policy
from hub.testing import mock_client
from plugins.ninjaone.client import NinjaOneClient
from plugins.ninjaone.plugin import NinjaOneConnector, NinjaOneSettings, to_device
from plugins.ninjaone.simulator import NinjaOneSimulator

UTC = timezone.utc
ENV = {"NINJA_SECRET": "sim-client-secret"}
BASIC = {"id": 1042, "organizationId": 7, "nodeClass": "WINDOWS_SERVER", "approvalStatus": "APPROVED",
         "displayName": "Front desk server", "systemName": "SRV-FD-01", "lastContact": 1748736000.25}


def config(**section):
    section = {"client_id": "sim-client-id", "client_secret_env": "NINJA_SECRET", **section}
    return config_from_dict({"connectors": {"ninjaone": section}}, environ=ENV)


def test_a_detailed_record_gives_os_ip_addresses_serial_and_the_console_link():
    raw = {**BASIC, "os": {"name": " Windows Server 2022 Standard ", "architecture": "64-bit"},
           "system": {"serialNumber": "CZ2345ABCD", "biosSerialNumber": "OTHER"},
           "ipAddresses": ["10.0.0.5", "fe80::1", "10.0.0.5", "", None], "publicIP": "203.0.113.7"}
    device = to_device(raw, console="https://eu.ninjarmm.com")
    assert (device.os_name, device.ip_addresses, device.serial_number) == (
        "Windows Server 2022 Standard", "10.0.0.5, fe80::1", "CZ2345ABCD")
    assert device.console_url == "https://eu.ninjarmm.com/#/deviceDashboard/1042/overview"
    assert device.last_contact == datetime.fromtimestamp(1748736000.25, UTC)


@pytest.mark.parametrize("details, serial", [
    ({"system": {"serialNumber": None, "biosSerialNumber": "BIOS-77"}}, "BIOS-77"),   # the BIOS serial next
    ({"system": {"serialNumber": "  "}}, None),
    ({"system": None, "os": None, "ipAddresses": None}, None),
    ({"os": {"name": 7}, "ipAddresses": "10.0.0.5"}, None),                          # not the spec's types
])
def test_details_the_record_lacks_stay_none(details, serial):
    device = to_device({**BASIC, **details})
    assert device.serial_number == serial
    assert device.os_name is None and device.ip_addresses is None and device.console_url is None


def test_a_basic_record_has_no_details_but_its_console_link():
    device = to_device(BASIC, console="https://app.ninjarmm.com")
    assert (device.os_name, device.ip_addresses, device.serial_number) == (None, None, None)
    assert device.console_url == "https://app.ninjarmm.com/#/deviceDashboard/1042/overview"


def test_the_detailed_endpoint_pages_like_the_basic_one():
    with respx.mock(base_url="https://eu.ninjarmm.com", assert_all_called=False) as router:
        router.post("/ws/oauth/token").respond(200, json={"access_token": "t", "expires_in": 3600})
        basic = router.get("/v2/devices").respond(200, json=[])
        detailed = router.get("/v2/devices-detailed").mock(side_effect=[
            respx.MockResponse(200, json=[{"id": 3}, {"id": 9}]), respx.MockResponse(200, json=[])])
        client = NinjaOneClient("https://eu.ninjarmm.com", "id", Secret("s", "test"), page_size=2)
        pages = list(client.iter_devices(after=1, detailed=True))
    assert pages == [[{"id": 3}, {"id": 9}]] and not basic.called
    assert [dict(c.request.url.params) for c in detailed.calls] == [{"pageSize": "2", "after": "1"},
                                                                    {"pageSize": "2", "after": "9"}]


@pytest.mark.parametrize("details, path", [(True, "/v2/devices-detailed"), (False, "/v2/devices")])
def test_the_devices_stream_reads_details_only_when_asked(details, path):
    sim = NinjaOneSimulator(seed=1, organizations=2, devices=12)
    settings = NinjaOneSettings.from_config(config(base_url="https://eu.ninjarmm.test", device_details=details))
    connector = NinjaOneConnector(settings, http=mock_client(sim.handler, "https://eu.ninjarmm.test"),
                                  retrying=lambda: retry_policy(attempts=2, sleep=lambda s: None))
    stream = next(s for s in connector.streams() if s.name == "devices")
    devices = [d for page in stream.iter_pages(None, datetime(2025, 6, 1, tzinfo=UTC)) for d in page.records]
    assert len(devices) == 12 and sim.requests_by_path[path] == 2
    servers = [d for d in devices if d.node_class == "WINDOWS_SERVER"]
    assert servers and all(bool(d.os_name and d.serial_number) is details for d in servers)
    assert all(bool(d.ip_addresses) is details for d in devices)
    assert all(d.console_url == f"https://eu.ninjarmm.test/#/deviceDashboard/{d.source_id}/overview" for d in devices)


def test_the_console_defaults_to_the_api_host_and_can_be_set():
    assert NinjaOneSettings.from_config(config(base_url="https://eu.ninjarmm.com/")).console == "https://eu.ninjarmm.com"
    settings = NinjaOneSettings.from_config(config(console_url="https://acme.rmmservice.eu/"))
    assert settings.console == "https://acme.rmmservice.eu" and settings.device_details is True


@pytest.mark.parametrize("key, value, fix", [
    ("console_url", "eu.ninjarmm.com", "https://eu.ninjarmm.com"),
    ("console_url", "https://eu.ninjarmm.com/#/deviceDashboard/5/overview", 'console_url = "https://eu.ninjarmm.com"'),
    ("device_details", "yes", "device_details = true"),
])
def test_bad_console_or_details_settings_name_the_key_and_the_fix(key, value, fix):
    with pytest.raises(ConfigError) as info:
        NinjaOneSettings.from_config(config(**{key: value}))
    assert info.value.key == f"connectors.ninjaone.{key}" and fix in str(info.value)
