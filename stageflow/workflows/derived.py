"""Stages the engine derives at run time, as pure functions of a template stage and a log entry.

- ``item_stage``: a ``for_each`` stage + one plan item -> the item's sub-stage (``execute.t1``);
- ``decision_stage``: an escalated stage + the escalation -> its decision agent's stage
  (``audit.decision1``);
- ``findings`` and ``rework_feedback``: what a ``changes_requested`` result sends back.

Being pure, the same log always yields the same specs, so a new process replaying the log runs
exactly the stages the old one did. Derived ids contain a dot, which template ids cannot, so they
never collide with template stages; specs are built with ``model_copy`` from validated ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from stageflow.workflows.plan import PlanItem
from stageflow.workflows.spec import OnFailure, StageSpec

__all__ = [
    "DECISIONS",
    "RULING",
    "EscalationKind",
    "decision_stage",
    "feedback_findings",
    "findings",
    "findings_text",
    "item_stage",
    "rework_feedback",
]

EscalationKind = Literal["gate", "rework"]  # a false gate, or rework rounds used up
DECISIONS = ("approve", "reject", "human")
RULING = "ruling"  # the output a decision agent answers in
DECISION_ARTIFACT = "decision"
DECISION_TIMEOUT = 600.0
MAX_FEEDBACK = 6000  # characters of findings sent back with a rework


def item_stage(parent: StageSpec, item: PlanItem) -> StageSpec:
    """The sub-stage of ``parent`` (a ``for_each`` stage) for ``item``: the parent's rules
    (retry, timeout, budget, needs, produces) with the item's goal, agent, model, files and
    dependencies on its sibling items."""
    lines = [f"Work item `{item.id}` of the plan: {item.title}", ""]
    if item.description:
        lines += [item.description, ""]
    if item.files:
        lines += [
            "Files you are expected to touch: " + ", ".join(f"`{f}`" for f in item.files),
            "Other items run at the same time: stay within these files where you can.",
            "",
        ]
    if item.acceptance:
        lines += ["Acceptance criteria:", *[f"- {a}" for a in item.acceptance], ""]
    if item.depends_on:
        lines += [f"Done before you (their work is in the workspace): {', '.join(item.depends_on)}"]
    if parent.description:
        lines += ["", f"This stage in general: {parent.description.strip()}"]
    return parent.model_copy(
        update={
            "id": f"{parent.id}.{item.id}",
            "description": "\n".join(lines).strip(),
            "agent": item.agent or parent.agent,
            "model": item.model or parent.model,
            "depends_on": [f"{parent.id}.{d}" for d in item.depends_on],
            "files": list(item.files),
            "for_each": None,
            "when": None,
            "gate": None,
            "line": None,
        }
    )


def decision_stage(
    stage: StageSpec,
    *,
    agent: str,
    round_: int,
    kind: EscalationKind,
    reason: str,
    open_findings: str,
) -> StageSpec:
    """The stage in which ``agent`` decides an escalation of ``stage``: it reads what the stage
    read and produced, and answers ``outputs.ruling`` = approve | reject | human (anything else
    counts as human). A failure hands the decision to a human (``on_failure`` continue).
    (``ruling``, not ``decision``: ``outputs.decision`` records a decision in the knowledge
    base.)"""
    what = (
        "run the stage anyway although its gate is false"
        if kind == "gate"
        else "accept its result as it is (`reject` sends it back for one more round)"
    )
    lines = [
        f"Stage `{stage.id}` is escalated to you: {reason}.",
        "",
        f"Decide whether to {what}. Answer in `outputs`: `ruling` = `approve` (yes), "
        "`reject` (no; say what must change in `feedback`) or `human` (a person must decide: "
        "say why in `feedback`). When in doubt, answer `human`.",
    ]
    if open_findings:
        lines += ["", "Open findings:", open_findings]
    needs = [*stage.needs, *(f"{stage.id}.{p}" for p in stage.produces)]
    base = StageSpec(id="decision", agent=agent, produces=[DECISION_ARTIFACT])
    return base.model_copy(
        update={
            "id": f"{stage.id}.decision{round_}",
            "description": "\n".join(lines),
            "needs": list(dict.fromkeys(needs)),
            "on_failure": OnFailure(action="retry", max_attempts=2, backoff=5.0, then="continue"),
            "timeout": DECISION_TIMEOUT,
        }
    )


def _as_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        out = []
        for v in value:
            if isinstance(v, str) and v.strip():
                out.append(v.strip())
            elif isinstance(v, dict):
                out.append(json.dumps(v, ensure_ascii=False, sort_keys=True))
        return out
    return []


def findings(outputs: Mapping[str, Any]) -> dict[str, list[str]]:
    """A reviewer's findings by item id (``""``: not about one item), from ``outputs.findings``
    as ``{item: [text, ...]}`` or ``[{"item": id, "finding": text}, ...]`` or ``[text, ...]``."""
    raw = outputs.get("findings")
    out: dict[str, list[str]] = {}
    if isinstance(raw, dict):
        for key, value in raw.items():
            texts = _as_list(value)
            if texts:
                out.setdefault(str(key), []).extend(texts)
    elif isinstance(raw, list):
        for entry in raw:
            if isinstance(entry, dict):
                item = entry.get("item")
                text = entry.get("finding") or entry.get("text") or entry.get("issue")
                texts = _as_list(text) or [json.dumps(entry, ensure_ascii=False, sort_keys=True)]
                out.setdefault(str(item) if isinstance(item, str) else "", []).extend(texts)
            elif isinstance(entry, str) and entry.strip():
                out.setdefault("", []).append(entry.strip())
    return out


_ITEM_LINE = re.compile(r"^\s*(?:[-*]\s*)?(?:\w+\.)?([A-Za-z][A-Za-z0-9_]{0,39})\s*:\s*(.+)$")


def feedback_findings(text: str) -> dict[str, list[str]]:
    """A human's feedback as findings: a line ``t2: ...`` (or ``execute.t2: ...``) is about
    item t2; the rest is about the whole. Keys that name no item are sorted out later."""
    out: dict[str, list[str]] = {}
    general: list[str] = []
    for line in text.splitlines():
        m = _ITEM_LINE.match(line)
        if m and re.fullmatch(r"[A-Za-z]+\d+|[A-Za-z]\w*_\w+", m.group(1)):
            out.setdefault(m.group(1), []).append(m.group(2).strip())
        elif line.strip():
            general.append(line.strip())
    if general:
        out[""] = [" ".join(general)]
    return out


def rework_feedback(
    requester: str, round_: int, limit: int, summary: str, notes: Sequence[str], extra: str = ""
) -> str:
    """The feedback a reworked stage (or item) receives, bounded to ``MAX_FEEDBACK``."""
    lines = [f"Stage `{requester}` requested changes (rework round {round_} of {limit})."]
    if summary.strip():
        lines += ["", f"Its summary: {summary.strip()}"]
    if notes:
        lines += ["", "Findings to address:", *[f"- {n}" for n in notes]]
    if extra.strip():
        lines += ["", extra.strip()]
    lines += ["", f"Its artifacts are among your inputs (`{requester}.*`)."]
    text = "\n".join(lines)
    if len(text) > MAX_FEEDBACK:
        text = text[: MAX_FEEDBACK - 40].rstrip() + "\n[... findings cut to fit]"
    return text


def findings_text(found: Mapping[str, Sequence[str]], summary: str = "") -> str:
    """The open findings as lines (``- [t1] ...``), for whoever decides an escalation."""
    lines = []
    for key, texts in found.items():
        tag = f"[{key}] " if key else ""
        lines += [f"- {tag}{t}" for t in texts]
    if not lines and summary.strip():
        lines.append(f"- {summary.strip()}")
    text = "\n".join(lines)
    return text if len(text) <= MAX_FEEDBACK else text[: MAX_FEEDBACK - 20].rstrip() + "\n- [...]"
