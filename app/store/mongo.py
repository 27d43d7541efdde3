"""The MongoDB backend (pymongo): compose, or any MONGO_URL; FerretDB in the tests."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import BulkWriteError, CollectionInvalid, DuplicateKeyError, PyMongoError

from ..errors import StoreUnavailable
from .base import BATCH
from .payment import AuditRecord, Card, Payment

F = TypeVar("F", bound=Callable[..., Any])
COLLECTIONS = ("payment_intents", "audit_logs", "charges", "otp_attempts")


def unavailable_on_error(fn: F) -> F:
    """Turn any driver error (server down, hanging, timeout) into StoreUnavailable."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PyMongoError as err:
            raise StoreUnavailable(detail=type(err).__name__) from err

    return cast(F, wrapper)


def connect(url: str, db_name: str, timeout_ms: int) -> MongoBackend:
    """A backend on the MongoDB at `url` (pymongo connects lazily: nothing happens here)."""
    client: MongoClient[dict[str, Any]] = MongoClient(
        url,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        # A hanging server must answer 503 within 2 s: one socket timeout, and no
        # driver retry that would start the wait again.
        socketTimeoutMS=int(timeout_ms * 1.5),
        retryWrites=False,
        retryReads=False,
        maxPoolSize=100,
        # A room arriving at once needs many connections at once (the default opens 2 at a time).
        maxConnecting=16,
        # Kept open from the start: a room's first burst must not pay for connection
        # set-up inside its 400 ms OTP deadline.
        minPoolSize=40,
        uuidRepresentation="standard",
    )
    return MongoBackend(client[db_name])


# The intent fields a document holds only once they have a value (a new intent has no OTP
# yet), as documents always have; attach_otp's filter {"otp_hash": None} matches a missing
# field and a null one alike.
_LATER_FIELDS = ("updated_at", "otp_hash", "otp_expires_at", "succeeded_at")


def intent_document(payment: Payment, outbox: Sequence[AuditRecord] = ()) -> dict:
    """The payment_intents document of a payment, its outbox records inside it."""
    doc = {"_id": payment.id, "amount": payment.amount, "currency": payment.currency,
           "card": payment.card.as_dict(), "created_at": payment.created_at, "status": payment.status,
           "mode": payment.mode}
    for field in _LATER_FIELDS:
        value = getattr(payment, field)
        if value is not None:
            doc[field] = value
    if outbox:
        doc["audit_outbox"] = [audit_document(r) for r in outbox]
    return doc


def payment_of(doc: dict) -> Payment:
    """The payment an intent document holds."""
    return Payment(id=doc["_id"], amount=doc["amount"], currency=doc["currency"], card=Card.from_dict(doc["card"]),
                   created_at=doc["created_at"], status=doc["status"], mode=doc.get("mode"),
                   updated_at=doc.get("updated_at"), otp_hash=doc.get("otp_hash"),
                   otp_expires_at=doc.get("otp_expires_at"), succeeded_at=doc.get("succeeded_at"))


def audit_document(r: AuditRecord) -> dict:
    """The audit_logs document of a record, under its key as _id: a second copy is refused."""
    return {"_id": r.key, "payment_id": r.payment_id, "event": r.event, "mode": r.mode, "path": r.path, "at": r.at}


def charge_document(payment: Payment, at: float) -> dict:
    """The charges document of a payment charged at `at`, under the payment's id: one charge at most."""
    return {"_id": payment.id, "amount": payment.amount, "currency": payment.currency, "at": at}


