"""Token economy: stageflow's fresh-context stages vs one growing conversation.

Both halves run against the loopback Messages API stand-in (``tests/standin``): the same
scripted agent, deterministic token counts and a faithful prompt-cache simulation, so the
figures are reproducible to the token.

- **stageflow**: ``stageflow run feature_development --task ...`` in a temporary git project
  with ``STAGEFLOW_RUNNER=anthropic``, ``ANTHROPIC_API_KEY=test`` and ``ANTHROPIC_BASE_URL`` at
  the stand-in, then ``stageflow approve RUN`` at each approval gate until the run ends (the
  production code path: CLI, engine, context builder, tool loop, ``anthropic`` client). Each
  stage is a fresh conversation: system prompt + brief (+ the artifacts it ``needs``).
- **baseline**: the same stages done in ONE conversation, as a single long session would:
  each stage appended as a new user turn carrying the brief stageflow sends for that stage
  (built by the same ``build_context``, minus the upstream artifacts, which are already in the
  conversation), with the union of the stages' tools, the same workspace tools and the same
  ``submit_result`` check. It enjoys prompt caching too (system and tools marked, plus a
  top-level ``cache_control`` that follows the conversation). The agent does the same work per
  stage in both halves (it only uses the tools that stage's agent has).

Reported per half: prompt tokens (input + cache read + cache write), the cache-read share,
requests, output tokens, the cost at list prices, and each stage's first-request size. The
headline is stageflow's prompt tokens as a fraction of the baseline's (target <= 0.20).

Reading the ratio: both halves do the same work, so the baseline's extra tokens come only from
re-sending earlier stages. With S stages of about equal length L (tokens a stage adds to its
conversation) and a fixed prefix P per request (system, tools, brief), the ratio is about
(P_stageflow + L/2) / (P_baseline + S*L/2): it falls toward 1/S as stages get longer than
their prefix, but never reaches it (1/5 = 0.20 for ``feature_development``). A real session
sits lower because its standing context (the assistant's own system prompt and tools, earlier
conversation) is re-sent with every request; this benchmark gives the baseline none of that.
Costs use list prices per answered model (stageflow routes ``architecture`` to opus; the
baseline uses the default model throughout).

Run: ``python benchmarks/token_economy.py`` (``--json`` for machine-readable output,
``--keep`` to keep the temporary projects, ``--roles`` to put each agent's instructions in the
baseline's stage turns as well; ``--reads``, ``--read-turns`` and ``--artifact-chars`` change
how much work each stage does).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the stand-in lives in the test tree
    sys.path.insert(0, str(ROOT))

from tests.standin import AgentConfig, StageAgent, StandIn, stage_info  # noqa: E402
from tests.standin.project import TASK, make_project  # noqa: E402
from tests.standin.server import Recorded  # noqa: E402

TEMPLATE = "feature_development"
TARGET = 0.20
BASELINE_RUN = "r-baseline0-0000"  # same shape as a stageflow run id: same workspace path length
BASELINE_SYSTEM = (
    "You are a senior software engineer working in the user's repository. The user takes you "
    "through a feature in stages (design, implementation, testing, review, deployment); do "
    "each stage as asked, using the workspace tools, and finish each stage by calling "
    "submit_result with its artifacts."
)
CLI_TIMEOUT = 300.0

# -- figures -------------------------------------------------------------------------------


@dataclass
class StageFigures:
    stage: str
    requests: int = 0
    first_request_tokens: int = 0  # prompt tokens of the stage's first request
    prompt_tokens: int = 0


@dataclass
class Half:
    name: str
    status: str
    requests: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    stages: list[StageFigures] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def cache_read_share(self) -> float:
        return self.cache_read_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["prompt_tokens"] = self.prompt_tokens
        out["cache_read_share"] = round(self.cache_read_share, 4)
        return out


def _price(model: str, usage: dict[str, Any]) -> float:
    from stageflow.subagents.model_client import RawUsage
    from stageflow.subagents.pricing import PriceTable

    created = usage.get("cache_creation") or {}
    raw = RawUsage(
        input_tokens=int(usage.get("input_tokens", 0)),
        output_tokens=int(usage.get("output_tokens", 0)),
        cache_write_5m_tokens=int(created.get("ephemeral_5m_input_tokens", 0)),
        cache_write_1h_tokens=int(created.get("ephemeral_1h_input_tokens", 0)),
        cache_read_tokens=int(usage.get("cache_read_input_tokens", 0)),
    )
    return PriceTable().cost(model, raw)[0]


def figures(name: str, status: str, records: Sequence[Recorded], firsts: dict[int, str]) -> Half:
    """Sum the answered requests; ``firsts`` maps request index -> stage it opens."""
    half = Half(name, status)
    by_stage: dict[str, StageFigures] = {}
    for index, rec in enumerate(records):
        if rec.usage is None or rec.reply is None:
            continue
        u = rec.usage
        half.requests += 1
        half.input_tokens += int(u.get("input_tokens", 0))
        half.cache_read_tokens += int(u.get("cache_read_input_tokens", 0))
        half.cache_write_tokens += int(u.get("cache_creation_input_tokens", 0))
        half.output_tokens += int(u.get("output_tokens", 0))
        half.cost_usd += _price(str(rec.reply.get("model")), u)
        stage = stage_info(rec.body).stage
        fig = by_stage.setdefault(stage, StageFigures(stage))
        fig.requests += 1
        fig.prompt_tokens += rec.prompt_tokens
        if firsts.get(index) == stage and not fig.first_request_tokens:
            fig.first_request_tokens = rec.prompt_tokens
    half.cost_usd = round(half.cost_usd, 6)
    half.stages = list(by_stage.values())
    return half


# -- the stageflow half --------------------------------------------------------------------


def _stageflow_cli(args: list[str], env: dict[str, str], project: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "stageflow", *args, "--project", str(project), "--json"]
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False
    )
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise RuntimeError(
            f"`stageflow {' '.join(args)}` exited {done.returncode}: {done.stderr[-2000:]}"
        )
    view: dict[str, Any] = json.loads(done.stdout)
    return view


def run_stageflow(project: Path, home: Path, api: StandIn) -> Half:
    """``stageflow run`` + ``stageflow approve`` at each gate, against the stand-in."""
    env = {
        **os.environ,
        "STAGEFLOW_RUNNER": "anthropic",
        "ANTHROPIC_API_KEY": "test",
        "ANTHROPIC_BASE_URL": api.base_url,
        "STAGEFLOW_HOME": str(home),
    }
    for var in ("STAGEFLOW_DB", "STAGEFLOW_PROJECT", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE"):
        env.pop(var, None)
    view = _stageflow_cli(["run", TEMPLATE, "--task", TASK], env, project)
    run_id = str(view["run_id"])
    for _ in range(10):  # two gates in feature_development; reworks are not expected
        if view["status"] not in ("running", "waiting"):
            break
        view = _stageflow_cli(["approve", run_id], env, project)
    records = api.message_requests()
    firsts = {i: r.stage or "" for i, r in enumerate(records) if len(r.body["messages"]) == 1}
    half = figures("stageflow", str(view["status"]), records, firsts)
    ledger = view.get("usage") or {}
    ledger_prompt = sum(
        int(ledger.get(k, 0)) for k in ("input_tokens", "cache_read_tokens", "cache_write_tokens")
    )
    agree = "matches" if ledger_prompt == half.prompt_tokens else "DIFFERS from"
    half.notes.append(
        f"run {run_id}: stageflow's own ledger says {ledger_prompt} prompt tokens, "
        f"${float(ledger.get('cost_usd', 0.0)):.4f} ({agree} the stand-in's count)"
    )
    return half


# -- the baseline half ---------------------------------------------------------------------


def _stage_order(spec: Any) -> list[Any]:
    """Agent stages in dependency order (template order among ready stages)."""
    done: set[str] = set()
    order: list[Any] = []
    stages = [s for s in spec.stages if s.agent]
    while len(order) < len(stages):
        ready = [s for s in stages if s.id not in done and set(s.depends_on) <= done]
        if not ready:
            raise RuntimeError("the template's stages do not form a DAG")
        order.append(ready[0])
        done.add(ready[0].id)
    return order


def stage_turn(stage: Any, agent: Any, brief: str, *, roles: bool) -> str:
    """The baseline's user turn for one stage: the stage's brief, upstream artifacts by name."""
    head = f"Now do the next stage, `{stage.id}`, as the {agent.name}: {agent.description}"
    parts = [head]
    if roles:
        parts.append("## Instructions for this role\n" + agent.system_prompt.strip())
    parts.append(brief)
    parts += [
        f"## Upstream artifact `{need}` (submitted earlier in this conversation)"
        for need in stage.needs
    ]
    return "\n\n".join(parts)


async def _baseline(
    project: Path, home: Path, api: StandIn, *, roles: bool, config: AgentConfig
) -> Half:
    from anthropic import AsyncAnthropic

    from stageflow.agents.registry import load_agents
    from stageflow.config import load_settings
    from stageflow.engine.runner import AttemptRequest
    from stageflow.errors import ToolError
    from stageflow.subagents.context import ProjectFileSource, build_context
    from stageflow.subagents.options import load_runner_options
    from stageflow.subagents.routing import load_routes
    from stageflow.subagents.submit import SUBMIT_TOOL, Submission, check_submission
    from stageflow.subagents.tool_loop import build_tools
    from stageflow.subagents.workspace import Workspace
    from stageflow.subagents.workspace_tools import (
        TOOL_NAMES,
        call_workspace_tool,
        normalize_tool_names,
    )
    from stageflow.subagents.worktree import prepare_workspace
    from stageflow.workflows.catalog import load_catalog

    settings = replace(load_settings(project, runner="anthropic"), home=home)
    agents = load_agents(settings.agent_dirs())
    spec = load_catalog(settings.template_dirs(), agent_names=agents.names()).get(TEMPLATE)
    inputs = spec.resolve_inputs({"task": TASK})
    options = load_runner_options(settings)
    model = load_routes(settings).resolve(None)
    ws = prepare_workspace(project, BASELINE_RUN)
    workspace = Workspace(ws.root, writable=True)
    order = _stage_order(spec)

    # one session, one tool list: the union of the stages' tools (same definitions)
    allowed = {
        s.id: normalize_tool_names(agents.get(s.agent).tools, bash_allowed=False) for s in order
    }
    union = [n for n in TOOL_NAMES if any(n in names for names in allowed.values())]
    tools: Any = build_tools(union, (), ())
    agent = StageAgent(config)

    def same_work(body: dict[str, Any]) -> Any:
        # the agent of each stage uses only its own tools, as in the stageflow half
        names = {*allowed.get(stage_info(body).stage, union), SUBMIT_TOOL}
        return agent.turn({**body, "tools": [t for t in body["tools"] if t["name"] in names]})

    api.respond = same_work
    system: Any = [
        {"type": "text", "text": BASELINE_SYSTEM, "cache_control": {"type": "ephemeral"}}
    ]
    client = AsyncAnthropic(api_key="test", base_url=api.base_url, max_retries=0, timeout=60)
    messages: list[Any] = []
    carried: list[dict[str, Any]] = []  # the accepted submit_result's tool result
    firsts: dict[int, str] = {}
    status = "completed"
    try:
        for stage in order:
            definition = agents.get(stage.agent)
            request = AttemptRequest(
                run_id=BASELINE_RUN,
                stage=stage,
                attempt=1,
                task=TASK,
                inputs=inputs,
                agent=definition,
                workdir=ws.root,
            )
            context = build_context(
                request,
                finish="tool",
                sources=[ProjectFileSource(project)],
                budget_tokens=options.context_tokens,
            )
            text = stage_turn(stage, definition, context.brief, roles=roles)
            messages.append({"role": "user", "content": [*carried, {"type": "text", "text": text}]})
            firsts[len(api.message_requests())] = stage.id
            submission: Any = None
            for _ in range(options.max_turns):
                reply = await client.messages.create(
                    model=model,
                    max_tokens=options.max_tokens,
                    system=system,
                    tools=tools,
                    messages=messages,
                    cache_control={"type": "ephemeral"},
                )
                content = [b.model_dump(mode="json", exclude_none=True) for b in reply.content]
                messages.append({"role": "assistant", "content": content})
                results = []
                for use in (b for b in content if b["type"] == "tool_use"):
                    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": use["id"]}
                    if use["name"] == SUBMIT_TOOL:
                        checked = check_submission(use["input"], stage.produces)
                        if isinstance(checked, Submission):
                            submission = checked
                            result["content"] = "accepted"
                        else:
                            result.update(content=checked, is_error=True)
                    else:
                        try:
                            result["content"] = await call_workspace_tool(
                                workspace, use["name"], use["input"]
                            )
                        except ToolError as exc:
                            result.update(content=str(exc), is_error=True)
                    results.append(result)
                if submission is not None:
                    carried = results
                    break
                if not results:
                    raise RuntimeError(f"baseline stage {stage.id}: the agent stopped")
                messages.append({"role": "user", "content": results})
            else:
                status = "failed"
                break
    finally:
        await client.close()
    return figures("baseline", status, api.message_requests(), firsts)


def run_baseline(
    project: Path,
    home: Path,
    api: StandIn,
    *,
    roles: bool = False,
    config: AgentConfig | None = None,
) -> Half:
    """The single-session baseline (see the module docstring)."""
    import anyio

    return anyio.run(
        lambda: _baseline(project, home, api, roles=roles, config=config or AgentConfig())
    )


# -- report --------------------------------------------------------------------------------


def compare(stageflow: Half, baseline: Half) -> dict[str, Any]:
    ratio = stageflow.prompt_tokens / baseline.prompt_tokens if baseline.prompt_tokens else 0.0
    cost = stageflow.cost_usd / baseline.cost_usd if baseline.cost_usd else 0.0
    return {
        "template": TEMPLATE,
        "stageflow": stageflow.as_dict(),
        "baseline": baseline.as_dict(),
        "ratio": round(ratio, 4),
        "cost_ratio": round(cost, 4),
        "target": TARGET,
        "meets_target": ratio <= TARGET,
    }


def render(result: dict[str, Any], out: TextIO) -> None:
    sf, bl = result["stageflow"], result["baseline"]
    out.write(f"token economy: {result['template']} through the Messages API stand-in\n\n")
    head = f"{'':<10} {'status':<10} {'requests':>8} {'prompt tok':>11} {'input':>8} "
    head += f"{'cache rd':>9} {'cache wr':>9} {'rd share':>8} {'output':>7} {'cost $':>8}\n"
    out.write(head)
    for h in (sf, bl):
        out.write(
            f"{h['name']:<10} {h['status']:<10} {h['requests']:>8} {h['prompt_tokens']:>11} "
            f"{h['input_tokens']:>8} {h['cache_read_tokens']:>9} {h['cache_write_tokens']:>9} "
            f"{h['cache_read_share']:>8.1%} {h['output_tokens']:>7} {h['cost_usd']:>8.4f}\n"
        )
    out.write("\nper stage: requests / first-request prompt tokens / all prompt tokens\n")
    base = {s["stage"]: s for s in bl["stages"]}
    for s in sf["stages"]:
        b = base.get(s["stage"], {"requests": 0, "first_request_tokens": 0, "prompt_tokens": 0})
        out.write(
            f"  {s['stage']:<15} stageflow {s['requests']:>2} / {s['first_request_tokens']:>6} / "
            f"{s['prompt_tokens']:>7}    baseline {b['requests']:>2} / "
            f"{b['first_request_tokens']:>6} / {b['prompt_tokens']:>7}\n"
        )
    for note in [*sf["notes"], *bl["notes"]]:
        out.write(f"note: {note}\n")
    verdict = "meets" if result["meets_target"] else "MISSES"
    out.write(
        f"\nstageflow/baseline prompt tokens = {result['ratio']:.3f} "
        f"({verdict} the target <= {result['target']:.2f}); "
        f"cost ratio {result['cost_ratio']:.3f}\n"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary projects")
    p.add_argument(
        "--roles",
        action="store_true",
        help="baseline: also put each agent's instructions into its stage turn",
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


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> dict[str, Any]:
    """Run both halves in a temporary directory; print and return the figures."""
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
            baseline = run_baseline(project, home, api, roles=args.roles, config=config)
        result = compare(stageflow, baseline)
        if args.keep:
            result["workdir"] = str(work)
        if args.json:
            out.write(json.dumps(result, indent=2) + "\n")
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
