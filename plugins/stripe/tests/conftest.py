"""Fixtures for the Stripe tests: a simulator and a connector wired to it."""

from __future__ import annotations

import pytest

from hub.testing import mock_client
from plugins.stripe.plugin import StripeConnector, StripeSettings
from plugins.stripe.simulator import StripeSimulator
from plugins.stripe.tests.helpers import (
    API_KEY,
    BASE_URL,
    FakeContext,
    quiet_retry_policy,
)


@pytest.fixture
def sim() -> StripeSimulator:
    return StripeSimulator(api_key=API_KEY)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def connect(sim, sleeps):
    """``connect(handler=None, **settings)`` -> a StripeConnector talking to the simulator."""
    made = []

    def make(handler=None, **settings) -> StripeConnector:
        options = {"api_key": API_KEY, "base_url": BASE_URL, **settings}
        connector = StripeConnector(StripeSettings(**options), http=mock_client(handler or sim.handler, BASE_URL),
                                    retrying=lambda: quiet_retry_policy(sleeps))
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


@pytest.fixture
def context() -> FakeContext:
    return FakeContext()
