"""Writes in flight, counted across every worker and replica.

A Redis sorted set holds one member per write in flight, scored by a lease
deadline. A worker that dies mid-write leaves its member behind, but the lease
runs out and the next count drops it: the count heals itself. If Redis is
unreachable the count falls back to this process's own writes (degraded:
contention then only sees one worker's load).
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager

import redis

from . import metrics

# Long enough for any write the knobs allow before the lease is extended.
BASE_LEASE_S = 10.0


class InflightWrites:
    """Registers writes while they run and tells how many are in flight."""

    def __init__(self, rds: redis.Redis, prefix: str, clock=time.time):
        self._redis = rds
        self._key = prefix + "inflight"
        self._clock = clock
        self._local: set[str] = set()
        self._lock = threading.Lock()
        self._current = threading.local()  # the write this thread runs, for contention_wait

    def begin(self) -> str:
        """Count one more write in flight; returns its id (pass it to `end`)."""
        write_id = uuid.uuid4().hex
        with self._lock:
            self._local.add(write_id)
        try:
            self._redis.zadd(self._key, {write_id: self._clock() + BASE_LEASE_S})
        except redis.RedisError:
            pass
        return write_id

    def end(self, write_id: str) -> None:
        """The write is over: it no longer counts."""
        with self._lock:
            self._local.discard(write_id)
        try:
            self._redis.zrem(self._key, write_id)
        except redis.RedisError:
            pass

    @contextmanager
    def bound(self, write_id: str):
        """Run the block as part of write `write_id` (whose lease contention_wait extends)."""
        self._current.write_id = write_id
        try:
            yield write_id
        finally:
            self._current.write_id = None

    @contextmanager
    def track(self):
        """Count one write in flight for the duration of the block; yields its id."""
        write_id = self.begin()
        try:
            with self.bound(write_id):
                yield write_id
        finally:
            self.end(write_id)

    def extend(self, write_id: str, seconds: float) -> None:
        """Push this write's lease out (before a long contention wait)."""
        try:
            self._redis.zadd(self._key, {write_id: self._clock() + seconds + BASE_LEASE_S}, xx=True)
        except redis.RedisError:
            pass

    def count(self) -> int:
        """Writes in flight now, this process's own ones at the least."""
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(self._key, "-inf", self._clock())
                pipe.zcard(self._key)
                n = pipe.execute()[1]
        except redis.RedisError:
            n = 0
        with self._lock:
            n = max(n, len(self._local))
        metrics.INFLIGHT_WRITES.set(n)
        return n

    def contention_wait(self, ms_per_write: int) -> int:
        """Sleep n × ms_per_write for the write running on this thread; returns n."""
        n = self.count()
        delay = n * ms_per_write / 1000
        write_id = getattr(self._current, "write_id", None)
        if write_id and delay:
            self.extend(write_id, delay)
        time.sleep(delay)
        return n
