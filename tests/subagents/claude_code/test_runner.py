"""The Claude Code runner without Claude Code: argv building, result parsing, error mapping,
and the process handling against a small fake ``claude`` executable (a Python script that
records how it was started and prints a scripted result)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from stageflow.agents.definition import AgentDefinition
from stageflow.engine.runner import AttemptMeter, AttemptRequest
from stageflow.errors import BudgetExceeded, ModelError, StageTimeout
from stageflow.subagents.claude_code.result import (
    classify_cli_error,
    json_blocks,
    parse_cli_output,
    parse_final_answer,
)
from stageflow.subagents.claude_code.runner import (
    EMPTY_MCP_CONFIG,
    ClaudeCodeRunner,
    build_call,
    claude_tools,
    permission_rules,
)
from stageflow.subagents.context import ContextItem, StageContext
from tests.subagents.factories import agent_request, process_running

CONTEXT = StageContext(
    system="You are the architect.",
    brief="# Stage `architecture`\n\nDesign it.",
    items=[ContextItem("system", "architect", 22, 6), ContextItem("brief", "architecture", 30, 8)],
)
MODEL = "claude-sonnet-4-6"


def result_json(text: str = "", **fields: Any) -> dict[str, Any]:
    """A result object shaped like Claude Code 2.1.328's ``--output-format json``."""
    base: dict[str, Any] = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "api_error_status": None,
        "num_turns": 3,
        "result": text,
        "session_id": "0ce592d2-5744-460c-9b99-66f5afced2ce",
        "total_cost_usd": 0.0123,
        "usage": {
            "input_tokens": 30,
            "cache_creation_input_tokens": 1000,
            "cache_read_input_tokens": 2000,
            "output_tokens": 15,
            "cache_creation": {"ephemeral_1h_input_tokens": 250, "ephemeral_5m_input_tokens": 750},
        },
        "modelUsage": {
            MODEL: {
                "inputTokens": 30,
                "outputTokens": 15,
                "cacheReadInputTokens": 2000,
                "cacheCreationInputTokens": 1000,
                "webSearchRequests": 0,
                "costUSD": 0.0123,
                "contextWindow": 200000,
                "maxOutputTokens": 32000,
            }
        },
        "permission_denials": [],
        "terminal_reason": "completed",
    }
    return {**base, **fields}


def answer(artifacts: dict[str, Any], status: str = "passed", **extra: Any) -> str:
    block = json.dumps({"status": status, "summary": "done", "artifacts": artifacts, **extra})
    return f"All done.\n\n```json\n{block}\n```\n"


# -- argv -------------------------------------------------------------------------------------


def test_the_call_is_a_fresh_print_session_with_no_mcp_servers_and_the_brief_last() -> None:
    call = build_call(
        "/usr/bin/claude",
        CONTEXT,
        model=MODEL,
        fallback_model="claude-haiku-4-5",
        tools=["Read", "Write", "Edit", "Glob", "Grep", "Bash"],
        allowed=["Bash(pytest*)"],
        max_turns=12,
        max_budget_usd=1.25,
    )
    assert call.argv == [
        "/usr/bin/claude",
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--include-partial-messages",
        "--no-session-persistence",
        "--setting-sources",
        "",
        "--model",
        MODEL,
        "--fallback-model",
        "claude-haiku-4-5",
        "--system-prompt",
        "You are the architect.",
        "--tools",
        "Read,Write,Edit,Glob,Grep,Bash",
        "--allowedTools",
        "Bash(pytest*)",
        "--permission-mode",
        "acceptEdits",
        "--strict-mcp-config",
        "--mcp-config",
        EMPTY_MCP_CONFIG,
        "--max-turns",
        "12",
        "--max-budget-usd",
        "1.250000",
        "--",
        CONTEXT.brief,
    ]
    assert json.loads(EMPTY_MCP_CONFIG) == {"mcpServers": {}}
    assert call.stdin is None
    assert call.files == {}


