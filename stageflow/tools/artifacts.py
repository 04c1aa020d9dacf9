"""``workflow_artifact``: an artifact's text, in pages small enough for one tool result."""

from __future__ import annotations

from typing import Annotated

from mcp.types import CallToolResult
from pydantic import Field

from stageflow.errors import InvalidArgument
from stageflow.tools.deps import ToolContext, deps
from stageflow.tools.errors import tool_errors
from stageflow.tools.models import ArtifactPage
from stageflow.tools.results import artifact_uri, tool_result

# The page's text travels twice (structured content and the text block), so 16k characters
# keep one result near 8k tokens, under the ~10k a client should receive at once.
PAGE_CHARS = 16_000
PAGE_TOKENS = 4_000  # estimated tokens per page; the page is sent twice (text + structured)
BREAK_WINDOW = 2_000  # end a page at a line break if one is this close to the limit
MAX_INT = 2**31 - 1

DESCRIPTION = f"""\
Read an artifact of a run: the named, versioned text a stage produced (design doc, patch
summary, test report, review ...). workflow_status lists each stage's artifact names and sizes.

Returns the latest version unless `version` is given. Long artifacts come in pages of at most
{PAGE_CHARS} characters (fewer for non-ASCII text), ending at a line break where possible:
when next_offset is not null, call again with offset=next_offset for the rest. Unknown runs,
stages or names are reported with the names that exist."""


def page_bounds(text: str, offset: int, limit: int = PAGE_CHARS) -> tuple[int, int | None]:
    """End of the page starting at ``offset``, and the next page's offset (None at the end).

    A page holds at most ``limit`` characters and about ``PAGE_TOKENS`` estimated tokens
    (ASCII ~4 characters per token, anything else ~1), so CJK text gets shorter pages.
    """
    if offset < 0 or offset > len(text):
        raise InvalidArgument(f"offset must be between 0 and {len(text)}, got {offset}")
    end = min(len(text), offset + limit)
    budget = PAGE_TOKENS * 4  # in quarter tokens: ASCII costs 1, anything else 4
    spent = 0
    for i in range(offset, end):
        spent += 1 if ord(text[i]) < 128 else 4
        if spent > budget:
            end = i
            break
    if end >= len(text):
        return len(text), None
    cut = text.rfind("\n", max(offset, end - BREAK_WINDOW), end)
    if cut > offset:
        end = cut + 1  # keep the line break on this page
    return end, end


async def workflow_artifact(
    ctx: ToolContext,
    run_id: Annotated[str, Field(description="the run id")],
    stage: Annotated[str, Field(description="the stage that produced the artifact")],
    name: Annotated[str, Field(description="the artifact name, e.g. design")],
    version: Annotated[
        int | None, Field(description="a specific version; default the latest", ge=1, le=MAX_INT)
    ] = None,
    offset: Annotated[
        int, Field(description="character offset to start at (from next_offset)", ge=0, le=MAX_INT)
    ] = 0,
) -> Annotated[CallToolResult, ArtifactPage]:
    """One page of an artifact's text."""
    app = deps(ctx)
    with tool_errors():
        rec = await app.store.get_artifact(run_id, stage, name, version)
        end, next_offset = page_bounds(rec.content, offset)
    page = ArtifactPage(
        run_id=rec.run_id,
        stage=rec.stage,
        name=rec.name,
        version=rec.version,
        size=rec.size,
        total_chars=len(rec.content),
        offset=offset,
        next_offset=next_offset,
        sha256=rec.sha256,
        uri=artifact_uri(rec.run_id, rec.stage, rec.name),
        text=rec.content[offset:end],
    )
    more = (
        f"\n[characters {offset}-{end} of {page.total_chars}; call again with "
        f"offset={next_offset} for the rest]"
        if next_offset is not None
        else ""
    )
    header = f"{rec.stage}/{rec.name} v{rec.version} of run {rec.run_id}:\n"
    return tool_result(page, header + page.text + more)
