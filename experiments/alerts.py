"""A Chaos Toolkit control: the experiment's alerts are inactive before its steady state is looked at.

An alert still pending or firing from a previous run means the last minute held that run's
failures: a steady state looked at now would start from them, and `loud-failures`' own probe
("the alert is on") would pass on the old alert. So before the experiment starts, this
control waits (bounded) for the alerts it names to clear in Prometheus, telling the user
what it waits for, or stops the experiment with the reason. Declared in each experiment:

    controls:
      - name: alerts-inactive-first
        provider: {type: python, module: experiments.alerts, arguments: {...}}
"""

from __future__ import annotations

import logging
import time

import requests
from chaoslib.exceptions import InterruptExecution

logger = logging.getLogger("chaostoolkit")

POLL_SECONDS = 2.0
TELL_EVERY_SECONDS = 30.0
# The alerts the experiments rely on (PaygateOtpSuccessLow, PaygateReadyLatencyHigh) rate the last minute:
# what the user is told to expect.
HOW_THEY_CLEAR = "they look at the last minute, so they clear about a minute after the failures stop"

# The outcome of the last check in this process, for the journal (after_experiment_control).
_last: dict = {}


class AlertsActive(Exception):
    """The alerts stayed active for the whole wait: the message says which and for how long."""


class PrometheusUnavailable(Exception):
    """Prometheus did not answer its alerts API."""


def active_alerts(prometheus_url: str, names: list[str], timeout: float = 5.0) -> dict[str, dict]:
    """The alerts among `names` that are pending or firing now: name → {state, since, summary}."""
    try:
        response = requests.get(prometheus_url.rstrip("/") + "/api/v1/alerts", timeout=timeout)
        response.raise_for_status()
        alerts = response.json()["data"]["alerts"]
    except (requests.RequestException, ValueError, KeyError, TypeError) as err:
        raise PrometheusUnavailable(f"no Prometheus answering at {prometheus_url} ({type(err).__name__})") from None
    found: dict[str, dict] = {}
    for alert in alerts:
        name = alert.get("labels", {}).get("alertname")
        if name not in names:
            continue
        # One rule can have several series (by mode): firing outranks pending.
        if found.get(name, {}).get("state") != "firing":
            found[name] = {"state": alert.get("state"), "since": alert.get("activeAt"),
                           "summary": (alert.get("annotations") or {}).get("summary", "")}
    return found


def describe(active: dict[str, dict]) -> str:
    """'PaygateOtpSuccessLow firing (OTP success rate is 80 % (below 95 %))', one per alert."""
    return "; ".join(f"{name} {a['state']}" + (f" ({a['summary']})" if a["summary"] else "")
                     for name, a in sorted(active.items()))


def wait_until_inactive(prometheus_url: str, names: list[str], wait_seconds: float,
                        tell=logger.info, clock=time.monotonic) -> float:
    """Wait until none of `names` is pending or firing; returns the seconds waited.

    Raises AlertsActive when they are still active after `wait_seconds`, and
    PrometheusUnavailable when Prometheus does not answer.
    """
    started = clock()
    active = active_alerts(prometheus_url, names)
    if not active:
        return 0.0
    tell(f"Waiting up to {wait_seconds:.0f} s for {describe(active)} to clear before the steady state: "
         f"{HOW_THEY_CLEAR} (no load meanwhile).")
    told = started
    while (waited := clock() - started) < wait_seconds:
        time.sleep(min(POLL_SECONDS, max(0.0, wait_seconds - waited)))
        active = active_alerts(prometheus_url, names)
        if not active:
            waited = clock() - started
            tell(f"The alerts cleared after {waited:.0f} s; the experiment starts.")
            return waited
        if clock() - told >= TELL_EVERY_SECONDS:
            told = clock()
            tell(f"Still active after {clock() - started:.0f} s: {describe(active)}.")
    raise AlertsActive(f"{describe(active)}: still active from a previous run after waiting {clock() - started:.0f} s; "
                       f"{HOW_THEY_CLEAR}. Nothing was tested: run the experiment again once they clear "
                       f"({prometheus_url.rstrip('/')}/alerts shows them).")


def before_experiment_control(context: dict, prometheus_url: str, alerts: list[str], wait_seconds: float = 180,
                              prometheus_required: bool = False, **_) -> None:
    """Chaos Toolkit calls this before the steady state: wait for `alerts` to be inactive, or interrupt the run."""
    _last.clear()
    _last.update(alerts=list(alerts), prometheus_url=prometheus_url)
    try:
        _last["waited_seconds"] = round(wait_until_inactive(prometheus_url, alerts, float(wait_seconds)), 1)
    except PrometheusUnavailable as err:
        if prometheus_required:
            _last["refused"] = f"{context.get('title', 'this experiment')} needs Prometheus: {err} (PROMETHEUS_URL)"
            raise InterruptExecution(_last["refused"]) from None
        _last["unchecked"] = str(err)
        logger.warning(f"{err} (PROMETHEUS_URL): cannot check first that {', '.join(alerts)} are inactive; "
                       "the steady state's own look decides.")
    except AlertsActive as err:
        _last["refused"] = str(err)
        raise InterruptExecution(str(err)) from None


def after_experiment_control(context: dict, state: dict, **_) -> None:
    """Chaos Toolkit calls this at the end with the journal: keep what the check found in it."""
    if _last and isinstance(state, dict):
        state.setdefault("extensions", []).append({"name": "paygate-alerts-first", **_last})


def refusal(journal: dict) -> str | None:
    """Why the alerts check stopped this run before its steady state, if it did."""
    for ext in journal.get("extensions") or []:
        if ext.get("name") == "paygate-alerts-first":
            return ext.get("refused")
    return None
