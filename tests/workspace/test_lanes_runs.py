"""Runs on real git repositories: parallel writing stages in worktrees of their own, merged
into the run branch at their join, one commit per stage that changed files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from stageflow import events as ev
from tests.workspace.lanes_kit import git, lane_env

pytestmark = pytest.mark.anyio

PARALLEL = """
name: parallel
stages:
  - {id: design, agent: reader, produces: [design]}
  - {id: backend, agent: writer, depends_on: [design], produces: [summary]}
  - {id: frontend, agent: writer, depends_on: [design], produces: [summary]}
  - {id: review, agent: reader, depends_on: [design], produces: [review]}
  - {id: integrate, agent: writer, depends_on: [backend, frontend, review], produces: [summary]}
"""


def _of(envs: list[ev.Envelope], kind: type[ev.GitStarted] | type[ev.GitFinished]) -> list:
    return [e.event for e in envs if isinstance(e.event, kind)]


async def test_parallel_writers_merge_cleanly_at_the_join_and_both_commits_are_on_the_run_branch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with lane_env(tmp_path, monkeypatch, PARALLEL) as env:
        seen: dict[str, Path] = {}

        def wrote(path: str, text: str):  # type: ignore[no-untyped-def]
            def script(req):  # type: ignore[no-untyped-def]
                seen[req.stage.id] = req.workdir
                return {path: text}

            return script

        env.writer.scripts = {
            "backend": wrote("api.py", "def api(): ...\n"),
            "frontend": wrote("ui.js", "export const ui = 1;\n"),
            "integrate": wrote("README.md", "# demo\n\nintegrated\n"),
        }
        state = await env.run("parallel")
        rid = state.run_id
        assert state.ended == "completed", state.end_reason
        envs = await env.store.load_events(rid)

    # each parallel writer worked in a worktree and on a branch of its own
    lanes = env.project / ".stageflow" / "worktrees"
    assert seen["backend"] == lanes / f"{rid}--backend"
    assert seen["frontend"] == lanes / f"{rid}--frontend"
    assert seen["integrate"] == lanes / rid  # sequential: the run's worktree
    run_branch = f"stageflow/{rid}"
    subjects = env.log(run_branch)
    # one commit per stage that changed files; the read-only stages made none
    assert Counter(s.split(":")[0] for s in subjects if not s.startswith("Merge")) == {
        "backend": 1,
        "frontend": 1,
        "integrate": 1,
        "init": 1,
    }
    merges = [s for s in subjects if s.startswith("Merge")]
    assert sorted(merges) == [
        f"Merge stage 'backend' (attempt 1) into {run_branch}",
        f"Merge stage 'frontend' (attempt 1) into {run_branch}",
    ]
    # merged in spec order, each a real two-parent merge
    merge_shas = env.log(run_branch, "%H %P")
    two_parents = [line for line in merge_shas if len(line.split()) == 3]
    assert len(two_parents) == 2
    assert git(env.project, "show", f"{run_branch}:api.py") == "def api(): ...\n"
    assert git(env.project, "show", f"{run_branch}:ui.js") == "export const ui = 1;\n"
    # trailers name the run, the stage and the attempt
    body = git(env.project, "log", "-1", "--format=%B", f"stageflow/{rid}--backend")
    assert f"Stageflow-Run: {rid}" in body and "Stageflow-Stage: backend" in body
    assert "Stageflow-Attempt: 1" in body
    author = git(env.project, "log", "-1", "--format=%an <%ae>", run_branch)
    assert author.strip() == "stageflow <stageflow@localhost>"
    # every git operation was logged before it ran and finished once
    started = _of(envs, ev.GitStarted)
    finished = _of(envs, ev.GitFinished)
    assert [(s.op, s.stage) for s in started] == [(f.op, f.stage) for f in finished]
    merged = [(s.stage, s.join) for s in started if s.op == "merge"]
    assert merged == [("backend", "integrate"), ("frontend", "integrate")]
    # the user's working tree and branch never moved
    assert git(env.project, "status", "--porcelain") == ""
    assert env.log("main") == ["init"]
