"""Faults under load, nothing lost: Redis down, MongoDB down, a worker killed mid-write.

The module runs its own redis-server, FerretDB and gunicorn (2 workers), so
stopping one of them never disturbs another module's tests; each test starts
from a healthy stack in mode original (the `stack` fixture). A few threads loop
initiate → verify while the fault happens; afterwards every payment id handed
out is in MongoDB, every `succeeded` is succeeded there and charged once, the
count of writes in flight drains to zero by itself, and the same app (no
restart) is ready and takes a fresh checkout.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field

import pytest
import redis
import requests
from pymongo import MongoClient

import rig
from app.config import Settings
from app.contention import ENTRY_TTL_S
from loadtest.checkout import initiate, verify
from rig.probe import metric, poll_until


@dataclass
class Stack:
    """Services of one fault test: Redis, FerretDB, and the app on them."""

    redis: rig.Service
    mongo: rig.Service
    app: rig.App

    def db(self):
        client = MongoClient(f"mongodb://127.0.0.1:{self.mongo.port}/", serverSelectionTimeoutMS=10000)
        return client, client[self.app.db_name]

    def rds(self) -> redis.Redis:
        return redis.Redis(port=self.redis.port, decode_responses=True, socket_timeout=2)


@pytest.fixture(scope="module")
def services():
    """This module's own Redis, FerretDB and app: its faults disturb no other module's tests."""
    work = rig.temp_dir("faults")
    rds = rig.redis_server(work / "redis").start()
    mongo = rig.ferretdb(work / "ferretdb").start()
    try:
        app = rig.start_app("faults", f"mongodb://127.0.0.1:{mongo.port}/", f"redis://127.0.0.1:{rds.port}/0")
        try:
            yield Stack(rds, mongo, app)
        finally:
            app.service.stop()
    finally:
        mongo.stop()
        rds.stop()


@pytest.fixture
def stack(services):
    """The module's stack as a fresh one would be: every server up, the app ready, mode original, default knobs.

    Each test ends with the app recovered from its fault (`assert_came_through`); this puts back
    anything a failed test left behind, so one failure does not cascade into the next test.
    """
    for server in (services.redis, services.mongo):
        if not server.running:
            server.start()
    services.app.wait_ready(timeout=20)
    services.app.reset()
    return services


@dataclass
class Load:
    """A few closed-loop users: initiate, then verify when an OTP came back."""

    url: str
    users: int = 3
    initiates: list = field(default_factory=list)  # (status code, body) with a JSON body
    verifies: list = field(default_factory=list)   # (payment_id, status code, body)
    errors: list = field(default_factory=list)     # transport errors (a killed worker)
    last_pid: int | None = None                    # the worker that answered the last initiate

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._user, daemon=True) for _ in range(self.users)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _user(self):
        http = requests.Session()
        while not self._stop.is_set():
            try:
                r = initiate(self.url, http)
                body = r.json()
                with self._lock:
                    self.initiates.append((r.status_code, body))
                    self.last_pid = int(r.headers.get("X-Worker-Pid", 0)) or None
                if body.get("status") == "awaiting_otp":
                    v = verify(self.url, body["payment_id"], body["otp"], http)
                    with self._lock:
                        self.verifies.append((body["payment_id"], v.status_code, v.json()))
            except (requests.RequestException, ValueError) as err:
                with self._lock:
                    self.errors.append(repr(err))
                http = requests.Session()  # the connection may be dead
                self._stop.wait(0.05)  # a pause before the retry, not a wait for anything

    def runs(self, more: int = 5, timeout: float = 20.0) -> None:
        """Wait until `more` initiates have been answered from now on (the load runs, whatever the fault)."""
        start = len(self.initiates)
        assert poll_until(lambda: len(self.initiates) >= start + more, timeout), "the load stalled"

    def handed_out(self) -> set[str]:
        return {b["payment_id"] for _, b in self.initiates if b.get("payment_id")}

    def succeeded(self) -> set[str]:
        return {pid for pid, code, b in self.verifies if code == 200 and b.get("status") == "succeeded"}


def assert_nothing_lost(stack: Stack, load: Load) -> None:
    """Every id handed out is stored; every success is stored succeeded, charged once."""
    assert load.handed_out(), "the load run issued no payment at all"
    client, db = stack.db()
    try:
        docs = {d["_id"]: d for d in db.payment_intents.find({"_id": {"$in": sorted(load.handed_out())}})}
        charged = {c["_id"] for c in db.charges.find({"_id": {"$in": sorted(load.succeeded())}})}
    finally:
        client.close()
    missing = load.handed_out() - set(docs)
    assert not missing, f"{len(missing)} payment ids handed out but not in MongoDB"
    for pid in load.succeeded():
        assert docs[pid]["status"] == "succeeded" and pid in charged, docs[pid]


def timed_initiates(url: str, n: int) -> list[tuple[float, requests.Response]]:
    """n initiates one after the other, each with the seconds it took."""
    def one() -> tuple[float, requests.Response]:
        started = time.monotonic()
        r = initiate(url)
        return time.monotonic() - started, r

    return [one() for _ in range(n)]


def states_served(url: str) -> dict[str, bool]:
    """{worker pid: whether its state is fresh from Redis} for the workers that answer a few fresh connections."""
    served = {}
    for _ in range(20):
        r = requests.get(url + "/debug/config", timeout=5, headers={"Connection": "close"})
        served[r.headers["X-Worker-Pid"]] = r.json()["redis_ok"]
    return served


def published(stack: Stack) -> dict[int, int]:
    """Writes in flight as each worker last published them to Redis: {worker pid: count}."""
    entries = stack.rds().hgetall(stack.app.prefix + "inflight")
    return {int(worker.split(":")[-2]): int(value.split()[0]) for worker, value in entries.items()}


def assert_inflight_drains(stack: Stack, within: float) -> None:
    """The count of writes in flight (Redis and the gauge) returns to zero by itself."""
    seen = {}

    def drained() -> bool:
        seen.update(gauge=metric(stack.app.url, "paygate_inflight_writes"), published=published(stack))
        return seen["gauge"] == 0 and not any(seen["published"].values())

    assert poll_until(drained, timeout=within, every=0.2), f"writes in flight did not drain: {seen}"


def ready_answer(url: str, status: int) -> requests.Response:
    """The first /ready answer with this status (or the last one after 10 s)."""
    last = []
    poll_until(lambda: last.append(requests.get(url + "/ready", timeout=5)) or last[-1].status_code == status,
               timeout=10, every=0.1)
    return last[-1]


# The deadline for the checkout that proves recovery. This is about function (the same processes store,
# confirm and charge again), not the 400 ms deadline: on 2 cores shared with the rest of the suite,
# a healthy `original` checkout measured 558 ms once (ready times of 35-180 ms around it), and the
# silent failure it then answers would pass for a failed recovery. Still 60 times the model's 30 ms.
RECOVERY_OTP_TIMEOUT_MS = 2000


def assert_recovered(stack: Stack) -> None:
    """Ready again and a fresh checkout succeeds: the same processes, no restart."""
    stack.app.wait_ready(timeout=20)
    stack.app.patch_knobs(otp_timeout_ms=RECOVERY_OTP_TIMEOUT_MS)
    r = initiate(stack.app.url)
    assert r.status_code == 200 and r.json()["status"] == "awaiting_otp", r.text
    assert verify(stack.app.url, r.json()["payment_id"], r.json()["otp"]).json()["status"] == "succeeded"


def assert_came_through(stack: Stack, load: Load) -> None:
    """After a fault: nothing lost, the writes in flight drained by themselves, and the same app recovered."""
    assert_nothing_lost(stack, load)
    assert_inflight_drains(stack, within=ENTRY_TTL_S + 10)
    assert_recovered(stack)


def slow_writes_without_collapse(stack: Stack) -> None:
    """Mode audit (two 100 ms audit delays per write) with little contention, so
    three users keep writes in flight without the audit collapse."""
    stack.app.set_mode("audit")
    stack.app.patch_knobs(contention_ms_per_write=10)


def test_redis_stops_and_restarts_under_load(stack):
    slow_writes_without_collapse(stack)  # audit: the last known mode, kept through the outage
    with Load(stack.app.url) as load:
        load.runs()
        stack.redis.stop()
        ready = ready_answer(stack.app.url, 503)
        assert ready.status_code == 503 and "redis" in ready.json()["message"]
        assert ready.json()["checks"]["mongodb"] == "ok"
        during = [initiate(stack.app.url) for _ in range(3)]
        stack.redis.start()
        assert ready_answer(stack.app.url, 200).status_code == 200
        load.runs()
    for r in during:
        # Served, in the last known mode (an audit write of ~290 ms may still miss
        # the 400 ms deadline on a busy machine: that is the silent failure, not an error).
        assert r.status_code == 200 and r.json()["status"] in ("awaiting_otp", "otp_unavailable"), r.text
        status = requests.get(f"{stack.app.url}/payment/{r.json()['payment_id']}", timeout=5).json()
        assert status["mode"] == "audit"
    assert_came_through(stack, load)


@pytest.mark.timing
def test_redis_hangs_under_load_and_original_keeps_issuing_otps(stack):
    with Load(stack.app.url) as load:
        load.runs()
        with stack.redis.fault("hang"):
            # Every worker's sync loop has met the hang: each serves its last known state.
            assert poll_until(lambda: (served := states_served(stack.app.url)) and len(served) == 2
                              and not any(served.values()), timeout=10), "a worker never noticed"
            hang_started = len(load.initiates)
            timed = timed_initiates(stack.app.url, 10)
            ready = requests.get(stack.app.url + "/ready", timeout=5)
            load.runs()
            during = load.initiates[hang_started:]
        load.runs()
    # A request that touched the hanging Redis would have waited out the client's timeout (0.5 s):
    # every checkout answered sooner, with its OTP (so within the OTP deadline on the server).
    redis_timeout_s = Settings.redis_timeout_ms / 1000
    for elapsed, r in timed:
        assert r.status_code == 200 and r.json()["status"] == "awaiting_otp", r.text
        assert elapsed < redis_timeout_s, f"a checkout waited {elapsed:.2f} s on the hanging Redis"
    assert ready.status_code == 503 and "redis" in ready.json()["message"], ready.text
    issued = sum(body.get("status") == "awaiting_otp" for _, body in during)
    assert during and issued == len(during), f"{issued} of {len(during)} checkouts got an OTP while Redis hung"
    assert_came_through(stack, load)


@pytest.mark.parametrize("kind", ["stop", "hang"])
def test_mongodb_stopped_or_hung_under_load_answers_503_within_2_s_and_recovers(stack, kind):
    with Load(stack.app.url) as load:
        load.runs()
        with stack.mongo.fault(kind):
            probes = timed_initiates(stack.app.url, 3)
            ready = requests.get(stack.app.url + "/ready", timeout=5)
        load.runs()
    for elapsed, r in probes:
        assert r.status_code == 503 and r.json()["error"] == "store_unavailable", r.text
        assert elapsed < 2.0, f"503 after {elapsed:.2f} s"
    assert ready.status_code == 503 and "mongodb" in ready.json()["message"]
    assert_came_through(stack, load)


def test_worker_killed_mid_write(stack):
    # Writes of about 1.4 s (4 round trips of 300 ms, two audit delays) under a
    # 3 s OTP deadline: a worker serving a user is nearly always mid-write.
    stack.app.set_mode("audit")
    stack.app.patch_knobs(contention_ms_per_write=10, write_latency_ms=300, otp_timeout_ms=3000)
    workers = stack.app.workers()
    assert len(workers) == 2
    with Load(stack.app.url) as load:
        poll_until(lambda: load.last_pid in workers and published(stack).get(load.last_pid), timeout=15)
        victim = load.last_pid if load.last_pid in workers else workers[0]
        # Its users keep sending initiates: a write is under way.
        assert poll_until(lambda: published(stack).get(victim), timeout=5), "no write in flight to interrupt"
        os.kill(victim, signal.SIGKILL)
        # The dead worker's writes stop counting once its entry expires: the survivors delete it.
        assert poll_until(lambda: victim not in published(stack), timeout=ENTRY_TTL_S + 5), \
            "the killed worker's writes still count"
    after = stack.app.workers()
    assert victim not in after and len(after) == 2  # gunicorn replaced it
    assert load.errors, "the killed worker's users saw their connection drop"
    assert_nothing_lost(stack, load)
    assert_inflight_drains(stack, within=ENTRY_TTL_S + 15)
    stack.app.reset()
    assert_recovered(stack)
