"""What an attempt starts with (its ``attempt_started`` record and the runner's request), and
the artifact versions it ends with.

``AttemptInputs`` picks the agent definition each new attempt uses (the live provider's, or the
run's own), records it on ``attempt_started`` when it changed, and builds the
``AttemptRequest`` with only the ``needs`` artifacts, reading artifact texts from the driver's
cache or the store. When the stage leaves a choice (candidate agents, ``model: auto``), the
chooser (``stageflow.engine.choice``) decides here and the decision goes on the record; the
request then carries the chosen agent and model.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Mapping

from stageflow import events as ev
from stageflow.agents.definition import AgentDefinition
from stageflow.engine.choice import (
    AttemptChoice,
    ChoiceContext,
    Chooser,
    default_choice,
    leaves_choice,
)
from stageflow.engine.gitplan import lane_for, verify_for
from stageflow.engine.gitstate import CONFLICT_ARTIFACT
from stageflow.engine.metering import RunMeters
from stageflow.engine.planner import StartAttempt
from stageflow.engine.plans import needed_refs, plan_limits
from stageflow.engine.runner import (
    AttemptMeter,
    AttemptRequest,
    AttemptResult,
    InputArtifact,
    StageJournal,
    undeclared_artifacts,
)
from stageflow.engine.state import AttemptInfo, RunState, StageState
from stageflow.store.rows import NewArtifact
from stageflow.store.store import Store
from stageflow.workflows.spec import StageSpec

__all__ = ["AgentProvider", "AttemptInputs", "Chooser", "estimate_tokens", "new_versions"]

log = logging.getLogger(__name__)

# name -> the agent's current definition (hot reload), or None to keep the run's own
AgentProvider = Callable[[str], AgentDefinition | None]


def estimate_tokens(chars: int) -> int:
    """A rough token estimate (4 characters per token) for context accounting."""
    return math.ceil(chars / 4)


class AttemptInputs:
    """Per run: the definition each attempt started with, and artifact texts seen."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        agents: AgentProvider | None,
        owner: str,
        chooser: Chooser | None = None,
        meters: RunMeters | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.agents = agents
        self.owner = owner
        self.chooser = chooser
        self.meters = meters  # the run's attempts in flight: their live spend
        self._artifacts: dict[tuple[str, str, int], str] = {}
        # the definition each attempt started with: later starts may record newer ones
        self._agents_by_attempt: dict[tuple[str, int], AgentDefinition | None] = {}

    def remember(self, stage: str, name: str, version: int, content: str) -> None:
        """An artifact this process just committed (stages started now read it)."""
        self._artifacts[(stage, name, version)] = content

    def agent_of(self, st: RunState, start: StartAttempt) -> AgentDefinition | None:
        """The definition the attempt started with; else the run's own (None: a command)."""
        key = (start.stage, start.attempt)
        if key in self._agents_by_attempt:
            return self._agents_by_attempt[key]
        info = _attempt_info(st, start)
        name = info.agent if info is not None and info.agent else st.stage_spec(start.stage).agent
        return st.agents.get(name) if name else None

    async def prepare(self, st: RunState) -> None:
        """Let the chooser refresh what it knows, when this run has stages that leave one
        (other runs pay nothing). A failing chooser costs the run its learning, not its
        progress: attempts then start on the defaults."""
        if self.chooser is None or not any(
            leaves_choice(s, st.agents) for s in st.spec.stages if s.kind == "agent"
        ):
            return
        try:
            await self.chooser.prepare()
        except Exception:
            log.warning("run %s: the chooser could not refresh", st.run_id, exc_info=True)

    def _choice(self, st: RunState, start: StartAttempt) -> AttemptChoice | None:
        """The chooser's decision for a stage that leaves a choice (None: nothing to choose)."""
        spec = st.stage_spec(start.stage)
        if not leaves_choice(spec, st.agents):
            return None
        candidates = {
            name: agent for name in spec.agents if (agent := self._agent_for(st, name)) is not None
        }
        if not candidates:
            return None
        ctx = ChoiceContext(
            state=st,
            stage=spec,
            start=start,
            candidates=candidates,
            remaining_usd=self._remaining(st, spec.budget_usd, start.stage),
        )
        if self.chooser is None:
            return default_choice(ctx)
        try:
            choice = self.chooser.choose(ctx)
        except Exception:  # a chooser bug must not stop the run: start on the defaults
            log.exception("run %s stage %s: the chooser failed", st.run_id, start.stage)
            return default_choice(ctx)
        if choice.agent not in candidates:
            log.error("run %s: the chooser picked %r, not a candidate", st.run_id, choice.agent)
            return default_choice(ctx)
        return choice

    def _remaining(self, st: RunState, stage_cap: float | None, stage: str) -> float | None:
        """What the run's and the stage's caps still allow, live spend counted."""
        left: float | None = None
        if st.budget_usd is not None:
            held = self.meters.held_usd() if self.meters is not None else 0.0
            left = st.budget_usd - st.spent_usd - held
        if stage_cap is not None:
            ss = st.stages[stage]
            stage_left = stage_cap - ss.capped_usd
            left = stage_left if left is None else min(left, stage_left)
        return None if left is None else max(0.0, left)

    def forget(self, start: StartAttempt) -> None:
        self._agents_by_attempt.pop((start.stage, start.attempt), None)

    def _agent_for(self, st: RunState, name: str | None) -> AgentDefinition | None:
        """The definition a new attempt uses: the provider's current one when it has the
        agent, else the run's own (the snapshot, or what the last attempt recorded)."""
        if name is None:
            return None
        own = st.agents.get(name)
        if self.agents is None:
            return own
        try:
            current = self.agents(name)
        except Exception:  # a broken provider must not stop the run: keep the run's own
            log.exception("run %s: agent provider failed for %s", st.run_id, name)
            return own
        return current if current is not None else own

    def started_event(self, st: RunState, start: StartAttempt) -> ev.AttemptStarted:
        """The ``attempt_started`` record: who runs it, with which model, and what went in.

        When the agent's definition differs from the run's current one (it was edited since),
        the record carries it, so folding the log reproduces what every attempt used.
        """
        spec = st.stage_spec(start.stage)
        choice = self._choice(st, start)
        name = choice.agent if choice is not None else spec.agent
        agent = self._agent_for(st, name)
        own = st.agents.get(name) if name else None
        newer = agent is not None and (own is None or own.content_hash != agent.content_hash)
        self._agents_by_attempt[(start.stage, start.attempt)] = agent
        context = {
            "needs": [
                {
                    "stage": s,
                    "name": a,
                    "version": ref.version,
                    "size": ref.size,
                    "tokens_est": estimate_tokens(ref.size),
                }
                for s, a in needed_refs(st, start.stage)
                if (ref := st.stages[s].artifacts.get(a)) is not None
            ],
            "feedback_chars": len(start.feedback or ""),
            "previous": [
                {"name": n, "version": r.version, "size": r.size}
                for n, r in st.stages[start.stage].artifacts.items()
            ]
            if start.kind == "rework"
            else [],
        }
        model = (
            choice.model if choice is not None else spec.model or (agent.model if agent else None)
        )
        return ev.AttemptStarted(
            stage=start.stage,
            attempt=start.attempt,
            kind=start.kind,
            agent=name,
            agent_hash=agent.content_hash if agent else None,
            model=model,
            owner=self.owner,
            context=context,
            agent_def=agent.model_dump(mode="json") if newer and agent is not None else None,
            choice=choice.record if choice is not None else None,
        )

    async def _artifact(self, stage: str, name: str, version: int) -> str:
        """Artifact text: from memory when this driver wrote it, else from the store."""
        key = (stage, name, version)
        cached = self._artifacts.get(key)
        if cached is None:
            cached = (await self.store.get_artifact(self.run_id, *key)).content
            self._artifacts[key] = cached
        return cached

    async def request(
        self,
        st: RunState,
        start: StartAttempt,
        meter: AttemptMeter,
        journal: StageJournal | None = None,
    ) -> AttemptRequest:
        """The runner's request: only the ``needs`` artifacts (and on a rework the feedback
        and the stage's previous artifacts), the agent the attempt started with."""
        spec = st.stage_spec(start.stage)
        agent = self.agent_of(st, start)
        info = _attempt_info(st, start)
        if info is not None and info.choice is not None:
            # the chosen model goes to the runner as the stage's: it wins over the agent's
            spec = spec.model_copy(update={"model": info.model_requested})
        needed: list[InputArtifact] = []
        for s, a in needed_refs(st, start.stage):
            ref = st.stages[s].artifacts.get(a)
            if ref is None:
                continue
            content = await self._artifact(s, a, ref.version)
            needed.append(InputArtifact(stage=s, name=a, version=ref.version, content=content))
        lane = lane_for(st, start.stage)
        report = st.stages[start.stage].artifacts.get(CONFLICT_ARTIFACT)
        if lane is not None and lane.kind == "resolve" and report is not None:
            content = await self._artifact(start.stage, report.name, report.version)
            needed.append(
                InputArtifact(
                    stage=start.stage, name=report.name, version=report.version, content=content
                )  # the conflict it resolves
            )
        verify = verify_for(st, start.stage, start.kind)
        previous: list[InputArtifact] = []
        if start.kind == "rework":
            for name, ref in st.stages[start.stage].artifacts.items():
                content = await self._artifact(start.stage, name, ref.version)
                previous.append(
                    InputArtifact(
                        stage=start.stage, name=name, version=ref.version, content=content
                    )
                )
        return AttemptRequest(
            run_id=st.run_id,
            stage=spec,
            attempt=start.attempt,
            kind=start.kind,
            task=st.task,
            inputs=st.inputs,
            agent=agent,
            model=spec.model or (agent.model if agent else None),
            artifacts=needed,
            previous=previous,
            feedback=start.feedback,
            workdir=st.workdir,
            budget_remaining_usd=meter.remaining_usd(),
            timeout=spec.timeout,
            bash_allow=[*st.spec.bash, *spec.bash],
            workspace_mode=st.spec.workspace,
            lane=lane,
            verify=verify[0] if verify else None,
            merged=verify[1] if verify else [],
            plan_limits=plan_limits(st, start.stage),
            meter=meter,
            journal=journal or StageJournal(),
            panel={n: st.agents[n] for n in spec.agent_names() if n in st.agents}
            if spec.debate is not None
            else {},
        )


