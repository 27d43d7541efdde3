"""Moves audit records from intents' outboxes to `audit_logs`, off the critical path.

Every worker runs one; they may race on the same intent, which is harmless:
an audit record's _id is fixed, so a second insert is a duplicate and skipped,
and an outbox is only cleared if it still holds exactly what was copied.
"""

from __future__ import annotations

import logging
import threading
import time

from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError

from .. import metrics

log = logging.getLogger(__name__)
BATCH = 200


class AuditDrainer:
    """A background thread that drains audit outboxes every `interval_s`."""

    def __init__(self, db: Database, audit_delay_ms, interval_s: float = 0.25):
        self.intents = db.payment_intents
        self.audit_logs = db.audit_logs
        self._audit_delay_ms = audit_delay_ms  # callable: the knob as it is now
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the background thread (once)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-drainer", daemon=True)
                self._thread.start()

    def stop(self, flush_timeout_s: float = 10.0) -> int:
        """Stop the thread, then drain what is left; returns the records still pending."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=flush_timeout_s)
        deadline = time.monotonic() + flush_timeout_s
        while time.monotonic() < deadline:
            try:
                if self.drain_once(delay=False) == 0:
                    return 0
            except PyMongoError:
                time.sleep(0.2)
        return self.pending()

    def pending(self) -> int:
        """Intents whose outbox still holds records."""
        return self.intents.count_documents({"audit_pending": True})

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                moved = self.drain_once()
            except PyMongoError as err:  # MongoDB down: keep the outboxes, retry later
                log.debug("audit drain deferred: %s", err)
                moved = 0
            if not moved:
                self._stop.wait(self._interval_s)

    def drain_once(self, delay: bool = True) -> int:
        """Move one batch of outboxes; returns how many intents were handled."""
        docs = list(self.intents.find({"audit_pending": True}, {"audit_outbox": 1}).limit(BATCH))
        if not docs:
            return 0
        if delay:  # the audit store is slow; batching pays its delay once per batch
            time.sleep(self._audit_delay_ms() / 1000)
        records = [r for d in docs for r in d.get("audit_outbox", [])]
        inserted = len(records)
        if records:
            try:
                self.audit_logs.insert_many(records, ordered=False)
            except BulkWriteError as err:
                dup_only = all(e.get("code") == 11000 for e in err.details.get("writeErrors", []))
                if not dup_only:
                    raise
                inserted = err.details.get("nInserted", 0)
        metrics.AUDIT_RECORDS.labels(path="async").inc(inserted)
        for d in docs:
            outbox = d.get("audit_outbox", [])
            self.intents.update_one(
                {"_id": d["_id"], "audit_outbox": {"$size": len(outbox)}},
                {"$unset": {"audit_outbox": "", "audit_pending": ""}},
            )
        return len(docs)
