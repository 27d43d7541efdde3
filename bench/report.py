"""Describing the machine and formatting results for bench/RESULTS.md: cells, tables, the templates' fill, the percentile."""

from __future__ import annotations

import datetime
import functools
import math
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).resolve().parent / "templates"


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


def percentile(values: Iterable[float], q: int) -> float | None:
    """The q-th percentile (1–99) of `values` in any order, None when there are none.

    Linear between the two nearest ranks, as statistics.quantiles(method="inclusive") and
    NumPy's default: the median of an even count is the mean of the middle two. An infinite
    value (a checkout that never got its OTP) may be among them: a percentile that reaches
    it is infinite, never NaN.
    """
    data = sorted(values)
    if not data:
        return None
    if len(data) == 1:
        return data[0]
    # statistics.quantiles' own arithmetic, so each figure is the same to the last bit.
    j, delta = divmod(q * (len(data) - 1), 100)
    if data[j + 1] == math.inf:  # inf × 0 is NaN
        return data[j + 1] if delta else data[j]
    return (data[j] * (100 - delta) + data[j + 1] * delta) / 100


@functools.cache
def _template(name: str) -> Template:
    # A template file ends in a newline, as text files do; the Markdown it stands for does not.
    return Template((TEMPLATES / f"{name}.md").read_text().rstrip("\n"))


def fill(template: str, /, **fields) -> str:
    """bench/templates/TEMPLATE.md with `fields`; KeyError when one is missing, so no `${…}` reaches the file."""
    return _template(template).substitute(fields)


def pct(value: float | None, digits: int = 1) -> str:
    """A share (0–1) as a percentage, — when missing."""
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def yes(flag: bool | None) -> str:
    """A verdict cell."""
    return "—" if flag is None else ("**yes**" if flag else "**no**")


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
