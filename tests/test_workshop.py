"""workshop.md cannot drift from the product.

Every command in the guide that talks to the kit sits in a ```bash runnable
block. Those blocks run here, in order, against the kit exactly as `make up`
starts it (tools/up.py: gunicorn, Locust's web UI, Prometheus), with the
guide's localhost ports swapped for free ones. Each must exit 0; a comment
`# → text` in a block is output that must appear, and `# expect a success rate
of at least/at most N %` bounds the rate the traffic simulator prints. Numbers
the guide quotes from the benchmark link to bench/RESULTS.md and must be there.
"""

from __future__ import annotations

import contextlib
import os
import re
import string
import subprocess
import time
from dataclasses import dataclass, field

import pytest
import yaml

import rig
from experiments import alerts
from loadtest import plan as plans

# The guide runs for minutes (the four experiments among its blocks).
pytestmark = pytest.mark.long

ROOT = rig.ROOT
GUIDE = ROOT / "workshop.md"
RESULTS = ROOT / "bench" / "RESULTS.md"
TOKEN = "workshop-test-token"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
EXPECT = re.compile(r"^\s*#\s*→\s?(.+?)\s*$", re.M)
RATE_BOUND = re.compile(r"expect a success rate of (at least|at most) (\d+(?:\.\d+)?) ?%")
RATE = re.compile(r"Rate: (\d+(?:\.\d+)?)%")
OUTCOME = re.compile(r"^([a-z-]+): (deviated|completed|failed|aborted|interrupted|not started)\b", re.M)
# What a command that talks to the kit looks like, inside or outside a runnable block.
KIT_COMMAND = re.compile(r"localhost:\d+|127\.0\.0\.1:\d+|loadtest\.simulate|\bcurl\b")


@dataclass
class Block:
    """One fenced code block of the guide."""

    info: str
    body: str
    line: int
    expects: list[str] = field(default_factory=list)

    @property
    def runnable(self) -> bool:
        return self.info.split()[:2] == ["bash", "runnable"]


def guide_blocks() -> list[Block]:
    """The fenced blocks of workshop.md, in order."""
    text = GUIDE.read_text()
    blocks = []
    for m in FENCE.finditer(text):
        body = m.group(2)
        blocks.append(Block(m.group(1).strip(), body, text.count("\n", 0, m.start()) + 1, EXPECT.findall(body)))
    return blocks


# --- the guide's own consistency ------------------------------------------------------------------


def test_guide_has_runnable_blocks_for_every_step():
    blocks = [b for b in guide_blocks() if b.runnable]
    bodies = "\n".join(b.body for b in blocks)
    # The session's steps: the plan, each phase's load, flip, observe, diagnose, the experiments, reset.
    for needle in ("/health", "loadtest.plan", "/admin/load", '"phase": "healthy"', '"phase": "subtle"',
                   '"phase": "collapse"', '"phase": "rush"', '"persona": "retrying"', '"mode": "audit"', "/metrics",
                   ":9090/api/v1/query", '"reveal_traces": true', "annotationQuery=paygate.status%3Dotp_unavailable",
                   "spanName=audit.drain", "E=audit-under-load", "E=audit-async-under-load", "E=loud-failures",
                   "E=metastable-recovery", '"otp_timeout_ms": 1000', '"phase": "stop"', "/admin/reset"):
        assert needle in bodies, f"no runnable block uses {needle}"


def test_every_command_that_talks_to_the_kit_is_runnable():
    for block in guide_blocks():
        if not block.runnable and block.info.split()[:1] in (["bash"], ["sh"], ["console"], ["shell"]):
            lines = [line for line in block.body.splitlines() if not line.lstrip().startswith("#")]
            talking = [line for line in lines if KIT_COMMAND.search(line) and "docker compose" not in line]
            assert not talking, f"workshop.md line {block.line}: not in a runnable block: {talking}"


def test_timeline_fits_a_60_to_90_minute_session():
    text = GUIDE.read_text()
    minutes = [int(m) for m in re.findall(r"^\| *\d+ *\| [^|]+\| *(\d+) min *\|", text, re.M)]
    assert minutes, "no timeline table (| step | what | N min |)"
    assert 60 <= sum(minutes) <= 90, f"the timeline adds up to {sum(minutes)} min"


def test_the_reference_plan_in_the_guide_is_the_one_that_ships():
    """The guide's phase table quotes loadtest/plan.default.json, and each phase's load table names it."""
    plan = plans.load(plans.DEFAULT_PLAN)
    text = GUIDE.read_text()
    for phase in (*plans.PHASES, "rush"):
        assert re.search(rf"^\| {phase} \|[^\n]*\| {plan.users(phase)} shoppers \|$", text, re.M), \
            f"the reference plan's {phase} row does not say {plan.users(phase)} shoppers"
    for phase in plans.PHASES:
        assert f"{phase} ({plan.users(phase)} on the reference machine)" in text, phase


