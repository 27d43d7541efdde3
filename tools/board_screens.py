"""The board at each phase of the workshop, from a real run: docs/board-<phase>.png.

    ADMIN_TOKEN=… .venv/bin/python tools/board_screens.py [--kit URL] [--locust URL]

Needs the kit and its Locust running (`make up`) and Debian's Chromium. It drives
the phases of workshop.md with the load plan's shoppers through Locust's REST API,
each flip with `ttl_seconds` as the abort, and photographs the board once each
phase has filled the board's 10 s window; then it stops Locust and resets.
About four minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtest import plan as plans  # noqa: E402
from rig.client import AdminClient  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def phases(plan: plans.Plan) -> list[tuple[str, str, int, int]]:
    """(name, mode, shoppers, seconds) in the order the workshop runs them."""
    return [("baseline", "original", plan.healthy_users, 30),
            ("subtle", "audit", plan.subtle_users, 60),
            ("collapse", "audit", plan.collapse_users, 45),
            ("fixed", "audit-async", plan.collapse_users, 45)]


def main() -> int:
    """Drive the phases and take the screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kit", default=os.environ.get("KIT_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--locust", default=os.environ.get("LOCUST_URL", "http://127.0.0.1:8089"))
    args = parser.parse_args()
    admin = AdminClient(args.kit, os.environ["ADMIN_TOKEN"])
    plan = plans.load()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(args.kit + "/board")
        try:
            mode_now = None
            for name, mode, users, seconds in phases(plan):
                if mode != mode_now:  # one marker per real change on the board's chart
                    admin.set_mode(mode, ttl_seconds=600)
                    mode_now = mode
                requests.post(args.locust + "/swarm", data={"user_count": users, "spawn_rate": users,
                                                            "think_time": plan.think_seconds}, timeout=10)
                print(f"{name}: {mode}, {users} shoppers, {seconds} s", flush=True)
                time.sleep(seconds)
                page.screenshot(path=str(ROOT / "docs" / f"board-{name}.png"))
        finally:
            requests.get(args.locust + "/stop", timeout=10)
            admin.reset()
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
