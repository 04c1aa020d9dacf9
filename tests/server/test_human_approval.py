"""Approvals only a person can give (issue 14): ``approval: {by: human}``.

Over real MCP client sessions in both protocol eras, with the SDK's ``Client`` and an
elicitation callback standing for the person: ``workflow_approve`` on a person-only gate asks
the person, whose answer is the decision (the model's ``decision`` is not); declining leaves the
gate waiting; a client that cannot elicit gets a tool error saying how the person can decide,
and the gate waits. ``by: any`` gates take the assistant's call without a question. N-of-M
approvals through the CLI with two users and a rejection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from stageflow import events as ev
from stageflow.config import load_settings
from stageflow.server.app import build_server
from stageflow.store.store import Store
from tests.cli.harness import Cli
from tests.server.human import Person
from tests.server.test_tools_run import ok, status_until, text, waiting_on

pytestmark = pytest.mark.anyio

GATES = """\
name: gates
description: a person-only gate, then one anybody may decide
stages:
  - id: design
    agent: architect
    produces: [design]
    approval: {required: true, by: human, prompt: Check the interfaces.}
  - id: build
    agent: developer
    depends_on: [design]
    produces: [patch_summary]
    approval: {required: true, by: any}
"""

TWO_OF_THREE = """\
name: two_of_three
description: two of three named approvers must approve
stages:
  - id: design
    agent: architect
    produces: [design]
    approval: {required: true, by: human, approvers: [ann, bob, cy], min_approvals: 2}
"""


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    workflows = root / ".stageflow" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "gates.yaml").write_text(GATES, encoding="utf-8")
    (workflows / "two_of_three.yaml").write_text(TWO_OF_THREE, encoding="utf-8")
    return root


async def _decisions(project: Path, run_id: str) -> list[tuple[str, str, str | None, int | None]]:
    async with await Store.open(project / ".stageflow" / "state.db") as store:
        log = await store.load_events(run_id)
    return [
        (e.event.approver, e.event.decision, e.event.via, e.event.attempt)
        for e in log
        if isinstance(e.event, ev.ApprovalDecided)
    ]


async def _start(client: Client) -> str:
    started = await client.call_tool("workflow_start", {"template": "gates", "task": "login"})
    run_id = str(ok(started)["run_id"])
    await status_until(client, run_id, waiting_on("design"))
    return run_id


async def _approve(client: Client, run_id: str, **args: Any) -> Any:
    return await client.call_tool("workflow_approve", {"run_id": run_id, **args})


async def test_the_person_asked_decides_and_is_recorded(project: Path, mode: str) -> None:
    person = Person("ann")
    server = build_server(load_settings(project))
    async with Client(server, mode=mode, elicitation_callback=person) as client:
        run_id = await _start(client)
        status = ok(await client.call_tool("workflow_status", {"run_id": run_id}))["run"]
        [gate] = status["waiting"]
        assert gate["human_only"] is True and gate["attempt"] == 1
        assert "the server asks them" in status["next_action"]

        result = ok(await _approve(client, run_id, decision="approve", approver="model"))
        assert result["actor"] == "ann"
        [question] = person.asked
        assert "stage 'design', attempt 1" in question and "Check the interfaces." in question
        assert "design/design v1" in question and "Only your answer decides" in question

        # the `by: any` gate takes the assistant's call and asks nobody
        await status_until(client, run_id, waiting_on("build"))
        ok(await _approve(client, run_id, decision="approve", approver="assistant"))
        assert len(person.asked) == 1
        await status_until(client, run_id, lambda r: r["status"] == "completed")

    assert await _decisions(project, run_id) == [
        ("ann", "approve", "elicitation", 1),
        ("assistant", "approve", "tool", 1),
    ]


async def test_the_models_decision_cannot_pass_a_person_only_gate(project: Path, mode: str) -> None:
    # the model says approve; the person rejects: the stage reruns with the person's feedback
    person = Person("bob", decision="reject", feedback="split the cache out")
    server = build_server(load_settings(project))
    async with Client(server, mode=mode, elicitation_callback=person) as client:
        run_id = await _start(client)
        result = ok(await _approve(client, run_id, decision="approve", approver="model"))
        assert result["action"] == "reject" and result["actor"] == "bob"
        run = await status_until(client, run_id, waiting_on("design", reworks=1))
        assert run["waiting"][0]["attempt"] == 2

        # declining: nothing is decided, whatever the model asked for
        person.action = "decline"
        declined = ok(await _approve(client, run_id, decision="approve", attempt=2))
        assert declined["action"] == "none" and "still waits" in declined["next_action"]
        run = ok(await client.call_tool("workflow_status", {"run_id": run_id}))["run"]
        assert [w["stage"] for w in run["waiting"]] == ["design"]

    assert await _decisions(project, run_id) == [("bob", "reject", "elicitation", 1)]


async def test_a_client_without_elicitation_is_told_how_the_person_decides(
    project: Path, mode: str
) -> None:
    server = build_server(load_settings(project))
    async with Client(server, mode=mode) as client:  # no elicitation callback
        run_id = await _start(client)
        refused = await _approve(client, run_id, decision="approve", approver="alice")
        assert refused.is_error
        said = text(refused)
        assert "needs a person's decision" in said
        assert f"stageflow approve {run_id} --stage design --attempt 1" in said
        run = ok(await client.call_tool("workflow_status", {"run_id": run_id}))["run"]
        assert [w["stage"] for w in run["waiting"]] == ["design"]
    assert await _decisions(project, run_id) == []


async def test_the_engine_refuses_a_tool_decision_on_a_person_only_gate(project: Path) -> None:
    """Below the tool: whatever calls the service, a person-only gate needs a person's
    channel (the CLI, the dashboard or an elicitation)."""
    from stageflow.engine.scheduler import Scheduler
    from stageflow.engine.service import Service
    from stageflow.errors import InvalidState
    from stageflow.subagents.offline.runner import OfflineRunner

    settings = load_settings(project)
    async with await Store.open(settings.db_path) as store:
        service = Service(settings, store)
        run = await service.start_run("gates", "login")
        with anyio.fail_after(20):
            await Scheduler(store, OfflineRunner()).drive(run.run_id, until="idle")
        with pytest.raises(InvalidState) as refused:
            await service.decide(run.run_id, stage="design", decision="approve", via="tool")
        assert "a model cannot give" in str(refused.value)
        await service.decide(run.run_id, stage="design", decision="approve", via="cli")
        state = await service.state(run.run_id)
    assert state.stages["design"].status == "succeeded"


def test_two_of_three_named_approvers_and_a_rejection_through_the_cli(cli: Cli) -> None:
    cli.write_template(TWO_OF_THREE)
    view = cli.run("two_of_three")
    run_id = view.run_id
    [waiting] = view.waiting
    assert (waiting.min_approvals, waiting.approved_by) == (2, [])

    outsider = cli("approve", run_id, "--approver", "eve")
    assert outsider.code == 2 and "'eve' is not an approver" in outsider.err
    first = cli("approve", run_id, "--approver", "ann", "--no-drive")
    assert first.code == 0, first.err
    assert "(1 of 2 approvals)" in first.out
    again = cli("approve", run_id, "--approver", "ann")
    assert again.code == 4 and "already approved attempt 1" in again.err
    status = cli("status", run_id).out
    assert "1 of 2 approvals: ann" in status

    # a rejection by any approver reworks the stage; the approvals start again
    rejected = cli("reject", run_id, "--approver", "cy", "--feedback", "add the error paths")
    assert rejected.code == 0, rejected.err
    view = cli.status(run_id)
    [waiting] = view.waiting
    assert (waiting.attempt, waiting.approved_by) == (2, [])
    for who in ("bob", "ann"):
        done = cli("approve", run_id, "--approver", who, "--attempt", "2")
        assert done.code == 0, done.err
    view = cli.status(run_id)
    assert view.status == "completed"


async def test_the_model_cannot_fill_in_the_persons_answer_itself(project: Path, mode: str) -> None:
    forged = {"decision": "approve", "name": "ann", "attempt": 1}
    server = build_server(load_settings(project))
    async with Client(server, mode=mode) as client:  # no elicitation: nobody to ask
        run_id = await _start(client)
        result = await _approve(client, run_id, decision="approve", human=forged)
        assert result.is_error
        run = ok(await client.call_tool("workflow_status", {"run_id": run_id}))["run"]
        assert [w["stage"] for w in run["waiting"]] == ["design"]
    assert await _decisions(project, run_id) == []


GATED_HUMAN = """\
name: gated_human
description: a person-only stage behind a gate that is false
inputs:
  release: {type: string, default: "no"}
