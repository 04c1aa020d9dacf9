"""The house rules of the code: no import circles, nothing imports upward (against the order
``docs/architecture.md`` documents), every package says what it is, modules stay small.

The graph is read with ``ast`` from the source (``tests/imports.py``), lazy imports inside
functions and ``TYPE_CHECKING`` blocks included: a deferred import is still a dependency.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.imports import cycles, import_graph, parse_layers, upward_imports

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stageflow"
MAX_LINES = 500
# files allowed over MAX_LINES, each with the reason it stays whole
LONG_FILES: dict[str, str] = {}


def documented_layers() -> list[set[str]]:
    """The layer order: the backquoted line with ``>`` in the architecture page."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    found = re.findall(r"^`([a-z_]+(?: >|,) [a-z_ >,]+)`$", text, flags=re.M)
    assert len(found) == 1, "docs/architecture.md must state the layer order once"
    return parse_layers(found[0])


def test_the_package_has_no_import_circles() -> None:
    assert cycles(import_graph(PACKAGE)) == []


def test_nothing_imports_upward_against_the_documented_order() -> None:
    assert upward_imports(import_graph(PACKAGE), documented_layers()) == []


def test_every_component_of_the_package_is_in_the_documented_order() -> None:
    layers = documented_layers()
    named = set().union(*layers)
    components = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    components |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert components == named


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_a_planted_circle_is_found(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "low/__init__.py": "",
            "low/a.py": "from pkg.low.b import thing\n",
            "low/b.py": "def f():\n    from pkg.low import c\n",  # lazy: still an edge
            "low/c.py": "from pkg.low.a import x\n",
            "low/d.py": "import pkg.low.a\n",  # depends on the circle, is not part of it
        },
    )
    assert cycles(import_graph(root)) == [["pkg.low.a", "pkg.low.b", "pkg.low.c"]]


def test_a_planted_upward_or_sideways_import_is_found(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "top.py": "from pkg import low\n",
            "low.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.top\n",
            "left/__init__.py": "",
            "left/m.py": "from ..right import n\n",  # relative imports resolve too
            "right/__init__.py": "",
            "right/n.py": "",
        },
    )
    layers = parse_layers("top > left, right > low")
    assert upward_imports(import_graph(root), layers) == [
        "pkg.left.m -> pkg.right.n (sideways: left and right share a layer)",
        "pkg.low -> pkg.top (upward: top is above low)",
    ]


def test_the_planted_circle_would_fail_the_real_check(tmp_path: Path) -> None:
    """The same check as on the package, on a copy of the package with one circle planted."""
    import shutil

    copy = tmp_path / "stageflow"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert cycles(import_graph(copy)) == []
    events = copy / "events" / "__init__.py"
    events.write_text(
        events.read_text(encoding="utf-8") + "\nfrom stageflow.engine import state\n",
        encoding="utf-8",
    )
    found = cycles(import_graph(copy))
    assert any({"stageflow.engine.state", "stageflow.events"} <= set(c) for c in found), found
    assert "stageflow.events -> stageflow.engine.state (upward: engine is above events)" in (
        upward_imports(import_graph(copy), documented_layers())
    )


@pytest.mark.parametrize(
    "init", sorted(PACKAGE.rglob("__init__.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_package_says_what_it_is(init: Path) -> None:
    doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
    assert doc and len(doc) > 40, f"{init} needs a docstring saying what the package is"
    assert "later issue" not in doc


def test_modules_stay_under_the_line_budget() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted(PACKAGE.rglob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert set(long) == set(LONG_FILES), long
