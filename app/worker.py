"""The gunicorn worker the kit runs: gthread, with a deadline on reading each request and its own
rejections (bad framing, over-long lines, too many headers) answered as JSON, like the app's.

gthread reads a request in a pool thread once the socket is readable: a client sending its headers
or body a byte at a time would hold that thread for as long as it likes. Here every read of a
request shares one deadline, so a thread is held at most REQUEST_READ_TIMEOUT seconds. That bounds
each slow client, not how many there are: enough of them still take every thread for that long,
which is why `make up`, compose and the chart put HAProxy in front (it buffers whole requests).
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from typing import Any

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers import gthread

from .errors import CLOSE_CONNECTION, AppError, RequestTimedOut

# Seconds a client has to send a whole request (line, headers and body), from its first byte.
READ_TIMEOUT = float(os.environ.get("REQUEST_READ_TIMEOUT", "10"))

_REASONS = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout", 414: "URI Too Long",
            431: "Request Header Fields Too Large", 500: "Internal Server Error"}


class _DeadlineSocket:
    """The connection's socket as the request parser reads it: each recv waits at most until the deadline."""

    __slots__ = ("deadline", "sock")

    def __init__(self, sock):
        self.sock, self.deadline = sock, 0.0

    def recv(self, size: int) -> bytes:
        """recv, or RequestTimedOut once the request's deadline has passed."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise RequestTimedOut()
        self.sock.settimeout(remaining)
        try:
            return self.sock.recv(size)
        except TimeoutError:
            raise RequestTimedOut() from None
        finally:
            self.sock.settimeout(None)  # blocking again: gunicorn writes the answer on this socket


def rejection(exc: Exception) -> tuple[int, str, str]:
    """(status, error code, message) for a request gunicorn refused before or while the app read it."""
    if isinstance(exc, AppError):
        return exc.status, exc.code, exc.message
    if isinstance(exc, http_errors.LimitRequestLine):
        return 414, "request_line_too_long", f"The request line is too long: {exc}"
    if isinstance(exc, http_errors.LimitRequestHeaders):
        return 431, "headers_too_large", f"Too many or too large header fields: {exc}"
    if isinstance(exc, http_errors.ForbiddenProxyRequest):
        return 403, "forbidden", "Request forbidden."
    if isinstance(exc, http_errors.UnsupportedTransferCoding):
        # gunicorn answers 501, but a client choosing an odd coding is the client's fault, not ours.
        return 400, "unsupported_transfer_coding", str(exc)
    if isinstance(exc, http_errors.ParseException):
        return 400, "malformed_request", f"The request is not valid HTTP/1.1: {exc}"
    return 500, "internal_error", "An unexpected error occurred."


class _ClosesWhenAsked:
    """The WSGI app, closing the connection after an answer whose request set CLOSE_CONNECTION."""

    def __init__(self, app):
        self.app = app

    def __getattr__(self, name):  # the app's own attributes (post_worker_init reads its extensions)
        return getattr(self.app, name)

    def __call__(self, environ, start_response):
        result = self.app(environ, start_response)
        if environ.get(CLOSE_CONNECTION):
            # gunicorn drops a Connection header set by the app; its Response object (whose method
            # start_response is) decides, and nothing has been sent yet.
            start_response.__self__.force_close()
        return result


class ThreadWorker(gthread.ThreadWorker):
    """gthread with a read deadline per request, JSON rejections, and connections closed after bad framing."""

    wsgi: Any  # gunicorn's, set by load_wsgi

    def load_wsgi(self):
        """The app, wrapped to honour CLOSE_CONNECTION."""
        super().load_wsgi()
        self.wsgi = _ClosesWhenAsked(self.wsgi)

    def handle(self, conn):
        """Serve the next request on `conn`, its reads bounded by READ_TIMEOUT from now."""
        unreader = conn.parser.unreader
        if not isinstance(unreader.sock, _DeadlineSocket):
            unreader.sock = _DeadlineSocket(unreader.sock)
        unreader.sock.deadline = time.monotonic() + READ_TIMEOUT
        return super().handle(conn)

    def handle_error(self, req, client, addr, exc):
        """Answer a refused request as the app answers errors: JSON with `error`, and the worker's pid."""
        status, code, message = rejection(exc)
        addr = addr or ("", -1)
        if status >= 500:
            self.log.exception("Error handling request", exc_info=exc)
        else:
            self.log.warning("Invalid request from ip=%s: %s", addr[0], message)
        if req is None and isinstance(exc, (http_errors.InvalidHeader, http_errors.InvalidHeaderName)):
            req = getattr(exc, "req", None)  # these two carry the request (others carry a string there)
        if req is not None:  # the access log shows refused requests too
            try:
                environ = {**default_environ(req, client, self.cfg), "REMOTE_ADDR": addr[0], "REMOTE_PORT": str(addr[1])}
                resp = Response(req, client, self.cfg)
                resp.status = f"{status} {_REASONS.get(status, 'Error')}"
                self.log.access(resp, req, environ, timedelta(0))
            except Exception:  # a log line must never cost the client its answer
                self.log.debug("Could not log the refused request.")
        body = json.dumps({"error": code, "message": message[:300]}).encode()
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                f"X-Content-Type-Options: nosniff\r\nX-Worker-Pid: {os.getpid()}\r\n\r\n")
        try:
            util.write_nonblock(client, head.encode("latin-1") + body)
        except Exception:
            self.log.debug("Failed to send error message.")
