"""The ``msp-hub`` command (click): sync, plan, plugins, actions, demo."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from hub.config import load_config
from hub.engine import Hub, RunReport, dumps, sync_once
from hub.errors import HubError
from hub.logs import configure_logging
from hub.money import format_minor

DEFAULT_CONFIG = "msp-hub.toml"


def _open_hub(config_path: str | None) -> Hub:
    path = config_path or os.environ.get("MSP_HUB_CONFIG") or DEFAULT_CONFIG
    try:
        config = load_config(path)
        configure_logging(fmt=config.logging.get("format", "console"), level=config.logging.get("level", "warning"),
                          secrets=config.secret_values())
        return Hub(config)
    except HubError as exc:
        raise click.ClickException(str(exc)) from None


def _run(config_path: str | None, **options) -> RunReport:
    """One ``sync_once`` on a hub opened from the config; user mistakes become one clear line."""
    hub = _open_hub(config_path)
    try:
        return sync_once(hub, **options)
    except (HubError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        hub.close()


config_option = click.option("--config", "config_path", metavar="PATH",
                             help=f"The config file (default: $MSP_HUB_CONFIG or ./{DEFAULT_CONFIG}).")


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]], echo, right: tuple[int, ...] = ()) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    echo("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    echo("  ".join("-" * w for w in widths))
    for r in rows:
        echo("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())


def _what(p) -> str:
    if p.kind == "invoice":
        return "renewal" if p.action and p.action.key.startswith("renewal:") else "invoice"
    return p.kind.replace("_", " ")


def render_plan(report: RunReport, *, details: bool | tuple[str, ...] = False, out=None) -> None:
    """Print the plan as a readable table, the three counts of agreement additions, then the
    discrepancies. ``details``: True explains every line; a tuple of statuses explains only those."""
    echo = (lambda s="": click.echo(s, file=out))
    invoices = [p for p in report.plan if p.bill is not None]
    others = [p for p in report.plan if p.bill is None and p.kind != "agreement_quantity"]
    rows = [(p.client_id, p.client_name[:24], p.period, _what(p), p.status, format_minor(p.total, p.bill.currency),
             str(len(p.bill.lines))) for p in invoices]
    echo_rows = []
    _table(("client", "name", "period", "action", "status", "total", "lines"), rows, echo_rows.append, right=(5,))
    echo(echo_rows[0])
    echo(echo_rows[1])
    for p, line in zip(invoices, echo_rows[2:]):
        echo(line)
        for reason in p.reasons:
            echo(f"    ! {reason}")
        if p.bill and (details is True or (details and p.status in details)):
            for l in p.bill.lines:
                names = ", ".join(str(d.get("name") or d.get("id")) for d in l.items[:4])
                more = f" and {len(l.items) - 4} more" if len(l.items) > 4 else ""
                echo(f"    {l.description}: {l.quantity} x {format_minor(l.unit_amount, l.currency)}"
                     f" = {format_minor(l.amount, l.currency)}")
                echo(f"      rule: {l.rule}")
                if l.items:
                    echo(f"      counts: {names}{more}")
            if p.bill.excluded:
                reasons: dict[str, int] = {}
                for e in p.bill.excluded:
                    reasons[e.reason.split(" (")[0]] = reasons.get(e.reason.split(" (")[0], 0) + 1
                echo("    excluded: " + "; ".join(f"{n} {r}" for r, n in sorted(reasons.items())))
            if p.bill.reported:
                why: dict[str, int] = {}
                for r in p.bill.reported:
                    why[str(r.get("reason"))] = why.get(str(r.get("reason")), 0) + 1
                echo("    not billed: " + "; ".join(f"{n} {r.replace('_', ' ')}" for r, n in sorted(why.items())))
            for note in p.bill.notes:
                echo(f"    note: {note}")
    for p in others:
        echo(f"{p.client_id}  {p.client_name}  {_what(p)}  {p.status}  {p.action.key if p.action else ''}")
        for reason in p.reasons:
            echo(f"    ! {reason}")
    if report.quantities:
        echo()
        echo("agreement additions: PSA quantity, RMM count, reconciled quantity")
        qrows = [(q.client_id, f"{q.agreement_id}/{q.addition_id}", q.product, str(q.psa_quantity), str(q.rmm_count),
                  str(q.reconciled), q.status) for q in report.quantities]
        _table(("client", "agreement/addition", "product", "PSA", "RMM", "reconciled", "status"), qrows, echo,
               right=(3, 4, 5))
        for q in report.quantities:
            for reason in q.reasons:
                echo(f"    ! {q.client_id} {q.product}: {reason}" + ("" if q.status == "held" else " (approved)"))
    counts: dict[str, int] = {}
    for p in report.plan:
        counts[p.status] = counts.get(p.status, 0) + 1
    echo()
    echo("plan: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing"))
    for d in report.discrepancies:
        echo(f"discrepancy [{d.kind}] {d.message}")


def render_push(report: RunReport, out=None) -> None:
    echo = (lambda s="": click.echo(s, file=out))
    for p in report.pushed:
        echo(f"pushed {p['key']} -> {p['vendor_id']} {p['summary']}")
    for f in report.failed:
        echo(f"FAILED {f['key']}: {f['error']}")
    for h in report.held:
        echo(f"held {h['key']}: {'; '.join(h['reasons'])} (approve with: msp-hub approve {h['key']})")
    if not report.pushed and not report.failed:
        sent = sum(1 for p in report.plan if p.status == "unchanged")
        echo(f"nothing new to push: {sent} action(s) due were already sent" if sent else "nothing to push")


def render_errors(report: RunReport) -> None:
    """Print the run's errors to stderr, leaving out the discrepancies already shown."""
    shown = {d.message for d in report.discrepancies}
    for e in report.errors:
        if e not in shown:
            click.echo(f"error: {e}", err=True)


