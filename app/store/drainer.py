"""Copies `audit-async` outbox records to the audit log, off the critical path.

`audit-async` writes its two audit records into an outbox in the same writes
that create the intent, so they can only be lost together with the payment.
The worker that wrote an intent is told its id (`notify`) once the write path
is complete and copies the records in its next batch: at once while a backlog
remains, else `interval_s` after the last empty one; each batch pays the audit
delay once, and a failed one is retried after RETRY_AFTER_FAILURE_S. A sweep, at start and every minute, copies
what a worker that died left behind, in bounded batches, each intent once.

An audit record's fixed key (its payment and event) makes every copy after
the first a harmless duplicate, so drainers of several workers may overlap
freely. The thread survives every error: it logs a WARNING, waits, and tries again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext

from .. import metrics
from ..tracing import tracer, untraced
from .base import BATCH, Backend

log = logging.getLogger("paygate.drainer")
# A drain's span names this many of its checkouts' trace ids (Zipkin shows tags, not links).
NAMED_TRACES = 20
SWEEP_EVERY_S = 60.0
# A new worker's first sweep looks this far back: far longer than any worker lives without draining.
SWEEP_WINDOW_S = 3600.0
# Intents younger than this are left to the worker that wrote them.
SWEEP_GRACE_S = 30.0
RETRY_AFTER_FAILURE_S = 1.0


class AuditDrainer:
    """A background thread that copies the outboxes of notified intents."""

    def __init__(self, backend: Backend, audit_delay_ms: Callable[[], int], interval_s: float = 0.2, grace_s: float = SWEEP_GRACE_S,
                 sweeps: bool = True):
        """`sweeps=False`: the thread copies only what it is notified of, never sweeping (a test of the
        drain alone, whose failure a sweep would otherwise cover over)."""
        self.backend = backend
        self._grace_s = grace_s
        self._audit_delay_ms = audit_delay_ms  # callable: the knob as it is now
        self._interval_s = interval_s
        # Each notified intent with the span that queued it: a drain's span links to its checkouts.
        self._queue: deque[tuple[str, SpanContext]] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # A new worker first picks up what a dead one left.
        self._next_sweep = time.monotonic() if sweeps else math.inf
        self._swept_until = time.time() - SWEEP_WINDOW_S

    def notify(self, payment_id: str) -> None:
        """An intent's write path is complete: its outbox can be copied."""
        self._queue.append((payment_id, trace.get_current_span().get_span_context()))
        metrics.AUDIT_OUTBOX_BACKLOG.inc()

    @property
    def backlog(self) -> int:
        """Intents notified to this worker and not copied yet."""
        return len(self._queue)

    def start(self) -> None:
        """Start the background thread (once)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-drainer", daemon=True)
                self._thread.start()

    def stop(self, flush_timeout_s: float = 10.0) -> int:
        """Stop the thread, then copy everything notified; returns the intents left uncopied."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=flush_timeout_s)
        deadline = time.monotonic() + flush_timeout_s
        while time.monotonic() < deadline:
            try:
                while self.drain_once(delay=False):
                    pass
                return 0
            except Exception:  # the database is away: the records wait in the outboxes for a sweep
                time.sleep(0.2)
        return len(self._queue)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                moved = self.drain_once()
                if time.monotonic() >= self._next_sweep:
                    self._next_sweep = time.monotonic() + SWEEP_EVERY_S
                    with untraced():  # a sweep's queries every minute would bury the room's traces
                        found = self.sweep()
                    if found:
                        log.warning("audit sweep copied %d records a worker had left in the outbox", found)
            except Exception as err:  # never die: a dead drainer would lose every record after it
                log.warning("audit drain deferred (%s: %s); retrying", type(err).__name__, err)
                self._stop.wait(RETRY_AFTER_FAILURE_S)
                continue
            if not moved:
                self._stop.wait(self._interval_s)

    def drain_once(self, delay: bool = True) -> int:
        """Copy the outboxes of one batch of notified intents; returns how many intents."""
        batch: list[tuple[str, SpanContext]] = []
        while self._queue and len(batch) < BATCH:
            batch.append(self._queue.popleft())
        if not batch:
            return 0
        ids = [payment_id for payment_id, _ in batch]
        queued_by = [ctx for _, ctx in batch if ctx.is_valid]
        attributes: dict[str, str | int] = {"paygate.checkouts": len(ids),
                      "paygate.checkout_trace_ids": ",".join(trace.format_trace_id(ctx.trace_id)
                                                             for ctx in queued_by[:NAMED_TRACES])}
        try:
            with tracer.start_as_current_span("audit.drain", links=[Link(ctx) for ctx in queued_by],
                                              attributes=attributes):
                if delay:  # the audit store is slow; batching pays its delay once per batch
                    with tracer.start_as_current_span("audit.delay"):
                        time.sleep(self._audit_delay_ms() / 1000)
                with tracer.start_as_current_span("audit.write"):
                    written = self.backend.copy_outbox(ids)
        except BaseException:
            self._queue.extendleft(reversed(batch))  # try again later, in order
            raise
        metrics.AUDIT_OUTBOX_BACKLOG.dec(len(ids))
        metrics.child(metrics.AUDIT_RECORDS, "async").inc(written)
        return len(ids)

    def sweep(self) -> int:
        """Copy records a dead worker never copied, batch by batch; returns how many were missing.

        Each sweep covers the intents created since the last one (a new worker:
        the last SWEEP_WINDOW_S), up to `grace_s` ago: a live worker copies
        its own within a second, so what is left by then was left by a dead one.
        """
        until, found = time.time() - self._grace_s, 0
        for written in self.backend.sweep_outbox(self._swept_until, until):
            metrics.child(metrics.AUDIT_RECORDS, "async").inc(written)
            found += written
        self._swept_until = until  # only after a whole sweep: a failed one is done again
        return found
