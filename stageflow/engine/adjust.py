"""Run-time adjustments (``workflow_adjust``, ``stageflow adjust``), checked against the run's
current DAG. Pure: ``adjustment_events`` turns a request into the ``run_adjusted`` event or
raises an error naming what is valid.

- ``add_stage``: a new agent stage after ``depends_on``, optionally ``before`` stages that
  have not started (they wait for it); its ``needs`` must be upstream artifacts; no cycles;
- ``skip_stage``: a pending stage marked ``optional: true`` (or added at run time);
- ``set_concurrency``: raise ``max_concurrent_agents`` for this run (up to 64);
- ``escalate``: hand a stage blocked by a false gate to a decision agent. Approvals and
  escalations that reached a human stay a human's: they cannot be escalated to a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from stageflow import events as ev
from stageflow.agents.definition import AgentDefinition
from stageflow.engine.records import RunState
from stageflow.errors import InvalidArgument, InvalidState, NotFound
from stageflow.workflows.spec import IDENT, StageSpec

AdjustAction = Literal["add_stage", "skip_stage", "set_concurrency", "escalate"]
ACTIONS: tuple[AdjustAction, ...] = ("add_stage", "skip_stage", "set_concurrency", "escalate")
DEFAULT_DECIDER = "decision-maker"
MAX_CONCURRENCY = 64
MAX_ID = 64  # characters of a stage id added at run time
MAX_DESCRIPTION = 4000
MAX_REASON = 500
MAX_PRODUCES = 20
_ARTIFACT = IDENT

AgentLookup = Callable[[str], AgentDefinition | None]


@dataclass(frozen=True)
class Adjustment:
    """One requested adjustment; which fields apply depends on ``action``."""

    action: AdjustAction
    stage: str | None = None
    agent: str | None = None  # add_stage: who runs it; escalate: the decision agent
    depends_on: Sequence[str] = ()
    needs: Sequence[str] = ()
    produces: Sequence[str] = ()
    before: Sequence[str] = ()
    description: str = ""
    max_concurrent_agents: int | None = None
    reason: str | None = None


def adjustment_events(
    state: RunState, adj: Adjustment, *, by: str, agents: AgentLookup, known_agents: Sequence[str]
) -> list[ev.Event]:
    """The event recording ``adj``; raises ``InvalidArgument``, ``InvalidState`` or
    ``NotFound`` (with the known names) when it does not fit the run as it is now."""
    if state.ended is not None:
        raise InvalidState(f"run {state.run_id} has ended ({state.ended}); nothing to adjust")
    if adj.reason is not None and len(adj.reason) > MAX_REASON:
        raise InvalidArgument(
            f"reason is {len(adj.reason)} characters; at most {MAX_REASON} (it goes in the log)"
        )
    if adj.action == "set_concurrency":
        return [_concurrency(state, adj, by)]
    if not adj.stage:
        raise InvalidArgument(f"{adj.action} needs a stage")
    if adj.action == "add_stage":
        return [_add(state, adj, by, agents, known_agents)]
    if adj.stage not in state.stages:
        raise NotFound("stage", adj.stage, known=list(state.stages))
    if adj.action == "skip_stage":
        return [_skip(state, adj, by)]
    if adj.action == "escalate":
        return [_escalate(state, adj, by, agents, known_agents)]
    raise InvalidArgument(f"unknown action {adj.action!r}; use one of {', '.join(ACTIONS)}")


def _concurrency(state: RunState, adj: Adjustment, by: str) -> ev.RunAdjusted:
    n = adj.max_concurrent_agents
    now = state.max_concurrent_agents
    if n is None or not now < n <= MAX_CONCURRENCY:
        raise InvalidArgument(
            f"max_concurrent_agents must raise the run's limit of {now}: give a number from "
            f"{now + 1} to {MAX_CONCURRENCY}" + (f" (got {n})" if n is not None else "")
        )
    return ev.RunAdjusted(
        action="set_concurrency", max_concurrent_agents=n, reason=adj.reason, by=by
    )


def _skip(state: RunState, adj: Adjustment, by: str) -> ev.RunAdjusted:
    assert adj.stage is not None
    st = state.stages[adj.stage]
    if not state.stage_spec(adj.stage).optional:
        optional = [s for s in state.stages if state.stage_spec(s).optional]
        raise InvalidState(
            f"stage '{adj.stage}' is not optional: only stages marked `optional: true` or added "
            f"at run time can be skipped (optional here: {', '.join(optional) or 'none'})"
        )
    if st.status != "pending":
        raise InvalidState(f"stage '{adj.stage}' is {st.status}; only a pending stage is skipped")
    return ev.RunAdjusted(action="skip_stage", stage=adj.stage, reason=adj.reason, by=by)


def _agent(
    name: str, state: RunState, agents: AgentLookup, known: Sequence[str]
) -> AgentDefinition | None:
    """None when the run has the agent already; its definition when it is new to the run."""
    if name in state.agents:
        return None
    found = agents(name)
    if found is None:
        raise NotFound("agent", name, known=sorted({*known, *state.agents}))
    return found


def _escalate(
    state: RunState, adj: Adjustment, by: str, agents: AgentLookup, known: Sequence[str]
) -> ev.RunAdjusted:
    assert adj.stage is not None
    st = state.stages[adj.stage]
    if st.status == "awaiting_approval":
        raise InvalidState(
            f"stage '{adj.stage}' waits for a human approval; only a human decides it "
            "(workflow_approve)"
        )
    if st.status == "blocked" and st.escalation is not None:
        raise InvalidState(
            f"stage '{adj.stage}' was escalated to a human ({st.escalation.reason}); only a "
            "human decision passes it (workflow_approve)"
        )
    if st.status != "blocked":
        blocked = [s for s, x in state.stages.items() if x.status == "blocked" and not x.escalation]
        raise InvalidState(
            f"stage '{adj.stage}' is {st.status}; only a stage blocked by a false gate can be "
            f"escalated (blocked now: {', '.join(blocked) or 'none'})"
        )
    esc = state.stage_spec(adj.stage).escalate
    name = adj.agent or (esc.agent if esc is not None and esc.agent else DEFAULT_DECIDER)
    new = _agent(name, state, agents, known)
    return ev.RunAdjusted(
        action="escalate",
        stage=adj.stage,
        to=name,
        agent_def=new.model_dump(mode="json") if new is not None else None,
        reason=adj.reason,
        by=by,
    )


def _upstream(state: RunState, roots: Sequence[str]) -> dict[str, str | None]:
    """Every stage reachable from ``roots`` through depends_on -> the stage it was reached from."""
    seen: dict[str, str | None] = dict.fromkeys(roots)
    todo = list(roots)
    while todo:
        cur = todo.pop()
        for dep in state.stage_spec(cur).depends_on:
            if dep not in seen:
                seen[dep] = cur
                todo.append(dep)
    return seen


def _add(
    state: RunState, adj: Adjustment, by: str, agents: AgentLookup, known: Sequence[str]
) -> ev.RunAdjusted:
    sid = adj.stage
    assert sid is not None
    if len(sid) > MAX_ID or not IDENT.fullmatch(sid):
        shown = sid if len(sid) <= MAX_ID else sid[: MAX_ID - 3] + "..."
        raise InvalidArgument(
            f"stage id {shown!r} must start with a letter or _ and contain only letters, digits "
            f"and _ (at most {MAX_ID} characters)"
        )
    if sid in state.stages:
        raise InvalidArgument(f"stage '{sid}' already exists; choose another id")
    if not adj.agent:
        raise InvalidArgument("add_stage needs an agent (stages added at run time run an agent)")
    new_agent = _agent(adj.agent, state, agents, known)
    rollback = state.spec.rollback_targets()
    for dep in (*adj.depends_on, *adj.before):
        if dep not in state.stages:
            raise NotFound("stage", dep, known=list(state.stages))
        if dep in rollback:
            raise InvalidArgument(f"'{dep}' is a rollback stage; nothing may depend on it")
    for later in adj.before:
        st = state.stages[later]
        if st.status != "pending" or st.attempts:
            raise InvalidState(
                f"stage '{later}' has already started ({st.status}); a new stage can only go "
                "before stages that have not started"
            )
    reached = _upstream(state, list(adj.depends_on))
    for later in adj.before:
        if later in reached:  # later is upstream of a dependency: later -> new -> dep -> later
            path = [later]
            while reached[path[-1]] is not None:
                path.append(str(reached[path[-1]]))
            chain = " -> ".join([later, sid, *reversed(path)])
            raise InvalidArgument(
                f"adding '{sid}' after {', '.join(adj.depends_on)} and before '{later}' makes a "
                f"dependency cycle: {chain} (read '->' as 'waits for')"
            )
    for item in adj.needs:
        src, _, name = item.partition(".")
        if src not in reached or not name:
            raise InvalidArgument(
                f"needs '{item}' must be <stage>.<artifact> of an upstream stage; upstream: "
                f"{', '.join(reached) or 'none (give depends_on)'}"
            )
        produces = state.stage_spec(src).produces
        if name not in produces:
            raise InvalidArgument(
                f"needs '{item}': stage '{src}' produces {', '.join(produces) or 'nothing'}"
            )
    bad = [p for p in adj.produces if len(p) > MAX_ID or not _ARTIFACT.fullmatch(p)]
    if bad:
        shown = ", ".join(repr(b if len(b) <= MAX_ID else b[: MAX_ID - 3] + "...") for b in bad[:5])
        raise InvalidArgument(f"artifact names must be short identifiers, got {shown}")
    if len(set(adj.produces)) > MAX_PRODUCES:
        raise InvalidArgument(f"a stage produces at most {MAX_PRODUCES} artifacts")
    if len(adj.description) > MAX_DESCRIPTION:
        raise InvalidArgument(
            f"description is {len(adj.description)} characters; at most {MAX_DESCRIPTION}"
        )
    spec = StageSpec(
        id=sid,
        agent=adj.agent,
        description=adj.description.strip() or f"Added at run time by {by}: {adj.reason or ''}",
        depends_on=list(dict.fromkeys(adj.depends_on)),
        needs=list(dict.fromkeys(adj.needs)),
        produces=list(dict.fromkeys(adj.produces)),
        optional=True,
    )
    return ev.RunAdjusted(
        action="add_stage",
        stage=sid,
        spec=spec.model_dump(mode="json", exclude_defaults=True),
        before=list(dict.fromkeys(adj.before)),
        agent_def=new_agent.model_dump(mode="json") if new_agent is not None else None,
        reason=adj.reason,
        by=by,
    )
