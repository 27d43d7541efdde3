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
from loadtest.bistable import Look, bistable, held, middle, stayed_failed
from loadtest.calibrate import Step, pick, safe_users
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
def test_the_healthy_phase_stays_where_the_model_says_no_checkout_can_miss():
    knobs = {"write_latency_ms": 15, "audit_delay_ms": 100, "contention_ms_per_write": 50, "otp_timeout_ms": 400}
    assert safe_users(knobs) == 2, "two writes in flight: 360 ms; three: 410 ms"
    assert safe_users({**knobs, "contention_ms_per_write": 20}) == 6
    assert safe_users({**knobs, "otp_timeout_ms": 200}) == 1, "at least one shopper"
    steps = audit((1, 1.0), (2, 1.0), (3, 1.0), (5, 0.80), (8, 0.33), (12, 0.03))
    assert pick(steps, safe=2) == {"healthy_users": 2, "subtle_users": 5, "collapse_users": 12}
    assert pick(steps)["healthy_users"] == 3, "measured alone, a lucky 100 % at 3"


@pytest.mark.unit
def test_the_interval_says_how_little_a_few_checkouts_prove():
    few, many = Step("audit", 3, 10, 8), Step("audit", 3, 1000, 800)
    assert few.interval()[0] < 0.5 < 0.9 < few.interval()[1]
    assert 0.77 < many.interval()[0] < 0.8 < many.interval()[1] < 0.83
    assert Step("audit", 1, 0, 0).interval() == (0.0, 1.0)


def look(way: str, users: int, rate: float, tries: int = 100) -> Look:
    return Look(way, users, round(rate * tries), tries - round(rate * tries), 0)


@pytest.mark.unit
def test_the_storms_range_is_what_held_going_up_and_stayed_failed_coming_down():
    # bench/RESULTS.md (n)'s shape: 13 tips from quiet; after the rush 7 recovers.
    looks = [look("up", 5, 1.0), look("up", 7, 1.0), look("up", 9, 0.97), look("up", 11, 0.93), look("up", 13, 0.4),
             look("down", 11, 0.0), look("down", 9, 0.05), look("down", 7, 0.6)]
    assert bistable(looks) == [9, 11]
    assert middle([9, 11], default=4) == 9 and middle([7, 9, 11], default=4) == 9
    assert middle([], default=4) == 4, "no range: the plan keeps its default"
    assert (plans.count_range([9]), plans.count_range([9, 11])) == ("9", "9–11")


@pytest.mark.unit
def test_a_load_that_recovers_at_once_or_never_held_has_no_range():
    assert bistable([look("up", 5, 1.0), look("up", 7, 1.0), look("down", 7, 0.9), look("down", 5, 1.0)]) == []
    assert bistable([look("up", 5, 0.5)]) == [], "failing from quiet is not bistable"
    assert not held(Look("up", 5, 0, 0, 0)) and not stayed_failed(Look("down", 5, 0, 0, 0)), \
        "a window without tries proves nothing either way"
    assert held(look("up", 5, 0.9)) and not held(look("up", 5, 0.89))
    assert stayed_failed(look("down", 5, 0.2)) and not stayed_failed(look("down", 5, 0.21))


@pytest.mark.long
@pytest.mark.timeout(240)
def test_rehearse_measures_a_real_kit_and_writes_the_plan(live_sqlite, tmp_path):
    app = live_sqlite
    out = tmp_path / "plan.json"
    knobs = app.admin("GET", "/admin/knobs").json()["knobs"]
    # A short loop: 2 retrying shoppers hold; 40 arrive (and tip it from quiet or, as the rush, after).
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.calibrate", "--host", app.url, "--ladder", "1,12", "--seconds", "6",
         "--warmup", "2", "--min-checkouts", "1", "--retry-ladder", "2,40", "--retry-settle", "2",
         "--retry-window", "5", "--rush-seconds", "5", "--out", str(out)],
        cwd=rig.ROOT, env={**os.environ, "ADMIN_TOKEN": app.token}, capture_output=True, text=True, timeout=230)
    assert result.returncode == 0, result.stderr
    assert "OTP success" in result.stdout and "phases (think time 1 s)" in result.stdout
    plan = plans.load(out)
    rows = {(row["mode"], row["users"]): row for row in json.loads(out.read_text())["table"]}
    assert rows[("audit", 1)]["otp_success"] > rows[("audit", 12)]["otp_success"], "audit does not fall with load"
    control = rows[("original", plan.collapse_users)]
    assert control["checkouts"] > 20 and control["otp_success"] >= 0.9, control
    assert plan.healthy_users <= plan.subtle_users < plan.collapse_users
    assert app.admin("GET", "/admin/db-mode").json()["mode"] == "original", "calibration left the kit in audit"

    # The retry storm's loop: up from 2 until it tips, then down after the rush, its range and who stays.
    ups = [row for row in plan.retry_table if row["way"] == "up"]
    assert [row["users"] for row in ups][:1] == [2] and ups[0]["tries"] > 0, plan.retry_table
    assert all(row["otp_success"] >= 0.9 for row in ups[:-1]), "the way up goes on only while it holds"
    downs = [row for row in plan.retry_table if row["way"] == "down"]
    assert all(row["otp_success"] <= 0.2 for row in downs[:-1]), "the way down goes on only while it stays failed"
    assert set(plan.bistable_users) <= {row["users"] for row in ups} & {row["users"] for row in downs}
    assert plan.quiet_users == middle(plan.bistable_users, default=plans.RETRY_USERS)
    assert "retry storm" in result.stdout
    assert app.admin("GET", "/admin/knobs").json()["knobs"] == knobs, "the loop left its contention knob behind"


@pytest.mark.unit
def test_the_drain_wait_stops_at_zero_at_the_timeout_or_when_told():
    readings = iter([3, 2, 0, 5])
    assert wait_drained(lambda: next(readings), timeout_s=5, every_s=0) == 0
    assert wait_drained(lambda: 4, timeout_s=0, every_s=0) == 4, "a write stuck in flight: bounded"
    stop = threading.Event()
    stop.set()
    assert wait_drained(lambda: 7, timeout_s=60, every_s=60, stop=stop) == 7, "told to stop: at once"
