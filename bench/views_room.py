"""The views of the sections about a room: replicas (m), retries (n) and the soak of `make up` (l): data → template fields."""

from __future__ import annotations

import itertools
import math

from .report import ms, pct, table, yes

# A room of 300 on paper: every participant a back-to-back shopper with 1 s of think time (the load plan's
# shoppers, loadtest/plan.py) makes at most about 300 checkouts/s; people typing on phones make far fewer.
ROOM = 300
# A Python worker (one GIL) is planned at this share of a core: past it, its answers queue behind each other.
WORKER_CORE = 0.6


def replicas(d: dict) -> dict:
    """(m) 1, 2 and 3 replicas, the flip across them, where scaling flattens, and a room of ROOM sized from them."""
    rows, flip = d["rows"], d["flip"]
    one, top = rows[0], rows[-1]
    one_core = (one["app_cpu_ms"] or 0) * one["per_second"] / 1000  # cores the lone replica's worker used
    gains = [(b["replicas"], round(b["per_second"] / a["per_second"] - 1, 2) + 0.0)  # + 0.0: no "-0%"
             for a, b in itertools.pairwise(rows)]
    flat = next((n for n, gain in gains if gain < 0.10), None)
    cpu_ms = sum(top[k] for k in ("app_cpu_ms", "lb_cpu_ms", "db_cpu_ms"))
    cores = d["cores"]
    app_cores = ROOM * top["app_cpu_ms"] / 1000
    workers = math.ceil(app_cores / WORKER_CORE)
    room_replicas = math.ceil(workers / 2) + 1  # of 2 workers each, one spare
    body = table(["replicas", "workers", "checkouts/s", "per round", "ratio to 1 replica", "OTP success",
                  "errors", "p50 request (ms)", "busiest replica's share", "app CPU (ms/checkout)",
                  "HAProxy CPU (ms/checkout)", "DB CPU (ms/checkout)", "cores busy", "host steal", "load average"],
                 [[x["replicas"], d["workers"] * x["replicas"], x["per_second"],
                   ", ".join(f"{v:g}" for v in x["per_round"]), x["ratio"], f"{x['otp_rate']}%", x["errors"], ms(x["p50"]),
                   pct(x["busiest_share"], 0), x["app_cpu_ms"], x["lb_cpu_ms"], x["db_cpu_ms"], x["cores_busy"],
                   pct(x["steal"], 0), f"{x['load']:.1f}"] for x in rows])
    flips = table(["replicas", "flips", "samples", "p50 (ms)", "p99 (ms)", "p99, slowest replica per flip (ms)",
                   "max (ms)", "missed (> 3 s)", "≤ 1 s?"],
                  [[top["replicas"], flip["flips"], flip["samples"], ms(flip["p50"]), ms(flip["p99"]),
                    ms(flip["p99_all"]), ms(flip["max"]), flip["missed"],
                    yes(flip["missed"] == 0 and flip["max"] is not None and flip["max"] <= 1.0)]])
    return {"most": max(d["counts"]), "workers": d["workers"], "connections": d["connections"],
            "seconds": f"{d['seconds']:g}", "warmup_s": f"{d['warmup_s']:g}", "rounds": d["rounds"],
            "table": body, "flips": flip["flips"], "flip_table": flips,
            "where": f"from {flat} replicas on" if flat else "not within 3 replicas",
            "gains": ", ".join(f"{n}: {g:+.0%}" for n, g in gains), "cpu_ms": f"{cpu_ms:.1f}",
            "top_replicas": top["replicas"], "top_app_ms": top["app_cpu_ms"], "top_db_ms": top["db_cpu_ms"],
            "top_lb_ms": top["lb_cpu_ms"], "cores": cores,
            "ceiling": round(1000 * cores / cpu_ms) if cpu_ms else None,
            "one_core": f"{one_core:.0%}", "one_per_second": f"{one['per_second']:g}",
            "grows": "grows" if (top["app_cpu_ms"] or 0) > 1.1 * (one["app_cpu_ms"] or 0) else "barely changes",
            "app_ms": ", ".join(f"{x['app_cpu_ms']:g}" for x in rows),
            "busy": ", ".join(f"{x['cores_busy']:g}" for x in rows),
            "room": ROOM, "app_cores": f"{app_cores:.1f}", "room_workers": workers, "worker_core": f"{WORKER_CORE:.0%}",
            "room_replicas": room_replicas, "lb_cores": f"{ROOM * top['lb_cpu_ms'] / 1000:.2f}",
            "pipelines": 20 * 2 * room_replicas, "mongo_ops": f"{ROOM * 9:,}",
            "db_cores": f"{ROOM * top['db_cpu_ms'] / 1000:.0f}"}


def _span(result: dict) -> str:
    rates = [w["rate"] for w in result["windows"] if w["rate"] is not None]
    if not rates:
        return "—"
    low, high = min(rates), max(rates)
    return f"{100 * low:.0f} %" if round(100 * low) == round(100 * high) else f"{100 * low:.0f}–{100 * high:.0f} %"


