"""Layers point down: the domain imports no Flask; nothing outside tests/ imports tests, and no
test module imports another (shared steps live in rig/, loadtest/ or conftest.py fixtures)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import rig

pytestmark = pytest.mark.unit


def test_the_domain_imports_without_flask():
    # A subprocess: this one has Flask loaded already. None in sys.modules makes any import of it fail.
    code = ("import sys; sys.modules['flask'] = sys.modules['werkzeug'] = None; "
            "import app.store, app.payments, app.runtime, app.errors, app.board, app.validation, app.openapi")
    done = subprocess.run([sys.executable, "-c", code], cwd=rig.ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_nothing_outside_tests_imports_tests():
    offenders = [str(path.relative_to(rig.ROOT)) for top in ("app", "bench", "loadtest", "rig", "tools")
                 for path in (rig.ROOT / top).rglob("*.py")
                 if any(line.startswith(("from tests", "import tests")) for line in path.read_text().splitlines())]
    assert offenders == []


def test_no_test_module_imports_another():
    offenders = [path.name for path in (rig.ROOT / "tests").glob("test_*.py")
                 if any(line.startswith(("from .test_", "from tests.test_", "import tests.test_"))
                        for line in path.read_text().splitlines())]
    assert offenders == []
