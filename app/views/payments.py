"""Payment API: initiate, verify, status."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..errors import PaymentNotFound
from ..kit import kit
from ..validation import InitiateRequest, VerifyRequest, is_payment_id
from .body import parse_body

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
    return jsonify(kit().payments.initiate(req).as_dict())


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

