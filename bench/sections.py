"""The sections measured on set-ups of their own (h)–(m), with wrk: each returns its data for bench/render.py.

Each section starts its own backends per set-up (bench/stack.py); its data holds
the figures and the parameters and constants its text names, so the rendered
Markdown depends on nothing else.
"""

from __future__ import annotations

import os

from . import faults, flatness, overhead, recovery, replicas, stack


def per_setup(measure) -> list:
    """measure(setup) on each set-up in turn, each started for it and stopped after."""
    out = []
    for name in stack.SETUPS:
        with stack.setup(name) as s:
            out.append(measure(s))
    return out


def measure_throughput(p: dict) -> dict:
    """(h) kit against a bare stub, CPU per checkout, and the cost of metrics and of tracing, on both set-ups."""
    rows = per_setup(lambda s: overhead.compare(s, p["wrk_s"], p["wrk_c"], p["wrk_rounds"], profile=p["profile"]))
    return {"wrk_s": p["wrk_s"], "wrk_c": p["wrk_c"], "wrk_rounds": p["wrk_rounds"], "warmup_s": overhead.WARMUP_S,
            "lopsided": overhead.LOPSIDED, "max_tries": overhead.MAX_TRIES, "rows": rows}


def measure_flatness(p: dict) -> dict:
    """(i) empty store against one holding many payments, per backend."""
    rows = per_setup(lambda s: flatness.measure(s, p["seed_n"], p["wrk_s"], p["wrk_c"], p["lone"]))
    return {"seed_n": p["seed_n"], "wrk_s": p["wrk_s"], "wrk_c": p["wrk_c"], "lone": p["lone"], "rows": rows}


def measure_recovery(p: dict) -> dict:
    """(j) seconds from the flip back to `original` until OTP success and ready p95 are back, per set-up."""
    audit_s, max_wait_s = p["recovery"]
    setups = []
    for name in stack.SETUPS:
        with stack.setup(name) as s, stack.app(s.mongo_url, s.redis_url, f"{name}_recovery", workers=s.workers) as a:
            setups.append({"label": s.label, "workers": s.workers,
                           **recovery.measure(a, s.redis_url, audit_s, 40, 1.0, max_wait_s)})
    return {"audit_s": audit_s, "max_wait_s": max_wait_s, "min_events": recovery.MIN_EVENTS, "setups": setups}


def measure_faults(p: dict) -> dict:
    """(k) faults: time to fail fast, checkouts meanwhile, time to recover; the drainer's backlog."""
    return {"shoppers": faults.SHOPPERS, "think_s": faults.THINK_S, "drain_n": p["drain_n"],
            "redis": [faults.redis_fault(kind) for kind in ("stop", "hang")],
            "store": [faults.store_fault(kind) for kind in ("stop", "hang")],
            "drained": faults.drainer_backlog(p["drain_n"])}


def measure_replicas(p: dict) -> dict:
    """(m) 1, 2 and 3 replicas behind HAProxy: checkouts/s and OTP success, the flip across replicas."""
    seconds, rounds = p["replicas"]
    r = replicas.measure(seconds, p["wrk_c"], rounds, p["flips"])
    # The cores are data: the sizing is worked out for the machine that measured, not the one rendering.
    return {"counts": list(replicas.COUNTS), "workers": replicas.WORKERS, "warmup_s": replicas.WARMUP_S,
            "cores": os.cpu_count() or 1, **r}
