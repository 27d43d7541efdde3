"""The Chaos Toolkit experiments: valid, falsifiable, each with an abort and rollbacks.

The experiments run for real, against `make up`, in tests/test_workshop.py: the guide's
runnable blocks run them, shortened through their configuration.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from chaoslib.hypothesis import within_tolerance

import rig
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
        config[k]["default"] for k in ("settle_seconds", "observe_seconds", "rush_seconds", "recovery_seconds")
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
        url, tolerance = probe["provider"]["url"], probe["tolerance"]
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


def test_metastable_recovery_expects_a_deviation_in_audit_only():
    experiment = load(rig.ROOT / "experiments" / "metastable-recovery.yaml")
    assert runner.expected(experiment, {}) == "deviated"
    assert runner.expected(experiment, {"EXPERIMENT_MODE": "audit-async"}) == "completed"


def test_the_runner_refuses_without_a_token_and_names_the_experiments(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ADMIN_TOKEN"}
    result = subprocess.run([sys.executable, "-m", "experiments.run", "audit-under-load"], cwd=rig.ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "ADMIN_TOKEN" in result.stderr
    result = subprocess.run([sys.executable, "-m", "experiments.run", "no-such"], cwd=rig.ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "audit-under-load" in result.stderr
