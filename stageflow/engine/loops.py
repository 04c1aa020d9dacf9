"""The planner's decisions for agent-driven loops. Pure: no I/O, no awaits.

- ``rework``: a stage with ``on_changes_requested`` asked for changes: send the work back to
  its ``rework`` stage (a for_each stage: only the items its findings name, all when they name
  none) with the findings as feedback, while rounds remain; then escalate;
- ``escalation``: a false gate (with ``escalate: {agent: ...}``) or used-up rounds go to the
  decision agent while it has rounds left, else to a human; a finished decision stage becomes
  ``escalation_decided``. A decision agent is never started for, and its answer never applied
  to, an escalation that is a human's.
"""

from __future__ import annotations

from stageflow import events as ev
from stageflow.engine import asking
from stageflow.engine.dynamic import downstream
from stageflow.engine.records import DONE_STAGE, RunState, StageState
from stageflow.workflows.derived import (
    DECISIONS,
    RULING,
    findings,
    findings_text,
    rework_feedback,
)
from stageflow.workflows.spec import StageSpec

# downstream work that a rework would redo: wait until it has ended (another stage that asks
# for changes is not waited for: the rework reruns it, or two such stages would wait forever)
_ACTIVE = frozenset({"running", "retry_wait", "escalated"})


def _item_key(state: RunState, target: str, key: str) -> str | None:
    """The item sub-stage a findings key names (``t1`` or ``execute.t1``), if any."""
    items = state.children.get(target, ())
    for candidate in (key, f"{target}.{key}"):
        if candidate in items:
            return candidate
    return None


def rework(
    state: RunState, st: StageState, spec: StageSpec, *, ask: frozenset[str] = frozenset()
) -> list[ev.Event] | asking.Ask:
    """The next step for ``st`` (status ``changes_requested``); with ``alternatives`` and an
    orchestrator (``ask``), the question of where the work goes back to until it is answered."""
    rule = spec.on_changes_requested
    assert rule is not None
    limit = rule.max + st.granted
    found = findings(st.outputs)
    if st.rounds >= limit:
        return _escalate(
            st,
            spec,
            "rework",
            f"changes still requested after {st.rounds} "
            f"rework round(s) (on_changes_requested max {rule.max})",
            findings_text(found, st.summary),
        )
    target = rule.rework
    candidates = tuple(dict.fromkeys([rule.rework, *rule.alternatives]))
    if len(candidates) > 1 and "rework" in ask:
        chosen = asking.routed(state, st, candidates, st.rounds + 1)
        if isinstance(chosen, asking.Ask):
            return chosen
        target = chosen
    # work downstream of the target that is still going would be redone: wait for it
    if any(state.stages[d].status in _ACTIVE for d in downstream(state, target) if d != st.id):
        return []
    round_ = st.rounds + 1
    extra = st.note or ""
    feedback: dict[str, str] = {}
    items = state.children.get(target)
    if items:
        general = list(found.get("", []))
        named: dict[str, list[str]] = {}
        for key, texts in found.items():
            item = _item_key(state, target, key) if key else None
            if item is None:
                general += [f"[{key}] {t}" if key else t for t in texts]
            else:
                named.setdefault(item, []).extend(texts)
        for item in named or items:
            notes = [*named.get(item, []), *general]
            feedback[item] = rework_feedback(st.id, round_, limit, st.summary, notes, extra)
    else:
        notes = [f"[{k}] {t}" if k else t for k, texts in found.items() for t in texts]
        feedback[target] = rework_feedback(st.id, round_, limit, st.summary, notes, extra)
    return [ev.ReworkRequested(stage=st.id, target=target, round=round_, feedback=feedback)]


def _escalate(
    st: StageState, spec: StageSpec, kind: str, reason: str, open_findings: str
) -> list[ev.Event]:
    esc = spec.escalate
    to = "human"
    if esc is not None and esc.agent is not None and st.escalations < esc.max:
        to = esc.agent
    return [
        ev.StageEscalated(
            stage=st.id,
            kind="gate" if kind == "gate" else "rework",
            to=to,
            reason=reason,
            findings=open_findings,
        )
    ]


def blocked(st: StageState, spec: StageSpec) -> list[ev.Event]:
    """A stage blocked by a false gate goes to its decision agent while it has rounds left."""
    esc = spec.escalate
    if st.escalation is not None or esc is None or esc.agent is None:
        return []
    if st.escalations >= esc.max:
        return []  # it stays a human's gate
    reason = st.reason or f"gate false: {spec.gate}"
    return [ev.StageEscalated(stage=st.id, kind="gate", to=esc.agent, reason=reason)]


def decided(state: RunState, st: StageState) -> list[ev.Event]:
    """An ``escalated`` stage whose decision stage has finished: what it decided."""
    esc = st.escalation
    if esc is None or esc.to == "human" or esc.decider is None:
        return []
    decider = state.stages.get(esc.decider)
    if decider is None or decider.status not in DONE_STAGE:
        return []
    approver = f"agent:{esc.to}"
    if decider.status != "succeeded":
        why = f"the decision agent did not decide ({decider.status}: {decider.reason})"
        return [
            ev.EscalationDecided(
                stage=st.id, decision="human", feedback=why, approver=approver, by_agent=True
            )
        ]
    answer = decider.outputs.get(RULING)
    said = decider.outputs.get("feedback")
    feedback = said if isinstance(said, str) and said.strip() else decider.summary or None
    if answer not in DECISIONS:  # fail closed: an unclear answer is a human's to decide
        feedback = f"unclear decision {answer!r}; " + (feedback or "")
        answer = "human"
    return [
        ev.EscalationDecided(
            stage=st.id, decision=answer, feedback=feedback, approver=approver, by_agent=True
        )
    ]
