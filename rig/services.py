"""Real services on free loopback ports, for the tests and the benchmark.

Each service is a subprocess with its own temporary directory: Debian's
redis-server, FerretDB (the MongoDB-wire server, built from tools/ferretdb)
on Debian's PostgreSQL, gunicorn running the app with several workers, and
Prometheus. A missing
binary is an error, never a skip: `make test` installs them all.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .client import AdminClient

__all__ = [
    "App",
    "app_config",
    "FERRETDB_BIN",
    "Kit",
    "MissingService",
    "Postgres",
    "ROOT",
    "Service",
    "TEST_SECRET",
    "TEST_TOKEN",
    "ferretdb",
    "free_port",
    "gunicorn",
    "make_up",
    "port_is_free",
    "postgres",
    "prometheus",
    "redis_server",
    "require",
    "shared_postgres",
    "start_app",
    "stop_up",
    "temp_dir",
    "unique",
    "wait_for_port",
]

ROOT = Path(__file__).resolve().parent.parent
FERRETDB_BIN = Path(os.environ.get("FERRETDB_BIN", ROOT / ".cache" / "bin" / "ferretdb"))
TEST_TOKEN = "test-admin-token"
TEST_SECRET = "test-secret-key"


class MissingService(RuntimeError):
    """A binary the tests need is not installed (run `make test`, which installs it)."""


_handed_out: set[int] = set()


def free_port(avoid: Collection[int] = ()) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and that this process has not
    handed out before (nor one in `avoid`): the kernel may offer a port again as soon as it is
    released, and two services given the same one collide when they start."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out and port not in avoid:
            _handed_out.add(port)
            return port


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port and it can be bound."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def require(binary: str | Path) -> str:
    """The path of an installed binary, or MissingService."""
    path = shutil.which(str(binary)) if not Path(binary).is_absolute() else (str(binary) if Path(binary).exists() else None)
    if not path:
        raise MissingService(f"{binary} is not installed; `make test` installs it")
    return path


@dataclass
class Service:
    """One running server process."""

    name: str
    argv: list[str]
    port: int
    workdir: Path
    env: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self, timeout: float = 30.0) -> Service:
        """Start the process and wait until its port accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, cwd=self.workdir, env={**os.environ, **self.env},
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        try:
            wait_for_port(self.port, timeout, self.proc)
        except Exception as err:
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {err}\n{self.log_tail()}") from err
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 25.0) -> None:
        """Stop the process (and its children) and wait for it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    @contextlib.contextmanager
    def fault(self, kind: str):
        """The server fails for the block: "stop" (connections refused, then a restart on the same port)
        or "hang" (SIGSTOP: connections stay open and nothing answers, then SIGCONT)."""
        if kind == "hang":
            os.kill(self.proc.pid, signal.SIGSTOP)
            try:
                yield
            finally:
                os.kill(self.proc.pid, signal.SIGCONT)
            return
        self.stop()
        try:
            yield
        finally:
            self.start()

    def restart(self, timeout: float = 30.0) -> Service:
        """Stop, then start again on the same port."""
        self.stop()
        return self.start(timeout)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the service's log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def redis_server(workdir: Path, port: int | None = None) -> Service:
    """Debian's redis-server, no persistence, on a free port."""
    port = port or free_port()
    argv = [require("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir)]
    return Service("redis", argv, port, workdir)


def _postgres_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise MissingService(f"PostgreSQL's {name} is not installed; `make test` installs it")
    return str(found[-1])


def _as_postgres_user(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; CI runs as root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class Postgres(Service):
    """Debian's PostgreSQL, initialised in a fresh directory; the storage under FerretDB."""

    def start(self, timeout: float = 30.0) -> Service:
        data = self.workdir / "pgdata"
        if not data.exists():
            self.workdir.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.workdir, "postgres")
            subprocess.run(_as_postgres_user([_postgres_bin("initdb"), "-D", str(data), "-A", "trust",
                                              "-U", "postgres", "-E", "UTF8", "--no-sync"]),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return super().start(timeout)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 25.0) -> None:
        """SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for clients)."""
        super().stop(sig, timeout)

    def discard(self) -> None:
        """Stop, and free the data directory (it lives in memory on tmpfs)."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def psql(self, sql: str, database: str = "postgres") -> None:
        """Run SQL as the superuser (raises on an error)."""
        subprocess.run([require("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q",
                        "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql], check=True, stdout=subprocess.DEVNULL)

    def create_database(self, name: str) -> str:
        """Create a database for FerretDB (lookups by _id indexed) and return its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        # FerretDB v1 pushes an _id filter down as `_jsonb->$1 @> $2`, which its own
        # btree index on (_jsonb->'_id') cannot serve: every lookup scanned the whole
        # table (15 ms at 20,000 payments). A GIN index on the same expression, added to
        # every table FerretDB creates, serves `@>` once the key is planned as a constant
        # (custom plans): measured 1.4 ms per lookup at 10 and at 100,000 payments.
        self.psql(INDEX_FERRETDB_IDS, name)
        self.psql(f'ALTER DATABASE "{name}" SET plan_cache_mode = force_custom_plan')
        # FerretDB's default pool of 50 deadlocks once more operations than that are in
        # flight (measured: every insert stuck, PostgreSQL idle); keep it above what the
        # apps' MongoDB pools can send.
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}?pool_max_conns=500"


INDEX_FERRETDB_IDS = """
CREATE FUNCTION index_ferretdb_ids() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE created record;
BEGIN
  FOR created IN SELECT object_identity FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE TABLE' LOOP
    IF created.object_identity NOT LIKE '%._ferretdb_%' THEN
      EXECUTE format('CREATE INDEX ON %s USING gin ((_jsonb -> ''_id''))', created.object_identity);
    END IF;
  END LOOP;
END $$;
CREATE EVENT TRIGGER index_ferretdb_ids ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
  EXECUTE FUNCTION index_ferretdb_ids();
"""


def postgres(workdir: Path | None = None, port: int | None = None) -> Postgres:
    """PostgreSQL tuned for tests: data on tmpfs where there is one, no fsync."""
    port = port or free_port()
    shm = Path("/dev/shm")
    workdir = workdir or Path(tempfile.mkdtemp(prefix="paygate-postgres-", dir=shm if shm.is_dir() else None))
    argv = _as_postgres_user([_postgres_bin("postgres"), "-D", str(workdir / "pgdata"), "-p", str(port),
                              "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={workdir}",
                              "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                              "-c", "max_connections=1000",
                              # Fresh planner statistics within seconds of a bulk load (bench seeds 100,000 payments).
                              "-c", "autovacuum_naptime=1"])
    return Postgres("postgres", argv, port, workdir)


_shared_postgres: Postgres | None = None


def shared_postgres() -> Postgres:
    """One PostgreSQL per test process, stopped when the process exits."""
    global _shared_postgres
    if _shared_postgres is None or not _shared_postgres.running:
        _shared_postgres = postgres().start()
        atexit.register(_shared_postgres.discard)
    return _shared_postgres


def ferretdb(workdir: Path, port: int | None = None) -> Service:
    """FerretDB v1 (MongoDB wire protocol) on its own PostgreSQL database.

    FerretDB's SQLite backend was measured unusable for this kit: it pushes
    down no filter but a lone `_id` (and even that misses its own index), so
    each conditional update decodes the whole collection in Go — 476 ms of
    server CPU per checkout at 2,000 intents, against 4 ms on PostgreSQL.
    The database outlives a restart of FerretDB, so outage tests find their data.
    """
    port = port or free_port()
    pg_url = shared_postgres().create_database("ferretdb_" + os.urandom(5).hex())
    argv = [require(FERRETDB_BIN), "-listen", f"127.0.0.1:{port}", "-postgresql-url", pg_url]
    return Service("ferretdb", argv, port, workdir)


def gunicorn(workdir: Path, mongo_url: str | None, redis_url: str, workers: int = 2, port: int | None = None,
             extra_env: dict | None = None) -> Service:
    """The app under real gunicorn (gthread), as `make up` and compose run it.

    Without `mongo_url` the app keeps its payments in a SQLite file in `workdir` (the embedded default).
    """
    port = port or free_port()
    store = {"MONGO_URL": mongo_url} if mongo_url else {"MONGO_URL": "", "PAYGATE_SQLITE_PATH": str(workdir / "paygate.sqlite3")}
    env = {
        **store,
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
    return Service("gunicorn", argv, port, workdir, env=env)


def prometheus(workdir: Path, config: Path, port: int | None = None) -> Service:
    """Debian's Prometheus with the given config, storing in workdir."""
    port = port or free_port()
    argv = [require("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    return Service("prometheus", argv, port, workdir)


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

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until /ready answers 200."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = requests.get(self.url + "/ready", timeout=2)
                if last.status_code == 200:
                    return
            except requests.RequestException as err:
                last = err
            time.sleep(0.1)
        raise TimeoutError(f"app not ready: {last}")


def start_app(name: str, mongo_url: str | None, redis_url: str, workers: int = 2,
              extra_env: dict | None = None) -> App:
    """The app under gunicorn with a database and key prefix of its own, ready to serve."""
    db, prefix = f"{name}_{os.urandom(5).hex()}", f"{name}:{os.urandom(5).hex()}:"
    svc = gunicorn(temp_dir(name), mongo_url, redis_url, workers=workers,
                   extra_env={"MONGO_DB": db, "PAYGATE_KEY_PREFIX": prefix, **(extra_env or {})}).start()
    app = App(svc, db_name=db, prefix=prefix)
    try:
        app.wait_ready()
    except Exception:
        svc.stop()
        raise
    return app


def app_config(**overrides) -> dict:
    """create_app settings for an in-process test app: the test secrets, a database and key prefix of its own."""
    return {"mongo_db": unique("t_"), "key_prefix": unique("t:") + ":", "admin_token": TEST_TOKEN,
            "secret_key": TEST_SECRET, **overrides}


def unique(prefix: str) -> str:
    """A short unique name (databases, key prefixes)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def temp_dir(prefix: str) -> Path:
    """A fresh temporary directory."""
    return Path(tempfile.mkdtemp(prefix=f"paygate-{prefix}-"))


@dataclass
class Kit:
    """A running `make up` (tools/up.py): its ports, log and process."""

    ports: dict
    workdir: Path
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['PORT']}"

    @property
    def log(self) -> str:
        return (self.workdir / "up.log").read_text(errors="replace")


@contextlib.contextmanager
def make_up(workdir: Path, token: str, extra_env: dict | None = None):
    """Run tools/up.py as `make up` does, on free ports, its SQLite file in `workdir`; yields a Kit.

    Stopped with SIGTERM to up.py alone: it stops its children in order (gunicorn drains its writes).
    """
    ports = {"PORT": free_port(), "LOCUST_PORT": free_port(), "PROMETHEUS_PORT": free_port()}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "ADMIN_TOKEN": token,
           "PAYGATE_SQLITE_PATH": str(workdir / "paygate.sqlite3"), **(extra_env or {})}
    for name in ("MONGO_URL", "REDIS_URL", "WEB_CONCURRENCY"):
        if name not in (extra_env or {}):
            env.pop(name, None)
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "up.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "tools/up.py"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    kit = Kit(ports, workdir, proc)
    try:
        for port in ports.values():
            wait_for_port(port, 40, proc)
        App(Service("up", [], ports["PORT"], workdir), token=token).wait_ready(timeout=30)
        yield kit
    finally:
        stop_up(proc)


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
