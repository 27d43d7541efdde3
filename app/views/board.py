"""The participants' live board: a page and the JSON it polls (works without Grafana)."""

from __future__ import annotations

import io
import time

import redis
import segno
from flask import Blueprint, Response, jsonify, render_template, request

from .. import board as stats
from ..errors import BoardUnavailable
from ..kit import kit
from ..lan import checkout_url

bp = Blueprint("board", __name__, url_prefix="/board")
# A standalone SVG document (with its namespace: browsers draw it as an <img>), dark on white.
QR_STYLE = {"scale": 8, "border": 2, "dark": "#0f141b", "light": "#ffffff"}


@bp.get("")
def board_page():
    """The live board page (its script polls /board/data every second), with the checkout's address for phones."""
    return render_template("board.html", mode=kit().runtime.snapshot().mode, checkout_url=_checkout_url())


@bp.get("/qr.svg")
def checkout_qr():
    """A QR code of the checkout's address on the room's network, drawn on the server (no script, no CDN)."""
    svg = io.BytesIO()
    segno.make(_checkout_url(), error="m").save(svg, kind="svg", **QR_STYLE)
    return Response(svg.getvalue(), mimetype="image/svg+xml", headers={"Cache-Control": "no-cache"})


def _checkout_url() -> str:
    return checkout_url(kit().settings.public_url, request.host_url)


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
