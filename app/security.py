"""Security headers on every response: pages, API and static files alike.

The Content-Security-Policy allows scripts and styles from this origin only:
no inline <script>, no event-handler attributes, no javascript: URLs, no
inline styles. Pages load their code from app/static (and Swagger UI from its
own files), so nothing needs an exception. frame-ancestors forbids framing,
so a checkout cannot be clickjacked.
"""

from __future__ import annotations

from flask import Flask

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    # Swagger UI's stylesheet draws its icons as data: SVGs.
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}

HEADERS = {
    "Content-Security-Policy": "; ".join(f"{name} {value}" for name, value in POLICY.items()),
    "X-Content-Type-Options": "nosniff",
    # frame-ancestors is the modern rule; X-Frame-Options covers older browsers.
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}

_ITEMS = list(HEADERS.items())
_NAMES = {name.lower() for name in HEADERS}


def init_app(app: Flask) -> None:
    """Add the security headers to every response the app sends."""

    @app.after_request
    def _security_headers(response):
        # A view that needs a different policy can still set its own; the usual case adds all
        # at once (setdefault, once per header, cost a caught KeyError per missing header).
        present = {name.lower() for name, _ in response.headers}
        if present.isdisjoint(_NAMES):
            response.headers.extend(_ITEMS)
        else:
            for name, value in _ITEMS:
                response.headers.setdefault(name, value)
        return response
