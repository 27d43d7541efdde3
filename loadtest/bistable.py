"""The retry storm's range on this machine: how many retrying shoppers hold from quiet yet stay failed after a rush.

A hysteresis loop, the way any bistable system is measured. In `audit`, at the
rush phase's contention, shoppers who try again at once until it works are added
a few at a time until the OTP step tips (the way up, from quiet). Then comes the
rush (40 more for 30 s), and shoppers are taken away a few at a time until it
recovers (the way down). A count is in the range when it held on the way up
(≥ 90 % of tries got their OTP) and stayed failed on the way down (≤ 20 %): the
same load, two stable states. The console's rush leaves the middle of the range
behind (the plan's `quiet_users`).

A rehearsal looks at each count for one window after a settling time; the
benchmark (bench/RESULTS.md, section n) starts every count afresh and watches it
for 3 minutes. Success counts every try, from the kit's /metrics, as the board does
(behind compose's balancer, one replica's answer: a sample of the room's tries).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import traffic
from .client import Admin
from .observe import scrape, total

LADDER = (7, 9, 11, 13, 15)
HOLDS, FAILED = 0.90, 0.20
RUSH_USERS, RUSH_S = 40, 30
# A count is looked at for a window after settling: just after a step the state is the last count's, and
# the way down is where that misleads. With 10 s of settling, 7 shoppers read 3 % (the model says 7 cannot
# hold the failing state: 7 tries in flight, 8 needed to miss the deadline) and the range came out 7–9.
SETTLE_S, WINDOW_S = 20.0, 30.0
OTP = "paygate_otp_generation_total"


@dataclass(frozen=True)
class Look:
    """One count on one way of the loop: tries that got their OTP and tries that timed out in the window."""

    way: str  # "up" (from quiet) or "down" (after the rush)
    users: int
    ok: int
    timeout: int
    inflight: int  # writes in flight at the window's end

    @property
    def rate(self) -> float | None:
        tries = self.ok + self.timeout
        return self.ok / tries if tries else None

    def row(self) -> dict:
        """The look as the plan keeps it."""
        rate = self.rate
        return {"way": self.way, "users": self.users, "tries": self.ok + self.timeout,
                "otp_success": None if rate is None else round(rate, 3), "inflight": self.inflight}


def held(look: Look) -> bool:
    """The way up: at least 90 % of the window's tries got their OTP (a window without tries proves nothing)."""
    return look.rate is not None and look.rate >= HOLDS


def stayed_failed(look: Look) -> bool:
    """The way down: at most 20 % of the window's tries got their OTP."""
    return look.rate is not None and look.rate <= FAILED


def bistable(looks: Sequence[Look]) -> list[int]:
    """The counts that held on the way up and stayed failed on the way down, ascending."""
    up = {look.users for look in looks if look.way == "up" and held(look)}
    down = {look.users for look in looks if look.way == "down" and stayed_failed(look)}
    return sorted(up & down)


def middle(counts: Sequence[int], default: int) -> int:
    """The count the room is left with after the rush: the middle of the range (the lower of two middles), or
    `default` when there is no range."""
    return sorted(counts)[(len(counts) - 1) // 2] if counts else default


class Crowds:
    """Retrying shoppers in stacked crowds, each with its own stop: grow by a crowd, shrink by the last ones.

    Shoppers who stay are never restarted between counts: a pause of every shopper at once would be a
    lull of its own, and could let the failing state go.
    """

    def __init__(self, url: str, think_s: float, longest_s: float) -> None:
        self._url, self._think_s, self._longest_s = url, think_s, longest_s
        self._crowds: list[tuple[int, threading.Event]] = []
        self._threads: list[threading.Thread] = []

    @property
    def size(self) -> int:
        return sum(n for n, _ in self._crowds)

    def resize(self, users: int) -> None:
        """Stop the newest crowds until at most `users` remain, then start one crowd for the rest."""
        while self.size > users:
            self._crowds.pop()[1].set()
        if (more := users - self.size) > 0:
            stop = threading.Event()
            # Retry until it works (tries=0); every run is bounded in time all the same.
            thread = threading.Thread(target=traffic.run, daemon=True, name=f"crowd-{len(self._threads)}",
                                      args=(self._url, more, self._longest_s, self._think_s, None, stop, 0))
            self._crowds.append((more, stop))
            self._threads.append(thread)
            thread.start()

    def stop(self, join_s: float = 30.0) -> None:
        """Stop every shopper and wait for the tries in flight (each ends at the deadline)."""
        self.resize(0)
        for thread in self._threads:
            thread.join(join_s)


def longest_s(ladder: Sequence[int], settle_s: float, window_s: float, rush_s: float) -> float:
    """The loop's longest run: every count both ways, and the rush."""
    return 2 * len(ladder) * (settle_s + window_s) + rush_s


def measure(admin: Admin, contention_ms: int, ladder: Sequence[int] = LADDER, think_s: float = 1.0,
            rush_users: int = RUSH_USERS, rush_s: float = RUSH_S, settle_s: float = SETTLE_S,
            window_s: float = WINDOW_S, log: Callable[[str], None] = print) -> list[Look]:
    """The loop against a running kit: its looks, the way up then the way down.

    The kit runs `audit` at `contention_ms` for the loop (with `ttl_seconds`, so a crash flips it back)
    and is left in `original` with its contention knob as it was.
    """
    bound = longest_s(ladder, settle_s, window_s, rush_s)
    before = admin.knobs()["contention_ms_per_write"]

    def look(way: str, users: int) -> Look:
        time.sleep(settle_s)
        first = scrape(admin.url, admin.token)
        time.sleep(window_s)
        last = scrape(admin.url, admin.token)
        found = Look(way, users, int(total(last, OTP, result="success") - total(first, OTP, result="success")),
                     int(total(last, OTP, result="timeout") - total(first, OTP, result="timeout")),
                     int(total(last, "paygate_inflight_writes")))
        log(f"  {way:<4} {users:>3} retrying shoppers: "
            + (f"{100 * found.rate:.0f} % of {found.ok + found.timeout} tries" if found.rate is not None
               else "no tries") + f"; writes in flight: {found.inflight}")
        return found

    crowds = Crowds(admin.url, think_s, bound)
    admin.patch_knobs(contention_ms_per_write=contention_ms)
    admin.set_mode("audit", ttl_seconds=int(bound + 60))
    looks: list[Look] = []
    try:
        for users in sorted(ladder):
            crowds.resize(users)
            looks.append(look("up", users))
            if not held(looks[-1]):
                break
        up = [look.users for look in looks if held(look)]
        if up:
            crowds.resize(max(up))
            log(f"  rush: {rush_users} more for {rush_s:g} s")
            rush = Crowds(admin.url, think_s, rush_s)
            rush.resize(rush_users)
            time.sleep(rush_s)
            rush.stop()
            for users in reversed(up):
                crowds.resize(users)
                looks.append(look("down", users))
                if not stayed_failed(looks[-1]):
                    break
    finally:
        crowds.stop()
        admin.set_mode("original")
        admin.patch_knobs(contention_ms_per_write=before)
    return looks
