"""One shopper's checkout over HTTP (initiate, then verify), the test card and the timing model:
shared by the traffic tools, the benchmark and the tests (no import outside loadtest/: Locust's
container mounts this directory alone)."""

from __future__ import annotations

import datetime
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

# The original demo's test card: Luhn-valid, never a real account. The tests, the
# benchmark and the traffic tools all pay with it (the checkout page prefills the same).
TEST_CARD = "4111111111111111"
TIMEOUT_S = 10
# A shopper who backs off waits a random time in [0, min(cap, base · 2^k)] before its k-th retry
# (k = 0 for the first): exponential backoff with "full jitter", which spreads the retries of many
# shoppers failed at once instead of bunching them (AWS Architecture Blog, "Exponential Backoff
# And Jitter", 2015). With the defaults the mean waits are 0.5, 1, 2, 4 s.
BACKOFF_BASE_S, BACKOFF_CAP_S = 1.0, 8.0
# A Retry-After longer than this is not waited for: the shopper has left (and a run stays bounded).
MAX_RETRY_AFTER_S = 10.0


def future_expiry(years: int = 3) -> str:
    """An expiry date (MM/YY): December, `years` ahead, so the test card never expires."""
    return f"12/{(datetime.date.today().year + years) % 100:02d}"


def card_payload(**overrides) -> dict:
    """An initiate body with the demo's test card; `overrides` replace or add fields."""
    return {"card_number": TEST_CARD, "expiry": future_expiry(), "cvv": "123", "amount": "49.99", **overrides}


def initiate(base_url: str, session: requests.Session | None = None, *, retry_of: str | None = None,
             **overrides) -> requests.Response:
    """POST /payment/initiate with the test card, on a fresh connection unless a session is given;
    `retry_of`: the payment id of the failed try this one repeats (sent as X-Retry-Of)."""
    headers = {"X-Retry-Of": retry_of} if retry_of else None
    return (session or requests).post(base_url + "/payment/initiate", json=card_payload(**overrides),
                                      headers=headers, timeout=TIMEOUT_S)


def verify(base_url: str, payment_id: str, otp: str, session: requests.Session | None = None) -> requests.Response:
    """POST /payment/verify-otp."""
    return (session or requests).post(base_url + "/payment/verify-otp", json={"payment_id": payment_id, "otp": otp},
                                      timeout=TIMEOUT_S)


def ready_model_ms(knobs: dict, mode: str = "audit", n: int = 1) -> float:
    """The timing model of a write's ready time (docs/contract.md, The timing model): 2w in `original` and `audit-async`,
    4w + 2a + n·c in `audit` with n writes in flight (w, a, c: the knobs)."""
    w = knobs["write_latency_ms"]
    if mode != "audit":
        return 2 * w
    return 4 * w + 2 * knobs["audit_delay_ms"] + n * knobs["contention_ms_per_write"]


def retry_pause(retry: int, *, backoff: bool, retry_after: float | None = None) -> float:
    """Seconds a retrying shopper waits before its retry number `retry` (0 for the first): nothing,
    or exponential backoff with full jitter; never less than the answer's Retry-After (up to
    MAX_RETRY_AFTER_S)."""
    pause = random.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** retry)) if backoff else 0.0
    return max(pause, min(retry_after or 0.0, MAX_RETRY_AFTER_S))


def retry_after_seconds(value: str | None) -> float | None:
    """An answer's Retry-After in seconds (the app never sends its date form)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


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
    retries: int = 0

    @property
    def ok(self) -> bool:
        return self.result == "success"


def checkout(session: requests.Session, base_url: str, tries: int = 1, backoff: bool | Callable[[], bool] = False,
             keep_on: Callable[[], bool] = lambda: True) -> Outcome:
    """Initiate a payment with the test card, then verify its OTP. With `tries` > 1, an unavailable OTP is
    tried again, up to `tries` tries in all (0: until it works, while `keep_on()` says the shopper is still
    there): at once, as a shopper who reads "Please try again" does, or after `retry_pause` with `backoff`
    (a callable is asked before each retry: a shopper switched to backoff mid-checkout); never before a loud
    answer's Retry-After."""
    backs_off = backoff if callable(backoff) else lambda: backoff
    limit = tries if tries > 0 else math.inf
    started = time.monotonic()
    retries = 0

    def done(result: str, ready_ms=None, detail: str = "") -> Outcome:
        return Outcome(result, started, time.monotonic() - started, ready_ms, detail, retries)

    try:
        retry_of = None
        while True:
            r = initiate(base_url, session, retry_of=retry_of)
            body = _json(r)
            unavailable = body.get("status") == "otp_unavailable" if r.status_code == 200 else \
                r.status_code == 503 and body.get("error") == "otp_unavailable"  # silent_failures=false
            if not unavailable or retries + 1 >= limit or not body.get("payment_id") or not keep_on():
                break
            time.sleep(retry_pause(retries, backoff=backs_off(),
                                   retry_after=retry_after_seconds(r.headers.get("Retry-After"))))
            retry_of, retries = body["payment_id"], retries + 1
        if r.status_code == 200 and body.get("status") == "otp_unavailable":
            return done("otp_unavailable")
        if r.status_code == 503 and body.get("error") == "otp_unavailable":
            return done("otp_unavailable", detail="loud")
        if r.status_code != 200 or "otp" not in body:
            return done("error", detail=f"initiate HTTP {r.status_code} {body.get('error', '')}".strip())
        v = verify(base_url, body["payment_id"], body["otp"], session)
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
