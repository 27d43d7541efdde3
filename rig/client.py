"""The admin API over HTTP for the tests and the benchmark: loadtest.client's calls, plus the wait for /ready.

The calls themselves live in loadtest/client.py, the one place: loadtest/ is shipped
on its own (the Locust image), so it cannot import them from here.
"""

from __future__ import annotations

from loadtest.client import Admin

from .probe import http_ok, wait_answering


class AdminClient(Admin):
    """Admin calls to one app, with its bearer token, and its readiness."""

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until /ready answers 200: its store and Redis answer (RuntimeError saying why otherwise)."""
        wait_answering(f"the app at {self.url}", lambda: http_ok(self.url + "/ready"), timeout)
