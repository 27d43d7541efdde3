"""Describing the machine and formatting results for bench/RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import statistics


def _proc_field(path: str, name: str) -> str | None:
    """The value after `name:` on its line of a /proc file such as /proc/meminfo, None if absent."""
    try:
        with open(path) as lines:
            return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(name)), None)
    except OSError:
        return None


def machine() -> dict:
    """Cores, RAM, CPU model, Python, OS and the load when the run started."""
    cpu = _proc_field("/proc/cpuinfo", "model name") or "unknown"
    mem_kib = _proc_field("/proc/meminfo", "MemTotal")
    ram = f"{int(mem_kib.split()[0]) / 1024 / 1024:.1f} GiB" if mem_kib else "unknown"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0, 0, 0)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "ram": ram,
        "cpu": cpu,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "load_at_start": " / ".join(f"{x:.2f}" for x in load),
    }


def percentile(values: list[float], q: int) -> float | None:
    """The q-th percentile (1–99), None for an empty list."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def ms(seconds: float | None) -> str:
    """Seconds as a rounded millisecond figure."""
    return "—" if seconds is None else f"{seconds * 1000:.0f}"


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table; numbers right-aligned."""
    def cell(v) -> str:
        return "—" if v is None else str(v)

    aligns = ["---:" if rows and isinstance(rows[0][i], (int, float)) else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(aligns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
