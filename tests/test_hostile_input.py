"""Hostile input against the live app (gunicorn, 2 workers, real Redis and FerretDB).

Operator injection, OTP brute force, oversized and malformed bodies, odd
characters, absurd numbers, admin calls without the token, secrets in
/debug/config. Each is refused with a clear JSON `error`, and a refused
request stores nothing.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import rig
from app import create_app
from loadtest.checkout import card_payload, initiate, verify

INJECTIONS = [{"$ne": ""}, {"$gt": ""}, {"$regex": ".*"}, ["4111111111111111"], [],
              {"nested": {"$ne": None}}, {"$where": "1 == 1"}]
VALID_VERIFY = {"payment_id": "pay_" + "0" * 24, "otp": "123456"}


def post(url: str, body=None, **kwargs) -> requests.Response:
    """POST a JSON body (or raw data via kwargs)."""
    if body is not None:
        kwargs["json"] = body
    return requests.post(url, timeout=10, **kwargs)


def refused(r: requests.Response, status: int, error: str | None = None) -> dict:
    """Assert a JSON refusal with that status and a machine-readable `error`."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    if error:
        assert body["error"] == error, body
    return body


def counts(db) -> dict:
    """Documents per collection of the live database."""
    return {name: db[name].count_documents({}) for name in db.list_collection_names()}


@pytest.fixture
def stored(live, live_db):
    """Asserts at the end of the test that no document was added by it."""
    before = counts(live_db)
    yield before
    assert counts(live_db) == before


@pytest.fixture
def paid_for(live):
    """A payment awaiting its OTP, to aim attacks at."""
    r = initiate(live.url)
    assert r.status_code == 200 and r.json()["status"] == "awaiting_otp", r.text
    return r.json()


# -- MongoDB operator injection -------------------------------------------------

@pytest.mark.parametrize("field", ["card_number", "expiry", "cvv", "amount", "currency"])
@pytest.mark.parametrize("value", INJECTIONS, ids=json.dumps)
def test_operator_injection_in_initiate_is_refused(live, stored, field, value):
    body = refused(post(live.url + "/payment/initiate", card_payload(**{field: value})), 400, "validation_error")
    assert field in body["fields"]


@pytest.mark.parametrize("field", ["payment_id", "otp"])
@pytest.mark.parametrize("value", INJECTIONS, ids=json.dumps)
def test_operator_injection_in_verify_never_matches_a_payment(live, live_db, paid_for, field, value):
    pid = paid_for["payment_id"]
    before = counts(live_db)
    attack = {"payment_id": pid, "otp": paid_for["otp"], field: value}
    body = refused(post(live.url + "/payment/verify-otp", attack), 400, "validation_error")
    assert field in body["fields"]
    doc = live_db.payment_intents.find_one({"_id": pid})
    # Nothing matched: no state change, not even a wrong attempt counted.
    assert doc["status"] == "awaiting_otp"
    assert live_db.otp_attempts.count_documents({"payment_id": pid}) == 0
    assert live_db.charges.count_documents({"_id": pid}) == 0
    assert counts(live_db) == before
    assert verify(live.url, pid, paid_for["otp"]).json()["status"] == "succeeded"


@pytest.mark.parametrize("path", ["/payment/%7B%22$ne%22:%22%22%7D", "/payment/$ne", "/payment/pay_.*",
                                  "/payment/%00", "/payment/pay_" + "0" * 24 + "%22"])
def test_operator_injection_in_the_status_path_is_a_404(live, paid_for, path):
    refused(requests.get(live.url + path, timeout=10), 404)


@pytest.mark.parametrize("extra", [{"$where": "1"}, {"status": "succeeded"}, {"_id": "pay_x"}, {"otp_hash": ""}])
def test_unknown_fields_are_refused_not_stored(live, stored, extra):
    body = refused(post(live.url + "/payment/initiate", {**card_payload(), **extra}), 400, "validation_error")
    assert set(extra) <= set(body["fields"])


def test_operator_injection_in_admin_fields_is_refused(live):
    before = requests.get(live.url + "/admin/history", timeout=10).json()
    for body in ({"mode": {"$ne": ""}}, {"mode": ["audit"]}, {"mode": "audit", "actor": {"$gt": ""}},
                 {"mode": "audit", "ttl_seconds": {"$gt": 0}}):
        refused(live.admin("PUT", "/admin/db-mode", json=body), 400, "validation_error")
    for body in ({"audit_delay_ms": {"$gt": 0}}, {"silent_failures": {"$ne": True}}, {"$set": {"x": 1}}):
        refused(live.admin("PATCH", "/admin/knobs", json=body), 400, "validation_error")
    assert requests.get(live.url + "/admin/history", timeout=10).json() == before


# -- OTP brute force -------------------------------------------------------------

