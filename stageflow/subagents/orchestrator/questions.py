"""The engine's structured questions: what is asked, the answer's schema, the rule answer.

Each ``Question`` carries the prompt for the model, the pydantic model its answer must
validate against (offered to the model as the ``answer`` tool's input schema), and the rule
answer used whenever the model cannot give a valid one (``rules``). Rules are pure.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from pydantic import Field

from stageflow.base import Model

__all__ = [
    "ConsensusAnswer",
    "FailureAnswer",
    "Question",
    "ReworkAnswer",
    "TemplateAnswer",
    "consensus_question",
    "failure_question",
    "rework_question",
    "template_question",
]

A = TypeVar("A", bound=Model)


@dataclass(frozen=True)
class Question(Generic[A]):
    """One question: ``kind`` names it in logs and verdicts."""

    kind: str
    system: str
    prompt: str
    schema: type[A]
    rules: Callable[[], A]


# -- consensus -------------------------------------------------------------------------------


class ConsensusAnswer(Model):
    """The moderator's verdict on a round."""

    agreement: float = Field(ge=0.0, le=1.0)
    positions: dict[str, str] = Field(default_factory=dict)
    open_points: list[str] = Field(default_factory=list, max_length=12)
    action: Literal["continue", "conclude", "redirect"]
    reason: str = Field("", max_length=2000)
    redirect: str | None = Field(None, max_length=1000)
    decision: str = Field("", max_length=4000)  # the decision, when concluding


_WORD = re.compile(r"[a-z0-9]+")


def normalise_position(position: str) -> str:
    """A stance reduced for comparison: lower-case words, ``"Adopt!"`` == ``"adopt"``."""
    return " ".join(_WORD.findall(position.lower()))


def consensus_rule(
    positions: Mapping[str, str], threshold: float, open_points: Sequence[str] = ()
) -> ConsensusAnswer:
    """Agreement = the share of participants holding the most common position; conclude at
    or above the threshold, else continue."""
    stances = Counter(normalise_position(p) or "(none)" for p in positions.values())
    top, count = stances.most_common(1)[0] if stances else ("(none)", 0)
    agreement = round(count / max(1, len(positions)), 4)
    concluded = agreement >= threshold and top != "(none)"
    return ConsensusAnswer(
        agreement=agreement,
        positions=dict(positions),
        open_points=list(open_points)[:12],
        action="conclude" if concluded else "continue",
        reason=(
            f"{count} of {len(positions)} participants hold '{top}' "
            f"(agreement {agreement:.2f}, threshold {threshold:.2f})"
        ),
        decision=top if concluded else "",
    )


def consensus_question(
    question: str,
    statements: Sequence[tuple[str, str, str]],
    threshold: float,
    round_no: int,
    guide: str = "",
) -> Question[ConsensusAnswer]:
    """Judge a round: ``statements`` are (participant, position, statement)."""
    lines = [f"Question under debate: {question}", f"Round {round_no} statements:"]
    for who, position, text in statements:
        lines.append(f"\n## {who} (position: {position or 'unstated'})\n{text}")
    lines.append(
        f"\nThe consensus threshold is {threshold:.2f}. Give agreement (0-1), each "
        "participant's position in a few words, the open points, and continue, conclude or "
        "redirect (with the question to refocus on) and why; when concluding, the decision."
    )
    system = guide or (
        "You moderate a debate between independent experts. Judge only what was said. "
        "Answer by calling the answer tool."
    )
    return Question(
        kind="consensus",
        system=system,
        prompt="\n".join(lines),
        schema=ConsensusAnswer,
        rules=lambda: consensus_rule({w: p for w, p, _ in statements}, threshold),
    )


# -- template choice -------------------------------------------------------------------------


class TemplateAnswer(Model):
    """Which template fits a task, and why."""

    template: str
    reason: str = Field("", max_length=1000)


_BUG = re.compile(
    r"\b(bug|fix|broken|crash\w*|error|fails?|failing|regression|wrong|accepts?|"
    r"leak\w*|exception|incorrect|doesn'?t|does not|cannot|can'?t)\b"
)
_SECURITY = re.compile(r"\b(security audit|pentest|vulnerab\w*|threat model|owasp)\b")
_DOCS = re.compile(r"\b(document\w*|docs|readme|changelog)\b")
_DEBATE = re.compile(r"\b(should we|decide|debate|choose between|trade-?offs?|adr)\b")


