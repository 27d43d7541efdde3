"""The views of sections (h)–(n) and the soak (l), measured on set-ups of their own: data → template fields."""

from __future__ import annotations

from .report import fill, ms, pct, table, yes


def throughput(d: dict) -> dict:
    """(h) kit against stub, CPU per checkout, the cost of metrics and of tracing; py-spy's frames when profiled."""
    rows = d["rows"]
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
    profiles = "".join(fill("throughput_profile", label=label, setup=r["setup"],
                            table=table(["frame", "share"], [[f"`{f}`", f"{share}%"] for f, share in frames]))
                       for r in rows for label, frames in (r["frames"] or {}).items())
    return {"wrk_c": d["wrk_c"], "wrk_s": f"{d['wrk_s']:g}", "warmup_s": f"{d['warmup_s']:g}",
            "wrk_rounds": d["wrk_rounds"], "lopsided": f"{d['lopsided']:.0%}", "max_tries": d["max_tries"],
            "speed_table": speed, "cpu_table": cpu, "cost_table": cost, "tracing_table": tracing, "profiles": profiles}


def flatness(d: dict) -> dict:
    """(i) each backend empty and full."""
    rows = [[r["setup"], f"{r['n']:,}", r["seed_s"], r["empty"]["per_second"], r["full"]["per_second"],
             r["throughput_ratio"], ms(r["empty"]["lone"]), ms(r["full"]["lone"]), r["latency_ratio"], yes(r["flat"])]
            for r in d["rows"]]
    return {"seed_n": f"{d['seed_n']:,}", "wrk_c": d["wrk_c"], "wrk_s": f"{d['wrk_s']:g}", "lone": d["lone"],
            "table": table(["backend", "stored", "seeding (s)", "empty checkouts/s", "full checkouts/s", "full / empty",
                            "empty lone initiate (ms)", "full lone initiate (ms)", "full / empty", "within 10 %?"],
                           rows)}


def _p95(w: dict):
    return "> deadline" if w.get("p95_over") else w["p95_ms"]


def recovery(d: dict) -> dict:
    """(j) the seconds to recover per set-up, then each set-up's windows after the flip (every 5 s, and the last)."""
    max_wait_s = d["max_wait_s"]
    results = d["setups"]
    summary = table(["set-up", "workers", "last 5 s of audit: OTP success", "ready p95 (ms)", "seconds to recover",
                     "≤ 30 s?"],
                    [[s["label"], s["workers"], pct(s["before"]["rate"], 0), _p95(s["before"]),
                      s["seconds"] if s["seconds"] is not None else f"> {max_wait_s:g}",
                      yes(s["seconds"] is not None and s["seconds"] <= 30)] for s in results])
    series = ""
    for s in results:
        shown = [w for w in s["series"] if round(w["t"]) % 5 == 0 or w is s["series"][-1]]
        series += fill("recovery_series", label=s["label"], table=table(
            ["t after flip (s)", "checkouts", "OTP success", "ready p95 (ms)", "writes in flight"],
            [[w["t"], w["otp"], pct(w["rate"], 0), _p95(w), w["inflight"]] for w in shown]))
    return {"audit_s": f"{d['audit_s']:g}", "min_events": d["min_events"], "table": summary, "series": series}


def faults(d: dict) -> dict:
    """(k) Redis and the store stopped and hung; the drainer's backlog."""
    return {"shoppers": d["shoppers"], "think_s": f"{d['think_s']:g}", "drain_n": f"{d['drain_n']:,}",
            "redis_table": table(["fault", "/ready 503 after (s)", "checkouts", "OTP success", "p99 checkout (s)",
                                  "recovered after (s)"],
                                 [[r["fault"], r["noticed_s"], r["checkouts"], pct(r["otp_success"]),
                                   r["p99_s"] and round(r["p99_s"], 3), r["recovered_s"]] for r in d["redis"]]),
            "store_table": table(["fault", "answers", "median answer (s)", "slowest (s)", "≤ 2 s?", "recovered after (s)"],
                                 [[r["fault"], ", ".join(r["answers"]), r["median_s"], r["max_s"], yes(r["max_s"] <= 2.0),
                                   r["recovered_s"]] for r in d["store"]]),
            "drained_table": table(["store", "payments", "records copied", "seconds", "records/s"],
                                   [[r["store"], f"{r['payments']:,}", f"{r['records']:,}", r["seconds"],
                                     f"{r['per_second']:,}"] for r in d["drained"]])}


VIEWS = {"throughput": throughput, "flatness": flatness, "recovery": recovery, "faults": faults}
