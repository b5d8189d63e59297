"""StripeSimulator: auth, idempotency, form parsing, lists, the invoice lifecycle, fault knobs."""

from __future__ import annotations

import base64

import httpx
import pytest

from hub.testing import mock_client
from plugins.stripe.simulator import StripeSimulator, parse_form
from plugins.stripe.tests.helpers import API_KEY, BASE_URL


@pytest.fixture
def http(sim):
    with mock_client(sim.handler, BASE_URL) as client:
        client.headers["Authorization"] = f"Bearer {API_KEY}"
        yield client


def post(http, path, data, key=None):
    headers = {"Idempotency-Key": key} if key else {}
    return http.post(path, data=data, headers=headers)


def new_customer(http, client_id="acme"):
    return post(http, "/v1/customers", {"name": "Acme", "metadata[msp_hub_client_id]": client_id}).json()


def new_draft(http, customer_id, **extra):
    data = {"customer": customer_id, "currency": "eur", "collection_method": "send_invoice",
            "days_until_due": "30", **extra}
    return post(http, "/v1/invoices", data).json()


def test_parse_form_nests_brackets_and_lists():
    pairs = [("lines[0][amount]", "100"), ("lines[0][period][start]", "1"), ("lines[0][period][end]", "2"),
             ("lines[1][metadata][msp_hub_line]", "ws"), ("metadata[k]", "v"), ("expand[]", "lines"),
             ("expand[]", "customer"), ("empty", "")]
    assert parse_form(pairs) == {
        "lines": [{"amount": "100", "period": {"start": "1", "end": "2"}},
                  {"metadata": {"msp_hub_line": "ws"}}],
        "metadata": {"k": "v"}, "expand": ["lines", "customer"], "empty": ""}


# --- auth ----------------------------------------------------------------------------------------

def test_no_key_is_401_in_stripe_s_shape(sim):
    response = mock_client(sim.handler, BASE_URL).get("/v1/customers")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "did not provide an API key" in response.json()["error"]["message"]


def test_a_wrong_key_is_401_and_masked(sim):
    response = mock_client(sim.handler, BASE_URL).get(
        "/v1/customers", headers={"Authorization": "Bearer sk_test_somebodyelse1234"})
    assert response.status_code == 401
    message = response.json()["error"]["message"]
    assert "somebodyelse" not in message and message.endswith("1234")


