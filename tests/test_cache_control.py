"""`Cache-Control: no-store` where an answer must not be kept by a browser or a proxy.

The initiate answer holds the OTP; /admin answers carry the facilitator's
state and are requested with the admin token. Every one of them, errors
included, carries `no-store` (real Redis and FerretDB behind the test client).
"""

from __future__ import annotations

import pytest

from loadtest.checkout import card_payload

ADMIN_READS = ["/admin", "/admin/db-mode", "/admin/knobs", "/admin/history", "/admin/", "/admin/no-such"]


def no_store(response) -> bool:
    """True when the answer forbids any cache to keep it."""
    return "no-store" in {d.strip() for d in response.headers.get("Cache-Control", "").split(",")}


def test_the_otp_answer_is_no_store(client):
    r = client.post("/payment/initiate", json=card_payload())
    assert r.status_code == 200 and r.get_json()["otp"]
    assert no_store(r)


def test_initiate_errors_are_no_store(client):
    answers = [
        client.post("/payment/initiate", json=card_payload(cvv="1")),               # 400 validation_error
        client.post("/payment/initiate", data="x", content_type="text/plain"),      # 415
        client.post("/payment/initiate", json={**card_payload(), "pad": "x" * 20000}),  # 413
    ]
    assert [r.status_code for r in answers] == [400, 415, 413]
    assert all(no_store(r) for r in answers)


@pytest.mark.parametrize("silent", [True, False])
def test_the_otp_failure_is_no_store(client, auth, silent):
    # audit at a 50 ms deadline: the write cannot make it, the answer is the (silent or loud) failure.
    assert client.patch("/admin/knobs", json={"otp_timeout_ms": 50, "silent_failures": silent},
                        headers=auth).status_code == 200
    assert client.put("/admin/db-mode", json={"mode": "audit"}, headers=auth).status_code == 200
    r = client.post("/payment/initiate", json=card_payload())
    assert (r.status_code, r.get_json()["status" if silent else "error"]) == (200 if silent else 503, "otp_unavailable")
    assert no_store(r)


@pytest.mark.parametrize("path", ADMIN_READS)
def test_every_admin_read_is_no_store(client, path):
    r = client.get(path)
    assert r.status_code in (200, 404), (path, r.status_code)
    assert no_store(r), path


def test_admin_writes_and_their_errors_are_no_store(client, auth):
    answers = [
        client.put("/admin/db-mode", json={"mode": "audit"}),                       # 401
        client.put("/admin/db-mode", json={"mode": "audit"}, headers=auth),         # 200
        client.put("/admin/db-mode", json={"mode": "nope"}, headers=auth),          # 400
        client.patch("/admin/knobs", json={"audit_delay_ms": 150}, headers=auth),   # 200
        client.post("/admin/reset", headers=auth),                                  # 200
        client.delete("/admin/db-mode", headers=auth),                              # 405
    ]
    assert [r.status_code for r in answers] == [401, 200, 400, 200, 200, 405]
    assert all(no_store(r) for r in answers)
