"""Three replicas of the app (gunicorn, 2 workers each) behind HAProxy, as one room: one Redis, one
MongoDB-wire server, one database and key prefix (rig/replicas.py, deploy/haproxy/haproxy.cfg)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter

import pytest
import requests
from pymongo import MongoClient

import rig
from loadtest.checkout import initiate, ready_model_ms, verify
from rig.probe import burst, no_writes_in_flight, parallel, poll_until, scrape, total

REPLICAS = 3
FLIP_BOUND_S = 1.0  # docs/contract.md, Shared state: a flip is seen by every worker and replica within 1 s


@pytest.fixture(scope="module")
def room(mongo_url, redis_url):
    with rig.start_room("replicas", mongo_url, redis_url, replicas=REPLICAS, workers=2) as started:
        yield started


@pytest.fixture
def fresh(room):
    """The room in `original` with default knobs, around each test."""
    room.reset()
    yield room
    room.reset()


def test_the_balancer_config_is_valid_as_compose_runs_it_and_as_the_rig_writes_it(tmp_path):
    lb = rig.haproxy(tmp_path, [8001, 8002])  # not started: only its config written
    rigged = (tmp_path / "haproxy.cfg").read_text()
    assert "server-template" not in rigged and "server replica2 127.0.0.1:8002 check" in rigged
    for config in (rig.HAPROXY_CONFIG, tmp_path / "haproxy.cfg"):
        done = subprocess.run([lb.argv[0], "-c", "-f", str(config)], capture_output=True, text=True, timeout=30,
                              env={**os.environ, **lb.env})
        assert done.returncode == 0, (config, done.stdout + done.stderr)


def _replicas_of(room: rig.Room, responses: list[requests.Response]) -> Counter:
    """How many of `responses` each replica's workers answered (by X-Worker-Pid)."""
    owner = room.worker_pids()
    return Counter(owner[int(r.headers["X-Worker-Pid"])] for r in responses)


def _otp_outcomes(url: str) -> float:
    """The replica's paygate_otp_generation_total over every mode and result (its workers summed)."""
    return total(scrape(url), "paygate_otp_generation_total")


def _board_outcomes(url: str) -> int:
    """OTP outcomes of the room's last 5 minutes, as the board at `url` reads them from Redis."""
    points = requests.get(url + "/board/data", timeout=10).json()["history"]["points"]
    return sum(p["otp_success"] + p["otp_timeout"] for p in points)


def test_a_flip_through_the_balancer_reaches_every_replica_within_a_second(fresh):
    room = fresh
    for mode in ("audit", "audit-async", "original"):
        sent = time.monotonic()
        r = requests.put(room.url + "/admin/db-mode", json={"mode": mode}, timeout=10,
                         headers={"Authorization": f"Bearer {rig.TEST_TOKEN}"})
        assert r.status_code == 200 and r.json()["mode"] == mode, r.text
        for i, replica in enumerate(room.replicas):
            # Asked directly, on fresh connections (either of its workers may answer).
            seen = poll_until(lambda url=replica.url: requests.get(url + "/admin/db-mode", timeout=2,
                                                                   headers={"Connection": "close"}).json()["mode"]
                              == mode, timeout=2 * FLIP_BOUND_S, every=0.01)
            delay = time.monotonic() - sent
            assert seen and delay <= FLIP_BOUND_S, f"replica {i} served {mode!r} {delay:.3f} s after the flip"
        # And every worker of every replica serves it, now that the flip has answered.
        for i, replica in enumerate(room.replicas):
            pids = set(replica.workers())
            reports: dict[int, str] = {}
            poll_until(lambda url=replica.url: reports.update([_worker_mode(url)]) or set(reports) >= pids, 10, 0.01)
            assert set(reports) >= pids and set(reports.values()) == {mode}, (i, mode, reports)


def _worker_mode(url: str) -> tuple[int, str]:
    body = requests.get(url + "/debug/config", timeout=2, headers={"Connection": "close"}).json()
    return body["worker_pid"], body["mode"]


