"""The console's load phases against a real Locust (its web UI, as `make up` starts it) and a real app.

GET/PUT /admin/load drive Locust through its REST API: each phase runs the load plan's shoppers
with fresh statistics, the rush is Locust's RushThenQuiet shape, stop stops. Locust runs as a
subprocess: importing it here would let gevent monkey-patch this process.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

import rig
from loadtest import plan as plans
from rig import probe
from rig.probe import poll_until

pytestmark = pytest.mark.services

ROOT = rig.ROOT
PLAN = plans.load()
RUSH_SECONDS = 4  # the rush shortened for the test (LOCUST_RUSH_SECONDS); the session's is 30
LOCUST_STATS_CACHE_S = 2.0  # locust.web.DEFAULT_CACHE_TIME: how long /stats/requests may show an old state


def start_locust(host: str, port: int, **env) -> subprocess.Popen:
    """Locust's web UI as `make up` starts it: the workshop's locustfile and shape, locust.conf."""
    proc = subprocess.Popen([sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py,loadtest/shapes.py",
                             "--config", "loadtest/locust.conf", "--host", host, "--web-host", "127.0.0.1",
                             "--web-port", str(port)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "LOCUST_RUSH_SECONDS": str(RUSH_SECONDS), **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    rig.probe.wait_answering("Locust's web UI", lambda: rig.probe.http_ok(f"http://127.0.0.1:{port}/"), 30, proc)
    return proc


def stop_locust(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(20)


@pytest.fixture(scope="module")
def kit(own_app):
    """An app (gunicorn, 2 workers, SQLite) whose LOCUST_URL is a Locust web UI pointed at it."""
    locust_port = rig.free_port()
    application = own_app("load", sqlite=True, LOCUST_URL=f"http://127.0.0.1:{locust_port}")
    proc = start_locust(application.url, locust_port)
    yield application, f"http://127.0.0.1:{locust_port}"
    stop_locust(proc)


def locust_stats(ui: str) -> dict:
    return requests.get(ui + "/stats/requests", timeout=5).json()


def requests_seen(stats: dict) -> int:
    return next(s["num_requests"] for s in stats["stats"] if s["name"] == "Aggregated")


def put_load(application: rig.App, **body) -> requests.Response:
    return application.admin("PUT", "/admin/load", json=body)


def test_each_phase_runs_the_plans_shoppers_with_fresh_statistics(kit):
    application, ui = kit
    for phase in ("healthy", "subtle", "collapse"):
        r = put_load(application, phase=phase)
        assert r.status_code == 200, r.text
        assert r.headers["Cache-Control"] == "no-store"
        body = r.json()
        assert (body["phase"], body["persona"], body["users"]) == (phase, "shopper", PLAN.users(phase))
        users, stats = PLAN.users(phase), {}

        def settled() -> bool:
            # Locust caches /stats/requests for a moment: read until it shows the new phase at work.
            stats.update(locust_stats(ui))
            return stats["state"] == "running" and stats["user_count"] == users and requests_seen(stats) >= 30
        assert poll_until(settled, timeout=30), f"{phase}: Locust did not run the plan's {users} shoppers: {stats}"
        # Each shopper loads the checkout page once, at its start: exactly this phase's shoppers' loads are
        # counted, none of the previous phase's (its statistics were reset).
        pages = next(s["num_requests"] for s in stats["stats"] if s["name"] == "checkout page")
        assert pages == users, f"{phase}: {pages} page loads counted for {users} shoppers"

        state = requests.get(application.url + "/admin/load", timeout=5).json()
        assert state["phase"] == phase and state["users"] == PLAN.users(phase)
        assert state["matches_locust"] is (None if state["elapsed_seconds"] < 3 else True)
        assert 0 <= state["elapsed_seconds"] < 60
        assert state["locust"]["state"] == "running" and state["locust"]["user_count"] == PLAN.users(phase)
        assert state["plan"]["phases"] == {p: PLAN.users(p) for p in (*plans.PHASES, "rush")}
        assert knob(application) == PLAN.contention(phase) == PLAN.contention_ms

    r = put_load(application, phase="stop")
    assert r.status_code == 200 and r.json()["phase"] == "stop"
    assert poll_until(lambda: locust_stats(ui)["state"] == "stopped", timeout=10)
    state = requests.get(application.url + "/admin/load", timeout=5).json()
    assert state["locust"]["state"] == "stopped" and state["elapsed_seconds"] is None


def knob(application: rig.App) -> int:
    return requests.get(application.url + "/admin/knobs", timeout=5).json()["knobs"]["contention_ms_per_write"]


def test_the_rush_runs_at_its_contention_and_drops_to_the_quiet_count_by_itself(kit):
    application, ui = kit
    r = put_load(application, phase="rush")
    assert r.status_code == 200, r.text
    try:
        assert knob(application) == PLAN.rush_contention_ms != PLAN.contention_ms
        assert r.json()["plan"]["contention_ms"]["rush"] == PLAN.rush_contention_ms
        seen = []
        def quiet() -> bool:
            seen.append(locust_stats(ui)["user_count"])
            return seen[-1] == PLAN.quiet_users and PLAN.rush_users in seen
        assert poll_until(quiet, timeout=RUSH_SECONDS + 30, every=0.5), \
            f"the rush of {PLAN.rush_users} never dropped to {PLAN.quiet_users}: {seen}"
        # Stopping the rush's extra shoppers is Locust's "spawning" state for a moment, then "running".
        state = poll_until(lambda: (st := requests.get(application.url + "/admin/load", timeout=5).json())
                           ["locust"]["state"] == "running" and st, timeout=15, every=0.5)
        assert state, "Locust never settled to running at the quiet count"
        assert (state["phase"], state["stage"], state["users"]) == ("rush", "quiet", PLAN.quiet_users)
    finally:
        put_load(application, phase="stop")
        probe.no_writes_in_flight(application.url, every=0.2)
    assert knob(application) == PLAN.contention_ms, "a stop puts the contention back where the hints describe it"
    assert any(e["kind"] == "knobs" and e["to"] == {"contention_ms_per_write": PLAN.rush_contention_ms}
               for e in application.admin("GET", "/admin/history").json()["events"]), "the change is in the history"


def test_the_persona_switches_while_the_phase_runs_without_a_restart(kit):
    """PATCH /admin/load: the running shoppers take up the retrying persona at their next try. Every try fails
    (audit, a 50 ms deadline): plain shoppers never retry; once switched, retries come, with no restart."""
    application, ui = kit
    assert put_load(application, phase="stop").status_code == 200
    nothing = application.admin("PATCH", "/admin/load", json={"persona": "retrying"})
    assert nothing.status_code == 409 and nothing.json()["error"] == "no_phase_running"
    for body in ({}, {"persona": "robot"}, {"persona": "retrying", "phase": "rush"}):
        bad = application.admin("PATCH", "/admin/load", json=body)
        assert bad.status_code == 400 and bad.json()["error"] == "validation_error", (body, bad.text)
    application.set_mode("audit")
    application.admin("PATCH", "/admin/knobs", json={"otp_timeout_ms": 50}).raise_for_status()
    try:
        assert put_load(application, phase="healthy").status_code == 200
        rows = {}

        def failing() -> bool:
            stats = locust_stats(ui)
            rows.update({row["name"]: row for row in stats["stats"]})
            return stats["state"] == "running" and rows.get("/payment/initiate", {}).get("num_failures", 0) >= 4
        assert poll_until(failing, timeout=30), rows
        assert "/payment/initiate [retry]" not in rows, "plain shoppers do not retry"
        r = application.admin("PATCH", "/admin/load", json={"persona": "retrying"})
        assert r.status_code == 200, r.text
        assert (r.json()["phase"], r.json()["persona"]) == ("healthy", "retrying")

        def retried() -> bool:
            rows.update({row["name"]: row for row in locust_stats(ui)["stats"]})
            return rows.get("/payment/initiate [retry]", {}).get("num_requests", 0) >= 4
        assert poll_until(retried, timeout=30), rows
        # No restart: the same shoppers, each of whom loaded the checkout page once.
        assert rows["checkout page"]["num_requests"] == PLAN.healthy_users
        assert requests.get(application.url + "/admin/load", timeout=5).json()["persona"] == "retrying"
    finally:
        put_load(application, phase="stop")
        application.reset()
        probe.no_writes_in_flight(application.url, every=0.2)


def test_a_change_needs_the_token_and_a_known_phase_and_changes_nothing_otherwise(kit):
    application, ui = kit
    put_load(application, phase="stop").raise_for_status()
    assert poll_until(lambda: locust_stats(ui)["state"] == "stopped", timeout=10)
    anonymous = requests.put(application.url + "/admin/load", json={"phase": "collapse"}, timeout=5)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    for body in ({"phase": "panic"}, {"phase": "healthy", "persona": "robot"}, {"phase": "healthy", "users": 99}, {}):
        bad = put_load(application, **body)
        assert bad.status_code == 400 and bad.json()["error"] == "validation_error", (body, bad.text)
    assert set(put_load(application, phase="healthy", persona=7).json()["fields"]) == {"persona"}
    # Locust caches /stats/requests for LOCUST_STATS_CACHE_S: a run a refused change had started would show after it.
    time.sleep(LOCUST_STATS_CACHE_S + 0.5)
    assert locust_stats(ui)["state"] == "stopped", "a refused change never reaches Locust"
    assert requests.get(application.url + "/admin/load", timeout=5).json()["phase"] == "stop"
    assert requests.get(application.url + "/admin/token", timeout=5).status_code == 401
    assert application.admin("GET", "/admin/token").json() == {"token": "valid"}


def test_the_retrying_persona_runs_from_the_console(kit):
    application, ui = kit
    r = put_load(application, phase="healthy", persona="retrying")
    assert r.status_code == 200 and r.json()["persona"] == "retrying"
    try:
        # Locust's /stats/requests may show the figures of before the change for a moment (the console says
        # matches_locust None then): read once they are this phase's. In `original` no try fails: no retry.
        state = poll_until(lambda: (st := requests.get(application.url + "/admin/load", timeout=5).json())
                           ["matches_locust"] is True and st, timeout=20, every=0.5)
        assert state, "Locust never showed the phase's own figures"
        assert state["persona"] == "retrying" and state["locust"]["retries"] == 0
        assert locust_stats(ui)["user_count"] == PLAN.healthy_users
        # Stop pressed in Locust's own UI: the console's GET says Locust no longer runs the phase.
        requests.get(ui + "/stop", timeout=10)
        assert poll_until(lambda: requests.get(application.url + "/admin/load", timeout=5).json()["matches_locust"]
                          is False, timeout=15)
    finally:
        put_load(application, phase="stop")


def test_the_console_runs_a_phase_and_shows_it(kit):
    """In Chromium at a projector's 1280×720: the token checked on entry, a phase started from the Load card,
    the phase, its shoppers, persona and elapsed time on screen."""
    from playwright.sync_api import expect, sync_playwright

    application, ui = kit
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=rig.require("chromium"))
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(application.url + "/admin")
            expect(page.locator("[data-users-of=subtle]")).to_have_text(f"{PLAN.subtle_users} shoppers")
            page.fill("#token", "not-the-token")
            page.press("#token", "Enter")
            expect(page.locator("#token-state")).to_contain_text("Wrong token: the server refused it (HTTP 401)")
            page.fill("#token", rig.TEST_TOKEN)
            page.press("#token", "Enter")
            expect(page.locator("#token-state")).to_contain_text("Token accepted by the server")
            page.check("input[name=persona][value=retrying]")
            page.click("[data-phase=subtle]")
            expect(page.locator("#answer-title")).to_contain_text("Start subtle (retrying shoppers): done (HTTP 200)")
            expect(page.locator("#load-now")).to_have_text("subtle")
            expect(page.locator("#load-detail")).to_contain_text(f"{PLAN.subtle_users} retrying shoppers · running 0:0")
            expect(page.locator("#load-locust")).to_contain_text(f"Locust: running, {PLAN.subtle_users} users")
            expect(page.locator("[data-phase=subtle]")).to_have_attribute("aria-pressed", "true")
            # The whole Load card is on the first screen, without scrolling.
            box = page.locator("#load-title").locator("xpath=..").bounding_box()
            assert box["y"] + box["height"] <= 720, box
            if os.environ.get("PAYGATE_SCREENSHOTS") == "1":
                page.screenshot(path=str(ROOT / "docs" / "admin-load.png"))
        finally:
            browser.close()
            put_load(application, phase="stop")


def test_locusts_start_form_opens_at_the_healthy_phase_with_the_think_time_in_sight(kit):
    from playwright.sync_api import expect, sync_playwright

    _, ui = kit
    put_load(kit[0], phase="stop")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=rig.require("chromium"))
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(ui + "/")
            if locust_stats(ui)["state"] != "ready":
                page.get_by_role("button", name="New").click()  # after a run, the form opens from "New"
            expect(page.locator("input[name=userCount]")).to_have_value(str(PLAN.healthy_users))
            # The custom parameters are unfolded without a click: think time and persona in sight.
            think = page.locator("input[name=thinkTime]")
            expect(think).to_be_visible()
            expect(think).to_have_value(f"{PLAN.think_seconds:g}")
            expect(page.locator("select[name=persona]")).to_have_value("shopper")
        finally:
            browser.close()


@pytest.fixture
def silent_locust_port():
    """A port where something accepts connections and never answers: a hung Locust."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.mark.parametrize("where", ["unset", "down", "hung"])
