"""`make up`: the kit on one machine without Docker.

Starts the app under gunicorn (one worker, many threads: the in-process
stand-ins for MongoDB and Redis live inside that worker), the Locust web UI
pointed at it, and Prometheus when a `prometheus` binary is on PATH. Set
MONGO_URL / REDIS_URL to use real servers instead of the stand-ins. Ctrl-C
stops everything.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.config import ensure_shared_secrets  # noqa: E402


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def main() -> int:
    """Run the kit until interrupted."""
    port = _port("PORT", 8000)
    locust_port = _port("LOCUST_PORT", 8089)
    prom_port = _port("PROMETHEUS_PORT", 9090)
    app_url = f"http://127.0.0.1:{port}"
    token_given = bool(os.environ.get("ADMIN_TOKEN"))
    ensure_shared_secrets()
    env = {**os.environ, "BIND": os.environ.get("BIND", f"0.0.0.0:{port}"),
           "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY", "1"), "PYTHONPATH": str(ROOT)}
    if not (env.get("MONGO_URL") and env.get("REDIS_URL")) and env["WEB_CONCURRENCY"] != "1":
        print("note: in-process stand-ins need one worker; using WEB_CONCURRENCY=1")
        env["WEB_CONCURRENCY"] = "1"

    procs: list[tuple[str, subprocess.Popen]] = []

    def start(name: str, argv: list[str], **kwargs) -> None:
        procs.append((name, subprocess.Popen(argv, cwd=ROOT, env=env, **kwargs)))

    start("app", [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"])
    lines = [f"  checkout            {app_url}/",
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
        config = write_local_config(workdir, f"127.0.0.1:{port}")
        start("prometheus", [prometheus, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lines.append(f"  Prometheus          http://127.0.0.1:{prom_port}/")
    else:
        lines.append("  Prometheus          not started (no `prometheus` on PATH)")

    backends = "real MongoDB/Redis" if env.get("MONGO_URL") and env.get("REDIS_URL") else "in-process stand-ins"
    token = env["ADMIN_TOKEN"] if not token_given else "(as set in ADMIN_TOKEN)"
    print("\nPayGate Chaos Kit is starting (" + backends + "):\n" + "\n".join(lines)
          + f"\n  admin token         {token}\n\nCtrl-C stops everything.\n", flush=True)

    def stop(*_):
        for _, p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in procs:
            try:
                p.wait(25)
            except subprocess.TimeoutExpired:
                p.kill()
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
