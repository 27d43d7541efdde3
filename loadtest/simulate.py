"""The original demo's traffic simulator: N concurrent shoppers looping through the checkout.

    python -m loadtest.simulate 40 [--duration 30] [--host http://127.0.0.1:8000] [--think 1] [--retry 5 [--backoff]]

A live progress line goes to stderr; the original's two summary lines go to
stdout at the end. Exit status 2 when the app cannot be reached.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from . import traffic

DEFAULT_HOST = os.environ.get("PAYGATE_URL", "http://127.0.0.1:8000")


def summary(workers: int, tally: traffic.Tally) -> str:
    """The original's two result lines."""
    return (f"🚀 Traffic Test: {workers} concurrent workers\n"
            f"Total: {tally.total} | Success: {tally.success} | Failed: {tally.failed} | Rate: {tally.rate:.1f}%")


def _progress(tally: traffic.Tally, started: float, duration: float, done: threading.Event) -> None:
    # \r keeps it one line on a terminal; it goes to stderr so stdout stays the summary.
    while not done.wait(0.5):
        counts = tally.by_result()
        sys.stderr.write(f"\r  {time.monotonic() - started:5.1f}/{duration:.0f}s  total {tally.total}"
                         f"  ok {counts['success']}  otp unavailable {counts['otp_unavailable']}"
                         f"  errors {counts['error']}   ")
        sys.stderr.flush()
    sys.stderr.write("\n")


def main(argv: list[str] | None = None) -> int:
    """Run the simulator; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("workers", type=int, nargs="?", default=40, help="concurrent shoppers (default 40)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to run (default 30)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"app base URL (default {DEFAULT_HOST})")
    parser.add_argument("--think", type=float, default=0.0, help="mean pause between checkouts, seconds (default 0)")
    parser.add_argument("--retry", type=int, default=1, metavar="TRIES",
                        help="retrying shoppers: try an unavailable OTP again at once, up to TRIES tries "
                             "(0: until it works; default 1)")
    parser.add_argument("--backoff", action="store_true",
                        help="retrying shoppers back off: exponential backoff with full jitter before each retry")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.duration <= 0 or args.retry < 0:
        parser.error("workers must be >= 1, --retry >= 0 and duration > 0")
    if args.backoff and args.retry == 1:
        parser.error("--backoff is for retrying shoppers: give --retry 2 or more (or 0)")
    host = args.host.rstrip("/")

    problem = traffic.reachable(host)
    if problem:
        print(f"cannot reach the app at {host}: {problem}", file=sys.stderr)
        return 2

    tally, done = traffic.Tally(), threading.Event()
    started = time.monotonic()
    reporter = threading.Thread(target=_progress, args=(tally, started, args.duration, done), daemon=True)
    reporter.start()
    try:
        traffic.run(host, args.workers, args.duration, args.think, tally, tries=args.retry, backoff=args.backoff)
    except KeyboardInterrupt:
        pass  # report what finished so far
    finally:
        done.set()
        reporter.join(2)
    print(summary(args.workers, tally), flush=True)
    if args.retry != 1:
        # Apart from the original's two lines on stdout: each checkout above counts once, its retries here.
        how = "with backoff" if args.backoff else "at once"
        limit = f"up to {args.retry} tries" if args.retry > 1 else "until it works"
        print(f"retries: {tally.retries} ({limit} per checkout, {how})", file=sys.stderr)
    errors = tally.errors()
    if errors:
        print("errors: " + ", ".join(f"{k} ×{v}" for k, v in errors.most_common(5)), file=sys.stderr)
    # Nothing but connection errors means the app went away mid-run.
    return 1 if tally.total and errors and sum(errors.values()) == tally.total else 0


if __name__ == "__main__":
    sys.exit(main())
