"""The original's contention table, measured: n simultaneous initiates in `audit` mode.

    ADMIN_TOKEN=... python -m loadtest.contention [--host http://127.0.0.1:8000] [--sizes 1,3,5,10]

For each n it fires n initiates at once and prints the measured ready time,
the model's 4w + 2a + n·c (knobs read from /admin/knobs), the original demo's
figure and how many OTPs were issued. The measured time is the mean of the n
writes' own ready times, read exactly from the paygate_payment_ready_seconds
histogram (its _sum and _count), so writes whose OTP timed out count too.
The mode is flipped through the admin API and put back as found afterwards,
even on Ctrl-C or SIGTERM. Run it on an otherwise idle app: other traffic
would mix into the histogram (the table flags it).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families

from .checkout import card_payload

DEFAULT_HOST = os.environ.get("PAYGATE_URL", "http://127.0.0.1:8000")
ORIGINAL_MS = {1: 300, 3: 400, 5: 500, 10: 750}  # the original demo's table
DRAIN_TIMEOUT_S = 30.0


@dataclass
class Row:
    """One measured line of the table."""

    n: int
    measured_ms: float | None
    model_ms: float
    issued: int
    otp_ready_ms: list[float]
    clean: bool  # the histogram saw exactly these n writes

    @property
    def otp(self) -> str:
        if self.issued == self.n:
            return f"{self.issued}/{self.n} issued"
        return f"{self.issued}/{self.n} issued, {self.n - self.issued} timeout"


class Admin:
    """The few admin calls the tool needs."""

    def __init__(self, host: str, token: str):
        self.host = host
        self.headers = {"Authorization": f"Bearer {token}"}

    def mode(self) -> str:
        """The mode in force."""
        return _get(self.host + "/admin/db-mode").json()["mode"]

    def set_mode(self, mode: str) -> None:
        """Flip the mode (raises on an error answer, e.g. a wrong token)."""
        r = requests.put(self.host + "/admin/db-mode", json={"mode": mode, "actor": "contention-table"},
                         headers=self.headers, timeout=10)
        if r.status_code != 200:
            raise SystemExit(f"cannot flip the mode: HTTP {r.status_code} {r.text.strip()}")

    def knobs(self) -> dict:
        """The runtime knobs."""
        return _get(self.host + "/admin/knobs").json()["knobs"]

    def cache_s(self) -> float:
        """How long a worker may keep serving the previous mode after a flip."""
        return _get(self.host + "/debug/config").json()["settings"].get("runtime_cache_ms", 100) / 1000


def _get(url: str) -> requests.Response:
    r = requests.get(url, timeout=10)
    r.raise_for_status()
    return r


def scrape(host: str) -> dict[str, float]:
    """The values this tool reads from /metrics: in-flight writes and the audit ready histogram."""
    out = {"inflight": 0.0, "ready_sum": 0.0, "ready_count": 0.0}
    for family in text_string_to_metric_families(_get(host + "/metrics").text):
        for s in family.samples:
            if s.name == "paygate_inflight_writes":
                out["inflight"] = s.value
            elif s.name == "paygate_payment_ready_seconds_sum" and s.labels.get("mode") == "audit":
                out["ready_sum"] = s.value
            elif s.name == "paygate_payment_ready_seconds_count" and s.labels.get("mode") == "audit":
                out["ready_count"] = s.value
    return out


# Set by Ctrl-C / SIGTERM during a run; checked at safe points. Raising from the signal
# handler itself could land in a garbage collector's finalizer, where Python drops it.
_interrupted = threading.Event()


def _check_interrupted() -> None:
    if _interrupted.is_set():
        raise KeyboardInterrupt


def wait_drained(host: str, timeout: float = DRAIN_TIMEOUT_S) -> dict[str, float]:
    """Wait until no write is in flight (bounded); returns the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        _check_interrupted()
        m = scrape(host)
        if m["inflight"] == 0 or time.monotonic() > deadline:
            return m
        _interrupted.wait(0.2)


