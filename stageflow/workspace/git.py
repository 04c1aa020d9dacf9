"""Every git command stageflow runs itself: an argv, a timeout, a safe environment and config.

These commands run unconfined, as stageflow, in worktrees whose files a model wrote (and, with
``sandbox = "none"``, next to git data a model could have changed). So nothing a repository
or a worktree says may make them run a program:

- ``-c core.hooksPath=/dev/null``: no hook runs (``post-checkout`` on ``worktree add``,
  ``pre-commit``/``post-commit``, ``post-merge``...), planted or the user's own;
- ``-c core.fsmonitor=false``: no file-system monitor program runs (git starts the one a
  config names for ``status``, ``diff``, ``add``...);
- ``--no-ext-diff`` where diffs are made, and ``GIT_EXTERNAL_DIFF`` dropped: no external
  diff program;
- ``-c commit.gpgSign=false``, ``-c tag.gpgSign=false``: no signing program (and no prompt);
- ``-c rerere.enabled=false``: a recorded resolution never resolves a conflict silently;
- ``-c gc.auto=0``, ``-c maintenance.auto=false``: no background maintenance during an
  operation;
- ``-c core.pager=cat``, ``GIT_EDITOR=:`` and ``GIT_TERMINAL_PROMPT=0``: nothing waits for
  a terminal;
- ``-c submodule.recurse=false``, ``-c diff.ignoreSubmodules=all``: git never starts itself
  inside a directory holding a ``.git`` a model made (its config could name an fsmonitor).
- ``-c merge.union.driver=git merge-file ...``: a ``merge=union`` attribute a stage committed
  never turns a conflict into a silent concatenation (the one program named is git itself,
  given only git's own temporary file names).

The ``-c`` settings reach child git processes too (through ``GIT_CONFIG_PARAMETERS``). The
variables that would point git at another repository than the one named by ``cwd`` are
dropped. Commits stageflow makes are by ``stageflow <stageflow@localhost>`` at a given time,
so redoing an operation after a crash makes the same commit.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from stageflow.errors import RunFailure

__all__ = [
    "AUTHOR",
    "GIT_TIMEOUT",
    "SAFE_CONFIG",
    "GitError",
    "commit_env",
    "finish_checkout",
    "git",
    "rev",
]

GIT_TIMEOUT = 60.0
AUTHOR = ("stageflow", "stageflow@localhost")
SAFE_CONFIG: tuple[str, ...] = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.pager=cat",
    "core.quotepath=false",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "rerere.enabled=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "submodule.recurse=false",
    "diff.ignoreSubmodules=all",
    "advice.detachedHead=false",
    # a stage's .gitattributes saying `merge=union` would make conflicting lines merge
    # silently (both kept, no conflict stage): that driver is a plain 3-way merge here
    "merge.union.driver=git merge-file --diff3 --marker-size=%L -L ours -L base -L theirs %A %O %B",
)
# variables that would point git at another repository than the one we name with cwd
_GIT_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_EXTERNAL_DIFF",
)


class GitError(RunFailure):
    """A git command stageflow ran failed or hung (the message names it and its stderr)."""

    def __init__(
        self,
        message: str,
        *,
        command: list[str] | None = None,
        stderr: str = "",
        code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.command = command
        self.stderr = stderr
        self.code = code


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
    env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for credentials on a terminal
    env["GIT_EDITOR"] = ":"  # nor for a commit message
    env["GIT_PAGER"] = "cat"
    env["LC_ALL"] = "C"
    if extra:
        env.update(extra)
    return env


def git(
    args: Sequence[str],
    *,
    cwd: Path,
    timeout: float = GIT_TIMEOUT,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    error: type[GitError] = GitError,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``git <SAFE_CONFIG> <args>`` in ``cwd`` (``input`` on its stdin); ``error`` when it
    fails (if ``check``) or does not finish within ``timeout``. ``FileNotFoundError`` when git
    is not installed."""
    argv = ["git"]
    for setting in SAFE_CONFIG:
        argv += ["-c", setting]
    argv += list(args)
    shown = " ".join(["git", *args])
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=_env(env),
            stdin=None if input is not None else subprocess.DEVNULL,
            input=input,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise error(
            f"`{shown}` in {cwd} did not finish within {timeout:g}s", command=argv
        ) from None
    if check and done.returncode != 0:
        stderr = (done.stderr.strip() or done.stdout.strip())[-2000:]
        raise error(
            f"`{shown}` in {cwd} failed (exit {done.returncode}): {stderr}",
            command=argv,
            stderr=stderr,
            code=done.returncode,
        )
    return done


def rev(cwd: Path, name: str, *, timeout: float = GIT_TIMEOUT) -> str | None:
    """The commit ``name`` points at, or None when it names no commit."""
    done = git(
        ["rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"],
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return done.stdout.strip() or None if done.returncode == 0 else None


def commit_env(at: float) -> dict[str, str]:
    """Author and committer ``stageflow`` at ``at`` (an operation's logged time): the same
    operation redone after a crash makes the same commit."""
    stamp = datetime.fromtimestamp(int(at), tz=UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
    name, email = AUTHOR
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
        "GIT_COMMITTER_DATE": stamp,
    }


def finish_checkout(tree: Path, commit: str) -> str | None:
    """A checkout killed half way (a land's ``merge --ff-only`` writing the user's files, a
    lane catching up with the run branch), its index lock left: if every changed file
    is exactly ``commit``'s version (or gone, where ``commit`` has none), complete it (None);
    else say what differs. An untracked file ``commit`` does not have is the user's own (the
    checkout never writes one): it is no sign of an interrupted checkout, and it stays."""
    (Path(git(["rev-parse", "--absolute-git-dir"], cwd=tree).stdout.strip()) / "index.lock").unlink(
        missing_ok=True
    )
    listing = git(["status", "--porcelain", "-z", "--untracked-files=all"], cwd=tree).stdout
    written = False
    for entry in (e for e in listing.split("\0") if len(e) > 3):
        code, path = entry[:2], entry[3:]
        want = git(["rev-parse", "--verify", "--quiet", f"{commit}:{path}"], cwd=tree, check=False)
        if want.returncode != 0 and (code == "??" or not os.path.lexists(tree / path)):
            written = written or code != "??"  # the user's own file, or one the land deletes
            continue
        have = git(["hash-object", "--", path], cwd=tree, check=False)
        if want.returncode or have.returncode or want.stdout.strip() != have.stdout.strip():
            return path
        written = True
    if written:
        git(["reset", "-q", "--hard", commit], cwd=tree)
    return None
