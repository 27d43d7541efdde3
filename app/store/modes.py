"""The persistence modes: timing policies composed over any backend.

`original` is two plain writes. `audit` adds two audit records on the
critical path, each behind the audit delay, plus a contention wait that grows
with the writes in flight (the workshop's hidden timing dependency).
`audit-async`, the fix, writes the same two records into an outbox in the same
writes as the intent, and the AuditDrainer copies them off the critical path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

from .. import metrics
from ..config import MODES as MODE_NAMES
from ..tracing import tracer
from .base import Backend
from .payment import Payment, audit_record

if TYPE_CHECKING:
    from ..contention import InflightWrites
    from .drainer import AuditDrainer


@dataclass
class Original:
    """2w: insert the intent, update it to `awaiting_otp`, each after the round trip."""

    name: ClassVar[str] = "original"
    backend: Backend
    knobs: dict
    inflight: InflightWrites
    drainer: AuditDrainer

    def _round_trip(self) -> None:
        """The simulated network round trip before each write (knob write_latency_ms)."""
        time.sleep(self.knobs["write_latency_ms"] / 1000)

    def _stamped(self, intent: Payment) -> Payment:
        """The intent as this mode writes it: `created`, in this mode (the service builds it so, which
        spares a copy on every checkout: a frozen dataclass's replace costs microseconds)."""
        if intent.status == "created" and intent.mode == self.name:
            return intent
        return replace(intent, status="created", mode=self.name)

    def create_intent(self, intent: Payment) -> None:
        """Insert the intent with status `created`."""
        self._round_trip()
        self.backend.insert_intent(self._stamped(intent))

    def mark_awaiting_otp(self, payment_id: str) -> None:
        """Move the intent to `awaiting_otp`."""
        self._round_trip()
        self.backend.mark_awaiting_otp(payment_id)


class Audit(Original):
    """4w + 2a + n·c: insert, wait a, audit, contention, update, wait a, audit."""

    name: ClassVar[str] = "audit"

    def _audit(self, payment_id: str, event: str) -> None:
        with tracer.start_as_current_span("audit.delay"):
            time.sleep(self.knobs["audit_delay_ms"] / 1000)
        with tracer.start_as_current_span("audit.write", attributes={"paygate.event": event}):
            self._round_trip()
            self.backend.insert_audit(audit_record(payment_id, event, self.name, "sync"))
        metrics.child(metrics.AUDIT_RECORDS, "sync").inc()

    def create_intent(self, intent: Payment) -> None:
        """Insert the intent, then its first audit record behind the audit delay."""
        super().create_intent(intent)
        self._audit(intent.id, "intent_created")

    def mark_awaiting_otp(self, payment_id: str) -> None:
        """Wait n·c for the writes in flight, update, then the second audit record."""
        with tracer.start_as_current_span("contention.wait") as span:
            n = self.inflight.contention_wait(self.knobs["contention_ms_per_write"])
            span.set_attribute("paygate.writes_in_flight", n)
        super().mark_awaiting_otp(payment_id)
        self._audit(payment_id, "awaiting_otp")


class AuditAsync(Original):
    """2w like `original`; the same two audit records go through the outbox."""

    name: ClassVar[str] = "audit-async"

    def create_intent(self, intent: Payment) -> None:
        """Insert the intent and its first outbox record in one write."""
        self._round_trip()
        record = audit_record(intent.id, "intent_created", self.name, "async")
        self.backend.insert_intent(self._stamped(intent), outbox=[record])

    def mark_awaiting_otp(self, payment_id: str) -> None:
        """Update with the second outbox record, then tell the drainer the outbox is complete."""
        self._round_trip()
        record = audit_record(payment_id, "awaiting_otp", self.name, "async")
        self.backend.mark_awaiting_otp(payment_id, outbox=[record])
        self.drainer.notify(payment_id)


MODES = {policy.name: policy for policy in (Original, Audit, AuditAsync)}
assert tuple(MODES) == tuple(MODE_NAMES), "every mode in config.MODES has one policy here, in the same order"
