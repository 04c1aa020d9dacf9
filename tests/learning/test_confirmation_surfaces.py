"""The cost confirmation and the forecast where users and assistants meet them: the MCP tools in
both protocol eras (``workflow_start`` with and without ``dry_run``, status, the tools that
must not pass the wait, ``workflow_approve`` that does), and the CLI (``estimate``, ``run`` with
``--yes``, a terminal prompt, or waiting for ``approve``)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, ElicitResult, TextContent

from stageflow.config import load_settings
from stageflow.server.app import build_server
from tests.cli.harness import Cli

ONE = """\
name: one
description: one stage
stages:
  - id: write
    agent: documenter
    produces: [doc]
"""


def text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


class Human:
    """The person behind the client: answers each confirmation form in turn (an action, or
    the accepted content) and keeps what they were asked."""

    def __init__(self, answers: list[str | dict[str, Any]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, context: Any, params: Any) -> ElicitResult:
        self.asked.append(params.message)
        answer = self.answers.pop(0)
        if isinstance(answer, str):
            return ElicitResult(action=answer)  # type: ignore[arg-type]
        return ElicitResult(action="accept", content=answer)


def project_with(root: Path, config: str) -> Path:
    (root / ".stageflow" / "workflows").mkdir(parents=True)
    (root / ".stageflow" / "workflows" / "one.yaml").write_text(ONE, encoding="utf-8")
    (root / ".stageflow" / "config.toml").write_text(config, encoding="utf-8")
    return root


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_over_mcp_only_workflow_approve_starts_a_run_above_the_threshold(
    tmp_path: Path, mode: Any
) -> None:
    # the documenter's prior costs a few cents: any threshold below that needs a confirmation
    project = project_with(tmp_path / "p", "[budget]\nconfirm_above_usd = 0.0001\n")
    server = build_server(load_settings(project), watch_files=False)
    human = Human(["decline", {"start": False}, {"start": True}])
    async with Client(server, mode=mode, elicitation_callback=human) as client:
        dry = ok(
            await client.call_tool(
                "workflow_start", {"template": "one", "task": "Document the CLI", "dry_run": True}
            )
        )
        assert (dry["run_id"], dry["status"]) == (None, "dry_run")
        fc = dry["forecast"]
        assert fc["p90_usd"] >= fc["p50_usd"] > 0
        assert [(s["stage"], s["basis"]) for s in fc["stages"]] == [("write", "prior")]
        assert ok(await client.call_tool("workflow_status", {}))["runs"] == []  # nothing started

        start = ok(
            await client.call_tool(
                "workflow_start", {"template": "one", "task": "Document the CLI"}
            )
        )
        rid = start["run_id"]
        assert start["status"] == "waiting" and "confirm_above_usd $0.00" in start["confirm"]
        assert "Never decide yourself" in start["next_action"]
        status = ok(await client.call_tool("workflow_status", {"run_id": rid, "wait_seconds": 0.3}))
        run = status["run"]
        assert [(w["stage"], w["kind"]) for w in run["waiting"]] == [
            ("cost_confirmation", "confirm")
        ]
        assert run["forecast_p90_usd"] == fc["p90_usd"]
        assert "workflow_approve" in run["next_action"]
        assert [s["status"] for s in run["stages"]] == ["pending"]

        # none of the other tools passes the wait
        for args in (
            {"run_id": rid, "action": "resume", "budget_usd": 5.0},
            {"run_id": rid, "action": "retry"},
        ):
            refused = await client.call_tool("workflow_control", args)
            assert refused.is_error
        again = ok(
            await client.call_tool(
                "workflow_start", {"template": "one", "task": "Document the CLI"}
            )
        )
        assert again["run_id"] != rid and again["status"] == "waiting"  # another waiting run
        wrong = await client.call_tool(
            "workflow_approve", {"run_id": rid, "stage": "write", "decision": "approve"}
        )
        assert wrong.is_error and "cost forecast" in text(wrong)
        status = ok(await client.call_tool("workflow_status", {"run_id": rid}))
        assert status["run"]["stages"][0]["status"] == "pending"

        assert human.asked == []  # no question for a call that cannot confirm anything

        # the model's approve makes the server ask the human; only their "start" confirms
        for answer in ("(decline)", "did not confirm"):
            refused = await client.call_tool(
                "workflow_approve", {"run_id": rid, "decision": "approve", "approver": "ana"}
            )
            assert refused.is_error and answer in text(refused) and "still waits" in text(refused)
            status = ok(await client.call_tool("workflow_status", {"run_id": rid}))
            assert status["run"]["status"] == "waiting"
            assert status["run"]["stages"][0]["status"] == "pending"
        done = ok(
            await client.call_tool(
                "workflow_approve", {"run_id": rid, "decision": "approve", "approver": "ana"}
            )
        )
        assert done["stage"] == "cost_confirmation"
        assert done["actor"] == "ana, confirmed by the human"
        assert len(human.asked) == 3
        assert rid in human.asked[0] and "confirm_above_usd $0.00" in human.asked[0]
        assert f"${fc['p90_usd']:.2f} (p90)" in human.asked[0]
        with anyio.fail_after(30):
            while True:
                status = ok(
                    await client.call_tool("workflow_status", {"run_id": rid, "wait_seconds": 2})
                )
                if status["run"]["status"] == "completed":
                    break
        full = ok(await client.call_tool("workflow_status", {"run_id": rid, "detail": "full"}))
        check = full["full"]["forecast"]
        assert check["p90_usd"] == fc["p90_usd"]
        assert check["verdict"] == "under p50"  # the offline runner spends nothing


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_client_that_cannot_ask_the_human_cannot_confirm_a_spend(
    tmp_path: Path, mode: Any
) -> None:
    project = project_with(tmp_path / "p", "[budget]\nconfirm_above_usd = 0.0001\n")
    server = build_server(load_settings(project), watch_files=False)
    async with Client(server, mode=mode) as client:  # no elicitation callback: no capability
        start = ok(
            await client.call_tool(
                "workflow_start", {"template": "one", "task": "Document the CLI"}
            )
        )
        rid = start["run_id"]
        for args in (
            {"run_id": rid, "decision": "approve"},
            {"run_id": rid, "decision": "approve", "stage": "cost_confirmation"},
            {"run_id": rid, "decision": "approve", "approver": "the human, honestly"},
        ):
            refused = await client.call_tool("workflow_approve", args)
            assert refused.is_error
            assert f"stageflow approve {rid}" in text(refused)  # where the human confirms
        status = ok(await client.call_tool("workflow_status", {"run_id": rid, "detail": "full"}))
        assert status["full"]["status"] == "waiting"
        assert [s["attempts"] for s in status["full"]["stages"]] == [0]
        # declining spends nothing: the model may do that without asking
        ok(
            await client.call_tool(
                "workflow_approve",
                {"run_id": rid, "decision": "reject", "feedback": "too dear"},
            )
        )
        status = ok(await client.call_tool("workflow_status", {"run_id": rid}))
        assert status["run"]["status"] == "cancelled"


def test_estimate_prints_the_forecast_per_stage(cli: Cli) -> None:
    result = cli.ok("estimate", "feature_development", "--task", "Fix the crash on empty files")
    lines = result.out.splitlines()
    assert lines[0] == "forecast of feature_development for: Fix the crash on empty files"
    assert lines[1].split() == [
        "stage",
        "agent",
        "model",
        "type",
        "runs",
        "att",
        "p50",
        "p90",
        "from",
    ]
    assert lines[3].split()[:4] == ["implementation", "developer", "sonnet", "bugfix"]
    assert "stages and" in lines[-2] and "reworks expected" in lines[-2]
    as_json = cli.ok("estimate", "feature_development", "--task", "Fix it", "--json").json()
    assert [s["stage"] for s in as_json["stages"]] == [
        "architecture",
        "implementation",
        "testing",
        "review",
        "deployment",
    ]
    assert as_json["p90_usd"] > as_json["p50_usd"] > 0
    assert cli("estimate", "nope", "--task", "x").code == 3  # an unknown template


def test_the_cli_run_waits_for_approve_without_yes_or_a_terminal(cli: Cli) -> None:
    project_with(cli.project, "[budget]\nconfirm_above_usd = 0.0001\n")
    result = cli("run", "one", "--task", "Document the CLI")
    assert result.code == 5
    rid = result.out.split()[2]
    assert f"stageflow approve {rid}" in result.out
    assert "above confirm_above_usd" in result.out
    view = cli.status(rid)
    assert (view.status, [w.kind for w in view.waiting]) == ("waiting", ["confirm"])
    approved = cli("approve", rid)
    assert approved.code == 0, approved.err
    assert "recorded: approve of stage 'cost_confirmation' by " in approved.out
    assert cli.status(rid).status == "completed"


def test_the_cli_run_with_yes_confirms_and_says_who(cli: Cli) -> None:
    project_with(cli.project, "[budget]\nconfirm_above_usd = 0.0001\n")
    view = cli.run("one", "--yes", task="Document the CLI")
    assert view.status == "completed"
    [decided] = [e for e in cli.events(view.run_id) if e["type"] == "confirmation_decided"]
    assert (decided["decision"], decided["approver"]) == ("approve", "cli --yes")


class Terminal(io.StringIO):
    """A stdin that says it is a terminal, with the user's answer in it."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "status"), [("y\n", "completed"), ("no\n", "cancelled")])
def test_a_terminal_is_asked(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, answer: str, status: str
) -> None:
    project_with(cli.project, "[budget]\nconfirm_above_usd = 0.0001\n")
    monkeypatch.setattr("sys.stdin", Terminal(answer))
    result = cli("run", "one", "--task", "Document the CLI")
    assert "Start the run? [y/N]" in result.out
    rid = result.out.split()[2]
    view = cli.status(rid)
    assert view.status == status
    if status == "cancelled":
        assert view.reason == "cost forecast declined by cli: declined at the prompt"
