"""`make bench`: measure the kit under gunicorn with real Redis and FerretDB (and SQLite); write bench/RESULTS.md.

    python -m bench.run                    # the full run (about 20 min)
    python -m bench.run --quick            # a short smoke run of every section (~4 min), to a temp file
    python -m bench.run --only recovery    # one section; replaces only its block in bench/RESULTS.md
    python -m bench.run --only soak_short  # 200 shoppers for 5 min (on request: `make soak` is the soak)

Each section gets fresh backends (sections h–j one set per set-up: the embedded
default and real services), so that one section's payments do not slow the
next. Results are written after every section, so an interrupted run still
leaves what it measured. The `make soak` block (bench/soak.py) is kept as found.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from loadtest import contention
from loadtest import plan as plans

from . import load, probes, render, results, retries, stack
from .report import machine
from .sections import measure_faults, measure_flatness, measure_recovery, measure_replicas, measure_throughput

RESULTS = results.RESULTS
# wrk_s: seconds per wrk run (BENCH_WRK_SECONDS overrides); recovery: (seconds of audit, most seconds to wait).
WRK_S = float(os.environ.get("BENCH_WRK_SECONDS") or 15)
FULL = dict(headline_s=30, sizes=[1, 3, 5, 10], capacity_s=12, flips=20, scrapes=30,
            curve_users=[1, 2, 3, 5, 10, 20, 40], curve_s=6, rush=(40, 15, 30), search_s=7,
            soak=(200, 300, 3.0), wrk_s=WRK_S, wrk_c=40, wrk_rounds=3, profile=False, seed_n=100_000, lone=50,
            recovery=(30, 120), drain_n=50_000, replicas=(10, 3),
            retries_counts=[7, 9, 11], retries_personas=["at once", "plain"], retries_watch_s=180,
            retries_fix_shoppers=9, retries_contention_ms=plans.RETRY_CONTENTION_MS)
QUICK = dict(headline_s=4, sizes=[1, 3], capacity_s=3, flips=4, scrapes=5,
             curve_users=[1, 3, 10], curve_s=2, rush=(20, 4, 6), search_s=2, soak=(40, 15, 1.0),
             wrk_s=3, wrk_c=40, wrk_rounds=1, profile=False, seed_n=5_000, lone=10, recovery=(6, 30), drain_n=2_000,
             replicas=(3, 1), retries_counts=[2], retries_personas=["at once"], retries_watch_s=20,
             retries_fix_shoppers=2, retries_contention_ms=plans.RETRY_CONTENTION_MS)
# (users, think seconds, contention_ms_per_write) tried in `audit` for the ~80 % phase.
SEARCH = [(5, 1.0, 50), (10, 1.0, 50), (20, 1.0, 50), (3, 0.0, 25), (10, 1.0, 25), (20, 1.0, 25)]


def measure_headline(application, p) -> dict:
    """(a) the original demo's test in each mode."""
    return {"headline_s": p["headline_s"], "rows": load.headline(application, p["headline_s"])}


def measure_contention(application, p) -> dict:
    """(b) the contention tool's rows (loadtest.contention.run)."""
    return {"rows": [asdict(r) for r in contention.run(application.url, application.token, p["sizes"])]}


def measure_capacity(application, p) -> dict:
    """(c) `original` throughput against the model's bound."""
    return {"capacity_s": p["capacity_s"], "rows": load.capacity(application, p["capacity_s"], application.knobs())}


def measure_probes(application, p) -> dict:
    """(d) flip propagation across workers, (e) /metrics scrape time."""
    return {"flip": probes.flip_propagation(application, application.workers(), p["flips"]),
            "scrape": probes.scrape_time(application, p["scrapes"])}


def measure_dynamics(application, p) -> dict:
    """(f) the success curve, a collapse and its tail, and the knobs closest to 80 % success."""
    curve = load.success_curve(application, p["curve_users"], p["curve_s"], (0.0, 1.0))
    rush_users, rush_s, quiet_s = p["rush"]
    series = load.collapse(application, rush_users, rush_s, quiet_s)
    found = load.search_80(application, [c for c in SEARCH if c[0] <= max(p["curve_users"])] if p is QUICK else SEARCH,
                           p["search_s"])
    candidates = found + [{"users": r["workers"], "think": r["think"], "c": 50, **r} for r in curve
                          if r["mode"] == "audit"]
    return {"curve_s": p["curve_s"], "curve_users": p["curve_users"], "curve": curve, "rush": list(p["rush"]),
            "series": series, "found": found, "best": min(candidates, key=lambda r: abs(r["rate"] - 80))}


def measure_soak(application, p) -> dict:
    """(g) a short soak in `original`."""
    users, seconds, think = p["soak"]
    return {"users": users, "seconds": seconds, "think": think, "run": load.soak(application, users, seconds, think)}


SECTIONS = [  # (title, name, measuring function, needs an app on fresh FerretDB + Redis)
    ("(a) headline", "headline", measure_headline, True), ("(b) contention", "contention", measure_contention, True),
    ("(c) capacity", "capacity", measure_capacity, True), ("(d, e) probes", "probes", measure_probes, True),
    ("(f) dynamics", "dynamics", measure_dynamics, True), ("(g) soak", "soak_short", measure_soak, True),
    ("(h) throughput", "throughput", measure_throughput, False), ("(i) flatness", "flatness", measure_flatness, False),
    ("(j) recovery", "recovery", measure_recovery, False), ("(k) faults", "faults", measure_faults, False),
    ("(m) replicas", "replicas", measure_replicas, False), ("(n) retries", "retries", retries.measure, False),
]


def run_section(name: str, measure, needs_app: bool, p: dict) -> str:
    """One section measured, then rendered; an app of its own on fresh backends when it needs one."""
    if not needs_app:
        return render.section(name, measure(p))
    # Fresh backends per section: one section's backlog (a collapse, 200 shoppers) never slows the next.
    with stack.backends() as (mongo_url, redis_url), stack.app(mongo_url, redis_url, name) as application:
        return render.section(name, measure(application, p))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    names = [name for _, name, _, _ in SECTIONS]
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorten every section (a smoke run)")
    parser.add_argument("--only", choices=names, metavar="SECTION",
                        help=f"run one section and replace only its block in the results file ({', '.join(names)})")
    parser.add_argument("--profile", action="store_true", help="(h): add py-spy's busiest frames of the kit")
    parser.add_argument("--out", type=Path, help="results file (default bench/RESULTS.md; --quick: a temp file)")
    args = parser.parse_args(argv)
    p = dict(QUICK if args.quick else FULL, profile=args.profile)
    out = args.out or (Path(tempfile.gettempdir()) / "paygate-RESULTS-quick.md" if args.quick else RESULTS)
    info = machine()
    header = render.header(info, stack.WORKERS, args.quick)
    started = time.monotonic()

    def step(name: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {name}", file=sys.stderr, flush=True)

    if args.only:
        title, name, measure, needs_app = next(s for s in SECTIONS if s[1] == args.only)
        step(title)
        text = run_section(name, measure, needs_app, p)
        results.update(out, name, text + render.stamp(name, info, args.quick), header)
        step(f"done: {out}")
        return 0
    report = results.Results(out, header)
    for title, name, measure, needs_app in SECTIONS:
        if name == "soak_short":
            continue  # on request only (--only soak_short): `make soak` is the soak of record
        step(title)
        report.add(name, run_section(name, measure, needs_app, p))
    load_end = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    report.add("end", render.end(time.monotonic() - started, load_end))
    step(f"done: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
