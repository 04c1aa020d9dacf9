"""Found by an adversarial review of git lanes (issue 15): each test failed before its fix."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import anyio
import pytest

from stageflow import events as ev
from stageflow.engine.lanes import Lane
from stageflow.errors import InvalidState
from stageflow.subagents import joining
from stageflow.workspace.worktree import prepare_lane, prepare_workspace
from tests.workspace.lanes_child import TWO_WRITERS, script
from tests.workspace.lanes_kit import (
    LaneEnv,
    git,
    hermetic_git,
    lane_env,
    make_repo,
    open_lanes,
    prepare_project,
)
from tests.workspace.test_landing import TEMPLATE, _completed, _script
from tests.workspace.test_lanes_crash import LAND, _kill_child_at
from tests.workspace.test_lanes_plans import Planner

pytestmark = pytest.mark.anyio

DIAMOND = """
name: diamond
stages:
  - {id: base, agent: writer, produces: [summary]}
  - {id: left, agent: writer, depends_on: [base], produces: [summary]}
  - {id: right, agent: writer, depends_on: [base], produces: [summary]}
  - id: join
    agent: writer
    depends_on: [left, right]
    produces: [summary]
    on_changes_requested: {rework: base, max: 2}
"""


async def test_a_parallel_stage_rerun_after_an_upstream_rework_sees_the_rework(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the rerun of an isolated stage reused its worktree as first forked: it worked on the
    # files from before the rework, and its edit of them conflicted with the rework at the join
    async with lane_env(tmp_path, monkeypatch, DIAMOND) as env:
        seen: dict[tuple[str, int], str] = {}

        def edit(name: str):  # type: ignore[no-untyped-def]
            def script(req):  # type: ignore[no-untyped-def]
                text = (req.workdir / "base.txt").read_text()
                seen[(name, req.attempt)] = text
                files = {f"{name}.txt": f"{name} {req.attempt}\n"}
                if name == "left":  # builds on what base wrote
                    files["base.txt"] = text + "left was here\n"
                return files

            return script

        env.writer.scripts = {
            "base": lambda req: {"base.txt": f"base {req.attempt}\n"},
            "left": edit("left"),
            "right": edit("right"),
        }
        env.writer.verdicts = {"join": ["changes_requested"]}
        state = await env.run("diamond")
        rid = state.run_id
        assert state.ended == "completed", state.end_reason
    assert seen[("left", 2)] == seen[("right", 2)] == "base 2\n"
    run = f"stageflow/{rid}"
    assert git(env.project, "show", f"{run}:base.txt") == "base 2\nleft was here\n"
    assert git(env.project, "show", f"{run}:right.txt") == "right 2\n"
    assert not [s for s in state.stages if s.endswith(".merge")]  # no conflict to resolve


WRITING_REVIEW = """
name: writing_review
stages:
  - {id: backend, agent: writer, produces: [summary]}
  - {id: frontend, agent: writer, produces: [summary]}
  - id: review
    agent: writer
    depends_on: [backend, frontend]
    produces: [summary]
    on_changes_requested: {rework: backend, max: 2}
