"""The parts one app instance wires together, kept on app.extensions."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from .backends import Backends, connect
from .board import BoardStats
from .config import Settings
from .contention import InflightWrites
from .payments import PaymentService
from .runtime import RuntimeState
from .store import AuditDrainer, ensure_collections


@dataclass
class Kit:
    """Backends and services of one app instance."""

    settings: Settings
    backends: Backends
    runtime: RuntimeState
    inflight: InflightWrites
    payments: PaymentService
    drainer: AuditDrainer
    board: BoardStats

    def warm_up(self) -> None:
        """Get ready before taking traffic: the collections exist, MongoDB's pool is open."""
        ensure_collections(self.backends.db)

    def close(self) -> None:
        """Graceful stop: finish writes in progress, then flush the audit outboxes."""
        self.payments.shutdown()
        self.drainer.stop()


def init_app(app: Flask, settings: Settings, start_background: bool = True) -> Kit:
    """Build the kit for `app` (no connection is opened here)."""
    backends = connect(settings)
    runtime = RuntimeState(backends.redis, settings.key_prefix, settings.runtime_cache_ms)
    inflight = InflightWrites(backends.redis, settings.key_prefix)
    board = BoardStats(backends.redis, settings.key_prefix)
    drainer = AuditDrainer(backends.db, lambda: runtime.snapshot().knobs["audit_delay_ms"])
    payments = PaymentService(backends.db, runtime, inflight, drainer, board, settings)
    kit = Kit(settings, backends, runtime, inflight, payments, drainer, board)
    app.extensions["paygate"] = kit
    if start_background:
        drainer.start()
    return kit


def kit() -> Kit:
    """The kit of the app handling the current request."""
    return current_app.extensions["paygate"]
