"""The traffic tools against the live app (gunicorn, 2 workers, real Redis and FerretDB).

Locust always runs as a subprocess: importing it here would let gevent
monkey-patch this process and break every other client the suite uses.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

import rig
from loadtest import plan as plans
from loadtest.checkout import ready_model_ms
from rig import probe
from rig.probe import poll_until, until_every_worker

pytestmark = pytest.mark.services

ROOT = rig.ROOT
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
SUMMARY = re.compile(r"^Total: (\d+) \| Success: (\d+) \| Failed: (\d+) \| Rate: (\d+(?:\.\d+)?)%$")


LOCUST_MOST_S = 60


def locust(url: str, out: Path, users: int, think: float, until) -> dict[str, list[dict]]:
    """Run the workshop locustfile headless until `until(rows)` holds for its --csv stats and failures rows
    (Locust rewrites them every second), at most LOCUST_MOST_S; then stop it as Ctrl-C would (SIGTERM:
    it writes its stats and exits 0) and return its last rows.

    The run ends on what it has seen, not after a fixed few seconds: on 2 cores shared with the rest of
    the suite, a 5 s run once recorded no initiate at all.
    """
    argv = [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--config", "loadtest/locust.conf",
            "--headless", "--host", url, "-u", str(users), "-r", str(users), "-t", f"{LOCUST_MOST_S}s",
            "--think-time", str(think), "--csv", str(out / "run"), "--only-summary", "--exit-code-on-error", "0"]

    def rows() -> dict[str, list[dict]]:
        try:
            with open(out / "run_stats.csv", newline="") as stats, open(out / "run_failures.csv", newline="") as failures:
                return {"stats": list(csv.DictReader(stats)), "failures": list(csv.DictReader(failures))}
        except (OSError, csv.Error):
            return {"stats": [], "failures": []}  # not written yet

    proc = subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        seen = poll_until(lambda: proc.poll() is not None or until(rows()), timeout=LOCUST_MOST_S + 20, every=0.5)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    final = rows()
    assert seen and until(final), f"Locust never recorded what the test waits for: {final}\n{err[-2000:]}"
    return final


def counts(rows: dict[str, list[dict]]) -> dict[str, int]:
    """Requests recorded so far, by Locust's name for them."""
    return {r["Name"]: int(r["Request Count"]) for r in rows["stats"]}


def test_locust_records_no_failure_on_a_healthy_gateway(live, tmp_path):
    # The deadline is widened so that a busy CI machine cannot make `original` miss it:
    # this test is about the locustfile not reporting false failures.
    live.patch_knobs(otp_timeout_ms=5000)
    # Each shopper opens the page once, then checks out again and again: twenty whole checkouts at
    # least, about what 3 shoppers finish in 5 s on an idle machine.
    least = {"checkout page": 3, "/payment/initiate": 20, "/payment/verify-otp": 20, "/payment/[id]": 20}
    result = locust(live.url, tmp_path, users=3, think=0.2,
                    until=lambda rows: all(counts(rows).get(name, 0) >= n for name, n in least.items()))

    rows = {r["Name"]: r for r in result["stats"]}
    assert result["failures"] == []
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    for name, n in least.items():
        assert int(rows[name]["Request Count"]) >= n, name
    # Payment ids are grouped under one name, never one row per id.
    assert not [n for n in rows if n.startswith("/payment/pay_")]


def test_locust_names_the_silent_failure_otp_unavailable(live, tmp_path):
    live.set_mode("audit")
    silent = lambda rows: any(r["Name"] == "/payment/initiate" and r["Error"] == "OTP unavailable"  # noqa: E731
                              for r in rows["failures"])
    result = locust(live.url, tmp_path, users=10, think=0, until=silent)
    probe.no_writes_in_flight(live.url, every=0.2)  # let the piled-up writes finish before the next test

    failures = {(r["Name"], r["Error"]): int(r["Occurrences"]) for r in result["failures"]}
    assert failures.get(("/payment/initiate", "OTP unavailable"), 0) > 0, failures
    # HTTP errors (a 503 on an overloaded machine, say) would be rows of their own, never mixed in.
    assert all(error == "OTP unavailable" or error.startswith("HTTPError(") for _, error in failures), failures


