"""Metric labels stay a closed set, whatever clients send.

Each label value is a new series in every worker's metrics file and in
Prometheus: a client inventing methods or paths must not grow them. The flood
runs against the app under real gunicorn (2 workers, real Redis + FerretDB).
"""

from __future__ import annotations

import random
import string
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from app.instrumentation import METHODS, method_label, status_label
from rig.probe import scrape

HTTP = "paygate_http_request_duration_seconds"
# Prefixes of real routes and none at all: the random tail never matches a rule.
PREFIXES = ("", "/admin", "/board", "/debug", "/no-such")
KNOWN_PATHS = ("/", "/health", "/admin", "/admin/knobs", "/board/data", "/payment/initiate")


@pytest.fixture(scope="module")
def labels_app(own_app):
    """An app of this module's own, so no other test adds series between two scrapes."""
    return own_app("labels")


def made_up_method(rng: random.Random) -> str:
    """An uppercase token gunicorn accepts (3-20 letters) that is no standard method."""
    while True:
        method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 12)))
        if method not in METHODS:
            return method


def made_up_path(rng: random.Random) -> str:
    """A path no route matches."""
    tail = "/".join(f"{rng.getrandbits(40):x}" for _ in range(rng.randint(1, 3)))
    return f"{rng.choice(PREFIXES)}/{tail}"


def hostile_requests(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """(method, path) pairs: made-up methods on made-up and real paths, real methods on made-up paths."""
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            out.append((made_up_method(rng), made_up_path(rng)))
        elif kind == 1:
            out.append((made_up_method(rng), rng.choice(KNOWN_PATHS)))
        else:
            out.append((rng.choice(sorted(METHODS)), made_up_path(rng)))
    return out


def send(url: str, batch: list[tuple[str, str]]) -> list[int]:
    """Each request on a fresh connection, so both workers take some."""
    def one(pair):
        method, path = pair
        return requests.request(method, url + path, timeout=10, headers={"Connection": "close"}).status_code

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, batch))


def http_series(url: str) -> list[dict]:
    """The label sets of the request-duration histogram (one per series, `le` left out)."""
    family = scrape(url)[HTTP]  # rendered now (with the admin token), not up to a second old
    return [s.labels for s in family.samples if s.name == HTTP + "_count"]


def test_made_up_methods_and_paths_add_no_series(labels_app):
    rng = random.Random(20240611)
    # A first round of each kind, and a first scrape: the series they add are the bound.
    warm_up = hostile_requests(rng, 60) + [(method, made_up_path(rng)) for method in sorted(METHODS)]
    assert set(send(labels_app.url, warm_up)) <= {404, 405}
    http_series(labels_app.url)
    before = http_series(labels_app.url)

    flood = hostile_requests(rng, 1000)
    codes = send(labels_app.url, flood)
    after = http_series(labels_app.url)

    assert set(codes) <= {404, 405}
    new = {tuple(sorted(s.items())) for s in after} - {tuple(sorted(s.items())) for s in before}
    assert len(after) == len(before), f"{len(new)} new series, e.g. {sorted(new)[:3]}"
    # Every label value is one of a closed set.
    assert {s["method"] for s in after} <= METHODS | {"other"}
    assert {s["route"] for s in after if s["route"] != "unmatched"} <= {s["route"] for s in before}

    # The flood was counted, not dropped: the made-up methods all went to "other".
    family = scrape(labels_app.url)[HTTP]
    other = sum(s.value for s in family.samples if s.name == HTTP + "_count" and s.labels["method"] == "other")
    made_up = sum(m not in METHODS for m, _ in warm_up + flood)
    assert other == made_up


@pytest.mark.parametrize(("method", "label"), [("GET", "GET"), ("HEAD", "HEAD"), ("OPTIONS", "OPTIONS"),
                                               ("DELETE", "DELETE"), ("BREW", "other"), ("PROPFIND", "other"),
                                               ("TRACE", "other"), ("CONNECT", "other"), ("get", "other")])
@pytest.mark.unit
def test_method_label_keeps_the_usual_seven(method, label):
    assert method_label(method) == label


@pytest.mark.parametrize(("status", "label"), [(200, "200"), (404, "404"), (418, "418"), (503, "503"),
                                               (299, "other"), (999, "other"), (0, "other"), (-1, "other")])
@pytest.mark.unit
def test_status_label_is_a_defined_http_status(status, label):
    assert status_label(status) == label
