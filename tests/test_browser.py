"""The pages in a real browser: Debian's Chromium driven by Playwright, against the
app under gunicorn (2 workers) with real Redis and FerretDB.

A participant pays with the keyboard; the facilitator flips to `audit` from the
console and the board follows within 2 s; under a burst the checkout shows the
silent failure while /health stays green; a wrong token is refused on screen;
and the Content-Security-Policy holds on every page.

With PAYGATE_SCREENSHOTS=1 the tests also refresh docs/checkout.png and
docs/admin.png (off by default, so a test run leaves the work tree as it was);
the board's pictures, one per workshop phase at both projector sizes, and the
checkout's failure and success come from tools/board_screens.py. The board's fit
and the checkout's details for support are tested in tests/test_board_screen.py.
"""

from __future__ import annotations

import os
import re
import threading
import time

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

import rig
from app.config import KNOBS
from app.errors import OtpUnavailable
from loadtest import traffic
from loadtest.checkout import future_expiry
from rig.probe import poll_until

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DOCS = rig.ROOT / "docs"
SCREENSHOTS = os.environ.get("PAYGATE_SCREENSHOTS") == "1"
SILENT_FAILURE = OtpUnavailable.message
BURST_USERS = 12
BURST_MAX_SECONDS = 20


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module (Debian's build, never a download)."""
    rig.require(CHROMIUM)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Tab:
    """A page that records Content-Security-Policy violations and script errors."""

    def __init__(self, context, base_url: str, width: int = 1100, height: int = 800):
        self.page = context.new_page()
        self.page.set_viewport_size({"width": width, "height": height})
        self.base_url = base_url
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda err: self.problems.append(f"script error: {err}"))

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text:
            self.problems.append(message.text)

    def open(self, path: str):
        self.page.goto(self.base_url + path)
        return self.page


@pytest.fixture
def tabs(browser, live):
    """Open tabs in a fresh browser context (its own sessionStorage); checks them afterwards."""
    context = browser.new_context()
    opened: list[Tab] = []

    def new_tab(**size) -> Tab:
        tab = Tab(context, live.url, **size)
        opened.append(tab)
        return tab

    yield new_tab
    context.close()
    problems = [p for tab in opened for p in tab.problems]
    assert problems == [], "the pages broke their Content-Security-Policy or threw"


def screenshot(page, name: str, **options) -> None:
    """Save a screenshot to docs/ when PAYGATE_SCREENSHOTS=1."""
    if not SCREENSHOTS:
        return
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / name), **options)


def console(tabs, token: str):
    """The facilitator console with `token` entered."""
    page = tabs().open("/admin")
    expect(page.locator("#knobs-fields input")).to_have_count(len(KNOBS))
    page.fill("#token", token)
    page.press("#token", "Enter")
    # The console asks the server about the token as it is entered, and says what it answered.
    expect(page.locator("#token-state")).to_contain_text(
        "Token accepted by the server" if token == rig.TEST_TOKEN else "Wrong token: the server refused it (HTTP 401)")
    return page


def test_a_participant_pays_with_the_keyboard(tabs, live):
    page = tabs(height=560).open("/")
    expect(page.locator("#card_number")).to_have_value("4111 1111 1111 1111")
    expect(page.locator("#cvv")).to_have_value("123")
    expect(page.locator("#expiry")).to_have_value(re.compile(r"^(0[1-9]|1[0-2])/\d\d$"))
    screenshot(page, "checkout.png", full_page=True)

    # Focus order follows the form: card number, expiry, CVV, Pay.
    page.focus("#card_number")
    order = []
    for _ in range(3):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id"))
    assert order == ["expiry", "cvv", "pay-button"]
    page.keyboard.press("Enter")

    otp_input = page.locator("#otp")
    expect(otp_input).to_be_focused()
    expect(page.locator("#demo-otp-box")).to_contain_text("Demo only")
    code = page.locator("#demo-otp").inner_text()
    assert re.fullmatch(r"\d{6}", code)
    page.keyboard.type(code)
    page.keyboard.press("Enter")

    expect(page.locator("#result-success h2")).to_be_focused()
    expect(page.locator("#result-success")).to_contain_text("$49.99")
    payment_id = page.locator("#success-id").inner_text()
    stored = requests.get(f"{live.url}/payment/{payment_id}", timeout=5).json()
    assert stored["status"] == "succeeded" and stored["card"]["last4"] == "1111"


