"""The load plan: how many shoppers make each workshop phase on this machine.

`make rehearse` (python -m loadtest.calibrate) measures it and writes
loadtest/plan.json; until then the plan measured on the reference machine,
loadtest/plan.default.json, stands in. The Locust shapes and the experiments
read it from here, so the room and the experiments see the same numbers.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLAN = HERE / "plan.json"
DEFAULT_PLAN = HERE / "plan.default.json"
PHASES = ("healthy", "subtle", "collapse")
# How long the rush lasts before the load drops back to the quiet count (loadtest/shapes.py);
# LOCUST_RUSH_SECONDS sets another length for the Locust it is given to.
RUSH_SECONDS = int(os.environ.get("LOCUST_RUSH_SECONDS") or 30)
# The retry storm: the rush phase's contention, and the shoppers who stay after it. At the default
# 50 ms per write the model has no load that is bistable (a shopper's failed try lasts the 400 ms
# deadline, so a few cannot keep 3 writes in flight, and many fail from quiet); at 20 ms, 8–10
# shoppers who keep trying at once are (docs/contract.md#retries-and-metastability; bench/RESULTS.md,
# section (n), measures it).
RETRY_CONTENTION_MS, RETRY_USERS = 20, 9


@dataclass(frozen=True)
class Plan:
    """User counts per phase (1 s think time), and the measurements they came from."""

    healthy_users: int
    subtle_users: int
    collapse_users: int
    rush_users: int = 40
    # After the rush: these shoppers stay, at this contention (RETRY_USERS, RETRY_CONTENTION_MS).
    quiet_users: int = RETRY_USERS
    rush_contention_ms: int = RETRY_CONTENTION_MS
    # The retry storm's range measured by `make rehearse` (loadtest/bistable.py): quiet_users is its middle.
    bistable_users: list = field(default_factory=list)
    # The contention the other phases' counts were measured at (`make rehearse` runs at the kit's knob).
    contention_ms: int = 50
    think_seconds: float = 1.0
    measured: str = ""
    table: list = field(default_factory=list)
    retry_table: list = field(default_factory=list)

    def users(self, phase: str) -> int:
        """The shoppers for a phase: healthy, subtle, collapse or rush (or quiet: those who stay after it)."""
        return getattr(self, f"{phase}_users")

    def contention(self, phase: str) -> int:
        """The contention (ms per write in flight) a phase runs at: the rush's own, else the one the
        phases were measured at (a stop goes back to it, so the hints that follow read true)."""
        return self.rush_contention_ms if phase == "rush" else self.contention_ms

    def save(self, path: Path = PLAN) -> Path:
        """Write the plan as JSON (its keys are the experiments' configuration names)."""
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path


def load(path: Path | None = None) -> Plan:
    """The calibrated plan, or the reference machine's when none was measured here."""
    if path is None:
        path = PLAN if PLAN.exists() else DEFAULT_PLAN
    return Plan(**json.loads(path.read_text()))


def source(path: Path | None = None) -> str:
    """Where `load()` reads from, for messages."""
    chosen = path or (PLAN if PLAN.exists() else DEFAULT_PLAN)
    return str(chosen.relative_to(HERE.parent)) if chosen.is_relative_to(HERE.parent) else str(chosen)


def count_range(counts: list[int]) -> str:
    """Shopper counts as people read them: "9", or "9–11"."""
    return str(counts[0]) if counts[0] == counts[-1] else f"{counts[0]}–{counts[-1]}"


def main(argv: list[str] | None = None) -> int:
    """Print the plan; with --shell, as variables a shell can `eval`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m loadtest.plan", description="The workshop's load plan.")
    parser.add_argument("--shell", action="store_true", help="print HEALTHY_USERS=… lines for eval")
    args = parser.parse_args(argv)
    plan = load()
    if args.shell:
        for phase in (*PHASES, "rush", "quiet"):
            print(f"{phase.upper()}_USERS={plan.users(phase)}")
        return 0
    print(f"load plan from {source()} (think time {plan.think_seconds:g} s; measured {plan.measured or '?'}):")
    for phase in (*PHASES, "rush"):
        print(f"  {phase:<9} {plan.users(phase):>3} shoppers at {plan.contention(phase)} ms per write in flight")
    print(f"  {'then':<9} {plan.quiet_users:>3} shoppers stay, at the rush's contention")
    if plan.bistable_users:
        print(f"  (the retry storm's range here: {count_range(plan.bistable_users)} shoppers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
