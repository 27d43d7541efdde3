"""Run one of the workshop's experiments against the running kit and keep its journal.

    python -m experiments.run audit-under-load        (make experiment E=audit-under-load)

The kit is `make up`'s on 127.0.0.1 unless KIT_URL, LOCUST_URL and PROMETHEUS_URL say
otherwise (compose publishes the same ports). ADMIN_TOKEN must be set. The shoppers
come from the load plan (loadtest/plan.json, made by `make rehearse`) for the
experiment's phase; EXPERIMENT_USERS overrides it, and the other EXPERIMENT_*
variables in each file's configuration shorten or lengthen its steps.

Chaos Toolkit plays the rollbacks (stop the shoppers, reset the kit) whatever
happens; the journal goes to experiments/journals/. Each experiment states the
outcome of each of its variants (its `paygate` extension: `variant` names the
configuration value that selects one, `expect` maps its values to outcomes). A
deviation the variant expects is a finding, not an error: the exit status is 0
when the outcome is the one expected for the variant run, 1 otherwise (and
when the experiment could not start), 2 when it cannot run at all.
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
from chaoslib import convert_to_type

from experiments import alerts
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


def variant(experiment: dict, env: dict) -> tuple[str, object]:
    """The variant this run tests: how to name it ("EXPERIMENT_MODE=audit") and its value ("audit").

    The value is the configuration entry the extension names, read from `env` the way Chaos
    Toolkit reads it (default, env_var_type). An extension that names several entries has a
    variant of each combination: its value is theirs joined by a space ("audit retrying").
    """
    names = extension(experiment)["variant"]
    parts = [_entry(experiment, name, env) for name in ([names] if isinstance(names, str) else names)]
    if len(parts) == 1:
        return parts[0]
    return " ".join(label for label, _ in parts), " ".join(str(value) for _, value in parts)


def _entry(experiment: dict, name: str, env: dict) -> tuple[str, object]:
    entry = experiment["configuration"][name]
    if not (isinstance(entry, dict) and entry.get("type") == "env"):
        return f"{name} {entry}", entry
    value = convert_to_type(entry.get("env_var_type"), env.get(entry["key"], entry.get("default")))
    shown = str(value).lower() if isinstance(value, bool) else value
    return f"{entry['key']}={shown}", value


def expected(experiment: dict, env: dict) -> str | None:
    """"deviated" or "completed" for the variant this run tests; None when the experiment states none for it."""
    return extension(experiment)["expect"].get(variant(experiment, env)[1])


def judge(outcome: str, want: str, label: str) -> tuple[str, str | None]:
    """The verdict line's tail and, when the outcome is not the expected one, why that is a failure."""
    if outcome == want:
        return f"{outcome}, as expected for {label}", None
    if outcome == "failed":
        return (f"failed (expected: {want})", "The steady state did not hold before the change, so nothing was tested: "
                "stop the load, wait for writes in flight 0, reset, and run it again.")
    if outcome == "interrupted":
        return f"interrupted (expected: {want})", "It was interrupted (the reason is above): see the journal."
    if outcome in ("deviated", "completed"):
        why = ("the hypothesis held although the change should break it: was the load too light for this machine "
               "(`make rehearse` calibrates it)? The probes above say what the kit showed." if want == "deviated" else
               "the hypothesis broke although it should hold: the probes above say which look failed.")
        return f"{outcome}, NOT as expected for {label} ({want})", f"Unexpected verdict: {why}"
    return f"{outcome} (expected: {want})", f"The experiment ended {outcome}: see the journal."


def unreachable(env: dict, experiment: dict) -> list[str]:
    """What the experiment needs and cannot reach."""
    needed = {"the kit": env["KIT_URL"] + "/health", "Locust": env["LOCUST_URL"] + "/"}
    if needs_prometheus(experiment):
        needed["Prometheus"] = env.get("PROMETHEUS_URL", "http://127.0.0.1:9090") + "/-/ready"
    problems = []
    for what, url in needed.items():
        try:
            requests.get(url, timeout=5).raise_for_status()
        except requests.RequestException as err:
            problems.append(f"{what} at {url}: {type(err).__name__}")
    return problems


