"""Costs across runs from the cost ledger (``stageflow costs``): by template, agent and model,
since a moment; a request still in flight counts its reservation; bad arguments say why."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import anyio
import pytest

from stageflow.cli.main import main
from stageflow.engine.costs import cost_report, parse_since
from stageflow.errors import InvalidArgument
from stageflow.store.rows import RequestRow
from tests.engine.harness import engine_env, write_template

pytestmark = pytest.mark.anyio

TWO = """
name: two
stages:
  - {id: plan, agent: planner, produces: [plan]}
  - {id: build, agent: worker, depends_on: [plan], produces: [patch]}
"""
ONE = """
name: one
stages:
  - {id: only, agent: worker, produces: [x]}
"""
PLANNER = "---\nname: planner\ndescription: Plans.\n---\nYou plan.\n"


def _row(stage: str, model: str, usd: float, **kw: object) -> RequestRow:
    return RequestRow(
        stage=stage,
        attempt=1,
        model_requested=model,
        model=model,
        input_tokens=1000,
        output_tokens=100,
        cost_usd=usd,
        **kw,  # type: ignore[arg-type]
    )


async def test_costs_group_by_template_agent_and_model_since_a_moment(tmp_path: Path) -> None:
    async with engine_env(tmp_path, TWO) as env:
        project = env.settings.project
        write_template(project, ONE)
        (project / ".stageflow" / "agents" / "planner.md").write_text(PLANNER, encoding="utf-8")
        a = await env.service.start_run("two", "a")
        b = await env.service.start_run("one", "b")
        now = time.time()
        ledger = env.store.ledger
        await ledger.record(a.run_id, _row("plan", "claude-opus-4-1", 0.50), at=now)
        await ledger.record(a.run_id, _row("build", "claude-sonnet-4-5", 0.20), at=now)
        # in flight (its process may have died): its reservation counts, as the caps count it
        await ledger.record(
            a.run_id,
            _row("build", "claude-sonnet-4-5", 0.0, reserved_usd=0.30, done=False),
            at=now,
        )
        await ledger.record(b.run_id, _row("only", "claude-sonnet-4-5", 0.05), at=now)
        await ledger.record(b.run_id, _row("only", "claude-sonnet-4-5", 9.0), at=now - 30 * 86400)

        since = parse_since("7d", now=now + 1)
        by_template = await cost_report(env.store, since=since, by="template")
        assert [(g.key, g.cost_usd, g.runs, g.requests) for g in by_template.groups] == [
            ("two", 1.0, 1, 3),
            ("one", 0.05, 1, 1),
        ]
        assert by_template.total_usd == 1.05 and by_template.runs == 2
        by_agent = await cost_report(env.store, since=since, by="agent")
        assert [(g.key, g.runs) for g in by_agent.groups] == [("worker", 2), ("planner", 1)]
        assert {g.key: g.cost_usd for g in by_agent.groups} == {"planner": 0.5, "worker": 0.55}
        by_model = await cost_report(env.store, since=since, by="model")
        assert {g.key: g.cost_usd for g in by_model.groups} == {
            "claude-opus-4-1": 0.5,
            "claude-sonnet-4-5": 0.55,
        }
        whole = await cost_report(env.store, since=0, by="template")
        assert whole.total_usd == 10.05  # the month-old request is in an all-time report

    out = io.StringIO()
    argv = ["costs", "--json", "--by", "agent", "--project", str(project)]
    assert await anyio.to_thread.run_sync(lambda: main(argv, out=out)) == 0
    data = json.loads(out.getvalue())
    assert {g["key"]: g["cost_usd"] for g in data["groups"]} == {"planner": 0.5, "worker": 0.55}
    text = io.StringIO()
    argv = ["costs", "--project", str(project)]
    assert await anyio.to_thread.run_sync(lambda: main(argv, out=text)) == 0
    assert "over 2 run(s), 4 model request(s)" in text.getvalue()
    assert "two" in text.getvalue() and "$1.00" in text.getvalue()


@pytest.mark.parametrize("bad", ["7", "7 days", "-1d", "d7", ""])
def test_a_bad_since_says_what_it_expects(bad: str) -> None:
    with pytest.raises(InvalidArgument, match=r"number and a unit \(s, m, h, d, w\)"):
        parse_since(bad)


def test_costs_cli_exits_2_on_a_bad_since(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["costs", "--since", "lots", "--project", str(tmp_path)], out=io.StringIO())
    assert code == 2
    assert "--since must be a number and a unit" in capsys.readouterr().err
