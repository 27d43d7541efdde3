"""The rig's readiness: a service is ready when it answers its own protocol, on its own port, and
one that never does fails within a bounded time with its own log tail."""

from __future__ import annotations

import sys
import time

import pytest

import rig

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
