"""What the scripted agent reads from a request: the stage, its brief, tools and tool results.

Everything is parsed from the request alone (the system prompt, the latest brief, the last
user turn), never from state kept between requests, so a retried or replayed request is read
the same way. The brief format is the one ``stageflow.subagents.context.build_context``
writes (``# Stage `id```, ``## Task``, ``## You must produce``, ``## Upstream artifact``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tests.standin.wire import Json, text_of

SUBMIT_TOOL = "submit_result"
SUBMIT_FIELDS = {
    SUBMIT_TOOL,
    "status",
    "summary",
    "artifacts",
    "outputs",
    "passed",
    "failed",
    "changes_requested",
}

STAGE_RE = re.compile(r"#+ Stage `([^`]+)`")
STAGE_LOOSE_RE = re.compile(r"\bstage[: ]+`?([A-Za-z0-9][\w-]*)`?", re.IGNORECASE)
ROLE_RE = re.compile(r"You are (?:the|a|an) ([A-Za-z][\w-]*(?: [\w-]+)?) of a stageflow workflow")
UPSTREAM_RE = re.compile(r"[Uu]pstream artifact `([^`]+)`")
PRODUCE_SECTION_RE = re.compile(r"## You must produce\n((?:- `[^`]+`.*\n?)+)")
REQUIRED_RE = re.compile(r"required: ([^;)\n]+)")
BACKTICK_RE = re.compile(r"`([^`\s]+)`")
PATH_RE = re.compile(r"`([\w./-]+\.[A-Za-z0-9]{1,6})`")
GATE_OUTPUT_RE = re.compile(r"outputs\.(\w+)\s*==\s*true")
WORKSPACE_RE = re.compile(r"[Ww]orkspace is `([^`]+)`")
TASK_RE = re.compile(r"## Task\n(.+)")
GLOB_LINE_RE = re.compile(r"^\s*([\w./-]+\.[A-Za-z0-9]{1,6})\s*$")


# -- what the agent can see ------------------------------------------------------------------


def required_from_schema(tool: Json) -> list[str]:
    """Required artifact names of a ``submit_result`` definition.

    The tool loop lists them as the required properties of ``artifacts``
    (``input_schema.properties.artifacts.required``); adjust here if that changes.
    """
    schema = tool.get("input_schema") or {}
    artifacts = (schema.get("properties") or {}).get("artifacts") or {}
    return [str(name) for name in artifacts.get("required") or []]


def produces_from_brief(brief: str) -> list[str]:
    """Artifact names a brief asks for (its "You must produce" list or "required: ..." text)."""
    section = PRODUCE_SECTION_RE.search(brief)
    if section:
        return BACKTICK_RE.findall(section.group(1))
    found = REQUIRED_RE.search(brief)
    if found and "none" not in found.group(1):
        return BACKTICK_RE.findall(found.group(1))
    return []


@dataclass(frozen=True)
class StageInfo:
    """What the agent knows about the stage it is doing."""

    stage: str
    role: str
    task: str
    brief: str
    system: str
    produces: list[str]
    upstream: list[str]
    files_read: list[str]


def tool_map(body: Json) -> dict[str, Json]:
    return {str(t.get("name", "")).lower(): t for t in body.get("tools") or []}


def brief_index(messages: Sequence[Json]) -> int:
    """Index of the user message holding the current stage's brief.

    That is the latest user text naming a stage (``# Stage `id```), else the first message:
    a nudge such as "you ended your turn without calling submit_result" is not a brief.
    """
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if message.get("role") == "user" and STAGE_RE.search(user_text(message)):
            return i
    return 0


def user_text(message: Json) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(
        str(b.get("text", ""))
        for b in content or []
        if isinstance(b, dict) and b.get("type") == "text"
    )


def tool_uses(messages: Sequence[Json]) -> dict[str, Json]:
    """tool_use id -> the tool_use block, over all assistant turns."""
    uses: dict[str, Json] = {}
    for message in messages:
        if message.get("role") == "assistant" and isinstance(message.get("content"), list):
            for block in message["content"]:
                if isinstance(block, dict) and block.get("type") == "tool_use":
                    uses[str(block.get("id"))] = block
    return uses


@dataclass(frozen=True)
class ToolOutcome:
    name: str  # lower case
    text: str
    is_error: bool
    arguments: Json


def last_tool_results(messages: Sequence[Json]) -> list[ToolOutcome]:
    """The tool results of the last message, when it is a user turn."""
    if not messages or messages[-1].get("role") != "user":
        return []
    content = messages[-1].get("content")
    if not isinstance(content, list):
        return []
    uses = tool_uses(messages)
    out = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            use = uses.get(str(block.get("tool_use_id")), {})
            out.append(
                ToolOutcome(
                    str(use.get("name", "?")).lower(),
                    text_of(block.get("content")),
                    bool(block.get("is_error")),
                    dict(use.get("input") or {}),
                )
            )
    return out


def stage_info(body: Json) -> StageInfo:
    """Parse the current stage from the system prompt and the latest brief."""
    messages = body.get("messages") or []
    start = brief_index(messages)
    brief = user_text(messages[start]) if messages else ""
    system = text_of(body.get("system"))
    found = STAGE_RE.search(brief) or STAGE_LOOSE_RE.search(brief)
    stage = found.group(1) if found else "stage"
    role_match = ROLE_RE.search(system) or ROLE_RE.search(brief)
    role = role_match.group(1) if role_match else stage
    task_match = TASK_RE.search(brief)
    task = (task_match.group(1) if task_match else brief.strip().split("\n", 1)[0])[:120]
    files = []
    for message in messages[start:]:  # only this stage's reads
        if message.get("role") != "assistant" or not isinstance(message.get("content"), list):
            continue
        for block in message["content"]:
            if (
                isinstance(block, dict)
                and block.get("type") == "tool_use"
                and str(block.get("name", "")).lower() == "read"
            ):
                args = block.get("input") or {}
                files.append(str(args.get("file_path") or args.get("path") or ""))
    return StageInfo(
        stage=stage,
        role=role,
        task=task,
        brief=brief,
        system=system,
        produces=produces_from_brief(brief),
        upstream=UPSTREAM_RE.findall(brief),
        files_read=[f for f in files if f],
    )


def default_outputs(info: StageInfo) -> Json:
    """Structured outputs such that the built-in templates' gates pass."""
    out: Json = {}
    key = f"{info.stage} {info.role}".lower()
    if "test" in key:
        out["passed"] = True
    if "review" in key or "editor" in key:
        out["approved"] = True
    for name in GATE_OUTPUT_RE.findall(info.brief):
        out[name] = True
    return out


MISSING_RE = re.compile(r"(?:missing[^:;.]*|must produce):\s*([^;.]+)", re.IGNORECASE)


def refusal_names(text: str) -> list[str]:
    """Artifact names a refusal mentions: backticked ones, and lists after "missing ...:" or
    "must produce:" (identifiers that are not submit_result's field names)."""
    found = BACKTICK_RE.findall(text)
    for listed in MISSING_RE.findall(text):
        found += [part.strip(" `'\"") for part in listed.split(",")]
    return list(
        dict.fromkeys(
            n for n in found if n not in SUBMIT_FIELDS and re.fullmatch(r"[A-Za-z_][\w-]*", n)
        )
    )
