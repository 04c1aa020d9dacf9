"""Cross-stage checks of a workflow template, reporting every problem at once.

The pydantic models in ``spec`` check what one field can know alone; this module checks what
needs the whole template: unique ids, ``depends_on`` and ``needs`` targets, cycles, rollback
stages, agents, and the references inside ``when``/``gate`` conditions. Each ``Problem`` names
the file, line, stage and dotted path, and the list is ordered by line.

The checks read ``refs.TemplateRefs``, so they also run on a template whose schema failed
(``refs.refs_from_data``): a user sees the schema errors and the cross-stage ones in one pass.
The work is linear in the template's size: the upstream relation is built once
(``graph.Upstream``), and "did you mean" suggestions, which compare a name with every known
one, stop after ``MAX_SUGGESTIONS``.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection

from stageflow.errors import Problem
from stageflow.workflows.conditions import UPSTREAM_NAMES, ConditionError, parse_condition
from stageflow.workflows.graph import MAX_CYCLES, Upstream
from stageflow.workflows.locations import DocPath, LineMap, dotted
from stageflow.workflows.refs import StageRefs, TemplateRefs, refs_from_spec
from stageflow.workflows.spec import WorkflowSpec
from stageflow.workflows.validate_loops import loop_problems

__all__ = ["MAX_CYCLES", "MAX_SUGGESTIONS", "check_refs", "check_spec"]

MAX_SUGGESTIONS = 100


def check_spec(
    spec: WorkflowSpec,
    *,
    agent_names: Collection[str] | None = None,
    lines: LineMap | None = None,
) -> list[Problem]:
    """Every cross-stage problem of ``spec``, ordered by line (then stage, then check)."""
    return check_refs(refs_from_spec(spec), agent_names=agent_names, lines=lines, spec=spec)


def check_refs(
    refs: TemplateRefs,
    *,
    agent_names: Collection[str] | None = None,
    lines: LineMap | None = None,
    spec: WorkflowSpec | None = None,
) -> list[Problem]:
    """Every cross-stage problem of ``refs``, ordered by line (then stage, then check); with
    ``spec`` (the template loaded), the run-time keys' too (``validate_loops``)."""
    return _Checker(refs, agent_names, lines, spec).run()


