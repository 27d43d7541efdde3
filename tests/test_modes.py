"""The three persistence modes under gunicorn with 2 workers, real Redis and FerretDB."""

from __future__ import annotations

import pytest
import requests
from pymongo import MongoClient

from app.errors import OtpUnavailable
from loadtest.checkout import initiate, ready_model_ms
from rig.probe import burst, no_writes_in_flight, poll_until


def _burst(url: str, n: int) -> list[dict]:
    """n initiates released at the same instant, each on a connection opened before the release."""
    sessions = [requests.Session() for _ in range(n)]
    try:
        responses = burst(lambda i: initiate(url, sessions[i]), n,
                          warm=lambda i: sessions[i].get(url + "/health", timeout=10).raise_for_status())
    finally:
        for session in sessions:
            session.close()
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    return [r.json() for r in responses]


@pytest.mark.timing
def test_original_serves_40_simultaneous_checkouts(own_app):
    app = own_app("modes")
    # An app of its own: the session's shared app holds thousands of payments by
    # now (Locust, fuzzing, bursts), and its database, not the mode, would be measured.
    # One burst first, as a room's first minute would: every gunicorn and write
    # thread started, every connection open. Then up to three measured bursts, one
    # of which must be clean: on 2 cores shared by app, FerretDB, PostgreSQL and
    # this client, a single burst's tail misses 400 ms about one time in six
    # (CPU queueing, not the mode's timing model; see bench/RESULTS.md).
    _burst(app.url, 40)
    tries = []
    for _ in range(3):
        results = _burst(app.url, 40)
        tries.append(sum(r["status"] == "awaiting_otp" and r["ready_ms"] < 400 for r in results))
        if tries[-1] == 40:
            break
    assert tries[-1] == 40, f"OTPs issued within 400 ms per burst of 40: {tries}"


@pytest.mark.timing
def test_audit_lone_request_matches_the_model(live):
    live.set_mode("audit")
    assert no_writes_in_flight(live.url)
    body = initiate(live.url).json()
    assert body["status"] == "awaiting_otp"
    model = ready_model_ms(live.knobs(), "audit", n=1)
    assert abs(body["ready_ms"] - model) <= 0.25 * model, (body["ready_ms"], model)


def test_audit_burst_of_10_fails_some_otps_silently(live):
    live.set_mode("audit")
    assert no_writes_in_flight(live.url)
    results = _burst(live.url, 10)
    failed = [r for r in results if r["status"] == "otp_unavailable"]
    assert failed, "no OTP failed under a burst of 10"
    assert all(r["message"] == OtpUnavailable.message for r in failed)
    assert requests.get(live.url + "/health", timeout=5).json() == {"status": "healthy"}
    # The writes ran on after the callers gave up: every intent reaches awaiting_otp.
    assert no_writes_in_flight(live.url)
    for r in failed:
        status = requests.get(f"{live.url}/payment/{r['payment_id']}", timeout=5).json()
        assert status["status"] == "awaiting_otp"


@pytest.mark.timing
def test_audit_async_is_fast_and_loses_no_audit_record(live, live_db):
    live.set_mode("audit-async")
    results = _burst(live.url, 20)
    assert [r["status"] for r in results] == ["awaiting_otp"] * 20
    ids = [r["payment_id"] for r in results]
    assert poll_until(lambda: live_db.audit_logs.count_documents({"payment_id": {"$in": ids}}) >= 2 * len(ids),
                      timeout=20, every=0.2), "audit records were not drained"
    assert live_db.audit_logs.count_documents({"payment_id": {"$in": ids}, "path": "async"}) == 2 * len(ids)


def test_graceful_stop_flushes_audit_outboxes(own_app, mongo_url):
    app = own_app("graceful")  # its own: the test stops it
    app.set_mode("audit-async")
    # A slow audit store: outboxes pile up faster than the drainers empty them.
    app.patch_knobs(audit_delay_ms=2000)
    ids = [r["payment_id"] for r in _burst(app.url, 12)]
    db = MongoClient(mongo_url, serverSelectionTimeoutMS=3000)[app.db_name]
    assert db.audit_logs.count_documents({"payment_id": {"$in": ids}}) < 2 * len(ids), "nothing left to flush"
    app.service.stop()  # SIGTERM: graceful
    assert db.audit_logs.count_documents({"payment_id": {"$in": ids}}) == 2 * len(ids), app.service.log_tail()
