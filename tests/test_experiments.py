"""The Chaos Toolkit experiments: valid, falsifiable, each with an abort and rollbacks.

The experiments run for real, against `make up`, in tests/test_workshop.py: the guide's
runnable blocks run them, shortened through their configuration. Their alerts check runs
against a real Prometheus in tests/test_experiment_alerts.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from chaoslib.exceptions import InterruptExecution
from chaoslib.hypothesis import within_tolerance

import rig
from experiments import alerts, recovery
from experiments import run as runner
from loadtest import plan as plans

pytestmark = pytest.mark.unit

EXPERIMENTS = sorted((rig.ROOT / "experiments").glob("*.yaml"))
NAMES = [p.stem for p in EXPERIMENTS]

BOARD_OK = {"mode": "audit", "current": {"otp_success_rate": 0.99, "ready_p95_ms": 60, "inflight_writes": 1}}
BOARD_FAILING = {"mode": "audit", "current": {"otp_success_rate": 0.8, "ready_p95_ms": 520, "inflight_writes": 40}}
BOARD_EMPTY = {"mode": "audit", "current": {"otp_success_rate": None, "ready_p95_ms": None, "inflight_writes": 0}}
LOCUST_LOUD = {"user_count": 10, "errors": [{"error": "HTTPError('503 Server Error')", "name": "/payment/initiate",
                                             "method": "POST", "occurrences": 12}]}
LOCUST_SILENT = {"user_count": 10, "errors": [{"error": "OTP unavailable", "name": "/payment/initiate",
                                               "method": "POST", "occurrences": 3}]}
ALERT_PENDING = {"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {"__name__": "ALERTS", "alertname": "PaygateOtpSuccessLow", "alertstate": "pending"},
     "value": [0, "1"]}]}}
NOBODY_TOLD = {"status": "success", "data": {"resultType": "vector", "result": []}}
ROOM_OK = {"measured": "after the rush", "otp_success": 9, "otp_timeout": 0, "otp_success_rate": 1.0}
ROOM_FAILING = {"measured": "after the rush", "otp_success": 7, "otp_timeout": 1, "otp_success_rate": 0.875}
ROOM_NONE = {"measured": "after the rush", "otp_success": 0, "otp_timeout": 0, "otp_success_rate": None}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def probes(experiment: dict) -> list[dict]:
    return experiment["steady-state-hypothesis"]["probes"]


def answer(body) -> dict:
    """What Chaos Toolkit's HTTP provider hands a tolerance."""
    return {"status": 200, "headers": {}, "body": body}


def test_there_are_the_four_experiments_of_the_workshop():
    assert NAMES == ["audit-async-under-load", "audit-under-load", "loud-failures", "metastable-recovery"]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=NAMES)
