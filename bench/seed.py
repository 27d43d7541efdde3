"""Payments stored straight into a store, many at once: the "already full" state of the flatness figure.

Through HTTP, 100,000 checkouts would take longer than the rest of the
benchmark; written directly they take seconds. The documents are shaped like
the app's own succeeded payments (an intent and its charge), so indexes and
queries see what they would see after a busy day.
"""

from __future__ import annotations

import os
import time

from pymongo import MongoClient

BATCH = 5_000


class SeedUnavailable(RuntimeError):
    """The store has no seeding function in this build of the app."""


def intent(t: float) -> dict:
    """One succeeded payment intent, as the app stores it after a verified OTP."""
    return {"_id": "pay_" + os.urandom(12).hex(), "amount": "10.00", "currency": "USD",
            "card": {"brand": "visa", "last4": "1111", "fingerprint": os.urandom(16).hex()},
            "created_at": t, "status": "succeeded", "mode": "original", "updated_at": t,
            "otp_hash": os.urandom(32).hex(), "otp_expires_at": t + 300, "succeeded_at": t}


def seed_mongo(mongo_url: str, db_name: str, n: int) -> None:
    """Insert n succeeded intents and their charges into `db_name`, in batches of 5,000."""
    client = MongoClient(mongo_url, serverSelectionTimeoutMS=5000)
    try:
        db = client[db_name]
        now = time.time()
        for start in range(0, n, BATCH):
            # Spread over the past day, newest last, as a day of checkouts would leave them.
            intents = [intent(now - 86_400 * (n - i) / n) for i in range(start, min(n, start + BATCH))]
            db.payment_intents.insert_many(intents, ordered=False)
            db.charges.insert_many([{"_id": d["_id"], "amount": d["amount"], "currency": d["currency"],
                                     "at": d["succeeded_at"]} for d in intents], ordered=False)
    finally:
        client.close()


def sqlite_seeder():
    """The app's own function that seeds its SQLite file, or SeedUnavailable."""
    try:
        from app.store.sqlite import seed_payments
    except ImportError as err:
        raise SeedUnavailable("app.store.sqlite.seed_payments is not in this build of the app") from err
    return seed_payments


def seed_sqlite(path: str | os.PathLike, n: int) -> None:
    """Insert n succeeded payments into the app's SQLite file, with the app's own seeding function."""
    sqlite_seeder()(str(path), n)
