"""The benchmark's own parts: the wrk checkout script against the stub and the floor, the results file's blocks,
the renderer (each section from its data, as the benchmark wrote it), the one percentile."""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
from pathlib import Path

import pytest
import requests

from bench import cpu, render, report, results, retries, stack, wrk


@pytest.mark.services
def test_wrk_script_checks_out_against_the_stub():
    with stack.app(None, "", "smoke", wsgi=stack.STUB, workers=1) as stub:
        with cpu.Meter([stub.service.proc.pid]) as used, cpu.Steal() as steal:
            row = wrk.run(stub.url, seconds=2, connections=4)
    assert row["checkouts"] > 0 and row["other"] == 0, row
    assert row["otp_rate"] == 100.0
    # Every verify used an OTP from an initiate answer: checkouts never outnumber initiates.
    assert row["checkouts"] <= row["initiates"] <= row["checkouts"] + 4
    assert used.seconds > 0
    assert row["busiest_share"] == 1.0, "one worker: it gave every answer (counted by X-Worker-Pid)"
    assert 0 <= steal.share < 1


@pytest.mark.services
def test_the_floor_makes_the_kits_store_calls_on_its_store():
    with stack.app(None, "", "floor", wsgi=stack.FLOOR, workers=1) as floor:
        named = requests.get(f"{floor.url}/health", timeout=5).headers.get("X-Worker-Pid")
        row = wrk.run(floor.url, seconds=2, connections=4)
        stored = sqlite3.connect(floor.sqlite_path).execute(
            "SELECT COUNT(*), SUM(status = 'succeeded') FROM payment_intents").fetchone()
    assert row["checkouts"] > 0 and row["other"] == 0 and row["otp_rate"] == 100.0, row
    assert named and named.isdigit(), "the floor names its worker (the benchmark counts answers per worker)"
    # Every checkout went through the store: its intent stored, then charged once.
    assert stored[0] >= row["initiates"] and stored[1] >= row["checkouts"], (stored, row)


@pytest.mark.unit
def test_a_section_replaces_only_its_own_block():
    text = "# Results\n\n" + results.wrap("a", "old a") + "\n\n" + results.wrap("soak", "the soak")
    text = results.replace(text, "a", "new a")
    text = results.replace(text, "b", "new b")
    assert results.block(text, "a") == results.wrap("a", "new a")
    assert text.index("new b") < text.index("the soak"), "new sections go before the soak block"
    assert results.replace(text, "soak", "soak 2").count("<!-- soak -->") == 1


def _run(n: int, persona: str, rush: bool, good: bool, watch: int = 60) -> dict:
    """A run of bench.retries as measured: a sample every 2 s, 3 tries each, all issued or all timed out."""
    samples, ok, timeout, tried_again = [], 0, 0, 0
    for t in range(0, watch + 1, 2):
        ok, timeout, tried_again = (ok + 3, timeout, tried_again) if good else (ok, timeout + 3, tried_again + 2)
        samples.append({"t": float(t), "ok": ok, "timeout": timeout, "inflight": 2.0 if good else 300.0,
                        "retries": tried_again})
    return {"shoppers": n, "persona": persona, "rush": rush, "mode": "audit", "knobs": {}, "watch_s": watch,
            "samples": samples, "windows": retries.windows(samples, watch),
            "recovered_s": retries.recovered_after(samples)}


