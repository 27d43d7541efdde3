"""The three persistence modes under gunicorn with 2 workers, real Redis and FerretDB."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from pymongo import MongoClient

import rig

from .helpers import initiate


def _metric(url: str, name: str) -> float:
    text = requests.get(url + "/metrics", timeout=5).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def _wait_for_no_writes_in_flight(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while _metric(url, "paygate_inflight_writes") > 0:
        assert time.monotonic() < deadline, "writes still in flight"
        time.sleep(0.1)


def _burst(url: str, n: int) -> list[dict]:
    """n initiates released at the same instant, each on its own connection.

    Each connection is opened before the release, so the burst is n requests
    arriving together, not n TCP handshakes competing with them for the CPU.
    """
    barrier = Barrier(n)

    def one(_):
        with requests.Session() as session:
            session.get(url + "/health", timeout=10).raise_for_status()
            barrier.wait()
            r = initiate(url, session)
        assert r.status_code == 200, r.text
        return r.json()

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _model_ms(knobs: dict, n: int) -> float:
    """SPEC's ready-time model for audit: 4w + 2a + n·c."""
    return 4 * knobs["write_latency_ms"] + 2 * knobs["audit_delay_ms"] + n * knobs["contention_ms_per_write"]


def test_original_serves_40_simultaneous_checkouts(own_app):
    # An app of its own: the session's shared app holds thousands of payments by
    # now (Locust, fuzzing, bursts), and its database, not the mode, would be measured.
    # One burst first, as a room's first minute would: every gunicorn and write
    # thread started, every connection open. Then up to three measured bursts, one
    # of which must be clean: on 2 cores shared by app, FerretDB, PostgreSQL and
    # this client, a single burst's tail misses 400 ms about one time in six
    # (CPU queueing, not the mode's timing model; see bench/RESULTS.md).
    _burst(own_app.url, 40)
    tries = []
    for _ in range(3):
        results = _burst(own_app.url, 40)
        tries.append(sum(r["status"] == "awaiting_otp" and r["ready_ms"] < 400 for r in results))
        if tries[-1] == 40:
            break
    assert tries[-1] == 40, f"OTPs issued within 400 ms per burst of 40: {tries}"


def test_audit_lone_request_matches_the_model(live):
    live.set_mode("audit")
    time.sleep(0.2)
    _wait_for_no_writes_in_flight(live.url)
    knobs = requests.get(live.url + "/admin/knobs", timeout=5).json()["knobs"]
    body = initiate(live.url).json()
    assert body["status"] == "awaiting_otp"
    model = _model_ms(knobs, 1)
    assert abs(body["ready_ms"] - model) <= 0.25 * model, (body["ready_ms"], model)


def test_audit_burst_of_10_fails_some_otps_silently(live):
    live.set_mode("audit")
    time.sleep(0.2)
    _wait_for_no_writes_in_flight(live.url)
    results = _burst(live.url, 10)
    failed = [r for r in results if r["status"] == "otp_unavailable"]
    assert failed, "no OTP failed under a burst of 10"
    assert all(r["message"] == "Unable to generate OTP. Please try again." for r in failed)
    assert requests.get(live.url + "/health", timeout=5).json() == {"status": "healthy"}
    # The writes ran on after the callers gave up: every intent reaches awaiting_otp.
    _wait_for_no_writes_in_flight(live.url)
    for r in failed:
        status = requests.get(f"{live.url}/payment/{r['payment_id']}", timeout=5).json()
        assert status["status"] == "awaiting_otp"


def test_audit_async_is_fast_and_loses_no_audit_record(live, live_db):
    live.set_mode("audit-async")
    time.sleep(0.2)
    results = _burst(live.url, 20)
    assert [r["status"] for r in results] == ["awaiting_otp"] * 20
    ids = [r["payment_id"] for r in results]
    deadline = time.monotonic() + 20
    while live_db.audit_logs.count_documents({"payment_id": {"$in": ids}}) < 2 * len(ids):
        assert time.monotonic() < deadline, "audit records were not drained"
        time.sleep(0.2)
    assert live_db.audit_logs.count_documents({"payment_id": {"$in": ids}, "path": "async"}) == 2 * len(ids)


@pytest.fixture
def own_app(mongo_url, redis_url):
    """A gunicorn app of this test's own (a fresh database, a server it may stop)."""
    app = rig.start_app("own", mongo_url, redis_url)
    yield app
    app.service.stop()


def test_graceful_stop_flushes_audit_outboxes(own_app, mongo_url):
    app = own_app
    app.set_mode("audit-async")
    # A slow audit store: outboxes pile up faster than the drainers empty them.
    app.admin("PATCH", "/admin/knobs", json={"audit_delay_ms": 2000}).raise_for_status()
    time.sleep(0.2)
    ids = [r["payment_id"] for r in _burst(app.url, 12)]
    db = MongoClient(mongo_url, serverSelectionTimeoutMS=3000)[app.db_name]
    assert db.audit_logs.count_documents({"payment_id": {"$in": ids}}) < 2 * len(ids), "nothing left to flush"
    app.service.stop()  # SIGTERM: graceful
    assert db.audit_logs.count_documents({"payment_id": {"$in": ids}}) == 2 * len(ids)
