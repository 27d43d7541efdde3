"""Each worker's sync loop: the only Redis traffic a checkout causes, batched.

Every TICK_S one pipeline reads the mode and knobs, publishes this worker's
writes in flight and reads everyone else's, and adds the board's counts
recorded since the last tick. A request therefore never waits for Redis: a
flip still reaches every worker within a tick or two, and when Redis hangs or
is down only this thread waits (then pauses for RETRY_AFTER_FAILURE_S, a
circuit breaker), while checkouts go on with the last known state.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from . import metrics
from .tracing import untraced

log = logging.getLogger("paygate.sync")
TICK_S = 0.05
BOARD_FLUSH_S = 0.25
RETRY_AFTER_FAILURE_S = 1.0


class SyncLoop:
    """Keeps one worker's runtime state, writes-in-flight count and board counts in step with Redis."""

    def __init__(self, rds: redis.Redis, prefix: str, runtime, inflight, board):
        self._redis = rds
        self._inflight_key = prefix + "inflight"
        self.runtime = runtime
        self.inflight = inflight
        self.board = board
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_flush = 0.0

    def start(self) -> None:
        """Start the thread; from now on requests read the state it keeps."""
        if self._thread is None:
            self.runtime.fed = True
            self.runtime.after_write = self.wait_seen
            self._thread = threading.Thread(target=self._run, name="redis-sync", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread after one last tick (the board's last counts reach Redis)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.runtime.fed = False
        self.runtime.after_write = None
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
        """One round trip: read the state, exchange writes in flight, flush the board when due."""
        now = time.monotonic()
        pending = None
        if flush or now >= self._next_flush:
            self._next_flush = now + BOARD_FLUSH_S
            pending = self.board.take_pending()
        ticket = self.runtime.reading()
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.mget(*self.runtime.keys)
                pipe.hset(self._inflight_key, self.inflight.worker_id, self.inflight.entry(self.runtime.stamp))
                pipe.hgetall(self._inflight_key)
                if pending:
                    self.board.queue_flush(pipe, pending)
                results = pipe.execute()
        except BaseException:
            if pending:
                self.board.restore(pending)
            raise
        self.runtime.apply(*results[0], ticket)
        expired = self.inflight.absorb(results[2])
        inflight = self.inflight.count()
        metrics.INFLIGHT_WRITES.set(inflight)
        self.board.sample_inflight(inflight)  # every tick: the board draws the mean, not one flickering reading
        if expired:
            self._redis.hdel(self._inflight_key, *expired)
        self.runtime.revert_if_due()

    def wait_seen(self, stamp: int, timeout_s: float = 1.0) -> bool:
        """After a flip or knob change: wait until every live worker has applied it (at most timeout_s).

        So the facilitator's "done" means done everywhere: a checkout sent right
        after the answer meets the new state on any worker. False on a timeout.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                live = self.inflight.live_entries(self._redis.hgetall(self._inflight_key))
            except (redis.RedisError, OSError):
                return False
            if all(fields[2:3] == [str(stamp)] for worker, fields in live.items()
                   if worker != self.inflight.worker_id):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(TICK_S / 2)
