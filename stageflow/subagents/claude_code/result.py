"""Reading the CLI's result object, and the agent's final answer.

Pure functions, no process and no I/O, so every shape the CLI can print is unit-tested:

- ``parse_result`` / ``parse_cli_output``: the JSON result object Claude Code prints last on
  stdout (the whole output with ``--output-format json``, the last line with ``stream-json``;
  also on exit status 1 for ``error_max_turns``, ``error_max_budget_usd`` and API errors), with
  per-model usage from ``modelUsage`` (the top-level ``usage`` is only the last turn's on some
  error paths, so tokens and cost are taken per model);
- ``parse_final_answer``: the closing fenced ```json block the brief asks for
  (``{"status", "summary", "artifacts", "outputs"}``), checked against the stage's
  ``produces``;
- ``classify_cli_error``: an error result (HTTP status in ``api_error_status``, or only words)
  as a ``ModelErrorKind`` and whether another try may work.

Shapes were read from Claude Code 2.1.197 against a loopback Messages API stand-in.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard, get_args

from stageflow.engine.runner import AttemptStatus
from stageflow.errors import ModelErrorKind
from stageflow.subagents.submit import PlanCheck, plan_refusal

__all__ = [
    "CliResult",
    "FinalAnswer",
    "ModelUse",
    "classify_cli_error",
    "parse_cli_output",
    "parse_final_answer",
    "parse_result",
    "reported_count",
    "reported_number",
]

STATUSES: tuple[str, ...] = get_args(AttemptStatus)
_NEEDS_ARTIFACTS = ("passed", "changes_requested")
_RESULT_KEYS = frozenset({"status", "summary", "artifacts", "outputs", "plan"})


def reported_number(value: Any) -> float:
    """A count or a cost the CLI reported: a finite number >= 0, else 0 (JSON as Python reads
    it may say NaN or Infinity, which would turn every budget comparison false, or crash)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return 0.0
    try:
        number = float(value)
    except OverflowError:  # an integer of 400 digits
        return 0.0
    return number if math.isfinite(number) and number >= 0 else 0.0


def reported_count(value: Any) -> int:
    """A token count the CLI reported (see ``reported_number``)."""
    return int(reported_number(value))


@dataclass(frozen=True)
class ModelUse:
    """Usage of one model over the whole session (a ``modelUsage`` entry)."""

    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class CliResult:
    """The CLI's result object, reduced to what the runner uses."""

    subtype: str
    is_error: bool
    result: str = ""  # the final text (or, for API errors, the error message)
    num_turns: int = 0
    total_cost_usd: float = 0.0
    models: list[ModelUse] = field(default_factory=list)
    api_error_status: int | None = None
    errors: list[str] = field(default_factory=list)
    session_id: str | None = None
    permission_denials: int = 0

    @property
    def answered_model(self) -> str | None:
        """The model that did the work: the one with the most output tokens."""
        if not self.models:
            return None
        return max(self.models, key=lambda m: m.output_tokens).model

    @property
    def error_text(self) -> str:
        """Everything the CLI said about a failure, on one line."""
        parts = [*self.errors, self.result] if self.is_error else list(self.errors)
        return "; ".join(p.strip() for p in parts if p and p.strip())


def _models(data: dict[str, Any]) -> list[ModelUse]:
    """``modelUsage`` entries; cache writes split 5m/1h by the top-level usage's ratio."""
    usage = data.get("usage")
    created = usage.get("cache_creation") if isinstance(usage, dict) else None
    if not isinstance(created, dict):
        created = {}
    five = reported_count(created.get("ephemeral_5m_input_tokens"))
    hour = reported_count(created.get("ephemeral_1h_input_tokens"))
    hour_share = hour / (five + hour) if five + hour else 0.0
    raw = data.get("modelUsage")
    out = []
    for name, entry in raw.items() if isinstance(raw, dict) else []:
        if not isinstance(entry, dict):
            continue
        writes = reported_count(entry.get("cacheCreationInputTokens"))
        one_hour = round(writes * hour_share)
        out.append(
            ModelUse(
                model=str(name),
                input_tokens=reported_count(entry.get("inputTokens")),
                output_tokens=reported_count(entry.get("outputTokens")),
                cache_read_tokens=reported_count(entry.get("cacheReadInputTokens")),
                cache_write_5m_tokens=writes - one_hour,
                cache_write_1h_tokens=one_hour,
                cost_usd=reported_number(entry.get("costUSD")),
            )
        )
    return out


