"""The store port: what the payment service and the modes need from a database.

A backend (MongoDB through pymongo, or an embedded SQLite file) implements
`Backend`; a mode (`original`, `audit`, `audit-async`) is a `WritePolicy`
composed over any backend. Every guarantee below holds on every backend.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar, Protocol

from .payment import AuditRecord, Payment

# The outbox and the audit log are read in batches of this many records: one
# query's size stays bounded however many payments pile up.
BATCH = 500


class Backend(Protocol):
    """Where payments live. Raises StoreUnavailable when the database does not answer.

    Its verbs take and return domain values (`Payment`, `AuditRecord`, ids, times):
    documents and rows stay inside each backend.
    """

    kind: str  # "mongodb" or "sqlite", for /debug/config

    def prepare(self) -> None:
        """Create tables or collections and open connections (idempotent, safe from every worker)."""

    def insert_intent(self, payment: Payment, outbox: Sequence[AuditRecord] = ()) -> None:
        """Insert a new intent (with its status and mode) and, in the same write, its outbox records."""

    def mark_awaiting_otp(self, payment_id: str, outbox: Sequence[AuditRecord] = ()) -> bool:
        """Move a `created` intent to `awaiting_otp`, adding outbox records in the same write.

        False, and nothing written, when there is no such intent or it is no longer `created`.
        """

    def insert_audit(self, record: AuditRecord) -> None:
        """Write one audit-log record (the synchronous path)."""

    def find_payment(self, payment_id: str) -> Payment | None:
        """The payment as stored, or None."""

    def attach_otp(self, payment_id: str, otp_hash: str, expires_at: float) -> bool:
        """Store an OTP's hash on an `awaiting_otp` intent that has none yet; False if it could not."""

    def claim_attempt(self, payment_id: str, max_attempts: int) -> int | None:
        """Use up one OTP attempt atomically (1..max_attempts); None when all are used."""

    def lock(self, payment_id: str) -> None:
        """Lock a payment whose attempts are used up, unless a charge already won."""

    def charge_once(self, payment: Payment, now: float) -> float:
        """Charge exactly once however many verifies race; mark `succeeded`; returns the one charge's time."""

    def copy_outbox(self, payment_ids: Sequence[str]) -> int:
        """Copy these intents' outbox records to the audit log; returns the records newly written."""

    def sweep_outbox(self, since: float, until: float, batch: int = BATCH) -> Iterator[int]:
        """Copy the outbox records of intents created in [since, until) that a dead worker never copied.

        Works in bounded batches (of about `batch` payments): yields the records
        newly written by each, so no query or list grows with the backlog.
        """

    def insert_payments(self, payments: Sequence[Payment], outbox: Sequence[AuditRecord] = ()) -> None:
        """Store many payments in one write, as the service would have left them: a `succeeded` one
        with its charge (at its `succeeded_at`), and the outbox records of those whose drainer never ran.

        For seeding a store with a busy day's payments (benchmarks, the drainer's tests); not on any
        request's path.
        """

    def charge_count(self, payment_id: str) -> int:
        """How many charges the payment has: 0 or 1, by charge_once's promise."""

    def audit_log(self, payment_ids: Sequence[str]) -> list[AuditRecord]:
        """The audit-log records of these payments (copied or written), in no particular order."""

    def count_audit_records(self) -> int:
        """How many records the audit log holds in all."""

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""

    def close(self) -> None:
        """Release connections."""


class WritePolicy(Protocol):
    """A persistence mode: the write path's waits, audit records and outbox."""

    name: ClassVar[str]

    def create_intent(self, intent: Payment) -> None:
        """Insert the intent with status `created`, stamped with this mode (on the request thread)."""

    def mark_awaiting_otp(self, payment_id: str) -> None:
        """The rest of the write, which ends with the intent `awaiting_otp`."""
