"""The anthropic runner when things go wrong, end to end against the Messages API stand-in:
refused submissions, the turn and repeat bounds, API errors (529, 401) and an unreachable API.

Runs go through the ``stageflow`` CLI in-process, except the outage test, which drives the
engine's ``Service`` and ``Scheduler`` as the MCP server does (its event sink brings the API
back once the first attempt has failed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from stageflow import events as ev
from stageflow.config import load_settings
from stageflow.engine.scheduler import Scheduler
from stageflow.engine.service import Service
from stageflow.engine.state import RunState
from stageflow.store.store import Store
from stageflow.subagents.select import describe_runner, make_runner
from stageflow.workspace.view import workspace_probe
from tests.standin import StandIn, Turn, tool_use_block
from tests.standin.project import TASK, make_project
from tests.standin.wire import Json, text_of
from tests.subagents.anthropic_harness import (
    ApiProject,
    Outage,
    requests_of,
    stage_of,
    submission,
    tool_results,
    tool_uses,
    use_standin,
)

FAST_RETRY = {"retry-after-ms": "1"}  # the SDK waits what the API says: no backoff sleeps

ONE_PATCH = """\
name: one_patch
description: one developer stage
stages:
  - id: implementation
    agent: developer
    produces: [patch_summary]
"""

RETRIED = """\
name: retried
description: one developer stage that may be retried
stages:
  - id: implementation
    agent: developer
    produces: [patch_summary]
    on_failure: {retry: {max_attempts: 3, backoff: 0}}
"""

PAIR = """\
name: pair
description: a design, then its review
stages:
  - id: design
    agent: architect
    produces: [design]
  - id: check
    agent: reviewer
    depends_on: [design]
    needs: [design.design]
    produces: [review]
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiProject]:
    with StandIn() as api:
        use_standin(monkeypatch, api.base_url)
        yield ApiProject(make_project(tmp_path / "project"), api)


def test_a_submission_without_its_required_artifact_is_refused_and_the_stage_goes_on(
    project: ApiProject,
) -> None:
    api = project.api
    refused: list[str] = []

    def first_submit_without_the_patch(body: Json) -> Turn:
        turn = api.agent.turn(body)
        args = submission(turn)
        if args is not None and not refused:
            refused.append(args["artifacts"].pop("patch_summary"))
        return turn

    api.respond = first_submit_without_the_patch
    project.write_template(ONE_PATCH)
    view = project.run("one_patch")

    assert view.status == "completed", view.reason
    stage = stage_of(view, "implementation")
    [attempt] = stage.history  # the same attempt went on after the refusal
    assert attempt.outcome == "passed"
    assert [a.name for a in stage.artifacts] == ["patch_summary"]
    requests = requests_of(api, "implementation")
    at = next(i for i, r in enumerate(requests) if tool_uses(r, "submit_result"))
    [bad] = tool_uses(requests[at], "submit_result")
    assert "patch_summary" not in bad["input"]["artifacts"]
    # the next request answers that call with an error naming what is missing
    answer = requests[at + 1].body
    assert answer["messages"][-1]["role"] == "user"
    [result] = [r for r in tool_results(answer) if r["tool_use_id"] == bad["id"]]
    assert result.get("is_error") is True
    assert "missing required artifact(s): patch_summary" in text_of(result["content"])
    [good] = tool_uses(requests[at + 1], "submit_result")
    assert good["input"]["artifacts"]["patch_summary"]
    assert len(requests) == at + 2 == attempt.usage.requests
    assert (
        project.artifact(view.run_id, "implementation", "patch_summary")
        == (good["input"]["artifacts"]["patch_summary"])
    )


def test_an_attempt_stops_at_the_configured_max_turns_and_keeps_their_usage(
    project: ApiProject,
) -> None:
    project.write_config("[subagents]\nmax_turns = 2\n")  # the scripted developer needs 4
    project.write_template(ONE_PATCH)
    view = project.run("one_patch")

    assert view.status == "failed"
    stage = stage_of(view, "implementation")
    [attempt] = stage.history
    assert attempt.outcome == "failed"
    assert attempt.error == "stopped after 2 turns without submit_result"
    assert len(project.api.message_requests()) == 2
    _assert_usage_in_ledger(project, view.run_id, "implementation", requests=2)


def test_an_attempt_stops_when_the_model_repeats_the_same_call(project: ApiProject) -> None:
    def same_glob(body: Json) -> Turn:
        use_id = f"toolu_{len(body['messages']):04d}"
        return Turn([tool_use_block(use_id, "Glob", {"pattern": "**/*.py"})], "tool_use")

    project.api.respond = same_glob
    project.write_template(ONE_PATCH)
    view = project.run("one_patch")

    assert view.status == "failed"
    [attempt] = stage_of(view, "implementation").history
    assert attempt.outcome == "failed"
    assert attempt.error == "stopped: the model called 'Glob' with the same input 3 times in a row"
    assert len(project.api.message_requests()) == 3
    _assert_usage_in_ledger(project, view.run_id, "implementation", requests=3)