def _result_object(stdout: str) -> dict[str, Any] | None:
    """The ``{"type": "result", ...}`` object: the whole output, else its last such line."""
    candidates = [stdout.strip(), *reversed(stdout.strip().splitlines())]
    for text in candidates:
        if not text.startswith("{"):
            continue
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError):  # nested past the parser's depth too
            continue
        if isinstance(data, dict) and data.get("type") == "result":
            return data
    return None


def parse_cli_output(stdout: str) -> CliResult | None:
    """The result object in the CLI's stdout (either output format); None when it has none."""
    data = _result_object(stdout)
    return None if data is None else parse_result(data)


def parse_result(data: dict[str, Any]) -> CliResult:
    """One ``{"type": "result", ...}`` object, reduced to what the runner uses."""
    status = data.get("api_error_status")
    errors = data.get("errors")
    denials = data.get("permission_denials")
    result = data.get("result")
    session = data.get("session_id")
    return CliResult(
        subtype=str(data.get("subtype") or ""),
        is_error=bool(data.get("is_error")),
        result=result if isinstance(result, str) else "",
        num_turns=reported_count(data.get("num_turns")),
        total_cost_usd=reported_number(data.get("total_cost_usd")),
        models=_models(data),
        api_error_status=status if isinstance(status, int) and status > 0 else None,
        errors=[str(e) for e in errors] if isinstance(errors, list) else [],
        session_id=session if isinstance(session, str) else None,
        permission_denials=len(denials) if isinstance(denials, list) else 0,
    )


# -- errors ----------------------------------------------------------------------------------

_AUTH_WORDS = (
    "invalid api key",
    "invalid x-api-key",
    "authentication",
    "unauthorized",
    "not logged in",
    "/login",
    "oauth token",
    "permission_error",
)
_SPEND_WORDS = ("credit balance", "usage limit", "spend limit", "spending limit", "limit reached")
_CONNECTION_WORDS = (
    "connection error",
    "connection refused",
    "econnrefused",
    "econnreset",
    "enotfound",
    "fetch failed",
    "socket hang up",
    "timed out",
    "timeout",
)


def classify_cli_error(status: int | None, text: str) -> tuple[ModelErrorKind, bool]:
    """``(kind, retryable)`` for a CLI failure, from the HTTP status when known, else words."""
    low = text.lower()
    if status in (401, 403) or any(w in low for w in _AUTH_WORDS):
        return "auth", False
    if status == 402 or any(w in low for w in _SPEND_WORDS):
        return "spend_limit", False
    if status == 429 or "rate limit" in low or "rate_limit" in low or re.search(r"\b429\b", low):
        return "rate_limit", True
    if status in (503, 529) or "overloaded" in low or re.search(r"\b529\b", low):
        return "overloaded", True
    if (status is not None and status >= 500) or re.search(r"api error:? *5\d\d\b", low):
        return "server", True
    if status is not None and status >= 400:
        return "bad_request", False
    if any(w in low for w in _CONNECTION_WORDS):
        return "connection", True
    return "cli", False


# -- the final answer ------------------------------------------------------------------------


@dataclass(frozen=True)
class FinalAnswer:
    """The attempt's outcome as read from the agent's final text."""

    status: AttemptStatus
    summary: str
    artifacts: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # set when the answer did not meet the contract
    plan: dict[str, Any] | None = None  # a plan stage's checked plan
    plan_problems: tuple[str, ...] = ()  # a refused plan: the runner asks for a corrected one


_OPEN = re.compile(r"^\s*(`{3,}|~{3,})\s*json\s*$", re.IGNORECASE)


def json_blocks(text: str) -> list[str]:
    """The bodies of the fenced ``json`` blocks in ``text``, in order.

    A JSON document cannot hold a raw newline inside a string, so a line that is only a fence
    always closes the block, whatever the JSON's strings contain.
    """
    blocks: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opened = _OPEN.match(lines[i])
        if not opened:
            i += 1
            continue
        fence = opened.group(1)
        body: list[str] = []
        i += 1
        while i < len(lines):
            stripped = lines[i].strip()
            if set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                break
            body.append(lines[i])
            i += 1
        blocks.append("\n".join(body))  # an unclosed block runs to the end of the text
        i += 1
    return blocks


