"""One SQLite writer at a time across a worker's threads and every worker: a thread lock, then an flock."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from ..errors import StoreUnavailable

POLL_S = 0.0002


class WriteLock:
    """Queues writers on locks rather than on SQLite's busy handler.

    SQLite's own wait for its write lock polls with sleeps of 1, 2, 5, 10,
    ... ms: under a room's load writes lost tens of milliseconds sleeping
    past a free lock. A thread lock hands it on at once within a worker;
    across workers an flock on a file beside the database is polled every
    0.2 ms (and only the one thread per worker that holds the thread lock
    polls). acquire() and release() rather than a context manager: they run
    on every write, and the caller already has its own `try`.
    """

    def __init__(self, path: Path, timeout_s: float) -> None:
        self._path = path
        self._timeout_s = timeout_s
        self._threads = threading.Lock()
        self._fd = -1  # the lock file, opened by the first acquire

    def acquire(self) -> None:
        """Take the lock within the timeout, else raise StoreUnavailable (a stuck worker never hangs us)."""
        if not self._threads.acquire(timeout=self._timeout_s):
            raise StoreUnavailable(detail="SQLite write lock")
        try:
            if self._fd < 0:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            self._lock_other_workers()
        except BaseException:
            self._threads.release()
            raise

    def release(self) -> None:
        """Let the next writer in, in this worker or another."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _lock_other_workers(self) -> None:
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:  # a worker holding it is stuck: fail, never hang
                    raise StoreUnavailable(detail="SQLite write lock") from None
                time.sleep(POLL_S)
