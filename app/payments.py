"""The payment service: initiate (with the OTP deadline) and verify.

Initiate inserts the intent on the request thread, hands the rest of the
write to a write thread and waits for it under one deadline, `otp_timeout_ms`
from the start of the write. The write always runs to completion, even when
the caller has stopped waiting: that is what lets writes pile up under load
in `audit` mode.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from . import cards, metrics, otp
from .errors import (
    InvalidOtp,
    NoOtpIssued,
    OtpExpired,
    OtpUnavailable,
    PaymentLocked,
    PaymentNotFound,
)
from .lanes import WriteLanes
from .store import Card, Payment, policy_for
from .tracing import annotate, current_trace_id, otp_wait, tracer

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from .board import BoardStats
    from .config import Settings
    from .contention import InflightWrites
    from .runtime import RuntimeState
    from .store import AuditDrainer, Backend, WritePolicy
    from .validation import InitiateRequest, VerifyRequest

log = logging.getLogger("paygate.payments")


@dataclass(frozen=True)
class Initiated:
    """The outcome of an initiate: the OTP (`awaiting_otp`) or the silent failure (`otp_unavailable`)."""

    payment_id: str
    status: str
    otp: str | None = None
    otp_expires_in: int | None = None
    ready_ms: float | None = None
    message: str | None = None
    # How long the OTP service waited, against its deadline: for the Server-Timing header, not the body.
    waited_ms: float | None = None
    deadline_ms: int | None = None

    def as_dict(self) -> dict:
        """The body's fields that apply, in the API's order (every field is a plain value: no deep
        copy as dataclasses.asdict makes, which was 1 % of a worker's time on this path)."""
        return {k: v for k, v in vars(self).items() if v is not None and k not in _TIMING}


_TIMING = frozenset({"waited_ms", "deadline_ms"})


def new_payment_id() -> str:
    """A random, unguessable payment id."""
    return "pay_" + secrets.token_hex(12)


class PaymentService:
    """Initiate and verify payments: the mode's write policy over the backend."""

    def __init__(self, store: Backend, runtime: RuntimeState, inflight: InflightWrites, drainer: AuditDrainer,
                 board: BoardStats, settings: Settings) -> None:
        self.store = store
        self.runtime = runtime
        self.inflight = inflight
        self.drainer = drainer
        self.settings = settings
        self.board = board  # the live board's counters (app/board.py)
        self.writes = WriteLanes(settings.write_threads, limit=2 * settings.write_threads)

    # -- initiate ------------------------------------------------------------

    def initiate(self, req: InitiateRequest, retry_of: str | None = None) -> Initiated:
        """Create a payment and try to issue its OTP before the deadline.

        `retry_of` names the payment whose OTP step just failed, when the shopper tries again.
        """
        snap = self.runtime.snapshot()
        policy = policy_for(snap.mode, self.store, snap.knobs, self.inflight, self.drainer)
        payment_id = new_payment_id()
        intent = Payment(id=payment_id, amount=str(req.amount), currency=req.currency,
                         card=Card(**cards.summary(req.card_number, self.settings.secret_key)),
                         created_at=time.time(), status="created", mode=policy.name)
        annotate(mode=policy.name, payment_id=payment_id)
        if retry_of:
            annotate(retry_of=retry_of)
            metrics.child(metrics.CHECKOUT_RETRIES, policy.name).inc()
            self.board.record_retry()
        deadline_ms = snap.knobs["otp_timeout_ms"]
        start, start_ns = time.monotonic(), time.time_ns()
        deadline = start + deadline_ms / 1000
        # The write's span and the OTP's wait (otp_wait) both start now: the trace shows the wait cut
        # at the deadline beside the write going on.
        write = tracer.start_span("payment.write", start_time=start_ns)
        self.inflight.begin()
        try:
            # The insert runs on this thread: a payment id is only ever handed out
            # once its intent is stored, however far behind the rest falls.
            with trace.use_span(write, end_on_exit=False, record_exception=True, set_status_on_exception=True):
                policy.create_intent(intent)
            rest = self.writes.submit(policy.name, self._finish_write, policy, payment_id, start, write)
        except BaseException:
            self.inflight.end()
            write.end()
            otp_wait(start_ns, deadline_ms, cut=False)
            raise
        if rest is None:  # this mode's lane is full: refuse rather than queue without bound
            self.inflight.end()
            write.set_status(Status(StatusCode.ERROR, "write lane full"))
            write.end()
            return self._too_late(policy.name, payment_id, snap.knobs, start, start_ns)
        if not rest.wait(deadline - time.monotonic()):
            return self._too_late(policy.name, payment_id, snap.knobs, start, start_ns)
        otp_wait(start_ns, deadline_ms, cut=False)
        if rest.error is not None:
            raise rest.error
        issued = self._issue_otp(policy.name, payment_id, start, deadline_ms)
        return issued or self._otp_unavailable(policy.name, payment_id, snap.knobs, start)

    def _finish_write(self, policy: WritePolicy, payment_id: str, start: float, span: Span) -> float:
        """The rest of the write, on a write thread: it runs to the end even after the deadline."""
        try:
            with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
                policy.mark_awaiting_otp(payment_id)
        finally:
            self.inflight.end()
        ready_s = time.monotonic() - start
        metrics.child(metrics.PAYMENT_READY, policy.name).observe(ready_s)
        self.board.record_ready(ready_s)
        return ready_s

    def _too_late(self, mode: str, payment_id: str, knobs: dict, start: float, start_ns: int) -> Initiated:
        otp_wait(start_ns, knobs["otp_timeout_ms"], cut=True)
        return self._otp_unavailable(mode, payment_id, knobs, start)

    def _issue_otp(self, mode: str, payment_id: str, start: float, deadline_ms: int) -> Initiated | None:
        code = otp.new_otp()
        expires_in = self.settings.otp_ttl_seconds
        # One conditional update confirms readiness (found, awaiting_otp, no OTP yet)
        # and stores the OTP's hash: a query and the issue in one round trip.
        if not self.store.attach_otp(payment_id, otp.otp_hash(payment_id, code, self.settings.secret_key),
                                     time.time() + expires_in):
            return None
        self._record_otp(mode, "success")
        ready_ms = round((time.monotonic() - start) * 1000, 1)
        return Initiated(payment_id, "awaiting_otp", otp=code, otp_expires_in=expires_in, ready_ms=ready_ms,
                         waited_ms=ready_ms, deadline_ms=deadline_ms)

    def _otp_unavailable(self, mode: str, payment_id: str, knobs: dict, start: float) -> Initiated:
        self._record_otp(mode, "timeout")
        metrics.child(metrics.ORPHANED_INTENTS, mode).inc()
        waited_ms = round((time.monotonic() - start) * 1000, 1)
        if knobs["silent_failures"]:
            # The silent failure: an answer like any other, no error, no log line.
            return Initiated(payment_id, "otp_unavailable", message=OtpUnavailable.message,
                             waited_ms=waited_ms, deadline_ms=knobs["otp_timeout_ms"])
        log.warning("OTP unavailable: payment %s not ready within %d ms (mode %s)",
                    payment_id, knobs["otp_timeout_ms"], mode)
        err = OtpUnavailable(payment_id=payment_id, status="otp_unavailable")
        err.retry_after = self._retry_after_s(mode, knobs)
        raise err

    def _retry_after_s(self, mode: str, knobs: dict) -> int:
        """How long a loud failure tells the shopper to wait: in `audit`, what a write takes now by the
        timing model (4w + 2a + n·c, n the writes in flight), rounded up; at least a second. It grows
        with the backlog, so polite clients slow down as much as the room needs to drain."""
        if mode != "audit":
            return 1
        ready_ms = (4 * knobs["write_latency_ms"] + 2 * knobs["audit_delay_ms"]
                    + self.inflight.count() * knobs["contention_ms_per_write"])
        return max(1, math.ceil(ready_ms / 1000))

    def _record_otp(self, mode: str, result: str) -> None:
        """One OTP outcome ("success" or "timeout"), counted for Prometheus and for the board alike
        (a timeout with its trace: the board links the latest failed checkout's)."""
        metrics.child(metrics.OTP_GENERATION, mode, result).inc()
        self.board.record_otp(result, current_trace_id() if result == "timeout" else None)

    # -- verify --------------------------------------------------------------

    def verify(self, req: VerifyRequest) -> dict:
        """Check an OTP; charge the payment once. Raises a domain error otherwise."""
        try:
            body = self._verify(req.payment_id, req.otp)
        except (PaymentNotFound, NoOtpIssued, OtpExpired, PaymentLocked, InvalidOtp) as err:
            metrics.child(metrics.OTP_VERIFICATION, _VERIFY_RESULT[type(err)]).inc()
            raise
        metrics.child(metrics.OTP_VERIFICATION, "success").inc()
        return body

    def _verify(self, payment_id: str, code: str) -> dict:
        store = self.store
        key = self.settings.secret_key
        payment = store.find_payment(payment_id)
        if payment is None:
            raise PaymentNotFound()
        if payment.status == "succeeded":
            if otp.matches(payment.otp_hash, payment_id, code, key):
                return succeeded_body(payment, payment.succeeded_at)  # a repeat: same answer, no second charge
            raise InvalidOtp(attempts_left=0)
        if payment.status == "locked":
            raise PaymentLocked(attempts_left=0)
        if not payment.otp_hash:
            raise NoOtpIssued()
        now = time.time()
        if (payment.otp_expires_at or 0) <= now:
            raise OtpExpired()
        # Every try uses up an attempt before the OTP is compared, so a burst of
        # parallel guesses gets three comparisons, not three plus the burst.
        attempt = store.claim_attempt(payment_id, otp.MAX_ATTEMPTS)
        if attempt is not None and otp.matches(payment.otp_hash, payment_id, code, key):
            return succeeded_body(payment, store.charge_once(payment, now))
        attempts_left = 0 if attempt is None else otp.MAX_ATTEMPTS - attempt
        if attempts_left == 0:
            store.lock(payment_id)
            raise PaymentLocked(attempts_left=0)
        raise InvalidOtp(attempts_left=attempts_left)

    def get(self, payment_id: str) -> dict:
        """What a client may see of a payment: never its OTP or fingerprint."""
        payment = self.store.find_payment(payment_id)
        if payment is None:
            raise PaymentNotFound()
        return public_view(payment)

    def ping(self) -> None:
        """Raise StoreUnavailable unless the payment store answers."""
        self.store.ping()

    def shutdown(self) -> None:
        """Let every write in progress finish (graceful stop: nothing half-written)."""
        self.writes.shutdown()


_VERIFY_RESULT = {PaymentNotFound: "not_found", NoOtpIssued: "no_otp", OtpExpired: "expired",
                  PaymentLocked: "locked", InvalidOtp: "invalid"}


def public_view(payment: Payment) -> dict:
    """The fields of a payment a client may see."""
    return {
        "payment_id": payment.id,
        "status": payment.status,
        "amount": payment.amount,
        "currency": payment.currency,
        "card": {"brand": payment.card.brand, "last4": payment.card.last4},
        "mode": payment.mode,
        "created_at": payment.created_at,
        "succeeded_at": payment.succeeded_at,
    }


def succeeded_body(payment: Payment, succeeded_at: float | None) -> dict:
    """The answer to a successful verify (the same for a repeat): charged at `succeeded_at`."""
    return {"payment_id": payment.id, "status": "succeeded", "amount": payment.amount,
            "currency": payment.currency, "succeeded_at": succeeded_at}
