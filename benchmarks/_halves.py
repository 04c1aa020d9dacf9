"""The halves of the token-economy benchmark (see ``token_economy.py``), each counted the same way.

- ``figures``: sums the stand-in's records of answered requests into a ``Half``;
- ``run_stageflow``: the stageflow CLI with the anthropic runner;
- ``run_baseline``: the lean single conversation, driven here through the ``anthropic`` client;
- ``run_claude_code``: one real Claude Code session, a ``claude -p --resume`` turn per stage.

Both sessions get the stage turns ``stage_turns`` builds from stageflow's own context builder,
and the stand-in hook ``same_work`` keeps the scripted agent to each stage's own tools.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._claude_cli import clean_env, session_turn, version
from tests.standin import AgentConfig, StageAgent, StandIn, prompt_blocks, stage_info
from tests.standin.project import TASK
from tests.standin.server import Recorded

if TYPE_CHECKING:
    from stageflow.subagents.context import FinishMode

TEMPLATE = "feature_development"
# same shape as a stageflow run id: the same workspace path length in every half
LEAN_RUN = "r-baseline0-0000"
CLAUDE_RUN = "r-claudecod-0000"
LEAN_SYSTEM = (
    "You are a senior software engineer working in the user's repository. The user takes you "
    "through a feature in stages (design, implementation, testing, review, deployment); do "
    "each stage as asked, using the workspace tools, and finish each stage by calling "
    "submit_result with its artifacts."
)
CLI_TIMEOUT = 300.0
SKIPPED = "skipped: "

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
    status: str  # completed, failed or skipped
    requests: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    standing_tokens: int = 0  # tools + system prompt, mean per request
    cost_usd: float = 0.0
    models: dict[str, int] = field(default_factory=dict)  # answered model -> requests
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
    from stageflow.models.client import RawUsage
    from stageflow.models.pricing import PriceTable

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
    standing = 0
    for index, rec in enumerate(records):
        if rec.usage is None or rec.reply is None:
            continue
        u = rec.usage
        half.requests += 1
        half.input_tokens += int(u.get("input_tokens", 0))
        half.cache_read_tokens += int(u.get("cache_read_input_tokens", 0))
        half.cache_write_tokens += int(u.get("cache_creation_input_tokens", 0))
        half.output_tokens += int(u.get("output_tokens", 0))
        model = str(rec.reply.get("model"))
        half.cost_usd += _price(model, u)
        half.models[model] = half.models.get(model, 0) + 1
        standing += sum(
            b.tokens for b in prompt_blocks(rec.body) if not b.where.startswith("messages")
        )
        stage = stage_info(rec.body).stage
        fig = by_stage.setdefault(stage, StageFigures(stage))
        fig.requests += 1
        fig.prompt_tokens += rec.prompt_tokens
        if firsts.get(index) == stage and not fig.first_request_tokens:
            fig.first_request_tokens = rec.prompt_tokens
    half.cost_usd = round(half.cost_usd, 6)
    half.standing_tokens = round(standing / half.requests) if half.requests else 0
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


# -- what both sessions share --------------------------------------------------------------


@dataclass
class Plan:
    """The template's agent stages in dependency order, their agents, tools and the model."""

    project: Path
    agents: Any
    order: list[Any]
    inputs: dict[str, Any]
    options: Any
    model: str
    allowed: dict[str, list[str]]  # stage id -> its agent's tool names
    union: list[str]


