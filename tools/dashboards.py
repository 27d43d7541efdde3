"""Our dashboard and alert rule files as the tests read them: every query, with Grafana's variables expanded."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

DASHBOARDS = Path(__file__).resolve().parent.parent / "dashboards"
DASHBOARD_JSON = DASHBOARDS / "grafana" / "dashboards" / "paygate.json"
RULES = DASHBOARDS / "prometheus" / "rules" / "paygate.yml"
DATASOURCE_UID = "paygate-prometheus"
# Grafana's variables, as Grafana would expand them for a short dashboard range.
GRAFANA_VARIABLES = {"$__rate_interval": "15s", "$__interval": "15s", "$__range": "5m"}


def load_dashboard() -> dict:
    """The dashboard JSON as Grafana loads it."""
    return json.loads(DASHBOARD_JSON.read_text())


def substitute(expr: str) -> str:
    """An expression with Grafana's variables replaced, ready for Prometheus."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, expression) for every panel target and annotation of the dashboard."""
    dash = load_dashboard()
    out = [(f"panel {p['title']!r} {t['refId']}", t["expr"]) for p in dash["panels"] for t in p["targets"]]
    out += [(f"annotation {a['name']!r}", a["expr"]) for a in dash["annotations"]["list"]]
    return out


def alert_rules() -> list[dict]:
    """Every rule of our rule files."""
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
