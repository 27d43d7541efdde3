"""Workshop load shapes, picked in the Locust web UI (`class-picker` is on in locust.conf).

The UI's shape menu offers "Default" (type a user count by hand) and these.
Headless, `-f loadtest/locustfile.py,loadtest/shapes.py` runs the first one.
"""

from __future__ import annotations

from locust import LoadTestShape


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
    """1 → 5 → 10 → 40 shoppers over six minutes, then 40 until the facilitator presses Stop:
    flip to `audit` at any stage and watch."""

    abstract = False
    hold_last = True
    stages = ((60, 1, 1), (150, 5, 1), (240, 10, 2), (360, 40, 5))


class RushThenQuiet(_Stages):
    """40 shoppers for one minute, then one for two: the collapse, then the slow recovery."""

    abstract = False
    stages = ((60, 40, 10), (180, 1, 10))
