"""What the human and the assistant see of a run's git work: ``stageflow status`` (text and
``--json``) shows each stage's branch, commit, files changed and merge state and the run
branch's final commit; ``stageflow land`` and ``workflow_control(action="land")`` land it
once and refuse a second time, with the CLI's exit code for a wrong state."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import ElicitResult

from stageflow.cli.exits import EXIT_OK, EXIT_STATE
from stageflow.cli.main import main
from stageflow.config import load_settings
from stageflow.errors import InvalidState
from stageflow.server.app import build_server
from tests.workspace.lanes_child import TWO_WRITERS, script
from tests.workspace.lanes_kit import git, open_lanes, prepare_project


def _completed_run(tmp_path: Path, mp: pytest.MonkeyPatch) -> tuple[Path, str]:
    project = prepare_project(tmp_path, mp, TWO_WRITERS)

    async def go() -> str:
        async with open_lanes(project) as env:
            script(env.writer)
            state = await env.service.start_run("two_writers", "add the api and the ui")
            state = await env.scheduler.drive(state.run_id, until="idle")
            assert state.ended == "completed", state.end_reason
            return state.run_id

    return project, anyio.run(go)


def _cli(project: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main([*args, "--project", str(project)], out=out)
    return code, out.getvalue()


def test_status_shows_each_stages_branch_commit_files_and_merge_and_the_final_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAGEFLOW_RUNNER", "offline")
    project, rid = _completed_run(tmp_path, monkeypatch)
    head = git(project, "rev-parse", f"stageflow/{rid}").strip()
    backend = git(project, "rev-parse", f"stageflow/{rid}--backend").strip()

    code, text = _cli(project, "status", rid)
    assert code == EXIT_OK
    assert (
        f"  backend: stageflow/{rid}--backend {backend[:10]}, 1 file(s): merged for 'docs'" in text
    )
    assert f"  docs: stageflow/{rid} " in text and "on the run branch" in text
    assert f"run branch: stageflow/{rid} from main, last commit {head[:10]}" in text
    assert f"stageflow land {rid}" in text  # the next step says how to land

    code, raw = _cli(project, "status", rid, "--json")
    view = json.loads(raw)
    assert view["git"]["head"] == head and view["git"]["target"] == "main"
    stages = {s["id"]: s["git"] for s in view["stages"]}
    assert stages["backend"]["commit"] == backend and stages["backend"]["files_changed"] == 1
    assert stages["frontend"]["merge"].startswith("merged for 'docs'")


def test_the_land_command_lands_once_and_a_second_land_exits_with_the_state_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STAGEFLOW_RUNNER", "offline")
    project, rid = _completed_run(tmp_path, monkeypatch)
    trees = project / ".stageflow" / "worktrees"
    lanes = sorted(p.name for p in trees.iterdir() if p.is_dir() and p.name.startswith(f"{rid}--"))
    assert lanes == [f"{rid}--backend", f"{rid}--frontend"]
    (trees / f"{rid}--frontend" / "scratch.txt").write_text("not committed\n")
    code, text = _cli(project, "land", rid, "--strategy", "merge")
    tip = git(project, "rev-parse", "main").strip()
    assert code == EXIT_OK, capsys.readouterr().err
    assert text == f"landed run {rid} into main as {tip[:12]} (merge)\n"
    # the landed lanes' worktrees are gone, one holding an uncommitted file stays; every
    # branch stays
    assert not (trees / f"{rid}--backend").exists()
    assert (trees / f"{rid}--frontend" / "scratch.txt").exists()
    for lane in ("backend", "frontend"):
        assert git(project, "rev-parse", "--verify", f"stageflow/{rid}--{lane}").strip()
    code, _ = _cli(project, "land", rid)
    assert code == EXIT_STATE
    assert f"run {rid} has already landed into main as {tip}" in capsys.readouterr().err
    assert git(project, "rev-parse", "main").strip() == tip
    code, text = _cli(project, "status", rid)
    assert f"landed into main as {tip[:10]} (merge)" in text


class Person:
    """The user answering the land question (an MCP elicitation)."""

    def __init__(self, land: bool) -> None:
        self.land, self.asked = land, []

    async def __call__(self, context: Any, params: Any) -> ElicitResult:
        self.asked.append(params.message)
        return ElicitResult(action="accept", content={"land": self.land, "name": "ann"})


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_workflow_control_land_asks_the_person_and_a_model_alone_cannot_land(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    project = prepare_project(tmp_path, monkeypatch, TWO_WRITERS)
    async with open_lanes(project) as env:
        script(env.writer)
        state = await env.service.start_run("two_writers", "add the api and the ui")
        state = await env.scheduler.drive(state.run_id, until="idle")
        with pytest.raises(InvalidState, match="only they decide it"):  # below the tool
            await env.service.land(state.run_id, actor="assistant", via="tool")
    rid = state.run_id
    before = git(project, "rev-parse", "main").strip()
    server = build_server(load_settings(project, runner="offline"))
    async with Client(server, mode=mode) as client:  # a client that cannot ask the user
        status = await client.call_tool("workflow_status", {"run_id": rid})
        assert status.structured_content is not None
        run = status.structured_content["run"]
        gits = {s["id"]: s.get("git") for s in run["stages"]}
        assert gits["backend"].startswith(f"stageflow/{rid}--backend ")
        assert "merged for 'docs'" in gits["backend"]
        assert "action='land'" in run["next_action"]
        refused = await client.call_tool("workflow_control", {"run_id": rid, "action": "land"})
        assert refused.is_error and f"stageflow land {rid}" in str(refused.content)
    no = Person(land=False)
    async with Client(server, mode=mode, elicitation_callback=no) as client:
        said = await client.call_tool("workflow_control", {"run_id": rid, "action": "land"})
        assert not said.is_error and said.structured_content is not None
        assert said.structured_content["action"] == "none"
        assert "branch is unchanged" in said.structured_content["next_action"]
        assert f"stageflow/{rid}" in no.asked[0] and "into main (squash)" in no.asked[0]
    assert git(project, "rev-parse", "main").strip() == before  # nothing landed
    yes = Person(land=True)
    async with Client(server, mode=mode, elicitation_callback=yes) as client:
        landed = await client.call_tool("workflow_control", {"run_id": rid, "action": "land"})
        assert not landed.is_error, landed.content
        assert landed.structured_content is not None
        assert landed.structured_content["actor"] == "ann"
        commit = landed.structured_content["commit"]
        assert commit == git(project, "rev-parse", "main").strip()
        again = await client.call_tool("workflow_control", {"run_id": rid, "action": "land"})
        assert again.is_error
        assert "already landed into main" in str(again.content)
    assert (project / "api.py").read_text() == "def api(): ...\n"


@pytest.mark.anyio
async def test_workflow_approve_cannot_pass_a_human_merge_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = """
name: same_lines
on_conflict: human
stages:
  - {id: backend, agent: writer, produces: [summary]}
  - {id: frontend, agent: writer, produces: [summary]}
  - {id: docs, agent: writer, depends_on: [backend, frontend], produces: [summary]}
