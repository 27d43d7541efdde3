"""Mode, knobs, history and writes in flight in Redis (real Redis and the stand-in)."""

from __future__ import annotations

import logging
import threading
import time

import fakeredis
import pytest
import redis

import rig
from app.config import KNOB_DEFAULTS
from app.contention import ENTRY_TTL_S, STALE_AFTER_S, InflightWrites
from app.runtime import RuntimeState
from rig.probe import poll_until


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.services),
                        pytest.param("in-process", marks=pytest.mark.unit)])
def rds(request):
    if request.param == "redis":
        client = redis.Redis.from_url(request.getfixturevalue("redis_url"), decode_responses=True)
    else:
        client = fakeredis.FakeRedis(decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def prefix():
    return rig.unique("rt:") + ":"


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
    flipped = time.monotonic()
    assert poll_until(lambda: reader.snapshot().mode == "audit", timeout=1, every=0.01)
    assert time.monotonic() - flipped < 0.1 + 0.05


def test_a_read_sent_before_a_flip_cannot_undo_it_when_it_arrives_after(rds, prefix):
    state = RuntimeState(rds, prefix, 0)
    state.refresh()
    ticket = state.reading()  # a sync tick sends its read...
    stale = rds.mget(*state.keys)  # ...and Redis answers with the state before the flip
    flipped = state.set_mode("audit", "ana")  # the flip writes, then installs its own fresher read
    stamp = state.stamp
    # The tick's answer is handed over last: it must not put `original` back, nor the old stamp
    # (the flip's answer waits for every worker to publish the new one).
    assert state.apply(*stale, ticket).mode == "audit" == flipped.mode
    assert state.stamp == stamp
    assert state.apply(*rds.mget(*state.keys), state.reading()).mode == "audit", "a newer read installs"


def test_ttl_reverts_once_and_is_recorded(rds, prefix):
    clock = Clock()
    a, b = RuntimeState(rds, prefix, 0, clock=clock), RuntimeState(rds, prefix, 0, clock=clock)
    state = a.set_mode("audit", "ana", ttl_seconds=30)
    assert state.mode == "audit" and state.as_dict(clock.now)["revert_in_seconds"] == 30
    b.refresh()
    clock.now += 31
    assert a.snapshot().mode == "audit", "a read never reverts: the revert is the sync loop's explicit step"
    a.revert_if_due()
    b.revert_if_due()  # the second worker loses the race and serves what Redis holds
    assert a.snapshot().mode == "original" and b.snapshot().mode == "original"
    events = a.history()
    assert [(e["actor"], e["from"], e["to"]) for e in events] == [("auto-revert", "audit", "original"),
                                                                  ("ana", "original", "audit")]


def test_a_revert_that_loses_to_a_manual_flip_serves_the_flip(rds, prefix):
    clock = Clock()
    worker, console = RuntimeState(rds, prefix, 0, clock=clock), RuntimeState(rds, prefix, 0, clock=clock)
    worker.set_mode("audit", "ana", ttl_seconds=30)
    clock.now += 31
    console.set_mode("audit-async", "bob")  # the facilitator flips while the TTL runs out
    worker.revert_if_due()  # based on the stale audit state: must not undo bob's flip
    assert worker.snapshot().mode == "audit-async"
    assert [e["actor"] for e in worker.history()] == ["bob", "ana"]


def test_concurrent_knob_patches_never_lose_an_update(rds, prefix):
    knobs = ["write_latency_ms", "audit_delay_ms", "contention_ms_per_write", "otp_timeout_ms"]
    barrier = threading.Barrier(len(knobs))

    def patch(name):
        state = RuntimeState(rds, prefix, 0)  # one per "console", as on separate workers
        barrier.wait()
        for value in range(60, 80):
            state.patch_knobs({name: value}, name)

    threads = [threading.Thread(target=patch, args=(k,)) for k in knobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = RuntimeState(rds, prefix, 0).refresh().knobs
    assert {k: final[k] for k in knobs} == dict.fromkeys(knobs, 79)
    assert len(RuntimeState(rds, prefix, 0).history(limit=200)) == 80


def test_a_corrupt_value_serves_the_defaults_with_one_warning(rds, prefix, caplog):
    state = RuntimeState(rds, prefix, 0)
    state.set_mode("audit", "ana")
    rds.set(prefix + "knobs", '{"audit_delay_ms": "lots"}')
    with caplog.at_level(logging.WARNING, logger="paygate"):
        for _ in range(3):
            snap = state.refresh()
    assert snap.mode == "audit" and snap.knobs == KNOB_DEFAULTS, "only the corrupt value falls back"
    assert len([r for r in caplog.records if "corrupt" in r.getMessage()]) == 1
    rds.set(prefix + "mode", "{not json")
    assert state.refresh().mode == "original"
    state.patch_knobs({"audit_delay_ms": 5}, "ana")  # a write repairs it
    assert state.refresh().knobs["audit_delay_ms"] == 5


@pytest.mark.unit
def test_a_failed_read_writes_nothing_back(prefix):
    down = redis.Redis(port=1, socket_timeout=0.2, socket_connect_timeout=0.2, decode_responses=True)
    state = RuntimeState(down, prefix, 0)
    with pytest.raises(redis.RedisError):
        state.patch_knobs({"audit_delay_ms": 5}, "ana")
    assert state.snapshot().knobs == KNOB_DEFAULTS


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


@pytest.mark.unit
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


def _exchange(rds, prefix, *workers):
    """What each worker's sync loop does with the writes-in-flight hash, once."""
    key = prefix + "inflight"
    for w in workers:
        rds.hset(key, w.worker_id, w.entry())
    for w in workers:
        expired = w.absorb(rds.hgetall(key))
        if expired:
            rds.hdel(key, *expired)


def test_inflight_counts_across_workers_and_heals(rds, prefix):
    clock = Clock()
    one, two = InflightWrites("one", clock=clock), InflightWrites("two", clock=clock)
    one.begin()
    two.begin()
    two.begin()
    assert one.count() == 1, "a worker's own writes count at once, before any exchange"
    _exchange(rds, prefix, one, two)
    assert one.count() == 3 == two.count()
    two.end()
    _exchange(rds, prefix, one, two)
    assert one.count() == 2 and one.contention_wait(0) == 2
    # `two` dies mid-write: its entry stops being refreshed, expires, and is deleted.
    clock.now += ENTRY_TTL_S + 0.1
    _exchange(rds, prefix, one)
    assert one.count() == 1
    assert rds.hkeys(prefix + "inflight") == ["one"]


@pytest.mark.unit
def test_a_stale_exchange_falls_back_to_own_writes(monkeypatch):
    inflight = InflightWrites("one")
    inflight.begin()
    inflight.absorb({"two": f"5 {time.time() + 60}"})
    assert inflight.count() == 6
    later = time.monotonic() + STALE_AFTER_S + 1
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert inflight.count() == 1, "Redis silent for too long: only this worker's own writes count"
