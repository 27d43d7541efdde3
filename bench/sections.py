"""The results sections measured on both set-ups (embedded default and real services), with wrk.

Each section starts its own backends per set-up (bench/stack.py) and returns
its Markdown for bench/RESULTS.md.
"""

from __future__ import annotations

import itertools
import math
import os

from . import faults, flatness, overhead, recovery, replicas, stack
from .report import ms, table


def pct(value: float | None, digits: int = 1) -> str:
    """A share (0–1) as a percentage, — when missing."""
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def yes(flag: bool | None) -> str:
    """A verdict cell."""
    return "—" if flag is None else ("**yes**" if flag else "**no**")


def per_setup(measure) -> list:
    """measure(setup) on each set-up in turn, each started for it and stopped after."""
    out = []
    for name in stack.SETUPS:
        with stack.setup(name) as s:
            out.append(measure(s))
    return out


def section_throughput(p: dict) -> str:
    """(h) kit against a bare stub, CPU per checkout, and the cost of metrics, on both set-ups."""
    rows = per_setup(lambda s: overhead.compare(s, p["wrk_s"], p["wrk_c"], p["wrk_rounds"], profile=p["profile"]))
    speed = table(["set-up", "workers", "stub checkouts/s", "kit checkouts/s", "kit / stub", "≥ 0.5?", "per round",
                   "host steal stub / kit", "busiest worker stub / kit",
                   "kit OTP success", "p50 request kit (ms)", "p50 request stub (ms)"],
                  [[r["setup"], r["workers"], r["stub"]["per_second"], r["kit"]["per_second"], r["throughput_ratio"],
                    yes(r["throughput_ratio"] is not None and r["throughput_ratio"] >= 0.5),
                    ", ".join(f"{x:g}" for x in r["round_ratios"] if x is not None),
                    f"{pct(r['stub']['steal'], 0)} / {pct(r['kit']['steal'], 0)}",
                    f"{pct(r['stub']['busiest_share'], 0)} / {pct(r['kit']['busiest_share'], 0)}", f"{r['kit']['otp_rate']}%",
                    ms(r["kit"]["p50"]), ms(r["stub"]["p50"])] for r in rows])
    cpu = table(["set-up", "app CPU kit (ms/checkout)", "app CPU stub (ms/checkout)", "kit / stub", "≤ 2?",
                 "app CPU floor (ms/checkout)", "floor / stub", "kit / floor", "DB CPU kit (ms/checkout)"],
                [[r["setup"], r["kit"]["app_cpu_ms"], r["stub"]["app_cpu_ms"], r["app_cpu_ratio"],
                  yes(r["app_cpu_ratio"] is not None and r["app_cpu_ratio"] <= 2), r["floor"]["app_cpu_ms"],
                  r["floor_cpu_ratio"], r["kit_over_floor_cpu"], r["kit"]["db_cpu_ms"]] for r in rows])
    cost = table(["set-up", "with metrics (checkouts/s)", "without (checkouts/s)", "throughput cost",
                  "app CPU with (ms/checkout)", "without", "CPU cost", "≤ 3 %?"],
                 [[r["setup"], r["kit"]["per_second"], r["bare"]["per_second"], pct(r["metrics_throughput_cost"]),
                   r["kit"]["app_cpu_ms"], r["bare"]["app_cpu_ms"], pct(r["metrics_cpu_cost"]),
                   yes(r["metrics_throughput_cost"] is not None and r["metrics_throughput_cost"] <= 0.03)] for r in rows])
    tracing = table(["set-up", "tracing off (checkouts/s)", "on, to Zipkin (checkouts/s)", "traced / stub", "≥ 0.45?",
                     "per round", "throughput cost", "≤ 10 %?", "app CPU off (ms/checkout)", "on", "CPU cost",
                     "Zipkin CPU (ms/checkout)", "traced OTP success"],
                    [[r["setup"], r["kit"]["per_second"], r["traced"]["per_second"], r["traced_ratio"],
                      yes(r["traced_ratio"] is not None and r["traced_ratio"] >= 0.45),
                      ", ".join(f"{x:g}" for x in r["traced_round_ratios"] if x is not None),
                      pct(r["tracing_throughput_cost"]),
                      yes(r["tracing_throughput_cost"] is not None and r["tracing_throughput_cost"] <= 0.10),
                      r["kit"]["app_cpu_ms"], r["traced"]["app_cpu_ms"], pct(r["tracing_cpu_cost"]),
                      r["traced"]["zipkin_cpu_ms"], f"{r['traced']['otp_rate']}%"] for r in rows])
    text = ("## (h) Throughput against a bare stub, CPU per checkout, the cost of metrics and of tracing\n\n"
            f"wrk (C, `bench/checkout.lua`): {p['wrk_c']} connections, each a back-to-back shopper (initiate, then"
            f" verify with the OTP from the answer), {p['wrk_s']:g} s per server after a {overhead.WARMUP_S:g} s warm-up,"
            f" {p['wrk_rounds']} round(s), mode `original`. Servers, one at a time, each under gunicorn with the kit's"
            " gunicorn.conf.py and the same workers and threads: `bench.stub:app` (Flask; initiate sleeps two 15 ms"
            " writes, verify always succeeds), the kit with tracing off (`TRACING=off`), the kit tracing every request"
            " (100 % sampled) to a real Zipkin on the same cores, as `make up` runs it where Java is installed, and"
            " `bench.bare:app` (the kit with every metric a no-op, tracing off)."
            " Checkouts = verified successes; OTP success = initiates answered `awaiting_otp` / all initiates;"
            " p50 is per request (wrk times requests, initiates and verifies alike). CPU: utime + stime from"
            " /proc of the gunicorn master and workers (app) and of redis-server, FerretDB and PostgreSQL (DB)"
            " over the measured run, per checkout. The embedded set-up keeps payments in SQLite inside the app."
            " Floor: `bench.floor:app`, the stub plus exactly the kit's 7 store calls per checkout through the"
            " kit's own backend (3 in initiate, 4 in verify) and nothing else: floor / stub is what the database"
            " driver alone costs, kit / floor what the kit's own code adds."
            " Host steal: the share of the machine's CPU time its host gave to other guests during the measured"
            " runs (/proc/stat); this machine is a virtual one, and while the host is busy a server gets less"
            " CPU than the same code gets when it is quiet, so rounds alternate the servers. Busiest worker:"
            f" the largest share of answers one gunicorn worker gave (X-Worker-Pid; 50 % is an even spread); a run"
            f" above {overhead.LOPSIDED:.0%} had its connections all land on one worker and was run again"
            f" (at most {overhead.MAX_TRIES} tries; the highest share kept is shown).\n\n"
            + speed + "\n\n" + cpu + "\n\nCost of instrumentation (target ≤ 3 %):\n\n" + cost
            + "\n\nCost of tracing, every request to Zipkin (targets: ≤ 10 % of throughput, ≥ 0.45 of the stub):\n\n"
            + tracing)
    for r in rows:
        for label, frames in (r["frames"] or {}).items():
            text += (f"\n\nWhere the app CPU goes: {label} ({r['setup']}; py-spy, GIL-holding samples, self time):\n\n"
                     + table(["frame", "share"], [[f"`{f}`", f"{share}%"] for f, share in frames]))
    return text


