"""The console's load phases: Locust driven through its REST API with the load plan's shoppers.

The plan (shoppers per phase, think time, the rush's length) is the one the Locust at
LOCUST_URL runs: it serves it at /paygate/plan (loadtest/locustfile.py), since the app's
image holds no loadtest/ and `make rehearse` writes the plan beside the locustfile.
Starting a phase stops what Locust runs (a running shape would otherwise stop the next
run when it is swapped out), resets Locust's statistics and swarms the phase's shoppers,
so its figures are this phase's alone. The rush is Locust's RushThenQuiet shape: Locust
itself drops the load to the quiet count after the rush, whichever app worker started it.
Which phase runs, since when and by whom is kept in Redis, shared by every worker.

Each phase also sets the contention knob to the plan's value for it: the rush runs at its own
(the retry storm is bistable there, loadtest/plan.py), every other phase and a stop at the one
the plan was measured at. The persona of a running phase can change without a pause in the
load (PATCH: Locust's /paygate/persona), so the room sees a fix take hold on the same load.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Literal, cast, get_args

import redis
from pydantic import BaseModel, ConfigDict

from .errors import AppError, StateUnavailable
from .validation import Actor

Phase = Literal["healthy", "subtle", "collapse", "rush", "stop"]
PHASES = get_args(Phase)
Persona = Literal["shopper", "retrying", "backoff"]
PERSONAS = get_args(Persona)
# Locust's names: the user class of loadtest/locustfile.py, the rush's shape, the retries' row.
USER_CLASS, RUSH_SHAPE, RETRY_ROW = "CheckoutUser", "RushThenQuiet", "/payment/initiate [retry]"
# Locust's web UI caches /stats/requests for 2 s (locust.web.DEFAULT_CACHE_TIME): until then after a change,
# whether Locust runs what the console started cannot be told.
SETTLE_SECONDS = 3.0
# Seconds to connect and for each read. A stop waits for Locust's users to end (its workers', under compose).
READ_TIMEOUT = 3.0
CONTROL_TIMEOUT = 8.0


class LoadChange(BaseModel):
    """PUT /admin/load: start a phase (or stop), with a persona."""

    model_config = ConfigDict(strict=True, extra="forbid")
    phase: Phase
    persona: Persona = "shopper"
    actor: Actor = "facilitator"


class PersonaChange(BaseModel):
    """PATCH /admin/load: the running phase's shoppers take up another persona."""

    model_config = ConfigDict(strict=True, extra="forbid")
    persona: Persona
    actor: Actor = "facilitator"


class NoPhaseRunning(AppError):
    status, code = 409, "no_phase_running"
    message = "No load phase runs: start one before changing its persona."


class LocustUnavailable(AppError):
    status, code = 503, "locust_unavailable"
    message = "Locust cannot be reached: the load cannot be read or changed now."


