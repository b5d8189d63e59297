"""The ``msp-hub`` command (click): sync, plan, plugins, actions, demo, daemon, resync."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from hub import tax
from hub.config import load_config
from hub.engine import Hub, LockedError, RunReport, dumps, sync_once
from hub.errors import HubError
from hub.logs import configure_logging
from hub.money import format_minor
from hub.store import retry_refusal, sent_text

DEFAULT_CONFIG = "msp-hub.toml"

# Exit codes of sync, resync and plan (see EXIT_CODES_HELP). When several apply, the most severe
# wins: a failed pull, then something held for an error or incomplete input, then a failed push.
EXIT_OK = 0
EXIT_PUSH_FAILED = 1     # a vendor refused a push; the action stays in the outbox (msp-hub actions)
EXIT_USAGE = 2           # a wrong option or config: refused before any request
EXIT_PULL_FAILED = 3     # a stream's pass failed: what it feeds was not pushed
EXIT_HELD = 4            # something is held for an error or incomplete input; fix it, then sync again
EXIT_CRASHED = 70        # EX_SOFTWARE: the run ended on an unexpected exception (see the log)
EXIT_LOCKED = 75         # EX_TEMPFAIL: another run holds the lock; try again later
EXIT_STOPPED = 130       # stopped on request (Ctrl-C, SIGTERM) before the end
HELD_FOR_ERRORS = ("error", "incomplete")   # held causes that make a run exit 4

EXIT_CODES_HELP = """\b
Exit codes:
  0   all good (guardrail or review holds waiting for an approval are printed, not failures)
  1   a push failed (the action stays in the outbox: msp-hub actions --status failed)
  2   a wrong option or config, refused before any request
  3   a pull failed (a stream's pass failed; what it feeds was not pushed)
  4   something is held for an error or incomplete input
  70  the run crashed (see the log)
  75  another run holds the lock
  130 stopped on request before the end
When several apply the most severe wins: 3, then 4, then 1. A line on stderr says why."""


class Refused(click.ClickException):
    """A mistake in the command line or the config, refused before any request: exit code 2."""

    exit_code = EXIT_USAGE


def exit_reasons(report) -> list[tuple[int, str]]:
    """Why a run's exit code is not 0: (code, one line) for each cause that applies, most severe first.

    ``report``: a RunReport; its ``passes``, ``held`` (each with a ``cause``), ``failed`` and
    ``stopped``. A held action without a cause counts as held for an error: never silently fine."""
    out: list[tuple[int, str]] = []
    pulls = [f"{key} ({p.get('error') or 'no message'})" for key, p in sorted((report.passes or {}).items())
             if p.get("status") == "failed"]
    if pulls:
        out.append((EXIT_PULL_FAILED, f"{len(pulls)} stream(s) failed to pull: " + "; ".join(pulls)))
    held = [h for h in report.held if h.get("cause") in HELD_FOR_ERRORS or not h.get("cause")]
    if held:
        out.append((EXIT_HELD, f"{len(held)} action(s) held for an error or incomplete input: "
                    + "; ".join(f"{h['key']} ({h.get('cause') or 'no cause given'})" for h in held)))
    if report.failed:
        out.append((EXIT_PUSH_FAILED, f"{len(report.failed)} push(es) failed: "
                    + "; ".join(f['key'] for f in report.failed)))
    if not out and getattr(report, "stopped", False):
        out.append((EXIT_STOPPED, "stopped before the end; the next run goes on from the last committed page"))
    return out


def exit_code(report) -> int:
    """The exit code of a run (0, 1, 3, 4 or 130; see EXIT_CODES_HELP); the most severe cause wins."""
    reasons = exit_reasons(report)
    return reasons[0][0] if reasons else EXIT_OK


def _exit(report) -> None:
    """Print why the exit code is not 0 (one line on stderr), then exit with it."""
    reasons = exit_reasons(report)
    code = reasons[0][0] if reasons else EXIT_OK
    if reasons:
        click.echo(f"exit {code}: " + "; also ".join(text for _, text in reasons), err=True)
    sys.exit(code)


# -q / -v of the main command: the log level that overrides the config's [logging] level (None: keep it).
_LOG_LEVEL: list[str | None] = [None]
# --tenants / --tenant of the main command (or $MSP_HUB_TENANTS / $MSP_HUB_TENANT): which tenant every
# command works on; "file" None: a single hub, as without tenants.
_TENANTS: dict[str, Any] = {"file": None, "name": None}


def _deployment():
    """The tenants file of --tenants ($MSP_HUB_TENANTS), loaded and checked; None without one."""
    from hub.tenants import load_deployment
    if _TENANTS["file"] is None:
        return None
    try:
        return load_deployment(_TENANTS["file"])
    except HubError as exc:
        raise Refused(str(exc)) from None


def _tenant():
    """The tenant of --tenant ($MSP_HUB_TENANT) in the tenants file; None for a single hub. A
    file with one tenant picks it; with several, a command that opens a hub needs --tenant."""
    from hub.tenants import select
    if _TENANTS["file"] is None and _TENANTS["name"] is None:
        return None
    try:   # click has read $MSP_HUB_TENANTS and $MSP_HUB_TENANT into the options already
        return select(_TENANTS["file"], _TENANTS["name"], environ={})
    except HubError as exc:
        raise Refused(str(exc)) from None


def _load_config(path: str):
    """The config a command works on: the chosen tenant's (with its own secrets), else ``path``'s."""
    tenant = _tenant()
    return tenant.load_config() if tenant is not None else load_config(path)


def _read_only(config) -> None:
    """Let a command that reads the store only open the hub without the vendors' secrets.

    Every secret of the config resolves to a placeholder that is never sent: these commands make
    no request (``plan`` plans from the data already pulled and pushes nothing)."""
    from hub.config import Secret

    def placeholder(section, table, key, required):
        return Secret("unused-by-a-read-only-command", "(not read: this command makes no request)")

    config._secret = placeholder


def _open_hub(config_path: str | None, *, read_only: bool = False) -> Hub:
    """Open the hub of the config. ``read_only``: for commands that read the store only (plan,
    actions, clients, runs, streams): no vendor secret is needed."""
    path = _config_file(config_path)
    try:
        config = _load_config(path)
        configure_logging(fmt=config.logging.get("format", "console"),
                          level=_LOG_LEVEL[0] or config.logging.get("level", "warning"),
                          secrets=config.secret_values())
        if read_only:
            _read_only(config)
        return Hub(config)
    except HubError as exc:
        raise Refused(str(exc)) from None


def _check_period(period: str | None) -> None:
    """Refuse a period that is not YYYY-MM at once, before the config is even read."""
    if period is not None:
        from hub.periods import parse_period
        try:
            parse_period(period)
        except ValueError as exc:
            raise Refused(f"--period: {exc} (fix: write --period 2026-10)") from None


def _scope_kwargs(hub: Hub, **scope) -> dict[str, Any]:
    """Check --connector, --stream and --period against the configured connectors (no request)."""
    from hub.service import ScopeError, normalize_scope
    try:
        return normalize_scope({k: v for k, v in scope.items() if v},
                               {n: [st.name for st in c.streams()] for n, c in hub.connectors.items()})
    except ScopeError as exc:
        flag = {"connectors": "--connector", "streams": "--stream", "clients": "--client"}.get(exc.key, f"--{exc.key}")
        raise Refused(f"{flag}: {str(exc).split(': ', 1)[1]}") from None


def _run(config_path: str | None, scope: dict[str, Any] | None = None, *, read_only: bool = False,
         plan_sink=None, **options) -> RunReport:
    """One ``sync_once`` on a hub opened from the config, its scope checked first; user mistakes
    become one clear line and exit code 2, a held lock exit code 75. ``plan_sink``: receives each
    plan item as it is made, instead of the report keeping it (``hub.planner.PlanItems``)."""
    hub = _open_hub(config_path, read_only=read_only)
    if plan_sink is not None:
        hub.plan_sink = plan_sink
    try:
        if scope is not None:
            options.update(_scope_kwargs(hub, **scope))
        return sync_once(hub, **options)
    except LockedError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_LOCKED)
    except (HubError, ValueError) as exc:
        raise Refused(str(exc)) from None
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


def _tax_block(p) -> dict | None:
    """An invoice's ``tax`` block (hub.planner.invoice_payload), None when it has none (held)."""
    return p.action.payload.get("tax") if p.action is not None and p.kind == "invoice" else None


def _tax_cells(p) -> tuple[str, str]:
    """The tax and the total with tax of an invoice row; "-" when the plan has no tax for it."""
    block = _tax_block(p)
    if block is None:
        return "-", "-"
    mark = "~" if block.get("automatic") else ""      # Stripe Tax computes it: an estimate
    return (mark + format_minor(block["total_tax"], p.bill.currency),
            mark + format_minor(block["total_with_tax"], p.bill.currency))


def render_plan(report: RunReport, *, details: bool | tuple[str, ...] = False, out=None) -> None:
    """Print the plan as a readable table, the three counts of agreement additions, then the
    discrepancies. ``details``: True explains every line; a tuple of statuses explains only those."""
    echo = (lambda s="": click.echo(s, file=out))
    if not report.plan and not report.quantities:
        echo("nothing to plan")
        for d in report.discrepancies:
            echo(f"discrepancy [{d.kind}] {d.message}")
        return
    invoices = [p for p in report.plan if p.bill is not None]
    others = [p for p in report.plan if p.bill is None and (p.kind != "agreement_quantity" or p.status == "skipped")]
    rows = [(p.client_id, p.client_name[:24], p.period, _what(p), p.status, format_minor(p.total, p.bill.currency))
            + _tax_cells(p) + (str(len(p.bill.lines)),) for p in invoices]
    echo_rows = []
    _table(("client", "name", "period", "action", "status", "before tax", "tax", "with tax", "lines"), rows,
           echo_rows.append, right=(5, 6, 7))
    echo(echo_rows[0])
    echo(echo_rows[1])
    for p, line in zip(invoices, echo_rows[2:]):
        echo(line)
        for reason in p.reasons:
            echo(f"    ! {reason}")
        shown = p.bill and (details is True or (details and p.status in details))
        block = _tax_block(p)
        if block is not None and (shown or len(block["by_rate"]) > 1 or block["treatment"] != "standard"
                                  or block.get("automatic")):
            for text in tax.describe(block, p.bill.currency):
                echo(f"    tax: {text}")
        if shown:
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
                    why[str(r.get("reason"))] = why.get(str(r.get("reason")), 0) + int(r.get("count", 1))   # a counted line stands for many
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
    render_held(report, out=out)
    if not report.pushed and not report.failed:
        sent = sum(1 for p in report.plan if p.status == "unchanged")
        echo(f"nothing new to push: {sent} action(s) due were already sent" if sent else "nothing to push")


def render_held(report: RunReport, out=None) -> None:
    """Every held action with its cause and reasons, and how to let it through when it may go."""
    for h in report.held:
        cause = h.get("cause") or "no cause given"
        hint = (f" (approve with: msp-hub approve {h['key']})" if cause in ("guardrail", "review")
                else " (fix the cause, then sync again)" if cause in HELD_FOR_ERRORS else "")
        click.echo(f"held [{cause}] {h['key']}: {'; '.join(h.get('reasons') or ())}{hint}", file=out)


def render_errors(report: RunReport) -> None:
    """Print the run's errors to stderr, leaving out the discrepancies already shown."""
    shown = {d.message for d in report.discrepancies}
    # A failed pull is named by the exit line (exit 3: ... failed to pull: ...): not twice.
    failed = {f"pull {key}: {p.get('error')}" for key, p in (report.passes or {}).items()
              if p.get("status") == "failed"}
    for e in report.errors:
        if e not in shown and e not in failed:
            click.echo(f"error: {e}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EXIT_CODES_HELP.replace("Exit codes:", "Exit codes of sync, resync and plan:"))
@click.version_option(package_name="msp-hub")
@click.option("-v", "--verbose", count=True,
              help="Log more: -v info, -vv debug (overrides the config's [logging] level).")
@click.option("-q", "--quiet", is_flag=True, help="Log errors only (overrides the config's [logging] level).")
@click.option("--tenants", "tenants_file", metavar="FILE", envvar="MSP_HUB_TENANTS",
              help="A tenants.toml: one deployment serving several MSPs (default: $MSP_HUB_TENANTS).")
@click.option("--tenant", "tenant", metavar="NAME", envvar="MSP_HUB_TENANT",
              help="The tenant every command works on (default: $MSP_HUB_TENANT; the only one of a file of one).")
def main(verbose, quiet, tenants_file, tenant):
    """msp-hub: make an RMM, a PSA and a billing system behave as one platform.

    \b
    Example:
        msp-hub demo
        msp-hub -v sync --dry-run
    """
    if verbose and quiet:
        raise click.UsageError("give -q or -v, not both")
    _LOG_LEVEL[0] = "error" if quiet else ("info" if verbose == 1 else "debug") if verbose else None
    _TENANTS.update(file=tenants_file or None, name=tenant or None)


_scope_options = [
    click.option("--connector", "connectors", multiple=True, help="Pull only this connector (repeatable)."),
    click.option("--stream", "streams", multiple=True, help="Pull only this stream (repeatable)."),
    click.option("--client", "clients", multiple=True, help="Plan and push only this hub client (repeatable)."),
    click.option("--period", metavar="YYYY-MM", help="Invoice this period even if it has not ended."),
    click.option("--full", is_flag=True, help="Re-read the streams from the start; their saved cursors stay as they are."),
    click.option("--dry-run", is_flag=True, help="Pull and plan, but push nothing."),
    click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON."),
    click.option("--details", is_flag=True, help="Explain every line of the plan."),
]


def scope_options(fn):
    """The options of a run's scope and output, the same on ``sync`` and ``resync``."""
    for option in reversed(_scope_options):
        fn = option(fn)
    return fn


def _scope(connectors, streams, clients, period, full, dry_run) -> dict[str, Any]:
    """The run's scope from the options (as ``POST /resync`` takes it); the period checked first."""
    _check_period(period)
    scope: dict[str, Any] = {"connectors": list(connectors), "streams": list(streams), "clients": list(clients),
                             "full": full, "dry_run": dry_run, "period": period}
    return {k: v for k, v in scope.items() if v}


@main.command(epilog=EXIT_CODES_HELP)
@config_option
@scope_options
def sync(config_path, connectors, streams, clients, period, full, dry_run, as_json, details):
    """Pull from every connector, plan the invoices and tickets, and push what is new, here.

    A second sync over the same period pushes nothing and says so. A sync scoped with
    --connector or --stream pushes only what those streams feed (alert streams: tickets);
    invoices, renewals and agreement quantities wait for an unscoped sync. An unknown connector,
    stream or client is refused (exit 2) naming the known ones. `msp-hub resync` takes the same
    options and hands the run to the daemon when one answers.

    \b
    Example:
        msp-hub sync --config msp-hub.toml --dry-run
        msp-hub sync --period 2026-10
        msp-hub sync --connector ninjaone --stream devices --full
    """
    _sync_here(_config_file(config_path), _scope(connectors, streams, clients, period, full, dry_run),
               as_json=as_json, details=details)


@main.command(epilog=EXIT_CODES_HELP)
@config_option
@click.option("--period", metavar="YYYY-MM", help="Plan this period (default: the last ended and the current).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--details", is_flag=True, help="Explain every line (devices, rule, unit price).")
def plan(config_path, period, as_json, details):
    """Show what a sync would push, from the data already pulled (no request is made).

    \b
    Example:
        msp-hub plan --details
        msp-hub plan --period 2026-10 --json > plan.json
    """
    _check_period(period)
    if as_json:
        report = _plan_json(config_path, period, lambda text: click.echo(text, nl=False))
    else:
        report = _run(config_path, dict(period=period), read_only=True, dry_run=True, pull_first=False)
        render_plan(report, details=details)
        render_held(report)
        render_errors(report)
    _exit(report)


PLAN_MARKER = '\n  "plan": []'


def _plan_json(config_path: str | None, period: str | None, write) -> RunReport:
    """``msp-hub plan --json``, written as the plan is made: each item is encoded as the planner
    makes it and spooled to a temporary file, then the report is written (``write(text)``) around
    the spooled items. The text is that of ``dumps(report.to_json())``; the memory, that of one item."""
    import tempfile
    with tempfile.TemporaryFile("w+", encoding="ascii") as spool:
        count = 0

        def sink(item) -> None:
            nonlocal count
            spool.write(",\n    " if count else "\n    ")
            spool.write(dumps(item.to_json()).replace("\n", "\n    "))   # its place: in the list of the report
            count += 1

        report = _run(config_path, dict(period=period), read_only=True, dry_run=True, pull_first=False,
                      plan_sink=sink)
        report.plan = []
        text = dumps(report.to_json())
        at = text.index(PLAN_MARKER) + len(PLAN_MARKER) - 2     # the "[]" of the top-level "plan"
        write(text[:at])
        if count:
            write("[")
            spool.seek(0)
            while chunk := spool.read(1 << 20):
                write(chunk)
            write("\n  ]")
        else:
            write("[]")
        write(text[at + 2:] + "\n")
    return report


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def plugins(config_path, as_json):
    """List the installed plugins (distribution, version, hooks; broken ones marked) and the
    connectors they provide. Exits 1 when a plugin is broken.

    Example:
        msp-hub plugins
        msp-hub plugins --json
    """
    from hub.plugins import describe_plugins, get_plugin_manager
    connectors: list[dict[str, Any]] = []
    pm = get_plugin_manager(report=False)     # the listing shows the broken ones: no log line too
    if config_path or os.environ.get("MSP_HUB_CONFIG") or _TENANTS["file"] or Path(DEFAULT_CONFIG).exists():
        hub = _open_hub(config_path)
        try:
            pm = hub.pm       # its register_connectors ran: a plugin broken there is marked too
            for name, c in sorted(hub.connectors.items()):
                connectors.append({"name": name, "streams": [s.name for s in c.streams()],
                                   "pushes": sorted(c.action_kinds)})
        finally:
            hub.close()
    described = describe_plugins(pm)
    if as_json:
        click.echo(dumps({"plugins": described, "connectors": connectors}))
    else:
        for p in described:
            origin = " ".join(x for x in (p["distribution"], p["version"]) if x) or "no distribution"
            if p["status"] == "broken":
                click.echo(f"{p['name']} ({origin}): BROKEN: {p['error']}; fix: {p['fix']}")
            else:
                click.echo(f"{p['name']} ({origin}): hooks {', '.join(p['hooks']) or '-'}")
        for c in connectors:
            click.echo(f"connector {c['name']}: pulls {', '.join(c['streams']) or '-'}; "
                       f"pushes {', '.join(c['pushes']) or '-'}")
    if any(p["status"] == "broken" for p in described):
        sys.exit(1)


def _when(value: str | None) -> str:
    return (value or "-")[:19].replace("T", " ")


@main.group(invoke_without_command=True)
@config_option
@click.option("--status", type=click.Choice(["pending", "sending", "sent", "failed", "held", "cancelled"]),
              help="Only this status.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def actions(ctx, config_path, status, as_json):
    """List the outbox: every action, its status, attempts, times, vendor id, why it is held or
    failed, and who approved it. `actions retry|cancel|approve KEY` change one.

    \b
    Example:
        msp-hub actions --status failed
        msp-hub actions retry invoice:acme:2026-10
        msp-hub actions approve agreement_quantity:4711:88:2026-10 --why "the client cancelled"
    """
    ctx.ensure_object(dict)["config"] = config_path
    if ctx.invoked_subcommand is not None:
        return
    hub = _open_hub(config_path, read_only=True)
    try:
        rows = hub.store.actions(status=status)
        approvals: dict[str, list[dict]] = {}
        for a in hub.store.approvals():
            approvals.setdefault(a["target"], []).append({"who": a["who"], "at": a["at"], "why": a["why"]})
        asked = {c["action_key"]: c for c in hub.store.corrections()}
    finally:
        hub.close()
    if as_json:
        click.echo(dumps([dict(r, approvals=approvals.get(r["key"], []),
                               **({"correction": {k: asked[r["key"]][k] for k in ("requested_by", "requested_at", "reason")}}
                                  if r["key"] in asked else {})) for r in rows]))
        return
    if not rows:
        click.echo("the outbox is empty" if status is None else f"no {status} action")
        return
    table = [(r["key"], r["status"], str(r["attempts"]), _when(r.get("created_at")), _when(r.get("sent_at")),
              r["vendor_id"] or "-") for r in rows]
    lines: list[str] = []
    _table(("action", "status", "attempts", "created", "sent", "vendor id"), table, lines.append, right=(2,))
    click.echo(lines[0])
    click.echo(lines[1])
    for r, line in zip(rows, lines[2:]):
        click.echo(line)
        if r["last_error"]:
            click.echo(f"    {'held' if r['status'] == 'held' else 'error'}: {r['last_error']}")
        if r["key"] in asked:
            c = asked[r["key"]]
            click.echo(f"    asked by {c['requested_by']} at {c['requested_at']}: {c['reason']}")
        for a in approvals.get(r["key"], []):
            click.echo(f"    approved by {a['who']} at {a['at']}" + (f": {a['why']}" if a["why"] else ""))


def _action_or_refuse(hub: Hub, key: str) -> dict:
    row = hub.store.get_action(key)
    if row is None:
        raise Refused(f"no action {key!r} in the outbox; list them with: msp-hub actions")
    return row


def _action_result(row: dict, done: str, as_json: bool) -> None:
    if as_json:
        click.echo(dumps({k: row.get(k) for k in ("key", "status", "attempts", "vendor_id", "last_error",
                                                   "created_at", "sent_at")}))
    else:
        click.echo(done)


@actions.command("retry")
@config_option
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print the action as JSON.")
@click.pass_context
def actions_retry(ctx, config_path, key, as_json):
    """Put a failed or cancelled action back in the outbox: the next sync sends it.

    A held action is refused: a retry would hold it again; approve it instead (`actions
    approve`), or fix the cause. A sent action, or one being sent, is refused too (exit 2).

    \b
    Example:
        msp-hub actions retry invoice:acme:2026-10
    """
    hub = _open_hub(config_path or (ctx.obj or {}).get("config"), read_only=True)
    try:
        row = _action_or_refuse(hub, key)
        why = retry_refusal(row, f'msp-hub actions approve {key} --why "..."')
        if why:
            raise Refused(why)
        row = hub.store.retry_action(key)
    finally:
        hub.close()
    _action_result(row, f"{key} is {row['status']} again; the next sync sends it", as_json)


@actions.command("cancel")
@config_option
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print the action as JSON.")
@click.pass_context
def actions_cancel(ctx, config_path, key, as_json):
    """Take an unsent action out of the outbox (kept, as cancelled); what it billed is free again.

    A sent action, or one being sent, is refused (exit 2): correct a sent invoice with `msp-hub
    invoice void|credit`.

    \b
    Example:
        msp-hub actions cancel ticket:alert:9f2c
    """
    hub = _open_hub(config_path or (ctx.obj or {}).get("config"), read_only=True)
    try:
        row = _action_or_refuse(hub, key)
        if row["status"] == "sent":
            raise Refused(f"action {key!r} {sent_text(row)}; it cannot be cancelled "
                          f"(an invoice is corrected with: msp-hub invoice void {key} --reason \"...\")")
        if row["status"] == "sending":
            raise Refused(f"action {key!r} is being sent; it cannot be cancelled now")
        if row["status"] == "cancelled":
            raise Refused(f"action {key!r} is already cancelled")
        row = hub.store.cancel_action(key)
    finally:
        hub.close()
    _action_result(row, f"cancelled {key}; it is kept in the outbox as cancelled and never sent", as_json)


@actions.command("approve")
@config_option
@click.argument("key")
@click.option("--why", default="", help="Why it may go; recorded with who and when.")
@click.option("--json", "as_json", is_flag=True, help="Print the approval as JSON.")
@click.pass_context
def actions_approve(ctx, config_path, key, why, as_json):
    """Let through an action a guardrail or a review held (the same as `msp-hub approve KEY`).

    \b
    Example:
        msp-hub actions approve agreement_quantity:4711:88:2026-10 --why "the client cancelled"
    """
    from hub.store import system_user
    hub = _open_hub(config_path or (ctx.obj or {}).get("config"), read_only=True)
    try:
        approval, done = _approve_action(hub, key, system_user(), why)
    finally:
        hub.close()
    _print_approval(approval, done, as_json)


def _approve_action(hub: Hub, key: str, who: str, why: str) -> tuple[dict, str]:
    """Record the approval of the action ``key``: (approval, message); refused when it was sent
    (``hub.service.approve_action``, which the console calls too)."""
    from hub.service import ApprovalRefused, approve_action
    try:
        return approve_action(hub, key, who, why)
    except ApprovalRefused as exc:
        raise Refused(str(exc)) from None


def _print_approval(approval: dict, done: str, as_json: bool) -> None:
    if as_json:
        click.echo(dumps({k: approval[k] for k in ("target", "who", "at", "why")}))
    else:
        click.echo(f"{done} (approved by {approval['who']} at {approval['at']}"
                   + (f": {approval['why']})" if approval["why"] else ")"))


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--accept", metavar="SYSTEM:ID:CLIENT", help="Accept a suggested link: written to mappings/links.toml.")
@click.option("--reject", metavar="SYSTEM:ID:CLIENT", help="Reject a suggested link: recorded in the store, "
                                                          "not suggested again.")
@click.option("--why", default="", help="Why (recorded with --accept and --reject).")
def clients(config_path, as_json, accept, reject, why):
    """Show how clients are linked across systems, suggested links, and what is unmapped.

    A client linked to no hub client is never billed. Names that match once normalised (case,
    accents, punctuation, legal suffixes) are linked; close names are only suggested. --accept
    writes a suggested link to mappings/links.toml (a client with a contract in contracts.toml
    keeps its links there: refused, naming the line to write); --reject records in the store that
    the names are not the same client, and the suggestion is not made again.

    \b
    Example:
        msp-hub clients
        msp-hub clients --accept ninjaone:7:connectwise-7
        msp-hub clients --reject ninjaone:9:acme --why "a different company"
    """
    from hub.clientlinks import LinkRefused, accept_link, client_links, reject_link
    from hub.store import system_user
    if accept and reject:
        raise click.UsageError("give --accept or --reject, not both")
    hub = _open_hub(config_path, read_only=True)
    try:
        if accept or reject:
            parts = (accept or reject).split(":", 2)
            if len(parts) != 3 or not all(parts):
                raise Refused(f"--{'accept' if accept else 'reject'}: write SYSTEM:ID:CLIENT as `msp-hub clients` "
                              f"shows a suggestion (e.g. ninjaone:7:connectwise-7), got {accept or reject!r}")
            try:
                click.echo((accept_link if accept else reject_link)(hub, *parts, who=system_user(), why=why))
            except LinkRefused as exc:
                raise Refused(str(exc)) from None
            return
        links = client_links(hub)
    finally:
        hub.close()
    reg = links.registry
    if as_json:
        click.echo(dumps({"clients": [{"id": c.id, "name": c.name, "links": c.links, "how": c.how,
                                       "contract": (links.contracts[c.id][1] if c.id in links.contracts else None)}
                                      for c in reg.clients.values()],
                          "suggestions": [vars(s) for s in links.suggestions],
                          "rejected": [dict(vars(s), rejected_by=r["who"], rejected_at=r["at"], why=r["why"])
                                       for s, r in links.rejected],
                          "unmapped": [{"system": u.source, "id": u.source_id, "name": u.name} for u in reg.unmapped],
                          "conflicts": reg.conflicts}))
        return
    rows = []
    for c in sorted(reg.clients.values(), key=lambda c: c.id):
        text = ", ".join(f"{s}={x} ({c.how.get(s, 'explicit')})" for s, x in sorted(c.links.items()))
        contract = links.contracts.get(c.id)
        rows.append((c.id, c.name, text or "-", f"{contract[0]} ({contract[1]})" if contract else "no contract"))
    _table(("client", "name", "links", "contract"), rows, click.echo)
    for s in links.suggestions:
        click.echo(f"suggestion: {s.system} {s.name!r} (id {s.source_id}) may be {s.client_name!r} ({s.client_id}), "
                   f"confidence {s.confidence:.2f}; link it in mappings/links.toml")
    for s, r in links.rejected:
        click.echo(f"rejected: {s.system} {s.name!r} (id {s.source_id}) is not {s.client_name!r} ({s.client_id}) "
                   f"(by {r['who']} at {r['at']}" + (f": {r['why']})" if r["why"] else ")"))
    for u in reg.unmapped:
        click.echo(f"unmapped: {u.source} {u.name!r} (id {u.source_id}) is linked to no client and never billed")
    for c in reg.conflicts:
        click.echo(f"conflict: {c}")


@main.command()
@config_option
@click.argument("key", required=False)
@click.option("--stream", "stream", metavar="CONNECTOR.STREAM",
              help="Approve the stream's latest complete pass (one judged suspect holds what it feeds).")
@click.option("--run", "run_id", metavar="RUN_ID", help="Approve a run's drafts held for the review window.")
@click.option("--why", default="", help="Why it may go; recorded with who and when.")
@click.option("--json", "as_json", is_flag=True, help="Print the approval as JSON.")
def approve(config_path, key, stream, run_id, why, as_json):
    """Let through what a guardrail or a review held: one action, a stream's pass or a run.

    The approval is recorded with the system user, the time and --why; `msp-hub actions` shows
    it. The next sync pushes what it let through. Give exactly one of KEY, --stream and --run.

    \b
    Example:
        msp-hub approve agreement_quantity:4711:88:2026-10 --why "the client cancelled"
        msp-hub approve --stream ninjaone.devices --why "30 devices retired this week"
        msp-hub approve --run 20261101-060000-ab12cd
    """
    from hub.store import system_user
    given = [name for name, value in (("KEY", key), ("--stream", stream), ("--run", run_id)) if value]
    if len(given) != 1:
        raise click.UsageError("give exactly one of KEY, --stream and --run"
                               + (f" (got {', '.join(given)})" if given else ""))
    who = system_user()
    hub = _open_hub(config_path, read_only=True)
    try:
        if key:
            approval, done = _approve_action(hub, key, who, why)
        elif stream:
            target, done = _approve_pass(hub, stream, who, why)
            approval = hub.store.approvals(target)[-1]
        else:
            run = hub.store.get_run(run_id)
            if run is None:
                raise Refused(f"no run {run_id!r}; list them with: msp-hub runs")
            approval = hub.store.record_approval(f"run:{run_id}", who, why)
            done = f"approved the drafts of run {run_id} ({run['status']}); the next sync pushes them"
    finally:
        hub.close()
    _print_approval(approval, done, as_json)


def _approve_pass(hub: Hub, stream: str, who: str, why: str) -> tuple[str, str]:
    """Record the approval of ``connector.stream``'s latest complete pass: (target, message)."""
    known = sorted(f"{n}.{s.name}" for n, c in hub.connectors.items() for s in c.streams())
    if stream not in known:
        raise Refused(f"--stream: no configured stream {stream!r} (fix: use connector.stream, one of "
                      f"{', '.join(known) or '(none configured)'})")
    connector, name = stream.split(".", 1)
    state = hub.store.stream_states().get((connector, name)) or {}
    last = state.get("last_complete")
    if last is None:
        raise Refused(f"{stream} has no complete pass to approve; run: msp-hub sync --stream {name}")
    target = f"pass:{last['id']}"
    if hub.store.approvals(target):
        raise Refused(f"pass {last['id']} of {stream} (ended {last['finished_at']}) is already approved; "
                      "see: msp-hub streams")
    hub.store.record_approval(target, who, why)
    return target, (f"approved pass {last['id']} of {stream} ({last['records']} records, ended "
                    f"{last['finished_at']}); the next sync plans from it")


def _age(seconds: float | None) -> str:
    from hub.service import human_seconds
    return "-" if seconds is None else human_seconds(seconds)


def _run_row(row: dict) -> dict:
    """A runs row with counts and errors decoded, and its trigger, job and scope ("-" when the
    run did not record them; the trigger falls back on the holder its counts name)."""
    import json as json_module
    out = dict(row, counts=json_module.loads(row.get("counts") or "{}"),
               errors=json_module.loads(row.get("errors") or "[]"))
    for key in ("trigger", "job", "scope"):
        value = row.get(key)
        if isinstance(value, str) and key == "scope":
            try:
                value = json_module.loads(value)
            except ValueError:
                pass
        if value in (None, ""):
            value = out["counts"].get({"trigger": "holder"}.get(key, key))
        out[key] = value if value not in (None, "") else None
    return out


def _scope_text(scope) -> str:
    if scope is None:
        return "-"
    if isinstance(scope, dict):
        return ", ".join(f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in sorted(scope.items())) or "all"
    return str(scope)


@main.group(invoke_without_command=True)
@config_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500), help="How many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def runs(ctx, config_path, limit, as_json):
    """List the latest runs, newest first: mode, status, records, pushes, holds and errors.

    A run's status: ok; warnings (standing warnings only); held (something held for an error or
    incomplete input); failed (a pull or a push failed); stopped; crashed; refused (the lock was
    held); abandoned (its process died); running. `msp-hub runs show RUN_ID` details one.

    \b
    Example:
        msp-hub runs --limit 5
        msp-hub runs show 20261101-060000-ab12cd
    """
    ctx.ensure_object(dict)["config"] = config_path
    if ctx.invoked_subcommand is not None:
        return
    hub = _open_hub(config_path, read_only=True)
    try:
        rows = [_run_row(r) for r in hub.store.runs(limit=limit)]
    finally:
        hub.close()
    if as_json:
        click.echo(dumps(rows))
        return
    if not rows:
        click.echo("no run yet; start one with: msp-hub sync")
        return
    table = []
    for r in rows:
        c = r["counts"]
        table.append((r["id"], r["trigger"] or "-", r["mode"] or "-", r["status"] or "-", (r["started_at"] or "")[:19],
                      str(sum((c.get("records") or {}).values())), str(c.get("pushed", 0)), str(c.get("failed", 0)),
                      str(c.get("held", 0)), str(len(r["errors"]))))
    _table(("run", "trigger", "mode", "status", "started", "records", "pushed", "failed", "held", "errors"), table,
           click.echo, right=(5, 6, 7, 8, 9))
    for r in rows:
        for e in r["errors"]:
            click.echo(f"{r['id']}: {e}")


@runs.command("show")
@config_option
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def runs_show(ctx, config_path, run_id, as_json):
    """Show one run: its trigger, job and scope, what it pulled and pushed, its holds and errors.

    \b
    Example:
        msp-hub runs show 20261101-060000-ab12cd
    """
    hub = _open_hub(config_path or (ctx.obj or {}).get("config"), read_only=True)
    try:
        row = hub.store.get_run(run_id)
        if row is None:
            known = [r["id"] for r in hub.store.runs(limit=5)]
            raise Refused(f"no run {run_id!r}; the latest are {', '.join(known) or '(none yet)'} "
                          "(list them with: msp-hub runs)")
        actions = [a for a in hub.store.actions() if a.get("run_id") == run_id]
    finally:
        hub.close()
    run = _run_row(row)
    run["actions"] = [{k: a.get(k) for k in ("key", "status", "vendor_id", "last_error", "created_at", "sent_at")}
                      for a in actions]
    if as_json:
        click.echo(dumps(run))
        return
    c = run["counts"]
    click.echo(f"run {run['id']}: {run['status'] or '-'}")
    for label, value in (("trigger", run["trigger"]), ("job", run["job"]), ("scope", _scope_text(run["scope"])),
                         ("mode", run["mode"]), ("started", run["started_at"]), ("finished", run["finished_at"])):
        click.echo(f"  {label + ':':<10}{value if value not in (None, '') else '-'}")
    records = c.get("records") or {}
    click.echo("  pulled:   " + (", ".join(f"{k} {v}" for k, v in sorted(records.items())) or "nothing"))
    for key, p in sorted((c.get("passes") or {}).items()):
        if p.get("status") == "failed":
            click.echo(f"  pull failed: {key}: {p.get('error') or 'no message'}")
    click.echo(f"  pushed:   {c.get('pushed', 0)}, failed {c.get('failed', 0)}, held {c.get('held', 0)}"
               + (" (" + ", ".join(f"{n} for {cause}" for cause, n in sorted((c.get("held_causes") or {}).items()))
                  + ")" if c.get("held_causes") else ""))
    for a in run["actions"]:
        click.echo(f"    {a['key']}  {a['status']}" + (f"  -> {a['vendor_id']}" if a["vendor_id"] else "")
                   + (f"  {'held' if a['status'] == 'held' else 'error'}: {a['last_error']}" if a["last_error"] else ""))
    for e in run["errors"]:
        click.echo(f"  error: {e}")
    for w in (c.get("warnings") or [])[:20]:
        click.echo(f"  warning: {w}")


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def streams(config_path, as_json):
    """Each stream's last pass, last complete pass, age, maximum age and last error.

    A stream is unhealthy (the daemon's /health is 503) when its last pass failed, or its last
    complete pass is older than its maximum age: [health] max_age, else 3 times the interval of
    the most frequent scheduled job that pulls it, else 26 hours.

    \b
    Example:
        msp-hub streams
    """
    from hub.service import stream_health
    hub = _open_hub(config_path, read_only=True)
    try:
        try:
            rows = stream_health(hub)
        except HubError as exc:
            raise Refused(str(exc)) from None
    finally:
        hub.close()
    if as_json:
        click.echo(dumps(rows))
        return
    table = [(f"{r['connector']}.{r['stream']}", (r["last_pass"] or {}).get("status", "never"),
              (r["last_success"] or "-")[:19], _age(r["age_seconds"]), _age(r["max_age_seconds"]),
              "ok" if r["healthy"] else "NOT OK") for r in rows]
    _table(("stream", "last pass", "last complete", "age", "max age", "health"), table, click.echo)
    for r in rows:
        if r["reason"]:
            click.echo(f"! {r['reason']}")
        elif r["last_error"]:
            click.echo(f"  {r['connector']}.{r['stream']} last error: {r['last_error']}")


@main.command()
@config_option
@click.option("--dry-run", is_flag=True, help="Say what would be recorded; record nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print what was found as JSON.")
def recover(config_path, dry_run, as_json):
    """Rebuild from the vendors what the hub sent, after the store was lost or restored.

    Reads back from each connector that can list what the hub sent (Stripe: the customers and
    invoices carrying the hub's metadata) and records in the store the links and sent invoices it
    does not know, each invoice with the items it bills, so that nothing is sent or billed twice.
    Pull first (msp-hub sync --dry-run) so that each recovered invoice is compared with the data.

    \b
    Example:
        msp-hub sync --dry-run && msp-hub recover
    """
    from hub.recover import recover as run_recover
    hub = _open_hub(config_path)
    try:
        found = run_recover(hub, dry_run=dry_run)
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        hub.close()
    if as_json:
        click.echo(dumps(found.to_json()))
        return
    verb = "would record" if dry_run else "recorded"
    click.echo(f"{verb} {len(found.links)} link(s) and {len(found.actions)} sent invoice(s); "
               f"{found.known} already known")
    for link in found.links:
        click.echo(f"  link {link['client_id']} -> {link['connector']} {link['external_id']}")
    for a in found.actions:
        now = f", {format_minor(a['total_now'], a['currency'] or 'EUR')} from the data now" if "total_now" in a else ""
        click.echo(f"  sent {a['key']} = {a['vendor_id']} ({a['status']}, "
                   f"{format_minor(a['total'] or 0, a['currency'] or 'EUR')}{now})")
    for note in found.notes:
        click.echo(f"  ! {note}")


@main.command()
@click.option("--devices", default=300, show_default=True, help="How many devices the simulated RMM holds.")
@click.option("--workdir", type=click.Path(file_okay=False), help="Keep the demo's config and database here.")
@click.option("--keep", is_flag=True,
              help="Keep the simulators up until Ctrl-C and print the lines to use every command against them.")
@click.option("--rmm", type=click.Choice(["ninjaone", "tacticalrmm"]), default="ninjaone", show_default=True,
              help="The RMM the demo simulates.")
def demo(devices, workdir, keep, rmm):
    """Run the whole hub against simulated NinjaOne and Stripe servers on 127.0.0.1.

    Seeds an MSP (clients on different tiers and add-ons, devices of mixed classes, some not
    approved), syncs, prints the plan with explanations and the invoices created, then syncs
    again to show that nothing is pushed twice. Needs no credentials and no network.

    With --keep the simulators stay up (HTTP on 127.0.0.1) until Ctrl-C, the folder (--workdir,
    or a new one it prints) keeps the config, the database and secrets.env, and the demo prints
    the lines to paste in another shell so that every command, the daemon and its API work
    against it.

    \b
    Example:
        msp-hub demo --devices 300
        msp-hub demo --keep --workdir ./demo
        msp-hub demo --rmm tacticalrmm
    """
    from hub.demo import run_demo
    try:
        run_demo(devices=devices, workdir=workdir, keep=keep, rmm=rmm)
    except HubError as exc:
        raise click.ClickException(str(exc)) from None


@main.command("init")
@click.argument("folder", required=False, default=".", type=click.Path(file_okay=False))
def init_command(folder):
    """Write a new MSP's config and mappings in FOLDER (default: here); they bill nobody until edited.

    The config names secrets by environment variable (*_env), never by value. No contract, no PSA
    agreement type and no alert rule is active: tiers, device classes and time are examples to
    edit. Refuses to overwrite any existing file (and names it).

    \b
    Example:
        msp-hub init /etc/msp-hub
        msp-hub init
    """
    from hub.init import init, next_steps
    try:
        init(folder)
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    for line in next_steps(Path(folder)):
        click.echo(line)


@main.command()
@config_option
@click.argument("path", required=False, type=click.Path(dir_okay=True))
def backup(config_path, path):
    """Copy the store (the config's database) to PATH while the daemon may be running.

    Uses SQLite's online backup: the copy is the database as of one commit, in one file. Without
    PATH the copy is a timestamped file next to the database; a folder as PATH gets a timestamped
    file in it. Never overwrites. Restore: stop the daemon, copy the backup over the database,
    remove the database's -wal and -shm files, start it.

    \b
    Example:
        msp-hub backup --config /etc/msp-hub/msp-hub.toml
        msp-hub backup /var/backups/msp-hub/
    """
    from hub.backup import backup_store
    from hub.tenants import schema_of
    from hub.errors import ConfigError
    file = _config_file(config_path)
    try:
        config = _load_config(file)
        target = backup_store(config.database, path, schema=schema_of(config.tenant))
    except ConfigError as exc:
        raise Refused(str(exc)) from None
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    size = target.stat().st_size
    click.echo(f"backed up {config.database} to {target} ({size} bytes, {size / 1_048_576:.1f} MiB)")


@main.command()
@config_option
@click.option("--connector", "connectors", multiple=True, help="Check only this connector (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def check(config_path, connectors, as_json):
    """Test each configured connector's credentials with one cheap authenticated request.

    One request per connector, tried once (NinjaOne: a token and GET /v2/organizations?pageSize=1;
    ConnectWise: GET /company/companies?pageSize=1; Stripe: GET /v1/customers?limit=1). A failure
    names the connector, the HTTP status, the vendor's message and the config key or secret to
    fix. Exit 0 when every check passed, 1 when one failed, 2 for a wrong option or config.

    \b
    Example:
        msp-hub check
        msp-hub check --connector stripe --json
    """
    from hub.check import check_connectors
    hub = _open_hub(config_path)
    try:
        unknown = sorted(set(connectors) - set(hub.connectors))
        if unknown:
            raise Refused(f"--connector: {', '.join(repr(u) for u in unknown)} is not configured "
                          f"(fix: use one of {', '.join(sorted(hub.connectors)) or '(none configured)'})")
        results = check_connectors(hub, list(connectors) or None)
    finally:
        hub.close()
    failed = [r for r in results if r["ok"] is False]
    if as_json:
        click.echo(dumps({"ok": not failed, "connectors": results}))
    else:
        if not results:
            click.echo("no connector is configured; add a [connectors.<name>] section to the config")
        for r in results:
            if r["ok"]:
                click.echo(f"ok      {r['connector']}: {r['request']}")
            elif r["ok"] is None:
                click.echo(f"-       {r['connector']}: {r['message']}")
            else:
                status = f"HTTP {r['status']}" if r["status"] is not None else "no answer"
                click.echo(f"FAILED  {r['connector']}: {r['request'] or 'check'} -> {status}: {r['message']}")
                click.echo(f"        fix: {r['fix']}")
    if failed:
        click.echo(f"exit {EXIT_PUSH_FAILED}: {len(failed)} connector check(s) failed: "
                   + ", ".join(r["connector"] for r in failed), err=True)
        sys.exit(EXIT_PUSH_FAILED)


# --- correcting a sent invoice --------------------------------------------------------------------

@main.group()
def invoice():
    """Correct a sent invoice: void it or credit it, re-issue it, and see its history.

    A sent invoice is never rewritten: a void (`void:<KEY>`) or a credit note (`credit:<KEY>:<n>`)
    is recorded in the outbox with who asked (--by, default the system user), why (--reason) and
    when, and sent by the next sync (or at once with --now). With --reissue, once it is sent, the
    next sync bills the period again under `invoice:<client>:<period>:r<n>`: everything after a
    void, the credited lines after a credit note (use `sync --period YYYY-MM` for a period older
    than the catch-up window). Refused (exit 2) before anything is recorded: an unknown key, an
    action that is not a sent invoice, an invoice voided already, a line credited already, an
    amount above what is left to credit. With --now: exit 1 when the push failed (the action
    stays in the outbox), 75 when a run holds the lock.

    \b
    Example:
        msp-hub invoice void invoice:acme:2026-10 --reason "billed on the wrong tier" --reissue
        msp-hub invoice history invoice:acme:2026-10
    """


def _correction_by(by: str | None) -> str:
    from hub.store import system_user
    return by or system_user()


def _print_correction(c: dict) -> None:
    amount = format_minor(c["amount"], c["currency"]) if c.get("amount") is not None and c.get("currency") else "-"
    what = ", ".join(line["code"] for line in c["lines"]) if c.get("lines") else amount
    click.echo(f"{c['action_key']}  {c['status']}  {what}  asked by {c['requested_by']} at {c['requested_at']}: "
               f"{c['reason']}")
    if c.get("summary"):
        click.echo(f"    sent: {c['summary']}" + (f" at {c['sent_at']}" if c.get("sent_at") else ""))
    if c.get("last_error") and c["status"] != "sent":
        click.echo(f"    error: {c['last_error']}")
    if c.get("reissue_key"):
        click.echo(f"    re-issued as {c['reissue_key']} once sent")


def _correct(config_path: str | None, now: bool, as_json: bool, record) -> None:
    from hub import corrections
    hub = _open_hub(config_path)
    code = EXIT_OK
    try:
        try:
            row = record(hub)
        except HubError as exc:          # a CorrectionError, or no connector able to send it
            raise Refused(str(exc)) from None
        if now:
            try:
                report = corrections.push_corrections(hub, row["client_id"], kinds=(row["kind"],))
            except LockedError as exc:
                click.echo(f"recorded {row['action_key']}; not sent now: {exc}; the next sync sends it", err=True)
                code = EXIT_LOCKED
            else:
                if report.failed:
                    click.echo(f"exit {EXIT_PUSH_FAILED}: {report.failed[0]['key']}: {report.failed[0]['error']}",
                               err=True)
                    code = EXIT_PUSH_FAILED
            row = hub.store.get_correction(row["action_key"])
    finally:
        hub.close()
    if as_json:
        click.echo(dumps(corrections.correction_json(row)))
    else:
        _print_correction(row)
        if row["status"] == "held":
            click.echo(f"recorded {row['action_key']}, held for an approval: {row['last_error']}")
        elif row["status"] != "sent":
            click.echo(f"recorded {row['action_key']}; the next sync sends it")
    if code:
        sys.exit(code)


_correction_options = [
    click.option("--reason", required=True, help="Why it is corrected (recorded; the credit note's memo)."),
    click.option("--reissue", is_flag=True,
                 help="Once sent, bill the period again under invoice:<client>:<period>:r<n>."),
    click.option("--by", metavar="WHO", help="Who asks (default: the system user)."),
    click.option("--now", is_flag=True, help="Send it at once instead of on the next sync."),
    click.option("--json", "as_json", is_flag=True, help="Print the correction as JSON."),
]


def correction_options(fn):
    for option in reversed(_correction_options):
        fn = option(fn)
    return fn


@invoice.command("void")
@config_option
@click.argument("key")
@correction_options
def invoice_void(config_path, key, reason, reissue, by, now, as_json):
    """Void the sent, open invoice KEY (Stripe: POST /v1/invoices/{id}/void).

    The push reads the invoice's status first: already void is done (nothing sent); paid is
    refused, naming a credit note instead.

    \b
    Example:
        msp-hub invoice void invoice:acme:2026-10 --reason "billed on the wrong tier" --reissue
    """
    from hub import corrections
    _correct(config_path, now, as_json, lambda hub: corrections.request_void(
        hub, key, reason=reason, by=_correction_by(by), reissue=reissue))


@invoice.command("credit")
@config_option
@click.argument("key")
@click.option("--lines", "lines", multiple=True, metavar="CODE", help="Credit this line whole (repeatable).")
@click.option("--amount", metavar="X", help="Credit this amount, e.g. 120.00 (in the invoice's currency).")
@correction_options
def invoice_credit(config_path, key, lines, amount, reason, reissue, by, now, as_json):
    """Issue a credit note on the sent invoice KEY: some lines whole, or an amount.

    What all the credit notes of an invoice credit never passes its total (refused before
    anything is sent, naming the amounts). With --reissue (lines only) the credited lines are
    billed again, as the data has them now, under the successor key.

    \b
    Example:
        msp-hub invoice credit invoice:acme:2026-10 --lines time:4711 --reason "hours entered twice"
        msp-hub invoice credit invoice:acme:2026-10 --amount 120.00 --reason "goodwill: outage of 3 Nov"
    """
    from hub import corrections
    from hub.money import to_minor

    def record(hub):
        minor = None
        if amount is not None:
            row = hub.store.get_action(key)
            currency = str(((row or {}).get("payload") or {}).get("currency") or "EUR")
            try:
                minor = to_minor(amount, currency)
            except ValueError as exc:
                raise corrections.CorrectionError(f"--amount: {exc} (fix: write it like 120.00)") from None
        return corrections.request_credit(hub, key, reason=reason, lines=lines, amount=minor,
                                          by=_correction_by(by), reissue=reissue)

    _correct(config_path, now, as_json, record)


@invoice.command("history")
@config_option
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def invoice_history(config_path, key, as_json):
    """Show the invoice KEY, every correction of it (who, when, why, what was sent) and its re-issues.

    \b
    Example:
        msp-hub invoice history invoice:acme:2026-10
    """
    from hub import corrections
    hub = _open_hub(config_path, read_only=True)
    try:
        try:
            out = corrections.history(hub, key)
        except corrections.CorrectionError as exc:
            raise Refused(str(exc)) from None
    finally:
        hub.close()
    if as_json:
        click.echo(dumps(dict(out, corrections=[corrections.correction_json(c) for c in out["corrections"]])))
        return
    inv = out["invoice"]
    click.echo(f"{inv['key']}  {inv['status']}  {format_minor(inv['total'], inv['currency'] or 'EUR')}  "
               f"vendor_id={inv['vendor_id'] or '-'}" + (f"  sent at {inv['sent_at']}" if inv["sent_at"] else ""))
    if out["credited"]:
        click.echo(f"  credited {format_minor(out['credited'], inv['currency'] or 'EUR')} of "
                   f"{format_minor(out['total'], inv['currency'] or 'EUR')}")
    for c in out["corrections"]:
        _print_correction(c)
    for r in out["reissues"]:
        click.echo(f"re-issue {r['key']}  {r['status']}  {format_minor(r['total'], r['currency'] or 'EUR')}  "
                   f"vendor_id={r['vendor_id'] or '-'}")
    if not out["corrections"]:
        click.echo("no correction")


# --- the daemon and manual resync ------------------------------------------------------------------

def _config_file(config_path: str | None) -> str:
    """--config, else $MSP_HUB_CONFIG, else ./msp-hub.toml; the chosen tenant's config with --tenant
    (giving --config as well is refused: which one was meant?)."""
    tenant = _tenant()
    if tenant is not None:
        if config_path and config_path != str(tenant.config_path):
            raise Refused(f"give --config or --tenant {tenant.name}, not both (tenant {tenant.name!r}'s config is "
                          f"{tenant.config_path})")
        return str(tenant.config_path)
    return config_path or os.environ.get("MSP_HUB_CONFIG") or DEFAULT_CONFIG


@main.command()
@config_option
def daemon(config_path):
    """Run the scheduled jobs of [schedule] and serve the admin API of [admin] until stopped.

    One run at a time: a job that fires while another runs waits for it up to its
    misfire_grace_time, then is skipped until its next firing. On SIGTERM or Ctrl-C the run in
    flight ends after its current page or push, committed, and the daemon exits 0.
    deploy/msp-hub.service runs it under systemd.

    \b
    Example:
        export MSP_HUB_ADMIN_TOKEN=$(openssl rand -hex 32)
        msp-hub daemon --config /etc/msp-hub/msp-hub.toml
    """
    from hub.daemon import run_daemon
    if _TENANTS["file"] is not None:
        if config_path or _TENANTS["name"]:
            raise Refused("with --tenants the daemon serves every tenant of the file: give neither --config nor "
                          "--tenant")
        try:
            code = run_daemon(tenants_file=_TENANTS["file"])
        except HubError as exc:
            raise click.ClickException(str(exc)) from None
        sys.exit(code)
    try:
        code = run_daemon(_config_file(config_path))
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


class RunProgress:
    """Pages, records and pushes of an in-process run, drawn with rich on stderr (a terminal)."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        self.progress = Progress(SpinnerColumn(finished_text="[green]✓"), TextColumn("{task.description:<26}"),
                                 TextColumn("{task.completed:>10,.0f} {task.fields[unit]:<7}"),
                                 TextColumn("{task.fields[detail]:<12}"), TextColumn("{task.fields[rate]:>10}"),
                                 TimeElapsedColumn(), console=Console(stderr=True), redirect_stderr=False)
        self.tasks: dict[str, Any] = {}
        self.last: str | None = None
        self.failed = 0

    def __enter__(self) -> "RunProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        for key in self.tasks:
            self._finish(key)
        self.progress.stop()

    def _finish(self, key: str) -> None:
        """Freeze a task's clock and rate, and tick it (it has no total until it ends)."""
        task = self.tasks[key]
        self.progress.stop_task(task)
        self.progress.update(task, total=self.progress.tasks[task].completed)

    def _task(self, key: str, unit: str):
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(key, unit=unit, detail="", rate="")
        if self.last not in (None, key):
            self._finish(self.last)   # the previous stream is done
        self.last = key
        return self.tasks[key]

    def __call__(self, event: dict) -> None:
        if event.get("event") == "page":
            task = self._task(f"{event['connector']}.{event['stream']}", "records")
            self.progress.update(task, advance=event.get("records", 0), detail=f"{event.get('pages', 0)} pages")
        elif event.get("event") == "action":
            task = self._task("push", "actions")
            self.failed += event.get("status") == "failed"
            self.progress.update(task, advance=1, detail=f"{self.failed} failed" if self.failed else "")
        else:
            return
        t = self.progress.tasks[task]
        if t.elapsed:
            self.progress.update(task, rate=f"{t.completed / t.elapsed:,.0f}/s")


QUIET_SECONDS = 8.0   # a run with no page and no push for this long says what it waits for


class Watchdog:
    """Passes a run's progress events on; when none came for ``QUIET_SECONDS``, says on stderr
    what the run waits for: a vendor that does not answer is retried with backoff (the retry
    policy of hub.http: a refused connection twice, a timeout 5 times, about 10 s), for each of
    its streams, before it fails."""

    def __init__(self, hub: Hub, connectors, inner=None):
        self.inner = inner
        names = sorted(connectors or [n for n, c in hub.connectors.items() if c.streams()])
        self.where = ", ".join(f"{n} ({self._address(hub, n)})" for n in names) or "the vendors"
        self.last = time.monotonic()
        self.said = False
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="msp-hub-watchdog", daemon=True)

    @staticmethod
    def _address(hub: Hub, name: str) -> str:
        section = hub.config.connector_section(name) or {}
        return str(section.get("base_url") or section.get("site") or "its default address")

    def __call__(self, event: dict) -> None:
        self.last, self.said = time.monotonic(), False
        if self.inner is not None:
            self.inner(event)

    def __enter__(self) -> "Watchdog":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()

    def _watch(self) -> None:
        while not self.done.wait(0.2):
            quiet = time.monotonic() - self.last
            if not self.said and quiet >= QUIET_SECONDS:
                self.said = True
                click.echo(f"waiting for an answer from {self.where}: nothing received for {quiet:.0f} s. A request "
                           "without an answer is tried again with backoff (a refused connection twice, a timeout 5 "
                           "times, about 10 s) for each stream, before the stream fails; Ctrl-C stops after the "
                           "current page. "
                           "`msp-hub check` tests every connector with one request.", err=True)


def _remote_resync(admin, scope: dict, *, as_json: bool, wait: bool):
    """POST /resync to the daemon at ``admin.url``; None when no daemon answers there."""
    import httpx
    headers = {"Authorization": f"Bearer {admin.token.reveal()}"}
    try:
        with httpx.Client(base_url=admin.url, headers=headers, timeout=httpx.Timeout(30.0, connect=2.0)) as http:
            try:
                response = http.post("/resync", json=scope or {"all": True}, headers={"X-MSP-Hub-Trigger": "cli"})
            except (httpx.ConnectError, httpx.ConnectTimeout):
                return None
            body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
            if response.status_code == 409:
                holder = body.get("holder") or {}
                click.echo(f"locked: {body.get('error', 'a run is in progress')}", err=True)
                if holder:
                    click.echo(f"  held by {holder.get('holder')} (pid {holder.get('pid')} on {holder.get('host')}) "
                               f"since {holder.get('since')}", err=True)
                sys.exit(EXIT_LOCKED)
            if response.status_code == 401:
                raise click.ClickException(f"the daemon at {admin.url} refused the token of [admin]; "
                                           "start the CLI with the daemon's token_env or token_file")
            if response.status_code == 400:
                raise Refused(f"the daemon at {admin.url} refused the resync: {body.get('error')}")
            if response.status_code != 202:
                raise click.ClickException(f"the daemon at {admin.url} refused the resync: "
                                           f"{body.get('error') or f'HTTP {response.status_code}'}")
            run_id = body["run_id"]
            if not wait:
                click.echo(dumps({"run_id": run_id}) if as_json else run_id)
                return {"id": run_id, "status": "running"}
            if not as_json:
                click.echo(f"run {run_id} started by the daemon at {admin.url}", err=True)
            return _wait_for_run(http, run_id)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"the daemon at {admin.url} stopped answering: {exc}") from None


def _wait_for_run(http, run_id: str) -> dict:
    """Poll GET /runs/<id> until the run has finished; a spinner on a terminal."""
    status_line = None
    if sys.stderr.isatty():
        from rich.console import Console
        status_line = Console(stderr=True).status(f"run {run_id}: starting")
        status_line.start()
    t0, seen = time.monotonic(), False
    try:
        while True:
            response = http.get(f"/runs/{run_id}")
            if response.status_code == 200:
                seen = True
                row = response.json()
                if row.get("status") != "running":
                    return row
            elif response.status_code != 404 or time.monotonic() - t0 > 30:
                raise click.ClickException(f"run {run_id} did not start: HTTP {response.status_code} "
                                           f"{response.text[:200]}; see the daemon's log")
            if status_line:
                status_line.update(f"run {run_id}: {_remote_progress(http, run_id) if seen else 'starting'}, "
                                   f"{time.monotonic() - t0:.0f} s")
            time.sleep(0.5)
    except KeyboardInterrupt:
        click.echo(f"\nstopped waiting; run {run_id} goes on in the daemon (see it with: msp-hub runs show {run_id})", err=True)
        sys.exit(130)
    finally:
        if status_line:
            status_line.stop()


def _remote_progress(http, run_id: str) -> str:
    """The daemon's counts for the run in flight (from GET /health), as one line."""
    import httpx
    try:
        current = http.get("/health").json().get("current_run") or {}
    except (httpx.HTTPError, ValueError):
        return "running"
    p = current.get("progress") if current.get("run_id") == run_id else None
    if not p:
        return "running"
    try:
        seconds = time.time() - datetime.fromisoformat(current["since"]).timestamp()
    except (KeyError, TypeError, ValueError):
        seconds = 0.0
    rate = f", {p['records'] / seconds:,.0f} records/s" if seconds > 0 else ""
    return (f"{p['records']:,} records in {p['pages']} pages{rate}, {p['actions']} pushed"
            + (f" ({p['failed']} failed)" if p["failed"] else "") + (f"; at {p['stream']}" if p.get("stream") else ""))


def report_from_row(row: dict):
    """What ``exit_reasons`` reads, from a run row of the store or the API (a daemon's run).

    The row's counts give the passes and held causes when the run recorded them; otherwise the
    status and errors say what happened: a failed run whose errors name a pull failed to pull."""
    from types import SimpleNamespace
    counts = row.get("counts") or {}
    errors = row.get("errors") or []
    status = row.get("status")
    passes = counts.get("passes")
    if not isinstance(passes, dict):
        passes = {}
        for e in errors:
            if e.startswith("pull ") and ": " in e and " set aside: " not in e:
                key, error = e[5:].split(": ", 1)
                passes[key] = {"status": "failed", "error": error}
    held = []
    for cause, n in (counts.get("held_causes") or {}).items():
        held += [{"key": f"{n} action(s)", "cause": cause}] if n else []
    if not held and status == "held":
        held = [{"key": f"{counts.get('held', 0)} action(s)", "cause": "error"}]
    failed = [{"key": f"{counts.get('failed')} action(s)"}] if counts.get("failed") else []
    if status == "failed" and not passes and not failed:
        passes = {"(the run)": {"status": "failed", "error": "; ".join(errors) or "no message"}}
    return SimpleNamespace(passes=passes, held=held, failed=failed, stopped=status == "stopped")


def _print_run_row(row: dict) -> int:
    """A run the daemon made, in one or two lines; its exit code (see EXIT_CODES_HELP)."""
    counts = row.get("counts") or {}
    records = counts.get("records") or {}
    click.echo(f"run {row['id']}: {row['status']}; pulled "
               + (", ".join(f"{k} {v}" for k, v in sorted(records.items())) or "nothing")
               + f"; pushed {counts.get('pushed', 0)}, failed {counts.get('failed', 0)}, held {counts.get('held', 0)}")
    for e in row.get("errors") or []:
        click.echo(f"error: {e}", err=True)
    return _row_exit(row)


def _row_exit(row: dict) -> int:
    """The exit code of a daemon's run, with the line on stderr saying why it is not 0."""
    if row.get("status") in ("crashed", "abandoned"):
        click.echo(f"exit {EXIT_CRASHED}: run {row['id']} {row['status']}; see the daemon's log", err=True)
        return EXIT_CRASHED
    if row.get("status") == "refused":
        click.echo(f"exit {EXIT_LOCKED}: run {row['id']} was refused: another run held the lock", err=True)
        return EXIT_LOCKED
    reasons = exit_reasons(report_from_row(row))
    if reasons:
        click.echo(f"exit {reasons[0][0]}: " + "; also ".join(text for _, text in reasons), err=True)
    return reasons[0][0] if reasons else EXIT_OK


@main.command(epilog=EXIT_CODES_HELP)
@config_option
@scope_options
@click.option("--no-wait", is_flag=True, help="With a daemon: print the run id and return at once.")
def resync(config_path, connectors, streams, clients, period, full, dry_run, as_json, details, no_wait):
    """`msp-hub sync` through the daemon when one answers at [admin], else here.

    The same options, checks and output as `msp-hub sync`. A daemon found at the admin address
    (with the [admin] token) starts the run and the command follows it by its run id (`msp-hub
    runs show RUN_ID` details it later). Without a daemon the run happens here, with its progress
    on a terminal. When another run holds the lock, it says which and exits with code 75.

    \b
    Example:
        msp-hub resync --connector ninjaone --stream devices --full
        msp-hub resync --client acme --period 2026-10 --dry-run
    """
    from hub.service import admin_settings
    path = _config_file(config_path)
    scope = _scope(connectors, streams, clients, period, full, dry_run)
    try:
        config = _load_config(path)
        admin = admin_settings(config) if _tenant() is None else _tenant_admin(config)
    except HubError as exc:
        raise Refused(str(exc)) from None
    if admin.token is not None:
        row = _remote_resync(admin, scope, as_json=as_json, wait=not no_wait)
        if row is not None:
            if no_wait:
                return
            if as_json:
                click.echo(dumps(row))
                sys.exit(_row_exit(row))
            sys.exit(_print_run_row(row))
    _sync_here(path, scope, as_json=as_json, details=details)


class _TenantAdmin:
    """Where a tenant's daemon paths are: the deployment's admin address and /tenants/<name>."""

    def __init__(self, admin, prefix: str, token):
        self.host, self.port, self.token = admin.host, admin.port, token
        self.url = admin.url + prefix


def _tenant_admin(config) -> _TenantAdmin:
    """The chosen tenant's admin API: the deployment's [admin] address, the tenant's own token
    (else the deployment's)."""
    from hub.config import HubConfig
    from hub.service import admin_settings
    deployment = _deployment()
    own = config.admin_secret(required=False)
    where = {k: v for k, v in deployment.admin.items() if k in ("host", "port")}
    base = admin_settings(HubConfig(path=deployment.path, admin=deployment.admin if own is None else where))
    return _TenantAdmin(base, f"/tenants/{config.tenant}", own or base.token)


@main.command("tenants")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def tenants_command(as_json):
    """List the tenants of --tenants ($MSP_HUB_TENANTS): each one's config, database, schema and
    secrets file, checked (no two share a database file or a vendor secret).

    \b
    Example:
        msp-hub --tenants /etc/msp-hub/tenants.toml tenants
        msp-hub --tenants tenants.toml --tenant acme sync --dry-run
    """
    from hub.tenants import TENANTS_ENV, check_apart
    deployment = _deployment()
    if deployment is None:
        raise Refused(f"no tenants file: give --tenants tenants.toml (or set {TENANTS_ENV}); without one this "
                      f"deployment is one hub, the default tenant")
    try:
        configs = check_apart(deployment)
    except HubError as exc:
        raise Refused(str(exc)) from None
    rows = [{"name": name, "config": str(t.config_path), "database": configs[name].database,
             "schema": t.schema, "secrets_file": str(t.secrets_file) if t.secrets_file else None}
            for name, t in sorted(deployment.tenants.items())]
    if as_json:
        click.echo(dumps(rows))
        return
    _table(("TENANT", "CONFIG", "DATABASE", "SECRETS"),
           [(r["name"], r["config"], r["database"] + (f" (schema {r['schema']})" if r["database"].startswith("postgres")
                                                      and r["schema"] else ""), r["secrets_file"] or "-")
            for r in rows], click.echo)


def _sync_here(path: str, scope: dict[str, Any], *, as_json: bool, details: bool) -> None:
    """Run a sync in this process: the scope checked (unknown connector, stream or client: exit
    2), progress on a terminal, Ctrl-C stops after the current page; print the run and exit."""
    from hub.service import ScopeError, check_clients
    hub = _open_hub(path)
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("\nstopping after the current page or push (again to abort)", err=True)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    try:
        kwargs = _scope_kwargs(hub, **scope)
        if kwargs.get("clients"):
            check_clients(hub, kwargs["clients"])
        shown = sys.stderr.isatty() and not as_json
        progress = RunProgress() if shown else None
        watchdog = Watchdog(hub, kwargs.get("connectors"), progress)
        with watchdog:
            if progress:
                with progress:
                    report = sync_once(hub, holder="cli", stop=stop, progress=watchdog, **kwargs)
            else:
                report = sync_once(hub, holder="cli", stop=stop, progress=watchdog, **kwargs)
    except LockedError as exc:
        click.echo(f"locked: {exc}", err=True)
        sys.exit(EXIT_LOCKED)
    except (ScopeError, HubError, ValueError) as exc:
        raise Refused(str(exc)) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        hub.close()
    if as_json:
        click.echo(dumps(report.to_json()))
    else:
        click.echo(f"run {report.run_id}: pulled " + (", ".join(f"{k} {v}" for k, v in sorted(report.records.items()))
                                                      or "nothing") + f" in {report.seconds:.1f} s")
        render_plan(report, details=details)
        if report.stopped:
            click.echo("stopped before the end; the next run goes on from the last committed page")
        elif scope.get("dry_run"):
            click.echo("dry run: nothing was pushed")
        else:
            render_push(report)
    render_errors(report)
    _exit(report)



# --- distributed workers (Procrastinate on PostgreSQL) -----------------------------------------------

DEFAULT_TENANTS = "tenants.toml"
tenants_option = click.option("--tenants", "tenants_path", metavar="PATH", default=None,
                              help=f"The deployment's tenants.toml with its [workers] table (default: "
                                   f"$MSP_HUB_TENANTS or {DEFAULT_TENANTS}).")


def _tenants_file(path: str | None) -> str:
    return path or os.environ.get("MSP_HUB_TENANTS") or DEFAULT_TENANTS


@main.command()
@tenants_option
@click.option("--init", "init_only", is_flag=True, help="Create the queue's tables in PostgreSQL, then exit.")
@click.option("--name", help="The worker's name in the queue and its logs (default: host:pid).")
def worker(tenants_path, init_only, name):
    """Run a worker: the tenants' syncs, their schedules and stalled jobs, from the PostgreSQL queue.

    Start one or more on each machine, all pointing at the same tenants.toml [workers] database;
    each takes the next job. The queue's tables are created by the first worker (or by --init).
    On SIGTERM or Ctrl-C the run in flight ends after its current page or push and goes back to the
    queue; a worker killed outright has its job run again elsewhere after [workers] stalled_after.

    \b
    Example:
        export MSP_HUB_QUEUE_PASSWORD=...
        msp-hub worker --tenants /etc/msp-hub/tenants.toml
    """
    try:
        from hub.workers.run import ensure_schema, run_worker
        from hub.workers.settings import load_deployment
    except ImportError as exc:
        raise Refused(f"the workers need the scale extra ({exc.name} is missing) "
                      "(fix: pip install 'msp-hub[scale]')") from None
    path = _tenants_file(tenants_path)
    try:
        if init_only:
            deployment = load_deployment(path)
            applied = ensure_schema(deployment.settings)
            click.echo("queue tables created" if applied else "queue tables already present")
            return
        run_worker(path, name=name, level=_LOG_LEVEL[0] or "info")
    except HubError as exc:
        raise Refused(str(exc)) from None


@main.group()
def queue():
    """Queue runs for the workers and see what waits (tenants.toml [workers]).

    \b
    Example:
        msp-hub queue sync --tenants /etc/msp-hub/tenants.toml --tenant acme
        msp-hub queue status --tenants /etc/msp-hub/tenants.toml
    """


@queue.command("sync")
@tenants_option
@click.option("--tenant", "tenant_names", multiple=True, help="Queue a run of this tenant (repeatable; default: all).")
@click.option("--connector", "connectors", multiple=True, help="Pull only this connector (repeatable).")
@click.option("--stream", "streams", multiple=True, help="Pull only this stream (repeatable).")
@click.option("--client", "clients", multiple=True, help="Plan and push only this hub client (repeatable).")
@click.option("--period", metavar="YYYY-MM", help="Invoice this period even if it has not ended.")
@click.option("--full", is_flag=True, help="Re-read the streams from the start.")
@click.option("--dry-run", is_flag=True, help="Pull and plan, but push nothing.")
def queue_sync(tenant_names, tenants_path, connectors, streams, clients, period, full, dry_run):
    """Queue a sync of each chosen tenant; a worker runs it. A run of the same tenant already
    waiting is not queued twice.

    \b
    Example:
        msp-hub queue sync --tenants /etc/msp-hub/tenants.toml --tenant acme --stream alerts
    """
    try:
        from hub.workers.app import PULL, SYNC, defer_run, make_app
        from hub.workers.settings import load_deployment
    except ImportError as exc:
        raise Refused(f"the workers need the scale extra ({exc.name} is missing) "
                      "(fix: pip install 'msp-hub[scale]')") from None
    scope = _scope(connectors, streams, clients, period, full, False)
    try:
        deployment = load_deployment(_tenants_file(tenants_path))
        tenants = deployment.tenants()
        chosen = list(tenant_names) or sorted(tenants)
        for name in chosen:
            deployment.tenant(name)
        app = make_app(deployment)
        with app.open():
            for name in chosen:
                job_id = defer_run(app, name, "manual", scope, task=PULL if dry_run else SYNC)
                click.echo(f"{name}: queued as job {job_id}" if job_id is not None
                           else f"{name}: a manual run already waits; not queued twice")
    except HubError as exc:
        raise Refused(str(exc)) from None


@queue.command("status")
@tenants_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def queue_status(tenants_path, as_json):
    """How many jobs of each task wait, run, failed or succeeded; the workers alive.

    \b
    Example:
        msp-hub queue status --tenants /etc/msp-hub/tenants.toml --json
    """
    import json as json_module
    try:
        from hub.workers.run import connect
        from hub.workers.settings import load_deployment
    except ImportError as exc:
        raise Refused(f"the workers need the scale extra ({exc.name} is missing) "
                      "(fix: pip install 'msp-hub[scale]')") from None
    try:
        settings = load_deployment(_tenants_file(tenants_path)).settings
        with connect(settings) as conn:
            if not conn.execute("select to_regclass('procrastinate_jobs') is not null").fetchone()[0]:
                raise Refused("the queue has no tables yet (fix: msp-hub worker --init, or start a worker)")
            jobs = conn.execute("select task_name, status::text, count(*) from procrastinate_jobs "
                                "group by 1, 2 order by 1, 2").fetchall()
            workers = conn.execute("select count(*) from procrastinate_workers where last_heartbeat > "
                                   "now() - make_interval(secs => %s)", [settings.stalled_after]).fetchone()[0]
    except HubError as exc:
        raise Refused(str(exc)) from None
    if as_json:
        click.echo(json_module.dumps({"workers": workers, "jobs": [{"task": t, "status": s, "count": n}
                                                                   for t, s, n in jobs]}, indent=2))
        return
    click.echo(f"workers alive: {workers}")
    _table(("task", "status", "jobs"), [(t, s, str(n)) for t, s, n in jobs], click.echo, right=(2,))


@main.group()
def report():
    """Reports from the store (no vendor is called): client scorecards, the MSP's KPIs, the maturity
    self-assessment.

    \b
    Example:
        msp-hub report scorecard --client acme --quarter 2026-Q4 --format pdf --out acme.pdf
    """


# --- report kpis --------------------------------------------------------------------------------


@report.command("kpis")
@click.option("--from", "first", required=True, metavar="YYYY-MM", help="The first month.")
@click.option("--to", "last", required=True, metavar="YYYY-MM", help="The last month (inclusive).")
@click.option("--format", "fmt", type=click.Choice(["html", "csv", "json"]), default="html", show_default=True)
@click.option("--lang", type=click.Choice(["en", "fr"]), default=None,
              help="Labels of the HTML (default: [reports] language, else the invoices').")
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file (default: standard output).")
@config_option
def report_kpis(first, last, fmt, lang, out, config_path):
    """The MSP's revenue KPIs month by month, from the store (no vendor is called): MRR and its
    movement, revenue per client, new agreements, upsell, managed devices, cross-sell per add-on,
    tickets, hours, technicians, effective hourly rates and prepaid blocks. Figures that need an
    input no API holds (labour cost, headcount) come from [reports.kpis]; without it they are
    listed as not available.

    Example:

        msp-hub report kpis --from 2026-01 --to 2026-11 --format html --out kpis.html
    """
    from hub.reports import kpis as kpi_report
    for flag, value in (("--from", first), ("--to", last)):
        _check_month(flag, value)
    hub = _open_hub(config_path, read_only=True)
    try:
        try:
            data = kpi_report.build(hub, first, last)
        except ValueError as exc:
            raise Refused(str(exc)) from None
        except HubError as exc:
            raise Refused(str(exc)) from None
        body = kpi_report.render(data, fmt, lang or kpi_report.language_of(hub.config))
    finally:
        hub.close()
    if out:
        Path(out).write_bytes(body)
        click.echo(f"wrote {out} ({len(body)} bytes, {len(data['rows'])} figures)", err=True)
    else:
        click.echo(body.decode(), nl=False)


def _check_month(flag: str, value: str) -> None:
    """Refuse a month that is not YYYY-MM at once, before the config is read."""
    from hub.periods import parse_period
    try:
        parse_period(value)
    except ValueError as exc:
        raise Refused(f"{flag}: {exc} (fix: write {flag} 2026-10)") from None


# --- report scorecard: the client scorecard of a quarter (hub.reports.scorecard) -----------------------

@report.command("scorecard")
@config_option
@click.option("--client", "client_id", metavar="ID", help="The hub client id (msp-hub clients lists them).")
@click.option("--all", "every", is_flag=True, help="Every linked client; --out is then a folder, one file each.")
@click.option("--quarter", required=True, metavar="YYYY-Qn", help="The quarter, e.g. 2026-Q4 (in the MSP's time zone).")
@click.option("--format", "fmt", type=click.Choice(["html", "pdf", "json"]), default="html", show_default=True)
@click.option("--lang", type=click.Choice(["en", "fr"]), default=None,
              help="The labels' language (default: [reports] language, else the invoices').")
@click.option("--out", "out", metavar="PATH", help="Write to this file (with --all: this folder) instead of stdout.")
@click.option("--details", is_flag=True, help="List the devices and tickets behind each figure in the HTML and PDF.")
@click.option("--freeze", is_flag=True, help="Store the scorecard as presented; later renders read it.")
@click.option("--refreeze", is_flag=True, help="With --freeze: replace a quarter already frozen.")
def report_scorecard(config_path, client_id, every, quarter, fmt, lang, out, details, freeze, refreeze):
    """The client scorecard of a quarter: each row of the reference scorecard as a percentage, this
    quarter against the last, the overall score, and (--details, always in JSON) the devices and
    tickets behind each figure. A frozen scorecard is read as it was frozen; otherwise it is
    computed from the store. Nothing is asked of any vendor.

    \b
    Example:
        msp-hub report scorecard --client acme --quarter 2026-Q4 --format pdf --lang fr --out acme.pdf
        msp-hub report scorecard --client acme --quarter 2026-Q4 --freeze --out acme.html
        msp-hub report scorecard --all --quarter 2026-Q4 --format pdf --out scorecards/
    """
    from hub.reports import scorecard as sc
    if bool(client_id) == bool(every):
        raise Refused("give --client ID or --all (fix: msp-hub clients lists the client ids)")
    if refreeze and not freeze:
        raise Refused("--refreeze replaces a frozen scorecard: give it with --freeze")
    if every and not out:
        raise Refused("--all writes one file per client: give --out FOLDER")
    if fmt == "pdf" and not out and sys.stdout.isatty():
        raise Refused("a PDF is not written to a terminal: give --out FILE")
    try:
        name = sc.quarter(quarter).name
    except sc.ScorecardError as exc:
        raise Refused(f"--quarter: {exc}") from None
    hub = _open_hub(config_path, read_only=True)
    try:
        ids = [cid for cid, _ in sc.clients_with_scorecards(hub)] if every else [client_id]
        frozen = [cid for cid in ids if hub.store.frozen_scorecard(cid, name) is not None]
        if freeze and not refreeze and frozen:
            raise Refused(f"the scorecard of {', '.join(frozen)} for {name} is already frozen and kept as presented; "
                          f"nothing was frozen (fix: drop --freeze to render the frozen one, or add --refreeze to "
                          f"replace it with the figures computed now)")
        outputs = []
        for cid in ids:
            if freeze:
                card = sc.freeze(hub, sc.build(hub, cid, name), refreeze=refreeze)
            else:
                card = sc.scorecard_for(hub, cid, name)
            outputs.append((cid, card, sc.render_for(hub, card, fmt, lang, details=details)))
    except (HubError, ValueError) as exc:
        raise Refused(str(exc)) from None
    finally:
        hub.close()
    if every:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        for cid, card, content in outputs:
            target = folder / f"scorecard-{cid}-{card.quarter}.{fmt}"
            target.write_bytes(content)
            click.echo(f"{target}: {cid} {card.quarter}, overall {_score_text(card.overall)}"
                       + (" (frozen)" if card.frozen else ""))
        return
    cid, card, content = outputs[0]
    if out:
        Path(out).write_bytes(content)
        click.echo(f"{out}: {cid} {card.quarter}, overall {_score_text(card.overall)}"
                   + (f" (frozen {card.frozen['at']} by {card.frozen['by']})" if card.frozen else ""))
    else:
        click.echo(content, nl=False)


def _score_text(value: float | None) -> str:
    return "not measured" if value is None else f"{value:g} %"


# --- report maturity -------------------------------------------------------------------------------

@report.command("maturity")
@config_option
@click.option("--answers", "answers_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="The answers (answers.toml: five whole numbers from 1 to 5 per area); default: the last "
                   "recorded assessment.")
@click.option("--format", "fmt", type=click.Choice(["html", "pdf", "json"]), default="html", show_default=True)
@click.option("--lang", type=click.Choice(["en", "fr"]), default=None,
              help="The report's language (default: [reports] language, else the invoices').")
@click.option("--out", "out_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write the report to FILE (default: standard output; a PDF needs --out).")
@click.option("--no-save", is_flag=True, help="Do not record these answers (a preview).")
@click.option("--by", "by", metavar="NAME", help="Who answered (default: answered_by of the file, else the system user).")
def report_maturity(config_path, answers_path, fmt, lang, out_path, no_save, by):
    """The MSP's maturity self-assessment: the score per area, the stage, the next step per area,
    the signals the hub's data gives beside the statements, and the path over time.

    The answers are recorded with the date and who answered, so that the next report shows the
    path (the same answers on the same day are recorded once); --no-save previews without
    recording. Without --answers, the last recorded assessment is shown again.

    \b
    Example:
        msp-hub report maturity --answers answers.toml --format pdf --lang fr --out maturite.pdf
    """
    from hub.reports import maturity
    if fmt == "pdf" and not out_path:
        raise Refused("a PDF is not written to the terminal (fix: add --out maturity.pdf)")
    try:
        answers = maturity.load_answers(answers_path) if answers_path else None
    except HubError as exc:
        raise Refused(str(exc)) from None
    hub = _open_hub(config_path, read_only=True)
    try:
        from hub.reports.delivery import report_language
        language = lang or report_language(hub.config)
        assessment = maturity.assess(hub, answers, save=not no_save, by=by)
        data = maturity.render_report(assessment, fmt, language, config=hub.config)
    except HubError as exc:
        raise Refused(str(exc)) from None
    finally:
        hub.close()
    if out_path:
        target = Path(out_path)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        click.echo(f"{out_path}: maturity {maturity.number(assessment.score.overall, 'en')} / 5, "
                   f"{maturity.STAGE_NAMES[language][assessment.score.stage]}"
                   + ("" if assessment.saved else " (not recorded)"), err=True)
    else:
        click.echo(data.decode(), nl=False)


@report.command("deliver")
@config_option
@click.argument("name", type=click.Choice(["scorecard", "kpis", "maturity"]))
@click.option("--period", metavar="PERIOD", help="The quarter (2026-Q3) or month (2026-11) to deliver (default: the "
                                                 "last ended one).")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
def report_deliver(config_path, name, period, as_json):
    """Deliver a report as the daemon's report job does: write the period's documents into
    [reports.delivery] folder and, with email = true, e-mail each client its PDF, exactly once.

    A rerun writes and e-mails nothing twice; an e-mail that failed is sent again. Exits 1 when a
    document was not made, not e-mailed, or a client has no address (each one is named).

    \b
    Example:
        msp-hub report deliver scorecard --period 2026-Q3
    """
    from hub.reports.delivery import deliver
    hub = _open_hub(config_path)          # not read-only: the SMTP password is needed to e-mail
    try:
        result = deliver(hub, name, period)
    except (HubError, ValueError) as exc:
        raise Refused(str(exc)) from None
    finally:
        hub.close()
    if as_json:
        click.echo(dumps(result.as_dict()))
    else:
        for line in result.lines():
            click.echo(line)
    if not result.ok:
        sys.exit(1)


# --- plugin: the kit for writing a connector ---------------------------------------------------

@main.group()
def plugin():
    """Write a connector plugin: start one from the template (see docs/guide.md).

    \b
    Example:
        msp-hub plugin new acme_rmm
    """


@plugin.command("new")
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True, type=click.Path(file_okay=False),
              help="The folder to write the package's folder NAME/ in.")
def plugin_new(name, directory):
    """Write a working connector package NAME/ (client, plugin, simulator, tests, pyproject.toml
    with the msp_hub entry point, README, device_classes snippet) for a toy RMM, to change into
    your vendor's. NAME is lowercase letters, digits and underscores; an existing folder is
    never overwritten.

    \b
    Example:
        msp-hub plugin new acme_rmm
        pip install -e ./acme_rmm && pytest ./acme_rmm
    """
    from hub.errors import ConfigError
    from hub.sdk.new import new_plugin
    try:
        target = new_plugin(name, directory)
    except ConfigError as exc:
        raise Refused(str(exc)) from exc
    click.echo(f"wrote {target}/ (the connector {name!r})")
    click.echo("next:")
    click.echo(f"  pip install -e {target}")
    click.echo(f"  pytest {target}")
    click.echo(f"then change {target}/{name}/client.py and simulator.py to your vendor's API (docs/guide.md)")


if __name__ == "__main__":  # pragma: no cover
    main()
