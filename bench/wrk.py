"""wrk, the C load generator, driving closed-loop checkouts (bench/checkout.lua).

wrk costs a fraction of the CPU of Python shoppers, so on a 2-core machine
it leaves the cores to the servers it measures, and the same script drives
the kit and the stub alike.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from loadtest.checkout import TEST_CARD, future_expiry

SCRIPT = Path(__file__).resolve().parent / "checkout.lua"
MARK = "BENCH-JSON "


class WrkMissing(RuntimeError):
    """wrk is not installed (`make bench` installs Debian's package)."""


def binary() -> str:
    """The path of wrk, or WrkMissing."""
    path = shutil.which("wrk")
    if not path:
        raise WrkMissing("wrk is not installed; `make bench` installs it (apt-get install wrk)")
    return path


def run(url: str, seconds: float = 15, connections: int = 40, threads: int = 1, script: Path = SCRIPT) -> dict:
    """Checkouts against `url` for `seconds` with `connections` back-to-back shoppers.

    Returns checkouts (verified successes), per_second, initiates, awaiting
    (initiates answered awaiting_otp), otp_rate (%), other (HTTP errors of
    either call), p50/p99 request latency in seconds (initiates and verifies
    alike: wrk times requests, not checkouts), busiest_share (the busiest gunicorn
    worker's share of the answers, by X-Worker-Pid) and wrk's socket errors.
    One wrk thread keeps up with thousands of requests a second here and
    leaves the second core to the servers.
    """
    if not url.startswith(("http://127.", "http://localhost")):
        raise ValueError(f"load only ever targets this machine, not {url}")
    argv = [binary(), "-t", str(threads), "-c", str(max(connections, threads)), "-d", f"{max(1, round(seconds))}s",
            "--timeout", "10s", "-s", str(script), url, "--", TEST_CARD, future_expiry()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARK)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    raw = json.loads(line[len(MARK):])
    elapsed = raw["duration_us"] / 1e6
    return {
        "seconds": round(elapsed, 1), "connections": connections, "requests": raw["requests"],
        "checkouts": raw["checkouts"], "per_second": round(raw["checkouts"] / elapsed, 1) if elapsed else 0.0,
        "initiates": raw["initiates"], "awaiting": raw["awaiting"], "unavailable": raw["unavailable"],
        "otp_rate": round(100 * raw["awaiting"] / raw["initiates"], 2) if raw["initiates"] else None,
        "other": raw["other"], "p50": raw["p50_us"] / 1e6, "p99": raw["p99_us"] / 1e6,
        "busiest_share": raw["busiest_share"],
        "socket_errors": {k: v for k, v in raw["errors"].items() if v},
    }