def test_basic_auth_with_the_key_as_user_is_accepted(sim):
    token = base64.b64encode(f"{API_KEY}:".encode()).decode()
    response = mock_client(sim.handler, BASE_URL).get("/v1/customers",
                                                      headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 200 and response.json()["object"] == "list"


# --- idempotency ---------------------------------------------------------------------------------

def test_same_key_same_params_replays_the_stored_answer(sim, http):
    first = post(http, "/v1/customers", {"name": "Acme"}, key="k-1")
    second = post(http, "/v1/customers", {"name": "Acme"}, key="k-1")
    assert second.status_code == 200 and second.content == first.content
    assert second.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert len(sim.customers) == 1


def test_same_key_other_params_is_an_idempotency_error(sim, http):
    post(http, "/v1/customers", {"name": "Acme"}, key="k-1")
    response = post(http, "/v1/customers", {"name": "Acme Corp"}, key="k-1")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "idempotency_error" and "same parameters" in error["message"]
    assert len(sim.customers) == 1


def test_the_same_key_on_another_path_is_an_idempotency_error(sim, http):
    post(http, "/v1/customers", {"name": "Acme"}, key="k-1")
    response = post(http, "/v1/invoiceitems", {"name": "Acme"}, key="k-1")
    assert response.json()["error"]["type"] == "idempotency_error"


def test_expired_keys_run_again(sim, http):
    post(http, "/v1/customers", {"name": "Acme"}, key="k-1")
    sim.expire_idempotency_keys()
    response = post(http, "/v1/customers", {"name": "Acme"}, key="k-1")
    assert "Idempotent-Replayed" not in response.headers and len(sim.customers) == 2


def test_a_validation_error_is_not_stored(sim, http):
    customer = new_customer(http)
    bad = post(http, "/v1/invoices", {"customer": customer["id"], "collection_method": "send_invoice"}, key="k")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "days_until_due"
    good = post(http, "/v1/invoices", {"customer": customer["id"], "collection_method": "send_invoice",
                                       "days_until_due": "30"}, key="k")
    assert good.status_code == 200 and good.json()["status"] == "draft"


def test_an_injected_fault_is_not_stored(sim, http):
    sim.fail_next(500)
    assert post(http, "/v1/customers", {"name": "Acme"}, key="k").status_code == 500
    response = post(http, "/v1/customers", {"name": "Acme"}, key="k")
    assert response.status_code == 200 and "Idempotent-Replayed" not in response.headers


def test_an_error_raised_while_running_is_replayed(sim, http):
    customer = new_customer(http)
    invoice = new_draft(http, customer["id"])
    post(http, f"/v1/invoices/{invoice['id']}/finalize", {}, key="f1")
    again = post(http, f"/v1/invoices/{invoice['id']}/finalize", {}, key="f2")
    assert again.status_code == 400
    replay = post(http, f"/v1/invoices/{invoice['id']}/finalize", {}, key="f1")
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"


def test_a_key_longer_than_255_characters_is_refused(http):
    response = post(http, "/v1/customers", {"name": "Acme"}, key="k" * 256)
    assert response.status_code == 400 and response.json()["error"]["type"] == "idempotency_error"


# --- customers -----------------------------------------------------------------------------------

def test_customers_can_be_retrieved_listed_and_searched(sim, http):
    acme = new_customer(http, "acme")
    new_customer(http, "globex")
    assert http.get(f"/v1/customers/{acme['id']}").json() == acme
    assert [c["id"] for c in http.get("/v1/customers", params={"limit": 1}).json()["data"]] != [acme["id"]]
    found = http.get("/v1/customers/search", params={"query": "metadata['msp_hub_client_id']:'acme'"}).json()
    assert found["object"] == "search_result" and [c["id"] for c in found["data"]] == [acme["id"]]


def test_search_lags_behind_creates_when_asked(sim, http):
    sim.search_lag = True
    new_customer(http, "acme")
    query = {"query": "metadata['msp_hub_client_id']:'acme'"}
    assert http.get("/v1/customers/search", params=query).json()["data"] == []
    sim.index_search()
    assert len(http.get("/v1/customers/search", params=query).json()["data"]) == 1


def test_an_unknown_customer_is_404_resource_missing(http):
    error = http.get("/v1/customers/cus_nope").json()["error"]
    assert error == {"type": "invalid_request_error", "message": "No such customer: 'cus_nope'",
                     "code": "resource_missing", "param": "id"}


def test_an_unknown_parameter_is_refused(http):
    response = post(http, "/v1/customers", {"nmae": "Acme"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "nmae"


def test_metadata_keys_over_40_characters_are_refused(http):
    response = post(http, "/v1/customers", {f"metadata[{'k' * 41}]": "v"})
    assert response.status_code == 400


# --- invoices ------------------------------------------------------------------------------------

def test_invoice_lifecycle_draft_lines_finalize_void(sim, http):
    customer = new_customer(http)
    draft = new_draft(http, customer["id"], **{"metadata[msp_hub_action_key]": "invoice:acme:2026-10"})
    assert draft["status"] == "draft" and draft["number"] is None and draft["total"] == 0
    assert draft["lines"] == {"object": "list", "data": [], "has_more": False, "total_count": 0,
                              "url": f"/v1/invoices/{draft['id']}/lines"}

    added = post(http, f"/v1/invoices/{draft['id']}/add_lines", {
        "lines[0][amount]": "6300", "lines[0][description]": "Workstations",
        "lines[0][period][start]": "1790812800", "lines[0][period][end]": "1793491199",
        "lines[0][metadata][msp_hub_line]": "ws", "lines[1][amount]": "2500"}).json()
    assert added["total"] == 8800 and added["lines"]["total_count"] == 2
    line = added["lines"]["data"][0]
    assert line["object"] == "line_item" and line["period"] == {"start": 1790812800, "end": 1793491199}
    assert line["metadata"] == {"msp_hub_line": "ws"}
    assert line["parent"]["type"] == "invoice_item_details"

    final = post(http, f"/v1/invoices/{draft['id']}/finalize", {}).json()
    assert final["status"] == "open" and final["number"].endswith("-0001")
    assert final["due_date"] == final["status_transitions"]["finalized_at"] + 30 * 86400
    assert final["amount_due"] == 8800

    locked = post(http, f"/v1/invoices/{draft['id']}/add_lines", {"lines[0][amount]": "1"})
    assert locked.status_code == 400 and locked.json()["error"]["code"] == "invoice_not_editable"
    assert post(http, f"/v1/invoices/{draft['id']}/finalize", {}).status_code == 400

    void = post(http, f"/v1/invoices/{draft['id']}/void", {}).json()
    assert void["status"] == "void" and void["status_transitions"]["voided_at"]


def test_add_lines_is_all_or_nothing(sim, http):
    customer = new_customer(http)
    draft = new_draft(http, customer["id"])
    response = post(http, f"/v1/invoices/{draft['id']}/add_lines",
                    {"lines[0][amount]": "100", "lines[1][amount]": "ten"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "lines[1][amount]"
    assert http.get(f"/v1/invoices/{draft['id']}").json()["lines"]["total_count"] == 0


def test_an_invoice_holds_at_most_250_items(sim, http):
    customer = new_customer(http)
    draft = new_draft(http, customer["id"])
    lines = {f"lines[{i}][amount]": "1" for i in range(251)}
    response = post(http, f"/v1/invoices/{draft['id']}/add_lines", lines)
    assert response.status_code == 400 and "250" in response.json()["error"]["message"]


def test_a_zero_total_invoice_is_paid_on_finalize(http):
    customer = new_customer(http)
    draft = new_draft(http, customer["id"])
    assert post(http, f"/v1/invoices/{draft['id']}/finalize", {}).json()["status"] == "paid"


def test_invoice_numbers_count_per_customer(http):
    customer = new_customer(http)
    numbers = []
    for _ in range(2):
        draft = new_draft(http, customer["id"])
        numbers.append(post(http, f"/v1/invoices/{draft['id']}/finalize", {}).json()["number"])
    assert [n[-4:] for n in numbers] == ["0001", "0002"]


def test_invoices_list_filters_and_pages(http):
    acme, globex = new_customer(http, "acme"), new_customer(http, "globex")
    ids = [new_draft(http, acme["id"])["id"] for _ in range(5)]
    new_draft(http, globex["id"])
    first = http.get("/v1/invoices", params={"customer": acme["id"], "limit": 3}).json()
    assert [i["id"] for i in first["data"]] == ids[::-1][:3] and first["has_more"]
    rest = http.get("/v1/invoices", params={"customer": acme["id"], "limit": 3,
                                            "starting_after": first["data"][-1]["id"]}).json()
    assert [i["id"] for i in rest["data"]] == ids[::-1][3:] and not rest["has_more"]
    post(http, f"/v1/invoices/{ids[0]}/finalize", {})  # nothing to pay: it becomes paid at once
    paid = http.get("/v1/invoices", params={"customer": acme["id"], "status": "paid"}).json()
    assert [i["id"] for i in paid["data"]] == [ids[0]]


def test_a_list_limit_over_100_is_refused(http):
    response = http.get("/v1/invoices", params={"limit": 101})
    assert response.status_code == 400 and response.json()["error"]["param"] == "limit"


def test_send_invoice_needs_days_until_due(http):
    customer = new_customer(http)
    response = post(http, "/v1/invoices", {"customer": customer["id"], "collection_method": "send_invoice"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "days_until_due"


def test_pending_items_are_swept_only_when_included(http):
    customer = new_customer(http)
    post(http, "/v1/invoiceitems", {"customer": customer["id"], "currency": "eur", "amount": "500"})
    excluded = new_draft(http, customer["id"], pending_invoice_items_behavior="exclude")
    assert excluded["total"] == 0
    included = new_draft(http, customer["id"], pending_invoice_items_behavior="include")
    assert included["total"] == 500


# --- invoice items -------------------------------------------------------------------------------

def test_invoice_items_attach_to_a_draft(sim, http):
    customer = new_customer(http)
    draft = new_draft(http, customer["id"])
    item = post(http, "/v1/invoiceitems", {
        "customer": customer["id"], "invoice": draft["id"], "currency": "eur", "amount": "4900",
        "description": "Backup", "period[start]": "1790812800", "period[end]": "1793491199",
        "metadata[msp_hub_line]": "backup"}).json()
    assert item["object"] == "invoiceitem" and item["invoice"] == draft["id"]
    invoice = http.get(f"/v1/invoices/{draft['id']}").json()
    assert invoice["total"] == 4900 and invoice["lines"]["data"][0]["metadata"] == {"msp_hub_line": "backup"}
    listed = http.get("/v1/invoiceitems", params={"invoice": draft["id"]}).json()["data"]
    assert [i["id"] for i in listed] == [item["id"]]
    pending = http.get("/v1/invoiceitems", params={"pending": "true"}).json()["data"]
    assert pending == []


def test_an_invoice_item_in_another_currency_is_refused(http):
    customer = new_customer(http)
    draft = new_draft(http, customer["id"])
    response = post(http, "/v1/invoiceitems", {"customer": customer["id"], "invoice": draft["id"],
                                               "currency": "usd", "amount": "1"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "currency"


# --- knobs ---------------------------------------------------------------------------------------

def test_fail_next_matches_a_path_glob_and_sets_retry_after(sim, http):
    sim.fail_next(429, times=2, retry_after=3, path="/v1/invoices*")
    assert http.get("/v1/customers").status_code == 200
    limited = http.get("/v1/invoices")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    assert limited.json()["error"]["code"] == "rate_limit"
    assert http.get("/v1/invoices").status_code == 429
    assert http.get("/v1/invoices").status_code == 200


def test_timeout_next_raises_a_read_timeout(sim, http):
    sim.timeout_next(path="/v1/invoices")
    with pytest.raises(httpx.ReadTimeout):
        http.get("/v1/invoices")
    assert http.get("/v1/invoices").status_code == 200


def test_list_objects_shows_objects_as_the_api_does(sim, http):
    customer = new_customer(http)
    draft = new_draft(http, customer["id"])
    post(http, f"/v1/invoices/{draft['id']}/add_lines", {"lines[0][amount]": "700"})
    (invoice,) = sim.list_objects("invoice")
    assert invoice["id"] == draft["id"] and invoice["total"] == 700 and invoice["lines"]["total_count"] == 1
    assert [c["id"] for c in sim.list_objects("customer")] == [customer["id"]]
    assert len(sim.list_objects("invoiceitem")) == 1
    with pytest.raises(ValueError):
        sim.list_objects("charge")


def test_garbage_next_returns_a_truncated_body(sim, http):
    sim.garbage_next()
    response = http.get("/v1/customers")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_requests_are_counted_per_path(sim, http):
    http.get("/v1/customers")
    http.get("/v1/customers")
    post(http, "/v1/customers", {"name": "Acme"}, key="k")
    assert sim.requests == 3 and sim.requests_by_path == {"/v1/customers": 3}
    assert sim.calls("GET", "/v1/customers") == 2 and sim.calls("POST", "/v1/*") == 1
    assert sim.posts()[0]["idempotency_key"] == "k"


def test_an_unknown_url_is_404(http):
    response = http.get("/v1/charges")
    assert response.status_code == 404 and "Unrecognized request URL" in response.json()["error"]["message"]


def test_the_same_seed_gives_the_same_ids():
    def ids(seed):
        sim = StripeSimulator(seed=seed)
        with mock_client(sim.handler, BASE_URL) as client:
            client.headers["Authorization"] = "Bearer sk_test_hub"
            return [client.post("/v1/customers", data={"name": "x"}).json()["id"] for _ in range(2)]
    assert ids(1) == ids(1) != ids(2)


def test_the_simulator_answers_over_real_http(sim):
    from hub.testing import serve
    with serve(sim.handler) as url:
        response = httpx.post(f"{url}/v1/customers", data={"name": "Acme"},
                              headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 200 and response.json()["object"] == "customer"


def test_a_stored_500_is_replayed_under_its_key_until_the_key_expires(sim, http):
    sim.fail_stored_next(500, path="/v1/customers")
    first = post(http, "/v1/customers", {"name": "Acme"}, key="k1")
    again = post(http, "/v1/customers", {"name": "Acme"}, key="k1")
    assert (first.status_code, again.status_code) == (500, 500)
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["error"]["type"] == "api_error" and sim.customers == {}
    other = post(http, "/v1/customers", {"name": "Acme"}, key="k2")  # a successor key runs
    assert other.status_code == 200 and len(sim.customers) == 1
    sim.expire_idempotency_keys()
    assert post(http, "/v1/customers", {"name": "Acme"}, key="k1").status_code == 200
    assert len(sim.customers) == 2


def test_a_stored_500_with_run_did_its_work(sim, http):
    sim.fail_stored_next(500, path="/v1/customers", run=True)
    assert post(http, "/v1/customers", {"name": "Acme"}, key="k1").status_code == 500
    assert len(sim.customers) == 1
    assert post(http, "/v1/customers", {"name": "Acme"}, key="k1").status_code == 500
    assert len(sim.customers) == 1


def test_a_stored_fault_waits_for_a_keyed_post(sim, http):
    sim.fail_stored_next(500, path="/v1/customers")
    assert post(http, "/v1/customers", {"name": "Acme"}).status_code == 200  # no key: nothing to store
    assert post(http, "/v1/customers", {"name": "Acme"}, key="k1").status_code == 500


def test_invoices_are_searched_by_metadata_and_fields(sim, http):
    customer = new_customer(http)
    mine = new_draft(http, customer["id"], **{"metadata[msp_hub_action_key]": "invoice:o'brien:2026-10"})
    new_draft(http, customer["id"], **{"metadata[msp_hub_action_key]": "invoice:acme:2026-10"})
    query = "metadata['msp_hub_action_key']:'invoice:o\\'brien:2026-10' AND status:'draft'"
    found = http.get("/v1/invoices/search", params={"query": query}).json()
    assert found["object"] == "search_result" and [i["id"] for i in found["data"]] == [mine["id"]]
    assert found["data"][0]["total"] == 0  # shown as the API shows an invoice
    bad = http.get("/v1/invoices/search", params={"query": "email:'x'"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "query"


def test_search_pages_with_next_page(sim, http):
    customer = new_customer(http)
    ids = [new_draft(http, customer["id"], **{"metadata[k]": "v"})["id"] for _ in range(5)]
    first = http.get("/v1/invoices/search", params={"query": "metadata['k']:'v'", "limit": 3}).json()
    assert first["has_more"] and first["next_page"]
    rest = http.get("/v1/invoices/search", params={"query": "metadata['k']:'v'", "limit": 3,
                                                   "page": first["next_page"]}).json()
    assert not rest["has_more"] and rest["next_page"] is None
    assert [i["id"] for i in first["data"] + rest["data"]] == ids[::-1]


def test_search_lag_hides_new_invoices_until_indexed(sim, http):
    customer = new_customer(http)
    sim.search_lag = True
    new_draft(http, customer["id"], **{"metadata[k]": "v"})
    assert http.get("/v1/invoices/search", params={"query": "metadata['k']:'v'"}).json()["data"] == []
    sim.index_search()
    assert len(http.get("/v1/invoices/search", params={"query": "metadata['k']:'v'"}).json()["data"]) == 1


def test_a_priced_line_is_quantity_times_unit_amount(sim, http):
    customer = new_customer(http)
    draft = new_draft(http, customer["id"])
    added = post(http, f"/v1/invoices/{draft['id']}/add_lines", {
        "lines[0][quantity]": "5", "lines[0][price_data][currency]": "eur",
        "lines[0][price_data][product_data][name]": "Workstations", "lines[0][price_data][unit_amount]": "12000",
        "lines[1][amount]": "12000", "lines[1][description]": "Hours (1.5 x 80.00 EUR)"}).json()
    line = added["lines"]["data"][0]
    assert (line["quantity"], line["amount"], line["description"]) == (5, 60000, "Workstations")
    assert line["pricing"]["unit_amount_decimal"] == "12000" and line["pricing"]["price_details"]["price"]
    assert added["total"] == 72000


@pytest.mark.parametrize("data, param", [
    ({"lines[0][amount]": "5", "lines[0][price_data][currency]": "eur",
      "lines[0][price_data][product_data][name]": "x", "lines[0][price_data][unit_amount]": "5"}, "lines[0][amount]"),
    ({"lines[0][price_data][currency]": "usd", "lines[0][price_data][product_data][name]": "x",
      "lines[0][price_data][unit_amount]": "5"}, "lines[0][price_data][currency]"),
    ({"lines[0][price_data][currency]": "eur", "lines[0][price_data][unit_amount]": "5"},
     "lines[0][price_data][product]"),
    ({"lines[0][price_data][currency]": "eur", "lines[0][price_data][product_data][name]": "x",
      "lines[0][price_data][unit_amount]": "-5"}, "lines[0][price_data][unit_amount]"),
    ({"lines[0][amount]": "500", "lines[0][quantity]": "2"}, "lines[0][quantity]"),
])
def test_a_line_priced_wrongly_is_refused(http, data, param):
    customer = new_customer(http)
    draft = new_draft(http, customer["id"])
    response = post(http, f"/v1/invoices/{draft['id']}/add_lines", data)
    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_an_invoice_item_takes_quantity_and_unit_amount_decimal(sim, http):
    customer = new_customer(http)
    draft = new_draft(http, customer["id"])
    item = post(http, "/v1/invoiceitems", {"customer": customer["id"], "invoice": draft["id"], "currency": "eur",
                                           "quantity": "42", "unit_amount_decimal": "150"}).json()
    assert (item["quantity"], item["amount"], item["pricing"]["unit_amount_decimal"]) == (42, 6300, "150")