def test_optional_flags_are_left_out_and_a_read_only_workspace_gets_the_default_mode() -> None:
    call = build_call(
        "claude",
        CONTEXT,
        model=None,
        fallback_model=None,
        tools=[],
        writable=False,
        system_prompt_mode="append",
    )
    argv = call.argv
    for flag in ("--model", "--fallback-model", "--allowedTools", "--max-budget-usd"):
        assert flag not in argv
    assert argv[argv.index("--tools") + 1] == ""  # an empty list disables every tool
    assert argv[argv.index("--permission-mode") + 1] == "default"
    assert argv[argv.index("--append-system-prompt") + 1] == CONTEXT.system
    assert "--system-prompt" not in argv


def test_a_fallback_equal_to_the_model_is_not_passed() -> None:
    call = build_call("claude", CONTEXT, model=MODEL, fallback_model=MODEL, tools=["Read"])
    assert "--fallback-model" not in call.argv


def test_a_brief_too_long_for_one_argument_goes_to_stdin_and_the_system_prompt_to_a_file(
    tmp_path: Path,
) -> None:
    long = StageContext(system="S" * 300, brief="B" * 300)
    call = build_call("claude", long, model=MODEL, tools=["Read"], scratch=tmp_path, arg_limit=200)
    assert call.stdin == b"B" * 300
    assert "--" not in call.argv
    assert "B" * 300 not in call.argv
    flag = call.argv.index("--system-prompt-file")
    path = Path(call.argv[flag + 1])
    assert path.parent == tmp_path
    assert call.files == {path: "S" * 300}
    assert "--system-prompt" not in call.argv


def test_limits_count_bytes_not_characters() -> None:
    brief = "é" * 150  # 300 bytes in UTF-8
    call = build_call("claude", StageContext("s", brief), model=None, tools=[], arg_limit=200)
    assert call.stdin == brief.encode()


def test_agent_tools_map_to_claude_code_names_and_bash_needs_allowed_patterns() -> None:
    assert claude_tools([], bash_allow=[], writable=True) == [
        "Read",
        "Write",
        "Edit",
        "Glob",
        "Grep",
    ]
    assert claude_tools([], bash_allow=["pytest*"], writable=True)[-1] == "Bash"
    agent_tools = ["read", "MultiEdit", "LS", "Bash(git diff:*)", "WebFetch", "mcp__x__y"]
    assert claude_tools(agent_tools, bash_allow=[], writable=True) == ["Read", "Edit", "Glob"]
    assert claude_tools(agent_tools, bash_allow=["git diff*"], writable=True) == [
        "Read",
        "Edit",
        "Glob",
        "Bash",
    ]


def test_a_read_only_workspace_offers_no_write_tools_and_no_bash() -> None:
    assert claude_tools([], bash_allow=[], writable=False) == ["Read", "Glob", "Grep"]
    assert claude_tools(["Read", "Bash"], bash_allow=["pytest*"], writable=False) == ["Read"]
    assert permission_rules(["Read"], ["pytest*"]) == []


def test_only_bash_patterns_are_pre_approved() -> None:
    assert permission_rules(["Read", "Write", "Bash"], ["pytest*", " ruff check *", "pytest*"]) == [
        "Bash(pytest*)",
        "Bash(ruff check *)",
    ]
    assert permission_rules(["Read", "Write"], ["pytest*"]) == []


# -- the CLI's result object -------------------------------------------------------------------


def test_the_result_object_gives_text_turns_cost_and_per_model_usage() -> None:
    parsed = parse_cli_output(json.dumps(result_json("hello")))
    assert parsed is not None
    assert (parsed.subtype, parsed.is_error, parsed.result, parsed.num_turns) == (
        "success",
        False,
        "hello",
        3,
    )
    assert parsed.total_cost_usd == 0.0123
    assert parsed.session_id == "0ce592d2-5744-460c-9b99-66f5afced2ce"
    [use] = parsed.models
    assert (use.model, use.input_tokens, use.output_tokens, use.cache_read_tokens) == (
        MODEL,
        30,
        15,
        2000,
    )
    # the 1h share of the session's cache writes (250 of 1000) applies per model
    assert (use.cache_write_5m_tokens, use.cache_write_1h_tokens) == (750, 250)
    assert use.cost_usd == 0.0123
    assert parsed.answered_model == MODEL


