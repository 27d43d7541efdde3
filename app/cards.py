"""Card helpers: Luhn check, brand, and the only card data we keep."""

from __future__ import annotations

import hashlib
import hmac

# The demo's test card (Luhn-valid, never a real account): prefilled on the checkout page, and the
# API docs' example. The load tools keep their own copy (loadtest/checkout.py): Locust's container
# mounts only loadtest/, and a test checks that the two agree.
TEST_CARD = "4111 1111 1111 1111"

_BRANDS = (  # (prefixes, brand): enough for a demo checkout
    (("4",), "visa"),
    (tuple(str(p) for p in range(51, 56)) + tuple(str(p) for p in range(2221, 2721)), "mastercard"),
    (("34", "37"), "amex"),
    (("6011", "65"), "discover"),
)


def luhn_ok(number: str) -> bool:
    """True when the digit string passes the Luhn checksum."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def brand(number: str) -> str:
    """The card brand guessed from the number's prefix."""
    for prefixes, name in _BRANDS:
        if number.startswith(prefixes):
            return name
    return "card"


def fingerprint(number: str, key: str) -> str:
    """A keyed hash that recognises a card again without storing its number."""
    return hmac.new(key.encode(), number.encode(), hashlib.sha256).hexdigest()[:32]


def summary(number: str, key: str) -> dict:
    """Everything we store about a card: brand, last four digits, fingerprint."""
    return {"brand": brand(number), "last4": number[-4:], "fingerprint": fingerprint(number, key)}
