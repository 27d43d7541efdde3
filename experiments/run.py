"""Run one of the workshop's experiments against the running kit and keep its journal.

    python -m experiments.run audit-under-load        (make experiment E=audit-under-load)

The kit is `make up`'s on 127.0.0.1 unless KIT_URL, LOCUST_URL and PROMETHEUS_URL say
otherwise (compose publishes the same ports). ADMIN_TOKEN must be set. The shoppers
come from the load plan (loadtest/plan.json, made by `make rehearse`) for the
experiment's phase; EXPERIMENT_USERS overrides it, and the other EXPERIMENT_*
variables in each file's configuration shorten or lengthen its steps.

Chaos Toolkit plays the rollbacks (stop the shoppers, reset the kit) whatever
happens; the journal goes to experiments/journals/. A deviation is a finding,
not an error: the exit status is 0 whenever the experiment ran to its end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from loadtest import plan as plans

HERE = Path(__file__).resolve().parent
JOURNALS = HERE / "journals"
DEFAULTS = {"KIT_URL": "http://127.0.0.1:8000", "LOCUST_URL": "http://127.0.0.1:8089"}


def names() -> list[str]:
    """The experiments there are."""
    return sorted(p.stem for p in HERE.glob("*.yaml"))


def extension(experiment: dict) -> dict:
    """The experiment's `paygate` extension: its load phase and expected outcome."""
    return next((e for e in experiment.get("extensions", []) if e.get("name") == "paygate"), {})


def expected(experiment: dict, env: dict) -> str | None:
    """"deviated" or "completed", for the mode this run tests."""
    expect = extension(experiment).get("expect")
    if isinstance(expect, dict):
        return expect.get(env.get("EXPERIMENT_MODE") or "audit")
    return expect


def unreachable(env: dict, experiment: dict) -> list[str]:
    """What the experiment needs and cannot reach."""
    needed = {"the kit": env["KIT_URL"] + "/health", "Locust": env["LOCUST_URL"] + "/"}
    if "prometheus_url" in experiment.get("configuration", {}):
        needed["Prometheus"] = env.get("PROMETHEUS_URL", "http://127.0.0.1:9090") + "/-/ready"
    problems = []
    for what, url in needed.items():
        try:
            requests.get(url, timeout=5).raise_for_status()
        except requests.RequestException as err:
            problems.append(f"{what} at {url}: {type(err).__name__}")
    return problems


def verdict(journal: dict) -> str:
    """completed (held), deviated (broken by the change), failed (not steady before it), or how it ended."""
    before = (journal.get("steady_states") or {}).get("before")
    if before is not None and not before.get("steady_state_met"):
        return "failed"
    return "deviated" if journal.get("deviated") else journal.get("status", "unknown")


def summary(journal: dict) -> list[str]:
    """One line per steady-state look and method probe: what the board said."""
    lines = []
    for when in ("before", "after"):
        look = (journal.get("steady_states") or {}).get(when) or {}
        for probe in look.get("probes", []):
            body = (probe.get("output") or {}).get("body")
            verdict = "ok " if probe.get("tolerance_met") else "NOT"
            lines.append(f"  {when:<6} {verdict} {probe['activity']['name']}{_figures(body)}")
    for run in journal.get("run", []):
        if run["activity"]["type"] == "probe":
            lines.append(f"  method     {run['activity']['name']}{_figures((run.get('output') or {}).get('body'))}")
    return lines


def _figures(body) -> str:
    """The figures worth a line from a probe's answer: the board, Locust's errors or a Prometheus value."""
    if not isinstance(body, dict):
        return ""
    if "current" in body:
        now = body["current"]
        rate = now.get("otp_success_rate")
        return (f": mode {body.get('mode')}, OTP success {'–' if rate is None else f'{100 * rate:.0f} %'},"
                f" ready p95 {now.get('ready_p95_ms')} ms, writes in flight {now.get('inflight_writes')}")
    if "errors" in body:
        errors = ", ".join(f"{e['error']} ×{e['occurrences']}" for e in body["errors"]) or "none"
        return f": {body.get('user_count')} shoppers; failures: {errors}"
    if "data" in body:
        series = body["data"].get("result", [])
        return ": " + (", ".join(f"{s['metric'].get('alertstate') or s['metric'].get('__name__') or 'value'}"
                                 f" {float(s['value'][1]):g}" for s in series) or "no series")
    return ""


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m experiments.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=names(), metavar="NAME", help="one of: " + ", ".join(names()))
    args = parser.parse_args(argv)
    path = HERE / f"{args.name}.yaml"
    experiment = yaml.safe_load(path.read_text())
    env = {**DEFAULTS, **os.environ}
    if not env.get("ADMIN_TOKEN"):
        parser.error("set ADMIN_TOKEN (make up's banner prints it; compose keeps it in .env)")
    if problems := unreachable(env, experiment):
        print("cannot reach " + "; ".join(problems) + ". Is the kit up?", file=sys.stderr)
        return 2
    phase = extension(experiment).get("load_phase")
    plan = plans.load()
    if phase and "EXPERIMENT_USERS" not in env:
        env["EXPERIMENT_USERS"] = str(plan.users(phase))
    print(f"{args.name}: {phase} load, {env.get('EXPERIMENT_USERS', '?')} shoppers "
          f"(from {plans.source() if 'EXPERIMENT_USERS' not in os.environ else 'EXPERIMENT_USERS'})", flush=True)

    JOURNALS.mkdir(exist_ok=True)
    stem = JOURNALS / f"{args.name}-{time.strftime('%Y%m%dT%H%M%S')}"
    chaos = shutil.which("chaos", path=str(Path(sys.executable).parent)) or shutil.which("chaos") or "chaos"
    subprocess.run([chaos, "--log-file", f"{stem}.log", "run", "--journal-path", f"{stem}.json",
                    "--rollback-strategy", "always", str(path)], env=env, check=False)
    journal = json.loads(Path(f"{stem}.json").read_text())
    outcome = verdict(journal)
    want = expected(experiment, env)
    print("\n".join(summary(journal)))
    print(f"{args.name}: {outcome}" + (f" (expected: {want})" if want else "") + f"; journal {stem}.json")
    if outcome == "failed":
        print("The steady state did not hold before the change, so nothing was tested: stop the load, "
              "wait for writes in flight 0, reset, and run it again.", file=sys.stderr)
    return 0 if outcome in ("deviated", "completed") else 1


if __name__ == "__main__":
    sys.exit(main())
