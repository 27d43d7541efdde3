"""`make up` as a facilitator runs it: SQLite under .cache/, a real redis-server, several workers."""

from __future__ import annotations

import re
import time

import pytest
import requests

import rig
from loadtest.checkout import initiate, verify

TOKEN = "up-test-token"


def _pid(r: requests.Response) -> int:
    return int(r.headers["X-Worker-Pid"])


def _pids_seen(url: str, tries: int = 200) -> set[int]:
    return {_pid(requests.get(url + "/health", timeout=5)) for _ in range(tries)}


@pytest.fixture
def foreign_redis(tmp_path):
    """A Redis that is not the kit's, on the port `make up` wants, as where Debian's redis-server package
    started its own on 6379 (a port of its own here: parallel tests share the machine)."""
    server = rig.redis_server(tmp_path / "foreign-redis").start()
    yield server
    server.stop()


@pytest.mark.services
@pytest.mark.timeout(240)
def test_make_up_runs_workers_on_redis_and_sqlite_and_keeps_payments_across_a_restart(tmp_path, foreign_redis):
    wanted = foreign_redis.port
    with rig.make_up(tmp_path, TOKEN, {"REDIS_PORT": str(wanted)}) as kit:
        own = re.search(r"redis-server on 127\.0\.0\.1:(\d+) \(started here\)", kit.log)
        assert own and int(own.group(1)) != wanted and "SQLite file" in kit.log, kit.log
        # The banner says who holds the port, and which one the kit's own Redis took instead.
        assert f"port {wanted} is taken by redis-server (pid {foreign_redis.proc.pid}), a Redis " in kit.log, kit.log
        assert f"the kit uses its own Redis on {own.group(1)}" in kit.log, kit.log

        config = requests.get(kit.url + "/debug/config", timeout=5).json()
        assert config["backends"] == {"store": "sqlite", "redis": "redis"}
        pids = _pids_seen(kit.url)
        assert len(pids) >= 2, "make up with a real Redis runs several workers"

        # A flip is seen by every worker.
        kit.set_mode("audit-async")
        deadline = time.monotonic() + 2
        seen: dict[int, str] = {}
        while set(seen) != pids or set(seen.values()) != {"audit-async"}:
            assert time.monotonic() < deadline, f"workers and the modes they serve: {seen}"
            r = requests.get(kit.url + "/admin/db-mode", timeout=5)
            seen[_pid(r)] = r.json()["mode"]

        # Payments in every state, written through both workers.
        paid, waiting = [], []
        for _ in range(6):
            body = initiate(kit.url).json()
            assert body["status"] == "awaiting_otp"
            if len(paid) < 3:
                assert verify(kit.url, body["payment_id"], body["otp"]).json()["status"] == "succeeded"
                paid.append(body["payment_id"])
            else:
                waiting.append(body["payment_id"])
        before = {p: requests.get(f"{kit.url}/payment/{p}", timeout=5).json() for p in paid + waiting}
    assert (tmp_path / "paygate.sqlite3").exists()

    with rig.make_up(tmp_path, TOKEN) as kit:
        after = {p: requests.get(f"{kit.url}/payment/{p}", timeout=5).json() for p in before}
        assert after == before, "the SQLite file keeps every payment as it was"
        assert requests.get(kit.url + "/admin/db-mode", timeout=5).json()["mode"] == "original"
