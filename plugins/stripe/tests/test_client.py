"""StripeClient: the SDK over an injected httpx client, retries, error mapping, paging."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

import httpx
import pytest
import respx
import stripe

from hub import CredentialsError, MalformedResponseError, RetryableError, VendorError
from hub.testing import mock_client, serve
from plugins.stripe.client import StripeClient
from plugins.stripe.plugin import StripeConnector, StripeSettings
from plugins.stripe.tests.helpers import (
    API_KEY,
    BASE_URL,
    FakeContext,
    make_action,
    quiet_retry_policy,
)


@pytest.fixture
def client(sim, sleeps):
    c = StripeClient(BASE_URL, API_KEY, http=mock_client(sim.handler, BASE_URL),
                     retrying=lambda: quiet_retry_policy(sleeps))
    yield c
    c.close()


def stripe_error(status, message, *, type="invalid_request_error", headers=None, **extra):
    body = {"error": {"type": type, "message": message, **extra}}
    return httpx.Response(status, json=body, headers=headers or {})


def test_requests_are_the_sdk_s_with_our_key_and_version():
    with respx.mock(base_url=BASE_URL, assert_all_called=True) as router:
        route = router.post("/v1/customers").respond(200, json={"id": "cus_1", "object": "customer"})
        c = StripeClient(BASE_URL, API_KEY, http=httpx.Client(), retrying=quiet_retry_policy)
        customer = c.create_customer({"name": "Acme", "metadata": {"msp_hub_client_id": "acme"}},
                                     idempotency_key="msp-hub:customer:acme:create")
    assert customer == {"id": "cus_1", "object": "customer"} and isinstance(customer, dict)
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Idempotency-Key"] == "msp-hub:customer:acme:create"
    assert request.headers["Stripe-Version"] == stripe.api_version
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qsl(request.content.decode()) == [("name", "Acme"), ("metadata[msp_hub_client_id]", "acme")]
    assert c.requests == 1


def test_gets_carry_no_idempotency_key(sim, client):
    client.search_customers("metadata['msp_hub_client_id']:'acme'")
    (entry,) = sim.log
    assert entry["method"] == "GET" and entry["idempotency_key"] is None


def test_every_call_goes_through_the_injected_client_and_is_counted(sim, client):
    sim.fail_next(503, times=2)
    client.search_customers("name:'x'")
    assert client.requests == 3 == sim.requests


def test_rate_limit_is_retryable_with_retry_after(sim, client, sleeps):
    sim.fail_next(429, times=1, retry_after=7)
    assert client.search_customers("name:'x'") == []
    assert sleeps == [7]


def test_rate_limit_left_unresolved_carries_retry_after(sim, sleeps):
    c = StripeClient(BASE_URL, API_KEY, http=mock_client(sim.handler, BASE_URL),
                     retrying=lambda: quiet_retry_policy(sleeps).copy(stop=lambda state: True))
    sim.fail_next(429, retry_after=2.5)
    with pytest.raises(RetryableError) as info:
        c.search_customers("name:'x'")
    assert info.value.status == 429 and info.value.retry_after == 2.5


def test_a_transport_error_is_retried(sim, sleeps):
    calls = {"n": 0}

    def flaky(request):
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return sim.handler(request)

    c = StripeClient(BASE_URL, API_KEY, http=mock_client(flaky, BASE_URL), retrying=lambda: quiet_retry_policy(sleeps))
    assert c.search_customers("name:'x'") == []
    assert calls["n"] == 2 and len(sleeps) == 1


def test_a_5xx_stripe_says_not_to_retry_is_not_retried(sim, client):
    sim.fail_next(500, times=5, should_retry=False)
    with pytest.raises(VendorError) as info:
        client.search_customers("name:'x'")
    assert type(info.value) is VendorError and info.value.status == 500 and sim.requests == 1


def test_a_409_conflict_is_retried(sim, client):
    sim.fail_next(409)
    assert client.search_customers("name:'x'") == []
    assert sim.requests == 2


def test_a_garbage_body_is_malformed_and_retried(sim, client):
    sim.garbage_next()
    assert client.search_customers("name:'x'") == []
    assert sim.requests == 2


def test_a_garbage_body_every_time_raises_malformed_response(sim, client):
    sim.garbage_next(times=10)
    with pytest.raises(MalformedResponseError):
        client.search_customers("name:'x'")


def test_an_unknown_invoice_is_a_vendor_error_with_stripe_s_words(client):
    with pytest.raises(VendorError) as info:
        client.retrieve_invoice("in_missing")
    error = info.value
    assert type(error) is VendorError and error.status == 404
    assert error.method == "GET" and error.url == "/v1/invoices/in_missing"
    assert "No such invoice: 'in_missing'" in error.detail and "resource_missing" in error.detail
    assert "(param: id)" in error.detail


def test_a_bad_param_names_the_param(client, sim):
    customer = client.create_customer({"name": "Acme"}, idempotency_key="k1")
    with pytest.raises(VendorError, match=r"param: days_until_due"):
        client.create_invoice({"customer": customer["id"], "collection_method": "send_invoice"},
                              idempotency_key="k2")
    invoice = client.create_invoice({"customer": customer["id"], "collection_method": "send_invoice",
                                     "days_until_due": 30}, idempotency_key="k2")
    assert invoice["status"] == "draft"
    with pytest.raises(VendorError, match=r"param: lines\[0\]\[amount\]"):
        client.add_invoice_lines(invoice["id"], [{"amount": "ten"}], idempotency_key="k3")


def test_forbidden_is_a_credentials_error():
    with respx.mock(base_url=BASE_URL) as router:
        router.get("/v1/customers/search").respond(
            403, json={"error": {"type": "invalid_request_error",
                                 "message": f"The provided key 'rk_test_****{API_KEY[-4:]}' does not have "
                                            "the required permissions for this endpoint."}})
        c = StripeClient(BASE_URL, "rk_test_restrictedkey1234", http=httpx.Client(), retrying=quiet_retry_policy)
        with pytest.raises(CredentialsError) as info:
            c.search_customers("name:'x'")
    assert "rk_test" not in str(info.value) and "required permissions" in str(info.value)


def test_the_api_key_is_redacted_even_when_the_vendor_echoes_it():
    secret = "sk_live_51Echoed0123456789"
    with respx.mock(base_url=BASE_URL) as router:
        router.get("/v1/invoices/in_1").respond(400, json={"error": {
            "type": "invalid_request_error", "message": f"Something about {secret} went wrong"}})
        c = StripeClient(BASE_URL, secret, http=httpx.Client(), retrying=quiet_retry_policy)
        with pytest.raises(VendorError) as info:
            c.retrieve_invoice("in_1")
    assert secret not in str(info.value) and "[redacted]" in str(info.value)


def test_iter_invoices_follows_every_page(sim, client):
    customer = sim._create_customer({"name": "Acme"})
    other = sim._create_customer({"name": "Other"})
    for i in range(205):
        sim._create_invoice({"customer": customer["id"], "metadata": {"n": str(i)}})
    sim._create_invoice({"customer": other["id"]})

    seen = [inv["metadata"]["n"] for inv in client.iter_invoices(customer=customer["id"])]
    assert seen == [str(i) for i in reversed(range(205))]
    assert sim.requests == 3


def test_iter_invoices_raises_when_a_page_repeats():
    page = {"object": "list", "url": "/v1/invoices", "has_more": True,
            "data": [{"id": "in_1", "object": "invoice"}]}
    with respx.mock(base_url=BASE_URL) as router:
        router.get("/v1/invoices").respond(200, json=page)
        c = StripeClient(BASE_URL, API_KEY, http=httpx.Client(), retrying=quiet_retry_policy)
        with pytest.raises(MalformedResponseError, match="came back twice"):
            list(c.iter_invoices(customer="cus_1"))


def test_iter_invoice_lines_pages_past_the_embedded_ten(sim, client):
    customer = sim._create_customer({"name": "Acme"})
    invoice = sim._create_invoice({"customer": customer["id"], "collection_method": "send_invoice",
                                   "days_until_due": "30"})
    lines = [{"amount": str(i), "description": f"l{i}"} for i in range(130)]
    added = client.add_invoice_lines(invoice["id"], lines, idempotency_key="k")
    assert len(added["lines"]["data"]) == 10 and added["lines"]["has_more"]
    assert [l["amount"] for l in client.iter_invoice_lines(invoice["id"])] == list(range(130))


def test_push_over_real_http_counts_six_requests_for_a_new_client(sim):
    with serve(sim.handler) as url:
        connector = StripeConnector(StripeSettings(api_key=API_KEY, base_url=url),
                                    retrying=quiet_retry_policy)
        try:
            result = connector.push(make_action(), FakeContext())
        finally:
            connector.close()
    # search customers, create the customer, search invoices, create the draft, add lines, finalize
    assert sim.requests == 6 and connector.client.requests == 6
    assert sim.invoices[result.vendor_id]["status"] == "open"
    assert json.loads(json.dumps(result.details))["total"] == 13700  # the engine stores details as JSON


def test_close_leaves_an_injected_client_open(sim):
    http = mock_client(sim.handler, BASE_URL)
    StripeClient(BASE_URL, API_KEY, http=http).close()
    assert not http.is_closed
    http.close()


def test_a_read_timeout_is_retried(sim, client):
    sim.timeout_next()
    assert client.search_customers("name:'x'") == []
    assert sim.requests == 2


def test_search_follows_next_page(sim, client):
    for n in range(105):
        sim._create_customer({"name": f"c{n}", "metadata": {"msp_hub_client_id": "same"}})
    found = client.search_customers("metadata['msp_hub_client_id']:'same'")
    assert len(found) == 105 and len({c["id"] for c in found}) == 105
    assert sim.calls("GET", "/v1/customers/search") == 2


def test_search_refuses_a_page_token_that_comes_back():
    page = {"object": "search_result", "has_more": True, "next_page": "tok", "url": "/v1/invoices/search",
            "data": [{"id": "in_1", "object": "invoice"}]}
    with respx.mock(base_url=BASE_URL) as router:
        router.get("/v1/invoices/search").respond(200, json=page)
        c = StripeClient(BASE_URL, API_KEY, http=httpx.Client(), retrying=quiet_retry_policy)
        with pytest.raises(MalformedResponseError, match="search page tok came back twice"):
            c.search_invoices("metadata['k']:'v'")
