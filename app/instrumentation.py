"""Request timing for every route, labelled by route template (never by id)."""

from __future__ import annotations

import os
import time
from http import HTTPStatus

from flask import Flask, g, request

from . import metrics

# Label values come from closed sets: each new value is a new series in every
# worker's file and in Prometheus, so whatever a client makes up folds into one.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STATUSES = frozenset(str(s.value) for s in HTTPStatus)
OTHER = "other"
UNMATCHED = "unmatched"


def method_label(method: str) -> str:
    """The request method, or "other" for anything but the usual seven."""
    return method if method in METHODS else OTHER


def status_label(status: int) -> str:
    """The status code, or "other" for a code HTTP does not define."""
    value = str(status)
    return value if value in STATUSES else OTHER


def init_app(app: Flask) -> None:
    """Time each request into paygate_http_request_duration_seconds; name the worker."""

    @app.before_request
    def _start_timer():
        g.request_started = time.perf_counter()

    @app.after_request
    def _observe(response):
        started = g.pop("request_started", None)
        if started is not None:
            route = request.url_rule.rule if request.url_rule else UNMATCHED
            # Label order as declared in app/metrics.py: route, method, status.
            metrics.child(metrics.HTTP_DURATION, route, method_label(request.method),
                          status_label(response.status_code)).observe(time.perf_counter() - started)
        # Which worker answered: lets participants (and tests) see requests spread over workers.
        response.headers["X-Worker-Pid"] = str(os.getpid())
        return response
