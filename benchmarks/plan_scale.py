"""Plan a 1,000-client MSP: 100,000 devices, 1,000,000 time entries, 10,000 alerts.

The store is seeded through the engine's own pull and the store API (``Store.write_page``, one
transaction per page of 1,000), with records as the NinjaOne and ConnectWise plugins map them
(ConnectWise companies, agreements with their additions, time entries and products; NinjaOne
organizations of the same names, devices and active alerts): the connectors of the config are
the real plugins, whose streams here hand over generated pages instead of reading HTTP. That
first sync also pushes its plan (invoices, tickets, agreement quantities) to connectors that
record nothing, so that afterwards everything is sent. The contracts come from the PSA
(examples/psa-driven: Gold, Silver, prepaid blocks, break/fix; linked by name).

Time entries are spread over the year before now; those dated before the last ended period were
invoiced by the PSA (as an MSP's history is before the hub). Then, in this process:

- ``floor_s``: one pass of plain SQL reading every row the plan reads (clients, devices,
  agreements, additions, time entries, products, active alerts, alert events, tickets, the
  outbox, the billed items and the invoice snapshots), each row materialised;
- ``plan_s``: the hub's plan as ``msp-hub plan`` computes it (``sync_once(pull_first=False)``);
- ``sync_noop_s``: a sync with nothing new: every stream pulls nothing, the plan finds
  everything sent, nothing is pushed;

and in a child process ``msp-hub plan --json`` (its output to a file), whose peak RSS, as
``/usr/bin/time -f %M`` reports it, is ``json_rss_mb``.

    python benchmarks/plan_scale.py [--clients 1000] [--devices 100] [--entries 1000] [--alerts 10]

(``--devices``, ``--entries`` and ``--alerts`` are per client.) The last line reads:
    plan_scale: clients=<n> devices=<d> entries=<e> floor_s=<f> plan_s=<p> sync_noop_s=<s> json_rss_mb=<m>
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGE = 1000
UTC = timezone.utc

CONFIG = """\
timezone = "Europe/Paris"
database = "{db}"
mappings = "mappings"

[connectors.ninjaone]
base_url = "http://127.0.0.1:9"
client_id = "bench"
client_secret_env = "PLAN_SCALE_NINJAONE_SECRET"

[connectors.connectwise]
site = "http://127.0.0.1:9"
company_id = "bench"
public_key = "bench"
private_key_env = "PLAN_SCALE_CONNECTWISE_KEY"
client_id = "3f5e8b0c-4f8e-4c1a-9d3e-6a1b2c3d4e5f"

[connectors.stripe]
base_url = "http://127.0.0.1:9"
api_key_env = "PLAN_SCALE_STRIPE_KEY"

[billing]
client_master = "connectwise"
notice_board = "Help Desk"

[billing.guardrails]            # the seeded history is the hub's first month: nothing waits for a person
first_invoice_max = "1000000.00"
max_change_percent = 1000
max_change_devices = 100000

