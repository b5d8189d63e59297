"""make_client(): the headers it is given reach the vendor, whichever client sends them."""

import httpx

from hub.http import USER_AGENT, make_client
from hub.testing import mock_client


def echo_headers(seen):
    def handler(request):
        seen.append(dict(request.headers))
        return httpx.Response(200, json={})
    return handler


def test_headers_are_merged_into_a_given_client_not_dropped():
    seen = []
    given = mock_client(echo_headers(seen))
    given.headers["X-Kept"] = "mine"
    given.headers["Accept"] = "text/plain"
    client = make_client("http://simulator.test", http=given,
                         headers={"Accept": "application/json", "X-Api-Version": "2026-01"})
    assert client is given
    client.get("/ping")
    assert seen[0]["x-api-version"] == "2026-01"
    assert seen[0]["accept"] == "application/json"       # the connector's header wins
    assert seen[0]["x-kept"] == "mine"                    # the client's own stay


def test_a_given_client_without_headers_is_left_as_it_is():
    seen = []
    given = mock_client(echo_headers(seen))
    before = dict(given.headers)
    make_client("http://simulator.test", http=given).get("/ping")
    assert dict(given.headers) == before and "x-api-version" not in seen[0]


def test_a_new_client_sends_the_user_agent_and_the_headers():
    client = make_client("http://vendor.test", headers={"X-Api-Version": "2026-01"})
    try:
        assert client.headers["User-Agent"] == USER_AGENT and client.headers["X-Api-Version"] == "2026-01"
        assert str(client.base_url).rstrip("/") == "http://vendor.test"
    finally:
        client.close()


def test_a_connection_refused_twice_is_not_tried_again_but_a_timeout_is():
    import httpx
    from hub.errors import RetryableError
    from hub.http import retry_policy
    tries = {"refused": 0, "timeout": 0}

    def fail(kind, cause):
        tries[kind] += 1
        try:
            raise cause
        except type(cause) as exc:
            raise RetryableError("acme", None, "GET", "http://127.0.0.1:9/x", "no response") from exc

    for kind, cause in (("refused", httpx.ConnectError("refused")), ("timeout", httpx.ReadTimeout("slow"))):
        try:
            retry_policy(sleep=lambda s: None)(fail, kind, cause)
        except RetryableError:
            pass
    assert tries == {"refused": 2, "timeout": 5}
