"""`make up`: the kit on one machine without Docker.

Payments go to a SQLite file under .cache/ (it survives restarts). When
`redis-server` is on PATH it is started too (port 6379, or REDIS_PORT, if
free; else a free one, and the banner says what holds the port), and the app
runs several gunicorn workers that share the mode, the knobs and the writes in
flight through it, as in compose; without it, one worker keeps that state
in-process. Also started: the Locust web UI pointed at
the app, Prometheus when a `prometheus` binary is on PATH, and Zipkin (the trace UI,
tools/tracing.py) when `java` is. MONGO_URL /
REDIS_URL point the app at servers of your own instead. Ctrl-C stops everything.

When `haproxy` is installed (`make services`), it takes the room's port (BIND,
0.0.0.0:8000) and the app listens on loopback behind it, as in compose: HAProxy
holds slow clients and hands gunicorn only whole requests. Without it the app
faces the room itself, and only its read deadline (app/worker.py) bounds a slow
client: enough of them can still hold every thread (the banner says so).

The admin token is generated once and kept in .cache/admin-token (mode 0600): every
`make up` after it uses the same one, so an exported $ADMIN_TOKEN and the console's
stored token keep working across restarts. ADMIN_TOKEN overrides it; `make token`
(`python tools/up.py --token`) prints the one in use.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

import rig  # noqa: E402
from app.config import ensure_shared_secrets, redact_url  # noqa: E402
from app.lan import checkout_url  # noqa: E402
from tools.tracing import start_tracing  # noqa: E402

CACHE = ROOT / ".cache"
# PAYGATE_ADMIN_TOKEN_FILE: another place to keep the token (the tests give each kit its own).
TOKEN_FILE = Path(os.environ.get("PAYGATE_ADMIN_TOKEN_FILE") or CACHE / "admin-token")


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def port_holder(port: int) -> str:
    """Who holds 127.0.0.1:port, for the banner: "redis-server (pid 812), a Redis 7.0.15 that is not the kit's"."""
    pid = rig.listener_pid(port)
    try:
        # comm, not cmdline: redis-server rewrites its command line into a title ("redis-server 127.0.0.1:6379").
        command = Path(f"/proc/{pid}/comm").read_text().strip() if pid else ""
    except OSError:
        command = ""
    who = f"{command or 'a process'} (pid {pid})" if pid else "a process this user cannot see"
    try:
        with redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
            what = f"a Redis {client.info('server')['redis_version']} that is not the kit's"
    except (redis.RedisError, OSError, KeyError):
        return f"{who}, which does not answer as Redis"
    # Debian's package starts its own server on 6379 at install time.
    return f"{who}, {what} (Debian's redis-server package starts one: `service redis-server stop` frees the port)"


def haproxy_config(binary: str, bind: str, app_port: int) -> Path:
    """deploy/haproxy/haproxy.cfg as compose and the test rig run it, with one `server` line for the app
    on loopback `app_port` (rig.replicas.haproxy_config); checked by HAProxy itself, so an error stops
    the kit before anything starts, with HAProxy's own words."""
    config = Path(tempfile.mkdtemp(prefix="paygate-haproxy-")) / "haproxy.cfg"
    config.write_text(rig.replicas.haproxy_config([app_port]))
    check = subprocess.run([binary, "-c", "-f", str(config)], env={**os.environ, "PAYGATE_LB_BIND": bind},
                           capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise SystemExit(f"HAProxy refuses {config}:\n{check.stdout}{check.stderr}")
    return config


def admin_token() -> tuple[str, str]:
    """The admin token for this run and where it comes from: ADMIN_TOKEN, else the one kept in
    .cache/admin-token, else a new one, kept there (mode 0600) for the next runs."""
    if os.environ.get("ADMIN_TOKEN"):
        return os.environ["ADMIN_TOKEN"], "from ADMIN_TOKEN"
    try:
        kept = TOKEN_FILE.read_text().strip()
    except FileNotFoundError:
        kept = ""
    if kept:
        return kept, f"kept in {_shown(TOKEN_FILE)}"
    token = secrets.token_urlsafe(18)
    TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start: never readable by others, not even for a moment.
    fd = os.open(TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token, f"new, kept in {_shown(TOKEN_FILE)} for the next runs"


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    """Run the kit until interrupted (--token: print the admin token `make up` uses, and exit)."""
    parser = argparse.ArgumentParser(prog="tools/up.py", description="The kit on one machine, without Docker.")
    parser.add_argument("--token", action="store_true", help="print the admin token make up uses, and exit")
    if parser.parse_args(argv).token:
        print(admin_token()[0])
        return 0

    port = _port("PORT", 8000)
    locust_port = _port("LOCUST_PORT", 8089)
    prom_port = _port("PROMETHEUS_PORT", 9090)
    app_url = f"http://127.0.0.1:{port}"
    os.environ["ADMIN_TOKEN"], token_source = admin_token()
    ensure_shared_secrets()
    public_bind = os.environ.get("BIND", f"0.0.0.0:{port}")
    # PORT: the port the room uses, for the board's checkout address (app/lan.py).
    env = {**os.environ, "BIND": public_bind, "PORT": str(port), "PYTHONPATH": str(ROOT)}
    env.setdefault("PAYGATE_SQLITE_PATH", str(CACHE / "paygate.sqlite3"))
    haproxy = shutil.which("haproxy", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")
    # Behind HAProxy the app listens on loopback only (its own BIND); env's BIND stays the room's.
    app_port = rig.free_port(avoid={port, locust_port, prom_port}) if haproxy else port
    lb_config = haproxy_config(haproxy, public_bind, app_port) if haproxy else None

    procs: list[tuple[str, subprocess.Popen]] = []
    services: list[rig.Service] = []
    redis_server = None if env.get("REDIS_URL") else shutil.which("redis-server")
    redis_port, taken = _port("REDIS_PORT", 6379), None
    if redis_server:
        if not rig.port_is_free(redis_port):
            taken = f"port {redis_port} is taken by {port_holder(redis_port)}"
            redis_port = rig.free_port(avoid={port, locust_port, prom_port, app_port})
        services.append(rig.redis_server(Path(env["PAYGATE_SQLITE_PATH"]).parent / "redis", redis_port).start())
        env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    # Several workers need a Redis they share; the in-process stand-in lives inside one worker.
    shared_redis = bool(env.get("REDIS_URL"))
    env["WEB_CONCURRENCY"] = os.environ.get("WEB_CONCURRENCY", "2") if shared_redis else "1"

    def start(name: str, argv: list[str], extra_env: dict | None = None, **kwargs) -> None:
        procs.append((name, subprocess.Popen(argv, cwd=ROOT, env={**env, **(extra_env or {})}, **kwargs)))

    # Zipkin first (a JVM is slow to start; it comes up beside the app): it sets the app's span endpoint.
    tracing = start_tracing(env, CACHE, avoid={port, locust_port, prom_port, redis_port, app_port})
    # The console's load phases drive the Locust started below (never another one a shell variable names).
    env["LOCUST_URL"] = f"http://127.0.0.1:{locust_port}"
    start("app", [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
          extra_env={"BIND": f"127.0.0.1:{app_port}"} if haproxy else None)
    if haproxy:
        # -q: without it HAProxy reports the app DOWN (an ALERT) until gunicorn has started; its
        # configuration was checked above, with its messages.
        start("haproxy", [haproxy, "-db", "-q", "-f", str(lb_config)], extra_env={"PAYGATE_LB_BIND": public_bind})
        front = f"HAProxy (holds slow clients; the app itself on 127.0.0.1:{app_port})"
    else:
        front = "nothing: no `haproxy` on PATH (`make services`), so slow clients can hold the app's threads"
    lines = [f"  checkout            {app_url}/",
             f"  phones in the room  {checkout_url(env.get('PUBLIC_URL'), port)}"
             + ("" if public_bind.startswith(("0.0.0.0", "[::]")) else "  (BIND is not 0.0.0.0: not reachable from the room)"),
             f"  in front of the app {front}",
             f"  facilitator console {app_url}/admin",
             f"  live board          {app_url}/board",
             f"  API docs            {app_url}/docs"]

    locustfile = ROOT / "loadtest" / "locustfile.py"
    if locustfile.exists():
        # The shapes file adds the workshop's load shapes to the UI's shape menu (class-picker).
        locustfiles = f"{locustfile},{ROOT / 'loadtest' / 'shapes.py'}"
        start("locust", [sys.executable, "-m", "locust", "-f", locustfiles, "--config",
                         str(ROOT / "loadtest" / "locust.conf"), "--host", app_url,
                         "--web-host", "127.0.0.1", "--web-port", str(locust_port)],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lines.append(f"  Locust web UI       http://127.0.0.1:{locust_port}/")

    prometheus = shutil.which("prometheus")
    if prometheus:
        from tools.prometheus_config import write_local_config

        workdir = Path(tempfile.mkdtemp(prefix="paygate-prometheus-"))
        config = write_local_config(workdir, f"127.0.0.1:{app_port}")  # the app itself, not through HAProxy
        start("prometheus", [prometheus, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lines.append(f"  Prometheus          http://127.0.0.1:{prom_port}/")
    else:
        lines.append("  Prometheus          not started (no `prometheus` on PATH)")
    lines.append(tracing.line)

    # A token the facilitator chose is theirs to know: not echoed.
    token_shown = "(as set in ADMIN_TOKEN)" if token_source == "from ADMIN_TOKEN" else f"{env['ADMIN_TOKEN']}  ({token_source})"
    store = f"MongoDB at {redact_url(env['MONGO_URL'])}" if env.get("MONGO_URL") else \
        f"SQLite file {env['PAYGATE_SQLITE_PATH']}"
    if redis_server:
        state = f"redis-server on 127.0.0.1:{redis_port} (started here)"
        if taken:
            state += f"\n{'':22}{taken}: the kit uses its own Redis on {redis_port}"
    elif shared_redis:
        state = f"Redis at {redact_url(env['REDIS_URL'])}"
    else:
        state = "in-process stand-in (no redis-server on PATH: `apt-get install redis-server` for real Redis)"
    print("\nPayGate Chaos Kit is starting:\n" + "\n".join(lines)
          + f"\n  admin token         {token_shown}  (`make token` prints it again)"
          + f"\n  payments            {store}"
          + f"\n  mode and knobs      {state}"
          + f"\n  app workers         {env['WEB_CONCURRENCY']}\n\nCtrl-C stops everything.\n", flush=True)

    def stop(*_):
        for _, p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in procs:
            try:
                p.wait(25)
            except subprocess.TimeoutExpired:
                p.kill()
        for svc in services:
            svc.stop()
        tracing.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        for name, p in procs:
            if p.poll() is not None:
                print(f"{name} exited with {p.returncode}; stopping the kit", file=sys.stderr)
                stop()
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
