"""``msp-hub demo``: the whole hub against the NinjaOne (or Tactical RMM), ConnectWise and Stripe
simulators on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from hub.cli import render_errors, render_plan, render_push
from hub.config import load_config
from hub.engine import Hub, sync_once
from hub.logs import configure_logging
from hub.money import format_minor
from hub.periods import Period, last_ended_period, quarter_of
from hub.testing import serve
from hub.init import demo_mappings

MAPPINGS = demo_mappings()
NINJA_SECRET_VAR, STRIPE_KEY_VAR = "MSP_HUB_DEMO_NINJAONE_SECRET", "MSP_HUB_DEMO_STRIPE_KEY"
CW_KEY_VAR = "MSP_HUB_DEMO_CONNECTWISE_KEY"
TACTICAL_KEY_VAR = "MSP_HUB_DEMO_TACTICALRMM_KEY"
RMMS = ("ninjaone", "tacticalrmm")   # the RMM the demo runs with (``rmm=``); NinjaOne by default
ADMIN_TOKEN_VAR = "MSP_HUB_DEMO_ADMIN_TOKEN"

CONFIG = """\
# Written by `msp-hub demo`: the simulators below run only while the demo runs.
# Its secrets are in secrets.env next to this file: set -a; . ./secrets.env; set +a
timezone = "Europe/Paris"
database = "demo.db"
mappings = "{mappings}"

[connectors.ninjaone]
base_url = "{ninja_url}"
client_id = "{ninja_client_id}"
client_secret_env = "{ninja_var}"
report_streams = true

[connectors.stripe]
base_url = "{stripe_url}"
api_key_env = "{stripe_var}"

[connectors.connectwise]
site = "{cw_url}"
company_id = "{cw_company}"
public_key = "{cw_public}"
private_key_env = "{cw_var}"
client_id = "{cw_client_id}"
report_streams = true

[logging]
format = "console"
level = "warning"

[reports]
msp_name = "Demo MSP"
language = "fr"
"""

# `demo --keep` only: the daemon's admin API on a free port of 127.0.0.1, and jobs to watch it run.
KEEP_CONFIG = """
[admin]
host = "127.0.0.1"
port = {admin_port}
token_env = "{admin_var}"

[[schedule.jobs]]
name = "alerts"
connectors = ["ninjaone"]
streams = ["alerts", "alert_events"]
every = "1m"

