"""Whether a run's workspace holds model-written files: once an agent stage started there.

A command stage's command is the template author's (trusted), but from the moment an agent
stage of the run has started, the workspace may hold files the model wrote (a ``conftest.py``
that ``pytest`` imports, a ``Makefile``), so the run's later command stages run in the OS
sandbox. The mark is a file next to the run's worktree
(``.stageflow/worktrees/<run>.agents``), written before the agent stage starts, so it holds
across restarts and for every process that drives the run. It is never removed: the files
stay in the workspace.
"""

from __future__ import annotations

from pathlib import Path

from stageflow.workspace.worktree import worktree_dir

__all__ = ["is_tainted", "mark_tainted"]


def _mark(project: Path, run_id: str) -> Path:
    where = worktree_dir(project, run_id)
    return where.with_name(where.name + ".agents")


def mark_tainted(project: Path, run_id: str) -> None:
    """Record that an agent stage of ``run_id`` starts in its workspace (idempotent)."""
    mark = _mark(project, run_id)
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.touch(exist_ok=True)


def is_tainted(project: Path, run_id: str) -> bool:
    """Whether an agent stage of ``run_id`` has started in its workspace."""
    return _mark(project, run_id).exists()