def test_quoted_benchmark_numbers_appear_in_the_results():
    """A figure linked to bench/RESULTS.md must be one the benchmark really measured."""
    results = RESULTS.read_text()
    quotes = re.findall(r"\[([^\]]*\d[^\]]*)\]\(bench/RESULTS\.md(?:#([^)]*))?\)", GUIDE.read_text())
    assert len(quotes) >= 4, "the guide quotes too few measured numbers"
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+?)\s*$", results, re.M)}
    for quote, anchor in quotes:
        assert not anchor or anchor in anchors, f"workshop.md links to a section bench/RESULTS.md no longer has: #{anchor}"
        for number in re.findall(r"\d+(?:\.\d+)?", quote):
            assert re.search(rf"(?<![\d.]){re.escape(number)}(?![\d]|\.\d)", results), \
                f"workshop.md quotes {number} ({quote!r}) but bench/RESULTS.md does not have it"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_docker_compose_commands_name_real_services():
    services = set(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])
    named = 0
    for block in guide_blocks():
        for line in block.body.splitlines():
            line = line.split("#", 1)[0]
            if "docker compose" not in line:
                continue
            for name in re.findall(r"--scale ([\w-]+)=", line):
                assert name in services, line
                named += 1
            # The first word after the subcommand and its flags (--entrypoint takes a value) is a service.
            line = re.sub(r"--entrypoint[ =]\S+", "", line)
            m = re.search(r"docker compose (?:logs|restart|exec|run|stop|start)(?: +-\S+)* +([a-z][\w-]*)", line)
            if m:
                assert m.group(1) in services, line
                named += 1
    assert named >= 2


# --- the runnable blocks against a real `make up` ----------------------------------------------


@pytest.fixture(scope="module")
def kit():
    """tools/up.py (what `make up` runs) on free ports, with a known admin token, tracing to its own
    Zipkin as on a facilitator's machine with Java (the guide's trace hint reads it)."""
    rig.require("prometheus")
    rig.require("curl")
    rig.require("java")
    with contextlib.ExitStack() as running:
        with rig.cores(alone=False):  # a JVM, gunicorn, Locust and Prometheus starting: no timing test beside them
            kit = running.enter_context(rig.make_up(rig.temp_dir("workshop"), TOKEN, extra_env={"TRACING": "on"}))
        yield kit.ports


def localise(body: str, ports: dict) -> str:
    """The block with the guide's default ports swapped for the test kit's."""
    for default, name in ((8000, "PORT"), (8089, "LOCUST_PORT"), (9090, "PROMETHEUS_PORT"), (9411, "ZIPKIN_PORT")):
        body = body.replace(f"localhost:{default}", f"127.0.0.1:{ports[name]}")
    return body


# The experiments as the guide runs them, shortened through their configuration: a 2 s look after
# each change instead of 40–70 s. The rush lasts 10 s instead of 30 s, and the look after it comes
# 45–75 s after its end instead of 90–120 s. The margins, measured on `make up` with a 10 s rush
# and one core kept busy beside it (2026-12-03): the rush of shoppers retrying at once
# left 518 writes in flight; they had drained to the 10 that the 9 who stay hold up by their own retries
# 23 s after its end, and those stayed at 0 % (0 of 776, 23–58 s). The same shoppers backing off never
# piled up (6 writes in flight at the rush's end) and read 240 of 241 over 22–57 s. In a suite run a
# look at 37–47 s after a 20 s rush read 87 % for them (59 of 68, 3 writes in flight) beside the other
# tests' load, and a look at 60–90 s after it read 166 of 166: the look starts later and spans six of
# the board's 5 s points, so that a few seconds of starved cores cannot decide it alone. The 12 s before each
# board reading stays: the board's 10 s window must hold none of the guide's previous phase. The abort
# (the flip's ttl) outlasts the rush and the look.
SHORTENED = {"EXPERIMENT_OBSERVE_SECONDS": "2", "EXPERIMENT_ABORT_AFTER_SECONDS": "180",
             "EXPERIMENT_RUSH_SECONDS": "10", "EXPERIMENT_AFTER_RUSH_SECONDS": "45", "EXPERIMENT_WINDOW_SECONDS": "30"}


