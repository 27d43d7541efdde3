"""What the kit costs over a bare stub, and what its metrics cost: wrk throughput and CPU per checkout.

Four servers take the same wrk load in turn, each under gunicorn with the
kit's gunicorn.conf.py and the same worker and thread counts: the stub
(bench/stub.py), the floor (the stub plus the kit's store calls,
bench/floor.py), the kit, and the kit with every metric a no-op
(bench/bare.py). Only the server being measured runs, so none steals CPU
from another. CPU comes from /proc: the gunicorn master and its workers
(app CPU) and, separately, the database processes (DB CPU).
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from . import cpu, stack, wrk

WARMUP_S = 2
# wrk opens its connections all at once, and a keep-alive connection stays with the gunicorn worker
# that accepted it: in about half the runs measured, one worker took all 40 and the other idled,
# which halves the throughput of stub and kit alike (one GIL). Such a run measures the accept race,
# not the code: when the busiest worker served more than this share of the answers, run again.
LOPSIDED = 0.75
MAX_TRIES = 3
TARGETS = (("stub", stack.STUB), ("floor", stack.FLOOR), ("kit", None), ("bare", "bench.bare:app"))


def measure(application, db_pids: list[int], seconds: float, connections: int, warmup_s: float = WARMUP_S) -> dict:
    """wrk checkouts against one running server, with its app and database CPU per checkout.

    A short unmeasured run first: imports, pools and the first connections
    are start-up costs, not a checkout's. A run whose connections landed
    (nearly) all on one worker is run again, up to MAX_TRIES in all: see LOPSIDED.
    """
    if warmup_s:
        wrk.run(application.url, warmup_s, connections)
    tries = 0
    while True:
        tries += 1
        with cpu.Meter([application.service.proc.pid]) as app_cpu, cpu.Meter(db_pids) as db_cpu, \
                cpu.Steal() as steal:
            row = wrk.run(application.url, seconds, connections)
        if row["busiest_share"] <= LOPSIDED or tries == MAX_TRIES:
            break
    row["app_cpu_s"], row["db_cpu_s"], row["steal"], row["tries"] = app_cpu.seconds, db_cpu.seconds, steal.share, tries
    return row


def combine(rows: list[dict]) -> dict:
    """Several rounds of one target as one: totals, then rates and CPU per checkout from the totals."""
    out = dict(rows[-1])
    for key in ("seconds", "checkouts", "initiates", "awaiting", "other", "app_cpu_s", "db_cpu_s", "tries"):
        out[key] = sum(r[key] for r in rows)
    out["busiest_share"] = max(r["busiest_share"] for r in rows)
    out["per_second"] = round(out["checkouts"] / out["seconds"], 1) if out["seconds"] else 0.0
    out["otp_rate"] = round(100 * out["awaiting"] / out["initiates"], 2) if out["initiates"] else None
    out["p50"] = sorted(r["p50"] for r in rows)[len(rows) // 2]
    out["steal"] = sum(r["steal"] * r["seconds"] for r in rows) / out["seconds"] if out["seconds"] else 0.0
    out["app_cpu_ms"] = cpu.per_checkout_ms(out["app_cpu_s"], out["checkouts"])
    out["db_cpu_ms"] = cpu.per_checkout_ms(out["db_cpu_s"], out["checkouts"])
    return out


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    """a / b, None when either is missing or b is zero."""
    return round(a / b, digits) if a is not None and b else None


def compare(setup: stack.Setup, seconds: float = 15, connections: int = 40, rounds: int = 1,
            warmup_s: float = WARMUP_S, profile: bool = False) -> dict:
    """Stub, floor, kit and kit without metrics under the same wrk load, in `original`; ratios between them.

    With rounds > 1 the four alternate, so the machine's slow moments fall
    on all of them. profile=True adds a py-spy run on the kit (after its
    measured runs, so sampling costs none of them): its busiest frames.
    """
    runs: dict[str, list[dict]] = {label: [] for label, _ in TARGETS}
    frames = None
    for round_no in range(rounds):
        for label, wsgi in TARGETS:
            with stack.app(setup.mongo_url, setup.redis_url, f"{setup.name}_{label}", wsgi=wsgi,
                           workers=setup.workers) as application:
                runs[label].append(measure(application, setup.db_pids, seconds, connections, warmup_s))
                if profile and label == "kit" and round_no == rounds - 1:
                    frames = profiled(application, seconds, connections)
    stub, floor, kit, bare = (combine(runs[label]) for label, _ in TARGETS)
    # Per round too: the host's steal changes from minute to minute, and a round's stub and kit run back to back.
    round_ratios = [ratio(k["per_second"], s["per_second"], 2) for k, s in zip(runs["kit"], runs["stub"], strict=True)]
    return {
        "setup": setup.label, "workers": setup.workers, "connections": connections, "rounds": rounds,
        "stub": stub, "floor": floor, "kit": kit, "bare": bare,
        "throughput_ratio": ratio(kit["per_second"], stub["per_second"]),
        "round_ratios": round_ratios,
        "app_cpu_ratio": ratio(kit["app_cpu_ms"], stub["app_cpu_ms"], 2),
        # The driver's own share: the stub plus the kit's store calls, against the stub; then the kit against that.
        "floor_cpu_ratio": ratio(floor["app_cpu_ms"], stub["app_cpu_ms"], 2),
        "kit_over_floor_cpu": ratio(kit["app_cpu_ms"], floor["app_cpu_ms"], 2),
        # The cost of metrics, as a share: throughput lost, and app CPU added per checkout.
        "metrics_throughput_cost": ratio(bare["per_second"] - kit["per_second"], bare["per_second"]),
        "metrics_cpu_cost": ratio((kit["app_cpu_ms"] or 0) - (bare["app_cpu_ms"] or 0), bare["app_cpu_ms"]),
        "frames": frames,
    }


def profiled(application, seconds: float, connections: int) -> list[tuple[str, float]]:
    """The kit's busiest Python frames (self time, % of samples) under the same wrk load."""
    out = Path(tempfile.mkdtemp(prefix="paygate-profile-")) / "kit.txt"
    load = threading.Thread(target=wrk.run, args=(application.url, seconds + 2, connections))
    load.start()
    try:
        cpu.profile(application.service.proc.pid, seconds, out)
    finally:
        load.join()
    return cpu.top_frames(out)
