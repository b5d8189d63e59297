"""Linking clients across systems: explicit links, normalised names, suggestions, unmapped."""

import pytest

from hub.linking import HubClient, link_clients, normalise_name
from hub.records import Client


@pytest.mark.parametrize("name, normal", [
    ("Acme Dental, Inc.", "acme dental"),
    ("ACME DENTAL LLC", "acme dental"),
    ("Café Dupont & Fils S.A.R.L.", "cafe dupont and fils"),
    ("Müller GmbH", "muller"),
    ("The Company", "the"),
    ("Co", "co"),
])
def test_normalise_name(name, normal):
    assert normalise_name(name) == normal


def test_explicit_links_win_then_names_link_then_the_rest_is_unmapped_with_suggestions():
    explicit = [HubClient("acme", "Acme Dental", {"ninjaone": "1"})]
    records = [
        Client("ninjaone", "1", "ACME (old name)"),
        Client("connectwise", "250", "Acme Dental LLC"),        # same normalised name -> linked
        Client("connectwise", "251", "Birchwood Legal"),         # master: becomes a hub client
        Client("ninjaone", "2", "Birchwood Legal Ltd."),         # linked by name to the master client
        Client("ninjaone", "3", "Cobalt Logistcs"),              # typo: suggestion only
        Client("connectwise", "252", "Cobalt Logistics"),
        Client("ninjaone", "4", "Zebra Unrelated"),
    ]
    reg = link_clients(explicit, records, master="connectwise")
    assert reg.clients["acme"].links == {"ninjaone": "1", "connectwise": "250"}
    assert reg.clients["acme"].how == {"ninjaone": "explicit", "connectwise": "name"}
    assert reg.clients["connectwise-251"].links == {"connectwise": "251", "ninjaone": "2"}
    assert [(u.source, u.source_id) for u in reg.unmapped] == [("ninjaone", "3"), ("ninjaone", "4")]
    (s,) = reg.suggestions
    assert (s.source_id, s.client_id) == ("3", "connectwise-252") and 0.75 <= s.confidence < 1
    assert reg.client_for("ninjaone", "2") == "connectwise-251"
    assert reg.client_for("ninjaone", "4") is None


def test_a_name_matching_several_clients_is_not_guessed():
    explicit = [HubClient("a1", "Acme"), HubClient("a2", "ACME Inc")]
    reg = link_clients(explicit, [Client("ninjaone", "9", "acme")])
    assert reg.unmapped and reg.conflicts and "several hub clients" in reg.conflicts[0]


def test_one_record_linked_twice_is_a_conflict():
    explicit = [HubClient("a", "A", {"ninjaone": "1"}), HubClient("b", "B", {"ninjaone": "1"})]
    reg = link_clients(explicit, [])
    assert "linked to both a and b" in reg.conflicts[0]
