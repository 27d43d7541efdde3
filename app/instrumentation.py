"""Request timing for every route, labelled by route template (never by id)."""

from __future__ import annotations

import os
import time

from flask import Flask, g, request

from . import metrics


def init_app(app: Flask) -> None:
    """Time each request into paygate_http_request_duration_seconds; name the worker."""

    @app.before_request
    def _start_timer():
        g.request_started = time.perf_counter()

    @app.after_request
    def _observe(response):
        started = g.pop("request_started", None)
        if started is not None:
            route = request.url_rule.rule if request.url_rule else "unmatched"
            metrics.HTTP_DURATION.labels(route=route, method=request.method,
                                         status=str(response.status_code)).observe(time.perf_counter() - started)
        # Which worker answered: lets participants (and tests) see requests spread over workers.
        response.headers["X-Worker-Pid"] = str(os.getpid())
        return response