def test_chaos_toolkit_accepts_the_experiment(path):
    env = {**os.environ, "ADMIN_TOKEN": "validation-only"}
    chaos = Path(sys.executable).with_name("chaos")
    log = rig.temp_dir("chaos") / "chaostoolkit.log"
    result = subprocess.run([str(chaos), "--log-file", str(log), "validate", str(path)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "look valid" in result.stderr + result.stdout, result.stderr


@pytest.mark.parametrize("path", EXPERIMENTS, ids=NAMES)
def test_each_flip_carries_the_abort_and_the_rollbacks_stop_and_reset(path):
    experiment = load(path)
    flips = [a for a in experiment["method"] if a["provider"].get("url", "").endswith("/admin/db-mode")]
    assert flips and all("ttl_seconds" in a["provider"]["arguments"] for a in flips), "a flip without the abort"
    urls = [a["provider"]["url"] for a in experiment["rollbacks"]]
    assert urls == ["${locust_url}/stop", "${kit_url}/admin/reset"]
    config = experiment["configuration"]
    assert config["abort_after_seconds"]["default"] > sum(
        config[k]["default"] for k in ("settle_seconds", "observe_seconds", "rush_seconds", "after_rush_seconds", "window_seconds")
        if k in config) + config["settle_seconds"]["default"], "the abort would end the experiment before its last look"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=NAMES)
def test_the_load_comes_from_the_plan_and_the_outcome_is_stated(path):
    experiment = load(path)
    extension = runner.extension(experiment)
    plans.load().users(extension["load_phase"])  # a phase the plan has
    assert runner.expected(experiment, {}) in ("deviated", "completed")


@pytest.mark.parametrize("path", EXPERIMENTS, ids=NAMES)
def test_the_hypothesis_tells_a_healthy_kit_from_a_failing_one(path):
    """Every tolerance passes on a healthy answer and fails on a failing one: no check that cannot fail."""
    checked = 0
    for probe in probes(load(path)):
        provider, tolerance = probe["provider"], probe["tolerance"]
        url = provider.get("url", "")
        if provider.get("func") == "room_otp":
            healthy, failing = [ROOM_OK], [ROOM_FAILING, ROOM_NONE]
            for body in healthy:
                assert within_tolerance(tolerance, body), f"{probe['name']} fails on {body}"
            for body in failing:
                assert not within_tolerance(tolerance, body), f"{probe['name']} passes on {body}"
            checked += 1
            continue
        if url.endswith("/board/data"):
            healthy, failing = [BOARD_OK], [BOARD_FAILING, BOARD_EMPTY]
        elif url.endswith("/stats/requests"):
            healthy, failing = [LOCUST_LOUD, {"user_count": 10, "errors": []}], [LOCUST_SILENT]
        elif url.endswith("/api/v1/query"):
            healthy, failing = [ALERT_PENDING], [NOBODY_TOLD]
        elif url.endswith("/swarm"):
            healthy, failing = [{"success": True}], [{"success": False, "message": "no user classes"}]
        else:
            pytest.fail(f"{probe['name']}: a probe of {url} nobody checks here")
        for body in healthy:
            assert within_tolerance(tolerance, answer(body)), f"{probe['name']} fails on {body}"
        for body in failing:
            assert not within_tolerance(tolerance, answer(body)), f"{probe['name']} passes on {body}"
        checked += 1
    assert checked >= 2


# What each variant the guide runs should show: (experiment, environment, how the run names it, verdict).
VARIANTS = [
    ("audit-under-load", {}, "mode audit", "deviated"),
    ("audit-async-under-load", {}, "mode audit-async", "completed"),
    ("metastable-recovery", {}, "EXPERIMENT_MODE=audit EXPERIMENT_PERSONA=retrying", "deviated"),
    ("metastable-recovery", {"EXPERIMENT_PERSONA": "backoff"}, "EXPERIMENT_MODE=audit EXPERIMENT_PERSONA=backoff",
     "completed"),
    ("metastable-recovery", {"EXPERIMENT_MODE": "audit-async"}, "EXPERIMENT_MODE=audit-async EXPERIMENT_PERSONA=retrying",
     "completed"),
    ("loud-failures", {}, "EXPERIMENT_SILENT_FAILURES=false", "completed"),
    ("loud-failures", {"EXPERIMENT_SILENT_FAILURES": "true"}, "EXPERIMENT_SILENT_FAILURES=true", "deviated"),
    # Chaos Toolkit reads a bool the way it likes: the expectation follows its reading.
    ("loud-failures", {"EXPERIMENT_SILENT_FAILURES": "1"}, "EXPERIMENT_SILENT_FAILURES=true", "deviated"),
    ("loud-failures", {"EXPERIMENT_SILENT_FAILURES": "no"}, "EXPERIMENT_SILENT_FAILURES=false", "completed"),
]


@pytest.mark.parametrize(("name", "env", "label", "want"), VARIANTS, ids=[f"{n}-{label}" for n, _, label, _ in VARIANTS])
def test_each_variant_expects_its_own_verdict(name, env, label, want):
    experiment = load(rig.ROOT / "experiments" / f"{name}.yaml")
    assert runner.variant(experiment, env)[0] == label
    assert runner.expected(experiment, env) == want


def test_a_variant_without_a_stated_outcome_has_no_expectation():
    experiment = load(rig.ROOT / "experiments" / "metastable-recovery.yaml")
    assert runner.expected(experiment, {"EXPERIMENT_MODE": "original"}) is None
    assert runner.expected(experiment, {"EXPERIMENT_PERSONA": "shopper"}) is None


def journal(deviated: bool, status: str = "completed", before_met: bool = True, extensions=None) -> dict:
    """A journal as Chaos Toolkit writes it, reduced to what the verdict reads."""
    return {"status": status, "deviated": deviated, "steady_states": {"before": {"steady_state_met": before_met}},
            **({"extensions": extensions} if extensions else {})}


def test_an_expected_deviation_says_so_and_exits_0(capsys):
    status = runner.report("loud-failures", journal(deviated=True), "deviated", "EXPERIMENT_SILENT_FAILURES=true", "j.json")
    out, err = capsys.readouterr()
    assert status == 0
    assert out == "loud-failures: deviated, as expected for EXPERIMENT_SILENT_FAILURES=true; journal j.json\n"
    assert err == ""


def test_an_expected_hold_says_so_and_exits_0(capsys):
    status = runner.report("audit-async-under-load", journal(deviated=False), "completed", "mode audit-async", "j.json")
    assert status == 0
    assert "audit-async-under-load: completed, as expected for mode audit-async" in capsys.readouterr().out


@pytest.mark.parametrize(("deviated", "want", "hint"), [(False, "deviated", "held although"), (True, "completed", "broke although")])
def test_an_unexpected_verdict_exits_non_zero_and_says_why(capsys, deviated, want, hint):
    status = runner.report("metastable-recovery", journal(deviated=deviated), want, "EXPERIMENT_MODE=audit", "j.json")
    out, err = capsys.readouterr()
    assert status == 1
    assert f"NOT as expected for EXPERIMENT_MODE=audit ({want})" in out
    assert err.startswith("Unexpected verdict:") and hint in err


def test_a_steady_state_that_did_not_hold_first_is_no_verdict(capsys):
    status = runner.report("audit-under-load", journal(deviated=False, status="failed", before_met=False),
                           "deviated", "mode audit", "j.json")
    out, err = capsys.readouterr()
    assert status == 1 and "audit-under-load: failed (expected: deviated)" in out and "nothing was tested" in err


def test_a_run_the_alerts_check_stopped_says_why(capsys):
    reason = "PaygateOtpSuccessLow firing: still active from a previous run after waiting 180 s"
    stopped = journal(deviated=False, status="interrupted", extensions=[
        {"name": "paygate-alerts-first", "alerts": ["PaygateOtpSuccessLow"], "refused": reason}])
    stopped["steady_states"]["before"] = None
    status = runner.report("loud-failures", stopped, "completed", "EXPERIMENT_SILENT_FAILURES=false", "j.json")
    out, err = capsys.readouterr()
    assert status == 1 and "loud-failures: not started" in out and reason in err


def test_without_prometheus_the_check_says_so_or_stops_when_it_is_needed(caplog):
    nowhere = f"http://127.0.0.1:{rig.free_port()}"
    with caplog.at_level("WARNING", logger="chaostoolkit"):
        alerts.before_experiment_control({"title": "t"}, nowhere, ["PaygateOtpSuccessLow"], wait_seconds=5)
    assert f"no Prometheus answering at {nowhere}" in caplog.text and "cannot check first" in caplog.text
    with pytest.raises(InterruptExecution, match="needs Prometheus"):
        alerts.before_experiment_control({"title": "t"}, nowhere, ["PaygateOtpSuccessLow"], wait_seconds=5,
                                         prometheus_required=True)


def test_only_loud_failures_needs_prometheus():
    assert [p.stem for p in EXPERIMENTS if runner.needs_prometheus(load(p))] == ["loud-failures"]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=NAMES)
