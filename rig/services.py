"""Real services on free loopback ports, for the tests and the benchmark.

Each service is a subprocess with its own temporary directory: Debian's
redis-server, FerretDB (the MongoDB-wire server, built from tools/ferretdb)
on Debian's PostgreSQL, and Prometheus; the app under gunicorn and `make up`
are in rig/apps.py. A missing binary is an error, never a skip: `make test`
installs them all.

A service is ready when it answers its own protocol (Redis `PING`, a
PostgreSQL `SELECT 1`, a MongoDB `ping`, an HTTP status), never when its port
merely accepts: PostgreSQL, for one, accepts connections while it is still
"starting up", and on a cold machine that window is long.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import redis
from pymongo import MongoClient

from .probe import http_ok, wait_answering

__all__ = [
    "FERRETDB_BIN",
    "MissingService",
    "Postgres",
    "ROOT",
    "Service",
    "answers_http",
    "answers_mongodb",
    "answers_postgres",
    "answers_redis",
    "ferretdb",
    "free_port",
    "listener_pid",
    "port_is_free",
    "postgres",
    "prometheus",
    "redis_server",
    "require",
    "shared_postgres",
    "temp_dir",
    "unique",
]

ROOT = Path(__file__).resolve().parent.parent
FERRETDB_BIN = Path(os.environ.get("FERRETDB_BIN", ROOT / ".cache" / "bin" / "ferretdb"))


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


# Each probe is one attempt with a short timeout of its own, so that a service that hangs
# (SIGSTOP) or is still starting makes the attempt fail, never block the wait for it.
PROBE_TIMEOUT_S = 1.0


def answers_http(path: str) -> Callable[[int], bool]:
    """A probe: GET http://127.0.0.1:<port><path> answers 200."""
    return lambda port: http_ok(f"http://127.0.0.1:{port}{path}", PROBE_TIMEOUT_S)


def answers_redis(port: int) -> bool:
    """A probe: Redis answers PING."""
    with redis.Redis(port=port, socket_timeout=PROBE_TIMEOUT_S, socket_connect_timeout=PROBE_TIMEOUT_S) as client:
        return client.ping() is True


def answers_mongodb(port: int) -> bool:
    """A probe: a MongoDB-wire server answers the `ping` command."""
    with MongoClient(f"mongodb://127.0.0.1:{port}/", directConnection=True, serverSelectionTimeoutMS=1000,
                     connectTimeoutMS=1000, socketTimeoutMS=1000) as client:
        return client.admin.command("ping").get("ok") == 1


def answers_postgres(port: int) -> bool:
    """A probe: PostgreSQL runs `SELECT 1` (it accepts connections, and refuses them, while starting up)."""
    done = subprocess.run([require("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres",
                           "-tAc", "SELECT 1"], capture_output=True, text=True, timeout=5,
                          env={**os.environ, "PGCONNECT_TIMEOUT": "2"})
    return done.returncode == 0 and done.stdout.strip() == "1"


def _listening_sockets(port: int) -> set[str]:
    """The kernel's names ("socket:[inode]") of the TCP sockets listening on `port`, IPv4 and IPv6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                found.add(f"socket:[{fields[9]}]")
    return found


def listener_pid(port: int, process_group: int | None = None) -> int | None:
    """The pid of a process listening on TCP `port` (in `process_group` only, when given), or None."""
    sockets = _listening_sockets(port)
    for entry in Path("/proc").iterdir() if sockets else ():
        if not entry.name.isdigit():
            continue
        try:
            if process_group is not None and os.getpgid(int(entry.name)) != process_group:
                continue
            if any(os.readlink(fd) in sockets for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return None


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
    answers: Callable[[int], bool]  # the protocol probe: True once the server answers on `port`
    env: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    # How long a start may take, unless the caller says: every start of the service, its restarts
    # after a fault included. A slow starter (a JVM) says more.
    START_TIMEOUT_S: ClassVar[float] = 30.0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self, timeout: float | None = None) -> Service:
        """Start the process and wait until it answers its own protocol (RuntimeError with its log tail if it
        exits first or never answers within `timeout`, by default the service's START_TIMEOUT_S)."""
        return self.launch().wait_ready(timeout)

    def launch(self) -> Service:
        """Start the process without waiting for it (`wait_ready` waits): a slow starter (a JVM) can come
        up beside the rest."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, cwd=self.workdir, env={**os.environ, **self.env},
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    def wait_ready(self, timeout: float | None = None) -> Service:
        """Wait until the launched process answers its own protocol; stopped, and RuntimeError with its log tail,
        if it exits first or never answers within `timeout` (by default START_TIMEOUT_S)."""
        timeout = self.START_TIMEOUT_S if timeout is None else timeout
        # Ours and answering: a free port can be taken by another process between free_port() and the bind,
        # and a probe answered by that one would pass for this service.
        ours = lambda: listener_pid(self.port, self.proc.pid) is not None  # noqa: E731
        try:
            wait_answering(self.name, lambda: ours() and self.answers(self.port), timeout, self.proc, self.log_tail)
        except Exception:
            self.stop()
            raise
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

    def restart(self, timeout: float | None = None) -> Service:
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
    return Service("redis", argv, port, workdir, answers_redis)


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
    return Postgres("postgres", argv, port, workdir, answers_postgres)


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
    return Service("ferretdb", argv, port, workdir, answers_mongodb)


def prometheus(workdir: Path, config: Path, port: int | None = None) -> Service:
    """Debian's Prometheus with the given config, storing in workdir."""
    port = port or free_port()
    argv = [require("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    return Service("prometheus", argv, port, workdir, answers_http("/-/ready"))


def unique(prefix: str) -> str:
    """A short unique name (databases, key prefixes)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def temp_dir(prefix: str) -> Path:
    """A fresh temporary directory."""
    return Path(tempfile.mkdtemp(prefix=f"paygate-{prefix}-"))
