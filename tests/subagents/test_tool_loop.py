"""The tool-use loop: tools run, results go back in one turn, submit_result ends the stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from stageflow.models.client import ModelCall, ModelReply
from stageflow.subagents.submit import check_submission
from stageflow.subagents.tool_loop import ExtraTool, LoopLimits, run_tool_loop
from stageflow.workspace.root import Workspace
from tests.subagents.fake_model import (
    DEFAULT_MODEL,
    fake_model,
    submit,
    text_reply,
    tool_reply,
    tool_use,
)
from tests.subagents.tool_loop_kit import (
    CONTEXT,
    FILE_TOOLS,
    PRICES,
    counting_tool,
    last_text,
    request_for,
    run_loop,
    tool_results,
)

pytestmark = pytest.mark.anyio


async def test_tool_calls_then_submit_returns_the_submission(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("def login():\n    return True\n")
    read = tool_use("Read", {"file_path": "app.py"})
    write = tool_use("Write", {"file_path": "notes.md", "content": "rate limit login\n"})
    model = fake_model(
        tool_reply(read, text="Reading the code."),
        tool_reply(write),
        tool_reply(
            submit({"design": "# Design\nlimit login"}, summary="designed", outputs={"ok": True})
        ),
    )
    request = request_for(tmp_path)

    result = await run_loop(model, tmp_path, request=request)

    assert result.status == "passed"
    assert result.summary == "designed"
    assert result.artifacts == {"design": "# Design\nlimit login"}
    assert result.outputs == {"ok": True}
    assert (result.model, result.model_requested, result.runner) == (
        DEFAULT_MODEL,
        DEFAULT_MODEL,
        "anthropic",
    )
    assert result.error is None
    assert result.usage.requests == 3
    assert (tmp_path / "notes.md").read_text() == "rate limit login\n"
    assert len(model.calls) == 3
    # the read's output went back to the model, tied to its call
    [read_result] = tool_results(model.calls[1])
    assert read_result["tool_use_id"] == read["id"]
    assert "return True" in read_result["content"]
    assert "is_error" not in read_result
    # the conversation: brief, the assistant turn unchanged, the tool results
    second = model.calls[1].messages
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"] == [{"type": "text", "text": "Reading the code."}, read]


async def test_first_request_carries_system_brief_tools_and_limits(tmp_path: Path) -> None:
    model = fake_model(tool_reply(submit({"design": "d"})))
    request = request_for(tmp_path)

    await run_loop(model, tmp_path, request=request, limits=LoopLimits(max_tokens=1234))

    first = model.calls[0]
    assert first.model == DEFAULT_MODEL
    assert first.max_tokens == 1234
    assert [b["text"] for b in first.system] == [CONTEXT.system]
    assert [m["role"] for m in first.messages] == ["user"]
    assert last_text(first) == CONTEXT.brief
    names = [t["name"] for t in first.tools]
    assert names[-1] == "submit_result"
    assert set(names[:-1]) == set(FILE_TOOLS)
    assert request.meter.context == CONTEXT.manifest()


async def test_parallel_tool_calls_are_answered_in_one_user_turn_in_order(
    tmp_path: Path,
) -> None:
    calls = [
        tool_use("Write", {"file_path": "a.txt", "content": "alpha\n"}),
        tool_use("Write", {"file_path": "b.txt", "content": "beta\n"}),
        tool_use("Read", {"file_path": "a.txt"}),
    ]
    model = fake_model(tool_reply(*calls), tool_reply(submit({"design": "d"})))

    result = await run_loop(model, tmp_path)

    assert result.status == "passed"
    second = model.calls[1]
    assert [m["role"] for m in second.messages] == ["user", "assistant", "user"]
    results = tool_results(second)
    assert [r["tool_use_id"] for r in results] == [c["id"] for c in calls]
    assert all("is_error" not in r for r in results)
    assert "alpha" in results[2]["content"]  # the read ran after the write before it
    assert (tmp_path / "b.txt").read_text() == "beta\n"


async def test_a_refused_tool_call_goes_back_as_an_error_and_the_loop_continues(
    tmp_path: Path,
) -> None:
    escape = tool_use("Read", {"file_path": "../outside.txt"})
    model = fake_model(tool_reply(escape), tool_reply(submit({"design": "d"})))

    result = await run_loop(model, tmp_path)

    assert result.status == "passed"
    [refused] = tool_results(model.calls[1])
    assert refused["tool_use_id"] == escape["id"]
    assert refused["is_error"] is True
    assert refused["content"].startswith("Read failed: ")


async def test_an_unknown_tool_or_bad_input_is_an_error_result(tmp_path: Path) -> None:
    unknown = tool_use("WebFetch", {"url": "https://example.com"})
    bash = tool_use("Bash", {"command": "ls"})  # not offered to this stage
    bad = {"type": "tool_use", "id": "toolu_bad", "name": "Read", "input": "app.py"}
    model = fake_model(tool_reply(unknown, bash, bad), tool_reply(submit({"design": "d"})))

    result = await run_loop(model, tmp_path)

    assert result.status == "passed"
    first, second, third = tool_results(model.calls[1])
    assert first["is_error"] is True
    assert first["content"].startswith("unknown tool 'WebFetch'; the tools are: ")
    assert "submit_result" in first["content"]
    assert second["is_error"] is True
    assert second["content"].startswith("unknown tool 'Bash'")
    assert third == {
        "type": "tool_result",
        "tool_use_id": "toolu_bad",
        "content": "tool 'Read': the input must be a JSON object",
        "is_error": True,
        "cache_control": {"type": "ephemeral"},
    }


async def test_extra_tools_are_offered_and_called(tmp_path: Path) -> None:
    lookup, seen = counting_tool(answer="ADR-7: use a token bucket")
    call = tool_use("lookup", {"q": "rate limit"})
    model = fake_model(tool_reply(call), tool_reply(submit({"design": "d"})))

    await run_loop(model, tmp_path, extra_tools=[lookup])

    assert [t["name"] for t in model.calls[0].tools][-2:] == ["lookup", "submit_result"]
    assert seen == [{"q": "rate limit"}]
    [answer] = tool_results(model.calls[1])
    assert answer["content"] == "ADR-7: use a token bucket"


async def test_an_os_error_from_a_tool_is_an_error_result(tmp_path: Path) -> None:
    async def broken(args: dict[str, Any]) -> str:
        raise PermissionError(13, "Permission denied", "index.db")

    lookup = ExtraTool(definition={**counting_tool()[0].definition}, call=broken)
    model = fake_model(
        tool_reply(tool_use("lookup", {"q": "x"})), tool_reply(submit({"design": "d"}))
    )

    result = await run_loop(model, tmp_path, extra_tools=[lookup])

    assert result.status == "passed"
    [failure] = tool_results(model.calls[1])
    assert failure["is_error"] is True
    assert failure["content"] == "lookup failed: [Errno 13] Permission denied: 'index.db'"


async def test_text_a_tool_cannot_encode_is_an_error_result_without_the_text(
    tmp_path: Path,
) -> None:
    async def encodes(args: dict[str, Any]) -> str:
        return str(args["q"]).encode("utf-8").decode()  # a lone surrogate cannot be encoded

    lookup = ExtraTool(definition={**counting_tool()[0].definition}, call=encodes)
    model = fake_model(
        tool_reply(tool_use("lookup", {"q": "bad \ud800"})), tool_reply(submit({"design": "d"}))
    )

    result = await run_loop(model, tmp_path, extra_tools=[lookup])

    assert result.status == "passed"
    [failure] = tool_results(model.calls[1])
    assert failure["is_error"] is True
    assert failure["content"] == "lookup failed: its input contains text that is not valid Unicode"


async def test_submit_without_an_artifact_is_refused_with_what_is_missing_then_accepted(
    tmp_path: Path,
) -> None:
    incomplete = submit({"design": "the design"})
    model = fake_model(
        tool_reply(incomplete),
        tool_reply(submit({"design": "the design", "test_plan": "the plan"})),
    )
    request = request_for(tmp_path, produces=["design", "test_plan"])

    result = await run_loop(model, tmp_path, request=request)

    assert result.status == "passed"
    assert result.artifacts == {"design": "the design", "test_plan": "the plan"}
    [refusal] = tool_results(model.calls[1])
    expected = (
        "submit_result refused: missing required artifact(s): test_plan. This stage must "
        "produce: design, test_plan. Fix this and call submit_result again."
    )
    assert refusal == {
        "type": "tool_result",
        "tool_use_id": incomplete["id"],
        "content": expected,
        "is_error": True,
        "cache_control": {"type": "ephemeral"},  # the latest user turn's breakpoint
    }
    assert check_submission(incomplete["input"], ["design", "test_plan"]) == expected
    # the refused submit's request is counted too
    assert result.usage.requests == 2
    assert len(request.meter.requests) == 2


async def test_other_calls_in_the_submit_turn_run_first(tmp_path: Path) -> None:
    done = submit({"design": "see design.md"})
    write = tool_use("Write", {"file_path": "design.md", "content": "# Design\n"})
    model = fake_model(tool_reply(done, write))  # submit listed before the write

    result = await run_loop(model, tmp_path)

    assert result.status == "passed"
    assert (tmp_path / "design.md").read_text() == "# Design\n"
    assert len(model.calls) == 1


async def test_submit_is_not_accepted_when_a_call_in_the_same_turn_failed(
    tmp_path: Path,
) -> None:
    write = tool_use("Write", {"file_path": "../elsewhere.md", "content": "x"})
    done = submit({"design": "d"})
    model = fake_model(tool_reply(write, done), tool_reply(submit({"design": "d2"})))

    result = await run_loop(model, tmp_path)

    assert result.artifacts == {"design": "d2"}
    write_result, submit_result = tool_results(model.calls[1])
    assert write_result["is_error"] is True
    assert submit_result["is_error"] is True
    assert submit_result["content"].startswith(
        "submit_result not accepted: other tool calls in the same turn failed (Write)"
    )


async def test_ending_the_turn_without_submitting_gets_a_nudge(tmp_path: Path) -> None:
    model = fake_model(
        text_reply("Here is my design: ..."),
        tool_reply(submit({"design": "d"})),
    )

    result = await run_loop(model, tmp_path)

    assert result.status == "passed"
    nudge = last_text(model.calls[1])
    assert nudge.startswith("You ended your turn without calling submit_result.")
    assert "required artifacts (design)" in nudge


async def test_a_reply_cut_off_at_max_tokens_is_asked_to_continue(tmp_path: Path) -> None:
    model = fake_model(
        text_reply("The design is", stop_reason="max_tokens"),
        tool_reply(submit({"design": "d"})),
    )

    await run_loop(model, tmp_path)

    assert last_text(model.calls[1]).startswith("Your reply was cut off at the max_tokens limit.")


async def test_tool_calls_cut_off_at_max_tokens_are_not_run(tmp_path: Path) -> None:
    write = tool_use("Write", {"file_path": "half.md", "content": "trunc"})
    model = fake_model(
        tool_reply(write, stop_reason="max_tokens"),
        tool_reply(submit({"design": "d"})),
    )

    await run_loop(model, tmp_path, limits=LoopLimits(max_tokens=50))

    assert not (tmp_path / "half.md").exists()
    [result] = tool_results(model.calls[1])
    assert result["is_error"] is True
    assert result["content"].startswith("not run: your reply reached the max_tokens limit (50)")


async def test_a_refusal_fails_the_attempt(tmp_path: Path) -> None:
    model = fake_model(text_reply("I can't help with that.", stop_reason="refusal"))

    result = await run_loop(model, tmp_path)

    assert result.status == "failed"
    assert result.error == (
        "the model refused to continue (stop_reason 'refusal'): I can't help with that."
    )
    assert result.usage.requests == 1


async def test_an_empty_reply_is_not_sent_back_as_an_empty_turn(tmp_path: Path) -> None:
    empty = ModelReply(content=[], stop_reason="end_turn", model=DEFAULT_MODEL)
    model = fake_model(empty, tool_reply(submit({"design": "d"})))

    result = await run_loop(model, tmp_path)

    assert result.status == "passed"
    assert [m["role"] for m in model.calls[1].messages] == ["user", "user"]
    assert last_text(model.calls[1]).startswith("You ended your turn without calling")


async def test_pause_turn_resends_the_conversation_without_a_nudge(tmp_path: Path) -> None:
    model = fake_model(
        text_reply("Working on it", stop_reason="pause_turn"),
        tool_reply(submit({"design": "d"})),
    )

    await run_loop(model, tmp_path)

    assert [m["role"] for m in model.calls[1].messages] == ["user", "assistant"]


async def test_an_overfull_context_window_fails_the_attempt(tmp_path: Path) -> None:
    model = fake_model(text_reply("", stop_reason="model_context_window_exceeded"))

    result = await run_loop(model, tmp_path)

    assert (result.status, result.error) == (
        "failed",
        "the conversation outgrew the model's context window",
    )


async def test_a_failed_submission_needs_no_artifacts(tmp_path: Path) -> None:
    model = fake_model(tool_reply(submit(status="failed", summary="the repo has no login")))

    result = await run_loop(model, tmp_path)

    assert (result.status, result.summary, result.artifacts) == (
        "failed",
        "the repo has no login",
        {},
    )


async def test_cancelling_the_attempt_while_a_request_is_in_flight(tmp_path: Path) -> None:
    entered = anyio.Event()

    class Hanging:
        calls = 0

        async def send(self, call: ModelCall) -> ModelReply:
            self.calls += 1
            entered.set()
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        async def aclose(self) -> None:
            pass

    client = Hanging()
    request = request_for(tmp_path)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def attempt() -> None:
                await run_tool_loop(
                    client,
                    request=request,
                    context=CONTEXT,
                    workspace=Workspace(tmp_path),
                    tool_names=FILE_TOOLS,
                    prices=PRICES,
                    model=DEFAULT_MODEL,
                )

            tg.start_soon(attempt)
            await entered.wait()
            tg.cancel_scope.cancel()

    assert client.calls == 1
    assert request.meter.requests == []
