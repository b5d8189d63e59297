"""Helpers for the Stripe tests: a sample invoice action, a fake push context, crash injection."""

from __future__ import annotations

import copy
import fnmatch
import warnings
from typing import Any

import httpx

from hub import Action
from hub.http import retry_policy
from hub.testing import MemoryPushContext
from plugins.stripe.simulator import StripeSimulator

BASE_URL = "http://simulator.test"
API_KEY = "sk_test_hub"

PAYLOAD = {
    "client_name": "Acme Dental", "currency": "EUR", "period": "2026-10",
    "period_start": "2026-10-01T00:00:00+00:00", "period_end": "2026-11-01T00:00:00+00:00",
    "description": "Managed services, October 2026", "total": 6300 + 2500 + 4900,
    "lines": [
        {"code": "workstation", "description": "Managed workstations", "quantity": "42",
         "unit_amount": 150, "amount": 6300},
        {"code": "server", "description": "Managed servers (prorated)", "quantity": "2.5",
         "unit_amount": 1000, "amount": 2500},
        {"code": "backup", "description": "Backup, flat fee", "quantity": "1",
         "unit_amount": 4900, "amount": 4900},
    ],
}


def make_action(client_id: str = "acme", period: str = "2026-10", **changes: Any) -> Action:
    payload = copy.deepcopy(PAYLOAD)
    payload.update(changes)
    return Action(key=f"invoice:{client_id}:{period}", kind="invoice", connector="stripe",
                  client_id=client_id, payload=payload, period=period)


def make_lines(n: int) -> list[dict]:
    return [{"code": f"line-{i}", "description": f"Line {i}", "quantity": "1", "unit_amount": 100 + i,
             "amount": 100 + i} for i in range(n)]


FakeContext = MemoryPushContext   # the harness's in-memory PushContext


class Crash(BaseException):
    """The process dying mid-push: neither the client nor the retry policy catches it."""


def crash_after(sim: StripeSimulator, path_glob: str, method: str = "POST"):
    """A handler that forwards to ``sim`` and then dies once, after a matching request ran."""
    state = {"armed": True}

    def handler(request: httpx.Request) -> httpx.Response:
        response = sim.handler(request)
        if state["armed"] and request.method == method and fnmatch.fnmatchcase(request.url.path, path_glob):
            state["armed"] = False
            raise Crash(f"died after {method} {request.url.path}")
        return response

    return handler


def quiet_retry_policy(sleeps: list[float] | None = None):
    """The hub's policy with sleeps recorded instead of slept."""
    sleeps = sleeps if sleeps is not None else []
    with warnings.catch_warnings():  # hub.http passes a tenacity argument newer tenacity deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        return retry_policy(sleep=sleeps.append)
