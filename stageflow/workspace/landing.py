"""Landing a run: bringing its branch into the user's branch, the one git operation that
touches what the user works on.

The land commit is made in a worktree of its own (``.stageflow/worktrees/<run>.land``,
detached at the target's tip, removed afterwards), so nothing the user sees changes until it
is complete; then the target moves: by a compare-and-swap ``update-ref`` when no worktree has
it checked out, else by ``git merge --ff-only`` in the worktree that has it (the user's files
change then, because they asked to land). Strategies:

- ``squash`` (default): one commit with the run's whole change;
- ``merge``: a merge commit of the target and the run branch;
- ``rebase``: one commit per first-parent step of the run branch (each stage's commit, and
  each join's merge as the commit of the stage it merged), replayed on the target.

A target that moved in a way that conflicts is refused with what to do; so is a worktree
with uncommitted changes where the target is checked out. Redone after a crash, a land that
already reached the target (a commit with the run's trailer in ``head..target``) is not made
again; one killed while checking out the user's files is completed when every file it left
behind is exactly the land commit's version.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from stageflow.engine.gitops import GitResult
from stageflow.workspace.git import commit_env, finish_checkout, git, rev
from stageflow.workspace.joins import parents
from stageflow.workspace.worktree import (
    WorkspaceError,
    check_gitfile,
    remove_worktree,
    repo_info,
    repo_lock,
    worktree_dir,
    worktrees,
)

__all__ = ["Strategy", "land_run", "land_worktree"]

log = logging.getLogger(__name__)

Strategy = Literal["merge", "squash", "rebase"]
_ZERO = "0" * 40


def land_worktree(project: Path, run_id: str) -> Path:
    """Where a land commit is made: ``.stageflow/worktrees/<run>.land``."""
    where = worktree_dir(project, run_id)
    return where.with_name(where.name + ".land")


def _checked_out_at(top: Path, branch: str) -> Path | None:
    return next((path for path, on in worktrees(top) if on == branch), None)


def _already_landed(top: Path, into: str, before: str | None, run_id: str) -> str | None:
    span = into if before is None else f"{before}..{into}"
    if rev(top, f"refs/heads/{into}") is None:
        return None
    found = git(
        ["log", "-n", "1", "--format=%H", f"--grep=^Stageflow-Run: {run_id}$", span], cwd=top
    ).stdout.strip()
    return found or None


def _refusal(
    run_id: str, into: str, trunk: Path, files: list[str], behind: int, strategy: Strategy
) -> str:
    """What to do, for the land asked: a rebase replays each commit of the run branch, so a
    merge of ``into`` made there would not help it (its earlier commits conflict still);
    the run branch is rebased instead. The same land again names its strategy and target."""
    listed = ", ".join(files[:10]) + (" ..." if len(files) > 10 else "")
    if strategy == "rebase":
        update = f"`git -C {trunk} rebase {into}`, resolve each conflict (`git rebase --continue`)"
    else:
        update = f"`git -C {trunk} merge {into}`, resolve and commit"
    again = f"stageflow land {run_id} --into {into}" + (
        f" --strategy {strategy}" if strategy != "squash" else ""
    )
    return (
        f"cannot land run {run_id} into {into}: {into} has moved since the run started "
        f"({behind} new commit(s)) and conflicts with the run's changes in {listed}. Bring the "
        f"run up to date and land again: {update}, then `{again}`; or land into a new branch: "
        f"`stageflow land {run_id} --into stageflow-{run_id}`"
    )


def _unmerged(cwd: Path) -> list[str]:
    out = git(["diff", "--name-only", "--diff-filter=U", "-z"], cwd=cwd).stdout
    return sorted(dict.fromkeys(p for p in out.split("\0") if p))


def _build(
    where: Path, strategy: Strategy, run_tip: str, base: str, message: str, at: float
) -> tuple[str | None, list[str]]:
    """Make the land commit in ``where``: (its sha, []) or (None, conflicted files) or
    (None, []) when there is nothing to land."""
    env = commit_env(at)
    if strategy == "merge":
        done = git(["merge", "--no-ff", "-m", message, run_tip], cwd=where, env=env, check=False)
        if done.returncode != 0:
            return None, _unmerged(where) or [done.stderr.strip()[-300:]]
        return rev(where, "HEAD"), []
    if strategy == "squash":
        git(["merge", "--squash", run_tip], cwd=where, check=False)
        if _unmerged(where):
            return None, _unmerged(where)
        if git(["diff", "--cached", "--quiet"], cwd=where, check=False).returncode == 0:
            return None, []
        git(["commit", "-q", "--no-verify", "-F", "-"], cwd=where, env=env, input=message)
        return rev(where, "HEAD"), []
    start = rev(where, "HEAD")
    steps = git(["rev-list", "--reverse", "--first-parent", f"{base}..{run_tip}"], cwd=where)
    for sha in steps.stdout.split():
        ups = parents(where, sha)
        pick = ["cherry-pick", "--no-commit", *(["-m", "1"] if len(ups) > 1 else []), sha]
        git(pick, cwd=where, env=env, check=False)
        if _unmerged(where):
            return None, _unmerged(where)
        if git(["diff", "--cached", "--quiet"], cwd=where, check=False).returncode == 0:
            continue  # the target has this change already
        like = ups[1] if len(ups) > 1 else sha  # a join's merge: the stage it merged
        git(["commit", "-q", "--no-verify", "-C", like], cwd=where, env=_committer(env))
    end = rev(where, "HEAD")
    return (end, []) if end != start else (None, [])


def _committer(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("GIT_COMMITTER")}


def land_run(
    project: Path,
    *,
    run_id: str,
    run_branch: str,
    base: str,
    into: str,
    strategy: Strategy,
    before: str | None,
    message: str,
    at: float,
    redo: bool = False,
) -> GitResult:
    """Bring ``run_branch`` into ``into`` (see the module docstring); ``before`` is the
    target's tip when the land was logged (None: a new branch, made from the run's base)."""
    repo = repo_info(project)
    if isinstance(repo, str):
        raise WorkspaceError(f"cannot land run {run_id}: {repo}")
    top = repo.top
    landed = _already_landed(top, into, before, run_id)
    if landed is not None:
        return GitResult("done", commit=landed, branch=into)
    target = rev(top, f"refs/heads/{into}")
    if target != before:
        return GitResult("refused", branch=into, output=f"{into} moved while landing; land again")
    run_tip = rev(top, f"refs/heads/{run_branch}")
    if run_tip is None:
        return GitResult("failed", output=f"the run branch {run_branch} is missing")
    where = land_worktree(project, run_id)
    remove_worktree(top, where)
    try:
        with repo_lock(top):
            git(["worktree", "add", "-q", "--detach", str(where), before or base], cwd=top)
        commit, conflicts = _build(where, strategy, run_tip, base, message, at)
    finally:
        remove_worktree(top, where)
    trunk = worktree_dir(project, run_id)
    if commit is None:
        if not conflicts:
            return GitResult("refused", branch=into, output=f"nothing to land: {into} has it all")
        behind = (
            len(git(["rev-list", f"{base}..{before}"], cwd=top).stdout.split()) if before else 0
        )
        return GitResult(
            "refused",
            branch=into,
            files=tuple(conflicts),
            output=_refusal(run_id, into, trunk, conflicts, behind, strategy),
        )
    tree = _checked_out_at(top, into)
    if tree is None:
        git(
            [
                "update-ref",
                "-m",
                f"stageflow land {run_id}",
                f"refs/heads/{into}",
                commit,
                before or _ZERO,
            ],
            cwd=top,
        )
    else:
        if redo and (odd := finish_checkout(tree, commit)) is not None:
            return GitResult(
                "refused",
                branch=into,
                output=f"{tree} has changes at {odd} since "
                "the land was interrupted; commit or stash them, then land again",
            )
        dirty = git(["status", "--porcelain", "--untracked-files=no"], cwd=tree).stdout.strip()
        if dirty and rev(tree, "HEAD") != commit:
            return GitResult(
                "refused",
                branch=into,
                output=f"{tree} (where {into} is checked out) "
                f"has uncommitted changes ({dirty.splitlines()[0].strip()} ...); "
                "commit or stash them, then land again",
            )
        moved = git(["merge", "--ff-only", "-q", commit], cwd=tree, check=False)
        if moved.returncode != 0:
            return GitResult(
                "refused",
                branch=into,
                output=f"cannot update {tree}: {(moved.stderr or moved.stdout).strip()[-500:]}",
            )
    log.info("run %s landed into %s as %s (%s)", run_id, into, commit[:12], strategy)
    _release_lanes(top, repo.common, project, run_id)
    return GitResult("done", commit=commit, branch=into)


def _release_lanes(top: Path, common: Path, project: Path, run_id: str) -> None:
    """After a land, remove the run's lane and merge worktrees whose files are all committed
    (their branches stay: nothing is lost); one with changes is left, and logged."""
    lanes = worktree_dir(project, run_id).parent
    prefix = f"{run_id}--"
    for where, _ in worktrees(top):
        if where.parent.resolve() != lanes or not where.name.startswith(prefix):
            continue
        try:
            check_gitfile(common, where)
        except WorkspaceError:  # a stage replaced its .git: no git runs there, it stays
            continue
        dirty = git(["status", "--porcelain"], cwd=where, check=False)
        if dirty.returncode != 0 or dirty.stdout.strip():
            log.info("run %s: lane worktree %s has uncommitted files; kept", run_id, where)
            continue
        remove_worktree(top, where)
