"""Traces on the real parts: gunicorn (2 workers) exporting to a real Zipkin, read back from Zipkin's API.

The picture the room must be able to read in one `audit` trace: the request
answers at the deadline, `otp.wait_ready` is cut there with an error, and
`payment.write` goes on after it: a contention wait of n·c, then the audit
records, each behind the audit delay.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

import rig
from loadtest.checkout import TEST_CARD, card_payload
from rig.probe import metric, poll_until

W, A, C, DEADLINE = 15, 100, 50, 400  # the default knobs, in ms


@pytest.fixture(scope="module")
def traced(own_app, zipkin):
    """The app on SQLite under gunicorn, every span exported to this module's Zipkin."""
    return own_app("traced", sqlite=True, OTEL_EXPORTER_ZIPKIN_ENDPOINT=zipkin.spans_endpoint, TRACES_UI_URL=zipkin.ui_url)


@pytest.fixture(autouse=True)
def _original(traced):
    traced.reset()
    yield
    traced.reset()


def checkout(app, headers=None) -> requests.Response:
    """One initiate with the test card."""
    return requests.post(f"{app.url}/payment/initiate", json=card_payload(), headers=headers, timeout=10)


def trace_of(zipkin, trace_id: str, expect: set[str]) -> list[dict]:
    """The trace's spans from Zipkin's API, once every span named in `expect` has arrived."""
    def spans():
        r = requests.get(f"{zipkin.url}/api/v2/trace/{trace_id}", timeout=5)
        if r.status_code != 200:
            return None
        found = r.json()
        return found if expect <= {s["name"] for s in found} else None
    found = poll_until(spans, timeout=15, every=0.2)
    assert found, f"trace {trace_id} never showed {sorted(expect)} in Zipkin"
    return found


def one(spans: list[dict], name: str) -> dict:
    named = [s for s in spans if s["name"] == name]
    assert len(named) == 1, f"{name}: {len(named)} spans in {[s['name'] for s in spans]}"
    return named[0]


def ms(span: dict) -> float:
    return span["duration"] / 1000  # Zipkin keeps microseconds


def end_ms(span: dict) -> float:
    return (span["timestamp"] + span["duration"]) / 1000


def test_original_checkout_trace_shows_two_quick_writes(traced, zipkin):
    r = checkout(traced)
    assert r.json()["status"] == "awaiting_otp"
    spans = trace_of(zipkin, r.headers["X-Trace-Id"], {"post /payment/initiate", "payment.write", "otp.wait_ready"})
    request, write, wait = (one(spans, n) for n in ("post /payment/initiate", "payment.write", "otp.wait_ready"))
    assert request["tags"]["paygate.status"] == "awaiting_otp"
    assert request["tags"]["paygate.mode"] == "original"
    assert write["parentId"] == request["id"] and wait["parentId"] == request["id"]
    assert 2 * W <= ms(write) < 2 * W + 150, ms(write)  # 2w, and nothing near the deadline
    assert "error" not in wait["tags"]
    # The store's own calls: leaves on SQLite, spans in Zipkin, inside the write.
    parents = {s["name"]: s["parentId"] for s in spans if s["name"].startswith("sqlite.")}
    assert parents == {"sqlite.insert_intent": write["id"], "sqlite.mark_awaiting_otp": write["id"],
                       "sqlite.attach_otp": request["id"]}, parents
    for leaf in (one(spans, name) for name in parents):
        assert write["timestamp"] <= leaf["timestamp"] <= end_ms(request) * 1000, leaf


