"""Mode, knobs and history, kept in Redis so every worker and replica agrees.

Each worker caches what it read for `runtime_cache_ms` (100 ms by default),
so a flip reaches every worker within that time without a pub/sub thread.
When Redis is unreachable the last known values keep serving and `ok` turns
false (which /ready reports); reads retry every second, so recovery needs no
restart.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field, replace

import redis

from . import metrics
from .config import KNOB_DEFAULTS, MODES

RETRY_AFTER_FAILURE_S = 1.0
HISTORY_LENGTH = 200


@dataclass(frozen=True)
class Snapshot:
    """The runtime state one request works with."""

    mode: str = "original"
    since: float | None = None
    actor: str = "default"
    revert_at: float | None = None
    knobs: dict = field(default_factory=lambda: dict(KNOB_DEFAULTS))
    redis_ok: bool = True

    def as_dict(self, now: float | None = None) -> dict:
        """The mode part as the admin API shows it."""
        now = time.time() if now is None else now
        return {
            "mode": self.mode,
            "since": self.since,
            "actor": self.actor,
            "revert_at": self.revert_at,
            "revert_in_seconds": None if self.revert_at is None else max(0.0, round(self.revert_at - now, 1)),
            "modes": list(MODES),
        }


class RuntimeState:
    """Reads and writes the shared runtime state."""

    def __init__(self, rds: redis.Redis, prefix: str, cache_ms: int, clock=time.time):
        self._redis = rds
        self._mode_key = prefix + "mode"
        self._knobs_key = prefix + "knobs"
        self._history_key = prefix + "history"
        self._cache_s = cache_ms / 1000
        self._clock = clock
        self._lock = threading.Lock()
        self._last = Snapshot()
        self._read_at = float("-inf")
        self._retry_at = float("-inf")

    # -- reading -----------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The current state, from the cache if it is fresh enough."""
        now = time.monotonic()
        if now - self._read_at < self._cache_s or now < self._retry_at:
            return self._last
        with self._lock:
            if time.monotonic() - self._read_at >= self._cache_s:
                self._refresh()
        return self._last

    def refresh(self) -> Snapshot:
        """Read the state from Redis now, ignoring the cache."""
        with self._lock:
            self._refresh(force=True)
        return self._last

    def _refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() < self._retry_at:
            return
        try:
            raw_mode, raw_knobs = self._redis.mget(self._mode_key, self._knobs_key)
            snap = self._parse(raw_mode, raw_knobs)
            if snap.revert_at is not None and self._clock() >= snap.revert_at:
                self._revert(raw_mode, snap)
                snap = Snapshot(mode="original", since=snap.revert_at, actor="auto-revert", knobs=snap.knobs)
        except redis.RedisError:
            self._retry_at = time.monotonic() + RETRY_AFTER_FAILURE_S
            self._last = replace(self._last, redis_ok=False)
            return
        self._last = snap
        self._read_at = time.monotonic()
        self._retry_at = float("-inf")

    @staticmethod
    def _parse(raw_mode: str | None, raw_knobs: str | None) -> Snapshot:
        mode = json.loads(raw_mode) if raw_mode else {}
        knobs = dict(KNOB_DEFAULTS)
        if raw_knobs:
            knobs.update({k: v for k, v in json.loads(raw_knobs).items() if k in KNOB_DEFAULTS})
        return Snapshot(
            mode=mode.get("mode", "original") if mode.get("mode") in MODES else "original",
            since=mode.get("since"),
            actor=mode.get("actor", "default"),
            revert_at=mode.get("revert_at"),
            knobs=knobs,
        )

    def _revert(self, raw_mode: str, expired: Snapshot) -> None:
        """Flip back to original once, whichever worker notices the TTL first."""
        new = json.dumps({"mode": "original", "since": expired.revert_at, "actor": "auto-revert"})
        event = self._event("mode", "auto-revert", expired.mode, "original", at=expired.revert_at)
        with self._redis.pipeline() as pipe:
            try:
                pipe.watch(self._mode_key)
                if pipe.get(self._mode_key) != raw_mode:
                    return  # another worker (or a facilitator) got there first
                pipe.multi()
                pipe.set(self._mode_key, new)
                pipe.lpush(self._history_key, event)
                pipe.ltrim(self._history_key, 0, HISTORY_LENGTH - 1)
                pipe.execute()
            except redis.WatchError:
                return
        metrics.DB_MODE_CHANGES.labels(to="original").inc()

    # -- writing -----------------------------------------------------------

    def set_mode(self, mode: str, actor: str, ttl_seconds: int | None = None) -> Snapshot:
        """Flip the persistence mode for everyone; optionally revert after ttl_seconds."""
        now = self._clock()
        before = self.refresh()
        value = {"mode": mode, "since": now, "actor": actor}
        if ttl_seconds:
            value["revert_at"] = now + ttl_seconds
        event = self._event("mode", actor, before.mode, mode, at=now, ttl_seconds=ttl_seconds)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._mode_key, json.dumps(value))
            pipe.lpush(self._history_key, event)
            pipe.ltrim(self._history_key, 0, HISTORY_LENGTH - 1)
            pipe.execute()
        metrics.DB_MODE_CHANGES.labels(to=mode).inc()
        return self.refresh()

    def patch_knobs(self, changes: dict, actor: str) -> Snapshot:
        """Change some knobs for everyone and record what changed."""
        before = self.refresh()
        knobs = {**before.knobs, **changes}
        old = {k: before.knobs[k] for k in changes}
        event = self._event("knobs", actor, old, changes, at=self._clock())
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._knobs_key, json.dumps(knobs))
            pipe.lpush(self._history_key, event)
            pipe.ltrim(self._history_key, 0, HISTORY_LENGTH - 1)
            pipe.execute()
        return self.refresh()

    def reset(self, actor: str) -> Snapshot:
        """Back to the start of the workshop: mode original, default knobs."""
        before = self.refresh()
        if before.mode != "original" or before.revert_at is not None:
            self.set_mode("original", actor)
        changed = {k: v for k, v in KNOB_DEFAULTS.items() if before.knobs.get(k) != v}
        if changed:
            self.patch_knobs(changed, actor)
        return self.refresh()

    def history(self, limit: int = 50) -> list[dict]:
        """The most recent flips and knob changes, newest first."""
        return [json.loads(e) for e in self._redis.lrange(self._history_key, 0, limit - 1)]

    @staticmethod
    def _event(kind: str, actor: str, old, new, at: float, **extra) -> str:
        event = {"at": at, "kind": kind, "actor": actor, "from": old, "to": new}
        event.update({k: v for k, v in extra.items() if v is not None})
        return json.dumps(event)
