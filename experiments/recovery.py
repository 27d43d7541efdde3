"""metastable-recovery's action and probe: the rush ends, then the room's OTPs strictly after it.

The board's "current" figure is whatever the last 10 s held when it is read, so a look
placed by pauses measures a window that slides with every delay. Here the action that ends
the rush notes when it did (Chaos Toolkit runs every activity of a run in one process), and
the probe sums the board's per-5-s history over a window fixed relative to that moment.
"""

from __future__ import annotations

import time

import requests

# When this run's rush ended (time.time()), set by end_the_rush.
_rush_ended_at: float | None = None
# The sync loop adds the counts to Redis a few times a second: a chunk is complete a little after it ends.
FLUSH_SLACK_SECONDS = 2.0


def end_the_rush(locust_url: str, spawn_rate: int, think_time: float, users: int = 1, persona: str = "shopper",
                 timeout: float = 10.0) -> dict:
    """All but `users` shoppers leave (one step: Locust stops users at the spawn rate); notes the moment."""
    global _rush_ended_at
    response = requests.post(locust_url.rstrip("/") + "/swarm", timeout=timeout,
                             data={"user_count": users, "spawn_rate": spawn_rate, "think_time": think_time,
                                   "persona": persona})
    response.raise_for_status()
    _rush_ended_at = time.time()
    return {"rush_ended_at": _rush_ended_at, "locust": response.json()}


def room_otp(kit_url: str, after_seconds: float, window_seconds: float, timeout: float = 10.0) -> dict:
    """OTP success over [rush end + after_seconds, + window_seconds], from the board's history.

    Before the rush (the first look at the steady state) it is the board's current 10 s.
    Only the 5-s history points wholly inside the window count; `from`/`to` say which span they cover.
    """
    url = kit_url.rstrip("/") + "/board/data"
    if _rush_ended_at is None:
        board = requests.get(url, timeout=timeout).json()
        return {"measured": "the board's last 10 s", **_rate(board["current"]),
                "inflight_writes": board["current"].get("inflight_writes")}
    start = _rush_ended_at + after_seconds
    end = start + window_seconds
    time.sleep(max(0.0, end + FLUSH_SLACK_SECONDS - time.time()))
    board = requests.get(url, timeout=timeout).json()
    return window_after(board, _rush_ended_at, after_seconds, window_seconds)


def window_after(board: dict, rush_ended_at: float, after_seconds: float, window_seconds: float) -> dict:
    """The OTP counts of the board's history points that lie wholly in the window after the rush."""
    start, end = rush_ended_at + after_seconds, rush_ended_at + after_seconds + window_seconds
    step = board["history"]["step_seconds"]
    inside = [p for p in board["history"]["points"] if p["t"] >= start and p["t"] + step <= end]
    counts = {"otp_success": sum(p["otp_success"] for p in inside), "otp_timeout": sum(p["otp_timeout"] for p in inside)}
    return {"measured": "after the rush",
            "from_seconds": round(inside[0]["t"] - rush_ended_at, 1) if inside else None,
            "to_seconds": round(inside[-1]["t"] + step - rush_ended_at, 1) if inside else None,
            **_rate(counts), "inflight_writes": board["current"].get("inflight_writes")}


def _rate(counts: dict) -> dict:
    success, timeout = counts.get("otp_success", 0), counts.get("otp_timeout", 0)
    return {"otp_success": success, "otp_timeout": timeout,
            "otp_success_rate": round(success / (success + timeout), 4) if success + timeout else None}
