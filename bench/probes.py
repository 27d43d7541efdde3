"""Probes of the running app: flip propagation and /metrics scrape time (the cost of metrics: bench/overhead.py)."""

from __future__ import annotations

import threading
import time

import requests

from .report import percentile


def flip_propagation(application, worker_pids: list[int], flips: int, pollers: int = 6,
                     timeout_s: float = 3.0, urls: list[str] | None = None, from_request: bool = False) -> dict:
    """After each flip, how long until each worker reports the new mode.

    Pollers open a fresh connection per request (so gunicorn hands them to
    any worker) and read /debug/config, which names the worker's pid; with
    `urls` (replicas asked directly), poller i asks urls[i % len(urls)]. The
    delay of a worker is the time from the flip's answer (`from_request`: from
    the moment the flip was sent) to the first answer from that worker with
    the new mode; `p99_all` is over flips, of the slowest worker per flip.
    """
    urls = urls or [application.url]
    slowest: list[float] = []
    delays: list[float] = []
    expected = set(worker_pids)
    missed = 0
    mode = "original"
    for _ in range(flips):
        mode = "audit-async" if mode == "original" else "original"
        sent = time.monotonic()
        application.set_mode(mode, actor="bench")
        flipped = sent if from_request else time.monotonic()
        first_seen: dict[int, float] = {}
        lock = threading.Lock()
        stop = threading.Event()

        def poll(url: str) -> None:
            while not stop.is_set() and time.monotonic() - flipped < timeout_s:
                try:
                    body = requests.get(url + "/debug/config", timeout=2).json()
                except requests.RequestException:
                    continue
                now = time.monotonic()
                if body["mode"] == mode:
                    with lock:
                        first_seen.setdefault(body["worker_pid"], now - flipped)

        threads = [threading.Thread(target=poll, args=(urls[i % len(urls)],)) for i in range(pollers)]
        for t in threads:
            t.start()
        while time.monotonic() - flipped < timeout_s:
            time.sleep(0.01)
            with lock:
                if expected <= set(first_seen):
                    break
        stop.set()
        for t in threads:
            t.join()
        delays.extend(first_seen[pid] for pid in expected if pid in first_seen)
        if expected <= set(first_seen):
            slowest.append(max(first_seen[pid] for pid in expected))
        missed += len(expected - set(first_seen))  # a worker that never answered within timeout_s
    application.set_mode("original", actor="bench")
    return {"flips": flips, "workers": len(expected), "samples": len(delays), "missed": missed,
            "p50": percentile(delays, 50), "p99": percentile(delays, 99), "max": max(delays) if delays else None,
            "p99_all": percentile(slowest, 99)}


def scrape_time(application, scrapes: int) -> dict:
    """Time to serve /metrics (aggregated over all workers), and its size."""
    times, size, samples = [], 0, 0
    with requests.Session() as session:
        for _ in range(scrapes):
            started = time.perf_counter()
            r = session.get(application.url + "/metrics", timeout=10)
            times.append(time.perf_counter() - started)
            size = len(r.content)
            samples = sum(1 for line in r.text.splitlines() if line and not line.startswith("#"))
    return {"scrapes": scrapes, "p50": percentile(times, 50), "p99": percentile(times, 99),
            "bytes": size, "samples": samples}