def test_audit_burst_trace_shows_the_wait_cut_while_the_write_goes_on(traced, zipkin):
    traced.set_mode("audit")
    n = 5
    answers: list[requests.Response] = []
    barrier = threading.Barrier(n)

    def shopper():
        barrier.wait()
        answers.append(checkout(traced))

    threads = [threading.Thread(target=shopper) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = [r for r in answers if r.json()["status"] == "otp_unavailable"]
    assert failed, [r.json() for r in answers]
    r = failed[0]
    wanted = {"post /payment/initiate", "payment.write", "otp.wait_ready", "contention.wait", "audit.delay", "audit.write"}
    spans = trace_of(zipkin, r.headers["X-Trace-Id"], wanted)
    # The request's outcome and mode are searchable tags.
    request = one(spans, "post /payment/initiate")
    assert request["tags"]["paygate.status"] == "otp_unavailable"
    assert request["tags"]["paygate.mode"] == "audit"
    assert request["tags"]["paygate.payment_id"] == r.json()["payment_id"]

    wait, write, contention = (one(spans, name) for name in ("otp.wait_ready", "payment.write", "contention.wait"))
    # The OTP's wait ends at the deadline (±10 %), marked as an error, with an event.
    assert abs(ms(wait) - DEADLINE) <= DEADLINE * 0.1, ms(wait)
    assert wait["tags"].get("error"), wait["tags"]
    # The event reads as a sentence on Zipkin's timeline.
    assert [a["value"] for a in wait["annotations"]] == ["deadline passed after 400 ms: OTP unavailable, the write goes on"]
    # The write goes on after the shopper has their answer.
    assert end_ms(write) > end_ms(request), (end_ms(write), end_ms(request))
    # n·c: the contention wait matches the count it carries; the count is this burst's.
    seen = int(contention["tags"]["paygate.writes_in_flight"])
    assert 1 <= seen <= n
    assert abs(ms(contention) - seen * C) <= 40 + seen * C * 0.15, (ms(contention), seen)
    delays = [s for s in spans if s["name"] == "audit.delay"]
    assert len(delays) == 2
    for delay in delays:
        assert A <= ms(delay) <= A * 1.5, ms(delay)
    # Every span of the write sits inside the request's trace, the lane thread's included.
    assert contention["parentId"] == write["id"]


def test_retry_and_failure_are_searchable(traced, zipkin):
    first = checkout(traced).json()["payment_id"]
    r = checkout(traced, headers={"X-Retry-Of": first})
    assert r.status_code == 200
    spans = trace_of(zipkin, r.headers["X-Trace-Id"], {"post /payment/initiate"})
    assert one(spans, "post /payment/initiate")["tags"]["paygate.retry_of"] == first
    # Zipkin's search by tag finds the checkout by its outcome, as the board's links do.
    found = requests.get(f"{zipkin.url}/api/v2/traces", timeout=5, params={
        "serviceName": "paygate", "annotationQuery": f"paygate.payment_id={r.json()['payment_id']}", "limit": 5}).json()
    assert [t[0]["traceId"] for t in found] == [r.headers["X-Trace-Id"]]
    # A retry marker that cannot be a payment id is refused, and stores nothing.
    bad = checkout(traced, headers={"X-Retry-Of": "pay_<script>"})
    assert bad.status_code == 400 and bad.json()["error"] == "validation_error"
    assert "X-Retry-Of" in bad.json()["fields"]


def test_board_links_the_latest_failed_checkout_once_revealed_and_counts_retries(traced, zipkin):
    traced.patch_knobs(otp_timeout_ms=50, write_latency_ms=40)  # 2w = 80 ms: every checkout misses
    failed = checkout(traced)
    assert failed.json()["status"] == "otp_unavailable"
    retried = checkout(traced, headers={"X-Retry-Of": failed.json()["payment_id"]})
    trace_id = retried.headers["X-Trace-Id"]

    def board():
        data = requests.get(f"{traced.url}/board/data", timeout=5).json()
        return data if data["current"]["retries"] >= 1 else None
    data = poll_until(board, timeout=5)
    assert data, "the retry never reached the board"
    assert data["traces"] == {"revealed": False, "latest_failed_url": None, "failed_search_url": None}
    traced.patch_knobs(reveal_traces=True)
    # Each worker summarises the board at most once a second: the link shows within that.
    wanted = f"{zipkin.ui_url}traces/{trace_id}"
    link = poll_until(lambda: (url := requests.get(f"{traced.url}/board/data", timeout=5).json()["traces"]
                               ["latest_failed_url"]) == wanted and url, timeout=5)
    assert link == wanted, "the board does not link the room's latest failed checkout"
    # The link leads somewhere: Zipkin has that trace, the failed one.
    spans = trace_of(zipkin, trace_id, {"post /payment/initiate"})
    assert one(spans, "post /payment/initiate")["tags"]["paygate.status"] == "otp_unavailable"


def test_audit_async_drain_is_its_own_trace_linked_to_the_checkout(traced, zipkin):
    traced.set_mode("audit-async")
    r = checkout(traced)
    assert r.json()["status"] == "awaiting_otp"
    trace_id = r.headers["X-Trace-Id"]

    def drain():
        found = requests.get(f"{zipkin.url}/api/v2/traces", timeout=5, params={
            "serviceName": "paygate", "spanName": "audit.drain", "limit": 50}).json()
        for spans in found:
            for span in spans:
                if span["name"] == "audit.drain" and trace_id in span["tags"].get("paygate.checkout_trace_ids", ""):
                    return spans
        return None
    spans = poll_until(drain, timeout=15, every=0.2)
    assert spans, "the drain of the checkout's outbox never reached Zipkin"
    assert spans[0]["traceId"] != trace_id  # off the critical path: a trace of its own
    assert {"audit.delay", "audit.write"} <= {s["name"] for s in spans}


def test_every_traced_answer_names_its_trace_and_probes_are_not_traced(traced):
    for method, path in (("GET", "/"), ("GET", "/payment/pay_000000000000000000000000"), ("GET", "/admin/db-mode"),
                         ("GET", "/no/such/route")):
        r = requests.request(method, traced.url + path, timeout=5)
        assert len(r.headers["X-Trace-Id"]) == 32, (path, r.headers)
    # Probes, scrapes and the board's poll would bury the checkouts' traces.
    for path in ("/health", "/ready", "/metrics", "/board/data"):
        assert "X-Trace-Id" not in requests.get(traced.url + path, timeout=5).headers, path


def test_no_card_data_in_any_stored_span(traced, zipkin):
    r = checkout(traced)
    code = r.json()["otp"]
    verify = requests.post(f"{traced.url}/payment/verify-otp", timeout=5,
                           json={"payment_id": r.json()["payment_id"], "otp": code})
    assert verify.json()["status"] == "succeeded"
    traced.set_mode("audit")  # an admin call: its bearer token must not be stored either
    trace_of(zipkin, verify.headers["X-Trace-Id"], {"post /payment/verify-otp"})
    stored = requests.get(f"{zipkin.url}/api/v2/traces", timeout=5,
                          params={"serviceName": "paygate", "limit": 1000, "lookback": 3_600_000}).text
    assert len(json.loads(stored)) >= 3
    for secret in (TEST_CARD, '"123"', code, traced.token):
        assert secret not in stored, f"{secret!r} found in Zipkin's spans"


@pytest.fixture
def doomed_zipkin():
    """A Zipkin of the test's own, to stop or hang; gone after the test."""
    svc = rig.zipkin(rig.temp_dir("zipkin-doomed")).start()
    yield svc
    svc.stop()


@pytest.mark.timing
@pytest.mark.parametrize("fault", ["stop", "hang"])
def test_zipkin_down_or_hung_costs_checkouts_nothing(own_app, doomed_zipkin, fault):
    """Spans are dropped and counted; `original` keeps its OTPs and its ready times; a worker's
    graceful stop is not held by a Zipkin that takes nothing."""
    app = own_app(f"zipkin_{fault}", sqlite=True, OTEL_EXPORTER_ZIPKIN_ENDPOINT=doomed_zipkin.spans_endpoint)
    checkout(app)  # the workers' export threads have a connection to lose
    with doomed_zipkin.fault(fault):
        answers = [checkout(app) for _ in range(40)]
        assert [r.json()["status"] for r in answers] == ["awaiting_otp"] * 40
        ready = sorted(r.json()["ready_ms"] for r in answers)
        assert ready[int(len(ready) * 0.95)] < DEADLINE / 2, ready  # p95 well inside the deadline
        # Each worker sends its batch once a second; a hung Zipkin holds it for the 2 s timeout.
        dropped = poll_until(lambda: metric(app.url, "paygate_trace_spans_dropped_total"), timeout=20, every=0.5)
        assert dropped > 0, "the spans Zipkin never took are not counted"
        started = time.monotonic()
        app.service.stop()
        # gunicorn's own graceful timeout is 20 s; the span flush takes at most 3 s of it.
        assert time.monotonic() - started < 12
