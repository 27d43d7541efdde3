"""The results sections measured on both set-ups (embedded default and real services), with wrk.

Each section starts its own backends per set-up (bench/stack.py) and returns
its Markdown for bench/RESULTS.md.
"""

from __future__ import annotations

from . import faults, flatness, overhead, recovery, stack
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
    text = ("## (h) Throughput against a bare stub, CPU per checkout, the cost of metrics\n\n"
            f"wrk (C, `bench/checkout.lua`): {p['wrk_c']} connections, each a back-to-back shopper (initiate, then"
            f" verify with the OTP from the answer), {p['wrk_s']:g} s per server after a {overhead.WARMUP_S:g} s warm-up,"
            f" {p['wrk_rounds']} round(s), mode `original`. Servers, one at a time, each under gunicorn with the kit's"
            " gunicorn.conf.py and the same workers and threads: `bench.stub:app` (Flask; initiate sleeps two 15 ms"
            " writes, verify always succeeds), the kit, and `bench.bare:app` (the kit with every metric a no-op)."
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
            + speed + "\n\n" + cpu + "\n\nCost of instrumentation (target ≤ 3 %):\n\n" + cost)
    for r in rows:
        if r["frames"]:
            text += (f"\n\nWhere the kit's app CPU goes ({r['setup']}; py-spy, GIL-holding samples, self time):\n\n"
                     + table(["frame", "share"], [[f"`{f}`", f"{share}%"] for f, share in r["frames"]]))
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
