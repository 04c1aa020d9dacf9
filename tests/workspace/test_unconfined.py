"""What ``sandbox = "auto"`` lets run without a sandbox: reading commands only, deny by default;
and the git layout the bubblewrap profile reads."""

from __future__ import annotations

import itertools
import shlex
from pathlib import Path

import pytest

from stageflow.workspace.bwrap import bwrap_argv, git_layout
from stageflow.workspace.unconfined import code_runner, pattern_runs_code
from stageflow.workspace.worktree import prepare_workspace
from tests.workspace.escape import Victim


@pytest.mark.parametrize(
    "command",
    [
        "cat src/app.py",
        "ls -la",
        "grep -rn TODO src",
        "find . -name '*.py' -type f",
        "git status --short",
        "git diff --stat HEAD",
        "git log --oneline -5",
        "git branch --list",
        "git branch",
        "sort names.txt",
        "rg -n foo",
        "wc -l app.py",
    ],
)
def test_reading_commands_may_run_unconfined(command: str) -> None:
    assert code_runner(shlex.split(command)) is None


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("pytest -q", "`pytest` can run code"),
        ("python3 -m pytest", "`python3` can run code"),
        ("make test", "`make` can run code"),
        ("npm test", "`npm` can run code"),
        ("cargo test", "`cargo` can run code"),
        ("xargs cat", "`xargs` can run code"),
        ("./run.sh", "`run.sh` can run code"),
        ("find . -exec python3 {} +", "`find -exec`"),
        ("find . -execdir sh {} ;", "`find -execdir`"),
        ("find . -delete", "`find -delete`"),
        ("find . -fprint out.txt", "`find -fprint`"),
        ("rg --pre=./x foo", "`rg --pre`"),
        ("sort -o out.txt in.txt", "`sort -o`"),
        ("sort --compress-program=sh in.txt", "`sort --compress-program`"),
        ("git commit -m x", "`git commit` can run hooks"),
        ("git branch -f main HEAD", "`git branch` can run hooks"),
        ("git checkout main", "`git checkout`"),
        ("git push", "`git push`"),
        ("git diff --ext-diff", "runs an external diff program"),
    ],
)
def test_code_running_commands_are_named(command: str, words: str) -> None:
    reason = code_runner(shlex.split(command))
    assert reason is not None and words in reason, reason


@pytest.mark.parametrize(
    ("pattern", "runs"),
    [
        ("pytest*", True),
        ("py*", True),
        ("git diff*", True),  # the wildcard could add --ext-diff
        ("cat *", True),
        ("git status", False),
        ("ls -la", False),
        ("", False),
    ],
)
def test_patterns_are_judged_by_what_they_could_match(pattern: str, runs: bool) -> None:
    assert pattern_runs_code(pattern) is runs


def test_the_git_layout_of_a_run_worktree_and_of_the_repository(victim: Victim) -> None:
    ws = prepare_workspace(victim.project, "run-layout")
    linked = git_layout(ws.root)
    assert linked is not None and linked.linked
    assert linked.dot_git == ws.root / ".git"
    assert linked.common == (victim.project / ".git").resolve()
    assert linked.gitdir == linked.common / "worktrees" / "run-layout"
    main = git_layout(victim.project / "sub" / "dir")  # from below, without it existing
    assert main is not None and not main.linked and main.gitdir == main.common
    assert git_layout(Path("/")) is None


def test_the_profile_binds_the_worktree_rw_and_pins_what_would_redirect_git(
    victim: Victim,
) -> None:
    ws = prepare_workspace(victim.project, "run-profile")
    argv = bwrap_argv("bwrap", ["true"], root=ws.root, network=False, hidden=[victim.home])
    pairs = list(itertools.pairwise(argv))
    gitdir = (victim.project / ".git" / "worktrees" / "run-profile").resolve()
    assert ("--bind", str(ws.root)) in pairs and ("--bind", str(gitdir)) in pairs
    for pinned in ("HEAD", "commondir", "gitdir", "config.worktree"):
        assert ("--ro-bind", str(gitdir / pinned)) in pairs, pinned
    assert ("--ro-bind", str(ws.root / ".git")) in pairs
    assert "--share-net" not in argv and ("--cap-drop", "ALL") in pairs
    assert argv[-2:] == ["--", "true"]
    assert (gitdir / "config.worktree").read_text() == ""  # pinned empty, not created later
