"""The scripted stage agent: a real client tool loop against the stand-in, and unit checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from anthropic import AsyncAnthropic

from tests.standin import AgentConfig, StageAgent, StandIn, stage_info
from tests.standin.tokens import canonical

Json = dict[str, Any]

BRIEF = """\
# Stage `testing` (attempt 1, initial)

## Task
Add CSV export to the monthly usage report

## Your goal
Verify the implementation; read `src/report.py` first.

## You must produce
- `test_report`

## Upstream artifact `architecture.design`
```markdown
# Design
Export rows as CSV.
```

## How to finish
Call the `submit_result` tool exactly once."""


def path_tool(name: str, *props: str) -> Json:
    return {
        "name": name,
        "description": f"{name} in the workspace",
        "input_schema": {
            "type": "object",
            "properties": {p: {"type": "string"} for p in props},
            "required": list(props),
        },
    }


def submit_tool(required: list[str]) -> Json:
    return {
        "name": "submit_result",
        "description": "Finish the stage.",
        "input_schema": {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["passed", "failed", "changes_requested"]},
                "summary": {"type": "string"},
                "artifacts": {
                    "type": "object",
                    "properties": {n: {"type": "string"} for n in required},
                    "required": required,
                },
                "outputs": {"type": "object"},
            },
            "required": ["status", "summary", "artifacts"],
        },
    }


WORKSPACE_TOOLS = [
    path_tool("Glob", "pattern"),
    path_tool("Read", "path"),
    path_tool("Write", "path", "content"),
]


def make_project(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("def main():\n    return 0\n")
    (root / "src" / "report.py").write_text("def monthly():\n    return []\n")
    (root / "src" / "util.py").write_text("X = 1\n")
    return root


def run_tool(root: Path, name: str, args: Json) -> str:
    """Tiny workspace tools, enough for the agent's script."""
    if name == "Glob":
        return "\n".join(sorted(str(p.relative_to(root)) for p in root.glob(args["pattern"])))
    if name == "Read":
        return (root / str(args["path"])).read_text()
    if name == "Write":
        target = root / args["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(args["content"])
        return f"wrote {len(args['content'])} characters to {args['path']}"
    raise AssertionError(name)


async def tool_loop(
    api: StandIn, root: Path, tools: list[Json], required: list[str], max_turns: int = 10
) -> tuple[list[list[str]], Json, list[str]]:
    """A minimal tool loop: returns the tool names per turn, the accepted submission, refusals."""
    client = AsyncAnthropic(api_key="test", base_url=api.base_url, max_retries=0, timeout=10)
    messages: list[Json] = [{"role": "user", "content": BRIEF}]
    turns: list[list[str]] = []
    refusals: list[str] = []
    try:
        for _ in range(max_turns):
            reply = await client.messages.create(
                model="claude-test",
                max_tokens=4096,
                system="You are the tester of a stageflow workflow.",
                tools=tools,  # type: ignore[arg-type]
                messages=messages,  # type: ignore[arg-type]
            )
            uses = [b for b in reply.content if b.type == "tool_use"]
            turns.append([b.name for b in uses])
            messages.append(
                {
                    "role": "assistant",
                    "content": [b.model_dump(exclude_none=True) for b in reply.content],
                }
            )
            results = []
            for use in uses:
                args: Json = dict(use.input)
                if use.name == "submit_result":
                    missing = [n for n in required if n not in args["artifacts"]]
                    if not missing:
                        return turns, args, refusals
                    text = "missing required artifacts: " + ", ".join(f"`{n}`" for n in missing)
                    refusals.append(text)
                    results.append(
                        {
                            "type": "tool_result",
                            "tool_use_id": use.id,
                            "content": text,
                            "is_error": True,
                        }
                    )
                else:
                    results.append(
                        {
                            "type": "tool_result",
                            "tool_use_id": use.id,
                            "content": run_tool(root, use.name, args),
                        }
                    )
            messages.append({"role": "user", "content": results})
    finally:
        await client.close()
    raise AssertionError(f"no submission in {max_turns} turns: {turns}")


@pytest.mark.anyio
async def test_the_agent_explores_writes_notes_and_submits_every_required_artifact(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path)
    tools = [*WORKSPACE_TOOLS, submit_tool(["test_report", "coverage_notes"])]
    with StandIn() as api, anyio.fail_after(20):
        turns, submission, refusals = await tool_loop(
            api, root, tools, ["test_report", "coverage_notes"]
        )
    assert turns == [["Glob"], ["Read", "Read"], ["Write"], ["submit_result"]]
    assert refusals == []
    reads = [
        b["input"]["path"]
        for r in api.message_requests()
        for b in r.reply["content"]  # type: ignore[index]
        if b["type"] == "tool_use" and b["name"] == "Read"
    ]
    assert reads == ["src/report.py", "src/app.py"]  # the brief's file first, then the glob's
    note = (root / "notes" / "testing.md").read_text()
    assert "Stage `testing`" in note
    assert submission["status"] == "passed"
    assert submission["outputs"] == {"passed": True}
    assert set(submission["artifacts"]) == {"test_report", "coverage_notes"}
    for text in submission["artifacts"].values():
        assert 1500 <= len(text) <= 3000
        assert "Stage `testing`" in text
        assert "upstream artifact `architecture.design`" in text
        assert "file `src/report.py`" in text


@pytest.mark.anyio
async def test_a_refused_submission_is_sent_again_with_the_missing_artifact(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path)
    tools = [*WORKSPACE_TOOLS, submit_tool([])]  # the schema does not say, the refusal does
    with StandIn() as api, anyio.fail_after(20):
        turns, submission, refusals = await tool_loop(
            api, root, tools, ["test_report", "risk_list"]
        )
    assert refusals == ["missing required artifacts: `risk_list`"]
    assert turns[-2:] == [["submit_result"], ["submit_result"]]
    assert set(submission["artifacts"]) == {"test_report", "risk_list"}


def _body(messages: list[Json], tools: list[Json] | None = None, system: str = "") -> Json:
    return {
        "model": "m",
        "max_tokens": 10,
        "system": system or "You are the tester of a stageflow workflow.",
        "tools": tools if tools is not None else [*WORKSPACE_TOOLS, submit_tool(["test_report"])],
        "messages": messages,
    }


def _results_turn(assistant: Json, texts: list[str], extra_text: str = "") -> Json:
    content: list[Json] = [
        {"type": "tool_result", "tool_use_id": b["id"], "content": t}
        for b, t in zip(
            [b for b in assistant["content"] if b["type"] == "tool_use"], texts, strict=True
        )
    ]
    if extra_text:
        content.append({"type": "text", "text": extra_text})
    return {"role": "user", "content": content}


def test_the_next_step_comes_from_the_last_user_turn_only() -> None:
    agent = StageAgent()
    first: Json = {"role": "user", "content": BRIEF}
    glob: Json = {"role": "assistant", "content": agent.turn(_body([first])).content}
    after_glob = [first, glob, _results_turn(glob, ["src/a.py\nsrc/b.py"])]
    read = agent.turn(_body(after_glob))
    assert [b["name"] for b in read.content if b["type"] == "tool_use"] == ["Read", "Read"]
    # the same request again (a retry) gets the same turn
    assert agent.turn(_body(after_glob)) == read
    # results of Read, however long the conversation before, lead to Write
    read_msg: Json = {"role": "assistant", "content": read.content}
    long = [*after_glob, read_msg, _results_turn(read_msg, ["a", "b"])]
    assert [b["name"] for b in agent.turn(_body(long)).content if b["type"] == "tool_use"] == [
        "Write"
    ]


def test_turn_sizes_do_not_depend_on_the_conversation_before_the_brief() -> None:
    agent = StageAgent()
    fresh = agent.turn(_body([{"role": "user", "content": BRIEF}]))
    # a previous stage in the same conversation, accepted, then this stage's brief
    earlier = {"role": "user", "content": "# Stage `architecture` (attempt 1, initial)"}
    submit = {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_prev", "name": "submit_result", "input": {}},
        ],
    }
    accepted = _results_turn(submit, ["accepted"], extra_text=BRIEF)
    continued = agent.turn(_body([earlier, submit, accepted]))
    assert [b["name"] for b in continued.content if b["type"] == "tool_use"] == ["Glob"]
    assert len(canonical(continued.content)) == len(canonical(fresh.content))
    assert stage_info(_body([earlier, submit, accepted])).stage == "testing"


