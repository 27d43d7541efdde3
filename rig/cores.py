"""The machine's cores, shared between `make test`'s parallel test processes.

A test that measures a checkout's time against the deadline or the timing model takes the cores
to itself; every other test shares them (the guide's session only while its load is heavy). On
2 cores the other processes' load (browsers, Locust, gunicorn starts, FerretDB) is otherwise what
such a test would measure: a lone `audit` checkout took 406 ms against the model's 310 ms while
three other test processes kept the cores busy.

A readers-writer lock on two files, fair to the writer: whoever wants the cores to itself holds
the turnstile while it waits, so the sharers that come after it queue behind it instead of
keeping it out for good.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["cores"]


def _lock_dir() -> Path:
    """One directory per test run, the same in every test process of that run."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
    path = Path(tempfile.gettempdir()) / f"paygate-cores-{run}"
    path.mkdir(exist_ok=True)
    return path


@contextlib.contextmanager
def cores(*, alone: bool) -> Iterator[None]:
    """Hold the machine's cores: `alone` to have them to itself, else shared with the other sharers."""
    where = _lock_dir()
    with open(where / "turnstile", "a") as turnstile, open(where / "cores", "a") as held:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(held, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
