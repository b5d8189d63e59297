"""Tenants against the simulators over HTTP, for the workers' tests and benchmark.

A ``SimulatedTenant`` is the demo's MSP (``hub.demo``'s seeds: NinjaOne devices and alerts,
ConnectWise companies, agreements and time, a Stripe account) served on 127.0.0.1, with its own
config folder (msp-hub.toml, secrets.env, its SQLite store). ``write_deployment`` writes the
tenants.toml that names them all and the queue's database. ``pushed`` counts what reached the
simulators, by action key: an invoice or a ticket pushed twice shows as a count of 2.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import httpx

from hub.testing import serve

SECRETS = {"ninja": "MSP_HUB_NINJAONE_SECRET", "stripe": "MSP_HUB_STRIPE_KEY", "cw": "MSP_HUB_CONNECTWISE_KEY"}
KEY = "msp_hub_action_key"


@dataclass
class SimulatedTenant:
    name: str
    folder: Path
    devices: int = 300
    slow_invoice: float = 0.0      # seconds the Stripe simulator waits before answering an invoice's creation
    ninja: object = field(init=False)
    cw: object = field(init=False)
    stripe: object = field(init=False)

    def __post_init__(self):
        from hub.demo import seed_connectwise, seed_ninjaone
        from hub.periods import last_ended_period
        from plugins.stripe.simulator import StripeSimulator
        self.ninja = seed_ninjaone(self.devices)
        self.cw = seed_connectwise(last_ended_period(datetime.now(timezone.utc), "Europe/Paris"))
        self.stripe = StripeSimulator(api_key=f"sk_test_{self.name.replace('-', '_')}")
        # Each MSP its own vendor accounts: no two tenants may share a secret.
        self.ninja.client_secret = f"sim-client-secret-{self.name}"
        self.cw.private_key = f"sim-private-key-{self.name}"

    def stripe_handler(self, request: httpx.Request) -> httpx.Response:
        response = self.stripe.handler(request)
        if self.slow_invoice and request.method == "POST" and request.url.path == "/v1/invoices":
            time.sleep(self.slow_invoice)   # created at the vendor; the answer is late
        return response

    def serve(self, stack: contextlib.ExitStack) -> None:
        """Serve the three simulators and write the tenant's config and secrets."""
        from hub.demo import CONFIG
        from hub.init import demo_mappings
        urls = {k: stack.enter_context(serve(h)) for k, h in
                (("ninja", self.ninja.handler), ("stripe", self.stripe_handler), ("cw", self.cw.handler))}
        self.folder.mkdir(parents=True, exist_ok=True)
        text = CONFIG.format(mappings=demo_mappings().as_posix(), ninja_url=urls["ninja"],
                             ninja_client_id=self.ninja.client_id, ninja_var=SECRETS["ninja"],
                             stripe_url=urls["stripe"], stripe_var=SECRETS["stripe"], cw_url=urls["cw"],
                             cw_company=self.cw.company_id, cw_public=self.cw.public_key, cw_var=SECRETS["cw"],
                             cw_client_id=self.cw.client_id)
        self.config.write_text(text.replace('database = "demo.db"', f'database = "{self.name}.db"'))
        self.secrets.write_text(f"{SECRETS['ninja']}={self.ninja.client_secret}\n"
                                f"{SECRETS['stripe']}={self.stripe.api_key}\n"
                                f"{SECRETS['cw']}={self.cw.private_key}\n")

    @property
    def config(self) -> Path:
        return self.folder / "msp-hub.toml"

    @property
    def secrets(self) -> Path:
        return self.folder / "secrets.env"

    @property
    def database(self) -> Path:
        return self.folder / f"{self.name}.db"

    def add_schedule(self, text: str) -> None:
        self.config.write_text(self.config.read_text() + "\n" + text)

    def invoices(self) -> Counter:
        """Invoices at the Stripe simulator per action key."""
        return Counter(i["metadata"].get(KEY, "") for i in self.stripe.list_objects("invoice"))

    def tickets(self) -> Counter:
        """The hub's tickets at the ConnectWise simulator per external reference (its people's
        tickets, which carry none or another integration's, are not the hub's)."""
        refs = (self.cw.record("tickets", i).get("externalXRef") for i in self.cw.ids("tickets"))
        return Counter(ref for ref in refs if str(ref).startswith("msp-hub:"))

    def pushed(self) -> Counter:
        return self.invoices() + self.tickets()

    def outbox(self) -> list[dict]:
        """The tenant store's actions (key, kind, status)."""
        import sqlite3
        if not self.database.exists():
            return []
        with contextlib.closing(sqlite3.connect(self.database)) as db:
            return [{"key": k, "kind": kind, "status": s} for k, kind, s in
                    db.execute("select key, kind, status from actions order by key")]

    def runs(self) -> list[dict]:
        import json
        import sqlite3
        if not self.database.exists():
            return []
        with contextlib.closing(sqlite3.connect(self.database)) as db:
            db.row_factory = sqlite3.Row
            return [dict(r) | {"errors": json.loads(r["errors"] or "[]")} for r in
                    db.execute("select id, status, trigger, job, errors, started_at, finished_at from runs order by started_at")]


def write_deployment(path: Path, tenants: list[SimulatedTenant], database: str, **workers) -> Path:
    """tenants.toml naming ``tenants`` and a ``[workers]`` table on ``database``."""
    lines = []
    for t in tenants:
        lines += [f"[tenants.{t.name}]", f'config = "{t.config}"', f'secrets_file = "{t.secrets}"', ""]
    lines += ["[workers]", f'database = "{database}"']
    for key, value in workers.items():
        lines.append(f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"')
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_for(predicate: Callable[[], object], timeout: float, what: str, poll: float = 0.1):
    """Poll ``predicate`` until it returns something true; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)