def test_on_a_phone_server_errors_show_inline_and_wrong_codes_lock(tabs):
    page = tabs(width=375, height=740).open("/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling
    page.fill("#card_number", "4111 1111 1111 1112")
    page.fill("#expiry", "01/20")
    page.fill("#cvv", "12")
    page.click("#pay-button")

    # The server's field errors, each next to its field.
    for field, words in {"card_number": "Luhn", "expiry": "past", "cvv": "3 or 4 digits"}.items():
        expect(page.locator(f"#{field}-error")).to_contain_text(words)
    for field in ("card_number", "expiry", "cvv"):
        expect(page.locator(f"#{field}")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#card_number")).to_be_focused()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375

    page.fill("#card_number", "4111 1111 1111 1111")
    page.fill("#expiry", future_expiry())
    page.fill("#cvv", "123")
    page.click("#pay-button")
    expect(page.locator("#otp")).to_be_focused()
    expect(page.locator("#card_number-error")).to_be_hidden()
    real = page.locator("#demo-otp").inner_text()
    wrong = f"{(int(real) + 1) % 1_000_000:06d}"
    page.fill("#otp", wrong)
    page.click("#verify-button")
    expect(page.locator("#otp-error")).to_contain_text("2 attempts left")
    expect(page.locator("#otp")).to_have_attribute("aria-invalid", "true")
    for _ in range(2):
        page.fill("#otp", wrong)
        page.click("#verify-button")
    expect(page.locator("#result-locked")).to_be_visible()
    expect(page.locator("#result-locked h2")).to_be_focused()


def test_a_wrong_token_is_refused_on_screen(tabs, live):
    page = console(tabs, "not-the-token")
    page.click("[data-mode=audit]")
    answer = page.locator("#answer-title")
    expect(answer).to_contain_text("401")
    expect(answer).to_contain_text("token is wrong or missing")
    expect(page.locator("#answer")).to_contain_text("unauthorized")
    assert "not-the-token" not in page.url
    assert page.evaluate("sessionStorage.getItem('paygate.adminToken')") is None, "a refused token is not kept"
    assert requests.get(live.url + "/admin/db-mode", timeout=5).json()["mode"] == "original"
    expect(page.locator("#mode-now")).to_have_text("original")


def test_knobs_from_the_console_show_the_servers_limits_and_answers(tabs, live):
    admin = console(tabs, rig.TEST_TOKEN)
    timeout = admin.locator("#knob-otp_timeout_ms")
    limits = requests.get(live.url + "/admin/knobs", timeout=5).json()["limits"]["otp_timeout_ms"]
    expect(timeout).to_have_attribute("min", str(limits["min"]))
    expect(timeout).to_have_attribute("max", str(limits["max"]))

    timeout.fill(str(limits["min"] - 1))  # below the limit: the server says no
    admin.click("#knobs-form button[type=submit]")
    expect(admin.locator("#answer-title")).to_contain_text("refused (HTTP 400)")
    expect(admin.locator("#answer")).to_contain_text("otp_timeout_ms")

    timeout.fill("600")
    admin.click("#knobs-form button[type=submit]")
    expect(admin.locator("#answer-title")).to_contain_text("Apply knobs: done (HTTP 200)")
    expect(admin.locator("#history-body tr").first).to_contain_text("otp_timeout_ms=400 → otp_timeout_ms=600")
    assert requests.get(live.url + "/admin/knobs", timeout=5).json()["knobs"]["otp_timeout_ms"] == 600


def test_audit_from_the_console_fails_the_checkout_silently_under_a_burst(tabs, live):
    board = tabs(width=1280, height=800).open("/board")
    expect(board.locator("#board-mode")).to_have_text(re.compile(r"^\s*original\s*$"))
    # The room pays along: the board shows the checkout's address as a QR code, and a
    # participant's phone (375 px wide) meets the same silent failure as everyone else.
    qr = board.locator(".pay-along img")
    expect(qr).to_be_visible()
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0"), "the QR code did not load"
    admin = console(tabs, rig.TEST_TOKEN)
    checkout = tabs(width=375, height=740).open("/")

    admin.fill("#ttl", "600")
    admin.click("[data-mode=audit]")
    expect(admin.locator("#answer-title")).to_contain_text("done (HTTP 200)")
    flipped = time.monotonic()
    # Everyone watching sees the flip: the board follows within 2 s.
    expect(board.locator("#board-mode")).to_have_text(re.compile(r"^\s*audit\s*$"), timeout=2_000)
    assert time.monotonic() - flipped <= 2.0
    expect(admin.locator("#mode-now")).to_have_text("audit")
    expect(admin.locator("#mode-revert")).to_contain_text("Reverts to original in")
    expect(admin.locator("#history-body tr").first).to_contain_text("original → audit")
    assert requests.get(live.url + "/admin/db-mode", timeout=5).json()["mode"] == "audit"

    stop, tally = threading.Event(), traffic.Tally()
    shoppers = threading.Thread(target=traffic.run, args=(live.url, BURST_USERS, BURST_MAX_SECONDS),
                                kwargs={"tally": tally, "stop": stop})
    shoppers.start()
    try:
        # The writes have piled up: the burst's own shoppers meet the silent failure.
        assert poll_until(lambda: tally.by_result()["otp_unavailable"], timeout=BURST_MAX_SECONDS / 2)
        checkout.click("#pay-button")
        expect(checkout.locator("#result-otp-unavailable")).to_be_visible(timeout=10_000)
        expect(checkout.locator("#otp-unavailable-message")).to_have_text(SILENT_FAILURE)
        expect(checkout.locator("#retry-button")).to_be_visible()
        # The lesson: the user is turned away, yet liveness stays green.
        health = requests.get(live.url + "/health", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "healthy"
    finally:
        stop.set()
        shoppers.join(BURST_MAX_SECONDS + 15)
    screenshot(admin, "admin.png", full_page=True)

    # One click puts the room back to the start.
    admin.once("dialog", lambda dialog: dialog.accept())
    admin.click("#reset-button")
    expect(admin.locator("#answer-title")).to_contain_text("Reset everything: done")
    expect(admin.locator("#mode-now")).to_have_text("original")
    expect(admin.locator("#mode-revert")).to_have_text("No auto-revert.")
    expect(board.locator("#board-mode")).to_have_text(re.compile(r"^\s*original\s*$"), timeout=2_000)
    assert requests.get(live.url + "/admin/db-mode", timeout=5).json()["mode"] == "original"


def test_api_docs_render_under_the_content_security_policy(tabs):
    """Swagger UI renders our OpenAPI 3.1 document from its own files (the tabs fixture
    fails on any CSP violation or script error; every other page is checked the same way)."""
    page = tabs().open("/docs")
    expect(page.locator(".opblock-summary-path", has_text="/payment/initiate")).to_be_visible(timeout=15_000)
    expect(page.locator(".opblock-summary-path", has_text="/admin/db-mode").first).to_be_visible()


def test_the_policy_blocks_injected_inline_script(browser, live):
    page = browser.new_page()
    violations = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(live.url + "/")
    page.evaluate("""() => {
        const box = document.createElement('div');
        box.innerHTML = '<img src="/favicon-missing" onerror="window.injected = 1">';
        document.body.appendChild(box);
        const script = document.createElement('script');
        script.textContent = 'window.injected = 2';
        document.body.appendChild(script);
    }""")
    page.wait_for_timeout(300)
    assert page.evaluate("window.injected") is None
    assert len(violations) >= 2
    page.close()