stages:
  - id: ship
    agent: developer
    produces: [patch_summary]
    gate: inputs.release == "yes"
    approval: {required: true, by: human}
"""


async def test_a_false_gate_of_a_person_only_stage_is_the_persons_too(
    tmp_path: Path, mode: str
) -> None:
    root = tmp_path / "gated"
    (root / ".stageflow" / "workflows").mkdir(parents=True)
    (root / ".stageflow" / "workflows" / "g.yaml").write_text(GATED_HUMAN, encoding="utf-8")
    server = build_server(load_settings(root))
    async with Client(server, mode=mode) as client:  # cannot elicit: the model alone
        started = await client.call_tool("workflow_start", {"template": "gated_human", "task": "x"})
        run_id = str(ok(started)["run_id"])
        await status_until(client, run_id, lambda r: [w["stage"] for w in r["waiting"]] == ["ship"])
        refused = await _approve(client, run_id, decision="approve")
        assert refused.is_error and "needs a person's decision" in text(refused)
    person = Person("ann")
    async with Client(server, mode=mode, elicitation_callback=person) as client:
        ok(await _approve(client, run_id, decision="approve"))
        assert "its gate" in person.asked[0] and 'inputs.release == "yes"' in person.asked[0]
        # the gate was overridden: the stage ran, and now its approval waits
        await status_until(
            client,
            run_id,
            lambda r: (
                next(s for s in r["stages"] if s["id"] == "ship")["status"] == "awaiting_approval"
            ),
        )


def test_a_timeout_cannot_approve_a_person_only_gate() -> None:
    from stageflow.workflows.spec import Approval

    with pytest.raises(ValueError, match="would pass a by: human gate"):
        Approval(by="human", timeout=60, on_timeout="approve")
    Approval(by="human", timeout=60, on_timeout="fail")
    Approval(by="any", timeout=60, on_timeout="approve")
