"""HTTP as a hostile client writes it: raw bytes on a socket, and slow clients held open.

requests and urllib3 refuse to send most of what these tests need (bad framing, bad trailers,
a body shorter than its Content-Length, a header a byte a second), so this module speaks to
the socket itself. Everything is bounded in time: nothing here waits without a timeout.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

__all__ = ["Answer", "SlowClients", "exchange"]


@dataclass
class Answer:
    """What came back on the connection: nothing (`status` None) or one parsed HTTP answer."""

    raw: bytes
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def json(self):
        """The body as JSON, or None when it is not."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def describe(self) -> str:
        """For assertion messages."""
        return f"{self.status} {self.headers.get('content-type', '')} {self.body[:200]!r}"


def _parse(raw: bytes) -> Answer:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/"):
        return Answer(raw)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    return Answer(raw, int(lines[0].split()[1]), headers, body[:int(length)] if length else body)


def exchange(port: int, data: bytes, half_close: bool = False, timeout: float = 5.0) -> Answer:
    """Send `data` to 127.0.0.1:port (then shut our side if `half_close`) and read until the server
    closes, a whole answer has come, or `timeout` passes; the first answer, parsed."""
    deadline = time.monotonic() + timeout
    raw = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
            while time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(65536)
                if not chunk:
                    break
                raw += chunk
                answer = _parse(raw)
                if answer.status is not None and len(answer.body) >= int(answer.headers.get("content-length", -1)):
                    break
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            pass  # the server closed on us or said nothing: whatever came is the answer
    return _parse(raw)


class SlowClients:
    """`scripts` sent to 127.0.0.1:port, each on its own connection, `per_second` bytes a second, in one
    thread. A script is bytes to trickle, or (bytes sent at once, bytes to trickle) — headers at once and
    a slow body, say; b"" never sends a byte. Runs until stop() or `seconds`.

    closed_at[i] is when (seconds after start) the server closed connection i, None while it is open;
    answers[i] holds whatever the server sent on it.
    """

    def __init__(self, port: int, scripts: list[bytes | tuple[bytes, bytes]], seconds: float, per_second: int = 1):
        self.bursts = [s[0] if isinstance(s, tuple) else b"" for s in scripts]
        self.scripts = [s[1] if isinstance(s, tuple) else s for s in scripts]
        self.port, self.seconds, self.per_second = port, seconds, per_second
        self.closed_at: list[float | None] = [None] * len(scripts)
        self.answers: list[bytes] = [b""] * len(scripts)
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlowClients:
        self._thread.start()
        if not self.connected.wait(10):
            raise RuntimeError("the slow clients could not connect within 10 s")
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """End every connection still open."""
        self._stop.set()
        self._thread.join(15)

    def open_count(self) -> int:
        """Connections the server has not closed."""
        return sum(t is None for t in self.closed_at)

    def _run(self) -> None:
        started = time.monotonic()
        socks = [socket.create_connection(("127.0.0.1", self.port), timeout=5) for _ in self.scripts]
        for s, burst in zip(socks, self.bursts, strict=True):
            s.sendall(burst)
        sent = [0] * len(socks)
        with selectors.DefaultSelector() as sel:
            for i, s in enumerate(socks):
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ, i)
            self.connected.set()
            next_tick = time.monotonic()
            try:
                while not self._stop.is_set() and time.monotonic() - started < self.seconds:
                    for key, _ in sel.select(timeout=max(0.0, next_tick - time.monotonic())):
                        i = key.data
                        try:
                            chunk = key.fileobj.recv(65536)
                        except BlockingIOError:
                            continue
                        except ConnectionResetError:
                            chunk = b""
                        self.answers[i] += chunk
                        if not chunk:
                            self.closed_at[i] = time.monotonic() - started
                            sel.unregister(key.fileobj)
                    if time.monotonic() >= next_tick:
                        next_tick += 1.0
                        for i, s in enumerate(socks):
                            piece = self.scripts[i][sent[i]:sent[i] + self.per_second]
                            if piece and self.closed_at[i] is None:
                                try:
                                    sent[i] += s.send(piece)
                                except (BrokenPipeError, ConnectionResetError, BlockingIOError):
                                    pass
            finally:
                for s in socks:
                    s.close()
