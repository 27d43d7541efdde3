"""`make up` as the facilitator meets it across a session: one admin token that survives restarts,
one banner, the console's load phases, and every Prometheus URL the guide and the banners give."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
import requests

import rig
from loadtest import plan as plans
from rig.probe import poll_until

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

ROOT = rig.ROOT
BANNER = "PayGate Chaos Kit is starting:"
# Paths that answer on both Prometheus servers the kit runs: Debian's 2.42 (make up; it serves only the
# classic UI, under /classic/, and redirects / and /graph there) and compose's prom/prometheus:v2.55.1
# (the React UI: its web/web.go routes /graph, /alerts, /targets, ...; no /classic/ pages). /alerts and
# /targets answer 404 on the first, so the guide shows alerts and targets as /graph queries instead.
BOTH_PROMETHEUS_PATHS = {"/", "/graph", "/-/ready", "/-/healthy"}
BOTH_PROMETHEUS_PREFIXES = ("/api/v1/",)
PROMETHEUS_URL = re.compile(r"https?://(?:localhost|127\.0\.0\.1):9090[^\s`'\"<>)|]*")
# localhost: the facilitator's browser (compose's health checks ask 127.0.0.1 inside the container).
GRAFANA_URL = re.compile(r"https?://localhost:3000[^\s`'\"<>)|]*")
# Where a facilitator reads URLs: the guide, the front page and the reference beside it, compose's header,
# the chart's notes.
DOCUMENTS = ("workshop.md", "README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")),
             "docker-compose.yml", "deploy/helm/paygate/templates/NOTES.txt")


def banners(log: str) -> list[str]:
    """Each `make up` banner in the log, from its first line to "Ctrl-C stops everything."."""
    return re.findall(re.escape(BANNER) + r".*?Ctrl-C stops everything\.", log, re.S)


def has_token(kit: rig.Up, token: str) -> int:
    return requests.get(kit.url + "/admin/token", headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code


def test_make_up_keeps_its_token_across_restarts_and_admin_token_overrides_it(tmp_path):
    kept = tmp_path / "admin-token"
    with rig.make_up(tmp_path, None) as kit:
        token = kit.token
        assert len(token) >= 20 and stat.S_IMODE(kept.stat().st_mode) == 0o600
        assert has_token(kit, token) == 200 and has_token(kit, token + "x") == 401
        [banner] = banners(kit.log)
        assert f"admin token         {token}  (new, kept in {kept}" in banner
        # One banner: gunicorn, handed the token, prints none of its own that could disagree.
        assert kit.log.count("admin token") == 1, kit.log
        printed = subprocess.run([sys.executable, "tools/up.py", "--token"], cwd=ROOT, capture_output=True, text=True,
                                 env={k: v for k, v in {**os.environ, "PAYGATE_ADMIN_TOKEN_FILE": str(kept)}.items()
                                      if k != "ADMIN_TOKEN"}, timeout=60)
        assert printed.returncode == 0 and printed.stdout.strip() == token, printed

    with rig.make_up(tmp_path, None) as kit:
        assert kit.token == token and has_token(kit, token) == 200, "the restart keeps the token"
        assert f"admin token         {token}  (kept in {kept})" in banners(kit.log)[-1]

    with rig.make_up(tmp_path, "chosen-by-the-facilitator") as kit:
        assert has_token(kit, "chosen-by-the-facilitator") == 200 and has_token(kit, token) == 401
        assert "admin token         (as set in ADMIN_TOKEN)" in banners(kit.log)[-1]
    assert kept.read_text().strip() == token, "ADMIN_TOKEN overrides the kept token without replacing it"
    assert len(banners(kit.log)) == 3 and "PayGate is up" not in kit.log


def documented_urls(pattern: re.Pattern) -> dict[str, list[str]]:
    """URL → the documents that give it."""
    found: dict[str, list[str]] = {}
    for name in DOCUMENTS:
        for url in pattern.findall((ROOT / name).read_text()):
            found.setdefault(url.rstrip(".,;:"), []).append(name)
    return found


def test_every_prometheus_url_given_is_one_both_prometheus_servers_answer():
    urls = documented_urls(PROMETHEUS_URL)
    assert any("/graph?" in u for u in urls), "the guide shows alerts and targets as /graph queries"
    for url, where in urls.items():
        path = urlsplit(url).path or "/"
        assert path in BOTH_PROMETHEUS_PATHS or path.startswith(BOTH_PROMETHEUS_PREFIXES), \
            f"{url} ({', '.join(where)}): not served by both Debian's Prometheus 2.42 and compose's 2.55.1"
    # Grafana runs in compose and the chart only; its home page is the PayGate dashboard.
    assert set(documented_urls(GRAFANA_URL)) == {"http://localhost:3000/"}


def test_every_prometheus_url_and_the_load_phases_answer_on_make_up(tmp_path):
    rig.require("prometheus")
    with rig.make_up(tmp_path, "links-token") as kit:
        prometheus = f"http://127.0.0.1:{kit.ports['PROMETHEUS_PORT']}"
        [banner] = banners(kit.log)
        given = set(re.findall(re.escape(prometheus) + r"[^\s]*", banner))
        given |= {re.sub(r"^https?://(?:localhost|127\.0\.0\.1):9090", prometheus, u) for u in documented_urls(PROMETHEUS_URL)}
        assert f"{prometheus}/" in given
        for url in sorted(given):
            # /api/v1/query needs a query (the guide's curl sends one as a form field).
            params = {"query": "up"} if urlsplit(url).path == "/api/v1/query" and "query=" not in url else None
            r = requests.get(url, params=params, timeout=10)  # redirects followed, as a browser does
            assert r.status_code == 200, f"{url} answered {r.status_code} on make up's Prometheus"
        # The guide's alert and target views: the queries Prometheus runs for them work here.
        for query in ("ALERTS", "up"):
            answer = requests.get(prometheus + "/api/v1/query", params={"query": query}, timeout=10).json()
            assert answer["status"] == "success", answer

        # The console's load phases drive make up's Locust.
        locust = f"http://127.0.0.1:{kit.ports['LOCUST_PORT']}"
        r = kit.admin("PUT", "/admin/load", json={"phase": "healthy"})
        assert r.status_code == 200, r.text
        healthy = plans.load().healthy_users
        assert poll_until(lambda: requests.get(locust + "/stats/requests", timeout=5).json()["user_count"] == healthy,
                          timeout=20)
        assert kit.admin("PUT", "/admin/load", json={"phase": "stop"}).json()["phase"] == "stop"