def test_without_a_locust_the_answer_is_a_fast_clear_503(own_app, where, request):
    if where == "hung":
        url = f"http://127.0.0.1:{request.getfixturevalue('silent_locust_port')}"
    else:
        url = "" if where == "unset" else f"http://127.0.0.1:{rig.free_port()}"
    application = own_app(f"noload-{where}", sqlite=True, LOCUST_URL=url)
    for method in ("GET", "PUT"):
        started = time.monotonic()
        r = application.admin(method, "/admin/load", json={"phase": "healthy"} if method == "PUT" else None)
        took = time.monotonic() - started
        assert r.status_code == 503 and r.json()["error"] == "locust_unavailable", r.text
        assert ("LOCUST_URL is not set" if where == "unset" else "Locust at http://127.0.0.1:") in r.json()["message"]
        assert took < (5 if where == "hung" else 2), f"{method} took {took:.1f} s"


@pytest.fixture(scope="module")
def logged_app(own_app, tmp_path_factory):
    """An app whose gunicorn logs each request with its X-Retry-Of header ("-" when none), and that log."""
    log = tmp_path_factory.mktemp("retrying") / "access.log"
    application = own_app("retrying", sqlite=True, ACCESS_LOG=str(log),
                          GUNICORN_CMD_ARGS="--access-logformat '%(r)s %(s)s retry-of=%({x-retry-of}i)s'")
    return application, log


