"""Malformed HTTP framing against the live app, on gunicorn's own port and through HAProxy.

Bad chunked encoding and trailers, bodies shorter than their Content-Length, conflicting lengths,
odd transfer codings, over-long lines and headers, broken header syntax. gunicorn answers each
with a 4xx and the app's JSON `error` (its own rejections included: app/worker.py), and names
its worker; HAProxy answers JSON too, or, for a request it cannot parse, closes without a word
(HAProxy 2.6 has only a built-in HTML page for those: deploy/haproxy/haproxy.cfg). Never a 5xx,
never HTML, and nothing is stored or counted as a server error.
"""

from __future__ import annotations

import pytest

import rig
from rig.probe import scrape
from rig.raw import exchange

CARD = b'{"card_number": "4111111111111111", "expiry": "12/40", "cvv": "123"}'
VERIFY = b'{"payment_id": "pay_000000000000000000000000", "otp": "123456"}'
HTTP = "paygate_http_request_duration_seconds"


def post(path: str, headers: bytes, body: bytes) -> bytes:
    """A POST of `body` to `path` with these extra header lines."""
    return b"POST " + path.encode() + b" HTTP/1.1\r\nHost: room\r\nContent-Type: application/json\r\n" + headers + b"\r\n" + body


def chunked(path: str, body: bytes, ending: bytes) -> bytes:
    """`body` as one chunk, then `ending` (the last chunk, trailers, or something broken)."""
    return post(path, b"Transfer-Encoding: chunked\r\n", b"%x\r\n%s\r\n" % (len(body), body) + ending)


