"""The Claude Code runner with the real Claude Code CLI against the loopback Messages API
stand-in (``tests.standin``), via ``ANTHROPIC_BASE_URL``.

The CLI comes from npm through the ``claude`` fixture of ``tests/server/test_claude_code.py``
(installed into ``.ci/node`` on first use). A shim in front of it records the argv the runner
started it with. The home folder holds a user-level MCP server (``stageflow serve``) that
Claude Code would load without ``--strict-mcp-config``, so "no ``mcp__`` tool reached the
stand-in" is a real check, not a vacuous one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from stageflow.agents.definition import AgentDefinition
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.errors import ModelError
from stageflow.models.client import RawUsage
from stageflow.models.pricing import DEFAULT_PRICES, PRICES_AS_OF, PriceTable
from stageflow.subagents.claude_code.runner import EMPTY_MCP_CONFIG, ClaudeCodeRunner
from stageflow.subagents.context import PREAMBLE
from stageflow.workflows.spec import StageSpec

# the npm-installing fixture, registered here under the name it is imported as
from tests.server.test_claude_code import claude as installed_claude  # noqa: F401
from tests.server.test_claude_code import claude_env
from tests.standin import StandIn, error_reply
from tests.standin.wire import Json, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

MODEL = "claude-sonnet-4-6"
TASK = "Add rate limiting to the login endpoint"
AGENT_PROMPT = "You are the architect. Keep designs short and name every file you touch."
TIMEOUT_S = 120

SHIM = """#!{python}
import json, os, sys
with open({log!r}, "a", encoding="utf-8") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
os.execv({real!r}, [{real!r}, *sys.argv[1:]])
"""


class Cli:
    """The real CLI behind an argv-recording shim, with an isolated home and environment."""

    def __init__(self, root: Path, real: Path) -> None:
        self.home = root / "home"
        self.home.mkdir(parents=True)
        self.log = root / "argv.jsonl"
        self.shim = root / "claude-shim"
        self.shim.write_text(SHIM.format(python=sys.executable, log=str(self.log), real=str(real)))
        self.shim.chmod(0o755)
        decoy = {
            "type": "stdio",
            "command": sys.executable,
            "args": ["-m", "stageflow", "serve", "--project", str(root / "decoy")],
            "env": {"STAGEFLOW_RUNNER": "offline", "STAGEFLOW_HOME": str(root / "decoy-home")},
        }
        (self.home / ".claude.json").write_text(json.dumps({"mcpServers": {"stageflow": decoy}}))

    def runner(self, api: StandIn, **kwargs: Any) -> ClaudeCodeRunner:
        env = {**claude_env(api.base_url, self.home), "CLAUDE_CODE_MAX_RETRIES": "0"}
        return ClaudeCodeRunner(executable=str(self.shim), env=env, **kwargs)

    def argvs(self) -> list[list[str]]:
        lines = self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []
        return [json.loads(line) for line in lines]


@pytest.fixture
def cli(tmp_path: Path, installed_claude: Path) -> Cli:  # noqa: F811 (the imported fixture)
    return Cli(tmp_path / "cli", installed_claude)


@pytest.fixture
def api() -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


def stage_request(workdir: Path, *, max_turns: int | None = None) -> AttemptRequest:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "app.py").write_text("def login(user, password):\n    return True\n")
    return AttemptRequest(
        run_id="r-test-0001",
        stage=StageSpec(id="architecture", agent="architect", produces=["design"]),
        attempt=1,
        task=TASK,
        agent=AgentDefinition(
            name="architect",
            system_prompt=AGENT_PROMPT,
            tools=["Read", "Write", "Edit", "Glob", "Grep"],
            max_turns=max_turns,
        ),
        model=MODEL,
        workdir=workdir,
        budget_remaining_usd=5.0,
    )


async def attempt(runner: ClaudeCodeRunner, request: AttemptRequest) -> AttemptResult:
    with anyio.fail_after(TIMEOUT_S):
        return await runner.run(request)


def tool_names(body: Json) -> list[str]:
    return [str(t.get("name")) for t in body.get("tools") or []]


def trace(api: StandIn, cli: Cli) -> str:
    """What to show when a check fails: the argv and the traffic the stand-in saw."""
    seen = [f"{r.method} {r.path} {r.status} tools={tool_names(r.body)}" for r in api.requests]
    return f"argv: {cli.argvs()}\nrequests: {seen}"


async def test_a_stage_completes_through_the_real_cli_with_no_mcp_servers(
    tmp_path: Path, cli: Cli, api: StandIn
) -> None:
    request = stage_request(tmp_path / "worktree")
    (request.workdir / "CLAUDE.md").write_text("PROJECT RULE: name every file you touch.\n")
    result = await attempt(cli.runner(api), request)
    why = trace(api, cli)

    # The stage completed: the stand-in's agent globbed, read app.py, wrote its notes into
    # the worktree (cwd + acceptEdits) and ended with the ```json block the brief asks for.
    assert (result.status, result.error, result.runner) == ("passed", None, "claude-code"), why
    assert list(result.artifacts) == ["design"]
    assert result.artifacts["design"].startswith(f"# Design for: {TASK}")
    assert "file `app.py`" in result.artifacts["design"]
    assert (request.workdir / "notes" / "architecture.md").is_file(), why

    # Cost and model recorded: one ledger entry per model request, taken from the stream as
    # it arrived (keyed by message id), with exactly the tokens the stand-in served for that
    # request and our price table's cost. No top-up entry: the CLI's own totals at the end
    # (tokens and cost per model) are no more than what the stream showed.
    answered = [r for r in api.message_requests() if r.usage is not None and r.reply]
    entries = request.meter.requests
    assert [e.request_id for e in entries] == [r.reply["id"] for r in answered if r.reply], why
    for entry, served_one in zip(entries, answered, strict=True):
        u = served_one.usage or {}
        created = u.get("cache_creation") or {}
        assert (entry.model, entry.model_requested) == (MODEL, MODEL)
        assert (
            entry.input_tokens,
            entry.output_tokens,
            entry.cache_read_tokens,
            entry.cache_write_5m_tokens,
            entry.cache_write_1h_tokens,
        ) == (
            u.get("input_tokens", 0),
            u.get("output_tokens", 0),
            u.get("cache_read_input_tokens", 0),
            created.get("ephemeral_5m_input_tokens", 0),
            created.get("ephemeral_1h_input_tokens", 0),
        ), why
    assert (result.model, result.model_requested) == (MODEL, MODEL)
    served = api.totals()
    usage = request.meter.usage
    assert (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.requests,
    ) == (
        served.input_tokens,
        served.output_tokens,
        served.cache_read_tokens,
        served.cache_write_5m_tokens + served.cache_write_1h_tokens,
        served.requests,
    ), why
    assert served.requests >= 3 and served.cache_read_tokens > 0
    ours, priced = PriceTable(DEFAULT_PRICES, PRICES_AS_OF).cost(
        MODEL,
        RawUsage(
            input_tokens=served.input_tokens,
            output_tokens=served.output_tokens,
            cache_write_5m_tokens=served.cache_write_5m_tokens,
            cache_write_1h_tokens=served.cache_write_1h_tokens,
            cache_read_tokens=served.cache_read_tokens,
        ),
    )
    assert priced and ours > 0
    assert result.usage == request.meter.usage
    assert result.usage.cost_usd == pytest.approx(ours, rel=1e-9)
    assert request.meter.context["items"][0]["kind"] == "system"

    # No MCP servers: the argv says so, and no mcp__ tool ever reached the model, although the
    # home folder configures one (see the module docstring).
    [argv] = cli.argvs()
    assert "--strict-mcp-config" in argv
    assert argv[argv.index("--mcp-config") + 1] == EMPTY_MCP_CONFIG
    assert argv[argv.index("--model") + 1] == MODEL
    assert argv[argv.index("--max-budget-usd") + 1] == "5.000000"
    messages = api.message_requests()
    assert messages, why
    for r in messages:
        assert not [n for n in tool_names(r.body) if n.startswith("mcp__")], why
    assert set(tool_names(messages[0].body)) == {"Read", "Write", "Edit", "Glob", "Grep"}

    # The agent's system prompt (and not Claude Code's own) reached the stand-in, and the brief
    # arrived as the prompt.
    first = api.first_requests()[0].body
    system = text_of(first.get("system"))
    assert AGENT_PROMPT in system and PREAMBLE in system, system
    assert "You are an interactive agent" not in system
    assert "# Stage `architecture`" in text_of(first["messages"][0]["content"])
    # The worktree's CLAUDE.md came once, in the brief: Claude Code loads no settings or
    # memory files of its own (--setting-sources "").
    assert argv[argv.index("--setting-sources") + 1] == ""
    assert json.dumps(first).count("PROJECT RULE: name every file you touch.") == 1, why
    assert "## Project context: CLAUDE.md" in text_of(first["messages"][0]["content"])


async def test_the_turn_limit_fails_the_attempt_with_long_prompts_sent_by_stdin_and_file(
    tmp_path: Path, cli: Cli, api: StandIn
) -> None:
    request = stage_request(tmp_path / "worktree", max_turns=1)
    result = await attempt(cli.runner(api, arg_limit=100), request)
    why = trace(api, cli)

    assert result.status == "failed", why
    assert result.error is not None and "turn limit (1 turns" in result.error
    assert result.usage.cost_usd > 0 and result.usage == request.meter.usage  # spend kept
    [argv] = cli.argvs()
    assert "--system-prompt-file" in argv and "--" not in argv
    first = api.first_requests()[0].body
    assert AGENT_PROMPT in text_of(first.get("system"))
    assert "# Stage `architecture`" in text_of(first["messages"][0]["content"])


@pytest.mark.parametrize(
    ("status", "kind", "message", "retryable"),
    [
        (401, "authentication_error", "invalid x-api-key", False),
        (529, "overloaded_error", "Overloaded", True),
    ],
)
async def test_api_errors_from_the_real_cli_raise_mapped_model_errors(
    tmp_path: Path, cli: Cli, status: int, kind: str, message: str, retryable: bool
) -> None:
    def fail(body: Json) -> Any:
        return error_reply(status, kind, message)

    with StandIn(respond=fail) as api, pytest.raises(ModelError) as info:
        await attempt(cli.runner(api), stage_request(tmp_path / "worktree"))
    expected = {401: "auth", 529: "overloaded"}[status]
    assert (info.value.kind, info.value.retryable, info.value.status_code) == (
        expected,
        retryable,
        status,
    )
