"""The tool-use loop's bounds and accounting: turns, repeats, budgets, usage, caching, fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.agents.definition import AgentDefinition
from stageflow.engine.metering import attempt_usage
from stageflow.engine.runner import AttemptMeter
from stageflow.errors import BudgetExceeded, ModelError
from stageflow.models.client import ModelCall, ModelReply
from stageflow.subagents.tool_loop import MAX_CACHE_BREAKPOINTS, LoopLimits
from stageflow.usage import RequestUsage
from tests.subagents.fake_model import (
    DEFAULT_MODEL,
    FakeModel,
    fake_model,
    overloaded,
    submit,
    text_reply,
    tool_reply,
    tool_use,
    usage,
)
from tests.subagents.tool_loop_kit import (
    CONTEXT,
    FALLBACK_MODEL,
    count_breakpoints,
    counting_tool,
    request_for,
    run_loop,
)

pytestmark = pytest.mark.anyio

EPHEMERAL = {"type": "ephemeral"}


def chatty(call: ModelCall) -> ModelReply:
    return text_reply("still thinking")


# -- turns and repeats ------------------------------------------------------------------------


async def test_stops_after_max_turns_without_submit(tmp_path: Path) -> None:
    model = FakeModel(chatty)

    result = await run_loop(model, tmp_path, limits=LoopLimits(max_turns=3))

    assert result.status == "failed"
    assert result.error == "stopped after 3 turns without submit_result"
    assert len(model.calls) == 3
    assert result.usage.requests == 3
    assert result.model == DEFAULT_MODEL


async def test_the_agent_max_turns_overrides_the_default(tmp_path: Path) -> None:
    model = FakeModel(chatty)
    request = request_for(tmp_path)
    request.agent = AgentDefinition(name="architect", max_turns=2)

    result = await run_loop(model, tmp_path, request=request, limits=LoopLimits(max_turns=9))

    assert result.error == "stopped after 2 turns without submit_result"
    assert len(model.calls) == 2


async def test_the_same_call_three_times_in_a_row_stops_the_attempt(tmp_path: Path) -> None:
    lookup, seen = counting_tool()
    same = {"q": "rate limit"}
    model = fake_model(
        tool_reply(tool_use("lookup", same)),
        tool_reply(tool_use("lookup", dict(same))),
        tool_reply(tool_use("lookup", dict(same))),
    )

    result = await run_loop(model, tmp_path, extra_tools=[lookup])

    assert result.status == "failed"
    assert result.error == "stopped: the model called 'lookup' with the same input 3 times in a row"
    assert len(seen) == 2  # the third call was not run
    assert result.usage.requests == 3


async def test_varied_calls_do_not_count_as_repeats(tmp_path: Path) -> None:
    lookup, seen = counting_tool()
    model = fake_model(
        tool_reply(tool_use("lookup", {"q": "a"})),
        tool_reply(tool_use("lookup", {"q": "a"})),
        tool_reply(tool_use("lookup", {"q": "b"})),
        tool_reply(tool_use("lookup", {"q": "a"})),
        tool_reply(submit({"design": "d"})),
    )

    result = await run_loop(model, tmp_path, extra_tools=[lookup])

    assert result.status == "passed"
    assert len(seen) == 4


# -- budget -----------------------------------------------------------------------------------


async def test_a_request_past_a_tiny_budget_is_never_sent(tmp_path: Path) -> None:
    model = fake_model(tool_reply(submit({"design": "d"})))
    request = request_for(tmp_path, budget_remaining_usd=1e-7)

    with pytest.raises(BudgetExceeded) as caught:
        await run_loop(model, tmp_path, request=request)

    assert model.calls == []
    assert caught.value.spent_usd == 0.0
    assert caught.value.budget_usd == pytest.approx(1e-7)
    assert "the next model request was not sent" in str(caught.value)
    assert request.meter.requests == []


async def test_an_exhausted_budget_stops_before_sending(tmp_path: Path) -> None:
    model = fake_model(tool_reply(submit({"design": "d"})))
    request = request_for(tmp_path)
    request.meter = AttemptMeter(remaining=lambda: 0.0)

    with pytest.raises(BudgetExceeded):
        await run_loop(model, tmp_path, request=request)

    assert model.calls == []


async def test_first_request_whose_worst_case_does_not_fit_is_not_sent(tmp_path: Path) -> None:
    # the prompt alone, at the dearest input rate, plus a short reply costs more than $0.004
    model = fake_model(tool_reply(submit({"design": "d"})))
    request = request_for(tmp_path, budget_remaining_usd=0.004)

    with pytest.raises(BudgetExceeded) as caught:
        await run_loop(model, tmp_path, request=request)

    assert model.calls == []
    assert caught.value.spent_usd == 0.0
    assert "not sent" in str(caught.value) and "could cost" in str(caught.value)
    assert request.meter.requests == [] and request.meter.in_flight == []


async def test_spend_passing_the_cap_mid_attempt_stops_the_next_request(tmp_path: Path) -> None:
    # a reply reporting more output than max_tokens allowed (a provider bug): 1000 input +
    # 5000 output tokens at $3/$15 per MTok = $0.078 > the $0.05 cap. It is recorded as
    # reported, and nothing more is sent.
    costly = usage(input_tokens=1000, output_tokens=5000)
    lookup, _ = counting_tool()
    model = fake_model(
        tool_reply(tool_use("lookup", {"q": "x"}), raw_usage=costly),
        tool_reply(submit({"design": "d"})),
    )
    request = request_for(tmp_path, budget_remaining_usd=0.05)

    with pytest.raises(BudgetExceeded) as caught:
        await run_loop(model, tmp_path, request=request, extra_tools=[lookup])

    assert len(model.calls) == 1
    assert model.calls[0].max_tokens < 8192  # lowered to what the cap allowed
    assert caught.value.spent_usd == pytest.approx(0.078)
    assert [r.cost_usd for r in request.meter.requests] == [pytest.approx(0.078)]


async def test_every_request_is_recorded_with_its_usage_and_cost(tmp_path: Path) -> None:
    cached = usage(
        input_tokens=10,
        output_tokens=50,
        cache_write_5m_tokens=2000,
        cache_write_1h_tokens=1000,
        cache_read_tokens=0,
    )
    reread = usage(input_tokens=20, output_tokens=30, cache_read_tokens=3000)
    model = fake_model(
        tool_reply(submit({}), raw_usage=cached),  # refused: no design
        tool_reply(submit({"design": "d"}), raw_usage=reread),
    )
    sunk: list[float] = []

    async def sink(ru: RequestUsage) -> None:
        sunk.append(ru.cost_usd)

    request = request_for(tmp_path)
    request.meter = AttemptMeter(sink=sink)

    result = await run_loop(model, tmp_path, request=request)

    first, second = request.meter.requests
    # 10*3 + 50*15 + 2000*3.75 + 1000*6 = 14280 per MTok
    assert first.cost_usd == pytest.approx(0.01428)
    assert (first.cache_write_5m_tokens, first.cache_write_1h_tokens) == (2000, 1000)
    # 20*3 + 30*15 + 3000*0.3 = 1410 per MTok
    assert second.cost_usd == pytest.approx(0.00141)
    assert {first.model, second.model} == {DEFAULT_MODEL}
    assert first.request_id is not None and first.request_id != second.request_id
    assert sunk == [first.cost_usd, second.cost_usd]
    assert result.usage.requests == 2
    assert result.usage.cost_usd == pytest.approx(0.01569)
    assert result.usage.cache_write_tokens == 3000
    assert result.usage.cache_read_tokens == 3000
    assert result.usage.input_tokens == 30


# -- prompt caching ---------------------------------------------------------------------------


async def test_cache_breakpoints_on_the_stable_prefix_and_the_latest_turns(
    tmp_path: Path,
) -> None:
    lookup, _ = counting_tool()
    model = fake_model(
        tool_reply(tool_use("lookup", {"q": "1"})),
        tool_reply(tool_use("lookup", {"q": "2"})),
        tool_reply(tool_use("lookup", {"q": "3"})),
        tool_reply(submit({"design": "d"})),
    )

    await run_loop(model, tmp_path, extra_tools=[lookup])

    assert len(model.calls) == 4
    for call in model.calls:
        assert call.tools[-1]["cache_control"] == EPHEMERAL
        assert all("cache_control" not in t for t in call.tools[:-1])
        assert call.system[-1]["cache_control"] == EPHEMERAL
        total = sum(count_breakpoints(x) for x in (call.system, call.tools, call.messages))
        assert total <= MAX_CACHE_BREAKPOINTS
    user_marks = [
        [i for i, m in enumerate(c.messages) if m["role"] == "user" and count_breakpoints(m)]
        for c in model.calls
    ]
    # the conversation breakpoint follows the latest user turn, plus the one before it
    assert user_marks == [[0], [0, 2], [2, 4], [4, 6]]
    for call in model.calls:
        last = call.messages[-1]["content"][-1]
        assert last["cache_control"] == EPHEMERAL
    # assistant turns go back unchanged, without markers
    assert all(
        count_breakpoints(m) == 0 for m in model.calls[3].messages if m["role"] == "assistant"
    )


async def test_the_conversation_kept_between_requests_has_no_stale_breakpoints(
    tmp_path: Path,
) -> None:
    lookup, _ = counting_tool()
    model = fake_model(
        tool_reply(tool_use("lookup", {"q": "1"})),
        tool_reply(tool_use("lookup", {"q": "2"})),
        tool_reply(submit({"design": "d"})),
    )

    await run_loop(model, tmp_path, extra_tools=[lookup])

    # the brief went out as a marked block while it was recent, and plain once it was not
    assert model.calls[0].messages[0]["content"][0]["cache_control"] == EPHEMERAL
    assert model.calls[2].messages[0]["content"] == CONTEXT.brief
    assert count_breakpoints(model.calls[2].messages[0]) == 0


# -- fallback ---------------------------------------------------------------------------------


async def test_overloaded_switches_to_the_fallback_for_the_rest_of_the_attempt(
    tmp_path: Path,
) -> None:
    lookup, _ = counting_tool()
    model = fake_model(
        overloaded(),
        tool_reply(tool_use("lookup", {"q": "x"}), model=FALLBACK_MODEL),
        tool_reply(submit({"design": "d"}), model=FALLBACK_MODEL),
    )
    request = request_for(tmp_path)

    result = await run_loop(
        model, tmp_path, request=request, fallback=FALLBACK_MODEL, extra_tools=[lookup]
    )

    assert [c.model for c in model.calls] == [DEFAULT_MODEL, FALLBACK_MODEL, FALLBACK_MODEL]
    assert model.calls[0].messages == model.calls[1].messages  # the same request, resent
    assert result.status == "passed"
    assert (result.model, result.model_requested) == (FALLBACK_MODEL, DEFAULT_MODEL)
    assert [r.model_requested for r in request.meter.requests] == [FALLBACK_MODEL] * 2
    # priced at the fallback's rates: 100*1 + 20*5 per MTok
    assert request.meter.requests[0].cost_usd == pytest.approx(0.0002)


async def test_overloaded_without_a_fallback_propagates(tmp_path: Path) -> None:
    error = overloaded()
    model = fake_model(error)

    with pytest.raises(ModelError) as caught:
        await run_loop(model, tmp_path)

    assert caught.value is error
    assert len(model.calls) == 1


async def test_an_overloaded_fallback_propagates(tmp_path: Path) -> None:
    second = overloaded("fallback overloaded too")
    model = fake_model(overloaded(), second)

    with pytest.raises(ModelError) as caught:
        await run_loop(model, tmp_path, fallback=FALLBACK_MODEL)

    assert caught.value is second
    assert [c.model for c in model.calls] == [DEFAULT_MODEL, FALLBACK_MODEL]


async def test_other_model_errors_propagate_without_fallback(tmp_path: Path) -> None:
    error = ModelError("ANTHROPIC_API_KEY rejected", retryable=False, status_code=401, kind="auth")
    model = fake_model(error)

    with pytest.raises(ModelError) as caught:
        await run_loop(model, tmp_path, fallback=FALLBACK_MODEL)

    assert caught.value is error
    assert (caught.value.kind, caught.value.retryable) == ("auth", False)
    assert len(model.calls) == 1


@pytest.mark.parametrize("maybe_billed", [True, False])
async def test_a_failed_request_keeps_its_reservation_only_when_it_may_have_been_billed(
    tmp_path: Path, maybe_billed: bool
) -> None:
    failure = ModelError("dropped", retryable=True, kind="connection", maybe_billed=maybe_billed)
    model = fake_model(failure)
    request = request_for(tmp_path, budget_remaining_usd=1.0)

    with pytest.raises(ModelError):
        await run_loop(model, tmp_path, request=request)

    held = attempt_usage(request.meter).cost_usd
    if maybe_billed:  # a timeout or a dropped connection: counted as spent
        assert len(request.meter.in_flight) == 1 and held == request.meter.in_flight[0].usd > 0
        assert request.meter.remaining_usd() == pytest.approx(1.0 - held)
    else:  # refused, or never sent: nothing held
        assert request.meter.in_flight == [] and held == 0.0


def test_an_attempt_cut_short_counts_at_least_its_runners_share() -> None:
    # Claude Code holds its --max-budget-usd share; killed before it reported its last request,
    # the attempt counts the share, not just the messages its stream had closed (review)
    meter = AttemptMeter()
    meter.reserve(0.4)
    assert attempt_usage(meter).cost_usd == 0.0  # finished normally: what was reported
    assert attempt_usage(meter, cut_short=True).cost_usd == pytest.approx(0.4)
