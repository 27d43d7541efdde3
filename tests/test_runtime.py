"""Mode, knobs, history and writes in flight shared through Redis (real Redis and the stand-in)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import fakeredis
import pytest
import redis

import rig
from app.board import BoardStats
from app.config import KNOB_DEFAULTS
from app.contention import ENTRY_TTL_S, STALE_AFTER_S, InflightWrites, WorkerEntry
from app.controls import Controls, revert_if_due
from app.errors import StateUnavailable
from app.runtime import RuntimeState, StateKeys
from app.sync import SyncLoop
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


@dataclass
class Worker:
    """One worker's runtime state, sync loop (its thread not started: the test ticks it) and controls,
    wired as app/kit.py wires them."""

    runtime: RuntimeState
    sync: SyncLoop
    controls: Controls


def worker(rds, prefix, clock=time.time, settle=True) -> Worker:
    """A worker on `prefix`. settle=False: a change reads the state back (one tick) without waiting
    for the other workers, which in these tests never tick on their own."""
    runtime = RuntimeState()
    sync = SyncLoop(rds, prefix, runtime, InflightWrites(rig.unique("w"), clock=clock), BoardStats(rds, prefix),
                    clock=clock)
    return Worker(runtime, sync, Controls(rds, prefix, sync.settle if settle else _tick_only(sync), clock=clock))


def _tick_only(sync):
    def settle():
        sync.tick()
        return sync.runtime.snapshot()
    return settle


def test_defaults_before_the_first_read(rds, prefix):
    snap = worker(rds, prefix).runtime.snapshot()
    assert snap.mode == "original" and snap.knobs["otp_timeout_ms"] == 400 and snap.redis_ok


def test_a_flip_is_served_by_another_worker_from_its_next_tick(rds, prefix):
    writer, reader = worker(rds, prefix), worker(rds, prefix)
    reader.sync.tick()
    assert writer.controls.set_mode("audit", "ana").mode == "audit", "the flip's answer is the state it settled"
    assert reader.runtime.snapshot().mode == "original", "a worker serves what its sync loop read, never reads itself"
    reader.sync.tick()
    assert reader.runtime.snapshot().mode == "audit"


def test_a_change_answers_once_every_live_worker_serves_it(rds, prefix):
    writer, other = worker(rds, prefix), worker(rds, prefix)
    other.sync.start()  # ticks every 50 ms, as in a gunicorn worker
    try:
        # A worker that has not published yet is not waited for: its first read comes after the change anyway.
        assert poll_until(lambda: other.sync.inflight.worker_id in rds.hgetall(prefix + "inflight"), timeout=5)
        writer.sync.tick()
        snap = writer.controls.patch_knobs({"audit_delay_ms": 7}, "ana")
        # No wait here: the answer came only once `other` had published the new state's stamp.
        assert snap.knobs["audit_delay_ms"] == 7 == other.runtime.snapshot().knobs["audit_delay_ms"]
    finally:
        other.sync.stop()


def test_a_read_sent_before_a_flip_cannot_undo_it_when_it_arrives_after(rds, prefix):
    w = worker(rds, prefix)
    state = w.runtime
    w.sync.tick()
    ticket = state.reading()  # a sync tick sends its read...
    stale = rds.mget(prefix + "mode", prefix + "knobs")  # ...and Redis answers with the state before the flip
    flipped = w.controls.set_mode("audit", "ana")  # the flip writes, then installs its own fresher read
    stamp = state.stamp
    # The tick's answer is handed over last: it must not put `original` back, nor the old stamp
    # (the flip's answer waits for every worker to publish the new one).
    assert state.apply(*stale, ticket).mode == "audit" == flipped.mode
    assert state.stamp == stamp
    assert state.apply(*rds.mget(prefix + "mode", prefix + "knobs"), state.reading()).mode == "audit", \
        "a newer read installs"


def test_ttl_reverts_once_and_is_recorded(rds, prefix):
    clock = Clock()
    a, b = worker(rds, prefix, clock, settle=False), worker(rds, prefix, clock, settle=False)
    state = a.controls.set_mode("audit", "ana", ttl_seconds=30)
    assert state.mode == "audit" and state.as_dict(clock.now)["revert_in_seconds"] == 30
    b.sync.tick()
    clock.now += 31
    assert a.runtime.snapshot().mode == "audit", "nothing reverts between ticks: the revert is a tick's explicit step"
    a.sync.tick()
    b.sync.tick()  # the second worker's revert loses the race, and it serves what Redis holds
    assert a.runtime.snapshot().mode == "original" and b.runtime.snapshot().mode == "original"
    events = a.controls.history()
    assert [(e["actor"], e["from"], e["to"]) for e in events] == [("auto-revert", "audit", "original"),
                                                                  ("ana", "original", "audit")]


def test_a_revert_that_loses_to_a_manual_flip_serves_the_flip(rds, prefix):
    clock = Clock()
    w, console = worker(rds, prefix, clock, settle=False), worker(rds, prefix, clock, settle=False)
    w.controls.set_mode("audit", "ana", ttl_seconds=30)
    clock.now += 31
    console.controls.set_mode("audit-async", "bob")  # the facilitator flips while the TTL runs out
    assert revert_if_due(rds, StateKeys.under(prefix), w.runtime.snapshot(), clock()) is False, \
        "a revert based on the stale audit state must not undo bob's flip"
    w.sync.tick()
    assert w.runtime.snapshot().mode == "audit-async"
    assert [e["actor"] for e in w.controls.history()] == ["bob", "ana"]


def test_concurrent_knob_patches_never_lose_an_update(rds, prefix):
    knobs = ["write_latency_ms", "audit_delay_ms", "contention_ms_per_write", "otp_timeout_ms"]
    barrier = threading.Barrier(len(knobs))

    def patch(name):
        console = worker(rds, prefix, settle=False)  # one per "console", as on separate workers
        barrier.wait()
        for value in range(60, 80):
            console.controls.patch_knobs({name: value}, name)

    threads = [threading.Thread(target=patch, args=(k,)) for k in knobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = worker(rds, prefix, settle=False)
    final.sync.tick()
    assert {k: final.runtime.snapshot().knobs[k] for k in knobs} == dict.fromkeys(knobs, 79)
    assert len(final.controls.history(limit=200)) == 80


def test_a_corrupt_value_serves_the_defaults_with_one_warning(rds, prefix, caplog):
    w = worker(rds, prefix, settle=False)
    w.controls.set_mode("audit", "ana")
    rds.set(prefix + "knobs", '{"audit_delay_ms": "lots"}')
    with caplog.at_level(logging.WARNING, logger="paygate"):
        for _ in range(3):
            w.sync.tick()
    snap = w.runtime.snapshot()
    assert snap.mode == "audit" and snap.knobs == KNOB_DEFAULTS, "only the corrupt value falls back"
    assert len([r for r in caplog.records if "corrupt" in r.getMessage()]) == 1
    rds.set(prefix + "mode", "{not json")
    w.sync.tick()
    assert w.runtime.snapshot().mode == "original"
    assert w.controls.patch_knobs({"audit_delay_ms": 5}, "ana").knobs["audit_delay_ms"] == 5, "a write repairs it"


def test_a_knob_out_of_its_limits_in_redis_is_corrupt(rds, prefix):
    w = worker(rds, prefix, settle=False)
    rds.set(prefix + "knobs", '{"audit_delay_ms": 999999}')  # the same limits a PATCH is checked against
    w.sync.tick()
    assert w.runtime.snapshot().knobs == KNOB_DEFAULTS


@pytest.mark.unit
def test_a_change_while_redis_is_down_is_a_domain_error_and_changes_nothing(prefix):
    down = redis.Redis(port=1, socket_timeout=0.2, socket_connect_timeout=0.2, decode_responses=True)
    w = worker(down, prefix)
    for change in (lambda: w.controls.patch_knobs({"audit_delay_ms": 5}, "ana"),
                   lambda: w.controls.set_mode("audit", "ana"), lambda: w.controls.reset("ana"),
                   w.controls.history, w.sync.ping):
        with pytest.raises(StateUnavailable):
            change()
    assert w.runtime.snapshot().knobs == KNOB_DEFAULTS


def test_knobs_patch_keeps_the_others(rds, prefix):
    w = worker(rds, prefix, settle=False)
    w.controls.patch_knobs({"audit_delay_ms": 10}, "ana")
    other = worker(rds, prefix, settle=False)
    other.sync.tick()
    knobs = other.runtime.snapshot().knobs
    assert knobs["audit_delay_ms"] == 10 and knobs["write_latency_ms"] == 15


def test_reset_restores_defaults_in_one_change(rds, prefix):
    w = worker(rds, prefix, settle=False)
    w.controls.set_mode("audit-async", "ana", ttl_seconds=60)
    w.controls.patch_knobs({"silent_failures": False}, "ana")
    snap = w.controls.reset("bob")
    assert snap.mode == "original" and snap.revert_at is None and snap.knobs["silent_failures"] is True
    assert [(e["kind"], e["actor"]) for e in w.controls.history()][:2] == [("knobs", "bob"), ("mode", "bob")]
    w.controls.reset("bob")
    assert len(w.controls.history()) == 4, "a reset with nothing to reset records nothing"


@pytest.mark.unit
def test_last_known_state_survives_a_redis_outage(prefix):
    # A port nothing listens on stands for Redis going away.
    down = redis.Redis(port=1, socket_timeout=0.2, socket_connect_timeout=0.2, decode_responses=True)
    w = worker(down, prefix)
    w.runtime.apply('{"mode": "audit"}', None, w.runtime.reading())  # what the loop read while Redis answered
    with pytest.raises(redis.RedisError):
        w.sync.tick()
    w.runtime.mark_unreachable()  # what the loop does on a failed tick
    started = time.monotonic()
    snap = w.runtime.snapshot()
    assert snap.mode == "audit" and not snap.redis_ok
    assert time.monotonic() - started < 0.05, "a request never waits for Redis"


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


@pytest.mark.unit
def test_a_worker_entry_reads_back_what_it_wrote_and_refuses_what_it_cannot_read():
    entry = WorkerEntry(3, 1_000_002.5, 12345)
    assert WorkerEntry.decode(entry.encode()) == entry
    assert WorkerEntry.decode("3 1000002.5") == WorkerEntry(3, 1_000_002.5, 0), "an entry without a stamp"
    assert WorkerEntry.decode("three 1000002.5") is None and WorkerEntry.decode("") is None
