"""The ``claude -p`` command line for one stage attempt: argv, stdin and files to write.

Pure, so every flag is unit-tested; ``claude_code`` (the runner) explains each choice in its
module docstring and runs the call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from stageflow.subagents.context import StageContext
from stageflow.workspace.tools import normalize_tool_names

__all__ = [
    "ARG_LIMIT",
    "DEFAULT_MAX_TURNS",
    "EMPTY_MCP_CONFIG",
    "OUTPUT_FLAGS",
    "ClaudeCall",
    "SystemPromptMode",
    "build_call",
    "claude_tools",
    "permission_rules",
]

EMPTY_MCP_CONFIG = '{"mcpServers":{}}'
DEFAULT_MAX_TURNS = 30
# Linux refuses a single argument over 128 KiB (MAX_ARG_STRLEN); stay well below it
ARG_LIMIT = 100_000
WRITE_TOOLS = frozenset({"Write", "Edit"})
# one JSON event per line as it happens; partial messages carry each request's final usage
OUTPUT_FLAGS = ("--output-format", "stream-json", "--verbose", "--include-partial-messages")

SystemPromptMode = Literal["replace", "append"]


def claude_tools(
    agent_tools: Sequence[str], *, bash_allow: Sequence[str], writable: bool
) -> list[str]:
    """Claude Code tool names for ``--tools``: the agent's, mapped as for the API runner.

    Bash needs allowed command patterns and a writable workspace; Write and Edit the latter.
    """
    tools = normalize_tool_names(agent_tools, bash_allowed=bool(bash_allow) and writable)
    return [t for t in tools if writable or t not in WRITE_TOOLS]


def permission_rules(tools: Sequence[str], bash_allow: Sequence[str]) -> list[str]:
    """``--allowedTools`` rules: one ``Bash(<pattern>)`` per allowed command pattern."""
    if "Bash" not in tools:
        return []
    return [f"Bash({p.strip()})" for p in dict.fromkeys(bash_allow) if p.strip()]


@dataclass(frozen=True)
class ClaudeCall:
    """One ``claude`` invocation: argv, what goes to stdin, files to write before starting."""

    argv: list[str]
    stdin: bytes | None = None
    files: dict[Path, str] = field(default_factory=dict)


def _fits(text: str, limit: int) -> bool:
    return len(text.encode("utf-8")) <= limit


def _usd(amount: float) -> str:
    return f"{max(amount, 0.000001):.6f}"


def build_call(
    executable: str,
    context: StageContext,
    *,
    model: str | None,
    fallback_model: str | None = None,
    tools: Sequence[str],
    allowed: Sequence[str] = (),
    max_turns: int = DEFAULT_MAX_TURNS,
    max_budget_usd: float | None = None,
    writable: bool = True,
    system_prompt_mode: SystemPromptMode = "replace",
    scratch: Path | None = None,
    arg_limit: int = ARG_LIMIT,
) -> ClaudeCall:
    """The ``claude -p`` invocation for one attempt (see the module docstring).

    A system prompt over ``arg_limit`` bytes goes to a file in ``scratch`` (``ClaudeCall.files``);
    a brief over it goes to stdin. ``--`` ends the options, so a brief starting with ``-``
    stays the prompt.
    """
    argv = [executable, "-p", *OUTPUT_FLAGS, "--no-session-persistence", "--setting-sources", ""]
    if model:
        argv += ["--model", model]
    if fallback_model and fallback_model != model:
        argv += ["--fallback-model", fallback_model]
    flag = "--system-prompt" if system_prompt_mode == "replace" else "--append-system-prompt"
    files: dict[Path, str] = {}
    if _fits(context.system, arg_limit):
        argv += [flag, context.system]
    else:
        if scratch is None:
            raise ValueError("a system prompt this long needs a scratch directory")
        path = scratch / "system-prompt.md"
        files[path] = context.system
        argv += [f"{flag}-file", str(path)]
    # --tools and --allowedTools take several values: each list ends at the next option
    argv += ["--tools", ",".join(tools)]
    if allowed:
        argv += ["--allowedTools", *allowed]
    argv += ["--permission-mode", "acceptEdits" if writable else "default"]
    argv += ["--strict-mcp-config", "--mcp-config", EMPTY_MCP_CONFIG]
    argv += ["--max-turns", str(max_turns)]
    if max_budget_usd is not None:
        argv += ["--max-budget-usd", _usd(max_budget_usd)]
    if _fits(context.brief, arg_limit):
        return ClaudeCall([*argv, "--", context.brief], None, files)
    return ClaudeCall(argv, context.brief.encode("utf-8"), files)
