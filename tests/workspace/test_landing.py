"""``land``: a completed run's branch brought into the user's branch, with each strategy, on
real git repositories; refused when the target moved in a way that conflicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow import events as ev
from stageflow.errors import InvalidArgument, InvalidState
from tests.workspace.lanes_kit import LaneEnv, git, lane_env

pytestmark = pytest.mark.anyio

TEMPLATE = """
name: two_writers
stages:
  - {id: backend, agent: writer, produces: [summary]}
  - {id: frontend, agent: writer, produces: [summary]}
  - {id: docs, agent: writer, depends_on: [backend, frontend], produces: [summary]}
"""


def _script(env: LaneEnv) -> None:
    env.writer.scripts.update(
        backend=lambda req: {"api.py": "def api(): ...\n"},
        frontend=lambda req: {"ui.js": "export const ui = 1;\n"},
        docs=lambda req: {"README.md": "# demo\n\nnow with an api and a ui\n"},
    )


async def _completed(env: LaneEnv) -> str:
    _script(env)
    state = await env.run("two_writers", task="add the api and the ui")
    assert state.ended == "completed", state.end_reason
    assert env.log("main") == ["init"]  # nothing reached the user's branch before the land
    assert git(env.project, "status", "--porcelain") == ""
    return state.run_id


async def test_the_default_land_squashes_into_the_branch_the_run_started_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with lane_env(tmp_path, monkeypatch, TEMPLATE) as env:
        rid = await _completed(env)
        state = await env.service.land(rid, actor="alice")
        envs = await env.store.load_events(rid)
        view = await env.service.view(rid)
    subjects = env.log("main")
    assert len(subjects) == 2 and subjects[1] == "init"
    assert subjects[0].startswith("add the api and the ui (stageflow run ")
    body = git(env.project, "log", "-1", "--format=%B", "main")
    assert f"Stageflow-Run: {rid}" in body and "- backend: backend wrote api.py" in body
    assert len(env.log("main", "%P")[0].split()) == 1  # a squash: one parent
    # main is checked out in the user's working tree: landing updated their files
    assert (env.project / "api.py").read_text() == "def api(): ...\n"
    assert (env.project / "README.md").read_text() == "# demo\n\nnow with an api and a ui\n"
    assert git(env.project, "status", "--porcelain") == ""
    started = [e.event for e in envs if isinstance(e.event, ev.GitStarted) and e.event.op == "land"]
    assert [(s.strategy, s.into, s.by is not None) for s in started] == [("squash", "main", True)]
    assert state.git.landed[0].commit == env.branch("main")
    assert view.git is not None and view.git.landed[0].into == "main"
    assert not (env.worktree(rid).with_name(f"{rid}.land")).exists()  # its worktree is gone


async def test_land_with_merge_makes_a_merge_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with lane_env(tmp_path, monkeypatch, TEMPLATE) as env:
        rid = await _completed(env)
        await env.service.land(rid, strategy="merge")
    head = env.log("main", "%P %s")[0].split(" ", 2)
    assert head[1] == env.branch(f"stageflow/{rid}")  # second parent: the run branch
    assert (env.project / "ui.js").exists()


async def test_land_with_rebase_replays_one_commit_per_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with lane_env(tmp_path, monkeypatch, TEMPLATE) as env:
        rid = await _completed(env)
        git(env.project, "commit", "-q", "--allow-empty", "-m", "the user moved on")
        await env.service.land(rid, strategy="rebase")
    subjects = env.log("main")
    assert subjects == [
        "docs: docs wrote README.md",
        "frontend: frontend wrote ui.js",
        "backend: backend wrote api.py",
        "the user moved on",
        "init",
    ]
    assert all(len(p.split()) == 1 for p in env.log("main", "%P")[:-1])  # linear
    assert "Stageflow-Stage: backend" in git(env.project, "log", "-1", "--format=%B", "main~2")


async def test_a_target_that_moved_without_conflict_still_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with lane_env(tmp_path, monkeypatch, TEMPLATE) as env:
        rid = await _completed(env)
        (env.project / "CHANGES.md").write_text("user's change\n")
        git(env.project, "add", "CHANGES.md")
        git(env.project, "commit", "-q", "-m", "user's change")
        await env.service.land(rid)
    assert (env.project / "CHANGES.md").read_text() == "user's change\n"
    assert (env.project / "api.py").exists()


async def test_a_target_that_moved_with_a_conflict_is_refused_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with lane_env(tmp_path, monkeypatch, TEMPLATE) as env:
        rid = await _completed(env)
        (env.project / "README.md").write_text("# the user's own readme\n")
        git(env.project, "commit", "-q", "-am", "user edits the readme")
        before = env.branch("main")
        for strategy in ("squash", "merge", "rebase"):
            with pytest.raises(InvalidState) as refused:
                await env.service.land(rid, strategy=strategy)  # type: ignore[arg-type]
            text = str(refused.value)
            assert "main has moved since the run started (1 new commit(s))" in text
            how = "rebase" if strategy == "rebase" else "merge"
            assert "README.md" in text and f"git -C {env.worktree(rid)} {how} main" in text
            assert f"stageflow land {rid} --into" in text
        state = await env.service.state(rid)
        # refused, recorded, nothing changed: the user's branch, their files, the run branch
        assert env.branch("main") == before
        assert (env.project / "README.md").read_text() == "# the user's own readme\n"
        assert git(env.project, "status", "--porcelain") == ""
        assert state.git.refused is not None and state.git.landed == ()
        # the advice works: land into a new branch instead
        await env.service.land(rid, into=f"stageflow-{rid}")
    assert git(env.project, "show", f"stageflow-{rid}:api.py") == "def api(): ...\n"
    assert env.branch("main") == before


async def test_a_dirty_working_tree_where_the_target_is_checked_out_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with lane_env(tmp_path, monkeypatch, TEMPLATE) as env:
        rid = await _completed(env)
        (env.project / "app.py").write_text("my uncommitted work\n")
        with pytest.raises(InvalidState, match=r"uncommitted changes.*commit or stash"):
            await env.service.land(rid)
        assert (env.project / "app.py").read_text() == "my uncommitted work\n"
        assert env.log("main") == ["init"]


async def test_land_refuses_runs_that_have_not_completed_or_landed_already(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gated = TEMPLATE.replace(
        "produces: [summary]}\n  - {id: docs",
        "produces: [summary], approval: required}\n  - {id: docs",
        1,
    )
    async with lane_env(tmp_path, monkeypatch, gated) as env:
        _script(env)
        state = await env.run("two_writers")
        rid = state.run_id
        assert state.status == "waiting"
        with pytest.raises(InvalidState, match="only a completed run lands, after its last"):
            await env.service.land(rid)
        await env.service.decide(rid, stage="frontend", decision="approve")
        state = await env.scheduler.drive(rid, until="idle")
        assert state.ended == "completed"
        with pytest.raises(InvalidArgument, match="not a branch name"):
            await env.service.land(rid, into="../escape")
        await env.service.land(rid)
        with pytest.raises(InvalidState, match="already landed into main"):
            await env.service.land(rid)
    assert len(env.log("main")) == 2


async def test_an_untracked_user_file_the_land_would_overwrite_refuses_and_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with lane_env(tmp_path, monkeypatch, TEMPLATE) as env:
        rid = await _completed(env)
        (env.project / "api.py").write_text("the user's own, never added\n")
        with pytest.raises(InvalidState, match="untracked working tree files would be"):
            await env.service.land(rid)
        state = await env.service.state(rid)
        assert state.git.landed == () and state.git.pending is None
        # once the user moves it away, the same land goes through
        (env.project / "api.py").rename(env.project / "api.mine.py")
        await env.service.land(rid)
    assert (env.project / "api.mine.py").read_text() == "the user's own, never added\n"
    assert (env.project / "api.py").read_text() == "def api(): ...\n"
    assert len(env.log("main")) == 2
