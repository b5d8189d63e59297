"""Ticket references and configurations looked up many at a time: one request for a batch, paged,
within the URL IIS accepts, and exactly once (a ticket found is reused, after a crash too)."""

from __future__ import annotations

from urllib.parse import quote as url_quote

import pytest

from hub import Action, VendorError
from hub.errors import CredentialsError
from hub.http import retry_policy
from hub.store import SENDING, Store
from hub.testing import MemoryPushContext, mock_client
from plugins.connectwise.client import MAX_CONDITIONS_URL, ConnectWiseClient, ref_batches
from plugins.connectwise.plugin import ConnectWiseConnector, ConnectWiseSettings
from plugins.connectwise.simulator import MAX_QUERY_STRING, ConnectWiseSimulator
from plugins.connectwise.tests.test_tickets import config
from hub.config import Secret


@pytest.fixture
def sim() -> ConnectWiseSimulator:
    return ConnectWiseSimulator(seed=2, companies=3, agreements=0, time_entries=0, products=0)


def client_for(sim, page_size=1000) -> ConnectWiseClient:
    return ConnectWiseClient("https://api-eu.myconnectwise.net", sim.company_id, sim.public_key,
                             Secret(sim.private_key, "test"), sim.client_id, http=mock_client(sim.handler),
                             retrying=lambda: retry_policy(attempts=2, sleep=lambda s: None), page_size=page_size)


def lookups(sim) -> list[str]:
    """The conditions of every ticket lookup by reference the simulator served, in order."""
    return [q["conditions"] for method, path, q in sim.log if method == "GET" and path == "/service/tickets"
            and q.get("conditions", "").startswith("externalXRef ")]


def test_one_request_looks_up_many_references(sim):
    company = sim.ids("companies")[0]
    made = {f"msp-hub:ticket:ninjaone:{n}": sim.add_ticket(f"alert {n}", company, external_ref=f"msp-hub:ticket:ninjaone:{n}",
                                                           member=sim.api_member) for n in range(0, 20, 2)}
    refs = [f"msp-hub:ticket:ninjaone:{n}" for n in range(20)]
    found = client_for(sim).find_tickets_by_refs(refs)
    assert {ref: [t["id"] for t in tickets] for ref, tickets in found.items()} == {
        ref: [made[ref]] if ref in made else [] for ref in refs}
    # One request, and the empty page after it that ends a read whose answers carry no Link header.
    assert lookups(sim) == ["externalXRef in (" + ", ".join(f'"{r}"' for r in refs) + ")"] * 2
    assert sim.requests == 2 and "pageId" in sim.log[-1][2]


def test_a_batch_is_paged_past_the_page_size(sim):
    company = sim.ids("companies")[0]
    refs = [f"msp-hub:ticket:ninjaone:p{n}" for n in range(5)]
    for ref in refs:
        sim.add_ticket(ref, company, external_ref=ref, member=sim.api_member)
    sim.add_ticket("a second one", company, external_ref=refs[0], member=sim.api_member)
    found = client_for(sim, page_size=2).find_tickets_by_refs(refs)
    assert [len(found[r]) for r in refs] == [2, 1, 1, 1, 1]
    assert found[refs[0]][0]["id"] < found[refs[0]][1]["id"]
    assert len(lookups(sim)) == 3            # six tickets, two a page


def test_references_compare_without_regard_to_case_as_connectwise_does(sim):
    company = sim.ids("companies")[0]
    ticket = sim.add_ticket("upper", company, external_ref="MSP-HUB:TICKET:X", member=sim.api_member)
    found = client_for(sim).find_tickets_by_refs(["msp-hub:ticket:x", "msp-hub:ticket:y"])
    assert [t["id"] for t in found["msp-hub:ticket:x"]] == [ticket] and found["msp-hub:ticket:y"] == []


def test_batches_keep_the_query_string_within_what_iis_accepts(sim):
    company = sim.ids("companies")[0]
    refs = [f"msp-hub:ticket:ninjaone:{n:04d}-" + "é&%\"x" * 14 for n in range(150)]   # ~100 characters each
    assert all(len(r) <= 100 for r in refs)
    for ref in refs[::7]:
        sim.add_ticket("long", company, external_ref=ref, member=sim.api_member)
    batches = ref_batches(refs)
    assert len(batches) > 1 and [r for b in batches for r in b] == refs
    found = client_for(sim).find_tickets_by_refs(refs)
    assert {r for r, t in found.items() if t} == set(refs[::7])
    # One request a batch (and the empty page ending each that found something: no Link header).
    assert sim.refused_queries == 0 and len(set(lookups(sim))) == len(batches)
    assert max(len(url_quote(c, safe="")) for c in lookups(sim)) <= MAX_CONDITIONS_URL < MAX_QUERY_STRING


def test_an_over_long_query_is_refused_like_iis_and_named_as_such(sim):
    client = client_for(sim)
    conditions = " or ".join(f'externalXRef = "msp-hub:{n:0>60}"' for n in range(40))
    with pytest.raises(VendorError) as caught:
        list(client.iter_pages("/service/tickets", conditions))
    assert not isinstance(caught.value, CredentialsError)
    assert "query string as too long (IIS HTTP Error 404.15" in str(caught.value)
    assert sim.refused_queries == 1


# --- the connector: batches for the pushes of a run ---------------------------------------------

class StoreContext(MemoryPushContext):
    """The engine's push context as a connector sees it: attempts, links and the outbox."""

    def __init__(self, store: Store, attempts: int = 0):
        super().__init__(attempts=attempts)
        self.store = store