def _rate(rate: float | None) -> str:
    return "—" if rate is None else f"{100 * rate:.0f} %"


def _recovered(run: dict, watch_s: float) -> str:
    """Seconds to ≥ 95 %: after the rush, or after the switch to backoff for a run that switched."""
    switch_s = run.get("switch_s")
    seconds = f"> {watch_s - (switch_s or 0):g}" if run["recovered_s"] is None else f"{run['recovered_s']:g}"
    return seconds + (" after the switch" if switch_s is not None else "")


def retries(d: dict) -> dict:
    """(n) the sweep (from quiet, after the rush, bistable) and the fixes after the same rush."""
    swept, watch_s, personas = d["swept"], d["watch_s"], d["personas"]
    n = d["fix_shoppers"]
    unfixed = next(r for r in swept if (r["shoppers"], r["persona"], r["rush"]) == (n, "at once", True))
    fixed = [{"fix": "none: retrying at once", **unfixed}, *d["fixed"]]
    rows = []
    for count in d["counts"]:
        row = [count]
        for persona in personas:
            quiet, after = (next(r for r in swept if (r["shoppers"], r["persona"], r["rush"]) == (count, persona, rush))
                            for rush in (False, True))
            row += [_span(quiet), _span(after), "**yes**" if quiet["holds"] and after["stays_failed"] else "no"]
        rows.append(row)
    header = ["shoppers"] + [f"{persona}: {what}" for persona in personas
                             for what in ("from quiet", "after the rush", "bistable")]
    found = "; ".join(f"{persona}: " + (", ".join(map(str, ns)) + " shoppers" if ns else "none")
                      for persona, ns in d["bistable"].items())
    window_heads = [f"{w['from']}–{w['from'] + d['window_s']} s" for w in fixed[0]["windows"]]
    fix_rows = [[f["fix"], *[_rate(w["rate"]) for w in f["windows"]], _recovered(f, watch_s),
                 max(int(w["inflight"]) for w in f["windows"]), max(w["retries_per_s"] for w in f["windows"])]
                for f in fixed]
    return {"think_s": f"{d['think_s']:g}", "rush_users": d["rush_users"], "rush_s": d["rush_s"],
            "watch_s": f"{watch_s:g}", "contention_ms": d["contention_ms"], "backoff_cap_s": f"{d['backoff_cap_s']:g}",
            "backoff_base_s": f"{d['backoff_base_s']:g}", "window_s": d["window_s"], "sweep_table": table(header, rows),
            "holds": f"{d['holds']:.0%}", "failed": f"{d['failed']:.0%}", "found": found, "fix_shoppers": n,
            "recovery_window_s": d["recovery_window_s"], "recovered": f"{d['recovered']:.0%}",
            "fix_table": table(["fix", *window_heads, "seconds to ≥ 95 %", "most writes in flight", "most retries/s"],
                               fix_rows)}


def soak(d: dict) -> dict:
    """(l) per minute (at most about 15 rows shown), each worker's growth, the two verdicts."""
    r, info, grow = d["run"], d["info"], d["growth"]
    step = max(1, len(r["samples"]) // 15)
    shown = [s for i, s in enumerate(r["samples"]) if i % step == 0 or i == len(r["samples"]) - 1]
    pids = sorted(r["baseline"])
    rows = [[s["minute"], s["checkouts"], "—" if s["rate"] is None else f"{s['rate']:.1f}%",
             "—" if s["p95"] is None else f"{s['p95'] * 1000:.0f}"]
            + [f"{s['rss'][p]:.1f}" if s["rss"].get(p) else "gone" for p in pids] for s in shown]
    return {"minutes": f"{r['minutes']:g}", "users": r["users"], "think": f"{r['think']:g}", "date": info["date"],
            "cores": info["cores"], "load_at_start": info["load_at_start"],
            "minutes_table": table(["minute", "checkouts", "success", "p95 checkout (ms)"]
                                   + [f"worker {p} RSS" for p in pids], rows),
            "growth_table": table(["worker", "RSS start (MiB)", "RSS end (MiB)", "change (MiB)", "second half (MiB/hour)"],
                                  [[g["pid"], f"{g['start']:.1f}", "gone" if g["end"] is None else f"{g['end']:.1f}",
                                    "—" if g["change"] is None else f"{g['change']:+.1f}",
                                    "—" if g["per_hour"] is None else f"{g['per_hour']:+.1f}"] for g in grow]),
            "all_ok": "yes" if d["all_ok"] else "no", "success": r["success"], "total": r["total"],
            "otp_unavailable": r["otp_unavailable"], "errors": r["errors"],
            "error_kinds": f": {r['error_kinds']}" if r["error_kinds"] else "",
            "flat": "yes" if d["flat"] else "no", "flat_mib_per_hour": f"{d['flat_mib_per_hour']:g}"}


VIEWS = {"replicas": replicas, "retries": retries, "soak": soak}
