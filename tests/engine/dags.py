"""Random workflow DAGs for property tests: a hypothesis strategy, the expected outcome of each
DAG (which stages skip, how often each runs), and a runner that records every call's time span.

A ``DagPlan`` is the whole scenario of one example: the template (stages, edges only from earlier
to later stages, retry policies, ``when`` conditions, the run's concurrency limit), the
scheduler's process-wide limit, and the script (failures and duration per stage). Some examples
also plan at run time: a ``planner`` stage returns random work items (edges to earlier items,
files from a small pool so that some overlap, failures, durations), the ``work`` stage expands
into one sub-stage per item (``work.i0``, ...), and a ``finish`` stage waits for them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.lowlevel
import yaml
from hypothesis import strategies as st

from stageflow.engine.runner import AttemptRequest, AttemptResult
from tests.engine.harness import Behaviour, default_result

TEMPLATE = "dag"
TASK = "build it"
FALSE_WHEN = "inputs.task == 'never'"  # reads a real input, and is false for TASK
RENDEZVOUS_WAIT = 2.0  # seconds; only reached when the scheduler fails to run roots together

When = Literal["none", "false", "dep_ok"]


@dataclass(frozen=True)
class StagePlan:
    """One stage of a generated DAG and its script."""

    id: str
    deps: tuple[str, ...] = ()
    when: When = "none"  # "dep_ok": run only if deps[0] succeeded (false when it was skipped)
    max_attempts: int | None = None  # None: the default policy (fail on the first failure)
    failures: int = 0  # scripted failed attempts before the one that passes
    duration: float = 0.0  # seconds each attempt takes

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "agent": "worker", "produces": ["out"]}
        if self.deps:
            out["depends_on"] = list(self.deps)
        if self.when == "false":
            out["when"] = FALSE_WHEN
        elif self.when == "dep_ok":
            out["when"] = f"{self.deps[0]}.status == 'succeeded'"
        if self.max_attempts is not None:
            out["on_failure"] = {"retry": {"max_attempts": self.max_attempts, "backoff": 0}}
        return out


FILES = ("a.py", "b.py", "src/", "src/c.py", "src/*.md", "docs/d.md")
PLANNER, WORK, FINISH = "planner", "work", "finish"
ITEM_RETRIES = 3  # the work stage's retry policy: max_attempts


@dataclass(frozen=True)
class ItemPlan:
    """One work item of a generated plan and its script."""

    id: str
    deps: tuple[str, ...] = ()  # earlier items' ids
    files: tuple[str, ...] = ()
    failures: int = 0
    duration: float = 0.0

    @property
    def stage_id(self) -> str:
        return f"{WORK}.{self.id}"

    def as_plan_item(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": f"item {self.id}",
            "depends_on": list(self.deps),
            "files": list(self.files),
        }


@dataclass(frozen=True)
class DagPlan:
    """A generated scenario: template, limits and script."""

    stages: tuple[StagePlan, ...]
    run_limit: int  # the template's limits.max_concurrent_agents
    global_limit: int  # the Scheduler's max_concurrent_agents
    items: tuple[ItemPlan, ...] = ()  # a plan at run time when not empty
    planner_deps: tuple[str, ...] = ()

    @property
    def limit(self) -> int:
        return min(self.run_limit, self.global_limit)

    def stage(self, sid: str) -> StagePlan:
        return next(s for s in self.stages if s.id == sid)

    def item(self, sid: str) -> ItemPlan | None:
        return next((i for i in self.items if i.stage_id == sid), None)

    def deps_of(self, sid: str) -> tuple[str, ...]:
        """What ``sid`` waits for, as stages that have attempts (``work`` = all its items)."""
        found = self.item(sid)
        if found is not None:
            return (PLANNER, *(f"{WORK}.{d}" for d in found.deps))
        if sid == PLANNER:
            return self.planner_deps
        if sid == FINISH:
            return tuple(i.stage_id for i in self.items)
        return self.stage(sid).deps

    def plan_stages(self) -> list[dict[str, Any]]:
        if not self.items:
            return []
        planner: dict[str, Any] = {"id": PLANNER, "agent": "worker", "plan": {"max_items": 8}}
        if self.planner_deps:
            planner["depends_on"] = list(self.planner_deps)
        return [
            planner,
            {
                "id": WORK,
                "agent": "worker",
                "for_each": PLANNER,
                "depends_on": [PLANNER],
                "produces": ["out"],
                "on_failure": {"retry": {"max_attempts": ITEM_RETRIES, "backoff": 0}},
            },
            {"id": FINISH, "agent": "worker", "depends_on": [WORK], "needs": [f"{WORK}.out"]},
        ]

    def template(self) -> dict[str, Any]:
        return {
            "name": TEMPLATE,
            "limits": {"max_concurrent_agents": self.run_limit},
            "stages": [s.spec() for s in self.stages] + self.plan_stages(),
        }

    def yaml(self) -> str:
        return yaml.safe_dump(self.template(), sort_keys=False)

    def skipped(self) -> set[str]:
        """Stages the planner must skip: a false ``when``, or every upstream stage skipped."""
        out: set[str] = set()
        for s in self.stages:  # stages are in topological order by construction
            upstream_all_skipped = bool(s.deps) and all(d in out for d in s.deps)
            when_false = s.when == "false" or (s.when == "dep_ok" and s.deps[0] in out)
            if upstream_all_skipped or when_false:
                out.add(s.id)
        return out

    def all_skipped(self) -> set[str]:
        """``skipped`` plus the plan's stages when the planner is skipped."""
        out = self.skipped()
        if self.items and not self.planned():
            out |= {PLANNER, WORK, FINISH}
        return out

    def all_stages(self) -> list[str]:
        """Every stage id the run has once planned (items included), in run order."""
        out = [s.id for s in self.stages]
        if self.items:
            out += [PLANNER, WORK]
            if self.planned():
                out += [i.stage_id for i in self.items]
            out.append(FINISH)
        return out

    def planned(self) -> bool:
        """A plan is made at run time (the planner does not skip)."""
        skipped = self.skipped()
        return bool(self.items) and not (
            self.planner_deps and all(d in skipped for d in self.planner_deps)
        )

    def expected_calls(self, sid: str) -> int:
        found = self.item(sid)
        if found is not None:
            return found.failures + 1 if self.planned() else 0
        if sid in (PLANNER, FINISH):
            return 1 if self.planned() else 0
        return 0 if sid in self.skipped() else self.stage(sid).failures + 1

    def live_roots(self) -> list[str]:
        """Root stages that run, in template order (the order the planner starts them)."""
        skipped = self.skipped()
        return [s.id for s in self.stages if not s.deps and s.id not in skipped]

    def rendezvous(self) -> tuple[str, str] | None:
        """Two roots the scheduler must run at the same time, if the limits allow it."""
        roots = self.live_roots()
        if len(roots) >= 2 and self.limit >= 2:
            return roots[0], roots[1]
        return None


