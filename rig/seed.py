"""Payments written straight into a store, many at once: a store after a busy day.

Through HTTP, 100,000 checkouts would take longer than a benchmark section;
written directly (the port's `insert_payments`, a batch per write) they take
seconds. The payments are shaped like the app's own: succeeded payments (an
intent and its charge) for the flatness figure, or `audit-async` payments whose
worker died before its drainer copied their outbox (two audit records each)
for the drainer's tests and figures.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pymongo import MongoClient

from app.store import AuditRecord, Backend, Card, Payment, audit_record
from app.store.mongo import MongoBackend
from app.store.sqlite import SqliteBackend

BATCH = 5_000


def succeeded_payment(t: float) -> Payment:
    """One succeeded payment, as the app stores it after a verified OTP."""
    return Payment(id="pay_" + os.urandom(12).hex(), amount="10.00", currency="USD",
                   card=Card("visa", "1111", os.urandom(16).hex()), created_at=t, status="succeeded",
                   mode="original", updated_at=t, otp_hash=os.urandom(32).hex(), otp_expires_at=t + 300,
                   succeeded_at=t)


def undrained_payment(t: float) -> tuple[Payment, list[AuditRecord]]:
    """An `audit-async` payment, ready, with the two outbox records nobody copied yet."""
    ready = Payment(id="pay_" + os.urandom(12).hex(), amount="10.00", currency="USD",
                    card=Card("visa", "1111", os.urandom(16).hex()), created_at=t, status="awaiting_otp",
                    mode="audit-async", updated_at=t)
    return ready, [audit_record(ready.id, event, "audit-async", "async") for event in ("intent_created", "awaiting_otp")]


def _batches(n: int, window_s: float):
    """Creation times spread over the past `window_s`, newest last, in batches."""
    now = time.time()
    for start in range(0, n, BATCH):
        yield [now - window_s * (n - i) / n for i in range(start, min(n, start + BATCH))]


def seed(store: Backend, n: int, undrained: bool = False) -> list[str]:
    """Insert n payments: succeeded ones (with charges) over the past day, or undrained `audit-async`
    ones over the past half hour. Returns their ids."""
    ids: list[str] = []
    for times in _batches(n, 1800 if undrained else 86_400):
        if undrained:
            pairs = [undrained_payment(t) for t in times]
            payments = [payment for payment, _ in pairs]
            store.insert_payments(payments, [r for _, records in pairs for r in records])
        else:
            payments = [succeeded_payment(t) for t in times]
            store.insert_payments(payments)
        ids.extend(p.id for p in payments)
    return ids


def seed_mongo(mongo_url: str, db_name: str, n: int, undrained: bool = False) -> list[str]:
    """seed() into the MongoDB database `db_name`."""
    client = MongoClient(mongo_url, serverSelectionTimeoutMS=5000)
    try:
        return seed(MongoBackend(client[db_name]), n, undrained)
    finally:
        client.close()


def seed_sqlite(path: str | os.PathLike, n: int, undrained: bool = False) -> list[str]:
    """seed() into the app's SQLite file (safe while the app runs: one transaction per batch)."""
    backend = SqliteBackend(Path(path))
    backend.prepare()
    try:
        return seed(backend, n, undrained)
    finally:
        backend.close()