def test_otp_brute_force_locks_after_three_tries_and_stays_locked(live, live_db, paid_for):
    pid, otp = paid_for["payment_id"], paid_for["otp"]
    wrong = f"{(int(otp) + 1) % 10**6:06d}"
    assert refused(verify(live.url, pid, wrong), 400, "invalid_otp")["attempts_left"] == 2
    assert refused(verify(live.url, pid, wrong), 400, "invalid_otp")["attempts_left"] == 1
    refused(verify(live.url, pid, wrong), 423, "locked")
    for _ in range(3):  # the right OTP, on either worker, changes nothing now
        refused(verify(live.url, pid, otp), 423, "locked")
    doc = live_db.payment_intents.find_one({"_id": pid})
    assert doc["status"] == "locked" and live_db.charges.count_documents({"_id": pid}) == 0
    assert requests.get(f"{live.url}/payment/{pid}", timeout=10).json()["status"] == "locked"


def test_a_burst_of_parallel_guesses_gets_three_tries_in_all(live, live_db, paid_for):
    pid, otp = paid_for["payment_id"], paid_for["otp"]
    # The right OTP hides in the burst: it must not get through once three tries are used.
    guesses = [f"{(int(otp) + i) % 10**6:06d}" for i in range(1, 24)] + [otp]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda g: verify(live.url, pid, g), guesses))
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 400, 423}, [r.text for r in answers]
    assert codes.count(400) + codes.count(200) <= 3, "more than three OTPs were compared"
    assert live_db.otp_attempts.count_documents({"payment_id": pid}) == 3
    charged = live_db.charges.count_documents({"_id": pid})
    assert charged == codes.count(200) <= 1
    doc = live_db.payment_intents.find_one({"_id": pid})
    assert doc["status"] == ("succeeded" if charged else "locked")


# -- bodies: size, content type, syntax -----------------------------------------

@pytest.mark.parametrize("route", ["/payment/initiate", "/payment/verify-otp"])
def test_oversized_bodies_are_413(live, stored, route):
    big = {**card_payload(), "padding": "x" * 64 * 1024}
    refused(post(live.url + route, big), 413, "body_too_large")
    # Without a Content-Length (chunked), the limit holds all the same.
    chunks = (b"x" * 4096 for _ in range(64))
    refused(post(live.url + route, data=chunks, headers={"Content-Type": "application/json"}), 413)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml", "application/jsonx"])
