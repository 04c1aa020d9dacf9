"""What the stage runner adds to attempts at a join and to merge stages.

- At a join (a stage whose start merged other stages' branches into the run branch), the
  template's ``verify:`` command runs first, in the run's worktree, exactly like a command
  stage (in the OS sandbox once agents have written there). If it fails, the attempt fails
  with its output's tail in the error, so the stage's ``on_failure`` applies (it is no
  artifact: the stage did not declare one).
- A merge stage (``<source>.merge``, the ``merge-resolver`` agent) must leave no conflict
  marker in the files that conflicted: an attempt that says it passed while one remains fails,
  naming the files.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio.to_thread

from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.subagents.command import CommandRunner
from stageflow.subagents.offline.text import one_line
from stageflow.workspace.joins import conflict_markers
from stageflow.workspace.sandbox import Sandbox
from stageflow.workspace.worktree import WorkspaceMode, lane_dir, prepare_workspace

__all__ = ["check_resolution", "verify_join"]

ERROR_TAIL = 3000  # characters of the verification's output in the attempt's error


async def verify_join(
    request: AttemptRequest,
    project: Path,
    mode: WorkspaceMode,
    command: CommandRunner,
    sandbox: Callable[[AttemptRequest], Awaitable[Sandbox | None]],
) -> AttemptResult | None:
    """Run ``request.verify`` in the run's worktree; None when it passed (or there is none),
    else the failed attempt's result."""
    if not request.verify:
        return None
    ws = await anyio.to_thread.run_sync(prepare_workspace, project, request.run_id, mode)
    stage = request.stage.model_copy(
        update={"run": request.verify, "agent": None, "produces": ["verify_output"]}
    )
    check = request.model_copy(update={"stage": stage, "workdir": ws.root})
    result = await command.run(check, sandbox=await sandbox(check))
    if result.status == "passed":
        return None
    output = result.artifacts.get("verify_output", "")
    code = result.outputs.get("exit_code")
    merged = ", ".join(request.merged) or "the upstream branches"
    tail = output[-ERROR_TAIL:]
    return AttemptResult(
        status="failed",
        summary=f"verification `{one_line(request.verify, 60)}` failed after merging {merged}",
        outputs={"verify_exit_code": code},
        runner="command",
        error=f"verification `{one_line(request.verify, 80)}` exited {code} after merging "
        f"{merged}:\n{tail}",
    )


async def check_resolution(
    request: AttemptRequest, result: AttemptResult, project: Path
) -> AttemptResult:
    """A merge stage's result, failed when conflict markers remain in its files."""
    lane = request.lane
    if lane is None or lane.kind != "resolve" or result.status != "passed":
        return result
    top = lane_dir(project, request.run_id, lane)
    left = await anyio.to_thread.run_sync(conflict_markers, top, lane.files)
    if not left:
        return result
    return result.model_copy(
        update={
            "status": "failed",
            "error": f"conflict markers remain in {', '.join(left)}: edit every conflicted "
            "file until no <<<<<<<, |||||||, ======= or >>>>>>> line is left",
        }
    )
