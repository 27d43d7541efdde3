"""The checkout and console pages as HTML: rendered, prefilled, self-contained, CSP-clean.

Flask's test client on an app wired to the real Redis and FerretDB.
"""

from __future__ import annotations

import datetime
import re
from html.parser import HTMLParser

import pytest

import rig
from app.errors import OtpUnavailable
from app.validation import is_payment_id
from app.views.pages import demo_expiry
from loadtest.checkout import card_payload

PAGES = ["/", "/admin"]
# A URL that leaves the app: http(s)://host or protocol-relative //host.
EXTERNAL_URL = re.compile(r"(?:https?:)?//[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text inside <script> and <style>."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.inline_code: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._open = tag if tag in ("script", "style") else None

    def handle_data(self, data):
        if self._open and data.strip():
            self.inline_code.append(f"<{self._open}>{data.strip()[:60]}")

    def handle_endtag(self, tag):
        self._open = None

    def by_id(self, element_id: str) -> dict:
        return next(attrs for _, attrs in self.tags if attrs.get("id") == element_id)


def parse(html: str) -> _Tags:
    tags = _Tags()
    tags.feed(html)
    return tags


def assets(tags: _Tags) -> list[str]:
    """The scripts and stylesheets a page loads."""
    return [attrs["src"] for tag, attrs in tags.tags if tag == "script" and attrs.get("src")] + \
           [attrs["href"] for tag, attrs in tags.tags if tag == "link" and attrs.get("rel") == "stylesheet"]


def test_checkout_shows_the_order_and_the_prefilled_test_card(html_of):
    html = html_of("/")
    tags = parse(html)
    amount = tags.by_id("order-amount")
    assert amount["data-amount"] == "49.99" and amount["data-currency"] == "USD"
    assert "Northwind Outfitters" in html and "Trail running jacket" in html
    assert tags.by_id("card_number")["value"] == "4111 1111 1111 1111"
    assert tags.by_id("cvv")["value"] == "123"
    month, year = map(int, tags.by_id("expiry")["value"].split("/"))
    today = datetime.date.today()
    assert (2000 + year, month) > (today.year, today.month)
    # Labels tie to the fields, and each field names the place its server error appears.
    labels = {attrs["for"] for tag, attrs in tags.tags if tag == "label"}
    for field in ("card_number", "expiry", "cvv", "otp"):
        assert field in labels
        assert f"{field}-error" in tags.by_id(field)["aria-describedby"]
    assert tags.by_id("status")["aria-live"] == "polite"
    assert "novalidate" in tags.by_id("card-form")  # the server's validation decides


def test_the_prefilled_card_passes_the_servers_validation(client):
    tags = parse(client.get("/").get_data(as_text=True))
    amount = tags.by_id("order-amount")
    body = {name: tags.by_id(name)["value"] for name in ("card_number", "expiry", "cvv")}
    tools_card = {name: card_payload()[name] for name in body}
    assert {**body, "card_number": body["card_number"].replace(" ", "")} == tools_card, "the tools pay with another card"
    r = client.post("/payment/initiate", json={**body, "amount": amount["data-amount"],
                                               "currency": amount["data-currency"]})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["status"] == "awaiting_otp"


@pytest.mark.parametrize("today, expected", [
    (datetime.date(2026, 1, 1), "12/29"),
    (datetime.date(2031, 12, 31), "12/34"),
    (datetime.date(2099, 6, 15), "12/02"),
])
@pytest.mark.unit
def test_demo_expiry_is_computed_ahead_of_today(today, expected):
    assert demo_expiry(today) == expected


def test_console_page_renders_without_the_token(html_of):
    html = html_of("/admin")
    assert rig.TEST_TOKEN not in html
    tags = parse(html)
    assert [a["data-mode"] for _, a in tags.tags if "data-mode" in a] == ["original", "audit", "audit-async"]
    token = tags.by_id("token")
    assert token["type"] == "password" and "name" not in token  # never sent as a form field, so never in a URL
    for element_id in ("mode-now", "mode-revert", "ttl", "knobs-form", "reset-button", "history-body", "answer"):
        tags.by_id(element_id)


@pytest.mark.parametrize("path", PAGES)
def test_pages_have_no_inline_code(client, path):
    """What the Content-Security-Policy would block: inline scripts, handlers, styles, javascript: URLs."""
    tags = parse(client.get(path).get_data(as_text=True))
    assert tags.inline_code == []
    for tag, attrs in tags.tags:
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        assert "style" not in attrs, (tag, attrs)
        for name in ("href", "src", "action"):
            assert not (attrs.get(name) or "").strip().lower().startswith("javascript:"), (tag, attrs)
    assert any(tag == "script" for tag, _ in tags.tags)


@pytest.mark.parametrize("path", PAGES)
def test_pages_and_their_assets_load_nothing_from_outside(client, path):
    tags = parse(client.get(path).get_data(as_text=True))
    for tag, attrs in tags.tags:
        for name in ("href", "src", "action"):
            assert not EXTERNAL_URL.match(attrs.get(name) or ""), (tag, attrs)
    files = assets(tags)
    assert any(f.endswith(".js") for f in files) and any(f.endswith(".css") for f in files)
    for url in files:
        r = client.get(url)
        assert r.status_code == 200, url
        text = r.get_data(as_text=True)
        # Modules import modules of this origin only, by relative path; those are checked the same way.
        imported = re.findall(r"""^import .* from ['"]([^'"]+)['"];$""", text, re.M)
        assert all(name.startswith("./") for name in imported), (url, imported)
        files += [url.rsplit("/", 1)[0] + name[1:] for name in imported if url.rsplit("/", 1)[0] + name[1:] not in files]
        assert not re.search(r"https?://", text), url
        assert not re.search(r"""url\(\s*['"]?(?!data:|/)[a-z]+:""", text), url
        assert not re.search(r"""(fetch|import)\(\s*['"](?:https?:)?//""", text), url


@pytest.mark.parametrize("path, mimetype", [("/static/checkout.js", "text/javascript"),
                                            ("/static/admin.js", "text/javascript"),
                                            ("/static/common.js", "text/javascript"),
                                            ("/static/style.css", "text/css"),
                                            ("/static/favicon.svg", "image/svg+xml")])
def test_static_files_have_their_real_types(client, path, mimetype):
    """With X-Content-Type-Options: nosniff the browser trusts these types only."""
    r = client.get(path)
    assert r.status_code == 200 and r.mimetype == mimetype


def test_the_silent_failure_keeps_the_seeds_shape_with_its_payment_id(client, auth):
    """What the checkout page reads: the seed's body, a 200 with the message, and the reference to quote."""
    assert client.patch("/admin/knobs", json={"otp_timeout_ms": 50}, headers=auth).status_code == 200
    assert client.put("/admin/db-mode", json={"mode": "audit"}, headers=auth).status_code == 200
    r = client.post("/payment/initiate", json=card_payload())
    body = r.get_json()
    assert r.status_code == 200 and set(body) == {"payment_id", "status", "message"}, body
    assert body["status"] == "otp_unavailable" and body["message"] == OtpUnavailable.message
    assert is_payment_id(body["payment_id"])
    assert client.get(f"/payment/{body['payment_id']}").get_json()["status"] in ("created", "awaiting_otp")
