"""(n) Retries: the same shoppers in `audit`, started from quiet and after a rush.

A metastable failure outlives its trigger because something sustains it; here, shoppers who
"try again" at once until it works. A load is bistable when the same shoppers hold ≥ 90 % OTP
success from quiet and stay ≤ 20 % after a rush, in every window of the watch. The fixes are
measured after the same rush: how long until the room is back to ≥ 95 %.

Every run sets the contention knob the section names (`retries_contention_ms`): at the default
50 ms the model has no bistable range (docs/contract.md#retries-and-metastability).
"""

from __future__ import annotations

import sys
import threading
import time

from loadtest import traffic

# The rush, and what "holds" and "stays failed" mean, are the rehearsal's own: the benchmark and
# `make rehearse` measure the same range.
from loadtest.bistable import FAILED, HOLDS, RUSH_S, RUSH_USERS
from loadtest.checkout import BACKOFF_BASE_S, BACKOFF_CAP_S
from rig import probe

from . import stack

THINK_S, RECOVERED = 1.0, 0.95
SAMPLE_S, WINDOW_S, RECOVERY_WINDOW_S = 2.0, 30, 10
# persona: (tries per checkout, 0 = until it works; backoff)
PERSONAS = {"plain": (1, False), "at once": (0, False), "backoff": (0, True)}
# After the same rush, the same shoppers: without retries, and each fix (label, persona, mode, knobs, and the
# seconds after the rush at which the shoppers switch to backoff, as the console's persona switch does).
# The row without a fix (retrying at once, `audit`) is the sweep's own.
SWITCH_S = 60
FIXES = [("no retries (plain shoppers)", "plain", "audit", {}, None),
         ("backoff with jitter", "backoff", "audit", {}, None),
         (f"switched to backoff {SWITCH_S} s after the rush", "at once", "audit", {}, SWITCH_S),
         ("loud failures: 503 + Retry-After", "at once", "audit", {"silent_failures": False}, None),
         ("`audit-async`", "at once", "audit-async", {}, None)]


def _sample(url: str) -> dict:
    families = probe.scrape(url)
    otp = "paygate_otp_generation_total"
    return {"ok": probe.total(families, otp, result="success"), "timeout": probe.total(families, otp, result="timeout"),
            "inflight": probe.total(families, "paygate_inflight_writes"),
            "retries": probe.total(families, "paygate_checkout_retries_total")}


def _rate(a: dict, b: dict) -> float | None:
    ok, timeout = b["ok"] - a["ok"], b["timeout"] - a["timeout"]
    return ok / (ok + timeout) if ok + timeout else None


def run(shoppers: int, persona: str, rush: bool, watch_s: float, mode: str = "audit", knobs: dict | None = None,
        switch_s: float | None = None) -> dict:
    """One run on a fresh `make up` set-up: the samples, per-window success, and seconds to ≥ 95 % (after the rush,
    or with `switch_s`, after the shoppers switched to backoff that many seconds after it)."""
    tries, backoff = PERSONAS[persona]
    switched = threading.Event()
    with stack.setup("embedded") as s, stack.app(s.mongo_url, s.redis_url, "retries", workers=s.workers) as app:
        if knobs:
            app.patch_knobs(**knobs)
        app.set_mode(mode, actor="bench")
        stop = threading.Event()
        rush_s = RUSH_S if rush else 0.0
        crowds = [(shoppers, rush_s + watch_s)] + ([(RUSH_USERS, rush_s)] if rush else [])
        threads = [threading.Thread(target=traffic.run, daemon=True,
                                    args=(app.url, n, seconds, THINK_S, traffic.Tally(), stop, tries,
                                          lambda: backoff or switched.is_set()))
                   for n, seconds in crowds]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        samples = []
        try:
            while (t := time.monotonic() - started) < rush_s + watch_s:
                samples.append({"t": round(t - rush_s, 1), **_sample(app.url)})
                if switch_s is not None and t - rush_s >= switch_s:
                    switched.set()
                time.sleep(SAMPLE_S)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
            app.set_mode("original", actor="bench")
            probe.no_writes_in_flight(app.url, every=0.2)
    return {"shoppers": shoppers, "persona": persona, "rush": rush, "mode": mode, "knobs": knobs or {},
            "watch_s": watch_s, "switch_s": switch_s, "samples": samples, "windows": windows(samples, watch_s),
            "recovered_s": recovered_after(samples, since=switch_s or 0.0)}


