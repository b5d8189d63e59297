"""NinjaOneClient against the simulator: paging, tokens, retries and error mapping."""

from __future__ import annotations

from urllib.parse import parse_qs

import httpx
import pytest
import respx

from hub import CredentialsError, MalformedResponseError, RetryableError, VendorError
from hub.config import Secret
from hub.http import retry_policy
from hub.testing import mock_client, serve

from plugins.ninjaone.client import NinjaOneClient
from plugins.ninjaone.simulator import TOKEN_PATH, NinjaOneSimulator

SECRET = "sim-client-secret"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_client(sim: NinjaOneSimulator, *, sleeps: list | None = None, secret: str = SECRET,
                base_url: str = "https://eu.ninjarmm.com", **kwargs) -> NinjaOneClient:
    sleep = sleeps.append if sleeps is not None else (lambda s: None)
    return NinjaOneClient(base_url, kwargs.pop("client_id", sim.client_id), Secret(secret, "test"),
                          http=mock_client(sim.handler), retrying=lambda: retry_policy(sleep=sleep), **kwargs)


def device_queries(sim: NinjaOneSimulator) -> list[dict]:
    return [q for _, path, q in sim.log if path == "/v2/devices"]


@pytest.fixture
def sim() -> NinjaOneSimulator:
    return NinjaOneSimulator(seed=1, organizations=3, devices=25)


# --- paging ------------------------------------------------------------------------------------

def test_iter_devices_follows_after(sim):
    client = make_client(sim, page_size=10)
    pages = list(client.iter_devices())
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [d["id"] for p in pages for d in p] == sim.device_ids
    assert device_queries(sim) == [{"pageSize": "10"}, {"pageSize": "10", "after": str(pages[0][-1]["id"])},
                                   {"pageSize": "10", "after": str(pages[1][-1]["id"])}]


def test_iter_devices_yields_vendor_dicts_unchanged(sim):
    client = make_client(sim)
    first = next(client.iter_devices())[0]
    assert first == sim.device(first["id"])


def test_iter_devices_asks_once_more_after_a_full_last_page():
    sim = NinjaOneSimulator(seed=2, organizations=1, devices=20)
    client = make_client(sim, page_size=10)
    assert [len(p) for p in client.iter_devices()] == [10, 10]
    assert sim.requests_by_path["/v2/devices"] == 3


def test_iter_devices_resumes_after_an_id(sim):
    client = make_client(sim, page_size=10)
    after = sim.device_ids[11]
    ids = [d["id"] for p in client.iter_devices(after=after) for d in p]
    assert ids == sim.device_ids[12:]


def test_iter_organizations_pages(sim):
    for i in range(4):
        sim.add_organization(f"Extra {i}")
    client = make_client(sim, page_size=3)
    pages = list(client.iter_organizations())
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [o["id"] for p in pages for o in p] == sim.organization_ids


def test_an_empty_tenant_yields_no_pages():
    sim = NinjaOneSimulator(organizations=0, devices=0)
    assert list(make_client(sim).iter_devices()) == []


