"""The admin API of a running app, and the wait for its writes in flight to drain.

Needs nothing outside loadtest/ but requests: `docker compose run rehearse` mounts only
loadtest/ into the Locust image, and calibration runs there. The tests, the benchmark
and the contention tool use the same calls (rig.client adds the readiness wait).

The server answers a flip or a knob change only once every live worker has applied
it (app/sync.py), so `set_mode` and `patch_knobs` return when every worker serves
the change: no sleep is needed after them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import requests

TIMEOUT_S = 10


def wait_drained(inflight: Callable[[], float], timeout_s: float, every_s: float,
                 stop: threading.Event | None = None) -> float:
    """Call inflight() until it reads 0, `timeout_s` passes or `stop` is set; returns the last reading.

    Bounded: a write stuck in flight must not hang a tool that only wants a quiet start.
    `stop` also cuts the pause between readings short (a tool's Ctrl-C).
    """
    deadline = time.monotonic() + timeout_s
    stop = stop or threading.Event()
    while True:
        left = inflight()
        if not left or time.monotonic() > deadline or stop.is_set():
            return left
        stop.wait(every_s)


class Admin:
    """Admin calls to one app (its base URL, no trailing slash), with its bearer token."""

    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.token = token

    def admin(self, method: str, path: str, **kwargs) -> requests.Response:
        """An admin call with the bearer token (the response as it came)."""
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=TIMEOUT_S, **kwargs)

    def set_mode(self, mode: str, **extra) -> dict:
        """Flip the mode (extra: actor, ttl_seconds); returns once every worker serves it (raises on an error status)."""
        r = self.admin("PUT", "/admin/db-mode", json={"mode": mode, **extra})
        r.raise_for_status()
        return r.json()

    def patch_knobs(self, **knobs) -> dict:
        """Change knobs; returns once every worker serves them (raises on an error status)."""
        r = self.admin("PATCH", "/admin/knobs", json=knobs)
        r.raise_for_status()
        return r.json()

    def reset(self, **extra) -> None:
        """Mode original, default knobs, on every worker."""
        self.admin("POST", "/admin/reset", json=extra or None).raise_for_status()

    def mode(self) -> str:
        """The mode in force."""
        return self._get("/admin/db-mode")["mode"]

    def knobs(self) -> dict:
        """The runtime knobs in force."""
        return self._get("/admin/knobs")["knobs"]

    def inflight_writes(self) -> int:
        """Writes in flight on every worker, as the board reads them (one worker's view, up to a sync tick old)."""
        r = self.admin("GET", "/board/data")
        r.raise_for_status()
        return int(r.json()["current"].get("inflight_writes") or 0)

    def wait_drained(self, timeout_s: float, every_s: float = 1.0) -> int:
        """Wait until the board reads no write in flight (or the timeout); returns what is left."""
        return int(wait_drained(self.inflight_writes, timeout_s, every_s))

    def _get(self, path: str) -> dict:
        r = requests.get(self.url + path, timeout=TIMEOUT_S)
        r.raise_for_status()
        return r.json()
