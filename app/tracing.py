"""Traces: every request and the write behind it as OpenTelemetry spans, exported to Zipkin.

One trace of an `audit` checkout tells the workshop's lesson in a picture: the
request answers at the deadline, `otp.wait_ready` is cut there and marked as an
error, while `payment.write` goes on (a contention wait of n × c, then the audit
writes) after the shopper already has their answer.

Export never delays a checkout: spans go to a bounded queue that a background
thread sends to Zipkin (JSON v2) in batches. When Zipkin is down or hung the
queue fills and further spans are dropped and counted
(`paygate_trace_spans_dropped_total`), never queued without bound; a failed
batch is counted the same way and logged once a minute, not once a second.

The provider is made once per process, in the process that serves requests:
gunicorn loads the app in each worker after the fork, so each worker has its
own export thread. `TRACING=off` installs nothing (every span below is then
OpenTelemetry's no-op); an unset OTEL_EXPORTER_ZIPKIN_ENDPOINT keeps the spans
(and `X-Trace-Id`) but exports nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from . import metrics

if TYPE_CHECKING:
    from flask import Flask
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

    from .config import Settings

log = logging.getLogger("paygate.tracing")
tracer = trace.get_tracer("paygate")

# Spans waiting for export, per worker: at 4 a checkout (the store's calls ride on them as leaves,
# see spanned) well over a minute of a busy room.
# Past it spans are dropped (and counted), so a dead Zipkin costs a bounded amount of memory.
MAX_QUEUE = 8192
# One POST carries up to this many (a busy worker sends about one a second): each POST costs the
# worker and Zipkin a fixed share of CPU, whatever it carries.
BATCH = 2048
EXPORT_EVERY_MS = 1000
# A hung Zipkin holds the export thread (never a request) this long per batch.
EXPORT_TIMEOUT_S = 2
WARN_EVERY_S = 60.0

# A graceful stop sends what is queued, for at most this long (a hung Zipkin must not hold a worker's exit).
FLUSH_ON_STOP_MS = 3000

_provider: TracerProvider | None = None
_export = None
_provider_lock = threading.Lock()

F = TypeVar("F", bound=Callable[..., Any])


# The attribute that carries a span's leaves (see spanned); the exporter turns it into spans.
LEAVES = "paygate.leaves"

# Probes, scrapes and the board's once-a-second poll (per viewer) would bury the checkouts' traces.
UNTRACED_PATHS = frozenset({"/health", "/ready", "/metrics", "/board/data"})


def init_app(app: Flask, settings: Settings) -> None:
    """Trace each request (a server span named by its route), its Redis and pymongo calls, when tracing is on.

    The request span is written here rather than by OpenTelemetry's Flask instrumentation:
    that one cost more app CPU per request than the whole untraced request (measured with
    py-spy: its WSGI wrapper and attribute collection), and tracing must stay cheap enough
    to leave on in the room. An incoming W3C `traceparent` is honoured.
    """
    if not settings.tracing:
        return
    _process_provider(settings)
    from flask import g, request
    from opentelemetry import context
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    @app.before_request
    def _open_request_span():
        if request.path in UNTRACED_PATHS or request.path.startswith("/static/"):
            return
        parent = extract(request.headers) if "traceparent" in request.headers else None
        route = request.url_rule.rule if request.url_rule else "unmatched"
        span = tracer.start_span(f"{request.method} {route}", context=parent, kind=SpanKind.SERVER,
                                 attributes={"http.request.method": request.method, "http.route": route,
                                             "url.path": request.path})
        g.otel_span, g.otel_token = span, context.attach(trace.set_span_in_context(span))

    @app.after_request
    def _name_the_trace(response):
        span = g.get("otel_span")
        if span is not None:
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))
            # Which trace: a participant (or a test) looks it up in Zipkin (only one that is recorded).
            trace_id = current_trace_id(span)
            if trace_id:
                response.headers["X-Trace-Id"] = trace_id
        return response

    @app.teardown_request
    def _close_request_span(exc):
        span = g.pop("otel_span", None)
        if span is not None:
            if exc is not None:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            context.detach(g.pop("otel_token"))


def _process_provider(settings: Settings) -> TracerProvider:
    """The process's provider, made (and Redis and pymongo instrumented) on first use."""
    global _provider, _export
    with _provider_lock:
        if _provider is not None:
            return _provider
        from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON

        # Every request is traced (a workshop's load is small); ALWAYS_ON skips the parent-based
        # sampler's per-span work. OpenTelemetry's own OTEL_TRACES_SAMPLER (with _ARG) samples
        # instead, for a room far larger than tracing's cost allows (bench/RESULTS.md, section h).
        # A bare resource: Zipkin shows each resource attribute as a tag on every span, and the
        # SDK's defaults (its name, version, language) tell the room nothing.
        sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else ALWAYS_ON
        provider = TracerProvider(sampler=sampler, resource=Resource({"service.name": settings.service_name}))
        if settings.zipkin_endpoint:
            _export = _bounded_export(settings.zipkin_endpoint, settings.service_name)
            provider.add_span_processor(_export)
        trace.set_tracer_provider(provider)
        PymongoInstrumentor().instrument(tracer_provider=provider)
        RedisInstrumentor().instrument(tracer_provider=provider)
        _provider = provider
        return provider


