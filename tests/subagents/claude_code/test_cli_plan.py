"""A plan stage on the real Claude Code CLI against the stand-in: the closing JSON block carries
the plan; a refused one (here a cycle) is corrected by a second ``claude -p`` process told what
was wrong, within the same attempt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stageflow.agents.definition import AgentDefinition
from stageflow.engine.runner import AttemptRequest
from stageflow.workflows.plan import PlanLimits
from stageflow.workflows.spec import StageSpec

# the npm-installing fixture, registered here under the name it is imported as
from tests.server.test_claude_code import claude as installed_claude  # noqa: F401
from tests.standin import StandIn, Turn
from tests.standin.wire import Json, text_of
from tests.subagents.claude_code.test_cli import MODEL, Cli, attempt, trace

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def cli(tmp_path: Path, installed_claude: Path) -> Cli:  # noqa: F811 (the imported fixture)
    return Cli(tmp_path / "cli", installed_claude)


def plan_request(workdir: Path) -> AttemptRequest:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "app.py").write_text("def export(rows):\n    return rows\n")
    return AttemptRequest(
        run_id="r-test-0001",
        stage=StageSpec(id="plan", agent="coordinator", plan={"max_items": 4}),
        attempt=1,
        task="Add CSV export",
        agent=AgentDefinition(
            name="coordinator", system_prompt="You plan work items.", tools=["Read", "Glob"]
        ),
        model=MODEL,
        workdir=workdir,
        budget_remaining_usd=5.0,
        plan_limits=PlanLimits(max_items=4, agents=("developer",), default_agent="developer"),
    )


async def test_a_refused_plan_is_corrected_by_a_second_process(tmp_path: Path, cli: Cli) -> None:
    answered: list[str] = []

    with StandIn() as api:

        def cycle_first(body: Json) -> Turn:
            turn = api.agent.turn(body)
            text = text_of(turn.content)
            if "```json" in text and not answered:  # the first final answer: make it a cycle
                head, _, rest = text.partition("```json\n")
                block = json.loads(rest.split("\n```")[0])
                block["plan"]["items"][0]["depends_on"] = [block["plan"]["items"][-1]["id"]]
                text = f"{head}```json\n{json.dumps(block)}\n```"
                turn = Turn([{"type": "text", "text": text}], turn.stop_reason)
            if "```json" in text:
                answered.append(text)
            return turn

        api.respond = cycle_first
        result = await attempt(cli.runner(api), plan_request(tmp_path / "work"))
        briefs = [text_of(r.body["messages"][0]["content"]) for r in api.first_requests()]

    assert result.status == "passed", (result.error, trace(api, cli))
    assert result.plan is not None and [i["id"] for i in result.plan["items"]] == ["t1", "t2", "t3"]
    assert len(cli.argvs()) == 2  # the answer, and one correction
    assert len(answered) == 2
    assert "## Your plan" in briefs[0]
    assert "## Your previous answer was refused" in briefs[-1]
    assert "dependency cycle: t1 -> t3 -> t1" in briefs[-1]
