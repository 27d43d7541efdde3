"""The parts one app instance wires together, kept on app.extensions."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass

from flask import Flask, current_app

from . import tracing
from .backends import Backends, connect
from .board import BoardStats
from .config import Settings
from .contention import InflightWrites
from .controls import Controls
from .payments import PaymentService
from .runtime import RuntimeState
from .store import AuditDrainer
from .sync import SyncLoop

log = logging.getLogger("paygate.kit")


@dataclass
class Kit:
    """Backends and services of one app instance."""

    settings: Settings
    backends: Backends
    runtime: RuntimeState
    controls: Controls
    inflight: InflightWrites
    payments: PaymentService
    drainer: AuditDrainer
    board: BoardStats
    sync: SyncLoop

    def warm_up(self) -> None:
        """Get ready before taking traffic: tables or collections exist, connections are open."""
        self.backends.store.prepare()

    def close(self) -> None:
        """Graceful stop: finish writes in progress, flush the audit outboxes and the board's counts."""
        self.payments.shutdown()
        left = self.drainer.stop()
        if left:  # not lost: the records wait in the outboxes, and a live worker's sweep copies them
            log.warning("graceful stop: %d intents' audit records left in the outbox for a sweep", left)
        self.sync.stop()
        self.backends.store.close()
        tracing.close()  # last: the writes and drains above end spans of their own


def init_app(app: Flask, settings: Settings, start_background: bool = True) -> Kit:
    """Build the kit for `app` (no connection is opened here)."""
    backends = connect(settings)
    runtime = RuntimeState()
    # Unique per process and replica: the key under which this worker publishes its writes in flight.
    inflight = InflightWrites(f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
    board = BoardStats(backends.redis, settings.key_prefix)
    sync = SyncLoop(backends.redis, settings.key_prefix, runtime, inflight, board)
    controls = Controls(backends.redis, settings.key_prefix, sync.settle)
    drainer = AuditDrainer(backends.store, lambda: runtime.snapshot().knobs["audit_delay_ms"])
    payments = PaymentService(backends.store, runtime, inflight, drainer, board, settings)
    kit = Kit(settings, backends, runtime, controls, inflight, payments, drainer, board, sync)
    app.extensions["paygate"] = kit
    if start_background:
        sync.start()
        drainer.start()
    return kit


def kit() -> Kit:
    """The kit of the app handling the current request."""
    return current_app.extensions["paygate"]
