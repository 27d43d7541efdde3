"""The documents cannot drift from the code.

README.md is a front page; the reference lives in docs/, each fact in one place. The tables
there that mirror code are compared with it both ways: a name the code has and the table
lacks fails, and so does a name in the table that the code lacks. Every relative link in the
documents must reach a file, and a heading when it names one.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
from pathlib import Path

import pytest
from prometheus_client.metrics import MetricWrapperBase

import rig
from app import config, create_app, errors, loadctl, metrics
from app.openapi import build_spec

pytestmark = pytest.mark.unit

ROOT = rig.ROOT
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONTRACT = DOCS / "contract.md"
API = DOCS / "api.md"
CONFIGURATION = DOCS / "configuration.md"
# The documents whose links are checked.
DOCUMENTS = (README, ROOT / "ARCHITECTURE.md", ROOT / "workshop.md", *sorted(DOCS.glob("*.md")))
README_MAX_LINES = 140

FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
HEADING = re.compile(r"^(#{1,6}) +(.+?)\s*$", re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`]+)`")

# Files that read the process-level variables (docs/configuration.md, The processes).
PROCESS_FILES = ("gunicorn.conf.py", "app/worker.py", "app/lan.py", "app/tracing.py", "tools/up.py", "tools/tracing.py")
PROCESS_READ = re.compile(r"""(?:environ\.get|env\.get|getenv|_port)\(\s*["']([A-Z][A-Z0-9_]+)["']""")
# The shell's own, passed through to children: not the kit's settings.
NOT_SETTINGS = {"PATH", "PYTHONPATH"}


# --- reading the documents -------------------------------------------------------------------------


def prose(path: Path) -> str:
    """The document without its fenced code blocks (their `#` lines are comments, not headings)."""
    return FENCE.sub("", path.read_text())


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {github_anchor(title) for _, title in HEADING.findall(prose(path))}


def tables(path: Path) -> dict[str, list[list[str]]]:
    """The table under each heading (one a heading): its body rows, as lists of cells."""
    found: dict[str, list[list[str]]] = {}
    heading, rows = "", None
    for line in prose(path).splitlines():
        if m := HEADING.match(line):
            heading, rows = m.group(2), None
        elif not line.startswith("|"):
            rows = None
        elif re.fullmatch(r"\|[\s:|-]+\|", line.strip()):
            assert heading not in found, f"{path.relative_to(ROOT)}: two tables under '{heading}'"
            rows = found[heading] = []
        elif rows is not None:
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return found


def table(path: Path, heading: str) -> list[list[str]]:
    rows = tables(path).get(heading)
    assert rows, f"{path.relative_to(ROOT)} has no table under '{heading}'"
    return rows


def name(cell: str) -> str:
    """A table's first cell: `name` → name."""
    m = CODE.fullmatch(cell)
    assert m, f"not a `name`: {cell!r}"
    return m.group(1)


def by_name(rows: list[list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in rows:
        key = name(row[0])
        assert key not in out, f"{key} has two rows"
        out[key] = row
    return out


def same_names(documented, in_code, what: str) -> None:
    documented, in_code = set(documented), set(in_code)
    assert not in_code - documented, f"{what}: in the code, missing from the document: {sorted(in_code - documented)}"
    assert not documented - in_code, f"{what}: in the document, not in the code: {sorted(documented - in_code)}"


# --- tables that mirror code -----------------------------------------------------------------------


def registry() -> dict[str, MetricWrapperBase]:
    """Every metric app/metrics.py defines, by its exposed name."""
    found = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            found[value._name + ("_total" if value._type == "counter" else "")] = value
    return found


def test_the_metrics_table_is_the_metric_registry():
    rows = by_name(table(CONTRACT, "Metrics"))
    code = registry()
    same_names(rows, code, "docs/contract.md, Metrics")
    for metric_name, (_, kind, labels) in rows.items():
        metric = code[metric_name]
        assert kind.split(",")[0].strip() == metric._type, (metric_name, kind, metric._type)
        # Label names are the cell's `names`; the values after `=` are plain words.
        assert set(CODE.findall(labels)) == set(metric._labelnames), (metric_name, labels, metric._labelnames)


def test_the_modes_table_is_modes():
    rows = by_name(table(CONTRACT, "Modes"))
    same_names(rows, config.MODES, "docs/contract.md, Modes")
    for mode, row in rows.items():
        assert row[1] == config.MODES[mode], f"{mode}: the console's description is {config.MODES[mode]!r}"


def test_the_knobs_table_is_knobs_with_their_defaults_and_limits():
    rows = by_name(table(CONTRACT, "Knobs"))
    same_names(rows, config.KNOBS, "docs/contract.md, Knobs")
    for knob, (_, default, limits, _what) in rows.items():
        spec = config.KNOBS[knob]
        assert default == str(spec.default).lower(), f"{knob}: default {default}, the code says {spec.default}"
        expected = "—" if spec.low is None else f"{spec.low}–{spec.high}"
        assert limits == expected, f"{knob}: limits {limits}, the code says {expected}"


def loader_variables() -> dict[str, tuple | None]:
    """The variables load_settings reads: name → (default, low, high) for the numbers, else None."""
    found: dict[str, tuple | None] = {}
    for node in ast.walk(ast.parse(inspect.getsource(config.load_settings))):
        if isinstance(node, ast.Call):
            strings = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            for text in strings:
                if re.fullmatch(r"[A-Z][A-Z0-9_]+", text):
                    numbers = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, int)]
                    is_int = isinstance(node.func, ast.Name) and node.func.id == "_int"
                    found[text] = tuple(numbers) if is_int else None
    return found


def test_the_app_settings_table_is_what_load_settings_reads():
    rows = by_name(table(CONFIGURATION, "The app's settings"))
    code = loader_variables()
    assert "MONGO_URL" in code and "REDIS_TIMEOUT_MS" in code, "the loader's variables were not found"
    same_names(rows, set(code), "docs/configuration.md, The app's settings")
    for variable, bounds in code.items():
        if bounds and variable in rows:
            default, low, high = bounds
            assert rows[variable][1] == f"{default} ({low}–{high})", (variable, rows[variable][1], bounds)


def test_the_process_variables_table_is_what_the_processes_read():
    rows = by_name(table(CONFIGURATION, "The processes"))
    read = {m for path in PROCESS_FILES for m in PROCESS_READ.findall((ROOT / path).read_text())}
    assert {"BIND", "WEB_CONCURRENCY", "LOCUST_PORT"} <= read, "the processes' variables were not found"
    same_names(rows, read - set(loader_variables()) - NOT_SETTINGS, "docs/configuration.md, The processes")


def app_errors() -> set[tuple[str, int]]:
    """(code, status) of every error the app and its gunicorn worker answer with."""
    classes, todo = set(), [errors.AppError]
    while todo:
        cls = todo.pop()
        classes.add(cls)
        todo.extend(cls.__subclasses__())
    assert loadctl.LocustUnavailable in classes
    found = {(cls.code, cls.status) for cls in classes}
    worker = (ROOT / "app" / "worker.py").read_text()
    found |= {(code, int(status)) for status, code in re.findall(r'return (\d{3}), "([a-z_]+)"', worker)}
    edge = (ROOT / "app" / "views" / "errors.py").read_text()
    found |= {(code, int(status)) for status, code in re.findall(r'generic\((\d{3}), "([a-z_]+)"', edge)}
    return found


def documented_errors(heading: str) -> set[tuple[str, int]]:
    return {(name(row[0]), int(row[1])) for row in table(API, heading)}


def test_the_error_codes_table_is_every_error_the_app_answers():
    same_names(documented_errors("Error codes"), app_errors(), "docs/api.md, Error codes (code, status)")


def test_the_load_balancers_errors_are_haproxys():
    config_text = (ROOT / "deploy" / "haproxy" / "haproxy.cfg").read_text()
    code = {(c, int(s)) for s, c in re.findall(r'http-error status (\d{3}) .*?"error": "([a-z_]+)"', config_text)}
    assert code, "no JSON error in haproxy.cfg"
    same_names(documented_errors("The load balancer's errors"), code, "docs/api.md, HAProxy's errors (code, status)")


def test_every_route_is_in_the_openapi_document_or_the_table_of_the_others(tmp_path):
    application = create_app({"sqlite_path": str(tmp_path / "paygate.sqlite3"), "START_BACKGROUND": False})
    try:
        served = {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule) for rule in application.url_map.iter_rules()}
    finally:
        application.extensions["paygate"].close()
    served = {r for r in served if not r.startswith(("/static/", "/docs/static/"))}
    documented = {name(row[0]) for row in table(API, "Routes outside the OpenAPI document")}
    in_openapi = set(build_spec()["paths"])
    assert not documented & in_openapi, f"in both the OpenAPI document and docs/api.md: {documented & in_openapi}"
    same_names(documented | in_openapi, served, "docs/api.md and /openapi.json, the routes")


# --- one place for each fact -----------------------------------------------------------------------


def test_each_mirrored_table_has_one_home():
    """A metric, knob, mode or variable is a table row in its home document only."""
    homes = {CONTRACT: [*registry(), *config.KNOBS, *config.MODES],
             CONFIGURATION: [*loader_variables()]}
    for home, names in homes.items():
        for path in (README, ROOT / "ARCHITECTURE.md", *DOCS.glob("*.md")):
            if path == home:
                continue
            rows = {line.split("|")[1].strip() for line in prose(path).splitlines() if line.startswith("|")}
            copied = sorted(n for n in names if f"`{n}`" in rows)
            assert not copied, f"{path.relative_to(ROOT)} repeats rows of {home.relative_to(ROOT)}: {copied}"


def test_the_readme_is_a_front_page():
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES, f"README.md has {len(text.splitlines())} lines"
    for target in ("workshop.md", "ARCHITECTURE.md", "bench/RESULTS.md", *(f"docs/{p.name}" for p in DOCS.glob("*.md"))):
        assert f"]({target}" in text, f"README.md does not link to {target}"
    # The two commands, and the curl tour's steps.
    for needle in ("make up", "make test", "$U/health", "/payment/initiate", "/payment/verify-otp",
                   '{"mode":"audit"}', '"status":"otp_unavailable"', '{"mode":"original"}'):
        assert needle in text, needle


def test_the_ports_the_readme_gives_are_in_the_contracts_ports_table():
    ports = {row[1] for row in table(CONTRACT, "Processes and ports")}
    for port in set(re.findall(r"(?:localhost|127\.0\.0\.1)?:(\d{4})\b", prose(README))):
        assert port in ports, f"README.md gives port {port}, not in docs/contract.md's ports table"


def test_every_relative_link_reaches_its_file_and_heading():
    for path in DOCUMENTS:
        for target in LINK.findall(prose(path)):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            reached = (path.parent / file).resolve() if file else path
            where = f"{path.relative_to(ROOT)} links to {target}"
            assert reached.exists(), f"{where}: no such file"
            if anchor and reached.suffix == ".md":
                assert anchor in anchors(reached), f"{where}: no such heading"


def test_the_repository_cites_only_its_own_contract():
    """Comments, tests and documents cite docs/contract.md, never a contract kept outside the repository."""
    outside = re.compile(r"\bSPEC\b")
    skip_dirs = {".git", ".venv", ".cache", "node_modules", "__pycache__"}
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip_dirs]
        for file in files:
            path = Path(folder) / file
            if path == Path(__file__) or path.suffix not in (".py", ".md", ".yml", ".yaml", ".txt", ".toml", ".js", ".html",
                                                              ".cfg", ".lua", ".json", ".tpl", "") :
                continue
            try:
                text = path.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            found += [f"{path.relative_to(ROOT)}:{n}" for n, line in enumerate(text.splitlines(), 1) if outside.search(line)]
    assert not found, f"cites a contract outside the repository: {found}"
