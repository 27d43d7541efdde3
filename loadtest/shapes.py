"""The workshop's load shape, picked in the Locust web UI (`class-picker` is on in locust.conf)
or by the facilitator console's *rush* phase (`PUT /admin/load {"phase": "rush"}`).

The UI's shape menu offers "Default" (the user count typed in the form) and RushThenQuiet.
Its shopper counts come from the load plan (loadtest/plan.json from `make rehearse`, else the
reference machine's), read when Locust starts. Headless, `-f loadtest/locustfile.py,loadtest/shapes.py`
runs it.
"""

from __future__ import annotations

from locust import LoadTestShape

from loadtest import plan as plans

PLAN = plans.load()


class RushThenQuiet(LoadTestShape):
    """The rush's shoppers for RUSH_SECONDS, then the quiet count until Stop: the collapse, then the
    slow recovery (or none, for retrying shoppers) — a metastable failure, live.

    The quiet count is the form's *Number of users* (it opens at the healthy phase's shoppers), so the
    shape reads Locust's common options: `use_common_options` says so, and keeps Locust from warning
    that they are ignored.
    """

    use_common_options = True

    def tick(self):
        """(users, spawn rate) for now: the rush, then the quiet count, held."""
        # Locust stops users at the spawn rate: the rush's own rate makes the drop a single step.
        rate = PLAN.rush_users
        if self.get_run_time() < plans.RUSH_SECONDS:
            return PLAN.rush_users, rate
        return self.quiet_users(), rate

    def quiet_users(self) -> int:
        """The user count of the form that started the shape (Locust's /swarm keeps it as `users`), else
        the command line's, else the plan's quiet count."""
        options = self.runner.environment.parsed_options if self.runner else None
        for name in ("users", "num_users"):
            value = getattr(options, name, None) if options else None
            if value:
                return int(value)
        return PLAN.quiet_users