"""


async def test_a_writing_stage_that_asks_for_changes_has_its_files_committed_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the reviewer's edits stayed uncommitted in the run's worktree, so merging the
    # reworked branch refused that worktree ("uncommitted changes no stage made"): paused
    async with lane_env(tmp_path, monkeypatch, WRITING_REVIEW) as env:
        env.writer.scripts = {
            "backend": lambda req: {"api.py": f"def api(): return {req.attempt}\n"},
            "frontend": lambda req: {"ui.js": "export const ui = 1;\n"},
            "review": lambda req: {"README.md": f"# demo, reviewed {req.attempt}\n"},
        }
        env.writer.verdicts = {"review": ["changes_requested"]}
        state = await env.run("writing_review")
        rid = state.run_id
        assert state.ended == "completed", state.pause_reason or state.end_reason
    run = f"stageflow/{rid}"
    assert git(env.project, "show", f"{run}:api.py") == "def api(): return 2\n"
    assert git(env.project, "show", f"{run}:README.md") == "# demo, reviewed 2\n"
    subjects = env.log(run)
    assert "review: (asked for changes) review wrote README.md" in subjects
    assert subjects[0] == "review: review wrote README.md"
    assert git(env.worktree(rid), "status", "--porcelain") == ""


REWORKED_ITEMS = """
name: planned
stages:
  - {id: plan, agent: writer, plan: {max_items: 3, agents: [writer]}}
  - {id: work, agent: writer, for_each: plan, depends_on: [plan], produces: [summary]}
  - {id: left, agent: writer, depends_on: [work], produces: [summary]}
  - {id: right, agent: writer, depends_on: [work], produces: [summary]}
  - id: ship
    agent: writer
    depends_on: [left, right]
    produces: [summary]
    on_changes_requested: {rework: work, max: 2}
"""


async def test_the_items_rework_is_committed_again_with_their_for_each_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a for_each stage has no attempt of its own (0), so it counted as committed already
    # after its items' rework: their new files stayed uncommitted in the run's worktree, the
    # parallel stages downstream were forked without them and the join's merge refused the
    # worktree (paused); with a sequential stage downstream, its commit took them instead
    async with lane_env(tmp_path, monkeypatch, REWORKED_ITEMS) as env:
        planner = Planner()
        env.runner._agent = planner
        seen: dict[tuple[str, int], str] = {}

        def look(req):  # type: ignore[no-untyped-def]
            seen[(req.stage.id, req.attempt)] = (req.workdir / "a.py").read_text()
            return {f"{req.stage.id}.txt": f"{req.attempt}\n"}

        planner.scripts = {
            "work.a": lambda req: {"a.py": f"A = {req.attempt}\n"},
            "work.b": lambda req: {"b.py": f"B = {req.attempt}\n"},
            "left": look,
            "right": look,
        }
        planner.verdicts = {"ship": ["changes_requested"]}
        state = await env.run("planned")
        rid = state.run_id
        assert state.ended == "completed", state.pause_reason or state.end_reason
    assert seen[("left", 2)] == seen[("right", 2)] == "A = 2\n"
    run = f"stageflow/{rid}"
    assert git(env.project, "show", f"{run}:a.py") == "A = 2\n"
    works = [line.split()[0] for line in env.log(run, "%H %s") if " work: " in line]
    assert len(works) == 2  # one commit per round of the items
    files = git(env.project, "show", "--format=", "--name-only", works[0])
    assert sorted(files.split()) == ["a.py", "b.py"]
    assert git(env.worktree(rid), "status", "--porcelain") == ""


LINKS = """
name: links
stages:
  - {id: backend, agent: writer, produces: [summary]}
  - {id: frontend, agent: writer, produces: [summary]}
  - {id: integrate, agent: writer, depends_on: [backend, frontend], produces: [summary]}
