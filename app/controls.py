"""The facilitator's changes to the shared state: flips, knob patches, resets, and their history.

Each change is an optimistic transaction (WATCH/MULTI): two facilitators
writing at once never lose an update, and a value is only written after the
value it is based on was read in the same transaction. Once written, the sync
loop settles it (app/sync.py): it reads the state back and waits until every
live worker serves it, so a change's answer means done everywhere.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import cast

import redis
from redis.client import Pipeline

from . import metrics
from .config import KNOB_DEFAULTS
from .errors import StateUnavailable
from .runtime import Snapshot, StateKeys, mode_value, parse_state

HISTORY_LENGTH = 200

# A change: given the pipeline (in MULTI) and the state before, queue its writes; returns its history events.
Change = Callable[[Pipeline, Snapshot], list[str]]


class Controls:
    """Writes the shared mode and knobs for every worker and replica, and records each change."""

    def __init__(self, rds: redis.Redis, prefix: str, settle: Callable[[], Snapshot],
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = rds
        self._keys = StateKeys.under(prefix)
        self._settle = settle
        self._clock = clock

    def set_mode(self, mode: str, actor: str, ttl_seconds: int | None = None) -> Snapshot:
        """Flip the persistence mode for everyone; optionally revert after ttl_seconds."""
        def change(pipe: Pipeline, before: Snapshot) -> list[str]:
            now = self._clock()
            pipe.set(self._keys.mode, mode_value(mode, now, actor, now + ttl_seconds if ttl_seconds else None))
            return [event("mode", actor, before.mode, mode, at=now, ttl_seconds=ttl_seconds)]

        snap = self._transaction(change)
        metrics.DB_MODE_CHANGES.labels(to=mode).inc()
        return snap

    def patch_knobs(self, changes: dict, actor: str) -> Snapshot:
        """Change some knobs for everyone and record what changed (nothing to change: the state in force)."""
        def change(pipe: Pipeline, before: Snapshot) -> list[str]:
            pipe.set(self._keys.knobs, json.dumps({**before.knobs, **changes}))
            return [event("knobs", actor, {k: before.knobs[k] for k in changes}, changes, at=self._clock())]

        return self._transaction(change) if changes else self._settled()

    def reset(self, actor: str) -> Snapshot:
        """Back to the start of the workshop, in one transaction: mode original, default knobs."""
        flipped = False

        def change(pipe: Pipeline, before: Snapshot) -> list[str]:
            nonlocal flipped
            now, events = self._clock(), []
            flipped = before.mode != "original" or before.revert_at is not None
            if flipped:
                pipe.set(self._keys.mode, mode_value("original", now, actor))
                events.append(event("mode", actor, before.mode, "original", at=now))
            changed = {k: v for k, v in KNOB_DEFAULTS.items() if before.knobs.get(k) != v}
            if changed:
                pipe.set(self._keys.knobs, json.dumps(KNOB_DEFAULTS))
                events.append(event("knobs", actor, {k: before.knobs[k] for k in changed}, changed, at=now))
            return events

        snap = self._transaction(change)
        if flipped:
            metrics.DB_MODE_CHANGES.labels(to="original").inc()
        return snap

    def history(self, limit: int = 50) -> list[dict]:
        """The most recent flips and knob changes, newest first."""
        try:
            stored = cast(list[str], self._redis.lrange(self._keys.history, 0, limit - 1))
            return [json.loads(e) for e in stored]
        except redis.RedisError:
            raise StateUnavailable("Redis is unreachable: the history cannot be read now.") from None

    def _transaction(self, change: Change) -> Snapshot:
        """Read, change and record under WATCH, again until no other writer came in between; then settle."""
        try:
            with self._redis.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(self._keys.mode, self._keys.knobs)
                        raw_mode, raw_knobs = cast(list[str | None], pipe.mget(self._keys.mode, self._keys.knobs))
                        before, _ = parse_state(raw_mode, raw_knobs)
                        pipe.multi()
                        for entry in change(pipe, before):
                            record(pipe, self._keys, entry)
                        pipe.execute()
                        break
                    except redis.WatchError:
                        continue
        except redis.RedisError:
            raise StateUnavailable() from None
        return self._settled()

    def _settled(self) -> Snapshot:
        try:
            return self._settle()
        except redis.RedisError:
            raise StateUnavailable() from None


def revert_if_due(rds: redis.Redis, keys: StateKeys, snap: Snapshot, now: float) -> bool:
    """Flip back to original once the TTL of `snap` (the state in force) has run out, whichever worker
    notices first; True when this call wrote the revert. Raises RedisError."""
    if snap.revert_at is None or now < snap.revert_at:
        return False
    with rds.pipeline() as pipe:
        try:
            pipe.watch(keys.mode)
            current, _ = parse_state(cast(str | None, pipe.get(keys.mode)), None)
            if current.revert_at != snap.revert_at:
                pipe.unwatch()  # another worker (or a facilitator) got there first
                return False
            pipe.multi()
            pipe.set(keys.mode, mode_value("original", snap.revert_at, "auto-revert"))
            record(pipe, keys, event("mode", "auto-revert", snap.mode, "original", at=snap.revert_at))
            pipe.execute()
        except redis.WatchError:
            return False
    metrics.DB_MODE_CHANGES.labels(to="original").inc()
    return True


def record(pipe: Pipeline, keys: StateKeys, entry: str) -> None:
    """Queue one history event, keeping the newest HISTORY_LENGTH."""
    pipe.lpush(keys.history, entry)
    pipe.ltrim(keys.history, 0, HISTORY_LENGTH - 1)


def event(kind: str, actor: str, old: object, new: object, at: float, **extra: object) -> str:
    """A history event as stored: when, what kind, who, from what to what (plus `extra` that is set)."""
    entry = {"at": at, "kind": kind, "actor": actor, "from": old, "to": new}
    entry.update({k: v for k, v in extra.items() if v is not None})
    return json.dumps(entry)
