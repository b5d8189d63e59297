"""Pull 1,000,000 time entries from the ConnectWise simulator over loopback, then 1 % of them again.

The simulator runs in its own process, served over real HTTP on 127.0.0.1. Each pull runs in a
fresh process (so peak RSS is that pull's own) through the hub's engine: the ConnectWise
connector's ``time_entries`` stream -> canonical records -> a file store, one transaction per page.
The first pull reads everything; then the simulator process is told (over a multiprocessing
queue) to touch 1 % of the entries, spread over the id range, and a second pull on the same
database reads what changed since the first one's cursor.

    python benchmarks/pull_time_entries.py [--entries 1000000] [--touch 0.01]

The last line reads:
    pull_time_entries: n=<n> full_s=<x> incr_s=<y> incr_requests=<r> incr_min_requests=<m> peak_rss_mb=<p>
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _process import peak_rss_mb, run_fresh  # noqa: E402  (beside this script)

PAGE_SIZE = 1000



def serve_simulator(entries: int, ready, commands, replies) -> None:
    from hub.testing import serve
    from plugins.connectwise.simulator import ConnectWiseSimulator
    t0 = time.perf_counter()
    sim = ConnectWiseSimulator(seed=1, companies=200, agreements=300, time_entries=entries, products=0)
    built = time.perf_counter() - t0
    with serve(sim.handler) as url:
        ready.put((url, sim.company_id, sim.public_key, sim.private_key, sim.client_id, built, peak_rss_mb()))
        while True:
            command, arg = commands.get()
            if command == "touch":
                ids = sim.ids("time_entries")
                step = max(1, round(1 / arg))
                chosen = ids[step // 2::step]
                with sim._lock:
                    sim.now = time.time()
                sim.touch("time_entries", chosen)
                replies.put(len(chosen))
            elif command == "stats":
                replies.put((sim.requests, peak_rss_mb()))
            else:
                return


def hub_pull(url, company_id, public_key, private_key, client_id, db_path, out) -> None:
    from datetime import datetime, timezone

    from hub.config import Secret
    from hub.engine import RunReport, pull
    from hub.logs import configure_logging
    from hub.store import Store
    from hub.testing import ConnectorPlugin, make_hub
    from plugins.connectwise.plugin import ConnectWiseConnector, ConnectWiseSettings

    configure_logging(level="warning")
    t0 = time.perf_counter()
    settings = ConnectWiseSettings(site=url, company_id=company_id, public_key=public_key,
                                   private_key=Secret(private_key, "bench"), client_id=client_id,
                                   page_size=PAGE_SIZE)
    connector = ConnectWiseConnector(settings)
    hub = make_hub(ConnectorPlugin(connector), store=Store(db_path))
    report = RunReport("bench", "sync", datetime.now(timezone.utc))
    pull(hub, report, streams=["time_entries"])
    assert not report.errors, report.errors
    stored = hub.store.count("time_entries")
    pulled = report.records["connectwise.time_entries"]
    requests = connector.client.requests
    hub.close()
    out.put((time.perf_counter() - t0, stored, pulled, requests, peak_rss_mb()))



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--touch", type=float, default=0.01, help="share of entries changed before the second pull")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    ready, commands, replies = ctx.Queue(), ctx.Queue(), ctx.Queue()
    server = ctx.Process(target=serve_simulator, args=(args.entries, ready, commands, replies), daemon=True)
    server.start()
    url, company_id, public_key, private_key, client_id, built, sim_rss = ready.get(timeout=900)
    print(f"simulator: {args.entries} time entries built in {built:.1f} s, RSS {sim_rss:.0f} MB, at {url}")
    creds = (url, company_id, public_key, private_key, client_id)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "hub.db")
        full_s, stored, full_n, full_requests, full_rss = run_fresh(hub_pull, *creds, db)
        commands.put(("touch", args.touch))
        touched = replies.get(timeout=300)
        incr_s, stored_after, incr_n, incr_requests, incr_rss = run_fresh(hub_pull, *creds, db)
    commands.put(("stats", None))
    served, sim_rss = replies.get(timeout=60)
    commands.put(("stop", None))
    server.join(timeout=10)
    assert stored == stored_after == full_n == args.entries, (stored, stored_after, full_n)
    # The overlap below the vendor's clock reads back a few records changed just before the pass.
    assert touched <= incr_n, (incr_n, touched)
    full_min = -(-args.entries // PAGE_SIZE)
    incr_min = max(1, -(-touched // PAGE_SIZE))
    rss = max(full_rss, incr_rss)
    print(f"full pull   {full_n} entries in {full_s:.2f} s = {full_n / full_s:,.0f} records/s, "
          f"{full_requests} requests (minimum {full_min}), peak RSS {full_rss:.1f} MB")
    print(f"incremental {incr_n} changed entries of {args.entries} in {incr_s:.2f} s, "
          f"{incr_requests} requests (minimum {incr_min}), peak RSS {incr_rss:.1f} MB")
    print(f"simulator served {served} requests, peak RSS {sim_rss:.0f} MB")
    print(f"pull_time_entries: n={args.entries} full_s={full_s:.2f} incr_s={incr_s:.2f} "
          f"incr_requests={incr_requests} incr_min_requests={incr_min} peak_rss_mb={rss:.0f}")


if __name__ == "__main__":
    main()
