"""`make rehearse`: the load plan measured against a real kit, and how the phases are picked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

import rig
from loadtest import plan as plans
from loadtest.calibrate import Step, pick
from loadtest.client import wait_drained


def audit(*rates: tuple[int, float], n: int = 100) -> list[Step]:
    return [Step("audit", users, n, round(rate * n)) for users, rate in rates]


@pytest.mark.unit
def test_the_phases_are_the_last_healthy_count_the_one_nearest_80_percent_and_the_first_collapse():
    # RESULTS (f)'s shape on a quiet machine.
    steps = audit((1, 1.0), (2, 1.0), (3, 0.60), (5, 0.74), (8, 0.40), (12, 0.05))
    assert pick(steps) == {"healthy_users": 2, "subtle_users": 5, "collapse_users": 12}


@pytest.mark.unit
def test_a_busy_machine_still_gets_a_plan_that_climbs():
    steps = audit((1, 0.90), (2, 0.75), (3, 0.72), (5, 0.47), (8, 0.20), (10, 0.02))
    chosen = pick(steps)
    assert chosen == {"healthy_users": 1, "subtle_users": 2, "collapse_users": 10}
    assert chosen["healthy_users"] <= chosen["subtle_users"] < chosen["collapse_users"]


@pytest.mark.unit
def test_the_interval_says_how_little_a_few_checkouts_prove():
    few, many = Step("audit", 3, 10, 8), Step("audit", 3, 1000, 800)
    assert few.interval()[0] < 0.5 < 0.9 < few.interval()[1]
    assert 0.77 < many.interval()[0] < 0.8 < many.interval()[1] < 0.83
    assert Step("audit", 1, 0, 0).interval() == (0.0, 1.0)


@pytest.mark.long
@pytest.mark.timeout(180)
def test_rehearse_measures_a_real_kit_and_writes_the_plan(live_sqlite, tmp_path):
    app = live_sqlite
    out = tmp_path / "plan.json"
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.calibrate", "--host", app.url, "--ladder", "1,12", "--seconds", "6",
         "--warmup", "2", "--min-checkouts", "1", "--out", str(out)],
        cwd=rig.ROOT, env={**os.environ, "ADMIN_TOKEN": app.token}, capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stderr
    assert "OTP success" in result.stdout and "phases (think time 1 s)" in result.stdout
    plan = plans.load(out)
    rows = {(row["mode"], row["users"]): row for row in json.loads(out.read_text())["table"]}
    assert rows[("audit", 1)]["otp_success"] > rows[("audit", 12)]["otp_success"], "audit does not fall with load"
    control = rows[("original", plan.collapse_users)]
    assert control["checkouts"] > 20 and control["otp_success"] >= 0.9, control
    assert plan.healthy_users <= plan.subtle_users < plan.collapse_users
    assert app.admin("GET", "/admin/db-mode").json()["mode"] == "original", "calibration left the kit in audit"


@pytest.mark.unit
def test_the_drain_wait_stops_at_zero_at_the_timeout_or_when_told():
    readings = iter([3, 2, 0, 5])
    assert wait_drained(lambda: next(readings), timeout_s=5, every_s=0) == 0
    assert wait_drained(lambda: 4, timeout_s=0, every_s=0) == 4, "a write stuck in flight: bounded"
    stop = threading.Event()
    stop.set()
    assert wait_drained(lambda: 7, timeout_s=60, every_s=60, stop=stop) == 7, "told to stop: at once"
