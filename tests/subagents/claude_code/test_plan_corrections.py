"""A plan stage on the Claude Code runner: the final JSON block's plan is checked like
``submit_result``'s; a refused plan is sent back to a new ``claude -p`` process within the same
attempt (its budget split accordingly), at most ``plan_corrections`` times. Against a fake
``claude`` that answers from a list of scenarios and records every call."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from stageflow.engine.runner import AttemptRequest
from stageflow.subagents.claude_code.result import parse_final_answer
from stageflow.subagents.claude_code.runner import ClaudeCodeRunner
from stageflow.subagents.context import StageContext
from stageflow.workflows.plan import PlanLimits, check_plan
from stageflow.workflows.spec import StageSpec
from tests.subagents.claude_code.test_runner import MODEL, result_json
from tests.subagents.factories import agent_request

LIMITS = PlanLimits(max_items=3, agents=("developer",), default_agent="developer")
CONTEXT = StageContext(system="You are the coordinator.", brief="# Stage `plan`\n\nPlan it.")

SEQUENCE = """#!{python}
import json, sys
from pathlib import Path

here = Path(__file__).resolve().parent
n = len(list(here.glob("call-*.json")))
scenarios = json.loads((here / "scenarios.json").read_text())
(here / f"call-{{n}}.json").write_text(json.dumps({{"argv": sys.argv[1:]}}))
sys.stdout.write(scenarios[min(n, len(scenarios) - 1)])
"""


class Sequence:
    """A fake ``claude`` answering call n with scenario n (the last one repeats)."""

    def __init__(self, folder: Path, answers: list[str]) -> None:
        folder.mkdir(parents=True)
        self.folder = folder
        self.path = folder / "claude"
        self.path.write_text(SEQUENCE.format(python=sys.executable))
        self.path.chmod(0o755)
        results = [json.dumps(result_json(text)) for text in answers]
        (folder / "scenarios.json").write_text(json.dumps(results))

    def calls(self) -> list[list[str]]:
        found = sorted(self.folder.glob("call-*.json"), key=lambda p: int(p.stem[5:]))
        return [json.loads(p.read_text())["argv"] for p in found]


def final(plan: Any, status: str = "passed") -> str:
    block = {"status": status, "summary": "planned", "artifacts": {}, "outputs": {}, "plan": plan}
    return f"Here is the plan.\n\n```json\n{json.dumps(block)}\n```\n"


def items(*pairs: tuple[str, list[str]]) -> dict[str, Any]:
    return {"items": [{"id": i, "title": f"do {i}", "depends_on": d} for i, d in pairs]}


GOOD = items(("t1", []), ("t2", []), ("t3", ["t1", "t2"]))
CYCLE = items(("t1", ["t2"]), ("t2", ["t1"]))


def plan_request(tmp_path: Path, **fields: Any) -> AttemptRequest:
    base = agent_request(tmp_path / "worktree", agent="coordinator", stage="plan", **fields)
    spec = StageSpec(id="plan", agent="coordinator", plan={"max_items": 3})
    return base.model_copy(update={"stage": spec, "plan_limits": LIMITS, "model": MODEL})


def check(raw: object) -> Any:
    return check_plan(raw, LIMITS)


def test_the_final_blocks_plan_is_checked() -> None:
    ok = parse_final_answer(final(GOOD), [], check)
    assert ok.error is None and ok.plan is not None
    assert [i["id"] for i in ok.plan["items"]] == ["t1", "t2", "t3"]
    bad = parse_final_answer(final(CYCLE), [], check)
    assert bad.status == "failed" and bad.plan is None
    assert bad.plan_problems == ("dependency cycle: t1 -> t2 -> t1; items must form a DAG",)
    assert bad.error == (
        "the plan was refused: (1) dependency cycle: t1 -> t2 -> t1; items must form a DAG"
    )
    missing = parse_final_answer('```json\n{"status": "passed", "summary": "x"}\n```', [], check)
    assert missing.plan_problems == ("the final ```json block has no 'plan'",)
    assert parse_final_answer("no block at all", [], check).plan_problems
    # a stage that could not plan may say so without a plan
    assert parse_final_answer(final(None, "failed"), [], check).plan_problems == ()


def test_json_nested_past_the_parsers_depth_is_a_refused_answer_not_a_crash() -> None:
    from stageflow.subagents.claude_code.result import parse_cli_output

    deep = "[" * 200_000 + "]" * 200_000
    answer = parse_final_answer(f'```json\n{{"status": "passed", "plan": {deep}}}\n```', [], check)
    assert answer.status == "failed"
    assert answer.error == "the final ```json block is not valid JSON (nested too deeply)"
    assert parse_cli_output(f'{{"type": "result", "result": {deep}}}') is None


async def run(runner: ClaudeCodeRunner, req: AttemptRequest) -> Any:
    with anyio.fail_after(30):
        return await runner.run(req)


@pytest.mark.anyio
async def test_a_refused_plan_is_corrected_by_a_new_process_within_the_attempt(
    tmp_path: Path,
) -> None:
    fake = Sequence(tmp_path / "bin", [final(CYCLE), final(GOOD)])
    runner = ClaudeCodeRunner(executable=str(fake.path), context_builder=lambda r: CONTEXT)
    req = plan_request(tmp_path, budget_remaining_usd=1.0)
    result = await run(runner, req)

    assert result.status == "passed", result.error
    assert result.plan is not None and len(result.plan["items"]) == 3
    first, second = fake.calls()
    assert first[-1] == CONTEXT.brief
    told = second[-1]
    assert told.startswith(CONTEXT.brief)
    assert "## Your previous answer was refused" in told
    assert "- dependency cycle: t1 -> t2 -> t1; items must form a DAG" in told
    assert '"depends_on": ["t2"]' in told  # its previous answer, to correct
    # both processes' spend counts, and the second gets what the attempt has left
    assert req.meter.usage.cost_usd == pytest.approx(2 * 0.0123)
    assert first[first.index("--max-budget-usd") + 1] == "1.000000"
    assert second[second.index("--max-budget-usd") + 1] == "0.987700"


@pytest.mark.anyio
async def test_corrections_are_bounded_and_the_attempt_then_fails_naming_the_problem(
    tmp_path: Path,
) -> None:
    fake = Sequence(tmp_path / "bin", [final(CYCLE)])
    runner = ClaudeCodeRunner(
        executable=str(fake.path), context_builder=lambda r: CONTEXT, plan_corrections=2
    )
    result = await run(runner, plan_request(tmp_path))
    assert len(fake.calls()) == 3  # the first answer and two corrections
    assert result.status == "failed"
    assert result.error is not None and "dependency cycle: t1 -> t2 -> t1" in result.error
    assert result.plan is None