RETRIED = re.compile(r"POST /payment/initiate HTTP/1\.1 (?:200|503) retry-of=(pay_[0-9a-f]{24})$", re.M)
FIRST = re.compile(r"POST /payment/initiate HTTP/1\.1 (?:200|503) retry-of=-$", re.M)


def test_the_retrying_shopper_tries_again_at_once_with_x_retry_of(logged_app, tmp_path):
    """Headless Locust, the retrying persona, against gunicorn in `audit` under a burst: its retries carry
    X-Retry-Of with the failed try's payment id (read from gunicorn's access log) and are counted apart."""
    application, log = logged_app
    seen_before = len(_read(log))
    application.set_mode("audit")
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--config", "loadtest/locust.conf",
            "--headless", "--host", application.url, "-u", "10", "-r", "10", "-t", "60s", "--think-time", "0",
            "--persona", "retrying", "--retry-tries", "3", "--csv", str(out), "--only-summary",
            "--exit-code-on-error", "0"]
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        def seen_enough() -> bool:
            # Locust rewrites its CSV every second (its last write may not follow SIGTERM): end on what both show.
            rows = {r["Name"]: r for r in _csv(out.with_name("run_stats.csv"))}
            return len(RETRIED.findall(_read(log)[seen_before:])) >= 20 and \
                int(rows.get("/payment/initiate [retry]", {}).get("Request Count", 0)) > 0
        poll_until(lambda: proc.poll() is not None or seen_enough(), timeout=60)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
        application.reset()
        probe.no_writes_in_flight(application.url, every=0.2)
    assert proc.returncode == 0, err[-2000:]
    lines = _read(log)[seen_before:]
    retries, firsts = RETRIED.findall(lines), FIRST.findall(lines)
    assert len(retries) >= 20 and firsts, f"{len(retries)} retries, {len(firsts)} first tries"
    # Each retry names a payment that exists: the try that just failed.
    for payment_id in set(retries[:5]):
        assert requests.get(f"{application.url}/payment/{payment_id}", timeout=5).status_code == 200
    rows = {r["Name"]: r for r in _csv(out.with_name("run_stats.csv"))}
    assert "/payment/initiate [retry]" in rows, (list(rows), err[-1500:])
    retried = int(rows["/payment/initiate [retry]"]["Request Count"])
    # Counted apart, and at most two retries (three tries in all) per first try.
    assert 0 < retried <= 2 * int(rows["/payment/initiate"]["Request Count"])


def test_the_traffic_tool_retries_too(logged_app):
    application, log = logged_app
    seen_before = len(_read(log))
    application.set_mode("audit")
    try:
        done = subprocess.run([sys.executable, "-m", "loadtest.simulate", "10", "--duration", "4", "--retry", "3",
                               "--host", application.url], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              capture_output=True, text=True, timeout=60)
    finally:
        application.reset()
        probe.no_writes_in_flight(application.url, every=0.2)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 2, "the original's two summary lines, unchanged"
    said = re.search(r"^retries: (\d+) \(up to 3 tries per checkout, at once\)$", done.stderr, re.M)
    retried = RETRIED.findall(_read(log)[seen_before:])
    assert said and int(said.group(1)) == len(retried) > 0, (done.stderr[-500:], len(retried))


def _read(path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _csv(path) -> list[dict]:
    """Locust's CSV rows, none while it has not written the file (or is halfway through writing it)."""
    import csv

    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, csv.Error):
        return []
