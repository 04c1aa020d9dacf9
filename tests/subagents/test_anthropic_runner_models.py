"""Model routing and prompt caching of the anthropic runner, end to end against the stand-in:
the model id on the wire, a model that answers for another, and a retry that reads the cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stageflow.models.pricing import PriceTable
from stageflow.models.routing import DEFAULT_ALIASES
from tests.standin import StandIn, Turn, prompt_blocks, stage_info
from tests.standin.project import make_project
from tests.standin.wire import Json
from tests.subagents.anthropic_harness import (
    ApiProject,
    requests_of,
    stage_of,
    submission,
    use_standin,
)

HAIKU, SONNET = DEFAULT_ALIASES["haiku"], DEFAULT_ALIASES["sonnet"]

ROUTED = """\
name: routed
description: a quick look on haiku, then a careful one on the agent's model
stages:
  - id: quick
    agent: reviewer
    model: haiku
    produces: [review]
  - id: careful
    agent: reviewer
    depends_on: [quick]
    needs: [quick.review]
    produces: [review]
"""

FLAKY = """\
name: flaky
description: a design whose first attempt fails
stages:
  - id: design
    agent: architect
    produces: [design]
    on_failure: {retry: {max_attempts: 2, backoff: 0}}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiProject]:
    with StandIn() as api:
        use_standin(monkeypatch, api.base_url)
        yield ApiProject(make_project(tmp_path / "project"), api)


def test_a_stage_model_alias_goes_on_the_wire_and_another_answering_model_is_flagged(
    project: ApiProject,
) -> None:
    api = project.api
    api.answered_model[SONNET] = HAIKU  # the API answers sonnet requests with haiku
    project.write_template(ROUTED)
    view = project.run("routed")

    assert view.status == "completed", view.reason
    assert {r.body["model"] for r in requests_of(api, "quick")} == {HAIKU}
    assert {r.body["model"] for r in requests_of(api, "careful")} == {SONNET}  # the agent's

    quick, careful = stage_of(view, "quick"), stage_of(view, "careful")
    assert (quick.model, quick.model_mismatch) == (HAIKU, False)
    [asked] = quick.history
    assert (asked.model_requested, asked.model_resolved) == ("haiku", HAIKU)
    assert (asked.model_answered, asked.model_mismatch) == (HAIKU, False)
    assert careful.model_mismatch is True
    assert careful.model == f"{SONNET}>{HAIKU}"
    [attempt] = careful.history
    assert (attempt.model_answered, attempt.model_mismatch) == (HAIKU, True)
    assert (attempt.model_requested, attempt.model_resolved) == ("sonnet", SONNET)
    # the ledger keeps both, and prices what answered
    rows = [r for r in project.ledger(view.run_id) if r.stage == "careful"]
    assert rows and {(r.model_requested, r.model) for r in rows} == {(SONNET, HAIKU)}
    haiku_price = PriceTable().lookup(HAIKU)
    assert haiku_price is not None
    for row in rows:
        expected = (
            row.input_tokens * haiku_price.input
            + row.output_tokens * haiku_price.output
            + row.cache_write_5m_tokens * haiku_price.cache_write_5m
            + row.cache_read_tokens * haiku_price.cache_read
        ) / 1e6
        assert row.cost_usd == pytest.approx(expected, abs=1e-12)


def test_a_retried_attempt_reads_the_cached_system_prompt_and_tools(project: ApiProject) -> None:
    api = project.api

    def first_attempt_fails(body: Json) -> Turn:
        turn = api.agent.turn(body)
        args = submission(turn)
        if args is not None and "(attempt 1," in stage_info(body).brief:
            args.update(status="failed", summary="could not finish the design", artifacts={})
        return turn

    api.respond = first_attempt_fails
    project.write_template(FLAKY)
    view = project.run("flaky")

    assert view.status == "completed", view.reason
    history = stage_of(view, "design").history
    assert [(a.number, a.kind, a.outcome) for a in history] == [
        (1, "initial", "failed"),
        (2, "retry", "passed"),
    ]
    firsts = [r for r in api.first_requests() if r.stage == "design"]
    assert len(firsts) == 2
    opened, retried = firsts
    assert opened.usage is not None and retried.usage is not None
    assert opened.usage["cache_read_input_tokens"] == 0  # nothing cached yet
    # the retry's first request reads the stable prefix the first attempt wrote: the tool
    # definitions and the system prompt (its brief differs: "attempt 2")
    prefix = sum(
        b.tokens for b in prompt_blocks(retried.body) if not b.where.startswith("messages")
    )
    assert prefix > 1000
    assert retried.usage["cache_read_input_tokens"] == prefix
    assert history[1].usage.cache_read_tokens >= prefix
