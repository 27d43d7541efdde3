"""Operational endpoints: liveness, readiness, effective config, metrics."""

from __future__ import annotations

import hmac
import os
import platform
import threading
import time
from importlib.metadata import version

from flask import Blueprint, Response, jsonify, request

from .. import metrics
from ..errors import NotReady, StateUnavailable, StoreUnavailable
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
        k.sync.ping()
        checks["redis"] = "ok"
    except StateUnavailable as err:
        checks["redis"] = err.message
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


class _CachedExposition:
    """This worker's last /metrics rendering, made again at most once every `max_age` seconds.

    Aggregating every worker's metric files costs tens of milliseconds and a large answer: a few
    clients scraping in a loop would take the CPU from checkouts. Scrapes that arrive while a
    rendering is made wait for it (one lock) and share it. Prometheus scrapes every second at most,
    so an answer younger than a second is as fresh as it needs; a scrape with the admin token (the
    tests, the facilitator) always gets a fresh one.
    """

    def __init__(self, max_age: float = 1.0):
        self.max_age, self.lock = max_age, threading.Lock()
        self.rendered_at, self.body, self.content_type = float("-inf"), b"", ""

    def get(self, fresh: bool = False) -> tuple[bytes, str]:
        """(body, content type), rendered now if `fresh` or the last one is too old."""
        with self.lock:
            if fresh or time.monotonic() - self.rendered_at >= self.max_age:
                self.body, self.content_type = metrics.exposition()
                self.rendered_at = time.monotonic()
            return self.body, self.content_type


_exposition = _CachedExposition()


def _has_admin_token() -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(),
                                                              kit().settings.admin_token.encode())


@bp.get("/metrics")
def metrics_endpoint():
    """Prometheus text, aggregated over all gunicorn workers (each worker's sync loop keeps its gauges current);
    at most a second old, fresh with the admin token."""
    body, content_type = _exposition.get(fresh=_has_admin_token())
    return Response(body, content_type=content_type)
