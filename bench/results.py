"""bench/RESULTS.md as named blocks between markers, so that each run rewrites only its own.

A block is `<!-- NAME -->` … `<!-- /NAME -->`. `make bench` writes the header
and its sections and keeps the `soak` block that `make soak` wrote (and the
other way round); `python -m bench.run --only NAME` replaces one block.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
# Blocks that another command writes: a full `make bench` keeps them as found.
KEPT = ("soak",)


def wrap(name: str, text: str) -> str:
    """`text` as block `name`."""
    return f"<!-- {name} -->\n{text.strip()}\n<!-- /{name} -->"


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"<!-- {re.escape(name)} -->\n.*?<!-- /{re.escape(name)} -->", re.S)


def block(text: str, name: str) -> str | None:
    """Block `name` of a results file's text, markers included, or None."""
    found = _pattern(name).search(text)
    return found.group(0) if found else None


def replace(text: str, name: str, body: str) -> str:
    """`text` with block `name` set to `body`: in place, or else before the kept blocks (or at the end)."""
    new = wrap(name, body)
    if block(text, name):
        return _pattern(name).sub(lambda _: new, text, count=1)
    kept = [k for k in (block(text, n) for n in KEPT if n != name) if k]
    at = min(text.index(k) for k in kept) if kept else len(text.rstrip())
    return text[:at].rstrip() + "\n\n" + new + "\n\n" + text[at:].lstrip()


def update(path: Path, name: str, body: str, header: str = "# Benchmark results") -> None:
    """Rewrite block `name` of the file at `path`, leaving the rest of the file as it is."""
    text = path.read_text() if path.exists() else header + "\n"
    path.write_text(replace(text, name, body).rstrip() + "\n")


class Results:
    """A results file rewritten after every section: header, sections, then the kept blocks as found."""

    def __init__(self, path: Path, header: str):
        old = path.read_text() if path.exists() else ""
        self.path, self.parts = path, [header]
        self.kept = [k for k in (block(old, n) for n in KEPT) if k]

    def add(self, name: str, text: str) -> None:
        """Append section `name` and write the file."""
        self.parts.append(wrap(name, text))
        self.path.write_text("\n\n".join(self.parts + self.kept) + "\n")
        print(f"  … written to {self.path}", file=sys.stderr)
