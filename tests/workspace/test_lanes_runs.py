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


REWORKED = """
name: reworked
stages:
  - {id: backend, agent: writer, produces: [summary]}
  - {id: frontend, agent: writer, produces: [summary]}
  - id: review
    agent: writer
    depends_on: [backend, frontend]
    produces: [summary]
    on_changes_requested: {rework: backend, max: 2}
"""


async def test_a_reworked_stage_is_committed_again_and_merged_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # found by review: a stage's commit was made once, so a rework's changes stayed
    # uncommitted in its worktree and never reached the run branch
    async with lane_env(tmp_path, monkeypatch, REWORKED) as env:
        env.writer.scripts = {
            "backend": lambda req: {"api.py": f"def api(): return {req.attempt}\n"},
            "frontend": lambda req: {"ui.js": "export const ui = 1;\n"},
        }
        env.writer.verdicts = {"review": ["changes_requested"]}
        state = await env.run("reworked")
        rid = state.run_id
        assert state.ended == "completed", state.end_reason
    assert [a.outcome for a in state.stages["backend"].attempts] == ["passed", "passed"]
    run_branch = f"stageflow/{rid}"
    assert git(env.project, "show", f"{run_branch}:api.py") == "def api(): return 2\n"
    subjects = env.log(f"stageflow/{rid}--backend")
    assert Counter(s.split(":")[0] for s in subjects)["backend"] == 2  # one per attempt
    merges = [s for s in env.log(run_branch) if s.startswith("Merge stage 'backend'")]
    assert sorted(merges) == [
        f"Merge stage 'backend' (attempt 1) into {run_branch}",
        f"Merge stage 'backend' (attempt 2) into {run_branch}",
    ]


# -- conflicts ------------------------------------------------------------------------------

SAME_LINES = """
name: same_lines
on_conflict: {mode}
stages:
  - {{id: backend, agent: writer, produces: [summary]}}
  - {{id: frontend, agent: writer, produces: [summary]}}
  - {{id: integrate, agent: writer, depends_on: [backend, frontend], produces: [summary]}}
"""


def _both_change_line_two(env) -> None:  # type: ignore[no-untyped-def]
    env.writer.scripts.update(
        backend=lambda req: {"app.py": "one\nTWO from backend\nthree\n"},
        frontend=lambda req: {"app.py": "one\nTWO from frontend\nthree\n"},
        integrate=lambda req: {"notes.md": (req.workdir / "app.py").read_text()},
    )


async def test_a_conflict_runs_the_merge_resolver_in_its_own_worktree_and_the_join_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with lane_env(tmp_path, monkeypatch, SAME_LINES.format(mode="agent")) as env:
        _both_change_line_two(env)
        met: dict[str, object] = {}

        def resolve(req):  # type: ignore[no-untyped-def]
            text = (req.workdir / "app.py").read_text()
            met.update(workdir=req.workdir, text=text, lane=req.lane, inputs=req.artifacts)
            return {"app.py": "one\nTWO from backend and frontend\nthree\n"}

        env.writer.scripts["frontend.merge"] = resolve
        state = await env.run("same_lines")
        rid = state.run_id
        assert state.ended == "completed", state.end_reason
        envs = await env.store.load_events(rid)

    # the merge stage worked in a worktree of its own, on the conflict with both sides and base
    assert met["workdir"] == env.worktree(rid).with_name(f"{rid}--frontend-merge")
    text = str(met["text"])
    assert "<<<<<<< " in text and "TWO from backend" in text and "TWO from frontend" in text
    assert "||||||| " in text and "\ntwo\n" in text  # diff3: the base is there too
    [report] = [a for a in met["inputs"] if a.name == "conflict"]  # type: ignore[attr-defined]
    assert "### base" in report.content and "TWO from frontend" in report.content
    assert state.stages["frontend.merge"].status == "succeeded"
    assert state.stages["frontend.merge"].attempts[0].agent == "merge-resolver"
    # the run branch holds the resolution, a real merge of both stages, and the join ran on it
    run_branch = f"stageflow/{rid}"
    assert git(env.project, "show", f"{run_branch}:app.py") == (
        "one\nTWO from backend and frontend\nthree\n"
    )
    notes = git(env.project, "show", f"{run_branch}:notes.md")
    assert notes.startswith("one\nTWO from backend and")
    outcomes = [
        (e.event.op, e.event.stage, e.event.outcome)
        for e in envs
        if isinstance(e.event, ev.GitFinished) and e.event.op != "commit"
    ]
    assert outcomes == [
        ("prepare", None, "done"),
        ("merge", "backend", "done"),
        ("merge", "frontend", "conflict"),
        ("resolve", "frontend", "done"),
        ("adopt", "frontend", "done"),
    ]
    # the trunk was never left with a half-done merge: every merge commit has two parents
    for line in env.log(run_branch, "%P %s"):
        if "Merge stage" in line:
            assert len(line.split(" Merge")[0].split()) == 2
    # nothing lost: both stages' branches are still there
    for stage in ("backend", "frontend"):
        assert env.branch(f"stageflow/{rid}--{stage}")


