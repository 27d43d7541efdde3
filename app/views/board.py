"""The participants' live board: a page and the JSON it polls (works without Grafana)."""

from __future__ import annotations

import io
import re
import time
from urllib.parse import urlencode

import segno
from flask import Blueprint, Response, jsonify, render_template, request

from .. import board as stats
from ..errors import ValidationFailed
from ..kit import kit
from ..lan import checkout_url, room_port

bp = Blueprint("board", __name__, url_prefix="/board")
# A standalone SVG document (with its namespace: browsers draw it as an <img>), dark on white.
QR_STYLE = {"scale": 8, "border": 2, "dark": "#0f141b", "light": "#ffffff"}
# OpenTelemetry trace ids: 32 hex digits (Zipkin also knows 16).
TRACE_ID = re.compile(r"[0-9a-f]{16}(?:[0-9a-f]{16})?")
# Zipkin Lens searches only when the URL holds a lookback, its end and a limit.
FAILED_SEARCH = {"serviceName": "paygate", "annotationQuery": "paygate.status=otp_unavailable",
                 "lookback": "15m", "limit": "10"}


@bp.get("")
def board_page():
    """The live board page (its script polls /board/data every second), with the checkout's address for phones."""
    page = render_template("board.html", mode=kit().runtime.snapshot().mode, checkout_url=_checkout_url())
    return Response(page, headers={"Cache-Control": "no-store"})  # the mode in it changes at any second


@bp.get("/qr.svg")
def checkout_qr():
    """A QR code of the checkout's address on the room's network, drawn on the server (no script, no CDN)."""
    svg = io.BytesIO()
    segno.make(_checkout_url(), error="m").save(svg, kind="svg", **QR_STYLE)
    return Response(svg.getvalue(), mimetype="image/svg+xml", headers={"Cache-Control": "no-cache"})


def _checkout_url() -> str:
    return checkout_url(kit().settings.public_url, room_port())  # never from the Host header


def _trace_ui(knobs) -> str | None:
    """The trace UI's base URL, ending in "/", once the facilitator has revealed traces; else None."""
    base = kit().settings.traces_ui_url
    if not (base and knobs.get("reveal_traces")):
        return None
    return base if base.endswith("/") else base + "/"


def _trace_url(ui: str | None, trace_id: str | None) -> str | None:
    return f"{ui}traces/{trace_id}" if ui and trace_id else None


@bp.get("/data")
def board_data():
    """Mode, OTP success, ready-time p95, writes in flight, load and retries, with 5 minutes of history.

    Counts come from Redis, so they cover every worker and replica.
    """
    k = kit()
    snap = k.runtime.snapshot()
    now = time.time()
    summary = k.board.summary(now, mode=snap.mode)
    summary["current"]["inflight_writes"] = k.inflight.count()
    ui = _trace_ui(snap.knobs)
    latest = summary.pop("latest_failed_trace")
    answer = jsonify(
        now=now,
        mode=snap.mode,
        mode_since=snap.since,
        redis_ok=snap.redis_ok,
        otp_timeout_ms=snap.knobs["otp_timeout_ms"],
        success_target=stats.SUCCESS_TARGET,
        window_seconds=stats.WINDOW_SECONDS,
        history_seconds=stats.HISTORY_SECONDS,
        ready_top_ms=stats.TOP_BUCKET_MS,
        **summary,
        traces={"revealed": ui is not None,
                "latest_failed_url": _trace_url(ui, latest),
                "failed_search_url": ui and f"{ui}?{urlencode({**FAILED_SEARCH, 'endTs': int(now * 1000)})}"},
    )
    answer.headers["Cache-Control"] = "no-store"  # a new answer every second
    return answer


@bp.get("/trace-link")
def trace_link():
    """The link to one checkout's trace, for the checkout page's support details: null until revealed.

    No Redis call: the reveal knob is in the worker's memory, so a failing checkout can always ask.
    """
    trace_id = request.args.get("trace_id", "").lower()
    if not TRACE_ID.fullmatch(trace_id):
        raise ValidationFailed({"trace_id": "must be 16 or 32 hexadecimal digits"})
    ui = _trace_ui(kit().runtime.snapshot().knobs)
    return jsonify(revealed=ui is not None, trace_url=_trace_url(ui, trace_id))