def _is_status(value: object) -> TypeGuard[AttemptStatus]:
    return value in STATUSES


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


def _failed(error: str) -> FinalAnswer:
    return FinalAnswer(status="failed", summary=error, error=error)


def _from_block(
    data: dict[str, Any], produces: Sequence[str], plan: PlanCheck | None
) -> FinalAnswer:
    status = data.get("status", "passed")
    if not _is_status(status):
        return _failed(
            f"the final ```json block has status {json.dumps(status)}; "
            f"expected one of {', '.join(STATUSES)}"
        )
    summary = data.get("summary", "")
    raw_artifacts = data.get("artifacts") or {}
    outputs = data.get("outputs") or {}
    if not isinstance(raw_artifacts, dict):
        return _failed("the final ```json block's 'artifacts' is not an object of name -> text")
    if not isinstance(outputs, dict):
        return _failed("the final ```json block's 'outputs' is not an object")
    wrong = sorted(str(k) for k, v in raw_artifacts.items() if not isinstance(v, str))
    if wrong:
        return _failed(f"artifact(s) {', '.join(wrong)} in the final ```json block are not text")
    artifacts = {str(k): v for k, v in raw_artifacts.items()}
    if status in _NEEDS_ARTIFACTS:
        missing = [p for p in produces if not artifacts.get(p, "").strip()]
        if missing:
            return _failed(
                f"missing required artifact(s): {', '.join(missing)} (the final ```json block "
                f"has {', '.join(sorted(artifacts)) or 'none'})"
            )
    checked: dict[str, Any] | None = None
    if plan is not None and status in _NEEDS_ARTIFACTS:
        items = plan(data["plan"]) if "plan" in data else ["the final ```json block has no 'plan'"]
        if isinstance(items, list):
            error = plan_refusal(items)
            return FinalAnswer(
                status="failed", summary=error, error=error, plan_problems=tuple(items)
            )
        checked = {"items": [i.model_dump(mode="json") for i in items]}
    return FinalAnswer(
        status=status,
        summary=summary if isinstance(summary, str) else json.dumps(summary),
        artifacts=artifacts,
        outputs=dict(outputs),
        plan=checked,
    )


def parse_final_answer(
    text: str, produces: Sequence[str], plan: PlanCheck | None = None
) -> FinalAnswer:
    """The outcome the agent's final text declares.

    The last fenced ``json`` block holding an object with result fields wins. Without one, a
    stage producing exactly one artifact gets the whole text as that artifact (``passed``); a
    stage producing none passes with the text as summary; otherwise the attempt fails with an
    error naming the missing artifacts. A result block that is not valid JSON fails the attempt.
    A plan stage (``plan`` given) must carry a plan that passes ``plan``; a refused one fails
    with its problems in ``plan_problems``.
    """
    for body in reversed(json_blocks(text)):
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, RecursionError) as exc:
            if any(f'"{key}"' in body for key in _RESULT_KEYS):
                why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
                return _failed(f"the final ```json block is not valid JSON ({why})")
            continue  # some other snippet the agent quoted
        if isinstance(data, dict) and _RESULT_KEYS & data.keys():
            return _from_block(data, produces, plan)
    if not text.strip():
        names = ", ".join(produces)
        return _failed(
            "the agent's final answer is empty" + (f"; required: {names}" if names else "")
        )
    if plan is not None:
        problem = "the final answer has no ```json block with the plan"
        return FinalAnswer(
            status="failed", summary=problem, error=problem, plan_problems=(problem,)
        )
    if len(produces) == 1:
        return FinalAnswer(
            status="passed", summary=_one_line(text), artifacts={produces[0]: text.strip()}
        )
    if not produces:
        return FinalAnswer(status="passed", summary=_one_line(text))
    return _failed(
        f"missing required artifact(s): {', '.join(produces)} (the final answer has no "
        "```json block with 'artifacts')"
    )
