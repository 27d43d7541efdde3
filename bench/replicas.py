"""Scaling out on one machine: 1, 2 and 3 replicas behind HAProxy (rig/replicas.py), in one run.

One room of three replicas (one database and key prefix, one redis-server, one FerretDB) and
three HAProxy instances in front of it, each running deploy/haproxy/haproxy.cfg with 1, 2 or 3
of the replicas as its servers. wrk drives the same closed-loop checkouts as (h) and (i)
through one load balancer at a time, in `original`, the three alternating round by round so
that the machine's busy minutes fall on all of them. CPU per checkout is split between the
replicas, HAProxy and the database processes: that is where "why does it flatten" shows.
"""

from __future__ import annotations

import os

import rig

from . import cpu, probes, stack, wrk
from .overhead import WARMUP_S, ratio
from .report import percentile

COUNTS = (1, 2, 3)
# One worker per replica: on 2 cores one replica of 2 workers already runs two Python processes (two
# GILs) and fills both cores, so more replicas would measure nothing but the machine's limit. With one
# worker each, the replica count is the number of app processes, and the curve shows where the cores run out.
WORKERS = 1


def run_once(room: rig.Room, lb: rig.Service, s: stack.Setup, seconds: float, connections: int) -> dict:
    """One wrk run through `lb`, with the CPU of every replica, of that HAProxy and of the databases."""
    masters = [replica.service.proc.pid for replica in room.replicas]
    load = os.getloadavg()[0]
    with cpu.Meter(masters) as app_cpu, cpu.Meter([lb.proc.pid]) as lb_cpu, cpu.Meter(s.db_pids) as db_cpu, \
            cpu.Steal() as steal:
        row = wrk.run(f"http://127.0.0.1:{lb.port}", seconds, connections)
    row.update(app_cpu_s=app_cpu.seconds, lb_cpu_s=lb_cpu.seconds, db_cpu_s=db_cpu.seconds, steal=steal.share,
               load=load)
    return row


def combine(replicas: int, runs: list[dict]) -> dict:
    """The rounds of one replica count as one row: totals, then rates and CPU per checkout."""
    seconds = sum(r["seconds"] for r in runs)
    checkouts, initiates = sum(r["checkouts"] for r in runs), sum(r["initiates"] for r in runs)
    cpu_s = {part: sum(r[f"{part}_cpu_s"] for r in runs) for part in ("app", "lb", "db")}
    return {
        "replicas": replicas, "seconds": round(seconds, 1), "checkouts": checkouts,
        "per_second": round(checkouts / seconds, 1) if seconds else 0.0,
        "per_round": [r["per_second"] for r in runs],
        "otp_rate": round(100 * sum(r["awaiting"] for r in runs) / initiates, 2) if initiates else None,
        "errors": sum(r["other"] + sum(r["socket_errors"].values()) for r in runs),
        "p50": percentile([r["p50"] for r in runs], 50),
        "busiest_share": max(r["busiest_share"] for r in runs),
        "steal": sum(r["steal"] * r["seconds"] for r in runs) / seconds if seconds else 0.0,
        "load": max(r["load"] for r in runs),
        **{f"{part}_cpu_ms": cpu.per_checkout_ms(s, checkouts) for part, s in cpu_s.items()},
        "cores_busy": round(sum(cpu_s.values()) / seconds, 2) if seconds else None,
    }


def measure(seconds: float, connections: int, rounds: int, flips: int) -> dict:
    """Checkouts/s for each replica count (rounds alternating), ratios to one replica, and the flip's
    propagation to every replica of the room (each asked directly, timed from the flip's request)."""
    with stack.setup("services") as s, \
            rig.start_room("bench_replicas", s.mongo_url, s.redis_url, replicas=max(COUNTS), workers=WORKERS) as room:
        ports = [replica.service.port for replica in room.replicas]
        lbs = {n: rig.haproxy(rig.temp_dir(f"bench-lb{n}"), ports[:n]).start() for n in COUNTS if n != max(COUNTS)}
        lbs[max(COUNTS)] = room.lb
        try:
            room.reset()
            for n in COUNTS:  # imports, pools, first connections: start-up costs, not checkouts
                wrk.run(f"http://127.0.0.1:{lbs[n].port}", WARMUP_S, connections)
            runs: dict[int, list[dict]] = {n: [] for n in COUNTS}
            for _ in range(rounds):
                for n in COUNTS:
                    runs[n].append(run_once(room, lbs[n], s, seconds, connections))
            flip = probes.flip_propagation(room, list(room.worker_pids()), flips,
                                           urls=[replica.url for replica in room.replicas], from_request=True)
        finally:
            for lb in lbs.values():
                if lb is not room.lb:
                    lb.stop()
    rows = [combine(n, runs[n]) for n in COUNTS]
    for row in rows:
        row["ratio"] = ratio(row["per_second"], rows[0]["per_second"], 2)
    return {"rows": rows, "flip": flip, "rounds": rounds, "seconds": seconds, "connections": connections}