def _bounded_export(endpoint: str, service: str):
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from .zipkin import ZipkinExporter

    class BoundedBatch(BatchSpanProcessor):
        """The SDK's batch processor (a deque of MAX_QUEUE, oldest dropped), with its drops counted."""

        def on_end(self, span: ReadableSpan) -> None:
            # The SDK drops silently but for one log line; the deque is its own (pinned version).
            if len(self._batch_processor._queue) >= MAX_QUEUE:
                metrics.TRACE_SPANS_DROPPED.inc()
            super().on_end(span)

        def shutdown(self) -> None:
            # Send what is queued, but never longer than FLUSH_ON_STOP_MS (the SDK waits 30 s).
            self._batch_processor.shutdown(timeout_millis=FLUSH_ON_STOP_MS)

    exporter = ZipkinExporter(endpoint, service, timeout_s=EXPORT_TIMEOUT_S, warn_every_s=WARN_EVERY_S)
    return BoundedBatch(exporter, max_queue_size=MAX_QUEUE, max_export_batch_size=BATCH,
                        schedule_delay_millis=EXPORT_EVERY_MS)


def close() -> None:
    """Graceful stop: export the spans still queued, for at most FLUSH_ON_STOP_MS."""
    if _export is not None:
        _export.shutdown()


def provider() -> TracerProvider | None:
    """This process's tracer provider, or None while tracing is off (tests add processors to it)."""
    return _provider


def current_trace_id(span: Span | None = None) -> str | None:
    """The trace id of `span` (by default the current one) as 32 hex digits, what Zipkin's UI and API
    take; None when there is none or it is not sampled (Zipkin would never hold it)."""
    ctx = (span or trace.get_current_span()).get_span_context()
    return trace.format_trace_id(ctx.trace_id) if ctx.is_valid and ctx.trace_flags.sampled else None


def annotate(**attributes) -> None:
    """Set `paygate.<name>` attributes on the current span (the request's, in a view or service)."""
    span = trace.get_current_span()
    if span.is_recording():
        for name, value in attributes.items():
            span.set_attribute(f"paygate.{name}", value)


def deadline_passed(span: Span, deadline_ms: int) -> None:
    """Mark a wait cut by the OTP deadline: error status and an event at the deadline."""
    # No attributes: Zipkin shows an event's attributes as a JSON blob; this way it reads as a sentence.
    span.add_event(f"deadline passed after {deadline_ms} ms: OTP unavailable, the write goes on")
    span.set_status(Status(StatusCode.ERROR, f"not ready within {deadline_ms} ms"))


def untraced():
    """A block whose Redis and pymongo calls make no spans: background chores (the sync loop's
    pipeline every 50 ms, the drainer's sweeps) that would bury the checkouts' traces."""
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    return suppress_instrumentation()


def spanned(name: str) -> Callable[[F], F]:
    """Record each call of a function as a leaf span of the current span (the store's own calls,
    where no instrumentation exists); nothing when that span is not recording.

    A store call on SQLite takes about as long as the SDK takes to start and end a span of its
    own (tens of µs, bench/RESULTS.md section h), and a checkout makes six. So a leaf is two
    clock reads and one entry in its parent's LEAVES attribute, `name start_ns end_ns [error]`;
    the exporter (app/zipkin.py) writes each as a Zipkin span of its own, a child of that parent.
    The same picture in Zipkin's UI, for a fraction of the cost.
    """

    def wrap(fn: F) -> F:
        @wraps(fn)
        def inner(*args, **kwargs):
            parent = trace.get_current_span()
            if not parent.is_recording():
                return fn(*args, **kwargs)
            start, failed = time.time_ns(), ""
            try:
                return fn(*args, **kwargs)
            except BaseException as err:
                failed = f" {type(err).__name__}"
                raise
            finally:
                leaf = f"{name} {start} {time.time_ns()}{failed}"
                # One thread at a time records on a span here (its request's, or its write's lane).
                # A recording span is the SDK's, which has `attributes` (the API's Span does not say so).
                parent.set_attribute(LEAVES, (*parent.attributes.get(LEAVES, ()), leaf))  # type: ignore[attr-defined]

        return inner  # type: ignore[return-value]

    return wrap