[[schedule.jobs]]
name = "everything"
every = "15m"
"""


NINJAONE_SECTION = """
[connectors.ninjaone]
base_url = "{ninja_url}"
client_id = "{ninja_client_id}"
client_secret_env = "{ninja_var}"
report_streams = true
"""

# With ``--rmm tacticalrmm``: CONFIG and KEEP_CONFIG with Tactical RMM in NinjaOne's place.
TACTICAL_SECTION = """
[connectors.tacticalrmm]
base_url = "{tactical_url}"
api_key_env = "{tactical_var}"
"""
TACTICAL_CONFIG = CONFIG.replace(NINJAONE_SECTION, TACTICAL_SECTION)
TACTICAL_KEEP_CONFIG = KEEP_CONFIG.replace('connectors = ["ninjaone"]\nstreams = ["alerts", "alert_events"]',
                                           'connectors = ["tacticalrmm"]\nstreams = ["alerts"]')
assert TACTICAL_CONFIG != CONFIG and TACTICAL_KEEP_CONFIG != KEEP_CONFIG


def free_port() -> int:
    """A port of 127.0.0.1 free now (for the demo's admin API)."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed_ninjaone(devices: int):
    """A seeded MSP: six organizations (one without a contract), mixed classes, some pending, and
    a few alerts: a server's CPU, a disk filling up twice on one workstation, and a storm of
    service alerts at one client."""
    from plugins.ninjaone.simulator import NinjaOneSimulator
    sim = NinjaOneSimulator(seed=7, organizations=6, devices=devices, now=time.time())
    def of(org: int, cls: str) -> list[int]:
        """The org's approved devices of a class (any of its devices when it has none: a small seed)."""
        mine = [d for d in sim.device_ids if sim.device(d)["organizationId"] == org]
        return [d for d in mine if sim.device(d)["nodeClass"] == cls and sim.device(d)["approvalStatus"] == "APPROVED"] \
            or mine or [sim.add_device(org, cls, last_contact=sim.now)]

    sim.trigger_alert(of(1, "WINDOWS_SERVER")[0], condition="cpu-95", source_type="CONDITION_AGENT_CPU",
                      severity="CRITICAL", message="CPU above 95 % for 15 minutes")
    disk = of(3, "WINDOWS_WORKSTATION")[0]
    first = sim.trigger_alert(disk, condition="disk-c", source_type="CONDITION_AGENT_DISK_FREE_SPACE",
                              severity="MAJOR", message="C: has less than 5 % free")
    sim.reset_alert(first)
    sim.trigger_alert(disk, condition="disk-c", source_type="CONDITION_AGENT_DISK_FREE_SPACE",
                      severity="MAJOR", message="C: has less than 5 % free")
    workstations = of(5, "WINDOWS_WORKSTATION")
    for i in range(25):
        sim.trigger_alert(workstations[i % len(workstations)], condition=f"svc-{i}",
                          source_type="CONDITION_WINDOWS_SERVICE_STATE_CHANGED", severity="MODERATE",
                          message=f"Print Spooler stopped ({i})")
    return sim


DEMO_CLIENTS = ("Acme Dental", "Birchwood Legal", "Cobalt Logistics", "Driftwood Cafe", "Elm Street Clinic",
                "Fairview Schools")


def seed_tacticalrmm(devices: int):
    """The seeded MSP on Tactical RMM: the same six clients (linked to the contracts and the PSA
    companies by name), agents of every OS and monitoring type, and a few unresolved alerts (a
    server's disk, an overdue workstation), plus one resolved (no ticket)."""
    from plugins.tacticalrmm.simulator import KINDS, TacticalRMMSimulator
    sim = TacticalRMMSimulator(seed=7, client_names=list(DEMO_CLIENTS), agents=0, alerts=0, now=time.time())
    for n in range(max(devices, len(DEMO_CLIENTS) * 2)):
        plat, kind = KINDS[n % len(KINDS)]
        sim.add_agent(n % len(DEMO_CLIENTS) + 1, plat=plat, monitoring_type=kind)

    def agent(client: int, kind: str) -> str:
        return next(a["agent_id"] for a in sim.agents if a["_client"] == client and a["monitoring_type"] == kind)
    sim.add_alert(agent(1, "server"), alert_type="check", severity="error",
                  message="Disk Space Drive C: Check: less than 10% free")
    sim.add_alert(agent(3, "workstation"), alert_type="availability", severity="warning",
                  message="Agent has not checked in for 30 minutes", assigned_check=None)
    solved = sim.add_alert(agent(2, "workstation"), alert_type="check", severity="warning",
                           message="CPU Load Check: above 90%")
    sim.resolve_alert(solved["id"])
    return sim


def seed_connectwise(period: Period):
    """The PSA side of the seeded MSP: the same companies, agreements of every kind, and time.

    Acme, Birchwood and Cobalt keep their contracts in mappings/ (Cobalt's agreement disagrees, which
    is reported); Driftwood buys blocks of hours and used 18.5 of 20; Elm Street is break/fix;
    Fairview has devices in the RMM but no agreement.
    """
    from plugins.connectwise.simulator import ConnectWiseSimulator
    cw = ConnectWiseSimulator(seed=7, companies=0, agreements=0, time_entries=0, products=0, now=time.time())
    co = {n.split()[0].lower(): cw.add_company(n) for n in (
        "Acme Dental", "Birchwood Legal", "Cobalt Logistics", "Driftwood Cafe", "Fairview Schools")}
    # A Belgian business client with its VAT number: reverse charge, no French VAT ("Autoliquidation").
    co["elm"] = cw.add_company("Elm Street Clinic", country="Belgium", address=("Rue de la Loi 16", "1000", "Bruxelles"),
                               tax_identifier="BE0403170701")
    day = lambda d, h=9: (period.start + timedelta(days=d - 1, hours=h)).timestamp()  # noqa: E731
    gold = cw.add_agreement(co["acme"], "Managed Gold")
    cw.add_addition(gold, "MS-WS", quantity=28)
    cw.add_addition(gold, "MS-SRV", quantity=20)
    silver = cw.add_agreement(co["birchwood"], "Managed Silver")
    cw.add_addition(silver, "MS-WS", quantity=42)
    cw.add_agreement(co["cobalt"], "Managed Gold")
    block = cw.add_agreement(co["driftwood"], "Block Hours", application_units="Hours", application_limit=20)
    cw.add_agreement(co["elm"], "Break/Fix")
    cw.add_time_entry(co["acme"], 2.0, start=day(6), work_type="Remote Support", charge_id=71)
    cw.add_time_entry(co["acme"], 0.5, start=day(7), work_type="Onsite", charge_id=72)
    for d, hours in ((5, 8.0), (12, 6.5), (19, 4.0)):
        cw.add_time_entry(co["driftwood"], hours, start=day(d), agreement_id=block, member="amartin")
    cw.add_time_entry(co["elm"], 70 / 60, start=day(9), work_type="Remote Support", member="lchen", charge_id=75)
    cw.add_time_entry(co["elm"], 0.5, start=day(10), work_type="Onsite", member="lchen", charge_id=76)
    cw.add_time_entry(co["elm"], 1.0, start=day(11), work_type="Remote Support", charge_id=77)
    cw.add_time_entry(co["elm"], 0.5, start=day(11, 14), work_type="Virus Removal", charge_id=77)
    cw.add_time_entry(co["elm"], 1.0, start=day(12), billable="NoCharge")
    cw.add_product(co["elm"], "SSD-1TB", quantity=2, price=109.99)
    # What the scorecards read: the companies' tickets of the last months (configurations: see
    # mirror_configurations).
    cw.add_report_data(service_tickets=120, seed=7, by_hub=False)
    return cw


CONFIGURATION_TYPES = {"WINDOWS_SERVER": "Managed Server", "LINUX_SERVER": "Managed Server",
                       "NMS_SWITCH": "Network Device", "NMS_ROUTER": "Network Device", "NMS_FIREWALL": "Firewall"}


def mirror_configurations(ninja, cw) -> None:
    """The PSA's configurations, as an MSP's RMM-to-PSA sync makes them: one per approved RMM device
    of a company, with its serial number and warranty (one in eight with no warranty known)."""
    companies = {cw.record("companies", i)["name"]: i for i in cw.ids("companies")}
    for n, device_id in enumerate(ninja.device_ids):
        device = ninja.device(device_id, detailed=True)
        company = companies.get(device["references"]["organization"]["name"])
        if company is None or device["approvalStatus"] != "APPROVED":
            continue
        end = device["references"].get("warranty", {}).get("endDate")
        warranty = None if end is None or n % 8 == 0 else \
            datetime.fromtimestamp(end, timezone.utc).date().isoformat()
        cw.add_configuration(company, device.get("systemName") or device["displayName"],
                             (device.get("system") or {}).get("serialNumber"),
                             type_name=CONFIGURATION_TYPES.get(device["nodeClass"], "Managed Workstation"),
                             device_identifier=str(device_id), warranty_end=warranty)


def demo_plugins(rmm: str):
    """The plugins of the demo's hub: the installed entry points, and the demo's RMM plugin when the
    installed package's metadata predates it (a checkout not reinstalled since the plugin came)."""
    import importlib
    from hub.plugins import get_plugin_manager
    pm = get_plugin_manager()
    if pm.get_plugin(rmm) is None:
        pm.register(importlib.import_module(f"plugins.{rmm}.plugin"), name=rmm)
    return pm


def demo_reports(hub: Hub, out: Path, *, scorecards: bool = True) -> list[str]:
    """The demo's reports, written in ``out``: every client's scorecard of this quarter (HTML, and
    the first client's PDF; ``scorecards=False``: none, for an RMM whose connector reads no patch,
    antivirus or warranty data), the KPIs of the months up to the last ended one, and the maturity
    self-assessment of the example answers. Returns what to print."""
    from hub.init import example_file
    from hub.reports import kpis, maturity, scorecard
    out.mkdir(parents=True, exist_ok=True)
    now = hub.clock()
    name = quarter_of(now, hub.config.timezone)
    lines = [] if scorecards else ["scorecards: not written (the RMM's connector reads no patch, antivirus or "
                                   "warranty data; run the demo with NinjaOne for them)"]
    for at, (cid, client) in enumerate(scorecard.clients_with_scorecards(hub) if scorecards else []):
        card = scorecard.scorecard_for(hub, cid, name)
        (out / f"scorecard-{cid}-{name}.html").write_bytes(scorecard.render_for(hub, card, "html"))
        if at == 0:
            (out / f"scorecard-{cid}-{name}.pdf").write_bytes(scorecard.render_for(hub, card, "pdf"))
        measured = [r for r in card.data["rows"] if r["value"] is not None]
        overall = "not measured" if card.overall is None else f"{card.overall:.0f} %"
        lines.append(f"scorecard {client} {name}: {overall} ({len(measured)} of {len(card.data['rows'])} rows measured)")
    last = last_ended_period(now, hub.config.timezone)
    first = last
    for _ in range(2):
        first = first.previous()
    (out / f"kpis-{first.name}-{last.name}.html").write_bytes(kpis.render(kpis.build(hub, first.name, last.name), "html"))
    lines.append(f"KPIs {first.name} to {last.name}: kpis-{first.name}-{last.name}.html")
    assessment = maturity.assess(hub, maturity.load_answers(example_file("maturity-answers.toml")))
    lang = hub.config.report_language
    for fmt in ("html", "pdf"):
        (out / f"maturity.{fmt}").write_bytes(maturity.render_report(assessment, fmt, lang, config=hub.config))
    lines.append(f"maturity: {maturity.number(assessment.score.overall, 'en')} -> "
                 f"{maturity.STAGE_NAMES['fr'][assessment.score.stage]} "
                 f"(maturity.html, maturity.pdf; answers: examples/maturity-answers.toml)")
    lines.append(f"written in {out}")
    return lines


def write_secrets(path: Path, values: dict[str, str]) -> None:
    """The demo's secrets as a file to source (``set -a; . secrets.env; set +a``) or to give systemd
    as its EnvironmentFile; readable by its owner only."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# The demo's secrets (simulators on 127.0.0.1 only): set -a; . ./secrets.env; set +a\n")
        out.writelines(f"{name}={shlex.quote(value)}\n" for name, value in values.items())


def wait_for_interrupt() -> None:
    """Block until Ctrl-C (SIGINT) or SIGTERM; return normally for either."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def keep_lines(folder: Path, admin_port: int | None = None) -> list[str]:
    """What to paste in another shell to work against the running demo."""
    config, secrets = shlex.quote(str(folder / "msp-hub.toml")), shlex.quote(str(folder / "secrets.env"))
    return [
        f"config: {folder / 'msp-hub.toml'}",
        f"secrets: {folder / 'secrets.env'}",
        "In another shell, every command works against this demo while it runs:",
        f"  set -a; . {secrets}; set +a",
        f"  msp-hub actions --config {config}",
        f"  msp-hub plan --config {config}",
        f"  msp-hub sync --config {config}",
        f"  msp-hub daemon --config {config}",
    ] + ([f"  curl -H \"Authorization: Bearer ${ADMIN_TOKEN_VAR}\" http://127.0.0.1:{admin_port}/health"
          "   (while the daemon runs)"] if admin_port else [])


def run_demo(*, devices: int = 300, workdir: str | None = None, keep: bool = False, rmm: str = "ninjaone") -> None:
    """Seed the simulators, serve them, sync twice and write the reports. ``rmm``: "ninjaone" (the
    default) or "tacticalrmm" (the same MSP on Tactical RMM: its agents billed, its alerts ticketed)."""
    from plugins.stripe.simulator import StripeSimulator

    if rmm not in RMMS:
        raise click.BadParameter(f"{rmm!r} is not an RMM of the demo (one of: {', '.join(RMMS)})", param_hint="--rmm")
    rmm_sim = seed_ninjaone(devices) if rmm == "ninjaone" else seed_tacticalrmm(devices)
    stripe_sim = StripeSimulator(api_key="sk_test_msp_hub_demo")
    cw = seed_connectwise(last_ended_period(datetime.now(timezone.utc), "Europe/Paris"))
    if rmm == "ninjaone":   # the PSA's configurations mirror NinjaOne's devices (for the scorecards)
        mirror_configurations(rmm_sim, cw)
    with contextlib.ExitStack() as stack:
        rmm_url = stack.enter_context(serve(rmm_sim.handler))
        stripe_url = stack.enter_context(serve(stripe_sim.handler))
        cw_url = stack.enter_context(serve(cw.handler))
        if workdir:
            folder = Path(workdir).resolve()
        elif keep:  # a folder that outlives the demo: the user goes on exploring it
            folder = Path(tempfile.mkdtemp(prefix="msp-hub-demo-"))
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="msp-hub-demo-")))
        folder.mkdir(parents=True, exist_ok=True)
        for leftover in folder.glob("demo.db*"):
            leftover.unlink()
        config_path = folder / "msp-hub.toml"
        admin_port = free_port() if keep else None
        common = dict(admin_port=admin_port, admin_var=ADMIN_TOKEN_VAR, mappings=MAPPINGS.as_posix(),
                      stripe_url=stripe_url, stripe_var=STRIPE_KEY_VAR, cw_url=cw_url, cw_company=cw.company_id,
                      cw_public=cw.public_key, cw_var=CW_KEY_VAR, cw_client_id=cw.client_id)
        if rmm == "ninjaone":
            text = (CONFIG + (KEEP_CONFIG if keep else "")).format(
                ninja_url=rmm_url, ninja_client_id=rmm_sim.client_id, ninja_var=NINJA_SECRET_VAR, **common)
            rmm_name, rmm_secret = "NinjaOne", {NINJA_SECRET_VAR: rmm_sim.client_secret}
        else:
            text = (TACTICAL_CONFIG + (TACTICAL_KEEP_CONFIG if keep else "")).format(
                tactical_url=rmm_url, tactical_var=TACTICAL_KEY_VAR, **common)
            rmm_name, rmm_secret = "Tactical RMM", {TACTICAL_KEY_VAR: rmm_sim.auth_value}
        config_path.write_text(text)
        secrets = {**rmm_secret, CW_KEY_VAR: cw.private_key, STRIPE_KEY_VAR: stripe_sim.api_key}
        if keep:
            import secrets as token_source
            secrets[ADMIN_TOKEN_VAR] = token_source.token_hex(16)
        os.environ.update(secrets)
        write_secrets(folder / "secrets.env", secrets)
        config = load_config(config_path)
        configure_logging(fmt="console", level="warning", secrets=config.secret_values())

        click.echo(f"simulators on 127.0.0.1: {rmm_name} {rmm_url}, ConnectWise {cw_url}, Stripe {stripe_url}")
        click.echo(f"config and database in {folder}\n")
        click.echo("== first sync: pull, plan, push ==")
        hub = Hub(config, pm=demo_plugins(rmm))
        try:
            report = sync_once(hub)
            click.echo("pulled " + ", ".join(f"{k} {v}" for k, v in sorted(report.records.items()))
                       + f"; the run (pull, plan, push) took {report.seconds:.2f} s")
            render_plan(report, details=("create", "retry", "held", "empty"))
            click.echo()
            render_push(report)
            render_errors(report)
        finally:
            hub.close()

        click.echo("\n== second sync over the same data ==")
        hub = Hub(config, pm=demo_plugins(rmm))
        try:
            again = sync_once(hub)
            render_push(again)
        finally:
            hub.close()

        tickets = [t for t in (cw.record("tickets", i) for i in cw.ids("tickets"))
                   if str(t.get("externalXRef") or "").startswith("msp-hub:")]
        click.echo(f"\nConnectWise simulator: {len(tickets)} ticket(s) created by the hub"
                   + "".join(f"\n  #{t['id']} {t['summary']} ({t.get('externalXRef')})" for t in tickets))
        invoices = stripe_sim.list_objects("invoice")
        customers = len(stripe_sim.list_objects("customer"))
        click.echo(f"\nStripe simulator now holds {len(invoices)} invoice(s) for {customers} customer(s), "
                   f"after {stripe_sim.requests} requests (minimum, looking before every create: 2 per new "
                   f"customer + 4 per invoice = {2 * customers + 4 * len(invoices)}):")
        for inv in sorted(invoices, key=lambda i: i["metadata"].get("msp_hub_action_key", "")):
            click.echo(f"  {inv['id']}  {inv['status']:<6} {inv['metadata'].get('msp_hub_action_key', '')}"
                       f"  {format_minor(inv['total'], inv['currency'])}  {len(inv['lines']['data'])} line(s)")
        assert len(invoices) + len(tickets) <= len(report.pushed), "the second sync must not create anything"

        click.echo("\n== reports (from the store; no vendor is called) ==")
        hub = Hub(config, pm=demo_plugins(rmm))
        try:
            for line in demo_reports(hub, folder / "reports", scorecards=rmm == "ninjaone"):
                click.echo(line)
        finally:
            hub.close()

        if keep:
            click.echo(f"\n== the demo keeps running: simulators up until Ctrl-C; the folder {folder} stays ==")
            for line in keep_lines(folder, admin_port):
                click.echo(line)
            click.echo("Press Ctrl-C to stop the simulators.")
            sys.stdout.flush()
            wait_for_interrupt()
            click.echo(f"simulators stopped; config, secrets and database stay in {folder}")
