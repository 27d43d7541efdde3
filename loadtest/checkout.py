"""One shopper's checkout over HTTP (initiate, then verify), shared by the traffic tools."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass

import requests

# The original demo's test card: Luhn-valid, never a real account.
TEST_CARD = "4111111111111111"
TIMEOUT_S = 10


def future_expiry() -> str:
    """An expiry date (MM/YY) three years ahead, so the test card never expires."""
    return f"12/{(datetime.date.today().year + 3) % 100:02d}"


def card_payload(amount: str = "49.99") -> dict:
    """An initiate body with the demo's test card."""
    return {"card_number": TEST_CARD, "expiry": future_expiry(), "cvv": "123", "amount": amount}


@dataclass(frozen=True)
class Outcome:
    """How one checkout ended.

    `result` is "success" (OTP issued and verified), "otp_unavailable" (the
    silent failure) or "error" (HTTP error or no answer, `detail` says which).
    """

    result: str
    started: float
    seconds: float
    ready_ms: float | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result == "success"


def checkout(session: requests.Session, base_url: str) -> Outcome:
    """Initiate a payment with the test card, then verify its OTP."""
    started = time.monotonic()

    def done(result: str, ready_ms=None, detail: str = "") -> Outcome:
        return Outcome(result, started, time.monotonic() - started, ready_ms, detail)

    try:
        r = session.post(base_url + "/payment/initiate", json=card_payload(), timeout=TIMEOUT_S)
        body = _json(r)
        if r.status_code == 200 and body.get("status") == "otp_unavailable":
            return done("otp_unavailable")
        if r.status_code == 503 and body.get("error") == "otp_unavailable":
            return done("otp_unavailable", detail="loud")  # silent_failures=false
        if r.status_code != 200 or "otp" not in body:
            return done("error", detail=f"initiate HTTP {r.status_code} {body.get('error', '')}".strip())
        v = session.post(base_url + "/payment/verify-otp",
                         json={"payment_id": body["payment_id"], "otp": body["otp"]}, timeout=TIMEOUT_S)
        if v.status_code != 200 or _json(v).get("status") != "succeeded":
            return done("error", body.get("ready_ms"), f"verify HTTP {v.status_code} {_json(v).get('error', '')}".strip())
        return done("success", body.get("ready_ms"))
    except requests.RequestException as err:
        return done("error", detail=type(err).__name__)


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
