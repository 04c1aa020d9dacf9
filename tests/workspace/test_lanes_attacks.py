"""Attacks on a run's git work, on real repositories: hooks planted where git would run them,
a stage rewriting its worktree's ``.git``, a merge resolution made of a FIFO or a link out of
its worktree, a human's conflict gate that something else tries to pass, hostile branch names
and stage ids; and a run outside any git repository, which works as before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stageflow.errors import InvalidArgument, InvalidState
from stageflow.workspace.view import workspace_probe
from tests.workspace.lanes_kit import git, lane_env

pytestmark = pytest.mark.anyio

SAME_LINES = """
name: same_lines
on_conflict: {mode}
stages:
  - {{id: backend, agent: writer, produces: [summary]}}
  - {{id: frontend, agent: writer, produces: [summary]}}
  - {{id: integrate, agent: writer, depends_on: [backend, frontend], produces: [summary]}}
"""
HOOKS = (
    "pre-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "pre-merge-commit",
    "post-merge",
    "post-checkout",
    "post-rewrite",
    "reference-transaction",
)


def _conflicting(env) -> None:  # type: ignore[no-untyped-def]
    env.writer.scripts.update(
        backend=lambda req: {"app.py": "one\nTWO from backend\nthree\n"},
        frontend=lambda req: {"app.py": "one\nTWO from frontend\nthree\n"},
        integrate=lambda req: {"notes.md": "integrated\n"},
    )


def _plant_hooks(project: Path, where: Path, marker: Path) -> None:
    """Every hook git has, in .git/hooks and in a core.hooksPath the repository names."""
    where.mkdir(parents=True, exist_ok=True)
    for hooks in (project / ".git" / "hooks", where):
        for name in HOOKS:
            hook = hooks / name
            hook.write_text(f"#!/bin/sh\necho {name} >> {marker}\n", encoding="utf-8")
            hook.chmod(0o755)
    git(project, "config", "core.hooksPath", str(where))


async def test_no_hook_ever_runs_through_commits_merges_a_resolution_and_the_land(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with lane_env(tmp_path, monkeypatch, SAME_LINES.format(mode="agent")) as env:
        marker = tmp_path / "hooks-ran"
        _plant_hooks(env.project, tmp_path / "hookdir", marker)
        git(env.project, "commit", "-q", "--allow-empty", "-m", "the hooks are live")
        assert "post-commit" in marker.read_text()  # plain git runs them
        marker.unlink()
        _conflicting(env)
        env.writer.scripts["frontend.merge"] = lambda req: {"app.py": "one\nTWO both\nthree\n"}
        state = await env.run("same_lines")
        assert state.ended == "completed", state.end_reason
        await env.service.land(state.run_id, strategy="merge")
    assert (env.project / "app.py").read_text() == "one\nTWO both\nthree\n"  # it all happened
    assert not marker.exists(), marker.read_text()


async def test_a_stage_that_points_its_worktree_git_elsewhere_pauses_the_run_and_nothing_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``sandbox = "none"`` a Bash command could rewrite ``.git``: stageflow's ``git add``
    there would read the planted repository's config and run its clean filter."""
    pwned = tmp_path / "PWNED"
    evil = tmp_path / "evil"
    git(tmp_path, "init", "-q", str(evil))
    git(evil, "config", "filter.x.clean", f"sh -c 'touch {pwned}; cat'")
    git(evil, "config", "core.fsmonitor", f"sh -c 'touch {pwned}'")

    def hijack(req):  # type: ignore[no-untyped-def]
        (req.workdir / ".git").write_text(f"gitdir: {evil / '.git'}\n", encoding="utf-8")
        return {".gitattributes": "* filter=x\n", "api.py": "api\n"}

    async with lane_env(tmp_path, monkeypatch, SAME_LINES.format(mode="agent")) as env:
        env.writer.scripts.update(backend=hijack, frontend=lambda req: {"ui.js": "ui\n"})
        state = await env.run("same_lines")
        assert state.paused and not state.ended
        assert ".git is not the worktree link git made" in (state.pause_reason or "")
    assert not pwned.exists()
    assert env.log("main") == ["init"]


