"""Cross-stage checks of the run-time keys: ``plan``, ``for_each``, ``on_changes_requested``,
``escalate`` and ``files``. Called by ``validate.check_spec``; each finding is (stage index,
path under the stage, message), located by the caller."""

from __future__ import annotations

from collections.abc import Collection, Iterator

from stageflow.workflows.locations import DocPath, suggest
from stageflow.workflows.spec import StageSpec, WorkflowSpec

Finding = tuple[int, DocPath, str]


class _Graph:
    def __init__(self, spec: WorkflowSpec) -> None:
        self.index: dict[str, int] = {}
        for i, stage in enumerate(spec.stages):
            self.index.setdefault(stage.id, i)
        self.stages = spec.stages

    def stage(self, sid: str) -> StageSpec:
        return self.stages[self.index[sid]]

    def upstream(self, sid: str) -> set[str]:
        seen: set[str] = set()
        todo = [d for d in self.stage(sid).depends_on if d in self.index]
        while todo:
            cur = todo.pop()
            if cur not in seen:
                seen.add(cur)
                todo.extend(d for d in self.stage(cur).depends_on if d in self.index)
        return seen


def loop_problems(spec: WorkflowSpec, agent_names: Collection[str] | None) -> Iterator[Finding]:
    """Every problem of the run-time keys of ``spec``."""
    graph = _Graph(spec)
    agents = None if agent_names is None else set(agent_names)
    expanders: dict[str, list[str]] = {}
    for i, stage in enumerate(spec.stages):
        if stage.plan is not None:
            if stage.agent is None:
                yield i, ("plan",), "a plan stage needs an agent (a coordinator writes the plan)"
            for j, name in enumerate(stage.plan.agents):
                if agents is not None and name not in agents:
                    yield i, ("plan", "agents", j), _unknown_agent(name, agents)
        if stage.for_each is not None:
            expanders.setdefault(stage.for_each, []).append(stage.id)
            yield from _for_each(i, stage, graph)
        for j, path in enumerate(stage.files):
            norm = path.strip().replace("\\", "/")
            if not norm or norm.startswith(("/", "~")) or ".." in norm.split("/"):
                yield i, ("files", j), f"files entry {path!r} must be a path inside the project"
        if stage.on_changes_requested is not None:
            yield from _rework(i, stage, graph)
        if stage.escalate is not None:
            esc = stage.escalate
            if esc.agent is not None and agents is not None and esc.agent not in agents:
                yield i, ("escalate", "agent"), _unknown_agent(esc.agent, agents)
            if stage.gate is None and stage.on_changes_requested is None:
                yield (
                    i,
                    ("escalate",),
                    "escalate applies to a false gate or to used-up rework rounds; this stage "
                    "has neither a gate nor on_changes_requested",
                )
    for source, users in expanders.items():
        if len(users) > 1 and source in graph.index:
            for sid in users[1:]:
                yield (
                    graph.index[sid],
                    ("for_each",),
                    f"stage '{source}' is already expanded by '{users[0]}'; one for_each stage "
                    "per plan stage",
                )


def _unknown_agent(name: str, agents: set[str]) -> str:
    known = ", ".join(sorted(agents)) or "none"
    return f"unknown agent '{name}'{suggest(name, agents)}; known agents: {known}"


def _for_each(i: int, stage: StageSpec, graph: _Graph) -> Iterator[Finding]:
    source = stage.for_each
    assert source is not None
    sub = ("for_each",)
    if source not in graph.index:
        yield i, sub, f"for_each names unknown stage '{source}'{suggest(source, graph.index)}"
        return
    if graph.stage(source).plan is None:
        yield i, sub, f"for_each stage '{source}' is not a plan stage (it has no 'plan:')"
    if source not in graph.upstream(stage.id):
        yield i, sub, f"for_each stage '{source}' must be upstream (add it to depends_on)"
    if stage.agent is None:
        yield i, sub, "a for_each stage needs an agent: each item runs one"
    if stage.plan is not None:
        yield i, ("plan",), "a for_each stage cannot itself be a plan stage"
    if stage.on_changes_requested is not None:
        yield (
            i,
            ("on_changes_requested",),
            "items cannot send work back; put on_changes_requested on a later review stage",
        )
    if stage.files:
        yield i, ("files",), "files on a for_each stage: each item declares its own files"


def _rework(i: int, stage: StageSpec, graph: _Graph) -> Iterator[Finding]:
    rule = stage.on_changes_requested
    assert rule is not None
    if stage.agent is None and stage.approval is None:
        yield (
            i,
            ("on_changes_requested",),
            "only an agent stage requests changes (or a human rejecting at its approval)",
        )
    yield from _target(i, stage, graph, ("on_changes_requested", "rework"), rule.rework)
    for n, other in enumerate(rule.alternatives):
        sub: DocPath = ("on_changes_requested", "alternatives", n)
        if other == rule.rework or rule.alternatives.index(other) != n:
            yield i, sub, f"alternative '{other}' is named twice"
            continue
        yield from _target(i, stage, graph, sub, other)


def _target(
    i: int, stage: StageSpec, graph: _Graph, sub: DocPath, target: str
) -> Iterator[Finding]:
    """A stage a rework may go back to: an upstream stage, not a plan's."""
    if target not in graph.index:
        yield i, sub, f"rework names unknown stage '{target}'{suggest(target, graph.index)}"
        return
    if target == stage.id:
        yield i, sub, "rework names this stage itself; name the upstream stage to send work to"
        return
    if target not in graph.upstream(stage.id):
        why = f"rework stage '{target}' is not upstream of this stage (add it to depends_on)"
        yield i, sub, why
        return
    replans = [
        s.id
        for s in graph.stages
        if s.plan is not None and (s.id == target or target in graph.upstream(s.id))
    ]
    if replans:
        yield (
            i,
            sub,
            f"rework of '{target}' would rerun plan stage '{replans[0]}' after its plan was "
            "expanded; send the work to the for_each stage (or a stage after the plan) instead",
        )