def section_flatness(p: dict) -> str:
    """(i) empty store against one holding many payments, per backend."""
    measured = per_setup(lambda s: flatness.measure(s, p["seed_n"], p["wrk_s"], p["wrk_c"], p["lone"]))
    rows = [[r["setup"], f"{r['n']:,}", r["seed_s"], r["empty"]["per_second"], r["full"]["per_second"],
             r["throughput_ratio"], ms(r["empty"]["lone"]), ms(r["full"]["lone"]), r["latency_ratio"], yes(r["flat"])]
            for r in measured]
    return ("## (i) Flatness: an empty store against a full one\n\n"
            f"One app per backend, measured empty, then given {p['seed_n']:,} succeeded payments (intents and"
            " their charges) written straight into its store (`rig/seed.py`, not through HTTP), then measured"
            f" again. Throughput: wrk checkouts/s, {p['wrk_c']} back-to-back shoppers, {p['wrk_s']:g} s, `original`."
            f" Lone initiate: median of {p['lone']} sequential initiates on one connection, nothing else running."
            " Target: full within 10 % of empty, both ways.\n\n"
            + table(["backend", "stored", "seeding (s)", "empty checkouts/s", "full checkouts/s", "full / empty",
                     "empty lone initiate (ms)", "full lone initiate (ms)", "full / empty", "within 10 %?"], rows))


