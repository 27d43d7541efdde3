"""Writes in flight, counted across every worker and replica.

Each worker counts its own writes exactly, in memory, and its sync loop
(app/sync.py) publishes that count to a Redis hash every tick, with an
expiry, and reads the other workers' counts back. So the count that the
`audit` contention wait uses costs no Redis call, a worker that dies
mid-write stops counting once its entry expires (the count heals itself),
and a hanging Redis costs nothing: the other workers' last counts are used
until they are STALE_AFTER_S old, then only this worker's own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# A published count is believed this long; then its worker is taken for dead.
ENTRY_TTL_S = 2.0
STALE_AFTER_S = 2.0


@dataclass(frozen=True)
class WorkerEntry:
    """One worker's value in the shared hash: its writes in flight, when the entry expires, and the
    stamp of the runtime state it serves (a change waits until every live worker shows the new one)."""

    writes: int
    expires_at: float
    stamp: int = 0

    def encode(self) -> str:
        """The value as stored: space-separated fields."""
        return f"{self.writes} {self.expires_at:.3f} {self.stamp}"

    @classmethod
    def decode(cls, value: str) -> WorkerEntry | None:
        """The entry a worker stored; None when it cannot be read (not ours to understand)."""
        try:
            writes, expires_at, *rest = value.split()
            return cls(int(writes), float(expires_at), int(rest[0]) if rest else 0)
        except ValueError:
            return None


class InflightWrites:
    """This worker's writes in flight, plus the other workers' as last published."""

    def __init__(self, worker_id: str, clock: Callable[[], float] = time.time) -> None:
        self.worker_id = worker_id
        self._clock = clock
        self._lock = threading.Lock()
        self._local = 0
        self._others = 0
        self._others_at = float("-inf")

    def begin(self) -> None:
        """One more write in flight."""
        with self._lock:
            self._local += 1

    def end(self) -> None:
        """A write is over: it no longer counts."""
        with self._lock:
            self._local -= 1

    @property
    def local(self) -> int:
        """This worker's writes in flight."""
        return self._local

    def count(self) -> int:
        """Writes in flight everywhere: exact for this worker, up to a tick old for the others."""
        fresh = time.monotonic() - self._others_at < STALE_AFTER_S
        return self._local + (self._others if fresh else 0)

    def contention_wait(self, ms_per_write: int) -> int:
        """Sleep n × ms_per_write, n = writes in flight (this one included); returns n."""
        n = self.count()
        time.sleep(n * ms_per_write / 1000)
        return n

    # -- what the sync loop exchanges with Redis -------------------------------

    def entry(self, stamp: int = 0) -> str:
        """This worker's published value (see WorkerEntry), serving the state with `stamp`."""
        return WorkerEntry(self._local, self._clock() + ENTRY_TTL_S, stamp).encode()

    def live_entries(self, entries: dict[str, str]) -> dict[str, WorkerEntry]:
        """The entries of workers that are alive (readable and not expired)."""
        now = self._clock()
        decoded = {worker: WorkerEntry.decode(value) for worker, value in entries.items()}
        return {worker: entry for worker, entry in decoded.items() if entry and entry.expires_at >= now}

    def absorb(self, entries: dict[str, str]) -> list[str]:
        """Take in every worker's published entry; returns the expired or unreadable ones (to delete)."""
        live = self.live_entries(entries)
        expired = [worker for worker in entries if worker not in live]
        self._others = sum(max(0, entry.writes) for worker, entry in live.items() if worker != self.worker_id)
        self._others_at = time.monotonic()
        return expired
