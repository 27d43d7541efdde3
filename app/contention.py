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

# A published count is believed this long; then its worker is taken for dead.
ENTRY_TTL_S = 2.0
STALE_AFTER_S = 2.0


class InflightWrites:
    """This worker's writes in flight, plus the other workers' as last published."""

    def __init__(self, worker_id: str, clock=time.time):
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

    def entry(self, *extra) -> str:
        """This worker's published value: its count, when the entry expires, then `extra` fields."""
        return " ".join([str(self._local), f"{self._clock() + ENTRY_TTL_S:.3f}", *map(str, extra)])

    def live_entries(self, entries: dict[str, str]) -> dict[str, list[str]]:
        """The entries of workers that are alive (not expired), split into their fields."""
        now, live = self._clock(), {}
        for worker, value in entries.items():
            fields = value.split()
            try:
                if float(fields[1]) >= now:
                    live[worker] = fields
            except (IndexError, ValueError):
                continue
        return live

    def absorb(self, entries: dict[str, str]) -> list[str]:
        """Take in every worker's published entry; returns the expired ones (to delete)."""
        now, others, expired = self._clock(), 0, []
        for worker, value in entries.items():
            if worker == self.worker_id:
                continue
            try:
                n, expires_at = value.split()[:2]
                if float(expires_at) < now:
                    expired.append(worker)
                else:
                    others += max(0, int(n))
            except ValueError:
                expired.append(worker)  # not ours to understand: drop it
        self._others, self._others_at = others, time.monotonic()
        return expired