def _assert_usage_in_ledger(project: ApiProject, run_id: str, stage_id: str, requests: int) -> None:
    """The failed attempt's requests are in the ledger, the stage total and the run's spend."""
    view = project.status(run_id)
    stage = stage_of(view, stage_id)
    rows = project.ledger(run_id)
    assert [(r.stage, r.attempt) for r in rows] == [(stage_id, 1)] * requests
    answered = [r.usage for r in project.api.message_requests()]
    assert [r.input_tokens + r.cache_read_tokens + r.cache_write_5m_tokens for r in rows] == [
        u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
        for u in answered
        if u is not None
    ]
    assert stage.usage.requests == stage.history[0].usage.requests == requests
    assert stage.usage.output_tokens == sum(r.output_tokens for r in rows) > 0
    assert stage.usage.cost_usd == pytest.approx(sum(r.cost_usd for r in rows), abs=1e-9)
    assert view.spent_usd == pytest.approx(stage.usage.cost_usd, abs=1e-9) and view.spent_usd > 0


def test_an_overloaded_answer_is_retried_by_the_client_and_the_run_goes_on(
    project: ApiProject,
) -> None:
    api = project.api
    api.push_error(529, "overloaded_error", "Overloaded", headers=FAST_RETRY)
    project.write_template(PAIR)
    view = project.run("pair")

    assert view.status == "completed", view.reason
    [attempt] = stage_of(view, "design").history
    assert attempt.outcome == "passed"
    assert stage_of(view, "check").status == "succeeded"
    first, retried = api.message_requests()[:2]
    assert (first.status, retried.status) == (529, 200)
    assert retried.body == first.body
    assert retried.headers.get("x-stainless-retry-count") == "0"  # the client's retry
    # the 529 had no usage: the ledger holds only the answered requests
    rows = project.ledger(view.run_id)
    assert len(rows) == len(api.message_requests()) - 1 == view.usage.requests
    assert attempt.usage.requests == len(requests_of(api, "design")) - 1


def test_a_rejected_api_key_fails_the_run_at_once_naming_the_variable(
    project: ApiProject,
) -> None:
    project.api.push_error(401, "authentication_error", "invalid x-api-key")
    project.write_template(RETRIED)  # a retry policy that must not apply to bad credentials
    view = project.run("retried")

    assert view.status == "failed"
    assert len(project.api.message_requests()) == 1  # neither the SDK nor the engine retried
    stage = stage_of(view, "implementation")
    [attempt] = stage.history
    assert attempt.outcome == "failed"
    assert attempt.error and "ANTHROPIC_API_KEY" in attempt.error and "401" in attempt.error
    assert view.reason and "ANTHROPIC_API_KEY" in view.reason
    assert project.ledger(view.run_id) == [] and view.spent_usd == 0


@pytest.mark.anyio
async def test_an_unreachable_api_fails_the_attempt_as_retryable_and_the_run_resumes_when_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Outage() as outage:
        use_standin(monkeypatch, outage.base_url)
        root = make_project(tmp_path / "project")
        ApiProject(root, outage.api).write_template(RETRIED)
        settings = load_settings(root)
        runner = make_runner(settings)
        finished: list[ev.AttemptFinished] = []

        def sink(env: ev.Envelope, state: RunState) -> None:
            if isinstance(env.event, ev.AttemptFinished):
                finished.append(env.event)
                outage.end()  # the API is back once the first attempt has failed

        async with await Store.open(settings.db_path) as store:
            scheduler = Scheduler(store, runner, sink=sink)
            service = Service(
                settings,
                store,
                runner_label=describe_runner(settings),
                workspace_probe=workspace_probe(root),
            )
            try:
                state = await service.start_run("retried", TASK)
                with anyio.fail_after(60):
                    await scheduler.drive(state.run_id, until="terminal")
                view = await service.view(state.run_id)
            finally:
                scheduler.close()
                await runner.aclose()

    assert view.status == "completed", view.reason
    down, back = finished[:2]
    assert (down.outcome, down.retryable, down.fatal) == ("failed", True, False)
    assert down.error and "cannot reach the Anthropic API" in down.error
    assert outage.base_url.removeprefix("http://") in down.error
    assert down.usage.requests == 0
    assert back.outcome == "passed" and back.attempt == 2
    history = stage_of(view, "implementation").history
    assert [(a.number, a.outcome) for a in history] == [(1, "failed"), (2, "passed")]
    assert all(r.status == 200 for r in outage.api.message_requests())