def section_recovery(p: dict) -> str:
    """(j) seconds from the flip back to `original` until OTP success and ready p95 are back, per set-up."""
    audit_s, max_wait_s = p["recovery"]
    results = []
    for name in stack.SETUPS:
        with stack.setup(name) as s, stack.app(s.mongo_url, s.redis_url, f"{name}_recovery", workers=s.workers) as a:
            results.append((s, recovery.measure(a, s.redis_url, audit_s, 40, 1.0, max_wait_s)))
    summary = table(["set-up", "workers", "last 5 s of audit: OTP success", "ready p95 (ms)", "seconds to recover",
                     "≤ 30 s?"],
                    [[s.label, s.workers, pct(r["before"]["rate"], 0), _p95(r["before"]),
                      r["seconds"] if r["seconds"] is not None else f"> {max_wait_s:g}",
                      yes(r["seconds"] is not None and r["seconds"] <= 30)] for s, r in results])
    text = ("## (j) Recovery after `audit`\n\n"
            f"40 shoppers (`loadtest/traffic.py`, 1 s mean think) in `audit` for {audit_s:g} s, then a flip to"
            " `original` with the load still on. Recovered = a sliding 5 s window with OTP success ≥ 99 % and ready"
            f" p95 ≤ 60 ms (at least {recovery.MIN_EVENTS} checkouts). Source: the shoppers' own checkouts started in"
            " the window: their OTP outcome and the `ready_ms` each initiate answer carries (no OTP = slower than any),"
            " so the figures are `original`'s; the `audit` writes still draining show in writes in flight."
            " \"> deadline\" = more than 5 % got no OTP. Target ≤ 30 s.\n\n"
            + summary)
    for s, r in results:
        shown = [w for w in r["series"] if round(w["t"]) % 5 == 0 or w is r["series"][-1]]
        text += (f"\n\nAfter the flip, {s.label}:\n\n"
                 + table(["t after flip (s)", "checkouts", "OTP success", "ready p95 (ms)", "writes in flight"],
                         [[w["t"], w["otp"], pct(w["rate"], 0), _p95(w), w["inflight"]] for w in shown]))
    return text


def _p95(w: dict):
    return "> deadline" if w.get("p95_over") else w["p95_ms"]


def section_faults(p: dict) -> str:
    """(k) faults: time to fail fast, checkouts meanwhile, time to recover; the drainer's backlog."""
    redis_rows = [faults.redis_fault(kind) for kind in ("stop", "hang")]
    store_rows = [faults.store_fault(kind) for kind in ("stop", "hang")]
    drained = faults.drainer_backlog(p["drain_n"])
    return ("## (k) Faults\n\n"
            f"{faults.SHOPPERS} shoppers ({faults.THINK_S:g} s mean think) check out in `original` on a 2-worker app"
            " while a server is stopped (connections refused) or hung (`SIGSTOP`: connections open, no answer), then"
            " brought back (restart on the same port / `SIGCONT`).\n\n"
            "**Redis** (the embedded store, SQLite, stays up): checkouts started during the 8 s fault; noticed ="
            " seconds until `/ready` answers 503; recovered = seconds from the end of the fault until `/ready`"
            " answers 200 again.\n\n"
            + table(["fault", "/ready 503 after (s)", "checkouts", "OTP success", "p99 checkout (s)",
                     "recovered after (s)"],
                    [[r["fault"], r["noticed_s"], r["checkouts"], pct(r["otp_success"]), r["p99_s"] and round(r["p99_s"], 3),
                      r["recovered_s"]] for r in redis_rows])
            + "\n\n**MongoDB** (FerretDB; Redis stays up): five initiates sent during the fault, one after another;"
              " recovered = seconds from the end of the fault until an initiate gets its OTP again.\n\n"
            + table(["fault", "answers", "median answer (s)", "slowest (s)", "≤ 2 s?", "recovered after (s)"],
                    [[r["fault"], ", ".join(r["answers"]), r["median_s"], r["max_s"], yes(r["max_s"] <= 2.0),
                      r["recovered_s"]] for r in store_rows])
            + f"\n\n**The audit drainer's backlog**: {p['drain_n']:,} `audit-async` payments whose worker died before"
              " copying their outbox (two records each), written straight into the store (`rig/seed.py`); one"
              " sweep copies them all, 500 payments per batch.\n\n"
            + table(["store", "payments", "records copied", "seconds", "records/s"],
                    [[r["store"], f"{r['payments']:,}", f"{r['records']:,}", r["seconds"], f"{r['per_second']:,}"]
                     for r in drained]))