class _Checker:
    def __init__(
        self,
        refs: TemplateRefs,
        agent_names: Collection[str] | None,
        lines: LineMap | None,
        spec: WorkflowSpec | None,
    ) -> None:
        self.refs = refs
        self.spec = spec
        self.stages = refs.stages
        self.agents = None if agent_names is None else set(agent_names)
        self.lines = lines
        self.first: dict[str, int] = {}
        for i, stage in enumerate(self.stages):
            if stage.id is not None:
                self.first.setdefault(stage.id, i)
        self.found: list[tuple[int, int, int, Problem]] = []
        self.triggers: dict[str, list[str]] = {}  # rollback target -> stages that call it
        for stage in self.stages:
            if stage.rollback and stage.id is not None:
                self.triggers.setdefault(stage.rollback, []).append(stage.id)
        self.edges = [
            list(dict.fromkeys(self.first[d] for d in s.depends_on if d in self.first))
            for s in self.stages
        ]
        self.graph = Upstream(self.edges, [s.deps_known for s in self.stages])
        self.suggestions = 0

    def run(self) -> list[Problem]:
        for i, stage in enumerate(self.stages):
            self.check_id(i, stage)
            self.check_depends_on(i, stage)
            self.check_agent(i, stage)
            self.check_needs(i, stage)
            self.check_produces(i, stage)
            self.check_rollback(i, stage)
            for kind in ("when", "gate"):
                self.check_condition(i, stage, kind)
        self.check_cycles()
        if self.spec is not None:  # plan, for_each, rework, escalate, files
            for i, sub, message in loop_problems(self.spec, self.agents):
                self.add(i, sub, message)
        return [p for *_, p in sorted(self.found, key=lambda t: t[:3])]

    # -- helpers ---------------------------------------------------------------------------

    def line_of(self, i: int, sub: DocPath) -> int | None:
        if self.lines is not None:
            found = self.lines.line(("stages", i, *sub))
            if found is not None:
                return found
        return self.stages[i].line

    def add(self, i: int, sub: DocPath, message: str) -> None:
        line = self.line_of(i, sub)
        problem = Problem(
            message,
            file=self.refs.source,
            line=line,
            stage=self.stages[i].id,
            path=dotted(("stages", i, *sub)),
        )
        self.found.append((line or 0, i, len(self.found), problem))

    def suggest(self, name: str, known: Collection[str]) -> str:
        """`` (did you mean 'x'?)``; after ``MAX_SUGGESTIONS``, nothing (each costs O(known))."""
        if self.suggestions >= MAX_SUGGESTIONS:
            return ""
        self.suggestions += 1
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        return f" (did you mean '{close[0]}'?)" if close else ""

    def not_upstream(self, i: int, sid: str) -> bool:
        """``sid`` is surely not upstream of stage ``i`` (False when ``i``'s is unknown)."""
        return self.graph.certain(i) and not self.graph.has(i, self.first[sid])

    # -- checks ----------------------------------------------------------------------------

    def check_id(self, i: int, stage: StageRefs) -> None:
        if stage.id is None:
            return
        first = self.first[stage.id]
        if first != i:
            where = self.line_of(first, ())
            at = f" at line {where}" if where is not None else ""
            self.add(
                i, ("id",), f"duplicate stage id '{stage.id}' (first used by stages[{first}]{at})"
            )
        if stage.id == "inputs":
            self.add(i, ("id",), "stage id 'inputs' is reserved (conditions use inputs.<name>)")
        elif stage.id in UPSTREAM_NAMES:
            self.add(
                i, ("id",), f"stage id '{stage.id}' is reserved (conditions read it over upstream)"
            )

    def check_depends_on(self, i: int, stage: StageRefs) -> None:
        seen: set[str] = set()
        for j, dep in enumerate(stage.depends_on):
            sub = ("depends_on", j)
            if dep in seen:
                self.add(i, sub, f"depends_on lists '{dep}' more than once")
            seen.add(dep)
            if dep not in self.first:
                if not self.refs.ids_known:
                    continue
                self.add(i, sub, f"depends_on unknown stage '{dep}'{self.suggest(dep, self.first)}")
            elif dep in self.triggers and dep != stage.id:
                callers = ", ".join(f"'{c}'" for c in self.triggers[dep])
                self.add(
                    i,
                    sub,
                    f"depends on '{dep}', a rollback stage that runs only when {callers} "
                    "fails; nothing may depend on a rollback stage",
                )

    def check_agent(self, i: int, stage: StageRefs) -> None:
        if self.agents is None or stage.agent is None or stage.agent in self.agents:
            return
        known = ", ".join(sorted(self.agents)) or "none"
        self.add(
            i,
            ("agent",),
            f"unknown agent '{stage.agent}'{self.suggest(stage.agent, self.agents)}; "
            f"known agents: {known}",
        )

    def check_needs(self, i: int, stage: StageRefs) -> None:
        for j, item in enumerate(stage.needs):
            sub = ("needs", j)
            src, _, art = item.partition(".")
            if not src or not art:
                self.add(i, sub, f"needs entry '{item}' is not of the form <stage>.<artifact>")
                continue
            if src not in self.first:
                if not self.refs.ids_known:
                    continue
                self.add(
                    i,
                    sub,
                    f"needs '{item}' from unknown stage '{src}'{self.suggest(src, self.first)}",
                )
                continue
            if src == stage.id:
                self.add(i, sub, f"needs '{item}' from this stage itself")
                continue
            if self.not_upstream(i, src):
                self.add(
                    i,
                    sub,
                    f"needs '{item}' but stage '{src}' is not upstream of this stage "
                    f"(add '{src}' to depends_on)",
                )
            source = self.stages[self.first[src]]
            if source.produces_known and art not in source.produces:
                produces = source.produces
                listed = ", ".join(dict.fromkeys(produces)) if produces else "nothing"
                self.add(
                    i,
                    sub,
                    f"needs '{item}' but stage '{src}' does not produce '{art}' "
                    f"(produces: {listed})",
                )

    def check_produces(self, i: int, stage: StageRefs) -> None:
        seen: set[str] = set()
        for j, art in enumerate(stage.produces):
            if art in seen:
                self.add(i, ("produces", j), f"produces '{art}' more than once")
            seen.add(art)

    def check_rollback(self, i: int, stage: StageRefs) -> None:
        target = stage.rollback
        if target is None:
            return
        sub = ("on_failure", "rollback")
        if target == stage.id:
            self.add(i, sub, "on_failure rollback names the stage itself")
        elif target not in self.first and self.refs.ids_known:
            self.add(
                i,
                sub,
                f"on_failure rollback stage '{target}' does not exist"
                f"{self.suggest(target, self.first)}",
            )

    def check_condition(self, i: int, stage: StageRefs, kind: str) -> None:
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
        for sid in sorted(cond.stage_refs()):
            if sid not in self.first:
                if not self.refs.ids_known:
                    continue
                self.add(
                    i,
                    sub,
                    f"{kind} refers to unknown stage '{sid}'{self.suggest(sid, self.first)}",
                )
            elif sid == stage.id:
                self.add(
                    i,
                    sub,
                    f"{kind} refers to this stage itself; conditions may read only upstream stages",
                )
            elif self.not_upstream(i, sid):
                self.add(
                    i,
                    sub,
                    f"{kind} refers to stage '{sid}', which is not upstream of this stage "
                    f"(add '{sid}' to depends_on)",
                )
        if self.refs.inputs is None:
            return  # ``inputs`` is malformed: its schema error says so
        declared = {"task", *self.refs.inputs}
        for name in sorted(cond.input_refs() - declared):
            self.add(
                i,
                sub,
                f"{kind} refers to undeclared input '{name}' "
                f"(declared: {', '.join(sorted(declared))})",
            )

    def check_cycles(self) -> None:
        for cycle in self.graph.cycles(list(self.first.values())):
            i = cycle[0]
            j = self.stages[i].depends_on.index(self.stages[cycle[1]].id or "")
            names = " -> ".join(self.stages[n].id or "?" for n in cycle)
            self.add(i, ("depends_on", j), f"dependency cycle: {names}")