def template_rule(task: str, names: Sequence[str]) -> TemplateAnswer:
    """Keyword rules over the task text, in order of specificity; ``feature_development``
    (else the first template) when nothing matches."""
    text = task.lower()
    for pattern, name, why in (
        (_SECURITY, "security_audit", "the task asks for a security review"),
        (_BUG, "bugfix", "the task describes a defect (wrong or broken behaviour)"),
        (_DOCS, "documentation_update", "the task is about documentation"),
        (_DEBATE, "consensus_building", "the task asks for a decision between options"),
    ):
        if name in names and pattern.search(text):
            return TemplateAnswer(template=name, reason=f"rules: {why}")
    default = "feature_development" if "feature_development" in names else names[0]
    return TemplateAnswer(template=default, reason="rules: new behaviour to build")


def template_question(task: str, catalog: Mapping[str, str]) -> Question[TemplateAnswer]:
    """Choose a template for ``task`` among ``catalog`` (name -> description)."""
    listing = "\n".join(f"- {name}: {desc}" for name, desc in sorted(catalog.items()))
    prompt = (
        f"Task: {task}\n\nTemplates:\n{listing}\n\n"
        "Choose the one template that fits the task best and say why in one sentence."
    )
    return Question(
        kind="template",
        system="You route software tasks to workflow templates. Answer with the answer tool.",
        prompt=prompt,
        schema=TemplateAnswer,
        rules=lambda: template_rule(task, list(catalog)),
    )


# -- failed attempts -------------------------------------------------------------------------


class FailureAnswer(Model):
    """Whether a failed attempt looks transient (retry) or needs a human."""

    verdict: Literal["transient", "human"]
    reason: str = Field("", max_length=1000)


_TRANSIENT = re.compile(
    r"\b(timed? ?out|timeout|overloaded|529|503|502|rate limit|connection|temporar\w*|"
    r"unavailable|reset by peer|try again)\b"
)


def failure_rule(error: str, retryable: bool) -> FailureAnswer:
    """Transient when the error was marked retryable or reads like a provider hiccup."""
    if retryable or _TRANSIENT.search(error.lower()):
        return FailureAnswer(verdict="transient", reason="rules: a provider or network hiccup")
    return FailureAnswer(verdict="human", reason="rules: the failure is in the work itself")


def failure_question(
    error: str, retryable: bool, rules: Callable[[], FailureAnswer] | None = None
) -> Question[FailureAnswer]:
    """Triage a failed attempt; ``rules``: the rule answer (``failure_rule`` by default)."""
    return Question(
        kind="failure",
        system="You triage failed automation steps. Answer with the answer tool.",
        prompt=(
            f"A stage attempt failed with: {error[:2000]}\n"
            "Is this transient (retrying may succeed) or does it need a human? Say why."
        ),
        schema=FailureAnswer,
        rules=rules or (lambda: failure_rule(error, retryable)),
    )


# -- rework routing --------------------------------------------------------------------------


class ReworkAnswer(Model):
    """Which allowed stage a ``changes_requested`` goes back to, and why."""

    target: str = Field(max_length=200)
    reason: str = Field("", max_length=1000)


def rework_question(
    stage: str, findings: str, summary: str, candidates: Sequence[str]
) -> Question[ReworkAnswer]:
    """Route a rework: ``candidates`` are the allowed stages, the template's declared one
    first (the rule answer)."""
    listing = ", ".join(candidates)
    prompt = (
        f"Stage '{stage}' asked for changes.\nIts summary: {summary[:2000]}\n"
        f"Its findings: {findings[:4000]}\n\n"
        f"Which one of these stages should the work go back to: {listing}? Pick the earliest "
        "stage whose output the findings show to be wrong, and say why in one sentence."
    )
    return Question(
        kind="rework",
        system="You route review findings back to workflow stages. Answer with the answer tool.",
        prompt=prompt,
        schema=ReworkAnswer,
        rules=lambda: ReworkAnswer(target=candidates[0], reason="rules: the declared stage"),
    )
