"""A plan template's run-time items in a real git repository: items are not laned (they work
in the run's worktree, kept apart by their declared files), and what they write reaches the
run branch in commits before a join merges other branches into it and before the run ends."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from stageflow import events as ev
from stageflow.engine.runner import AttemptRequest, AttemptResult
from tests.workspace.lanes_kit import Writer, git, lane_env

pytestmark = pytest.mark.anyio

PLAN = {
    "items": [
        {"id": "a", "title": "A", "files": ["a.py"]},
        {"id": "b", "title": "B", "files": ["b.py"], "depends_on": ["a"]},
    ]
}

SEQUENTIAL = """
name: planned
stages:
  - {id: plan, agent: writer, plan: {max_items: 3, agents: [writer]}}
  - {id: work, agent: writer, for_each: plan, depends_on: [plan], produces: [summary]}
  - {id: ship, agent: writer, depends_on: [work], produces: [summary]}
"""

# work's items run while docs writes in a lane of its own; notes joins docs alone (its merge
# waits for the items), ship joins both
BESIDE_A_WRITER = """
name: planned
stages:
  - {id: plan, agent: writer, plan: {max_items: 3, agents: [writer]}}
  - {id: work, agent: writer, for_each: plan, depends_on: [plan], produces: [summary]}
  - {id: docs, agent: writer, depends_on: [plan], produces: [summary]}
  - {id: notes, agent: reader, depends_on: [docs], produces: [notes]}
  - {id: ship, agent: writer, depends_on: [work, docs, notes], produces: [summary]}
"""


class Planner(Writer):
    """The writer, whose plan stage also hands back ``PLAN``."""

    async def run(self, request: AttemptRequest) -> AttemptResult:
        done = await super().run(request)
        if request.stage.id == "plan":
            return done.model_copy(update={"plan": PLAN})
        return done


def slow(script):  # type: ignore[no-untyped-def]
    async def later(req):  # type: ignore[no-untyped-def]
        await anyio.sleep(0.5)
        return script(req)

    return later


def _scripts(seen: dict[str, Path]):  # type: ignore[no-untyped-def]
    def wrote(path: str, text: str):  # type: ignore[no-untyped-def]
        def script(req):  # type: ignore[no-untyped-def]
            seen[req.stage.id] = req.workdir
            return {path: text}

        return script

    return {
        "work.a": slow(wrote("a.py", "A = 1\n")),  # still writing when docs is done
        "work.b": wrote("b.py", "B = 2\n"),
        "docs": wrote("DOCS.md", "docs\n"),
        "ship": lambda req: {
            "shipped.txt": " ".join(sorted(p.name for p in req.workdir.iterdir()))
        },
    }


@pytest.mark.parametrize("template", [SEQUENTIAL, BESIDE_A_WRITER], ids=["sequential", "beside"])
async def test_plan_items_work_in_the_run_worktree_and_their_files_reach_the_run_branch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, template: str
) -> None:
    async with lane_env(tmp_path, monkeypatch, template) as env:
        planner = Planner()
        env.runner._agent = planner
        seen: dict[str, Path] = {}
        planner.scripts = _scripts(seen)
        state = await env.run("planned")
        rid = state.run_id
        assert state.ended == "completed", state.end_reason
        envs = await env.store.load_events(rid)
        view = await env.service.view(rid)
    by_id = {s.id: s for s in view.stages}
    item_git = by_id["work.a"].git
    assert item_git is not None and item_git.branch == f"stageflow/{rid}"
    assert item_git.merge.startswith("committed with 'work' (")
    assert seen["work.a"] == env.worktree(rid) and seen["work.b"] == env.worktree(rid)
    run_branch = f"stageflow/{rid}"
    assert git(env.project, "show", f"{run_branch}:a.py") == "A = 1\n"
    assert git(env.project, "show", f"{run_branch}:b.py") == "B = 2\n"
    if "docs" in seen:
        assert git(env.project, "show", f"{run_branch}:DOCS.md") == "docs\n"
    # the run's worktree holds nothing uncommitted at the end
    assert git(env.worktree(rid), "status", "--porcelain") == ""

    ops = [(e.event.op, e.event.stage, e.event.outcome) for e in envs if _git_done(e)]
    assert all(outcome != "failed" for _, _, outcome in ops), ops
    # the items' files are the for_each stage's commit, made once its items were done and
    # before anything merged into the run branch (nothing merged while items were writing)
    assert ("commit", "work", "done") in ops
    [work] = [line.split()[0] for line in env.log(run_branch, "%H %s") if " work: " in line]
    files = git(env.project, "show", "--format=", "--name-only", work)
    assert sorted(files.split()) == ["a.py", "b.py"]
    if "docs" in seen:
        assert ops.index(("commit", "work", "done")) < ops.index(("merge", "docs", "done"))
        item_ends = [
            e.seq
            for e in envs
            if isinstance(e.event, ev.AttemptFinished) and e.event.stage.startswith("work.")
        ]
        [merge_at] = [
            e.seq
            for e in envs
            if isinstance(e.event, ev.GitStarted)
            and e.event.op == "merge"
            and e.event.stage == "docs"
        ]
        assert merge_at > max(item_ends)  # and after their commit (above)


def _git_done(env: ev.Envelope) -> bool:
    return isinstance(env.event, ev.GitFinished)
