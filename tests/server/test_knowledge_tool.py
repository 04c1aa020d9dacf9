"""``knowledge_lookup`` and ``stageflow://knowledge/{doc_id}`` through the in-memory client, in
both protocol eras: ranked sections with their location, filters, hostile queries, documents
read back by the URI each hit carries, and artifacts of past runs."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError, types
from mcp.types import INVALID_PARAMS

from stageflow.config import Settings, load_settings
from stageflow.knowledge.views import LookupResult, knowledge_uri
from stageflow.server.app import build_server

pytestmark = pytest.mark.anyio

MODES = ["auto", "legacy"]

ERRORS = """\
---
title: Error handling
tags: [python, errors]
---
# Error handling

## Domain errors
Raise `NotFound` with the known names; never let a bare KeyError reach the user.

## Retries
Retry transient network failures with exponential backoff, at most three attempts.
"""

NAMING = """\
# Naming

Modules are nouns, functions are verbs. Test names state the behaviour they check.
"""

ADR = """\
# 3. Use SQLite for run state

Date: 2025-01-10

## Status

Accepted

## Context

Runs must survive restarts and be visible from every session of the project.

## Decision

Store the event log in SQLite with WAL journaling.

## Consequences

One file per project; no server to operate.
"""

HOSTILE = [
    "",
    "   ",
    '"',
    '"unbalanced',
    "((((",
    "a) OR (b",
    "AND OR NOT NEAR",
    "NEAR(retry backoff, 2)",
    "retry*",
    "^retry",
    "title:retry",
    "body : *",
    "-retry +backoff",
    "'; DROP TABLE knowledge_docs; --",
    "\x00\x01\x02",
    "重试 策略 🚀 ü",
    "x" * 10_240,
    "retry " * 2_000,
    '"a" "b" "c" NOT "d"',
    "{}[]<>\\|/?!@#$%&=~`",
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    root = tmp_path / "project"
    guides = root / ".stageflow" / "knowledge" / "guidelines"
    guides.mkdir(parents=True)
    (guides / "errors.md").write_text(ERRORS, encoding="utf-8")
    (guides / "naming.md").write_text(NAMING, encoding="utf-8")
    adr = root / "docs" / "adr"
    adr.mkdir(parents=True)
    (adr / "0003-use-sqlite.md").write_text(ADR, encoding="utf-8")
    (root / ".stageflow" / "config.toml").write_text(
        '[knowledge]\npaths = ["docs/adr/**/*.md"]\n', encoding="utf-8"
    )
    return load_settings(root, runner="offline")


def data(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


def text_of(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


async def lookup(client: Client, query: str, **args: Any) -> dict[str, Any]:
    return data(await client.call_tool("knowledge_lookup", {"query": query, **args}))


@pytest.mark.parametrize("mode", MODES)
async def test_lookup_returns_ranked_sections_with_their_location(
    settings: Settings, mode: str
) -> None:
    async with Client(build_server(settings), mode=mode) as client:
        result = await client.call_tool("knowledge_lookup", {"query": "retry backoff"})
    found = LookupResult.model_validate(data(result))  # the declared output schema's model
    top = found.results[0]
    assert top.id == "guidelines/errors"
    assert (top.title, top.type, top.heading) == ("Error handling", "guideline", "Retries")
    assert top.path == ".stageflow/knowledge/guidelines/errors.md"
    lines = ERRORS.splitlines()
    assert lines[top.line_start - 1] == "## Retries"
    assert "exponential backoff" in lines[top.line_end - 1]
    assert "[backoff]" in top.snippet and top.score > 0
    assert top.tags == ["python", "errors"]
    assert top.uri == "stageflow://knowledge/guidelines%2Ferrors"
    summary = text_of(result)
    assert "Error handling" in summary and "errors.md:" in summary
    assert len(summary) < 1000


async def test_lookup_finds_adrs_from_configured_globs_with_their_status(
    settings: Settings,
) -> None:
    async with Client(build_server(settings)) as client:
        found = await lookup(client, "where is the run state stored", types=["adr"])
        everything = await lookup(client, "", types=["adr", "guideline"])
    assert [r["id"] for r in found["results"]] == ["docs/adr/0003-use-sqlite"]
    assert found["results"][0]["status"] == "accepted"
    assert found["types"] == ["adr"]
    # with a filter, a query of no words lists what the filter selects
    assert {r["id"] for r in everything["results"]} == {
        "docs/adr/0003-use-sqlite",
        "guidelines/errors",
        "guidelines/naming",
    }


async def test_lookup_filters_by_type_and_tag(settings: Settings) -> None:
    async with Client(build_server(settings)) as client:
        tagged = await lookup(client, "names", tags=["errors"])
        untagged = await lookup(client, "names")
        wrong_type = await lookup(client, "retry backoff", types=["pattern"])
    assert [r["id"] for r in tagged["results"]] == ["guidelines/errors"]
    assert "guidelines/naming" in {r["id"] for r in untagged["results"]}
    assert wrong_type["results"] == [] and wrong_type["note"]


async def test_limit_caps_the_results(settings: Settings) -> None:
    async with Client(build_server(settings)) as client:
        one = await lookup(client, "names errors retry sqlite", limit=1)
    assert len(one["results"]) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_hostile_queries_never_error(settings: Settings, mode: str) -> None:
    async with Client(build_server(settings), mode=mode) as client:
        for query in HOSTILE:
            result = await client.call_tool("knowledge_lookup", {"query": query})
            assert not result.is_error, (query[:40], result.content)
            found = data(result)
            assert isinstance(found["results"], list)
            assert len(found["query"]) <= 200  # a 10 kB query is not echoed back in full
            assert len(text_of(result)) < 2000


@pytest.mark.parametrize(
    "args",
    [{"limit": 0}, {"limit": 51}, {"types": ["nonsense"]}, {"types": "adr; DROP"}],
)
async def test_bad_filters_are_argument_errors_the_model_can_read(
    settings: Settings, args: dict[str, Any]
) -> None:
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("knowledge_lookup", {"query": "retry", **args})
    assert result.is_error
    assert next(iter(args)) in text_of(result)


# -- the resource ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_hit_uri_reads_the_whole_file_back(settings: Settings, mode: str) -> None:
    async with Client(build_server(settings), mode=mode) as client:
        hit = (await lookup(client, "sqlite wal"))["results"][0]
        read = await client.read_resource(hit["uri"])
    contents = read.contents[0]
    assert isinstance(contents, types.TextResourceContents)
    assert contents.mime_type == "text/markdown"
    assert contents.text == ADR
    assert hit["uri"] == knowledge_uri("docs/adr/0003-use-sqlite")


async def test_unknown_documents_and_unencoded_slashes_are_invalid_params(
    settings: Settings,
) -> None:
    async with Client(build_server(settings)) as client:
        await lookup(client, "retry")  # the index is synced
        with pytest.raises(MCPError) as unknown:
            await client.read_resource(knowledge_uri("guidelines/eror"))
        with pytest.raises(MCPError) as literal:
            await client.read_resource("stageflow://knowledge/guidelines/errors")
    assert unknown.value.error.code == INVALID_PARAMS
    assert "guidelines/errors" in unknown.value.error.message  # the close ids are listed
    assert literal.value.error.code == INVALID_PARAMS


async def test_the_resource_template_is_listed(settings: Settings) -> None:
    async with Client(build_server(settings)) as client:
        templates = (await client.list_resource_templates()).resource_templates
        instructions = client.instructions
    knowledge = next(t for t in templates if t.name == "knowledge")
    assert knowledge.uri_template == "stageflow://knowledge/{doc_id}"
    assert "%2F" in (knowledge.description or "")
    assert instructions is not None and "knowledge_lookup" in instructions


# -- past runs ------------------------------------------------------------------------------


async def test_artifacts_of_finished_attempts_are_found_with_their_run_and_stage(
    settings: Settings,
) -> None:
    workflows = settings.state_dir / "workflows"
    workflows.mkdir()
    (workflows / "design_only.yaml").write_text(
        textwrap.dedent(
            """\
            name: design_only
            description: One design stage
            stages:
              - id: architecture
                agent: architect
                produces: [design]
            """
        ),
        encoding="utf-8",
    )
    async with Client(build_server(settings)) as client:
        started = data(
            await client.call_tool(
                "workflow_start",
                {"template": "design_only", "task": "Add a quarantine queue for poison messages"},
            )
        )
        run_id = started["run_id"]
        with anyio.fail_after(20):
            while True:
                found = await lookup(client, "quarantine poison messages", types=["artifact"])
                if found["results"]:
                    break
                await client.call_tool("workflow_status", {"run_id": run_id, "wait_seconds": 1})
        hit = found["results"][0]
        read = await client.read_resource(hit["uri"])
    assert hit["id"] == f"run/{run_id}/architecture/design"
    assert (hit["run_id"], hit["stage"], hit["path"]) == (run_id, "architecture", None)
    contents = read.contents[0]
    assert isinstance(contents, types.TextResourceContents)
    assert f"run {run_id}, stage architecture" in contents.text.splitlines()[0]


@pytest.mark.parametrize("mode", MODES)
async def test_the_mode_argument_chooses_the_ranking_and_hits_say_which_found_them(
    settings: Settings, mode: str
) -> None:
    async with Client(build_server(settings), mode=mode) as client:
        default = LookupResult.model_validate(await lookup(client, "retry backoff"))
        lexical = LookupResult.model_validate(await lookup(client, "retry backoff", mode="bm25"))
        # in other words than the document's: only the vector ranking can find it
        dense = LookupResult.model_validate(
            await lookup(
                client, "what to do when a call to a remote host keeps timing out", mode="vector"
            )
        )
        bad = await client.call_tool("knowledge_lookup", {"query": "retry", "mode": "semantic"})
    assert (default.mode, lexical.mode, dense.mode) == ("hybrid", "bm25", "vector")
    assert default.results[0].id == "guidelines/errors"
    assert default.results[0].found_by == ["bm25", "vector"]
    assert lexical.results[0].found_by == ["bm25"]
    assert dense.results and all(h.found_by == ["vector"] for h in dense.results)
    assert bad.is_error and "mode" in text_of(bad)


async def test_vector_modes_without_embeddings_are_argument_errors(settings: Settings) -> None:
    (settings.project / ".stageflow" / "config.toml").write_text(
        '[knowledge]\npaths = ["docs/adr/**/*.md"]\nembeddings = "none"\n', encoding="utf-8"
    )
    async with Client(build_server(load_settings(settings.project, runner="offline"))) as client:
        ok = LookupResult.model_validate(await lookup(client, "retry backoff"))
        refused = await client.call_tool("knowledge_lookup", {"query": "retry", "mode": "hybrid"})
    assert ok.mode == "bm25" and ok.results[0].id == "guidelines/errors"
    assert refused.is_error
    assert "embeddings is 'none'" in text_of(refused) and "mode 'bm25'" in text_of(refused)