class LocustClient:
    """Locust's web UI REST API at `url`, every call bounded by a short timeout."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def _call(self, path: str, form: list[tuple[str, str]] | None = None, timeout=READ_TIMEOUT) -> bytes:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.url + path, data=data, method="POST" if form is not None else "GET")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.read()
        except urllib.error.HTTPError as err:
            raise LocustUnavailable(f"Locust at {self.url} answered {path} with HTTP {err.code}.",
                                    locust_url=self.url) from None
        except (OSError, ValueError) as err:  # refused, timed out, reset, a bad URL
            raise LocustUnavailable(f"Locust at {self.url} does not answer ({_reason(err)}).",
                                    locust_url=self.url) from None

    def _json(self, path: str, **kwargs) -> dict:
        raw = self._call(path, **kwargs)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise LocustUnavailable(f"Locust at {self.url} answered {path} with something that is not JSON.",
                                    locust_url=self.url)
        return body

    def plan(self) -> dict:
        """The load plan Locust runs (its /paygate/plan, served by the workshop's locustfile)."""
        plan = self._json("/paygate/plan")
        phases, contention = plan.get("phases"), plan.get("contention_ms")
        numbers = [*(phases.get(p) for p in PHASES if p != "stop"), plan.get("think_seconds"), plan.get("rush_seconds"),
                   plan.get("quiet_users")] if isinstance(phases, dict) else [None]
        knobs = [contention.get(p) for p in PHASES] if isinstance(contention, dict) else [None]
        if not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers) or \
                not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 1000 for c in knobs):
            raise LocustUnavailable(f"Locust at {self.url} serves no load plan: start it with loadtest/locustfile.py.",
                                    locust_url=self.url)
        return plan

    def stats(self) -> dict:
        """Locust's state and request statistics (/stats/requests)."""
        return self._json("/stats/requests")

    def stop(self) -> None:
        """Stop every user and any running shape."""
        self._call("/stop", timeout=CONTROL_TIMEOUT)

    def swarm(self, form: list[tuple[str, str]]) -> dict:
        """Start users (or a shape) as the web UI's Start button does."""
        answer = self._json("/swarm", form=form, timeout=CONTROL_TIMEOUT)
        if answer.get("success") is not True:
            raise LocustUnavailable(f"Locust refused to start: {answer.get('message', 'no reason given')}",
                                    locust_url=self.url)
        return answer

    def reset_stats(self) -> None:
        """Zero the statistics and the failures."""
        self._call("/stats/reset", timeout=CONTROL_TIMEOUT)

    def persona(self, persona: str) -> None:
        """The running users take up `persona` at their next try (the workshop's locustfile)."""
        answer = self._json("/paygate/persona", form=[("persona", persona)], timeout=CONTROL_TIMEOUT)
        if answer.get("success") is not True:
            raise LocustUnavailable(f"Locust refused the persona: {answer.get('message', 'no reason given')}",
                                    locust_url=self.url)


def _reason(err: Exception) -> str:
    reason = getattr(err, "reason", None) or err
    return str(reason) or type(err).__name__