def test_the_answering_model_is_the_one_with_most_output_tokens() -> None:
    data = result_json(
        modelUsage={
            "claude-haiku-4-5": {"inputTokens": 900, "outputTokens": 20, "costUSD": 0.001},
            MODEL: {"inputTokens": 100, "outputTokens": 700, "costUSD": 0.02},
        },
        usage={"input_tokens": 1000, "output_tokens": 720},
    )
    parsed = parse_cli_output(json.dumps(data))
    assert parsed is not None
    assert parsed.answered_model == MODEL
    assert [(m.model, m.cache_write_5m_tokens, m.cache_write_1h_tokens) for m in parsed.models] == [
        ("claude-haiku-4-5", 0, 0),
        (MODEL, 0, 0),
    ]


def test_an_error_result_keeps_its_subtype_errors_and_status() -> None:
    data = result_json(
        subtype="error_max_turns",
        is_error=True,
        errors=["Reached maximum number of turns (2)"],
    )
    del data["result"]  # error subtypes carry no result text
    parsed = parse_cli_output("warning: something on stdout\n" + json.dumps(data))
    assert parsed is not None
    assert (parsed.subtype, parsed.is_error, parsed.result) == ("error_max_turns", True, "")
    assert parsed.error_text == "Reached maximum number of turns (2)"
    api = parse_cli_output(
        json.dumps(result_json("Invalid API key", is_error=True, api_error_status=401))
    )
    assert api is not None
    assert (api.api_error_status, api.error_text) == (401, "Invalid API key")


@pytest.mark.parametrize("stdout", ["", "not json", '{"type": "assistant"}', "[1, 2]"])
def test_output_without_a_result_object_parses_to_none(stdout: str) -> None:
    assert parse_cli_output(stdout) is None


@pytest.mark.parametrize(
    ("status", "text", "kind", "retryable"),
    [
        (401, "Invalid API key · Fix external API key", "auth", False),
        (403, "forbidden", "auth", False),
        (None, "Invalid API key · Please run /login", "auth", False),
        (None, "OAuth token has expired", "auth", False),
        (402, "payment required", "spend_limit", False),
        (None, "Credit balance is too low", "spend_limit", False),
        (None, "Claude AI usage limit reached|1767225600", "spend_limit", False),
        (429, "API Error: Request rejected (429) · limit", "rate_limit", True),
        (529, "API Error: 529 Overloaded.", "overloaded", True),
        (None, "API Error: 529 Overloaded. This is a server-side issue", "overloaded", True),
        (503, "unavailable", "overloaded", True),
        (500, "Internal", "server", True),
        (None, "API Error: 500 Internal server error", "server", True),
        (404, "model: not_found", "bad_request", False),
        (None, "API Error: Connection error.", "connection", True),
        (None, "Request timed out.", "connection", True),
        (None, "error: unknown option '--frobnicate'", "cli", False),
    ],
)
def test_cli_errors_map_to_model_error_kinds(
    status: int | None, text: str, kind: str, retryable: bool
) -> None:
    assert classify_cli_error(status, text) == (kind, retryable)


# -- the final answer --------------------------------------------------------------------------


def test_the_last_json_block_is_the_answer() -> None:
    text = (
        "The format is:\n```json\n"
        '{"status": "failed", "summary": "example", "artifacts": {}}\n```\n'
        "Here is mine.\n" + answer({"design": "# Design\n\nUse ```code``` fences."})
    )
    got = parse_final_answer(text, ["design"])
    assert (got.status, got.summary, got.error) == ("passed", "done", None)
    assert got.artifacts == {"design": "# Design\n\nUse ```code``` fences."}