@pytest.mark.unit
def test_the_retries_section_finds_the_bistable_range_and_the_recovery_times():
    swept = [_run(2, "at once", False, True), _run(2, "at once", True, True),
             _run(3, "at once", False, True), _run(3, "at once", True, False),
             _run(4, "at once", False, False), _run(4, "at once", True, False)]
    assert retries.bistable_range(swept, "at once") == [3]  # 2 recovers after the rush, 4 fails from quiet
    assert [w["rate"] for w in swept[3]["windows"]] == [0.0, 0.0] and swept[3]["recovered_s"] is None
    assert swept[0]["recovered_s"] == 10.0  # the first full 10 s window
    p = {"retries_counts": [2, 3, 4], "retries_personas": ["at once"], "retries_watch_s": 60,
         "retries_fix_shoppers": 3, "retries_contention_ms": 20}
    text = render.section("retries", retries.data(p, swept, [{"fix": label, **_run(3, persona, True, True)}
                                                             for label, persona, *_ in retries.FIXES]))
    assert "| 3 | 100 % | 0 % | **yes** |" in text and "at once: 3 shoppers." in text
    assert "after the same rush with 3 shoppers retrying at once" in text
    assert "`contention_ms_per_write` at 20 ms" in text
    assert "| none: retrying at once | 0 % | 0 % | > 60 | 300 | 1.0 |" in text
    assert "| backoff with jitter | 100 % | 100 % | 10 | 2 | 0.0 |" in text


@pytest.mark.unit
def test_the_one_percentile_is_statistics_inclusive_quantiles_and_survives_an_infinite_value():
    rng = random.Random(7)
    for n in (2, 3, 10, 51, 200):
        values = [rng.uniform(0.001, 2.0) for _ in range(n)]
        expected = statistics.quantiles(values, n=100, method="inclusive")
        assert [report.percentile(values, q) for q in range(1, 100)] == expected
    assert report.percentile([], 50) is None and report.percentile([0.3], 99) == 0.3
    assert report.percentile([4, 1, 3, 2], 50) == 2.5, "an even count: the mean of the middle two"
    late = [10.0] * 18 + [float("inf")] * 2  # two checkouts of twenty never got their OTP
    assert report.percentile(late, 50) == 10.0 and report.percentile(late, 99) == float("inf")


# Each section's data as its measuring function returns it (and, for the sections measured alone, the date and
# load of their stamp), and what the benchmark wrote from it: a copy of bench/RESULTS.md as it was, kept here so
# that a new `make bench` run, which rewrites that file with new figures, leaves these tests as they are.
SAMPLE = json.loads((Path(__file__).parent / "data" / "bench_sample.json").read_text())
WRITTEN = (Path(__file__).parent / "data" / "bench_sample.md").read_text()
SECTIONS = ["headline", "contention", "capacity", "probes", "dynamics", "throughput", "flatness", "recovery", "faults",
            "replicas", "retries", "soak"]


@pytest.mark.unit
@pytest.mark.parametrize("name", SECTIONS)
def test_each_section_renders_from_its_data_exactly_as_the_results_file_holds_it(name):
    data = dict(SAMPLE[name])
    stamp = data.pop("stamp", None)
    text = render.section(name, data) + (render.stamp(name, stamp, quick=False) if stamp else "")
    assert results.wrap(name, text) == results.block(WRITTEN, name)


@pytest.mark.unit
def test_the_header_and_the_end_render_as_the_results_file_holds_them():
    held = WRITTEN
    info = SAMPLE["header"]
    assert held.startswith(render.header(info["machine"], info["workers"], info["quick"]) + "\n\n<!-- headline -->")
    assert results.wrap("end", render.end(**SAMPLE["end"])) == results.block(held, "end")
    quick = render.header(info["machine"], info["workers"], quick=True)
    assert "`python -m bench.run --quick`" in quick and quick.endswith("a smoke test of the benchmark, not results.")


@pytest.mark.unit
def test_the_optional_paragraphs_appear_only_with_their_data():
    short = SAMPLE["soak_short"]
    assert "Errors by kind" not in render.section("soak_short", short)
    failing = {**short, "run": {**short["run"], "error_kinds": {"ConnectionError": 2}}}
    assert "\n\nErrors by kind: {'ConnectionError': 2}\n\n| worker pid |" in render.section("soak_short", failing)
    rows = [{**SAMPLE["throughput"]["rows"][0], "frames": {"the kit": [["json.dumps", 12.5]]}}]
    profiled = render.section("throughput", {**SAMPLE["throughput"], "rows": rows})
    assert profiled.endswith("Where the app CPU goes: the kit (SQLite + redis-server; py-spy, GIL-holding samples,"
                             " self time):\n\n| frame | share |\n|---|---|\n| `json.dumps` | 12.5% |")