@st.composite
def stage_plans(draw: st.DrawFn, index: int) -> StagePlan:
    """Stage ``s<index>``, depending only on stages with a lower index (so the graph is a DAG)."""
    sid = f"s{index}"
    deps: tuple[str, ...] = ()
    if index and not draw(st.sampled_from([False, False, True])):  # a third are roots
        picked = draw(st.lists(st.integers(0, index - 1), unique=True, min_size=1, max_size=3))
        deps = tuple(f"s{i}" for i in sorted(picked))
    when: When = draw(st.sampled_from(["none", "none", "none", "false", "dep_ok"]))
    if when == "dep_ok" and not deps:
        when = "none"
    max_attempts = draw(st.one_of(st.none(), st.integers(2, 3)))
    failures = draw(st.integers(0, max_attempts - 1)) if max_attempts else 0
    duration = draw(st.sampled_from([0.0, 0.001, 0.003, 0.01, 0.02]))
    return StagePlan(sid, deps, when, max_attempts, failures, duration)


@st.composite
def item_plans(draw: st.DrawFn, index: int) -> ItemPlan:
    """Item ``i<index>``, depending only on items with a lower index."""
    deps: tuple[str, ...] = ()
    if index and draw(st.booleans()):
        picked = draw(st.lists(st.integers(0, index - 1), unique=True, min_size=1, max_size=2))
        deps = tuple(f"i{i}" for i in sorted(picked))
    files = tuple(draw(st.lists(st.sampled_from(FILES), unique=True, max_size=2)))
    failures = draw(st.sampled_from([0, 0, 0, 1, 2]))
    duration = draw(st.sampled_from([0.0, 0.002, 0.01, 0.02]))
    return ItemPlan(f"i{index}", deps, files, failures, duration)


