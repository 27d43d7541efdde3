"""A Prometheus config for a local run (`make up`, the tests): our job and alert rules.

The compose stack uses dashboards/prometheus/prometheus.yml (every replica of
`app`, found by DNS; rules relative to it). A local Prometheus scrapes static
targets on 127.0.0.1 instead and may run from any directory, so this writes a
variant with the rule files by absolute path. JSON is valid YAML, so the
standard library writes it.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "dashboards" / "prometheus" / "rules"
JOB = "paygate"


def local_config(target: str | list[str], scrape_interval: str = "1s") -> dict:
    """The config as a dict: one scrape job for `target` (host:port, or a list of them: one instance
    each, as the compose stack's replicas), our rule files."""
    targets = [target] if isinstance(target, str) else list(target)
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(RULES_DIR / "*.yml")],
        "scrape_configs": [{
            "job_name": JOB,
            "metrics_path": "/metrics",
            "static_configs": [{"targets": targets}],
        }],
    }


def write_local_config(workdir: Path, target: str | list[str], scrape_interval: str = "1s") -> Path:
    """Write prometheus.yml for a local run into workdir and return its path."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "prometheus.yml"
    path.write_text(json.dumps(local_config(target, scrape_interval), indent=2) + "\n")
    return path
