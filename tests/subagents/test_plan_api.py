"""A plan stage on the API runner, end to end: the ``stageflow`` CLI, the engine, the tool loop
and the real ``anthropic`` client against the loopback Messages API stand-in. The coordinator
returns its plan through ``submit_result`` (whose input schema declares it); malformed plans (a
cycle, an unknown dependency, too many items) are refused with the reason, within the same
attempt, and the engine expands the plan the model then corrects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stageflow.engine.views import RunView
from tests.standin import StandIn, Turn
from tests.standin.project import make_project
from tests.standin.wire import Json, text_of
from tests.subagents.anthropic_harness import (
    ApiProject,
    first_request,
    requests_of,
    stage_of,
    submission,
    tool_results,
    tool_uses,
    use_standin,
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiProject]:
    with StandIn() as api:
        use_standin(monkeypatch, api.base_url)
        yield ApiProject(make_project(tmp_path / "project"), api)


def run_to_approval(project: ApiProject) -> RunView:
    view = project.run("plan_execute_audit")
    assert view.status == "waiting", (view.reason, view.blockers)
    assert [w.stage for w in view.waiting] == ["approval"]
    return view


def test_the_coordinators_plan_through_submit_result_is_expanded_and_run(
    project: ApiProject,
) -> None:
    view = run_to_approval(project)
    plan_tools = {t["name"]: t for t in first_request(project.api, "plan").body["tools"]}
    schema = plan_tools["submit_result"]["input_schema"]
    assert "plan" in schema["required"]
    assert schema["properties"]["plan"]["properties"]["items"]["maxItems"] == 6
    # other stages keep the shared, plan-free submit_result (their cache prefix is unchanged)
    item_tools = {t["name"]: t for t in first_request(project.api, "execute.t1").body["tools"]}
    assert "plan" not in item_tools["submit_result"]["input_schema"]["properties"]

    execute = stage_of(view, "execute")
    assert execute.items == ["execute.t1", "execute.t2", "execute.t3"]
    assert all(stage_of(view, i).status == "succeeded" for i in execute.items)
    assert stage_of(view, "plan").attempts == 1
    # an item's brief is its own goal, plus the plan; t3's also carries what t1 and t2 wrote
    brief = text_of(first_request(project.api, "execute.t3").body["messages"][0]["content"])
    assert "Work item `t3` of the plan: Wire the parts together" in brief
    assert "execute.t1.summary" in brief and "execute.t2.summary" in brief
    assert "plan.plan" in brief
    audit = text_of(first_request(project.api, "audit").body["messages"][0]["content"])
    for item in ("t1", "t2", "t3"):
        assert f"execute.{item}.summary" in audit

    done = project.view("approve", view.run_id, "--stage", "approval")
    assert done.status == "completed"


BAD_PLANS: list[tuple[str, list[dict[str, Any]], str]] = [
    (
        "a cycle",
        [
            {
                "id": "t1",
                "title": "a",
                "description": "",
                "depends_on": ["t2"],
                "files": [],
                "acceptance": [],
            },
            {
                "id": "t2",
                "title": "b",
                "description": "",
                "depends_on": ["t1"],
                "files": [],
                "acceptance": [],
            },
        ],
        "dependency cycle: t1 -> t2 -> t1",
    ),
    (
        "an unknown dependency",
        [
            {
                "id": "t1",
                "title": "a",
                "description": "",
                "depends_on": ["t7"],
                "files": [],
                "acceptance": [],
            }
        ],
        "item 't1' depends on unknown item 't7'; the items are t1",
    ),
    (
        "too many items",
        [
            {
                "id": f"t{n}",
                "title": "x",
                "description": "",
                "depends_on": [],
                "files": [],
                "acceptance": [],
            }
            for n in range(9)
        ],
        "the plan has 9 items; this stage allows at most 6 (max_items)",
    ),
]


def test_malformed_plans_are_refused_and_the_model_is_told_why(project: ApiProject) -> None:
    api = project.api
    sent: list[str] = []

    def bad_plans_first(body: Json) -> Turn:
        turn = api.agent.turn(body)
        args = submission(turn)
        if args is not None and "plan" in args and len(sent) < len(BAD_PLANS):
            name, items, _ = BAD_PLANS[len(sent)]
            args["plan"] = {"items": items}
            sent.append(name)
        return turn

    api.respond = bad_plans_first
    view = run_to_approval(project)

    plan = stage_of(view, "plan")
    [attempt] = plan.history  # all within one attempt
    assert attempt.outcome == "passed"
    requests = requests_of(api, "plan")
    submits = [(i, u) for i, r in enumerate(requests) for u in tool_uses(r, "submit_result")]
    assert len(submits) == len(BAD_PLANS) + 1
    for (at, use), (_, _, expected) in zip(submits, BAD_PLANS, strict=False):
        answer = requests[at + 1].body
        [result] = [r for r in tool_results(answer) if r["tool_use_id"] == use["id"]]
        assert result.get("is_error") is True
        said = text_of(result["content"])
        assert said.startswith("submit_result refused: the plan was refused: (1) "), said
        assert expected in said, said
    # the plan that passed is the one expanded: the stand-in's three items
    assert stage_of(view, "execute").items == ["execute.t1", "execute.t2", "execute.t3"]
    assert attempt.usage.requests == len(requests)
