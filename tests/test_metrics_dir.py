"""The metrics directory of gunicorn (PROMETHEUS_MULTIPROC_DIR), under real gunicorn.

gunicorn empties it at start, so values of a previous run are not summed in.
It must never empty a directory that is not its own: one holding anything but
prometheus_client's files is refused and left as it is. Unset, each kit gets a
fresh directory, so two kits on one machine never share (or wipe) each other's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import requests

import rig

OLD_METRIC_FILES = ("counter_9999999.db", "gauge_livemostrecent_9999998.db", "histogram_9999997.db")


def kit(mongo_url: str, redis_url: str, metrics_dir: str) -> rig.Service:
    """gunicorn with one worker and the given PROMETHEUS_MULTIPROC_DIR ("" for unset), not started."""
    return rig.gunicorn(rig.temp_dir("metricsdir"), mongo_url, redis_url, workers=1,
                        extra_env={"PROMETHEUS_MULTIPROC_DIR": metrics_dir})


@pytest.mark.parametrize("foreign", ["thesis.tex", "counter_1.db.bak", "prometheus.db", "subdir"])
def test_a_directory_holding_anything_else_is_refused_and_left_alone(mongo_url, redis_url, tmp_path, foreign):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / OLD_METRIC_FILES[0]).write_bytes(b"old")
    if foreign == "subdir":
        (metrics / foreign).mkdir()
        (metrics / foreign / "notes.txt").write_text("mine")
    else:
        (metrics / foreign).write_text("mine")
    svc = kit(mongo_url, redis_url, str(metrics))
    try:
        with pytest.raises(RuntimeError) as refused:
            svc.start(timeout=20)
    finally:
        svc.stop()
    assert "refusing to empty it" in str(refused.value) and foreign in str(refused.value)
    assert sorted(p.name for p in metrics.iterdir()) == sorted([OLD_METRIC_FILES[0], foreign])


def test_old_metric_files_are_removed_at_start(mongo_url, redis_url, tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    for name in OLD_METRIC_FILES:
        # Not even a valid file: kept, it would break every /metrics answer.
        (metrics / name).write_bytes(b"\xff" * 64)
    app = rig.App(kit(mongo_url, redis_url, str(metrics)).start())
    try:
        app.wait_ready()
        assert requests.get(app.url + "/metrics", timeout=10).status_code == 200
        left = {p.name for p in metrics.iterdir()}
        assert left and not left & set(OLD_METRIC_FILES), left
    finally:
        app.service.stop()


def metrics_dirs_in_use(url: str) -> set[Path]:
    """The directories of the metric files the worker that answers has mapped."""
    pid = requests.get(url + "/health", timeout=10).headers["X-Worker-Pid"]
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {Path(line.split(maxsplit=5)[5]).parent for line in maps if line.rstrip().endswith(".db")}


def test_unset_each_kit_gets_a_fresh_directory_removed_at_exit(mongo_url, redis_url):
    apps = [rig.App(kit(mongo_url, redis_url, "").start()) for _ in range(2)]
    try:
        for app in apps:
            app.wait_ready()
        first, second = (metrics_dirs_in_use(app.url) for app in apps)
        assert len(first) == len(second) == 1 and first != second
        dirs = [first.pop(), second.pop()]
        for path in dirs:
            assert path.parent == Path(tempfile.gettempdir()) and path.name.startswith("paygate-metrics-")
    finally:
        for app in apps:
            app.service.stop()
    assert not any(path.exists() for path in dirs)
