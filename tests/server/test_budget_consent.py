"""Letting a run spend more is a person's decision (found by review: the assistant could resume
a run stopped at a stage cap, which opened the cap again, or raise the run's cap itself).

Below the tool the engine refuses a model's resume past a cap; through MCP, in both eras, the
server asks the person, whose answer (and cap) decides; a client that cannot ask is told to
have the person run ``stageflow resume --budget``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import ElicitResult

from stageflow.config import load_settings
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.errors import BudgetExceeded, InvalidState
from stageflow.server.app import build_server
from tests.engine.harness import FakeRunner, engine_env
from tests.engine.test_review_issue4 import STAGE_CAP, spend
from tests.server.test_tools_run import ok, status_until, text

pytestmark = pytest.mark.anyio


async def _greedy(req: AttemptRequest) -> AttemptResult:
    while True:
        left = req.meter.remaining_usd()
        if left is not None and left <= 0:
            raise BudgetExceeded("stage cap reached", spent_usd=0.5, budget_usd=0.5)
        await req.meter.record(spend(0.25))


async def test_the_model_cannot_reopen_a_stage_cap(tmp_path: Path) -> None:
    async with engine_env(tmp_path, STAGE_CAP, runner=FakeRunner({"a": _greedy})) as env:
        run = (await env.service.start_run("stagecap", "x")).run_id
        with anyio.fail_after(10):
            state = await env.scheduler.drive(run)
        assert state.paused
        for _ in range(4):  # what the MCP tool did: the assistant resumes, again and again
            with pytest.raises(InvalidState, match="only a person may let it spend more"):
                await env.service.control(run, "resume", actor="assistant")
            with pytest.raises(InvalidState, match="only a person"):
                await env.service.control(run, "resume", budget_usd=100.0, actor="assistant")
        state = await env.service.state(run)
        assert state.paused and state.spent_usd <= 0.5
        # the person at the terminal may
        await env.service.control(run, "resume", actor="ann", via="cli")
        assert not (await env.service.state(run)).paused


BUDGETED = """\
name: budgeted
description: one stage, a tiny run cap
limits: {budget_usd: 0.0001}
stages:
  - {id: write, agent: documenter, produces: [doc]}
"""


class Consent:
    def __init__(self, resume: bool, budget: float) -> None:
        self.resume, self.budget, self.asked = resume, budget, []

    async def __call__(self, context: Any, params: Any) -> ElicitResult:
        self.asked.append(params.message)
        content = {"resume": self.resume, "budget_usd": self.budget, "name": "ann"}
        return ElicitResult(action="accept", content=content)


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_resuming_past_a_cap_through_mcp_asks_the_person(tmp_path: Path, mode: str) -> None:
    from stageflow.engine.service import Service
    from stageflow.store.store import Store

    root = tmp_path / "project"
    (root / ".stageflow" / "workflows").mkdir(parents=True)
    (root / ".stageflow" / "workflows" / "b.yaml").write_text(BUDGETED, encoding="utf-8")
    settings = load_settings(root)
    async with await Store.open(settings.db_path) as store:
        service = Service(settings, store)
        run = await service.start_run("budgeted", "x")
        await service.control(run.run_id, "pause", reason="stop", actor="ann", via="cli")
        # a stand-in for a budget stop: the person had paused it; now the model wants more
    run_id = run.run_id
    server = build_server(settings)
    async with Client(server, mode=mode) as client:  # no elicitation
        refused = await client.call_tool(
            "workflow_control", {"run_id": run_id, "action": "resume", "budget_usd": 50}
        )
        assert refused.is_error and "stageflow resume" in text(refused)
    no = Consent(resume=False, budget=0)
    async with Client(server, mode=mode, elicitation_callback=no) as client:
        said = ok(
            await client.call_tool(
                "workflow_control", {"run_id": run_id, "action": "resume", "budget_usd": 50}
            )
        )
        assert said["action"] == "none" and "stays paused" in said["next_action"]
        assert "$50.00" in no.asked[0]
    yes = Consent(resume=True, budget=0.5)
    async with Client(server, mode=mode, elicitation_callback=yes) as client:
        done = ok(
            await client.call_tool(
                "workflow_control", {"run_id": run_id, "action": "resume", "budget_usd": 50}
            )
        )
        assert done["actor"] == "ann"
        run_view = await status_until(client, run_id, lambda r: r["status"] != "paused")
        assert run_view["budget_usd"] == 0.5  # the person's cap, not the model's $50
