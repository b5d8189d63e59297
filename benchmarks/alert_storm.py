"""An alert storm: 10,000 NinjaOne alerts across 500 clients become ConnectWise tickets.

Both simulators run in their own process, served over real HTTP on 127.0.0.1. The storm is
skewed as real ones are: a tenth of the clients (a site outage) raise most of the alerts within a
few minutes, the others a handful each. One sync of the hub (pull clients, devices, alerts and
activities, plan with the shipped alert rules, push the tickets) runs in this process.

    python benchmarks/alert_storm.py [--alerts 10000] [--clients 500]

The last line reads:
    alert_storm: alerts=<n> tickets=<t> requests=<r> requests_per_ticket=<q> wall_s=<w>

``requests`` counts both vendors; ``requests_per_ticket`` is ConnectWise's requests (its pull,
the batched ticket lookups, the creates and notes) over the tickets created. Goal: at most 1.1
plus a constant (the pull), since ticket references are looked up many at a time.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def serve_simulators(alerts: int, clients: int, ready, commands, replies) -> None:
    import contextlib

    from hub.testing import serve
    from plugins.connectwise.simulator import ConnectWiseSimulator
    from plugins.ninjaone.simulator import NinjaOneSimulator

    ninja = NinjaOneSimulator(seed=3, organizations=clients, devices=clients * 2)
    cw = ConnectWiseSimulator(seed=3, companies=0, agreements=0, time_entries=0, products=0)
    for org in ninja.organization_ids:
        cw.add_company(ninja._orgs[org]["name"])
    by_org: dict[int, list[int]] = {}
    for d in ninja.device_ids:
        by_org.setdefault(ninja.device(d)["organizationId"], []).append(d)
    rng = random.Random(3)
    orgs = sorted(by_org)
    outage = orgs[: max(1, len(orgs) // 10)]
    for i in range(alerts):
        org = rng.choice(outage) if rng.random() < 0.8 else rng.choice(orgs)
        device = rng.choice(by_org[org])
        ninja.trigger_alert(device, condition=f"cond-{i % 37}", source_type=rng.choice(
            ["CONDITION_AGENT_CPU", "CONDITION_AGENT_DISK_FREE_SPACE", "AGENT_OFFLINE"]),
            severity=rng.choice(["MINOR", "MODERATE", "MAJOR", "CRITICAL"]), message=f"alert {i}",
            at=ninja.now - rng.uniform(0, 300))
    with contextlib.ExitStack() as stack:
        n_url = stack.enter_context(serve(ninja.handler))
        c_url = stack.enter_context(serve(cw.handler))
        ready.put((n_url, ninja.client_id, ninja.client_secret, c_url, cw.company_id, cw.public_key,
                   cw.private_key, cw.client_id))
        while True:
            command = commands.get()
            if command == "stats":
                tickets = [cw.record("tickets", t) for t in cw.ids("tickets")]
                replies.put((ninja.requests, cw.requests, len(tickets),
                             sum(1 for t in tickets if t["summary"].startswith("Alert storm")),
                             dict(cw.requests_by_path)))
            else:
                return


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=500)
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    ready, commands, replies = ctx.Queue(), ctx.Queue(), ctx.Queue()
    server = ctx.Process(target=serve_simulators, args=(args.alerts, args.clients, ready, commands, replies), daemon=True)
    server.start()
    n_url, n_id, n_secret, c_url, c_company, c_public, c_private, c_client = ready.get(timeout=600)

    from hub.config import config_from_dict
    from hub.engine import Hub, sync_once
    from hub.logs import configure_logging

    configure_logging(level="warning")
    with tempfile.TemporaryDirectory() as tmp:
        mappings = Path(tmp) / "mappings"
        shutil.copytree(ROOT / "mappings", mappings)
        (mappings / "contracts.toml").write_text("# every client comes from the PSA\n")
        config = config_from_dict({
            "database": os.path.join(tmp, "hub.db"), "mappings": str(mappings),
            "connectors": {"ninjaone": {"base_url": n_url, "client_id": n_id, "client_secret_env": "B_NINJA"},
                           "connectwise": {"site": c_url, "company_id": c_company, "public_key": c_public,
                                           "private_key_env": "B_CW", "client_id": c_client}}},
            environ={"B_NINJA": n_secret, "B_CW": c_private})
        hub = Hub(config)
        t0 = time.perf_counter()
        if os.environ.get("ALERT_STORM_PROFILE"):
            import cProfile, pstats
            pr = cProfile.Profile(); pr.enable(); report = sync_once(hub); pr.disable()
            pstats.Stats(pr).sort_stats("cumtime").print_stats(25)
        else:
            report = sync_once(hub)
        wall = time.perf_counter() - t0
        hub.close()
    commands.put("stats")
    ninja_requests, cw_requests, tickets, parents, by_path = replies.get(timeout=60)
    commands.put("stop")
    server.join(timeout=10)
    pushes = [p for p in report.pushed if p["key"].startswith("ticket")]
    print(f"pulled {report.records.get('ninjaone.alerts', 0)} active alerts, "
          f"{report.records.get('ninjaone.alert_events', 0)} activities; {len(pushes)} ticket actions pushed, "
          f"{len(report.failed)} failed")
    print(f"tickets created: {tickets} ({parents} storm parents listing their alerts); "
          f"requests: NinjaOne {ninja_requests}, ConnectWise {cw_requests}")
    kinds: dict[str, int] = {}
    for p in report.pushed:
        kinds[p["key"].split(":", 1)[0]] = kinds.get(p["key"].split(":", 1)[0], 0) + 1
    print("pushed by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    print("ConnectWise requests by path: " + ", ".join(f"{p} {n}" for p, n in sorted(by_path.items(), key=lambda x: -x[1])[:8]))
    per_ticket = cw_requests / tickets if tickets else 0.0
    print(f"alert_storm: alerts={args.alerts} tickets={tickets} requests={ninja_requests + cw_requests} "
          f"requests_per_ticket={per_ticket:.3f} wall_s={wall:.2f}")


if __name__ == "__main__":
    main()
