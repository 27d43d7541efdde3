"""CPU time of process trees, from /proc, and where it goes (py-spy).

A process tree's CPU is the sum over its live processes of utime + stime +
cutime + cstime: a child that exits (a PostgreSQL backend whose connection
closed) moves its time into its parent's cutime/cstime once reaped, so the
sum neither loses nor counts it twice. Threads are included in their
process's figures.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
from pathlib import Path

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def proc_text(pid: int, name: str) -> str | None:
    """/proc/<pid>/<name> as text, None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/{name}").read_text()
    except OSError:
        return None


def _stat(pid: int) -> list[str] | None:
    raw = proc_text(pid, "stat")
    if raw is None:
        return None
    # The name (field 2) is in parentheses and may hold spaces: split after its closing one.
    return raw.rsplit(")", 1)[1].split()


def children() -> dict[int, list[int]]:
    """Parent pid → child pids, for every process now running."""
    out: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields:
                out[int(fields[1])].append(int(entry.name))
    return out


def tree(root: int, kids: dict[int, list[int]] | None = None) -> list[int]:
    """`root` and all its descendants now running."""
    kids = children() if kids is None else kids
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


def cpu_seconds(roots: list[int]) -> float:
    """CPU seconds used so far by the trees under `roots` (see the module's note)."""
    kids = children()
    total = 0
    for root in roots:
        for pid in tree(root, kids):
            fields = _stat(pid)
            if fields:
                # Fields 14–17 of /proc/pid/stat (utime, stime, cutime, cstime); index 0 here is field 3.
                total += sum(int(v) for v in fields[11:15])
    return total * TICK_S


class Meter:
    """CPU seconds of some process trees over the `with` block it guards (in .seconds)."""

    def __init__(self, roots: list[int]):
        self.roots = list(roots)
        self.started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Meter:
        self.started = cpu_seconds(self.roots)
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = cpu_seconds(self.roots) - self.started


def machine_ticks() -> tuple[int, int]:
    """(all CPU ticks, ticks stolen by the host) of the whole machine so far, from /proc/stat's `cpu` line."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    # user nice system idle iowait irq softirq steal: guest time is inside user already.
    return sum(fields), fields[7]


class Steal:
    """The share of the machine's CPU time that the host gave to other guests over the `with` block.

    On a virtual machine whose host is busy, this runs to tens of percent and
    varies from one minute to the next: a throughput measured then is the
    host's as much as the code's, so every wrk run reports it.
    """

    def __init__(self):
        self.started = (0, 0)
        self.share = 0.0

    def __enter__(self) -> Steal:
        self.started = machine_ticks()
        return self

    def __exit__(self, *exc) -> None:
        total, stolen = machine_ticks()
        elapsed = total - self.started[0]
        self.share = (stolen - self.started[1]) / elapsed if elapsed else 0.0


def per_checkout_ms(cpu_s: float, checkouts: int) -> float | None:
    """CPU milliseconds per checkout, None when nothing was checked out."""
    return round(1000 * cpu_s / checkouts, 2) if checkouts else None


def profile(pid: int, seconds: float, out: Path, rate: int = 100) -> Path:
    """Sample the GIL-holding Python stacks of `pid` and its subprocesses with py-spy into `out` (collapsed).

    Blocks for `seconds`. Needs ptrace rights (root, or the same user with
    kernel.yama.ptrace_scope 0). py-spy reads the workers' memory from outside,
    so the profile costs the app no code and no imports.
    """
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise RuntimeError("py-spy is not installed; `make bench` installs it (pip extra `bench`)")
    subprocess.run([spy, "record", "--pid", str(pid), "--subprocesses", "--duration", str(max(1, round(seconds))),
                    "--rate", str(rate), "--format", "raw", "--nonblocking", "--gil", "--output", str(out)],
                   check=True, capture_output=True, timeout=seconds + 60)
    return out


def top_frames(collapsed: Path, n: int = 8) -> list[tuple[str, float]]:
    """The `n` frames with the most samples on top of the stack (self time), with their share in %."""
    counts: collections.Counter = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frame = stack.rsplit(";", 1)[-1]
        counts[frame] += int(count)
        total += int(count)
    return [(frame, round(100 * c / total, 1)) for frame, c in counts.most_common(n)] if total else []
