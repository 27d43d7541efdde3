"""Write lanes: bounded pools of write threads, one lane per persistence mode.

In `audit` the writes pile up by design (each waits n·c for the others), and
they run to completion after their callers gave up. On one shared pool those
sleeping writes would hold every thread, and after a flip back `original`'s
writes would queue behind them: the room would see the failure outlive the
fix. On a lane of its own, each mode's writes start at once whatever another
mode left behind. A lane is bounded: past `limit` writes queued or running a
new write is refused (its payment takes the silent-failure path), so nothing
grows without bound.

A hand-off costs two lock operations in C (a job queue and a lock per write
that the caller waits on with its deadline): concurrent.futures' Future and
Condition, written in Python, were a quarter of a worker's time holding the GIL.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class Write:
    """One write handed to a lane: the caller waits on it with a timeout; it runs on regardless."""

    __slots__ = ("_fn", "_args", "_done", "result", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self._fn, self._args = fn, args
        self._done = threading.Lock()
        self._done.acquire()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        """Run the write on a lane thread, keeping its result or its exception."""
        try:
            self.result = self._fn(*self._args)
        except BaseException as err:  # handed to the caller, if it still waits
            self.error = err
        finally:
            self._done.release()

    def wait(self, timeout: float) -> bool:
        """True once the write is done (within timeout seconds); False if it is still running."""
        return self._done.acquire(timeout=max(0.0, timeout))


class _Lane:
    def __init__(self, name: str, max_threads: int, limit: int) -> None:
        self.name, self.max_threads, self.limit = name, max_threads, limit
        self.jobs: queue.SimpleQueue[Write | None] = queue.SimpleQueue()
        self.idle = threading.Semaphore(0)
        self.threads: list[threading.Thread] = []
        self.pending = 0
        self.lock = threading.Lock()

    def submit(self, write: Write) -> bool:
        with self.lock:
            if self.pending >= self.limit:
                return False
            self.pending += 1
            spawn = not self.idle.acquire(blocking=False) and len(self.threads) < self.max_threads
            if spawn:
                thread = threading.Thread(target=self._work, name=f"write-{self.name}-{len(self.threads)}",
                                          daemon=True)
                self.threads.append(thread)
        self.jobs.put(write)
        if spawn:
            thread.start()
        return True

    def _work(self) -> None:
        while (write := self.jobs.get()) is not None:
            write.run()
            with self.lock:
                self.pending -= 1
            self.idle.release()

    def close(self) -> None:
        for _ in self.threads:
            self.jobs.put(None)  # after every queued write: they all run first
        for thread in self.threads:
            thread.join()


class WriteLanes:
    """Lanes by name, created when first used, each with its own threads and bound."""

    def __init__(self, threads: int, limit: int) -> None:
        self._threads = threads
        self.limit = limit
        self._lanes: dict[str, _Lane] = {}
        self._lock = threading.Lock()

    def submit(self, lane: str, fn: Callable[..., Any], *args: Any) -> Write | None:
        """Run fn(*args) on the lane's threads; None when the lane is full."""
        found = self._lanes.get(lane)
        if found is None:
            with self._lock:
                found = self._lanes.setdefault(lane, _Lane(lane, self._threads, self.limit))
        write = Write(fn, args)
        return write if found.submit(write) else None

    def pending(self, lane: str) -> int:
        """Writes queued or running on a lane."""
        found = self._lanes.get(lane)
        return found.pending if found else 0

    def shutdown(self) -> None:
        """Let every write in progress or queued finish (graceful stop: nothing half-written)."""
        for lane in list(self._lanes.values()):
            lane.close()