# A room of 300 on paper: every participant a back-to-back shopper with 1 s of think time (the load plan's
# shoppers, loadtest/plan.py) makes at most about 300 checkouts/s; people typing on phones make far fewer.
ROOM = 300
# A Python worker (one GIL) is planned at this share of a core: past it, its answers queue behind each other.
WORKER_CORE = 0.6


def section_replicas(p: dict) -> str:
    """(m) 1, 2 and 3 replicas behind HAProxy: checkouts/s and OTP success, the flip across replicas, a room of 300."""
    seconds, rounds = p["replicas"]
    r = replicas.measure(seconds, p["wrk_c"], rounds, p["flips"])
    rows, flip = r["rows"], r["flip"]
    one, top = rows[0], rows[-1]
    one_core = (one["app_cpu_ms"] or 0) * one["per_second"] / 1000  # cores the lone replica's worker used
    busy = ", ".join(f"{x['cores_busy']:g}" for x in rows)
    app_ms = ", ".join(f"{x['app_cpu_ms']:g}" for x in rows)
    grows = "grows" if (top["app_cpu_ms"] or 0) > 1.1 * (one["app_cpu_ms"] or 0) else "barely changes"
    gains = [(b["replicas"], round(b["per_second"] / a["per_second"] - 1, 2) + 0.0)  # + 0.0: no "-0%"
             for a, b in itertools.pairwise(rows)]
    flat = next((n for n, gain in gains if gain < 0.10), None)
    cpu_ms = sum(top[k] for k in ("app_cpu_ms", "lb_cpu_ms", "db_cpu_ms"))
    cores = os.cpu_count() or 1
    ceiling = round(1000 * cores / cpu_ms) if cpu_ms else None
    app_cores = ROOM * top["app_cpu_ms"] / 1000
    workers = math.ceil(app_cores / WORKER_CORE)
    room_replicas = math.ceil(workers / 2) + 1  # of 2 workers each, one spare
    db_cores = ROOM * top["db_cpu_ms"] / 1000
    body = table(["replicas", "workers", "checkouts/s", "per round", "ratio to 1 replica", "OTP success",
                  "errors", "p50 request (ms)", "busiest replica's share", "app CPU (ms/checkout)",
                  "HAProxy CPU (ms/checkout)", "DB CPU (ms/checkout)", "cores busy", "host steal", "load average"],
                 [[x["replicas"], replicas.WORKERS * x["replicas"], x["per_second"],
                   ", ".join(f"{v:g}" for v in x["per_round"]), x["ratio"], f"{x['otp_rate']}%", x["errors"], ms(x["p50"]),
                   pct(x["busiest_share"], 0), x["app_cpu_ms"], x["lb_cpu_ms"], x["db_cpu_ms"], x["cores_busy"],
                   pct(x["steal"], 0), f"{x['load']:.1f}"] for x in rows])
    flips = table(["replicas", "flips", "samples", "p50 (ms)", "p99 (ms)", "p99, slowest replica per flip (ms)",
                   "max (ms)", "missed (> 3 s)", "≤ 1 s?"],
                  [[top["replicas"], flip["flips"], flip["samples"], ms(flip["p50"]), ms(flip["p99"]),
                    ms(flip["p99_all"]), ms(flip["max"]), flip["missed"],
                    yes(flip["missed"] == 0 and flip["max"] is not None and flip["max"] <= 1.0)]])
    where = (f"from {flat} replicas on" if flat else "not within 3 replicas")
    return ("## (m) Replicas behind HAProxy: scaling out on one machine\n\n"
            f"One room of {max(replicas.COUNTS)} replicas (`rig/replicas.py`: each its own gunicorn,"
            f" {replicas.WORKERS} worker each, sharing one redis-server, one FerretDB, one database and key prefix)"
            f" and an HAProxy (`deploy/haproxy/haproxy.cfg`, its `servers` block listing 1, 2 or all"
            f" {max(replicas.COUNTS)} replicas) per replica count. wrk as in (h): {r['connections']} back-to-back"
            f" shoppers through the load balancer, {r['seconds']:g} s per run after a {replicas.WARMUP_S:g} s warm-up,"
            f" {r['rounds']} round(s) alternating 1, 2, 3 replicas, mode `original`. Replicas not in a balancer's rotation idle"
            " (their sync loops run). One worker per replica: with two, one replica already runs a Python process"
            " per core, and the replica count would measure nothing but the machine. CPU: the replicas' gunicorn"
            " trees, HAProxy, and redis-server + FerretDB + PostgreSQL, per checkout; cores busy = their CPU"
            " seconds per second (wrk's own not counted).\n\n"
            + body
            + f"\n\n**The flip across replicas**: {flip['flips']} flips sent through the load balancer; pollers ask"
              " each replica directly (`/debug/config`, fresh connections) until every worker of every replica"
              " reports the new mode. Delay = the flip's request sent → first answer with the new mode from that"
              " worker (the flip answers only once every worker of the room serves it, app/sync.py `wait_seen`).\n\n"
            + flips
            + f"\n\n**Where it flattens, and why.** Scaling flattens {where} (gain per added replica:"
              f" {', '.join(f'{n}: {g:+.0%}' for n, g in gains)}). A checkout costs this machine about"
              f" {cpu_ms:.1f} ms of CPU at {top['replicas']} replicas: {top['app_cpu_ms']} ms in the app,"
              f" {top['db_cpu_ms']} ms in the databases (FerretDB translating every MongoDB call to SQL, and"
              f" PostgreSQL running it) and {top['lb_cpu_ms']} ms in HAProxy, so {cores} cores top out near"
              f" {ceiling} checkouts/s however many replicas share them. One replica's single worker used"
              f" {one_core:.0%} of a core at {one['per_second']:g} checkouts/s, the databases, HAProxy and wrk most of"
              " the rest; a second replica (a second GIL) can add only what the cores have left, and a third is one more process"
              f" competing for the same {cores} cores with the databases and wrk, while the app's CPU per checkout"
              f" {grows} with the replicas ({app_ms} ms: each process its own"
              " sync loop every 50 ms, its own pools and caches, more context switches). The stack's processes"
              f" kept {busy} of {cores} cores busy (1, 2, 3 replicas): the rest went to wrk and, on a shared"
              " machine, to whatever else ran (the load average column). The databases cost as much CPU per"
              " checkout as the app or more, so on one machine they are the limit before the replicas are. More"
              " replicas on one machine buy failover (a replica killed under load costs only its requests in"
              " flight: tests/test_replicas.py), not throughput.\n\n"
            + f"**A room of {ROOM}, on paper.** {ROOM} shoppers with 1 s think time make at most about {ROOM}"
              f" checkouts/s (people on phones far fewer). App: {ROOM} × {top['app_cpu_ms']} ms ≈ {app_cores:.1f}"
              f" cores of Python, so {workers} workers at {WORKER_CORE:.0%} of a core each: e.g."
              f" {room_replicas} replicas of 2 workers on 2 vCPU each (one more than the load needs, so"
              " losing one keeps the room inside the 400 ms deadline), behind this HAProxy (about"
              f" {ROOM * top['lb_cpu_ms'] / 1000:.2f} core). Redis: each worker sends one pipeline every 50 ms plus"
              f" the board's counts, ≈ {20 * 2 * room_replicas} pipelines/s for the whole room:"
              " one redis-server (one core, well under 1 % of it, 100 MB of memory) — no cluster, no replica needed"
              " for load (a replica only for failover; the kit already rides out a Redis outage in `original`)."
              f" MongoDB: 7 store calls per checkout (3 in initiate, 4 in verify) and 2 audit inserts more in"
              f" `audit` ≈ {ROOM * 9:,} operations/s, nearly all single-document writes by `_id`: one replica-set primary (mongo:7) on 4"
              " vCPU and 8 GB, the working set (the last hour's payments, a few hundred MB) in memory, with two"
              " secondaries for failover; this machine's FerretDB needed"
              f" {top['db_cpu_ms']} ms of CPU per checkout (≈ {db_cores:.0f} cores at {ROOM}/s), a cost of"
              " the translation layer that MongoDB itself does not pay, so size MongoDB by measuring it, not"
              " from this figure.")