async def test_a_resolution_of_fifos_and_links_out_of_the_worktree_is_not_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"README.md": "# demo\n", "app.py": "one\ntwo\nthree\n", "lib/x.py": "a\nb\nc\n"}
    async with lane_env(tmp_path, monkeypatch, SAME_LINES.format(mode="agent"), files=files) as env:
        env.writer.scripts.update(
            backend=lambda req: {"app.py": "one\nTWO b\nthree\n", "lib/x.py": "a\nB b\nc\n"},
            frontend=lambda req: {"app.py": "one\nTWO f\nthree\n", "lib/x.py": "a\nB f\nc\n"},
        )
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "x.py").write_text("clean, no markers\n")

        def sneaky(req):  # type: ignore[no-untyped-def]
            (req.workdir / "app.py").unlink()
            os.mkfifo(req.workdir / "app.py")  # reading it would block for ever
            (req.workdir / "lib" / "x.py").unlink()
            (req.workdir / "lib").rmdir()
            (req.workdir / "lib").symlink_to(outside)  # lib/x.py "resolved" outside
            return {}

        env.writer.scripts["frontend.merge"] = sneaky
        state = await env.run("same_lines")
        assert state.ended == "failed"
    merging = state.stages["frontend.merge"]
    assert [a.outcome for a in merging.attempts] == ["failed", "failed"]
    assert "conflict markers remain in app.py, lib/x.py" in (merging.attempts[0].error or "")
    assert git(env.project, "show", f"stageflow/{state.run_id}:app.py") == "one\nTWO b\nthree\n"


async def test_a_human_conflict_gate_is_passed_only_by_a_resolution_of_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with lane_env(tmp_path, monkeypatch, SAME_LINES.format(mode="human")) as env:
        _conflicting(env)
        state = await env.run("same_lines")
        rid = state.run_id
        tree = env.worktree(rid).with_name(f"{rid}--frontend-merge")
        [gate] = (await env.service.view(rid)).waiting
        assert gate.kind == "merge" and gate.human_only
        # the assistant's tool call is no person's decision, resolved files or not
        markers = (tree / "app.py").read_text()
        (tree / "app.py").write_text("one\nTWO as the model likes it\nthree\n")
        for decision, feedback in (("approve", None), ("reject", "fail it")):
            with pytest.raises(InvalidState, match="needs a person's decision"):
                await env.service.decide(
                    rid, stage="frontend.merge", decision=decision, feedback=feedback, via="tool"
                )
        assert (await env.service.state(rid)).stages["frontend.merge"].status == "blocked"
        (tree / "app.py").write_text(markers)  # back to the markers
        # committing the markers and dropping the merge state there does not make it resolved
        git(tree, "-c", "core.hooksPath=/dev/null", "commit", "-q", "-am", "sure, resolved")
        await env.service.decide(rid, stage="frontend.merge", decision="approve", via="cli")
        state = await env.scheduler.drive(rid, until="idle")
        assert state.stages["frontend.merge"].status == "blocked"
        assert "conflict markers remain in app.py" in (state.stages["frontend.merge"].reason or "")
        # a retry of the run does not hand the conflict to an agent: the gate opens again
        await env.service.decide(
            rid, stage="frontend.merge", decision="reject", feedback="no", via="cli"
        )
        state = await env.scheduler.drive(rid, until="idle")
        assert state.ended == "failed"
        await env.service.control(rid, "retry")
        state = await env.scheduler.drive(rid, until="idle")
        assert state.status == "waiting", state.end_reason
        assert [w.kind for w in (await env.service.view(rid)).waiting] == ["merge"]
        assert all(c.stage.id != "frontend.merge" for c in env.writer.calls)
        # only the files count: a human edit, then approve
        (tree / "app.py").write_text("one\nTWO by a human\nthree\n")
        await env.service.decide(rid, stage="frontend.merge", decision="approve", via="cli")
        state = await env.scheduler.drive(rid, until="idle")
        assert state.ended == "completed", state.end_reason
    run_branch = f"stageflow/{rid}"
    assert git(env.project, "show", f"{run_branch}:app.py") == "one\nTWO by a human\nthree\n"
    assert len(env.log(f"{run_branch}~1", "%P")[0].split()) == 2  # a real merge, 2 parents


@pytest.mark.parametrize(
    "into",
    ["HEAD", "-f", "a..b", "main.lock", "x/.hidden", "a//b", "x@{1}", "sp ace", "tab\tx", "a~1"],
)
async def test_land_refuses_hostile_branch_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, into: str
) -> None:
    template = "name: one\nstages:\n  - {id: only, agent: writer, produces: [summary]}\n"
    async with lane_env(tmp_path, monkeypatch, template) as env:
        env.writer.scripts["only"] = lambda req: {"api.py": "api\n"}
        state = await env.run("one")
        rid = state.run_id
        with pytest.raises(InvalidArgument, match="into="):
            await env.service.land(rid, into=into)
        with pytest.raises(InvalidArgument, match="the runs' own"):
            await env.service.land(rid, into=f"stageflow/{rid}")  # the run's own branch
        refs = git(env.project, "for-each-ref", "--format=%(refname)").split()
    assert env.log("main") == ["init"]
    assert all(r.startswith(("refs/heads/main", "refs/heads/stageflow/")) for r in refs), refs


