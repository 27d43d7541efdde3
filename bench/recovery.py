"""Recovery: after a spell of `audit` under load, how long until a flip back to `original` shows?

Shoppers (loadtest/traffic.py, with think time) run in `audit` long enough
to collapse it, the mode goes back to `original` with the load still on, and
the clock runs until a sliding 5 s window of the shoppers' checkouts shows OTP
success ≥ 99 % and ready p95 ≤ 60 ms. The window is the checkouts *started* in
its 5 seconds, as the shoppers saw them: the OTP outcome, and the `ready_ms`
that each initiate answer carries (a checkout without an OTP counts as slower
than any). So the figure is `original`'s own health; the `audit` writes still
draining after the flip show in the writes-in-flight column (and on the
board), not in it.
"""

from __future__ import annotations

import threading
import time

from loadtest import traffic
from rig import probe

from .report import percentile

SUCCESS_TARGET = 0.99
READY_P95_MS = 60
# A window with fewer outcomes than this proves nothing either way.
MIN_EVENTS = 10


def window(outcomes: list, end: float, seconds: int = 5) -> dict:
    """OTP success and ready p95 of the checkouts started in [end - seconds, end)."""
    started = [o for o in outcomes if end - seconds <= o.started < end and o.result != "error"]
    issued = [o for o in started if o.ready_ms is not None]
    ready = [o.ready_ms for o in issued] + [float("inf")] * (len(started) - len(issued))
    p95 = percentile(ready, 95)
    return {"otp": len(started), "rate": len(issued) / len(started) if started else None,
            "ready": len(started), "p95_ms": None if p95 in (None, float("inf")) else round(p95, 1),
            "p95_over": p95 == float("inf")}


def recovered(w: dict) -> bool:
    """True when a window meets both targets on enough outcomes."""
    return (w["otp"] >= MIN_EVENTS and w["rate"] >= SUCCESS_TARGET
            and w["p95_ms"] is not None and w["p95_ms"] <= READY_P95_MS)


def measure(application, redis_url: str, audit_s: float = 30, users: int = 40, think_s: float = 1.0,
            max_wait_s: float = 120, window_s: int = 5) -> dict:
    """Seconds from the flip back to `original` until the window recovers (None if not within max_wait_s).

    Returns the figures of the last `audit` window, the series of windows
    after the flip (one per second, with writes in flight from /metrics),
    and the client's count of checkouts.
    """
    application.set_mode("original", actor="bench")
    probe.no_writes_in_flight(application.url, every=0.2)
    application.set_mode("audit", actor="bench")
    tally, stop = traffic.Tally(), threading.Event()
    shoppers = threading.Thread(target=traffic.run, daemon=True,
                                args=(application.url, users, audit_s + max_wait_s + window_s, think_s, tally, stop))
    shoppers.start()
    series, seconds = [], None
    try:
        time.sleep(audit_s)
        before = window(tally.snapshot(), time.monotonic() - 5, window_s)  # started long enough ago to have ended
        application.set_mode("original", actor="bench")
        flipped = time.monotonic()  # the shoppers' clock (Outcome.started)
        while time.monotonic() - flipped < max_wait_s:
            time.sleep(1.0)
            # The window ends 1 s ago: a checkout started then has had its answer (the deadline is 0.4 s).
            end = time.monotonic() - 1.0
            w = {"t": round(end - flipped, 1), **window(tally.snapshot(), end, window_s),
                 "inflight": _inflight(application.url)}
            series.append(w)
            if recovered(w):
                seconds = w["t"]
                break
    finally:
        stop.set()
        shoppers.join(30)
        application.set_mode("original", actor="bench")
    return {"audit_s": audit_s, "users": users, "think": think_s, "before": before, "series": series,
            "seconds": seconds, "max_wait_s": max_wait_s, "checkouts": tally.total, "success": tally.success}


def _inflight(url: str) -> int | None:
    try:
        return int(probe.inflight_writes(url))
    except Exception:  # a missed sample is a gap in the series, not a failed run
        return None
