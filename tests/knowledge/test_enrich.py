"""Context enrichment: the knowledge sections an attempt gets, within its budget and filters,
recorded in the attempt's manifest (kind ``knowledge``); and the subagents' lookup tool."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from stageflow import events as ev
from stageflow.agents.definition import AgentDefinition
from stageflow.config import Settings, load_settings
from stageflow.engine.runner import AttemptRequest
from stageflow.engine.scheduler import Scheduler
from stageflow.engine.service import Service
from stageflow.errors import InvalidArgument
from stageflow.knowledge.enrich import (
    DEFAULT_KNOWLEDGE_TOKENS,
    KnowledgeSource,
    enrichment_query,
    knowledge_filter,
)
from stageflow.knowledge.index import KnowledgeIndex
from stageflow.knowledge.lookup_tool import TOOL_NAME, knowledge_lookup_tool
from stageflow.models.client import ModelCall
from stageflow.store.store import Store
from stageflow.subagents.anthropic_runner import AnthropicRunner
from stageflow.subagents.context import ProjectFileSource, estimate_tokens
from stageflow.workflows.spec import StageSpec
from tests.subagents.fake_model import fake_model, submit, tool_reply, tool_use

pytestmark = pytest.mark.anyio

RATE_LIMITS = """\
---
title: Rate limiting
tags: [http, security]
---
# Rate limiting

## Login endpoints
Limit login attempts per account and per IP address with a token bucket; answer 429 with a
Retry-After header. Never reveal whether the account exists.

## Storage
Keep the buckets in Redis with a TTL equal to the refill window.
"""

CACHING = """\
# Caching

Cache rendered pages for anonymous users only; the login page is never cached.
"""

ADR = """\
---
type: adr
status: accepted
---
# Use Redis for ephemeral counters