def test_without_submit_result_the_agent_answers_with_a_json_block(tmp_path: Path) -> None:
    claude_tools = [
        path_tool("Glob", "pattern"),
        path_tool("Read", "file_path"),
        path_tool("Write", "file_path", "content"),
        path_tool("Bash", "command"),
    ]
    for tool in claude_tools[1:3]:  # Claude Code's file tools take absolute paths
        tool["input_schema"]["properties"]["file_path"]["description"] = "The absolute path"
    system = "You are the tester of a stageflow workflow.\nEnd with one fenced ```json block."
    brief = BRIEF + f"\n\nYour workspace is `{tmp_path}`; paths in tools are relative to it."
    agent = StageAgent(AgentConfig(steps=("write", "submit")))
    first = {"role": "user", "content": brief}
    write = agent.turn(_body([first], claude_tools, system))
    [use] = [b for b in write.content if b["type"] == "tool_use"]
    assert use["input"]["file_path"] == f"{tmp_path}/notes/testing.md"
    msg = {"role": "assistant", "content": write.content}
    final = agent.turn(_body([first, msg, _results_turn(msg, ["ok"])], claude_tools, system))
    assert final.stop_reason == "end_turn"
    text = final.content[0]["text"]
    block = json.loads(text.split("```json\n", 1)[1].rsplit("\n```", 1)[0])
    assert block["status"] == "passed"
    assert list(block["artifacts"]) == ["test_report"]
    assert block["outputs"] == {"passed": True}


