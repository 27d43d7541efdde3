"""The rig's readiness: a service is ready when it answers its own protocol, on its own port, and
one that never does fails within a bounded time with its own log tail. Zipkin, from its jar, is
ready only when its /health says UP, and stores the spans it is sent."""

from __future__ import annotations

import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

import rig
from rig.probe import poll_until

pytestmark = pytest.mark.services

# A process that takes the port and accepts connections but never says a word: a port check passes it.
MUTE = ("import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen();"
        " print('listening, saying nothing', flush=True); time.sleep(120)")


def mute_redis(port: int) -> rig.Service:
    """A "Redis" that accepts connections and never answers PING."""
    return rig.Service("mute-redis", [sys.executable, "-c", MUTE, str(port)], port, rig.temp_dir("mute"),
                       rig.answers_redis)


def test_a_port_that_accepts_but_never_answers_is_not_ready_and_fails_with_its_log_within_the_bound():
    service = mute_redis(rig.free_port())
    started = time.monotonic()
    with pytest.raises(RuntimeError) as failed:
        service.start(timeout=2)
    elapsed = time.monotonic() - started
    # The bound: the timeout plus one probe's own timeout (1 s), with room for a busy machine.
    assert elapsed < 2 + 1 + 2, elapsed
    message = str(failed.value)
    assert message.startswith("mute-redis did not start: ") and "waited up to 2 s" in message, message
    assert "listening, saying nothing" in message, "the service's own log tail"
    assert not service.running, "a service that never got ready is stopped"


def test_a_process_that_exits_fails_at_once_with_its_status_and_log():
    port = rig.free_port()
    service = rig.Service("quitter", [sys.executable, "-c", "print('bad config, bye'); raise SystemExit(3)"], port,
                          rig.temp_dir("quitter"), rig.answers_http("/"))
    started = time.monotonic()
    with pytest.raises(RuntimeError) as failed:
        service.start(timeout=30)
    assert time.monotonic() - started < 5, "an exit is noticed at once, not at the timeout"
    assert "exited with status 3 before it answered" in str(failed.value)
    assert "bad config, bye" in str(failed.value)


def test_an_answer_from_another_process_on_the_port_does_not_make_a_service_ready():
    # The port was handed out, then taken by someone else before the service bound it: a PING answered
    # by that other Redis must not pass for this service, which is itself not listening at all.
    other = rig.redis_server(rig.temp_dir("other")).start()
    try:
        impostor = rig.Service("late-redis", [sys.executable, "-c", "import time; time.sleep(60)"], other.port,
                               rig.temp_dir("late"), other.answers)
        with pytest.raises(RuntimeError, match="late-redis did not start"):
            impostor.start(timeout=1.5)
        assert other.answers(other.port), "the other Redis answers PING all along"
    finally:
        other.stop()


def test_each_real_service_answers_its_own_protocol_once_started(redis_service, mongo_service):
    postgres = rig.shared_postgres()
    for service in (redis_service, mongo_service, postgres):
        assert rig.listener_pid(service.port, service.proc.pid) is not None, service.name
        assert service.answers(service.port), service.name


# --- Zipkin ---------------------------------------------------------------------------------------


