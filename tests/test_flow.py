"""The checkout flow over HTTP against gunicorn with 2 workers, real Redis and FerretDB."""

from __future__ import annotations

import requests

from loadtest.checkout import TEST_CARD, initiate, verify


def test_checkout_with_the_demo_test_card(live, live_db):
    r = initiate(live.url)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "awaiting_otp"
    assert len(body["otp"]) == 6 and body["otp"].isdigit()
    assert body["otp_expires_in"] == 300
    assert 0 < body["ready_ms"] < 400

    done = verify(live.url, body["payment_id"], body["otp"])
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "succeeded"

    status = requests.get(f"{live.url}/payment/{body['payment_id']}", timeout=5).json()
    assert status["status"] == "succeeded"
    assert status["card"] == {"brand": "visa", "last4": "1111"}
    assert status["mode"] == "original"
    assert "otp" not in status and "otp_hash" not in status

    doc = live_db.payment_intents.find_one({"_id": body["payment_id"]})
    assert doc["status"] == "succeeded" and live_db.charges.count_documents({"_id": body["payment_id"]}) == 1
    assert TEST_CARD not in repr(doc)
