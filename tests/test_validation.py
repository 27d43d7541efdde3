"""Unit tests: card helpers, OTP hashing and request models (no services)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app import cards, otp
from app.validation import InitiateRequest, KnobsPatch, ModeChange
from loadtest.checkout import card_payload

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("number, ok", [("4111111111111111", True), ("5555555555554444", True),
                                        ("378282246310005", True), ("4111111111111112", False)])
def test_luhn(number, ok):
    assert cards.luhn_ok(number) is ok


@pytest.mark.parametrize("number, brand", [("4111111111111111", "visa"), ("5555555555554444", "mastercard"),
                                           ("2221000000000009", "mastercard"), ("378282246310005", "amex"),
                                           ("6011111111111117", "discover"), ("9999999999999995", "card")])
def test_brand(number, brand):
    assert cards.brand(number) == brand


def test_card_summary_keeps_no_number():
    summary = cards.summary("4111111111111111", "k")
    assert summary["last4"] == "1111" and "4111111111111111" not in repr(summary)
    assert summary["fingerprint"] == cards.fingerprint("4111111111111111", "k") != cards.fingerprint(
        "4111111111111111", "other-key")


def test_otp_hash_is_bound_to_payment_and_key():
    code = otp.new_otp()
    assert len(code) == 6 and code.isdigit()
    stored = otp.otp_hash("pay_1", code, "k")
    assert otp.matches(stored, "pay_1", code, "k")
    assert not otp.matches(stored, "pay_2", code, "k")
    assert not otp.matches(stored, "pay_1", code, "k2")
    assert not otp.matches(None, "pay_1", code, "k")


def test_spaces_in_the_card_number_are_accepted():
    req = InitiateRequest.model_validate(card_payload(card_number="4111 1111 1111 1111", amount=12))
    assert req.card_number == "4111111111111111" and str(req.amount) == "12.00"


@pytest.mark.parametrize("bad", [{"$ne": ""}, ["4111111111111111"], 4111111111111111, None, True])
def test_a_non_string_card_number_is_rejected(bad):
    with pytest.raises(ValidationError):
        InitiateRequest.model_validate(card_payload(card_number=bad))


@pytest.mark.parametrize("amount", [True, "NaN", "Infinity", "1e400", -5, "0.001", {"$gt": 0}])
def test_bad_amounts(amount):
    with pytest.raises(ValidationError):
        InitiateRequest.model_validate(card_payload(amount=amount))


def test_unknown_fields_are_rejected():
    with pytest.raises(ValidationError):
        InitiateRequest.model_validate(card_payload(pan="4111111111111111"))


def test_mode_change_and_knobs_limits():
    assert ModeChange.model_validate({"mode": "audit", "ttl_seconds": 60}).ttl_seconds == 60
    for bad in ({"mode": "nope"}, {"mode": "audit", "ttl_seconds": 0}, {"mode": "audit", "ttl_seconds": "5"}):
        with pytest.raises(ValidationError):
            ModeChange.model_validate(bad)
    assert KnobsPatch.model_validate({"otp_timeout_ms": 800}).changes() == {"otp_timeout_ms": 800}
    for bad in ({"otp_timeout_ms": 10}, {"audit_delay_ms": 1.5}, {"silent_failures": "no"}, {"x": 1}):
        with pytest.raises(ValidationError):
            KnobsPatch.model_validate(bad)