class FakeHealth(BaseHTTPRequestHandler):
    """A web server that is not Zipkin: /health answers `server.answer` (status, content type, body)."""

    def do_GET(self):
        status, content_type, body = self.server.answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def not_zipkin():
    """A web server on loopback whose /health answer the test sets."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHealth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_web_server_that_is_not_an_up_zipkin_does_not_pass_its_probe(not_zipkin):
    port = not_zipkin.server_address[1]
    not_zipkin.answer = (200, "text/html", "<html>some other server</html>")
    with pytest.raises(ValueError):  # not JSON: an error, which the wait counts as no answer
        rig.answers_zipkin(port)
    # Zipkin's own answer while its storage is down (HTTP 503, status DOWN), and a 200 that says DOWN.
    for status in (503, 200):
        not_zipkin.answer = (status, "application/json", '{"status": "DOWN", "zipkin": {"status": "DOWN"}}')
        assert rig.answers_zipkin(port) is False, status
    not_zipkin.answer = (200, "application/json", '{"status": "UP"}')
    assert rig.answers_zipkin(port) is True, "the probe can pass: the same server saying UP"


def test_zipkin_without_java_or_without_its_jar_is_missing_not_skipped(monkeypatch, tmp_path):
    with pytest.raises(rig.MissingService, match="zipkin-server.*missing.*make zipkin"):
        rig.traces.zipkin_argv(rig.free_port(), "127.0.0.1", rig.traces.TEST_CAPS, jar=tmp_path / "zipkin-server.jar")
    monkeypatch.setenv("PATH", str(tmp_path))  # no java on it
    with pytest.raises(rig.MissingService, match="java is not installed"):
        rig.zipkin(tmp_path)


def span(service: str, trace_id: str, span_id: str, name: str, duration_us: int, **tags: str) -> dict:
    """One Zipkin JSON v2 span of `service`, started a second ago."""
    return {"traceId": trace_id, "id": span_id, "name": name, "kind": "SERVER",
            "timestamp": int((time.time() - 1) * 1e6), "duration": duration_us,
            "localEndpoint": {"serviceName": service}, "tags": tags}


def test_zipkin_is_ready_on_loopback_and_stores_what_it_is_sent(zipkin):
    """The session's Zipkin answers its own probe from its own process on 127.0.0.1; a span POSTed
    to the app's endpoint comes back by trace id, and by the searches the dashboard links to."""
    assert rig.listener_pid(zipkin.port, zipkin.proc.pid) is not None
    assert rig.answers_zipkin(zipkin.port)
    assert zipkin.spans_endpoint == f"http://127.0.0.1:{zipkin.port}/api/v2/spans"
    assert requests.get(zipkin.ui_url, timeout=10).text.count('<base href="/zipkin/"') == 1, "Lens, its web UI"

    # The session's Zipkin also holds the traced apps' real checkouts (service paygate, some of them
    # failed and slow): a service of this test's own keeps the searches to what it sent.
    service = f"paygate-rig-{os.urandom(4).hex()}"
    trace_id, slow_id = os.urandom(16).hex(), os.urandom(16).hex()
    failed = span(service, trace_id, os.urandom(8).hex(), "post /payment/initiate", 420_000, **{"paygate.status": "otp_unavailable"})
    fast = span(service, slow_id, os.urandom(8).hex(), "post /payment/initiate", 12_000, **{"paygate.status": "awaiting_otp"})
    r = requests.post(zipkin.spans_endpoint, json=[failed, fast], timeout=10)
    assert r.status_code == 202, r.text

    def stored(path: str, **params) -> list:
        r = requests.get(f"{zipkin.url}/api/v2/{path}", params=params, timeout=10)
        return r.json() if r.status_code == 200 else []

    # The collector stores asynchronously: read back until it is there.
    got = poll_until(lambda: stored(f"trace/{trace_id}"), timeout=10)
    assert [(s["id"], s["tags"]) for s in got] == [(failed["id"], failed["tags"])]
    found = stored("traces", serviceName=service, annotationQuery="paygate.status=otp_unavailable",
                   minDuration=400_000, lookback=600_000)
    assert [t[0]["traceId"] for t in found] == [trace_id], "the failed, slow checkout, and only it"
    assert not stored("traces", serviceName=service, annotationQuery="paygate.status=otp_unavailable",
                      minDuration=500_000, lookback=600_000), "minDuration is in microseconds"


@pytest.mark.unit
def test_the_cores_lock_lets_sharers_together_and_a_lone_holder_in_before_later_sharers(monkeypatch):
    """Sharers hold the cores together; a test that wants them alone waits for the sharers inside,
    and a sharer that comes after it waits behind it (so a stream of sharers cannot keep it out)."""
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", f"lock-test-{os.getpid()}-{time.monotonic_ns()}")
    order: list[str] = []
    first_in, release_first = threading.Event(), threading.Event()

    def hold(name: str, alone: bool, until: threading.Event | None = None, entered: threading.Event | None = None):
        with rig.cores(alone=alone):
            order.append(f"{name} in")
            if entered:
                entered.set()
            if until:
                assert until.wait(10)
            order.append(f"{name} out")

    first = threading.Thread(target=hold, args=("sharer 1", False, release_first, first_in))
    first.start()
    assert first_in.wait(10)
    with rig.cores(alone=False):  # a second sharer gets in beside the first at once
        order.append("sharer 2 in")
        order.append("sharer 2 out")
    lone = threading.Thread(target=hold, args=("alone", True))
    lone.start()
    time.sleep(0.3)  # time to get in, which "alone" must not while sharer 1 holds the cores
    later = threading.Thread(target=hold, args=("sharer 3", False))
    later.start()
    time.sleep(0.3)  # nor sharer 3: it queues behind "alone"
    assert "sharer 3 in" not in order and "alone in" not in order
    release_first.set()
    for thread in (first, lone, later):
        thread.join(10)
    assert order == ["sharer 1 in", "sharer 2 in", "sharer 2 out", "sharer 1 out",
                     "alone in", "alone out", "sharer 3 in", "sharer 3 out"]
