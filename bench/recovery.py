"""Recovery: after a spell of `audit` under load, how long until a flip back to `original` shows?

Shoppers (loadtest/traffic.py, with think time) run in `audit` long enough
to collapse it, the mode goes back to `original` with the load still on, and
the clock runs until a sliding 5 s window shows OTP success ≥ 99 % and ready
p95 ≤ 60 ms. The window's figures are the app's own live-board counters (what
/board/data summarises over 10 s): per-second OTP outcomes and 10 ms ready-time
buckets kept in Redis by every worker, read here straight from Redis so the
window can be exactly the last 5 whole seconds. A write's ready time counts in
the second it completes, so the `audit` backlog still draining after the flip
shows in p95 until it is gone.
"""

from __future__ import annotations

import threading
import time

import redis

from app.board import BoardStats, quantile_ms
from loadtest import traffic
from loadtest.contention import scrape, wait_drained

SUCCESS_TARGET = 0.99
READY_P95_MS = 60
# A window with fewer outcomes than this proves nothing either way.
MIN_EVENTS = 10


def window(board: BoardStats, end: int, seconds: int = 5) -> dict:
    """OTP outcomes and ready p95 over the whole seconds [end - seconds, end)."""
    per_second = board.seconds(end)[-(seconds + 1):-1]
    counts: dict[str, int] = {}
    for _, c in per_second:
        for k, v in c.items():
            counts[k] = counts.get(k, 0) + v
    success, timeout = counts.get("success", 0), counts.get("timeout", 0)
    ready = {int(k[1:]): v for k, v in counts.items() if k.startswith("r")}
    return {"otp": success + timeout, "rate": success / (success + timeout) if success + timeout else None,
            "ready": sum(ready.values()), "p95_ms": quantile_ms(ready, 0.95)}


def recovered(w: dict) -> bool:
    """True when a window meets both targets on enough outcomes."""
    return (w["otp"] >= MIN_EVENTS and w["ready"] >= MIN_EVENTS and w["rate"] >= SUCCESS_TARGET
            and w["p95_ms"] is not None and w["p95_ms"] <= READY_P95_MS)


def measure(application, redis_url: str, audit_s: float = 30, users: int = 40, think_s: float = 1.0,
            max_wait_s: float = 120, window_s: int = 5) -> dict:
    """Seconds from the flip back to `original` until the window recovers (None if not within max_wait_s).

    Returns the figures of the last `audit` window, the series of windows
    after the flip (one per second, with writes in flight from /metrics),
    and the client's count of checkouts.
    """
    board = BoardStats(redis.Redis.from_url(redis_url, decode_responses=True), application.prefix)
    application.set_mode("original", actor="bench")
    wait_drained(application.url)
    application.set_mode("audit", actor="bench")
    tally, stop = traffic.Tally(), threading.Event()
    shoppers = threading.Thread(target=traffic.run, daemon=True,
                                args=(application.url, users, audit_s + max_wait_s + window_s, think_s, tally, stop))
    shoppers.start()
    series, seconds = [], None
    try:
        time.sleep(audit_s)
        before = window(board, int(time.time()), window_s)
        application.set_mode("original", actor="bench")
        flipped = time.time()
        while time.time() - flipped < max_wait_s:
            end = int(time.time()) + 1
            time.sleep(max(0.0, end + 0.05 - time.time()))  # the second just ended is complete in Redis
            w = {"t": round(end - flipped, 1), **window(board, end, window_s), "inflight": _inflight(application.url)}
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
        return int(scrape(url)["inflight"])
    except Exception:  # a missed sample is a gap in the series, not a failed run
        return None
