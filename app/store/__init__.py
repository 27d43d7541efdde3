"""Persistence: one store per mode, wired here and nowhere else."""

from __future__ import annotations

from .audit import AuditAsyncStore, AuditStore
from .base import PaymentStore
from .drainer import AuditDrainer
from .mongo import MongoPaymentStore, ensure_collections

STORES: dict[str, type[MongoPaymentStore]] = {
    "original": MongoPaymentStore,
    "audit": AuditStore,
    "audit-async": AuditAsyncStore,
}


def store_for(mode: str, db, knobs: dict, inflight, drainer=None) -> PaymentStore:
    """The store implementing `mode`, bound to this request's knobs."""
    return STORES[mode](db, knobs, inflight, drainer)


__all__ = ["AuditDrainer", "PaymentStore", "STORES", "ensure_collections", "store_for"]
