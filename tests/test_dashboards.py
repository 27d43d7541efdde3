"""The Grafana provisioning and dashboard: datasource uid, panels, and that every
expression (panels, annotation, alert rules) is valid PromQL naming only metrics
the running app really exports, and reads every replica as the room: a replica's
own series summed, a room-wide gauge taken once with max(). The Zipkin datasource
sits beside Prometheus's, and the dashboard's trace links search a real Zipkin for
the failed and the slow checkouts."""

from __future__ import annotations

import os
import re
import subprocess
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml

import rig
from app.config import KNOB_DEFAULTS
from rig.probe import poll_until, scrape
from tools.dashboards import (
    DASHBOARDS,
    DATASOURCE_UID,
    alert_rules,
    dashboard_queries,
    load_dashboard,
    substitute,
)

# PromQL words that look like metric names but are not.
PROMQL_WORDS = {"sum", "max", "min", "avg", "count", "rate", "irate", "increase", "changes",
                "histogram_quantile", "by", "without", "on", "ignoring", "group_left", "group_right",
                "and", "or", "unless", "offset", "vector", "le", "bool"}
AGGREGATIONS = {"sum", "max", "min", "avg", "count"}
# Gauges each replica reports for the whole room, read from Redis (app/contention.py, app/runtime.py):
# summed over N replicas they would count N times. Every other metric is a replica's own: its
# workers' counters and buckets, and the audit queue each worker keeps (app/store/drainer.py).
ROOM_WIDE = {"paygate_inflight_writes", "paygate_db_mode"}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (label values and strings removed first)."""
    bare = re.sub(r'"[^"]*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}", "", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", bare)
    return {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare) if w not in PROMQL_WORDS}


def aggregation_of(expr: str, at: int) -> str | None:
    """The innermost aggregation (sum, max, ...) around position `at` of an expression, or None."""
    depth = 0
    for i in range(at - 1, -1, -1):
        if expr[i] == ")":
            depth += 1
        elif expr[i] == "(" and depth:
            depth -= 1
        elif expr[i] == "(":
            head = re.search(r"(\w+)\s*(?:(?:by|without)\s*\([^)]*\)\s*)?$", expr[:i])
            if head and head.group(1) in AGGREGATIONS:
                return head.group(1)
    return None


# -- the dashboard file --------------------------------------------------------


def test_dashboard_identity_and_every_datasource_is_the_provisioned_one():
    dash = load_dashboard()
    assert dash["uid"] == "paygate-otp-cascade"
    assert dash["title"] == "PayGate — OTP cascade"
    assert dash["panels"]
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            assert t["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, (panel["title"], t)
    annotations = dash["annotations"]["list"]
    assert annotations
    for a in annotations:
        assert a["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, a


def test_dashboard_has_the_panels_participants_need():
    dash = load_dashboard()
    by_title = {p["title"]: p for p in dash["panels"]}
    exprs = {title: " ".join(t["expr"] for t in p["targets"]) for title, p in by_title.items()}

    def panel_with(*needles):
        found = [t for t, e in exprs.items() if all(n in e for n in needles)]
        assert found, needles
        return [by_title[t] for t in found]

    assert any(p["options"].get("textMode") == "name" for p in panel_with("paygate_db_mode"))  # mode by name
    success = [p for p in panel_with('result="success"', "paygate_otp_generation_total")
               if p["fieldConfig"]["defaults"]["unit"] == "percentunit"]
    assert any({"color": "red", "value": 0.95} in p["fieldConfig"]["defaults"]["thresholds"]["steps"]
               and p["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"
               for p in success if p["type"] == "timeseries")
    ready = panel_with("histogram_quantile(0.5,", "histogram_quantile(0.95,", "histogram_quantile(0.99,",
                       "paygate_payment_ready_seconds_bucket")[0]
    assert {"color": "red", "value": 0.4} in ready["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert ready["fieldConfig"]["defaults"]["unit"] == "s"
    panel_with("paygate_inflight_writes")
    panel_with("paygate_http_request_duration_seconds_count", 'status=~"5.."')
    panel_with("paygate_otp_verification_total", "by (result)")
    panel_with("paygate_audit_records_total", "by (path)")
    panel_with("paygate_orphaned_intents_total")
    assert "paygate_db_mode" in dash["annotations"]["list"][0]["expr"]
    assert dash["refresh"] in ("5s", "10s")


def test_panels_fit_the_grid_without_overlapping():
    cells = {}
    for p in load_dashboard()["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]
    ids = [p["id"] for p in load_dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_provisioning_files():
    prov = DASHBOARDS / "grafana" / "provisioning"
    sources = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [(s["uid"], s["type"], s["url"]) for s in sources] == [
        (DATASOURCE_UID, "prometheus", "http://prometheus:9090")]
    providers = yaml.safe_load((prov / "dashboards" / "paygate.yml").read_text())["providers"]
    assert [p["options"]["path"] for p in providers] == ["/var/lib/grafana/dashboards"]
    assert all(p["type"] == "file" for p in providers)


def test_every_expression_is_valid_promql(tmp_path):
    # promtool parses each expression as a recording rule: a syntax error fails here,
    # before any Prometheus is started.
    rules = [{"record": f"paygate_check:expr{i}", "expr": substitute(expr)}
             for i, (_, expr) in enumerate(dashboard_queries())]
    path = tmp_path / "dashboard_exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run([rig.require("promtool"), "check", "rules", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(rules)} rules found" in out.stdout


def test_every_query_reads_the_replicas_as_one_room():
    """With `--scale app=N` each replica is an instance: the panels and alerts sum what each replica
    counts for itself and take a room-wide gauge once (max), so no figure changes with N."""
    queries = dashboard_queries() + [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    for where, expr in queries:
        for m in re.finditer(r"\bpaygate_[a-z_]+", expr):
            expected = "max" if m.group(0) in ROOM_WIDE else "sum"
            assert aggregation_of(expr, m.start()) == expected, f"{where}: {m.group(0)} is not under {expected}()"


def test_aggregation_of_finds_the_innermost_aggregation():
    expr = "histogram_quantile(0.95, sum by (mode, le) (rate(x[1m]))) > max(changes(y[1m])) and z"
    assert [aggregation_of(expr, expr.index(n)) for n in ("x[", "y[", " z")] == ["sum", "max", None]


def test_metric_name_extraction_sees_through_labels_and_functions():
    expr = 'histogram_quantile(0.95, sum by (mode, le) (rate(x_bucket{a="b, c"}[1m]))) > 0.4 or vector(0)'
    assert metric_names(expr) == {"x_bucket"}


# -- against the running app ----------------------------------------------------


@pytest.fixture
def exported(live, touch_every_metric):
    """Every sample name the live app (2 gunicorn workers) exports once each metric was touched."""
    touch_every_metric(live)
    return {s.name for family in scrape(live.url).values() for s in family.samples}


def test_every_expression_names_only_metrics_the_app_exports(exported):
    queries = dashboard_queries() + [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    for where, expr in queries:
        names = metric_names(substitute(expr))
        assert names, f"{where} reads no metric"
        missing = names - exported
        assert not missing, f"{where} reads {missing}, which the app does not export"


# -- traces: the Zipkin datasource and the dashboard's links to Zipkin's searches -----------------

ZIPKIN_UID = "paygate-zipkin"
# Grafana's datasource provisioning fields (apiVersion 1) that these files may use.
DATASOURCE_FIELDS = {"name", "uid", "type", "access", "url", "isDefault", "editable", "jsonData", "orgId"}
# Grafana's variables in link URLs: the dashboard's time range, in epoch milliseconds.
TIME_RANGE = ("${__from}", "${__to}")


def provisioned_datasources() -> list[dict]:
    """Every datasource of the provisioning directory, in file order."""
    folder = DASHBOARDS / "grafana" / "provisioning" / "datasources"
    sources = []
    for path in sorted(folder.glob("*.y*ml")):
        doc = yaml.safe_load(path.read_text())
        assert doc["apiVersion"] == 1 and set(doc) == {"apiVersion", "datasources"}, path.name
        sources += doc["datasources"]
    return sources


def test_zipkin_datasource_is_provisioned_beside_prometheus():
    sources = provisioned_datasources()
    assert [(s["uid"], s["type"], s["url"]) for s in sources] == [
        (DATASOURCE_UID, "prometheus", "http://prometheus:9090"), (ZIPKIN_UID, "zipkin", "http://zipkin:9411")]
    for source in sources:
        assert set(source) <= DATASOURCE_FIELDS, set(source) - DATASOURCE_FIELDS
        assert source["access"] == "proxy" and source["editable"] is False, source["name"]
    assert [s["uid"] for s in sources if s.get("isDefault")] == [DATASOURCE_UID], "one default: Prometheus"
    assert len({s["name"] for s in sources}) == len(sources)


def trace_links() -> dict[str, list[str]]:
    """Where each trace link is (the dashboard's own, or a panel's title) -> its URLs."""
    dash = load_dashboard()
    links = {"dashboard": [link["url"] for link in dash["links"]]}
    for panel in dash["panels"]:
        if panel.get("links"):
            links[panel["title"]] = [link["url"] for link in panel["links"]]
    return links


def ui_search(url: str) -> dict[str, str]:
    """A trace link's Zipkin UI search, with the trace UI variable checked and stripped."""
    assert url.startswith("${traces_ui}?"), url
    query = parse_qs(url.split("?", 1)[1], strict_parsing=True)
    assert all(len(values) == 1 for values in query.values()), url
    return {name: values[0] for name, values in query.items()}


