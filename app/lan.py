"""The checkout's address on the room's network, for the board's QR code and `make up`'s banner.

It comes from configuration (PUBLIC_URL; else PORT or BIND for the port) and this machine's own
addresses, never from a request: a Host header is whatever the client chose to send.
"""

from __future__ import annotations

import functools
import os
import socket

# A documentation address (TEST-NET-1): connecting a UDP socket to it only asks the
# kernel which interface would route there; no packet is ever sent.
_PROBE = ("192.0.2.1", 9)
DEFAULT_PORT = 8000


@functools.lru_cache(maxsize=1)
def lan_address() -> str | None:
    """This machine's address on its local network, None when it has none but loopback."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(_PROBE)
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def room_port(env=os.environ) -> int:
    """The port the room reaches the checkout on: PORT (`make up` sets it to the port it publishes,
    in front of the app), else the port in BIND, else 8000."""
    for value in (env.get("PORT"), (env.get("BIND") or "").rpartition(":")[2]):
        if value and value.isascii() and value.isdigit() and 0 < int(value) < 65536:
            return int(value)
    return DEFAULT_PORT


def checkout_url(public_url: str | None, port: int) -> str:
    """Where phones in the room open the checkout: PUBLIC_URL when set, else this machine's LAN
    address (loopback when it has none: then only this machine can open it) with `port`."""
    if public_url:
        return public_url.rstrip("/") + "/"
    return f"http://{lan_address() or '127.0.0.1'}:{port}/"
