"""One contract for the payment store, run against FerretDB (MongoDB wire) and SQLite.

Every mode is a write policy over a backend; the same assertions hold for
every mode on both backends, races included, so `make up` (SQLite) behaves
like the compose stack (MongoDB).
"""

from __future__ import annotations

import fcntl
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from threading import Barrier

import pytest
from pymongo import MongoClient

import rig
from app.config import KNOB_DEFAULTS
from app.contention import InflightWrites
from app.errors import StoreUnavailable
from app.store import MODES, AuditDrainer, Card, Payment, audit_record, policy_for
from app.store.mongo import MongoBackend
from app.store.sqlite import SqliteBackend

FAST_KNOBS = {**KNOB_DEFAULTS, "write_latency_ms": 0, "audit_delay_ms": 0, "contention_ms_per_write": 0}


@pytest.fixture(params=[pytest.param("ferretdb", marks=pytest.mark.services),
                        pytest.param("sqlite", marks=pytest.mark.unit)])
def backend(request, tmp_path):
    """A fresh, prepared store on the real MongoDB-wire server or in a SQLite file."""
    if request.param == "ferretdb":
        client = MongoClient(request.getfixturevalue("mongo_url"), serverSelectionTimeoutMS=3000)
        name = rig.unique("contract_")
        store = MongoBackend(client[name])
        store.prepare()
        yield store
        client.drop_database(name)
        client.close()
    else:
        store = SqliteBackend(tmp_path / "paygate.sqlite3")
        store.prepare()
        yield store
        store.close()


@pytest.fixture
def inflight():
    return InflightWrites("contract-worker")


@pytest.fixture
def drainer(backend):
    return AuditDrainer(backend, lambda: 0, grace_s=0)


CARD = Card("visa", "1111", "f" * 32)


def _intent(payment_id: str, created_at: float | None = None) -> Payment:
    return Payment(id=payment_id, amount="10.00", currency="USD", card=CARD,
                   created_at=time.time() if created_at is None else created_at)


def _new_payment(policy, payment_id="pay_" + "a" * 24, created_at: float | None = None):
    policy.create_intent(_intent(payment_id, created_at))
    assert policy.backend.find_payment(payment_id).status == "created"
    policy.mark_awaiting_otp(payment_id)
    return payment_id


def _audit_log(backend, payment_ids) -> list[tuple[str, str]]:
    """(payment id, event) of every audit record of these payments, sorted."""
    return sorted((r.payment_id, r.event) for r in backend.audit_log(payment_ids))


@pytest.mark.parametrize("mode", list(MODES))
def test_write_path_makes_the_payment_ready(backend, inflight, drainer, mode):
    payment_id = _new_payment(policy_for(mode, backend, FAST_KNOBS, inflight, drainer))
    payment = backend.find_payment(payment_id)
    assert payment.status == "awaiting_otp" and payment.mode == mode
    assert payment.card == CARD
    assert payment.amount == "10.00" and payment.currency == "USD" and payment.otp_hash is None
    assert payment.updated_at is not None and payment.succeeded_at is None
    assert backend.find_payment("pay_" + "b" * 24) is None


def test_an_intent_reads_back_as_given_stamped_created_by_its_mode(backend, inflight):
    intent = _intent("pay_" + "e" * 24, created_at=123.5)
    policy_for("original", backend, FAST_KNOBS, inflight, None).create_intent(intent)
    assert backend.find_payment(intent.id) == replace(intent, status="created", mode="original")


def test_only_a_created_intent_moves_to_awaiting_otp(backend, inflight):
    payment_id = "pay_" + "e" * 24
    policy_for("original", backend, FAST_KNOBS, inflight, None).create_intent(_intent(payment_id))
    assert backend.mark_awaiting_otp(payment_id)
    record = audit_record(payment_id, "awaiting_otp", "audit-async", "async")
    assert not backend.mark_awaiting_otp(payment_id, outbox=[record]), "already awaiting its OTP"
    assert not backend.mark_awaiting_otp("pay_" + "b" * 24), "no such intent"
    assert backend.copy_outbox([payment_id]) == 0, "a refused move writes no outbox record"


def test_an_outbox_is_copied_once(backend, inflight, drainer):
    payment_id = _new_payment(policy_for("audit-async", backend, FAST_KNOBS, inflight, drainer))
    assert backend.copy_outbox([payment_id]) == 2
    assert backend.copy_outbox([payment_id]) == 0, "a copy already made is refused, not made twice"
    assert _audit_log(backend, [payment_id]) == [(payment_id, "awaiting_otp"), (payment_id, "intent_created")]


