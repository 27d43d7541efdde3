"""Browser pages: checkout, facilitator console, live board."""

from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("pages", __name__)


@bp.get("/")
def checkout():
    """The checkout page."""
    return render_template("checkout.html")