class MongoBackend:
    """Payments as MongoDB documents; outbox records inside the intent document.

    FerretDB v1 applies concurrent updates of one document as read-modify-write,
    so who wins a race (charge once, the attempt limit) is decided by an insert
    under a unique _id: the one write every MongoDB-wire server makes atomic.
    For the same reason nothing but the request path ever writes an intent.
    """

    kind = "mongodb"

    def __init__(self, db: Database) -> None:
        self.db = db
        self.intents = db.payment_intents
        self.audit_logs = db.audit_logs
        self.attempts = db.otp_attempts
        self.charges = db.charges

    @unavailable_on_error
    def prepare(self) -> None:
        """Create the collections up front, so a room's first burst does not race to create them.

        Measured on FerretDB: 4–18 of 40 simultaneous first checkouts missed
        400 ms while their writes created the collections; with them there, none.
        """
        existing = set(self.db.list_collection_names())
        for name in COLLECTIONS:
            if name not in existing:
                try:
                    self.db.create_collection(name)
                except CollectionInvalid:
                    pass  # another worker created it first
        # The sweep's query: audit-async intents of the last hour.
        self.intents.create_index([("mode", 1), ("created_at", 1)], name="mode_created_at")

    @unavailable_on_error
    def insert_intent(self, payment: Payment, outbox: Sequence[AuditRecord] = ()) -> None:
        """Insert the intent document, its outbox records inside it."""
        self.intents.insert_one(intent_document(payment, outbox))

    @unavailable_on_error
    def mark_awaiting_otp(self, payment_id: str, outbox: Sequence[AuditRecord] = ()) -> bool:
        """Conditional update `created` → `awaiting_otp`, pushing the outbox records."""
        update: dict = {"$set": {"status": "awaiting_otp", "updated_at": time.time()}}
        if outbox:
            update["$push"] = {"audit_outbox": {"$each": [audit_document(r) for r in outbox]}}
        return self.intents.update_one({"_id": payment_id, "status": "created"}, update).modified_count == 1

    @unavailable_on_error
    def insert_audit(self, record: AuditRecord) -> None:
        """One audit-log document."""
        self.audit_logs.insert_one(audit_document(record))

    @unavailable_on_error
    def find_payment(self, payment_id: str) -> Payment | None:
        """The payment of the intent document (read without its outbox)."""
        doc = self.intents.find_one({"_id": payment_id}, {"audit_outbox": 0})
        return None if doc is None else payment_of(doc)

    @unavailable_on_error
    def attach_otp(self, payment_id: str, otp_hash: str, expires_at: float) -> bool:
        """One conditional update: confirms readiness and stores the hash in one round trip."""
        result = self.intents.update_one(
            {"_id": payment_id, "status": "awaiting_otp", "otp_hash": None},
            {"$set": {"otp_hash": otp_hash, "otp_expires_at": expires_at}},
        )
        return result.modified_count == 1

    @unavailable_on_error
    def claim_attempt(self, payment_id: str, max_attempts: int) -> int | None:
        """Insert attempt k under the unique _id `<payment>:<k>`; the first free k wins."""
        for attempt in range(1, max_attempts + 1):
            try:
                self.attempts.insert_one({"_id": f"{payment_id}:{attempt}", "payment_id": payment_id,
                                          "at": time.time()})
                return attempt
            except DuplicateKeyError:
                continue
        return None

    @unavailable_on_error
    def lock(self, payment_id: str) -> None:
        """Lock, then undo the lock if a right OTP won a slot alongside the last wrong one."""
        self.intents.update_one({"_id": payment_id, "status": "awaiting_otp"},
                                {"$set": {"status": "locked", "updated_at": time.time()}})
        charge = self.charges.find_one({"_id": payment_id})
        if charge:
            self.intents.update_one({"_id": payment_id}, {"$set": {"status": "succeeded",
                                                                   "succeeded_at": charge["at"]}})

    @unavailable_on_error
    def charge_once(self, payment: Payment, now: float) -> float:
        """The charge is an insert under the payment's id: a second one is a duplicate."""
        try:
            self.charges.insert_one(charge_document(payment, now))
            at = now
        except DuplicateKeyError:
            charge = self.charges.find_one({"_id": payment.id})
            if charge is None:  # a duplicate of a charge that is not there: the store changed under us
                raise StoreUnavailable(detail="charge vanished") from None
            at = charge["at"]
        # Idempotent: whichever verify charged, the intent ends `succeeded` at the charge's time.
        self.intents.update_one({"_id": payment.id},
                                {"$set": {"status": "succeeded", "succeeded_at": at, "updated_at": now}})
        return at

    @unavailable_on_error
    def copy_outbox(self, payment_ids: Sequence[str]) -> int:
        """Copy the outboxes of these intents (one query) to the audit log."""
        docs = self.intents.find({"_id": {"$in": list(payment_ids)}}, {"audit_outbox": 1})
        return self._insert_new([r for d in docs for r in d.get("audit_outbox", [])])

    def sweep_outbox(self, since: float, until: float, batch: int = BATCH) -> Iterator[int]:
        """One cursor over the `audit-async` intents created in [since, until), copied `batch` at a time.

        A single pass (FerretDB cannot sort by pushdown: paging with sort and
        limit decoded the whole window again for every page), and no look-up
        of what is already copied: an insert of a record the log holds is
        refused by its fixed _id, which costs less than asking first.
        """
        try:
            cursor = self.intents.find({"mode": "audit-async", "created_at": {"$gte": since, "$lt": until}},
                                       {"audit_outbox": 1}, batch_size=batch)
            records: list[dict] = []
            for doc in cursor:
                records.extend(doc.get("audit_outbox", []))
                if len(records) >= 2 * batch:
                    yield self._insert_new(records)
                    records = []
            yield self._insert_new(records)
        except PyMongoError as err:
            raise StoreUnavailable(detail=type(err).__name__) from err

    def _insert_new(self, records: list[dict]) -> int:
        """Insert records, counting those that were not there yet (their _id is fixed)."""
        if not records:
            return 0
        try:
            return len(self.audit_logs.insert_many(records, ordered=False).inserted_ids)
        except BulkWriteError as err:
            if any(e.get("code") != 11000 for e in err.details.get("writeErrors", [])):
                raise
            return err.details.get("nInserted", 0)  # the rest were already there

    @unavailable_on_error
    def insert_payments(self, payments: Sequence[Payment], outbox: Sequence[AuditRecord] = ()) -> None:
        """The intent documents (each with its outbox records inside), then the succeeded ones' charges."""
        records: dict[str, list[AuditRecord]] = {}
        for r in outbox:
            records.setdefault(r.payment_id, []).append(r)
        if payments:
            self.intents.insert_many([intent_document(p, records.get(p.id, ())) for p in payments], ordered=False)
        charges = [charge_document(p, p.succeeded_at or p.created_at) for p in payments if p.status == "succeeded"]
        if charges:
            self.charges.insert_many(charges, ordered=False)

    @unavailable_on_error
    def charge_count(self, payment_id: str) -> int:
        """The charges documents under the payment's id: at most one."""
        return self.charges.count_documents({"_id": payment_id})

    @unavailable_on_error
    def audit_log(self, payment_ids: Sequence[str]) -> list[AuditRecord]:
        """The audit_logs documents of these payments."""
        docs = self.audit_logs.find({"payment_id": {"$in": list(payment_ids)}})
        return [AuditRecord(d["payment_id"], d["event"], d["mode"], d["path"], d["at"]) for d in docs]

    @unavailable_on_error
    def count_audit_records(self) -> int:
        """The audit_logs documents, counted (not estimated from the collection's metadata)."""
        return self.audit_logs.count_documents({})

    @unavailable_on_error
    def ping(self) -> None:
        """The server's ping command."""
        self.db.command("ping")

    def close(self) -> None:
        """Close the client's pool."""
        self.db.client.close()