@click.group()
@click.version_option(package_name="msp-hub")
def main():
    """msp-hub: make an RMM, a PSA and a billing system behave as one platform.

    Example:
        msp-hub demo
    """


@main.command()
@config_option
@click.option("--dry-run", is_flag=True, help="Pull and plan, but push nothing.")
@click.option("--period", metavar="YYYY-MM", help="Invoice this period even if it has not ended.")
@click.option("--connector", "connectors", multiple=True, help="Pull only this connector (repeatable).")
@click.option("--stream", "streams", multiple=True, help="Pull only this stream (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON.")
@click.option("--details", is_flag=True, help="Explain every line of the plan.")
def sync(config_path, dry_run, period, connectors, streams, as_json, details):
    """Pull from every connector, plan the invoices, and push what is new.

    A second sync over the same period pushes nothing and says so.

    Example:
        msp-hub sync --config msp-hub.toml --dry-run
        msp-hub sync --period 2026-10
    """
    report = _run(config_path, dry_run=dry_run, period=period, connectors=connectors, streams=streams)
    if as_json:
        click.echo(dumps(report.to_json()))
    else:
        click.echo(f"run {report.run_id}: pulled " + ", ".join(f"{k} {v}" for k, v in sorted(report.records.items())))
        render_plan(report, details=details)
        if dry_run:
            click.echo("dry run: nothing was pushed")
        else:
            render_push(report)
    render_errors(report)
    sys.exit(1 if report.failed else 0)


@main.command()
@config_option
@click.option("--period", metavar="YYYY-MM", help="Plan this period (default: the last ended and the current).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--details", is_flag=True, help="Explain every line (devices, rule, unit price).")
def plan(config_path, period, as_json, details):
    """Show what a sync would push, from the data already pulled (no request is made).

    Example:
        msp-hub plan --details
        msp-hub plan --period 2026-10 --json > plan.json
    """
    report = _run(config_path, dry_run=True, pull_first=False, period=period)
    if as_json:
        click.echo(dumps(report.to_json()))
    else:
        render_plan(report, details=details)
        render_errors(report)


@main.command()
@config_option
def plugins(config_path):
    """List the installed plugins and the connectors they provide.

    Example:
        msp-hub plugins
    """
    from hub.plugins import get_plugin_manager, plugin_names
    pm = get_plugin_manager()
    for name in plugin_names(pm):
        click.echo(name)
    if config_path or os.environ.get("MSP_HUB_CONFIG") or Path(DEFAULT_CONFIG).exists():
        hub = _open_hub(config_path)
        try:
            for name, c in sorted(hub.connectors.items()):
                streams = ", ".join(s.name for s in c.streams()) or "-"
                kinds = ", ".join(sorted(c.action_kinds)) or "-"
                click.echo(f"connector {name}: pulls {streams}; pushes {kinds}")
        finally:
            hub.close()


