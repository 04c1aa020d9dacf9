"""What a worktree changed against a commit: per-file status and line counts, for status.

Tracked changes come from ``git diff <base>`` (committed and uncommitted alike, renames shown
as delete + add); untracked files that are not ignored count as insertions. git runs through
``workspace.git`` (no hook, fsmonitor or external diff program).
"""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stageflow.workspace.git import GIT_TIMEOUT, git
from stageflow.workspace.worktree import RunWorkspace, WorkspaceError

__all__ = ["DiffSummary", "FileChange", "diff_patch", "diff_summary"]

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
    common = ["diff", "--no-ext-diff", "--no-renames", "--relative"]
    names = _git([*common, "--name-status", "-z", ws.base], ws.root, timeout).stdout
    stats = _git([*common, "--numstat", "-z", ws.base], ws.root, timeout).stdout
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
    others = _git(["ls-files", "--others", "--exclude-standard", "-z"], ws.root, timeout).stdout
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
        # never through a link, never blocking on a FIFO; a link, FIFO or device counts 0
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return 0, False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return 0, False
        with os.fdopen(fd, "rb") as fh:
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


def _git(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return git(args, cwd=cwd, timeout=timeout, error=WorkspaceError)
