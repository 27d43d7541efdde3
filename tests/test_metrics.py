"""Prometheus metrics under real gunicorn (2 workers, multiprocess mode, real Redis + FerretDB).

Each test reads /metrics before and after what it does and checks the
difference, parsed with prometheus_client's own parser (rig.probe.scrape).
"""

from __future__ import annotations

import os
import signal

import pytest
import requests

from loadtest.checkout import initiate, verify
from rig.probe import parallel, poll_until, scrape, total, until_every_worker, worker_pids, writes_done

# The metric names of docs/contract.md (Metrics).
CONTRACT_METRICS = {
    "paygate_http_request_duration_seconds": ("histogram", {"route", "method", "status"}),
    "paygate_payment_ready_seconds": ("histogram", {"mode"}),
    "paygate_otp_generation_total": ("counter", {"mode", "result"}),
    "paygate_otp_verification_total": ("counter", {"result"}),
    "paygate_inflight_writes": ("gauge", set()),
    "paygate_db_mode": ("gauge", {"mode"}),
    "paygate_db_mode_changes_total": ("counter", {"to"}),
    "paygate_audit_records_total": ("counter", {"path"}),
    "paygate_orphaned_intents_total": ("counter", {"mode"}),
}


@pytest.fixture
def app(own_app):
    """The module's gunicorn app (2 workers, a fresh metrics directory), back to mode original with default
    knobs around each test."""
    application = own_app("metrics")
    application.metrics_dir = application.service.workdir / "metrics"
    application.reset()
    yield application
    application.reset()


def test_otp_generation_total_is_exactly_the_number_of_initiates_across_workers(app):
    before = scrape(app.url)
    responses = until_every_worker(lambda: initiate(app.url), least=40)
    n = len(responses)
    assert all(r.status_code == 200 for r in responses)
    pids = {r.headers.get("X-Worker-Pid") for r in responses}
    after = scrape(app.url)

    # Both workers answered, and each wrote its own counters file: /metrics aggregates them.
    assert len(pids) >= 2, pids
    assert len(list(app.metrics_dir.glob("counter_*.db"))) >= 2
    assert total(after, "paygate_otp_generation_total") - total(before, "paygate_otp_generation_total") == n
    success = sum(r.json()["status"] == "awaiting_otp" for r in responses)
    assert (total(after, "paygate_otp_generation_total", result="success")
            - total(before, "paygate_otp_generation_total", result="success")) == success
    # Every write is timed once.
    assert (total(after, "paygate_payment_ready_seconds", sample="paygate_payment_ready_seconds_count")
            - total(before, "paygate_payment_ready_seconds", sample="paygate_payment_ready_seconds_count")) == n


def test_every_contract_metric_is_exported_with_its_type_and_labels(app, touch_every_metric):
    body = touch_every_metric(app)
    families = scrape(app.url)
    for name, (kind, labels) in CONTRACT_METRICS.items():
        family = families.get(name.removesuffix("_total"))  # the parser names counters without _total
        assert family is not None, f"{name} not exported"
        assert family.type == kind, (name, family.type)
        for s in family.samples:
            assert set(s.labels) - {"le"} == labels, (name, s.labels)
    assert body["status"] == "otp_unavailable"


def test_histograms_have_a_bucket_at_exactly_the_400_ms_deadline(app):
    initiate(app.url)
    families = scrape(app.url)
    for name in ("paygate_http_request_duration_seconds", "paygate_payment_ready_seconds"):
        bounds = {float(s.labels["le"]) for s in families[name].samples if s.name.endswith("_bucket")}
        assert 0.4 in bounds, (name, sorted(bounds))


def test_http_requests_are_labelled_by_route_template_never_by_id(app):
    body = initiate(app.url).json()
    requests.get(f"{app.url}/payment/{body['payment_id']}", timeout=10)
    requests.get(f"{app.url}/no/such/route", timeout=10)
    families = scrape(app.url)
    routes = {s.labels["route"] for s in families["paygate_http_request_duration_seconds"].samples}
    assert "/payment/<payment_id>" in routes and "/payment/initiate" in routes and "unmatched" in routes
    assert not any(body["payment_id"] in r for r in routes)
    assert total(families, "paygate_http_request_duration_seconds",
                 sample="paygate_http_request_duration_seconds_count", route="unmatched", status="404") >= 1


