"""The real plugin against localstripe, a Stripe fake written elsewhere (PyPI ``localstripe``).

localstripe is started as a subprocess on 127.0.0.1 with its persistence turned off: it pickles
its whole store to ``/tmp/localstripe.pickle`` after every write, and ``--from-scratch`` only
skips reading that file at start, so the bootstrap below replaces both store methods with no-ops
(and binds 127.0.0.1, where its own CLI binds every interface).

What localstripe 1.15.10 can check for us: customers (form-encoded metadata, auth, retrieval),
pending invoice items, and its error answers. What it cannot: it has no one-off invoices (``POST
/v1/invoices`` only invoices a subscription; unknown params such as ``currency`` make it answer
500), no ``add_lines``, ``finalize`` or search, no idempotency keys, and it refuses an invoice
item's ``period``, ``quantity`` and ``unit_amount_decimal``. A push, which looks for the
customer by search before it creates one, therefore stops at the search, as tested below.

Tax and the client's details: localstripe has tax rates (create and list, with ``display_name``,
``percentage``, ``inclusive``, ``jurisdiction``, ``description`` and ``metadata``) but refuses a
rate's ``country`` and the list's ``active`` filter. It has a customer's ``address``, ``email``,
``preferred_locales`` and ``tax_id_data``, the customer update, and its tax ids (create, list,
delete), but not ``tax_exempt``, and its list of tax ids refuses ``limit`` (the connector pages
that list only past 10 tax ids). An invoice item takes ``tax_rates``. It has no ``automatic_tax``
and no one-off invoice to carry ``footer`` or ``custom_fields``. The tests below check each of these
requests as the connector sends them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

import localstripe  # noqa: E402, F401  (a test dependency: installed with .[test], never skipped)

from hub import CredentialsError, VendorError  # noqa: E402
from plugins.stripe.client import StripeClient  # noqa: E402
from plugins.stripe.plugin import (  # noqa: E402
    StripeConnector,
    StripeSettings,
    tax_rate_key,
    to_customer_params,
    to_invoice_item_params,
    to_line_params,
    to_tax_rate_params,
)
from plugins.stripe.tests.helpers import FakeContext, make_action, quiet_retry_policy  # noqa: E402

KEY = "sk_test_localstripe"

BOOTSTRAP = """
import sys
from localstripe import resources
resources.Store.dump_to_disk = lambda self: None
resources.Store.try_load_from_disk = lambda self: None
from aiohttp import web
from localstripe.server import app
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def localstripe_url(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("localstripe")
    port = free_port()
    log = open(workdir / "localstripe.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", BOOTSTRAP, str(port)], cwd=workdir,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"localstripe exited with {proc.returncode}: "
                            f"{(workdir / 'localstripe.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/v1/customers", auth=(KEY, ""), timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("localstripe did not answer within 15 s")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def connector(url, **settings):
    def retrying():  # one attempt: localstripe's 500s are not transient
        return quiet_retry_policy().copy(stop=lambda state: True)
    return StripeConnector(StripeSettings(api_key=KEY, base_url=url, line_mode="invoiceitems", **settings),
                           retrying=retrying)


def get(url, path):
    return httpx.get(f"{url}{path}", auth=(KEY, "")).json()


def test_push_stops_at_the_search_localstripe_lacks_and_creates_nothing(localstripe_url):
    context = FakeContext()
    conn = connector(localstripe_url)
    try:
        with pytest.raises(VendorError) as info:
            conn.push(make_action(client_id="acme-ls"), context)
    finally:
        conn.close()
    assert (info.value.method, info.value.url) == ("GET", "/v1/customers/search")
    assert context.get_link("acme-ls", "stripe") is None
    assert not [c for c in get(localstripe_url, "/v1/customers?limit=100")["data"]
                if c["metadata"].get("msp_hub_client_id") == "acme-ls"]


def test_the_customer_is_created_with_its_metadata(localstripe_url):
    client = StripeClient(localstripe_url, KEY, retrying=quiet_retry_policy)
    try:
        created = client.create_customer(to_customer_params(make_action(client_id="acme-ls2")),
                                          idempotency_key="msp-hub:customer:acme-ls2:create")
    finally:
        client.close()
    customer = get(localstripe_url, f"/v1/customers/{created['id']}")
    assert customer["name"] == "Acme Dental" and customer["metadata"] == {"msp_hub_client_id": "acme-ls2"}


def test_a_pending_invoice_item_keeps_amount_currency_and_metadata(localstripe_url):
    client = StripeClient(localstripe_url, KEY, retrying=quiet_retry_policy)
    try:
        customer = client.create_customer({"name": "Globex", "metadata": {"msp_hub_client_id": "globex"}},
                                          idempotency_key="msp-hub:customer:globex:create")
        # the fractional line, sent as an amount: localstripe knows no quantity x unit amount
        line = to_line_params(make_action().payload["lines"][1], 1790812800, 1793491200, "eur")
        params = to_invoice_item_params(line, customer_id=customer["id"], invoice_id="unused", currency="eur")
        del params["invoice"], params["period"]  # localstripe takes neither on a pending item
        item = client.create_invoice_item(params, idempotency_key="msp-hub:test:item")
        with pytest.raises(VendorError, match="Unexpected period") as refused:
            client.create_invoice_item({**params, "period": line["period"]}, idempotency_key="msp-hub:test:item2")
    finally:
        client.close()
    assert (item["amount"], item["currency"], item["customer"]) == (2500, "eur", customer["id"])
    assert item["description"] == "Managed servers (prorated) (2.5 x 10.00 EUR)"
    assert item["metadata"] == {"msp_hub_line": "server", "msp_hub_quantity": "2.5",
                                "msp_hub_unit_amount": "1000"}
    assert refused.value.status == 400


def test_localstripe_errors_map_to_hub_errors(localstripe_url):
    bad = StripeClient(localstripe_url, "not-a-stripe-key", retrying=quiet_retry_policy)
    good = StripeClient(localstripe_url, KEY, retrying=quiet_retry_policy)
    try:
        with pytest.raises(CredentialsError) as denied:
            bad.retrieve_invoice("in_missing")
        with pytest.raises(VendorError) as missing:
            good.retrieve_invoice("in_missing")
    finally:
        bad.close()
        good.close()
    assert denied.value.status == 401 and "not-a-stripe-key" not in str(denied.value)
    assert type(missing.value) is VendorError and missing.value.status == 404
    assert "Not Found" in missing.value.detail


# --- tax rates and the client's details ----------------------------------------------------------

def test_a_tax_rate_is_created_with_its_key_and_found_again_in_the_list(localstripe_url):
    client = StripeClient(localstripe_url, KEY, retrying=quiet_retry_policy)
    try:
        params = to_tax_rate_params("5.5", "TVA", None)  # localstripe refuses a rate's country
        created = client.create_tax_rate(params, idempotency_key="msp-hub:tax_rate:-:5.5:TVA:create")
        with pytest.raises(VendorError, match="Unexpected country"):
            client.create_tax_rate(to_tax_rate_params("20", "TVA", "FR"), idempotency_key="msp-hub:test:rate")
        listed = [r for r in client.iter_tax_rates()
                  if (r.get("metadata") or {}).get("msp_hub_tax_rate") == tax_rate_key("5.5", "TVA", None)]
    finally:
        client.close()
    assert [r["id"] for r in listed] == [created["id"]]
    assert (created["percentage"], created["inclusive"], created["display_name"]) == (5.5, False, "TVA")
    assert created["description"] == "TVA 5.5 %, made by msp-hub"


def test_an_invoice_item_takes_its_tax_rate(localstripe_url):
    client = StripeClient(localstripe_url, KEY, retrying=quiet_retry_policy)
    try:
        rate = client.create_tax_rate(to_tax_rate_params("20", "TVA", None), idempotency_key="msp-hub:test:r20")
        customer = client.create_customer({"name": "Initech", "metadata": {"msp_hub_client_id": "initech"}},
                                          idempotency_key="msp-hub:customer:initech:create")
        line = to_line_params(make_action().payload["lines"][1], 1790812800, 1793491200, "eur", rate["id"])
        params = to_invoice_item_params(line, customer_id=customer["id"], invoice_id="unused", currency="eur")
        del params["invoice"], params["period"]
        item = client.create_invoice_item(params, idempotency_key="msp-hub:test:taxed-item")
    finally:
        client.close()
    assert [r["id"] for r in item["tax_rates"]] == [rate["id"]] and item["amount"] == 2500


def test_the_customer_is_created_with_the_clients_details(localstripe_url):
    details = {"email": "compta@acme.fr", "vat_number": "FR12123456789", "locale": "fr-FR",
               "address": {"line1": "12 rue de la Paix", "city": "Paris", "postal_code": "75002", "country": "FR"}}
    client = StripeClient(localstripe_url, KEY, retrying=quiet_retry_policy)
    try:
        created = client.create_customer(to_customer_params(make_action(client_id="acme-fr", customer=details)),
                                          idempotency_key="msp-hub:customer:acme-fr:create")
        tax_ids = client.retrieve_customer(created["id"], expand=["tax_ids"])["tax_ids"]["data"]
    finally:
        client.close()
    customer = get(localstripe_url, f"/v1/customers/{created['id']}")
    assert customer["email"] == "compta@acme.fr" and customer["preferred_locales"] == ["fr-FR"]
    assert customer["address"]["city"] == "Paris" and customer["address"]["country"] == "FR"
    assert [(t["type"], t["value"]) for t in tax_ids] == [("eu_vat", "FR12123456789")]


def test_changed_details_are_written_once_then_nothing(localstripe_url):
    conn = connector(localstripe_url)
    try:
        old = conn.client.create_customer(
            {"name": "Acme Dental", "email": "old@acme.fr", "tax_id_data": [{"type": "eu_vat", "value": "FR99999999999"}],
             "metadata": {"msp_hub_client_id": "acme-up"}}, idempotency_key="msp-hub:customer:acme-up:create")
        details = {"email": "compta@acme.fr", "vat_number": "FR12123456789", "locale": "fr-FR",
                   "address": {"line1": "12 rue de la Paix", "city": "Paris", "country": "FR"}}
        action = make_action(client_id="acme-up", customer=details)
        first = conn._update_customer(action, action.payload, old["id"], FakeContext())
        second = conn._update_customer(action, action.payload, old["id"], FakeContext())
        tax_ids = conn.client.retrieve_customer(old["id"], expand=["tax_ids"])["tax_ids"]["data"]
    finally:
        conn.close()
    assert first == ["email", "address", "preferred_locales", "VAT number"] and second == []
    customer = get(localstripe_url, f"/v1/customers/{old['id']}")
    assert (customer["email"], customer["address"]["line1"]) == ("compta@acme.fr", "12 rue de la Paix")
    assert [t["value"] for t in tax_ids] == ["FR12123456789"]
