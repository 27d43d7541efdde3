"""What crosses the store port: a payment and an audit record, as the service knows them.

The adapters turn these values into their own rows or documents and back, so
no database's shape (MongoDB's `_id`, SQLite's JSON column) reaches the
payment service, the modes or the drainer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Card:
    """The only card data kept: brand, last four digits and a keyed fingerprint (`cards.summary`)."""

    brand: str
    last4: str
    fingerprint: str | None = None

    @classmethod
    def from_dict(cls, stored: Mapping) -> Card:
        """The card of a stored payment (both stores keep it as this one small mapping)."""
        return cls(stored["brand"], stored["last4"], stored.get("fingerprint"))

    def as_dict(self) -> dict:
        """The mapping both stores keep; a card without a fingerprint is stored without the key."""
        if self.fingerprint is None:
            return {"brand": self.brand, "last4": self.last4}
        return {"brand": self.brand, "last4": self.last4, "fingerprint": self.fingerprint}


@dataclass(frozen=True, slots=True)
class Payment:
    """A payment intent: what was asked for, where its OTP stands, and whether it was charged.

    A new intent is `created`, in the mode of the write policy that inserts it
    (the policy makes sure of both).
    """

    id: str
    amount: str  # the decimal as the shopper sent it, e.g. "10.00": never a float
    currency: str
    card: Card
    created_at: float
    status: str = "created"  # created -> awaiting_otp -> succeeded or locked
    mode: str | None = None
    updated_at: float | None = None
    otp_hash: str | None = None
    otp_expires_at: float | None = None
    succeeded_at: float | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit-log entry: a payment reached `event` in `mode`, written on the `sync` or `async` path."""

    payment_id: str
    event: str
    mode: str
    path: str
    at: float

    @property
    def key(self) -> str:
        """What makes a record unique: one per payment and event. Each store keys the record by it,
        so any copy after the first (drainers overlapping, a sweep after a drain) is refused."""
        return f"{self.payment_id}:{self.event}"


def audit_record(payment_id: str, event: str, mode: str, path: str) -> AuditRecord:
    """The audit record of `event`, stamped now."""
    return AuditRecord(payment_id, event, mode, path, time.time())