async def test_a_merge_stage_that_leaves_markers_fails_its_attempt_and_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with lane_env(tmp_path, monkeypatch, SAME_LINES.format(mode="agent")) as env:
        _both_change_line_two(env)
        tries: list[int] = []

        def sloppy_then_right(req):  # type: ignore[no-untyped-def]
            tries.append(req.attempt)
            if req.attempt == 1:
                return {"notes.md": "I looked at it\n"}  # the markers stay in app.py
            return {"app.py": "one\nTWO resolved\nthree\n"}

        env.writer.scripts["frontend.merge"] = sloppy_then_right
        state = await env.run("same_lines")
        assert state.ended == "completed", state.end_reason
    merging = state.stages["frontend.merge"]
    assert [a.outcome for a in merging.attempts] == ["failed", "passed"]
    assert "conflict markers remain in app.py" in (merging.attempts[0].error or "")
    assert tries == [1, 2]


async def test_a_conflict_git_leaves_without_markers_must_be_decided_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one stage deletes app.py, the other changes it: git writes no marker, so a merge stage
    # that did nothing would pass and one side would silently win (found by review)
    async with lane_env(tmp_path, monkeypatch, SAME_LINES.format(mode="agent")) as env:
        seen: list[str] = []

        def delete(req):  # type: ignore[no-untyped-def]
            (req.workdir / "app.py").unlink()
            return {}

        def idle_then_decide(req):  # type: ignore[no-untyped-def]
            seen.append((req.workdir / "app.py").read_text())
            if req.attempt == 1:
                return {"notes.md": "nothing to do?\n"}
            return {"app.py": "one\nTWO kept\nthree\n"}

        env.writer.scripts.update(
            backend=delete,
            frontend=lambda req: {"app.py": "one\nTWO kept\nthree\n"},
            **{"frontend.merge": idle_then_decide},
        )
        state = await env.run("same_lines")
        assert state.ended == "completed", state.end_reason
    merging = state.stages["frontend.merge"]
    assert [a.outcome for a in merging.attempts] == ["failed", "passed"]
    assert "conflict markers remain in app.py" in (merging.attempts[0].error or "")
    assert seen[0].startswith("<<<<<<< ours") and "deleted on this side" in seen[0]
    assert "TWO kept" in seen[0] and "||||||| base\none\ntwo\nthree\n" in seen[0]
    run_branch = f"stageflow/{state.run_id}"
    assert git(env.project, "show", f"{run_branch}:app.py") == "one\nTWO kept\nthree\n"


