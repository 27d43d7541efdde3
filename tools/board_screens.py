"""The board and the checkout from a real run: the pictures in docs/.

    .venv/bin/python tools/board_screens.py                  # its own room on this machine
    ADMIN_TOKEN=… .venv/bin/python tools/board_screens.py --kit http://127.0.0.1:8000

Without --kit it starts a room of its own as `make up` runs it (redis-server, gunicorn with two
workers on a SQLite file, on free loopback ports) and stops it afterwards. Its shoppers are
threads of this process paying with the test card (loadtest/checkout.py), on 127.0.0.1 only,
for a bounded time. It runs the workshop's phases with the load plan's shoppers and photographs
the board at 1280×720 and 1920×1080 once each phase has filled the board's 10 s window:

    idle        original, nobody paying
    baseline    original, the healthy phase's shoppers
    subtle      audit, the subtle phase's shoppers (about 80 % success)
    collapse    audit, the collapse phase's shoppers
    rush        audit at the rush's contention, the rush's shoppers retrying at once: the peak
    after-rush  the same, 90 s after the rush: only the quiet count of them left, still failing, held
                there by their retries; the facilitator reveals the traces (the board links them)
    fixed       audit-async, the collapse phase's shoppers, at the phases' contention again

During `after-rush` a checkout fails in the browser (docs/checkout-failed.png, its details for
support); after the run one succeeds (docs/checkout-success.png). About six minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

import requests
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rig  # noqa: E402
from loadtest import plan as plans  # noqa: E402
from loadtest.checkout import card_payload, verify  # noqa: E402
from rig.client import AdminClient  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
# A shopper's "Try again" names the payment whose OTP step failed (app/views/payments.py).
RETRY_HEADER = "X-Retry-Of"
SIZES = [(1280, 720), (1920, 1080)]
# Where a room's Zipkin shows its traces (the links the board shows once they are revealed).
TRACES_UI = "http://127.0.0.1:9411/zipkin/"
# The workshop guide's pictures (1280×720) keep their names: phase → file.
GUIDE_NAMES = {"baseline": "board-baseline.png", "subtle": "board-subtle.png", "collapse": "board-collapse.png",
               "fixed": "board-fixed.png"}
# How long after the rush the room is photographed: its own writes have drained by then (65 s after a
# 30 s rush on `make up`, bench/RESULTS.md (n)); what still fails is the retries' doing.
AFTER_RUSH_S = 90
# The rush's picture: near its end, when its writes in flight peak.
RUSH_PEAK_S = max(1, plans.RUSH_SECONDS - 5)


class Phase(NamedTuple):
    """One picture's load: its shoppers pay for `seconds`, then the board is photographed."""

    name: str
    mode: str
    shoppers: int
    retrying: bool  # pay again at once after a failure
    seconds: float
    contention_ms: int


def phases(plan: plans.Plan) -> list[Phase]:
    """The pictures' phases in the order the workshop runs them (the rush's at its own contention)."""
    c, storm = plan.contention("collapse"), plan.contention("rush")
    return [Phase("idle", "original", 0, False, 12, c),
            Phase("baseline", "original", plan.healthy_users, False, 30, c),
            Phase("subtle", "audit", plan.subtle_users, False, 60, c),
            Phase("collapse", "audit", plan.collapse_users, False, 40, c),
            Phase("rush", "audit", plan.rush_users, True, RUSH_PEAK_S, storm),
            Phase("after-rush", "audit", plan.quiet_users, True, AFTER_RUSH_S, storm),
            Phase("fixed", "audit-async", plan.collapse_users, False, 40, c)]


