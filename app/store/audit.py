"""The `audit` and `audit-async` modes: two audit records per payment.

`audit` writes them on the critical path, each behind the audit delay, plus a
contention wait that grows with the writes in flight (the workshop's hidden
timing dependency). `audit-async`, the fix, puts them in an outbox inside the
intent document itself (no extra write, so nothing to lose if a worker dies)
and the AuditDrainer copies them to `audit_logs` off the critical path.
"""

from __future__ import annotations

import time

from .. import metrics
from .mongo import MongoPaymentStore, audit_record, unavailable_on_error


class AuditStore(MongoPaymentStore):
    """4w + 2a + n·c: insert, wait a, audit, contention, update, wait a, audit."""

    mode = "audit"

    def _audit(self, payment_id: str, event: str) -> None:
        time.sleep(self.knobs["audit_delay_ms"] / 1000)
        self._round_trip()
        self.audit_logs.insert_one(audit_record(payment_id, event, self.mode, "sync"))
        metrics.AUDIT_RECORDS.labels(path="sync").inc()

    @unavailable_on_error
    def create_intent(self, intent: dict) -> None:
        super().create_intent(intent)
        self._audit(intent["_id"], "intent_created")

    @unavailable_on_error
    def mark_awaiting_otp(self, payment_id: str) -> None:
        self.inflight.contention_wait(self.knobs["contention_ms_per_write"])
        super().mark_awaiting_otp(payment_id)
        self._audit(payment_id, "awaiting_otp")


class AuditAsyncStore(MongoPaymentStore):
    """2w like `original`; the same two audit records go through the outbox."""

    mode = "audit-async"

    @unavailable_on_error
    def create_intent(self, intent: dict) -> None:
        self._round_trip()
        record = audit_record(intent["_id"], "intent_created", self.mode, "async")
        self.intents.insert_one({**intent, "status": "created", "mode": self.mode, "audit_outbox": [record]})

    @unavailable_on_error
    def mark_awaiting_otp(self, payment_id: str) -> None:
        self._round_trip()
        record = audit_record(payment_id, "awaiting_otp", self.mode, "async")
        self.intents.update_one(
            {"_id": payment_id, "status": "created"},
            {"$set": {"status": "awaiting_otp", "updated_at": time.time()}, "$push": {"audit_outbox": record}},
        )
        self.drainer.notify(payment_id)
