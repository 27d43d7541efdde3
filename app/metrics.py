"""Every Prometheus metric of the kit, defined once (names and labels: docs/contract.md, Metrics)."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# 0.4 s is a bucket bound so the OTP deadline is a visible line, not an interpolation.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)

HTTP_DURATION = Histogram(
    "paygate_http_request_duration_seconds",
    "HTTP request duration by route template, method and status.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
PAYMENT_READY = Histogram(
    "paygate_payment_ready_seconds",
    "Time from the start of the write until the payment is ready (status awaiting_otp).",
    ["mode"],
    buckets=LATENCY_BUCKETS,
)
OTP_GENERATION = Counter(
    "paygate_otp_generation_total",
    "OTP generation attempts by persistence mode and result (success, timeout).",
    ["mode", "result"],
)
OTP_VERIFICATION = Counter(
    "paygate_otp_verification_total",
    "OTP verifications by result.",
    ["result"],
)
INFLIGHT_WRITES = Gauge(
    "paygate_inflight_writes",
    "Persistence writes in flight across all workers and replicas (read from Redis).",
    # Any worker may refresh these two; the latest value wins, never a stale worker's.
    multiprocess_mode="livemostrecent",
)
DB_MODE = Gauge(
    "paygate_db_mode",
    "1 for the persistence mode in force, 0 for the others.",
    ["mode"],
    multiprocess_mode="livemostrecent",
)
DB_MODE_CHANGES = Counter(
    "paygate_db_mode_changes_total",
    "Persistence mode flips, by the mode flipped to.",
    ["to"],
)
AUDIT_RECORDS = Counter(
    "paygate_audit_records_total",
    "Audit-log records written, on the critical path (sync) or off it (async).",
    ["path"],
)
AUDIT_OUTBOX_BACKLOG = Gauge(
    "paygate_audit_outbox_backlog",
    "audit-async intents whose outbox records are not in the audit log yet (all workers).",
    multiprocess_mode="livesum",
)
ORPHANED_INTENTS = Counter(
    "paygate_orphaned_intents_total",
    "Payment intents whose OTP timed out: left awaiting_otp with no OTP.",
    ["mode"],
)
CHECKOUT_RETRIES = Counter(
    "paygate_checkout_retries_total",
    "Initiates that retry a checkout whose OTP step just failed (marked with X-Retry-Of).",
    ["mode"],
)
TRACE_SPANS_DROPPED = Counter(
    "paygate_trace_spans_dropped_total",
    "Trace spans never exported: the export queue was full, or Zipkin did not take the batch.",
)


_children: dict = {}


def child(metric, *values):
    """metric.labels(*values), kept: labels() checks its arguments and takes a lock on every call,
    while a labelled child never changes. Values come from closed sets (docs/contract.md, Metrics), so this stays small.
    Keyed by the metric object, which callers read from this module at call time (bench/bare.py
    swaps them)."""
    key = (metric, values)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*values)
    return found


def exposition() -> tuple[bytes, str]:
    """Prometheus text for this process, or for all gunicorn workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
