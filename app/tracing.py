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
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor
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


# Where a span keeps its leaves (see spanned): on the live span, then on the ReadableSpan its
# processors get (LeafCarrier); the exporter turns each into a span.
LEAVES = "paygate_leaves"

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
            provider.add_span_processor(LeafCarrier())  # first: the export's processor queues what it hands on
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
    if span.is_recording():  # in one call: the SDK takes the span's lock once
        span.set_attributes({f"paygate.{name}": value for name, value in attributes.items()})


def otp_wait(start_ns: int, deadline_ms: int, cut: bool) -> None:
    """Record the OTP service's wait for readiness, from `start_ns` to now, as `otp.wait_ready`, a leaf
    of the current span (the request's); when the deadline `cut` it, with an error and an event there.

    A leaf, not a span of the SDK's: every checkout has one, and a leaf costs a tuple where a
    span costs tens of µs (bench/RESULTS.md section h). Zipkin shows the same span either way.
    """
    parent = trace.get_current_span()
    if not parent.is_recording():
        return
    end, error = time.time_ns(), ""
    notes: tuple[tuple[int, str], ...] = ()
    if cut:
        # A sentence on the timeline (Zipkin shows an event's attributes as a JSON blob).
        error = f"not ready within {deadline_ms} ms"
        notes = ((end, f"deadline passed after {deadline_ms} ms: OTP unavailable, the write goes on"),)
    _add_leaf(parent, Leaf("otp.wait_ready", start_ns, end, error, {"paygate.deadline_ms": str(deadline_ms)}, notes))


def untraced():
    """A block whose Redis and pymongo calls make no spans: background chores (the sync loop's
    pipeline every 50 ms, the drainer's sweeps) that would bury the checkouts' traces."""
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    return suppress_instrumentation()


class Leaf(NamedTuple):
    """A child span recorded cheaply on its parent (see spanned), written as a Zipkin span by the exporter."""

    name: str
    start_ns: int
    end_ns: int
    error: str = ""  # the `error` tag Zipkin marks a span red by; empty when it did not fail
    tags: dict[str, str] | None = None
    notes: tuple[tuple[int, str], ...] = ()  # (time_ns, sentence): annotations on its timeline


def _add_leaf(parent: Span, leaf: Leaf) -> None:
    # A plain list on the span object, not an attribute: the SDK checks and copies a span's
    # attributes on every change. One thread at a time records on a span here (its request's, or
    # its write's lane).
    vars(parent).setdefault(LEAVES, []).append(leaf)


def spanned(name: str) -> Callable[[F], F]:
    """Record each call of a function as a leaf span of the current span (the store's own calls,
    where no instrumentation exists); nothing when that span is not recording.

    A store call on SQLite takes about as long as the SDK takes to start and end a span of its
    own (tens of µs, bench/RESULTS.md section h), and a checkout makes six. So a leaf is two
    clock reads and a Leaf in a list on its parent; the exporter (app/zipkin.py) writes each as
    a Zipkin span of its own, a child of that parent. The same picture in Zipkin's UI, for a
    fraction of the cost.
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
                failed = type(err).__name__
                raise
            finally:
                _add_leaf(parent, Leaf(name, start, time.time_ns(), failed))

        return inner  # type: ignore[return-value]

    return wrap


class LeafCarrier(SpanProcessor):
    """Hands a span's leaves on to the read-only copy of it that span processors and exporters get.

    The SDK makes that copy (a ReadableSpan) as the span ends, from the span's own fields only.
    `_on_ending` (the SDK's hook with the live span) and `on_end` (with the copy) run one after
    the other on the thread that ends the span, so the leaves pass between them in a thread local.
    Register it before the processors that read leaves.
    """

    def __init__(self) -> None:
        self._ending = threading.local()

    def _on_ending(self, span) -> None:
        self._ending.leaves = vars(span).pop(LEAVES, None)

    def on_end(self, span: ReadableSpan) -> None:
        leaves, self._ending.leaves = getattr(self._ending, "leaves", None), None
        if leaves:
            setattr(span, LEAVES, leaves)


def leaves_of(span: ReadableSpan) -> list[Leaf]:
    """The leaves an ended span carries (see spanned, otp_wait and LeafCarrier)."""
    return getattr(span, LEAVES, None) or []
