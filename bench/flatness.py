"""Flatness: does a store that already holds many payments serve checkouts as fast as an empty one?

One app per backend: measured empty, then seeded directly (rig/seed.py)
with n payments, then measured again. Two figures each time: wrk checkouts/s
at 40 back-to-back shoppers, and the latency of a lone initiate (the median
of sequential initiates on one connection, nothing else running).
"""

from __future__ import annotations

import time

import requests

from loadtest.checkout import card_payload
from rig import seed

from . import overhead, stack, wrk
from .report import percentile

# Within 10 % of the empty store, both ways.
TOLERANCE = 0.10


def lone_initiates(url: str, n: int = 50, warmup: int = 5) -> float:
    """Median seconds of `n` sequential initiates on one keep-alive connection, after `warmup` unmeasured."""
    times = []
    with requests.Session() as session:
        for i in range(warmup + n):
            started = time.perf_counter()
            r = session.post(url + "/payment/initiate", json=card_payload(), timeout=10)
            elapsed = time.perf_counter() - started
            r.raise_for_status()
            if i >= warmup:
                times.append(elapsed)
    return percentile(times, 50)


def fill(setup: stack.Setup, application, n: int) -> None:
    """Store n payments in the app's own store, directly (rig/seed.py: straight into the store, not through HTTP)."""
    path = application.sqlite_path
    if path:
        seed.seed_sqlite(path, n)
    else:
        seed.seed_mongo(setup.mongo_url, application.db_name, n)


def state(application, seconds: float, connections: int, lone: int, warmup_s: float) -> dict:
    """The two figures of one state: lone-initiate median, then wrk throughput."""
    wrk.run(application.url, warmup_s, connections)  # warm caches and pools; its payments are noise next to n
    latency = lone_initiates(application.url, lone)
    row = overhead.measure(application, [], seconds, connections, warmup_s=0)  # re-run if one worker took all
    return {"lone": latency, **row}


def measure(setup: stack.Setup, n: int = 100_000, seconds: float = 15, connections: int = 40, lone: int = 50,
            warmup_s: float = 2) -> dict:
    """Empty against n stored payments on one backend: throughput, lone latency and their ratios (full / empty)."""
    with stack.app(setup.mongo_url, setup.redis_url, f"{setup.name}_flat", workers=setup.workers) as application:
        empty = state(application, seconds, connections, lone, warmup_s)
        started = time.monotonic()
        fill(setup, application, n)
        seed_s = time.monotonic() - started
        full = state(application, seconds, connections, lone, warmup_s)
    throughput = overhead.ratio(full["per_second"], empty["per_second"])
    latency = overhead.ratio(full["lone"], empty["lone"])
    flat = None not in (throughput, latency) and throughput >= 1 - TOLERANCE and latency <= 1 + TOLERANCE
    return {"setup": setup.label, "n": n, "seed_s": round(seed_s, 1), "empty": empty, "full": full,
            "throughput_ratio": throughput, "latency_ratio": latency, "flat": flat}
