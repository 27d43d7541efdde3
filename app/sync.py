"""Each worker's sync loop: the only Redis traffic a checkout causes, batched.

It is the one reader of the shared state. Every TICK_S one pipeline reads the
mode and knobs, publishes this worker's writes in flight (with the state it
serves) and reads everyone else's, and adds the board's counts recorded since
the last tick. A request therefore never waits for Redis: a
flip still reaches every worker within a tick or two, and when Redis hangs or
is down only this thread waits (then pauses for RETRY_AFTER_FAILURE_S, a
circuit breaker), while checkouts go on with the last known state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import cast

import redis

from . import metrics
from .board import BoardStats
from .contention import InflightWrites
from .controls import revert_if_due
from .errors import StateUnavailable
from .runtime import RuntimeState, Snapshot, StateKeys
from .tracing import untraced

log = logging.getLogger("paygate.sync")
TICK_S = 0.05
BOARD_FLUSH_S = 0.25
RETRY_AFTER_FAILURE_S = 1.0


class SyncLoop:
    """Keeps one worker's runtime state, writes-in-flight count and board counts in step with Redis."""

    def __init__(self, rds: redis.Redis, prefix: str, runtime: RuntimeState, inflight: InflightWrites,
                 board: BoardStats, clock: Callable[[], float] = time.time) -> None:
        self._redis = rds
        self._keys = StateKeys.under(prefix)
        self._inflight_key = prefix + "inflight"
        self.runtime = runtime
        self.inflight = inflight
        self.board = board
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_flush = 0.0
        self._ticking = threading.Lock()  # the loop's ticks and a change's `settle` take turns

    def start(self) -> None:
        """Start the thread: from its first tick on, requests serve the shared state."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="redis-sync", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread after one last tick (the board's last counts reach Redis)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            self.tick(flush=True)
            self._redis.hdel(self._inflight_key, self.inflight.worker_id)  # gone: count nothing for us
        except (redis.RedisError, OSError):
            pass

    def _run(self) -> None:
        with untraced():  # 20 pipelines a second per worker: no trace of them
            self._loop()

    def _loop(self) -> None:
        was_ok = True
        while not self._stop.is_set():
            try:
                self.tick()
                if not was_ok:
                    log.warning("Redis answers again: mode, knobs and writes in flight are shared again")
                was_ok = True
                self._stop.wait(TICK_S)
            except Exception as err:  # never die: without this thread the worker would serve stale state
                if was_ok:
                    log.warning("Redis unreachable (%s); serving the last known mode, retrying every %.0f s",
                                type(err).__name__, RETRY_AFTER_FAILURE_S)
                was_ok = False
                self.runtime.mark_unreachable()
                self._stop.wait(RETRY_AFTER_FAILURE_S)

    def tick(self, flush: bool = False) -> None:
        """One round trip: read the state, exchange writes in flight, flush the board when due; then
        revert a mode whose TTL ran out. Raises RedisError (the pending board counts are kept)."""
        with self._ticking:
            self._exchange(flush)
        snap = self.runtime.snapshot()
        if revert_if_due(self._redis, self._keys, snap, self._clock()):
            with self._ticking:
                self._exchange(False)  # serve the revert now, not a tick later

    def _exchange(self, flush: bool) -> None:
        now = time.monotonic()
        pending = None
        if flush or now >= self._next_flush:
            self._next_flush = now + BOARD_FLUSH_S
            pending = self.board.take_pending()
        ticket = self.runtime.reading()
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.mget(self._keys.mode, self._keys.knobs)
                pipe.hset(self._inflight_key, self.inflight.worker_id, self.inflight.entry(self.runtime.stamp))
                pipe.hgetall(self._inflight_key)
                if pending:
                    self.board.queue_flush(pipe, pending)
                results = pipe.execute()
        except BaseException:
            if pending:
                self.board.restore(pending)
            raise
        raw_mode, raw_knobs = results[0]
        self.runtime.apply(raw_mode, raw_knobs, ticket)
        expired = self.inflight.absorb(results[2])
        inflight = self.inflight.count()
        metrics.INFLIGHT_WRITES.set(inflight)
        self.board.sample_inflight(inflight)  # every tick: the board draws the mean, not one flickering reading
        if expired:
            self._redis.hdel(self._inflight_key, *expired)

    def settle(self, timeout_s: float = 1.0) -> Snapshot:
        """After a change to the shared state: read it now, then wait until every live worker serves it
        (at most timeout_s), so the facilitator's "done" means done everywhere: a checkout sent right
        after the answer meets the new state on any worker. Raises RedisError."""
        self.tick()
        self.wait_seen(self.runtime.stamp, timeout_s)
        return self.runtime.snapshot()

    def wait_seen(self, stamp: int, timeout_s: float = 1.0) -> bool:
        """Wait until every other live worker publishes `stamp` as the state it serves; False on a timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                live = self.inflight.live_entries(cast(dict[str, str], self._redis.hgetall(self._inflight_key)))
            except (redis.RedisError, OSError):
                return False
            if all(entry.stamp == stamp for worker, entry in live.items() if worker != self.inflight.worker_id):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(TICK_S / 2)

    def ping(self) -> None:
        """Raise StateUnavailable unless Redis answers (what /ready reports)."""
        try:
            self._redis.ping()
        except redis.RedisError as err:
            raise StateUnavailable(f"unavailable ({type(err).__name__}); serving the last known mode") from None
