"""Token economy: stageflow's fresh-context stages vs one long session doing the same stages.

Every half runs against its own loopback Messages API stand-in (``tests/standin``): the same
scripted agent, deterministic token counts and a faithful prompt-cache simulation, so the
figures are reproducible to the token. Each half is counted the same way, from the stand-in's
records of every answered request.

- **stageflow**: ``stageflow run feature_development --task ...`` in a temporary git project
  with ``STAGEFLOW_RUNNER=anthropic``, ``ANTHROPIC_API_KEY=test`` and ``ANTHROPIC_BASE_URL`` at
  the stand-in, then ``stageflow approve RUN`` at each approval gate until the run ends (the
  production code path: CLI, engine, context builder, tool loop, ``anthropic`` client). Each
  stage is a fresh conversation: system prompt + brief (+ the artifacts it ``needs``).
- **claude-code** (the baseline the target is judged against): the same five stage briefs as
  successive user turns of ONE real Claude Code session (the CLI pinned by the test suite,
  npm-installed into ``.ci/node`` when missing): ``claude -p BRIEF --output-format json`` for
  the first, ``claude -p BRIEF --resume SESSION ...`` for each next one, in a worktree of the
  same sample project, ``--permission-mode acceptEdits``, ``--strict-mcp-config`` with no MCP
  servers, the same model. Every request carries Claude Code's own system prompt and tool
  definitions plus all earlier stages: what a user doing the feature in one session sends.
  Without a CLI (no ``claude`` and no ``npm``) this half prints ``skipped: ...``.
- **lean**: a lower bound for any single session, shown for honesty: the same stages in ONE
  conversation driven by this script through the ``anthropic`` client, with a three-line
  system prompt and only our own tools (the union of the stages' tools + ``submit_result``),
  with prompt caching (system and tools marked, plus a top-level ``cache_control``).

The stage turns of both sessions carry the brief stageflow builds for that stage (the same
``build_context``; ``finish="json"`` for Claude Code, which has no ``submit_result``), minus the
upstream artifacts, which are already in the conversation. The agent does the same work per
stage everywhere: it only uses the tools that stage's agent has. Claude Code 2.1.328's default
tool set has no Glob (search goes through Bash), so there the agent skips its listing turn:
one request fewer per stage, in the baseline's favour.

Reported per half: prompt tokens (input + cache read + cache write), the standing context
(tools + system prompt, mean tokens per request), the cache-read share, requests, output
tokens, the cost at list prices, and each stage's first-request size. The target (stageflow's
prompt tokens <= 0.20 of the baseline's) is judged against the Claude Code session.

Reading the lean ratio: both conversations do the same work, so the lean baseline's extra
tokens come only from re-sending earlier stages. With S stages of about equal length L (tokens a
stage adds to its conversation) and a fixed prefix P per request, the ratio is about
(P_stageflow + L/2) / (P_lean + S*L/2): it falls toward 1/S as stages get longer than their
prefix but never reaches it, so for ``feature_development`` (S = 5) the 0.20 target is out of
reach against the lean baseline by construction. A real session also re-sends its standing
context (Claude Code's system prompt and tools, about 27k tokens here) with every request,
which the Claude Code half measures. Claude Code puts ``git status`` into its system prompt when
each ``claude -p`` starts, so the resume after the first stage's write misses the cache past
the tools (prompt tokens are unaffected; an interactive session would keep its snapshot).

Run: ``python benchmarks/token_economy.py`` (``--json`` for machine-readable output, ``--keep``
to keep the temporary projects, ``--no-claude-code`` or ``--claude PATH`` for the Claude Code
half, ``--no-install`` to never run npm, ``--roles`` to put each agent's instructions into the
sessions' stage turns as well; ``--reads``, ``--read-turns`` and ``--artifact-chars`` change how
much work each stage does).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the stand-in lives in the test tree
    sys.path.insert(0, str(ROOT))

from benchmarks._claude_cli import find_claude, version  # noqa: E402
from benchmarks._halves import (  # noqa: E402
    SKIPPED,
    TEMPLATE,
    Half,
    StageFigures,
    figures,
    run_baseline,
    run_claude_code,
    run_stageflow,
    skipped,
)
from tests.standin import AgentConfig, StandIn  # noqa: E402
from tests.standin.project import make_project  # noqa: E402

__all__ = ["Half", "StageFigures", "compare", "figures", "main", "render"]

TARGET = 0.20
JUDGED_AGAINST = "claude_code"

# -- report --------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def compare(stageflow: Half, lean: Half, claude_code: Half) -> dict[str, Any]:
    """The figures side by side; the target is judged against the Claude Code session."""
    stages = len(stageflow.stages) or 1
    judged = claude_code.status == "completed"
    ratios = {
        "lean": _ratio(stageflow.prompt_tokens, lean.prompt_tokens),
        "claude_code": _ratio(stageflow.prompt_tokens, claude_code.prompt_tokens)
        if judged
        else None,
    }
    costs = {
        "lean": _ratio(stageflow.cost_usd, lean.cost_usd),
        "claude_code": _ratio(stageflow.cost_usd, claude_code.cost_usd) if judged else None,
    }
    target_ratio = ratios[JUDGED_AGAINST]
    return {
        "template": TEMPLATE,
        "stages": stages,
        "stageflow": stageflow.as_dict(),
        "lean": lean.as_dict(),
        "claude_code": claude_code.as_dict(),
        "ratios": ratios,
        "cost_ratios": costs,
        "target": TARGET,
        "judged_against": JUDGED_AGAINST,
        "meets_target": None if target_ratio is None else target_ratio <= TARGET,
        "lean_floor": round(1 / stages, 4),
    }


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


HALVES = (("stageflow", "stageflow"), ("lean", "lean"), ("claude_code", "claude-code"))


def render(result: dict[str, Any], out: TextIO) -> None:
    """The human-readable report."""
    out.write(
        f"token economy: {result['template']} ({result['stages']} stages), each half against "
        "its own Messages API stand-in\n\n"
    )
    out.write(
        f"{'':<12} {'status':<10} {'requests':>8} {'prompt tok':>11} {'standing':>9} "
        f"{'input':>7} {'cache rd':>9} {'cache wr':>9} {'rd share':>8} {'output':>7} "
        f"{'cost $':>8}\n"
    )
    for key, label in HALVES:
        h = result[key]
        out.write(
            f"{label:<12} {h['status']:<10} {h['requests']:>8} {h['prompt_tokens']:>11} "
            f"{h['standing_tokens']:>9} {h['input_tokens']:>7} {h['cache_read_tokens']:>9} "
            f"{h['cache_write_tokens']:>9} {h['cache_read_share']:>8.1%} "
            f"{h['output_tokens']:>7} {h['cost_usd']:>8.4f}\n"
        )
    out.write("(standing = tools + system prompt, mean tokens per request)\n")
    out.write("\nper stage: requests / first-request prompt tokens / all prompt tokens\n")
    out.write(f"  {'':<15}" + "".join(f"{label:>24}" for _, label in HALVES) + "\n")
    stages = [s["stage"] for s in result["stageflow"]["stages"]]
    for stage in stages:
        cells = []
        for key, _ in HALVES:
            s = next((x for x in result[key]["stages"] if x["stage"] == stage), None)
            s = s or {"requests": 0, "first_request_tokens": 0, "prompt_tokens": 0}
            cells.append(
                f"{s['requests']:>4} / {s['first_request_tokens']:>6} / {s['prompt_tokens']:>7}"
            )
        out.write(f"  {stage:<15}" + "".join(f"{c:>24}" for c in cells) + "\n")
    for key, label in HALVES:
        for note in result[key]["notes"]:
            skip = note.startswith(SKIPPED)
            out.write(
                f"skipped: {label}: {note[len(SKIPPED) :]}\n"
                if skip
                else f"note: {label}: {note}\n"
            )
    ratios, costs = result["ratios"], result["cost_ratios"]
    out.write("\n")
    if ratios["claude_code"] is None:
        out.write(
            "target not judged: the Claude Code session did not complete; the target "
            f"<= {result['target']:.2f} is judged against it, the baseline stageflow replaces\n"
        )
    else:
        verdict = "meets" if result["meets_target"] else "MISSES"
        out.write(
            f"stageflow/claude-code session prompt tokens = {ratios['claude_code']:.3f} "
            f"({verdict} the target <= {result['target']:.2f}; the target is judged against "
            f"the Claude Code session, the baseline stageflow replaces); "
            f"cost ratio {_num(costs['claude_code'])}\n"
        )
    if ratios["lean"] is not None:
        out.write(
            f"stageflow/lean single conversation = {ratios['lean']:.3f}, cost ratio "
            f"{_num(costs['lean'])} (not judged: with S = {result['stages']} equal stages this "
            f"comparison is bounded below by about 1/S = {result['lean_floor']:.2f}, and its "
            "baseline carries no standing context)\n"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary projects")
    p.add_argument(
        "--roles",
        action="store_true",
        help="sessions: also put each agent's instructions into its stage turn",
    )
    p.add_argument("--claude", type=Path, help="the Claude Code executable to use")
    p.add_argument(
        "--no-claude-code", action="store_true", help="skip the Claude Code session half"
    )
    p.add_argument(
        "--no-install",
        action="store_true",
        help="do not npm-install Claude Code into .ci/node when it is missing",
    )
    p.add_argument(
        "--reads",
        type=int,
        default=AgentConfig.read_files,
        help=f"files the agent reads per stage (default {AgentConfig.read_files})",
    )
    p.add_argument(
        "--read-turns",
        type=int,
        default=AgentConfig.read_turns,
        help=f"turns the agent spends reading per stage (default {AgentConfig.read_turns})",
    )
    p.add_argument(
        "--artifact-chars",
        type=int,
        default=AgentConfig.artifact_chars,
        help=f"size of each artifact (default {AgentConfig.artifact_chars})",
    )
    return p.parse_args(argv)


def _claude_code_half(
    args: argparse.Namespace, project: Path, home: Path, config: AgentConfig
) -> Half:
    if args.no_claude_code:
        return skipped("claude-code", "--no-claude-code given")
    claude: Path | None
    if args.claude is not None:
        claude, why = (args.claude if version(args.claude) else None), f"{args.claude} does not run"
    else:
        claude, why = find_claude(install_missing=not args.no_install)
    if claude is None:
        return skipped("claude-code", why)
    with StandIn(config=config) as api:
        return run_claude_code(project, home, api, claude, roles=args.roles, config=config)


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> dict[str, Any]:
    """Run the three halves in a temporary directory; print and return the figures."""
    args = parse_args(argv)
    out = out or sys.stdout
    work = Path(tempfile.mkdtemp(prefix="stageflow-token-economy-"))
    try:
        home = work / "home"
        home.mkdir()
        project = make_project(work / "project")
        config = AgentConfig(
            read_files=args.reads, read_turns=args.read_turns, artifact_chars=args.artifact_chars
        )
        with StandIn(config=config) as api:  # a fresh stand-in (and cache) per half
            stageflow = run_stageflow(project, home, api)
        with StandIn(config=config) as api:
            lean = run_baseline(project, home, api, roles=args.roles, config=config)
        claude_code = _claude_code_half(args, project, home, config)
        result = compare(stageflow, lean, claude_code)
        if args.keep:
            result["workdir"] = str(work)
        if args.json:
            out.write(json.dumps(result, indent=2) + "\n")
            for note in claude_code.notes:  # stdout stays JSON; the skip is still said
                if note.startswith(SKIPPED):
                    sys.stderr.write(f"skipped: claude-code: {note[len(SKIPPED) :]}\n")
        else:
            render(result, out)
            if args.keep:
                out.write(f"kept {work}\n")
        return result
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
