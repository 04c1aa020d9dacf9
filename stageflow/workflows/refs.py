"""What the cross-stage checks read of a template, from a valid spec or from raw data.

When a template has schema errors there is no ``WorkflowSpec``, yet its cross-stage mistakes
(an unknown ``depends_on``, a ``needs`` that is not upstream) are still there and the user
should see them in the same pass. ``refs_from_data`` reads the same fields leniently from the
parsed document: a field of the wrong type counts as unknown, and checks that would depend on
it are skipped instead of reporting a mistake that is only a consequence of the schema error
(``depends_on: 5`` does not also make every ``needs`` of the stage "not upstream"). A field
the schema found misspelled (``dependson``) makes the field it resembles unknown the same way,
and a stage without a usable id makes "unknown stage" undecidable.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from stageflow.workflows.locations import DocPath
from stageflow.workflows.spec import StageSpec, WorkflowSpec


@dataclass(frozen=True)
class StageRefs:
    """One stage's names and references. ``deps_known`` / ``produces_known`` are False when
    that field was malformed (its string items are kept for the checks that still make sense)."""

    id: str | None
    agent: str | None = None
    agents: tuple[str, ...] = ()  # every candidate when ``agent`` is a list, else empty
    depends_on: tuple[str, ...] = ()
    deps_known: bool = True
    needs: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()
    produces_known: bool = True
    rollback: str | None = None
    when: str | None = None
    gate: str | None = None
    model: str | None = None
    line: int | None = None
    # a debate's agents: (path under the stage, name), e.g. (("debate", "participants", 0,
    # "agent"), "critic")
    debate_agents: tuple[tuple[DocPath, str], ...] = ()


@dataclass(frozen=True)
class TemplateRefs:
    """The stages' references and the declared input names (``None``: ``inputs`` malformed).

    ``ids_known`` is False when some stage has no usable id, so a reference to an unknown
    stage may name that one.
    """

    stages: tuple[StageRefs, ...]
    inputs: frozenset[str] | None
    source: str | None
    ids_known: bool = True


def refs_from_spec(spec: WorkflowSpec) -> TemplateRefs:
    """The references of a spec that passed its schema."""
    return TemplateRefs(
        tuple(_from_stage(s) for s in spec.stages), frozenset(spec.inputs), spec.source
    )


def _from_stage(stage: StageSpec) -> StageRefs:
    return StageRefs(
        id=stage.id,
        agent=stage.agent,
        agents=stage.candidates,
        depends_on=tuple(stage.depends_on),
        needs=tuple(stage.needs),
        produces=tuple(stage.produces),
        rollback=stage.on_failure.rollback,
        when=stage.when,
        gate=stage.gate,
        model=stage.model,
        line=stage.line,
        debate_agents=_debate_agents(stage.model_dump(include={"debate"}).get("debate")),
    )


def _debate_agents(debate: object) -> tuple[tuple[DocPath, str], ...]:
    """The agents a ``debate:`` block names, with where (read leniently: raw data too)."""
    if not isinstance(debate, dict):
        return ()
    out: list[tuple[DocPath, str]] = []
    participants = debate.get("participants")
    if isinstance(participants, list):
        for j, p in enumerate(participants):
            if isinstance(p, dict) and isinstance(p.get("agent"), str):
                out.append((("debate", "participants", j, "agent"), p["agent"]))
    moderator = debate.get("moderator")
    if isinstance(moderator, dict) and isinstance(moderator.get("agent"), str):
        out.append((("debate", "moderator", "agent"), moderator["agent"]))
    return tuple(out)


def refs_from_data(
    data: dict[str, Any], source: str | None, unsure: Collection[DocPath] = ()
) -> TemplateRefs:
    """The references of a parsed template that failed its schema, read leniently.

    A stage that is not a mapping has no references (its schema error says why) but keeps its
    place, so indexes still match ``stages[i]``; an entry of the wrong type is left out.
    ``unsure`` lists fields to treat as unknown, e.g. ``("stages", 1, "depends_on")`` when
    stage 1 has a field that looks like a misspelled ``depends_on``.
    """
    stages = data.get("stages")
    raw = stages if isinstance(stages, list) else []
    out = tuple(
        _from_raw(s, i, unsure) if isinstance(s, dict) else StageRefs(None)
        for i, s in enumerate(raw)
    )
    inputs = data.get("inputs", {})
    declared: frozenset[str] | None = None
    if ("inputs",) in unsure:
        declared = None
    elif isinstance(inputs, dict):
        declared = frozenset(k for k in inputs if isinstance(k, str))
    elif inputs is None:
        declared = frozenset()
    return TemplateRefs(out, declared, source, ids_known=all(s.id is not None for s in out))


def _from_raw(stage: dict[str, Any], i: int, unsure: Collection[DocPath]) -> StageRefs:
    depends_on, deps_known = _names(stage.get("depends_on"))
    deps_known = deps_known and ("stages", i, "depends_on") not in unsure
    needs, _ = _names(stage.get("needs"))
    produces, produces_known = _names(stage.get("produces"))
    produces_known = produces_known and ("stages", i, "produces") not in unsure
    on_failure = stage.get("on_failure")
    rollback = on_failure.get("rollback") if isinstance(on_failure, dict) else None
    agent = stage.get("agent")
    candidates = _names(agent)[0] if isinstance(agent, list) else ()
    return StageRefs(
        id=_text(stage.get("id")),
        agent=_text(agent) or (candidates[0] if candidates else None),
        agents=candidates,
        depends_on=depends_on,
        deps_known=deps_known,
        needs=needs,
        produces=produces,
        produces_known=produces_known,
        rollback=_text(rollback),
        when=_text(stage.get("when")),
        gate=_text(stage.get("gate")),
        model=_text(stage.get("model")),
        debate_agents=_debate_agents(stage.get("debate")),
    )


def _names(value: object) -> tuple[tuple[str, ...], bool]:
    """A list field as ``StageSpec`` reads it (a string is a list of one, null is empty): its
    string items, and whether the field was well-formed."""
    if value is None:
        return (), True
    if isinstance(value, str):
        return (value,), True
    if not isinstance(value, list):
        return (), False
    names = tuple(v for v in value if isinstance(v, str))
    return names, len(names) == len(value)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
