"""Persistence: backends and modes, wired here and nowhere else."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Backend, WritePolicy
from .drainer import AuditDrainer
from .modes import MODES
from .payment import AuditRecord, Card, Payment, audit_record

if TYPE_CHECKING:
    from ..config import Settings
    from ..contention import InflightWrites


def open_backend(settings: Settings) -> Backend:
    """MongoDB when MONGO_URL is set, else the embedded SQLite file (nothing connects here)."""
    if settings.mongo_url:
        from .mongo import connect

        return connect(settings.mongo_url, settings.mongo_db, settings.store_timeout_ms)
    from .sqlite import SqliteBackend

    return SqliteBackend(settings.sqlite_path, timeout_ms=settings.store_timeout_ms)


def policy_for(mode: str, backend: Backend, knobs: dict, inflight: InflightWrites, drainer: AuditDrainer) -> WritePolicy:
    """The write policy of `mode` over `backend`, bound to this request's knobs."""
    return MODES[mode](backend, knobs, inflight, drainer)


__all__ = ["MODES", "AuditDrainer", "AuditRecord", "Backend", "Card", "Payment", "WritePolicy", "audit_record",
           "open_backend", "policy_for"]