# The guide's load is light (a few shoppers waiting on the model's delays) except while a rush, a collapse,
# an experiment or the traffic tool runs: then the session shares the cores (rig.cores), so that no
# test measuring a checkout's time runs beside it; in between, such tests may. A phase started from the
# console lasts until another replaces it; an experiment stops its shoppers when it ends.
HEAVY = re.compile(r'"phase": "(?:rush|collapse)"|make experiment|loadtest\.simulate')
EXPERIMENT = re.compile(r"make experiment E=([\w-]+)")
# An experiment first waits (no load meanwhile) for the previous run's alerts to clear, about a minute
# after each failing phase: the session waits for them before its block, without the cores, so that
# the tests measuring a checkout's time run then rather than hold up the other test processes.
ALERTS_CLEAR_SECONDS = 200
LASTS = re.compile(r'"phase": "(?:rush|collapse)"')
ENDS = re.compile(r'"phase": "(?:stop|healthy|subtle)"|make experiment')


@pytest.mark.services
@pytest.mark.holds_cores
@pytest.mark.timeout(900)
def test_runnable_blocks_run_against_make_up(kit):
    blocks = [b for b in guide_blocks() if b.runnable]
    env = {**os.environ, "ADMIN_TOKEN": TOKEN, **SHORTENED, "KIT_URL": f"http://127.0.0.1:{kit['PORT']}",
           "LOCUST_URL": f"http://127.0.0.1:{kit['LOCUST_PORT']}",
           "PROMETHEUS_URL": f"http://127.0.0.1:{kit['PROMETHEUS_PORT']}"}
    for name in ("EXPERIMENT_USERS", "EXPERIMENT_MODE", "EXPERIMENT_PERSONA", "EXPERIMENT_SILENT_FAILURES"):
        env.pop(name, None)
    rates, outcomes = [], []
    with contextlib.ExitStack() as sharing:
        loaded = held = False
        for block in blocks:
            script = localise(block.body, kit)
            leftover = re.findall(r"localhost:\d+", script)
            assert not leftover, f"line {block.line}: {leftover} is not part of `make up`"
            for name in EXPERIMENT.findall(script):
                if not held:
                    names, counts = experiment_alerts(name)
                    alerts.wait_until_inactive(env["PROMETHEUS_URL"], names, ALERTS_CLEAR_SECONDS, counts, tell=print)
            if (loaded or HEAVY.search(script)) and not held:
                sharing.enter_context(rig.cores(alone=False))
                held = True
            started = time.monotonic()
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env,
                                    capture_output=True, text=True, timeout=300)
            loaded = bool(LASTS.search(script)) or (loaded and not ENDS.search(script))
            if held and not loaded:
                sharing.close()
                held = False
            _check_block(block, script, result, started, rates, outcomes)
    assert rates, "the guide's traffic runs state no expected success rate"
    assert len(outcomes) >= 4, f"the guide ran {len(outcomes)} experiments: {outcomes}"


def experiment_alerts(name: str) -> tuple[list[str], dict[str, str]]:
    """The alerts an experiment waits to be inactive before its steady state and the counts it waits to be 0 (its
    alerts-inactive-first control), with the configuration's own values put in the queries."""
    spec = yaml.safe_load((ROOT / "experiments" / f"{name}.yaml").read_text())
    values = {key: value for key, value in spec.get("configuration", {}).items() if isinstance(value, str)}
    checks = [control["provider"]["arguments"] for control in spec.get("controls", [])
              if control["provider"].get("module") == "experiments.alerts"]
    counts = {label: string.Template(query).substitute(values)
              for check in checks for label, query in check.get("counts", {}).items()}
    return [alert for check in checks for alert in check["alerts"]], counts


def _check_block(block, script: str, result: subprocess.CompletedProcess, started: float, rates: list,
                 outcomes: list) -> None:
    """One block's exit status, expected lines and stated success rates; collects its rates and verdicts."""
    where = f"workshop.md line {block.line} ({time.monotonic() - started:.1f} s)"
    print(where, RATE.findall(result.stdout), OUTCOME.findall(result.stdout))
    outcomes += OUTCOME.findall(result.stdout)
    assert result.returncode == 0, f"{where} exited {result.returncode}:\n{script}\n{result.stdout}\n{result.stderr}"
    for expected in block.expects:
        assert expected in result.stdout, f"{where}: {expected!r} not in the output:\n{result.stdout}"
    for kind, bound in RATE_BOUND.findall(block.body):
        measured = RATE.findall(result.stdout)
        assert measured, f"{where}: no success rate printed:\n{result.stdout}"
        rate = float(measured[-1])
        rates.append(rate)
        if kind == "at least":
            assert rate >= float(bound), f"{where}: success rate {rate} %, expected at least {bound} %"
        else:
            assert rate <= float(bound), f"{where}: success rate {rate} %, expected at most {bound} %"
