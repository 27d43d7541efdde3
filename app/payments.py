"""The payment service: initiate (with the OTP deadline) and verify.

Initiate runs the persistence write on a background thread and waits for it
under one deadline, `otp_timeout_ms` from the start of the write. The write
always runs to completion, even when the caller has stopped waiting: that is
what lets writes pile up under load in `audit` mode.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from . import cards, metrics, otp
from .errors import (
    NoOtpIssued,
    OtpExpired,
    OtpUnavailable,
    InvalidOtp,
    PaymentLocked,
    PaymentNotFound,
    StoreUnavailable,
)
from .store import store_for

log = logging.getLogger("paygate.payments")

SILENT_FAILURE_MESSAGE = "Unable to generate OTP. Please try again."
# However late the OTP deadline passes, the caller gets a payment_id only once
# the intent is in MongoDB, so every id handed out can be found again.
INSERT_WAIT_S = 1.8


class _WriteProgress:
    """How far a background write got: `settled` once the insert succeeded or failed."""

    def __init__(self):
        self.settled = threading.Event()
        self.inserted = False


def new_payment_id() -> str:
    """A random, unguessable payment id."""
    return "pay_" + secrets.token_hex(12)


class PaymentService:
    """Initiate and verify payments against the store of the current mode."""

    def __init__(self, db, runtime, inflight, settings):
        self.db = db
        self.runtime = runtime
        self.inflight = inflight
        self.settings = settings
        self.writes = ThreadPoolExecutor(max_workers=settings.write_threads, thread_name_prefix="write")

    def _store(self, snap=None):
        snap = snap or self.runtime.snapshot()
        return store_for(snap.mode, self.db, snap.knobs, self.inflight)

    # -- initiate ------------------------------------------------------------

    def initiate(self, req) -> tuple[dict, int]:
        """Create a payment and try to issue its OTP before the deadline."""
        snap = self.runtime.snapshot()
        store = self._store(snap)
        intent = {
            "_id": new_payment_id(),
            "amount": str(req.amount),
            "currency": req.currency,
            "card": cards.summary(req.card_number, self.settings.secret_key),
            "created_at": time.time(),
        }
        start = time.monotonic()
        deadline = start + snap.knobs["otp_timeout_ms"] / 1000
        progress = _WriteProgress()
        write = self.writes.submit(self._persist, store, intent, progress)
        try:
            write.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            return self._otp_unavailable(store, intent["_id"], write, progress, snap.knobs)
        ready = store.find_payment(intent["_id"])  # confirm readiness with a query
        if ready is None or ready.get("status") != "awaiting_otp":
            return self._otp_unavailable(store, intent["_id"], write, progress, snap.knobs)
        return self._issue_otp(store, intent["_id"], start)

    def _persist(self, store, intent: dict, progress: "_WriteProgress") -> None:
        start = time.monotonic()
        with self.inflight.track():
            try:
                store.create_intent(intent)
                progress.inserted = True
            finally:
                progress.settled.set()
            store.mark_awaiting_otp(intent["_id"])
        metrics.PAYMENT_READY.labels(mode=store.mode).observe(time.monotonic() - start)

    def _issue_otp(self, store, payment_id: str, start: float) -> tuple[dict, int]:
        code = otp.new_otp()
        expires_in = self.settings.otp_ttl_seconds
        if not store.attach_otp(payment_id, otp.otp_hash(payment_id, code, self.settings.secret_key),
                                time.time() + expires_in):
            raise StoreUnavailable("The payment changed while its OTP was issued.")
        metrics.OTP_GENERATION.labels(mode=store.mode, result="success").inc()
        ready_ms = round((time.monotonic() - start) * 1000, 1)
        return {"payment_id": payment_id, "status": "awaiting_otp", "otp": code,
                "otp_expires_in": expires_in, "ready_ms": ready_ms}, 200

    def _otp_unavailable(self, store, payment_id, write, progress, knobs) -> tuple[dict, int]:
        # The write runs on. Hand out the id only once the intent exists (or fail loudly).
        progress.settled.wait(INSERT_WAIT_S)
        if not progress.inserted:
            if write.done() and write.exception() is not None:
                raise write.exception()
            raise StoreUnavailable("The payment could not be stored in time.")
        metrics.OTP_GENERATION.labels(mode=store.mode, result="timeout").inc()
        metrics.ORPHANED_INTENTS.labels(mode=store.mode).inc()
        body = {"payment_id": payment_id, "status": "otp_unavailable", "message": SILENT_FAILURE_MESSAGE}
        if knobs["silent_failures"]:
            return body, 200  # the silent failure: no error, no log line
        log.warning("OTP unavailable: payment %s not ready within %d ms (mode %s)",
                    payment_id, knobs["otp_timeout_ms"], store.mode)
        raise OtpUnavailable(payment_id=payment_id, status="otp_unavailable")

    # -- verify --------------------------------------------------------------

    def verify(self, req) -> dict:
        """Check an OTP; charge the payment once. Raises a domain error otherwise."""
        try:
            body = self._verify(req.payment_id, req.otp)
        except (PaymentNotFound, NoOtpIssued, OtpExpired, PaymentLocked, InvalidOtp) as err:
            metrics.OTP_VERIFICATION.labels(result=_VERIFY_RESULT[type(err)]).inc()
            raise
        metrics.OTP_VERIFICATION.labels(result="success").inc()
        return body

    def _verify(self, payment_id: str, code: str) -> dict:
        store = self._store()
        key = self.settings.secret_key
        doc = store.find_payment(payment_id)
        if doc is None:
            raise PaymentNotFound()
        if doc["status"] == "succeeded":
            if otp.matches(doc.get("otp_hash"), payment_id, code, key):
                return succeeded_body(doc)  # a repeat: same answer, no second charge
            raise InvalidOtp("The OTP is wrong.", attempts_left=0)
        if doc["status"] == "locked":
            raise PaymentLocked()
        if not doc.get("otp_hash"):
            raise NoOtpIssued()
        now = time.time()
        if doc.get("otp_expires_at", 0) <= now:
            raise OtpExpired()
        if otp.matches(doc["otp_hash"], payment_id, code, key):
            if store.mark_succeeded(payment_id, doc["otp_hash"], now):
                doc.update(status="succeeded", succeeded_at=now)
                return succeeded_body(doc)
            return self._verify(payment_id, code)  # lost a race: answer from the new state
        after = store.register_wrong_otp(payment_id, otp.MAX_ATTEMPTS)
        if after is None:
            return self._verify(payment_id, code)
        if after["status"] == "locked":
            raise PaymentLocked(attempts_left=0)
        raise InvalidOtp(attempts_left=otp.MAX_ATTEMPTS - after["otp_attempts"])

    def get(self, payment_id: str) -> dict:
        """What a client may see of a payment: never its OTP or fingerprint."""
        doc = self._store().find_payment(payment_id)
        if doc is None:
            raise PaymentNotFound()
        return public_view(doc)

    def ping(self) -> None:
        """Raise StoreUnavailable unless MongoDB answers."""
        self._store().ping()

    def shutdown(self) -> None:
        """Let every write in progress finish (graceful stop: nothing half-written)."""
        self.writes.shutdown(wait=True)


_VERIFY_RESULT = {PaymentNotFound: "not_found", NoOtpIssued: "no_otp", OtpExpired: "expired",
                  PaymentLocked: "locked", InvalidOtp: "invalid"}


def public_view(doc: dict) -> dict:
    """The fields of an intent a client may see."""
    return {
        "payment_id": doc["_id"],
        "status": doc["status"],
        "amount": doc["amount"],
        "currency": doc["currency"],
        "card": {"brand": doc["card"]["brand"], "last4": doc["card"]["last4"]},
        "mode": doc.get("mode"),
        "created_at": doc.get("created_at"),
        "succeeded_at": doc.get("succeeded_at"),
    }


def succeeded_body(doc: dict) -> dict:
    """The answer to a successful verify (the same for a repeat)."""
    return {"payment_id": doc["_id"], "status": "succeeded", "amount": doc["amount"],
            "currency": doc["currency"], "succeeded_at": doc.get("succeeded_at")}
