"""Calibrate the workshop's load plan on this machine: OTP success against shoppers in `audit`.

    python -m loadtest.calibrate [--host http://127.0.0.1:8000]      (make rehearse)

Needs the kit running (`make up`, or compose) and ADMIN_TOKEN. It flips the kit
to `audit` (with `ttl_seconds` as the abort: the kit flips back by itself if this
dies), runs 1, 2, 3 … shoppers with 1 s think time until the OTP step collapses,
draining the writes in flight between steps, then checks the control: `original`
at the collapse load. Then it measures the retry storm's range at the rush's
contention (loadtest/bistable.py) and picks the shoppers who stay after the rush
from it. It prints the tables and writes loadtest/plan.json, which the Locust
shapes and the experiments read. About twelve minutes.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import bistable, traffic
from . import plan as plans
from .checkout import ready_model_ms
from .client import Admin

LADDER = (1, 2, 3, 5, 8, 12, 20, 30, 40)
HEALTHY, SUBTLE, COLLAPSED = 0.95, 0.80, 0.20
# Enough checkouts per step for a rate that means something (a 95 % interval of about ±12 points at 80 %).
MIN_CHECKOUTS = 45
CHECKOUTS_PER_USER_S = 0.7  # one shopper with 1 s think time, measured
DRAIN_TIMEOUT_S = 120


@dataclass(frozen=True)
class Step:
    """One measured load: shoppers, checkouts seen, and how many got their OTP."""

    mode: str
    users: int
    checkouts: int
    ok: int

    @property
    def rate(self) -> float:
        return self.ok / self.checkouts if self.checkouts else 0.0

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """The Wilson 95 % interval of the success rate."""
        n, p = self.checkouts, self.rate
        if not n:
            return 0.0, 1.0
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)

    def row(self) -> dict:
        low, high = self.interval()
        return {"mode": self.mode, "users": self.users, "checkouts": self.checkouts,
                "otp_success": round(self.rate, 3), "interval_95": [round(low, 3), round(high, 3)]}


def pick(steps: list[Step], safe: int | None = None) -> dict:
    """The phases' user counts from the `audit` steps (ascending users).

    healthy: the most shoppers still at ≥ 95 %, but no more than `safe`; subtle: the count
    nearest 80 % among those between 50 % and 95 %; collapse: the fewest under 20 %.
    """
    healthy = min(max((s.users for s in steps if s.rate >= HEALTHY), default=1), safe or math.inf)
    middle = [s for s in steps if 0.5 <= s.rate < HEALTHY and s.users > healthy]
    over = [s for s in steps if s.users > healthy]
    subtle = min(middle or over or steps, key=lambda s: abs(s.rate - SUBTLE)).users
    collapse = min((s.users for s in steps if s.rate < COLLAPSED and s.users > subtle),
                   default=max(s.users for s in steps))
    return {"healthy_users": healthy, "subtle_users": subtle, "collapse_users": max(collapse, subtle + 1)}


def safe_users(knobs: dict) -> int:
    """The most shoppers whose checkouts cannot miss the deadline in `audit` by the timing model: S shoppers
    keep at most S writes in flight, and each lasts 4w + 2a + n·c. A count measured at 100 % above it
    only met no unlucky moment (3 shoppers read 93 % in one rehearsal, 100 % in the next), and the
    healthy phase promises the room that nothing looks wrong."""
    users = 1
    while ready_model_ms(knobs, "audit", users + 1) < knobs["otp_timeout_ms"]:
        users += 1
    return users


def measure(admin: Admin, mode: str, users: int, think_s: float, warmup_s: float, seconds: float) -> Step:
    """Run `users` shoppers; count the checkouts that started after the warm-up."""
    if mode != "original":
        admin.set_mode(mode, ttl_seconds=int(warmup_s + seconds + 60))
    started = time.monotonic()
    tally = traffic.run(admin.url, users, warmup_s + seconds, think_s)
    kept = [o for o in tally.snapshot() if o.started >= started + warmup_s]
    if mode != "original":
        admin.set_mode("original")
    return Step(mode, users, len(kept), sum(o.ok for o in kept))


def step_seconds(users: int, think_s: float, at_least: float, checkouts: int = MIN_CHECKOUTS) -> float:
    """Long enough for `checkouts` checkouts at this many shoppers."""
    return max(at_least, checkouts / (CHECKOUTS_PER_USER_S * users / max(think_s, 1.0)))


def table(steps: list[Step]) -> str:
    """The measurements as a text table."""
    lines = ["mode       users  checkouts  OTP success  95 % interval",
             "---------  -----  ---------  -----------  -------------"]
    for s in steps:
        low, high = s.interval()
        lines.append(f"{s.mode:<9}  {s.users:>5}  {s.checkouts:>9}  {100 * s.rate:>10.1f}%"
                     f"  {100 * low:>5.1f}–{100 * high:.1f} %")
    return "\n".join(lines)


def storm_range(admin: Admin, args: argparse.Namespace) -> list[bistable.Look]:
    """The retry storm's hysteresis loop at the rush's contention (none when its ladder is empty)."""
    ladder = sorted({int(u) for u in args.retry_ladder.split(",") if u.strip()})
    if not ladder:
        return []
    contention = plans.RETRY_CONTENTION_MS
    print(f"retry storm at {contention} ms per write in flight: retrying shoppers up, a rush, then down …",
          file=sys.stderr, flush=True)
    looks = bistable.measure(admin, contention, ladder, args.think, settle_s=args.retry_settle,
                             window_s=args.retry_window, rush_s=args.rush_seconds,
                             log=lambda line: print(line, file=sys.stderr, flush=True))
    admin.wait_drained(DRAIN_TIMEOUT_S)
    return looks


def retry_summary(found: list[int], plan: plans.Plan) -> str:
    """What the loop found, and who stays after the rush."""
    if found:
        return (f"retry storm: {plans.count_range(found)} retrying shoppers hold from quiet and stay failed after the "
                f"rush (at {plan.rush_contention_ms} ms per write in flight); {plan.quiet_users} stay after the rush")
    return (f"warning: no count of retrying shoppers both held from quiet and stayed failed after the rush at "
            f"{plan.rush_contention_ms} ms per write in flight: on this machine the rush's failure may not outlive "
            f"it; the plan keeps {plan.quiet_users} (bench/RESULTS.md, section n; docs/contract.md)")


def main(argv: list[str] | None = None) -> int:
    """Calibrate; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("KIT_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--ladder", default=",".join(map(str, LADDER)), help="user counts to try, ascending")
    parser.add_argument("--seconds", type=float, default=25.0, help="measured seconds per step, at least")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds before a step is measured")
    parser.add_argument("--think", type=float, default=1.0, help="mean think time, seconds")
    parser.add_argument("--min-checkouts", type=int, default=MIN_CHECKOUTS, help="checkouts per step, at least")
    parser.add_argument("--retry-ladder", default=",".join(map(str, bistable.LADDER)),
                        help="retrying shopper counts for the retry storm's range, ascending (empty: skip it)")
    parser.add_argument("--retry-settle", type=float, default=bistable.SETTLE_S, help="seconds before a count is looked at")
    parser.add_argument("--retry-window", type=float, default=bistable.WINDOW_S, help="seconds a count is looked at")
    parser.add_argument("--rush-seconds", type=float, default=bistable.RUSH_S, help="the rush between the two ways")
    parser.add_argument("--out", default=str(plans.PLAN), help="where to write the plan")
    args = parser.parse_args(argv)
    token = os.environ.get("ADMIN_TOKEN")
    if not token:
        parser.error("set ADMIN_TOKEN (make up's banner prints it; compose keeps it in .env)")
    host = args.host.rstrip("/")
    if problem := traffic.reachable(host):
        print(f"cannot reach the kit at {host}: {problem}", file=sys.stderr)
        return 2
    admin = Admin(host, token)
    admin.set_mode("original")
    admin.wait_drained(DRAIN_TIMEOUT_S)

    steps: list[Step] = []
    for users in sorted({int(u) for u in args.ladder.split(",")}):
        seconds = step_seconds(users, args.think, args.seconds, args.min_checkouts)
        print(f"audit, {users} shoppers, {seconds:.0f} s …", file=sys.stderr, flush=True)
        steps.append(measure(admin, "audit", users, args.think, args.warmup, seconds))
        left = admin.wait_drained(DRAIN_TIMEOUT_S)
        print(f"  {100 * steps[-1].rate:.1f} % of {steps[-1].checkouts}; writes in flight after: {left}",
              file=sys.stderr, flush=True)
        if steps[-1].rate < COLLAPSED:
            break
    knobs = admin.knobs()
    chosen = pick(steps, safe_users(knobs))
    print(f"control: original, {chosen['collapse_users']} shoppers …", file=sys.stderr, flush=True)
    control = measure(admin, "original", chosen["collapse_users"], args.think, args.warmup / 2, args.seconds)
    steps.append(control)
    looks = storm_range(admin, args)

    # The phases' counts hold at the contention they were measured at: the console's phases set it back.
    found = bistable.bistable(looks)
    plan = plans.Plan(**chosen, quiet_users=bistable.middle(found, plans.RETRY_USERS), bistable_users=found,
                      contention_ms=knobs["contention_ms_per_write"], think_seconds=args.think, measured=time.strftime("%Y-%m-%d %H:%M %Z"),
                      table=[s.row() for s in steps], retry_table=[look.row() for look in looks])
    path = plan.save(Path(args.out))
    print(table(steps))
    print(f"\nphases (think time {args.think:g} s): healthy {plan.healthy_users} shoppers, "
          f"subtle {plan.subtle_users}, collapse {plan.collapse_users}; rush {plan.rush_users}")
    if looks:
        print(retry_summary(found, plan))
    if control.rate < HEALTHY:
        print(f"warning: `original` itself reached only {100 * control.rate:.1f} % at {control.users} shoppers: "
              "this machine is short of CPU for that load; use fewer shoppers or close other programs.")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
