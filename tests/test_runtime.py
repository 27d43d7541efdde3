"""Mode, knobs, history and writes in flight in Redis (real Redis and the stand-in)."""

from __future__ import annotations

import time

import fakeredis
import pytest
import redis

from app.contention import BASE_LEASE_S, InflightWrites
from app.runtime import RuntimeState

from .helpers import unique


@pytest.fixture(params=["redis", "in-process"])
def rds(request):
    if request.param == "redis":
        client = redis.Redis.from_url(request.getfixturevalue("redis_url"), decode_responses=True)
    else:
        client = fakeredis.FakeRedis(decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def prefix():
    return unique("rt:") + ":"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def test_defaults_without_any_state(rds, prefix):
    snap = RuntimeState(rds, prefix, 0).snapshot()
    assert snap.mode == "original" and snap.knobs["otp_timeout_ms"] == 400 and snap.redis_ok


def test_a_flip_is_seen_by_another_worker_within_its_cache_time(rds, prefix):
    writer, reader = RuntimeState(rds, prefix, 100), RuntimeState(rds, prefix, 100)
    assert reader.snapshot().mode == "original"
    writer.set_mode("audit", "ana")
    time.sleep(0.12)
    assert reader.snapshot().mode == "audit"


def test_ttl_reverts_once_and_is_recorded(rds, prefix):
    clock = Clock()
    a, b = RuntimeState(rds, prefix, 0, clock=clock), RuntimeState(rds, prefix, 0, clock=clock)
    state = a.set_mode("audit", "ana", ttl_seconds=30)
    assert state.mode == "audit" and state.as_dict(clock.now)["revert_in_seconds"] == 30
    clock.now += 31
    assert a.snapshot().mode == "original" and b.snapshot().mode == "original"
    events = a.history()
    assert [(e["actor"], e["from"], e["to"]) for e in events] == [("auto-revert", "audit", "original"),
                                                                  ("ana", "original", "audit")]


def test_knobs_patch_keeps_the_others(rds, prefix):
    state = RuntimeState(rds, prefix, 0)
    state.patch_knobs({"audit_delay_ms": 10}, "ana")
    knobs = RuntimeState(rds, prefix, 0).snapshot().knobs
    assert knobs["audit_delay_ms"] == 10 and knobs["write_latency_ms"] == 15


def test_reset_restores_defaults(rds, prefix):
    state = RuntimeState(rds, prefix, 0)
    state.set_mode("audit-async", "ana", ttl_seconds=60)
    state.patch_knobs({"silent_failures": False}, "ana")
    snap = state.reset("bob")
    assert snap.mode == "original" and snap.revert_at is None and snap.knobs["silent_failures"] is True


def test_last_known_state_survives_a_redis_outage():
    # A port nothing listens on stands for Redis going away.
    down = redis.Redis(port=1, socket_timeout=0.2, socket_connect_timeout=0.2, decode_responses=True)
    state = RuntimeState(down, "x:", 0)
    state._last = state._last.__class__(mode="audit")
    started = time.monotonic()
    snap = state.snapshot()
    assert snap.mode == "audit" and not snap.redis_ok
    assert state.snapshot().mode == "audit"  # within the retry pause: no second timeout
    assert time.monotonic() - started < 1.0


def test_inflight_counts_across_instances_and_heals(rds, prefix):
    clock = Clock()
    one, two = InflightWrites(rds, prefix, clock=clock), InflightWrites(rds, prefix, clock=clock)
    with one.track():
        with two.track():
            assert one.count() == 2 == two.count()
        assert two.count() == 1
    assert one.count() == 0
    # A worker that dies mid-write leaves its entry behind; the lease runs out.
    rds.zadd(prefix + "inflight", {"dead-worker-write": clock() + BASE_LEASE_S})
    assert one.count() == 1
    clock.now += BASE_LEASE_S + 0.1
    assert one.count() == 0


def test_contention_wait_extends_the_lease(rds, prefix):
    clock = Clock()
    inflight = InflightWrites(rds, prefix, clock=clock)
    with inflight.track() as write_id:
        assert inflight.contention_wait(0) == 1
        inflight.extend(write_id, 60)
        clock.now += BASE_LEASE_S + 30
        assert inflight.count() == 1
