"""Property-based fuzzing of every documented operation with schemathesis.

The app runs under real gunicorn (2 workers) on real Redis and FerretDB, in
its own database and key prefix: admin calls made with the token cannot leave
mode or knobs changed for any other test. Every generated request must get a
2xx/4xx JSON answer (never a 5xx), and every answer must match the OpenAPI
document: status code declared, content type, body schema.
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from gunicorn.http.message import RFC9110_5_5_INVALID_AND_DANGEROUS, TOKEN_RE
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import rig

AUTH = {"Authorization": f"Bearer {rig.TEST_TOKEN}"}

# Bounded on purpose: the coverage phase (boundaries, wrong types, unexpected
# methods) plus a dozen random cases per operation and mode keep the module near
# a minute on a shared 2-core machine; a fixed seed makes a failure reproducible.
MAX_EXAMPLES = 12
CONFIG = schemathesis.Config.from_dict({
    "seed": 20240607,
    "request-timeout": 15,
    # The valid token is added to every request below; a generated one would only
    # be a wrong token, and the 401 for those is tested in test_hostile_input.
    "generation": {"max-examples": MAX_EXAMPLES, "mode": "all", "database": "none", "no-shrink": True,
                   "with-security-parameters": False},
    "phases": {"stateful": {"enabled": False}},
    "checks": {
        # Rejecting a body is also a 413 or a 415 here (the body limit, JSON only).
        "negative_data_rejection": {"expected-statuses": [400, 401, 404, 405, 413, 415, 422]},
    },
})

# positive_data_acceptance is left out: a body can match the schema and still be
# refused for what no JSON schema can say (a Luhn check, an expiry in the past,
# a payment id that does not exist), and those refusals are the point.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def json_error_body(ctx: CheckContext, response, case) -> bool | None:
    """Every answer is JSON; every 4xx carries a string `error`."""
    if case.method.upper() == "OPTIONS" and response.status_code in (200, 204):
        # HTTP's own answer (Flask's): the allowed methods in a header, no body.
        assert "allow" in {k.lower() for k in response.headers}, f"OPTIONS {case.path}: no Allow header"
        return None
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"{case.method} {case.path}: {response.status_code} is not JSON") from None
    if 400 <= response.status_code < 500:
        assert isinstance(body, dict) and isinstance(body.get("error"), str), (
            f"{case.method} {case.path}: {response.status_code} without an `error`: {body!r}")
    return None


@pytest.fixture(scope="module")
def fuzz_app(own_app):
    """A gunicorn app of its own (2 workers) on the session's Redis and FerretDB."""
    return own_app("fuzz")


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_app):
    """The OpenAPI document as the running app serves it."""
    return schemathesis.openapi.from_url(fuzz_app.url + "/openapi.json", config=CONFIG)


schema = schemathesis.pytest.from_fixture("fuzz_schema")


def refused_by_http_parser(case) -> bool:
    """True when gunicorn refuses the request line or headers before the app sees them.

    Such a request breaks HTTP's grammar (a header name that is not a token, one
    with an underscore, which gunicorn drops as ambiguous, a CR/LF/NUL in a value):
    gunicorn answers its own plain 400, and the OpenAPI document cannot speak for it.
    """
    for name, value in (case.headers or {}).items():
        if not TOKEN_RE.fullmatch(name) or "_" in name:
            return True
        if RFC9110_5_5_INVALID_AND_DANGEROUS.search(str(value)):
            return True
    return False


@schema.parametrize()
# Real HTTP calls on a shared machine are slow: no per-case deadline, no health
# check on generation speed, no shrinking (a failure prints its curl line anyway).
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate], derandomize=True)
def test_every_operation_answers_json_and_matches_the_document(case, fuzz_app):
    try:
        if refused_by_http_parser(case):
            response = case.call(headers=AUTH)
            assert response.status_code == 400, response.text
            return
        checks = CHECKS
        if case.body is None or isinstance(case.body, NotSet):
            # A "negative" body that is absent, or JSON null (which goes out as no
            # body at all), is valid where the body is optional (POST /admin/reset).
            checks = [c for c in CHECKS if c is not negative_data_rejection]
        no_locust = case.path == "/admin/load"
        if no_locust:
            # This app has no Locust (LOCUST_URL unset): the documented answer there is a fast 503
            # locust_unavailable, checked below instead of by not_a_server_error.
            checks = [c for c in checks if c is not not_a_server_error]
        response = case.call_and_validate(headers=AUTH, checks=checks, additional_checks=[json_error_body])
        if no_locust and response.status_code >= 500:
            assert (response.status_code, response.json()["error"]) == (503, "locust_unavailable"), response.text
    finally:
        if case.path.startswith("/admin/") and case.method != "GET":
            # A fuzzed knob (a 2 s audit delay, a 50 ms OTP deadline) must not
            # slow down or distort the cases that follow.
            fuzz_app.reset()


def test_fuzzing_left_the_app_healthy(fuzz_app):
    """After all that, the app still serves a checkout."""
    ready = requests.get(fuzz_app.url + "/ready", timeout=5)
    assert ready.status_code == 200, ready.text
    mode = requests.get(fuzz_app.url + "/admin/db-mode", timeout=5).json()
    assert mode["mode"] == "original"
