"""Lanes: which stages of a run write in a worktree of their own. Pure: no I/O.

A run in a git repository works on its *run branch* ``stageflow/<run>`` (the run's worktree).
A stage that writes (a command stage, or an agent with Write, Edit or Bash among its tools) and
that may run at the same time as another writing stage (neither is upstream of the other) is
*isolated*: it gets a worktree and branch of its own, ``stageflow/<run>--<stage>``, forked
from the run branch once its dependencies are in it. Every other stage (sequential writers and
read-only stages) works in the run's worktree. The decision depends only on the graph and the
agents' tools, so it is the same on every replay; rollback stages (run only on a failure, after
the rest was cancelled) are never isolated.

The plan is built over whatever stages the spec has, so stages added at run time (plan items
that become sub-stages, issue 12) are planned like written ones: call ``plan_lanes`` again on
the grown spec. Merge stages (``<source>.merge``, created for a conflict) are not part of the
plan: they work in a lane of their own, ``resolve``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from stageflow.agents.definition import AgentDefinition
from stageflow.workflows.graph import Upstream
from stageflow.workflows.spec import StageSpec, WorkflowSpec

__all__ = [
    "MERGE_SUFFIX",
    "Lane",
    "LaneKind",
    "LanePlan",
    "lane_branch",
    "lane_name",
    "merge_stage_id",
    "plan_lanes",
    "run_branch",
    "writes",
]

LaneKind = Literal["run", "stage", "resolve"]
MERGE_SUFFIX = ".merge"
# tool names (lower case, before any "(pattern)") that change files; Bash counts whatever its
# patterns, since config patterns are added later and a command can write anything
_WRITE_TOOLS = frozenset({"write", "edit", "multiedit", "notebookedit", "bash"})


class Lane(BaseModel):
    """Where one attempt works: the run's worktree, a stage's own, or a merge's."""

    model_config = ConfigDict(frozen=True)

    kind: LaneKind
    name: str  # the worktree's directory under .stageflow/worktrees
    branch: str
    fork_from: str | None = None  # stage lanes: the run branch they are forked from
    files: tuple[str, ...] = ()  # resolve lanes: the files left with conflict markers


def run_branch(run_id: str) -> str:
    """The run's branch: ``stageflow/<run>``."""
    return f"stageflow/{run_id}"


def lane_name(run_id: str, stage_id: str) -> str:
    """``<run>--<stage>`` (a ``.`` of a generated stage id becomes ``-``, which no written
    stage id contains, so names never collide). A stage id with capitals or over 64
    characters is lower-cased, cut and given a hash of itself: ``API`` and ``api`` would be one
    worktree and one branch on a case-insensitive file system, and long names overflow it."""
    part = stage_id.replace(".", "-")
    if part != part.lower() or len(part) > 64:
        digest = hashlib.sha256(stage_id.encode("utf-8")).hexdigest()[:10]
        part = f"{part.lower()[:48]}-{digest}"
    return f"{run_id}--{part}"


def lane_branch(run_id: str, stage_id: str) -> str:
    """The branch of a stage's own worktree: ``stageflow/<run>--<stage>``."""
    return f"stageflow/{lane_name(run_id, stage_id)}"


def merge_stage_id(source: str) -> str:
    """The id of the stage that resolves a conflict merging ``source``: ``<source>.merge``."""
    return source + MERGE_SUFFIX


def writes(stage: StageSpec, agent: AgentDefinition | None) -> bool:
    """Whether a stage may change files: command stages and agents with a writing tool (an
    empty ``tools`` list means every tool, as in Claude Code; an unknown agent counts too)."""
    if stage.run or agent is None:
        return True
    names = [t.strip().split("(", 1)[0].strip().lower() for t in agent.tools]
    names = [n for n in names if n]
    return not names or any(n in _WRITE_TOOLS for n in names)


def stage_writes(stage: StageSpec, agents: Mapping[str, AgentDefinition]) -> bool:
    """Whether the stage may change files: a command stage does, a debate never (its
    speakers get no workspace), an agent stage when any agent that may run it (each of
    ``agent: [a, b]``) has a writing tool."""
    if stage.debate is not None:
        return False
    if stage.run or not stage.agents:
        return True
    return any(writes(stage, agents.get(n)) for n in stage.agents)


@dataclass(frozen=True)
class LanePlan:
    """The lane of every planned stage, and the upstream relation joins need."""

    ids: tuple[str, ...]  # spec order
    index: Mapping[str, int]
    writers: frozenset[str]
    isolated: frozenset[str]
    upstream_bits: tuple[int, ...]  # per stage index: the stages upstream of it (a bitset)

    def upstream(self, stage_id: str) -> Iterator[str]:
        """The stages upstream of ``stage_id`` (through ``depends_on``), in spec order."""
        i = self.index.get(stage_id)
        if i is None:
            return
        bits = self.upstream_bits[i]
        while bits:
            low = bits & -bits
            yield self.ids[low.bit_length() - 1]
            bits ^= low


EMPTY_PLAN = LanePlan((), {}, frozenset(), frozenset(), ())


def plan_lanes(spec: WorkflowSpec, agents: Mapping[str, AgentDefinition]) -> LanePlan:
    """Which stages are isolated: writers that may run alongside another writer. Linear in
    the graph's size (bitsets over the strongly connected components, ``workflows.graph``)."""
    rollback = spec.rollback_targets()
    stages = [s for s in spec.stages if s.id not in rollback and not s.id.endswith(MERGE_SUFFIX)]
    index = {s.id: i for i, s in enumerate(stages)}
    edges = [[index[d] for d in s.depends_on if d in index] for s in stages]
    up = Upstream(edges, [True] * len(stages))
    ancestors = tuple(up.reach[up.comp_of[i]] & ~(1 << i) for i in range(len(stages)))
    descendants = [0] * len(stages)
    for i in sorted(range(len(stages)), key=lambda n: -up.comp_of[n]):  # downstream first
        for d in edges[i]:
            descendants[d] |= descendants[i] | (1 << i)
    writer_bits = 0
    writers: set[str] = set()
    for i, s in enumerate(stages):
        if stage_writes(s, agents):
            writer_bits |= 1 << i
            writers.add(s.id)
    # a for_each stage's items are run-time stages, not laned yet: they work in the run's
    # worktree, so the for_each stage counts as a writer there and is never isolated
    for i, s in enumerate(stages):
        if s.for_each:
            writer_bits |= 1 << i
            writers.add(s.id)
    isolated = frozenset(
        s.id
        for i, s in enumerate(stages)
        if s.id in writers
        and not s.for_each
        and writer_bits & ~(ancestors[i] | descendants[i] | (1 << i))
    )
    return LanePlan(
        ids=tuple(s.id for s in stages),
        index=index,
        writers=frozenset(writers),
        isolated=isolated,
        upstream_bits=ancestors,
    )
