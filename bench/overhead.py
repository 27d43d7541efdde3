"""What the kit costs over a bare stub, and what its metrics cost: wrk throughput and CPU per checkout.

Five servers take the same wrk load in turn, each under gunicorn with the
kit's gunicorn.conf.py and the same worker and thread counts: the stub
(bench/stub.py), the floor (the stub plus the kit's store calls,
bench/floor.py), the kit with tracing off, the kit tracing every request
(100 % sampled) to a real Zipkin, as `make up` runs it where Java is
installed, and the kit with every metric a no-op (bench/bare.py, tracing
off). Only the server being measured runs, so none steals CPU from another
(Zipkin idles but for the traced kit's spans). CPU comes from /proc: the
gunicorn master and its workers (app CPU), the database processes (DB CPU)
and Zipkin's JVM.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import rig
from tools.tracing import WORKSHOP_CAPS

from . import cpu, stack, wrk
from .report import percentile

WARMUP_S = 2
# A workshop's Zipkin has run for minutes before anyone measures it: its JVM has compiled its hot
# paths. A fresh one spends its first seconds of spans compiling them (the traced rounds' ratios rose
# 0.26, 0.30, 0.34 in turn without this): traced checkouts for this long first, unmeasured.
ZIPKIN_WARMUP_S = 20
# wrk opens its connections all at once, and a keep-alive connection stays with the gunicorn worker
# that accepted it: in about half the runs measured, one worker took all 40 and the other idled,
# which halves the throughput of stub and kit alike (one GIL). Such a run measures the accept race,
# not the code: when the busiest worker served more than this share of the answers, run again.
LOPSIDED = 0.75
MAX_TRIES = 3
UNTRACED = {"TRACING": "off"}
# label, WSGI app (None: the kit), settings; "traced" also gets the Zipkin span endpoint.
TARGETS = (("stub", stack.STUB, {}), ("floor", stack.FLOOR, {}), ("kit", None, UNTRACED), ("traced", None, {}),
           ("bare", "bench.bare:app", UNTRACED))


def measure(application, db_pids: list[int], seconds: float, connections: int, warmup_s: float = WARMUP_S,
            zipkin_pid: int | None = None) -> dict:
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
                cpu.Meter([zipkin_pid] if zipkin_pid else []) as zipkin_cpu, cpu.Steal() as steal:
            row = wrk.run(application.url, seconds, connections)
        if row["busiest_share"] <= LOPSIDED or tries == MAX_TRIES:
            break
    row["app_cpu_s"], row["db_cpu_s"], row["steal"], row["tries"] = app_cpu.seconds, db_cpu.seconds, steal.share, tries
    row["zipkin_cpu_s"] = zipkin_cpu.seconds
    return row


def combine(rows: list[dict]) -> dict:
    """Several rounds of one target as one: totals, then rates and CPU per checkout from the totals."""
    out = dict(rows[-1])
    for key in ("seconds", "checkouts", "initiates", "awaiting", "other", "app_cpu_s", "db_cpu_s", "zipkin_cpu_s", "tries"):
        out[key] = sum(r[key] for r in rows)
    out["busiest_share"] = max(r["busiest_share"] for r in rows)
    out["per_second"] = round(out["checkouts"] / out["seconds"], 1) if out["seconds"] else 0.0
    out["otp_rate"] = round(100 * out["awaiting"] / out["initiates"], 2) if out["initiates"] else None
    out["p50"] = percentile([r["p50"] for r in rows], 50)
    out["steal"] = sum(r["steal"] * r["seconds"] for r in rows) / out["seconds"] if out["seconds"] else 0.0
    out["app_cpu_ms"] = cpu.per_checkout_ms(out["app_cpu_s"], out["checkouts"])
    out["db_cpu_ms"] = cpu.per_checkout_ms(out["db_cpu_s"], out["checkouts"])
    out["zipkin_cpu_ms"] = cpu.per_checkout_ms(out["zipkin_cpu_s"], out["checkouts"])
    return out


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    """a / b, None when either is missing or b is zero."""
    return round(a / b, digits) if a is not None and b else None


def compare(setup: stack.Setup, seconds: float = 15, connections: int = 40, rounds: int = 1,
            warmup_s: float = WARMUP_S, profile: bool = False) -> dict:
    """Stub, floor, kit (tracing off, then on) and kit without metrics under the same wrk load, in `original`;
    ratios between them.

    With rounds > 1 the four alternate, so the machine's slow moments fall
    on all of them. profile=True adds a py-spy run on the kit (after its
    measured runs, so sampling costs none of them): its busiest frames.
    """
    runs: dict[str, list[dict]] = {label: [] for label, _, _ in TARGETS}
    frames: dict[str, list] = {}
    zipkin = rig.zipkin(rig.temp_dir("bench-zipkin"), caps=WORKSHOP_CAPS).start()  # make up's caps
    try:
        with stack.app(setup.mongo_url, setup.redis_url, f"{setup.name}_zipkin_warmup", workers=setup.workers,
                       extra_env={"OTEL_EXPORTER_ZIPKIN_ENDPOINT": zipkin.spans_endpoint}) as application:
            wrk.run(application.url, ZIPKIN_WARMUP_S, connections)
        for round_no in range(rounds):
            for label, wsgi, env in TARGETS:
                if label == "traced":
                    env = {"OTEL_EXPORTER_ZIPKIN_ENDPOINT": zipkin.spans_endpoint}
                with stack.app(setup.mongo_url, setup.redis_url, f"{setup.name}_{label}", wsgi=wsgi,
                               workers=setup.workers, extra_env=env) as application:
                    runs[label].append(measure(application, setup.db_pids, seconds, connections, warmup_s,
                                               zipkin.proc.pid if label == "traced" else None))
                    if profile and label in ("kit", "traced") and round_no == rounds - 1:
                        frames[label] = profiled(application, seconds, connections)
    finally:
        zipkin.stop()
    stub, floor, kit, traced, bare = (combine(runs[label]) for label, _, _ in TARGETS)
    # Per round too: the host's steal changes from minute to minute, and a round's stub and kit run back to back.
    round_ratios = [ratio(k["per_second"], s["per_second"], 2) for k, s in zip(runs["kit"], runs["stub"], strict=True)]
    return {
        "setup": setup.label, "workers": setup.workers, "connections": connections, "rounds": rounds,
        "stub": stub, "floor": floor, "kit": kit, "traced": traced, "bare": bare,
        "throughput_ratio": ratio(kit["per_second"], stub["per_second"]),
        "round_ratios": round_ratios,
        # Tracing at 100 % sampling, exported to Zipkin on the same cores: against the stub, and its own cost.
        "traced_ratio": ratio(traced["per_second"], stub["per_second"]),
        "traced_round_ratios": [ratio(t["per_second"], s["per_second"], 2)
                                for t, s in zip(runs["traced"], runs["stub"], strict=True)],
        "tracing_throughput_cost": ratio(kit["per_second"] - traced["per_second"], kit["per_second"]),
        "tracing_cpu_cost": ratio((traced["app_cpu_ms"] or 0) - (kit["app_cpu_ms"] or 0), kit["app_cpu_ms"]),
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
