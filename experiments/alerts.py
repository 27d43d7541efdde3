"""A Chaos Toolkit control: the experiment's alerts are inactive before its steady state is looked at.

An alert still pending or firing from a previous run means the last minute held that run's
failures: a steady state looked at now would start from them, and `loud-failures`' own probe
("the alert is on") would pass on the old alert. A previous run can also leave failures too few
to raise an alert (shoppers backing off after a rush still miss a deadline now and then) in a
window a probe counts: `loud-failures` asks for no OTP timeout in the last minute unless the alert
is on. So before the experiment starts, this control waits (bounded) for the alerts it names to
clear in Prometheus, and for the counts it names to reach 0, telling the user what it waits for,
or stops the experiment with the reason. Declared in each experiment:

    controls:
      - name: alerts-inactive-first
        provider: {type: python, module: experiments.alerts, arguments: {alerts: [...], counts: {...}}}
"""

from __future__ import annotations

import logging
import time

import requests
from chaoslib.exceptions import InterruptExecution

logger = logging.getLogger("chaostoolkit")

POLL_SECONDS = 2.0
TELL_EVERY_SECONDS = 30.0
# The alerts the experiments rely on (PaygateOtpSuccessLow, PaygateReadyLatencyHigh) and the counts they wait
# for rate the last minute: what the user is told to expect.
HOW_THEY_CLEAR = "they look at the last minute, so they clear about a minute after the failures stop"

# The outcome of the last check in this process, for the journal (after_experiment_control).
_last: dict = {}


class AlertsActive(Exception):
    """The alerts stayed active for the whole wait: the message says which and for how long."""


class PrometheusUnavailable(Exception):
    """Prometheus did not answer its alerts API."""


def _api(prometheus_url: str, path: str, timeout: float, **params) -> dict:
    """The `data` of a Prometheus API answer; PrometheusUnavailable when there is none."""
    try:
        response = requests.get(prometheus_url.rstrip("/") + path, params=params, timeout=timeout)
        response.raise_for_status()
        return response.json()["data"]
    except (requests.RequestException, ValueError, KeyError, TypeError) as err:
        raise PrometheusUnavailable(f"no Prometheus answering at {prometheus_url} ({type(err).__name__})") from None


def active_alerts(prometheus_url: str, names: list[str], timeout: float = 5.0) -> dict[str, dict]:
    """The alerts among `names` that are pending or firing now: name → {state, since, summary}."""
    alerts = _api(prometheus_url, "/api/v1/alerts", timeout).get("alerts", [])
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


def nonzero_counts(prometheus_url: str, counts: dict[str, str], timeout: float = 5.0) -> dict[str, float]:
    """The counts (label → instant PromQL query) at 1 or more now: label → value. No series counts as 0."""
    found = {}
    for label, query in counts.items():
        value = sum(float(series["value"][1]) for series in _api(prometheus_url, "/api/v1/query", timeout,
                                                                  query=query).get("result", []))
        if value >= 1:
            found[label] = value
    return found


def outstanding(prometheus_url: str, names: list[str], counts: dict[str, str]) -> str:
    """What still holds the experiment back, described ('' when nothing): 'PaygateOtpSuccessLow firing
    (OTP success rate is 80 % (below 95 %)); OTP timeouts in the last minute: 3', one part per alert or count."""
    active = active_alerts(prometheus_url, names)
    return "; ".join([f"{name} {a['state']}" + (f" ({a['summary']})" if a["summary"] else "")
                      for name, a in sorted(active.items())]
                     + [f"{label}: {value:.0f}" for label, value in nonzero_counts(prometheus_url, counts).items()])


def wait_until_inactive(prometheus_url: str, names: list[str], wait_seconds: float, counts: dict[str, str] | None = None,
                        tell=logger.info, clock=time.monotonic) -> float:
    """Wait until none of `names` is pending or firing and each of `counts` is below 1; returns the seconds waited.

    Raises AlertsActive when they are still active after `wait_seconds`, and
    PrometheusUnavailable when Prometheus does not answer.
    """
    counts = counts or {}
    started = clock()
    active = outstanding(prometheus_url, names, counts)
    if not active:
        return 0.0
    tell(f"Waiting up to {wait_seconds:.0f} s for {active} to clear before the steady state: "
         f"{HOW_THEY_CLEAR} (no load meanwhile).")
    told = started
    while (waited := clock() - started) < wait_seconds:
        time.sleep(min(POLL_SECONDS, max(0.0, wait_seconds - waited)))
        active = outstanding(prometheus_url, names, counts)
        if not active:
            waited = clock() - started
            tell(f"All clear after {waited:.0f} s; the experiment starts.")
            return waited
        if clock() - told >= TELL_EVERY_SECONDS:
            told = clock()
            tell(f"Still active after {clock() - started:.0f} s: {active}.")
    raise AlertsActive(f"{active}: still active from a previous run after waiting {clock() - started:.0f} s; "
                       f"{HOW_THEY_CLEAR}. Nothing was tested: run the experiment again once they clear "
                       f"({prometheus_url.rstrip('/')}/alerts shows them).")


def before_experiment_control(context: dict, prometheus_url: str, alerts: list[str], wait_seconds: float = 180,
                              prometheus_required: bool = False, counts: dict[str, str] | None = None, **_) -> None:
    """Chaos Toolkit calls this before the steady state: wait for `alerts` to be inactive and `counts` to be 0,
    or interrupt the run."""
    _last.clear()
    _last.update(alerts=list(alerts), counts=dict(counts or {}), prometheus_url=prometheus_url)
    try:
        _last["waited_seconds"] = round(wait_until_inactive(prometheus_url, alerts, float(wait_seconds), counts), 1)
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