def test_a_request_without_tools_gets_plain_text() -> None:
    turn = StageAgent().turn(
        _body([{"role": "user", "content": "Write a title for this chat"}], tools=[], system="x")
    )
    assert turn.stop_reason == "end_turn"
    assert "```json" not in turn.content[0]["text"]


def test_outputs_follow_the_role_and_the_gates_the_brief_mentions() -> None:
    review = BRIEF.replace("`testing`", "`review`") + "\nGate: review.outputs.approved == true"
    info = stage_info(
        _body(
            [{"role": "user", "content": review}],
            system="You are the reviewer of a stageflow workflow.",
        )
    )
    assert (info.stage, info.role) == ("review", "reviewer")
    assert AgentConfig().outputs(info) == {"approved": True}


def test_a_nudge_to_finish_is_answered_with_submit_result() -> None:
    agent = StageAgent()
    first: Json = {"role": "user", "content": BRIEF}
    said: Json = {"role": "assistant", "content": [{"type": "text", "text": "thinking"}]}
    nudge: Json = {
        "role": "user",
        "content": [{"type": "text", "text": "You ended your turn without calling submit_result."}],
    }
    turn = agent.turn(_body([first, said, nudge]))
    [use] = [b for b in turn.content if b["type"] == "tool_use"]
    assert use["name"] == "submit_result"
    assert list(use["input"]["artifacts"]) == ["test_report"]  # the brief is still the brief


def test_a_refusal_listing_names_without_backticks_is_understood() -> None:
    agent = StageAgent()
    first: Json = {"role": "user", "content": BRIEF}
    submitted: Json = {"role": "assistant", "content": agent.turn(_body([first])).content}
    submitted["content"] = [
        {"type": "tool_use", "id": "toolu_s", "name": "submit_result", "input": {}}
    ]
    refusal = (
        "submit_result refused: missing required artifact(s): test_report, risk_list. This "
        "stage must produce: test_report, risk_list. Fix this and call submit_result again."
    )
    result: Json = {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_s", "content": refusal, "is_error": True}
        ],
    }
    turn = agent.turn(_body([first, submitted, result]))
    [use] = [b for b in turn.content if b["type"] == "tool_use"]
    assert list(use["input"]["artifacts"]) == ["test_report", "risk_list"]


@pytest.mark.anyio
async def test_read_turns_read_one_new_file_per_turn_until_none_is_left(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    tools = [*WORKSPACE_TOOLS, submit_tool(["test_report"])]
    config = AgentConfig(read_files=1, read_turns=5)
    with StandIn(config=config) as api, anyio.fail_after(20):
        turns, submission, _ = await tool_loop(api, root, tools, ["test_report"])
        reads = [
            b["input"]["path"]
            for r in api.message_requests()
            for b in r.reply["content"]  # type: ignore[index]
            if b["type"] == "tool_use" and b["name"] == "Read"
        ]
    # three files exist: three read turns, the brief's file first, then stop reading
    assert turns == [["Glob"], ["Read"], ["Read"], ["Read"], ["Write"], ["submit_result"]]
    assert reads == ["src/report.py", "src/app.py", "src/util.py"]
    assert "file `src/util.py`" in submission["artifacts"]["test_report"]
