"""The experiments' alerts check against a real Prometheus: it waits for the alerts an experiment
relies on, proceeds once they clear, and stops the experiment with the reason within its bound.

The Prometheus here evaluates test rules under the kit's alert names (no app to scrape): one
always firing, one always pending (its `for` is an hour), one that fires 3 s out of every 6.
The counts are instant queries of constants and of the clock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from chaoslib.exceptions import InterruptExecution

import rig
from experiments import alerts
from experiments import run as runner
from rig.probe import poll_until

RULES = """groups:
  - name: experiment-alerts-test
    rules:
      - alert: PaygateOtpSuccessLow
        expr: vector(1)
        annotations: {summary: OTP success rate is 80 % (below 95 %)}
      - alert: PaygateReadyLatencyHigh
        expr: vector(1)
        for: 1h
      - alert: PaygateAuditOutboxBacklog
        expr: vector(1) and on() (vector(time()) % 6 < 3)
"""


@pytest.fixture(scope="module")
def prometheus():
    """A real Prometheus evaluating the test rules every second; its URL once both steady alerts are active."""
    rig.require("prometheus")
    workdir = rig.temp_dir("experiment-alerts")
    (workdir / "rules.yml").write_text(RULES)
    config = workdir / "prometheus.yml"
    config.write_text(json.dumps({"global": {"evaluation_interval": "1s"}, "rule_files": [str(workdir / "rules.yml")]}))
    service = rig.prometheus(workdir, config).start()
    url = f"http://127.0.0.1:{service.port}"
    steady = {"PaygateOtpSuccessLow", "PaygateReadyLatencyHigh"}
    assert poll_until(lambda: steady <= set(alerts.active_alerts(url, list(steady))), timeout=30, every=0.5), \
        "the test rules never became active"
    yield url
    service.stop()


def test_a_firing_alert_is_waited_for_then_the_check_refuses_with_the_reason(prometheus):
    told = []
    started = time.monotonic()
    with pytest.raises(alerts.AlertsActive) as refused:
        alerts.wait_until_inactive(prometheus, ["PaygateOtpSuccessLow", "PaygateDbModeChanged"], 4, tell=told.append)
    waited = time.monotonic() - started
    assert 4 <= waited < 10, f"the bound is 4 s; it took {waited:.1f} s"
    assert told and told[0].startswith("Waiting up to 4 s for PaygateOtpSuccessLow firing (OTP success rate is 80 %")
    message = str(refused.value)
    assert message.startswith("PaygateOtpSuccessLow firing") and "after waiting 4 s" in message
    assert "clear about a minute after the failures stop" in message and f"{prometheus}/alerts" in message


def test_a_pending_alert_counts_as_active(prometheus):
    with pytest.raises(alerts.AlertsActive, match="PaygateReadyLatencyHigh pending"):
        alerts.wait_until_inactive(prometheus, ["PaygateReadyLatencyHigh"], 0, tell=lambda _: None)


def test_alerts_the_experiment_does_not_rely_on_do_not_hold_it_up(prometheus):
    assert alerts.wait_until_inactive(prometheus, ["PaygateDbModeChanged"], 60, tell=lambda _: None) == 0.0


def test_the_check_proceeds_once_the_alert_clears(prometheus):
    assert poll_until(lambda: alerts.active_alerts(prometheus, ["PaygateAuditOutboxBacklog"]), timeout=15, every=0.2)
    told = []
    waited = alerts.wait_until_inactive(prometheus, ["PaygateAuditOutboxBacklog"], 30, tell=told.append)
    assert 0 < waited < 15, waited
    assert told[-1].startswith("All clear after")


def test_the_control_interrupts_the_experiment_before_its_steady_state(prometheus, tmp_path):
    """loud-failures through Chaos Toolkit itself: the control stops it before any probe, run.py says why."""
    nowhere = f"http://127.0.0.1:{rig.free_port()}"  # nothing runs: no probe may reach the kit anyway
    env = {**os.environ, "ADMIN_TOKEN": "t", "PROMETHEUS_URL": prometheus, "KIT_URL": nowhere, "LOCUST_URL": nowhere,
           "EXPERIMENT_ALERTS_WAIT_SECONDS": "3"}
    journal_path = tmp_path / "journal.json"
    started = time.monotonic()
    result = subprocess.run([str(Path(sys.executable).with_name("chaos")), "--log-file", str(tmp_path / "chaos.log"),
                             "run", "--journal-path", str(journal_path), "--rollback-strategy", "always",
                             str(rig.ROOT / "experiments" / "loud-failures.yaml")],
                            env=env, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    journal = json.loads(journal_path.read_text())
    assert journal["status"] == "interrupted" and journal["steady_states"]["before"] is None and journal["run"] == []
    reason = alerts.refusal(journal)
    assert reason and reason.startswith("PaygateOtpSuccessLow firing") and "after waiting 3 s" in reason
    assert "Waiting up to 3 s for PaygateOtpSuccessLow" in result.stdout + result.stderr
    assert took < 60, f"chaos took {took:.0f} s to stop on a 3 s bound"
    assert runner.report("loud-failures", journal, "completed", "EXPERIMENT_SILENT_FAILURES=false", "j") == 1


def test_a_count_above_zero_is_waited_for_like_an_alert(prometheus):
    told = []
    with pytest.raises(alerts.AlertsActive) as refused:
        alerts.wait_until_inactive(prometheus, ["PaygateDbModeChanged"], 2, {"OTP timeouts in the last minute": "vector(3)"},
                                   tell=told.append)
    assert told[0].startswith("Waiting up to 2 s for OTP timeouts in the last minute: 3 to clear")
    assert str(refused.value).startswith("OTP timeouts in the last minute: 3: still active from a previous run")


def test_a_count_that_reaches_zero_or_has_no_series_lets_it_proceed(prometheus):
    counts = {"empty": "sum(no_such_metric)", "below one": "vector(0.4)"}
    assert alerts.wait_until_inactive(prometheus, [], 5, counts, tell=lambda _: None) == 0.0
    flapping = {"every other 3 s": "vector(5) and on() (vector(time()) % 6 < 3)"}
    assert poll_until(lambda: alerts.nonzero_counts(prometheus, flapping), timeout=15, every=0.2)
    told = []
    waited = alerts.wait_until_inactive(prometheus, [], 30, flapping, tell=told.append)
    assert waited < 15 and told[-1].startswith("All clear after"), (waited, told)


@pytest.mark.unit
def test_loud_failures_waits_for_the_last_minute_to_hold_no_otp_timeout():
    """The steady state's probe counts OTP timeouts over the last minute: its control waits for the same count."""
    spec = yaml.safe_load((rig.ROOT / "experiments" / "loud-failures.yaml").read_text())
    (control,) = [c for c in spec["controls"] if c["provider"].get("module") == "experiments.alerts"]
    (probe,) = [p for p in spec["steady-state-hypothesis"]["probes"] if p["name"] == "failing-otps-raise-the-alert"]
    count = "${otp_timeouts_last_minute}"
    assert control["provider"]["arguments"]["counts"] == {"OTP timeouts in the last minute": count}
    assert count in probe["provider"]["arguments"]["query"]
    assert "[1m]" in spec["configuration"]["otp_timeouts_last_minute"]


def test_without_the_alerts_the_control_lets_the_experiment_start(prometheus):
    alerts.before_experiment_control({"title": "t"}, prometheus, ["PaygateDbModeChanged"], wait_seconds=3,
                                     prometheus_required=True)
    assert alerts._last["waited_seconds"] == 0.0 and "refused" not in alerts._last


def test_the_control_refuses_with_interrupt_execution(prometheus):
    with pytest.raises(InterruptExecution, match="PaygateOtpSuccessLow firing"):
        alerts.before_experiment_control({"title": "t"}, prometheus, ["PaygateOtpSuccessLow"], wait_seconds=1)
    assert requests.get(f"{prometheus}/-/ready", timeout=5).ok
