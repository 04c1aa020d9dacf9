"""The engine's ``Orchestration`` (``engine.orchestration``): failure triage and rework
routing asked of ``[orchestrator]``'s model, one request each, within the run's caps.

The rule answers are the engine's (``engine.asking.rules``: the spec's own behaviour), so the
model can only add judgement: say that a failure needs a person, or pick another allowed
stage. The engine checks every answer again before it is logged.
"""

from __future__ import annotations

from stageflow.config import Settings
from stageflow.engine.asking import QUESTIONS, Answer, Ask, rules
from stageflow.engine.runner import AttemptMeter
from stageflow.errors import SpecError
from stageflow.subagents.debate.build import ClientFactory, make_orchestrator
from stageflow.subagents.orchestrator.options import load_orchestrator_options
from stageflow.subagents.orchestrator.questions import (
    FailureAnswer,
    failure_question,
    rework_question,
)
from stageflow.subagents.select import resolve_runner_name

__all__ = ["EngineQuestions", "engine_questions"]


class EngineQuestions:
    """Asks ``[orchestrator]`` (see the module docstring)."""

    kinds: frozenset[str] = QUESTIONS

    def __init__(self, settings: Settings, *, client: ClientFactory | None = None) -> None:
        self.settings = settings
        self._client = client

    async def answer(self, ask: Ask, meter: AttemptMeter) -> Answer:
        rule = rules(ask)
        try:
            orchestrator = make_orchestrator(self.settings, client=self._client)
        except SpecError as exc:  # a broken [orchestrator] table: say so, the rules answer
            return Answer(rule.answer, rule.reason, "rules", None, f"[orchestrator]: {exc}")
        try:
            if ask.question == "failure":
                verdict = "human" if rule.answer == "human" else "transient"
                question = failure_question(
                    ask.error,
                    ask.retryable,
                    lambda: FailureAnswer(verdict=verdict, reason=rule.reason),
                )
                decided = await orchestrator.ask(question, meter)
                said = decided.answer
                return Answer(
                    said.verdict, said.reason, decided.by, decided.model, decided.fallback
                )
            routed = await orchestrator.ask(
                rework_question(ask.stage, ask.error, ask.summary, ask.candidates), meter
            )
            target = routed.answer
            return Answer(target.target, target.reason, routed.by, routed.model, routed.fallback)
        finally:
            await orchestrator.aclose()


def _api(settings: Settings) -> bool:
    return resolve_runner_name(settings) == "anthropic"


def engine_questions(
    settings: Settings, *, client: ClientFactory | None = None
) -> EngineQuestions | None:
    """The engine's orchestrator, or None when there is no model to ask (``provider =
    "rules"``, or Anthropic without the API runner): the spec's rules then decide as they
    always did and nothing is logged."""
    try:
        options = load_orchestrator_options(settings)
    except SpecError:
        return EngineQuestions(settings, client=client)  # each answer says what is wrong
    if options.provider == "rules":
        return None
    if options.provider == "anthropic" and client is None and not _api(settings):
        return None
    return EngineQuestions(settings, client=client)
