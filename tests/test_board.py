"""The live board: its page, and /board/data against real Redis, in one process
and under gunicorn with 2 workers (counts must add up across workers)."""

from __future__ import annotations

import re
import time

import pytest
import requests

import rig
from app import create_app
from app.board import (
    HISTORY_SECONDS,
    KEY_TTL_SECONDS,
    TOP_BUCKET_MS,
    WINDOW_SECONDS,
    BoardStats,
    quantile_ms,
    ready_bucket,
)
from loadtest.checkout import card_payload, initiate
from rig.probe import poll_until, until_every_worker


def board_once_ready(client, writes: int) -> dict:
    """/board/data once it counts `writes` finished writes and as many OTP outcomes.

    The board's counts reach Redis a tick later, and not together: a write's ready time is
    recorded on its write thread before the request records the OTP outcome, so a flush can
    fall between the two."""
    def counted(d: dict) -> bool:
        now = d["current"]
        return now["ready_count"] == writes and now["otp_success"] + now["otp_timeout"] == writes

    return poll_until(lambda: counted(d := client.get("/board/data").get_json()) and d)


def history_total(data: dict, key: str) -> int:
    """A count summed over the board's 5-minute history."""
    return sum(p[key] for p in data["history"]["points"])


# -- the page -------------------------------------------------------------------


def test_board_page_has_the_mode_and_loads_its_script_from_a_file(client, html_of):
    html = html_of("/board")
    assert re.search(r'<strong id="board-mode"[^>]*>original</strong>', html)
    assert '<script type="module" src="/static/board.js"' in html
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"\sstyle\s*=", html), "inline style"
    for asset in ("/static/board.js", "/static/board-charts.js", "/static/board.css"):
        body = client.get(asset).get_data(as_text=True)
        assert body and not re.search(r"https?://(?!www\.w3\.org/2000/svg)", body), asset
    js = client.get("/static/board.js").get_data(as_text=True)
    assert "/board/data" in js and "innerHTML" not in js
    assert "innerHTML" not in client.get("/static/board-charts.js").get_data(as_text=True)
    assert int(re.search(r"POLL_MS = (\d+)", js).group(1)) <= 2000


# -- /board/data in one process ---------------------------------------------------


def test_board_data_without_traffic(client):
    data = client.get("/board/data").get_json()
    assert data["mode"] == "original"
    now = data["current"]
    assert {k: now[k] for k in ("otp_success", "otp_timeout", "otp_success_rate", "ready_count", "ready_p95_ms",
                                "ready_p95_beyond_top", "checkouts_per_s", "retries", "retries_per_s",
                                "inflight_writes")} == {
        "otp_success": 0, "otp_timeout": 0, "otp_success_rate": None, "ready_count": 0, "ready_p95_ms": None,
        "ready_p95_beyond_top": False, "checkouts_per_s": 0.0, "retries": 0, "retries_per_s": 0.0,
        "inflight_writes": 0}
    # The sync loop samples writes in flight every tick: none yet, or a mean of zero.
    assert now["inflight_mean"] in (None, 0.0)
    assert data["traces"] == {"revealed": False, "latest_failed_url": None, "failed_search_url": None}
    assert data["otp_timeout_ms"] == 400 and data["success_target"] == 0.95
    points = data["history"]["points"]
    assert len(points) == HISTORY_SECONDS // data["history"]["step_seconds"]
    assert points[-1]["t"] <= data["now"] < points[-1]["t"] + data["history"]["step_seconds"] + 1
    assert data["mode_changes"] == []


