"""Glob brace expansion is bounded and runs in the search's killable child; every failure of a
workspace tool reaches the model as a tool error (issue 11, point 2).

Before: ``{a,b}`` sixteen times took 3.3 s in the server process and forty times reached 11 GB;
nested braces raised RecursionError, which failed the stage as a "runner error". The figures
are measured by ``benchmarks/glob_braces.py``; here the bounds are checked as behaviour.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from stageflow.errors import ToolError
from stageflow.workspace import search_child
from stageflow.workspace.root import Workspace
from stageflow.workspace.tools import call_workspace_tool
from tests.subagents.fake_model import fake_model, submit, tool_reply, tool_use
from tests.subagents.tool_loop_kit import run_loop, tool_results

pytestmark = pytest.mark.anyio

BRACES_16 = "{a,b}" * 16
BRACES_40 = "{a,b}" * 40
NESTED = "{a," * 1000 + "b" + "}" * 1000  # 4001 characters, within the length bound


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in ("src/a/x.py", "src/b/y.py", "src/c/z.py", "src/a/w.ts", "docs/n.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("needle\n")
    return tmp_path


async def tool(ws: Workspace, name: str, args: dict[str, Any]) -> str:
    with anyio.fail_after(30):
        return await call_workspace_tool(ws, name, args)


@pytest.mark.parametrize("pattern", [BRACES_16, BRACES_40, BRACES_40 + "/**/*.py"])
async def test_a_glob_standing_for_too_many_patterns_is_refused_at_once(
    tree: Path, pattern: str
) -> None:
    started = time.monotonic()
    with pytest.raises(ToolError) as err:
        await tool(Workspace(tree), "Glob", {"pattern": pattern})
    assert f"stands for more than {search_child.MAX_EXPANSIONS} patterns" in str(err.value)
    assert time.monotonic() - started < 5.0


async def test_greps_glob_filter_is_bounded_the_same_way(tree: Path) -> None:
    with pytest.raises(ToolError) as err:
        await tool(Workspace(tree), "Grep", {"pattern": "needle", "glob": BRACES_40})
    assert "stands for more than" in str(err.value)
    with pytest.raises(ToolError) as nested:
        await tool(Workspace(tree), "Grep", {"pattern": "needle", "glob": NESTED})
    assert "nests braces deeper than" in str(nested.value)


async def test_deeply_nested_braces_are_a_tool_error_not_a_recursion_error(tree: Path) -> None:
    with pytest.raises(ToolError) as err:
        await tool(Workspace(tree), "Glob", {"pattern": NESTED})
    assert f"nests braces deeper than {search_child.MAX_DEPTH} levels" in str(err.value)


async def test_braces_within_the_bounds_still_work(tree: Path) -> None:
    ws = Workspace(tree)
    found = await tool(ws, "Glob", {"pattern": "src/{a,{b,q}}/*.{py,ts}"})
    assert found.splitlines() == ["src/a/w.ts", "src/a/x.py", "src/b/y.py"]
    wide = "{a,b}" * 10  # exactly MAX_EXPANSIONS patterns
    assert "No files match" in await tool(ws, "Glob", {"pattern": wide})
    assert "src/c/z.py:1: needle" in await tool(
        ws, "Grep", {"pattern": "needle", "glob": "*.{py,md}"}
    )
    with pytest.raises(ToolError, match="must be relative"):
        await tool(ws, "Glob", {"pattern": "{src,..}/*.py"})
    with pytest.raises(ToolError, match="is empty"):
        await tool(ws, "Glob", {"pattern": "  "})


async def test_a_pattern_over_the_length_limit_is_refused(tree: Path) -> None:
    with pytest.raises(ToolError, match="over the 4096-character limit"):
        await tool(Workspace(tree), "Glob", {"pattern": "a" * 5000})


async def test_a_regex_the_server_cannot_compile_is_a_tool_error(tree: Path) -> None:
    ws = Workspace(tree)
    with pytest.raises(ToolError, match="is not a valid regular expression"):
        await tool(ws, "Grep", {"pattern": "(unclosed"})
    with pytest.raises(ToolError, match="nested too deeply"):
        await tool(ws, "Grep", {"pattern": "(" * 1500 + "a" + ")" * 1500})


async def test_a_backtracking_glob_gives_way_to_cancellation(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*(["a" * 200] * 15))
    deep.mkdir(parents=True)
    (deep / "aaaa").write_text("x")
    ws = Workspace(tmp_path)
    started = time.monotonic()
    with anyio.move_on_after(0.5):
        await call_workspace_tool(ws, "Glob", {"pattern": "**a**a**a**a**a**a**a**a**b"})
    assert time.monotonic() - started < 3.0, "the Glob ignored cancellation"


def test_counting_never_expands() -> None:
    assert search_child.count(search_child.parse(BRACES_16)) == search_child.MAX_EXPANSIONS + 1
    assert search_child.count(search_child.parse("{a,b}" * 400)) == (
        search_child.MAX_EXPANSIONS + 1
    )
    assert search_child.count(search_child.parse("x{a,b,c}{d,e}")) == 6
    assert search_child.expand("x{a,b}y{,z}") == ["xay", "xayz", "xby", "xbyz"]
    assert search_child.expand("{a}[{]x}") == ["a[{]x}"]  # a class and a stray brace stay


# -- through the tool loop ------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        tool_use("Glob", {"pattern": NESTED}),
        tool_use("Glob", {"pattern": BRACES_40}),
        tool_use("Grep", {"pattern": "x", "glob": NESTED}),
    ],
    ids=["nested", "forty-groups", "grep-filter"],
)
async def test_a_hostile_glob_is_an_error_result_and_the_attempt_goes_on(
    tmp_path: Path, call: dict[str, Any]
) -> None:
    model = fake_model(tool_reply(call), tool_reply(submit({"design": "# Design"})))
    result = await run_loop(model, tmp_path)
    assert result.status == "passed", result.error
    [answer] = tool_results(model.calls[1])
    assert answer.get("is_error") is True


async def test_an_unexpected_failure_inside_a_tool_reaches_the_model_as_a_tool_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Workspace, path: str, **kw: Any) -> str:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(Workspace, "read", broken)
    (tmp_path / "a.txt").write_text("x")
    model = fake_model(
        tool_reply(tool_use("Read", {"file_path": "a.txt"})),
        tool_reply(submit({"design": "# Design"})),
    )
    result = await run_loop(model, tmp_path)
    assert result.status == "passed", result.error
    [answer] = tool_results(model.calls[1])
    assert answer.get("is_error") is True
    assert "Read failed unexpectedly (RecursionError" in str(answer.get("content"))