async def test_stage_ids_differing_in_case_get_their_own_worktrees_and_branches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = """
name: cases
stages:
  - {id: api, agent: writer, produces: [summary]}
  - {id: API, agent: writer, produces: [summary]}
  - {id: join, agent: writer, depends_on: [api, API], produces: [summary]}
"""
    async with lane_env(tmp_path, monkeypatch, template) as env:
        where: dict[str, Path] = {}

        def wrote(name: str):  # type: ignore[no-untyped-def]
            def script(req):  # type: ignore[no-untyped-def]
                where[req.stage.id] = req.workdir
                return {name: f"{req.stage.id}\n"}

            return script

        env.writer.scripts.update(api=wrote("lower.txt"), API=wrote("upper.txt"))
        state = await env.run("cases")
        assert state.ended == "completed", state.end_reason
    names = {p.name.lower() for p in where.values()}
    assert len(names) == 2  # distinct even on a case-insensitive file system
    tip = f"stageflow/{state.run_id}"
    assert git(env.project, "show", f"{tip}:upper.txt") == "API\n"
    assert git(env.project, "show", f"{tip}:lower.txt") == "api\n"


async def test_a_run_outside_any_git_repository_works_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = """
name: plain
stages:
  - {id: backend, agent: writer, produces: [summary]}
  - {id: frontend, agent: writer, produces: [summary]}
  - {id: docs, agent: writer, depends_on: [backend, frontend], produces: [summary]}
"""
    async with lane_env(tmp_path, monkeypatch, template) as env:
        git(env.project, "status")  # it was a repository: make it a plain directory
        for entry in sorted((env.project / ".git").rglob("*"), reverse=True):
            entry.rmdir() if entry.is_dir() else entry.unlink()
        (env.project / ".git").rmdir()
        env.writer.scripts.update(
            backend=lambda req: {"api.py": "api\n"},
            frontend=lambda req: {"ui.js": "ui\n"},
            docs=lambda req: {"README.md": "# docs\n"},
        )
        state = await env.run("plain")
        assert state.ended == "completed", state.end_reason
        view = await env.service.view(state.run_id)
        with pytest.raises(Exception, match="no branch to land"):
            await env.service.land(state.run_id)
    assert state.git.status == "off" and view.git is None
    assert all(s.git is None for s in view.stages)
    assert (env.project / "api.py").read_text() == "api\n"  # in place, as before
    assert (env.project / "README.md").read_text() == "# docs\n"


async def test_status_runs_no_git_diff_in_a_worktree_whose_git_was_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Status diffs an ended run's worktree; ``git diff`` there would read the planted
    repository (its index, its config: clean filters) instead of the run's."""
    pwned = tmp_path / "PWNED"
    evil = tmp_path / "evil.git"
    template = "name: one\nstages:\n  - {id: only, agent: writer, produces: [summary]}\n"
    async with lane_env(tmp_path, monkeypatch, template) as env:
        env.writer.scripts["only"] = lambda req: {"api.py": "api\n"}
        state = await env.run("one")
        assert state.ended == "completed", state.end_reason
        probe = workspace_probe(env.project)
        honest = await probe(state.run_id, True)
        assert honest is not None and honest.diff is not None  # the diff is shown normally
        trunk = env.worktree(state.run_id)
        # a repository with every commit of the run, whose config runs a program on `git diff`
        git(tmp_path, "clone", "-q", "--mirror", str(env.project), str(evil))
        git(evil, "config", "core.bare", "false")
        git(evil, "config", "filter.x.clean", f"sh -c 'touch {pwned}; cat'")
        (trunk / ".git").write_text(f"gitdir: {evil}\n", encoding="utf-8")
        (trunk / ".gitattributes").write_text("* filter=x\n", encoding="utf-8")
        (trunk / "api.py").write_text("changed after the run\n", encoding="utf-8")
        view = await probe(state.run_id, True)
    assert view is not None and view.diff is None  # no git in a repository a stage planted
    assert not pwned.exists()


async def test_a_stages_merge_union_attribute_does_not_hide_a_conflict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with lane_env(tmp_path, monkeypatch, SAME_LINES.format(mode="human")) as env:
        env.writer.scripts.update(
            backend=lambda req: {
                ".gitattributes": "* merge=union\n",
                "app.py": "one\nTWO from backend\nthree\n",
            },
            frontend=lambda req: {"app.py": "one\nTWO from frontend\nthree\n"},
        )
        state = await env.run("same_lines")
        assert state.status == "waiting", state.end_reason
        rid = state.run_id
        assert [w.kind for w in (await env.service.view(rid)).waiting] == ["merge"]
        tree = env.worktree(rid).with_name(f"{rid}--frontend-merge")
        text = (tree / "app.py").read_text()
        assert "<<<<<<< ours" in text and "||||||| base" in text and ">>>>>>> theirs" in text
    # the run branch has the first merge only: nothing was concatenated behind anyone's back
    run_branch = f"stageflow/{rid}"
    assert git(env.project, "show", f"{run_branch}:app.py") == "one\nTWO from backend\nthree\n"