@main.command()
@config_option
@click.option("--status", type=click.Choice(["pending", "sending", "sent", "failed", "held"]), help="Only this status.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def actions(config_path, status, as_json):
    """List the outbox: every action, its status, attempts, vendor id and last error.

    Example:
        msp-hub actions --status failed
    """
    hub = _open_hub(config_path)
    try:
        rows = hub.store.actions(status=status)
    finally:
        hub.close()
    if as_json:
        click.echo(dumps(rows))
        return
    for r in rows:
        click.echo(f"{r['key']}  {r['status']}  attempts={r['attempts']}  vendor_id={r['vendor_id'] or '-'}"
                   + (f"  error={r['last_error']}" if r["last_error"] else ""))
    if not rows:
        click.echo("the outbox is empty")


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def clients(config_path, as_json):
    """Show how clients are linked across systems, suggested links, and what is unmapped.

    A client linked to no hub client is never billed. Names that match once normalised (case,
    accents, punctuation, legal suffixes) are linked; close names are only suggested.

    Example:
        msp-hub clients
    """
    from hub.planner import build_context, report_unbilled
    from hub.periods import last_ended_period
    hub = _open_hub(config_path)
    try:
        report = RunReport("clients", "clients", hub.clock())
        ctx = build_context(hub, report, last_ended_period(hub.clock(), hub.config.timezone))
        report_unbilled(hub, report, ctx)
    finally:
        hub.close()
    reg = ctx.registry
    if as_json:
        click.echo(dumps({"clients": [{"id": c.id, "name": c.name, "links": c.links, "how": c.how,
                                       "contract": (ctx.contracts[c.id].origin if c.id in ctx.contracts else None)}
                                      for c in reg.clients.values()],
                          "suggestions": [vars(s) for s in reg.suggestions],
                          "unmapped": [{"system": u.source, "id": u.source_id, "name": u.name} for u in reg.unmapped],
                          "conflicts": reg.conflicts}))
        return
    rows = []
    for c in sorted(reg.clients.values(), key=lambda c: c.id):
        links = ", ".join(f"{s}={x} ({c.how.get(s, 'explicit')})" for s, x in sorted(c.links.items()))
        contract = ctx.contracts.get(c.id)
        rows.append((c.id, c.name, links or "-", f"{contract.kind} ({contract.origin})" if contract else "no contract"))
    _table(("client", "name", "links", "contract"), rows, click.echo)
    for s in reg.suggestions:
        click.echo(f"suggestion: {s.system} {s.name!r} (id {s.source_id}) may be {s.client_name!r} ({s.client_id}), "
                   f"confidence {s.confidence:.2f}; link it in mappings/links.toml")
    for u in reg.unmapped:
        click.echo(f"unmapped: {u.source} {u.name!r} (id {u.source_id}) is linked to no client and never billed")
    for c in reg.conflicts:
        click.echo(f"conflict: {c}")


@main.command()
@config_option
@click.argument("key")
def approve(config_path, key):
    """Approve an action that a guardrail held (e.g. an agreement quantity set to 0).

    The next sync pushes it. Use `msp-hub actions --status held` to list them.

    Example:
        msp-hub approve agreement_quantity:4711:88:2026-10
    """
    hub = _open_hub(config_path)
    try:
        row = hub.store.approve(key)
    finally:
        hub.close()
    if row is None:
        raise click.ClickException(f"no action {key!r} in the outbox; list them with: msp-hub actions")
    click.echo(f"approved {key}; the next sync pushes it")


@main.command()
@click.option("--devices", default=300, show_default=True, help="How many devices the simulated RMM holds.")
@click.option("--workdir", type=click.Path(file_okay=False), help="Keep the demo's config and database here.")
def demo(devices, workdir):
    """Run the whole hub against simulated NinjaOne and Stripe servers on 127.0.0.1.

    Seeds an MSP (clients on different tiers and add-ons, devices of mixed classes, some not
    approved), syncs, prints the plan with explanations and the invoices created, then syncs
    again to show that nothing is pushed twice. Needs no credentials and no network.

    Example:
        msp-hub demo --devices 300
    """
    from hub.demo import run_demo
    try:
        run_demo(devices=devices, workdir=workdir)
    except HubError as exc:
        raise click.ClickException(str(exc)) from None


if __name__ == "__main__":  # pragma: no cover
    main()
