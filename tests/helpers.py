"""Small helpers shared by the tests."""

from __future__ import annotations

import datetime
import uuid

import requests

TEST_CARD = "4111111111111111"  # the original demo's test card


def future_expiry(years: int = 3) -> str:
    """An expiry date (MM/YY) safely in the future."""
    return f"12/{(datetime.date.today().year + years) % 100:02d}"


def card_payload(**overrides) -> dict:
    """A valid initiate body with the demo's test card."""
    return {"card_number": TEST_CARD, "expiry": future_expiry(), "cvv": "123", **overrides}


def unique(prefix: str) -> str:
    """A short unique name (databases, key prefixes)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def initiate(base_url: str, session: requests.Session | None = None, **overrides) -> requests.Response:
    """POST /payment/initiate with the test card, on a fresh connection unless a session is given."""
    http = session or requests
    return http.post(base_url + "/payment/initiate", json=card_payload(**overrides), timeout=10)


def verify(base_url: str, payment_id: str, otp: str, session: requests.Session | None = None) -> requests.Response:
    """POST /payment/verify-otp."""
    http = session or requests
    return http.post(base_url + "/payment/verify-otp", json={"payment_id": payment_id, "otp": otp}, timeout=10)
