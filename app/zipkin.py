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
from typing import TYPE_CHECKING, Any

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
    """The spans as one Zipkin JSON v2 list (timestamps and durations in microseconds)."""
    endpoint = {"serviceName": service}
    out = []
    for span in spans:
        ctx, attributes = span.context, span.attributes  # (a new view per access)
        start = span.start_time or 0  # an exported span has ended: both times are set
        end = span.end_time or start
        row: dict[str, Any] = {"traceId": f"{ctx.trace_id:032x}", "id": f"{ctx.span_id:016x}", "name": span.name,
               # Zipkin reads a zero duration as "unknown": a span always lasted at least 1 µs.
               "timestamp": start // 1000, "duration": max(1, (end - start) // 1000),
               "localEndpoint": endpoint}
        if span.parent is not None:
            row["parentId"] = f"{span.parent.span_id:016x}"
        kind = KINDS.get(span.kind)
        if kind:
            row["kind"] = kind
        tags = {key: tag(value) for key, value in attributes.items()} if attributes else {}
        if span.status.status_code is StatusCode.ERROR:
            # Zipkin's UI marks a span red by its `error` tag, and shows the description as its value.
            tags["error"] = (span.status.description or "error")[:MAX_TAG]
        if tags:
            row["tags"] = tags
        if span.events:
            row["annotations"] = [{"timestamp": event.timestamp // 1000, "value": annotation(event)}
                                  for event in span.events]
        out.append(row)
        leaves = leaves_of(span)
        if leaves:
            out.extend(leaf_rows(leaves, row))
    return json.dumps(out, separators=(",", ":")).encode()


def leaf_rows(leaves: Sequence[Leaf], parent: dict) -> list[dict]:
    """The parent's leaves (app/tracing.py's Leaf) as its child spans."""
    rows = []
    for leaf in leaves:
        start_us = leaf.start_ns // 1000
        row = {"traceId": parent["traceId"], "id": f"{random.getrandbits(64) or 1:016x}", "parentId": parent["id"],
               "name": leaf.name, "timestamp": start_us, "duration": max(1, leaf.end_ns // 1000 - start_us),
               "localEndpoint": parent["localEndpoint"]}
        tags = dict(leaf.tags or {})
        if leaf.error:
            tags["error"] = leaf.error
        if tags:
            row["tags"] = tags
        if leaf.notes:
            row["annotations"] = [{"timestamp": at // 1000, "value": text} for at, text in leaf.notes]
        rows.append(row)
    return rows


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
