"""The test kit as pytest fixtures. Load it from your plugin's top ``conftest.py``::

    pytest_plugins = ["hub.testing.fixtures"]

Explicit rather than a ``pytest11`` entry point: the fixtures (and the hub they import) load for
the tests that ask for them, never for every pytest run in an environment where msp-hub happens
to be installed, and their names cannot shadow another project's.

Fixtures:

* ``serve_simulator(simulator) -> base URL``: the simulator served over real HTTP on loopback
  until the test ends (``hub.testing.serve``);
* ``hub_for(*plugins, config=None, mappings=None, clock=None) -> Hub``: ``hub.testing.make_hub``,
  closed when the test ends;
* ``no_wait_retry``: a ``retrying`` factory for clients, the hub's policy without the sleeps;
* ``hub_config(**sections) -> HubConfig``: a config built in code, e.g.
  ``hub_config(connectors={"acme": {...}}, environ={"ACME_KEY": "k"})``.

While a test runs, structlog's debug and info lines are dropped (``hub.testing.quiet_logging``)
and the set-up is restored afterwards.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable

import pytest
import structlog

from hub.config import HubConfig
from hub.http import retry_policy
from hub.testing import make_hub, quiet_logging, serve


@pytest.fixture(autouse=True)
def _msp_hub_quiet_logs():
    saved = structlog.get_config()
    quiet_logging()
    yield
    structlog.configure(**saved)


@pytest.fixture
def serve_simulator() -> Callable[[Any], str]:
    """Serve ``simulator.handler`` over HTTP; returns its base URL (stopped after the test)."""
    with contextlib.ExitStack() as stack:
        def start(simulator) -> str:
            handler = getattr(simulator, "handler", simulator)
            return stack.enter_context(serve(handler))
        yield start


@pytest.fixture
def hub_for():
    """Build a hub around plugins (``hub.testing.make_hub``); every hub is closed after the test."""
    hubs = []

    def build(*plugins, **kwargs):
        hub = make_hub(*plugins, **kwargs)
        hubs.append(hub)
        return hub
    yield build
    for hub in hubs:
        hub.close()


@pytest.fixture
def no_wait_retry():
    """The hub's retry policy with no sleep between attempts: pass it as a client's ``retrying``."""
    return lambda: retry_policy(sleep=lambda seconds: None)


@pytest.fixture
def hub_config(tmp_path: Path):
    """Build a ``HubConfig`` in code: keyword arguments are its fields (``connectors``, ``environ``,
    ``billing``...); the database is in memory and ``mappings`` defaults to none."""
    def build(**fields) -> HubConfig:
        fields.setdefault("database", ":memory:")
        fields.setdefault("path", tmp_path / "msp-hub.toml")
        return HubConfig(**fields)
    return build
