"""`make up` as a facilitator runs it: SQLite under .cache/, a real redis-server, several workers; Zipkin
for the room when java is on PATH, and a banner that says tracing is off when it is not."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests

import rig
from app.lan import checkout_url
from loadtest.checkout import initiate, verify
from rig.probe import poll_until, wait_answering

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


def process_env(pid: int) -> dict[str, str]:
    """The environment a running process was started with."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def listens_on_every_address(port: int) -> bool:
    """Something listens on 0.0.0.0:port or [::]:port: reachable from the room, not only on loopback."""
    for table, everywhere in (("/proc/net/tcp", "00000000"), ("/proc/net/tcp6", "0" * 32)):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port and address == everywhere:
                return True
    return False


@pytest.mark.services
@pytest.mark.timeout(420)
def test_make_up_starts_zipkin_for_the_room_and_points_the_app_at_it(tmp_path):
    """With java on PATH: Zipkin on ZIPKIN_PORT, on every address like the checkout, named on the banner with
    the room's address; the app is started with its span endpoint and UI; it is ready when /health says UP,
    a checkout's trace lands in it, and it stops with the kit."""
    rig.require("java")
    with rig.make_up(tmp_path, TOKEN, {"TRACING": "on"}) as kit:
        port = kit.ports["ZIPKIN_PORT"]
        room = checkout_url(None, port)  # the LAN address, as the checkout's line
        banner = re.search(r"traces \(Zipkin\) +(\S+)", kit.log)
        assert banner and banner.group(1) == f"{room}zipkin/", kit.log
        app = process_env(rig.listener_pid(kit.app_port))  # gunicorn itself (behind HAProxy when installed)
        assert app["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] == f"http://127.0.0.1:{port}/api/v2/spans"
        assert app["TRACES_UI_URL"] == banner.group(1)
        # The JVM comes up beside the kit, which was ready without waiting for it.
        wait_answering("make up's Zipkin", lambda: rig.answers_zipkin(port), 240, kit.proc, lambda: kit.log[-3000:])
        assert poll_until(lambda: "Zipkin is ready: " + banner.group(1) in kit.log, timeout=10), kit.log
        assert listens_on_every_address(port), "the room could not open the trace UI"
        assert requests.get(f"http://127.0.0.1:{port}/zipkin/", timeout=10).status_code == 200
        # A checkout's trace lands there, under the id the app answered with.
        trace_id = initiate(kit.url).headers["X-Trace-Id"]
        trace = poll_until(lambda: requests.get(f"http://127.0.0.1:{port}/api/v2/trace/{trace_id}", timeout=5).ok,
                           timeout=30, every=0.5)
        assert trace, f"trace {trace_id} never reached make up's Zipkin"
        zipkin_pid = rig.listener_pid(port)
    assert poll_until(lambda: rig.port_is_free(port), timeout=10), "Zipkin outlived the kit"
    assert not Path(f"/proc/{zipkin_pid}").exists()


@pytest.mark.services
@pytest.mark.timeout(240)
def test_make_up_without_java_says_tracing_is_off_and_how_to_turn_it_on(tmp_path):
    """PATH with the kit's servers but no java: the kit runs, the banner says why there are no traces and what
    to install, and the app is given no span endpoint."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("redis-server", "prometheus"):
        (bin_dir / name).symlink_to(rig.require(name))
    with rig.make_up(tmp_path / "kit", TOKEN, {"TRACING": "on", "PATH": str(bin_dir)}) as kit:
        assert "traces (Zipkin)     off: no `java` on PATH. To turn it on: " \
               "`sudo apt-get install default-jre-headless maven`" in kit.log, kit.log
        app = process_env(rig.listener_pid(kit.app_port))  # gunicorn itself (behind HAProxy when installed)
        assert "OTEL_EXPORTER_ZIPKIN_ENDPOINT" not in app and "TRACES_UI_URL" not in app
        assert rig.port_is_free(kit.ports["ZIPKIN_PORT"])
