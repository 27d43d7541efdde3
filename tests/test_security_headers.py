"""Security headers on every kind of response: pages, static files, API answers and errors."""

from __future__ import annotations

import pytest

from loadtest.checkout import card_payload

GETS = ["/", "/admin", "/board", "/docs", "/static/checkout.js", "/static/style.css", "/health",
        "/admin/db-mode", "/admin/knobs", "/openapi.json", "/payment/pay_000000000000000000000000",
        "/no-such-page"]


def csp(response) -> dict[str, list[str]]:
    """The Content-Security-Policy header as {directive: [sources]}."""
    header = response.headers.get("Content-Security-Policy")
    assert header, f"no Content-Security-Policy on {response.request.path}"
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


def assert_secure(response) -> None:
    policy = csp(response)
    # Scripts from this origin only: no inline code, no eval, no other host.
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert not any("unsafe" in source for sources in policy.values() for source in sources)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("path", GETS)
def test_every_get_answer_carries_the_headers(client, path):
    r = client.get(path)
    assert r.status_code < 500, (path, r.status_code)
    assert_secure(r)


def test_api_writes_and_their_errors_carry_the_headers(client, auth):
    answers = [
        client.post("/payment/initiate", json=card_payload()),               # 200
        client.post("/payment/initiate", json=card_payload(cvv="1")),        # 400 validation_error
        client.post("/payment/initiate", data="x", content_type="text/plain"),  # 415
        client.put("/admin/db-mode", json={"mode": "audit"}),               # 401
        client.put("/admin/db-mode", json={"mode": "audit"}, headers=auth),  # 200
        client.delete("/health"),                                            # 405
    ]
    assert [r.status_code for r in answers] == [200, 400, 415, 401, 200, 405]
    for r in answers:
        assert_secure(r)
