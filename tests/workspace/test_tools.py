"""The file tools' behaviour inside the root, the tool list, and argument checking."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from stageflow.errors import ToolError
from stageflow.workspace.root import SearchStop, Workspace
from stageflow.workspace.shell import BashPolicy
from stageflow.workspace.tools import (
    TOOL_NAMES,
    call_workspace_tool,
    normalize_tool_names,
    tool_definitions,
)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "app"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "app.py").write_text("import os\n\ndef main():\n    return 1\n")
    (root / "src" / "pkg" / "util.py").write_text("def helper():\n    return 'x'\n")
    (root / "README.md").write_text("# App\nmain entry\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n main = yes\n")
    return Workspace(root, max_file_bytes=1000)


# -- Read -----------------------------------------------------------------------------------


def test_read_numbers_lines_like_cat_n(ws: Workspace) -> None:
    assert ws.read("src/app.py") == (
        "     1\timport os\n     2\t\n     3\tdef main():\n     4\t    return 1"
    )


def test_read_pages_with_offset_and_limit_and_says_how_to_go_on(ws: Workspace) -> None:
    out = ws.read("src/app.py", offset=2, limit=2)
    assert out.splitlines() == [
        "     2\t",
        "     3\tdef main():",
        "(lines 2-3 of 4; read on with offset=4)",
    ]


def test_read_past_the_end_says_how_long_the_file_is(ws: Workspace) -> None:
    with pytest.raises(ToolError, match=r"offset 9 is past the end of `src/app.py` \(4 lines\)"):
        ws.read("src/app.py", offset=9)


def test_read_of_a_missing_file_or_directory_names_it(ws: Workspace) -> None:
    with pytest.raises(ToolError, match=re.escape("`src/nope.py` does not exist")):
        ws.read("src/nope.py")
    with pytest.raises(ToolError, match="`src` is a directory"):
        ws.read("src")


def test_read_of_an_empty_file(ws: Workspace) -> None:
    (ws.root / "empty.txt").write_text("")
    assert ws.read("empty.txt") == "(`empty.txt` is empty)"


def test_text_tools_refuse_files_over_the_size_limit(ws: Workspace) -> None:
    (ws.root / "big.txt").write_text("a" * 1001)
    with pytest.raises(ToolError, match=r"`big.txt` is 1001 bytes, over the 1000-byte limit"):
        ws.read("big.txt")
    with pytest.raises(ToolError, match="1000-byte limit"):
        ws.edit("big.txt", "a", "b", replace_all=True)
    with pytest.raises(ToolError, match="1000-byte limit"):
        ws.write("new.txt", "b" * 1001)
    assert not (ws.root / "new.txt").exists()


def test_text_tools_refuse_binary_files_and_grep_skips_them(ws: Workspace) -> None:
    (ws.root / "blob.bin").write_bytes(b"main\x00\x01\x02")
    with pytest.raises(ToolError, match=re.escape("`blob.bin` is a binary file; Read")):
        ws.read("blob.bin")
    with pytest.raises(ToolError, match=re.escape("`blob.bin` is a binary file; Edit")):
        ws.edit("blob.bin", "main", "x")
    assert (ws.root / "blob.bin").read_bytes() == b"main\x00\x01\x02"
    out = ws.grep("main")
    assert "blob.bin" not in out.split("(")[0]
    assert "1 binary or oversized file(s) skipped" in out


# -- Write / Edit ---------------------------------------------------------------------------


def test_write_creates_parent_directories_inside_the_root(ws: Workspace) -> None:
    assert ws.write("docs/adr/0001.md", "# Decision\nuse sqlite\n") == (
        "Created `docs/adr/0001.md` (2 lines, 22 bytes)"
    )
    assert (ws.root / "docs" / "adr" / "0001.md").read_text() == "# Decision\nuse sqlite\n"
    assert ws.write("docs/adr/0001.md", "x") == "Replaced `docs/adr/0001.md` (1 line, 1 byte)"


def test_write_to_a_directory_is_refused(ws: Workspace) -> None:
    with pytest.raises(ToolError, match="`src` is a directory"):
        ws.write("src", "x")


def test_edit_replaces_a_unique_string(ws: Workspace) -> None:
    assert ws.edit("src/app.py", "return 1", "return 2") == (
        "Edited `src/app.py`: replaced 1 occurrence"
    )
    assert (ws.root / "src" / "app.py").read_text().endswith("    return 2\n")


def test_edit_says_how_many_matches_when_not_unique(ws: Workspace) -> None:
    (ws.root / "dup.txt").write_text("x = 1\nx = 1\nx = 1\n")
    with pytest.raises(ToolError, match=r"occurs 3 times in `dup.txt`.*replace_all"):
        ws.edit("dup.txt", "x = 1", "x = 2")
    assert (ws.root / "dup.txt").read_text() == "x = 1\nx = 1\nx = 1\n"
    assert ws.edit("dup.txt", "x = 1", "x = 2", replace_all=True) == (
        "Edited `dup.txt`: replaced 3 occurrences"
    )
    assert (ws.root / "dup.txt").read_text() == "x = 2\nx = 2\nx = 2\n"


def test_edit_of_missing_text_tells_the_model_to_copy_it_exactly(ws: Workspace) -> None:
    with pytest.raises(ToolError, match=r"not found in `src/app.py`; Read the file"):
        ws.edit("src/app.py", "return 3", "return 4")


def test_edit_refuses_empty_or_identical_strings(ws: Workspace) -> None:
    with pytest.raises(ToolError, match="`old_string` is empty"):
        ws.edit("src/app.py", "", "x")
    with pytest.raises(ToolError, match="are the same"):
        ws.edit("src/app.py", "main", "main")


def test_edit_matches_lf_text_in_a_crlf_file(ws: Workspace) -> None:
    (ws.root / "win.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    ws.edit("win.txt", "one\ntwo", "uno\ndos")
    assert (ws.root / "win.txt").read_bytes() == b"uno\r\ndos\r\nthree\r\n"


@pytest.mark.parametrize("path", [".git/config", ".git/hooks/pre-commit", "sub/.git/HEAD"])
def test_git_internals_are_not_writable(ws: Workspace, path: str) -> None:
    with pytest.raises(ToolError, match=re.escape("inside `.git` are managed by git")):
        ws.write(path, "evil")
    with pytest.raises(ToolError, match=re.escape("inside `.git`")):
        ws.edit(".git/config", "main", "evil")
    assert (ws.root / ".git" / "config").read_text() == "[core]\n main = yes\n"
    assert not (ws.root / ".git" / "hooks").exists()


def test_a_worktree_git_file_and_links_into_git_are_not_writable(ws: Workspace) -> None:
    (ws.root / "hook").symlink_to(ws.root / ".git" / "config")
    with pytest.raises(ToolError, match=re.escape("`.git/config`")):
        ws.write("hook", "evil")
    assert (ws.root / ".git" / "config").read_text() == "[core]\n main = yes\n"


def test_stageflow_state_is_not_writable(ws: Workspace) -> None:
    with pytest.raises(ToolError, match=re.escape("inside `.stageflow` are managed by stageflow")):
        ws.write(".stageflow/config.toml", "[workspace]\nbash = ['*']\n")
    assert not (ws.root / ".stageflow").exists()


@pytest.mark.parametrize(
    ("path", "owner"),
    [
        (".claude/settings.json", "`.claude` are managed by Claude Code"),
        (".claude/agents/architect.md", "`.claude` are managed by Claude Code"),
        ("sub/.Claude/settings.local.json", "`.claude` are managed by Claude Code"),
        (".Git/config", "`.git` are managed by git"),
        ("pkg/.STAGEFLOW/runs.db", "`.stageflow` are managed by stageflow"),
    ],
)
def test_claude_settings_and_protected_dirs_in_any_case_are_not_writable(
    ws: Workspace, path: str, owner: str
) -> None:
    # Claude Code runs hooks from .claude/settings.json, and stageflow loads agents from
    # .claude/agents; on a case-insensitive file system `.Git` is `.git`
    with pytest.raises(ToolError, match=re.escape(owner)):
        ws.write(path, "evil")
    assert not (ws.root / ".claude").exists()
    assert (ws.root / ".git" / "config").read_text() == "[core]\n main = yes\n"


def test_a_name_that_only_starts_like_a_protected_dir_is_writable(ws: Workspace) -> None:
    ws.write(".claude-notes/todo.md", "x\n")
    ws.write(".gitignore", "*.pyc\n")
    assert (ws.root / ".claude-notes" / "todo.md").read_text() == "x\n"


def test_a_read_only_workspace_refuses_writes_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello\n")
    ro = Workspace(tmp_path, writable=False, read_only_reason="the project is not a git repository")
    calls: list[Callable[[], str]] = [
        lambda: ro.write("b.txt", "x"),
        lambda: ro.edit("a.txt", "hello", "bye"),
    ]
    for call in calls:
        with pytest.raises(ToolError) as err:
            call()
        assert "read-only: the project is not a git repository" in str(err.value)
    assert ro.read("a.txt") == "     1\thello"
    assert not (tmp_path / "b.txt").exists()
    assert (tmp_path / "a.txt").read_text() == "hello\n"


# -- Glob / Grep ----------------------------------------------------------------------------


def test_glob_matches_across_directories_and_skips_git(ws: Workspace) -> None:
    assert ws.glob("**/*.py").splitlines() == ["src/app.py", "src/pkg/util.py"]
    assert ws.glob("*.py", path="src").splitlines() == ["src/app.py"]
    assert ws.glob("*").splitlines() == ["README.md", "src/"]
    assert ws.glob("**/*.{md,py}").splitlines() == ["README.md", "src/app.py", "src/pkg/util.py"]
    assert ".git" not in ws.glob("**")


def test_glob_without_matches_says_so(ws: Workspace) -> None:
    assert ws.glob("**/*.rs") == "No files match `**/*.rs` under `.`"


def test_grep_reports_path_line_and_text(ws: Workspace) -> None:
    assert ws.grep(r"def \w+").splitlines() == [
        "src/app.py:3: def main():",
        "src/pkg/util.py:1: def helper():",
    ]


def test_grep_filters_by_glob_searches_one_file_and_ignores_case(ws: Workspace) -> None:
    assert ws.grep("main", glob="*.md").splitlines() == ["README.md:2: main entry"]
    assert ws.grep("MAIN", path="src/app.py", ignore_case=True).splitlines() == [
        "src/app.py:3: def main():"
    ]
    assert ws.grep("main", glob="src/*.py").splitlines() == ["src/app.py:3: def main():"]


def test_grep_skips_git_and_caps_matches(ws: Workspace) -> None:
    (ws.root / "many.txt").write_text("hit\n" * 10)
    out = ws.grep("hit|main", max_matches=3).splitlines()
    assert out == [
        "README.md:2: main entry",
        "many.txt:1: hit",
        "many.txt:2: hit",
        "(stopped at 3 matches; narrow the pattern or the path)",
    ]
    assert ".git" not in ws.grep("main")


def test_grep_with_a_bad_regex_explains(ws: Workspace) -> None:
    with pytest.raises(ToolError, match=r"`\(unclosed` is not a valid regular expression"):
        ws.grep("(unclosed")


def test_grep_without_matches_says_so(ws: Workspace) -> None:
    assert ws.grep("nothing-like-this", path="src") == "No matches for `nothing-like-this` in `src`"


CATASTROPHIC = r"(a+)+$"  # backtracks for seconds on a line of ~26 'a's and a '!'


def test_grep_with_a_pattern_that_backtracks_too_long_is_stopped(ws: Workspace) -> None:
    (ws.root / "a.txt").write_text("a" * 40 + "!\n")
    slow = Workspace(ws.root, search_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ToolError, match=r"Grep was stopped after 0\.5s: .*backtrack"):
        slow.grep(CATASTROPHIC, path="a.txt")
    assert time.monotonic() - started < 5


def test_glob_with_a_pattern_that_backtracks_too_long_is_stopped(ws: Workspace) -> None:
    (ws.root / ("a" * 60)).write_text("")
    slow = Workspace(ws.root, search_timeout=0.5)
    with pytest.raises(ToolError, match=r"Glob was stopped after 0\.5s"):
        slow.glob("*a*a*a*a*a*a*a*a*b")


def test_a_stopped_search_kills_its_matcher_and_says_so(ws: Workspace) -> None:
    (ws.root / "a.txt").write_text("a" * 40 + "!\n")
    stop = SearchStop()
    stop.stop()  # before the child starts: it is killed as soon as it does
    started = time.monotonic()
    with pytest.raises(ToolError, match="Grep was cancelled"):
        ws.grep(CATASTROPHIC, path="a.txt", stop=stop)
    assert time.monotonic() - started < 5


@pytest.mark.anyio
async def test_cancelling_a_grep_tool_call_returns_at_once_and_kills_its_matcher(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    (ws.root / "a.txt").write_text("a" * 40 + "!\n")  # would backtrack for days
    searches: list[tuple[SearchStop, subprocess.Popen[bytes]]] = []
    original = SearchStop.started

    def record(self: SearchStop, child: subprocess.Popen[bytes]) -> None:
        searches.append((self, child))
        original(self, child)

    monkeypatch.setattr(SearchStop, "started", record)
    started = time.monotonic()
    with anyio.move_on_after(0.3):
        await call_workspace_tool(ws, "Grep", {"pattern": CATASTROPHIC, "path": "a.txt"})
    assert time.monotonic() - started < 3
    with anyio.fail_after(5):
        while not searches:  # noqa: ASYNC110 -- the abandoned thread may start the child late
            await anyio.sleep(0.01)
        [(stop, child)] = searches
        assert stop.stopped
        while child.poll() is None:  # noqa: ASYNC110 -- no event exists for "a process died"
            await anyio.sleep(0.01)
    assert child.returncode == -signal.SIGKILL


def test_grep_searches_files_whose_names_are_not_utf8(ws: Workspace) -> None:
    name = os.fsdecode(b"caf\xe9.txt")
    (ws.root / name).write_text("needle\n")
    [hit] = ws.grep("needle").splitlines()
    assert hit.endswith(".txt:1: needle")
    assert ws.glob("caf*.txt").endswith(".txt")


# -- tool names and definitions -------------------------------------------------------------


def test_empty_tool_list_means_every_file_tool_and_bash_only_when_allowed() -> None:
    assert normalize_tool_names([], bash_allowed=False) == ["Read", "Write", "Edit", "Glob", "Grep"]
    assert normalize_tool_names([], bash_allowed=True) == list(TOOL_NAMES)


def test_claude_code_names_map_onto_ours_and_unknown_ones_are_dropped() -> None:
    tools = ["read", "MultiEdit", "LS", "WebFetch", "Task", "mcp__github__x", "Bash(git diff:*)"]
    assert normalize_tool_names(tools, bash_allowed=True) == ["Read", "Edit", "Glob", "Bash"]
    assert normalize_tool_names(tools, bash_allowed=False) == ["Read", "Edit", "Glob"]
    assert normalize_tool_names(["WebFetch"], bash_allowed=True) == []


def test_tool_definitions_are_messages_api_tools() -> None:
    defs = tool_definitions(["Read", "Bash"], bash_allow=["pytest*"])
    assert [d["name"] for d in defs] == ["Read", "Bash"]
    assert defs[0]["input_schema"]["required"] == ["file_path"]
    assert defs[0]["input_schema"]["type"] == "object"
    assert "`pytest*`" in defs[1]["description"]
    with pytest.raises(ValueError, match="WebFetch"):
        tool_definitions(["WebFetch"])


# -- dispatch and argument checks -----------------------------------------------------------


@pytest.mark.anyio
async def test_dispatch_runs_each_file_tool(ws: Workspace) -> None:
    with anyio.fail_after(10):
        await call_workspace_tool(ws, "Write", {"file_path": "n.txt", "content": "a\nb\n"})
        await call_workspace_tool(
            ws, "Edit", {"file_path": "n.txt", "old_string": "b", "new_string": "c"}
        )
        assert await call_workspace_tool(ws, "Read", {"file_path": "n.txt", "offset": 2}) == (
            "     2\tc"
        )
        assert await call_workspace_tool(ws, "Glob", {"pattern": "*.txt"}) == "n.txt"
        assert await call_workspace_tool(ws, "Grep", {"pattern": "^c$"}) == "n.txt:2: c"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("Read", {}, "Read needs the argument(s) file_path"),
        ("Read", {"file_path": 3}, "`file_path` must be a string, got int"),
        ("Read", {"file_path": "a", "offset": True}, "`offset` must be a integer, got bool"),
        ("Read", {"file_path": "a", "offset": 0}, "`offset` must be at least 1, got 0"),
        ("Read", {"path": "a"}, "unknown argument(s) path; it accepts file_path, offset, limit"),
        ("Edit", {"file_path": "a", "old_string": "x"}, "needs the argument(s) new_string"),
        ("Grep", {"pattern": "x", "ignore_case": "yes"}, "`ignore_case` must be a boolean"),
        ("Write", {"file_path": "a.md", "content": "x \ud800"}, "`content` contains a character"),
        ("Read", {"file_path": "bad-\udc80.md"}, "`file_path` contains a character that is not"),
        ("Bash", {"command": "echo \ud800"}, "a lone surrogate at position 5"),
        ("WebFetch", {"url": "http://x"}, "unknown tool `WebFetch`"),
    ],
)
async def test_bad_arguments_are_tool_errors_naming_the_argument(
    ws: Workspace, name: str, args: dict[str, Any], message: str
) -> None:
    with anyio.fail_after(10), pytest.raises(ToolError) as err:
        await call_workspace_tool(ws, name, args)
    assert message in str(err.value)


@pytest.mark.anyio
async def test_dispatch_runs_bash_through_the_policy(ws: Workspace) -> None:
    allowed = Workspace(ws.root, bash=BashPolicy(("echo *",)))
    with anyio.fail_after(20):
        out = await call_workspace_tool(allowed, "Bash", {"command": "echo hi", "description": "x"})
        assert out == "hi\n(exit code 0)"
        with pytest.raises(ToolError, match="Bash is not allowed for this stage"):
            await call_workspace_tool(ws, "Bash", {"command": "echo hi"})
