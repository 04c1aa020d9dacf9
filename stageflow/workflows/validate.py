"""Cross-stage checks of a workflow template, reporting every problem at once.

The pydantic models in ``spec`` check what one field can know alone; this module checks what
needs the whole template: unique ids, ``depends_on`` and ``needs`` targets, cycles, rollback
stages, agents, and the references inside ``when``/``gate`` conditions. Each ``Problem`` names
the file, line, stage and dotted path, and the list is ordered by line.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping

from stageflow.errors import Problem
from stageflow.workflows.conditions import ConditionError, parse_condition
from stageflow.workflows.locations import DocPath, LineMap, dotted, suggest
from stageflow.workflows.spec import StageSpec, WorkflowSpec
from stageflow.workflows.validate_loops import loop_problems

MAX_CYCLES = 20  # enough to show the user what to fix; enumeration is exponential at worst
_CYCLE_STEPS = 100_000


def check_spec(
    spec: WorkflowSpec,
    *,
    agent_names: Collection[str] | None = None,
    lines: LineMap | None = None,
) -> list[Problem]:
    """Every cross-stage problem of ``spec``, ordered by line (then stage, then check)."""
    return _Checker(spec, agent_names, lines).run()


class _Checker:
    def __init__(
        self, spec: WorkflowSpec, agent_names: Collection[str] | None, lines: LineMap | None
    ) -> None:
        self.spec = spec
        self.agents = None if agent_names is None else set(agent_names)
        self.lines = lines
        self.first: dict[str, int] = {}
        for i, stage in enumerate(spec.stages):
            self.first.setdefault(stage.id, i)
        self.found: list[tuple[int, int, int, Problem]] = []
        self.triggers: dict[str, list[str]] = {}  # rollback target -> stages that call it
        for stage in spec.stages:
            if stage.on_failure.rollback:
                self.triggers.setdefault(stage.on_failure.rollback, []).append(stage.id)

    def run(self) -> list[Problem]:
        for i, stage in enumerate(self.spec.stages):
            self.check_id(i, stage)
            self.check_depends_on(i, stage)
            self.check_agent(i, stage)
            self.check_needs(i, stage)
            self.check_produces(i, stage)
            self.check_rollback(i, stage)
            for kind in ("when", "gate"):
                self.check_condition(i, stage, kind)
        self.check_cycles()
        for i, sub, message in loop_problems(self.spec, self.agents):  # plan, rework, escalate
            self.add(i, sub, message)
        return [p for *_, p in sorted(self.found, key=lambda t: t[:3])]

    # -- helpers ---------------------------------------------------------------------------

    def line_of(self, i: int, sub: DocPath) -> int | None:
        if self.lines is not None:
            found = self.lines.line(("stages", i, *sub))
            if found is not None:
                return found
        return self.spec.stages[i].line

    def add(self, i: int, sub: DocPath, message: str) -> None:
        line = self.line_of(i, sub)
        problem = Problem(
            message,
            file=self.spec.source,
            line=line,
            stage=self.spec.stages[i].id,
            path=dotted(("stages", i, *sub)),
        )
        self.found.append((line or 0, i, len(self.found), problem))

    def upstream(self, i: int) -> set[str]:
        """Stages reachable from stage ``i`` through ``depends_on`` (cycle-safe)."""
        seen: set[str] = set()
        todo = [d for d in self.spec.stages[i].depends_on if d in self.first]
        while todo:
            sid = todo.pop()
            if sid not in seen:
                seen.add(sid)
                deps = self.spec.stages[self.first[sid]].depends_on
                todo.extend(d for d in deps if d in self.first)
        return seen

    # -- checks ----------------------------------------------------------------------------

    def check_id(self, i: int, stage: StageSpec) -> None:
        first = self.first[stage.id]
        if first != i:
            where = self.line_of(first, ())
            at = f" at line {where}" if where is not None else ""
            self.add(
                i, ("id",), f"duplicate stage id '{stage.id}' (first used by stages[{first}]{at})"
            )
        if stage.id == "inputs":
            self.add(i, ("id",), "stage id 'inputs' is reserved (conditions use inputs.<name>)")

    def check_depends_on(self, i: int, stage: StageSpec) -> None:
        seen: set[str] = set()
        for j, dep in enumerate(stage.depends_on):
            sub = ("depends_on", j)
            if dep in seen:
                self.add(i, sub, f"depends_on lists '{dep}' more than once")
            seen.add(dep)
            if dep not in self.first:
                self.add(i, sub, f"depends_on unknown stage '{dep}'{suggest(dep, self.first)}")
            elif dep in self.triggers and dep != stage.id:
                callers = ", ".join(f"'{c}'" for c in self.triggers[dep])
                self.add(
                    i,
                    sub,
                    f"depends on '{dep}', a rollback stage that runs only when {callers} "
                    "fails; nothing may depend on a rollback stage",
                )

    def check_agent(self, i: int, stage: StageSpec) -> None:
        if self.agents is None or stage.agent is None or stage.agent in self.agents:
            return
        known = ", ".join(sorted(self.agents)) or "none"
        self.add(
            i,
            ("agent",),
            f"unknown agent '{stage.agent}'{suggest(stage.agent, self.agents)}; "
            f"known agents: {known}",
        )

    def check_needs(self, i: int, stage: StageSpec) -> None:
        upstream = self.upstream(i)
        for j, item in enumerate(stage.needs):
            sub = ("needs", j)
            src, _, art = item.partition(".")
            if not src or not art:
                self.add(i, sub, f"needs entry '{item}' is not of the form <stage>.<artifact>")
                continue
            if src not in self.first:
                self.add(
                    i, sub, f"needs '{item}' from unknown stage '{src}'{suggest(src, self.first)}"
                )
                continue
            if src == stage.id:
                self.add(i, sub, f"needs '{item}' from this stage itself")
                continue
            if src not in upstream:
                self.add(
                    i,
                    sub,
                    f"needs '{item}' but stage '{src}' is not upstream of this stage "
                    f"(add '{src}' to depends_on)",
                )
            produces = self.spec.stages[self.first[src]].produces
            if art not in produces:
                listed = ", ".join(dict.fromkeys(produces)) if produces else "nothing"
                self.add(
                    i,
                    sub,
                    f"needs '{item}' but stage '{src}' does not produce '{art}' "
                    f"(produces: {listed})",
                )

    def check_produces(self, i: int, stage: StageSpec) -> None:
        seen: set[str] = set()
        for j, art in enumerate(stage.produces):
            if art in seen:
                self.add(i, ("produces", j), f"produces '{art}' more than once")
            seen.add(art)

    def check_rollback(self, i: int, stage: StageSpec) -> None:
        target = stage.on_failure.rollback
        if target is None:
            return
        sub = ("on_failure", "rollback")
        if target == stage.id:
            self.add(i, sub, "on_failure rollback names the stage itself")
        elif target not in self.first:
            self.add(
                i,
                sub,
                f"on_failure rollback stage '{target}' does not exist{suggest(target, self.first)}",
            )

    def check_condition(self, i: int, stage: StageSpec, kind: str) -> None:
        text = stage.when if kind == "when" else stage.gate
        if text is None:
            return
        sub = (kind,)
        try:
            cond = parse_condition(text)
        except ConditionError as exc:
            shown = text if len(text) <= 60 else text[:57] + "..."
            self.add(i, sub, f"invalid {kind} condition {shown!r}: {exc.message}")
            return
        upstream = self.upstream(i)
        for sid in sorted(cond.stage_refs()):
            if sid not in self.first:
                self.add(
                    i, sub, f"{kind} refers to unknown stage '{sid}'{suggest(sid, self.first)}"
                )
            elif sid == stage.id:
                self.add(
                    i,
                    sub,
                    f"{kind} refers to this stage itself; conditions may read only upstream stages",
                )
            elif sid not in upstream:
                self.add(
                    i,
                    sub,
                    f"{kind} refers to stage '{sid}', which is not upstream of this stage "
                    f"(add '{sid}' to depends_on)",
                )
        declared = {"task", *self.spec.inputs}
        for name in sorted(cond.input_refs() - declared):
            self.add(
                i,
                sub,
                f"{kind} refers to undeclared input '{name}' "
                f"(declared: {', '.join(sorted(declared))})",
            )

    def check_cycles(self) -> None:
        order = list(self.first)
        edges = {
            sid: list(dict.fromkeys(d for d in self.spec.stages[idx].depends_on if d in self.first))
            for sid, idx in self.first.items()
        }
        for cycle in _cycles(order, edges):
            i = self.first[cycle[0]]
            j = self.spec.stages[i].depends_on.index(cycle[1])
            self.add(i, ("depends_on", j), f"dependency cycle: {' -> '.join(cycle)}")


def _cycles(order: list[str], edges: Mapping[str, list[str]]) -> Iterator[list[str]]:
    """Each elementary cycle once, starting at its earliest stage (``a -> b -> a``)."""
    rank = {sid: n for n, sid in enumerate(order)}
    found = steps = 0
    for start in order:
        path, on_path = [start], {start}
        branches = [iter(edges[start])]
        while branches:
            steps += 1
            if steps > _CYCLE_STEPS:
                return
            nxt = next(branches[-1], None)
            if nxt is None:
                branches.pop()
                on_path.discard(path.pop())
            elif nxt == start:
                yield [*path, start]
                found += 1
                if found >= MAX_CYCLES:
                    return
            elif rank[nxt] > rank[start] and nxt not in on_path:
                path.append(nxt)
                on_path.add(nxt)
                branches.append(iter(edges[nxt]))
