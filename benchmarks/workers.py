"""Many tenants on 1, 2 and 4 worker processes, with workers killed at random: time and exactness.

Each tenant is the demo's MSP (``hub.demo``'s seeds: NinjaOne devices and alerts, ConnectWise
companies, agreements and time, a Stripe account) on its own simulators, served over real HTTP
on 127.0.0.1 by a few simulator processes, with its own config, secrets and SQLite store. The
queue is a real PostgreSQL (``hub.pgserver``). For each worker count: fresh simulators, stores and
queue; one sync of every tenant is queued; N ``msp-hub worker`` processes run them, while one
worker at random is SIGKILLed every few seconds and a new one started in its place (its job goes
back to the queue after ``stalled_after``, 6 s here). The round ends when the queue is empty.

Then every tenant's simulators are counted: ``duplicates`` is how many invoices or tickets
reached a simulator more than once; ``lost`` how many tenants did not get every invoice a
reference run (one tenant, in this process, no worker) sends.

    python benchmarks/workers.py [--tenants 200] [--devices 500] [--workers 1,2,4] [--kill-every 8]

The last line reads:
    workers: tenants=<n> w1_s=<x> w2_s=<y> w4_s=<z> duplicates=<d> lost=<l>
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIM_PROCESSES = 4
WORKERS = {"heartbeat": "2s", "stalled_after": "6s", "tick": "* * * * * */2"}


def host(names: list[str], devices: int, folder: str, conn) -> None:
    """A simulator process: serve ``names``' simulators, write their configs, answer for counts."""
    from hub.workers.sandbox import SimulatedTenant
    with contextlib.ExitStack() as stack:
        tenants = [SimulatedTenant(n, Path(folder) / n, devices=devices) for n in names]
        for t in tenants:
            t.serve(stack)
        conn.send("ready")
        conn.recv()
        conn.send({t.name: (dict(t.invoices()), dict(t.tickets())) for t in tenants})
        conn.recv()


def reference(devices: int, folder: Path) -> set[str]:
    """The invoice keys one tenant's sync sends (no worker, in this process)."""
    from hub.engine import Hub, sync_once
    from hub.tenants import Tenant
    from hub.workers.sandbox import SimulatedTenant
    with contextlib.ExitStack() as stack:
        t = SimulatedTenant("reference", folder / "reference", devices=devices)
        t.serve(stack)
        hub = Hub(Tenant("reference", t.config, t.secrets).load_config())
        try:
            sync_once(hub)
        finally:
            hub.close()
        return set(t.invoices())


def start_worker(path: Path, name: str, logs: Path) -> subprocess.Popen:
    out = open(logs / f"{name}.log", "w")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "hub.cli", "-q", "worker", "--tenants", str(path), "--name", name],
                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def pending(pg_url: str) -> int:
    import psycopg
    with psycopg.connect(pg_url) as conn:
        return conn.execute("select count(*) from procrastinate_jobs where task_name in ('msp_hub.sync', 'msp_hub.pull') "
                            "and status in ('todo', 'doing')").fetchone()[0]


def one_round(pg, tenants: int, devices: int, workers: int, kill_every: float, rng: random.Random,
              expected: set[str]) -> tuple[float, int, int, int]:
    """(seconds, duplicates, lost, kills) for one worker count."""
    from hub.workers.app import defer_run, make_app
    from hub.workers.run import ensure_schema
    from hub.workers.settings import load_deployment
    folder = Path(tempfile.mkdtemp(prefix=f"msp-hub-workers-{workers}-"))
    names = [f"t{i:04d}" for i in range(tenants)]
    ctx = mp.get_context("spawn")
    hosts = []
    for k in range(SIM_PROCESSES):
        mine = names[k::SIM_PROCESSES]
        if not mine:
            continue
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=host, args=(mine, devices, str(folder), child), daemon=True)
        proc.start()
        hosts.append((proc, parent))
    for _, conn in hosts:
        assert conn.recv() == "ready"
    pg_url = pg.create_database(f"queue_w{workers}")
    lines = []
    for n in names:
        lines += [f"[tenants.{n}]", f'config = "{folder / n / "msp-hub.toml"}"',
                  f'secrets_file = "{folder / n / "secrets.env"}"', ""]
    lines += ["[workers]", f'database = "{pg_url}"'] + [f'{k} = "{v}"' for k, v in WORKERS.items()]
    path = folder / "tenants.toml"
    path.write_text("\n".join(lines) + "\n")
    deployment = load_deployment(path)
    ensure_schema(deployment.settings)
    app = make_app(deployment)
    logs = folder / "logs"
    logs.mkdir()
    kills = 0
    with app.open():
        t0 = time.perf_counter()
        for n in names:
            defer_run(app, n, "benchmark", {})
        procs = {f"w{i}": start_worker(path, f"w{i}", logs) for i in range(workers)}
        serial = workers
        next_kill = time.perf_counter() + rng.uniform(0.5, 1.5) * kill_every
        while pending(pg_url):
            time.sleep(0.2)
            if kill_every and time.perf_counter() >= next_kill:
                victim = rng.choice(sorted(procs))
                procs.pop(victim).send_signal(signal.SIGKILL)
                kills += 1
                procs[f"w{serial}"] = start_worker(path, f"w{serial}", logs)
                serial += 1
                next_kill = time.perf_counter() + rng.uniform(0.5, 1.5) * kill_every
        seconds = time.perf_counter() - t0
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(timeout=60)
    duplicates = lost = 0
    for proc, conn in hosts:
        conn.send("report")
        for name, (invoices, tickets) in conn.recv().items():
            duplicates += sum(n - 1 for n in list(invoices.values()) + list(tickets.values()) if n > 1)
            lost += set(invoices) != expected
        conn.send("stop")
        proc.join(timeout=30)
    shutil.rmtree(folder, ignore_errors=True)
    return seconds, duplicates, lost, kills


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure, comma-separated")
    parser.add_argument("--kill-every", type=float, default=8.0,
                        help="seconds between two SIGKILLs of a random worker, on average (0: none)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    from hub.logs import configure_logging
    from hub.pgserver import PostgresServer
    configure_logging(fmt="console", level="warning")
    rng = random.Random(args.seed)
    ref = Path(tempfile.mkdtemp(prefix="msp-hub-workers-ref-"))
    expected = reference(args.devices, ref)
    shutil.rmtree(ref, ignore_errors=True)
    results, duplicates, lost = {}, 0, 0
    with PostgresServer() as pg:
        for n in (int(x) for x in args.workers.split(",")):
            seconds, dup, lo, kills = one_round(pg, args.tenants, args.devices, n, args.kill_every, rng, expected)
            print(f"  {n} worker(s): {seconds:.1f} s, {kills} killed, duplicates={dup} lost={lo}", flush=True)
            results[n], duplicates, lost = seconds, duplicates + dup, lost + lo
    print("workers: tenants=%d %s duplicates=%d lost=%d" % (
        args.tenants, " ".join(f"w{n}_s={s:.1f}" for n, s in results.items()), duplicates, lost))


if __name__ == "__main__":
    main()
