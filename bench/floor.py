"""The stub plus the kit's store calls: the floor under the kit's CPU per checkout.

gunicorn serves `bench.floor:app` like the stub (bench/stub.py): the same
answers after the same two 15 ms sleeps, and besides them exactly the store
verbs a checkout makes in `original`, through the kit's own backend on the
kit's store (MONGO_URL, else the SQLite file): insert the intent, mark it
`awaiting_otp`, attach the OTP (three calls); find it, claim an attempt,
charge once (four). No validation, Redis, metrics, write lanes, modes or
hashing. So floor / stub is what the database driver costs on its own, and
kit / floor what the kit's own code costs on top of it.
"""

from __future__ import annotations

import secrets
import time

from flask import Flask, jsonify, request

from app.config import load_settings
from app.otp import MAX_ATTEMPTS
from app.store import Card, Payment, open_backend

from .stub import OTP_TTL_S, WRITE_S, worker_pid

app = Flask(__name__)
app.after_request(worker_pid)  # every answer names its worker, as the stub's and the kit's do
store = open_backend(load_settings())  # connects lazily: nothing happens here


@app.post("/payment/initiate")
def initiate():
    """The stub's initiate, with the kit's three store calls."""
    request.get_json(silent=True)
    started = time.monotonic()
    payment_id = "pay_" + secrets.token_hex(12)
    time.sleep(WRITE_S)
    store.insert_intent(Payment(id=payment_id, amount="49.99", currency="USD", card=Card("visa", "1111"),
                                created_at=time.time(), status="created", mode="original"))
    time.sleep(WRITE_S)
    store.mark_awaiting_otp(payment_id)
    otp = f"{secrets.randbelow(10**6):06d}"
    store.attach_otp(payment_id, otp, time.time() + OTP_TTL_S)  # the kit stores an HMAC; this stores the OTP
    return jsonify(payment_id=payment_id, status="awaiting_otp", otp=otp, otp_expires_in=OTP_TTL_S,
                   ready_ms=round((time.monotonic() - started) * 1000, 1))


@app.post("/payment/verify-otp")
def verify_otp():
    """The kit's four store calls of a right OTP: find, claim an attempt, charge once."""
    body = request.get_json(silent=True) or {}
    payment = store.find_payment(body.get("payment_id", ""))
    if payment is None or store.claim_attempt(payment.id, MAX_ATTEMPTS) is None or payment.otp_hash != body.get("otp"):
        return jsonify(error="invalid_otp"), 400
    succeeded_at = store.charge_once(payment, time.time())
    return jsonify(payment_id=payment.id, status="succeeded", succeeded_at=succeeded_at)


@app.get("/health")
@app.get("/ready")
def ready():
    """Ready once the store is: its tables or collections exist before the first checkout."""
    store.prepare()
    return jsonify(status="ready")
