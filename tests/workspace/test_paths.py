"""Every file tool stays inside the workspace root: ``..``, absolute, symlinks, sibling prefix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from stageflow.errors import ToolError
from stageflow.workspace.root import Workspace
from stageflow.workspace.tools import call_workspace_tool

SECRET = "top secret outside the workspace"


@dataclass
class Layout:
    """``<tmp>/x/app`` is the root; ``<tmp>/x/app-evil`` and ``<tmp>/outside`` are not."""

    root: Path
    evil: Path
    outside: Path
    ws: Workspace

    def outside_files(self) -> dict[Path, str]:
        found = {}
        for base in (self.evil, self.outside):
            for p in base.rglob("*"):
                if p.is_file():
                    found[p] = p.read_text()
        return found


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    root = tmp_path / "x" / "app"
    evil = tmp_path / "x" / "app-evil"
    outside = tmp_path / "outside"
    for d in (root / "src", evil, outside / "sub"):
        d.mkdir(parents=True)
    (root / "src" / "main.py").write_text("print('secret is inside')\n")
    (evil / "secret.txt").write_text(SECRET + "\n")
    (outside / "secret.txt").write_text(SECRET + "\n")
    (outside / "sub" / "deep.txt").write_text(SECRET + "\n")
    (root / "link_file").symlink_to(outside / "secret.txt")
    (root / "link_dir").symlink_to(outside)
    (root / "link_evil").symlink_to(evil)
    (root / "src" / "up").symlink_to("../../app-evil")  # relative link climbing out
    (root / "dangling").symlink_to(outside / "not-yet.txt")
    return Layout(root=root, evil=evil, outside=outside, ws=Workspace(root))


# -- each tool, called with a path that must be refused ------------------------------------

Op = Callable[[Workspace, str], str]

FILE_OPS: dict[str, Op] = {
    "Read": lambda ws, p: ws.read(p),
    "Write": lambda ws, p: ws.write(p, "pwned\n"),
    "Edit": lambda ws, p: ws.edit(p, "top secret", "pwned"),
    "Grep": lambda ws, p: ws.grep("secret", path=p),
}
DIR_OPS: dict[str, Op] = {
    "Glob": lambda ws, p: ws.glob("**/*", path=p),
    "Grep": lambda ws, p: ws.grep("secret", path=p),
}

# (case id, path builder) for a file outside the root
FILE_ESCAPES: dict[str, Callable[[Layout], str]] = {
    "dotdot": lambda lay: "../../outside/secret.txt",
    "dotdot_after_subdir": lambda lay: "src/../../../outside/secret.txt",
    "absolute": lambda lay: str(lay.outside / "secret.txt"),
    "sibling_prefix_absolute": lambda lay: str(lay.evil / "secret.txt"),
    "sibling_prefix_dotdot": lambda lay: "../app-evil/secret.txt",
    "symlink_file": lambda lay: "link_file",
    "symlinked_dir": lambda lay: "link_dir/secret.txt",
    "symlinked_sibling_dir": lambda lay: "link_evil/secret.txt",
    "relative_symlink_up": lambda lay: "src/up/secret.txt",
}
DIR_ESCAPES: dict[str, Callable[[Layout], str]] = {
    "dotdot": lambda lay: "..",
    "absolute": lambda lay: str(lay.outside),
    "sibling_prefix_absolute": lambda lay: str(lay.evil),
    "sibling_prefix_dotdot": lambda lay: "../app-evil",
    "symlinked_dir": lambda lay: "link_dir",
    "relative_symlink_up": lambda lay: "src/up",
}


@pytest.mark.parametrize("case", sorted(FILE_ESCAPES))
@pytest.mark.parametrize("tool", sorted(FILE_OPS))
def test_file_tools_refuse_paths_outside_the_root(layout: Layout, tool: str, case: str) -> None:
    before = layout.outside_files()
    path = FILE_ESCAPES[case](layout)
    with pytest.raises(ToolError) as err:
        FILE_OPS[tool](layout.ws, path)
    message = str(err.value)
    assert path in message
    assert "outside the workspace" in message
    assert SECRET not in message
    assert layout.outside_files() == before


@pytest.mark.parametrize("case", sorted(DIR_ESCAPES))
@pytest.mark.parametrize("tool", sorted(DIR_OPS))
def test_search_tools_refuse_directories_outside_the_root(
    layout: Layout, tool: str, case: str
) -> None:
    path = DIR_ESCAPES[case](layout)
    with pytest.raises(ToolError) as err:
        DIR_OPS[tool](layout.ws, path)
    assert path in str(err.value)
    assert "outside the workspace" in str(err.value)


def test_symlink_escape_message_names_the_link_and_not_its_target(layout: Layout) -> None:
    with pytest.raises(ToolError) as err:
        layout.ws.read("link_file")
    assert "symbolic link" in str(err.value)
    assert str(layout.outside) not in str(err.value)


def test_dotdot_message_says_to_use_a_relative_path(layout: Layout) -> None:
    with pytest.raises(ToolError) as err:
        layout.ws.read("../../outside/secret.txt")
    assert "`..`" in str(err.value)
    assert "relative" in str(err.value)


@pytest.mark.parametrize(
    "path",
    ["link_dir/new.txt", "link_dir/sub/new.txt", "link_dir/fresh/dir/new.txt", "dangling"],
)
def test_write_refuses_new_files_whose_parent_or_link_resolves_outside(
    layout: Layout, path: str
) -> None:
    with pytest.raises(ToolError, match="symbolic link"):
        layout.ws.write(path, "pwned\n")
    assert not (layout.outside / "new.txt").exists()
    assert not (layout.outside / "sub" / "new.txt").exists()
    assert not (layout.outside / "fresh").exists()
    assert not (layout.outside / "not-yet.txt").exists()


def test_glob_lists_nothing_outside_the_root(layout: Layout) -> None:
    listing = layout.ws.glob("**/*")
    assert listing.splitlines() == ["src/", "src/main.py"]


def test_grep_does_not_search_through_links_out_of_the_root(layout: Layout) -> None:
    result = layout.ws.grep("secret")
    assert result.splitlines() == ["src/main.py:1: print('secret is inside')"]
    assert SECRET not in result


def test_glob_pattern_cannot_climb_out(layout: Layout) -> None:
    with pytest.raises(ToolError, match="must be relative"):
        layout.ws.glob("../**/*.txt")
    with pytest.raises(ToolError, match="must be relative"):
        layout.ws.glob(str(layout.outside / "*.txt"))


def test_grep_glob_filter_cannot_climb_out(layout: Layout) -> None:
    with pytest.raises(ToolError, match="must be relative"):
        layout.ws.grep("secret", glob="../*.txt")


def test_paths_that_stay_inside_are_accepted(layout: Layout) -> None:
    (layout.root / "src" / "alias.py").symlink_to("main.py")  # a link within the root is fine
    ws = layout.ws
    assert "secret is inside" in ws.read("src/../src/main.py")
    assert "secret is inside" in ws.read(str(layout.root / "src" / "main.py"))
    assert "secret is inside" in ws.read("src/alias.py")
    assert ws.resolve(".") == layout.root


def test_a_symlinked_root_accepts_paths_spelled_through_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.txt").write_text("hello\n")
    alias = tmp_path / "alias"
    alias.symlink_to(real)
    ws = Workspace(alias)
    assert ws.root == real
    assert ws.read(str(alias / "a.txt")) == "     1\thello"


def test_symlink_loop_is_a_tool_error(layout: Layout) -> None:
    (layout.root / "loop_a").symlink_to("loop_b")
    (layout.root / "loop_b").symlink_to("loop_a")
    with pytest.raises(ToolError, match="loop_a"):
        layout.ws.read("loop_a")
    assert "loop_a" not in layout.ws.glob("*")


@pytest.mark.parametrize("path", ["", "   ", "~/secret.txt", "a\x00b"])
def test_unusable_paths_are_refused_with_a_reason(layout: Layout, path: str) -> None:
    with pytest.raises(ToolError):
        layout.ws.read(path)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("Read", {"file_path": "link_file"}),
        ("Write", {"file_path": "link_dir/new.txt", "content": "x"}),
        ("Edit", {"file_path": "../app-evil/secret.txt", "old_string": "top", "new_string": "x"}),
        ("Glob", {"pattern": "*", "path": "link_evil"}),
        ("Grep", {"pattern": "secret", "path": "/"}),
    ],
)
async def test_the_dispatcher_enforces_the_same_confinement(
    layout: Layout, tool: str, args: dict[str, object]
) -> None:
    before = layout.outside_files()
    with anyio.fail_after(10), pytest.raises(ToolError, match="outside the workspace"):
        await call_workspace_tool(layout.ws, tool, dict(args))
    assert layout.outside_files() == before


def test_layout_links_really_point_outside(layout: Layout) -> None:
    # guards the fixture: if the links were not escapes, the refusals above would prove nothing
    assert (layout.root / "link_file").read_text() == SECRET + "\n"
    assert (layout.root / "src" / "up" / "secret.txt").read_text() == SECRET + "\n"
    assert (layout.root / "dangling").readlink() == layout.outside / "not-yet.txt"
