"""Every status code of the API (docs/contract.md, Status codes; docs/api.md), on a fresh app per test against real Redis and FerretDB."""

from __future__ import annotations

import logging
import time

import pytest
from pymongo import MongoClient

from loadtest.checkout import card_payload
from rig.probe import poll_until


@pytest.fixture
def app_db(app, mongo_url):
    """The test app's database, through a client of its own: what is at rest, and a fault to plant."""
    client = MongoClient(mongo_url, serverSelectionTimeoutMS=3000)
    yield client[app.extensions["paygate"].settings.mongo_db]
    client.close()


def _initiate(client, **overrides):
    return client.post("/payment/initiate", json=card_payload(**overrides))


def _verify(client, payment_id, otp):
    return client.post("/payment/verify-otp", json={"payment_id": payment_id, "otp": otp})


def _wrong(otp: str) -> str:
    return f"{(int(otp) + 1) % 10**6:06d}"


def _orphan(client, auth) -> str:
    """A payment whose OTP timed out: the write outlives a 50 ms deadline."""
    r = client.patch("/admin/knobs", json={"write_latency_ms": 200, "otp_timeout_ms": 50}, headers=auth)
    assert r.status_code == 200, r.json
    body = _initiate(client).json
    assert body["status"] == "otp_unavailable"
    return body["payment_id"]


def test_initiate_issues_an_otp(client):
    r = _initiate(client, amount="12.50", currency="EUR")
    assert r.status_code == 200
    body = r.json
    assert set(body) == {"payment_id", "status", "otp", "otp_expires_in", "ready_ms"}
    assert body["status"] == "awaiting_otp"
    status = client.get(f"/payment/{body['payment_id']}").json
    assert status["amount"] == "12.50" and status["currency"] == "EUR"
    assert status["status"] == "awaiting_otp"


@pytest.mark.parametrize("field, value, message", [
    ("card_number", "4111111111111112", "Luhn"),
    ("card_number", "4111", "12 to 19 digits"),
    ("expiry", "01/20", "in the past"),
    ("expiry", "13/30", "MM/YY"),
    ("cvv", "12", "3 or 4 digits"),
    ("cvv", "12a", "3 or 4 digits"),
    ("amount", 0, "greater than 0"),
    ("amount", 10000.01, "at most 10000"),
    ("amount", "1.234", "two decimals"),
    ("currency", "XYZ", "Input should be"),
])
def test_invalid_fields_are_400_with_the_field_named(client, app_db, field, value, message):
    r = _initiate(client, **{field: value})
    assert r.status_code == 400
    assert r.json["error"] == "validation_error"
    assert message in r.json["fields"][field]
    assert app_db.payment_intents.count_documents({}) == 0


def test_verify_succeeds_once_and_a_repeat_answers_the_same(client, app):
    body = _initiate(client).json
    first = _verify(client, body["payment_id"], body["otp"])
    again = _verify(client, body["payment_id"], body["otp"])
    assert first.status_code == again.status_code == 200
    assert first.json == again.json and first.json["status"] == "succeeded"
    store = app.extensions["paygate"].backends.store
    assert store.find_payment(body["payment_id"]).status == "succeeded"
    assert store.charge_count(body["payment_id"]) == 1


def test_wrong_otp_is_400_with_attempts_left_then_423_locked(client):
    body = _initiate(client).json
    wrong = _wrong(body["otp"])
    answers = [_verify(client, body["payment_id"], wrong) for _ in range(3)]
    assert [a.status_code for a in answers] == [400, 400, 423]
    assert [a.json.get("attempts_left") for a in answers] == [2, 1, 0]
    assert answers[0].json["error"] == "invalid_otp" and answers[2].json["error"] == "locked"
    # Locked stays locked, even for the right OTP.
    assert _verify(client, body["payment_id"], body["otp"]).status_code == 423


def test_unknown_payment_is_404(client):
    r = _verify(client, "pay_" + "0" * 24, "123456")
    assert r.status_code == 404 and r.json["error"] == "payment_not_found"
    assert client.get("/payment/pay_" + "0" * 24).status_code == 404
    assert client.get("/payment/not-an-id").status_code == 404


def test_no_otp_issued_is_409(client, auth):
    payment_id = _orphan(client, auth)
    # the write runs on after the timeout
    assert poll_until(lambda: client.get(f"/payment/{payment_id}").json["status"] == "awaiting_otp", timeout=5)
    r = _verify(client, payment_id, "123456")
    assert r.status_code == 409 and r.json["error"] == "no_otp"


def test_expired_otp_is_410(client, app_db):
    body = _initiate(client).json
    app_db.payment_intents.update_one(
        {"_id": body["payment_id"]}, {"$set": {"otp_expires_at": time.time() - 1}})
    r = _verify(client, body["payment_id"], body["otp"])
    assert r.status_code == 410 and r.json["error"] == "otp_expired"


def test_silent_failure_is_200_and_logs_nothing(client, auth, caplog):
    with caplog.at_level(logging.DEBUG, logger="paygate"):
        payment_id = _orphan(client, auth)
    assert payment_id.startswith("pay_")
    assert not [r for r in caplog.records if r.name.startswith("paygate")]


