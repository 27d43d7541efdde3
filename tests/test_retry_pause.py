"""The retrying shoppers' pauses (loadtest.checkout): at once, or exponential backoff with full jitter,
never before a loud answer's Retry-After; and the checkout loop sleeps them before each retry."""

from __future__ import annotations

import json
import random
import statistics

import pytest
import requests

from loadtest import checkout as shopper
from loadtest.checkout import BACKOFF_BASE_S, BACKOFF_CAP_S, MAX_RETRY_AFTER_S, retry_pause

pytestmark = pytest.mark.unit


def test_backoff_doubles_its_bound_up_to_the_cap_and_jitters_across_it():
    random.seed(7)
    for retry in range(6):
        bound = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** retry)
        pauses = [retry_pause(retry, backoff=True) for _ in range(2000)]
        assert all(0 <= p <= bound for p in pauses), retry
        # Full jitter: uniform over [0, bound], so the mean is half the bound and the spread covers it.
        assert abs(statistics.mean(pauses) - bound / 2) < 0.05 * bound, (retry, statistics.mean(pauses))
        assert min(pauses) < 0.05 * bound and max(pauses) > 0.95 * bound


def test_at_once_is_no_pause_and_retry_after_is_a_floor_up_to_a_bound():
    assert retry_pause(3, backoff=False) == 0.0
    assert retry_pause(0, backoff=False, retry_after=2.0) == 2.0
    assert all(retry_pause(0, backoff=True, retry_after=2.0) >= 2.0 for _ in range(200))
    assert retry_pause(0, backoff=False, retry_after=3600) == MAX_RETRY_AFTER_S


def _answer(status: int, body: dict, **headers) -> requests.Response:
    r = requests.Response()
    r.status_code, r._content = status, json.dumps(body).encode()
    r.headers.update(headers)
    return r


@pytest.mark.parametrize("backoff", [False, True])
def test_the_checkout_pauses_before_each_retry_and_gives_up_after_its_tries(monkeypatch, backoff):
    tries, pauses = [], []

    def unavailable(base_url, session=None, *, retry_of=None, **_):
        tries.append(retry_of)
        return _answer(200, {"status": "otp_unavailable", "payment_id": f"pay_{len(tries)}"})

    monkeypatch.setattr(shopper, "initiate", unavailable)
    monkeypatch.setattr(shopper.time, "sleep", pauses.append)
    outcome = shopper.checkout(requests.Session(), "http://unused", tries=4, backoff=backoff)
    assert outcome.result == "otp_unavailable" and outcome.retries == 3
    assert tries == [None, "pay_1", "pay_2", "pay_3"]  # each retry names the try that failed
    assert len(pauses) == 3
    if backoff:
        assert all(0 <= p <= min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** k) for k, p in enumerate(pauses)), pauses
    else:
        assert pauses == [0.0, 0.0, 0.0]


def test_the_checkout_waits_out_a_loud_answers_retry_after(monkeypatch):
    pauses = []
    answers = iter([_answer(503, {"error": "otp_unavailable", "payment_id": "pay_1"}, **{"Retry-After": "2"}),
                    _answer(503, {"error": "validation_error"})])
    monkeypatch.setattr(shopper, "initiate", lambda *a, **k: next(answers))
    monkeypatch.setattr(shopper.time, "sleep", pauses.append)
    outcome = shopper.checkout(requests.Session(), "http://unused", tries=3)
    assert pauses == [2.0] and outcome.result == "error"
