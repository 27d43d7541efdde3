"""The views of sections (a)–(g), measured on one app: a section's data → its template's fields (bench/render.py)."""

from __future__ import annotations

from loadtest.contention import Row
from loadtest.contention import table as contention_table

from .report import fill, ms, table


def headline(d: dict) -> dict:
    """(a) both modes' rows; the HTTP errors, when any, in a paragraph of their own."""
    rows = d["rows"]
    body = table(["mode", "workers", "seconds", "total", "success", "failed", "rate", "original demo"],
                 [[r["mode"], r["workers"], r["seconds"], r["total"], r["success"], r["failed"], f"{r['rate']}%",
                   "100%" if r["mode"] == "original" else "≈80%"] for r in rows])
    errors = {r["mode"]: r["error_kinds"] for r in rows if r["error_kinds"]}
    return {"headline_s": f"{d['headline_s']:g}", "table": body,
            "errors": fill("headline_errors", errors=errors) if errors else ""}


def contention(d: dict) -> dict:
    """(b) the contention tool's own table."""
    return {"table": contention_table([Row(**r) for r in d["rows"]])}


def capacity(d: dict) -> dict:
    """(c) payments/s and checkout times against the model's bound."""
    body = table(["workers", "payments/s", "OTP success", "p50 checkout (ms)", "p99 checkout (ms)",
                  "model bound (/s)", "achieved / bound"],
                 [[r["workers"], r["per_second"], f"{r['rate']}%", ms(r["p50"]), ms(r["p99"]), int(r["bound"]),
                   f"{r['ratio']:.2g}"] for r in d["rows"]])
    return {"capacity_s": d["capacity_s"], "table": body}


def probes(d: dict) -> dict:
    """(d) the flip's delays and (e) the scrape's times."""
    flip, scrape = d["flip"], d["scrape"]
    return {"flips": flip["flips"],
            "flip_table": table(["workers", "samples", "p50 (ms)", "p99 (ms)", "max (ms)", "missed (> 3 s)"],
                                [[flip["workers"], flip["samples"], ms(flip["p50"]), ms(flip["p99"]),
                                  ms(flip["max"]), flip["missed"]]]),
            "scrape_table": table(["scrapes", "p50 (ms)", "p99 (ms)", "size (bytes)", "samples"],
                                  [[scrape["scrapes"], ms(scrape["p50"]), ms(scrape["p99"]), scrape["bytes"],
                                    scrape["samples"]]])}


def dynamics(d: dict) -> dict:
    """(f) the success curve, the collapse and its tail, the search for ≈80 %."""
    users = d["curve_users"]
    rows = []
    for mode in ("original", "audit"):
        for think in (0.0, 1.0):
            points = {r["workers"]: r for r in d["curve"] if r["mode"] == mode and r["think"] == think}
            rows.append([mode, "none" if not think else f"{think:g} s"]
                        + [f"{points[u]['rate']:.0f}% ({points[u]['total']})" for u in users])
    rush_users, rush_s, quiet_s = d["rush"]
    best = d["best"]
    return {"curve_s": d["curve_s"], "curve_table": table(["mode", "think"] + [f"{u} users" for u in users], rows),
            "rush_users": rush_users, "rush_s": f"{rush_s:g}", "quiet_s": f"{quiet_s:g}",
            "collapse_table": table(["t (s)", "users", "finished", "success", "writes in flight"],
                                    [[r["t"], r["users"], r["finished"], "—" if r["rate"] is None else f"{r['rate']}%",
                                      r["inflight"]] for r in d["series"]]),
            "search_table": table(["users", "think (s)", "contention_ms_per_write", "checkouts", "success"],
                                  [[r["users"], r["think"], r["c"], r["total"], f"{r['rate']}%"] for r in d["found"]]),
            "best_users": best["users"], "best_think": f"{best['think']:g}", "best_c": best["c"],
            "best_rate": best["rate"]}


def soak_short(d: dict) -> dict:
    """(g) the short soak's totals and each worker's memory."""
    r = d["run"]
    rss = table(["worker pid", "RSS start (MiB)", "RSS end (MiB)", "change"],
                [[pid, f"{a:.1f}", f"{b:.1f}", f"{b - a:+.1f}"] for pid, a, b in r["rss"] if a and b])
    return {"users": d["users"], "minutes": f"{d['seconds'] / 60:g}", "think": f"{d['think']:g}",
            "table": table(["checkouts", "success", "OTP unavailable", "HTTP/connection errors", "payments/s",
                            "p50 (ms)", "p99 (ms)"],
                           [[r["total"], r["success"], r["otp_unavailable"], r["errors"], r["per_second"], ms(r["p50"]),
                             ms(r["p99"])]]),
            "error_kinds": fill("error_kinds", error_kinds=r["error_kinds"]) if r["error_kinds"] else "",
            "rss_table": rss}


VIEWS = {"headline": headline, "contention": contention, "capacity": capacity, "probes": probes,
         "dynamics": dynamics, "soak_short": soak_short}
