"""NinjaOneClient against the simulator: paging, tokens, retries and error mapping."""

from __future__ import annotations

from urllib.parse import parse_qs

import httpx
import pytest
import respx

from hub import CredentialsError, MalformedResponseError, RetryableError, VendorError
from hub.errors import IncompleteError
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
                                   {"pageSize": "10", "after": str(pages[1][-1]["id"])},
                                   {"pageSize": "10", "after": str(pages[2][-1]["id"])}]  # the empty end


def test_iter_devices_yields_vendor_dicts_unchanged(sim):
    client = make_client(sim)
    first = next(client.iter_devices())[0]
    assert first == sim.device(first["id"])


def test_iter_devices_asks_once_more_after_a_full_last_page():
    sim = NinjaOneSimulator(seed=2, organizations=1, devices=20)
    client = make_client(sim, page_size=10)
    assert [len(p) for p in client.iter_devices()] == [10, 10]
    assert sim.requests_by_path["/v2/devices"] == 3


@pytest.mark.parametrize("cap", [1, 3, 9])
def test_iter_devices_reads_every_device_from_a_server_that_caps_page_size(cap):
    sim = NinjaOneSimulator(seed=1, organizations=3, devices=25, max_page_size=cap)
    client = make_client(sim, page_size=10)
    pages = list(client.iter_devices())
    assert [d["id"] for p in pages for d in p] == sim.device_ids
    assert all(len(p) <= cap for p in pages)
    assert sim.requests_by_path["/v2/devices"] == len(pages) + 1  # the empty page ends the sweep


def test_iter_devices_reads_on_past_a_page_cut_short(sim):
    sim.short_page_next("/v2/devices", drop=4)
    client = make_client(sim, page_size=10)
    pages = list(client.iter_devices())
    assert [len(p) for p in pages] == [6, 10, 9]
    assert [d["id"] for p in pages for d in p] == sim.device_ids


def test_a_page_whose_last_record_has_no_id_stops_the_sweep_loudly(sim):
    sim.strip_device_fields(sim.device_ids[9], "id")
    client = make_client(sim, page_size=10)
    pages = client.iter_devices()
    with pytest.raises(MalformedResponseError, match="last record of a page .* has no integer id"):
        list(pages)


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
            assert client.requests == 5  # token, three pages, the empty page that ends the sweep


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
    assert client.requests == sim.requests == 1 + 6 + 2  # 5 device pages and 1 org page, each list + 1 empty


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
    assert sim.requests_by_path["/v2/organizations"] == 6  # a page and the empty end, 3 times; none refused


def test_a_token_expired_by_the_server_is_fetched_again_once(sim):
    client = make_client(sim, page_size=10)
    pages = client.iter_devices()
    next(pages)
    sim.expire_tokens()
    assert sum(len(p) for p in pages) == 15
    assert sim.requests_by_path[TOKEN_PATH] == 2
    assert sim.requests_by_path["/v2/devices"] == 5  # 3 pages, the empty end, one refused with 401


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
    assert sim.requests_by_path["/v2/devices"] == 4  # 2 refused, the page, the empty end


def test_a_timeout_is_retried(sim):
    sim.timeout_next(path="/v2/devices")
    client = make_client(sim)
    assert sum(len(p) for p in client.iter_devices()) == 25
    assert sim.requests_by_path["/v2/devices"] == 3  # 1 timed out, the page, the empty end


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
    assert client.requests == sim.requests == 1 + 4 + 1  # token, 3 refused + the page, the empty end


# --- alerts and activities ---------------------------------------------------------------------

def activity_queries(sim: NinjaOneSimulator) -> list[dict]:
    return [q for _, path, q in sim.log if path == "/v2/activities"]


def api_get(sim: NinjaOneSimulator, path: str, **params) -> dict:
    """One raw API call, to see what the API itself answers (not what the client makes of it)."""
    http = mock_client(sim.handler, "https://eu.ninjarmm.com")
    token = http.post(TOKEN_PATH, data={"grant_type": "client_credentials", "client_id": sim.client_id,
                                        "client_secret": SECRET, "scope": "monitoring"}).json()["access_token"]
    response = http.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def storm() -> NinjaOneSimulator:
    """35 alerts triggered, so 35 TRIGGERED activities with increasing ids."""
    sim = NinjaOneSimulator(seed=1, organizations=3, devices=25)
    sim.alert_storm(35)
    return sim


def ids_of(activities) -> list[int]:
    return [a["id"] for a in activities]