def body_cases(path: str, body: bytes) -> dict[str, tuple[bytes, bool]]:
    """name -> (request, half-close after sending): framing faults of a body sent to `path`."""
    n = len(body)
    return {
        "bad trailer name": (chunked(path, body, b"0\r\nBad Name: x\r\n\r\n"), False),
        "too many trailers": (chunked(path, body, b"0\r\n" + b"".join(b"X-T%d: 1\r\n" % i for i in range(150)) + b"\r\n"), False),
        "NUL in a trailer": (chunked(path, body, b"0\r\nX-T: a\x00b\r\n\r\n"), False),
        "trailer without colon": (chunked(path, body, b"0\r\nno-colon-here\r\n\r\n"), False),
        "chunk size not hex": (post(path, b"Transfer-Encoding: chunked\r\n", b"zz\r\n" + body + b"\r\n0\r\n\r\n"), False),
        "chunk size negative": (post(path, b"Transfer-Encoding: chunked\r\n", b"-5\r\n" + body + b"\r\n0\r\n\r\n"), False),
        "chunk size overflows": (post(path, b"Transfer-Encoding: chunked\r\n", b"f" * 40 + b"\r\n" + body), True),
        "chunk longer than its size": (post(path, b"Transfer-Encoding: chunked\r\n", b"4\r\n" + body + b"\r\n0\r\n\r\n"), False),
        "closed mid-chunk": (post(path, b"Transfer-Encoding: chunked\r\n", b"%x\r\n%s" % (n + 50, body)), True),
        "no last chunk": (chunked(path, body, b""), True),
        "body shorter than Content-Length": (post(path, b"Content-Length: %d\r\n" % (n + 40), body), True),
        "empty body, Content-Length 50": (post(path, b"Content-Length: 50\r\n", b""), True),
        "Content-Length and chunked": (post(path, b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % n, body), False),
        "two Content-Lengths": (post(path, b"Content-Length: %d\r\nContent-Length: %d\r\n" % (n, n + 1), body), False),
        "Content-Length with a sign": (post(path, b"Content-Length: +%d\r\n" % n, body), False),
        "Content-Length in hex": (post(path, b"Content-Length: 0x%x\r\n" % n, body), False),
        "Content-Length fullwidth": (post(path, "Content-Length: ５\r\n".encode(), body), False),
        "gzip, chunked": (post(path, b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), False),
        "chunked, chunked": (post(path, b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"), False),
        "chunked then identity": (post(path, b"Transfer-Encoding: chunked, identity\r\n", body), True),
    }


REQUEST_CASES = {
    "request line of 9000 bytes": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: room\r\n\r\n", False),
    "a header of 9000 bytes": (b"GET /health HTTP/1.1\r\nHost: room\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", False),
    "150 headers": (b"GET /health HTTP/1.1\r\nHost: room\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(150)) + b"\r\n", False),
    "space in a header name": (b"GET /health HTTP/1.1\r\nHost: room\r\nBad Header: x\r\n\r\n", False),
    "space before the colon": (b"GET /health HTTP/1.1\r\nHost : room\r\n\r\n", False),
    "NUL in a header value": (b"GET /health HTTP/1.1\r\nHost: room\r\nX-A: a\x00b\r\n\r\n", False),
    "obsolete line folding": (b"GET /health HTTP/1.1\r\nHost: room\r\nX-A: a\r\n b\r\n\r\n", False),
    "bare LF line endings": (b"GET /health HTTP/1.1\nHost: room\nX-A: a\n\n", True),
    "HTTP/1.7": (b"GET /health HTTP/1.7\r\nHost: room\r\n\r\n", False),
    "HTTP/11": (b"GET /health HTTP/11\r\nHost: room\r\n\r\n", False),
    "method with @": (b"G@T /health HTTP/1.1\r\nHost: room\r\n\r\n", False),
    "no target": (b"GET  HTTP/1.1\r\nHost: room\r\n\r\n", False),
    "binary garbage": (bytes(range(256)) * 4, True),
}

# Requests RFC 9112 lets a recipient read one unambiguous way (HAProxy unfolds an obsolete folded
# header and takes a bare LF as a line end; HTTP/1.7 is answered as HTTP/1.1): a 200 is right.
LENIENT = {"obsolete line folding", "bare LF line endings", "HTTP/1.7"}

# Requests RFC 9112 lets a recipient read one unambiguous way (HAProxy unfolds an obsolete folded
# header and takes a bare LF as a line end; HTTP/1.7 is answered as HTTP/1.1): a 200 is right.
LENIENT = {"obsolete line folding", "bare LF line endings", "HTTP/1.7"}

CASES = {**{f"initiate: {k}": v for k, v in body_cases("/payment/initiate", CARD).items()},
         **{f"verify: {k}": v for k, v in body_cases("/payment/verify-otp", VERIFY).items()},
         **REQUEST_CASES}


@pytest.fixture(scope="module")
def lb(_live_apps):
    """HAProxy (deploy/haproxy/haproxy.cfg, as compose and make up run it) in front of the live app."""
    svc = rig.haproxy(rig.temp_dir("framing-lb"), [_live_apps("mongodb").service.port]).start()
    yield svc
    svc.stop()


def server_errors(url: str) -> float:
    """Requests the app has answered with a 5xx, over all its workers."""
    family = scrape(url)[HTTP]
    return sum(s.value for s in family.samples if s.name == HTTP + "_count" and s.labels["status"].startswith("5"))


def counts(db) -> dict:
    return {name: db[name].count_documents({}) for name in db.list_collection_names()}


def check(answer, via: str, half_closed: bool = False, lenient: bool = False) -> None:
    """A 4xx with the app's JSON error. A close without an answer only through HAProxy (a request it could
    not parse: no HTML page, see the module docstring) or after a client ended a request midway."""
    if answer.raw == b"" and (via == "haproxy" or half_closed):
        return
    if lenient and answer.status == 200:
        assert answer.json == {"status": "healthy"}, answer.describe()
        return
    assert answer.status is not None and 400 <= answer.status < 500, answer.describe()
    assert answer.headers.get("content-type", "").startswith("application/json"), answer.describe()
    assert isinstance((answer.json or {}).get("error"), str), answer.describe()
    if via == "gunicorn":
        assert answer.headers.get("x-worker-pid", "").isdigit(), answer.describe()


@pytest.mark.parametrize("via", ["gunicorn", "haproxy"])
@pytest.mark.parametrize("case", list(CASES))
def test_malformed_framing_gets_a_json_4xx_and_changes_nothing(live, live_db, lb, via, case):
    data, half_close = CASES[case]
    before, errors = counts(live_db), server_errors(live.url)
    answer = exchange(live.service.port if via == "gunicorn" else lb.port, data, half_close=half_close)
    check(answer, via, half_close, case in LENIENT)
    assert counts(live_db) == before
    assert server_errors(live.url) == errors


@pytest.mark.parametrize("case", ["initiate: bad trailer name", "initiate: chunk longer than its size",
                                  "initiate: Content-Length and chunked"])
def test_what_follows_a_broken_body_is_never_read_as_a_request(live, live_db, case):
    """A request hidden after a body that breaks its framing (smuggling) is not served: the connection closes."""
    data, _ = CASES[case]
    hidden = b"POST /payment/initiate HTTP/1.1\r\nHost: room\r\nContent-Type: application/json\r\n" \
             b"Content-Length: %d\r\n\r\n%s" % (len(CARD), CARD)
    before = counts(live_db)
    answer = exchange(live.service.port, data + hidden, timeout=5)
    check(answer, "gunicorn")
    assert answer.raw.count(b"HTTP/1.1 ") == 1, answer.raw[:600]
    assert counts(live_db) == before


def test_the_errors_name_the_fault(live):
    """The answers a client can act on: which fault, in the `error` code."""
    port = live.service.port
    assert exchange(port, CASES["initiate: bad trailer name"][0]).json["error"] == "malformed_body"
    short = exchange(port, *CASES["initiate: body shorter than Content-Length"])
    assert (short.status, short.json["error"]) == (400, "malformed_body") and "shorter" in short.json["message"]
    assert exchange(port, CASES["request line of 9000 bytes"][0]).json["error"] == "request_line_too_long"
    assert exchange(port, CASES["150 headers"][0]).status == 431
    assert exchange(port, CASES["initiate: gzip, chunked"][0]).status < 500