def test_loud_failure_is_503_with_one_warning(client, auth, caplog):
    client.patch("/admin/knobs", json={"silent_failures": False}, headers=auth)
    client.patch("/admin/knobs", json={"write_latency_ms": 200, "otp_timeout_ms": 50}, headers=auth)
    with caplog.at_level(logging.INFO, logger="paygate"):
        r = _initiate(client)
    assert r.status_code == 503
    assert r.json["error"] == "otp_unavailable"
    assert r.json["message"] == "Unable to generate OTP. Please try again."
    assert r.headers["Retry-After"] == "1"  # `original`: no backlog to wait out
    warnings = [rec for rec in caplog.records if rec.name.startswith("paygate")]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


def test_loud_failure_in_audit_asks_for_the_time_a_write_takes_now(client, auth):
    """Retry-After by the timing model: 4w + 2a + n·c rounded up to whole seconds."""
    client.put("/admin/db-mode", json={"mode": "audit"}, headers=auth)
    client.patch("/admin/knobs", json={"silent_failures": False, "otp_timeout_ms": 50,
                                       "audit_delay_ms": 600, "write_latency_ms": 0}, headers=auth)
    r = _initiate(client)
    assert r.status_code == 503 and r.json["error"] == "otp_unavailable"
    # 2 × 600 ms of audit delay and this write's own 50 ms of contention: 1.25 s, so 2 s.
    assert r.headers["Retry-After"] == "2"


def test_body_errors(client):
    assert client.post("/payment/initiate", data="card=1", content_type="text/plain").status_code == 415
    r = client.post("/payment/initiate", data="{not json", content_type="application/json")
    assert r.status_code == 400 and r.json["error"] == "invalid_json"
    r = client.post("/payment/initiate", json=["a list"])
    assert r.status_code == 400 and r.json["error"] == "invalid_json"
    r = client.post("/payment/initiate", data="x" * 20000, content_type="application/json")
    assert r.status_code == 413 and r.json["error"] == "body_too_large"


def test_unknown_route_and_method_are_json(client):
    assert client.get("/nope").json["error"] == "not_found"
    r = client.delete("/payment/initiate")
    assert r.status_code == 405 and r.json["error"] == "method_not_allowed"


def test_health_and_ready(client):
    assert client.get("/health").json == {"status": "healthy"}
    r = client.get("/ready")
    assert r.status_code == 200 and r.json["checks"] == {"mongodb": "ok", "redis": "ok"}


def test_admin_writes_need_the_token(client, auth):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + auth["Authorization"][7:]}):
        r = client.put("/admin/db-mode", json={"mode": "audit"}, headers=headers)
        assert r.status_code == 401 and r.json["error"] == "unauthorized"
        assert client.patch("/admin/knobs", json={"audit_delay_ms": 1}, headers=headers).status_code == 401
        assert client.post("/admin/reset", headers=headers).status_code == 401
    assert client.get("/admin/db-mode").json["mode"] == "original"
    assert client.get("/admin/knobs").json["knobs"]["audit_delay_ms"] == 100
    assert client.get("/admin/history").json["events"] == []


def test_flip_knobs_history_and_reset(client, auth):
    r = client.post("/admin/db-mode", json={"mode": "audit", "actor": "ana"}, headers=auth)  # POST alias
    assert r.status_code == 200 and r.json["mode"] == "audit" and r.json["actor"] == "ana"
    assert client.put("/admin/db-mode", json={"mode": "chaos"}, headers=auth).status_code == 400
    r = client.patch("/admin/knobs", json={"contention_ms_per_write": 80}, headers=auth)
    assert r.json["knobs"]["contention_ms_per_write"] == 80
    bad = client.patch("/admin/knobs", json={"otp_timeout_ms": 10**6}, headers=auth)
    assert bad.status_code == 400 and "otp_timeout_ms" in bad.json["fields"]
    events = client.get("/admin/history").json["events"]
    assert [(e["kind"], e["from"], e["to"]) for e in events] == [
        ("knobs", {"contention_ms_per_write": 50}, {"contention_ms_per_write": 80}),
        ("mode", "original", "audit"),
    ]
    assert events[1]["actor"] == "ana" and events[1]["at"] <= events[0]["at"]
    r = client.post("/admin/reset", headers=auth)
    assert r.status_code == 200 and r.json["mode"] == "original"
    assert client.get("/admin/knobs").json["knobs"]["contention_ms_per_write"] == 50


def test_debug_config_redacts_secrets(client):
    body = client.get("/debug/config").get_data(as_text=True)
    assert "test-admin-token" not in body and "test-secret-key" not in body
    cfg = client.get("/debug/config").json
    assert cfg["settings"]["admin_token"] == "***"
    assert cfg["mode"] == "original" and cfg["knobs"]["otp_timeout_ms"] == 400
    assert isinstance(cfg["worker_pid"], int)


def test_docs_work_offline(client):
    spec = client.get("/openapi.json").json
    assert "/payment/initiate" in spec["paths"] and "InitiateRequest" in spec["components"]["schemas"]
    page = client.get("/docs").get_data(as_text=True)
    assert "http" not in page.replace("http-equiv", "")  # no CDN: every asset is ours
    assert client.get("/docs/static/swagger-ui-bundle.js").status_code == 200
