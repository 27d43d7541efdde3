"""The one renderer of bench/RESULTS.md: each section's measured data, through its Markdown template.

The prose lives in bench/templates/ (`string.Template`: `${name}` fields); the views
(bench/views_app.py, bench/views_setups.py, bench/views_room.py) turn a section's data into those fields,
tables included. A section's data is whatever its measuring function returned, so
the same data always renders the same bytes.
"""

from __future__ import annotations

from . import views_app, views_room, views_setups
from .report import fill

# section name -> view: data -> the template's fields
VIEWS = {**views_app.VIEWS, **views_setups.VIEWS, **views_room.VIEWS}


def section(name: str, data: dict) -> str:
    """Section `name`'s Markdown from its data."""
    return fill(name, **VIEWS[name](data))


def header(info: dict, workers: int, quick: bool) -> str:
    """The results file's header: how it was measured, on which machine (bench.report.machine)."""
    return fill("header", quick_flag=" --quick" if quick else "", workers=workers,
                quick_note=fill("header_quick") if quick else "", **info)


def stamp(name: str, info: dict, quick: bool) -> str:
    """The line under a section measured alone (`--only`): when, and the load then."""
    return fill("stamp", name=name, quick_flag=" --quick" if quick else "", **info)


def end(seconds: float, load_at_end: str) -> str:
    """The block after a full run: how long it took, the load at its end."""
    return fill("end", seconds=f"{seconds:.0f}", load_at_end=load_at_end)
