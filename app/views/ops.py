"""Operational endpoints: liveness, readiness, effective config, metrics."""

from __future__ import annotations

import os
import platform
from importlib.metadata import version

import redis
from flask import Blueprint, Response, jsonify

from .. import metrics
from ..errors import NotReady, StoreUnavailable
from ..kit import kit

bp = Blueprint("ops", __name__)


@bp.get("/health")
def health():
    """Liveness: green while the process runs (even during the silent failure)."""
    return jsonify(status="healthy")


@bp.get("/ready")
def ready():
    """Readiness: the payment store and Redis both answer; 503 names the one that does not."""
    k = kit()
    store = k.backends.store.kind
    checks = {}
    try:
        k.payments.ping()
        checks[store] = "ok"
    except StoreUnavailable as err:
        checks[store] = f"unavailable ({err.details.get('detail', 'error')})"
    try:
        k.backends.redis.ping()
        checks["redis"] = "ok"
    except redis.RedisError as err:
        checks["redis"] = f"unavailable ({type(err).__name__}); serving the last known mode"
    if all(v == "ok" for v in checks.values()):
        return jsonify(status="ready", checks=checks)
    failing = [name for name, v in checks.items() if v != "ok"]
    raise NotReady(f"Unavailable: {', '.join(failing)}.", checks=checks)


@bp.get("/debug/config")
def debug_config():
    """The effective configuration: mode, knobs, timeouts, worker pid, versions (secrets redacted)."""
    k = kit()
    snap = k.runtime.snapshot()
    return jsonify(
        mode=snap.mode,
        knobs=snap.knobs,
        redis_ok=snap.redis_ok,
        backends={"store": k.backends.store.kind, "redis": k.backends.redis_kind},
        settings=k.settings.redacted(),
        worker_pid=os.getpid(),
        versions={"paygate": version("paygate-chaos-kit"), "python": platform.python_version(),
                  **{name: version(name) for name in ("flask", "gunicorn", "pymongo", "redis")}},
    )


@bp.get("/metrics")
def metrics_endpoint():
    """Prometheus text, aggregated over all gunicorn workers (each worker's sync loop keeps its gauges current)."""
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)
