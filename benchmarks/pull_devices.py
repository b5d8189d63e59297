"""Pull 100,000 devices from the NinjaOne simulator over loopback: the hub vs a plain loop.

The simulator runs in its own process, served over real HTTP on 127.0.0.1. Each pull runs in a
fresh process (so peak RSS is that pull's own): the hub's engine (NinjaOne connector -> canonical
records -> store with cursors, one transaction per page) and a plain httpx + sqlite-utils loop
over the same endpoints into the same table (same key and index, raw vendor values, no cursor,
no mapping, no timestamp conversion). Each is run twice, alternately; the faster run of each is kept.

With ``--postgres`` the hub's pull also runs into a PostgreSQL store (a throwaway server started
by the benchmark, ``hub.pgserver``; a fresh database per run), beside SQLite.

    python benchmarks/pull_devices.py [--devices 100000] [--postgres]

The last line reads (``hub_pg_s`` with ``--postgres`` only):
    pull_devices: n=<n> hub_s=<x> plain_s=<y> ratio=<x/y> hub_peak_rss_mb=<m> [hub_pg_s=<z>]
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


def serve_simulator(devices: int, ready, stop) -> None:
    from hub.testing import serve
    from plugins.ninjaone.simulator import NinjaOneSimulator
    sim = NinjaOneSimulator(seed=1, organizations=200, devices=devices)
    with serve(sim.handler) as url:
        ready.put((url, sim.client_id, sim.client_secret))
        stop.wait()



def hub_pull(url, client_id, secret, db_path, out) -> None:
    from hub.config import Secret
    from hub.engine import RunReport, pull
    from hub.store import Store
    from hub.testing import ConnectorPlugin, make_hub
    from hub.logs import configure_logging
    from plugins.ninjaone.plugin import NinjaOneConnector, NinjaOneSettings

    configure_logging(level="warning")
    t0 = time.perf_counter()
    connector = NinjaOneConnector(NinjaOneSettings(client_id=client_id, client_secret=Secret(secret, "bench"),
                                                   base_url=url))
    hub = make_hub(ConnectorPlugin(connector), store=Store(db_path))
    report = RunReport("bench", "sync", __import__("datetime").datetime.now(__import__("datetime").timezone.utc))
    pull(hub, report, streams=["devices"])
    assert not report.errors, report.errors
    n = hub.store.count("devices")
    requests = connector.client.requests
    hub.close()
    out.put((time.perf_counter() - t0, n, peak_rss_mb(), requests))


def plain_pull(url, client_id, secret, db_path, out) -> None:
    import httpx
    import sqlite_utils

    t0 = time.perf_counter()
    db = sqlite_utils.Database(db_path)
    db.enable_wal()
    # The same table the hub keeps: keyed by (source, source_id), indexed by client.
    db["devices"].create({"source": str, "source_id": str, "client_source_id": str, "name": str,
                          "node_class": str, "approval_status": str, "created_at": float,
                          "last_contact": float, "os_name": str, "ip_addresses": str, "serial_number": str},
                         pk=("source", "source_id"))
    db["devices"].create_index(["source", "client_source_id"])
    with httpx.Client(base_url=url, timeout=30) as http:
        token = http.post("/ws/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                   "client_secret": secret, "scope": "monitoring"}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        after, n, requests = None, 0, 1
        while True:
            params = {"pageSize": 1000, **({"after": after} if after is not None else {})}
            page = http.get("/v2/devices-detailed", params=params, headers=headers).json()
            requests += 1
            if page:
                db["devices"].upsert_all(({"source": "ninjaone", "source_id": str(d["id"]),
                                           "client_source_id": str(d["organizationId"]),
                                           "name": d["displayName"], "node_class": d["nodeClass"],
                                           "approval_status": d["approvalStatus"], "created_at": d["created"],
                                           "last_contact": d["lastContact"],
                                           "os_name": (d.get("os") or {}).get("name"),
                                           "ip_addresses": ",".join(d.get("ipAddresses") or ()),
                                           "serial_number": (d.get("system") or {}).get("serialNumber")}
                                          for d in page), pk=("source", "source_id"))
                n += len(page)
                after = page[-1]["id"]
            if len(page) < 1000:
                break
    db.close()
    out.put((time.perf_counter() - t0, n, peak_rss_mb(), requests))



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--postgres", action="store_true", help="also pull into a PostgreSQL store")
    args = ap.parse_args()
    server_pg = None
    if args.postgres:
        from hub.pgserver import PostgresServer
        server_pg = PostgresServer().start()
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=serve_simulator, args=(args.devices, ready, stop), daemon=True)
    server.start()
    url, client_id, secret = ready.get(timeout=300)
    hub_runs, plain_runs, pg_runs = [], [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.rounds):
                plain_runs.append(run_fresh(plain_pull, url, client_id, secret, os.path.join(tmp, f"plain{i}.db")))
                hub_runs.append(run_fresh(hub_pull, url, client_id, secret, os.path.join(tmp, f"hub{i}.db")))
                if server_pg is not None:
                    pg_runs.append(run_fresh(hub_pull, url, client_id, secret,
                                             server_pg.create_database(f"pull_devices_{i}")))
    finally:
        if server_pg is not None:
            server_pg.stop()
    stop.set()
    server.join(timeout=10)
    hub_s, n, _, hub_requests = min(hub_runs)
    plain_s, plain_n, _, plain_requests = min(plain_runs)
    rss = max(r[2] for r in hub_runs)
    assert n == plain_n == args.devices, (n, plain_n)
    minimum = 1 + -(-(args.devices + 1) // 1000)   # a token, and pages until one comes back short
    for label, runs in (("hub", hub_runs), ("plain", plain_runs), ("hubpg", pg_runs)):
        for s, count, m, req in runs:
            print(f"{label:5} {count} devices in {s:.2f} s = {count / s:,.0f} records/s, "
                  f"{req} requests (minimum {minimum}), peak RSS {m:.1f} MB")
    if pg_runs:
        assert all(r[1] == args.devices for r in pg_runs), pg_runs
    pg = f" hub_pg_s={min(pg_runs)[0]:.2f}" if pg_runs else ""
    print(f"pull_devices: n={n} hub_s={hub_s:.2f} plain_s={plain_s:.2f} ratio={hub_s / plain_s:.2f} "
          f"hub_peak_rss_mb={rss:.0f}{pg}")


if __name__ == "__main__":
    main()