def load_plan(project: Path, home: Path) -> Plan:
    """Read the template, agents, runner options and default model as stageflow would."""
    from stageflow.agents.registry import load_agents
    from stageflow.config import load_settings
    from stageflow.models.routing import load_routes
    from stageflow.subagents.options import load_runner_options
    from stageflow.workflows.catalog import load_catalog
    from stageflow.workspace.tools import TOOL_NAMES, normalize_tool_names

    settings = replace(load_settings(project, runner="anthropic"), home=home)
    agents = load_agents(settings.agent_dirs())
    spec = load_catalog(settings.template_dirs(), agent_names=agents.names()).get(TEMPLATE)
    done: set[str] = set()
    order: list[Any] = []
    stages = [s for s in spec.stages if s.agent]
    while len(order) < len(stages):  # template order among ready stages
        ready = [s for s in stages if s.id not in done and set(s.depends_on) <= done]
        if not ready:
            raise RuntimeError("the template's stages do not form a DAG")
        order.append(ready[0])
        done.add(ready[0].id)
    allowed = {
        s.id: normalize_tool_names(agents.get(s.agent).tools, bash_allowed=False) for s in order
    }
    return Plan(
        project=project,
        agents=agents,
        order=order,
        inputs=spec.resolve_inputs({"task": TASK}),
        options=load_runner_options(settings),
        model=load_routes(settings).resolve(None),
        allowed=allowed,
        union=[n for n in TOOL_NAMES if any(n in names for names in allowed.values())],
    )


def stage_turn(stage: Any, agent: Any, brief: str, *, roles: bool) -> str:
    """A session's user turn for one stage: the stage's brief, upstream artifacts by name."""
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


async def stage_turns(
    plan: Plan, run_id: str, workdir: Path, *, finish: FinishMode, roles: bool
) -> list[tuple[Any, str]]:
    """(stage, user turn) for every stage, briefs built by stageflow's context builder."""
    from stageflow.engine.runner import AttemptRequest
    from stageflow.subagents.context import ProjectFileSource, build_context, collect_sections

    turns = []
    for stage in plan.order:
        agent = plan.agents.get(stage.agent)
        request = AttemptRequest(
            run_id=run_id,
            stage=stage,
            attempt=1,
            task=TASK,
            inputs=plan.inputs,
            agent=agent,
            workdir=workdir,
        )
        budget = plan.options.context_tokens
        sections = await collect_sections([ProjectFileSource(plan.project)], request, budget)
        context = build_context(request, finish=finish, sections=sections, budget_tokens=budget)
        turns.append((stage, stage_turn(stage, agent, context.brief, roles=roles)))
    return turns


def same_work(agent: StageAgent, plan: Plan) -> Callable[[dict[str, Any]], Any]:
    """The stand-in hook: each stage's agent sees only its own tools (+ submit_result), as in
    the stageflow half, whatever else the session offers."""
    from stageflow.subagents.submit import SUBMIT_TOOL

    def respond(body: dict[str, Any]) -> Any:
        names = {*plan.allowed.get(stage_info(body).stage, plan.union), SUBMIT_TOOL}
        tools = [t for t in body.get("tools") or [] if t.get("name") in names]
        return agent.turn({**body, "tools": tools})

    return respond


# -- the lean single conversation ------------------------------------------------------------


