"""Closed-loop load measurements: the headline, capacity, the success curve, the soak.

Every figure comes from the loadtest traffic runner (threads with requests
sessions) against the app under gunicorn on loopback. Client and server share
the machine's cores, which the results file says.
"""

from __future__ import annotations

import threading
import time

from loadtest import traffic
from loadtest.checkout import ready_model_ms
from rig import probe

from . import stack
from .report import percentile


def set_mode(application, mode: str) -> None:
    """Flip the mode; the answer comes once every worker serves it (rig.client)."""
    application.set_mode(mode, actor="bench")


def set_knobs(application, **knobs) -> None:
    """Change knobs for every worker; the answer comes once every worker serves them."""
    application.patch_knobs(**knobs, actor="bench")


def drive(application, workers: int, seconds: float, think_s: float = 0.0) -> dict:
    """Run closed-loop shoppers and summarise: counts, rate, throughput, latency."""
    probe.no_writes_in_flight(application.url, every=0.2)
    started = time.monotonic()
    tally = traffic.run(application.url, workers, seconds, think_s)
    elapsed = time.monotonic() - started
    times = [o.seconds for o in tally.outcomes]
    counts = tally.by_result()
    return {
        "workers": workers, "seconds": round(elapsed, 1), "total": tally.total, "success": tally.success,
        "failed": tally.failed, "otp_unavailable": counts["otp_unavailable"], "errors": counts["error"],
        "error_kinds": dict(tally.errors()), "rate": round(tally.rate, 1),
        "per_second": round(tally.success / elapsed, 1) if elapsed else 0.0,
        "p50": percentile(times, 50), "p99": percentile(times, 99),
    }


def headline(application, seconds: float) -> list[dict]:
    """The original demo's test: 40 workers in `original`, then in `audit`."""
    out = []
    for mode in ("original", "audit"):
        set_mode(application, mode)
        out.append({"mode": mode, **drive(application, 40, seconds)})
    set_mode(application, "original")
    return out


def capacity(application, seconds: float, knobs: dict) -> list[dict]:
    """`original` throughput at 40 and 200 back-to-back shoppers, against the model's bound.

    The model's closed-loop bound: each shopper completes one checkout per 2w
    (the `original` write), so users / 2w checkouts per second at most.
    """
    set_mode(application, "original")
    model_s = ready_model_ms(knobs, "original") / 1000
    out = []
    for workers in (40, 200):
        row = drive(application, workers, seconds)
        row["bound"] = round(workers / model_s, 0)
        row["ratio"] = row["per_second"] / row["bound"]
        out.append(row)
    return out


def success_curve(application, users: list[int], seconds: float, think_values: tuple[float, ...]) -> list[dict]:
    """OTP success rate against users, for both modes, with and without think time."""
    out = []
    for mode in ("original", "audit"):
        set_mode(application, mode)
        for think in think_values:
            for n in users:
                row = drive(application, n, seconds, think)
                out.append({"mode": mode, "think": think, **row})
    set_mode(application, "original")
    return out


def collapse(application, rush_users: int, rush_s: float, quiet_s: float) -> list[dict]:
    """`audit`: a rush of shoppers, then one shopper alone; per second, success and writes in flight."""
    set_mode(application, "audit")
    probe.no_writes_in_flight(application.url, every=0.2)
    rush, quiet = traffic.Tally(), traffic.Tally()
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.wait(0.5):
            try:
                samples.append((time.monotonic() - started, probe.inflight_writes(application.url)))
            except Exception:  # a missed sample is a gap in the series, not a failed run
                pass

    threads = [threading.Thread(target=traffic.run, args=(application.url, rush_users - 1, rush_s, 0.0, rush)),
               threading.Thread(target=traffic.run, args=(application.url, 1, rush_s + quiet_s, 0.0, quiet)),
               threading.Thread(target=sample)]
    for t in threads:
        t.start()
    for t in threads[:2]:
        t.join()
    stop_sampling.set()
    threads[2].join()
    set_mode(application, "original")

    rows = []
    finished = rush.snapshot() + quiet.snapshot()
    step = 2 if rush_s + quiet_s > 20 else 1
    for second in range(0, int(rush_s + quiet_s), step):
        window = [o for o in finished if second <= o.started + o.seconds - started < second + step]
        inflight = [v for t, v in samples if second <= t < second + step]
        ok = sum(o.ok for o in window)
        rows.append({"t": second, "users": rush_users if second < rush_s else 1, "finished": len(window),
                     "rate": round(100 * ok / len(window)) if window else None,
                     "inflight": int(max(inflight)) if inflight else None})
    return rows


def search_80(application, candidates: list[tuple[int, float, int]], seconds: float) -> list[dict]:
    """`audit` success for (users, think, contention_ms_per_write) candidates; knobs restored after."""
    set_mode(application, "audit")
    out = []
    try:
        for users, think, c in candidates:
            set_knobs(application, contention_ms_per_write=c)
            out.append({"users": users, "think": think, "c": c, **drive(application, users, seconds, think)})
    finally:
        set_knobs(application, contention_ms_per_write=50)
        set_mode(application, "original")
    return out


def soak(application, users: int, seconds: float, think_s: float) -> dict:
    """`original` for a long while: errors, and RSS per worker at start and end."""
    set_mode(application, "original")
    pids = application.workers()
    # Start RSS after a short warm-up, so imports and first connections do not count as growth.
    traffic.run(application.url, min(users, 20), 3, 0.0)
    start_rss = {pid: stack.rss_mib(pid) for pid in pids}
    row = drive(application, users, seconds, think_s)
    end_rss = {pid: stack.rss_mib(pid) for pid in pids}
    row["rss"] = [(pid, start_rss[pid], end_rss[pid]) for pid in pids]
    row["think"] = think_s
    return row
