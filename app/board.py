"""Live board statistics: checkouts, OTP results, ready times, retries and writes in flight per second, in Redis.

The board must show what *every* gunicorn worker and replica sees, so the
counts end up in a Redis hash per second (a short TTL, so nothing needs
cleaning up). A payment only counts in memory; the worker's sync loop adds
the counts to Redis a few times a second, so recording costs no Redis call
and a Redis outage never touches a payment. Ready times are counted in
10 ms buckets, enough to place a p95 against the 400 ms deadline.

Writes in flight is a gauge that moves every few milliseconds: one reading
a second flickers (it read 0 during the subtle phase). So the sync loop
samples it every tick, and the board draws the mean of those samples.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis
from redis.client import Pipeline

from .errors import BoardUnavailable
from .runtime import StateKeys

# The board's history and the TTL of its per-second hashes.
HISTORY_SECONDS = 300
KEY_TTL_SECONDS = HISTORY_SECONDS + 60
# "Now" on the board: long enough to be steady, short enough to react within 15 s.
WINDOW_SECONDS = 10
HISTORY_STEP_SECONDS = 5
BUCKET_MS = 10
MAX_BUCKET = 1000  # ready times of 10 s and more share the last bucket
TOP_BUCKET_MS = MAX_BUCKET * BUCKET_MS
SUCCESS_TARGET = 0.95
SUMMARY_MAX_AGE_S = 1.0
# The newest history events read for the mode changes the board marks (flips and knob changes alike).
CHANGES_READ = 50
# Per-second fields besides the OTP results and the ready buckets ("r<bucket>").
RETRY = "retry"
INFLIGHT_SUM, INFLIGHT_SAMPLES = "ns", "nc"


@dataclass
class Pending:
    """What a worker recorded since its last flush: counts by (second, field), the latest failed trace."""

    counts: Counter = field(default_factory=Counter)
    # (when, trace id): the time decides which worker's failure is the room's latest, not the flush order.
    latest_failed_trace: tuple[float, str] | None = None

    def __bool__(self) -> bool:
        return bool(self.counts) or self.latest_failed_trace is not None


class BoardStats:
    """Counts checkouts, OTP outcomes, ready times, retries and writes in flight, and summarises them for the board."""

    def __init__(self, rds: redis.Redis, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self._redis = rds
        self._prefix = prefix + "board:"
        self._latest_failed_key = self._prefix + "latest_failed_trace"
        self._changes_key = StateKeys.under(prefix).history
        self._clock = clock
        self._lock = threading.Lock()
        self._pending = Pending()
        self._summary: tuple[float, dict] | None = None

    def _key(self, second: int) -> str:
        return f"{self._prefix}{second}"

    # -- recording (on the payment path: memory only, never raises) ----------

    def record_otp(self, result: str, trace_id: str | None = None) -> None:
        """Count one OTP generation outcome, "success" or "timeout" (one checkout answered).

        A timeout's `trace_id` becomes the board's "latest failed checkout" link."""
        with self._lock:
            self._pending.counts[(int(self._clock()), result)] += 1
            if result == "timeout" and trace_id:
                self._pending.latest_failed_trace = (self._clock(), trace_id)

    def record_ready(self, seconds: float) -> None:
        """Count one completed write by its ready time."""
        self._count(f"r{ready_bucket(seconds)}")

    def record_retry(self) -> None:
        """Count one initiate that says it retries an earlier, failed one."""
        self._count(RETRY)

    def sample_inflight(self, n: int) -> None:
        """One reading of writes in flight (the sync loop's, every tick): the board draws their mean."""
        with self._lock:
            second = int(self._clock())
            self._pending.counts[(second, INFLIGHT_SUM)] += n
            self._pending.counts[(second, INFLIGHT_SAMPLES)] += 1

    def _count(self, name: str) -> None:
        with self._lock:
            self._pending.counts[(int(self._clock()), name)] += 1

    def take_pending(self) -> Pending:
        """What was recorded since the last flush (the sync loop sends it to Redis)."""
        with self._lock:
            pending, self._pending = self._pending, Pending()
        return pending

    def queue_flush(self, pipe: Pipeline, pending: Pending) -> None:
        """Add the pending counts to `pipe`: one HINCRBY per second and field, the latest failed trace."""
        for (second, name), n in pending.counts.items():
            pipe.hincrby(self._key(second), name, n)
        for second in {s for s, _ in pending.counts}:  # after the first write: EXPIRE ignores a missing key
            pipe.expire(self._key(second), KEY_TTL_SECONDS)
        if pending.latest_failed_trace:
            # A sorted set by time holding the newest only: workers flush in any order.
            at, trace_id = pending.latest_failed_trace
            pipe.zadd(self._latest_failed_key, {trace_id: at})
            pipe.zremrangebyrank(self._latest_failed_key, 0, -2)
            pipe.expire(self._latest_failed_key, KEY_TTL_SECONDS)

    def restore(self, pending: Pending) -> None:
        """A flush failed: keep its counts for the next one (those older than the board shows are dropped)."""
        oldest = int(self._clock()) - HISTORY_SECONDS
        with self._lock:
            self._pending.counts.update({k: v for k, v in pending.counts.items() if k[0] > oldest})
            if self._pending.latest_failed_trace is None:
                self._pending.latest_failed_trace = pending.latest_failed_trace

    # -- reading -------------------------------------------------------------

    def seconds(self, now: float | None = None) -> list[tuple[int, dict]]:
        """(second, counts) for the last HISTORY_SECONDS, oldest first; raises RedisError."""
        return self._read(self._clock() if now is None else now)[0]

    def _read(self, now: float) -> tuple[list[tuple[int, dict]], str | None, list[dict]]:
        last = int(now)
        span = range(last - HISTORY_SECONDS + 1, last + 1)
        with self._redis.pipeline(transaction=False) as pipe:
            for second in span:
                pipe.hgetall(self._key(second))
            pipe.zrange(self._latest_failed_key, -1, -1)
            pipe.lrange(self._changes_key, 0, CHANGES_READ - 1)
            *raw, newest, changes = pipe.execute()
        latest = newest[0] if newest else None
        per_second = [(second, {k: int(v) for k, v in counts.items()}) for second, counts in zip(span, raw, strict=True)]
        return per_second, latest, _mode_changes(changes, now)

    def summary(self, now: float | None = None, mode: str | None = None, max_age_s: float = SUMMARY_MAX_AGE_S) -> dict:
        """The current window, the 5-minute history the board draws, the mode changes within it (oldest
        first) and the latest failed checkout's trace. BoardUnavailable (naming `mode`, the mode this
        worker serves) when Redis does not answer.

        Computed at most once per `max_age_s` per worker: every open board
        polls once a second, and fifty boards must not mean fifty times the reads.
        """
        now = self._clock() if now is None else now
        cached = self._summary
        if cached is not None and 0 <= now - cached[0] < max_age_s:
            return copy.deepcopy(cached[1])
        try:
            per_second, latest, changes = self._read(now)
        except redis.RedisError:
            raise BoardUnavailable(mode=mode) from None
        # The last second is still running: rates are per second of time covered, not per bucket.
        partial = now - int(now)
        current = _merge(counts for _, counts in per_second[-WINDOW_SECONDS:])
        points = []
        for i in range(0, len(per_second), HISTORY_STEP_SECONDS):
            chunk = per_second[i:i + HISTORY_STEP_SECONDS]
            covered = len(chunk) - 1 + partial if chunk[-1][0] == int(now) else len(chunk)
            points.append({"t": chunk[0][0], **_describe(_merge(c for _, c in chunk), covered)})
        result = {"current": _describe(current, WINDOW_SECONDS - 1 + partial),
                  "history": {"step_seconds": HISTORY_STEP_SECONDS, "points": points},
                  "mode_changes": changes,
                  "latest_failed_trace": latest.decode() if isinstance(latest, bytes) else latest}
        self._summary = (now, result)
        return copy.deepcopy(result)


def _mode_changes(stored: list, now: float) -> list[dict]:
    """The flips among the stored history events (newest first) that fall in the board's history, oldest first."""
    changes = []
    for raw in stored:
        entry = json.loads(raw)
        if entry.get("kind") == "mode" and entry["at"] >= now - HISTORY_SECONDS:
            changes.append({"at": entry["at"], "from": entry["from"], "to": entry["to"], "actor": entry.get("actor")})
    return changes[::-1]


def ready_bucket(seconds: float) -> int:
    """The 10 ms bucket of a ready time: bucket b holds times up to b × 10 ms."""
    return min(MAX_BUCKET, max(1, math.ceil(seconds * 1000 / BUCKET_MS)))


def _merge(many: Iterable[dict]) -> dict:
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


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 2) if seconds > 0 else 0.0


def _describe(counts: dict, seconds: float) -> dict:
    success, timeout = counts.get("success", 0), counts.get("timeout", 0)
    ready = {int(k[1:]): v for k, v in counts.items() if k.startswith("r") and k[1:].isdigit()}
    p95 = quantile_ms(ready, 0.95)
    samples = counts.get(INFLIGHT_SAMPLES, 0)
    return {
        "otp_success": success,
        "otp_timeout": timeout,
        "otp_success_rate": round(success / (success + timeout), 4) if success + timeout else None,
        "ready_count": sum(ready.values()),
        "ready_p95_ms": p95,
        # In the top bucket the p95 is only known to be at least its bound: the board says "> 10 s".
        "ready_p95_beyond_top": p95 is not None and p95 >= TOP_BUCKET_MS,
        "checkouts_per_s": _rate(success + timeout, seconds),
        "retries": counts.get(RETRY, 0),
        "retries_per_s": _rate(counts.get(RETRY, 0), seconds),
        "inflight_mean": round(counts.get(INFLIGHT_SUM, 0) / samples, 2) if samples else None,
    }
