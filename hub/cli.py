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

from hub.config import load_config
from hub.engine import Hub, LockedError, RunReport, dumps, sync_once
from hub.errors import HubError
from hub.logs import configure_logging
from hub.money import format_minor

DEFAULT_CONFIG = "msp-hub.toml"
EXIT_LOCKED = 75   # EX_TEMPFAIL: another run holds the lock; try again later


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
    except LockedError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_LOCKED)
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
    """Pull from every connector, plan the invoices and tickets, and push what is new.

    A second sync over the same period pushes nothing and says so. A sync scoped with
    --connector or --stream pushes only what those streams feed (alert streams: tickets);
    invoices, renewals and agreement quantities wait for an unscoped sync.

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


# --- the daemon and manual resync ------------------------------------------------------------------

def _config_file(config_path: str | None) -> str:
    return config_path or os.environ.get("MSP_HUB_CONFIG") or DEFAULT_CONFIG


@main.command()
@config_option
def daemon(config_path):
    """Run the scheduled jobs of [schedule] and serve the admin API of [admin] until stopped.

    One run at a time: a job that fires while another runs waits for it up to its
    misfire_grace_time, then is skipped until its next firing. On SIGTERM or Ctrl-C the run in
    flight ends after its current page or push, committed, and the daemon exits 0.
    deploy/msp-hub.service runs it under systemd.

    Example:
        export MSP_HUB_ADMIN_TOKEN=$(openssl rand -hex 32)
        msp-hub daemon --config /etc/msp-hub/msp-hub.toml
    """
    from hub.daemon import run_daemon
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


def _remote_resync(admin, scope: dict, *, as_json: bool, wait: bool):
    """POST /resync to the daemon at ``admin.url``; None when no daemon answers there."""
    import httpx
    headers = {"Authorization": f"Bearer {admin.token.reveal()}"}
    try:
        with httpx.Client(base_url=admin.url, headers=headers, timeout=httpx.Timeout(30.0, connect=2.0)) as http:
            try:
                response = http.post("/resync", json=scope)
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
        click.echo(f"\nstopped waiting; run {run_id} goes on in the daemon (msp-hub runs lists it)", err=True)
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


def _print_run_row(row: dict) -> int:
    """A run the daemon made, in one or two lines; the exit code (0 when it ended ok)."""
    counts = row.get("counts") or {}
    records = counts.get("records") or {}
    click.echo(f"run {row['id']}: {row['status']}; pulled "
               + (", ".join(f"{k} {v}" for k, v in sorted(records.items())) or "nothing")
               + f"; pushed {counts.get('pushed', 0)}, failed {counts.get('failed', 0)}, held {counts.get('held', 0)}")
    for e in row.get("errors") or []:
        click.echo(f"error: {e}", err=True)
    return 0 if row["status"] == "ok" else 1


@main.command()
@config_option
@click.option("--connector", "connectors", multiple=True, help="Only this connector (repeatable).")
@click.option("--stream", "streams", multiple=True, help="Only this stream (repeatable).")
@click.option("--client", "clients", multiple=True, help="Plan and push only this hub client (repeatable).")
@click.option("--period", metavar="YYYY-MM", help="Invoice this period even if it has not ended.")
@click.option("--full", is_flag=True, help="Re-read the streams from the start; their saved cursors stay as they are.")
@click.option("--dry-run", is_flag=True, help="Pull and plan, but push nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.option("--no-wait", is_flag=True, help="With a daemon: print the run id and return at once.")
def resync(config_path, connectors, streams, clients, period, full, dry_run, as_json, no_wait):
    """Run a sync now, through the daemon when one answers at [admin], else in this process.

    A daemon found at the admin address (with the [admin] token) starts the run and the command
    follows it by its run id. Without a daemon the run happens here, with its progress on a
    terminal. When another run holds the lock, it says which and exits with code 75.

    Example:
        msp-hub resync --connector ninjaone --stream devices --full
        msp-hub resync --client acme --period 2026-10 --dry-run
    """
    from hub.service import ScopeError, admin_settings, check_clients, normalize_scope
    path = _config_file(config_path)
    scope: dict[str, Any] = {"connectors": list(connectors), "streams": list(streams), "clients": list(clients),
                             "full": full, "dry_run": dry_run}
    if period:
        scope["period"] = period
    scope = {k: v for k, v in scope.items() if v}
    try:
        config = load_config(path)
        admin = admin_settings(config)
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    if admin.token is not None:
        row = _remote_resync(admin, scope, as_json=as_json, wait=not no_wait)
        if row is not None:
            if no_wait:
                return
            if as_json:
                click.echo(dumps(row))
                sys.exit(0 if row["status"] == "ok" else 1)
            sys.exit(_print_run_row(row))
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
        kwargs = normalize_scope(scope, {n: [st.name for st in c.streams()] for n, c in hub.connectors.items()})
        if kwargs.get("clients"):
            check_clients(hub, kwargs["clients"])
        shown = sys.stderr.isatty() and not as_json
        progress = RunProgress() if shown else None
        if progress:
            with progress:
                report = sync_once(hub, holder="cli", stop=stop, progress=progress, **kwargs)
        else:
            report = sync_once(hub, holder="cli", stop=stop, **kwargs)
    except LockedError as exc:
        click.echo(f"locked: {exc}", err=True)
        sys.exit(EXIT_LOCKED)
    except (ScopeError, HubError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        hub.close()
    if as_json:
        click.echo(dumps(report.to_json()))
    else:
        click.echo(f"run {report.run_id}: pulled " + (", ".join(f"{k} {v}" for k, v in sorted(report.records.items()))
                                                      or "nothing") + f" in {report.seconds:.1f} s")
        if report.stopped:
            click.echo("stopped before the end; the next run goes on from the last committed page")
        elif dry_run:
            click.echo("dry run: nothing was pushed")
        else:
            render_push(report)
    render_errors(report)
    sys.exit(1 if report.failed or report.stopped else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
