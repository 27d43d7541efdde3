"""Behaviour that only shows with several gunicorn workers sharing Redis and a store (MongoDB or SQLite)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import requests

from loadtest.checkout import initiate, verify
from rig.probe import poll_until


def _pid(response: requests.Response) -> int:
    return int(response.headers["X-Worker-Pid"])


def _mode_reads(url: str, seconds: float, threads: int = 8) -> list[tuple[float, int, str]]:
    """Poll GET /admin/db-mode on fresh connections: (time, worker pid, mode)."""
    deadline = time.monotonic() + seconds

    def poll():
        seen = []
        while time.monotonic() < deadline:
            r = requests.get(url + "/admin/db-mode", timeout=5)
            seen.append((time.monotonic(), _pid(r), r.json()["mode"]))
        return seen

    with ThreadPoolExecutor(threads) as pool:
        return [row for rows in pool.map(lambda _: poll(), range(threads)) for row in rows]


def test_initiate_on_one_worker_verify_on_another(any_live):
    live = any_live
    started = initiate(live.url)
    body = started.json()
    first_pid = _pid(started)
    other = None
    for _ in range(200):  # fresh connections land on either worker
        r = requests.get(live.url + "/health", timeout=5)
        if _pid(r) != first_pid:
            other = _pid(r)
            break
    assert other is not None, "only one worker ever answered"
    for _ in range(200):
        r = verify(live.url, body["payment_id"], body["otp"])
        if _pid(r) != first_pid:
            break
    assert _pid(r) != first_pid, "could not reach the second worker"
    assert r.status_code == 200 and r.json()["status"] == "succeeded"


def test_two_concurrent_correct_verifies_charge_once(any_live, charges_of):
    live = any_live
    for _ in range(5):
        body = initiate(live.url).json()
        barrier = Barrier(2)

        def verify_now(_):
            barrier.wait()
            return verify(live.url, body["payment_id"], body["otp"])

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(verify_now, range(2)))
        assert [a.status_code for a in answers] == [200, 200]
        assert answers[0].json() == answers[1].json()
        assert charges_of(live, body["payment_id"]) == 1


def test_a_flip_reaches_every_worker_within_one_second(any_live):
    live = any_live
    assert {m for _, _, m in _mode_reads(live.url, 0.5)} == {"original"}
    flipped_at = time.monotonic()
    live.set_mode("audit")
    reads = _mode_reads(live.url, 1.5)
    pids = {pid for _, pid, _ in reads}
    assert len(pids) >= 2, "the reads did not reach two workers"
    stale = [t - flipped_at for t, _, mode in reads if mode != "audit"]
    lag = max(stale, default=0.0)
    assert lag < 1.0, f"a worker still served the old mode {lag:.3f}s after the flip"
    for pid in pids:
        assert any(p == pid and m == "audit" for _, p, m in reads), f"worker {pid} never saw the flip"


def test_ttl_reverts_to_original_by_itself(live):
    state = live.set_mode("audit", ttl_seconds=1)
    assert state["mode"] == "audit" and 0 < state["revert_in_seconds"] <= 1
    # the flip answered once every worker served it
    assert {m for _, _, m in _mode_reads(live.url, 0.3)} == {"audit"}
    assert poll_until(lambda: live.mode() == "original", timeout=4, every=0.1), "the TTL did not revert the mode"
    reverted_after = time.monotonic()
    assert {m for t, _, m in _mode_reads(live.url, 0.5) if t > reverted_after + 0.2} == {"original"}
    events = requests.get(live.url + "/admin/history", timeout=5).json()["events"]
    assert events[0]["actor"] == "auto-revert" and events[0]["from"] == "audit", events[:2]
    assert [e["actor"] for e in events].count("auto-revert") == 1, "reverted more than once"
