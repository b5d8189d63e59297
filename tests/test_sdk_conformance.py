"""The extended conformance suite on the three built-in plugins, pushes included: what each
passes, and what its simulator cannot try (said, never silently skipped)."""

from __future__ import annotations

import importlib

from hub.http import retry_policy
from hub.records import Action
from hub.testing import assert_plugin_conforms, mock_client
from plugins.connectwise.simulator import ConnectWiseSimulator
from plugins.ninjaone.simulator import NinjaOneSimulator
from plugins.stripe.plugin import StripeConnector, StripeSettings
from plugins.stripe.simulator import StripeSimulator

NO_WAIT = lambda: retry_policy(sleep=lambda s: None)  # noqa: E731


def _test_module(name: str):
    # The plugins' own test helpers (connector_for), imported by file: tests/ folders are not packages.
    return importlib.import_module(f"plugins.{name}.tests.test_plugin")


def test_ninjaone_passes_the_extended_suite():
    sim = NinjaOneSimulator(seed=0, alerts=3)
    connector = _test_module("ninjaone").connector_for(sim)
    try:
        report = assert_plugin_conforms(connector, sim)
    finally:
        connector.close()
    assert "a 401 fails only the stream's pass, recorded as failed" in report.passed
    assert "a malformed page past the retries fails only the stream's pass, recorded as failed" in report.passed
    assert report.not_run == ["a record that fails mapping (the simulator has no add_unmappable(table))"]


def test_connectwise_passes_the_extended_suite_and_pushes_a_ticket_once_after_a_lost_answer():
    sim = ConnectWiseSimulator(seed=0, tickets=12)
    connector = _test_module("connectwise").connector_for(sim)
    connector.follow_tickets(frozenset({str(sim.ids("tickets")[0])}))   # as if the hub had adopted one
    company = sim.ids("companies")[0]
    ticket = Action("ticket:ninjaone:77", "ticket", "connectwise", "acme",
                    {"external_ref": "ninjaone:77", "summary": "Disk full on SRV-01", "board": "Alerts",
                     "company_id": str(company), "initial_description": "C: is 98% full"})
    before = len(sim.ids("tickets"))
    try:
        report = assert_plugin_conforms(connector, sim, actions=[ticket])
    finally:
        connector.close()
    assert "ticket ticket:ninjaone:77 is pushed once (an answer lost, then retried)" in report.passed
    assert len(sim.ids("tickets")) == before + 1
    assert report.not_run == ["a record that fails mapping (the simulator has no add_unmappable(table))"]


def test_stripe_pushes_an_invoice_once_when_the_engine_retries_it():
    from plugins.stripe.tests.helpers import API_KEY, BASE_URL, make_action
    sim = StripeSimulator(api_key=API_KEY)
    connector = StripeConnector(StripeSettings(api_key=API_KEY, base_url=BASE_URL),
                                http=mock_client(sim.handler, BASE_URL), retrying=NO_WAIT)
    try:
        report = assert_plugin_conforms(connector, sim, actions=[make_action()])
    finally:
        connector.close()
    assert report.passed == ["invoice invoice:acme:2026-10 is pushed once (retried)"]
    assert len(sim.invoices) == 1
