"""The audit drainer at scale and under errors: no record is ever lost."""

from __future__ import annotations

import logging
import time

import pytest
from bson.errors import InvalidDocument
from pymongo import MongoClient

import rig
from app.store import AuditDrainer
from app.store.mongo import MongoBackend
from app.store.sqlite import SqliteBackend
from rig import seed
from rig.probe import poll_until

# Payments whose worker died before its drainer copied their audit records: many batches of
# BATCH on each backend. SQLite seeds 50,000 in seconds; FerretDB seeds about a thousand a second,
# so it sweeps 10,000 here (twenty batches, the same code path) and the benchmark's drainer
# section (bench/faults.py) measures its 50,000.
UNDRAINED = {"ferretdb": 10_000, "sqlite": 50_000}


@pytest.mark.services
@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", ["ferretdb", "sqlite"])
def test_a_sweep_copies_every_record_of_a_dead_workers_backlog(kind, request, tmp_path):
    n = UNDRAINED[kind]
    if kind == "ferretdb":
        url, name = request.getfixturevalue("mongo_url"), rig.unique("drain_")
        seed.seed_mongo(url, name, n, undrained=True)
        client = MongoClient(url)
        backend = MongoBackend(client[name])
    else:
        path = tmp_path / "paygate.sqlite3"
        seed.seed_sqlite(path, n, undrained=True)
        backend = SqliteBackend(path)
    try:
        drainer = AuditDrainer(backend, lambda: 0, grace_s=0)
        started = time.monotonic()
        assert drainer.sweep() == 2 * n
        print(f"{kind}: {2 * n} records swept in {time.monotonic() - started:.1f} s")
        assert backend.count_audit_records() == 2 * n
        assert drainer.sweep() == 0, "the next sweep covers only what came since"
    finally:
        if kind == "ferretdb":
            client.drop_database(name)
            client.close()


class _FailsOnce:
    """A real backend whose next copy fails with an error that is not the driver's."""

    def __init__(self, backend):
        self.backend, self.failed = backend, False

    def copy_outbox(self, ids):
        if not self.failed:
            self.failed = True
            raise InvalidDocument("as a 16 MiB query would")
        return self.backend.copy_outbox(ids)

    def __getattr__(self, name):
        return getattr(self.backend, name)


@pytest.mark.unit
def test_the_drainer_thread_survives_any_error_and_loses_nothing(tmp_path, caplog):
    backend = SqliteBackend(tmp_path / "paygate.sqlite3")
    ids = seed.seed_sqlite(backend.path, 3, undrained=True)
    # Only the notified ids: the failure must not be swept over.
    drainer = AuditDrainer(_FailsOnce(backend), lambda: 0, interval_s=0.01, sweeps=False)
    for payment_id in ids:
        drainer.notify(payment_id)
    with caplog.at_level(logging.WARNING, logger="paygate"):
        drainer.start()
        assert poll_until(lambda: backend.count_audit_records() >= 6, timeout=10), "the drainer stopped after the error"
        drainer.stop()
    assert drainer.backlog == 0
    assert any("InvalidDocument" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
