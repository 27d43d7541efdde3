"""A bare Flask stub of the checkout API: the throughput yardstick for the kit.

gunicorn serves `bench.stub:app` with the kit's own gunicorn.conf.py (same
workers, same threads), and the same wrk script drives it. Initiate sleeps
through the two 15 ms writes of `original` and answers like the kit; verify
always succeeds. No database, no Redis, no metrics, no validation: what the
stub costs is Flask, gunicorn and HTTP, so kit / stub is what everything the
kit does on top of that costs.
"""

from __future__ import annotations

import os
import secrets
import time

from flask import Flask, jsonify, request

# The two simulated write round trips of `original` (knob write_latency_ms).
WRITE_S = 0.015
OTP_TTL_S = 300

app = Flask(__name__)


@app.post("/payment/initiate")
def initiate():
    """Two simulated writes, then an OTP, shaped like the kit's answer."""
    request.get_json(silent=True)  # read the body, as the kit does
    started = time.monotonic()
    time.sleep(WRITE_S)
    time.sleep(WRITE_S)
    return jsonify(payment_id="pay_" + secrets.token_hex(12), status="awaiting_otp",
                   otp=f"{secrets.randbelow(10**6):06d}", otp_expires_in=OTP_TTL_S,
                   ready_ms=round((time.monotonic() - started) * 1000, 1))


@app.post("/payment/verify-otp")
def verify_otp():
    """Every OTP is right."""
    body = request.get_json(silent=True) or {}
    return jsonify(payment_id=body.get("payment_id"), status="succeeded")


@app.after_request
def worker_pid(response):
    """Name the worker, as every answer of the kit does (the benchmark counts answers per worker)."""
    response.headers["X-Worker-Pid"] = str(os.getpid())
    return response


@app.get("/health")
@app.get("/ready")
def ready():
    """Up as soon as it answers: there is nothing to wait for."""
    return jsonify(status="ready")
