"""The context builder: a fresh attempt sees the brief, its needs and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.engine.runner import InputArtifact
from stageflow.subagents.context import (
    ContextSection,
    ProjectFileSource,
    build_context,
    collect_sections,
    estimate_tokens,
)
from tests.subagents.factories import TASK, agent_request


def _design(version: int = 1, text: str = "## Design\nUse a token bucket.") -> InputArtifact:
    return InputArtifact(stage="architecture", name="design", version=version, content=text)


def test_the_brief_holds_task_goal_produces_needed_artifacts_and_how_to_finish(
    tmp_path: Path,
) -> None:
    req = agent_request(tmp_path, agent="developer", stage="implementation", artifacts=[_design()])
    req = req.model_copy(update={"inputs": {"ticket": "SEC-12"}})
    ctx = build_context(req, finish="tool")

    assert TASK in ctx.brief
    assert "`ticket`: SEC-12" in ctx.brief
    assert "## Upstream artifact `architecture.design`" in ctx.brief
    assert "Use a token bucket." in ctx.brief
    assert "`submit_result`" in ctx.brief and "required: `design`" in ctx.brief
    assert ctx.system.endswith("You are the developer.")
    kinds = [(i.kind, i.ref) for i in ctx.items]
    assert kinds == [
        ("system", "developer"),
        ("brief", "implementation"),
        ("artifact", "architecture.design@v1"),
    ]
    manifest = ctx.manifest()
    assert manifest["tokens_est"] == sum(i["tokens_est"] for i in manifest["items"])
    assert manifest["items"][2]["chars"] == len(_design().content)


def test_json_finish_replaces_the_tool_with_a_closing_json_block(tmp_path: Path) -> None:
    ctx = build_context(agent_request(tmp_path), finish="json")
    assert "no `submit_result` tool" in ctx.system
    assert "```json" in ctx.brief and "submit_result` tool exactly once" not in ctx.brief


def test_a_rework_carries_feedback_and_the_previous_version(tmp_path: Path) -> None:
    previous = InputArtifact(stage="architecture", name="design", version=2, content="old plan")
    req = agent_request(
        tmp_path, kind="rework", feedback="Cover the admin API too.", previous=[previous]
    )
    ctx = build_context(req, finish="tool")
    assert "Cover the admin API too." in ctx.brief and "old plan" in ctx.brief
    assert ("feedback", "feedback") in [(i.kind, i.ref) for i in ctx.items]
    assert ("previous", "architecture.design@v2") in [(i.kind, i.ref) for i in ctx.items]


def test_the_brief_does_not_grow_with_artifacts_the_stage_does_not_need(tmp_path: Path) -> None:
    one = build_context(agent_request(tmp_path, artifacts=[_design()]), finish="tool")
    # whatever ran before, a stage is handed only its needs: same needs, same brief
    again = build_context(agent_request(tmp_path, artifacts=[_design()]), finish="tool")
    more = build_context(
        agent_request(tmp_path, artifacts=[_design(), _design(2, "x" * 4000)]), finish="tool"
    )
    assert one.brief == again.brief
    assert len(more.brief) - len(one.brief) < 4000 + 200  # only the extra artifact and its heading


def test_artifact_fences_survive_backticks_inside(tmp_path: Path) -> None:
    text = "Example:\n````python\nprint(1)\n````\n"
    ctx = build_context(agent_request(tmp_path, artifacts=[_design(text=text)]), finish="tool")
    assert "`````markdown\n" + text + "\n`````" in ctx.brief


def test_project_context_is_packed_within_the_token_budget(tmp_path: Path) -> None:
    small = ContextSection(ref="CLAUDE.md", title="CLAUDE.md", text="Use ruff. " * 20)
    big = ContextSection(ref="guide", title="guide", text="word " * 4000, kind="knowledge")
    ctx = build_context(agent_request(tmp_path), finish="tool", sections=[small, big])
    project = [i for i in ctx.items if i.kind in ("project", "knowledge")]
    assert [i.ref for i in project] == ["CLAUDE.md", "guide"]
    assert project[1].truncated
    assert sum(i.tokens_est for i in project) <= 4000 + estimate_tokens(
        "\n[... truncated to fit the context budget]"
    )
    tiny = build_context(agent_request(tmp_path), finish="tool", sections=[big], budget_tokens=0)
    assert [i.kind for i in tiny.items] == ["system", "brief"]


@pytest.mark.anyio
async def test_project_files_are_read_from_the_project_root(tmp_path: Path) -> None:
    (tmp_path / "CLAUDE.md").write_text("Always run `make check`.", encoding="utf-8")
    (tmp_path / "AGENTS.md").write_text("", encoding="utf-8")  # empty: skipped
    request = agent_request(tmp_path / "worktree")
    sections = await collect_sections([ProjectFileSource(tmp_path)], request, 4000)
    ctx = build_context(request, finish="tool", sections=sections)
    assert "Always run `make check`." in ctx.brief
    assert [i.ref for i in ctx.items if i.kind == "project"] == ["CLAUDE.md"]
