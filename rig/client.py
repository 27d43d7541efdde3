"""The admin API over HTTP, for the tests, the benchmark and the contention tool.

The server answers a flip or a knob change only once every live worker has
applied it (app/sync.py, `wait_seen`), so `set_mode` and `patch_knobs`
return when every worker serves the change: no sleep is needed after them.
"""

from __future__ import annotations

import requests

from .probe import http_ok, wait_answering

TIMEOUT_S = 10


class AdminClient:
    """Admin calls to one app, with its bearer token."""

    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.token = token

    def admin(self, method: str, path: str, **kwargs) -> requests.Response:
        """An admin call with the bearer token (the response as it came)."""
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=TIMEOUT_S, **kwargs)

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until /ready answers 200: its store and Redis answer (RuntimeError saying why otherwise)."""
        wait_answering(f"the app at {self.url}", lambda: http_ok(self.url + "/ready"), timeout)

    def set_mode(self, mode: str, **extra) -> dict:
        """Flip the mode; returns once every worker serves it (raises on an error status)."""
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

    def _get(self, path: str) -> dict:
        r = requests.get(self.url + path, timeout=TIMEOUT_S)
        r.raise_for_status()
        return r.json()
