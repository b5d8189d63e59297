"""What the benchmarks share: measuring a process's peak RSS, and running a pull in a fresh one."""

from __future__ import annotations

import multiprocessing as mp
import resource


def peak_rss_mb() -> float:
    """This process's peak resident set size, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_fresh(target, *args, timeout: float = 1800):
    """Run ``target(*args, out)`` in a new (spawned) process; return what it put on ``out``.

    A spawned process starts empty, so its peak RSS is the pull's own, not the parent's.
    """
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, out))
    p.start()
    result = out.get(timeout=timeout)
    p.join()
    return result
