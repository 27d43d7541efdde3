"""One-time passwords: generated with `secrets`, stored only as a keyed hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets

MAX_ATTEMPTS = 3


def new_otp() -> str:
    """A fresh 6-digit OTP."""
    return f"{secrets.randbelow(10**6):06d}"


def otp_hash(payment_id: str, otp: str, key: str) -> str:
    """The keyed hash we store instead of the OTP (bound to its payment)."""
    return hmac.new(key.encode(), f"{payment_id}:{otp}".encode(), hashlib.sha256).hexdigest()


def matches(stored_hash: str | None, payment_id: str, otp: str, key: str) -> bool:
    """Constant-time check of an OTP against the stored hash."""
    return stored_hash is not None and hmac.compare_digest(stored_hash, otp_hash(payment_id, otp, key))