def test_board_data_counts_otp_outcomes_ready_times_and_flips(client, auth):
    for _ in range(3):
        assert client.post("/payment/initiate", json=card_payload()).get_json()["status"] == "awaiting_otp"
    data = board_once_ready(client, 3)
    now = data["current"]
    assert (now["otp_success"], now["otp_timeout"], now["otp_success_rate"]) == (3, 0, 1.0)
    assert 0 < now["ready_p95_ms"] <= 400 + 10  # an OTP was issued, so each write beat the deadline

    # audit with a 50 ms deadline: the write (≈ 260 ms) misses it and still completes
    assert client.patch("/admin/knobs", json={"otp_timeout_ms": 50}, headers=auth).status_code == 200
    assert client.put("/admin/db-mode", json={"mode": "audit"}, headers=auth).status_code == 200
    assert client.post("/payment/initiate", json=card_payload()).get_json()["status"] == "otp_unavailable"
    data = board_once_ready(client, 4)
    now = data["current"]
    assert (now["otp_success"], now["otp_timeout"], now["otp_success_rate"]) == (3, 1, 0.75)
    assert now["ready_p95_ms"] > data["otp_timeout_ms"] == 50
    assert data["mode"] == "audit"
    assert [(c["from"], c["to"]) for c in data["mode_changes"]] == [("original", "audit")]
    assert data["now"] - 30 < data["mode_changes"][0]["at"] <= data["now"]
    assert (history_total(data, "otp_success"), history_total(data, "otp_timeout")) == (3, 1)


def test_p95_window_history_and_ttl_with_a_fixed_clock(app):
    kit = app.extensions["paygate"]
    rds, prefix = kit.backends.redis, kit.settings.key_prefix
    t = 1_700_000_000.0
    stats = BoardStats(rds, prefix, clock=lambda: t)
    for ms in range(10, 1001, 10):  # 100 ready times, 10 ms … 1000 ms
        stats.record_ready(ms / 1000)
    stats.record_otp("success")
    t += 60  # a minute later: one timeout, and a ready time of 3 s
    stats.record_otp("timeout")
    stats.record_ready(3.0)
    with rds.pipeline() as pipe:  # what the sync loop does a few times a second
        stats.queue_flush(pipe, stats.take_pending())
        pipe.execute()

    summary = stats.summary(t)
    assert summary["current"] == {"otp_success": 0, "otp_timeout": 1, "otp_success_rate": 0.0,
                                  "ready_count": 1, "ready_p95_ms": 3000, "ready_p95_beyond_top": False,
                                  "checkouts_per_s": round(1 / (WINDOW_SECONDS - 1), 2), "retries": 0,
                                  "retries_per_s": 0.0, "inflight_mean": None}
    points = [p for p in summary["history"]["points"] if p["ready_count"]]
    assert [p["ready_count"] for p in points] == [100, 1]
    assert points[0]["ready_p95_ms"] == 950 and points[0]["otp_success_rate"] == 1.0
    assert points[1]["t"] - points[0]["t"] == 60
    # six minutes later everything has left the history
    assert BoardStats(rds, prefix).summary(t + HISTORY_SECONDS + 1)["history"]["points"][-1]["ready_count"] == 0
    ttls = [rds.ttl(k) for k in rds.scan_iter(prefix + "board:*")]
    assert ttls and all(0 < ttl <= KEY_TTL_SECONDS for ttl in ttls)


def flush(stats: BoardStats, rds) -> None:
    """What the sync loop does a few times a second: the pending counts to Redis."""
    with rds.pipeline() as pipe:
        stats.queue_flush(pipe, stats.take_pending())
        pipe.execute()


def test_load_retries_writes_in_flight_and_a_p95_past_the_top_bucket(app):
    kit = app.extensions["paygate"]
    rds, prefix = kit.backends.redis, kit.settings.key_prefix
    t = 1_700_000_000.5  # half a second into the window's last second
    stats = BoardStats(rds, prefix, clock=lambda: t)
    for second in range(WINDOW_SECONDS):  # ten seconds of a collapse: 4 checkouts a second, 3 of them retries
        t = 1_700_000_000.5 - second
        for _ in range(4):
            stats.record_otp("timeout", trace_id=f"{second:032x}")
            stats.record_ready(12.0)  # past the histogram's top bucket
        for _ in range(3):
            stats.record_retry()
        for n in (5, 6, 7):  # three readings of writes in flight
            stats.sample_inflight(n)
    t = 1_700_000_000.5
    flush(stats, rds)
    now = stats.summary(t)["current"]
    # 40 checkouts in the 9.5 s the window covers so far (its last second is half over)
    assert now["checkouts_per_s"] == round(40 / 9.5, 2) and now["retries_per_s"] == round(30 / 9.5, 2)
    assert now["retries"] == 30 and now["otp_timeout"] == 40 and now["otp_success_rate"] == 0.0
    assert now["inflight_mean"] == 6.0
    assert now["ready_p95_ms"] == TOP_BUCKET_MS and now["ready_p95_beyond_top"] is True
    # The latest failure recorded (the last call: second 9, the oldest) is the board's link.
    assert stats.summary(t, max_age_s=0)["latest_failed_trace"] == f"{9:032x}"
    point = [p for p in stats.summary(t, max_age_s=0)["history"]["points"] if p["retries"]][-1]
    assert point["checkouts_per_s"] > point["retries_per_s"] > 0 and point["inflight_mean"] == 6.0