"""
    project = prepare_project(tmp_path, monkeypatch, template)
    async with open_lanes(project) as env:
        env.writer.scripts.update(
            backend=lambda req: {"app.py": "one\nTWO b\nthree\n"},
            frontend=lambda req: {"app.py": "one\nTWO f\nthree\n"},
        )
        state = await env.service.start_run("same_lines", "clash")
        state = await env.scheduler.drive(state.run_id, until="idle")
        assert state.status == "waiting"
    rid = state.run_id
    tree = project / ".stageflow" / "worktrees" / f"{rid}--frontend-merge"
    (tree / "app.py").write_text("one\nTWO resolved by the assistant\nthree\n")
    server = build_server(load_settings(project, runner="offline"))
    async with Client(server) as client:  # a client that cannot ask its user (no elicitation)
        status = await client.call_tool("workflow_status", {"run_id": rid})
        assert status.structured_content is not None
        [gate] = status.structured_content["run"]["waiting"]
        assert gate["kind"] == "merge"
        passed = await client.call_tool(
            "workflow_approve", {"run_id": rid, "decision": "approve", "stage": "frontend.merge"}
        )
        assert passed.is_error
        assert f"stageflow approve {rid} --stage frontend.merge`" in str(passed.content)
    async with open_lanes(project) as env:
        assert (await env.service.state(rid)).stages["frontend.merge"].status == "blocked"