Counters that may be lost on restart (rate limits, throttles) live in Redis, not in Postgres.
"""

LONG = "# Login audit trail\n\n" + "\n\n".join(
    f"Paragraph {i}: every login attempt is written to the audit trail with its IP address."
    for i in range(200)
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    root = tmp_path / "project"
    kb = root / ".stageflow" / "knowledge"
    (kb / "guidelines").mkdir(parents=True)
    (kb / "adr").mkdir()
    (kb / "notes").mkdir()
    (kb / "guidelines" / "rate-limiting.md").write_text(RATE_LIMITS, encoding="utf-8")
    (kb / "guidelines" / "caching.md").write_text(CACHING, encoding="utf-8")
    (kb / "adr" / "redis-counters.md").write_text(ADR, encoding="utf-8")
    (kb / "notes" / "audit.md").write_text(LONG, encoding="utf-8")
    return load_settings(root, runner="offline")


@pytest.fixture
async def index(settings: Settings) -> AsyncIterator[KnowledgeIndex]:
    store = await Store.open(settings.db_path)
    try:
        idx = KnowledgeIndex(store, settings)
        await idx.sync()
        yield idx
    finally:
        await store.close()


def request(
    workdir: Path,
    *,
    knowledge: dict[str, Any] | None = None,
    task: str = "Add rate limiting to the login endpoint",
    run_id: str = "r-test-0001",
    description: str = "Design how the change fits the codebase",
) -> AttemptRequest:
    agent = AgentDefinition(
        name="architect",
        description="Designs changes before anyone writes code",
        system_prompt="You are the architect.",
        knowledge=knowledge or {},
    )
    return AttemptRequest(
        run_id=run_id,
        stage=StageSpec(
            id="architecture", agent="architect", produces=["design"], description=description
        ),
        attempt=1,
        task=task,
        agent=agent,
        workdir=workdir,
    )


# -- the agent's filter and the query -------------------------------------------------------


def test_the_agent_front_matter_overrides_the_config_budget(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / ".stageflow").mkdir(parents=True)
    (root / ".stageflow" / "config.toml").write_text(
        "[knowledge]\ncontext_tokens = 1200\n", encoding="utf-8"
    )
    settings = load_settings(root)
    plain = AgentDefinition(name="a")
    tuned = AgentDefinition(
        name="b", knowledge={"tokens": 300, "types": ["adr", "guideline"], "tags": "http, sql"}
    )
    broken = AgentDefinition(name="c", knowledge={"tokens": "lots", "types": 7})

    assert knowledge_filter(settings, plain).tokens == 1200
    assert knowledge_filter(settings, tuned).tokens == 300
    assert knowledge_filter(settings, tuned).types == ("adr", "guideline")
    assert knowledge_filter(settings, tuned).tags == ("http", "sql")
    assert knowledge_filter(settings, broken) == knowledge_filter(settings, plain)
    assert knowledge_filter(load_settings(tmp_path / "q"), plain).tokens == (
        DEFAULT_KNOWLEDGE_TOKENS
    )


def test_the_query_takes_words_from_task_stage_and_role(tmp_path: Path) -> None:
    long_task = "Add rate limiting to the login endpoint. " + "filler words " * 500
    words = enrichment_query(request(tmp_path, task=long_task)).split()
    assert words[:4] == ["add", "rate", "limiting", "login"]
    assert "design" in words and "codebase" in words  # the stage's goal
    assert "designs" in words  # the agent's role
    assert "the" not in words and "stage" not in words and len(words) <= 24


# -- sections -------------------------------------------------------------------------------


async def test_the_best_sections_come_first_whole_and_within_the_budget(
    settings: Settings, index: KnowledgeIndex
) -> None:
    source = KnowledgeSource(index, settings)
    sections = await source.sections(request(settings.project), budget_tokens=4000)
    assert sections, "nothing found for the task"
    assert sections[0].ref.startswith("guidelines/rate-limiting#L")
    assert sections[0].kind == "knowledge"
    assert "token bucket" in sections[0].text and "Retry-After" in sections[0].text
    assert "[guideline]" in sections[0].title
    used = sum(estimate_tokens(s.text) for s in sections)
    assert used <= DEFAULT_KNOWLEDGE_TOKENS


@pytest.mark.parametrize("budget", [80, 250, 600])
async def test_a_small_budget_is_never_exceeded(
    settings: Settings, index: KnowledgeIndex, budget: int
) -> None:
    source = KnowledgeSource(index, settings)
    req = request(settings.project, task="login audit trail IP address rate limiting")
    sections = await source.sections(req, budget_tokens=budget)
    assert sum(estimate_tokens(s.text) for s in sections) <= budget


async def test_the_agent_filters_select_types_and_tokens_0_turns_it_off(
    settings: Settings, index: KnowledgeIndex
) -> None:
    source = KnowledgeSource(index, settings)
    adr_only = await source.sections(
        request(settings.project, knowledge={"types": ["adr"]}), budget_tokens=4000
    )
    off = await source.sections(
        request(settings.project, knowledge={"tokens": 0}), budget_tokens=4000
    )
    assert [s.ref.split("#")[0] for s in adr_only] == ["adr/redis-counters"]
    assert off == []


async def test_past_artifacts_are_not_injected_unless_the_agent_asks_for_them(
    settings: Settings, index: KnowledgeIndex
) -> None:
    for run in ("r-earlier", "r-now"):
        await index.index_artifact(
            run_id=run,
            stage="architecture",
            name="design",
            version=1,
            content="# Login rate limiting design\n\nA token bucket per login account.",
            task="Add rate limiting to the login endpoint",
        )
    source = KnowledgeSource(index, settings)
    by_default = await source.sections(
        request(settings.project, run_id="r-now"), budget_tokens=4000
    )
    assert not any(s.ref.startswith("run/") for s in by_default)  # lookup finds them instead
    opted_in = request(
        settings.project, run_id="r-now", knowledge={"types": ["artifact", "guideline"]}
    )
    refs = [s.ref for s in await source.sections(opted_in, budget_tokens=4000)]
    assert any(r.startswith("run/r-earlier/architecture/design") for r in refs)
    assert not any(r.startswith("run/r-now/") for r in refs)  # never the run's own


async def test_command_stages_get_no_knowledge(settings: Settings, index: KnowledgeIndex) -> None:
    req = request(settings.project).model_copy(update={"agent": None})
    assert await KnowledgeSource(index, settings).sections(req, budget_tokens=4000) == []


async def test_a_failing_search_costs_only_the_enrichment(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        async def search(self, *args: Any, **kwargs: Any) -> list[Any]:
            raise RuntimeError("database is locked")

    source = KnowledgeSource(cast(KnowledgeIndex, Broken()), settings)
    with caplog.at_level(logging.WARNING, logger="stageflow.knowledge.enrich"):
        sections = await source.sections(request(settings.project), budget_tokens=4000)
    assert sections == []
    assert "knowledge enrichment failed" in caplog.text


# -- through the API runner ------------------------------------------------------------------


async def test_the_api_runner_injects_knowledge_records_it_and_offers_the_lookup_tool(
    settings: Settings, index: KnowledgeIndex
) -> None:
    model = fake_model(
        tool_reply(tool_use(TOOL_NAME, {"query": "redis counters", "types": ["adr"]})),
        tool_reply(submit({"design": "# Design\nUse a token bucket."})),
    )
    runner = AnthropicRunner(
        settings,
        client_factory=lambda: model,
        sources=[ProjectFileSource(settings.project), KnowledgeSource(index, settings)],
        extra_tools=[knowledge_lookup_tool(index)],
    )
    req = request(settings.project)
    result = await runner.run(req)

    assert result.status == "passed"
    items = req.meter.context["items"]
    knowledge = [i for i in items if i["kind"] == "knowledge"]
    assert knowledge and knowledge[0]["ref"].startswith("guidelines/rate-limiting#L")
    assert all(i["tokens_est"] > 0 for i in knowledge)
    first: ModelCall = model.calls[0]
    brief = first.messages[0]["content"]
    brief_text = brief if isinstance(brief, str) else " ".join(b["text"] for b in brief)
    assert "token bucket" in brief_text
    assert TOOL_NAME in {t["name"] for t in first.tools}
    answer = model.calls[1].messages[-1]["content"][0]
    assert answer["type"] == "tool_result" and not answer.get("is_error")
    assert "Use Redis for ephemeral counters [adr, accepted]" in str(answer["content"])


# -- the lookup tool on its own -----------------------------------------------------------


async def test_the_lookup_tool_searches_and_reads_whole_documents(
    index: KnowledgeIndex,
) -> None:
    tool = knowledge_lookup_tool(index)
    found = await tool.call({"query": "token bucket", "limit": 2})
    doc = await tool.call({"doc_id": "guidelines/caching"})
    assert "result(s) for 'token bucket':" in found.splitlines()[0]
    assert "(id: guidelines/rate-limiting)" in found.splitlines()[1]
    assert found.endswith("Read one whole: knowledge_lookup with doc_id=<id>.")
    assert doc.startswith("# Caching [guideline] .stageflow/knowledge/guidelines/caching.md")
    assert "never cached" in doc


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"query": "   "},
        {"query": 3},
        {"query": "x", "limit": 0},
        {"query": "x", "limit": "ten"},
        {"query": "x", "types": ["recipe"]},
        {"query": "x", "tags": [1, 2]},
        {"doc_id": "guidelines/nope"},
        {"doc_id": 7},
    ],
)
async def test_bad_lookup_arguments_are_invalid_argument(
    index: KnowledgeIndex, args: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgument):
        await knowledge_lookup_tool(index).call(args)


@pytest.mark.parametrize("query", ['"', "a) OR (b", "NEAR(x y)", "*", "x" * 10_240, "\x00"])
async def test_hostile_lookup_queries_return_text(index: KnowledgeIndex, query: str) -> None:
    text = await knowledge_lookup_tool(index).call({"query": query})
    assert isinstance(text, str) and text


async def test_what_was_injected_is_stored_with_the_attempt_and_shown_in_status(
    settings: Settings, index: KnowledgeIndex
) -> None:
    (settings.state_dir / "workflows").mkdir()
    (settings.state_dir / "workflows" / "design.yaml").write_text(
        "name: design\nstages:\n  - id: architecture\n    agent: architect\n"
        "    produces: [design]\n",
        encoding="utf-8",
    )
    model = fake_model(tool_reply(submit({"design": "# Design\nA token bucket per account."})))
    runner = AnthropicRunner(
        settings,
        client_factory=lambda: model,
        sources=[KnowledgeSource(index, settings)],
        extra_tools=[knowledge_lookup_tool(index)],
    )
    store = await Store.open(settings.db_path)
    try:
        service = Service(settings, store)
        state = await service.start_run("design", "Add rate limiting to the login endpoint")
        with anyio.fail_after(20):
            await Scheduler(store, runner, poll_interval=0.05).drive(state.run_id)
        view = await service.view(state.run_id)
        events = await store.load_events(state.run_id)
    finally:
        await store.close()
    finished = [e.event for e in events if isinstance(e.event, ev.AttemptFinished)]
    assert finished[0].outcome == "passed"
    injected = [i for i in finished[0].context["items"] if i["kind"] == "knowledge"]
    assert injected[0]["ref"].startswith("guidelines/rate-limiting#L")
    shown = view.stages[0].history[0].context["input"]["items"]  # what status shows
    assert [i["ref"] for i in shown if i["kind"] == "knowledge"] == [i["ref"] for i in injected]


async def test_a_stages_knowledge_tokens_override_the_agents_budget(
    settings: Settings, index: KnowledgeIndex
) -> None:
    source = KnowledgeSource(index, settings)
    base = request(settings.project, knowledge={"tokens": 3000})
    off = base.model_copy(update={"stage": base.stage.model_copy(update={"knowledge_tokens": 0})})
    assert await source.sections(base, budget_tokens=4000) != []
    assert await source.sections(off, budget_tokens=4000) == []


async def test_enrichment_uses_the_hybrid_ranking_and_finds_a_task_in_other_words(
    settings: Settings, index: KnowledgeIndex
) -> None:
    # No word of this task is in the caching guideline; BM25 alone cannot inject it.
    task = "Remember answers of costly lookups so we avoid recomputing them"
    assert index.default_mode == "hybrid"
    assert "guidelines/caching" not in [
        h.doc_id for h in await index.search(task, mode="bm25", types=["guideline"])
    ]
    source = KnowledgeSource(index, settings)
    sections = await source.sections(
        request(settings.project, task=task, description="Plan it"), budget_tokens=4000
    )
    assert any(s.ref.startswith("guidelines/caching#L") for s in sections)
