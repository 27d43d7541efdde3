"""No card number and no CVV at rest (MongoDB, Redis), in the logs or in the traces.

A gunicorn app of its own (2 workers, access log on, every span exported to a
real Zipkin) takes payments in every mode with several test cards, including
the loud failure (its WARNING line) and refused requests; then every document
of every collection, every Redis key of the app, every captured log line and
every span Zipkin stored is searched.
"""

from __future__ import annotations

import re

import redis
import requests
from bson import json_util
from pymongo import MongoClient

import rig
from loadtest.checkout import future_expiry

# Test cards of four brands, each with a CVV no log line or document has a reason
# to contain: a leading zero (never a pid, port, status, size or year).
CARDS = [
    ("4111 1111 1111 1111", "0731"),
    ("5555-5555-5555-4444", "0868"),
    ("378282246310005", "0593"),
    ("6011111111111117", "0947"),
    ("4012888888881881", "0386"),
]
BAD_LUHN = "4111111111111112"  # refused, but must not be echoed or logged either


def digits(number: str) -> str:
    return re.sub(r"[ -]", "", number)


def cvv_token(cvv: str) -> re.Pattern:
    """The CVV as a whole token: not inside a longer word, number or decimal fraction."""
    return re.compile(rf"(?<![\w.]){cvv}(?!\w|\.\d)")


def pay(url: str, number: str, cvv: str) -> requests.Response:
    body = {"card_number": number, "expiry": future_expiry(), "cvv": cvv, "amount": "12.34"}
    return requests.post(url + "/payment/initiate", json=body, timeout=15)


def drive_payments(app: rig.App) -> dict:
    """Payments with every card in every mode, verified when an OTP came back."""
    outcomes = {}
    for mode in ("original", "audit", "audit-async"):
        app.set_mode(mode)
        for number, cvv in CARDS:
            r = pay(app.url, number, cvv)
            assert r.status_code == 200, r.text
            body = r.json()
            outcomes[body["payment_id"]] = body["status"]
            if body["status"] == "awaiting_otp":
                v = requests.post(app.url + "/payment/verify-otp",
                                  json={"payment_id": body["payment_id"], "otp": body["otp"]}, timeout=15)
                assert v.json()["status"] == "succeeded", v.text
    # The loud failure: a deadline no audit write can meet, and its WARNING line.
    app.set_mode("audit")
    app.patch_knobs(silent_failures=False, otp_timeout_ms=50)
    for number, cvv in CARDS[:2]:
        r = pay(app.url, number, cvv)
        assert r.status_code == 503 and r.json()["error"] == "otp_unavailable", r.text
        outcomes[r.json()["payment_id"]] = "otp_unavailable"
    # Refused requests echo nothing back either.
    for number, cvv in CARDS:
        r = requests.post(app.url + "/payment/initiate",
                          json={"card_number": number, "expiry": "01/20", "cvv": cvv}, timeout=15)
        assert r.status_code == 400 and number not in r.text and digits(number) not in r.text and cvv not in r.text
    r = pay(app.url, BAD_LUHN, CARDS[0][1])
    assert r.status_code == 400 and BAD_LUHN not in r.text
    return outcomes


def redis_dump(rds: redis.Redis, prefix: str) -> str:
    """Every key of the app and its value, as text."""
    out = []
    for key in rds.scan_iter(match=prefix + "*"):
        kind = rds.type(key)
        value = {"string": lambda: rds.get(key), "list": lambda: rds.lrange(key, 0, -1),
                 "hash": lambda: rds.hgetall(key), "set": lambda: rds.smembers(key),
                 "zset": lambda: rds.zrange(key, 0, -1, withscores=True)}.get(kind, lambda: "")()
        out.append(f"{key} {value}")
    return "\n".join(out)


def test_no_card_number_or_cvv_at_rest_or_in_logs(own_app, mongo_url, redis_url, zipkin):
    # Its stdout and stderr, access log included, go to the service's log file.
    logged_app = own_app("cards", ACCESS_LOG="-", OTEL_EXPORTER_ZIPKIN_ENDPOINT=f"{zipkin.url}/api/v2/spans",
                         OTEL_SERVICE_NAME="paygate-cards")
    outcomes = drive_payments(logged_app)
    assert len(outcomes) == 3 * len(CARDS) + 2

    # A graceful stop flushes the audit-async outboxes (so audit_logs is complete)
    # and closes the log file before it is read.
    logged_app.service.stop()
    log = logged_app.service.log_path.read_text(errors="replace")
    client = MongoClient(mongo_url, serverSelectionTimeoutMS=5000)
    try:
        db = client[logged_app.db_name]
        names = db.list_collection_names()
        assert {"payment_intents", "audit_logs"} <= set(names)
        docs = {name: list(db[name].find()) for name in names}
    finally:
        client.close()
    rds = redis.Redis.from_url(redis_url, decode_responses=True)
    at_rest_redis = redis_dump(rds, logged_app.prefix)
    rds.close()

    # The capture works: access lines for the payments, and the WARNING line.
    assert log.count("POST /payment/initiate") >= len(outcomes)
    assert log.count("OTP unavailable: payment") == 2

    intents = {d["_id"]: d for d in docs["payment_intents"]}
    assert set(outcomes) <= set(intents)
    for doc in intents.values():
        assert set(doc["card"]) == {"brand", "last4", "fingerprint"}
        assert not {k for k in doc if "cvv" in k.lower() or k.lower() in ("card_number", "number", "pan", "expiry")}

    # The graceful stop exported every span still queued; Zipkin has them all.
    traces = requests.get(f"{zipkin.url}/api/v2/traces", timeout=10,
                          params={"serviceName": "paygate-cards", "limit": 10_000, "lookback": 3_600_000}).text
    assert traces.count('"paygate.payment_id"') >= len(outcomes), "the spans did not reach Zipkin"
    everything_at_rest = ("\n".join(json_util.dumps(d) for ds in docs.values() for d in ds) + "\n" + at_rest_redis
                          + "\n" + traces)
    card_fields = "\n".join(json_util.dumps(d.get("card")) for d in intents.values())
    for number, cvv in CARDS + [(BAD_LUHN, None)]:
        for form in {number, digits(number)}:
            assert form not in everything_at_rest, f"card number {form} stored"
            assert form not in log, f"card number {form} logged"
        assert digits(number) not in re.sub(r"[ -]", "", log)
        if cvv:
            assert not cvv_token(cvv).search(card_fields), f"CVV {cvv} stored with a card"
            assert not cvv_token(cvv).search(everything_at_rest), f"CVV {cvv} stored"
            assert not cvv_token(cvv).search(log), f"CVV {cvv} logged"
