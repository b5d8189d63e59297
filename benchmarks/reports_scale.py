"""The MSP's reports at scale: a year of KPIs and the maturity signals over many clients.

The store is seeded through the store API, as a push writes it (``Store.record_action`` with the
invoice's snapshot, then ``mark_sent``; ``write_page`` for the PSA's companies, time entries and
tickets): ``--clients`` clients, twelve months of sent invoices each (tier, add-on, minimum, time
and product lines; every tenth client's invoices have a credit note of one line), ``--entries``
time entries and ``--tickets`` service tickets per client. Then, in this process:

- ``floor_s``: one pass of plain SQL reading every row the KPIs read (sent invoice actions and
  their payloads decoded, snapshots decoded, corrections, companies, agreements, time entries,
  service tickets), each row materialised;
- ``kpis_s``: ``hub.reports.kpis.build`` of the twelve months, then its HTML and CSV;
- ``signals_s``: the maturity self-assessment's signals from data (``hub.reports.maturity.signals``).

    python benchmarks/reports_scale.py [--clients 1000] [--entries 200] [--tickets 50]

The last line reads:
    reports_scale: clients=<n> invoices=<i> entries=<e> tickets=<t> floor_s=<f> kpis_s=<k> signals_s=<s> rows=<r>
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

UTC = timezone.utc
NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
MONTHS = [f"{2025 + (m > 12)}-{(m - 1) % 12 + 1:02d}" for m in range(12, 24)]   # 2025-12 .. 2026-11


def seed(store, clients: int, entries: int, tickets: int) -> int:
    from hub.records import Action, Agreement, Client, ServiceTicket, TimeEntry
    rng = random.Random(7)
    store.write_page("clients", [Client("connectwise", str(c), f"Client {c}") for c in range(clients)],
                     "connectwise", "clients", None)
    store.write_page("agreements", [Agreement("connectwise", str(c), str(c), f"Managed {c}", "Managed Gold", "active",
                                              "2025-06-01") for c in range(clients)], "connectwise", "agreements", None)
    invoices = 0
    for c in range(clients):
        devices = rng.randint(5, 80)
        with store.db.atomic():
            for m in MONTHS:
                lines = [{"code": "tier:gold:workstation", "amount": devices * 5000,
                          "things": [{"kind": "device", "id": f"{c}-{d}"} for d in range(devices)]},
                         {"code": "addon:backup:workstation", "amount": devices * 400, "things": []},
                         {"code": f"time:entry:{c}-{m}", "amount": rng.randint(0, 40) * 2250, "things": []},
                         {"code": "product:ssd", "amount": 10999 if rng.random() < 0.1 else 0, "things": []}]
                if devices < 10:
                    lines.append({"code": "minimum", "amount": 10000, "things": []})
                key = f"invoice:{c}:{m}"
                payload = {"client_name": f"Client {c}", "currency": "EUR", "period": m,
                           "total": sum(x["amount"] for x in lines),
                           "lines": [{"code": x["code"], "description": x["code"], "quantity": "1",
                                      "unit_amount": x["amount"], "amount": x["amount"]} for x in lines]}
                store.record_action(Action(key, "invoice", "stripe", str(c), payload, m), "seed",
                                    snapshot=[dict(x, currency="EUR") for x in lines])
                store.mark_sent(key, f"in_{c}_{m}", "sent")
                invoices += 1
        start = datetime(2025, 12, 1, tzinfo=UTC)
        store.write_page("time_entries", [
            TimeEntry("connectwise", f"{c}-{e}", str(c), f"tech{e % 7}", start + timedelta(hours=rng.randint(0, 8700)),
                      None, str(rng.choice((0.25, 0.5, 1, 1.5, 2))), "billable", "Remote Support", "Engineer",
                      f"t{c}-{e % 40}") for e in range(entries)], "connectwise", "time_entries", None)
        store.write_page("service_tickets", [
            ServiceTicket("connectwise", f"{c}-{t}", str(c), f"ticket {t}", "Help Desk", "Closed", "Priority 3",
                          True, start + timedelta(hours=rng.randint(0, 8600)),
                          start + timedelta(hours=rng.randint(8600, 8700))) for t in range(tickets)],
            "connectwise", "service_tickets", None)
    return invoices


def floor(db: Path) -> tuple[float, int]:
    """Every row the KPIs read, by plain SQL, each materialised (JSON texts decoded)."""
    t0, rows = time.perf_counter(), 0
    con = sqlite3.connect(db)
    for (payload,) in con.execute("select payload from actions where kind = 'invoice' and status = 'sent'"):
        json.loads(payload)
        rows += 1
    for (lines,) in con.execute("select s.lines from snapshots s join actions a on a.key = s.action_key "
                                "where a.status = 'sent'"):
        json.loads(lines)
        rows += 1
    for table in ("corrections", "clients", "agreements", "time_entries", "service_tickets", "devices", "blocks"):
        for row in con.execute(f'select * from "{table}"'):
            tuple(row)
            rows += 1
    con.close()
    return time.perf_counter() - t0, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=200, help="time entries per client")
    parser.add_argument("--tickets", type=int, default=50, help="service tickets per client")
    args = parser.parse_args()

    from hub.config import HubConfig
    from hub.logs import configure_logging
    from hub.reports import kpis, maturity
    from hub.store import Store
    from hub.testing import make_hub

    configure_logging(level="error")
    folder = Path(tempfile.mkdtemp(prefix="reports-scale-"))
    db = folder / "hub.db"
    store = Store(str(db))
    t0 = time.perf_counter()
    invoices = seed(store, args.clients, args.entries, args.tickets)
    print(f"seeded {invoices} sent invoices in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    hub = make_hub(config=HubConfig(database=str(db), billing={"client_master": "connectwise"}), store=store,
                   clock=lambda: NOW)

    floor_s, rows = floor(db)
    t0 = time.perf_counter()
    built = kpis.build(hub, MONTHS[0], MONTHS[-1])
    kpis.render(built, "html")
    kpis.render(built, "csv")
    kpis_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    maturity.signals(hub)
    signals_s = time.perf_counter() - t0
    hub.close()
    print(f"reports_scale: clients={args.clients} invoices={invoices} entries={args.clients * args.entries} "
          f"tickets={args.clients * args.tickets} floor_s={floor_s:.2f} kpis_s={kpis_s:.2f} "
          f"signals_s={signals_s:.2f} rows={rows}")


if __name__ == "__main__":
    main()