def test_an_audit_record_reads_back_as_written(backend):
    record = audit_record("pay_" + "f" * 24, "intent_created", "audit", "sync")
    backend.insert_audit(record)
    assert backend.audit_log([record.payment_id, "pay_" + "b" * 24]) == [record]
    assert backend.count_audit_records() == 1


def test_seeded_payments_read_back_as_the_service_would_have_left_them(backend):
    paid = replace(_intent("pay_" + "1" * 24, created_at=50.0), status="succeeded", mode="original",
                   updated_at=60.0, otp_hash="h1", otp_expires_at=350.0, succeeded_at=60.0)
    # A card kept without its fingerprint reads back without one.
    pending = replace(_intent("pay_" + "2" * 24), card=Card("visa", "1111"), status="awaiting_otp",
                      mode="audit-async", updated_at=time.time())
    outbox = [audit_record(pending.id, event, "audit-async", "async") for event in ("intent_created", "awaiting_otp")]
    backend.insert_payments([paid, pending], outbox)
    assert backend.find_payment(paid.id) == paid and backend.find_payment(pending.id) == pending
    assert backend.charge_count(paid.id) == 1 and backend.charge_count(pending.id) == 0
    assert backend.charge_once(paid, 999.0) == 60.0, "a seeded charge is the payment's one charge"
    assert backend.count_audit_records() == 0, "outbox records wait for the drainer"
    assert sum(backend.sweep_outbox(0.0, time.time() + 1)) == 2
    assert backend.count_audit_records() == 2


@pytest.mark.parametrize("mode", list(MODES))
def test_audit_records_per_mode(backend, inflight, drainer, mode):
    payment_id = _new_payment(policy_for(mode, backend, FAST_KNOBS, inflight, drainer))
    while drainer.drain_once(delay=False):
        pass
    expected = [] if mode == "original" else [(payment_id, "awaiting_otp"), (payment_id, "intent_created")]
    assert _audit_log(backend, [payment_id]) == expected
    assert drainer.sweep() == 0, "nothing may be left for the sweep"


def test_drainers_racing_on_the_same_outboxes_write_each_record_once(backend, inflight, drainer):
    policy = policy_for("audit-async", backend, FAST_KNOBS, inflight, drainer)
    ids = [_new_payment(policy, f"pay_{i:024x}") for i in range(5)]
    other = AuditDrainer(backend, lambda: 0, grace_s=0)
    for payment_id in ids[:3]:
        other.notify(payment_id)  # as if a second worker were told too
    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(lambda d: d.drain_once(delay=False), (other, drainer))) == [3, 5]
    assert len(_audit_log(backend, ids)) == 10
    assert drainer.sweep() == 0 and drainer.backlog == 0


def test_sweep_copies_outboxes_whose_worker_died_in_bounded_batches(backend, inflight):
    dead_workers_drainer = AuditDrainer(backend, lambda: 0, grace_s=0)
    policy = policy_for("audit-async", backend, FAST_KNOBS, inflight, dead_workers_drainer)
    ids = [_new_payment(policy, f"pay_{i:024x}") for i in range(7)]
    survivor = AuditDrainer(backend, lambda: 0, grace_s=0)
    batches = backend.sweep_outbox(0.0, time.time(), batch=3)
    assert next(batches) == 6  # one batch: three intents, two records each
    batches.close()
    assert survivor.sweep() == 8
    assert len(_audit_log(backend, ids)) == 14
    assert survivor.sweep() == 0


def test_a_sweep_copies_only_intents_created_in_its_window(backend, inflight):
    policy = policy_for("audit-async", backend, FAST_KNOBS, inflight, AuditDrainer(backend, lambda: 0, grace_s=0))
    # Created before the window, at its start (inside), at its end (outside: the window is half-open).
    before, first, at_end = (_new_payment(policy, f"pay_{i:024x}", created_at=t)
                             for i, t in enumerate((100.0, 200.0, 300.0)))
    assert sum(backend.sweep_outbox(200.0, 300.0)) == 2
    assert _audit_log(backend, [before, first, at_end]) == [(first, "awaiting_otp"), (first, "intent_created")]
    assert sum(backend.sweep_outbox(0.0, 400.0)) == 4, "what the window left out waits for its own sweep"


def _ready_with_otp(backend, inflight, expires_in=300):
    policy = policy_for("original", backend, FAST_KNOBS, inflight, None)
    payment_id = _new_payment(policy)
    assert backend.attach_otp(payment_id, "h1", time.time() + expires_in)
    return payment_id


