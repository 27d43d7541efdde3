"""Browser pages: the participants' checkout and the facilitator console."""

from __future__ import annotations

import datetime
from decimal import Decimal

from flask import Blueprint, render_template

from ..cards import TEST_CARD
from ..config import MODES
from ..loadctl import PHASES

bp = Blueprint("pages", __name__)

# The demo's order and card (app/cards.py): what a participant sees prefilled.
MERCHANT = "Northwind Outfitters"
ITEM = "Trail running jacket"
AMOUNT = Decimal("49.99")
CURRENCY = "USD"
TEST_CVV = "123"


def demo_expiry(today: datetime.date | None = None, years: int = 3) -> str:
    """An expiry (MM/YY): December, `years` ahead, so the prefilled card never expires.

    The same card and rule as loadtest/checkout.py, which the tools pay with (the app
    image carries no loadtest/, so the page keeps its own copy; tests/test_pages.py checks they agree).
    """
    today = today or datetime.date.today()
    return f"12/{(today.year + years) % 100:02d}"


@bp.get("/")
def checkout():
    """The checkout page, with the demo's test card prefilled."""
    return render_template("checkout.html", merchant=MERCHANT, item=ITEM, amount=AMOUNT, currency=CURRENCY,
                           card_number=TEST_CARD, expiry=demo_expiry(), cvv=TEST_CVV)


@bp.get("/admin")
def admin():
    """The facilitator console: the token stays in the browser, never in the page or a URL."""
    return render_template("admin.html", modes=MODES, phases=PHASES)
