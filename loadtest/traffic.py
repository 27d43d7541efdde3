"""Closed-loop traffic: N threads, each a shopper looping through the checkout.

Used by `python -m loadtest.simulate` and by the benchmark. Each worker keeps
its own requests.Session (one keep-alive connection), like a browser tab.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from .checkout import Outcome, checkout


@dataclass
class Tally:
    """Outcomes collected so far (thread-safe)."""

    outcomes: list[Outcome] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, outcome: Outcome) -> None:
        """Record one finished checkout."""
        with self._lock:
            self.outcomes.append(outcome)

    def snapshot(self) -> list[Outcome]:
        """A copy of the outcomes so far."""
        with self._lock:
            return list(self.outcomes)

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def success(self) -> int:
        return sum(o.ok for o in self.snapshot())

    @property
    def failed(self) -> int:
        return self.total - self.success

    @property
    def rate(self) -> float:
        """Success rate in percent (0 when nothing finished)."""
        return 100.0 * self.success / self.total if self.total else 0.0

    def by_result(self) -> Counter:
        """Counts per result: success, otp_unavailable, error."""
        return Counter(o.result for o in self.snapshot())

    @property
    def retries(self) -> int:
        """Tries again after an unavailable OTP (retrying shoppers), apart from the checkouts' first tries."""
        return sum(o.retries for o in self.snapshot())

    def errors(self) -> Counter:
        """Counts per error detail (HTTP status or exception name)."""
        return Counter(o.detail for o in self.snapshot() if o.result == "error")


def run(base_url: str, workers: int, duration_s: float, think_s: float = 0.0, tally: Tally | None = None,
        stop: threading.Event | None = None, tries: int = 1, backoff: bool | Callable[[], bool] = False) -> Tally:
    """Drive `workers` shoppers for `duration_s` seconds; returns the tally.

    `think_s` is the mean pause between a shopper's checkouts (uniform in
    0.5–1.5 × think_s; each shopper's first within one think time of the start),
    0 for back-to-back checkouts. `tries` > 1 (or 0: until
    it works): retrying shoppers, who try an unavailable OTP again at once, or
    with `backoff` (checkout.checkout; a callable switches them while they
    run); they stop retrying when the run ends.
    Checkouts still running at the end are waited for and counted.
    """
    tally = tally if tally is not None else Tally()
    stop = stop or threading.Event()
    deadline = time.monotonic() + duration_s

    def running() -> bool:
        return not stop.is_set() and time.monotonic() < deadline

    def shopper() -> None:
        # Shoppers arrive over one think time, not in the same millisecond: started together, their first
        # tries would be a rush of their own (in `audit` at the rush phase's contention, enough to tip nine
        # shoppers who hold from quiet into the failing state before they ever pay).
        if think_s:
            stop.wait(random.uniform(0.0, think_s))
        with requests.Session() as session:
            while running():
                tally.add(checkout(session, base_url, tries, backoff, running))
                if think_s:
                    stop.wait(min(random.uniform(0.5, 1.5) * think_s, max(0.0, deadline - time.monotonic())))

    with ThreadPoolExecutor(workers, thread_name_prefix="shopper") as pool:
        for _ in range(workers):
            pool.submit(shopper)
    return tally


def reachable(base_url: str, timeout: float = 3.0) -> str | None:
    """None when the app answers /health, else why not."""
    try:
        r = requests.get(base_url + "/health", timeout=timeout)
    except requests.RequestException as err:
        return f"{type(err).__name__}: {err}"
    return None if r.status_code == 200 else f"/health answered HTTP {r.status_code}"