def test_every_experiment_checks_its_alerts_before_its_steady_state(path):
    experiment = load(path)
    [control] = [c for c in experiment.get("controls", []) if c["provider"].get("module") == "experiments.alerts"]
    arguments = control["provider"]["arguments"]
    rules = (rig.ROOT / "dashboards" / "prometheus" / "rules" / "paygate.yml").read_text()
    assert arguments["alerts"] and all(f"alert: {name}\n" in rules for name in arguments["alerts"])
    assert experiment["configuration"]["alerts_wait_seconds"]["default"] == 180


def board(points: list[tuple[int, int, int]], step: int = 5) -> dict:
    """/board/data reduced to its history: (t, successes, timeouts) per point."""
    return {"current": {"inflight_writes": 0}, "history": {"step_seconds": step, "points": [
        {"t": t, "otp_success": s, "otp_timeout": f} for t, s, f in points]}}


def test_the_look_after_the_rush_counts_only_points_wholly_inside_its_window():
    # The rush ends at 1000.4: the window is 1005.4–1020.4, so the points of 1006 and 1011 count
    # (1001 starts too early, 1016 ends at 1021, after the window).
    data = board([(996, 0, 30), (1001, 1, 4), (1006, 3, 1), (1011, 4, 0), (1016, 0, 5)])
    found = recovery.window_after(data, 1000.4, 5, 15)
    assert (found["otp_success"], found["otp_timeout"], found["otp_success_rate"]) == (7, 1, 0.875)
    assert (found["from_seconds"], found["to_seconds"]) == (5.6, 15.6)


def test_a_window_with_no_payment_in_it_is_not_a_steady_state():
    found = recovery.window_after(board([(996, 0, 30)]), 1000.0, 5, 15)
    assert found["otp_success_rate"] is None and found["from_seconds"] is None


def test_the_runner_refuses_a_variant_with_no_stated_outcome():
    env = {**os.environ, "ADMIN_TOKEN": "x", "EXPERIMENT_MODE": "original", "KIT_URL": f"http://127.0.0.1:{rig.free_port()}"}
    result = subprocess.run([sys.executable, "-m", "experiments.run", "metastable-recovery"], cwd=rig.ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert ("metastable-recovery states no outcome for EXPERIMENT_MODE=original EXPERIMENT_PERSONA=retrying: it knows"
            " audit retrying, audit backoff, audit-async retrying, audit-async backoff") in result.stderr


def test_the_runner_refuses_without_a_token_and_names_the_experiments(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ADMIN_TOKEN"}
    result = subprocess.run([sys.executable, "-m", "experiments.run", "audit-under-load"], cwd=rig.ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "ADMIN_TOKEN" in result.stderr
    result = subprocess.run([sys.executable, "-m", "experiments.run", "no-such"], cwd=rig.ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "audit-under-load" in result.stderr


def test_the_summary_shows_the_rooms_window_after_the_rush():
    probe = {"activity": {"name": "room-otp-at-least-95-percent", "provider": {"type": "python"}},
             "tolerance_met": False,
             "output": {**ROOM_FAILING, "from_seconds": 60.4, "to_seconds": 90.4, "inflight_writes": 0}}
    lines = runner.summary({"steady_states": {"after": {"probes": [probe]}}})
    assert lines == ["  after  NOT room-otp-at-least-95-percent: the room's OTP 60.4–90.4 s after the rush:"
                     " 7 of 8 (88 %), writes in flight 0"]
