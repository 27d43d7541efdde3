"""Faults: how fast the kit fails, what a checkout sees meanwhile, how fast it comes back.

Redis and the MongoDB-wire server each stopped (connections refused) and hung
(SIGSTOP: connections open, no answer) while shoppers check out in
`original`, then brought back (restart / SIGCONT); and the audit drainer's
sweep of a backlog of 50,000 `audit-async` payments whose worker died.
"""

from __future__ import annotations

import contextlib
import threading
import time

import requests

import rig
from app.store import AuditDrainer
from app.store.mongo import connect as mongo_backend
from app.store.sqlite import SqliteBackend
from loadtest import traffic
from loadtest.checkout import card_payload
from rig import seed
from rig.probe import poll_until

from .report import percentile

SHOPPERS, THINK_S = 20, 0.5


@contextlib.contextmanager
def stack_on(store: str):
    """redis-server, the store ("sqlite" or FerretDB) and the app under gunicorn, each a handle."""
    work = rig.temp_dir("bench-faults")
    redis_svc = rig.redis_server(work / "redis").start()
    mongo_svc = rig.ferretdb(work / "ferretdb").start() if store == "mongodb" else None
    mongo_url = f"mongodb://127.0.0.1:{mongo_svc.port}/" if mongo_svc else None
    app = rig.gunicorn(work / "app", mongo_url, f"redis://127.0.0.1:{redis_svc.port}/0",
                       extra_env={"MONGO_DB": "faults", "PAYGATE_KEY_PREFIX": "faults:"}).start(timeout=60)
    try:
        yield rig.App(app), redis_svc, mongo_svc
    finally:
        app.stop()
        if mongo_svc:
            mongo_svc.stop()
        redis_svc.stop()


def _until(probe, timeout: float = 60.0) -> float | None:
    """Seconds until probe() is true (None after timeout)."""
    started = time.monotonic()
    return round(time.monotonic() - started, 2) if poll_until(probe, timeout) else None


def _ready(url: str) -> int:
    try:
        return requests.get(url + "/ready", timeout=5).status_code
    except requests.RequestException:
        return 0


@contextlib.contextmanager
def shoppers(url: str):
    """SHOPPERS shoppers checking out until the block ends; yields their tally."""
    tally, stop = traffic.Tally(), threading.Event()
    thread = threading.Thread(target=traffic.run, args=(url, SHOPPERS, 3600, THINK_S, tally, stop))
    thread.start()
    try:
        time.sleep(3)  # under way before the fault
        yield tally
    finally:
        stop.set()
        thread.join(30)


def _label(server: str, kind: str) -> str:
    return f"{server} {'hung (SIGSTOP)' if kind == 'hang' else 'stopped'}"


def redis_fault(kind: str, seconds: float = 8.0) -> dict:
    """Redis stopped or hung for `seconds` under shoppers in `original` (embedded store)."""
    with stack_on("sqlite") as (application, redis_svc, _), shoppers(application.url) as tally:
        with redis_svc.fault(kind):
            fault_at = time.monotonic()
            noticed = _until(lambda: _ready(application.url) == 503, timeout=seconds)
            time.sleep(max(0.0, seconds - (time.monotonic() - fault_at)))
            during = [o for o in tally.snapshot() if o.started >= fault_at]
        recovered = _until(lambda: _ready(application.url) == 200)
    ok = [o for o in during if o.ok]
    return {"fault": _label("Redis", kind), "noticed_s": noticed,
            "checkouts": len(during), "otp_success": len(ok) / len(during) if during else None,
            "p99_s": percentile([o.seconds for o in during], 99), "recovered_s": recovered}


def _initiate(url: str) -> requests.Response:
    return requests.post(url + "/payment/initiate", json=card_payload(), timeout=30)


def store_fault(kind: str, probes: int = 5) -> dict:
    """FerretDB stopped or hung under shoppers: seconds to a 503, then seconds to a checkout again."""
    with stack_on("mongodb") as (application, _, mongo_svc), shoppers(application.url):
        answers = []
        with mongo_svc.fault(kind):
            for _ in range(probes):
                started = time.monotonic()
                r = _initiate(application.url)
                answers.append((time.monotonic() - started, r.status_code, r.json().get("error")))
        recovered = _until(lambda: _initiate(application.url).json().get("status") == "awaiting_otp")
    waits = [t for t, _, _ in answers]
    return {"fault": _label("MongoDB (FerretDB)", kind), "answers": sorted({f"{c} {e}" for _, c, e in answers}),
            "median_s": round(percentile(waits, 50), 2), "max_s": round(max(waits), 2), "recovered_s": recovered}


def drainer_backlog(n: int = 50_000) -> list[dict]:
    """A sweep of n undrained `audit-async` payments (2n records) on each store: seconds and records/s."""
    out = []
    for store in ("sqlite", "mongodb"):
        work = rig.temp_dir("bench-drainer")
        mongo_svc = None
        if store == "sqlite":
            seed.seed_sqlite(work / "paygate.sqlite3", n, undrained=True)
            backend = SqliteBackend(work / "paygate.sqlite3")
        else:
            mongo_svc = rig.ferretdb(work / "ferretdb").start()
            url = f"mongodb://127.0.0.1:{mongo_svc.port}/"
            seed.seed_mongo(url, "drain", n, undrained=True)
            backend = mongo_backend(url, "drain", 5000)
        try:
            started = time.monotonic()
            copied = AuditDrainer(backend, lambda: 0, grace_s=0).sweep()
            seconds = time.monotonic() - started
        finally:
            backend.close()
            if mongo_svc:
                mongo_svc.stop()
        out.append({"store": "SQLite" if store == "sqlite" else "FerretDB on PostgreSQL", "payments": n,
                    "records": copied, "seconds": round(seconds, 1), "per_second": round(copied / seconds)})
    return out
