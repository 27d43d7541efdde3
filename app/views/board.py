"""The participants' live board: a page and the JSON it polls (works without Grafana)."""

from __future__ import annotations

import time

import redis
from flask import Blueprint, jsonify, render_template

from .. import board as stats
from ..errors import AppError
from ..kit import kit

bp = Blueprint("board", __name__, url_prefix="/board")


class BoardUnavailable(AppError):
    status, code, message = 503, "board_unavailable", "Redis is unreachable: the board's figures cannot be read now."


@bp.get("")
def board_page():
    """The live board page (its script polls /board/data every second)."""
    return render_template("board.html", mode=kit().runtime.snapshot().mode)


@bp.get("/data")
def board_data():
    """Mode, OTP success rate, ready-time p95, writes in flight and 5 minutes of history.

    Counts come from Redis, so they cover every worker and replica.
    """
    k = kit()
    snap = k.runtime.snapshot()
    now = time.time()
    try:
        summary = k.board.summary(now)
        changes = [{"at": e["at"], "from": e["from"], "to": e["to"], "actor": e.get("actor")}
                   for e in k.runtime.history()
                   if e.get("kind") == "mode" and e["at"] >= now - stats.HISTORY_SECONDS]
    except redis.RedisError:
        raise BoardUnavailable(mode=snap.mode) from None
    summary["current"]["inflight_writes"] = k.inflight.count()
    return jsonify(
        now=now,
        mode=snap.mode,
        mode_since=snap.since,
        redis_ok=snap.redis_ok,
        otp_timeout_ms=snap.knobs["otp_timeout_ms"],
        success_target=stats.SUCCESS_TARGET,
        window_seconds=stats.WINDOW_SECONDS,
        history_seconds=stats.HISTORY_SECONDS,
        **summary,
        mode_changes=changes[::-1],  # oldest first, like the history points
    )