class LoadPhases:
    """Start and read the load phases; `locust` is None when LOCUST_URL is unset."""

    def __init__(self, locust: LocustClient | None, rds: redis.Redis, prefix: str,
                 set_contention: Callable[[int, str], object], clock=time.time):
        self.locust, self.redis, self.key, self.clock = locust, rds, prefix + "load", clock
        self.set_contention = set_contention  # (ms per write in flight, actor): the knob, for every worker

    def _client(self) -> LocustClient:
        if self.locust is None:
            raise LocustUnavailable("LOCUST_URL is not set: the app does not know which Locust to drive.")
        return self.locust

    def start(self, change: LoadChange) -> dict:
        """Run `change.phase` with `change.persona` (stop: end the load), then answer as `state()`."""
        locust = self._client()
        plan = locust.plan()
        self._check_redis()
        locust.stop()
        self.set_contention(plan["contention_ms"][change.phase], change.actor)
        if change.phase != "stop":
            # Reset between the stop and the start, when no user runs: every figure Locust shows from now
            # on is this phase's, its shoppers' first page loads included.
            locust.reset_stats()
            locust.swarm(self._form(change, plan))
        self._save({"phase": change.phase, "persona": change.persona, "actor": change.actor,
                    "started_at": self.clock(), "users": 0 if change.phase == "stop" else plan["phases"][change.phase]},
                   "phase")
        return self.state(plan)

    def switch_persona(self, change: PersonaChange) -> dict:
        """The running phase goes on with `change.persona`: no restart, no pause in the load."""
        locust = self._client()
        record = self._record()
        if record.get("phase") in (None, "stop"):
            raise NoPhaseRunning()
        locust.persona(change.persona)
        self._save({**record, "persona": change.persona}, "persona")
        return self.state()

    def _save(self, record: dict, what: str) -> None:
        """Keep the phase record in Redis, once Locust already runs `what` (the phase, the persona)."""
        try:
            self.redis.set(self.key, json.dumps(record))
        except redis.RedisError:
            raise StateUnavailable(f"Locust runs the {what}, but Redis is unreachable: the console cannot show it.") \
                from None

    def _record(self, required: bool = True) -> dict:
        """The phase record in Redis ({} when none). Unreachable Redis: StateUnavailable when `required`,
        else {} (what Locust says still tells what runs)."""
        try:
            raw = cast(str | None, self.redis.get(self.key))
        except redis.RedisError:
            if required:
                raise StateUnavailable("Redis is unreachable: the load phase cannot be read now.") from None
            raw = None
        return json.loads(raw) if raw else {}

    def _check_redis(self) -> None:
        try:
            self.redis.ping()
        except redis.RedisError:
            raise StateUnavailable("Redis is unreachable: the load phase cannot be recorded now.") from None

    @staticmethod
    def _form(change: LoadChange, plan: dict) -> list[tuple[str, str]]:
        users = plan["phases"][change.phase]
        form = [("user_classes", USER_CLASS), ("think_time", str(plan["think_seconds"])),
                ("persona", change.persona)]
        if change.phase == "rush":
            # The shape runs the rush, then holds the form's user count: the quiet phase.
            return form + [("shape_class", RUSH_SHAPE), ("user_count", str(plan["quiet_users"])),
                           ("spawn_rate", str(users))]
        # Every shopper at once: the phase starts now, not after a ramp.
        return form + [("shape_class", "Default"), ("user_count", str(users)), ("spawn_rate", str(users))]

    def state(self, plan: dict | None = None) -> dict:
        """The phase running now, its shoppers and elapsed time, what Locust says, and the plan."""
        locust = self._client()
        plan = plan or locust.plan()
        stats = locust.stats()
        record = self._record(required=False)
        phase = record.get("phase")
        running = stats.get("state") in ("spawning", "running")
        elapsed = round(self.clock() - record["started_at"], 1) if record.get("started_at") else None
        users, stage = record.get("users"), None
        if phase == "rush" and elapsed is not None:
            stage = "rush" if elapsed < plan["rush_seconds"] else "quiet"
            users = plan["phases"]["rush"] if stage == "rush" else plan["quiet_users"]
        if record.get("started_at") and self.clock() - record["started_at"] < SETTLE_SECONDS:
            matches = None  # Locust's figures may still be from before the change
        elif phase in (None, "stop"):
            matches = not running
        else:  # the phase's shoppers, or on their way there
            matches = running and (stats.get("state") == "spawning" or stats.get("user_count") == users)
        rows = {row.get("name"): row for row in stats.get("stats", []) if isinstance(row, dict)}
        total = rows.get("Aggregated", {})
        return {
            "phase": phase, "persona": record.get("persona"), "users": users, "stage": stage,
            "started_at": record.get("started_at"), "elapsed_seconds": elapsed if phase != "stop" else None,
            "actor": record.get("actor"),
            # False when someone pressed Stop, Start or Edit in Locust's own UI since (or Locust could not
            # start): the console says so. None in the first seconds after a change.
            "matches_locust": matches,
            "locust": {"url": locust.url, "state": stats.get("state"), "user_count": stats.get("user_count", 0),
                       "requests": total.get("num_requests", 0), "failures": total.get("num_failures", 0),
                       "fail_ratio": stats.get("fail_ratio", 0.0), "rps": round(stats.get("total_rps", 0.0), 2),
                       "retries": rows.get(RETRY_ROW, {}).get("num_requests", 0)},
            "plan": {"phases": plan["phases"], "contention_ms": plan["contention_ms"], "think_seconds": plan["think_seconds"],
                     "rush_seconds": plan["rush_seconds"], "quiet_users": plan["quiet_users"],
                     "source": plan.get("source"), "personas": list(PERSONAS)},
        }
