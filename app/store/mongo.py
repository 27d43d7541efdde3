"""The `original` mode: plain MongoDB writes, each after the simulated round trip."""

from __future__ import annotations

import functools
import time

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import PyMongoError

from ..errors import StoreUnavailable


def unavailable_on_error(fn):
    """Turn any driver error (server down, timeout) into StoreUnavailable."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PyMongoError as err:
            raise StoreUnavailable(detail=type(err).__name__) from err

    return wrapper


def audit_record(payment_id: str, event: str, mode: str, path: str) -> dict:
    """One audit-log document; its _id makes a second copy of it impossible."""
    return {"_id": f"{payment_id}:{event}", "payment_id": payment_id, "event": event,
            "mode": mode, "path": path, "at": time.time()}


class MongoPaymentStore:
    """Store for the `original` mode; the other modes extend its write path."""

    mode = "original"

    def __init__(self, db: Database, knobs: dict, inflight=None):
        self.intents = db.payment_intents
        self.audit_logs = db.audit_logs
        self.knobs = knobs
        self.inflight = inflight

    def _round_trip(self) -> None:
        """The simulated network round trip before each write (knob write_latency_ms)."""
        time.sleep(self.knobs["write_latency_ms"] / 1000)

    @unavailable_on_error
    def create_intent(self, intent: dict) -> None:
        self._round_trip()
        self.intents.insert_one({**intent, "status": "created", "mode": self.mode})

    @unavailable_on_error
    def mark_awaiting_otp(self, payment_id: str) -> None:
        self._round_trip()
        self.intents.update_one({"_id": payment_id, "status": "created"},
                                {"$set": {"status": "awaiting_otp", "updated_at": time.time()}})

    @unavailable_on_error
    def find_payment(self, payment_id: str) -> dict | None:
        return self.intents.find_one({"_id": payment_id})

    @unavailable_on_error
    def attach_otp(self, payment_id: str, otp_hash: str, expires_at: float) -> bool:
        result = self.intents.update_one(
            {"_id": payment_id, "status": "awaiting_otp", "otp_hash": None},
            {"$set": {"otp_hash": otp_hash, "otp_expires_at": expires_at, "otp_attempts": 0}},
        )
        return result.modified_count == 1

    @unavailable_on_error
    def register_wrong_otp(self, payment_id: str, max_attempts: int) -> dict | None:
        doc = self.intents.find_one_and_update(
            {"_id": payment_id, "status": "awaiting_otp"},
            {"$inc": {"otp_attempts": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if doc and doc.get("otp_attempts", 0) >= max_attempts:
            self.intents.update_one({"_id": payment_id, "status": "awaiting_otp"},
                                    {"$set": {"status": "locked", "updated_at": time.time()}})
            doc["status"] = "locked"
        return doc

    @unavailable_on_error
    def mark_succeeded(self, payment_id: str, otp_hash: str, now: float) -> bool:
        # One conditional update: of two concurrent correct verifies, one matches.
        result = self.intents.update_one(
            {"_id": payment_id, "status": "awaiting_otp", "otp_hash": otp_hash,
             "otp_expires_at": {"$gt": now}},
            {"$set": {"status": "succeeded", "succeeded_at": now, "updated_at": now},
             "$inc": {"charge_count": 1}},
        )
        return result.modified_count == 1

    @unavailable_on_error
    def ping(self) -> None:
        self.intents.database.command("ping")