"""


async def test_a_symlink_both_sides_made_differently_must_be_decided_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # git leaves our link in place and no marker can be in a link, so a merge stage that did
    # nothing passed and our side won silently
    async with lane_env(tmp_path, monkeypatch, LINKS) as env:
        seen: list[str] = []

        def link(to: str):  # type: ignore[no-untyped-def]
            def script(req):  # type: ignore[no-untyped-def]
                (req.workdir / "current").symlink_to(to)
                return {}

            return script

        def idle_then_decide(req):  # type: ignore[no-untyped-def]
            path = req.workdir / "current"
            seen.append("link" if path.is_symlink() else path.read_text())
            if req.attempt == 1:
                return {"notes.md": "nothing to do?\n"}
            path.unlink()
            path.symlink_to("ui.js")
            return {}

        env.writer.scripts.update(
            backend=link("app.py"),
            frontend=link("README.md"),
            **{"frontend.merge": idle_then_decide},
        )
        state = await env.run("links")
        assert state.ended == "completed", state.end_reason
    merging = state.stages["frontend.merge"]
    assert [a.outcome for a in merging.attempts] == ["failed", "passed"]
    assert "conflict markers remain in current" in (merging.attempts[0].error or "")
    assert seen[0].startswith("<<<<<<< ours") and "a symbolic link to app.py" in seen[0]
    assert "a symbolic link to README.md" in seen[0]
    run_branch = f"stageflow/{state.run_id}"
    assert git(env.project, "ls-tree", run_branch, "current").split()[0] == "120000"
    assert git(env.project, "show", f"{run_branch}:current") == "ui.js"


@pytest.mark.parametrize("half", [False, True], ids=["before-checkout", "half-checked-out"])
async def test_a_land_redone_after_a_kill_keeps_the_users_untracked_files_and_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, half: bool
) -> None:
    # the redo took every untracked file of the user's (never the land's) and every file the
    # land deletes, already gone, for a change made since: it refused, and the land after
    # that refused the half checked-out tree as uncommitted changes
    project = prepare_project(tmp_path, monkeypatch, TWO_WRITERS)
    async with open_lanes(project) as env:

        def docs(req):  # type: ignore[no-untyped-def]
            (req.workdir / "app.py").unlink()
            return {"README.md": "# demo\n\nnow with an api\n"}

        env.writer.scripts.update(backend=lambda req: {"api.py": "API\n"}, docs=docs)
        state = await env.service.start_run("two_writers", "add the api")
        rid = state.run_id
        state = await env.scheduler.drive(rid, until="idle")
        assert state.ended == "completed", state.end_reason
    (project / "scratch.txt").write_text("mine\n")  # the user's, never committed
    _kill_child_at(tmp_path, project, "before", LAND, "land", rid)
    if half:  # as if killed while the checkout wrote the user's files
        (project / "api.py").write_text("API\n")
        (project / "app.py").unlink()
    async with open_lanes(project) as env:
        state = await env.service.land(rid)
    assert [x.into for x in state.git.landed] == ["main"]
    assert git(project, "status", "--porcelain") == "?? scratch.txt\n"
    assert (project / "scratch.txt").read_text() == "mine\n"
    assert not (project / "app.py").exists() and (project / "api.py").read_text() == "API\n"


def _may_conflict(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False, timeout=30)


@pytest.mark.parametrize("strategy", ["squash", "merge", "rebase"])
async def test_the_advice_of_a_refused_land_lands_when_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    # a rebase was told to merge the target into the run branch, after which it still
    # replayed the run's first commits onto the target and conflicted again; the advice also
    # dropped the strategy and target asked for
    async with lane_env(tmp_path, monkeypatch, TEMPLATE) as env:
        rid = await _completed(env)
        (env.project / "README.md").write_text("# the user's own readme\n")
        git(env.project, "commit", "-q", "-am", "user edits the readme")
        with pytest.raises(InvalidState) as refused:
            await env.service.land(rid, strategy=strategy)  # type: ignore[arg-type]
        text = str(refused.value)
        found = re.search(r"`git -C (\S+) (merge|rebase) main`", text)
        assert found is not None, text
        trunk, how = Path(found[1]), found[2]
        _may_conflict(trunk, how, "main")
        (trunk / "README.md").write_text("# both readmes\n")
        git(trunk, "add", "README.md")
        if how == "rebase":
            git(trunk, "-c", "core.editor=true", "rebase", "--continue")
        else:
            git(trunk, "commit", "-q", "-m", "merge main")
        again = re.search(rf"then `stageflow land {rid} --into main( --strategy (\w+))?`", text)
        assert again is not None, text
        await env.service.land(rid, strategy=again[2] or "squash", into="main")  # type: ignore[arg-type]
    assert (again[2] or "squash") == strategy
    assert (env.project / "README.md").read_text() == "# both readmes\n"
    assert (env.project / "api.py").read_text() == "def api(): ...\n"


async def test_two_processes_redoing_a_dead_land_at_once_land_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # both redid it (nothing was logged first): they shared its worktree, both failed, and
    # both recorded an outcome for the one land started
    project = prepare_project(tmp_path, monkeypatch, TWO_WRITERS)
    async with open_lanes(project) as env:
        script(env.writer)
        state = await env.service.start_run("two_writers", "add the api and the ui")
        rid = state.run_id
        state = await env.scheduler.drive(rid, until="idle")
        assert state.ended == "completed", state.end_reason
    _kill_child_at(tmp_path, project, "before", LAND, "land", rid)
    refused: list[Exception] = []
    async with open_lanes(project) as one, open_lanes(project) as other:

        async def land(env: LaneEnv) -> None:
            try:
                await env.service.land(rid)
            except InvalidState as exc:
                refused.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(land, one)
            tg.start_soon(land, other)
        envs = await one.store.load_events(rid)
        state = await one.service.state(rid)
    assert len(refused) == 1 and "is being landed by another process" in str(refused[0])
    finished = [e.event for e in envs if isinstance(e.event, ev.GitFinished)]
    assert [(f.op, f.outcome) for f in finished if f.op == "land"] == [("land", "done")]
    assert [x.into for x in state.git.landed] == ["main"]
    assert len(git(project, "log", "--format=%s", "main").splitlines()) == 2


TOLERATED = """
name: tolerated
stages:
  - {id: backend, agent: writer, produces: [summary], on_failure: continue}
  - {id: frontend, agent: writer, produces: [summary]}
  - {id: integrate, agent: writer, depends_on: [backend, frontend], produces: [summary]}