[logging]
level = "error"
"""
SECRETS = {"PLAN_SCALE_NINJAONE_SECRET": "bench", "PLAN_SCALE_CONNECTWISE_KEY": "bench",
           "PLAN_SCALE_STRIPE_KEY": "sk_test_bench"}

AGREEMENT_TYPES = ["Managed Gold"] * 4 + ["Managed Silver"] * 3 + ["Block Hours"] * 2 + ["Break/Fix"]
DEVICE_CLASSES = ["WINDOWS_WORKSTATION"] * 15 + ["MAC"] * 2 + ["WINDOWS_SERVER"] * 2 + ["NMS_PRINTER"]
WORK_TYPES = ["Remote Support"] * 6 + ["Onsite"] * 2 + ["After Hours", "Project Work", "Admin", "Virus Removal"]
ALERTS = [("CONDITION_AGENT_CPU", "cpu-95", "CRITICAL"), ("CONDITION_AGENT_DISK_FREE_SPACE", "disk-c", "MAJOR"),
          ("CONDITION_WINDOWS_SERVICE_STATE_CHANGED", "svc-spooler", "MODERATE"),
          ("CONDITION_AGENT_OFFLINE", "offline", "MINOR")]


class Seeded:
    """The records of the seeded MSP, made page by page (never all in memory)."""

    def __init__(self, clients: int, devices: int, entries: int, alerts: int, now: datetime):
        from hub.periods import last_ended_period
        self.n, self.devices, self.entries, self.alerts, self.now = clients, devices, entries, alerts, now
        self.invoiced_before = last_ended_period(now, "Europe/Paris").start
        rnd = random.Random(1)
        self.kinds = [AGREEMENT_TYPES[rnd.randrange(len(AGREEMENT_TYPES))] for _ in range(clients)]

    @staticmethod
    def name(i: int) -> str:
        return f"Client {i:05d} SARL"

    def company(self, i: int) -> str:
        return str(1000 + i)

    def agreement(self, i: int) -> str:
        return str(5000 + i)

    def pages(self, make, count: int):
        from hub.connectors import Page

        def iter_pages(cursor, started):
            batch, n = [], 0
            for record in make():
                batch.append(record)
                n += 1
                if len(batch) == PAGE:
                    yield Page(batch, {"seeded": n})
                    batch = []
            yield Page(batch, {"seeded": n}, sweep_count=n if count else None)
        return iter_pages

    def cw_clients(self):
        from hub.records import Client
        for i in range(self.n):
            yield Client("connectwise", self.company(i), self.name(i), self.now, address_line1=f"{i} rue du Port",
                         city="Nantes", postal_code="44000", country="France", email=f"billing{i}@example.com",
                         email_from="invoiceToEmailAddress")

    def agreements(self):
        from hub.records import Agreement
        for i, kind in enumerate(self.kinds):
            block = kind == "Block Hours"
            yield Agreement("connectwise", self.agreement(i), self.company(i), f"{kind} {i}", kind, "active",
                            "2024-01-01", None, "Monthly", "hours" if block else None, "20" if block else None,
                            self.now)

    def additions(self):
        from hub.records import AgreementAddition
        for i, kind in enumerate(self.kinds):
            if not kind.startswith("Managed"):
                continue
            for n, (product, qty) in enumerate((("MS-WS", self.devices * 85 // 100), ("MS-SRV", self.devices // 10),
                                                ("BACKUP-DEV", self.devices // 2))):
                yield AgreementAddition("connectwise", str(100000 + i * 10 + n), self.agreement(i), self.company(i),
                                        product, product, str(qty), 0, "EUR", "billable", "2024-01-01", None, self.now)

    def time_entries(self):
        from hub.records import BILLABLE, DO_NOT_BILL, TimeEntry
        rnd = random.Random(2)
        year = 365 * 24 * 3600
        start = self.now - timedelta(days=365)
        for i in range(self.n):
            company, kind = self.company(i), self.kinds[i]
            for k in range(self.entries):
                when = start + timedelta(seconds=rnd.randrange(year))
                when = when.replace(microsecond=0)
                work = WORK_TYPES[rnd.randrange(len(WORK_TYPES))]
                hours = ("0.25", "0.5", "0.75", "1", "1.5", "2", "0.1", "3.25")[rnd.randrange(8)]
                ticket = str(200000 + i * 400 + k // 3)
                yield TimeEntry("connectwise", str(1_000_000 + i * self.entries + k), company, f"tech{k % 12}",
                                when, when + timedelta(minutes=int(float(hours) * 60)), hours,
                                DO_NOT_BILL if k % 17 == 0 else BILLABLE, work, "Engineer", ticket,
                                self.agreement(i) if kind == "Block Hours" and k % 2 == 0 else None, None,
                                when < self.invoiced_before, "", when)

    def products(self):
        from hub.records import BILLABLE, ProductLine
        for i in range(self.n):
            for k in range(3):
                sold = self.now - timedelta(days=20 * k + 3)
                yield ProductLine("connectwise", str(300000 + i * 3 + k), self.company(i), "SSD-1TB", "SSD 1 TB",
                                  "1", 10999, "EUR", BILLABLE, None, None, sold < self.invoiced_before, sold, sold)

    def orgs(self):
        from hub.records import Client
        for i in range(self.n):
            yield Client("ninjaone", str(i + 1), self.name(i))

    def rmm_devices(self):
        from hub.records import Device
        rnd = random.Random(3)
        created = self.now - timedelta(days=400)
        for i in range(self.n):
            for k in range(self.devices):
                did = i * self.devices + k + 1
                yield Device("ninjaone", str(did), str(i + 1), f"PC-{did:06d}", DEVICE_CLASSES[rnd.randrange(20)],
                             "pending" if k % 40 == 39 else "approved", created, self.now - timedelta(hours=k % 48),
                             self.now, "Windows 11 Pro", "10.0.0.1", f"SN{did:08d}", None)

    def rmm_alerts(self):
        from hub.records import Alert
        rnd = random.Random(4)
        for i in range(self.n):
            for k in range(self.alerts):
                did = i * self.devices + rnd.randrange(self.devices) + 1
                source_type, condition, severity = ALERTS[k % len(ALERTS)]
                when = self.now - timedelta(hours=1 + k * 7)
                yield Alert("ninjaone", f"uid-{i}-{k}", str(i + 1), str(did), f"PC-{did:06d}",
                            DEVICE_CLASSES[did % 20], source_type, condition, severity, "", "alert",
                            when, when, None)


class Bench:
    """A connector standing in for a real plugin: its streams hand over the seeded pages once,
    then nothing; its pushes record nothing. Anything else is the plugin's."""

    def __init__(self, real, pages: dict):
        self.real, self._pages, self.pushed = real, pages, 0
        self.name, self.action_kinds = real.name, real.action_kinds

    def streams(self):
        from hub.connectors import Stream
        return [Stream(s.connector, s.name, s.table, self._iter(s.name)) for s in self.real.streams()]

    def _iter(self, name):
        from hub.connectors import Page

        def iter_pages(cursor, started):
            seeded = self._pages.pop(name, None)
            if seeded is not None:
                yield from seeded(cursor, started)
            else:
                yield Page([], cursor)
        return iter_pages

    def push(self, action, context):
        from hub.connectors import PushResult
        self.pushed += 1
        return PushResult(f"bench-{self.pushed}", "recorded by the benchmark")

    def check(self) -> str:
        return "bench"

    def __getattr__(self, name):
        return getattr(self.real, name)

    def close(self) -> None:
        self.real.close()