@st.composite
def dag_plans(draw: st.DrawFn, max_stages: int = 12) -> DagPlan:
    """A random DAG of 1..``max_stages`` stages with random limits (1-4) and scripts; in
    about half the examples, also a plan of 1-6 random items made at run time."""
    n = draw(st.integers(1, max_stages))
    stages = tuple(draw(stage_plans(i)) for i in range(n))
    # sampled_from rather than integers(1, 4): hypothesis favours the bounds of integer ranges,
    # and with two limits drawn the effective one came out as 1 in two examples of three
    run_limit = draw(st.sampled_from([2, 3, 4, 1]))
    global_limit = draw(st.sampled_from([4, 3, 2, 1]))
    items: tuple[ItemPlan, ...] = ()
    planner_deps: tuple[str, ...] = ()
    if draw(st.booleans()):
        items = tuple(draw(item_plans(i)) for i in range(draw(st.integers(1, 6))))
        picked = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=2))
        planner_deps = tuple(f"s{i}" for i in sorted(picked))
    return DagPlan(stages, run_limit, global_limit, items, planner_deps)


@dataclass(frozen=True)
class Call:
    """One runner call as the runner saw it (times from the monotonic event-loop clock)."""

    stage: str
    attempt: int
    start: float
    end: float


@dataclass
class Recorder:
    """Per-stage behaviours for ``FakeRunner`` that follow a ``DagPlan``'s script and record
    every call. The first attempt of the first rendezvous root waits (bounded) until the second
    root has started, so the two really overlap if, and only if, the scheduler runs them together.
    """

    plan: DagPlan
    calls: list[Call] = field(default_factory=list)
    rendezvous_met: bool | None = None  # None: the plan has no rendezvous
    _started: dict[str, anyio.Event] = field(default_factory=dict)

    def behaviours(self) -> dict[str, Behaviour]:
        self._started = {s.id: anyio.Event() for s in self.plan.stages}
        out = {s.id: self._behaviour(s) for s in self.plan.stages}
        if self.plan.items:
            out[PLANNER] = self._planner
            out[FINISH] = self._item(ItemPlan(FINISH))
            out.update({i.stage_id: self._item(i) for i in self.plan.items})
        return out

    async def _planner(self, req: AttemptRequest) -> AttemptResult:
        start = anyio.current_time()
        await anyio.lowlevel.checkpoint()
        self.calls.append(Call(req.stage.id, req.attempt, start, anyio.current_time()))
        plan = {"items": [i.as_plan_item() for i in self.plan.items]}
        return default_result(req, plan=plan)

    def _item(self, item: ItemPlan) -> Behaviour:
        async def run(req: AttemptRequest) -> AttemptResult:
            start = anyio.current_time()
            if item.duration:
                await anyio.sleep(item.duration)
            else:
                await anyio.lowlevel.checkpoint()
            self.calls.append(Call(req.stage.id, req.attempt, start, anyio.current_time()))
            if req.attempt <= item.failures:
                return AttemptResult(
                    status="failed", summary="scripted", error="scripted failure", runner="fake"
                )
            return default_result(req)

        return run

    def _behaviour(self, stage: StagePlan) -> Behaviour:
        pair = self.plan.rendezvous()

        async def run(req: AttemptRequest) -> AttemptResult:
            start = anyio.current_time()
            self._started[stage.id].set()
            if pair is not None and stage.id == pair[0] and req.attempt == 1:
                with anyio.move_on_after(RENDEZVOUS_WAIT):
                    await self._started[pair[1]].wait()
                self.rendezvous_met = self._started[pair[1]].is_set()
            if stage.duration:
                await anyio.sleep(stage.duration)  # simulated work, so that spans overlap
            else:
                await anyio.lowlevel.checkpoint()
            self.calls.append(Call(stage.id, req.attempt, start, anyio.current_time()))
            if req.attempt <= stage.failures:
                return AttemptResult(
                    status="failed",
                    summary=f"scripted failure {req.attempt} of {stage.failures}",
                    error="scripted failure",
                    runner="fake",
                )
            return default_result(req)

        return run


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The largest number of spans open at one instant; touching spans do not overlap."""
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    open_now = peak = 0
    for _, delta in points:  # at equal times -1 sorts first: an end frees its slot before a start
        open_now += delta
        peak = max(peak, open_now)
    return peak
