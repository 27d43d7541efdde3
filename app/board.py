"""Live board statistics: OTP results and ready times per second, kept in Redis.

The board must show what *every* gunicorn worker and replica sees, so each
event goes to a Redis hash for its second (one pipeline per event, a short
TTL so nothing needs cleaning up). Ready times are counted in 10 ms buckets,
which is enough to place a p95 against the 400 ms deadline.

Recording never breaks a payment: a Redis error is swallowed, and for a
second after one the board stops trying, so a Redis outage costs at most one
socket timeout per second rather than one per payment.
"""

from __future__ import annotations

import math
import time

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
RETRY_AFTER_FAILURE_S = 1.0


class BoardStats:
    """Records OTP outcomes and ready times, and summarises them for the board."""

    def __init__(self, rds: redis.Redis, prefix: str, clock=time.time):
        self._redis = rds
        self._prefix = prefix + "board:"
        self._clock = clock
        self._skip_until = float("-inf")

    def _key(self, second: int) -> str:
        return f"{self._prefix}{second}"

    # -- recording (on the payment path: must never raise) -------------------

    def record_otp(self, result: str) -> None:
        """Count one OTP generation outcome: "success" or "timeout"."""
        self._hincr(result)

    def record_ready(self, seconds: float) -> None:
        """Count one completed write by its ready time."""
        self._hincr(f"r{ready_bucket(seconds)}")

    def _hincr(self, field: str) -> None:
        if time.monotonic() < self._skip_until:
            return
        key = self._key(int(self._clock()))
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(key, field, 1)
                pipe.expire(key, KEY_TTL_SECONDS)
                pipe.execute()
        except (redis.RedisError, OSError):
            self._skip_until = time.monotonic() + RETRY_AFTER_FAILURE_S

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

    def summary(self, now: float | None = None) -> dict:
        """The current window and the 5-minute history the board draws."""
        now = self._clock() if now is None else now
        per_second = self.seconds(now)
        current = _merge(counts for _, counts in per_second[-WINDOW_SECONDS:])
        points = []
        for i in range(0, len(per_second), HISTORY_STEP_SECONDS):
            chunk = per_second[i:i + HISTORY_STEP_SECONDS]
            points.append({"t": chunk[0][0], **_describe(_merge(c for _, c in chunk))})
        return {"current": _describe(current),
                "history": {"step_seconds": HISTORY_STEP_SECONDS, "points": points}}


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
