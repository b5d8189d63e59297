"""Fixtures: the NinjaOne and Stripe simulators, connectors talking to them, and a hub."""

import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hub.config import Secret
from hub.http import retry_policy
from hub.testing import ConnectorPlugin, make_hub, mock_client
from plugins.ninjaone.plugin import NinjaOneConnector, NinjaOneSettings
from plugins.ninjaone.simulator import NinjaOneSimulator
from plugins.stripe.plugin import StripeConnector, StripeSettings
from plugins.stripe.simulator import StripeSimulator

ROOT = Path(__file__).resolve().parents[1]
# Test modules are imported without touching sys.path (--import-mode=importlib); processes a test
# spawns (multiprocessing's "spawn") import its functions by module name, from the checkout.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def mappings_for_tests(tmp_path: Path, contracts: Path = FIXTURES / "contracts.toml") -> Path:
    """The repository's mappings with the tests' own contracts (five clients on NinjaOne orgs 1-5)."""
    import shutil
    target = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", target, dirs_exist_ok=True)
    shutil.copy(contracts, target / "contracts.toml")
    return target
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)   # the last ended period is 2026-10
SEEN = datetime(2026, 11, 20, tzinfo=timezone.utc).timestamp()


def fast_retry():
    return retry_policy(attempts=3, initial=0.0, max_wait=0.0, sleep=lambda s: None)


class Env:
    """Two simulators, their connectors and a hub over the repository's mappings."""

    def __init__(self, tmp_path: Path, devices: int = 120, mappings=None):
        self.tmp_path = tmp_path
        self.ninja = NinjaOneSimulator(seed=3, organizations=6, devices=devices, now=SEEN)
        self.stripe = StripeSimulator(api_key="sk_test_hub_tests")
        self.stripe_handler = self.stripe.handler
        self.mappings = mappings or mappings_for_tests(tmp_path)
        self.db = str(tmp_path / "hub.db")
        self.plugins = []

    def connectors(self):
        ninja = NinjaOneConnector(
            NinjaOneSettings(client_id=self.ninja.client_id, client_secret=Secret(self.ninja.client_secret, "test"),
                             base_url="https://eu.ninjarmm.test"),
            http=mock_client(self.ninja.handler, "https://eu.ninjarmm.test"), retrying=fast_retry)
        stripe = StripeConnector(StripeSettings(api_key=Secret(self.stripe.api_key, "test"),
                                                base_url="https://api.stripe.test"),
                                 http=mock_client(lambda r: self.stripe_handler(r), "https://api.stripe.test"),
                                 retrying=fast_retry)
        return ninja, stripe

    def hub(self, *plugins, clock=NOW):
        from hub.store import Store
        return make_hub(ConnectorPlugin(*self.connectors()), *self.plugins, *plugins, mappings=self.mappings,
                        store=Store(self.db), clock=lambda: clock)

    def invoices(self):
        return self.stripe.list_objects("invoice")


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server for the session (initdb/pg_ctl in a temporary folder)."""
    from hub.pgserver import PostgresServer
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres, request):
    """A fresh, empty database of the session's server for one test."""
    import re
    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50]
    return postgres.create_database(name)