def test_wrong_content_types_are_415(live, stored, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    data = json.dumps(card_payload()).encode()
    refused(post(live.url + "/payment/initiate", data=data, headers=headers), 415, "unsupported_media_type")


@pytest.mark.parametrize("raw", [b"{", b'{"card_number": ', b"{'card_number': '4111'}", b"", b"null", b"[]",
                                 b'"4111111111111111"', b"42", b'\xff\xfe{"a": 1}', b'{"a": 1}{"b": 2}'])
def test_malformed_json_is_400(live, stored, raw):
    r = post(live.url + "/payment/initiate", data=raw, headers={"Content-Type": "application/json"})
    assert refused(r, 400)["error"] in ("invalid_json", "validation_error")


@pytest.mark.parametrize("field,value", [
    ("card_number", "４１１１１１１１１１１１１１１１"),  # full-width digits
    ("card_number", "4111111111111111\u0000"),
    ("card_number", "4111\u202e1111111111111"),  # right-to-left override
    ("card_number", "4111-1111-1111-111\u00a01"),
    ("cvv", "１２３"), ("cvv", "12\n3"), ("cvv", "\ud800"),
    ("expiry", "12/30\r\n"), ("expiry", "🙂"),
    ("currency", "usd\u0000"), ("currency", "ＵＳＤ"),
])
def test_unicode_and_control_characters_are_400(live, stored, field, value):
    body = refused(post(live.url + "/payment/initiate", card_payload(**{field: value})), 400, "validation_error")
    assert field in body["fields"]


@pytest.mark.parametrize("amount", [-1, 0, -0.01, 0.001, "10.005", 49.999, 10**100, 10000.01, "1e3000",
                                    "NaN", "-Infinity", True, None, "", "12,50"])
def test_bad_amounts_are_400(live, stored, amount):
    body = refused(post(live.url + "/payment/initiate", card_payload(amount=amount)), 400, "validation_error")
    assert "amount" in body["fields"]


@pytest.mark.parametrize("literal", ["1" + "0" * 5000, "1e400", "-1e400", "NaN", "Infinity"])
def test_numbers_json_cannot_hold_are_400(live, stored, literal):
    raw = '{"card_number": "4111111111111111", "expiry": "12/40", "cvv": "123", "amount": ' + literal + "}"
    r = post(live.url + "/payment/initiate", data=raw, headers={"Content-Type": "application/json"})
    assert refused(r, 400)["error"] in ("invalid_json", "validation_error")


def test_huge_knob_values_are_400(live):
    before = admin_state(live.url)
    refused(live.admin("PATCH", "/admin/knobs", json={"audit_delay_ms": 10**30}), 400, "validation_error")
    refused(live.admin("PUT", "/admin/db-mode", json={"mode": "audit", "ttl_seconds": 10**30}), 400)
    assert admin_state(live.url) == before


# -- admin writes without the token ---------------------------------------------

ADMIN_WRITES = [("PUT", "/admin/db-mode", {"mode": "audit"}), ("POST", "/admin/db-mode", {"mode": "audit-async"}),
                ("PATCH", "/admin/knobs", {"audit_delay_ms": 1500}), ("POST", "/admin/reset", {})]
BAD_AUTH = [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Bearer "}, {"Authorization": "Bearer"},
            {"Authorization": f"Basic {rig.TEST_TOKEN}"}, {"Authorization": rig.TEST_TOKEN},
            {"Authorization": f"Bearer {rig.TEST_TOKEN}x"}, {"Authorization": f"Bearer {rig.TEST_TOKEN.upper()}"},
            {"X-Admin-Token": rig.TEST_TOKEN}]


def admin_state(url: str) -> tuple:
    """Mode, knobs and history as anyone can read them."""
    return tuple(requests.get(url + p, timeout=10).json() for p in ("/admin/db-mode", "/admin/knobs", "/admin/history"))


def test_admin_writes_without_the_right_token_are_401_and_change_nothing(live):
    live.set_mode("audit-async")  # a state that a reset would visibly undo
    # the flip answered once every worker served it: whichever answers shows audit-async
    before = admin_state(live.url)
    for method, path, body in ADMIN_WRITES:
        for headers in BAD_AUTH:
            r = requests.request(method, live.url + path, json=body, headers=headers, timeout=10)
            refused(r, 401, "unauthorized")
        r = requests.request(method, f"{live.url}{path}?token={rig.TEST_TOKEN}", json=body, timeout=10)
        refused(r, 401, "unauthorized")
    assert admin_state(live.url) == before


# -- secrets in /debug/config ------------------------------------------------------

def test_debug_config_of_the_live_app_shows_no_secret(live):
    r = requests.get(live.url + "/debug/config", timeout=10)
    assert r.status_code == 200
    assert rig.TEST_TOKEN not in r.text and rig.TEST_SECRET not in r.text
    settings = r.json()["settings"]
    assert settings["admin_token"] == "***" and settings["secret_key"] == "***"
    for path in ("/admin/knobs", "/admin/db-mode", "/openapi.json", "/metrics", "/health", "/ready"):
        text = requests.get(live.url + path, timeout=10).text
        assert rig.TEST_TOKEN not in text and rig.TEST_SECRET not in text, path


def debug_settings(mongo_url: str, redis_url: str, *secrets: str) -> dict:
    """The settings /debug/config shows for an app on these URLs, once none of `secrets` is in its answer."""
    app = create_app(rig.app_config(mongo_url=mongo_url, redis_url=redis_url, START_BACKGROUND=False))
    try:
        r = app.test_client().get("/debug/config")
        assert r.status_code == 200, r.get_data(as_text=True)[:300]
        text = r.get_data(as_text=True)
        for secret in (*secrets, rig.TEST_TOKEN, rig.TEST_SECRET):
            assert secret not in text
        return r.get_json()["settings"]
    finally:
        # Only the store's connections: the kit's close would flush audit outboxes into a database it cannot use
        # (FerretDB refuses the made-up credentials; the two hosts below are not there).
        app.extensions["paygate"].backends.store.close()


def test_debug_config_redacts_passwords_in_urls(mongo_service, redis_service):
    mongo_pw, redis_pw = rig.unique("m0ngo-pw-"), rig.unique("red1s-pw-")
    settings = debug_settings(f"mongodb://paygate:{mongo_pw}@127.0.0.1:{mongo_service.port}/",
                              f"redis://default:{redis_pw}@127.0.0.1:{redis_service.port}/0", mongo_pw, redis_pw)
    assert settings["mongo_url"] == f"mongodb://paygate:***@127.0.0.1:{mongo_service.port}/"
    assert settings["redis_url"] == f"redis://default:***@127.0.0.1:{redis_service.port}/0"


def test_debug_config_answers_with_a_multi_host_url(redis_url):
    mongo_pw, redis_pw = rig.unique("m0ngo-pw-"), rig.unique("red1s-pw-")
    # Two MongoDB hosts with ports: urlsplit cannot read the port (it raised, /debug/config was a 500).
    # Nothing connects to them: /debug/config reads only Redis.
    hosts = f"127.0.0.1:{rig.free_port()},127.0.0.1:{rig.free_port()}"
    mongo_url = f"mongodb://paygate:{mongo_pw}@{hosts}/?replicaSet=rs0&tlsCertificateKeyFilePassword={mongo_pw}"
    settings = debug_settings(mongo_url, f"{redis_url}?password={redis_pw}", mongo_pw, redis_pw)
    assert settings["mongo_url"] == f"mongodb://paygate:***@{hosts}/?replicaSet=rs0&tlsCertificateKeyFilePassword=***"
    assert settings["redis_url"] == f"{redis_url}?password=***"
