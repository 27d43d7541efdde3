"""An app as the traffic tools observe it from outside: its /metrics, and bursts of calls.

Nothing outside loadtest/ is needed (the tests' rig builds on these too).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import requests
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")


def scrape(url: str, token: str) -> dict[str, Metric]:
    """name -> metric family from one /metrics answer (prometheus_client's own parser), on a fresh connection.

    With the admin token the answer is rendered now; without it, it may be up to a second old (the app
    caches its rendering for scrapers), too old for a reading taken right after a burst. The parser
    names a counter's family without `_total`; its samples keep it.
    """
    headers = {"Connection": "close", "Authorization": f"Bearer {token}"}
    r = requests.get(url + "/metrics", timeout=10, headers=headers)
    r.raise_for_status()
    return {family.name: family for family in text_string_to_metric_families(r.text)}


def total(families: dict[str, Metric], name: str, sample: str | None = None, **labels: str) -> float:
    """Sum of the samples of `name` matching `labels`: a counter's `_total`, a gauge's value,
    or the sample named by `sample` (a histogram's `_count`, `_sum`)."""
    family_name = name.removesuffix("_total")
    family = families.get(family_name)
    if family is None:
        return 0.0
    wanted = sample or (family_name + "_total" if family.type == "counter" else family_name)
    return sum(s.value for s in family.samples
               if s.name == wanted and all(s.labels.get(k) == v for k, v in labels.items()))


def burst(fn: Callable[[int], T], n: int, warm: Callable[[int], object] | None = None) -> list[T]:
    """fn(0) … fn(n-1), each on its own thread, released at the same instant; results in order.

    `warm(i)` runs on thread i before the release (open a connection, say), so the
    burst is n calls arriving together, not n set-ups competing with them for the CPU.
    """
    barrier = threading.Barrier(n)

    def one(i: int) -> T:
        if warm is not None:
            warm(i)
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))
