"""The benchmark's own parts: the wrk checkout script against the stub and the floor, the results file's blocks."""

from __future__ import annotations

import sqlite3

import pytest
import requests

from bench import cpu, results, stack, wrk


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
