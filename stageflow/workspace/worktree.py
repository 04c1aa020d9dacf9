"""Where a run's agent stages work: a git worktree of the project, the project itself, or nothing.

``prepare_workspace`` in ``auto`` mode gives each run its own worktree at
``<project>/.stageflow/worktrees/<run>`` on branch ``stageflow/<run>``, created from ``HEAD``,
so subagents never touch the user's working tree. ``.stageflow/`` is added to the repository's
``info/exclude`` so the user's ``git status`` stays clean. A second call for the same run
reuses the worktree (and re-attaches the branch when only the directory was removed).

Without a usable repository the run is ``read_only``: the file tools can read the project but
every write is refused with ``RunWorkspace.reason``, which tells the user how to opt in to
``in_place``. That covers a directory that is not a git repository, a repository with no
commit yet (there is nothing to branch from; ``git worktree add --orphan`` needs git 2.42) and
a project directory none of whose files are committed to an enclosing repository (a home
directory under a dotfiles repository, say). A project that is a committed subdirectory of a
larger repository works: the worktree holds the whole repository and the workspace root is
the same subdirectory inside it.

Stages of a run that write in parallel get worktrees of their own (``prepare_lane``, lanes in
``engine.lanes``): ``.stageflow/worktrees/<run>--<stage>`` on ``stageflow/<run>--<stage>``,
forked from the run branch; a conflicting merge is resolved in one too.

The commit a worktree started from is kept next to it in ``<name>.json`` (``.stageflow`` is
excluded from git), so ``find_workspace`` and ``diff_summary`` work after a restart.

git runs through ``workspace.git`` (an argv, a timeout, no hooks or fsmonitor); failures raise
``WorkspaceError``. Everything here is synchronous: callers run it in a worker thread.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stageflow.engine.lanes import Lane, run_branch
from stageflow.errors import InvalidArgument
from stageflow.workspace.git import GIT_TIMEOUT, GitError, finish_checkout, git, rev

__all__ = [
    "NOT_GIT_REASON",
    "Repo",
    "RunWorkspace",
    "WorkspaceError",
    "WorkspaceMode",
    "check_gitfile",
    "ensure_worktree",
    "find_workspace",
    "lane_dir",
    "prepare_lane",
    "prepare_workspace",
    "registered",
    "remove_worktree",
    "repo_info",
    "repo_lock",
    "worktree_dir",
]

log = logging.getLogger(__name__)

WorkspaceMode = Literal["auto", "worktree", "in_place"]

EXCLUDE_LINE = ".stageflow/"
_OPT_IN = (
    'set `mode = "in_place"` under `[workspace]` in .stageflow/config.toml (or '
    "`workspace: in_place` in the template) to let stages write files"
)
NOT_GIT_REASON = f"the project is not a git repository; {_OPT_IN}"
NO_COMMIT_REASON = (
    "the project's git repository has no commits yet, so there is nothing to branch a run "
    f"worktree from; commit once (e.g. `git commit --allow-empty -m init`) or {_OPT_IN}"
)
NO_GIT_REASON = f"git is not installed (or not on PATH), so no run worktree can be made; {_OPT_IN}"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_LANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class WorkspaceError(GitError):
    """The run's workspace could not be prepared or inspected (a git command failed)."""


@dataclass(frozen=True)
class RunWorkspace:
    """Where a run's agent stages work, and whether they may write there."""

    root: Path
    mode: Literal["worktree", "in_place", "read_only"]
    branch: str | None = None
    base: str | None = None  # commit the worktree was created from
    reason: str = ""  # why read_only (shown to the model on a refused write)


def worktree_dir(project: Path, run_id: str) -> Path:
    """``<project>/.stageflow/worktrees/<run>``: where the run's worktree lives."""
    _check_run_id(run_id)
    return Path(project).resolve() / ".stageflow" / "worktrees" / run_id


def _check_run_id(run_id: str) -> None:
    # the id becomes a directory and a branch name; keep both unsurprising
    if not _RUN_ID.fullmatch(run_id) or run_id.endswith(".lock"):
        raise InvalidArgument(
            f"run id {run_id!r} cannot name a worktree: use letters, digits, '-' and '_'"
        )