def test_newer_than_pages_forward_and_older_than_backward(storm):
    """Which way each activity cursor pages, whatever the spec's descriptions say.

    The spec describes them swapped: olderThan "Return activities recorded that are newer than
    specified activity ID", newerThan "... older than specified activity ID". NinjaOne answers by
    the names: olderThan=X the activities just below X, newerThan=X those just above X, each page
    newest first (reverse chronological). The simulator answers so; the client relies on it.
    """
    ids = ids_of(storm.activities)
    page = lambda **q: ids_of(api_get(storm, "/v2/activities", pageSize=10, **q)["activities"])  # noqa: E731

    newest = page()
    assert newest == ids[-10:][::-1]                                  # no cursor: the newest, newest first
    # olderThan pages backward: pass the smallest id of a page to get the page before it.
    assert page(olderThan=newest[-1]) == ids[-20:-10][::-1]
    assert page(olderThan=ids[10]) == ids[0:10][::-1]
    assert page(olderThan=ids[0]) == []
    # newerThan pages forward: pass the largest id of a page to get the page after it.
    assert page(newerThan=ids[4]) == ids[5:15][::-1]
    assert page(newerThan=ids[14]) == ids[15:25][::-1]
    assert page(newerThan=ids[-1]) == []
    assert api_get(storm, "/v2/activities", pageSize=10)["lastActivityId"] == ids[-1]


def test_iter_activities_yields_pages_oldest_first_after_the_cursor(storm):
    client = make_client(storm)
    ids = ids_of(storm.activities)
    pages = list(client.iter_activities(ids[4], page_size=10))
    assert [len(p) for p in pages] == [10, 10, 10]
    assert [a for p in pages for a in ids_of(p)] == ids[5:]
    assert all(ids_of(p) == sorted(ids_of(p)) for p in pages)
    assert client.last_activity_id == ids[-1]


@pytest.mark.parametrize("takes", ["next", "newest"])
def test_iter_activities_resumes_from_a_committed_cursor_and_never_skips_or_repeats(takes):
    # "newest": an API whose full newerThan page holds the newest ids above the cursor (the
    # reading the spec leaves open); the client walks back to fill the gap, so nothing is lost.
    sim = NinjaOneSimulator(seed=1, organizations=3, devices=25, newer_than_takes=takes)
    sim.alert_storm(23)
    client = make_client(sim)
    cursor = ids_of(sim.activities)[2]
    seen: list[int] = []
    for page in client.iter_activities(cursor, page_size=10):
        seen += ids_of(page)
        cursor = page[-1]["id"]                 # committed after each page
        break                                   # and the run dies here
    sim.alert_storm(14)                         # more arrive before the next run
    for page in client.iter_activities(cursor, page_size=10):
        assert page[0]["id"] > cursor
        seen += ids_of(page)
        cursor = page[-1]["id"]
    assert seen == ids_of(sim.activities)[3:]
    assert list(client.iter_activities(cursor, page_size=10)) == []


def test_a_full_newer_than_page_is_checked_below_its_oldest_id(storm):
    client = make_client(storm)
    ids = ids_of(storm.activities)
    list(client.iter_activities(ids[4], page_size=10))
    asked = [({k: v for k, v in q.items() if k in ("newerThan", "olderThan")}) for q in activity_queries(storm)]
    assert asked == [{"newerThan": str(ids[4])}, {"olderThan": str(ids[5])},
                     {"newerThan": str(ids[14])}, {"olderThan": str(ids[15])},
                     {"newerThan": str(ids[24])}, {"olderThan": str(ids[25])},
                     {"newerThan": str(ids[34])}]


def test_iter_activities_without_a_cursor_reads_back_the_lookback(storm):
    client = make_client(storm)
    pages = list(client.iter_activities(None, page_size=10, lookback=15))
    assert [len(p) for p in pages] == [10, 5]
    assert [a for p in pages for a in ids_of(p)] == ids_of(storm.activities)[-15:]
    assert [q.get("olderThan") for q in activity_queries(storm)] == [None, str(ids_of(storm.activities)[-10])]


def test_iter_activities_asks_for_device_alert_activities_only():
    sim = NinjaOneSimulator(seed=1, organizations=3, devices=25, alerts=3)
    client = make_client(sim)
    got = [a for p in client.iter_activities(None) for a in p]
    assert {a["statusCode"] for a in got} == {"TRIGGERED", "RESET"} and len(got) == 7
    assert {a["statusCode"] for a in sim.activities} > {"TRIGGERED", "RESET"}      # the log holds others
    oldest = min(a["id"] for a in got)
    assert activity_queries(sim) == [{"pageSize": "1000", "class": "DEVICE", "status": "TRIGGERED,RESET"},
                                     {"pageSize": "1000", "class": "DEVICE", "status": "TRIGGERED,RESET",
                                      "olderThan": str(oldest)}]  # a short page is not the end: an empty one is


@pytest.mark.parametrize("takes", ["next", "newest"])
@pytest.mark.parametrize("cut", [{"max_page_size": 4}, {"short": 6}])
def test_iter_activities_reads_every_activity_past_capped_or_cut_pages(takes, cut):
    sim = NinjaOneSimulator(seed=1, organizations=3, devices=25, newer_than_takes=takes)
    sim.alert_storm(30)
    ids = ids_of(sim.activities)
    answer, short = sim.handler, [cut.get("short")]

    def capped(request: httpx.Request) -> httpx.Response:
        # A server that answers fewer activities than pageSize: capped, or one page cut short.
        response = answer(request)
        if request.url.path != "/v2/activities":
            return response
        body = response.json()
        keep = cut.get("max_page_size")
        if short[0] and body["activities"]:
            keep, short[0] = len(body["activities"]) - short[0], None
        if keep is not None and body["activities"]:
            body["activities"] = body["activities"][:max(1, keep)]
        return httpx.Response(200, json=body)

    client = NinjaOneClient("https://eu.ninjarmm.com", sim.client_id, Secret(SECRET, "test"),
                            http=mock_client(capped), page_size=10)
    assert [a for p in client.iter_activities(ids[3]) for a in ids_of(p)] == ids[4:]


