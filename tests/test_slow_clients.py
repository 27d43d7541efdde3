"""Slow and idle clients cannot starve checkouts: `make up` with HAProxy in front (as compose runs it).

The app gets 2 workers of 4 threads here: 8 threads, against 52 connections that send their headers
or their body a byte a second, or nothing at all, or go quiet after one request. HAProxy holds them
(its event loop does not care) and hands gunicorn only whole requests; it ends each one 10 s after
its first byte (`timeout http-request`) or its last answer (`timeout http-keep-alive`). Shoppers
opening a fresh connection per checkout, like phones, pay at full speed meanwhile. Without HAProxy
in front the same load leaves every checkout waiting for a thread (measured: 0 of 3 answered within
10 s), so the first test fails on a kit without it; the app's own read deadline (app/worker.py)
bounds each slow client, tested on the app's own port below.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import rig
from app.lan import lan_address
from loadtest.checkout import card_payload, checkout
from rig.raw import SlowClients, exchange

pytestmark = pytest.mark.long

THREADS = 4  # per worker; make up runs 2 workers on Redis
READ_TIMEOUT = 3  # the app's own deadline (REQUEST_READ_TIMEOUT), short to keep the test short
HAPROXY_TIMEOUT = 10  # deploy/haproxy/haproxy.cfg: timeout http-request, timeout http-keep-alive
BODY = b'{"card_number": "4111111111111111", "expiry": "12/40", "cvv": "123"}'
HEAD = (b"POST /payment/initiate HTTP/1.1\r\nHost: room\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(BODY))


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """`make up` (HAProxy in front when installed, as the machine has it) with 8 app threads in all."""
    with rig.make_up(tmp_path_factory.mktemp("slow-up"), "slow-token",
                     {"GUNICORN_THREADS": str(THREADS), "REQUEST_READ_TIMEOUT": str(READ_TIMEOUT)}) as k:
        assert k.app_port != k.ports["PORT"], "make up did not put HAProxy in front: " + k.log[-2000:]
        yield k


def scripts() -> list:
    """13 connections of each kind: slow headers, slow body, silent, idle after one answered request."""
    slow_headers = HEAD.replace(b"\r\n\r\n", b"\r\nX-Slow: " + b"a" * 60 + b"\r\n\r\n") + BODY
    slow_body = (HEAD, BODY)
    keep_alive = (b"GET /health HTTP/1.1\r\nHost: room\r\n\r\n", b"")
    return [slow_headers] * 13 + [slow_body] * 13 + [b""] * 13 + [keep_alive] * 13


def shoppers(url: str, seconds: float, n: int = 3) -> list:
    """`n` shoppers checking out back to back for `seconds`, each checkout on fresh connections."""
    def one(_):
        outcomes, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            outcomes.append(checkout(requests, url))  # requests' module functions: a new connection each time
        return outcomes

    with ThreadPoolExecutor(n) as pool:
        return [o for outcomes in pool.map(one, range(n)) for o in outcomes]


def test_slow_and_idle_clients_do_not_starve_checkouts_and_are_cut_off(kit):
    kit.reset()
    with SlowClients(kit.ports["PORT"], scripts(), seconds=HAPROXY_TIMEOUT + 4) as slow:
        time.sleep(1.5)  # every slow connection has sent its first bytes
        outcomes = shoppers(kit.url, seconds=6)
        still_open = slow.open_count()
        time.sleep(HAPROXY_TIMEOUT + 3.5 - 7.5)
        slow.stop()
    assert still_open == len(scripts()), f"only {still_open} slow connections were still open while shoppers paid"
    assert len(outcomes) >= 10, f"{len(outcomes)} checkouts in 6 s"
    failed = [(o.result, o.detail, round(o.seconds, 2)) for o in outcomes if not o.ok]
    assert not failed, f"{len(failed)} of {len(outcomes)} checkouts failed: {failed[:5]}"
    slowest = max(o.seconds for o in outcomes)
    assert slowest < 2.0, f"a checkout took {slowest:.2f} s behind the slow clients"
    # Every slow, silent or idle connection was ended by HAProxy about 10 s after it began or went quiet.
    assert all(t is not None and HAPROXY_TIMEOUT - 1 <= t <= HAPROXY_TIMEOUT + 3 for t in slow.closed_at), \
        slow.closed_at
    # What they got back: nothing (a timed-out request is closed without an answer), or the one
    # /health answer of the keep-alive ones: never HTML.
    assert {a for a in slow.answers[:39]} == {b""}, {a[:100] for a in slow.answers[:39]}
    assert all(a.startswith(b"HTTP/1.1 200") and b"healthy" in a for a in slow.answers[39:])


def test_the_app_alone_times_out_a_slow_request_with_json(kit):
    """Behind HAProxy nothing slow reaches the app; without it, each slow client holds a thread for at most
    REQUEST_READ_TIMEOUT seconds, then gets a 408 with the app's JSON error."""
    headers_cut_short, body_cut_short = HEAD[:30], HEAD + BODY[:20]  # the rest never sent
    for data in (headers_cut_short, body_cut_short):
        started = time.monotonic()
        answer = exchange(kit.app_port, data, timeout=READ_TIMEOUT + 5)
        took = time.monotonic() - started
        assert answer.status == 408, answer.describe()
        assert answer.json == {"error": "request_timeout", "message": "The request was not received in time."}
        assert answer.headers["x-worker-pid"].isdigit() and answer.headers["connection"] == "close"
        assert READ_TIMEOUT - 0.5 <= took <= READ_TIMEOUT + 3, took
    # A byte a second does not stretch the deadline: it is one deadline for the whole request.
    with SlowClients(kit.app_port, [(HEAD, BODY)], seconds=READ_TIMEOUT + 6) as slow:
        time.sleep(READ_TIMEOUT + 4)
    assert slow.closed_at[0] is not None and slow.closed_at[0] <= READ_TIMEOUT + 2, slow.closed_at
    assert slow.answers[0].startswith(b"HTTP/1.1 408"), slow.answers[0][:200]
    # A whole request on the same port is served as ever.
    assert requests.post(f"http://127.0.0.1:{kit.app_port}/payment/initiate", json=card_payload(),
                         timeout=10).status_code == 200


def test_the_board_names_the_port_make_up_publishes_whatever_the_request_says(kit):
    """The room opens HAProxy's port; the board says so even when asked on the app's own port by another Host."""
    expected = f"http://{lan_address() or '127.0.0.1'}:{kit.ports['PORT']}/"
    for port in (kit.ports["PORT"], kit.app_port):
        page = requests.get(f"http://127.0.0.1:{port}/board", headers={"Host": "evil.example:6666"}, timeout=10)
        assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
        assert f'id="board-checkout-url" href="{expected}"' in page.text
    assert f"phones in the room  {expected}" in kit.log
