"""The checkout's address on the room's network, for the board's QR code and `make up`'s banner."""

from __future__ import annotations

import functools
import socket
from urllib.parse import urlsplit

# A documentation address (TEST-NET-1): connecting a UDP socket to it only asks the
# kernel which interface would route there; no packet is ever sent.
_PROBE = ("192.0.2.1", 9)


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


def checkout_url(public_url: str | None, host_url: str) -> str:
    """Where phones in the room open the checkout: PUBLIC_URL when set, else this machine's
    LAN address with the port the request came in on, else the request's own address."""
    if public_url:
        return public_url.rstrip("/") + "/"
    address, port = lan_address(), urlsplit(host_url).port
    if address is None:
        return host_url
    return f"http://{address}{f':{port}' if port else ''}/"
