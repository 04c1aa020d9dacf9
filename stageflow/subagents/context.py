"""The context builder: everything a fresh-context attempt sees, and a record of it.

Each attempt starts a new conversation containing only:

- the agent's system prompt (plus a short, stable stageflow preamble);
- a stage brief: the run's task and inputs, this stage's goal, what it must produce and how to
  finish (``submit_result`` for the API runner, a closing JSON block for the Claude Code runner);
- the artifacts named in ``needs`` (never upstream conversations);
- on a rework, the reviewer's feedback and this stage's previous artifacts;
- project context from ``ContextSource``s within a token budget (the project's ``CLAUDE.md`` /
  ``AGENTS.md`` today; the knowledge base plugs in through the same seam).

``build_context`` is pure apart from the sources it is given, and returns the manifest the
engine stores with the attempt (refs, sizes, estimated tokens), so status and the audit show
what went in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from stageflow.engine.runner import AttemptRequest
from stageflow.workflows.plan import PlanLimits

FinishMode = Literal["tool", "json"]
ItemKind = Literal["system", "brief", "artifact", "previous", "feedback", "project", "knowledge"]

DEFAULT_CONTEXT_TOKENS = 4000  # project context and knowledge, per attempt


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters per token), the same rule the engine uses."""
    return (len(text) + 3) // 4


@dataclass(frozen=True)
class ContextSection:
    """One piece of optional project context offered by a source."""

    ref: str  # stable id shown in the manifest, e.g. ``CLAUDE.md`` or a knowledge doc id
    title: str
    text: str
    kind: Literal["project", "knowledge"] = "project"


class ContextSource(Protocol):
    """Offers project context for an attempt, best first; the builder packs what fits."""

    async def sections(
        self, request: AttemptRequest, budget_tokens: int
    ) -> list[ContextSection]: ...


async def collect_sections(
    sources: Sequence[ContextSource], request: AttemptRequest, budget_tokens: int
) -> list[ContextSection]:
    """Every source's sections, in source order (the builder packs them within the budget)."""
    out: list[ContextSection] = []
    for source in sources:
        out.extend(await source.sections(request, budget_tokens))
    return out


@dataclass(frozen=True)
class ContextItem:
    """One entry of the manifest."""

    kind: ItemKind
    ref: str
    chars: int
    tokens_est: int
    truncated: bool = False


@dataclass(frozen=True)
class StageContext:
    """The first request of an attempt: system prompt, brief, and what went into them."""

    system: str
    brief: str
    items: list[ContextItem] = field(default_factory=list)

    def manifest(self) -> dict[str, Any]:
        """JSON-ready record of what went in, stored with the attempt."""
        return {
            "items": [
                {
                    "kind": i.kind,
                    "ref": i.ref,
                    "chars": i.chars,
                    "tokens_est": i.tokens_est,
                    **({"truncated": True} if i.truncated else {}),
                }
                for i in self.items
            ],
            "tokens_est": sum(i.tokens_est for i in self.items),
        }


PREAMBLE = """\
You are one stage of a stageflow workflow, started with a fresh context. You see only what the
brief below gives you: the task, your stage's goal, the upstream artifacts you need and relevant
project context. You do not see earlier conversations. Work inside the workspace you are given
with the tools you have; everything you hand on must be in your artifacts."""

JSON_FINISH_NOTE = """\
In this session there is no `submit_result` tool. Wherever your instructions say to call
`submit_result`, end your final answer with one fenced ```json block instead, holding the same
fields: {"status": ..., "summary": ..., "artifacts": {...}, "outputs": {...}}."""

JSON_EXAMPLE = """\
```json
{"status": "passed", "summary": "one or two sentences",
 "artifacts": {"<name>": "<full Markdown text>"}, "outputs": {}}
```"""

# Artifacts are fenced so their headings stay inside them; a fence longer than any backtick run
# in the text keeps it intact.


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}markdown\n{text}\n{ticks}"


def _truncate(text: str, max_tokens: int) -> tuple[str, bool]:
    limit = max_tokens * 4
    if len(text) <= limit:
        return text, False
    cut = text.rfind("\n", 0, limit)
    cut = cut if cut > limit // 2 else limit
    return text[:cut] + "\n[... truncated to fit the context budget]", True


def _system(request: AttemptRequest, finish: FinishMode) -> str:
    parts = [PREAMBLE]
    if finish == "json":
        parts.append(JSON_FINISH_NOTE)
    body = request.agent.system_prompt.strip() if request.agent else ""
    if body:
        parts.append(body)
    return "\n\n".join(parts)


def plan_text(limits: PlanLimits, finish: FinishMode) -> str:
    """What a plan stage's brief says about the plan it returns."""
    agents = ", ".join(f"`{a}`" for a in limits.agents) or "the stage's own"
    where = "`submit_result`'s `plan`" if finish == "tool" else "`plan` in the final block"
    lines = [
        "## Your plan",
        f'Return the work items in {where}: {{"items": [{{"id": "t1", "title", '
        '"description", "depends_on": [ids], "files": [paths], "acceptance": [criteria], '
        '"agent"?, "model"?}]}}.',
        f"- 1 to {limits.max_items} items, each small enough for one fresh agent in one "
        "session; independent items run in parallel, so split along files.",
        "- `depends_on` names other items' ids; no cycles. Items sharing a file never run at "
        "the same time.",
        f"- `agent` (optional) is one of {agents}; the default is "
        f"`{limits.default_agent or 'the stage agent'}`.",
    ]
    if limits.item_usd:
        lines.append(
            f"- Each item is budgeted at ${limits.item_usd:.2f}; the plan must fit in what "
            "the run has left."
        )
    lines.append("The plan is checked before the stage ends; a refused plan comes back to you.")
    return "\n".join(lines)