FAILED = {"serviceName": "paygate", "annotationQuery": "paygate.status=otp_unavailable"}
SLOW = {"serviceName": "paygate", "minDuration": str(KNOB_DEFAULTS["otp_timeout_ms"] * 1000)}  # microseconds


def published_zipkin_port() -> int:
    """The host port docker-compose.yml publishes Zipkin's UI on."""
    [mapping] = yaml.safe_load((rig.ROOT / "docker-compose.yml").read_text())["services"]["zipkin"]["ports"]
    host, container = mapping.split(":")
    assert container == "9411"
    return int(host)


def test_trace_links_search_zipkin_for_the_failed_and_the_slow_checkouts():
    """The dashboard and the OTP-success and ready-time panels link to Zipkin's UI: the checkouts that got no
    OTP, and those slower than the deadline (Zipkin's minDuration is in microseconds), over the dashboard's
    time range."""
    links = trace_links()
    searches = {where: [ui_search(url) for url in urls] for where, urls in links.items()}
    for where, found in searches.items():
        for search in found:
            assert (search["lookback"], search["startTs"], search["endTs"]) == ("range", *TIME_RANGE), where
            assert int(search["limit"]) >= 10
    wanted = [FAILED, SLOW]

    def kinds(found):
        return [{k: v for k, v in s.items() if k in ("serviceName", "annotationQuery", "minDuration")} for s in found]

    assert kinds(searches.pop("dashboard")) == wanted
    assert {title: kinds(found) for title, found in searches.items()} == {
        "OTP success (last 1 m)": [FAILED], "OTP success rate": [FAILED],
        "Ready time p95 (last 1 m)": [SLOW], "Ready time p50 / p95 / p99": [SLOW]}
    # ${traces_ui}: a hidden variable whose default is the Zipkin UI that compose and `make up` publish.
    [variable] = [v for v in load_dashboard()["templating"]["list"] if v["name"] == "traces_ui"]
    default = urlsplit(variable["query"])
    assert variable["type"] == "textbox" and variable["hide"] == 2 and variable["current"]["value"] == variable["query"]
    assert (default.hostname, default.port, default.path) == ("localhost", published_zipkin_port(), "/zipkin/")