def connector_for(sim) -> ConnectWiseConnector:
    return ConnectWiseConnector(ConnectWiseSettings.from_config(config()), http=mock_client(sim.handler),
                                retrying=lambda: retry_policy(attempts=2, sleep=lambda s: None))


def ticket_action(company, n, **configuration) -> Action:
    payload = {"external_ref": f"msp-hub:ticket:ninjaone:{n}", "summary": f"alert {n}", "board": "Alerts",
               "company_id": str(company)}
    if configuration:
        payload["configuration"] = configuration
    return Action(f"ticket:ninjaone:{n}", "ticket", "connectwise", "acme", payload)


def push_all(connector, store, actions) -> list:
    """Push the unsent actions by key, as the engine does."""
    results = []
    for row in store.unsent_actions("connectwise", ("ticket", "ticket_note")):
        action = next(a for a in actions if a.key == row["key"])
        attempts = store.mark_sending(row["key"])
        result = connector.push(action, StoreContext(store, attempts))
        store.mark_sent(row["key"], result.vendor_id, result.summary, result.details)
        results.append(result)
    return results


def test_the_pushes_of_a_run_share_one_lookup_and_each_creates_its_ticket(sim):
    store = Store()
    company = sim.ids("companies")[0]
    actions = [ticket_action(company, f"{n:02d}") for n in range(12)]
    for a in actions:
        store.record_action(a, "run-1")
    results = push_all(connector_for(sim), store, actions)
    assert [r.details["created"] for r in results] == [True] * 12
    hub_tickets = [sim.record("tickets", i) for i in sim.ids("tickets")]
    assert sorted(t["externalXRef"] for t in hub_tickets) == sorted(a.payload["external_ref"] for a in actions)
    assert len(lookups(sim)) == 1 and lookups(sim)[0].startswith("externalXRef in (")
    assert sim.requests_by_path["/service/tickets"] == 1 + 12        # the lookup, then one POST a ticket


def test_configurations_of_the_run_are_looked_up_in_one_request_each_push_keeping_its_company(sim):
    store = Store()
    first, second = sim.ids("companies")[:2]
    mine = sim.add_configuration(first, "PC-01", serial_number="CZ0001AAAA")
    sim.add_configuration(second, "PC-01", serial_number="CZ0002BBBB")   # same name, other company
    theirs = sim.add_configuration(second, "PC-02", serial_number="CZ0003CCCC")
    actions = [ticket_action(first, "a", name="PC-01", serial_number="0"),
               ticket_action(second, "b", name="PC-02", serial_number="CZ0003CCCC"),
               ticket_action(first, "c", name="PC-99")]
    for a in actions:
        store.record_action(a, "run-1")
    results = push_all(connector_for(sim), store, actions)
    assert [r.details["configuration"] for r in results] == [str(mine), str(theirs), None]
    asked = [q["conditions"] for m, p, q in sim.log if p == "/company/configurations"]
    assert len(set(asked)) == 1 and asked[0].startswith("(company/id in (")
    assert sim.ticket_configurations(int(results[0].vendor_id)) == [mine]


def test_a_ticket_created_before_a_crash_is_found_by_the_batch_and_not_made_again(sim):
    store = Store()
    company = sim.ids("companies")[0]
    actions = [ticket_action(company, n) for n in ("x", "y", "z")]
    for a in actions:
        store.record_action(a, "run-1")
    connector = connector_for(sim)
    # The first run creates x's ticket, then dies before recording it: x stays "sending".
    attempts = store.mark_sending(actions[0].key)
    made = connector.push(actions[0], StoreContext(store, attempts))
    assert store.get_action(actions[0].key)["status"] == SENDING
    before = len(lookups(sim))
    posts = sum(1 for m, p, _ in sim.log if m == "POST" and p == "/service/tickets")

    results = push_all(connector_for(sim), store, actions)        # the next run, a fresh process
    assert [r.details["created"] for r in results] == [False, True, True]
    assert results[0].vendor_id == made.vendor_id and "found by externalXRef" in results[0].summary
    assert sum(1 for i in sim.ids("tickets") if sim.record("tickets", i)["externalXRef"].endswith(":x")) == 1
    assert len(set(lookups(sim)[before:])) == 1                  # one batch for the three
    assert sum(1 for m, p, _ in sim.log if m == "POST" and p == "/service/tickets") - posts == 2


def test_a_push_tried_before_does_not_trust_a_batch_that_found_nothing(sim):
    """Its create may have reached ConnectWise after the batch was read (another process): it
    looks again alone before it creates."""
    store = Store()
    company = sim.ids("companies")[0]
    actions = [ticket_action(company, n) for n in ("p", "q")]
    for a in actions:
        store.record_action(a, "run-1")
    store.mark_sending(actions[1].key)
    store.mark_failed(actions[1].key, "timed out")                # q was attempted once
    results = push_all(connector_for(sim), store, actions)
    assert [r.details["created"] for r in results] == [True, True]
    assert lookups(sim) == ['externalXRef in ("msp-hub:ticket:ninjaone:p", "msp-hub:ticket:ninjaone:q")',
                            'externalXRef = "msp-hub:ticket:ninjaone:q"']


def test_a_note_finds_the_ticket_its_run_just_created_without_a_lookup(sim):
    store = Store()
    company = sim.ids("companies")[0]
    ticket = ticket_action(company, "n")
    note = Action("ticket_note:ninjaone:n", "ticket_note", "connectwise", "acme", {
        "ticket_external_ref": "msp-hub:ticket:ninjaone:n", "text": "it fired again"})
    for a in (ticket, note):
        store.record_action(a, "run-1")
    results = push_all(connector_for(sim), store, [ticket, note])
    assert results[1].details["ticket_id"] == results[0].vendor_id
    assert len(lookups(sim)) == 1
