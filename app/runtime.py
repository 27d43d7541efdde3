"""Mode, knobs and history, kept in Redis so every worker and replica agrees.

Each worker's sync loop (app/sync.py) reads the mode and knobs every few tens
of milliseconds and hands them to `apply`, so requests never wait for Redis:
`snapshot()` returns what the loop last saw. Without a loop (unit tests, a
bare app) `snapshot()` reads Redis itself, at most once per `cache_ms`.
When Redis is unreachable the last known values keep serving and `redis_ok`
turns false (which /ready reports).

Flips and knob patches are optimistic transactions (WATCH/MULTI): two
facilitators writing at once never lose an update, and a value is only
written after the value it is based on was read in the same transaction.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import zlib
from dataclasses import dataclass, field, replace

import redis

from . import metrics
from .config import KNOB_DEFAULTS, KNOB_LIMITS, MODES

log = logging.getLogger("paygate.runtime")
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
        self.keys = (prefix + "mode", prefix + "knobs")
        self._history_key = prefix + "history"
        self._cache_s = cache_ms / 1000
        self._clock = clock
        self._lock = threading.Lock()
        self._last = Snapshot()
        self._raw: tuple | None = None  # the raw mode and knobs behind _last
        self._read_at = float("-inf")
        self._retry_at = float("-inf")
        self._corrupt_logged = False
        self._gauge_mode: str | None = None
        # Set by a sync loop that feeds `apply`: requests then never read Redis themselves.
        self.fed = False
        # Which state was applied last (the sync loop publishes it), and what to call after a
        # write so that its answer comes once every worker serves the new state.
        self.stamp = 0
        self.after_write = None
        # Reads are installed in the order they were sent (see `reading`).
        self._tickets = itertools.count(1)
        self._applied_ticket = 0
        self._apply_lock = threading.Lock()

    # -- reading -----------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The current state: the sync loop's latest, or a cached read."""
        if self.fed:
            return self._last
        now = time.monotonic()
        if now - self._read_at < self._cache_s or now < self._retry_at:
            return self._last
        # Never wait behind another thread's read: the last state is good enough meanwhile.
        if self._lock.acquire(blocking=False):
            try:
                self._read()
            finally:
                self._lock.release()
        return self._last

    def reading(self) -> int:
        """A ticket for a read of the state, taken just before the read is sent to Redis.

        A sync tick's read can be sent before a flip's write and handed to `apply` after the flip's own
        fresher read: installed then, it would put the old mode back on this worker for a tick, and
        the flip's wait for every worker (`after_write`) would wait for the old state, which all of
        them still serve. A read with an older ticket than one installed is therefore dropped.
        """
        return next(self._tickets)

    def refresh(self) -> Snapshot:
        """Read the state from Redis now, ignoring the cache; raises RedisError."""
        ticket = self.reading()
        raw_mode, raw_knobs = self._redis.mget(*self.keys)
        return self.apply(raw_mode, raw_knobs, ticket)

    def _read(self) -> None:
        try:
            self.refresh()
        except redis.RedisError:
            self.mark_unreachable()
            self._retry_at = time.monotonic() + RETRY_AFTER_FAILURE_S

    def apply(self, raw_mode: str | None, raw_knobs: str | None, ticket: int) -> Snapshot:
        """Install the state read from Redis under `ticket` (by the sync loop or `refresh`); a read older
        than the one installed last changes nothing (see `reading`)."""
        with self._apply_lock:
            if ticket < self._applied_ticket:
                return self._last
            self._applied_ticket = ticket
            if (raw_mode, raw_knobs) == self._raw and self._last.redis_ok:
                # The usual sync tick (20 a second per worker): nothing changed, nothing to parse.
                self._read_at = time.monotonic()
                return self._last
            snap = self._parse(raw_mode, raw_knobs)
            self.stamp = zlib.crc32(f"{raw_mode}|{raw_knobs}".encode())
            if snap.mode != self._gauge_mode:  # the mode gauge changes where the mode does
                for m in MODES:
                    metrics.DB_MODE.labels(mode=m).set(1 if m == snap.mode else 0)
                self._gauge_mode = snap.mode
            self._last = snap
            self._raw = (raw_mode, raw_knobs)
            self._read_at = time.monotonic()
            return snap

    def mark_unreachable(self) -> None:
        """Redis did not answer: keep serving the last known state, and say so."""
        self._last = replace(self._last, redis_ok=False)

    def _parse(self, raw_mode: str | None, raw_knobs: str | None) -> Snapshot:
        """Mode and knobs from their JSON; a corrupt one falls back to its defaults (one WARNING)."""
        problems = []
        try:
            mode = json.loads(raw_mode) if raw_mode else {}
            if not isinstance(mode, dict) or mode.get("mode", "original") not in MODES:
                raise ValueError(f"unknown mode {raw_mode!r}")
            revert_at = mode.get("revert_at")
            state = dict(mode=mode.get("mode", "original"), since=mode.get("since"),
                         actor=str(mode.get("actor", "default")),
                         revert_at=float(revert_at) if revert_at is not None else None)
        except (ValueError, TypeError) as err:  # JSONDecodeError is a ValueError
            problems.append(f"mode: {err}")
            state = {}
        try:
            knobs = json.loads(raw_knobs) if raw_knobs else {}
            if not isinstance(knobs, dict) or not all(k in KNOB_DEFAULTS and _knob_ok(k, v) for k, v in knobs.items()):
                raise ValueError(f"bad knobs {raw_knobs!r}")
        except (ValueError, TypeError) as err:
            problems.append(f"knobs: {err}")
            knobs = {}
        if problems and not self._corrupt_logged:
            log.warning("corrupt runtime state in Redis (%s); serving the defaults until it is rewritten",
                        "; ".join(problems))
        self._corrupt_logged = bool(problems)
        return Snapshot(**state, knobs={**KNOB_DEFAULTS, **knobs})

    # -- the TTL revert (an explicit step of the sync loop, never a side effect of a read) --

    def revert_if_due(self) -> None:
        """Flip back to original once the TTL has run out, whichever worker notices first."""
        snap = self._last
        if snap.revert_at is None or self._clock() < snap.revert_at:
            return
        new = json.dumps({"mode": "original", "since": snap.revert_at, "actor": "auto-revert"})
        event = self._event("mode", "auto-revert", snap.mode, "original", at=snap.revert_at)
        mode_key = self.keys[0]
        with self._redis.pipeline() as pipe:
            try:
                pipe.watch(mode_key)
                raw = pipe.get(mode_key)
                current = json.loads(raw) if raw else {}
                if current.get("revert_at") != snap.revert_at:
                    pipe.unwatch()  # another worker (or a facilitator) got there first
                else:
                    pipe.multi()
                    pipe.set(mode_key, new)
                    self._record(pipe, event)
                    pipe.execute()
                    metrics.DB_MODE_CHANGES.labels(to="original").inc()
            except (redis.WatchError, ValueError):
                pass
        self.refresh()  # serve what Redis holds now, whoever won

    # -- writing -----------------------------------------------------------

    def set_mode(self, mode: str, actor: str, ttl_seconds: int | None = None) -> Snapshot:
        """Flip the persistence mode for everyone; optionally revert after ttl_seconds."""
        def change(pipe, before: Snapshot) -> str:
            now = self._clock()
            value = {"mode": mode, "since": now, "actor": actor}
            if ttl_seconds:
                value["revert_at"] = now + ttl_seconds
            pipe.set(self.keys[0], json.dumps(value))
            return self._event("mode", actor, before.mode, mode, at=now, ttl_seconds=ttl_seconds)

        snap = self._transaction(change)
        metrics.DB_MODE_CHANGES.labels(to=mode).inc()
        return snap

    def patch_knobs(self, changes: dict, actor: str) -> Snapshot:
        """Change some knobs for everyone and record what changed."""
        def change(pipe, before: Snapshot) -> str:
            pipe.set(self.keys[1], json.dumps({**before.knobs, **changes}))
            return self._event("knobs", actor, {k: before.knobs[k] for k in changes}, changes, at=self._clock())

        return self._transaction(change)

    def _transaction(self, change) -> Snapshot:
        """Read, change and record under WATCH; retried until no other writer came in between."""
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(*self.keys)
                    before = self._parse(*pipe.mget(*self.keys))
                    pipe.multi()
                    event = change(pipe, before)
                    self._record(pipe, event)
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        snap = self.refresh()
        if self.after_write is not None:
            self.after_write(self.stamp)
        return snap

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

    def _record(self, pipe, event: str) -> None:
        pipe.lpush(self._history_key, event)
        pipe.ltrim(self._history_key, 0, HISTORY_LENGTH - 1)

    @staticmethod
    def _event(kind: str, actor: str, old, new, at: float, **extra) -> str:
        event = {"at": at, "kind": kind, "actor": actor, "from": old, "to": new}
        event.update({k: v for k, v in extra.items() if v is not None})
        return json.dumps(event)


def _knob_ok(name: str, value) -> bool:
    """A knob value of the right type within its limits (what validation lets through)."""
    if isinstance(KNOB_DEFAULTS[name], bool):
        return isinstance(value, bool)
    low, high = KNOB_LIMITS[name]
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
