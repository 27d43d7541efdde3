"""`make soak`: `make up` left running in `original` under steady shoppers; is it still whole at the end?

    python -m bench.soak [--minutes 75] [--users 40] [--think 1.0] [--out bench/RESULTS.md]

Starts tools/up.py from this repository on free loopback ports (PORT,
LOCUST_PORT, PROMETHEUS_PORT, BIND), waits for /ready, and drives it with
loadtest/traffic.py shoppers for the whole time. Every minute: checkouts,
OTP success, p95 checkout time, and the RSS of every gunicorn worker (the
children of the gunicorn master under up.py). Writes its own block of
bench/RESULTS.md (`<!-- soak -->`, which `make bench` keeps) and stops the
`make up` with SIGINT to up.py at the end, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from loadtest import traffic
from loadtest.client import Admin
from rig import free_port, launch_up, stop_up
from rig.probe import http_ok, wait_answering

from . import cpu, render, results, stack
from .report import machine, percentile

# A worker that keeps anything per checkout grows by far more: at 40 shoppers with 1 s think
# (~100,000 checkouts an hour) even 20 bytes a checkout is 2 MiB an hour.
FLAT_MIB_PER_HOUR = 2.0
WARMUP_S = 10


def start_up(log: Path) -> tuple[subprocess.Popen, str, str]:
    """tools/up.py on free loopback ports; returns (process, app URL, admin token)."""
    port, token = free_port(), secrets.token_urlsafe(18)
    env = {**os.environ, "PORT": str(port), "LOCUST_PORT": str(free_port()), "PROMETHEUS_PORT": str(free_port()),
           "BIND": f"127.0.0.1:{port}", "ADMIN_TOKEN": token}
    return launch_up(env, log), f"http://127.0.0.1:{port}", token


def wait_ready(proc: subprocess.Popen, url: str, log: Path, timeout: float = 120) -> None:
    """Block until the app answers /ready with 200 (RuntimeError with `make up`'s log tail otherwise)."""
    wait_answering("make up", lambda: http_ok(url + "/ready"), timeout, proc,
                   lambda: log.read_text(errors="replace")[-3000:])


def workers(up_pid: int) -> list[int]:
    """The gunicorn workers under up.py: children of its child whose command line runs gunicorn."""
    kids = cpu.children()
    for pid in kids.get(up_pid, ()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"gunicorn" in part for part in cmdline[:3]):
            return sorted(kids.get(pid, ()))
    return []


def minute(outcomes: list, since: float, until: float, up_pid: int) -> dict:
    """The figures of checkouts finished in [since, until), and every worker's RSS now."""
    done = [o for o in outcomes if since <= o.started + o.seconds < until]
    ok = sum(o.ok for o in done)
    return {"checkouts": len(done), "success": ok, "rate": 100 * ok / len(done) if done else None,
            "p95": percentile([o.seconds for o in done], 95), "rss": {p: stack.rss_mib(p) for p in workers(up_pid)}}


def soak(minutes: float, users: int, think_s: float, log: Path) -> dict:
    """Run the kit and the shoppers for `minutes`; per-minute samples and totals."""
    proc, url, token = start_up(log)
    try:
        wait_ready(proc, url, log)
        Admin(url, token).reset()
        tally, stop = traffic.Tally(), threading.Event()
        shoppers = threading.Thread(target=traffic.run, args=(url, users, minutes * 60 + WARMUP_S, think_s, tally, stop),
                                    daemon=True)
        t0 = time.monotonic()
        shoppers.start()
        time.sleep(WARMUP_S)  # imports, pools and first connections are not growth
        baseline = {p: stack.rss_mib(p) for p in workers(proc.pid)}
        samples = []
        try:
            for k in range(1, math.ceil(minutes) + 1):
                end = t0 + WARMUP_S + min(k * 60, minutes * 60)
                time.sleep(max(0.0, end - time.monotonic()))
                samples.append({"minute": round((end - t0 - WARMUP_S) / 60, 2),
                                **minute(tally.snapshot(), end - 60, end, proc.pid)})
        finally:
            stop.set()
            shoppers.join(30)
        counts = tally.by_result()
        return {"minutes": minutes, "users": users, "think": think_s, "baseline": baseline, "samples": samples,
                "total": tally.total, "success": tally.success, "otp_unavailable": counts["otp_unavailable"],
                "errors": counts["error"], "error_kinds": dict(tally.errors())}
    finally:
        stop_up(proc, signal.SIGINT)


def growth(r: dict) -> list[dict]:
    """Per worker: RSS at start and end, growth over the run, and MiB/hour over its second half."""
    out = []
    last = r["samples"][-1]
    mid = r["samples"][(len(r["samples"]) - 1) // 2] if len(r["samples"]) > 2 else {"minute": 0, "rss": r["baseline"]}
    for pid, start in r["baseline"].items():
        end, half = last["rss"].get(pid), mid["rss"].get(pid)
        hours = (last["minute"] - mid["minute"]) / 60
        rate = (end - half) / hours if None not in (end, half) and hours > 0 else None
        out.append({"pid": pid, "start": start, "end": end, "change": None if end is None else end - start,
                    "per_hour": rate, "flat": rate is not None and rate <= FLAT_MIB_PER_HOUR})
    return out


def data(r: dict, info: dict) -> dict:
    """The soak block's data for bench/render.py: the run, the machine, each worker's growth and the verdicts."""
    grow = growth(r)
    return {"run": r, "info": info, "growth": grow, "all_ok": r["total"] > 0 and r["success"] == r["total"],
            "flat": bool(grow) and all(g["flat"] for g in grow), "flat_mib_per_hour": FLAT_MIB_PER_HOUR}


def main(argv: list[str] | None = None) -> int:
    """Run the soak and write its block of the results file; exit status 1 if a verdict is no."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=75)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds between a shopper's checkouts")
    parser.add_argument("--out", type=Path, default=results.RESULTS, help="results file (its soak block only)")
    args = parser.parse_args(argv)
    info = machine()
    log = Path(tempfile.mkdtemp(prefix="paygate-soak-")) / "up.log"
    print(f"soak: {args.minutes:g} min, {args.users} shoppers; make up's output in {log}", file=sys.stderr)
    r = soak(args.minutes, args.users, args.think, log)
    text = render.section("soak", data(r, info))
    results.update(args.out, "soak", text)
    print(text + f"\n\nwritten to {args.out}")
    return 0 if r["total"] and r["success"] == r["total"] and all(g["flat"] for g in growth(r)) else 1


if __name__ == "__main__":
    sys.exit(main())
