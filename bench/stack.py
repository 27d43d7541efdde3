"""The services the benchmark runs against: real Redis, FerretDB and multi-worker gunicorn."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import rig

WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))


@contextlib.contextmanager
def backends():
    """redis-server and FerretDB on free loopback ports; yields (mongo_url, redis_url)."""
    redis_svc = rig.redis_server(rig.temp_dir("bench-redis")).start()
    mongo_svc = rig.ferretdb(rig.temp_dir("bench-ferretdb")).start()
    try:
        yield f"mongodb://127.0.0.1:{mongo_svc.port}/", f"redis://127.0.0.1:{redis_svc.port}/0"
    finally:
        mongo_svc.stop()
        redis_svc.stop()


@contextlib.contextmanager
def app(mongo_url: str, redis_url: str, name: str = "bench", wsgi: str | None = None, workers: int = WORKERS):
    """The app under gunicorn (`wsgi` overrides the app module); yields a rig.App."""
    svc = rig.gunicorn(rig.temp_dir(f"bench-{name}"), mongo_url, redis_url, workers=workers,
                       extra_env={"MONGO_DB": f"bench_{name}", "PAYGATE_KEY_PREFIX": f"bench-{name}:"})
    if wsgi:
        svc.argv.append(wsgi)  # gunicorn's positional app module wins over wsgi_app in the config
    svc.start()
    application = rig.App(svc)
    try:
        application.wait_ready(timeout=60)
        application.reset()
        yield application
    finally:
        svc.stop()


def worker_pids(application: rig.App) -> list[int]:
    """The pids of the gunicorn workers (children of the master)."""
    master = application.service.proc.pid
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Field 4 (after the parenthesised name, which may hold spaces) is the parent pid.
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(entry.name))
    return sorted(pids)


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process in MiB, None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) / 1024 if match else None
