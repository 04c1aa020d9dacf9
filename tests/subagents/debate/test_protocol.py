"""The pure parts: round bounds, condensed contexts, resuming progress, the rule answers, and
the orchestrator's fallbacks with a scripted model client (no network)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stageflow import events as ev
from stageflow.config import Settings
from stageflow.engine.runner import AttemptMeter
from stageflow.errors import ModelError, SpecError
from stageflow.models.client import ModelCall, ModelReply, RawUsage
from stageflow.models.pricing import load_price_table
from stageflow.subagents.debate.protocol import Progress, enforce, previous_round_text, turn_brief
from stageflow.subagents.orchestrator.ask import Orchestrator
from stageflow.subagents.orchestrator.options import (
    OrchestratorOptions,
    load_orchestrator_options,
)
from stageflow.subagents.orchestrator.questions import (
    consensus_question,
    consensus_rule,
    failure_rule,
    template_rule,
)
from stageflow.workflows.debate_spec import DebateSpec

pytestmark = pytest.mark.anyio
SPEC = DebateSpec.model_validate(
    {"participants": [{"agent": "a"}, {"agent": "b"}], "rounds": {"min": 2, "max": 4}}
)
TEMPLATES = ["bugfix", "feature_development", "security_audit", "documentation_update"]


def turn(rnd: int, who: str, text: str = "x", position: str = "adopt") -> ev.DebateTurn:
    return ev.DebateTurn(
        stage="d",
        attempt=1,
        round=rnd,
        participant=who,
        role="critic",
        position=position,
        statement=text,
    )


@pytest.mark.parametrize(
    ("proposed", "rnd", "action"),
    [
        ("conclude", 1, "continue"),  # before rounds.min
        ("conclude", 2, "conclude"),
        ("continue", 4, "conclude"),  # at rounds.max
        ("redirect", 1, "redirect"),
        ("continue", 3, "continue"),
    ],
)
def test_the_engine_enforces_min_and_max_rounds(proposed: str, rnd: int, action: str) -> None:
    assert enforce(proposed, rnd, SPEC) == action  # type: ignore[arg-type]


def test_previous_statements_are_condensed_over_the_budget() -> None:
    long = "An argument sentence. " * 400  # about 8,800 characters
    small = previous_round_text([turn(1, "a", "short"), turn(1, "b", "also short")], 100)
    assert "[condensed" not in small
    text = previous_round_text([turn(1, "a", long), turn(1, "b", long)], 500)
    assert text.count("[condensed") == 2 and len(text) < 2 * 1000 + 400


def test_a_turn_sees_only_the_previous_round_never_the_transcript() -> None:
    brief = turn_brief(
        spec=SPEC,
        question="Q?",
        participant=SPEC.participants[0],
        round_no=3,
        needs=[],
        previous=[turn(2, "b", "round two words")],
        verdict=None,
    )
    assert "round two words" in brief and "Round 2 statements" in brief
    assert "Round 1" not in brief


def test_progress_keeps_the_first_record_of_a_turn() -> None:
    progress = Progress.of([turn(1, "a", "first"), turn(1, "a", "again"), turn(1, "b")])
    assert progress.turns[1]["a"].statement == "first"
    assert [t.participant for t in progress.round_turns(1, SPEC.participants)] == ["a", "b"]


def test_rule_answers() -> None:
    assert template_rule("login accepts an empty password", TEMPLATES).template == "bugfix"
    assert template_rule("add CSV export", TEMPLATES).template == "feature_development"
    verdict = consensus_rule({"a": "Adopt!", "b": "adopt", "c": "reject"}, 0.6)
    assert (verdict.agreement, verdict.action) == (0.6667, "conclude")
    assert consensus_rule({"a": "adopt", "b": "reject"}, 0.75).action == "continue"
    assert failure_rule("HTTP 529 overloaded", False).verdict == "transient"
    assert failure_rule("tests failed: 3 assertions", False).verdict == "human"


class Scripted:
    """A model client answering from a list (an exception is raised)."""

    def __init__(self, *replies: ModelReply | Exception) -> None:
        self.replies = list(replies)
        self.calls: list[ModelCall] = []

    async def send(self, call: ModelCall) -> ModelReply:
        self.calls.append(call)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def aclose(self) -> None:
        pass


def answer(data: object) -> ModelReply:
    block = {"type": "tool_use", "id": "t", "name": "answer", "input": data}
    return ModelReply([block], "tool_use", "claude-haiku-4-5", RawUsage(100, 50))


def orchestrator(tmp_path: Path, client: Scripted, budget: float = 0.05) -> Orchestrator:
    settings = Settings(project=tmp_path, db_path=tmp_path / "db", home=tmp_path)
    return Orchestrator(
        OrchestratorOptions(budget_usd=budget),
        client=lambda: client,
        prices=load_price_table(settings),
        model="claude-haiku-4-5",
    )


QUESTION = consensus_question("Q?", [("a", "adopt", "x"), ("b", "reject", "y")], 0.75, 1)


async def test_a_valid_answer_is_the_models_and_is_metered(tmp_path: Path) -> None:
    client = Scripted(answer({"agreement": 0.9, "action": "conclude", "reason": "r"}))
    meter = AttemptMeter(budget_usd=1.0)
    decided = await orchestrator(tmp_path, client).ask(QUESTION, meter)
    assert (decided.by, decided.answer.agreement) == ("model", 0.9)
    assert decided.cost_usd > 0 and meter.usage.cost_usd == decided.cost_usd
    assert client.calls[0].tool_choice == {"type": "tool", "name": "answer"}


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (answer({"agreement": 3, "action": "conclude"}), "invalid at agreement"),
        (ModelReply([{"type": "text", "text": "yes"}], "end_turn", "m"), "did not call"),
        (ModelError("overloaded", retryable=True, status_code=529), "unavailable"),
    ],
)
async def test_bad_answers_and_outages_fall_back_to_the_rules(
    tmp_path: Path, reply: ModelReply | Exception, why: str
) -> None:
    decided = await orchestrator(tmp_path, Scripted(reply)).ask(QUESTION, AttemptMeter())
    assert decided.by == "rules" and why in (decided.fallback or "")
    assert decided.answer.action == "continue" and decided.answer.agreement == 0.5


async def test_a_question_over_its_cap_is_not_sent(tmp_path: Path) -> None:
    client = Scripted(answer({"agreement": 1, "action": "conclude"}))
    meter = AttemptMeter(budget_usd=0.001)  # the run's cap: less than a request's worst case
    decided = await orchestrator(tmp_path, client).ask(QUESTION, meter)
    assert decided.by == "rules" and "over budget" in (decided.fallback or "")
    assert client.calls == [] and meter.usage.cost_usd == 0


async def test_ollama_without_its_package_falls_back_to_the_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ollama", None)  # as if the extra were not installed
    settings = Settings(
        project=tmp_path,
        db_path=tmp_path / "db",
        home=tmp_path,
        extra={
            "orchestrator": {
                "provider": "ollama",
                "model": "llama3.2",
                "ollama_host": "http://127.0.0.1:9",
            }
        },
    )
    from stageflow.subagents.debate.build import make_orchestrator

    decided = await make_orchestrator(settings).ask(QUESTION, AttemptMeter())
    assert decided.by == "rules"
    assert "the ollama package is not installed" in (decided.fallback or "")


def test_orchestrator_config_mistakes_name_the_key(tmp_path: Path) -> None:
    def load(table: dict[str, object]) -> OrchestratorOptions:
        settings = Settings(
            project=tmp_path, db_path=tmp_path / "db", home=tmp_path, extra={"orchestrator": table}
        )
        return load_orchestrator_options(settings)

    assert load({}).model == "haiku"
    for bad, key in (
        ({"provider": "gpt"}, "provider"),
        ({"budget_usd": -1}, "budget_usd"),
        # TOML's nan/inf: NaN slipped through ``<= 0`` (every question silently the rules')
        ({"budget_usd": float("nan")}, "budget_usd"),
        ({"budget_usd": float("inf")}, "budget_usd"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"modle": "x"}, "modle"),
    ):
        with pytest.raises(SpecError) as info:
            load(bad)
        assert info.value.problem.path == f"orchestrator.{key}"