def test_per_replica_metrics_and_the_board_add_up_to_the_room(fresh):
    room, n = fresh, 30
    before = [_otp_outcomes(replica.url) for replica in room.replicas]
    board_before = _board_outcomes(room.replicas[0].url)

    def checkout(_):
        r = initiate(room.url)  # a fresh connection per checkout through the balancer
        body = r.json()
        assert r.status_code == 200 and body["status"] == "awaiting_otp", r.text
        assert verify(room.url, body["payment_id"], body["otp"]).json()["status"] == "succeeded"
        return r

    served = _replicas_of(room, parallel(checkout, n))
    assert set(served) == set(range(REPLICAS)), f"the balancer did not spread the checkouts: {served}"
    # Each replica's /metrics counts its own checkouts (every one of its workers), nothing twice, none lost.
    deltas = [_otp_outcomes(replica.url) - b for replica, b in zip(room.replicas, before, strict=True)]
    assert deltas == [served[i] for i in range(REPLICAS)], (deltas, served)
    assert sum(deltas) == n
    # The board is Redis-backed: any replica shows the whole room's count (flushed within a sync tick,
    # summarised at most once a second per worker).
    for i, replica in enumerate(room.replicas):
        seen = poll_until(lambda url=replica.url: _board_outcomes(url) - board_before == n, timeout=5, every=0.1)
        assert seen, f"replica {i}'s board shows {_board_outcomes(replica.url) - board_before} new outcomes, not {n}"
    assert _board_outcomes(room.url) == sum(_otp_outcomes(replica.url) for replica in room.replicas)


def _audit_burst(room: rig.Room, n: int, board_inflight: list[int]) -> tuple[float, Counter, list[dict]]:
    """n simultaneous initiates through the balancer in `audit`: their mean ready time (ms, from every
    replica's histogram, so the ones that missed the deadline count too) and the replicas that served
    them, and the answers. One replica's board is sampled into board_inflight while the burst runs."""
    ready = "paygate_payment_ready_seconds"

    def ready_totals(url: str) -> tuple[float, float]:
        families = scrape(url)
        return (total(families, ready, sample=ready + "_sum", mode="audit"),
                total(families, ready, sample=ready + "_count", mode="audit"))

    assert all(no_writes_in_flight(replica.url) for replica in room.replicas)
    before = [ready_totals(replica.url) for replica in room.replicas]
    stop = threading.Event()

    def watch_board() -> None:
        while not stop.is_set():
            board = requests.get(room.replicas[0].url + "/board/data", timeout=5).json()
            board_inflight.append(board["current"]["inflight_writes"])

    watcher = threading.Thread(target=watch_board)
    watcher.start()
    sessions = [requests.Session() for _ in range(n)]
    try:
        responses = burst(lambda i: initiate(room.url, sessions[i]), n,
                          warm=lambda i: sessions[i].get(room.url + "/health", timeout=10).raise_for_status())
        assert all(no_writes_in_flight(replica.url) for replica in room.replicas)
    finally:
        stop.set()
        watcher.join()
        for session in sessions:
            session.close()
    assert [r.status_code for r in responses] == [200] * n
    after = [ready_totals(replica.url) for replica in room.replicas]
    seconds = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
    writes = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
    assert writes == n
    return 1000 * seconds / writes, _replicas_of(room, responses), [r.json() for r in responses]