def api_query(search: dict[str, str], start_ms: int, end_ms: int) -> dict[str, str]:
    """The /api/v2/traces query Zipkin's UI (Lens 3.6) sends for a search in its URL, over a time range:
    the criteria as they are, a `range` lookback as end - start."""
    query = {k: v for k, v in search.items() if k in ("serviceName", "annotationQuery", "minDuration", "limit")}
    return {**query, "endTs": str(end_ms), "lookback": str(end_ms - start_ms)}


def test_trace_links_find_the_failed_and_the_slow_checkouts_in_zipkin(zipkin):
    """Against the real Zipkin: one checkout that got no OTP in time (slow and failed), one slow that got it,
    one quick; each link's search finds exactly the ones it promises."""
    now_us = int(time.time() * 1e6)
    deadline_us = KNOB_DEFAULTS["otp_timeout_ms"] * 1000
    traces = {"failed": ("otp_unavailable", deadline_us + 20_000), "slow": ("awaiting_otp", deadline_us + 5_000),
              "quick": ("awaiting_otp", 15_000)}
    ids = {kind: os.urandom(16).hex() for kind in traces}
    spans = [{"traceId": ids[kind], "id": os.urandom(8).hex(), "name": "post /payment/initiate", "kind": "SERVER",
              "timestamp": now_us - 2_000_000, "duration": duration, "localEndpoint": {"serviceName": "paygate"},
              "tags": {"paygate.status": status, "http.route": "/payment/initiate"}}
             for kind, (status, duration) in traces.items()]
    assert requests.post(zipkin.spans_endpoint, json=spans, timeout=10).status_code == 202
    end_ms = int(time.time() * 1000) + 1000
    start_ms = end_ms - 15 * 60 * 1000

    def found(search: dict[str, str]) -> set[str]:
        r = requests.get(f"{zipkin.url}/api/v2/traces", params=api_query(search, start_ms, end_ms), timeout=10)
        r.raise_for_status()
        ours = {trace[0]["traceId"] for trace in r.json()} & set(ids.values())
        return {kind for kind, trace_id in ids.items() if trace_id in ours}

    links = [ui_search(url) for url in trace_links()["dashboard"]]
    assert poll_until(lambda: found(links[0]) == {"failed"}, timeout=10), found(links[0])
    assert found(links[1]) == {"failed", "slow"}, "slower than the deadline, whatever the outcome"