def _finish_text(request: AttemptRequest, finish: FinishMode) -> str:
    produces = request.stage.required_artifacts
    names = ", ".join(f"`{p}`" for p in produces) if produces else "none required"
    if finish == "tool":
        return (
            "## How to finish\n"
            "Call the `submit_result` tool exactly once when you are done, with `status` "
            "(`passed`, `failed` or `changes_requested`), a short `summary`, `artifacts` "
            f"(required: {names}; each the full text) and `outputs` (structured values "
            "downstream stages and gates read). The stage ends only through `submit_result`."
        )
    return (
        "## How to finish\n"
        "End your final answer with one fenced ```json block: `status` (`passed`, `failed` or "
        "`changes_requested`), a short `summary`, `artifacts` "
        f"(required: {names}; each the full text) and `outputs`:\n" + JSON_EXAMPLE
    )


def build_context(
    request: AttemptRequest,
    *,
    finish: FinishMode,
    sections: Sequence[ContextSection] = (),
    budget_tokens: int = DEFAULT_CONTEXT_TOKENS,
) -> StageContext:
    """Build the system prompt and stage brief for one attempt (see the module docstring).

    Only the artifacts the stage ``needs`` go in, and on a rework its own previous artifacts and
    the feedback. Optional ``sections`` (gather them with ``collect_sections``) are added best
    first while they fit in ``budget_tokens``; one that does not fit is truncated if at least a
    quarter of the budget is left, else skipped. The items list records each piece and its size.
    """
    items: list[ContextItem] = []
    system = _system(request, finish)
    items.append(
        ContextItem(
            "system",
            request.agent.name if request.agent else "stage",
            len(system),
            estimate_tokens(system),
        )
    )
    stage = request.stage
    lines = [f"# Stage `{stage.id}` (attempt {request.attempt}, {request.kind})", ""]
    lines += ["## Task", request.task.strip() or "(no task text)", ""]
    if request.inputs:
        lines.append("## Inputs")
        lines += [f"- `{k}`: {v}" for k, v in sorted(request.inputs.items()) if k != "task"]
        lines.append("")
    if stage.description:
        lines += ["## Your goal", stage.description.strip(), ""]
    if stage.required_artifacts:
        lines += ["## You must produce", *(f"- `{p}`" for p in stage.required_artifacts), ""]
    lines += [f"Your workspace is `{request.workdir}`; paths in tools are relative to it.", ""]
    brief_head = "\n".join(lines)

    sections_text: list[str] = []
    for art in request.artifacts:
        ref = f"{art.stage}.{art.name}@v{art.version}"
        sections_text.append(
            f"## Upstream artifact `{art.stage}.{art.name}`\n{_fence(art.content)}"
        )
        items.append(ContextItem("artifact", ref, len(art.content), estimate_tokens(art.content)))
    if request.feedback:
        sections_text.append(
            "## Feedback on your previous version (address every point)\n"
            + request.feedback.strip()
        )
        items.append(
            ContextItem(
                "feedback", "feedback", len(request.feedback), estimate_tokens(request.feedback)
            )
        )
    for art in request.previous:
        ref = f"{art.stage}.{art.name}@v{art.version}"
        sections_text.append(
            f"## Your previous `{art.name}` (v{art.version})\n{_fence(art.content)}"
        )
        items.append(ContextItem("previous", ref, len(art.content), estimate_tokens(art.content)))

    left = budget_tokens
    for sec in sections:
        if left <= 0:
            break
        text, truncated = sec.text, False
        cost = estimate_tokens(text)
        if cost > left:
            if left < budget_tokens // 4:
                continue
            text, truncated = _truncate(text, left)
            cost = estimate_tokens(text)
        sections_text.append(f"## Project context: {sec.title} (`{sec.ref}`)\n{text}")
        items.append(ContextItem(sec.kind, sec.ref, len(text), cost, truncated))
        left -= cost

    finish_parts = [_finish_text(request, finish)]
    if request.plan_limits is not None:
        finish_parts.insert(0, plan_text(request.plan_limits, finish))
    brief = "\n\n".join([brief_head.rstrip(), *sections_text, *finish_parts])
    items.insert(1, ContextItem("brief", stage.id, len(brief), estimate_tokens(brief)))
    return StageContext(system=system, brief=brief, items=items)


PROJECT_FILES = ("CLAUDE.md", "AGENTS.md", ".stageflow/context.md")


class ProjectFileSource:
    """The project's own instructions for assistants (``CLAUDE.md``, ``AGENTS.md``...).

    Read from the project root, not the run's worktree, so a stage never sees another stage's
    uncommitted edits to them. Files over 256 kB are ignored.
    """

    def __init__(self, project: Path, names: Sequence[str] = PROJECT_FILES) -> None:
        self.project = project
        self.names = tuple(names)

    async def sections(self, request: AttemptRequest, budget_tokens: int) -> list[ContextSection]:
        """Each file that exists, in order (small files: read inline)."""
        out = []
        for name in self.names:
            path = self.project / name
            try:
                if not path.is_file() or path.stat().st_size > 256_000:
                    continue
                text = path.read_text(encoding="utf-8", errors="replace").strip()
            except OSError:
                continue
            if text:
                out.append(ContextSection(ref=name, title=name, text=text))
        return out