def fire(host: str, n: int) -> list[dict]:
    """n initiates released at the same instant, each on its own warm connection."""
    sessions = [requests.Session() for _ in range(n)]
    for s in sessions:
        s.get(host + "/health", timeout=10)  # open the connection first: only the initiate is timed
    barrier = threading.Barrier(n)
    bodies: list[dict] = [{} for _ in range(n)]

    def one(i: int) -> None:
        barrier.wait()
        try:
            r = sessions[i].post(host + "/payment/initiate", json=card_payload(), timeout=15)
            bodies[i] = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        except requests.RequestException as err:
            bodies[i] = {"error": type(err).__name__}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in sessions:
        s.close()
    return bodies


def model_ms(knobs: dict, n: int) -> float:
    """SPEC's ready-time model for `audit`: 4w + 2a + n·c."""
    return 4 * knobs["write_latency_ms"] + 2 * knobs["audit_delay_ms"] + n * knobs["contention_ms_per_write"]


def measure(host: str, sizes: list[int], knobs: dict) -> list[Row]:
    """One row per n, in `audit` mode (the caller flips it)."""
    rows = []
    for n in sizes:
        before = wait_drained(host)
        bodies = fire(host, n)
        _check_interrupted()
        after = wait_drained(host)
        count = after["ready_count"] - before["ready_count"]
        mean = (after["ready_sum"] - before["ready_sum"]) / count * 1000 if count else None
        ready = [b["ready_ms"] for b in bodies if b.get("status") == "awaiting_otp" and "ready_ms" in b]
        rows.append(Row(n, mean, model_ms(knobs, n), len(ready), ready, clean=count == n))
    return rows


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table (also readable on a terminal)."""
    lines = ["| n simultaneous | measured ready (ms) | model 4w+2a+n·c (ms) | original (ms) | OTP |",
             "|---:|---:|---:|---:|---|"]
    for r in rows:
        measured = "—" if r.measured_ms is None else f"{r.measured_ms:.0f}" + ("" if r.clean else " (other traffic)")
        lines.append(f"| {r.n} | {measured} | {r.model_ms:.0f} | {ORIGINAL_MS.get(r.n, '—')} | {r.otp} |")
    return "\n".join(lines)


def run(host: str, token: str, sizes: list[int]) -> list[Row]:
    """Flip to audit, measure, and restore the mode found, whatever happens."""
    admin = Admin(host, token)
    found = admin.mode()
    knobs = admin.knobs()
    # Ctrl-C and SIGTERM only set a flag; the run stops at its next safe point and the finally restores.
    _interrupted.clear()
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        admin.set_mode("audit")
        _interrupted.wait(admin.cache_s() * 3)  # every worker has let its cached mode expire
        return measure(host, sizes, knobs)
    finally:
        # Always put back what was found: a flip to the mode already in force is harmless.
        try:
            admin.set_mode(found)
            print(f"mode restored to {found}", file=sys.stderr)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _on_signal(signum, frame):
    _interrupted.set()


def main(argv: list[str] | None = None) -> int:
    """Print the contention table; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.contention", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"app base URL (default {DEFAULT_HOST})")
    parser.add_argument("--sizes", default="1,3,5,10", help="simultaneous initiates per row (default 1,3,5,10)")
    args = parser.parse_args(argv)
    token = os.environ.get("ADMIN_TOKEN")
    if not token:
        print("set ADMIN_TOKEN (the token `make up` printed) to let the tool flip the mode", file=sys.stderr)
        return 2
    try:
        sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        parser.error("--sizes takes comma-separated integers, e.g. 1,3,5,10")
    host = args.host.rstrip("/")
    try:
        requests.get(host + "/health", timeout=10).raise_for_status()
    except requests.RequestException as err:
        print(f"cannot reach the app at {host}: {err}", file=sys.stderr)
        return 2
    try:
        rows = run(host, token, sizes)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
