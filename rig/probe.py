"""Observe a running app from outside: /metrics, polling, readiness, bursts, its workers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import requests
from prometheus_client.metrics_core import Metric

from loadtest import observe
from loadtest.client import wait_drained
from loadtest.observe import burst as burst  # the tests' name for the traffic tools' own
from loadtest.observe import total as total

T = TypeVar("T")


def scrape(url: str, token: str | None = None) -> dict[str, Metric]:
    """name -> metric family from one /metrics answer, rendered now: with the test apps' admin token by default."""
    from .apps import TEST_TOKEN  # rig.apps imports this module

    return observe.scrape(url, token or TEST_TOKEN)


def metric(url: str, name: str, sample: str | None = None, **labels) -> float:
    """One scrape, one summed value (see `total`)."""
    return total(scrape(url), name, sample, **labels)


def writes_done(url: str, mode: str) -> float:
    """How many writes of `mode` have run to their end (paygate_payment_ready_seconds' count), in or out of time."""
    return metric(url, "paygate_payment_ready_seconds", sample="paygate_payment_ready_seconds_count", mode=mode)


def poll_until(probe: Callable[[], T], timeout: float = 10.0, every: float = 0.05) -> T:
    """Call probe() until it returns something truthy, at most `timeout` seconds.

    Returns that value, or the last falsy one on timeout, so the caller asserts with its own message.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """One GET on a fresh connection answers 200 (a readiness probe: /ready, /-/ready, a web UI)."""
    return requests.get(url, timeout=timeout, headers={"Connection": "close"}).status_code == 200


def wait_answering(name: str, answers: Callable[[], bool], timeout: float, proc: subprocess.Popen | None = None,
                   log_tail: Callable[[], str] = str) -> None:
    """Block until answers() is true: a service is ready when it answers its own protocol, not when its
    port accepts. Each answers() is one attempt with a short timeout of its own (an exception counts as no).

    RuntimeError naming the service, why, and its log tail, when its process exits first or it has not
    answered within `timeout` seconds.
    """
    why = ["no answer yet"]

    def settled() -> bool:
        if proc is not None and proc.poll() is not None:
            why[0] = f"exited with status {proc.returncode} before it answered"
            return True
        try:
            if answers():
                why[0] = ""
                return True
            why[0] = "answered, but not ready"
        except Exception as err:  # the server is starting: refused, reset, timed out, "starting up"
            why[0] = f"{type(err).__name__}: {err}"
        return False

    if not poll_until(settled, timeout, every=0.1) or why[0]:
        raise RuntimeError(f"{name} did not start: {why[0]} (waited up to {timeout:g} s)\n{log_tail()}")


def inflight_writes(url: str) -> float:
    """Writes in flight on every worker of the app at `url`: its paygate_inflight_writes gauge, summed."""
    return metric(url, "paygate_inflight_writes")


def no_writes_in_flight(url: str, timeout: float = 30.0, every: float = 0.1) -> bool:
    """Wait until the app's paygate_inflight_writes gauge reads 0; False if it never did."""
    return wait_drained(lambda: inflight_writes(url), timeout, every) == 0


def parallel(fn: Callable[[int], T], n: int, threads: int = 6) -> list[T]:
    """fn(0) … fn(n-1) on a few threads (with fresh connections, spread over the workers)."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, range(n)))


def until_every_worker(call: Callable[[], requests.Response], least: int, workers: int = 2,
                       most: int = 200) -> list[requests.Response]:
    """call() in batches of 10 on fresh connections, until `workers` workers have answered and at least
    `least` calls were made (at most `most`): the kernel, not the client, picks the worker."""
    responses: list[requests.Response] = []
    while len(responses) < most and (len(responses) < least
                                     or len({r.headers["X-Worker-Pid"] for r in responses}) < workers):
        responses += parallel(lambda _: call(), 10)
    return responses


def worker_pid(url: str, path: str = "/health") -> str:
    """The pid of the worker that answers a fresh connection."""
    return requests.get(url + path, timeout=10, headers={"Connection": "close"}).headers["X-Worker-Pid"]


def worker_pids(url: str, want: int = 2, timeout: float = 10.0) -> set[str]:
    """The worker pids that answer fresh connections, once `want` have (the kernel picks the worker)."""
    pids: set[str] = set()
    poll_until(lambda: pids.add(worker_pid(url)) or len(pids) >= want, timeout, every=0.02)
    return pids
