"""A room larger than one machine, on this one: N replicas of the app behind HAProxy.

Each replica is its own gunicorn (with its workers) on a loopback port; all of them
share one Redis and one MongoDB-wire server, and the same database and key prefix,
because they are one room: the mode, the knobs, the board's counts and the writes
in flight live in Redis under that prefix, the payments in that database. HAProxy
runs deploy/haproxy/haproxy.cfg, the file compose runs, with its `servers` block
replaced by one `server` line per replica.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .apps import TEST_TOKEN, App, gunicorn
from .client import AdminClient
from .services import ROOT, Service, answers_http, free_port, require, temp_dir, unique

__all__ = ["HAPROXY_CONFIG", "Room", "haproxy", "start_room"]

HAPROXY_CONFIG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
_SERVERS = re.compile(r"^([ \t]*)# servers: begin\n.*?# servers: end\n", re.M | re.S)


def haproxy_config(ports: list[int], template: Path = HAPROXY_CONFIG) -> str:
    """The load balancer's config for replicas on these loopback ports: `template` with its
    `servers` block replaced by one `server` line per replica (everything else as compose runs it)."""
    text = template.read_text()
    if not _SERVERS.search(text):
        raise ValueError(f"{template} has no '# servers: begin' … '# servers: end' block")
    return _SERVERS.sub(lambda m: "".join(f"{m.group(1)}server replica{i} 127.0.0.1:{port} check\n"
                                          for i, port in enumerate(ports, 1)), text, count=1)


def haproxy(workdir: Path, ports: list[int], port: int | None = None) -> Service:
    """Debian's HAProxy in front of the replicas on `ports`, in the foreground; ready once a request
    through it is answered by a replica (/health answers 200), not when its port accepts."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "haproxy.cfg"
    config.write_text(haproxy_config(ports))
    binary = require(shutil.which("haproxy", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin") or "haproxy")
    return Service("haproxy", [binary, "-db", "-f", str(config)], port, workdir, answers_http("/health"),
                   env={"PAYGATE_LB_BIND": f"127.0.0.1:{port}"})


class Room(AdminClient):
    """The replicas and their load balancer; the admin calls (rig.client) go through the load balancer.

    `url` is the load balancer's; each replica's own is `replicas[i].url`.
    """

    def __init__(self, replicas: list[App], lb: Service, db_name: str, prefix: str, token: str = TEST_TOKEN):
        super().__init__(f"http://127.0.0.1:{lb.port}", token)
        self.replicas, self.lb, self.db_name, self.prefix = replicas, lb, db_name, prefix

    def worker_pids(self) -> dict[int, int]:
        """Worker pid → index of the replica it belongs to (X-Worker-Pid names the worker)."""
        return {pid: i for i, replica in enumerate(self.replicas) if replica.service.running
                for pid in replica.workers()}

    def kill(self, i: int) -> None:
        """SIGKILL replica i: its gunicorn master and workers at once (its process group), no drain."""
        self.replicas[i].service.stop(signal.SIGKILL)

    def stop(self) -> None:
        """Stop the load balancer, then every replica (SIGTERM: each drains its writes)."""
        self.lb.stop()
        with ThreadPoolExecutor(len(self.replicas)) as pool:
            list(pool.map(lambda replica: replica.service.stop(), self.replicas))

    def __enter__(self) -> Room:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_room(name: str, mongo_url: str | None, redis_url: str, replicas: int = 3, workers: int = 2,
               extra_env: dict | None = None) -> Room:
    """`replicas` gunicorn apps of `workers` workers each, sharing Redis, the MongoDB database and the key
    prefix (fresh ones, the room's own), behind HAProxy; returns once HAProxy answers through a replica.

    The replicas start side by side; if any fails to start, those started are stopped again.
    """
    db, prefix = unique(f"{name}_"), unique(f"{name}:") + ":"
    env = {"MONGO_DB": db, "PAYGATE_KEY_PREFIX": prefix, **(extra_env or {})}
    services = [gunicorn(temp_dir(f"{name}-{i}"), mongo_url, redis_url, workers=workers, extra_env=env)
                for i in range(replicas)]
    with ThreadPoolExecutor(replicas) as pool:
        started = [pool.submit(svc.start, 60) for svc in services]
    lb = haproxy(temp_dir(f"{name}-lb"), [svc.port for svc in services])
    try:
        for future in started:
            future.result()
        lb.start()
    except Exception:
        for svc in services:
            svc.stop()
        raise
    return Room([App(svc, db_name=db, prefix=prefix) for svc in services], lb, db, prefix)
