"""Header tricks against the board: the room's URL never comes from a request.

The board shows phones where to pay (a link and a QR code). It comes from PUBLIC_URL, else this
machine's LAN address and the configured port (app/lan.py): whatever Host, absolute URI or
X-Forwarded-* header a client sends, every answer names the same URL, or is a JSON 4xx. Pages
that change every second say `no-store`. On gunicorn's own port and through HAProxy.
"""

from __future__ import annotations

import re

import pytest

import rig
from app.lan import lan_address
from rig.raw import exchange

EVIL = "evil.example:6666"


def get(path: str, headers: list[str], target: str | None = None) -> bytes:
    """A GET of `path` (or of an absolute `target`) with exactly these header lines."""
    lines = [f"GET {target or path} HTTP/1.1", *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("utf-8")


TRICKS = {
    "evil host": (["Host: evil.example"], None),
    "evil host and port": ([f"Host: {EVIL}"], None),
    "loopback, another port": (["Host: 127.0.0.1:1"], None),
    "IPv6 literal": (["Host: [::1]:6666"], None),
    "userinfo in host": ([f"Host: {EVIL}@room"], None),
    "fullwidth host": (["Host: ｅｖｉｌ.example:６６６６"], None),
    "empty host": (["Host: "], None),
    "no host": ([], None),
    "two hosts": (["Host: room", f"Host: {EVIL}"], None),
    "host of 4000 bytes": (["Host: " + "a" * 4000 + ".example"], None),
    "absolute URI": (["Host: room"], f"http://{EVIL}/board"),
    "absolute URI, https": (["Host: room"], f"https://{EVIL}/board"),
    "X-Forwarded-Host": (["Host: room", f"X-Forwarded-Host: {EVIL}"], None),
    "X-Forwarded-Port and Proto": (["Host: room", "X-Forwarded-Port: 6666", "X-Forwarded-Proto: https"], None),
    "Forwarded": (["Host: room", f"Forwarded: host={EVIL};proto=https"], None),
    "X-Original-URL": (["Host: room", f"X-Original-URL: http://{EVIL}/"], None),
}


@pytest.fixture(scope="module")
def lb(_live_apps):
    """HAProxy (deploy/haproxy/haproxy.cfg) in front of the live app."""
    svc = rig.haproxy(rig.temp_dir("headers-lb"), [_live_apps("mongodb").service.port]).start()
    yield svc
    svc.stop()


def link(page: bytes) -> str:
    """The checkout address the board page shows."""
    found = re.search(rb'id="board-checkout-url" href="([^"]*)"', page)
    assert found, page[:300]
    return found.group(1).decode()


@pytest.mark.parametrize("via", ["gunicorn", "haproxy"])
@pytest.mark.parametrize("trick", list(TRICKS))
def test_no_header_changes_the_rooms_url(live, lb, via, trick):
    port = live.service.port if via == "gunicorn" else lb.port
    # The rig's app binds 127.0.0.1:<its port>, and no PUBLIC_URL: the URL is the LAN address with that port.
    expected = f"http://{lan_address() or '127.0.0.1'}:{live.service.port}/"
    baseline_qr = exchange(port, get("/board/qr.svg", ["Host: room"])).body
    headers, target = TRICKS[trick]
    for path in ("/board", "/board/qr.svg"):
        answer = exchange(port, get(path, headers, target and target.replace("/board", path)))
        if answer.status == 200:
            if path == "/board":
                assert link(answer.body) == expected, trick
                assert answer.headers["cache-control"] == "no-store"
            else:
                assert answer.body == baseline_qr, trick
        else:  # refused: a JSON 4xx, or (HAProxy, a request it cannot parse) a close without an answer
            if via == "haproxy" and answer.raw == b"":
                continue
            assert answer.status is not None and 400 <= answer.status < 500, answer.describe()
            assert answer.json and isinstance(answer.json.get("error"), str), answer.describe()


def test_pages_that_change_every_second_are_no_store(live):
    for path in ("/board", "/board/data"):
        answer = exchange(live.service.port, get(path, ["Host: room"]))
        assert answer.status == 200 and answer.headers["cache-control"] == "no-store", (path, answer.describe())
