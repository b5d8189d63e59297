"""Push 1,000 invoices to Stripe under a client-side rate limit, and check it at the server.

The Stripe simulator runs in its own process, served over real HTTP on 127.0.0.1, and notes the
time each request reaches it (its own clock). Every ``--every``-th request it answers 429 with
``Retry-After`` instead (a simulator fault, the request unrun). This process records the invoice
actions in a hub's outbox (a SQLite file, so the limit is reserved through the store as across
processes) and runs the hub's push with ``rate_limit = --rate`` in ``[connectors.stripe]``.

    python benchmarks/push_rate.py [--invoices 1000] [--rate 50] [--every 250] [--retry-after 1]

The last line reads:
    push_rate: invoices=<n> requests=<r> configured_rps=<c> max_rps_observed=<m> rate_429=<k> wall_s=<w>

``max_rps_observed`` is the most requests the server saw in any one-second window (sliding, to
the microsecond); it must not pass ``configured_rps``. ``rate_429`` is how many 429s were
answered; each was honoured: the request after it came no sooner than its Retry-After (the
line before the last says by how much at least), and every invoice was still sent.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

API_KEY = "sk_test_push_rate_benchmark"


def serve_stripe(every: int, retry_after: float, ready, commands, replies) -> None:
    from hub.testing import serve
    from plugins.stripe.simulator import StripeSimulator

    sim = StripeSimulator(api_key=API_KEY)
    arrivals: list[tuple[float, int]] = []   # (server time, status)
    count = [0]

    def handler(request):
        count[0] += 1
        if every and count[0] % every == 0:
            sim.fail_next(429, retry_after=retry_after)
        at = time.time()
        response = sim.handler(request)
        arrivals.append((at, response.status_code))
        return response

    with serve(handler) as url:
        ready.put(url)
        while commands.get() != "stop":
            replies.put(list(arrivals))


def invoice_action(n: int):
    from hub.records import Action
    client = f"client-{n:04d}"
    payload = {"client_name": f"Client {n:04d}", "currency": "EUR", "period": "2026-10",
               "period_start": "2026-10-01T00:00:00+00:00", "period_end": "2026-11-01T00:00:00+00:00",
               "description": "Managed services, October 2026", "total": 6300 + 4900,
               "lines": [{"code": "workstation", "description": "Managed workstations", "quantity": "42",
                          "unit_amount": 150, "amount": 6300},
                         {"code": "backup", "description": "Backup, flat fee", "quantity": "1",
                          "unit_amount": 4900, "amount": 4900}]}
    return Action(key=f"invoice:{client}:2026-10", kind="invoice", connector="stripe", client_id=client,
                  payload=payload, period="2026-10")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--invoices", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=50.0, help="rate_limit, requests a second")
    ap.add_argument("--every", type=int, default=250, help="answer every n-th request with a 429 (0: never)")
    ap.add_argument("--retry-after", type=float, default=1.0, help="the Retry-After of those 429s, seconds")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    ready, commands, replies = ctx.Queue(), ctx.Queue(), ctx.Queue()
    server = ctx.Process(target=serve_stripe, args=(args.every, args.retry_after, ready, commands, replies),
                         daemon=True)
    server.start()
    url = ready.get(timeout=120)

    from hub.config import config_from_dict
    from hub.engine import Hub, RunReport, push
    from hub.logs import configure_logging
    from hub.ratelimit import max_in_any_window
    from datetime import datetime, timezone

    configure_logging(level="warning")
    with tempfile.TemporaryDirectory() as tmp:
        mappings = Path(tmp) / "mappings"
        shutil.copytree(ROOT / "mappings", mappings)
        config = config_from_dict({
            "database": os.path.join(tmp, "hub.db"), "mappings": str(mappings),
            "connectors": {"stripe": {"base_url": url, "api_key_env": "B_STRIPE", "rate_limit": args.rate}}},
            environ={"B_STRIPE": API_KEY})
        hub = Hub(config)
        for n in range(args.invoices):
            hub.store.record_action(invoice_action(n), "push-rate")
        report = RunReport(run_id="push-rate", mode="push", started_at=datetime.now(timezone.utc))
        t0 = time.perf_counter()
        push(hub, report, [])
        wall = time.perf_counter() - t0
        limiter = hub.connectors["stripe"].client._transport.limiter
        hub.close()
    commands.put("arrivals")
    arrivals = replies.get(timeout=60)
    commands.put("stop")
    server.join(timeout=10)

    times = [at for at, _ in arrivals]
    refused = [i for i, (_, status) in enumerate(arrivals) if status == 429]
    after_429 = [arrivals[i + 1][0] - arrivals[i][0] for i in refused if i + 1 < len(arrivals)]
    invoices = sum(1 for p in report.pushed if p["key"].startswith("invoice:"))
    observed = max_in_any_window(times)
    print(f"pushed {invoices} of {args.invoices} invoices, {len(report.failed)} failed; the limiter waited "
          f"{limiter.waited:.1f} s in all (shared through the store: {limiter.shared})")
    if after_429:
        print(f"after each of the {len(refused)} 429s (Retry-After {args.retry_after:g} s) the next request came "
              f"{min(after_429):.3f} s later at the least")
    print(f"configured rate {'never exceeded' if observed <= args.rate else 'EXCEEDED'}: at most {observed} "
          f"requests in any one second at the server")
    print(f"push_rate: invoices={invoices} requests={len(arrivals)} configured_rps={args.rate:g} "
          f"max_rps_observed={observed} rate_429={len(refused)} wall_s={wall:.2f}")
    if invoices != args.invoices or observed > args.rate or any(w < args.retry_after for w in after_429):
        sys.exit(1)


if __name__ == "__main__":
    main()
