"""The admin API under load while a sync runs: 20 clients calling /health and /runs.

The NinjaOne simulator runs in its own process, served over real HTTP on 127.0.0.1. This process
is the daemon: a ``Service`` on a config for that simulator, the admin API served by waitress in
a thread, and NinjaOne syncs (full re-reads of every stream) started one after the other through
the service for as long as the load lasts. The 20 clients run in another process, each in a
thread sending one request after the other over a kept-alive connection, in turn /health, /runs
and /floor: a route added for the benchmark that only answers (after the token check), the floor
the same server and the same load give a route that does nothing.

    python benchmarks/api_load.py [--clients 20] [--seconds 20] [--devices 20000]

The last line reads:
    api_load: clients=<c> requests=<n> p50_ms=<p50> p99_ms=<p99> floor_p99_ms=<f> syncs=<s>
where requests, p50 and p99 are those of /health and /runs together (the target: p99 under 50 ms).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKEN = "bench-token-0123456789abcdef"
SECRET_VAR = "API_LOAD_NINJA_SECRET"


def serve_ninja(devices: int, ready, stop) -> None:
    from hub.testing import serve
    from plugins.ninjaone.simulator import NinjaOneSimulator
    ninja = NinjaOneSimulator(seed=5, organizations=max(5, devices // 40), devices=devices, now=time.time())
    with serve(ninja.handler) as url:
        ready.put((url, ninja.client_id, ninja.client_secret))
        stop.wait()


def load(url: str, clients: int, seconds: float, started, out) -> None:
    import httpx
    results: list[tuple[str, float, int]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(n: int) -> None:
        paths, mine = ("/health", "/runs", "/floor"), []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
            i = n
            while time.monotonic() < deadline:
                path = paths[i % 3]
                t0 = time.perf_counter()
                status = http.get(path).status_code
                mine.append((path, (time.perf_counter() - t0) * 1000, status))
                i += 1
        with lock:
            results.extend(mine)

    started.set()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(results)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--devices", type=int, default=20000)
    args = parser.parse_args()

    import flask

    from hub.api import make_app, serve_api
    from hub.service import Service

    ctx = mp.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    simulator = ctx.Process(target=serve_ninja, args=(args.devices, ready, stop), daemon=True)
    simulator.start()
    ninja_url, client_id, secret = ready.get(timeout=300)
    os.environ[SECRET_VAR] = secret
    work = Path(tempfile.mkdtemp(prefix="api-load-"))
    (work / "token.txt").write_text(TOKEN + "\n")
    cfg = work / "msp-hub.toml"
    cfg.write_text(f"""
database = "hub.db"
mappings = "{(ROOT / 'mappings').as_posix()}"
[connectors.ninjaone]
base_url = "{ninja_url}"
client_id = "{client_id}"
client_secret_env = "{SECRET_VAR}"
[admin]
port = 8765
token_file = "token.txt"
[logging]
level = "error"
""")
    service = Service(cfg)
    service.scheduler_info = lambda: {"running": True, "jobs": {}}
    app = make_app(service)
    app.add_url_rule("/floor", "floor", lambda: flask.Response("{}", mimetype="application/json"))
    server = serve_api(app, "127.0.0.1", 0)
    api = threading.Thread(target=server.run, daemon=True)
    api.start()

    done = threading.Event()
    syncs = [0]

    def keep_syncing() -> None:
        while not done.is_set():
            service.run_job("bench", {"connectors": ["ninjaone"], "full": True})
            syncs[0] += 1

    syncing = threading.Thread(target=keep_syncing, daemon=True)
    syncing.start()
    while service.status()["current_run"] is None:   # the load starts once a sync runs
        time.sleep(0.05)
    started, out = ctx.Event(), ctx.Queue()
    clients = ctx.Process(target=load, args=(f"http://127.0.0.1:{server.port}", args.clients, args.seconds,
                                             started, out))
    clients.start()
    results = out.get(timeout=args.seconds + 600)
    clients.join()
    done.set()
    service.stop.set()
    syncing.join()
    server.close()
    stop.set()
    simulator.join(timeout=10)

    bad = [r for r in results if r[2] not in (200, 503)]
    measured = [ms for path, ms, _ in results if path in ("/health", "/runs")]
    floor = [ms for path, ms, _ in results if path == "/floor"]
    for path in ("/health", "/runs", "/floor"):
        values = [ms for p, ms, _ in results if p == path]
        print(f"  {path}: n={len(values)} p50_ms={percentile(values, 0.5):.1f} p99_ms={percentile(values, 0.99):.1f}")
    if bad:
        print(f"  unexpected statuses: {sorted({r[2] for r in bad})}")
    print(f"api_load: clients={args.clients} requests={len(measured)} p50_ms={percentile(measured, 0.5):.1f} "
          f"p99_ms={percentile(measured, 0.99):.1f} floor_p99_ms={percentile(floor, 0.99):.1f} syncs={syncs[0]}")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