@pytest.mark.timing
def test_the_audit_contention_counts_writes_on_every_replica(fresh):
    """The lesson survives scaling out: n (writes in flight) is room-wide, so a burst spread over three
    replicas waits n·c with n = the whole burst, not n = one replica's share.

    The wait is read against the same burst with no contention (contention_ms_per_write 0): what the
    real database takes for the burst's 54 writes on the shared cores (hundreds of ms on a busy machine,
    outside the timing model of docs/contract.md) is in both and cancels out. It cancels only on
    average: the first burst after a reset took 490 ms against 281–315 ms for the next ones, and a suite
    run read one contended burst at 884 ms against 733–781 ms for twelve measured alone. One pair of
    bursts then missed n·c by more than the bound (583 ms against 450 ± 112) with nothing wrong. So an
    unmeasured burst first, then three pairs in turn, averaged: alone, 440–468 ms in four runs."""
    room, n, pairs = fresh, 9, 3
    room.set_mode("audit")
    knobs = room.knobs()
    c = knobs["contention_ms_per_write"]
    room.patch_knobs(contention_ms_per_write=0)
    _audit_burst(room, n, [])
    baselines, contended, board_inflight, served_most = [], [], [], 0
    for _ in range(pairs):
        room.patch_knobs(contention_ms_per_write=0)
        baselines.append(_audit_burst(room, n, [])[0])
        room.patch_knobs(contention_ms_per_write=c)
        mean_ms, served, bodies = _audit_burst(room, n, board_inflight)
        contended.append(mean_ms)
        # The silent failure, room-wide: 200, no OTP, the shopper's message.
        assert {b["status"] for b in bodies} == {"otp_unavailable"}, bodies
        assert len(served) == REPLICAS and max(served.values()) < n, served
        served_most = max(served_most, *served.values())
    baseline_ms = sum(baselines) / pairs
    assert baseline_ms >= 0.95 * ready_model_ms(knobs, "audit", n=0), baselines  # 4w + 2a at the least
    waited = sum(contended) / pairs - baseline_ms
    # The burst's writes are all in flight when they reach the wait (each has passed an audit delay first).
    assert abs(waited - n * c) <= 0.25 * n * c, (waited, contended, baselines)
    assert waited > (served_most + 2) * c, (waited, served_most)  # more than one replica's share
    # One replica's board shows the room's writes in flight.
    assert max(board_inflight) > served_most, (board_inflight, served_most)


def test_killing_a_replica_under_load_loses_no_acknowledged_payment(fresh, mongo_url):
    """Shoppers keep paying through the balancer while one replica (master and workers) is SIGKILLed:
    every payment answered 200 is in the store. Requests cut off by the kill may fail; they are counted."""
    room, victim, threads, seconds, kill_at = fresh, 0, 6, 4.0, 1.5
    victim_pids = {str(pid) for pid in room.replicas[victim].workers()}
    acked: list[tuple[float, str, str]] = []  # (time, payment id, worker pid)
    failed: Counter = Counter()
    lock = threading.Lock()
    start = time.monotonic()

    def shopper(_) -> None:
        with requests.Session() as session:
            while time.monotonic() - start < seconds:
                try:
                    r = initiate(room.url, session)
                except requests.RequestException as err:
                    with lock:
                        failed[type(err).__name__] += 1
                    continue
                with lock:
                    if r.status_code == 200:
                        acked.append((time.monotonic() - start, r.json()["payment_id"], r.headers["X-Worker-Pid"]))
                    else:
                        failed[f"HTTP {r.status_code}"] += 1

    killer = threading.Timer(kill_at, room.kill, args=(victim,))
    killer.start()
    try:
        parallel(shopper, threads, threads)
    finally:
        killer.join()
    assert not room.replicas[victim].service.running
    attempts = len(acked) + sum(failed.values())
    before_kill = [pid for t, _, pid in acked if t < kill_at]
    assert victim_pids & set(before_kill), "the killed replica served nothing before the kill"
    assert any(t > kill_at + 0.5 for t, _, _ in acked), "nothing was served after the kill"
    assert sum(failed.values()) <= threads, f"more failures than requests in flight at the kill: {failed}"
    assert len(acked) >= 0.9 * attempts, (len(acked), failed)
    ids = [payment_id for _, payment_id, _ in acked]
    with MongoClient(mongo_url, serverSelectionTimeoutMS=5000) as client:
        stored = {doc["_id"] for doc in client[room.db_name].payment_intents.find({"_id": {"$in": ids}}, {"_id": 1})}
    assert len(set(ids)) == len(ids) and set(ids) <= stored, f"{len(set(ids) - stored)} acknowledged payments lost"
