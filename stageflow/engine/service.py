"""``Service``: the operations users perform on runs, shared by the CLI and the MCP tools.

Commands (approve, cancel, pause, resume, retry) are optimistic: fold the log, check the command
against the state, append with ``expect_seq``; if another process appended first, fold again and
re-check. So two people approving one gate at once get exactly one recorded decision, and the
other a clear error naming the stage's new state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from stageflow import events as ev
from stageflow.agents.definition import AgentDefinition
from stageflow.agents.registry import AgentRegistry, load_agents
from stageflow.config import Settings
from stageflow.engine.adjust import Adjustment, adjustment_events
from stageflow.engine.catalog_view import TemplatesResult, catalog_view
from stageflow.engine.costs import ledger_choice
from stageflow.engine.decisions import HUMAN_VIAS, Decision, Via, decision_events
from stageflow.engine.driver import summarize
from stageflow.engine.forecasts import (
    Estimator,
    RunForecast,
    confirm_threshold,
    confirmation_decided,
    needs_confirmation,
)
from stageflow.engine.gitops import GitLanes
from stageflow.engine.land import Lander, LandStrategy
from stageflow.engine.metering import ledger_usage
from stageflow.engine.run_start import estimate_run, forecast_or_none, prepare_run
from stageflow.engine.state import RunState, fold, initial_state, preview
from stageflow.engine.views import (
    RunListItem,
    RunView,
    WorkspaceView,
    build_view,
    with_live_spend,
)
from stageflow.errors import (
    ConcurrencyConflict,
    CorruptLog,
    InvalidArgument,
    InvalidState,
    NotFound,
)
from stageflow.ids import new_run_id
from stageflow.store.store import Store
from stageflow.usage import Usage
from stageflow.workflows.catalog import TemplateCatalog, load_catalog

if TYPE_CHECKING:
    from stageflow.agents.live import LiveDefinitions

# (run_id, ended) -> the run's workspace, with its diff once ended; wired in by the front ends
WorkspaceProbe = Callable[[str, bool], Awaitable[WorkspaceView | None]]
ControlAction = Literal["cancel", "pause", "resume", "retry"]
PREVIEW_CHARS = 240


@dataclass(frozen=True)
class AuditReport:
    run_id: str
    events: list[ev.Envelope]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


class Service:
    """Run operations for one project."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        runner_label: str = "offline",
        clock: Callable[[], float] = time.time,
        workspace_probe: WorkspaceProbe | None = None,
        definitions: LiveDefinitions | None = None,
        estimator: Estimator | None = None,
        lanes: GitLanes | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.runner_label = runner_label
        self.clock = clock
        self.workspace_probe = workspace_probe
        self.estimator = estimator  # the cost forecast of a run before it starts
        # kept current by the file watcher; without it every call reads the folders
        self.definitions = definitions
        self.lander = Lander(store, lanes, clock=clock) if lanes is not None else None

    # -- definitions -------------------------------------------------------------------------

    def _definitions(self) -> tuple[AgentRegistry, TemplateCatalog]:
        """Agents and the templates validated against them, of one moment."""
        if self.definitions is not None:
            snap = self.definitions.snapshot
            return snap.agents, snap.catalog
        agents = self.agents()
        return agents, self.templates(agents)

    def template_descriptions(self) -> dict[str, str]:
        """Templates that load, name -> description (``template="auto"`` chooses among them)."""
        entries = self._definitions()[1].entries.items()
        return {n: e.spec.description for n, e in entries if e.spec is not None and not e.problems}

    def agents(self) -> AgentRegistry:
        if self.definitions is not None:
            return self.definitions.agents
        return load_agents(self.settings.agent_dirs())

    def templates(self, agents: AgentRegistry | None = None) -> TemplateCatalog:
        """The templates; with live definitions, their catalog (validated against their own
        agents, so ``agents`` is not needed)."""
        if self.definitions is not None:
            return self.definitions.catalog
        agents = agents or self.agents()
        return load_catalog(self.settings.template_dirs(), agent_names=agents.names())

    def catalog(self) -> TemplatesResult:
        """The catalog read model (what ``workflow_templates`` and ``templates --json`` show)."""
        agents, templates = self._definitions()
        return catalog_view(agents, templates, self.runner_label)

    # -- runs --------------------------------------------------------------------------------

    async def estimate(
        self, template: str, task: str, *, inputs: dict[str, Any] | None = None
    ) -> RunForecast:
        """The cost forecast of a run of ``template`` for ``task``, without starting it
        (``InvalidState`` when this process has no estimator)."""
        return await estimate_run(self.estimator, *self._definitions(), template, task, inputs)

    async def start_run(
        self,
        template: str,
        task: str,
        *,
        inputs: dict[str, Any] | None = None,
        budget_usd: float | None = None,
        actor: str = "cli",
        chosen: dict[str, Any] | None = None,
    ) -> RunState:
        """Validate and record a new run, with its cost forecast; it does not execute anything
        (above ``[budget] confirm_above_usd``, or with no forecast to compare, it waits for a
        person's confirmation: ``decide``). ``chosen``: how ``template="auto"`` picked
        ``template`` (recorded on ``run_created``)."""
        if budget_usd is not None and budget_usd < 0:
            raise InvalidArgument(f"budget_usd must be >= 0, got {budget_usd}")
        threshold = confirm_threshold(self.settings)  # a bad [budget] fails before anything
        spec, text, resolved, used = prepare_run(*self._definitions(), template, task, inputs)
        forecast = await forecast_or_none(self.estimator, spec, text, used, resolved)
        confirm = needs_confirmation(forecast, threshold)
        created = ev.RunCreated(
            template=spec.name,
            task=text,
            inputs=resolved,
            spec=spec.model_dump(mode="json"),
            agents={name: agent.model_dump(mode="json") for name, agent in used.items()},
            budget_usd=budget_usd if budget_usd is not None else spec.limits.budget_usd,
            runner=self.runner_label,
            workdir=str(self.settings.project),
            chosen=chosen,
            forecast=forecast.model_dump(mode="json") if forecast is not None else None,
            confirm_above_usd=threshold if confirm else None,
        )
        run_id = new_run_id()
        now = self.clock()
        env = ev.seal(run_id, 1, now, actor, created, ev.GENESIS_HASH)
        state = initial_state(run_id, env)
        await self.store.create_run(run_id, created, actor=actor, at=now, summary=summarize(state))
        if chosen:  # what the choice cost, in the ledger's orchestration category
            await ledger_choice(self.store, run_id, chosen, now)
        return state

    async def state(self, run_id: str) -> RunState:
        return fold(await self.store.load_events(run_id))

    async def view(self, run_id: str) -> RunView:
        state = await self.state(run_id)
        # the first 2*PREVIEW_CHARS+1 characters of each artifact decide its preview exactly
        heads = await self.store.artifact_heads(run_id, 2 * PREVIEW_CHARS + 1)
        previews: dict[tuple[str, str], str] = {}
        for sid, st in state.stages.items():
            for name, ref in st.artifacts.items():
                head = heads.get((sid, name, ref.version), "")
                cut = len(head) > 2 * PREVIEW_CHARS
                if cut and len(head.strip()) <= PREVIEW_CHARS:  # mostly blank: read it all (rare)
                    rec = await self.store.get_artifact(run_id, sid, name, ref.version)
                    head, cut = rec.content, False
                text = head.lstrip() if cut else head.strip()
                more = cut or len(text) > PREVIEW_CHARS
                previews[(sid, name)] = text[:PREVIEW_CHARS] + ("..." if more else "")
        view = with_live_spend(build_view(state, previews), await self._live_spend(state))
        if self.workspace_probe is not None:
            ended = state.ended is not None
            view.workspace = await self.workspace_probe(run_id, ended)
        return view

    async def _live_spend(self, state: RunState) -> dict[str, Usage]:
        """What each running attempt has spent so far, by stage (its ledger rows; a request
        in flight counts its reservation)."""
        running = state.running()
        if not running:
            return {}
        rows = await self.store.ledger.list(state.run_id)
        live: dict[str, Usage] = {}
        for sid in running:
            attempt = state.stages[sid].attempt
            mine = [r for r in rows if r.stage == sid and r.attempt == attempt]
            if mine:
                live[sid] = ledger_usage(mine)
        return live

    async def list_runs(self, limit: int = 20) -> list[RunListItem]:
        rows = await self.store.list_runs(limit=limit)
        return [
            RunListItem(
                run_id=r.run_id,
                template=r.template,
                task=r.task,
                status=r.status,
                created_at=r.created_at,
                updated_at=r.updated_at,
                spent_usd=r.spent_usd,
            )
            for r in rows
        ]

    async def _command(
        self, run_id: str, decide: Callable[[RunState], Sequence[ev.Event]], actor: str
    ) -> RunState:
        for _ in range(20):
            state = await self.state(run_id)
            events = list(decide(state))
            after = preview(state, events)
            try:
                await self.store.append(
                    run_id,
                    events,
                    expect_seq=state.seq,
                    actor=actor,
                    at=self.clock(),
                    summary=summarize(after),
                )
            except ConcurrencyConflict:
                continue  # someone else wrote first: re-read and re-check
            return await self.state(run_id)
        raise InvalidState(f"run {run_id} is changing too fast to apply the command; try again")

    async def decide(
        self,
        run_id: str,
        *,
        stage: str | None,
        decision: Decision,
        feedback: str | None = None,
        approver: str = "human",
        attempt: int | None = None,
        via: Via = "tool",
    ) -> RunState:
        """Approve or reject the stage waiting for a human (approval or gate).

        An approval is bound to the attempt the reviewer read (``attempt``): a decision naming
        another attempt than the one waiting is refused, saying what changed. Without one it
        applies only when the stage has been put up for approval once, so a decision meant
        for an earlier version never lands on a new one nobody has read.

        ``via`` says how the decision arrived; a stage with ``approval: {by: human}`` takes it
        only from a person (``HUMAN_VIAS``), never from the assistant's tool call. Named
        ``approvers`` and ``min_approvals`` distinct approvals are enforced here."""
        if decision == "reject" and not (feedback and feedback.strip()):
            raise InvalidArgument("a rejection needs feedback: say what must change")
        if attempt is not None and attempt < 1:
            raise InvalidArgument(f"attempt must be >= 1, got {attempt}")
        if via == "elicitation" and not stage:
            raise InvalidArgument("a person's answer must name the stage it decides")

        def build(state: RunState) -> list[ev.Event]:
            _not_ended(state)
            if state.confirmation == "pending":  # before anything else, the cost forecast
                args = (run_id, stage, decision, feedback, approver, via, via in HUMAN_VIAS)
                return [confirmation_decided(*args)]
            return decision_events(
                state,
                stage=stage,
                decision=decision,
                feedback=feedback,
                approver=approver,
                attempt=attempt,
                via=via,
            )

        return await self._command(run_id, build, approver)

    async def control(
        self,
        run_id: str,
        action: ControlAction,
        *,
        stage: str | None = None,
        reason: str | None = None,
        budget_usd: float | None = None,
        actor: str = "human",
        via: Via = "tool",
    ) -> RunState:
        """cancel | pause | resume | retry a run (retry may name a stage).

        Letting a run spend more is a person's decision: a resume that sets ``budget_usd``, or
        resumes a run stopped at a run or stage cap (which opens the stage's cap again), is
        refused unless ``via`` is a person's channel (``HUMAN_VIAS``)."""
        if budget_usd is not None and not (math.isfinite(budget_usd) and budget_usd >= 0):
            raise InvalidArgument(f"budget_usd must be a number >= 0, got {budget_usd}")

        def build(state: RunState) -> list[ev.Event]:
            if stage is not None and stage not in state.stages:
                raise NotFound("stage", stage, known=list(state.stages))
            if action == "cancel":
                _not_ended(state)
                return [ev.RunCancelled(reason=reason or "cancelled by user", by=actor)]
            if action == "pause":
                _not_ended(state)
                if state.paused:
                    raise InvalidState(f"run {run_id} is already paused")
                return [ev.RunPaused(reason=reason or "paused by user", by=actor)]
            if action == "resume":
                _not_ended(state)
                if not state.paused:
                    raise InvalidState(f"run {run_id} is not paused (it is {state.status})")
                if via not in HUMAN_VIAS and (state.budget_paused or budget_usd is not None):
                    what = "stopped at a budget cap" if state.budget_paused else "has a cap"
                    raise InvalidState(
                        f"run {run_id} {what}; only a person may let it spend more: ask the "
                        f"user to run `stageflow resume {run_id} --budget <USD>`, or to "
                        "confirm when their client asks them"
                    )
                if (
                    state.budget_paused
                    and budget_usd is None
                    and state.budget_usd is not None
                    and state.spent_usd >= state.budget_usd
                ):
                    raise InvalidArgument(
                        f"run {run_id} stopped at its budget (${state.spent_usd:.4f} of "
                        f"${state.budget_usd:.2f}); resume with a higher budget_usd"
                    )
                return [ev.RunResumed(by=actor, budget_usd=budget_usd, reason=reason)]
            return _retry_events(state, stage, actor, reason)

        return await self._command(run_id, build, actor)

    async def land(
        self,
        run_id: str,
        *,
        strategy: LandStrategy = "squash",
        into: str | None = None,
        actor: str = "human",
        via: Via = "cli",
    ) -> RunState:
        """Bring a completed run's branch into the user's branch (``engine.land``); only a
        person does (``via`` cli, dashboard or elicitation): a model's land is refused."""
        if self.lander is None:
            raise InvalidState("this stageflow process cannot land runs: it has no git lanes")
        return await self.lander.land(
            run_id, strategy=strategy, into=into, actor=actor, person=via in HUMAN_VIAS
        )

    async def adjust(
        self, run_id: str, adjustment: Adjustment, *, actor: str = "human"
    ) -> RunState:
        """Apply a run-time adjustment (add or skip a stage, raise the concurrency, escalate a
        blocked stage), checked against the run's current DAG (see ``engine.adjust``)."""
        registry = self.agents()

        def lookup(name: str) -> AgentDefinition | None:
            return registry.get(name) if name in registry.names() else None

        def build(state: RunState) -> list[ev.Event]:
            return adjustment_events(
                state, adjustment, by=actor, agents=lookup, known_agents=registry.names()
            )

        return await self._command(run_id, build, actor)

    async def audit(self, run_id: str) -> AuditReport:
        """Recompute the hash chain and check the head recorded with the run."""
        try:
            envs = await self.store.load_events(run_id)
        except CorruptLog as exc:
            return AuditReport(run_id=run_id, events=[], problems=[str(exc)])
        problems = ev.verify_chain(envs)
        row = await self.store.get_run(run_id)
        if envs and row.head_hash != envs[-1].hash:
            problems.append(
                f"the run's recorded head hash does not match entry {envs[-1].seq} "
                "(entries missing from the end?)"
            )
        if envs and row.last_seq != envs[-1].seq:
            problems.append(f"the run records {row.last_seq} entries but {envs[-1].seq} remain")
        return AuditReport(run_id=run_id, events=envs, problems=problems)


def _not_ended(state: RunState) -> None:
    if state.ended is not None:
        raise InvalidState(f"run {state.run_id} has already ended ({state.ended})")


def _retry_events(
    state: RunState, stage: str | None, actor: str, reason: str | None
) -> list[ev.Event]:
    if state.ended == "cancelled":
        raise InvalidState(f"run {state.run_id} was cancelled; start a new run instead")
    if state.ended == "completed":
        raise InvalidState(f"run {state.run_id} has completed; nothing to retry")
    retryable = ("failed", "cancelled", "retry_wait", "attempt_failed")
    if stage is not None:
        st = state.stages[stage]
        if st.status not in retryable:
            raise InvalidState(
                f"stage '{stage}' cannot be retried (it is {st.status}); "
                "only failed, cancelled or backing-off stages can"
            )
        return [ev.StageRetryRequested(stage=stage, by=actor, reason=reason)]
    targets = [
        sid
        for sid, st in state.stages.items()
        if st.status in retryable and not (st.status == "failed" and st.tolerated)
    ]
    if not targets:
        raise InvalidState(
            f"run {state.run_id} has no failed stage to retry (run is {state.status})"
        )
    return [ev.StageRetryRequested(stage=t, by=actor, reason=reason) for t in targets]