def test_verification_outcomes_are_counted_by_result(app):
    before = scrape(app.url)
    ok = initiate(app.url).json()
    assert verify(app.url, ok["payment_id"], ok["otp"]).status_code == 200
    wrong = initiate(app.url).json()
    bad_otp = "000000" if wrong["otp"] != "000000" else "111111"
    codes = [verify(app.url, wrong["payment_id"], bad_otp).status_code for _ in range(4)]
    assert verify(app.url, "pay_" + "f" * 24, "123456").status_code == 404
    assert codes == [400, 400, 423, 423]
    after = scrape(app.url)

    def delta(result):
        return (total(after, "paygate_otp_verification_total", result=result)
                - total(before, "paygate_otp_verification_total", result=result))

    assert (delta("success"), delta("invalid"), delta("locked"), delta("not_found")) == (1, 2, 2, 1)


def test_db_mode_gauge_names_exactly_one_mode_whichever_worker_is_scraped(app):
    # Both workers serve scrapes before and after the flip; each keeps its own gauge
    # file, so a stale worker's value must not survive aggregation.
    def scrapes(k=12):
        return parallel(lambda _: scrape(app.url), k, threads=4)

    def ones(families):
        return {s.labels["mode"] for s in families["paygate_db_mode"].samples if s.value == 1}

    assert all(ones(f) == {"original"} for f in scrapes())
    before = scrape(app.url)
    app.set_mode("audit")
    results = scrapes()
    assert all(ones(f) == {"audit"} for f in results), [ones(f) for f in results]
    assert (total(results[-1], "paygate_db_mode_changes_total", to="audit")
            - total(before, "paygate_db_mode_changes_total", to="audit")) == 1


def test_audit_orphans_and_inflight(app):
    before = scrape(app.url)
    # audit at a 50 ms deadline: the write (4w + 2a ≈ 260 ms) cannot make it.
    app.patch_knobs(otp_timeout_ms=50)
    app.set_mode("audit")
    done = writes_done(app.url, "audit")
    r = initiate(app.url)
    assert r.json()["status"] == "otp_unavailable"
    assert poll_until(lambda: writes_done(app.url, "audit") > done)  # the write runs on after the deadline
    app.set_mode("audit-async")
    app.patch_knobs(otp_timeout_ms=400)
    assert initiate(app.url).json()["status"] == "awaiting_otp"

    def delta(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    def drained():  # the outbox drainer moves the async records within a second or so
        nonlocal after
        after = scrape(app.url)
        return delta("paygate_audit_records_total", path="async") >= 2

    after = {}
    poll_until(drained, timeout=10, every=0.2)
    assert delta("paygate_otp_generation_total", mode="audit", result="timeout") == 1
    assert delta("paygate_orphaned_intents_total", mode="audit") == 1
    assert delta("paygate_audit_records_total", path="sync") == 2
    assert delta("paygate_audit_records_total", path="async") == 2
    assert delta("paygate_otp_generation_total", mode="audit-async", result="success") == 1
    assert total(after, "paygate_inflight_writes") == 0


def test_a_killed_worker_keeps_its_counts_and_drops_its_live_gauges(app):
    before = scrape(app.url)
    parallel(lambda _: scrape(app.url), 12, threads=4)  # both workers write their gauge files
    victim = app.workers()[0]
    assert list(app.metrics_dir.glob(f"gauge_livemostrecent_{victim}.db"))
    os.kill(victim, signal.SIGKILL)
    # gunicorn replaces the worker; its child_exit hook marks the dead one
    assert poll_until(lambda: str(victim) not in worker_pids(app.url) and len(worker_pids(app.url)) == 2, timeout=20)
    assert not list(app.metrics_dir.glob(f"gauge_livemostrecent_{victim}.db"))
    after = scrape(app.url)
    # counters survive their worker (the dead worker's payments still happened)
    assert total(after, "paygate_otp_generation_total") == total(before, "paygate_otp_generation_total")
    assert {s.labels["mode"] for s in after["paygate_db_mode"].samples if s.value == 1} == {"original"}