def test_a_repeated_page_raises_instead_of_looping():
    def ignores_after(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        return httpx.Response(200, json=[{"id": i} for i in range(1, 11)])

    client = NinjaOneClient("https://app.ninjarmm.com", "id", Secret("s", "test"),
                            http=mock_client(ignores_after), page_size=10)
    with pytest.raises(VendorError, match="repeats after=10"):
        list(client.iter_devices())
    assert client.requests == 3  # token, first page, the page that came back the same


def test_works_over_real_http(sim):
    with serve(sim.handler) as url:
        with NinjaOneClient(url, sim.client_id, Secret(SECRET, "test"), page_size=10) as client:
            assert sum(len(p) for p in client.iter_devices()) == 25
            assert client.requests == 4


# --- tokens ------------------------------------------------------------------------------------

def test_the_token_request_is_a_form_post_to_the_regional_host():
    with respx.mock(base_url="https://eu.ninjarmm.com") as router:
        token = router.post("/ws/oauth/token").respond(200, json={"access_token": "tok", "expires_in": 3600})
        devices = router.get("/v2/devices").respond(200, json=[])
        client = NinjaOneClient("https://eu.ninjarmm.com/", "my-id", Secret("my-secret", "test"),
                                scope="monitoring management")
        assert list(client.iter_devices()) == []
    sent = token.calls.last.request
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(sent.content.decode()) == {"grant_type": ["client_credentials"], "client_id": ["my-id"],
                                               "client_secret": ["my-secret"],
                                               "scope": ["monitoring management"]}
    assert devices.calls.last.request.headers["Authorization"] == "Bearer tok"
    assert devices.calls.last.request.url.params["pageSize"] == "1000"


def test_the_token_is_fetched_once_for_many_requests(sim):
    client = make_client(sim, page_size=5)
    list(client.iter_devices())
    list(client.iter_organizations())
    assert sim.requests_by_path[TOKEN_PATH] == 1
    assert client.requests == sim.requests == 1 + 6 + 1


def test_the_token_is_refreshed_before_it_expires(sim):
    clock = FakeClock()
    client = make_client(sim, clock=clock)
    list(client.iter_organizations())
    clock.now += 3600 - 61  # the margin before expiry: still fine
    list(client.iter_organizations())
    assert sim.requests_by_path[TOKEN_PATH] == 1
    clock.now += 2
    list(client.iter_organizations())
    assert sim.requests_by_path[TOKEN_PATH] == 2
    assert sim.requests_by_path["/v2/organizations"] == 3  # no request was refused on the way


def test_a_token_expired_by_the_server_is_fetched_again_once(sim):
    client = make_client(sim, page_size=10)
    pages = client.iter_devices()
    next(pages)
    sim.expire_tokens()
    assert sum(len(p) for p in pages) == 15
    assert sim.requests_by_path[TOKEN_PATH] == 2
    assert sim.requests_by_path["/v2/devices"] == 4  # one of them refused with 401


def test_a_token_refused_twice_is_a_credentials_error(sim):
    def refuses(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/devices":
            return httpx.Response(401, json={"resultCode": "FAILURE", "errorMessage": "Invalid token"})
        return sim.handler(request)

    client = NinjaOneClient("https://app.ninjarmm.com", sim.client_id, Secret(SECRET, "test"),
                            http=mock_client(refuses))
    list(client.iter_organizations())  # a token in hand, so the 401 gets one refetch
    with pytest.raises(CredentialsError) as info:
        list(client.iter_devices())
    assert info.value.status == 401 and "Invalid token" in str(info.value)
    assert sim.requests_by_path[TOKEN_PATH] == 2


# --- errors ------------------------------------------------------------------------------------

def test_a_wrong_secret_is_a_credentials_error_naming_the_fix(sim):
    client = make_client(sim, secret="not-the-secret")
    with pytest.raises(CredentialsError) as info:
        list(client.iter_devices())
    message = str(info.value)
    assert "POST https://eu.ninjarmm.com/ws/oauth/token" in message
    assert "invalid_client" in message and "client_secret_env" in message and "base_url" in message
    assert "not-the-secret" not in message
    assert sim.requests == 1  # not retried


def test_an_unknown_client_id_shows_the_vendor_result_code(sim):
    client = make_client(sim, client_id="nobody")
    with pytest.raises(CredentialsError, match="Client app not exist"):
        list(client.iter_devices())


def test_a_missing_scope_is_a_credentials_error_naming_the_scope(sim):
    client = make_client(sim, scope="management")
    with pytest.raises(CredentialsError) as info:
        list(client.iter_devices())
    assert info.value.status == 403 and "'monitoring' scope" in str(info.value)
    token = [t for t in sim._tokens][0]
    assert token not in str(info.value)


def test_a_404_is_a_vendor_error_and_not_retried(sim):
    sim.fail_next(404, path="/v2/devices")
    client = make_client(sim)
    with pytest.raises(VendorError) as info:
        list(client.iter_devices())
    assert not isinstance(info.value, RetryableError)
    assert info.value.status == 404 and "GET https://eu.ninjarmm.com/v2/devices" in str(info.value)
    assert sim.requests_by_path["/v2/devices"] == 1


# --- retries -----------------------------------------------------------------------------------

def test_a_429_honours_retry_after(sim):
    sim.fail_next(429, times=2, retry_after=7, path="/v2/devices")
    sleeps: list[float] = []
    client = make_client(sim, sleeps=sleeps)
    assert sum(len(p) for p in client.iter_devices()) == 25
    assert sleeps == [7.0, 7.0]


def test_a_429_without_retry_after_waits_ten_seconds(sim):
    sim.fail_next(429, path="/v2/devices")
    sleeps: list[float] = []
    client = make_client(sim, sleeps=sleeps)
    assert sum(len(p) for p in client.iter_devices()) == 25
    assert sleeps == [10.0]


def test_a_429_with_retry_after_zero_is_survived_with_real_sleep(sim):
    sim.fail_next(429, times=2, retry_after=0)
    client = NinjaOneClient("https://app.ninjarmm.com", sim.client_id, Secret(SECRET, "test"),
                            http=mock_client(sim.handler), page_size=10)
    assert sum(len(p) for p in client.iter_devices()) == 25
    assert sim.requests_by_path[TOKEN_PATH] == 3  # the faults hit the token request first


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_is_retried(sim, status):
    sim.fail_next(status, times=2, path="/v2/devices")
    client = make_client(sim)
    assert sum(len(p) for p in client.iter_devices()) == 25
    assert sim.requests_by_path["/v2/devices"] == 3


def test_a_timeout_is_retried(sim):
    sim.timeout_next(path="/v2/devices")
    client = make_client(sim)
    assert sum(len(p) for p in client.iter_devices()) == 25
    assert sim.requests_by_path["/v2/devices"] == 2


def test_malformed_json_is_retried(sim):
    sim.garbage_next(path="/v2/devices")
    client = make_client(sim)
    assert sum(len(p) for p in client.iter_devices()) == 25


def test_malformed_json_every_time_is_a_malformed_response_error(sim):
    sim.garbage_next(times=10, path="/v2/devices")
    client = make_client(sim)
    with pytest.raises(MalformedResponseError, match="expected a JSON array"):
        list(client.iter_devices())
    assert sim.requests_by_path["/v2/devices"] == 5  # the policy's attempts


def test_a_5xx_from_the_token_endpoint_is_retried(sim):
    sim.fail_next(503, path=TOKEN_PATH)
    client = make_client(sim)
    assert sum(len(p) for p in client.iter_devices()) == 25
    assert sim.requests_by_path[TOKEN_PATH] == 2


def test_the_request_counter_includes_retries(sim):
    sim.fail_next(500, times=3, path="/v2/devices")
    client = make_client(sim)
    list(client.iter_devices())
    assert client.requests == sim.requests == 1 + 4