def _attempt_info(st: RunState, start: StartAttempt) -> AttemptInfo | None:
    """The logged attempt ``start`` refers to, once its ``attempt_started`` is folded in."""
    for info in reversed(st.stages[start.stage].attempts):
        if info.number == start.attempt:
            return info
    return None


def new_versions(
    stage: StageState, start: StartAttempt, artifacts: Mapping[str, str]
) -> tuple[list[ev.ArtifactRef], list[NewArtifact]]:
    """The log's references and the store's rows for an attempt's artifacts: each name's next
    version after the stage's latest."""
    refs: list[ev.ArtifactRef] = []
    new: list[NewArtifact] = []
    for name, content in artifacts.items():
        prev = stage.artifacts.get(name)
        version = (prev.version + 1) if prev else 1
        data = content.encode("utf-8")
        refs.append(
            ev.ArtifactRef(
                name=name, version=version, size=len(data), sha256=hashlib.sha256(data).hexdigest()
            )
        )
        new.append(
            NewArtifact(
                stage=start.stage,
                name=name,
                version=version,
                content=content,
                attempt=start.attempt,
            )
        )
    return refs, new


def checked_artifacts(
    spec: StageSpec, outcome: ev.AttemptOutcome, result: AttemptResult | None, error: str | None
) -> tuple[ev.AttemptOutcome, str | None, dict[str, str]]:
    """What the engine keeps of a result's artifacts, whatever the runner checked: a finished
    stage without a required artifact fails, and artifacts an agent stage does not declare
    fail it too (unless ``produces_extra``; a command stage's ``output`` is the template's
    own); the declared ones are kept either way."""
    artifacts = dict(result.artifacts) if result is not None else {}
    if result is None:
        return outcome, error, artifacts
    if (spec.agent or spec.debate is not None) and not spec.produces_extra:
        extra = sorted(set(artifacts) - set(spec.produces))
        if extra:
            artifacts = {k: v for k, v in artifacts.items() if k in spec.produces}
            return "failed", undeclared_artifacts(extra, spec.produces), artifacts
    if outcome in ("passed", "changes_requested"):
        missing = [p for p in spec.produces if not artifacts.get(p)]
        if missing:
            return (
                "failed",
                f"stage finished without its required artifact(s): {', '.join(missing)}",
                artifacts,
            )
    return outcome, error, artifacts
