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
from dataclasses import dataclass

import requests

from .checkout import initiate, ready_model_ms
from .client import Admin, wait_drained
from .observe import burst, total
from .observe import scrape as scrape_metrics

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


class ToolAdmin(Admin):
    """The admin calls of the tool: a refused flip ends it with the server's words."""

    def set_mode(self, mode: str, **extra) -> dict:
        """Flip the mode; returns once every worker serves it (SystemExit on an error answer, e.g. a wrong token)."""
        try:
            return super().set_mode(mode, actor="contention-table", **extra)
        except requests.HTTPError as err:
            raise SystemExit(f"cannot flip the mode: HTTP {err.response.status_code} {err.response.text.strip()}") \
                from None


def scrape(host: str, token: str) -> dict[str, float]:
    """The values this tool reads from /metrics (rendered now, with the admin token): in-flight writes and
    the audit ready histogram."""
    families = scrape_metrics(host, token)
    ready = "paygate_payment_ready_seconds"
    return {"inflight": total(families, "paygate_inflight_writes"),
            "ready_sum": total(families, ready, sample=ready + "_sum", mode="audit"),
            "ready_count": total(families, ready, sample=ready + "_count", mode="audit")}


# Set by Ctrl-C / SIGTERM during a run; checked at safe points. Raising from the signal
# handler itself could land in a garbage collector's finalizer, where Python drops it.
_interrupted = threading.Event()


def _check_interrupted() -> None:
    if _interrupted.is_set():
        raise KeyboardInterrupt


def drained(host: str, token: str, timeout: float = DRAIN_TIMEOUT_S) -> dict[str, float]:
    """Wait until no write is in flight (bounded); returns the last scrape."""
    last: dict[str, float] = {}

    def inflight() -> float:
        _check_interrupted()
        last.update(scrape(host, token))
        return last["inflight"]

    wait_drained(inflight, timeout, 0.2, _interrupted)
    _check_interrupted()
    return last


def fire(host: str, n: int) -> list[dict]:
    """n initiates released at the same instant, each on its own warm connection."""
    sessions = [requests.Session() for _ in range(n)]

    def one(i: int) -> dict:
        try:
            r = initiate(host, sessions[i])
            return r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        except requests.RequestException as err:
            return {"error": type(err).__name__}

    try:
        # Open each connection first: only the initiate is timed.
        return burst(one, n, warm=lambda i: sessions[i].get(host + "/health", timeout=10))
    finally:
        for s in sessions:
            s.close()


def measure(host: str, token: str, sizes: list[int], knobs: dict) -> list[Row]:
    """One row per n, in `audit` mode (the caller flips it)."""
    rows = []
    for n in sizes:
        before = drained(host, token)
        bodies = fire(host, n)
        _check_interrupted()
        after = drained(host, token)
        count = after["ready_count"] - before["ready_count"]
        mean = (after["ready_sum"] - before["ready_sum"]) / count * 1000 if count else None
        ready = [b["ready_ms"] for b in bodies if b.get("status") == "awaiting_otp" and "ready_ms" in b]
        rows.append(Row(n, mean, ready_model_ms(knobs, "audit", n), len(ready), ready, clean=count == n))
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
    admin = ToolAdmin(host, token)
    found = admin.mode()
    knobs = admin.knobs()
    # Ctrl-C and SIGTERM only set a flag; the run stops at its next safe point and the finally restores.
    _interrupted.clear()
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        admin.set_mode("audit")  # answered once every worker serves it
        print(f"mode audit on every worker; measuring n = {', '.join(map(str, sizes))} (Ctrl-C puts {found} back)",
              file=sys.stderr, flush=True)
        return measure(host, token, sizes, knobs)
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