def test_outputs_and_other_statuses_are_kept() -> None:
    text = answer({"review": "Fix X."}, status="changes_requested", outputs={"approved": False})
    got = parse_final_answer(text, ["review"])
    assert (got.status, got.outputs, got.error) == ("changes_requested", {"approved": False}, None)


def test_a_json_snippet_that_is_not_a_result_is_not_the_answer() -> None:
    text = 'Set this in package.json:\n```json\n{"name": "app"}\n```'
    got = parse_final_answer(text, ["design"])
    assert (got.status, got.artifacts) == ("passed", {"design": text})


def test_missing_required_artifacts_fail_the_attempt_naming_them() -> None:
    got = parse_final_answer(answer({"design": "# D", "plan": "  "}), ["design", "plan", "risks"])
    assert got.status == "failed"
    assert got.error is not None
    assert "missing required artifact(s): plan, risks" in got.error
    assert got.artifacts == {}


def test_a_failed_answer_may_come_without_artifacts() -> None:
    got = parse_final_answer(answer({}, status="failed"), ["design"])
    assert (got.status, got.summary, got.error) == ("failed", "done", None)


def test_without_a_block_a_single_artifact_stage_takes_the_whole_text() -> None:
    text = "# Design\n\nSplit the module in two.\n"
    got = parse_final_answer(text, ["design"])
    assert (got.status, got.artifacts, got.error) == ("passed", {"design": text.strip()}, None)
    assert got.summary == "# Design Split the module in two."


def test_without_a_block_a_stage_producing_nothing_passes_with_the_text_as_summary() -> None:
    got = parse_final_answer("Checked; nothing to do.", [])
    assert (got.status, got.summary, got.artifacts) == ("passed", "Checked; nothing to do.", {})


def test_without_a_block_a_stage_producing_several_artifacts_fails() -> None:
    got = parse_final_answer("Here you go: design and plan.", ["design", "plan"])
    assert got.status == "failed"
    assert got.error is not None
    assert "design, plan" in got.error


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('```json\n{"status": "passed", "artifacts": {"design": "x}\n```', "not valid JSON"),
        (answer({"design": "x"}, status="done"), 'status "done"'),
        (answer({"design": 42}), "design in the final ```json block are not text"),
        ('```json\n{"status": "passed", "artifacts": ["x"]}\n```', "'artifacts' is not an object"),
        ("", "final answer is empty"),
    ],
)
def test_a_malformed_answer_fails_with_an_error_saying_what_is_wrong(
    text: str, needle: str
) -> None:
    got = parse_final_answer(text, ["design"])
    assert got.status == "failed"
    assert got.error is not None
    assert needle in got.error


def test_json_blocks_handle_longer_fences_tildes_and_unclosed_blocks() -> None:
    text = '````JSON\n{"a": 1}\n```\n````\n~~~json\n[2]\n~~~\n```json\n{"b":'
    assert json_blocks(text) == ['{"a": 1}\n```', "[2]", '{"b":']


# -- the process -------------------------------------------------------------------------------

FAKE = """#!{python}
import json, os, subprocess, sys, time
from pathlib import Path

here = Path(__file__).resolve().parent
scenario = json.loads((here / "scenario.json").read_text())
argv = sys.argv[1:]
record = {{
    "argv": argv,
    "cwd": os.getcwd(),
    "stdin": sys.stdin.read(),
    "env": {{k: os.environ.get(k) for k in ("ANTHROPIC_API_KEY", "PATH")}},
}}
if "--system-prompt-file" in argv:
    record["system_file"] = Path(argv[argv.index("--system-prompt-file") + 1]).read_text()
(here / "call.json").write_text(json.dumps(record))
def hang():
    child = subprocess.Popen(["sleep", "60"])
    (here / "child.pid").write_text(str(child.pid))
    (here / "claude.pid").write_text(str(os.getpid()))
    time.sleep(60)
if scenario.get("hang"):
    hang()
sys.stdout.write(scenario.get("stdout", ""))
sys.stdout.flush()
if scenario.get("hang_after_output"):
    hang()
sys.stderr.write(scenario.get("stderr", ""))
sys.exit(scenario.get("code", 0))
"""