def test_an_otp_is_attached_once_and_only_when_ready(backend, inflight):
    payment_id = _ready_with_otp(backend, inflight)
    assert not backend.attach_otp(payment_id, "h2", time.time() + 300), "a second OTP must not replace the first"
    assert backend.find_payment(payment_id).otp_hash == "h1"
    policy_for("original", backend, FAST_KNOBS, inflight, None).create_intent(_intent("pay_" + "c" * 24))
    assert not backend.attach_otp("pay_" + "c" * 24, "h3", time.time() + 300), "not ready yet"


def test_a_payment_is_charged_once(backend, inflight):
    payment_id = _ready_with_otp(backend, inflight)
    payment = backend.find_payment(payment_id)
    assert backend.charge_count(payment_id) == 0
    assert backend.charge_once(payment, 100.0) == backend.charge_once(payment, 200.0) == 100.0
    assert backend.charge_count(payment_id) == 1
    payment = backend.find_payment(payment_id)
    assert payment.status == "succeeded" and payment.succeeded_at == 100.0


def test_parallel_charges_charge_once(backend, inflight):
    payment_id = _ready_with_otp(backend, inflight)
    payment = backend.find_payment(payment_id)
    barrier = Barrier(8)

    def charge(i):
        barrier.wait()
        return backend.charge_once(payment, 1000.0 + i)

    with ThreadPoolExecutor(8) as pool:
        times = set(pool.map(charge, range(8)))
    assert len(times) == 1, "every verify must answer with the one charge"
    assert backend.charge_count(payment_id) == 1
    assert backend.find_payment(payment_id).succeeded_at == times.pop()


def test_a_parallel_burst_of_guesses_gets_three_attempts_in_all(backend, inflight):
    payment_id = _ready_with_otp(backend, inflight)
    barrier = Barrier(12)

    def claim(_):
        barrier.wait()
        return backend.claim_attempt(payment_id, 3)

    with ThreadPoolExecutor(12) as pool:
        claimed = list(pool.map(claim, range(12)))
    assert sorted(c for c in claimed if c is not None) == [1, 2, 3]
    assert claimed.count(None) == 9


def test_attempts_are_used_up_then_the_payment_locks(backend, inflight):
    payment_id = _ready_with_otp(backend, inflight)
    assert [backend.claim_attempt(payment_id, 3) for _ in range(4)] == [1, 2, 3, None]
    backend.lock(payment_id)
    assert backend.find_payment(payment_id).status == "locked"


def test_a_charge_beats_a_concurrent_lock(backend, inflight):
    payment_id = _ready_with_otp(backend, inflight)
    backend.charge_once(backend.find_payment(payment_id), time.time())
    backend.lock(payment_id)
    assert backend.find_payment(payment_id).status == "succeeded"


def test_prepare_may_run_again_and_the_store_answers_a_ping(backend):
    backend.prepare()  # every worker prepares the same store
    backend.ping()


@pytest.mark.unit
def test_the_sqlite_file_keeps_everything_across_a_reopen(tmp_path, inflight):
    path = tmp_path / "kept.sqlite3"
    first = SqliteBackend(path)
    drainer = AuditDrainer(first, lambda: 0)
    paid = _ready_with_otp(first, inflight)
    first.charge_once(first.find_payment(paid), 123.0)
    pending = _new_payment(policy_for("audit-async", first, FAST_KNOBS, inflight, drainer), "pay_" + "d" * 24)
    first.close()  # the drainer never ran: its records wait in the outbox

    again = SqliteBackend(path)
    assert again.find_payment(paid).status == "succeeded" and again.find_payment(paid).succeeded_at == 123.0
    assert again.charge_count(paid) == 1
    assert again.find_payment(pending).status == "awaiting_otp"
    assert AuditDrainer(again, lambda: 0, grace_s=0).sweep() == 2
    assert len(_audit_log(again, [pending])) == 2


@pytest.mark.unit
def test_a_writer_stuck_in_another_worker_fails_writes_fast_and_changes_nothing(tmp_path, inflight):
    path = tmp_path / "stuck.sqlite3"
    store = SqliteBackend(path, timeout_ms=300)
    paid = _ready_with_otp(store, inflight)
    # Another worker, stopped while it held the write lock: its flock on the lock file.
    other = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.claim_attempt(paid, 3)
        assert time.monotonic() - started < 2  # the timeout (0.3 s), never a hang
        assert store.find_payment(paid).status == "awaiting_otp"  # reads go on meanwhile
    finally:
        os.close(other)  # the stopped worker is gone: its lock with it
    assert store.claim_attempt(paid, 3) == 1  # the refused claim used up no attempt
