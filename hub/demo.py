"""``msp-hub demo``: the whole hub against the NinjaOne and Stripe simulators on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import click

from hub.cli import render_errors, render_plan, render_push
from hub.config import load_config
from hub.engine import Hub, sync_once
from hub.logs import configure_logging
from hub.money import format_minor
from hub.testing import serve

MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"
NINJA_SECRET_VAR, STRIPE_KEY_VAR = "MSP_HUB_DEMO_NINJAONE_SECRET", "MSP_HUB_DEMO_STRIPE_KEY"

CONFIG = """\
# Written by `msp-hub demo`: the simulators below run only while the demo runs.
timezone = "Europe/Paris"
database = "demo.db"
mappings = "{mappings}"

[connectors.ninjaone]
base_url = "{ninja_url}"
client_id = "{ninja_client_id}"
client_secret_env = "{ninja_var}"

[connectors.stripe]
base_url = "{stripe_url}"
api_key_env = "{stripe_var}"

[logging]
format = "console"
level = "warning"
"""


def seed_ninjaone(devices: int):
    """A seeded MSP: six organizations (one without a contract), mixed classes, some pending."""
    from plugins.ninjaone.simulator import NinjaOneSimulator
    return NinjaOneSimulator(seed=7, organizations=6, devices=devices, now=time.time())


def run_demo(*, devices: int = 300, workdir: str | None = None) -> None:
    from plugins.stripe.simulator import StripeSimulator

    ninja = seed_ninjaone(devices)
    stripe_sim = StripeSimulator(api_key="sk_test_msp_hub_demo")
    with contextlib.ExitStack() as stack:
        ninja_url = stack.enter_context(serve(ninja.handler))
        stripe_url = stack.enter_context(serve(stripe_sim.handler))
        folder = Path(workdir) if workdir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="msp-hub-demo-")))
        folder.mkdir(parents=True, exist_ok=True)
        for leftover in folder.glob("demo.db*"):
            leftover.unlink()
        config_path = folder / "msp-hub.toml"
        config_path.write_text(CONFIG.format(mappings=MAPPINGS.as_posix(), ninja_url=ninja_url,
                                             ninja_client_id=ninja.client_id, ninja_var=NINJA_SECRET_VAR,
                                             stripe_url=stripe_url, stripe_var=STRIPE_KEY_VAR))
        os.environ[NINJA_SECRET_VAR] = ninja.client_secret
        os.environ[STRIPE_KEY_VAR] = stripe_sim.api_key
        config = load_config(config_path)
        configure_logging(fmt="console", level="warning", secrets=config.secret_values())

        click.echo(f"NinjaOne simulator at {ninja_url}, Stripe simulator at {stripe_url}")
        click.echo(f"config and database in {folder}\n")
        click.echo("== first sync: pull, plan, push ==")
        hub = Hub(config)
        try:
            report = sync_once(hub)
            click.echo("pulled " + ", ".join(f"{k} {v}" for k, v in sorted(report.records.items()))
                       + f"; the run (pull, plan, push) took {report.seconds:.2f} s")
            render_plan(report, details=("create", "retry", "held"))
            click.echo()
            render_push(report)
            render_errors(report)
        finally:
            hub.close()

        click.echo("\n== second sync over the same data ==")
        hub = Hub(config)
        try:
            again = sync_once(hub)
            render_push(again)
        finally:
            hub.close()

        invoices = stripe_sim.list_objects("invoice")
        customers = len(stripe_sim.list_objects("customer"))
        click.echo(f"\nStripe simulator now holds {len(invoices)} invoice(s) for {customers} customer(s), "
                   f"after {stripe_sim.requests} requests (minimum: 1 per new customer + 3 per invoice "
                   f"= {customers + 3 * len(invoices)}):")
        for inv in sorted(invoices, key=lambda i: i["metadata"].get("msp_hub_action_key", "")):
            click.echo(f"  {inv['id']}  {inv['status']:<6} {inv['metadata'].get('msp_hub_action_key', '')}"
                       f"  {format_minor(inv['total'], inv['currency'])}  {len(inv['lines']['data'])} line(s)")
        assert len(invoices) == len(report.pushed), "the second sync must not create invoices"