class FakeClaude:
    """A fake ``claude`` in its own folder: ``script(...)`` sets what it does next."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.path = folder / "claude"
        self.path.write_text(FAKE.format(python=sys.executable))
        self.path.chmod(0o755)

    def script(
        self,
        result: dict[str, Any] | None = None,
        *,
        code: int = 0,
        stdout: str | None = None,
        stderr: str = "",
        hang: bool = False,
        hang_after_output: bool = False,
    ) -> None:
        out = stdout if stdout is not None else json.dumps(result) if result else ""
        scenario = {
            "stdout": out,
            "stderr": stderr,
            "code": code,
            "hang": hang,
            "hang_after_output": hang_after_output,
        }
        (self.folder / "scenario.json").write_text(json.dumps(scenario))

    def call(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.folder / "call.json").read_text())
        return data

    @property
    def started(self) -> bool:
        return (self.folder / "call.json").exists()

    def pid(self, name: str) -> int | None:
        path = self.folder / f"{name}.pid"
        text = path.read_text().strip() if path.exists() else ""
        return int(text) if text else None


@pytest.fixture
def fake(tmp_path: Path) -> FakeClaude:
    return FakeClaude(tmp_path / "bin")


def runner(fake: FakeClaude, **kwargs: Any) -> ClaudeCodeRunner:
    return ClaudeCodeRunner(
        executable=str(fake.path), context_builder=lambda request: CONTEXT, **kwargs
    )


def request(tmp_path: Path, **fields: Any) -> AttemptRequest:
    fields.setdefault("model", MODEL)
    return agent_request(
        tmp_path / "worktree", produces=fields.pop("produces", ["design"]), **fields
    )


async def run(runner: ClaudeCodeRunner, req: AttemptRequest) -> Any:
    with anyio.fail_after(30):
        return await runner.run(req)


@pytest.mark.anyio
async def test_an_attempt_runs_claude_in_the_worktree_and_records_usage_per_model(
    tmp_path: Path, fake: FakeClaude
) -> None:
    data = result_json(
        answer({"design": "# Design"}, outputs={"risk": "low"}),
        modelUsage={
            MODEL: {
                "inputTokens": 30,
                "outputTokens": 700,
                "cacheReadInputTokens": 2000,
                "cacheCreationInputTokens": 1000,
                "costUSD": 0.02,
            },
            "claude-haiku-4-5": {"inputTokens": 400, "outputTokens": 10, "costUSD": 0.0005},
        },
    )
    fake.script(data)
    req = request(tmp_path, bash_allow=["pytest*"])
    result = await run(runner(fake, fallback_model="claude-haiku-4-5"), req)

    call = fake.call()
    assert call["cwd"] == str(req.workdir)
    assert call["argv"][-2:] == ["--", CONTEXT.brief]
    assert call["stdin"] == ""
    argv = call["argv"]
    assert argv[argv.index("--fallback-model") + 1] == "claude-haiku-4-5"
    assert argv[argv.index("--tools") + 1] == "Read,Write,Edit,Glob,Grep,Bash"
    assert argv[argv.index("--allowedTools") + 1] == "Bash(pytest*)"
    assert "--max-budget-usd" not in argv  # no cap on this request

    assert (result.status, result.artifacts, result.outputs) == (
        "passed",
        {"design": "# Design"},
        {"risk": "low"},
    )
    assert (result.model, result.model_requested, result.runner) == (MODEL, MODEL, "claude-code")
    ledger = [
        (
            r.model,
            r.model_requested,
            r.input_tokens,
            r.output_tokens,
            r.cache_read_tokens,
            r.cache_write_5m_tokens,
            r.cache_write_1h_tokens,
            r.cost_usd,
            r.request_id,
        )
        for r in req.meter.requests
    ]
    session = data["session_id"]
    assert ledger == [
        (MODEL, MODEL, 30, 700, 2000, 750, 250, 0.02, session),
        ("claude-haiku-4-5", MODEL, 400, 10, 0, 0, 0, 0.0005, session),
    ]
    assert result.usage == req.meter.usage
    assert (result.usage.cost_usd, result.usage.cache_write_tokens) == (0.0205, 1000)
    assert req.meter.context == CONTEXT.manifest()


@pytest.mark.anyio
async def test_the_agent_sets_turns_and_a_capped_budget_is_passed_on(
    tmp_path: Path, fake: FakeClaude
) -> None:
    fake.script(result_json(answer({"design": "x"})))
    req = request(tmp_path, budget_remaining_usd=0.5)
    agent = AgentDefinition(name="architect", tools=["Read"], max_turns=7)
    req = req.model_copy(update={"agent": agent})
    await run(runner(fake, max_turns=30), req)
    argv = fake.call()["argv"]
    assert argv[argv.index("--max-turns") + 1] == "7"
    assert argv[argv.index("--max-budget-usd") + 1] == "0.500000"
    assert argv[argv.index("--tools") + 1] == "Read"


@pytest.mark.anyio
async def test_long_prompts_reach_claude_through_stdin_and_a_file(
    tmp_path: Path, fake: FakeClaude
) -> None:
    fake.script(result_json(answer({"design": "x"})))
    long = StageContext(system="S" * 500, brief="-B" * 500)
    plain = ClaudeCodeRunner(
        executable=str(fake.path), context_builder=lambda r: long, arg_limit=200
    )
    result = await run(plain, request(tmp_path))
    call = fake.call()
    assert result.status == "passed"
    assert (call["stdin"], call["system_file"]) == ("-B" * 500, "S" * 500)
    assert "--" not in call["argv"]


@pytest.mark.anyio
async def test_hitting_max_turns_is_a_failed_attempt_whose_spend_is_recorded(
    tmp_path: Path, fake: FakeClaude
) -> None:
    data = result_json(
        subtype="error_max_turns", is_error=True, errors=["Reached maximum number of turns (7)"]
    )
    del data["result"]
    fake.script(data, code=1)
    req = request(tmp_path)
    result = await run(runner(fake, max_turns=7), req)
    assert result.status == "failed"
    assert result.error is not None
    assert "turn limit (7 turns" in result.error
    assert result.usage.cost_usd == 0.0123
    assert [r.cost_usd for r in req.meter.requests] == [0.0123]


@pytest.mark.anyio
async def test_missing_artifacts_fail_the_attempt(tmp_path: Path, fake: FakeClaude) -> None:
    fake.script(result_json(answer({"design": "x"})))
    result = await run(runner(fake), request(tmp_path, produces=["design", "plan"]))
    assert (result.status, result.artifacts) == ("failed", {})
    assert result.error is not None
    assert "missing required artifact(s): plan" in result.error
    assert result.usage.cost_usd == 0.0123  # spent anyway


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "text", "kind", "retryable"),
    [
        (401, "Invalid API key · Fix external API key", "auth", False),
        (529, "API Error: 529 Overloaded.", "overloaded", True),
    ],
)
async def test_an_api_error_result_raises_a_mapped_model_error(
    tmp_path: Path, fake: FakeClaude, status: int, text: str, kind: str, retryable: bool
) -> None:
    data = result_json(
        text, is_error=True, api_error_status=status, modelUsage={}, total_cost_usd=0
    )
    fake.script(data, code=1)
    with pytest.raises(ModelError) as info:
        await run(runner(fake), request(tmp_path))
    err = info.value
    assert (err.kind, err.retryable, err.status_code) == (kind, retryable, status)
    assert text in str(err)
    if kind == "auth":
        assert "ANTHROPIC_API_KEY" in str(err)


@pytest.mark.anyio
async def test_a_crash_without_a_result_is_a_cli_error_carrying_stderr(
    tmp_path: Path, fake: FakeClaude
) -> None:
    fake.script(code=2, stderr="error: unknown option '--frobnicate'\n")
    with pytest.raises(ModelError) as info:
        await run(runner(fake), request(tmp_path))
    assert (info.value.kind, info.value.retryable) == ("cli", False)
    assert "status 2" in str(info.value)
    assert "unknown option '--frobnicate'" in str(info.value)


@pytest.mark.anyio
async def test_exit_zero_without_a_result_is_a_protocol_error(
    tmp_path: Path, fake: FakeClaude
) -> None:
    fake.script(stdout="plain text, not json\n")
    with pytest.raises(ModelError) as info:
        await run(runner(fake), request(tmp_path))
    assert (info.value.kind, info.value.retryable) == ("protocol", False)


@pytest.mark.anyio
async def test_a_missing_executable_is_unavailable_and_named(tmp_path: Path) -> None:
    missing = ClaudeCodeRunner(executable="claude-not-installed-here", env={"PATH": str(tmp_path)})
    with pytest.raises(ModelError) as info:
        await run(missing, request(tmp_path))
    assert (info.value.kind, info.value.retryable) == ("unavailable", False)
    assert "'claude-not-installed-here'" in str(info.value)


@pytest.mark.anyio
async def test_no_budget_left_means_claude_is_not_started(tmp_path: Path, fake: FakeClaude) -> None:
    fake.script(result_json(answer({"design": "x"})))
    req = request(tmp_path).model_copy(update={"meter": AttemptMeter(remaining=lambda: 0.0)})
    with pytest.raises(BudgetExceeded) as info:
        await run(runner(fake), req)
    assert info.value.spent_usd == 0.0
    assert not fake.started


@pytest.mark.anyio
async def test_claude_stopping_at_its_budget_raises_budget_exceeded_after_recording(
    tmp_path: Path, fake: FakeClaude
) -> None:
    data = result_json(
        subtype="error_max_budget_usd", is_error=True, errors=["Reached maximum budget ($0.01)"]
    )
    fake.script(data, code=1)
    req = request(tmp_path, budget_remaining_usd=0.01)
    with pytest.raises(BudgetExceeded) as info:
        await run(runner(fake), req)
    assert (info.value.spent_usd, info.value.budget_usd) == (0.0123, 0.01)
    assert [r.cost_usd for r in req.meter.requests] == [0.0123]


@pytest.mark.anyio
@pytest.mark.slow
async def test_a_timeout_kills_claude_and_its_children(tmp_path: Path, fake: FakeClaude) -> None:
    fake.script(hang=True)
    with pytest.raises(StageTimeout) as info:
        await run(runner(fake, kill_grace=0.5), request(tmp_path, timeout=1.0))
    assert "timed out after 1s" in str(info.value)
    for name in ("claude", "child"):
        pid = fake.pid(name)
        assert pid is not None and not process_running(pid), name


@pytest.mark.anyio
@pytest.mark.slow
async def test_cancellation_kills_claude_and_its_children(tmp_path: Path, fake: FakeClaude) -> None:
    fake.script(hang=True)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner(fake, kill_grace=0.5).run, request(tmp_path))
            while fake.pid("claude") is None:  # noqa: ASYNC110 (a file has no event to await)
                await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
    for name in ("claude", "child"):
        pid = fake.pid(name)
        assert pid is not None and not process_running(pid), name


@pytest.mark.anyio
async def test_the_environment_is_passed_through_unchanged(
    tmp_path: Path, fake: FakeClaude, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-user-key")
    fake.script(result_json(answer({"design": "x"})))
    await run(runner(fake), request(tmp_path))
    assert fake.call()["env"] == {"ANTHROPIC_API_KEY": "sk-user-key", "PATH": os.environ["PATH"]}