class Shoppers:
    """Closed-loop shoppers with think time; `retrying` ones pay again at once after a failure,
    as shoppers who read "Please try again" do."""

    def __init__(self, url: str, think_s: float):
        self.url, self.think_s = url, think_s
        self._threads: list[tuple[threading.Thread, threading.Event]] = []

    def run(self, users: int, retrying: bool) -> None:
        """Replace the shoppers paying now by `users` new ones."""
        self.stop()
        for _ in range(users):
            stop = threading.Event()
            thread = threading.Thread(target=self._shop, args=(stop, retrying), daemon=True)
            thread.start()
            self._threads.append((thread, stop))

    def _shop(self, stop: threading.Event, retrying: bool) -> None:
        stop.wait(random.uniform(0, self.think_s))  # arrive spread out, not all in the same instant
        retry_of = None
        with requests.Session() as session:
            while not stop.is_set():
                retry_of = self._checkout(session, retry_of if retrying else None)
                if retry_of is None or not retrying:
                    stop.wait(random.uniform(0.5, 1.5) * self.think_s)

    def _checkout(self, session: requests.Session, retry_of: str | None) -> str | None:
        """One checkout (a retry names the payment it retries, as the checkout page does); the
        payment id when its OTP step failed, else None."""
        headers = {RETRY_HEADER: retry_of} if retry_of else {}
        try:
            r = session.post(self.url + "/payment/initiate", json=card_payload(), headers=headers, timeout=30)
            body = r.json()
            if body.get("status") == "awaiting_otp":
                verify(self.url, body["payment_id"], body["otp"], session)
            elif body.get("status") == "otp_unavailable" or body.get("error") == "otp_unavailable":
                return body.get("payment_id")
        except (requests.RequestException, ValueError):
            pass  # counted by the board like any other answer; the shopper goes on
        return None

    def stop(self) -> None:
        """Stop every shopper (each finishes the checkout it is in)."""
        for _, stop in self._threads:
            stop.set()
        for thread, _ in self._threads:
            thread.join(15)
        self._threads = []


@contextlib.contextmanager
def own_room():
    """redis-server and gunicorn (two workers, SQLite) on free loopback ports, stopped afterwards."""
    redis = rig.redis_server(rig.temp_dir("screens-redis")).start()
    try:
        app = rig.start_app("screens", None, f"redis://127.0.0.1:{redis.port}/0", workers=2,
                            extra_env={"TRACES_UI_URL": TRACES_UI})
        try:
            yield app.url, rig.TEST_TOKEN
        finally:
            app.service.stop()
    finally:
        redis.stop()


def pay(page, url: str) -> bool:
    """One checkout in the browser, up to its first answer: True for the OTP step, False for the failure."""
    page.goto(url + "/")
    page.click("#pay-button")
    expect(page.locator("#step-otp, #result-otp-unavailable").locator("visible=true")).to_have_count(1, timeout=15_000)
    return page.locator("#step-otp").is_visible()


def main() -> int:
    """Drive the phases and take the pictures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kit", help="a running kit's URL (default: start a room of our own)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    plan = plans.load()
    args.out.mkdir(exist_ok=True)
    room = contextlib.nullcontext((args.kit, os.environ.get("ADMIN_TOKEN", ""))) if args.kit else own_room()
    with room as (url, token), sync_playwright() as pw:
        admin = AdminClient(url, token)
        admin.reset()
        shoppers = Shoppers(url, plan.think_seconds)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        boards = []
        for width, height in SIZES:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url + "/board")
            boards.append((f"{width}x{height}", page))
        shopper_page = browser.new_page(viewport={"width": 1280, "height": 720})
        try:
            mode_now, contention_now = "original", plan.contention("healthy")
            for name, mode, users, retrying, seconds, contention in phases(plan):
                if mode != mode_now:  # one marker per real change on the board's charts
                    admin.set_mode(mode, ttl_seconds=900)
                    mode_now = mode
                if contention != contention_now:
                    admin.patch_knobs(contention_ms_per_write=contention)
                    contention_now = contention
                if name == "after-rush":  # the guide's third hint: the facilitator reveals the traces
                    admin.patch_knobs(reveal_traces=True)
                shoppers.run(users, retrying)
                print(f"{name}: {mode} at {contention} ms per write in flight, {users} shoppers"
                      f"{' retrying' if retrying else ''}, {seconds:g} s", flush=True)
                time.sleep(seconds)
                if name == "after-rush":
                    for _ in range(5):  # nearly every checkout fails now; photograph one that did
                        if not pay(shopper_page, url):
                            break
                    shopper_page.screenshot(path=str(args.out / "checkout-failed.png"))
                for size, page in boards:
                    page.screenshot(path=str(args.out / f"board-{name}-{size}.png"))
                if name in GUIDE_NAMES:
                    shutil.copy(args.out / f"board-{name}-1280x720.png", args.out / GUIDE_NAMES[name])
            shoppers.stop()
            admin.reset()
            pay(shopper_page, url)
            shopper_page.click("#use-demo-otp")
            shopper_page.click("#verify-button")
            expect(shopper_page.locator("#result-success")).to_be_visible()
            shopper_page.screenshot(path=str(args.out / "checkout-success.png"))
        finally:
            shoppers.stop()
            admin.reset()
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
