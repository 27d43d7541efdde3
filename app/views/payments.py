"""Payment API: initiate, verify, status."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..errors import PaymentNotFound, ValidationFailed
from ..kit import kit
from ..tracing import annotate
from ..validation import InitiateRequest, VerifyRequest, is_payment_id
from .body import parse_body

# A shopper's "Try again" names the payment whose OTP step just failed (the board counts retries,
# and the trace carries it, so a team can follow one shopper's tries).
RETRY_HEADER = "X-Retry-Of"

bp = Blueprint("payments", __name__, url_prefix="/payment")


@bp.after_request
def _no_store_otp(response):
    """The initiate answer holds an OTP: no browser or proxy may keep it (its errors alike)."""
    if request.endpoint == "payments.initiate":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/initiate")
def initiate():
    """Create a payment and issue its OTP, or fail silently if it is not ready in time."""
    req = parse_body(request, InitiateRequest)
    retry_of = request.headers.get(RETRY_HEADER)
    if retry_of is not None and not is_payment_id(retry_of):
        raise ValidationFailed({RETRY_HEADER: "must be the payment_id of an earlier try"})
    result = kit().payments.initiate(req, retry_of=retry_of)
    annotate(status=result.status)
    response = jsonify(result.as_dict())
    # Standard Server-Timing: how long the OTP service waited, against its deadline (the page's
    # "details for support" and any browser's network panel read it; the body keeps its shape).
    response.headers["Server-Timing"] = f"ready;dur={result.waited_ms}, deadline;dur={result.deadline_ms}"
    return response


@bp.post("/verify-otp")
def verify_otp():
    """Verify an OTP and charge the payment once."""
    req = parse_body(request, VerifyRequest)
    return jsonify(kit().payments.verify(req))


@bp.get("/<payment_id>")
def status(payment_id: str):
    """A payment's status, amount, card brand and last four digits."""
    if not is_payment_id(payment_id):
        raise PaymentNotFound()  # never a query for something that cannot be an id
    return jsonify(kit().payments.get(payment_id))

