"""The Grafana provisioning and dashboard: datasource uid, panels, and that every
expression (panels, annotation, alert rules) is valid PromQL naming only metrics
the running app really exports, and reads every replica as the room: a replica's
own series summed, a room-wide gauge taken once with max()."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

import rig
from rig.probe import scrape
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