async def _lean(project: Path, api: StandIn, plan: Plan, *, roles: bool) -> Half:
    from anthropic import AsyncAnthropic

    from stageflow.errors import ToolError
    from stageflow.subagents.submit import SUBMIT_TOOL, Submission, check_submission
    from stageflow.subagents.tool_loop import build_tools
    from stageflow.workspace.root import Workspace
    from stageflow.workspace.tools import call_workspace_tool
    from stageflow.workspace.worktree import prepare_workspace

    ws = prepare_workspace(project, LEAN_RUN)
    workspace = Workspace(ws.root, writable=True)
    turns = await stage_turns(plan, LEAN_RUN, ws.root, finish="tool", roles=roles)
    tools: Any = build_tools(plan.union, (), ())  # one session, one tool list
    system: Any = [{"type": "text", "text": LEAN_SYSTEM, "cache_control": {"type": "ephemeral"}}]
    client = AsyncAnthropic(api_key="test", base_url=api.base_url, max_retries=0, timeout=60)
    messages: list[Any] = []
    carried: list[dict[str, Any]] = []  # the accepted submit_result's tool result
    firsts: dict[int, str] = {}
    status = "completed"
    try:
        for stage, text in turns:
            messages.append({"role": "user", "content": [*carried, {"type": "text", "text": text}]})
            firsts[len(api.message_requests())] = stage.id
            submission: Any = None
            for _ in range(plan.options.max_turns):
                reply = await client.messages.create(
                    model=plan.model,
                    max_tokens=plan.options.max_tokens,
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
                    raise RuntimeError(f"lean session, stage {stage.id}: the agent stopped")
                messages.append({"role": "user", "content": results})
            else:
                status = "failed"
                break
    finally:
        await client.close()
    return figures("lean", status, api.message_requests(), firsts)


def run_baseline(
    project: Path,
    home: Path,
    api: StandIn,
    *,
    roles: bool = False,
    config: AgentConfig | None = None,
) -> Half:
    """The lean single conversation (see the module docstring)."""
    import anyio

    plan = load_plan(project, home)
    api.respond = same_work(StageAgent(config or AgentConfig()), plan)
    return anyio.run(lambda: _lean(project, api, plan, roles=roles))


# -- the Claude Code session -----------------------------------------------------------------


def skipped(name: str, why: str) -> Half:
    """A half that did not run, and why."""
    return Half(name, "skipped", notes=[SKIPPED + why])


def run_claude_code(
    project: Path,
    home: Path,
    api: StandIn,
    claude: Path,
    *,
    roles: bool = False,
    config: AgentConfig | None = None,
) -> Half:
    """The stages as successive turns of one real Claude Code session (``--resume``)."""
    import anyio

    from stageflow.subagents.claude_code.result import parse_final_answer
    from stageflow.workspace.worktree import prepare_workspace

    plan = load_plan(project, home)
    ws = prepare_workspace(project, CLAUDE_RUN)
    turns = anyio.run(lambda: stage_turns(plan, CLAUDE_RUN, ws.root, finish="json", roles=roles))
    api.respond = same_work(StageAgent(config or AgentConfig()), plan)
    cc_home = home / "claude-code"  # the session is kept here between turns
    cc_home.mkdir(parents=True, exist_ok=True)
    env = clean_env(api.base_url, cc_home)
    firsts: dict[int, str] = {}
    session: str | None = None
    status, problems = "completed", []
    reported_tokens, reported_cost = 0, 0.0
    for stage, text in turns:
        start = len(api.message_requests())
        try:
            turn = session_turn(
                claude,
                text,
                cwd=ws.root,
                env=env,
                model=plan.model,
                resume=session,
                max_turns=plan.options.max_turns,
            )
        except subprocess.TimeoutExpired as exc:
            status = "failed"
            problems.append(f"stage {stage.id}: claude timed out after {exc.timeout:.0f} s")
            break
        records = api.message_requests()
        opened = (i for i in range(start, len(records)) if records[i].stage == stage.id)
        first = next(opened, None)
        if first is not None:
            firsts[first] = stage.id
        result = turn.result or {}
        answer = parse_final_answer(str(result.get("result", "")), stage.produces)
        why = None
        if not turn.ok:
            why = f"claude exited {turn.returncode}: {result.get('subtype') or turn.stderr[-300:]}"
        elif answer.error or answer.status != "passed":
            why = f"its final answer did not pass: {answer.error or answer.status}"
        if why:
            status = "failed"
            problems.append(f"stage {stage.id}: {why}")
            break
        session = turn.session_id
        usage = result.get("usage") or {}
        reported_tokens += sum(
            int(usage.get(k, 0))
            for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
        )
        reported_cost += float(result.get("total_cost_usd") or 0.0)
    half = figures("claude-code", status, api.message_requests(), firsts)
    agree = "matches" if reported_tokens == half.prompt_tokens else "DIFFERS from"
    main_body = next((r.body for r in api.message_requests() if r.body.get("tools")), {})
    names = [str(t.get("name")) for t in main_body.get("tools") or []]
    mcp = sum(1 for n in names if n.startswith("mcp__"))
    release = (version(claude) or "?").split()[0]
    half.notes += [
        f"Claude Code {release} ({claude}), session {session}: its own result "
        f"JSON says {reported_tokens} prompt tokens, ${reported_cost:.4f} ({agree} the "
        "stand-in's count)",
        f"Claude Code offered {len(names)} tools ({mcp} from MCP)"
        + ("" if "Glob" in names else "; no Glob, so no listing turn per stage"),
        *problems,
    ]
    return half
