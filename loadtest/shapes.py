"""Workshop load shapes, picked in the Locust web UI (`class-picker` is on in locust.conf).

The UI's shape menu offers "Default" (type a user count by hand) and these. Their
shopper counts come from the load plan (loadtest/plan.json from `make rehearse`,
else the reference machine's), read when Locust starts. Headless,
`-f loadtest/locustfile.py,loadtest/shapes.py` runs the first one.
"""

from __future__ import annotations

from locust import LoadTestShape

from loadtest import plan as plans

PLAN = plans.load()


class _Stages(LoadTestShape):
    """Runs `stages`: (until second, users, spawn rate); after the last, stops or (hold_last) keeps it."""

    abstract = True
    stages: tuple[tuple[int, int, float], ...] = ()
    hold_last = False

    def tick(self):
        """The (users, spawn rate) for now; None when the last stage is over and not held."""
        run_time = self.get_run_time()
        for until, users, rate in self.stages:
            if run_time < until:
                return users, rate
        if self.hold_last and self.stages:
            return self.stages[-1][1:]
        return None


class WorkshopRamp(_Stages):
    """One shopper, then the healthy, subtle and collapse phases' shoppers, two minutes each;
    the collapse load holds until the facilitator presses Stop."""

    abstract = False
    hold_last = True
    stages = ((60, 1, 1), (180, PLAN.healthy_users, 1), (300, PLAN.subtle_users, 2),
              (420, PLAN.collapse_users, 5))


class RushThenQuiet(_Stages):
    """The rush's shoppers for one minute, then one shopper for two: the collapse, then the
    slow recovery (or none) — a metastable failure, live."""

    abstract = False
    # Locust stops users at the spawn rate: the rush's own rate makes the drop a single step.
    stages = ((60, PLAN.rush_users, 10), (180, 1, PLAN.rush_users))
