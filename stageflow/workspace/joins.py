"""A run's commits and merges: each stage's commit, and real git merges into the run branch.

Every function here performs one operation the engine logged as started (``git_started``) and
is safe to call again for the same operation after a crash (``redo``): it looks at the
repository first and finishes what is missing, never doing twice what is done.

- ``commit_stage``: ``git add -A`` and a commit by ``stageflow`` (message from the stage's
  summary, run, stage and attempt in trailers) on the lane's branch; nothing to commit is
  ``no_changes``. Done already: the branch's head is that commit (found by its trailers).
- ``merge_into_run``: ``git merge --no-ff`` of a stage's branch in the run's worktree. A
  conflicting merge is aborted at once (the run branch is never left half merged) and
  reported with each file's base and both sides. Done already: the head is a merge of the
  logged head and the stage's commit. A merge a crash interrupted is aborted and redone.
- ``prepare_resolution``: a worktree of its own holding the conflicting merge, markers in the
  files (``diff3`` style, so the base shows too), for the merge stage or a human.
- ``adopt_resolution``: refuses while conflict markers remain; commits the merge there and
  fast-forwards the run branch to it.

Commits carry the operation's logged time, so a redone commit is the same commit.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import tempfile
from pathlib import Path

from stageflow.engine.gitops import GitResult
from stageflow.workspace.git import commit_env, git, rev
from stageflow.workspace.worktree import ensure_worktree, registered, remove_worktree

__all__ = [
    "adopt_resolution",
    "commit_stage",
    "conflict_markers",
    "merge_into_run",
    "parents",
    "prepare_resolution",
    "trailers",
]

log = logging.getLogger(__name__)

SIDE_CHARS = 6000  # of each side of a conflicted file in the report
REPORT_CHARS = 60_000
_MARKER_BYTES = (b"<<<<<<< ", b"||||||| ", b">>>>>>> ")
_LINE_BOUND = 1 << 16  # bytes read per line while looking for markers


def trailers(run_id: str, stage: str, attempt: int | None, **more: str) -> str:
    """``Stageflow-Run/-Stage/-Attempt`` (and more) trailer lines of a stageflow commit."""
    lines = [f"Stageflow-Run: {run_id}", f"Stageflow-Stage: {stage}"]
    if attempt is not None:
        lines.append(f"Stageflow-Attempt: {attempt}")
    lines += [f"Stageflow-{k.replace('_', '-').title()}: {v}" for k, v in more.items()]
    return "\n".join(lines)


def _subject(text: str, limit: int = 72) -> str:
    line = " ".join(text.strip().splitlines()[0].split()) if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _message(subject: str, body: str, trailer: str) -> str:
    parts = [subject.strip(), body.strip(), trailer]
    return "\n\n".join(p for p in parts if p) + "\n"


def _is_commit_of(cwd: Path, sha: str | None, run_id: str, stage: str, attempt: int) -> bool:
    if sha is None:
        return False
    body = git(["log", "-1", "--format=%B", sha], cwd=cwd).stdout.splitlines()
    want = trailers(run_id, stage, attempt).splitlines()
    return all(line in body for line in want)


def parents(cwd: Path, sha: str) -> list[str]:
    return git(["rev-list", "--parents", "-n", "1", sha], cwd=cwd).stdout.split()[1:]


def _files(cwd: Path, old: str, new: str) -> tuple[str, ...]:
    out = git(["diff", "--no-ext-diff", "--name-only", "-z", old, new], cwd=cwd).stdout
    return tuple(p for p in out.split("\0") if p)


def _drop_lock(cwd: Path) -> None:
    """A crashed git leaves ``index.lock`` behind, and every later command fails on it."""
    gitdir = Path(git(["rev-parse", "--absolute-git-dir"], cwd=cwd).stdout.strip())
    (gitdir / "index.lock").unlink(missing_ok=True)


def _recover(cwd: Path, head: str | None) -> None:
    """After a crash in the middle of an operation here: a stale index lock goes, a merge in
    progress is aborted, and a worktree left between two states goes back to ``head``."""
    _drop_lock(cwd)
    if rev(cwd, "MERGE_HEAD") is not None:
        git(["merge", "--abort"], cwd=cwd, check=False)
    if head is not None and rev(cwd, "HEAD") == head:
        git(["reset", "-q", "--hard", head], cwd=cwd)


def _stage_all(cwd: Path, env: dict[str, str] | None = None) -> list[str]:
    """``git add -A``, minus repositories a model made inside the tree (a gitlink would bring
    a foreign ``.git`` along); returns those left out."""
    git(["add", "-A"], cwd=cwd, env=env)
    staged = git(["diff", "--cached", "--raw", "-z", "--no-abbrev"], cwd=cwd, env=env).stdout.split(
        "\0"
    )
    embedded = [
        staged[i + 1]
        for i in range(0, len(staged) - 1, 2)
        if staged[i].split(" ")[1:2] == ["160000"]
    ]
    for path in embedded:
        git(["rm", "-q", "--cached", "-r", "--", path], cwd=cwd, env=env)
    return embedded


def commit_stage(
    where: Path,
    *,
    run_id: str,
    stage: str,
    attempt: int,
    summary: str,
    head: str | None,
    at: float,
    redo: bool = False,
) -> GitResult:
    """Commit what ``stage`` changed in the worktree ``where`` (see the module docstring)."""
    branch = git(["symbolic-ref", "--short", "HEAD"], cwd=where).stdout.strip()
    current = rev(where, "HEAD")
    if _is_commit_of(where, current, run_id, stage, attempt):
        assert current is not None
        return GitResult(
            "done", commit=current, branch=branch, files=_files(where, f"{current}^", current)
        )
    if head is not None and current != head:
        return GitResult("failed", branch=branch, output=_moved(where, branch, current, head))
    if redo:
        _drop_lock(where)
    left_out = _stage_all(where)
    if git(["diff", "--cached", "--quiet"], cwd=where, check=False).returncode == 0:
        return GitResult("no_changes", branch=branch)
    first = _subject(summary) or f"stage '{stage}' (attempt {attempt})"
    body = "\n".join(summary.strip().splitlines()[1:])
    if left_out:
        body += f"\n\nLeft out (a git repository inside the tree): {', '.join(left_out)}"
    message = _message(f"{stage}: {first}", body, trailers(run_id, stage, attempt))
    git(["commit", "-q", "--no-verify", "-F", "-"], cwd=where, env=commit_env(at), input=message)
    new = rev(where, "HEAD")
    assert new is not None
    log.info("run %s: committed stage %s on %s as %s", run_id, stage, branch, new[:12])
    return GitResult("done", commit=new, branch=branch, files=_files(where, f"{new}^", new))


def _moved(where: Path, branch: str, current: str | None, head: str | None) -> str:
    """Why an operation cannot go on when ``branch`` moved without the log (a commit made by
    hand in the run's worktree), and how to put it back without losing that commit."""
    keep = f" (the commit stays as {current[:12]}: cherry-pick it later)" if current else ""
    return (
        f"{branch} is at {current}, not {head} as logged: a commit made there is none the run "
        f"knows; put the branch back with `git -C {where} reset --keep {head}`{keep}"
    )


def _merge_message(
    run_id: str, run_branch: str, source: str, attempt: int | None, join: str | None, note: str
) -> str:
    when = f"for stage '{join}'" if join else "at the end of the run"
    subject = f"Merge stage '{source}'" + (f" (attempt {attempt})" if attempt else "")
    extra = {"join": join} if join else {}
    body = f"Joined {when}." + (f"\n\n{note}" if note else "")
    return _message(
        f"{subject} into {run_branch}", body, trailers(run_id, source, attempt, **extra)
    )


def _is_merge(cwd: Path, sha: str | None, head: str | None, source: str | None) -> bool:
    return sha is not None and parents(cwd, sha) == [head, source]


def _side(cwd: Path, stage: int, path: str) -> str:
    done = git(["show", f":{stage}:{path}"], cwd=cwd, check=False)
    if done.returncode != 0:
        return "(absent on this side)"
    text = done.stdout
    if "\0" in text[:8000]:
        return f"(binary, {len(text)} bytes)"
    cut = len(text) > SIDE_CHARS
    return text[:SIDE_CHARS] + (f"\n[... {len(text) - SIDE_CHARS} more characters]" if cut else "")


def _conflict_report(cwd: Path, files: list[str], ours: str, theirs: str) -> str:
    """Each conflicted file's base and both sides (read from the index's merge stages)."""
    lines = [f"# Merge conflict: {theirs} into {ours}", ""]
    for path in files:
        lines += [f"## {path}", ""]
        for number, label in ((1, "base"), (2, f"ours ({ours})"), (3, f"theirs ({theirs})")):
            lines += [f"### {label}", "", "```", _side(cwd, number, path).rstrip("\n"), "```", ""]
        if sum(len(x) for x in lines) > REPORT_CHARS:
            lines += ["[... the other files are left out; see the merge worktree]"]
            break
    return "\n".join(lines)


def _unmerged(cwd: Path) -> list[str]:
    out = git(["diff", "--name-only", "--diff-filter=U", "-z"], cwd=cwd).stdout
    return sorted(dict.fromkeys(p for p in out.split("\0") if p))


def merge_into_run(
    trunk: Path,
    source_branch: str,
    *,
    run_id: str,
    source: str,
    attempt: int | None,
    join: str | None,
    head: str | None,
    at: float,
    redo: bool = False,
) -> GitResult:
    """Merge ``source_branch`` into the run branch checked out at ``trunk``."""
    run_branch = git(["symbolic-ref", "--short", "HEAD"], cwd=trunk).stdout.strip()
    if redo:
        _recover(trunk, head)
    current, tip = rev(trunk, "HEAD"), rev(trunk, source_branch)
    if tip is None:
        return GitResult("failed", output=f"branch {source_branch} is missing")
    if _is_merge(trunk, current, head, tip):  # done before a crash
        assert current is not None and head is not None
        return GitResult(
            "done", commit=current, branch=run_branch, files=_files(trunk, head, current)
        )
    if current != head:
        return GitResult("failed", output=_moved(trunk, run_branch, current, head))
    dirty = git(["status", "--porcelain", "--untracked-files=no"], cwd=trunk).stdout.strip()
    if dirty:
        return GitResult(
            "failed",
            output=f"the run's worktree {trunk} has uncommitted changes no stage made "
            f"({dirty.splitlines()[0].strip()} ...): stash them (`git -C {trunk} stash`) or "
            "discard them; a commit there is none the run knows, and would stop it again",
        )
    message = _merge_message(run_id, run_branch, source, attempt, join, "")
    merged = git(
        ["merge", "--no-ff", "--no-edit", "-m", message, tip],
        cwd=trunk,
        env=commit_env(at),
        check=False,
    )
    if merged.returncode == 0:
        new = rev(trunk, "HEAD")
        assert new is not None and head is not None
        log.info("run %s: merged %s into %s as %s", run_id, source, run_branch, new[:12])
        return GitResult("done", commit=new, branch=run_branch, files=_files(trunk, head, new))
    files = _unmerged(trunk)
    report = _conflict_report(trunk, files, run_branch, source_branch) if files else ""
    git(["merge", "--abort"], cwd=trunk, check=False)
    if rev(trunk, "HEAD") != head or git(["status", "--porcelain"], cwd=trunk).stdout.strip():
        git(["reset", "-q", "--hard", head or "HEAD"], cwd=trunk)  # never leave it half done
    if not files:
        return GitResult("failed", output=(merged.stderr or merged.stdout).strip()[-2000:])
    log.info("run %s: merging %s conflicts in %s", run_id, source, ", ".join(files))
    return GitResult(
        "conflict",
        branch=run_branch,
        files=tuple(files),
        output=f"merging {source_branch} conflicts in {', '.join(files)}",
        artifacts={"conflict": report},
    )


def prepare_resolution(
    top: Path,
    where: Path,
    branch: str,
    source_branch: str,
    *,
    head: str,
    prefix: str = "",
) -> GitResult:
    """The worktree ``where`` on ``branch`` at ``head`` with ``source_branch`` merged in but
    not committed: conflict markers in the files (made again if it is not exactly that)."""
    tip = rev(top, source_branch)
    if (where / ".git").is_file() and registered(top, where):
        if rev(where, "MERGE_HEAD") == tip and rev(where, "HEAD") == head:
            return GitResult("done", branch=branch, files=tuple(_unmerged(where)))
        remove_worktree(top, where)
    if rev(top, f"refs/heads/{branch}") is not None:
        git(["branch", "-D", branch], cwd=top)
    ensure_worktree(top, where, branch, head, prefix=prefix)
    git(
        # by its commit, as the join's merge did: a side moved aside in a file/directory
        # conflict is named '<path>~<commit>' in both, so the files the conflict lists exist
        ["-c", "merge.conflictStyle=diff3", "merge", "--no-ff", "--no-commit", str(tip)],
        cwd=where,
        check=False,
    )
    if rev(where, "MERGE_HEAD") != tip:
        return GitResult(
            "failed", output=f"could not start the merge of {source_branch} in {where}"
        )
    files = _unmerged(where)
    for path in files:  # a conflict git leaves without markers gets them: nothing passes unseen
        if not _has_marker(where, path):
            _write_markers(where, path, branch, source_branch)
    return GitResult("done", branch=branch, files=tuple(files))


def _links(cwd: Path, path: str) -> set[int]:
    """The merge stages (1 base, 2 ours, 3 theirs) at which ``path`` is a symbolic link."""
    out = git(["ls-files", "-u", "-z", "--", path], cwd=cwd).stdout
    entries = [e.split("\t", 1)[0].split() for e in out.split("\0") if "\t" in e]
    return {int(e[2]) for e in entries if len(e) == 3 and e[0] == "120000"}


def _blob(cwd: Path, stage: int, path: str, links: set[int]) -> str:
    done = git(["show", f":{stage}:{path}"], cwd=cwd, check=False)
    if done.returncode != 0:
        return "(deleted on this side: delete the file to keep it deleted)\n"
    if stage in links:
        return f"(a symbolic link to {done.stdout}: make that link to keep this side)\n"
    if "\0" in done.stdout[:8000]:
        return (
            f"(binary, {len(done.stdout)} bytes: replace this file with the version to keep, "
            f"e.g. git show :{stage}:{path})\n"
        )
    text = done.stdout
    return text if text.endswith("\n") or not text else text + "\n"


def _write_markers(where: Path, path: str, ours: str, theirs: str) -> None:
    """Conflict markers for a file git left without any (deleted on one side and changed on
    the other, binary on both, a symbolic link made differently on each side): the merge
    stage, or the person, must decide it explicitly, as for a text conflict. Only a regular
    file, a link (replaced, never followed) or a missing one inside ``where`` is written."""
    target = where / path
    real_root = os.path.realpath(where)
    if os.path.commonpath([real_root, os.path.realpath(target.parent)]) != real_root:
        return  # a link on the way out of the worktree: it stays unresolved
    links = _links(where, path)
    if target.is_symlink():  # git left our link: no marker fits in one, so a file replaces it
        target.unlink()
    elif target.exists() and not target.is_file():
        return  # a directory: it counts as unresolved until someone fixes it
    text = (
        f"<<<<<<< ours ({ours})\n{_blob(where, 2, path, links)}"
        f"||||||| base\n{_blob(where, 1, path, links)}"
        f"=======\n{_blob(where, 3, path, links)}>>>>>>> theirs ({theirs})\n"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def _has_marker(root: Path, path: str) -> bool:
    """Whether ``root/path`` holds a conflict marker line. Read as a regular file inside
    ``root`` only, never following a symlink (a model may have made one to a FIFO, a device or
    a file outside), line by line with a bound: what cannot be read counts as unresolved."""
    real_root = os.path.realpath(root)
    target = os.path.realpath(root / path)
    if os.path.commonpath([real_root, target]) != real_root:
        return True  # a directory on the way was replaced by a link out of the worktree
    try:
        fd = os.open(root / path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return False  # resolved by deleting it
    except OSError as exc:
        return exc.errno != errno.ELOOP  # a symlink holds no marker; other errors: unresolved
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return True
        for line in iter(lambda: fh.readline(_LINE_BOUND), b""):
            if line.startswith(_MARKER_BYTES) or line.rstrip(b"\r\n") == b"=======":
                return True
    return False


def conflict_markers(root: Path, files: tuple[str, ...] | list[str]) -> list[str]:
    """The files (of ``files``, relative to ``root``) that still hold a conflict marker line
    (or that cannot be read as a regular file inside ``root``)."""
    return [path for path in files if _has_marker(root, path)]


def _merge_commit_of_files(where: Path, head: str, tip: str, message: str, at: float) -> str:
    """The merge commit of ``head`` and ``tip`` whose tree is the files in ``where``: made with
    an index of its own, so whatever happened to the worktree's HEAD, index or merge state (a
    commit or a ``merge --abort`` made there) only its files count. The same on a redo."""
    with tempfile.TemporaryDirectory(prefix="stageflow-resolve-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git(["read-tree", head], cwd=where, env=env)
        _stage_all(where, env)
        tree = git(["write-tree"], cwd=where, env=env).stdout.strip()
    made = git(
        ["commit-tree", tree, "-p", head, "-p", tip, "-F", "-"],
        cwd=where,
        env=commit_env(at),
        input=message,
    )
    sha = made.stdout.strip()
    git(["reset", "-q", "--hard", sha], cwd=where)  # its worktree shows the resolution
    return sha


def adopt_resolution(
    trunk: Path,
    where: Path,
    source_branch: str,
    *,
    run_id: str,
    source: str,
    attempt: int | None,
    join: str | None,
    resolved_by: str,
    head: str | None,
    files: tuple[str, ...],
    at: float,
    redo: bool = False,
) -> GitResult:
    """Commit the resolved merge in ``where`` and fast-forward the run branch at ``trunk``."""
    run_branch = git(["symbolic-ref", "--short", "HEAD"], cwd=trunk).stdout.strip()
    tip = rev(trunk, source_branch)
    if redo:
        _recover(trunk, head)
    current = rev(trunk, "HEAD")
    if _is_merge(trunk, current, head, tip):
        assert current is not None and head is not None
        return GitResult(
            "done", commit=current, branch=run_branch, files=_files(trunk, head, current)
        )
    if current != head:
        return GitResult("failed", output=_moved(trunk, run_branch, current, head))
    if head is None or tip is None:
        return GitResult("failed", output=f"the merge of {source_branch} has no logged head")
    left = conflict_markers(where, sorted({*files, *_unmerged(where)}))
    if left:
        return GitResult("unresolved", files=tuple(left), output="conflict markers remain")
    if redo:
        _drop_lock(where)
    note = f"Conflicts in {', '.join(files)} resolved by {resolved_by}."
    message = _merge_message(run_id, run_branch, source, attempt, join, note)
    resolved = _merge_commit_of_files(where, head, tip, message, at)
    git(["merge", "--ff-only", "-q", str(resolved)], cwd=trunk)
    assert resolved is not None and head is not None
    log.info("run %s: adopted the resolution of %s as %s", run_id, source, resolved[:12])
    return GitResult(
        "done", commit=resolved, branch=run_branch, files=_files(trunk, head, resolved)
    )