def test_iter_activities_with_nothing_new_asks_once(storm):
    client = make_client(storm)
    assert list(client.iter_activities(ids_of(storm.activities)[-1])) == []
    assert storm.requests_by_path["/v2/activities"] == 1


@pytest.mark.parametrize("asked, sent", [(1, "10"), (10, "10"), (250, "250"), (5000, "1000")])
def test_activity_page_size_is_kept_within_the_api_bounds(storm, asked, sent):
    list(make_client(storm).iter_activities(None, page_size=asked))
    assert activity_queries(storm)[0]["pageSize"] == sent


def test_a_full_newer_than_page_without_newer_activities_raises_instead_of_looping():
    def ignores_newer_than(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        return httpx.Response(200, json={"lastActivityId": 20, "activities": [{"id": i} for i in range(20, 10, -1)]})

    client = NinjaOneClient("https://app.ninjarmm.com", "id", Secret("s", "test"), http=mock_client(ignores_newer_than))
    with pytest.raises(IncompleteError, match="newerThan=50 answered ids 11..20"):
        list(client.iter_activities(50, page_size=10))


def test_an_activities_body_without_ids_is_malformed():
    def no_ids(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        return httpx.Response(200, json={"lastActivityId": 3, "activities": [{"statusCode": "TRIGGERED"}]})

    client = NinjaOneClient("https://app.ninjarmm.com", "id", Secret("s", "test"), http=mock_client(no_ids))
    with pytest.raises(MalformedResponseError, match="an id on every activity"):
        list(client.iter_activities(1))


def test_activity_paging_survives_faults(storm):
    client = make_client(storm)
    ids = ids_of(storm.activities)
    pages = client.iter_activities(ids[0], page_size=10)
    seen = ids_of(next(pages))
    storm.fail_next(429, retry_after=0, path="/v2/activities")
    storm.timeout_next(path="/v2/activities")
    storm.garbage_next(path="/v2/activities")
    storm.fail_next(503, path="/v2/activities")
    storm.expire_tokens()
    seen += [a for p in pages for a in ids_of(p)]
    assert seen == ids[1:]


def test_list_alerts_returns_every_active_alert_with_its_device():
    sim = NinjaOneSimulator(seed=1, organizations=3, devices=25, alerts=4)
    alerts = make_client(sim).list_alerts()
    assert [a["uid"] for a in alerts] == sim.alert_uids and len(alerts) == 4
    for alert in alerts:
        assert alert["device"] == sim.device(alert["deviceId"])
        assert alert == sim.alert(alert["uid"])
    assert sim.requests_by_path["/v2/alerts"] == 1 and "pageSize" not in sim.log[-1][2]


def test_list_alerts_filters_by_source_type():
    sim = NinjaOneSimulator(seed=1, organizations=1, devices=5)
    cpu = sim.trigger_alert(sim.device_ids[0])
    sim.trigger_alert(sim.device_ids[1], condition="Device offline", source_type="AGENT_OFFLINE")
    assert [a["uid"] for a in make_client(sim).list_alerts("CONDITION_AGENT_CPU")] == [cpu]


def test_list_alerts_survives_faults():
    sim = NinjaOneSimulator(seed=1, organizations=1, devices=5, alerts=2)
    sim.fail_next(502, path="/v2/alerts")
    sim.garbage_next(path="/v2/alerts")
    assert len(make_client(sim).list_alerts()) == 2
    assert sim.requests_by_path["/v2/alerts"] == 3


def test_reset_alert_posts_and_the_reset_is_logged(storm):
    client = make_client(storm, scope="monitoring management")
    uid = storm.alert_uids[3]
    assert client.reset_alert(uid, {"note": "fixed by hand"}) is True
    assert uid not in [a["uid"] for a in client.list_alerts()]
    last = storm.activities[-1]
    assert (last["statusCode"], last["seriesUid"], last["data"]) == ("RESET", uid, {"note": "fixed by hand"})
    assert client.reset_alert(uid) is False          # nothing active by that uid any more


def test_reset_alert_needs_the_management_scope(storm):
    client = make_client(storm)
    with pytest.raises(CredentialsError) as info:
        client.reset_alert(storm.alert_uids[0])
    assert info.value.status == 403 and "'management' scope" in str(info.value)
    assert len(storm.alert_uids) == 35


def test_alerts_and_activities_over_real_http(storm):
    with serve(storm.handler) as url:
        with NinjaOneClient(url, storm.client_id, Secret(SECRET, "test"), scope="monitoring management") as client:
            assert len(client.list_alerts()) == 35
            assert client.reset_alert(storm.alert_uids[0])
            assert sum(len(p) for p in client.iter_activities(None, page_size=10)) == 36
