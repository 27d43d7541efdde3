"""Facilitator API: the persistence mode, the knobs, their history, the load phases, the token check."""

from __future__ import annotations

import functools
import hmac

from flask import Blueprint, jsonify, request

from ..config import KNOB_DEFAULTS, KNOB_LIMITS
from ..errors import Unauthorized
from ..kit import kit
from ..loadctl import LoadChange, LoadPhases, LocustClient, PersonaChange
from ..validation import KnobsPatch, ModeChange, ResetRequest
from .body import parse_body

PREFIX = "/admin"
bp = Blueprint("admin", __name__, url_prefix=PREFIX)


@bp.after_app_request
def _no_store(response):
    """Nothing under /admin may be kept by a browser or proxy: the console, the state, every error.

    App-wide and by path, not per blueprint: the console page lives in the pages
    blueprint, and a 404 or 405 under /admin matches no blueprint at all.
    """
    if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def admin_required(view):
    """Require `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        expected = kit().settings.admin_token
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise Unauthorized()
        return view(*args, **kwargs)

    return wrapper


def _mode_body():
    return jsonify(kit().runtime.snapshot().as_dict())


@bp.get("/db-mode")
def get_mode():
    """The persistence mode in force (public: participants may look)."""
    return _mode_body()


@bp.route("/db-mode", methods=["PUT", "POST"])
@admin_required
def set_mode():
    """Flip the persistence mode for every worker; `ttl_seconds` reverts it later."""
    change = parse_body(request, ModeChange)
    snap = kit().controls.set_mode(change.mode, change.actor, change.ttl_seconds)
    return jsonify(snap.as_dict())


def _knobs_body(snap):
    limits = {k: {"min": lo, "max": hi} for k, (lo, hi) in KNOB_LIMITS.items()}
    return jsonify(knobs=snap.knobs, defaults=KNOB_DEFAULTS, limits=limits)


@bp.get("/knobs")
def get_knobs():
    """The runtime knobs, their defaults and their limits."""
    return _knobs_body(kit().runtime.snapshot())


@bp.patch("/knobs")
@admin_required
def patch_knobs():
    """Change some knobs for every worker."""
    patch = parse_body(request, KnobsPatch)
    return _knobs_body(kit().controls.patch_knobs(patch.changes(), patch.actor))


@bp.post("/reset")
@admin_required
def reset():
    """Back to the start: mode original, default knobs."""
    req = parse_body(request, ResetRequest, allow_empty=True)
    snap = kit().controls.reset(req.actor)
    return jsonify(**snap.as_dict(), knobs=snap.knobs)


@bp.get("/history")
def history():
    """The last flips and knob changes, newest first."""
    return jsonify(events=kit().controls.history())


@bp.get("/token")
@admin_required
def check_token():
    """200 when the bearer token is the admin token (401 otherwise): the console checks a token as it is entered."""
    return jsonify(token="valid")


def _load_phases() -> LoadPhases:
    k = kit()
    url = k.settings.locust_url

    def set_contention(ms: int, actor: str) -> None:
        if k.runtime.snapshot().knobs["contention_ms_per_write"] != ms:  # no history entry for no change
            k.controls.patch_knobs({"contention_ms_per_write": ms}, actor)

    return LoadPhases(LocustClient(url) if url else None, k.backends.redis, k.settings.key_prefix, set_contention)


@bp.get("/load")
def get_load():
    """The load phase Locust runs now: its shoppers, persona and elapsed time, Locust's own figures, the plan."""
    return jsonify(_load_phases().state())


@bp.put("/load")
@admin_required
def set_load():
    """Start a load phase through Locust's REST API (its statistics reset), or stop the load."""
    change = parse_body(request, LoadChange)
    return jsonify(_load_phases().start(change))


@bp.patch("/load")
@admin_required
def switch_persona():
    """The running phase's shoppers take up another persona, with no pause in the load."""
    change = parse_body(request, PersonaChange)
    return jsonify(_load_phases().switch_persona(change))