def test_simulate_prints_the_original_summary(live):
    done = subprocess.run([sys.executable, "-m", "loadtest.simulate", "3", "--duration", "2", "--host", live.url],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "🚀 Traffic Test: 3 concurrent workers"
    total, success, failed, rate = SUMMARY.match(lines[1]).groups()
    assert len(lines) == 2
    assert int(total) > 0 and int(total) == int(success) + int(failed)
    assert float(rate) == pytest.approx(100 * int(success) / int(total), abs=0.05)


def test_a_shopper_who_keeps_trying_stops_when_the_run_ends_and_backs_off_once_switched(live):
    """Every try fails (audit, a 50 ms deadline): tries=0 retries until the run ends (keep_on), and a callable
    backoff is asked before each retry, so a switch reaches a shopper in the middle of a checkout."""
    from loadtest.checkout import checkout

    live.set_mode("audit")
    live.patch_knobs(otp_timeout_ms=50)
    asked, backing_off = [], []
    try:
        with requests.Session() as session:
            outcome = checkout(session, live.url, tries=0, keep_on=lambda: len(asked) < 4,
                               backoff=lambda: asked.append(1) or False)
            switched = checkout(session, live.url, tries=3, backoff=lambda: backing_off.append(1) or len(backing_off) > 1)
    finally:
        live.reset()
        probe.no_writes_in_flight(live.url, every=0.2)
    assert (outcome.result, outcome.retries, len(asked)) == ("otp_unavailable", 4, 4)
    # The first retry at once, the second after a backoff pause (in [0, 2] s): both asked, each before its retry.
    assert (switched.result, switched.retries, len(backing_off)) == ("otp_unavailable", 2, 2)


def test_simulate_fails_when_the_app_is_unreachable():
    url = f"http://127.0.0.1:{rig.free_port()}"
    done = subprocess.run([sys.executable, "-m", "loadtest.simulate", "2", "--duration", "1", "--host", url],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "cannot reach" in done.stderr and done.stdout == ""


def test_contention_measures_audit_and_restores_the_mode_it_found(live):
    live.set_mode("audit-async")
    knobs = live.knobs()
    done = subprocess.run([sys.executable, "-m", "loadtest.contention", "--host", live.url, "--sizes", "1,3"],
                          cwd=ROOT, env={**ENV, "ADMIN_TOKEN": live.token}, capture_output=True, text=True,
                          timeout=90)
    assert done.returncode == 0, done.stderr
    assert live.mode() == "audit-async"

    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if re.match(r"^\| \d", line)]
    assert [int(r[0]) for r in rows] == [1, 3]
    for n, measured, model, _original, otp in rows:
        assert float(model) == ready_model_ms(knobs, "audit", int(n))
        assert float(measured.split()[0]) >= 2 * knobs["audit_delay_ms"]  # the two audit delays really ran
        assert re.match(rf"^ \d+/{int(n)} issued", otp)
    assert [r[3].strip() for r in rows] == ["300", "400"]


def modes_served(url: str) -> set[str]:
    """The modes the app's workers serve, asked until every worker has answered (fresh connections)."""
    return {r.json()["mode"] for r in until_every_worker(lambda: requests.get(url + "/admin/db-mode", timeout=10), 10)}


def test_contention_restores_the_mode_on_ctrl_c(live):
    proc = subprocess.Popen([sys.executable, "-m", "loadtest.contention", "--host", live.url, "--sizes", "10,10,10"],
                            cwd=ROOT, env={**ENV, "ADMIN_TOKEN": live.token}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # The tool's own word that its flip has answered. Reading the mode from outside instead would race
    # the flip: one worker serves `audit` a moment before the others, while the flip is still in progress.
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(proc.stderr), daemon=True)
    reader.start()
    flipped = lambda: any(line.startswith("mode audit on every worker") for line in said)  # noqa: E731
    try:
        poll_until(lambda: proc.poll() is not None or flipped(), timeout=60)
        if not flipped():
            proc.kill()
            reader.join(10)
            pytest.fail(f"the tool never flipped to audit (exit {proc.wait(10)}):\n{proc.stdout.read()[-1500:]}\n"
                        + "".join(said)[-1500:])
        assert modes_served(live.url) == {"audit"}, "the flip answered once every worker served it"
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(said)
    assert proc.returncode == 130, err
    assert modes_served(live.url) == {"original"}, "the restoring flip answered once every worker served it"
    assert "mode restored to original" in err
    probe.no_writes_in_flight(live.url, every=0.2)


def test_locust_web_ui_waits_for_the_facilitator_and_offers_the_shapes(live):
    port = rig.free_port()
    ui = f"http://127.0.0.1:{port}"
    # As `make up` starts it.
    proc = subprocess.Popen([sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py,loadtest/shapes.py",
                             "--config", "loadtest/locust.conf", "--host", live.url, "--web-host", "127.0.0.1",
                             "--web-port", str(port)], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        rig.probe.wait_answering("Locust's web UI", lambda: rig.probe.http_ok(ui + "/"), 30, proc)
        time.sleep(1)  # time enough for a wrongly auto-started run to show: nothing to poll for
        assert requests.get(ui + "/stats/requests", timeout=5).json()["state"] == "ready"  # not auto-started
        page = requests.get(ui + "/", timeout=5).text
        assert re.search(r'"available_shape_classes": \["Default", "RushThenQuiet"\]', page)
        # Start without typing is safe: the form opens at the load plan's healthy phase, think time and persona shown.
        assert f'"num_users": {plans.load().healthy_users}' in page
        assert re.search(r'"think_time": \{"choices": null, "default_value": 1\.0', page)
        assert '"choices": ["shopper", "retrying", "backoff"]' in page

        started = requests.post(ui + "/swarm", data={"user_count": 2, "spawn_rate": 2, "host": live.url,
                                                      "shape_class": "Default", "user_classes": "CheckoutUser",
                                                      "think_time": "0.2"}, timeout=5)
        assert started.json()["success"] is True
        stats = {}

        def verified() -> bool:
            stats.update(requests.get(ui + "/stats/requests", timeout=5).json())
            return any(s["name"] == "/payment/verify-otp" and s["num_requests"] for s in stats["stats"])

        poll_until(verified, timeout=15, every=0.3)
        assert stats["user_count"] == 2
        assert any(s["name"] == "/payment/verify-otp" and s["num_requests"] for s in stats["stats"]), stats
        requests.get(ui + "/stop", timeout=5)
        # A healthy run leaves no warning in the Logs tab (a shape that ignored the form's users once did).
        logs = requests.get(ui + "/logs", timeout=5).json()["master"]
        assert any("All users spawned" in line for line in logs), logs
        assert not [line for line in logs if "/WARNING/" in line or "/ERROR/" in line], logs
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def test_the_rush_follows_the_load_plan_then_holds_the_quiet_count():
    # In a subprocess: importing locust monkey-patches this process for gevent (threads,
    # sockets, subprocesses), which would break every test after this one.
    script = """
import json
from types import SimpleNamespace
from loadtest.shapes import RushThenQuiet

def at(second, **options):
    shape = RushThenQuiet()
    shape.runner = SimpleNamespace(environment=SimpleNamespace(parsed_options=SimpleNamespace(**options)))
    shape.get_run_time = lambda: second
    return shape.tick()

print(json.dumps({"rush": at(10), "quiet": at(31), "later": at(3600), "typed": at(40, users=3, num_users=2)}))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=rig.ROOT, capture_output=True, text=True, timeout=60,
                         env={**ENV, "LOCUST_RUSH_SECONDS": ""})
    assert out.returncode == 0, out.stderr
    ticks = json.loads(out.stdout.strip().splitlines()[-1])
    plan = plans.load()
    assert ticks["rush"] == [plan.rush_users, plan.rush_users]
    # After the rush: the quiet count, held until Stop (the form's number of users; else the plan's quiet count).
    assert ticks["quiet"] == ticks["later"] == [plan.quiet_users, plan.rush_users]
    assert ticks["typed"] == [3, plan.rush_users], "the number of users the form (or the console) sent"


@pytest.mark.unit
def test_a_plan_rehearsed_before_the_retry_storm_takes_the_storms_defaults(tmp_path):
    """A plan.json written before the rush had its own contention and quiet count still loads: it gets
    the storm's settings, and every other phase keeps the contention its counts were measured at."""
    old = {"healthy_users": 3, "subtle_users": 6, "collapse_users": 14, "rush_users": 40, "think_seconds": 1.0,
           "measured": "2026-11-26 18:35 UTC", "table": []}
    (tmp_path / "plan.json").write_text(json.dumps(old))
    plan = plans.load(tmp_path / "plan.json")
    assert (plan.quiet_users, plan.users("quiet")) == (plans.RETRY_USERS, plans.RETRY_USERS)
    assert plan.contention("rush") == plans.RETRY_CONTENTION_MS
    assert {plan.contention(phase) for phase in (*plans.PHASES, "stop")} == {plan.contention_ms} != {plan.contention("rush")}
    assert plan.users("collapse") == 14
