"""Reading ``claude -p --output-format stream-json``: per-request usage as it arrives, the
result's top-up, and the runner recording both (a fake ``claude`` prints scripted streams)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from stageflow.engine.runner import AttemptMeter
from stageflow.errors import StageTimeout
from stageflow.models.client import RawUsage
from stageflow.models.pricing import PriceTable
from stageflow.subagents.claude_code.result import ModelUse, parse_result
from stageflow.subagents.claude_code.runner import ClaudeCodeRunner
from stageflow.subagents.claude_code.stream import LineSplitter, StreamReader, unseen_usage
from stageflow.usage import RequestUsage
from tests.subagents.claude_code.test_runner import (
    MODEL,
    FakeClaude,
    answer,
    request,
    result_json,
    runner,
)

HAIKU = "claude-haiku-4-5"
PRICES = PriceTable()


def usage(
    inp: int = 10, out: int = 1, read: int = 0, write: int = 0, hour: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
        "cache_creation": {
            "ephemeral_5m_input_tokens": write - hour,
            "ephemeral_1h_input_tokens": hour,
        },
    }


def start(mid: str, model: str = MODEL, parent: str | None = None, **u: int) -> str:
    message = {"id": mid, "model": model, "usage": usage(**u)}
    event = {"type": "message_start", "message": message}
    return json.dumps({"type": "stream_event", "event": event, "parent_tool_use_id": parent})


def delta(out: int, parent: str | None = None, **u: int) -> str:
    body = {k: v for k, v in usage(out=out, **u).items() if k != "cache_creation"}
    event = {"type": "message_delta", "usage": body}
    return json.dumps({"type": "stream_event", "event": event, "parent_tool_use_id": parent})


def stop(parent: str | None = None) -> str:
    event = {"type": "message_stop"}
    return json.dumps({"type": "stream_event", "event": event, "parent_tool_use_id": parent})


def assistant(mid: str, model: str = MODEL, parent: str | None = None, **u: int) -> str:
    message = {"id": mid, "model": model, "usage": usage(**u), "content": []}
    return json.dumps({"type": "assistant", "message": message, "parent_tool_use_id": parent})


def one_request(
    mid: str, *, inp: int, out: int, read: int = 0, write: int = 0, hour: int = 0
) -> list[str]:
    """One request as Claude Code 2.1.328 streams it: start, an assistant event per content
    block (with the placeholder output count), the final counts in the delta, stop."""
    opening = assistant(mid, inp=inp, out=1, read=read, write=write, hour=hour)
    return [
        start(mid, inp=inp, out=1, read=read, write=write, hour=hour),
        opening,
        opening,
        delta(out, inp=inp, read=read, write=write),
        stop(),
    ]


def feed_all(reader: StreamReader, lines: list[str]) -> list[Any]:
    return [m for line in lines for m in reader.feed(line)]


def counts(m: Any) -> tuple[str, str, RawUsage]:
    return m.id, m.model, m.raw()


# -- the reader ------------------------------------------------------------------------------


def test_a_request_is_counted_once_with_its_final_usage_when_it_stops() -> None:
    reader = StreamReader()
    lines = one_request("msg_1", inp=30, out=700, read=2000, write=1000, hour=250)
    assert feed_all(reader, lines[:-1]) == []  # not finished before message_stop
    [done] = reader.feed(lines[-1])
    assert counts(done) == (
        "msg_1",
        MODEL,
        RawUsage(
            input_tokens=30,
            output_tokens=700,
            cache_write_5m_tokens=750,
            cache_write_1h_tokens=250,
            cache_read_tokens=2000,
        ),
    )
    # a late assistant event of the same message is not a second request
    assert reader.feed(assistant("msg_1", out=1, inp=30)) == []
    assert reader.close() == []


def test_without_raw_events_a_message_ends_when_the_next_one_of_its_agent_begins() -> None:
    reader = StreamReader()
    assert (
        feed_all(reader, [assistant("msg_1", inp=5, out=3), assistant("msg_1", inp=5, out=3)]) == []
    )
    assert feed_all(reader, [assistant("msg_9", parent="toolu_1", inp=7)]) == []  # a subagent
    [first] = reader.feed(assistant("msg_2", inp=6))
    assert (first.id, first.input_tokens, first.output_tokens) == ("msg_1", 5, 3)
    assert sorted(m.id for m in reader.close()) == ["msg_2", "msg_9"]


def test_the_result_ends_every_open_message_and_is_kept() -> None:
    reader = StreamReader()
    feed_all(reader, [start("msg_1", inp=40), delta(12, inp=40)])
    [cut] = reader.feed(json.dumps(result_json("done")))
    assert (cut.id, cut.input_tokens, cut.output_tokens) == ("msg_1", 40, 12)
    assert reader.result is not None and reader.result["result"] == "done"


def test_numbers_the_cli_reports_as_nan_infinity_or_negative_count_as_zero() -> None:
    # Python's json reads NaN and Infinity: a NaN cost makes every budget comparison false
    # (a cap never trips) and int(NaN) raised inside the reader
    usage = (
        '{"input_tokens": NaN, "output_tokens": Infinity, "cache_read_input_tokens": -5, '
        '"cache_creation_input_tokens": 1e400}'
    )
    message = f'{{"id": "msg_1", "model": "{MODEL}", "usage": {usage}}}'
    reader = StreamReader()
    assert reader.feed(f'{{"type": "assistant", "message": {message}}}') == []
    [first] = reader.close()
    assert first.raw() == RawUsage()
    models = f'{{"m": {{"costUSD": -1e9, "inputTokens": {10**400}}}}}'
    parsed = parse_result(
        json.loads(f'{{"type": "result", "total_cost_usd": NaN, "modelUsage": {models}}}')
    )
    assert parsed.total_cost_usd == 0.0
    assert [(m.cost_usd, m.input_tokens) for m in parsed.models] == [(0.0, 0)]


def test_lines_that_are_not_json_are_kept_to_explain_a_failure() -> None:
    reader = StreamReader()
    for line in ["", "Error: not logged in", "[1, 2]", '{"type": "system", "subtype": "init"}']:
        assert reader.feed(line) == []
    assert reader.text == "Error: not logged in\n[1, 2]"
    assert reader.result is None


def test_the_line_splitter_keeps_characters_split_across_chunks() -> None:
    data = "Fehler: ungültig\n{}\ntail".encode()
    cut = data.index("ü".encode()) + 1  # inside the two bytes of ü
    lines = LineSplitter()
    got = lines.feed(data[:cut]) + lines.feed(data[cut:]) + lines.close()
    assert got == ["Fehler: ungültig", "{}", "tail"]
    assert lines.close() == []


# -- squaring with the CLI's totals ------------------------------------------------------------


def recorded(model: str = MODEL, **u: int) -> RequestUsage:
    raw = RawUsage(**u)
    return PRICES.request_usage(model=model, model_requested=model, usage=raw, request_id="m")


def cli_use(entry: RequestUsage, *, cost: float | None = None, **more: int) -> ModelUse:
    return ModelUse(
        model=entry.model,
        input_tokens=entry.input_tokens + more.get("input_tokens", 0),
        output_tokens=entry.output_tokens + more.get("output_tokens", 0),
        cache_read_tokens=entry.cache_read_tokens,
        cache_write_5m_tokens=entry.cache_write_5m_tokens,
        cache_write_1h_tokens=entry.cache_write_1h_tokens,
        cost_usd=entry.cost_usd if cost is None else cost,
    )


def top_up(cli: list[ModelUse], seen: list[RequestUsage]) -> list[RequestUsage]:
    return unseen_usage(
        cli, seen, model_requested=MODEL, request_id="session", fallback_model=MODEL
    )


def test_nothing_is_added_when_the_cli_counted_what_the_stream_showed() -> None:
    seen = [recorded(input_tokens=100, output_tokens=50, cache_write_1h_tokens=40)]
    # the CLI splits cache writes 5m/1h by a session ratio: only their total is compared
    cli = ModelUse(
        model=MODEL,
        input_tokens=100,
        output_tokens=50,
        cache_write_5m_tokens=30,
        cache_write_1h_tokens=10,
        cost_usd=seen[0].cost_usd + 1e-12,  # float noise
    )
    assert top_up([cli], seen) == []


def test_requests_the_stream_did_not_show_are_added_with_the_clis_cost() -> None:
    seen = [recorded(input_tokens=100, output_tokens=50)]
    side = ModelUse(model=HAIKU, input_tokens=300, output_tokens=20, cost_usd=0.0004)
    main = cli_use(seen[0], cost=seen[0].cost_usd + 0.001, input_tokens=200)
    entries = top_up([main, side], seen)
    assert [(e.model, e.input_tokens, e.output_tokens, e.request_id) for e in entries] == [
        (MODEL, 200, 0, "session"),
        (HAIKU, 300, 20, "session"),
    ]
    assert [e.cost_usd for e in entries] == [pytest.approx(0.001), 0.0004]


def test_with_nothing_on_the_stream_the_result_is_recorded_per_model() -> None:
    use = ModelUse(model=MODEL, input_tokens=30, output_tokens=15, cost_usd=0.0123)
    [entry] = top_up([use], [])
    assert (entry.model, entry.input_tokens, entry.output_tokens, entry.cost_usd) == (
        MODEL,
        30,
        15,
        0.0123,
    )


def test_our_higher_price_stays_and_an_unpriced_model_takes_the_clis() -> None:
    seen = [recorded(input_tokens=100, output_tokens=50)]
    assert top_up([cli_use(seen[0], cost=seen[0].cost_usd / 2)], seen) == []
    unknown = [recorded("claude-future-9", input_tokens=100, output_tokens=50)]
    assert (unknown[0].priced, unknown[0].cost_usd) == (False, 0.0)
    [entry] = top_up([cli_use(unknown[0], cost=0.25)], unknown)
    assert (entry.model, entry.input_tokens, entry.cost_usd) == ("claude-future-9", 0, 0.25)


def test_a_dated_model_name_matches_its_alias_and_unmatched_names_never_double_count() -> None:
    seen = [recorded(input_tokens=100, output_tokens=50)]
    dated = cli_use(seen[0])
    dated = ModelUse(**{**dated.__dict__, "model": f"{MODEL}-20260101"})
    assert top_up([dated], seen) == []
    # a name that matches nothing: one entry for the difference of the totals, never the whole
    other = ModelUse(
        **{**dated.__dict__, "model": "some-other-name", "cost_usd": dated.cost_usd + 0.01}
    )
    [entry] = top_up([other], seen)
    assert (entry.model, entry.input_tokens, entry.output_tokens) == (MODEL, 0, 0)
    assert entry.cost_usd == pytest.approx(0.01)


# -- the runner --------------------------------------------------------------------------------


def stream(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


@pytest.fixture
def fake(tmp_path: Path) -> FakeClaude:
    return FakeClaude(tmp_path / "bin")


async def run(claude: ClaudeCodeRunner, req: Any) -> Any:
    with anyio.fail_after(30):
        return await claude.run(req)


@pytest.mark.anyio
async def test_each_request_on_the_stream_is_one_ledger_entry_priced_by_our_table(
    tmp_path: Path, fake: FakeClaude
) -> None:
    first = one_request("msg_1", inp=30, out=40, write=1000)
    second = one_request("msg_2", inp=5, out=700, read=1000)
    side = {"inputTokens": 400, "outputTokens": 10, "costUSD": 0.0005}
    ours = [
        PRICES.cost(MODEL, RawUsage(input_tokens=30, output_tokens=40, cache_write_5m_tokens=1000))[
            0
        ],
        PRICES.cost(MODEL, RawUsage(input_tokens=5, output_tokens=700, cache_read_tokens=1000))[0],
    ]
    main = {
        "inputTokens": 35,
        "outputTokens": 740,
        "cacheReadInputTokens": 1000,
        "cacheCreationInputTokens": 1000,
        "costUSD": sum(ours),
    }
    result = result_json(answer({"design": "# D"}), modelUsage={MODEL: main, HAIKU: side})
    fake.script(stdout=stream(*first, *second, json.dumps(result)))
    req = request(tmp_path)
    outcome = await run(runner(fake), req)

    argv = fake.call()["argv"]
    assert argv[argv.index("--output-format") + 1] == "stream-json"
    assert {"--verbose", "--include-partial-messages"} <= set(argv)
    assert argv[argv.index("--setting-sources") + 1] == ""
    assert outcome.status == "passed"
    ledger = [(r.request_id, r.model, r.input_tokens, r.output_tokens) for r in req.meter.requests]
    assert ledger == [
        ("msg_1", MODEL, 30, 40),
        ("msg_2", MODEL, 5, 700),
        (result["session_id"], HAIKU, 400, 10),  # the CLI's side request, not on the stream
    ]
    costs = [r.cost_usd for r in req.meter.requests]
    assert costs == [pytest.approx(ours[0]), pytest.approx(ours[1]), 0.0005]
    assert outcome.usage == req.meter.usage and outcome.usage.requests == 3


@pytest.mark.anyio
@pytest.mark.parametrize("ending", ["timeout", "cancel"])
async def test_a_killed_claude_keeps_the_spend_of_the_requests_it_made(
    tmp_path: Path, fake: FakeClaude, ending: str
) -> None:
    done = one_request("msg_1", inp=30, out=40)
    cut = [start("msg_2", inp=50), delta(7, inp=50)]  # killed while streaming its answer
    fake.script(stdout=stream(*done, *cut), hang_after_output=True)
    req = request(tmp_path, timeout=2.0 if ending == "timeout" else 60.0)
    claude = runner(fake, kill_grace=0.5)
    with anyio.fail_after(30):
        if ending == "timeout":
            with pytest.raises(StageTimeout):
                await claude.run(req)
        else:
            async with anyio.create_task_group() as tg:
                tg.start_soon(claude.run, req)
                while len(req.meter.requests) < 1:  # noqa: ASYNC110 (the meter has no event)
                    await anyio.sleep(0.02)
                tg.cancel_scope.cancel()
    ledger = [(r.request_id, r.input_tokens, r.output_tokens) for r in req.meter.requests]
    assert ledger == [("msg_1", 30, 40), ("msg_2", 50, 7)]
    assert req.meter.usage.cost_usd > 0


@pytest.mark.anyio
async def test_parallel_attempts_get_a_share_of_the_caps_and_reserve_it(
    tmp_path: Path, fake: FakeClaude
) -> None:
    fake.script(result_json(answer({"design": "x"})))
    meter = AttemptMeter(remaining=lambda: 1.0, sharers=lambda: 4)
    req = request(tmp_path).model_copy(update={"meter": meter})
    await run(runner(fake), req)
    argv = fake.call()["argv"]
    assert argv[argv.index("--max-budget-usd") + 1] == "0.250000"
    assert meter.reserved == 0.25


@pytest.mark.anyio
async def test_the_brief_carries_the_worktrees_claude_md_since_claude_reads_no_settings(
    tmp_path: Path, fake: FakeClaude
) -> None:
    fake.script(result_json(answer({"design": "x"})))
    req = request(tmp_path)
    req.workdir.mkdir(parents=True)
    (req.workdir / "CLAUDE.md").write_text("Always name the files you touch.\n")
    await run(ClaudeCodeRunner(executable=str(fake.path)), req)
    brief = fake.call()["argv"][-1]
    assert "## Project context: CLAUDE.md" in brief
    assert "Always name the files you touch." in brief
    assert req.meter.context["items"][-1]["ref"] == "CLAUDE.md"
