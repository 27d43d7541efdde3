"""SQLite's tables and statements, and how the store's domain values map to their rows."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from .payment import AuditRecord, Card, Payment

SCHEMA = """
CREATE TABLE IF NOT EXISTS payment_intents (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, mode TEXT NOT NULL, amount TEXT NOT NULL,
    currency TEXT NOT NULL, card TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL,
    otp_hash TEXT, otp_expires_at REAL, succeeded_at REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_outbox (
    id TEXT PRIMARY KEY, payment_id TEXT NOT NULL, record TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_outbox_payment ON audit_outbox (payment_id);
CREATE TABLE IF NOT EXISTS audit_logs (
    id TEXT PRIMARY KEY, payment_id TEXT NOT NULL, event TEXT NOT NULL, mode TEXT NOT NULL,
    path TEXT NOT NULL, at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_logs_payment ON audit_logs (payment_id);
CREATE TABLE IF NOT EXISTS charges (
    payment_id TEXT PRIMARY KEY, amount TEXT NOT NULL, currency TEXT NOT NULL, at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS otp_attempts (
    payment_id TEXT NOT NULL, attempt INTEGER NOT NULL, at REAL NOT NULL, PRIMARY KEY (payment_id, attempt)
) WITHOUT ROWID;
"""
_INTENT_COLUMNS = ("id", "status", "mode", "amount", "currency", "card", "created_at", "updated_at",
                   "otp_hash", "otp_expires_at", "succeeded_at")
INSERT_INTENT = (f"INSERT INTO payment_intents ({', '.join(_INTENT_COLUMNS)})"
                  f" VALUES ({', '.join('?' * len(_INTENT_COLUMNS))})")
INSERT_AUDIT = "INSERT OR IGNORE INTO audit_logs (id, payment_id, event, mode, path, at) VALUES (?, ?, ?, ?, ?, ?)"
INSERT_OUTBOX = "INSERT INTO audit_outbox (id, payment_id, record) VALUES (?, ?, ?)"
# Attempt n + 1 if fewer than the limit are used: the count and the insert in one statement.
CLAIM_ATTEMPT = ("INSERT INTO otp_attempts (payment_id, attempt, at)"
                 " SELECT ?1, used + 1, ?2 FROM (SELECT COUNT(*) AS used FROM otp_attempts WHERE payment_id = ?1)"
                 " WHERE used < ?3 RETURNING attempt")
# The next page of payments, after ?1, created in [?2, ?3), with outbox rows left: what a sweep copies.
SWEPT_PAYMENTS = ("SELECT DISTINCT o.payment_id FROM audit_outbox o JOIN payment_intents p ON p.id = o.payment_id"
                  " WHERE o.payment_id > ?1 AND p.created_at >= ?2 AND p.created_at < ?3"
                  " ORDER BY o.payment_id LIMIT ?4")
INSERT_CHARGE = "INSERT OR IGNORE INTO charges (payment_id, amount, currency, at) VALUES (?, ?, ?, ?)"
# The intent `succeeded` at its charge's time (whichever verify inserted the charge).
MARK_SUCCEEDED = ("UPDATE payment_intents SET status = 'succeeded', updated_at = ?2,"
                  " succeeded_at = (SELECT at FROM charges WHERE payment_id = ?1) WHERE id = ?1 RETURNING succeeded_at")


def intent_row(payment: Payment) -> tuple:
    """The payment_intents row of a payment (its card as JSON)."""
    return (payment.id, payment.status, payment.mode, payment.amount, payment.currency,
            json.dumps(payment.card.as_dict()), payment.created_at, payment.updated_at, payment.otp_hash,
            payment.otp_expires_at, payment.succeeded_at)


def payment_of(row: sqlite3.Row) -> Payment:
    """The payment a payment_intents row holds."""
    return Payment(id=row["id"], amount=row["amount"], currency=row["currency"],
                   card=Card.from_dict(json.loads(row["card"])), created_at=row["created_at"],
                   status=row["status"], mode=row["mode"], updated_at=row["updated_at"], otp_hash=row["otp_hash"],
                   otp_expires_at=row["otp_expires_at"], succeeded_at=row["succeeded_at"])


def outbox_rows(records: Sequence[AuditRecord]) -> list[tuple]:
    """audit_outbox rows of some audit records: each record whole, as JSON, under its key."""
    return [(r.key, r.payment_id, json.dumps(_outbox_entry(r))) for r in records]


def _outbox_entry(r: AuditRecord) -> dict:
    # The shape outbox rows have always had: files written by earlier versions sweep the same way.
    return {"_id": r.key, "payment_id": r.payment_id, "event": r.event, "mode": r.mode, "path": r.path, "at": r.at}


def audit_row(r: AuditRecord) -> tuple:
    """The audit_logs row of a record, under its key: a second copy is ignored."""
    return r.key, r.payment_id, r.event, r.mode, r.path, r.at


def audit_row_of_outbox(record_json: str) -> tuple:
    """The audit_logs row of an outbox row's record."""
    r = json.loads(record_json)
    return r["_id"], r["payment_id"], r["event"], r["mode"], r["path"], r["at"]


def audit_record_of(row: sqlite3.Row) -> AuditRecord:
    """The record an audit_logs row holds."""
    return AuditRecord(row["payment_id"], row["event"], row["mode"], row["path"], row["at"])