def test_a_failed_flush_keeps_its_counts_and_trace_for_the_next(app):
    kit = app.extensions["paygate"]
    rds, prefix = kit.backends.redis, kit.settings.key_prefix
    t = 1_700_000_000.0
    stats = BoardStats(rds, prefix, clock=lambda: t)
    stats.record_otp("timeout", trace_id="a" * 32)
    stats.record_retry()
    stats.restore(stats.take_pending())  # as the sync loop does when Redis failed
    flush(stats, rds)
    summary = stats.summary(t)
    assert (summary["current"]["otp_timeout"], summary["current"]["retries"]) == (1, 1)
    assert summary["latest_failed_trace"] == "a" * 32


def test_the_rooms_latest_failure_is_the_newest_whichever_worker_flushes_last(app):
    """Two workers: the one that failed first flushes last; the board still links the newer failure."""
    kit = app.extensions["paygate"]
    rds, prefix = kit.backends.redis, kit.settings.key_prefix
    t = 1_700_000_000.0
    early, late = BoardStats(rds, prefix, clock=lambda: t - 2), BoardStats(rds, prefix, clock=lambda: t)
    early.record_otp("timeout", trace_id="e" * 32)
    late.record_otp("timeout", trace_id="f" * 32)
    flush(late, rds)
    flush(early, rds)
    assert late.summary(t, max_age_s=0)["latest_failed_trace"] == "f" * 32


TRACES_UI = "http://zipkin.example:9411/zipkin/"


@pytest.fixture
def traced_client(mongo_url, redis_url):
    """An app whose settings name a trace UI (as TRACES_UI_URL does)."""
    application = create_app(rig.app_config(mongo_url=mongo_url, redis_url=redis_url, traces_ui_url=TRACES_UI))
    yield application.test_client(), application.extensions["paygate"]
    application.extensions["paygate"].close()


def test_trace_links_appear_only_once_revealed(traced_client, auth):
    client, kit = traced_client
    kit.board.record_otp("timeout", trace_id="b" * 32)
    assert client.get("/board/data").get_json()["traces"] == {
        "revealed": False, "latest_failed_url": None, "failed_search_url": None}
    assert client.get("/board/trace-link?trace_id=" + "c" * 32).get_json() == {"revealed": False, "trace_url": None}

    assert client.patch("/admin/knobs", json={"reveal_traces": True}, headers=auth).status_code == 200
    traces = poll_until(lambda: (t := client.get("/board/data").get_json()["traces"])["latest_failed_url"] and t)
    assert traces["revealed"] is True
    assert traces["latest_failed_url"] == TRACES_UI + "traces/" + "b" * 32
    search = traces["failed_search_url"]
    assert search.startswith(TRACES_UI + "?")
    query = dict(pair.split("=", 1) for pair in search.split("?", 1)[1].split("&"))
    # Zipkin Lens searches only with a lookback, its end (epoch ms) and a limit in the URL.
    assert query["serviceName"] == "paygate" and query["annotationQuery"] == "paygate.status%3Dotp_unavailable"
    assert query["lookback"] == "15m" and int(query["limit"]) > 0
    assert abs(int(query["endTs"]) / 1000 - time.time()) < 60
    assert client.get("/board/trace-link?trace_id=" + "C" * 32).get_json() == {
        "revealed": True, "trace_url": TRACES_UI + "traces/" + "c" * 32}