def windows(samples: list[dict], watch_s: float) -> list[dict]:
    """OTP success and most writes in flight per WINDOW_S seconds of the watch (t ≥ 0)."""
    out = []
    for start in range(0, int(watch_s), WINDOW_S):
        inside = [s for s in samples if start <= s["t"] <= start + WINDOW_S]
        if len(inside) >= 2:
            out.append({"from": start, "rate": _rate(inside[0], inside[-1]),
                        "inflight": max(s["inflight"] for s in inside),
                        "retries_per_s": round((inside[-1]["retries"] - inside[0]["retries"])
                                               / max(inside[-1]["t"] - inside[0]["t"], 1e-9), 1)})
    return out


def recovered_after(samples: list[dict], since: float = 0.0) -> float | None:
    """Seconds after `since` (s after the rush) until a RECOVERY_WINDOW_S window holds ≥ 95 % on at least 5 tries;
    None if never."""
    watched = [{**s, "t": round(s["t"] - since, 1)} for s in samples if s["t"] >= since]
    for i, late in enumerate(watched):
        early = next((s for s in reversed(watched[:i]) if late["t"] - s["t"] >= RECOVERY_WINDOW_S), None)
        if early is None:
            continue
        tries = (late["ok"] - early["ok"]) + (late["timeout"] - early["timeout"])
        if tries >= 5 and _rate(early, late) >= RECOVERED:
            return late["t"]
    return None


def holds(result: dict) -> bool:
    """Every window of the watch at ≥ 90 %."""
    return bool(result["windows"]) and all(w["rate"] is not None and w["rate"] >= HOLDS for w in result["windows"])


def stays_failed(result: dict) -> bool:
    """Every window of the watch at ≤ 20 %."""
    return bool(result["windows"]) and all(w["rate"] is not None and w["rate"] <= FAILED for w in result["windows"])


def _progress(line: str) -> None:
    # stderr, flushed, as bench/run.py's steps: an hour-long run shows where it is even when redirected.
    print(line, file=sys.stderr, flush=True)


def sweep(counts: list[int], personas: list[str], watch_s: float, contention_ms: int, log=_progress) -> list[dict]:
    """Every count × persona, from quiet and after the rush, at `contention_ms` per write in flight."""
    results = []
    for persona in personas:
        for n in counts:
            for rush in (False, True):
                log(f"    {n} shoppers, {persona}, {'after the rush' if rush else 'from quiet'}")
                results.append(run(n, persona, rush, watch_s, knobs={"contention_ms_per_write": contention_ms}))
    return results


def fixes(shoppers: int, watch_s: float, contention_ms: int, log=_progress) -> list[dict]:
    """After the same rush, the same shoppers without retries, then with each fix."""
    out = []
    for label, persona, mode, knobs, switch_s in FIXES:
        log(f"    fix: {label}")
        out.append({"fix": label, **run(shoppers, persona, True, watch_s, mode,
                                         {"contention_ms_per_write": contention_ms, **knobs}, switch_s)})
    return out


def bistable_range(results: list[dict], persona: str) -> list[int]:
    """The shopper counts at which `persona` holds from quiet and stays failed after the rush."""
    by = {(r["shoppers"], r["rush"]): r for r in results if r["persona"] == persona}
    return sorted(n for n, rush in by if not rush and (n, True) in by
                  and holds(by[n, False]) and stays_failed(by[n, True]))


def measure(p: dict, log=_progress) -> dict:
    """(n) the sweep and the fixes, measured: the section's data for bench/render.py."""
    c = p["retries_contention_ms"]
    swept = sweep(p["retries_counts"], p["retries_personas"], p["retries_watch_s"], c, log)
    return data(p, swept, fixes(p["retries_fix_shoppers"], p["retries_watch_s"], c, log))


def data(p: dict, swept: list[dict], fixed: list[dict]) -> dict:
    """The section's data from the sweep's runs and the fixes' runs (fixes() order): each run's verdicts,
    the bistable range per persona, and the constants the text names."""
    return {"counts": p["retries_counts"], "personas": p["retries_personas"], "watch_s": p["retries_watch_s"],
            "fix_shoppers": p["retries_fix_shoppers"], "contention_ms": p["retries_contention_ms"],
            "swept": [{**r, "holds": holds(r), "stays_failed": stays_failed(r)} for r in swept], "fixed": fixed,
            "bistable": {persona: bistable_range(swept, persona) for persona in p["retries_personas"]},
            "think_s": THINK_S, "rush_users": RUSH_USERS, "rush_s": RUSH_S,
            "backoff_cap_s": BACKOFF_CAP_S, "backoff_base_s": BACKOFF_BASE_S, "window_s": WINDOW_S,
            "holds": HOLDS, "failed": FAILED, "recovery_window_s": RECOVERY_WINDOW_S, "recovered": RECOVERED}