async def test_with_on_conflict_human_a_gate_shows_both_sides_and_a_reject_keeps_both_branches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with lane_env(tmp_path, monkeypatch, SAME_LINES.format(mode="human")) as env:
        _both_change_line_two(env)
        state = await env.run("same_lines")
        rid = state.run_id
        assert state.status == "waiting", state.end_reason
        view = await env.service.view(rid)
        [gate] = view.waiting
        assert gate.stage == "frontend.merge" and gate.kind == "merge"
        assert "app.py" in gate.what and f"{rid}--frontend-merge" in gate.what
        assert gate.review == ["frontend.merge/conflict"]
        report = await env.store.get_artifact(rid, "frontend.merge", "conflict", 1)
        assert "TWO from backend" in report.content and "TWO from frontend" in report.content
        assert "### base" in report.content
        assert all(c.agent != "merge-resolver" for c in env.writer.calls)  # no agent ran
        await env.service.decide(
            rid,
            stage="frontend.merge",
            decision="reject",
            feedback="not now",
            approver="alice",
            via="cli",
        )
        state = await env.scheduler.drive(rid, until="idle")
        assert state.ended == "failed"
        assert "frontend.merge" in (state.end_reason or "")
    # both branches are kept, the run branch has backend only, nothing half merged
    run_branch = f"stageflow/{rid}"
    for stage in ("backend", "frontend"):
        assert env.branch(f"stageflow/{rid}--{stage}")
    assert git(env.project, "show", f"{run_branch}:app.py") == "one\nTWO from backend\nthree\n"
    assert git(env.project, "status", "--porcelain") == ""
    assert git(env.worktree(rid), "status", "--porcelain") == ""


async def test_a_human_resolves_the_conflict_in_its_worktree_and_approves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with lane_env(tmp_path, monkeypatch, SAME_LINES.format(mode="human")) as env:
        _both_change_line_two(env)
        state = await env.run("same_lines")
        rid = state.run_id
        merge_tree = env.worktree(rid).with_name(f"{rid}--frontend-merge")
        # approving with the markers still there: checked, refused, the gate opens again
        await env.service.decide(rid, stage="frontend.merge", decision="approve", via="cli")
        state = await env.scheduler.drive(rid, until="idle")
        assert state.stages["frontend.merge"].status == "blocked"
        assert "conflict markers remain in app.py" in (state.stages["frontend.merge"].reason or "")
        (merge_tree / "app.py").write_text("one\nTWO by a human\nthree\n")
        await env.service.decide(rid, stage="frontend.merge", decision="approve", via="cli")
        state = await env.scheduler.drive(rid, until="idle")
        assert state.ended == "completed", state.end_reason
    assert git(env.project, "show", f"stageflow/{rid}:app.py") == "one\nTWO by a human\nthree\n"
    body = git(env.project, "log", "-1", "--format=%B", f"stageflow/{rid}~1")
    assert "resolved by a human" in body


# -- verification ---------------------------------------------------------------------------

VERIFIED = """
name: verified
verify: test -f api.py && test -f ui.js && grep -q good api.py
stages:
  - {id: backend, agent: writer, produces: [summary]}
  - {id: frontend, agent: writer, produces: [summary]}
  - {id: integrate, agent: writer, depends_on: [backend, frontend], produces: [summary],
     on_failure: {retry: {max_attempts: 2, backoff: 0s}}}
"""


async def test_a_failing_verification_at_the_join_fails_that_stage_with_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = '[workspace]\nsandbox = "none"\n'
    async with lane_env(tmp_path, monkeypatch, VERIFIED, config=config) as env:
        env.writer.scripts.update(
            backend=lambda req: {"api.py": "broken\n"},
            frontend=lambda req: {"ui.js": "ui\n"},
        )
        state = await env.run("verified")
        rid = state.run_id
        assert state.ended == "failed"
    integrate = state.stages["integrate"]
    assert integrate.status == "failed"
    assert [a.outcome for a in integrate.attempts] == ["failed", "failed"]  # on_failure applied
    assert "verification `test -f api.py" in (integrate.reason or "")
    assert "after merging backend, frontend" in (integrate.reason or "")
    assert "integrate" not in [c.stage.id for c in env.writer.calls]  # its agent never ran
    assert git(env.project, "show", f"stageflow/{rid}:api.py") == "broken\n"  # merged, kept


async def test_a_passing_verification_lets_the_join_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = '[workspace]\nsandbox = "none"\n'
    async with lane_env(tmp_path, monkeypatch, VERIFIED, config=config) as env:
        env.writer.scripts.update(
            backend=lambda req: {"api.py": "good\n"},
            frontend=lambda req: {"ui.js": "ui\n"},
        )
        state = await env.run("verified")
        assert state.ended == "completed", state.end_reason
    assert [a.outcome for a in state.stages["integrate"].attempts] == ["passed"]
