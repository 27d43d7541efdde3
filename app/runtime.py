"""Mode and knobs as this worker serves them, installed by its sync loop.

The shared state lives in Redis so every worker and replica agrees. Each
worker's sync loop (app/sync.py) is its one reader: every few tens of
milliseconds it reads the mode and knobs and hands them to `apply`, so a request
never waits for Redis: `snapshot()` returns what the loop installed last.
When Redis is unreachable the last known values keep serving and `redis_ok`
turns false (which /ready reports). Changes are written by app/controls.py.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import zlib
from dataclasses import dataclass, field, replace

from . import metrics
from .config import KNOB_DEFAULTS, MODES
from .validation import KnobsPatch

log = logging.getLogger("paygate.runtime")


@dataclass(frozen=True)
class StateKeys:
    """Where the shared state lives in Redis, under one prefix."""

    mode: str
    knobs: str
    history: str

    @classmethod
    def under(cls, prefix: str) -> StateKeys:
        """The keys under `prefix` (PAYGATE_KEY_PREFIX)."""
        return cls(prefix + "mode", prefix + "knobs", prefix + "history")


@dataclass(frozen=True)
class Snapshot:
    """The runtime state one request works with."""

    mode: str = "original"
    since: float | None = None
    actor: str = "default"
    revert_at: float | None = None
    knobs: dict = field(default_factory=lambda: dict(KNOB_DEFAULTS))
    redis_ok: bool = True

    def as_dict(self, now: float | None = None) -> dict:
        """The mode part as the admin API shows it."""
        now = time.time() if now is None else now
        return {
            "mode": self.mode,
            "since": self.since,
            "actor": self.actor,
            "revert_at": self.revert_at,
            "revert_in_seconds": None if self.revert_at is None else max(0.0, round(self.revert_at - now, 1)),
            "modes": list(MODES),
        }


def mode_value(mode: str, since: float, actor: str, revert_at: float | None = None) -> str:
    """The mode as Redis holds it (JSON), what parse_state reads back."""
    value: dict = {"mode": mode, "since": since, "actor": actor}
    if revert_at is not None:
        value["revert_at"] = revert_at
    return json.dumps(value)


def parse_state(raw_mode: str | None, raw_knobs: str | None) -> tuple[Snapshot, list[str]]:
    """The snapshot Redis's raw mode and knobs (JSON) describe, and what was wrong with them: a corrupt
    value (bad JSON, an unknown mode, a knob out of its limits) falls back to its defaults."""
    problems = []
    try:
        mode = json.loads(raw_mode) if raw_mode else {}
        if not isinstance(mode, dict) or mode.get("mode", "original") not in MODES:
            raise ValueError(f"unknown mode {raw_mode!r}")
        revert_at = mode.get("revert_at")
        state = dict(mode=mode.get("mode", "original"), since=mode.get("since"),
                     actor=str(mode.get("actor", "default")),
                     revert_at=float(revert_at) if revert_at is not None else None)
    except (ValueError, TypeError) as err:  # JSONDecodeError is a ValueError
        problems.append(f"mode: {err}")
        state = {}
    try:
        # The limits a PATCH is checked against, checked in this one place for what Redis holds too.
        knobs = KnobsPatch.model_validate_json(raw_knobs).changes() if raw_knobs else {}
    except ValueError:  # pydantic's ValidationError is one
        problems.append(f"knobs: bad knobs {raw_knobs!r}")
        knobs = {}
    return Snapshot(**state, knobs={**KNOB_DEFAULTS, **knobs}), problems


class RuntimeState:
    """This worker's copy of the shared state: read by requests, installed by the sync loop."""

    def __init__(self) -> None:
        self._last = Snapshot()
        self._raw: tuple | None = None  # the raw mode and knobs behind _last
        self._stamp = 0
        self._corrupt_logged = False
        self._gauge_mode: str | None = None
        # Reads are installed in the order they were sent (see `reading`).
        self._tickets = itertools.count(1)
        self._applied_ticket = 0
        self._apply_lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        """The state in force on this worker (the sync loop's latest read); never waits."""
        return self._last

    @property
    def stamp(self) -> int:
        """Which state is installed: a checksum of its raw values. The sync loop publishes it, so that a
        change can wait until every worker serves it."""
        return self._stamp

    def reading(self) -> int:
        """A ticket for a read of the state, taken just before the read is sent to Redis.

        A sync tick's read can be sent before a flip's write and handed to `apply` after a fresher
        read (the flip's own): installed then, it would put the old mode back on this worker for a
        tick, and the flip's wait for every worker would wait for the old state, which all of them
        still serve. A read with an older ticket than one installed is therefore dropped.
        """
        return next(self._tickets)

    def apply(self, raw_mode: str | None, raw_knobs: str | None, ticket: int) -> Snapshot:
        """Install the state read from Redis under `ticket`; a read older than the one installed last
        changes nothing (see `reading`). A corrupt value serves its defaults, with one WARNING."""
        with self._apply_lock:
            if ticket < self._applied_ticket:
                return self._last
            self._applied_ticket = ticket
            if (raw_mode, raw_knobs) == self._raw and self._last.redis_ok:
                return self._last  # the usual sync tick (20 a second per worker): nothing changed, nothing to parse
            snap, problems = parse_state(raw_mode, raw_knobs)
            if problems and not self._corrupt_logged:
                log.warning("corrupt runtime state in Redis (%s); serving the defaults until it is rewritten",
                            "; ".join(problems))
            self._corrupt_logged = bool(problems)
            self._stamp = zlib.crc32(f"{raw_mode}|{raw_knobs}".encode())
            if snap.mode != self._gauge_mode:  # the mode gauge changes where the mode does
                for m in MODES:
                    metrics.DB_MODE.labels(mode=m).set(1 if m == snap.mode else 0)
                self._gauge_mode = snap.mode
            self._last = snap
            self._raw = (raw_mode, raw_knobs)
            return snap

    def mark_unreachable(self) -> None:
        """Redis did not answer: keep serving the last known state, and say so."""
        self._last = replace(self._last, redis_ok=False)