def test_trace_link_refuses_what_is_not_a_trace_id(traced_client):
    client, _ = traced_client
    for bad in ("", "xyz", "a" * 31, "a" * 33, "../../admin", "a" * 16 + "%2F"):
        r = client.get("/board/trace-link?trace_id=" + bad)
        assert r.status_code == 400 and r.get_json()["error"] == "validation_error", bad
        assert "trace_id" in r.get_json()["fields"]


@pytest.mark.unit
def test_quantile_and_buckets():
    assert quantile_ms({}, 0.95) is None
    assert ready_bucket(0.0) == 1 and ready_bucket(0.4) == 40 and ready_bucket(0.4001) == 41
    assert ready_bucket(3600) == ready_bucket(10)  # capped
    assert quantile_ms({40: 95, 41: 5}, 0.95) == 400
    assert quantile_ms({40: 94, 41: 6}, 0.95) == 410


def test_fifty_open_boards_read_redis_about_as_often_as_one(tmp_path):
    """Every open board polls /board/data each second; a worker computes it at most once a second."""
    server = rig.redis_server(tmp_path / "redis").start()  # its own: counted commands are this test's
    application = create_app({"sqlite_path": str(tmp_path / "paygate.sqlite3"), "admin_token": rig.TEST_TOKEN,
                              "redis_url": f"redis://127.0.0.1:{server.port}/0"})
    try:
        client = application.test_client()
        rds = application.extensions["paygate"].backends.redis

        def hgetalls() -> int:
            return rds.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0)

        assert client.get("/board/data").status_code == 200
        one = hgetalls()
        started = time.monotonic()
        for _ in range(50):
            assert client.get("/board/data").status_code == 200
        fifty = hgetalls() - one
        elapsed = time.monotonic() - started
    finally:
        application.extensions["paygate"].close()
        server.stop()
    reads_of_one = 300  # one HGETALL per second of the board's history
    # Fifty boards in `elapsed` seconds: at most one computation per started second, plus the
    # sync loop's own HGETALL of the writes in flight (20 a second).
    assert fifty <= reads_of_one * (elapsed + 1) + 25 * (elapsed + 1), (fifty, elapsed)
    assert fifty < 50 * reads_of_one / 10


def test_board_without_redis_answers_503_and_payments_still_work(mongo_url):
    # Nothing listens on this port: every Redis call fails at once.
    application = create_app(rig.app_config(mongo_url=mongo_url, redis_url=f"redis://127.0.0.1:{rig.free_port()}/0"))
    try:
        client = application.test_client()
        r = client.post("/payment/initiate", json=card_payload())
        assert r.status_code == 200 and r.get_json()["status"] == "awaiting_otp", r.get_json()
        r = client.get("/board/data")
        assert r.status_code == 503
        assert r.get_json()["error"] == "board_unavailable" and r.get_json()["mode"] == "original"
        assert client.get("/board").status_code == 200
    finally:
        application.extensions["paygate"].close()


# -- across gunicorn workers ------------------------------------------------------


def test_board_data_adds_up_over_both_workers(own_app):
    app2 = own_app("board")  # its own key prefix: no other traffic on its board
    responses = until_every_worker(lambda: initiate(app2.url), least=30)
    n = len(responses)
    assert all(r.status_code == 200 for r in responses)
    assert len({r.headers["X-Worker-Pid"] for r in responses}) == 2
    issued = sum(r.json()["status"] == "awaiting_otp" for r in responses)

    def board():
        r = requests.get(app2.url + "/board/data", timeout=10, headers={"Connection": "close"})
        return r.headers["X-Worker-Pid"], r.json()

    def complete_on_both_workers():
        # Each worker computes the board at most once a second: wait until both show every payment.
        seen = {}
        for _ in range(60):  # fresh connections until both workers have answered
            pid, data = board()
            seen[pid] = data
            if len(seen) == 2:
                break
        return len(seen) == 2 and all(history_total(d, "ready_count") == n for d in seen.values()) and seen

    seen = poll_until(complete_on_both_workers, timeout=8)
    assert seen, board()[1]["history"]
    for data in seen.values():
        assert history_total(data, "otp_success") == issued
        assert history_total(data, "otp_success") + history_total(data, "otp_timeout") == n
        assert history_total(data, "ready_count") == n