"""


async def test_a_tolerated_failure_of_a_parallel_stage_is_not_shown_or_landed_as_merged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # its commit is never merged (only succeeded stages are), yet status said "waiting for
    # its join" after the run completed and the land's message listed it as landed
    async with lane_env(tmp_path, monkeypatch, TOLERATED) as env:
        env.writer.scripts = {
            "backend": lambda req: {"api.py": "half done\n"},
            "frontend": lambda req: {"ui.js": "ui\n"},
        }
        env.writer.verdicts = {"backend": ["failed"]}
        state = await env.run("tolerated")
        rid = state.run_id
        assert state.ended == "completed", state.end_reason
        view = await env.service.view(rid)
        await env.service.land(rid)
    merge = {s.id: s.git.merge for s in view.stages if s.git is not None}
    assert merge["backend"].startswith("not merged: it failed (on_failure: continue)")
    body = git(env.project, "log", "-1", "--format=%B", "main")
    assert "- frontend:" in body and "- backend:" not in body
    assert not (env.project / "api.py").exists()


async def test_the_advice_of_a_run_paused_by_a_hand_made_change_resumes_it_when_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the pause said "commit or discard them": a commit there moved the run branch past the
    # logged head, and every later merge paused on that ("fix it"), with no way named out
    async with lane_env(tmp_path, monkeypatch, TEMPLATE) as env:

        def backend(req):  # type: ignore[no-untyped-def]
            (env.worktree(req.run_id) / "README.md").write_text("the user tinkers\n")
            return {"api.py": "def api(): ...\n"}

        _script(env)
        env.writer.scripts["backend"] = backend
        state = await env.run("two_writers")
        rid = state.run_id
        trunk = env.worktree(rid)
        assert state.paused and "commit or" not in (state.pause_reason or "")
        assert f"`git -C {trunk} stash`" in (state.pause_reason or "")
        git(trunk, "commit", "-q", "-am", "the user commits it anyway")
        await env.service.control(rid, "resume")
        state = await env.scheduler.drive(rid, until="idle")
        found = re.search(r"`git -C (\S+) reset --keep (\w+)`", state.pause_reason or "")
        assert state.paused and found is not None, state.pause_reason
        git(Path(found[1]), "reset", "--keep", found[2])
        await env.service.control(rid, "resume")
        state = await env.scheduler.drive(rid, until="idle")
        assert state.ended == "completed", state.pause_reason or state.end_reason
    assert git(env.project, "show", f"stageflow/{rid}:api.py") == "def api(): ...\n"


def test_a_lane_catching_up_that_was_killed_half_way_is_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the fast-forward of a rerun's worktree, killed while it wrote files: the index lock it
    # left made the next one fail, so the rerun worked in a half-updated tree
    hermetic_git(tmp_path, monkeypatch)
    project = make_repo(tmp_path / "project")
    rid = "r-01jd8k2m3n-7fq2"
    lane = Lane(kind="stage", name=f"{rid}--api", branch=f"stageflow/{rid}--api")
    trunk = prepare_workspace(project, rid).root
    where = prepare_lane(project, rid, lane).root
    (where / "api.py").write_text("API\n")
    git(where, "add", "-A")
    git(where, "commit", "-q", "-m", "api")
    git(trunk, "merge", "-q", "--no-ff", "-m", "merge api", lane.branch)
    (trunk / "app.py").write_text("new app\n")
    (trunk / "more.py").write_text("more\n")
    git(trunk, "add", "-A")
    git(trunk, "commit", "-q", "-m", "upstream rework")
    head = git(trunk, "rev-parse", "HEAD").strip()
    (where / "app.py").write_text("new app\n")  # what the kill left: one file written, and
    admin = Path(git(where, "rev-parse", "--absolute-git-dir").strip())
    (admin / "index.lock").write_text("")  # the lock
    again = prepare_lane(project, rid, lane)
    assert git(where, "rev-parse", "HEAD").strip() == head and again.base == head
    assert git(where, "status", "--porcelain") == ""
    assert (where / "more.py").read_text() == "more\n"


async def test_the_files_a_merge_stage_is_given_are_the_ones_in_its_worktree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a file/directory conflict moves one side aside as '<path>~<their name>': the join's
    # merge named the branch by its commit, the merge worktree by its name, so the merge
    # stage was told of a file that did not exist, its check passed over the real one, and
    # each adopt's "markers remain" after a passed attempt retried it forever
    files = {"README.md": "# demo\n", "docs/guide.md": "guide\n"}
    async with lane_env(tmp_path, monkeypatch, LINKS, files=files) as env:
        given: list[list[tuple[str, bool]]] = []

        def flatten(req):  # type: ignore[no-untyped-def]
            (req.workdir / "docs" / "guide.md").unlink()
            (req.workdir / "docs").rmdir()
            return {"docs": "docs are a file now\n"}

        def resolve(req):  # type: ignore[no-untyped-def]
            assert req.lane is not None
            given.append([(f, (req.workdir / f).exists()) for f in req.lane.files])
            for f in req.lane.files:
                if (req.workdir / f).is_file():
                    (req.workdir / f).write_text("resolved\n")
            return {}

        env.writer.scripts.update(
            backend=lambda req: {"docs/guide.md": "guide, edited\n"},
            frontend=flatten,
            **{"frontend.merge": resolve},
        )
        with anyio.fail_after(120):  # it retried the merge stage without end
            state = await env.run("links")
    assert given and all(here for _, here in given[0]), given
    assert state.ended == "completed", state.end_reason


async def test_a_merge_stage_whose_passes_leave_markers_is_not_retried_without_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each passed attempt reset its failures, so when the adopt found markers its attempt's
    # own check had missed, the retry policy (2 attempts) never ran out: model calls forever
    monkeypatch.setattr(joining, "conflict_markers", lambda root, files: [])  # a missed check
    async with lane_env(tmp_path, monkeypatch, LINKS) as env:
        env.writer.scripts.update(
            backend=lambda req: {"app.py": "one\nTWO from backend\nthree\n"},
            frontend=lambda req: {"app.py": "one\nTWO from frontend\nthree\n"},
        )
        with anyio.fail_after(120):
            state = await env.run("links")
    merging = state.stages["frontend.merge"]
    assert state.ended == "failed" and merging.status == "failed", state.end_reason
    assert len(merging.attempts) == 2