FLOOR_SQL = [
    "select * from clients", "select * from devices", "select * from agreements", "select * from additions",
    "select * from time_entries", "select * from products", "select * from alerts where active = 1",
    "select * from alert_events", "select * from tickets", "select * from actions", "select * from billed_items",
    "select * from snapshots", "select * from device_approvals", "select * from blocks", "select * from corrections",
]


def floor(db_path: str) -> tuple[float, int]:
    """One pass of plain SQL reading every row the plan reads, each row materialised."""
    import sqlite3
    t0 = time.perf_counter()
    conn = sqlite3.connect(db_path)
    n = 0
    for sql in FLOOR_SQL:
        for _row in conn.execute(sql):
            n += 1
    conn.close()
    return time.perf_counter() - t0, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--devices", type=int, default=100, help="devices per client")
    parser.add_argument("--entries", type=int, default=1000, help="time entries per client")
    parser.add_argument("--alerts", type=int, default=10, help="active alerts per client")
    parser.add_argument("--keep", help="seed (or reuse) the store in this folder and keep it")
    parser.add_argument("--profile", help="write a cProfile of the plan to this file")
    parser.add_argument("--profile-sync", help="write a cProfile of the sync with nothing new to this file")
    parser.add_argument("--no-json", action="store_true", help="leave out plan --json (json_rss_mb=-)")
    args = parser.parse_args()

    from hub.config import load_config
    from hub.engine import sync_once
    from hub.logs import configure_logging
    from hub.store import Store
    from hub.testing import ConnectorPlugin, make_hub

    os.environ.update(SECRETS)
    configure_logging(level="error")
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="plan-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "hub.db"
    config_path = folder / "msp-hub.toml"
    fresh = not db.exists()
    if fresh:
        shutil.copytree(ROOT / "examples" / "psa-driven" / "mappings", folder / "mappings", dirs_exist_ok=True)
        config_path.write_text(CONFIG.format(db=db))
    config = load_config(config_path)

    from hub.engine import Hub
    real = Hub(config)             # the configured plugins (no request is made)
    seeded = Seeded(args.clients, args.devices, args.entries, args.alerts, datetime.now(UTC))
    s = seeded
    pages = {"connectwise": {"clients": s.pages(s.cw_clients, True), "agreements": s.pages(s.agreements, False),
                             "additions": s.pages(s.additions, False), "time_entries": s.pages(s.time_entries, False),
                             "products": s.pages(s.products, False)},
             "ninjaone": {"clients": s.pages(s.orgs, True), "devices": s.pages(s.rmm_devices, True),
                          "alerts": s.pages(s.rmm_alerts, False)}} if fresh else {}
    connectors = [Bench(c, pages.get(name, {})) for name, c in sorted(real.connectors.items())]
    hub = make_hub(ConnectorPlugin(*connectors), config=config, mappings=real.mappings, store=Store(str(db)))
    real.store.close()
    if fresh:
        t0 = time.perf_counter()
        first = sync_once(hub)
        print(f"seeded through the store API and pushed: {first.records} in {time.perf_counter() - t0:.1f} s; "
              f"{len(first.pushed)} action(s) pushed, {len(first.held)} held", file=sys.stderr)

    c0 = time.process_time()
    floor_s, rows = floor(str(db))
    floor_cpu = time.process_time() - c0
    if args.profile:
        import cProfile
        cProfile.runctx("sync_once(hub, dry_run=True, pull_first=False)", globals(), {"sync_once": sync_once, "hub": hub},
                        args.profile)
    t0, c0 = time.perf_counter(), time.process_time()
    planned = sync_once(hub, dry_run=True, pull_first=False)
    plan_s, plan_cpu = time.perf_counter() - t0, time.process_time() - c0
    statuses: dict[str, int] = {}
    for item in planned.plan:
        statuses[item.status] = statuses.get(item.status, 0) + 1
    items = len(planned.plan)
    # The sync starts as a sync does (msp-hub sync, the daemon's job): with no plan of an earlier
    # run in memory (kept, its millions of objects would be walked by every full collection).
    del planned
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    if args.profile_sync:
        import cProfile
        profile = cProfile.Profile()
        noop = profile.runcall(sync_once, hub)
        profile.dump_stats(args.profile_sync)
    else:
        noop = sync_once(hub)
    sync_noop_s, noop_cpu = time.perf_counter() - t0, time.process_time() - c0
    assert not noop.pushed, f"a sync with nothing new pushed {len(noop.pushed)} action(s)"
    hub.close()

    out, rss = folder / "plan.json", folder / "plan.rss"
    if args.no_json:
        print(f"plan_scale: clients={args.clients} devices={args.clients * args.devices} "
              f"entries={args.clients * args.entries} floor_s={floor_s:.2f} plan_s={plan_s:.2f} "
              f"sync_noop_s={sync_noop_s:.2f} json_rss_mb=- (CPU: floor {floor_cpu:.2f}, plan {plan_cpu:.2f}, "
              f"sync {noop_cpu:.2f})")
        return
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # Measured by /usr/bin/time, whose child is forked from a small process: a child started from
    # this one (vfork) would count this process's own peak as its peak.
    with open(out, "wb") as sink:
        child = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss), sys.executable, "-c",
                                "from hub.cli import main; main()", "plan", "--json", "--config", str(config_path)],
                               stdout=sink, stderr=subprocess.PIPE, env=env, cwd=folder)
    if child.returncode not in (0, 1):
        sys.exit(f"msp-hub plan --json failed ({child.returncode}): {child.stderr.decode()[-2000:]}")
    json_rss_mb = int(rss.read_text().split()[-1]) / 1024     # KiB
    print(f"{rows} rows read by the floor; plan: {items} items {statuses}; "
          f"plan --json wrote {out.stat().st_size / 1e6:.1f} MB; CPU seconds (the machine may be shared): "
          f"floor {floor_cpu:.2f}, plan {plan_cpu:.2f}, sync {noop_cpu:.2f}", file=sys.stderr)
    print(f"plan_scale: clients={args.clients} devices={args.clients * args.devices} "
          f"entries={args.clients * args.entries} floor_s={floor_s:.2f} plan_s={plan_s:.2f} "
          f"sync_noop_s={sync_noop_s:.2f} json_rss_mb={json_rss_mb:.0f}")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
