"""Spans to Zipkin: its JSON v2 format, encoded lean, posted in batches.

OpenTelemetry's own Zipkin exporter spent more of a worker's CPU encoding a span
than the SDK spent making it (bench/RESULTS.md, section h: `iterencode` was the
traced kit's busiest frame), and wrote into every span what tells the room
nothing: four instrumentation-scope tags, the resource's tags, and each event as
a JSON blob (`{"deadline passed …": {}}`) instead of its sentence. This one
writes what Zipkin's UI shows and a participant reads: ids, name, kind, times,
the span's own attributes as tags, its status as `error`, its events as
annotations in plain words; and a span's leaves (the store's calls, recorded
cheaply by app/tracing.py's `spanned`) as child spans of their own.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import requests
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from . import metrics
from .tracing import Leaf, leaves_of

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import Event, ReadableSpan

log = logging.getLogger("paygate.tracing")

KINDS = {SpanKind.SERVER: "SERVER", SpanKind.CLIENT: "CLIENT", SpanKind.PRODUCER: "PRODUCER",
         SpanKind.CONSUMER: "CONSUMER"}  # INTERNAL has no Zipkin kind: the field is left out
# Zipkin's UI shows a tag in one line; OpenTelemetry's exporter cuts at the same length.
MAX_TAG = 128


def encode(spans: Sequence[ReadableSpan], service: str) -> bytes:
    """The spans as one Zipkin JSON v2 list (timestamps and durations in microseconds).

    Each row is written as a string around the few values that need JSON's escaping (names,
    tags, annotations): building a dict per row and dumping the list took this thread about
    a third longer (measured per checkout, the two alternating in one process: 117 µs, now
    90 µs), and it shares the GIL with the requests.
    """
    endpoint = ',"localEndpoint":' + _json({"serviceName": service})
    rows = []
    for span in spans:
        ctx = span.context
        trace_id, span_id = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
        start = span.start_time or 0  # an exported span has ended: both times are set
        row = _head(trace_id, span_id, span.name, start, span.end_time or start) + endpoint
        if span.parent is not None:
            row += f',"parentId":"{span.parent.span_id:016x}"'
        kind = KINDS.get(span.kind)
        if kind:
            row += f',"kind":"{kind}"'
        attributes = span.attributes  # (a new view per access)
        tags = {key: tag(value) for key, value in attributes.items()} if attributes else {}
        if span.status.status_code is StatusCode.ERROR:
            # Zipkin's UI marks a span red by its `error` tag, and shows the description as its value.
            tags["error"] = (span.status.description or "error")[:MAX_TAG]
        notes = [(event.timestamp, annotation(event)) for event in span.events]
        rows.append(row + _tags_and_notes(tags, notes) + "}")
        rows.extend(_leaf_row(leaf, trace_id, span_id, endpoint) for leaf in leaves_of(span))
    return ("[" + ",".join(rows) + "]").encode()


_json = json.JSONEncoder(separators=(",", ":")).encode


def _head(trace_id: str, span_id: str, name: str, start_ns: int, end_ns: int) -> str:
    start_us = start_ns // 1000
    # Zipkin reads a zero duration as "unknown": a span always lasted at least 1 µs.
    return (f'{{"traceId":"{trace_id}","id":"{span_id}","name":{_json(name)},'
            f'"timestamp":{start_us},"duration":{max(1, end_ns // 1000 - start_us)}')


def _tags_and_notes(tags: dict[str, str], notes: Sequence[tuple[int, str]]) -> str:
    out = ',"tags":' + _json(tags) if tags else ""
    if notes:
        out += ',"annotations":' + _json([{"timestamp": at // 1000, "value": text} for at, text in notes])
    return out


def _leaf_row(leaf: Leaf, trace_id: str, parent_id: str, endpoint: str) -> str:
    """A leaf (app/tracing.py's Leaf) as a child span of the span it was recorded on."""
    tags = dict(leaf.tags or {})
    if leaf.error:
        tags["error"] = leaf.error
    row = _head(trace_id, f"{random.getrandbits(64) or 1:016x}", leaf.name, leaf.start_ns, leaf.end_ns)
    return row + endpoint + f',"parentId":"{parent_id}"' + _tags_and_notes(tags, leaf.notes) + "}"


def tag(value) -> str:
    """An attribute as a Zipkin tag: a string, cut to MAX_TAG (lists as JSON, booleans lower case)."""
    if isinstance(value, str):
        return value[:MAX_TAG]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(list(value), separators=(",", ":"))[:MAX_TAG]


def annotation(event: Event) -> str:
    """An event as Zipkin shows it on the timeline: its name, then its attributes (an exception's
    type and message) as `key=value`."""
    if not event.attributes:
        return event.name
    details = " ".join(f"{key}={tag(value)}" for key, value in event.attributes.items()
                       if key != "exception.stacktrace")  # the stack is for logs, not a timeline label
    return f"{event.name}: {details}"


class ZipkinExporter(SpanExporter):
    """POSTs each batch to Zipkin's /api/v2/spans. A batch Zipkin refuses, or cannot take (stopped,
    hung past the timeout, unreachable), is dropped: counted in paygate_trace_spans_dropped_total
    and logged at most once per warn_every_s. One keep-alive session: a batch a second per worker."""

    def __init__(self, endpoint: str, service: str, timeout_s: float, warn_every_s: float):
        self.endpoint, self.service, self.timeout_s, self.warn_every_s = endpoint, service, timeout_s, warn_every_s
        self._session = requests.Session()
        self._warned_at = float("-inf")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Send one batch; SUCCESS once Zipkin has taken it, else FAILURE with the batch counted as dropped."""
        try:
            r = self._session.post(self.endpoint, data=encode(spans, self.service), timeout=self.timeout_s,
                                   headers={"Content-Type": "application/json"})
        except Exception as err:  # Zipkin stopped, hung past the timeout, or unreachable
            reason = f"{type(err).__name__}: {err}"
        else:
            if r.ok:
                return SpanExportResult.SUCCESS
            reason = f"Zipkin refused the batch with HTTP {r.status_code}"
        metrics.TRACE_SPANS_DROPPED.inc(len(spans))
        if time.monotonic() - self._warned_at > self.warn_every_s:
            self._warned_at = time.monotonic()
            log.warning("traces not exported to %s (%s); spans are dropped until it answers", self.endpoint, reason)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        """Close the session's connection."""
        self._session.close()
