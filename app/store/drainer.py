"""Copies audit records from intents' outboxes to `audit_logs`, off the critical path.

`audit-async` writes its two audit records into the intent document itself
(the outbox), in the same writes that create the intent, so they can only be
lost together with the payment. The worker that wrote an intent is told its
id (`notify`) once the write path is complete, and copies the records within
`interval_s`. A periodic sweep copies what a worker that died left behind.

The drainer never writes an intent (FerretDB v1 applies concurrent updates of
one document as read-modify-write, so a background write could undo a verify);
an audit record's fixed _id makes every copy after the first a harmless
duplicate, so drainers of several workers may overlap freely.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError

from .. import metrics

log = logging.getLogger(__name__)
BATCH = 200
SWEEP_EVERY_S = 60.0
# The sweep looks this far back: far longer than any worker lives without draining.
SWEEP_WINDOW_S = 3600.0


class AuditDrainer:
    """A background thread that copies the outboxes of notified intents."""

    def __init__(self, db: Database, audit_delay_ms, interval_s: float = 0.2):
        self.intents = db.payment_intents
        self.audit_logs = db.audit_logs
        self._audit_delay_ms = audit_delay_ms  # callable: the knob as it is now
        self._interval_s = interval_s
        self._queue: deque[str] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._next_sweep = time.monotonic()  # a new worker first picks up what a dead one left

    def notify(self, payment_id: str) -> None:
        """An intent's write path is complete: its outbox can be copied."""
        self._queue.append(payment_id)

    def start(self) -> None:
        """Start the background thread (once)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-drainer", daemon=True)
                self._thread.start()

    def stop(self, flush_timeout_s: float = 10.0) -> int:
        """Stop the thread, then copy everything notified; returns the intents left uncopied."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=flush_timeout_s)
        deadline = time.monotonic() + flush_timeout_s
        while time.monotonic() < deadline:
            try:
                while self.drain_once(delay=False):
                    pass
                return 0
            except PyMongoError:  # MongoDB away: the records wait in the outboxes
                time.sleep(0.2)
        return len(self._queue)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                moved = self.drain_once()
                if time.monotonic() >= self._next_sweep:
                    self._next_sweep = time.monotonic() + SWEEP_EVERY_S
                    self.sweep()
            except PyMongoError as err:  # MongoDB down: the records wait in the outboxes
                log.debug("audit drain deferred: %s", err)
                moved = 0
            if not moved:
                self._stop.wait(self._interval_s)

    def drain_once(self, delay: bool = True) -> int:
        """Copy the outboxes of one batch of notified intents; returns how many."""
        ids = []
        while self._queue and len(ids) < BATCH:
            ids.append(self._queue.popleft())
        if not ids:
            return 0
        if delay:  # the audit store is slow; batching pays its delay once per batch
            time.sleep(self._audit_delay_ms() / 1000)
        try:
            docs = [self.intents.find_one({"_id": i}, {"audit_outbox": 1}) for i in ids]
            self._copy([r for d in docs if d for r in d.get("audit_outbox", [])])
        except PyMongoError:
            self._queue.extendleft(reversed(ids))  # try again later, in order
            raise
        return len(ids)

    def missing(self, window_s: float = SWEEP_WINDOW_S) -> list[dict]:
        """Outbox records of recent intents that are not in `audit_logs` yet."""
        since = time.time() - window_s
        records = [r for d in self.intents.find({"mode": "audit-async", "created_at": {"$gte": since}},
                                                {"audit_outbox": 1})
                   for r in d.get("audit_outbox", [])]
        if not records:
            return []
        copied = {d["_id"] for d in self.audit_logs.find({"_id": {"$in": [r["_id"] for r in records]}},
                                                         {"_id": 1})}
        return [r for r in records if r["_id"] not in copied]

    def sweep(self, window_s: float = SWEEP_WINDOW_S) -> int:
        """Copy records a dead worker never copied; returns how many were missing."""
        records = self.missing(window_s)
        self._copy(records)
        return len(records)

    def _copy(self, records: list[dict]) -> None:
        if not records:
            return
        inserted = len(records)
        try:
            self.audit_logs.insert_many(records, ordered=False)
        except BulkWriteError as err:
            if any(e.get("code") != 11000 for e in err.details.get("writeErrors", [])):
                raise
            inserted = err.details.get("nInserted", 0)  # the rest were already there
        metrics.AUDIT_RECORDS.labels(path="async").inc(inserted)
