"""Per-run git worktrees against real repositories: creation, reuse, fallbacks, diff summary."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stageflow.errors import InvalidArgument, ToolError
from stageflow.workspace.diffs import DiffSummary, FileChange, diff_summary
from stageflow.workspace.root import Workspace
from stageflow.workspace.worktree import (
    NO_COMMIT_REASON,
    NOT_GIT_REASON,
    RunWorkspace,
    WorkspaceError,
    find_workspace,
    prepare_workspace,
)

RUN = "r-01jd8k2m3n-7fq2"


@pytest.fixture(autouse=True)
def _hermetic_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's git config stays out; commits get a fixed identity."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for var in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{var}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{var}_EMAIL", "test@example.com")


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "app.py").write_text("one\ntwo\nthree\n")
    (project / "old.txt").write_text("a\nb\n")
    (project / ".gitignore").write_text("*.log\n")
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "init")
    return project


def head(cwd: Path) -> str:
    return git(cwd, "rev-parse", "HEAD").strip()


# -- auto mode on a git repository ----------------------------------------------------------


def test_auto_makes_a_worktree_on_its_own_branch_from_head(repo: Path) -> None:
    ws = prepare_workspace(repo, RUN)
    where = repo / ".stageflow" / "worktrees" / RUN
    assert ws == RunWorkspace(
        root=where, mode="worktree", branch=f"stageflow/{RUN}", base=head(repo)
    )
    assert (where / "src" / "app.py").read_text() == "one\ntwo\nthree\n"
    assert git(where, "rev-parse", "--abbrev-ref", "HEAD").strip() == f"stageflow/{RUN}"
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"


def test_the_users_git_status_stays_clean(repo: Path) -> None:
    ws = prepare_workspace(repo, RUN)
    (ws.root / "src" / "app.py").write_text("changed by an agent\n")
    (ws.root / "new.py").write_text("x\n")
    assert git(repo, "status", "--porcelain") == ""
    assert (repo / "src" / "app.py").read_text() == "one\ntwo\nthree\n"
    exclude = (repo / ".git" / "info" / "exclude").read_text().splitlines()
    assert exclude.count(".stageflow/") == 1


def test_prepare_is_idempotent_and_keeps_the_work(repo: Path) -> None:
    first = prepare_workspace(repo, RUN)
    (first.root / "wip.txt").write_text("work in progress\n")
    git(repo, "commit", "-q", "--allow-empty", "-m", "user moves on")
    second = prepare_workspace(repo, RUN)
    assert second == first  # same base even though the user's HEAD moved
    assert (second.root / "wip.txt").read_text() == "work in progress\n"
    listing = git(repo, "worktree", "list", "--porcelain")
    assert listing.count("worktree ") == 2
    exclude = (repo / ".git" / "info" / "exclude").read_text().splitlines()
    assert exclude.count(".stageflow/") == 1


def test_parallel_first_stages_share_one_worktree(repo: Path) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: prepare_workspace(repo, RUN), range(4)))
    assert all(r == results[0] for r in results)
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 2


def test_a_removed_worktree_directory_is_reattached_to_its_branch(repo: Path) -> None:
    first = prepare_workspace(repo, RUN)
    (first.root / "done.txt").write_text("committed by the run\n")
    git(first.root, "add", "done.txt")
    git(first.root, "commit", "-q", "-m", "agent work")
    shutil.rmtree(first.root)
    again = prepare_workspace(repo, RUN)
    assert again == first
    assert (again.root / "done.txt").read_text() == "committed by the run\n"


def test_the_users_other_stale_worktrees_are_left_alone(repo: Path, tmp_path: Path) -> None:
    mine = tmp_path / "my-feature"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(mine))
    shutil.rmtree(mine)  # e.g. on a drive that is not mounted right now
    first = prepare_workspace(repo, RUN)
    shutil.rmtree(first.root)
    prepare_workspace(repo, RUN)  # forgets only its own missing directory
    assert f"worktree {mine}" in git(repo, "worktree", "list", "--porcelain")


def test_a_stray_directory_in_the_worktree_place_is_an_error(repo: Path) -> None:
    where = repo / ".stageflow" / "worktrees" / RUN
    where.mkdir(parents=True)
    (where / "junk.txt").write_text("x")
    with pytest.raises(WorkspaceError, match="exists but is not a git worktree"):
        prepare_workspace(repo, RUN)


def test_separate_runs_get_separate_worktrees(repo: Path) -> None:
    a = prepare_workspace(repo, "r-a")
    b = prepare_workspace(repo, "r-b")
    (a.root / "only-a.txt").write_text("a")
    assert a.root != b.root
    assert not (b.root / "only-a.txt").exists()


def test_a_committed_subdirectory_project_works_in_the_same_subdirectory(tmp_path: Path) -> None:
    top = tmp_path / "mono"
    project = top / "services" / "api"
    project.mkdir(parents=True)
    (project / "main.py").write_text("api\n")
    (top / "README.md").write_text("mono\n")
    git(top, "init", "-q")
    git(top, "add", ".")
    git(top, "commit", "-q", "-m", "init")
    ws = prepare_workspace(project, RUN)
    assert ws.mode == "worktree"
    assert ws.root == project / ".stageflow" / "worktrees" / RUN / "services" / "api"
    assert (ws.root / "main.py").read_text() == "api\n"
    assert find_workspace(project, RUN) == ws


# -- fallbacks ------------------------------------------------------------------------------


def test_a_directory_without_git_is_read_only_with_the_opt_in_reason(tmp_path: Path) -> None:
    project = tmp_path / "plain"
    project.mkdir()
    ws = prepare_workspace(project, RUN)
    assert ws == RunWorkspace(root=project, mode="read_only", reason=NOT_GIT_REASON)
    assert 'mode = "in_place"' in ws.reason
    assert "[workspace]" in ws.reason
    assert "workspace: in_place" in ws.reason
    assert not (project / ".stageflow").exists()


def test_a_read_only_run_refuses_writes_with_that_reason(tmp_path: Path) -> None:
    ws = prepare_workspace(tmp_path, RUN)
    files = Workspace(ws.root, writable=ws.mode != "read_only", read_only_reason=ws.reason)
    with pytest.raises(ToolError) as err:
        files.write("a.txt", "x")
    assert "the project is not a git repository" in str(err.value)
    assert 'mode = "in_place"' in str(err.value)


def test_a_repository_without_commits_is_read_only_with_a_clear_reason(tmp_path: Path) -> None:
    project = tmp_path / "fresh"
    project.mkdir()
    git(project, "init", "-q")
    ws = prepare_workspace(project, RUN)
    assert ws == RunWorkspace(root=project, mode="read_only", reason=NO_COMMIT_REASON)
    assert "no commits yet" in ws.reason


def test_an_uncommitted_directory_inside_a_repository_is_read_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "dotfiles").mkdir(parents=True)
    (home / "dotfiles" / ".bashrc").write_text("x\n")
    git(home, "init", "-q")
    git(home, "add", ".")
    git(home, "commit", "-q", "-m", "dotfiles")
    project = home / "code" / "app"
    project.mkdir(parents=True)
    ws = prepare_workspace(project, RUN)
    assert ws.mode == "read_only"
    assert "none of its files are committed" in ws.reason


def test_worktree_mode_without_git_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match=r"'worktree' cannot be used.*not a git repository"):
        prepare_workspace(tmp_path, RUN, mode="worktree")


def test_in_place_is_the_project_itself_git_or_not(tmp_path: Path, repo: Path) -> None:
    assert prepare_workspace(tmp_path, RUN, mode="in_place") == RunWorkspace(
        root=tmp_path.resolve(), mode="in_place"
    )
    assert prepare_workspace(repo, RUN, mode="in_place").root == repo
    assert not (repo / ".stageflow").exists()


@pytest.mark.parametrize("run_id", ["../escape", "a/b", "", "-rf", "x.lock", "a b"])
def test_run_ids_that_cannot_name_a_worktree_are_refused(repo: Path, run_id: str) -> None:
    with pytest.raises(InvalidArgument):
        prepare_workspace(repo, run_id)


# -- find_workspace -------------------------------------------------------------------------


def test_find_workspace_returns_only_an_existing_worktree(repo: Path, tmp_path: Path) -> None:
    assert find_workspace(repo, RUN) is None
    made = prepare_workspace(repo, RUN)
    assert find_workspace(repo, RUN) == made
    assert find_workspace(repo, "r-other") is None
    assert find_workspace(tmp_path / "nowhere", RUN) is None


def test_find_workspace_recovers_the_base_without_its_record(repo: Path) -> None:
    made = prepare_workspace(repo, RUN)
    (repo / ".stageflow" / "worktrees" / f"{RUN}.json").unlink()
    assert find_workspace(repo, RUN) == made  # no commits on the branch: its tip is the base


# -- diff_summary ---------------------------------------------------------------------------


def test_diff_summary_counts_committed_uncommitted_and_untracked_changes(repo: Path) -> None:
    ws = prepare_workspace(repo, RUN)
    root = ws.root
    (root / "src" / "feature.py").write_text("f1\nf2\n")
    git(root, "add", "src/feature.py")
    git(root, "commit", "-q", "-m", "feature")  # committed on the run branch
    (root / "src" / "app.py").write_text("one\nTWO\nthree\nfour\n")  # uncommitted edit
    (root / "old.txt").unlink()  # deletion
    (root / "notes.md").write_text("n1\nn2\nn3")  # untracked, no final newline
    (root / "logo.png").write_bytes(b"\x89PNG\x00\x01")  # untracked binary
    (root / "debug.log").write_text("ignored\n")  # ignored by .gitignore
    summary = diff_summary(ws)
    assert summary == DiffSummary(
        files=[
            FileChange("logo.png", "untracked", 0, 0, binary=True),
            FileChange("notes.md", "untracked", 3, 0),
            FileChange("old.txt", "deleted", 0, 2),
            FileChange("src/app.py", "modified", 2, 1),
            FileChange("src/feature.py", "added", 2, 0),
        ],
        insertions=7,
        deletions=3,
    )
    assert summary.text().splitlines() == [
        "5 files changed, +7 -3",
        "? logo.png (binary)",
        "? notes.md (+3 -0)",
        "D old.txt (+0 -2)",
        "M src/app.py (+2 -1)",
        "A src/feature.py (+2 -0)",
    ]


def test_diff_summary_of_an_untouched_worktree_is_empty(repo: Path) -> None:
    summary = diff_summary(prepare_workspace(repo, RUN))
    assert summary == DiffSummary(files=[], insertions=0, deletions=0)
    assert summary.text() == "no changes"


def test_diff_summary_ignores_the_users_own_later_commits(repo: Path) -> None:
    ws = prepare_workspace(repo, RUN)
    (repo / "user.txt").write_text("user work\n")
    git(repo, "add", "user.txt")
    git(repo, "commit", "-q", "-m", "user")
    summary = diff_summary(ws)
    assert summary is not None
    assert summary.files == []


def test_diff_summary_is_none_without_a_worktree(tmp_path: Path, repo: Path) -> None:
    assert diff_summary(prepare_workspace(tmp_path, RUN)) is None
    assert diff_summary(prepare_workspace(repo, RUN, mode="in_place")) is None