def needs_prometheus(experiment: dict) -> bool:
    """Whether the experiment cannot run without Prometheus (its alerts control says so)."""
    return any(c.get("provider", {}).get("arguments", {}).get("prometheus_required")
               for c in experiment.get("controls", []))


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
            body = _body(probe)
            verdict = "ok " if probe.get("tolerance_met") else "NOT"
            lines.append(f"  {when:<6} {verdict} {probe['activity']['name']}{_figures(body)}")
    for run in journal.get("run", []):
        if run["activity"]["type"] == "probe":
            lines.append(f"  method     {run['activity']['name']}{_figures(_body(run))}")
    return lines


def _body(run: dict):
    """What an activity answered: an HTTP provider's body, or a Python provider's value."""
    output = run.get("output")
    return output.get("body") if run["activity"]["provider"]["type"] == "http" and isinstance(output, dict) else output


def _figures(body) -> str:
    """The figures worth a line from a probe's answer: the board, Locust's errors or a Prometheus value."""
    if not isinstance(body, dict):
        return ""
    if "measured" in body:
        rate, tried = body.get("otp_success_rate"), body["otp_success"] + body["otp_timeout"]
        span = (f" {body['from_seconds']:g}–{body['to_seconds']:g} s after the rush"
                if body.get("from_seconds") is not None else f" over {body['measured']}")
        return (f": the room's OTP{span}: {body['otp_success']} of {tried}"
                f" ({'–' if rate is None else f'{100 * rate:.0f} %'}), writes in flight {body.get('inflight_writes')}")
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
    label, _ = variant(experiment, env)
    want = expected(experiment, env)
    if want is None:
        stated = ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in extension(experiment)["expect"])
        print(f"{args.name} states no outcome for {label}: it knows {stated}", file=sys.stderr)
        return 2
    if problems := unreachable(env, experiment):
        print("cannot reach " + "; ".join(problems) + ". Is the kit up?", file=sys.stderr)
        return 2
    phase = extension(experiment).get("load_phase")
    plan = plans.load()
    if phase and "EXPERIMENT_USERS" not in env:
        env["EXPERIMENT_USERS"] = str(plan.users(phase))
    if phase == "rush":  # the shoppers who stay after it, at its contention
        env.setdefault("EXPERIMENT_QUIET_USERS", str(plan.quiet_users))
        env.setdefault("EXPERIMENT_CONTENTION_MS", str(plan.contention(phase)))
    print(f"{args.name} ({label}, expected: {want}): {phase} load, {env.get('EXPERIMENT_USERS', '?')} shoppers "
          f"(from {plans.source() if 'EXPERIMENT_USERS' not in os.environ else 'EXPERIMENT_USERS'})", flush=True)

    JOURNALS.mkdir(exist_ok=True)
    stem = JOURNALS / f"{args.name}-{time.strftime('%Y%m%dT%H%M%S')}"
    chaos = shutil.which("chaos", path=str(Path(sys.executable).parent)) or shutil.which("chaos") or "chaos"
    subprocess.run([chaos, "--log-file", f"{stem}.log", "run", "--journal-path", f"{stem}.json",
                    "--rollback-strategy", "always", str(path)], env=env, check=False)
    journal = json.loads(Path(f"{stem}.json").read_text())
    print("\n".join(summary(journal)))
    return report(args.name, journal, want, label, f"{stem}.json")


def report(name: str, journal: dict, want: str, label: str, where: str) -> int:
    """Print the verdict against the variant's expectation; returns the exit status (0: as expected)."""
    if refused := alerts.refusal(journal):
        tail, problem = f"not started (expected: {want})", f"Not started, nothing was tested: {refused}"
    else:
        tail, problem = judge(verdict(journal), want, label)
    print(f"{name}: {tail}; journal {where}")
    if problem:
        print(problem, file=sys.stderr)
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
