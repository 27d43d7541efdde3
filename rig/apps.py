"""The app on real services: under gunicorn (several workers), and as `make up` runs it."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .client import AdminClient
from .probe import wait_answering
from .services import ROOT, Service, answers_http, free_port, temp_dir, unique

__all__ = ["App", "TEST_SECRET", "TEST_TOKEN", "Up", "app_config", "gunicorn", "launch_up", "make_up", "start_app",
           "stop_up"]

TEST_TOKEN = "test-admin-token"
TEST_SECRET = "test-secret-key"


def gunicorn(workdir: Path, mongo_url: str | None, redis_url: str, workers: int = 2, port: int | None = None,
             extra_env: dict | None = None) -> Service:
    """The app under real gunicorn (gthread), as `make up` and compose run it; ready when /ready answers 200
    (its store and Redis both answer).

    Without `mongo_url` the app keeps its payments in a SQLite file in `workdir` (the embedded default).
    Tracing is on only with an OTEL_EXPORTER_ZIPKIN_ENDPOINT (or TRACING) in `extra_env`.
    """
    port = port or free_port()
    store = {"MONGO_URL": mongo_url} if mongo_url else {"MONGO_URL": "", "PAYGATE_SQLITE_PATH": str(workdir / "paygate.sqlite3")}
    # Tracing costs CPU on every request (bench/RESULTS.md, section h): an app traces when it has a Zipkin
    # to export to (the tests of traces give it theirs) or is told to, so the timing tests of the modes
    # measure the modes, on two cores that four test processes share.
    tracing = "on" if (extra_env or {}).get("OTEL_EXPORTER_ZIPKIN_ENDPOINT") else "off"
    env = {
        **store,
        "TRACING": tracing,
        "REDIS_URL": redis_url,
        "ADMIN_TOKEN": TEST_TOKEN,
        "PAYGATE_SECRET_KEY": TEST_SECRET,
        "WEB_CONCURRENCY": str(workers),
        "BIND": f"127.0.0.1:{port}",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
        "PYTHONPATH": str(ROOT),
        **(extra_env or {}),
    }
    argv = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--chdir", str(ROOT)]
    return Service("gunicorn", argv, port, workdir, answers_http("/ready"), env=env)


@dataclass
class App(AdminClient):
    """A running app: its base URL, the handle of its gunicorn, and the admin calls (rig.client)."""

    service: Service
    token: str = TEST_TOKEN
    db_name: str = ""
    prefix: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.port}"

    @property
    def sqlite_path(self) -> Path | None:
        """The app's SQLite file, when it runs on the embedded store."""
        path = self.service.env.get("PAYGATE_SQLITE_PATH")
        return Path(path) if path else None

    def workers(self) -> list[int]:
        """The pids of its gunicorn workers: the children of the master process."""
        master = self.service.proc.pid
        return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def start_app(name: str, mongo_url: str | None, redis_url: str, workers: int = 2,
              extra_env: dict | None = None) -> App:
    """The app under gunicorn with a database and key prefix of its own, ready to serve (/ready answers 200)."""
    db, prefix = f"{name}_{os.urandom(5).hex()}", f"{name}:{os.urandom(5).hex()}:"
    svc = gunicorn(temp_dir(name), mongo_url, redis_url, workers=workers,
                   extra_env={"MONGO_DB": db, "PAYGATE_KEY_PREFIX": prefix, **(extra_env or {})}).start()
    return App(svc, db_name=db, prefix=prefix)


def app_config(**overrides) -> dict:
    """create_app settings for an in-process test app: the test secrets, a database and key prefix of its own."""
    return {"mongo_db": unique("t_"), "key_prefix": unique("t:") + ":", "admin_token": TEST_TOKEN,
            "secret_key": TEST_SECRET, **overrides}


class Up(AdminClient):
    """A running `make up` (tools/up.py): its ports, log and process, and the admin calls."""

    def __init__(self, ports: dict, workdir: Path, proc: subprocess.Popen, token: str):
        super().__init__(f"http://127.0.0.1:{ports['PORT']}", token)
        self.ports, self.workdir, self.proc = ports, workdir, proc

    @property
    def log(self) -> str:
        """What up.py and its children wrote so far."""
        return (self.workdir / "up.log").read_text(errors="replace")

    @property
    def app_port(self) -> int:
        """The port gunicorn itself listens on: behind HAProxy (the banner names it), else PORT."""
        found = re.search(r"the app itself on 127\.0\.0\.1:(\d+)", self.log)
        return int(found.group(1)) if found else self.ports["PORT"]


@contextlib.contextmanager
def make_up(workdir: Path, token: str | None, extra_env: dict | None = None):
    """Run tools/up.py as `make up` does, on free ports, its SQLite file and kept admin token in `workdir`;
    yields an Up. `token` None: no ADMIN_TOKEN, so up.py uses (or first makes) the token kept in workdir/admin-token.

    Stopped with SIGTERM to up.py alone: it stops its children in order (gunicorn drains its writes).
    """
    # REDIS_PORT and ZIPKIN_PORT too: two `make up`s started at once by parallel tests would both find 6379 free.
    ports = {"PORT": free_port(), "LOCUST_PORT": free_port(), "PROMETHEUS_PORT": free_port(), "REDIS_PORT": free_port(),
             "ZIPKIN_PORT": free_port()}
    # Tracing off unless the test asks for it (TRACING in extra_env): a JVM per `make up` costs the two cores
    # tens of seconds, and only the tests of tracing look at it.
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "TRACING": "off",
           "PAYGATE_ADMIN_TOKEN_FILE": str(workdir / "admin-token"),
           "PAYGATE_SQLITE_PATH": str(workdir / "paygate.sqlite3"), **(extra_env or {})}
    env.pop("ADMIN_TOKEN", None)
    if token is not None:
        env["ADMIN_TOKEN"] = token
    for name in ("MONGO_URL", "REDIS_URL", "WEB_CONCURRENCY", "OTEL_EXPORTER_ZIPKIN_ENDPOINT", "TRACES_UI_URL",
                 "LOCUST_URL"):
        if name not in (extra_env or {}):
            env.pop(name, None)
    workdir.mkdir(parents=True, exist_ok=True)
    proc = launch_up(env, workdir / "up.log")
    up = Up(ports, workdir, proc, token or "")
    # Each part is ready when it answers its own protocol: the app's /ready, Locust's web UI, Prometheus's /-/ready.
    probes = {"app": ("PORT", "/ready"), "Locust": ("LOCUST_PORT", "/"), "Prometheus": ("PROMETHEUS_PORT", "/-/ready")}
    try:
        for name, (port, path) in probes.items():
            wait_answering(f"make up's {name}", functools.partial(answers_http(path), ports[port]), 60, proc,
                           lambda: up.log[-3000:])
        if token is None:
            up.token = (workdir / "admin-token").read_text().strip()
        yield up
    finally:
        stop_up(proc)


def launch_up(env: dict, log: Path) -> subprocess.Popen:
    """Start tools/up.py, as `make up` does, with exactly `env`, its output appended to `log`.

    In a session of its own: a terminal's Ctrl-C reaches the caller alone, which then stops it in order (`stop_up`).
    """
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, str(ROOT / "tools" / "up.py")], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop_up(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
    """Stop tools/up.py with one signal to it alone (it stops its children in order: gunicorn
    drains its writes), then its whole process group if it has not gone within `timeout`."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