def _git(
    args: list[str], *, cwd: Path, timeout: float = GIT_TIMEOUT, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return git(args, cwd=cwd, timeout=timeout, check=check, error=WorkspaceError)


@dataclass(frozen=True)
class Repo:
    """The repository holding a project: its top level, the project's prefix in it (``""``
    or ``sub/dir/``) and its common git directory."""

    top: Path
    prefix: str
    common: Path


def repo_info(project: Path, *, timeout: float = GIT_TIMEOUT) -> Repo | str:
    """The repository of ``project``, or why it cannot hold run worktrees."""
    info = _repo_info(Path(project).resolve(), timeout)
    return info if isinstance(info, str) else Repo(*info)


def _repo_info(project: Path, timeout: float) -> tuple[Path, str, Path] | str:
    """(toplevel, prefix, common git dir) of the repository holding ``project``, or why not."""
    try:
        done = _git(
            ["rev-parse", "--show-toplevel", "--show-prefix", "--git-common-dir"],
            cwd=project,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        return NO_GIT_REASON
    lines = done.stdout.splitlines()
    if done.returncode != 0 or len(lines) < 3:
        return NOT_GIT_REASON
    top, prefix, common = Path(lines[0]), lines[1], Path(lines[2])
    if not common.is_absolute():
        common = (project / common).resolve()
    if _git(
        ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
        cwd=project,
        timeout=timeout,
        check=False,
    ).returncode:
        return NO_COMMIT_REASON
    if prefix:
        tracked = _git(
            ["ls-tree", "-d", "--name-only", "HEAD", prefix.rstrip("/")], cwd=top, timeout=timeout
        )
        if not tracked.stdout.strip():
            return (
                f"the project is inside the git repository at {top} but none of its files "
                f"are committed there; {_OPT_IN}"
            )
    return top, prefix, common


_locks_guard = threading.Lock()
_locks: dict[Path, threading.Lock] = {}


def _lock_for(where: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(where, threading.Lock())


_repo_locks: dict[Path, threading.RLock] = {}


def repo_lock(top: Path) -> threading.RLock:
    """One lock per repository around adding, removing and listing its worktrees: ``git
    worktree list`` fails reading the admin directory of a worktree being added meanwhile
    (stages of one run prepare their lanes at the same time)."""
    with _locks_guard:
        return _repo_locks.setdefault(Path(top), threading.RLock())


def prepare_workspace(
    project: Path, run_id: str, mode: WorkspaceMode = "auto", *, timeout: float = GIT_TIMEOUT
) -> RunWorkspace:
    """The run's workspace, creating its worktree when needed (idempotent).

    ``in_place`` -> the project, writable. ``auto`` -> a worktree when the project is a git
    repository with a commit, else ``read_only`` with the reason. ``worktree`` -> a worktree
    or WorkspaceError. Safe to call from several threads at once (parallel first stages).
    """
    project = Path(project).resolve()
    _check_run_id(run_id)
    if mode == "in_place":
        return RunWorkspace(root=project, mode="in_place")
    # stages of one run may start together; the run lease already keeps other processes out
    with _lock_for(worktree_dir(project, run_id)):
        return _prepare(project, run_id, mode, timeout)


def _prepare(project: Path, run_id: str, mode: WorkspaceMode, timeout: float) -> RunWorkspace:
    info = _repo_info(project, timeout)
    if isinstance(info, str):
        if mode == "worktree":
            raise WorkspaceError(f"workspace mode 'worktree' cannot be used for {project}: {info}")
        log.info("run %s works read-only in %s: %s", run_id, project, info)
        return RunWorkspace(root=project, mode="read_only", reason=info)
    top, prefix, common = info
    _ensure_excluded(common)
    where = worktree_dir(project, run_id)
    branch = run_branch(run_id)
    base = ensure_worktree(top, where, branch, "HEAD", prefix=prefix, timeout=timeout)
    return RunWorkspace(root=where / prefix, mode="worktree", branch=branch, base=base)


def ensure_worktree(
    top: Path,
    where: Path,
    branch: str,
    start: str,
    *,
    prefix: str = "",
    timeout: float = GIT_TIMEOUT,
) -> str:
    """Make (or reuse) the worktree ``where`` on ``branch``, a new branch at ``start`` unless it
    exists; returns the commit it started from. A removed directory is re-attached to its
    branch (the work on it stays); a stray directory in its place is an error."""
    with repo_lock(top):
        return _ensure_worktree(top, where, branch, start, prefix, timeout)


def _ensure_worktree(
    top: Path, where: Path, branch: str, start: str, prefix: str, timeout: float
) -> str:
    meta = _read_meta(where)
    known = registered(top, where, timeout=timeout)
    if known and (where / ".git").exists():
        log.debug("reusing worktree %s", where)
        return meta.get("base") or _rev(top, branch, timeout)
    if where.exists() and any(where.iterdir()):
        raise WorkspaceError(
            f"{where} exists but is not a git worktree of {top}; remove it and start again"
        )
    if known:  # the directory was deleted; forget it (only ours, not the user's others)
        _git(["worktree", "remove", "--force", str(where)], cwd=top, timeout=timeout)
    where.parent.mkdir(parents=True, exist_ok=True)
    if rev(top, f"refs/heads/{branch}", timeout=timeout) is not None:
        # the directory was removed but the branch (with its work) is still there
        _git(["worktree", "add", str(where), branch], cwd=top, timeout=timeout)
        base = meta.get("base") or _rev(top, branch, timeout)
    else:
        base = _rev(top, start, timeout)
        _git(["worktree", "add", "-b", branch, str(where), base], cwd=top, timeout=timeout)
    _meta_path(where).write_text(json.dumps({"base": base, "prefix": prefix}) + "\n")
    log.info("worktree %s on %s from %s", where, branch, base[:12])
    return base


def check_gitfile(common: Path, where: Path) -> None:
    """Refuse (``WorkspaceError``) to run git in the worktree ``where`` when its ``.git`` is not
    the file git made: a regular file naming ``<common>/worktrees/<id>``, whose ``gitdir``
    names it back. A stage that rewrote it could point stageflow's own git commands at a
    repository of its making, whose config runs programs (a clean filter on ``git add``)."""
    dotgit = where / ".git"
    changed = WorkspaceError(
        f"{dotgit} is not the worktree link git made (a stage changed or replaced it?); "
        f"stageflow runs no git there: look at it, then remove {where} and retry the stage"
    )
    try:
        if not stat.S_ISREG(os.lstat(dotgit).st_mode) or os.lstat(dotgit).st_size > 4096:
            raise changed
        text = dotgit.read_text(encoding="utf-8", errors="replace").strip()
        if not text.startswith("gitdir: ") or "\n" in text:
            raise changed
        admin = Path(os.path.realpath(where / text[len("gitdir: ") :]))
        if admin.parent != Path(os.path.realpath(common / "worktrees")):
            raise changed
        back = (admin / "gitdir").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        raise changed from None
    if os.path.realpath(back) != os.path.realpath(dotgit):
        raise changed


def remove_worktree(top: Path, where: Path, *, timeout: float = GIT_TIMEOUT) -> None:
    """Remove the worktree ``where`` (its directory and registration), if it is one."""
    with repo_lock(top):
        if registered(top, where, timeout=timeout):
            _git(["worktree", "remove", "--force", str(where)], cwd=top, timeout=timeout)
        _meta_path(where).unlink(missing_ok=True)


def lane_dir(project: Path, run_id: str, lane: Lane) -> Path:
    """``<project>/.stageflow/worktrees/<lane name>``."""
    if not _LANE.fullmatch(lane.name) or not lane.name.startswith(f"{run_id}--"):
        raise InvalidArgument(f"lane {lane.name!r} cannot name a worktree of run {run_id}")
    return worktree_dir(project, run_id).with_name(lane.name)


def prepare_lane(
    project: Path,
    run_id: str,
    lane: Lane | None,
    mode: WorkspaceMode = "auto",
    *,
    timeout: float = GIT_TIMEOUT,
) -> RunWorkspace:
    """Where an attempt on ``lane`` works: the run's workspace (``run`` lanes, no lane, or no
    worktree), a stage's own worktree forked from the run branch (made on its first attempt,
    reused after), or a merge's worktree, which its ``resolve`` operation made."""
    ws = prepare_workspace(project, run_id, mode, timeout=timeout)
    if lane is None or lane.kind == "run" or ws.mode != "worktree":
        return ws
    project = Path(project).resolve()
    info = _repo_info(project, timeout)
    if isinstance(info, str):
        raise WorkspaceError(f"run {run_id}: {info}")
    top, prefix, _ = info
    where = lane_dir(project, run_id, lane)
    with _lock_for(where):
        if lane.kind == "resolve":
            if not (where / ".git").is_file():
                raise WorkspaceError(
                    f"the merge worktree {where} is missing; retry the run to prepare it again"
                )
            base = _read_meta(where).get("base") or _rev(top, lane.branch, timeout)
        else:
            start = lane.fork_from or run_branch(run_id)
            base = ensure_worktree(top, where, lane.branch, start, prefix=prefix, timeout=timeout)
            base = _catch_up(info, where, start, timeout) or base
    return RunWorkspace(root=where / prefix, mode="worktree", branch=lane.branch, base=base)


def _catch_up(info: tuple[Path, str, Path], where: Path, start: str, timeout: float) -> str | None:
    """A stage's own worktree kept from an earlier attempt moves up to the run branch when all
    of its branch is in the run branch already (merged at a join) and the run branch moved on:
    a stage rerun after an upstream rework must see that rework, not the tree it was first
    forked from. A fast-forward only (nothing is lost, git keeps uncommitted files and refuses
    when they would be overwritten), completed when a kill left it half done; returns the
    new base, or None when it stays."""
    top, prefix, common = info
    target = rev(top, f"refs/heads/{start}", timeout=timeout)
    try:
        check_gitfile(common, where)  # a replaced .git: no git runs there (its commit says so)
    except WorkspaceError:
        return None
    tip = rev(where, "HEAD", timeout=timeout)
    if target is None or tip is None or tip == target:
        return None
    inside = _git(["merge-base", "--is-ancestor", tip, target], cwd=top, check=False)
    if inside.returncode != 0:
        return None  # work of its own not merged yet: it stays where it is
    moved = _git(["merge", "--ff-only", "-q", target], cwd=where, timeout=timeout, check=False)
    if moved.returncode != 0 and finish_checkout(where, target) is None:  # killed half way?
        moved = _git(["merge", "--ff-only", "-q", target], cwd=where, timeout=timeout, check=False)
    if moved.returncode != 0:
        log.info("worktree %s stays at %s: %s", where, tip[:12], moved.stderr.strip()[-300:])
        return None
    _meta_path(where).write_text(json.dumps({"base": target, "prefix": prefix}) + "\n")
    log.info("worktree %s caught up with %s at %s", where, start, target[:12])
    return target


def find_workspace(project: Path, run_id: str) -> RunWorkspace | None:
    """The run's existing worktree, or None when it has none (never creates anything)."""
    where = worktree_dir(project, run_id)
    if not (where / ".git").is_file():
        return None
    meta = _read_meta(where)
    branch = run_branch(run_id)
    base = meta.get("base")
    if base is None:
        try:
            base = _rev(where, branch, GIT_TIMEOUT)
        except (WorkspaceError, FileNotFoundError):
            return None
    return RunWorkspace(
        root=where / meta.get("prefix", ""), mode="worktree", branch=branch, base=base
    )


def _meta_path(where: Path) -> Path:
    return where.with_name(where.name + ".json")


def _read_meta(where: Path) -> dict[str, str]:
    try:
        data = json.loads(_meta_path(where).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _rev(cwd: Path, rev: str, timeout: float) -> str:
    return _git(
        ["rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=cwd, timeout=timeout
    ).stdout.strip()


def worktrees(top: Path, *, timeout: float = GIT_TIMEOUT) -> list[tuple[Path, str | None]]:
    """The repository's worktrees as ``git worktree list`` gives them: each path with the
    branch checked out there (None: a detached HEAD or a bare entry)."""
    with repo_lock(top):
        listing = _git(["worktree", "list", "--porcelain"], cwd=top, timeout=timeout).stdout
    found: list[tuple[Path, str | None]] = []
    for line in listing.splitlines():
        if line.startswith("worktree "):
            found.append((Path(line[len("worktree ") :]), None))
        elif line.startswith("branch refs/heads/") and found:
            found[-1] = (found[-1][0], line[len("branch refs/heads/") :])
    return found


def registered(top: Path, where: Path, *, timeout: float = GIT_TIMEOUT) -> bool:
    """Whether the repository at ``top`` lists ``where`` as one of its worktrees."""
    return any(path.resolve() == where for path, _ in worktrees(top, timeout=timeout))


def _ensure_excluded(common: Path) -> None:
    """Add ``.stageflow/`` to ``info/exclude`` once, so run state never shows in git status."""
    exclude = common / "info" / "exclude"
    try:
        text = exclude.read_text() if exclude.exists() else ""
    except OSError as exc:
        raise WorkspaceError(f"cannot read {exclude}: {exc}") from None
    if EXCLUDE_LINE in (line.strip() for line in text.splitlines()):
        return
    exclude.parent.mkdir(parents=True, exist_ok=True)
    sep = "" if not text or text.endswith("\n") else "\n"
    with exclude.open("a") as fh:
        fh.write(f"{sep}# stageflow run state and worktrees\n{EXCLUDE_LINE}\n")
