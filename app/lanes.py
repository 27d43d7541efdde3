"""Write lanes: one bounded thread pool per persistence mode.

In `audit` the writes pile up by design (each waits n·c for the others), and
they run to completion after their callers gave up. On one shared pool those
sleeping writes would hold every thread, and after a flip back `original`'s
writes would queue behind them: the room would see the failure outlive the
fix. On a lane of its own, each mode's writes start at once whatever another
mode left behind. A lane is bounded: past `limit` writes queued or running a
new write is refused (its payment takes the silent-failure path), so nothing
grows without bound.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor


class WriteLanes:
    """Thread pools by lane name, created when first used, each with a bound on pending writes."""

    def __init__(self, threads: int, limit: int):
        self._threads = threads
        self.limit = limit
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()

    def submit(self, lane: str, fn, *args) -> Future | None:
        """Run fn(*args) on the lane's threads; None when the lane is full."""
        with self._lock:
            if self._pending.get(lane, 0) >= self.limit:
                return None
            self._pending[lane] = self._pending.get(lane, 0) + 1
            pool = self._pools.get(lane)
            if pool is None:
                pool = self._pools[lane] = ThreadPoolExecutor(self._threads, thread_name_prefix=f"write-{lane}")
        future = pool.submit(fn, *args)
        future.add_done_callback(lambda _: self._done(lane))
        return future

    def _done(self, lane: str) -> None:
        with self._lock:
            self._pending[lane] -= 1

    def pending(self, lane: str) -> int:
        """Writes queued or running on a lane."""
        return self._pending.get(lane, 0)

    def shutdown(self) -> None:
        """Let every write in progress finish (graceful stop: nothing half-written)."""
        for pool in list(self._pools.values()):
            pool.shutdown(wait=True)