@pytest.mark.browser
def test_zipkins_ui_opened_by_the_trace_links_lists_the_failed_and_the_slow_checkouts(zipkin, tmp_path):
    """Each dashboard link, as Grafana expands it, opened in Chromium: Zipkin's UI (Lens) runs the search
    from the URL and lists the traces it promises, each with its link to the whole trace."""
    from playwright.sync_api import sync_playwright

    deadline_us = KNOB_DEFAULTS["otp_timeout_ms"] * 1000
    kinds = {"failed": ("otp_unavailable", deadline_us + 30_000), "quick": ("awaiting_otp", 20_000)}
    ids = {kind: os.urandom(16).hex() for kind in kinds}
    now_us = int(time.time() * 1e6)
    spans = [{"traceId": ids[kind], "id": os.urandom(8).hex(), "name": "post /payment/initiate", "kind": "SERVER",
              "timestamp": now_us - 3_000_000, "duration": duration, "localEndpoint": {"serviceName": "paygate"},
              "tags": {"paygate.status": status}} for kind, (status, duration) in kinds.items()]
    assert requests.post(zipkin.spans_endpoint, json=spans, timeout=10).status_code == 202
    assert poll_until(lambda: requests.get(f"{zipkin.url}/api/v2/trace/{ids['failed']}", timeout=5).ok, timeout=10)
    end_ms = int(time.time() * 1000) + 1000
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=rig.require("/usr/bin/chromium"), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = chromium.new_page(viewport={"width": 1280, "height": 720})
            for i, url in enumerate(trace_links()["dashboard"]):
                page.goto(url.replace("${traces_ui}", zipkin.ui_url).replace("${__from}", str(end_ms - 900_000))
                          .replace("${__to}", str(end_ms)))
                page.locator(f"a[href*='{ids['failed']}']").first.wait_for(timeout=30_000)
                assert page.locator(f"a[href*='{ids['quick']}']").count() == 0, url
                page.screenshot(path=tmp_path / f"trace-link-{i}.png")
        finally:
            chromium.close()
