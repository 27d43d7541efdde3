"""One contract for the payment stores, run against FerretDB and the in-process stand-in.

The same assertions hold for every mode's store on both backends, so `make up`
without Docker behaves like the real thing.
"""

from __future__ import annotations

import time

import fakeredis
import mongomock
import pytest
from pymongo import MongoClient

from app.config import KNOB_DEFAULTS
from app.contention import InflightWrites
from app.store import STORES, AuditDrainer, store_for

from .helpers import unique

FAST_KNOBS = {**KNOB_DEFAULTS, "write_latency_ms": 0, "audit_delay_ms": 0, "contention_ms_per_write": 0}


@pytest.fixture(params=["ferretdb", "in-process"])
def db(request):
    """A fresh database on the real MongoDB-wire server, or on mongomock."""
    if request.param == "ferretdb":
        client = MongoClient(request.getfixturevalue("mongo_url"), serverSelectionTimeoutMS=3000)
    else:
        client = mongomock.MongoClient()
    name = unique("contract_")
    yield client[name]
    client.drop_database(name)


@pytest.fixture
def inflight():
    return InflightWrites(fakeredis.FakeRedis(decode_responses=True), "c:")


@pytest.fixture
def drainer(db):
    return AuditDrainer(db, lambda: 0)


def _intent(payment_id: str) -> dict:
    return {"_id": payment_id, "amount": "10.00", "currency": "USD",
            "card": {"brand": "visa", "last4": "1111", "fingerprint": "f" * 32}, "created_at": time.time()}


def _new_payment(store, inflight, payment_id="pay_" + "a" * 24):
    with inflight.track():
        store.create_intent(_intent(payment_id))
        assert store.find_payment(payment_id)["status"] == "created"
        store.mark_awaiting_otp(payment_id)
    return payment_id


@pytest.mark.parametrize("mode", list(STORES))
def test_write_path_makes_the_payment_ready(db, inflight, drainer, mode):
    store = store_for(mode, db, FAST_KNOBS, inflight, drainer)
    payment_id = _new_payment(store, inflight)
    doc = store.find_payment(payment_id)
    assert doc["status"] == "awaiting_otp" and doc["mode"] == mode
    assert store.find_payment("pay_" + "b" * 24) is None


@pytest.mark.parametrize("mode", list(STORES))
def test_audit_records_per_mode(db, inflight, drainer, mode):
    store = store_for(mode, db, FAST_KNOBS, inflight, drainer)
    payment_id = _new_payment(store, inflight)
    while drainer.drain_once(delay=False):
        pass
    records = sorted(r["event"] for r in db.audit_logs.find({"payment_id": payment_id}))
    assert records == ([] if mode == "original" else ["awaiting_otp", "intent_created"])
    assert drainer.missing() == []


def test_drainers_racing_on_the_same_outboxes_write_each_record_once(db, inflight, drainer):
    store = store_for("audit-async", db, FAST_KNOBS, inflight, drainer)
    ids = [_new_payment(store, inflight, f"pay_{i:024x}") for i in range(5)]
    other = AuditDrainer(db, lambda: 0)
    for payment_id in ids[:3]:
        other.notify(payment_id)  # as if a second worker were told too
    assert other.drain_once(delay=False) == 3
    assert drainer.drain_once(delay=False) == 5
    assert db.audit_logs.count_documents({"payment_id": {"$in": ids}}) == 10
    assert drainer.missing() == []


def test_sweep_copies_outboxes_whose_worker_died(db, inflight):
    dead_workers_drainer = AuditDrainer(db, lambda: 0)
    store = store_for("audit-async", db, FAST_KNOBS, inflight, dead_workers_drainer)
    ids = [_new_payment(store, inflight, f"pay_{i:024x}") for i in range(3)]
    survivor = AuditDrainer(db, lambda: 0)
    assert len(survivor.missing()) == 6
    assert survivor.sweep() == 6
    assert db.audit_logs.count_documents({"payment_id": {"$in": ids}}) == 6
    assert survivor.sweep() == 0 and survivor.missing() == []


def _ready_with_otp(db, inflight, expires_in=300):
    store = store_for("original", db, FAST_KNOBS, inflight, None)
    payment_id = _new_payment(store, inflight)
    assert store.attach_otp(payment_id, "h1", time.time() + expires_in)
    return store, payment_id


def test_an_otp_is_attached_once_and_only_when_ready(db, inflight):
    store, payment_id = _ready_with_otp(db, inflight)
    assert not store.attach_otp(payment_id, "h2", time.time() + 300), "a second OTP must not replace the first"
    with inflight.track():
        store.create_intent(_intent("pay_" + "c" * 24))
    assert not store.attach_otp("pay_" + "c" * 24, "h3", time.time() + 300), "not ready yet"


def test_a_payment_is_charged_once(db, inflight):
    store, payment_id = _ready_with_otp(db, inflight)
    doc = store.find_payment(payment_id)
    first = store.charge_once(doc, 100.0)
    second = store.charge_once(doc, 200.0)
    assert first["at"] == second["at"] == 100.0
    assert db.charges.count_documents({"_id": payment_id}) == 1
    doc = store.find_payment(payment_id)
    assert doc["status"] == "succeeded" and doc["succeeded_at"] == 100.0


def test_attempts_are_used_up_then_the_payment_locks(db, inflight):
    store, payment_id = _ready_with_otp(db, inflight)
    assert [store.claim_attempt(payment_id, 3) for _ in range(4)] == [1, 2, 3, None]
    store.lock(payment_id)
    assert store.find_payment(payment_id)["status"] == "locked"


def test_a_charge_beats_a_concurrent_lock(db, inflight):
    store, payment_id = _ready_with_otp(db, inflight)
    store.charge_once(store.find_payment(payment_id), time.time())
    store.lock(payment_id)
    assert store.find_payment(payment_id)["status"] == "succeeded"


def test_ping(db, inflight):
    store_for("original", db, FAST_KNOBS, inflight, None).ping()
