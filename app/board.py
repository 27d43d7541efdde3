"""Live board statistics: OTP results and ready times per second, kept in Redis.

The board must show what *every* gunicorn worker and replica sees, so the
counts end up in a Redis hash per second (a short TTL, so nothing needs
cleaning up). A payment only counts in memory; the worker's sync loop adds
the counts to Redis a few times a second, so recording costs no Redis call
and a Redis outage never touches a payment. Ready times are counted in
10 ms buckets, enough to place a p95 against the 400 ms deadline.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections import Counter

import redis

# The board's history and the TTL of its per-second hashes.
HISTORY_SECONDS = 300
KEY_TTL_SECONDS = HISTORY_SECONDS + 60
# "Now" on the board: long enough to be steady, short enough to react within 15 s.
WINDOW_SECONDS = 10
HISTORY_STEP_SECONDS = 5
BUCKET_MS = 10
MAX_BUCKET = 1000  # ready times of 10 s and more share the last bucket
SUCCESS_TARGET = 0.95
SUMMARY_MAX_AGE_S = 1.0


class BoardStats:
    """Counts OTP outcomes and ready times, and summarises them for the board."""

    def __init__(self, rds: redis.Redis, prefix: str, clock=time.time):
        self._redis = rds
        self._prefix = prefix + "board:"
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: Counter[tuple[int, str]] = Counter()
        self._summary: tuple[float, dict] | None = None

    def _key(self, second: int) -> str:
        return f"{self._prefix}{second}"

    # -- recording (on the payment path: memory only, never raises) ----------

    def record_otp(self, result: str) -> None:
        """Count one OTP generation outcome: "success" or "timeout"."""
        self._count(result)

    def record_ready(self, seconds: float) -> None:
        """Count one completed write by its ready time."""
        self._count(f"r{ready_bucket(seconds)}")

    def _count(self, field: str) -> None:
        with self._lock:
            self._pending[(int(self._clock()), field)] += 1

    def take_pending(self) -> Counter:
        """The counts recorded since the last flush (the sync loop sends them to Redis)."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
        return pending

    def queue_flush(self, pipe, pending: Counter) -> None:
        """Add the pending counts to `pipe`: one HINCRBY per second and field."""
        for (second, field), n in pending.items():
            pipe.hincrby(self._key(second), field, n)
        for second in {s for s, _ in pending}:  # after the first write: EXPIRE ignores a missing key
            pipe.expire(self._key(second), KEY_TTL_SECONDS)

    def restore(self, pending: Counter) -> None:
        """A flush failed: keep its counts for the next one (those older than the board shows are dropped)."""
        oldest = int(self._clock()) - HISTORY_SECONDS
        with self._lock:
            self._pending.update({k: v for k, v in pending.items() if k[0] > oldest})

    # -- reading -------------------------------------------------------------

    def seconds(self, now: float | None = None) -> list[tuple[int, dict]]:
        """(second, counts) for the last HISTORY_SECONDS, oldest first; raises RedisError."""
        now = self._clock() if now is None else now
        last = int(now)
        span = range(last - HISTORY_SECONDS + 1, last + 1)
        with self._redis.pipeline(transaction=False) as pipe:
            for second in span:
                pipe.hgetall(self._key(second))
            raw = pipe.execute()
        return [(second, {k: int(v) for k, v in counts.items()}) for second, counts in zip(span, raw, strict=True)]

    def summary(self, now: float | None = None, max_age_s: float = SUMMARY_MAX_AGE_S) -> dict:
        """The current window and the 5-minute history the board draws.

        Computed at most once per `max_age_s` per worker: every open board
        polls once a second, and fifty boards must not mean fifty times the reads.
        """
        now = self._clock() if now is None else now
        cached = self._summary
        if cached is not None and 0 <= now - cached[0] < max_age_s:
            return copy.deepcopy(cached[1])
        per_second = self.seconds(now)
        current = _merge(counts for _, counts in per_second[-WINDOW_SECONDS:])
        points = []
        for i in range(0, len(per_second), HISTORY_STEP_SECONDS):
            chunk = per_second[i:i + HISTORY_STEP_SECONDS]
            points.append({"t": chunk[0][0], **_describe(_merge(c for _, c in chunk))})
        result = {"current": _describe(current), "history": {"step_seconds": HISTORY_STEP_SECONDS, "points": points}}
        self._summary = (now, result)
        return copy.deepcopy(result)


def ready_bucket(seconds: float) -> int:
    """The 10 ms bucket of a ready time: bucket b holds times up to b × 10 ms."""
    return min(MAX_BUCKET, max(1, math.ceil(seconds * 1000 / BUCKET_MS)))


def _merge(many) -> dict:
    total: dict[str, int] = {}
    for counts in many:
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
    return total


def quantile_ms(buckets: dict[int, int], q: float) -> float | None:
    """The upper bound (ms) of the bucket holding quantile q, or None without data.

    An upper bound, not an interpolation: "p95 ≤ 420 ms" can only err towards
    showing the deadline crossed, never hiding it.
    """
    total = sum(buckets.values())
    if not total:
        return None
    rank = q * total
    seen = 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen >= rank:
            return bucket * BUCKET_MS
    return max(buckets) * BUCKET_MS


def _describe(counts: dict) -> dict:
    success, timeout = counts.get("success", 0), counts.get("timeout", 0)
    ready = {int(k[1:]): v for k, v in counts.items() if k.startswith("r")}
    return {
        "otp_success": success,
        "otp_timeout": timeout,
        "otp_success_rate": round(success / (success + timeout), 4) if success + timeout else None,
        "ready_count": sum(ready.values()),
        "ready_p95_ms": quantile_ms(ready, 0.95),
    }
