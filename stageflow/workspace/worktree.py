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

The commit the worktree started from is kept next to it in ``<run>.json`` (``.stageflow`` is
excluded from git), so ``find_workspace`` and ``diff_summary`` work after a restart.

git runs as a subprocess with an argv and a timeout; failures raise ``WorkspaceError``.
Everything here is synchronous: callers run it in a worker thread.
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

from stageflow.errors import InvalidArgument, RunFailure

__all__ = [
    "NOT_GIT_REASON",
    "DiffSummary",
    "FileChange",
    "RunWorkspace",
    "WorkspaceError",
    "WorkspaceMode",
    "diff_summary",
    "find_workspace",
    "prepare_workspace",
    "worktree_dir",
]

log = logging.getLogger(__name__)

WorkspaceMode = Literal["auto", "worktree", "in_place"]

GIT_TIMEOUT = 60.0
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
# variables that would point git at another repository than the one we name with -C
_GIT_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)


class WorkspaceError(RunFailure):
    """The run's workspace could not be prepared or inspected (a git command failed)."""

    def __init__(self, message: str, *, command: list[str] | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.command = command
        self.stderr = stderr


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
    """Run ``git <args>`` in ``cwd``; WorkspaceError when it fails (if ``check``) or hangs."""
    argv = ["git", *args]
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
    env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for credentials on a terminal
    env["LC_ALL"] = "C"
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise WorkspaceError(
            f"`{' '.join(argv)}` in {cwd} did not finish within {timeout:g}s", command=argv
        ) from None
    if check and done.returncode != 0:
        stderr = done.stderr.strip()
        raise WorkspaceError(
            f"`{' '.join(argv)}` in {cwd} failed (exit {done.returncode}): {stderr}",
            command=argv,
            stderr=stderr,
        )
    return done


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
    branch = f"stageflow/{run_id}"
    meta = _read_meta(where)
    registered = _registered(top, where, timeout)
    if registered and (where / ".git").exists():
        base = meta.get("base") or _rev(top, branch, timeout)
        log.debug("run %s reuses worktree %s", run_id, where)
        return RunWorkspace(root=where / prefix, mode="worktree", branch=branch, base=base)
    if where.exists() and any(where.iterdir()):
        raise WorkspaceError(
            f"{where} exists but is not a git worktree of {top}; remove it and start again"
        )
    if registered:  # the directory was deleted; forget it (only ours, not the user's others)
        _git(["worktree", "remove", "--force", str(where)], cwd=top, timeout=timeout)
    where.parent.mkdir(parents=True, exist_ok=True)
    has_branch = _git(
        ["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
        cwd=top,
        timeout=timeout,
        check=False,
    )
    if has_branch.returncode == 0:
        # the directory was removed but the branch (with its work) is still there
        _git(["worktree", "add", str(where), branch], cwd=top, timeout=timeout)
        base = meta.get("base") or _rev(top, branch, timeout)
    else:
        base = _rev(top, "HEAD", timeout)
        _git(["worktree", "add", "-b", branch, str(where), base], cwd=top, timeout=timeout)
    _meta_path(where).write_text(json.dumps({"base": base, "prefix": prefix}) + "\n")
    log.info("run %s works in worktree %s on %s from %s", run_id, where, branch, base[:12])
    return RunWorkspace(root=where / prefix, mode="worktree", branch=branch, base=base)


def find_workspace(project: Path, run_id: str) -> RunWorkspace | None:
    """The run's existing worktree, or None when it has none (never creates anything)."""
    where = worktree_dir(project, run_id)
    if not (where / ".git").is_file():
        return None
    meta = _read_meta(where)
    branch = f"stageflow/{run_id}"
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


def _registered(top: Path, where: Path, timeout: float) -> bool:
    """Whether the repository at ``top`` lists ``where`` as one of its worktrees."""
    listing = _git(["worktree", "list", "--porcelain"], cwd=top, timeout=timeout).stdout
    prefix = "worktree "
    paths = [line[len(prefix) :] for line in listing.splitlines() if line.startswith(prefix)]
    return any(Path(p).resolve() == where for p in paths)


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


# -- what a run changed ---------------------------------------------------------------------

ChangeStatus = Literal["added", "modified", "deleted", "untracked"]
_STATUS_LETTER: dict[str, ChangeStatus] = {"A": "added", "M": "modified", "D": "deleted"}
_MARK: dict[ChangeStatus, str] = {"added": "A", "modified": "M", "deleted": "D", "untracked": "?"}


@dataclass(frozen=True)
class FileChange:
    """One changed path (relative to the workspace root) and its line counts."""

    path: str
    status: ChangeStatus
    insertions: int = 0
    deletions: int = 0
    binary: bool = False


@dataclass(frozen=True)
class DiffSummary:
    """Everything the run changed against its base: commits, uncommitted edits, new files."""

    files: list[FileChange]
    insertions: int
    deletions: int

    def text(self) -> str:
        """A compact listing for status output, one line per file."""
        if not self.files:
            return "no changes"
        n = len(self.files)
        lines = [f"{n} file{'s' if n != 1 else ''} changed, +{self.insertions} -{self.deletions}"]
        for f in self.files:
            counts = "binary" if f.binary else f"+{f.insertions} -{f.deletions}"
            lines.append(f"{_MARK[f.status]} {f.path} ({counts})")
        return "\n".join(lines)


def diff_summary(ws: RunWorkspace, *, timeout: float = GIT_TIMEOUT) -> DiffSummary | None:
    """What changed in a worktree since ``ws.base``; None for other modes or a missing tree.

    Tracked changes come from ``git diff <base>`` (committed and uncommitted alike, renames
    shown as delete + add); untracked files that are not ignored count as insertions.
    """
    if ws.mode != "worktree" or ws.base is None or not ws.root.is_dir():
        return None
    common = ["-c", "core.quotepath=false", "diff", "--no-ext-diff", "--no-renames", "--relative"]
    names = _git([*common, "--name-status", "-z", ws.base], cwd=ws.root, timeout=timeout).stdout
    stats = _git([*common, "--numstat", "-z", ws.base], cwd=ws.root, timeout=timeout).stdout
    counts: dict[str, tuple[int, int, bool]] = {}
    for record in stats.split("\0"):
        parts = record.split("\t", 2)
        if len(parts) == 3:
            added, removed, path = parts
            binary = added == "-"
            counts[path] = (0 if binary else int(added), 0 if binary else int(removed), binary)
    fields = names.split("\0")
    files: list[FileChange] = []
    for letter, path in zip(fields[0::2], fields[1::2], strict=False):
        if not path:
            continue
        ins, dels, binary = counts.get(path, (0, 0, False))
        status = _STATUS_LETTER.get(letter[:1], "modified")
        files.append(FileChange(path, status, ins, dels, binary))
    others = _git(
        ["ls-files", "--others", "--exclude-standard", "-z"], cwd=ws.root, timeout=timeout
    ).stdout
    for path in filter(None, others.split("\0")):
        lines, binary = _count_lines(ws.root / path)
        files.append(FileChange(path, "untracked", lines, 0, binary))
    files.sort(key=lambda f: f.path)
    return DiffSummary(
        files=files,
        insertions=sum(f.insertions for f in files),
        deletions=sum(f.deletions for f in files),
    )


def diff_patch(ws: RunWorkspace, *, max_chars: int, timeout: float = GIT_TIMEOUT) -> str | None:
    """The worktree's tracked changes since ``ws.base`` as a patch (its first ``max_chars``);
    None for other modes. No external diff or textconv program runs."""
    if ws.mode != "worktree" or ws.base is None or not ws.root.is_dir():
        return None
    argv = ["-c", "core.quotepath=false", "diff", "--no-ext-diff", "--no-textconv"]
    argv += ["--no-renames", "--no-color", "--relative", ws.base]
    text = _git(argv, cwd=ws.root, timeout=timeout).stdout
    return text if len(text) <= max_chars else text[:max_chars] + "\n... (diff cut here)\n"


def _count_lines(path: Path) -> tuple[int, bool]:
    """(line count, is binary) of an untracked file, as ``git diff`` would count it."""
    lines = 0
    last = b""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):  # a link, FIFO or device: count no lines
            return 0, False
        with path.open("rb") as fh:
            first = True
            while chunk := fh.read(1 << 20):
                if first and b"\0" in chunk[:8192]:
                    return 0, True
                first = False
                lines += chunk.count(b"\n")
                last = chunk[-1:]
    except OSError:
        return 0, False
    return lines + (1 if last and last != b"\n" else 0), False
