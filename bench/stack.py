"""The services the benchmark runs against: real Redis, FerretDB or SQLite, and multi-worker gunicorn."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

import rig

from . import cpu

WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
STUB = "bench.stub:app"
FLOOR = "bench.floor:app"  # the stub plus the kit's store calls (bench/floor.py)
SETUPS = ("embedded", "services")


@dataclass
class Setup:
    """One way to run the kit's backends: their URLs, the database processes, the worker count."""

    name: str
    label: str
    mongo_url: str | None
    redis_url: str
    db_pids: list[int]
    workers: int


@contextlib.contextmanager
def setup(name: str):
    """Backends on free loopback ports; yields a Setup.

    "embedded" is `make up`'s default: a real redis-server and no MONGO_URL
    (payments in SQLite inside the app). "services" is redis-server and
    FerretDB on PostgreSQL.
    """
    if name not in SETUPS:
        raise ValueError(f"unknown set-up {name!r}; one of {SETUPS}")
    redis_svc = rig.redis_server(rig.temp_dir("bench-redis")).start()
    mongo_svc = None
    try:
        redis_url = f"redis://127.0.0.1:{redis_svc.port}/0"
        if name == "embedded":
            yield Setup(name, "SQLite + redis-server", None, redis_url, [redis_svc.proc.pid], WORKERS)
        else:
            mongo_svc = rig.ferretdb(rig.temp_dir("bench-ferretdb")).start()
            yield Setup(name, "FerretDB on PostgreSQL + redis-server", f"mongodb://127.0.0.1:{mongo_svc.port}/",
                        redis_url, [redis_svc.proc.pid, mongo_svc.proc.pid, rig.shared_postgres().proc.pid], WORKERS)
    finally:
        if mongo_svc:
            mongo_svc.stop()
        redis_svc.stop()


@contextlib.contextmanager
def backends():
    """redis-server and FerretDB on free loopback ports; yields (mongo_url, redis_url)."""
    with setup("services") as s:
        yield s.mongo_url, s.redis_url


@contextlib.contextmanager
def app(mongo_url: str | None, redis_url: str, name: str = "bench", wsgi: str | None = None, workers: int = WORKERS,
        extra_env: dict | None = None):
    """The app under gunicorn (`wsgi` overrides the app module, `extra_env` adds settings); yields a rig.App.

    mongo_url None: payments in SQLite, the file at application.sqlite_path.
    wsgi=STUB or FLOOR serves a stub (bench/stub.py, bench/floor.py), which has no admin API to reset.
    """
    db, prefix = f"bench_{name}", f"bench-{name}:"
    svc = rig.gunicorn(rig.temp_dir(f"bench-{name}"), mongo_url, redis_url, workers=workers,
                       extra_env={"MONGO_DB": db, "PAYGATE_KEY_PREFIX": prefix, **(extra_env or {})})
    if wsgi:
        svc.argv.append(wsgi)  # gunicorn's positional app module wins over wsgi_app in the config
    svc.start(timeout=60)
    application = rig.App(svc, db_name=db, prefix=prefix)
    try:
        if wsgi not in (STUB, FLOOR):
            application.reset()
        yield application
    finally:
        svc.stop()


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process in MiB, None if it is gone."""
    match = re.search(r"^VmRSS:\s+(\d+) kB", cpu.proc_text(pid, "status") or "", re.M)
    return int(match.group(1)) / 1024 if match else None
