"""Adversarial review of issue 4 (subagents): each test shows a defect and fails until it is fixed.

Every test asserts the behaviour the issue (or a careful user) expects; the comment above it says
what goes wrong today and what should happen instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from stageflow.errors import ModelError, StageTimeout, ToolError
from stageflow.models.anthropic import AnthropicClient
from stageflow.subagents.claude_code.runner import ClaudeCodeRunner
from stageflow.workflows.spec import StageSpec
from stageflow.workspace.root import Workspace
from stageflow.workspace.shell import BashPolicy, bash_env
from stageflow.workspace.tools import call_workspace_tool
from tests.models.test_anthropic import MessagesStandIn, call, error

# the npm-installing fixture, registered here under the name it is imported as
from tests.server.test_claude_code import claude as installed_claude  # noqa: F401
from tests.standin import StandIn, Turn, text_block, tool_use_block
from tests.standin.wire import Json
from tests.subagents.claude_code.test_cli import Cli, stage_request
from tests.subagents.fake_model import fake_model, submit, tool_reply, tool_use
from tests.subagents.tool_loop_kit import run_loop, tool_results

pytestmark = pytest.mark.anyio


# -- the Anthropic client ---------------------------------------------------------------------


@pytest.fixture
def messages_api() -> Iterator[MessagesStandIn]:
    stand_in = MessagesStandIn()
    stand_in.thread.start()
    try:
        yield stand_in
    finally:
        stand_in.httpd.shutdown()
        stand_in.httpd.server_close()
        stand_in.thread.join(timeout=5)


# DEFECT (error map): the issue says "a 429 without retry-after that signals a spend limit is
# not retried". map_error classifies it as spend_limit, but only after the SDK has already
# retried it: anthropic's _should_retry retries every 429, so with the client's default
# max_retries=2 the request is sent three times (with back-off) before the error surfaces.
# (tests/subagents/test_anthropic_client.py only checks this with max_retries=0.)
# Expected: exactly one request reaches the API.
async def test_a_429_spend_limit_without_retry_after_is_sent_once_with_default_retries(
    messages_api: MessagesStandIn,
) -> None:
    for _ in range(3):
        messages_api.push(
            429, error("rate_limit_error", "You have reached your specified API usage limits.")
        )
    client = AnthropicClient(api_key="test-key", base_url=messages_api.base_url)
    try:
        with anyio.fail_after(30), pytest.raises(ModelError) as info:
            await client.send(call())
    finally:
        await client.aclose()
    assert (info.value.kind, info.value.retryable) == ("spend_limit", False)
    assert len(messages_api.requests) == 1, "a spend-limit 429 was retried by the SDK"


# -- the tool loop and the workspace tools ----------------------------------------------------


# DEFECT (tool loop robustness): tool input is model-controlled JSON, and JSON may carry a lone
# surrogate escape ("\ud800"), which json.loads turns into a str that cannot be encoded. Write
# calls content.encode("utf-8") and the path goes to os.stat, both raising UnicodeEncodeError
# (a ValueError). _Loop._call_tool only catches InvalidArgument and OSError, so the exception
# escapes run_tool_loop and the whole attempt dies as a "runner error" instead of the model
# getting a tool error it can correct. Expected: an is_error tool_result, and the loop goes on.
@pytest.mark.parametrize(
    "args",
    [
        {"file_path": "notes.md", "content": "broken \ud800 text"},
        {"file_path": "bad-\ud800.md", "content": "fine"},
    ],
    ids=["content", "path"],
)
async def test_a_lone_surrogate_in_tool_input_is_a_tool_error_not_a_crashed_attempt(
    tmp_path: Path, args: dict[str, Any]
) -> None:
    model = fake_model(
        tool_reply(tool_use("Write", args)),
        tool_reply(submit({"design": "# Design"})),
    )
    result = await run_loop(model, tmp_path)
    assert result.status == "passed"
    [written] = tool_results(model.calls[1])
    assert written.get("is_error") is True


# DEFECT (bounds): Grep compiles the model's regular expression and runs it in a worker thread
# via anyio.to_thread.run_sync, which cannot be cancelled. A catastrophic pattern such as
# `(a+)+$` on one line of 26 'a's followed by '!' backtracks for seconds (minutes with a few more
# characters), and neither the stage timeout nor a workflow cancel can stop the attempt until it
# finishes: the cancel scope only fires once the thread returns. Expected: the tool call gives
# way to cancellation promptly (e.g. a regex engine with a time limit, a bounded subprocess, or
# at least abandon_on_cancel plus a per-file work bound).
async def test_a_catastrophic_grep_pattern_does_not_outlive_the_attempts_cancel_scope(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.txt").write_text("a" * 26 + "!\n")
    ws = Workspace(tmp_path)
    started = time.monotonic()
    with anyio.move_on_after(0.5):
        await call_workspace_tool(ws, "Grep", {"pattern": r"(a+)+$", "path": "a.txt"})
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"the Grep ignored cancellation for {elapsed:.1f}s"


# -- Bash -------------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


# DEFECT (Bash policy): patterns are fnmatch'ed against the whole command line, so an allowed
# "read-only" program takes any option. `git diff*` (what a template writes to let a reviewer
# look at the diff) also matches `git diff --output=<file>`, which writes the diff to any path:
# here a file outside the workspace root. Likewise `git*` allows `git -c alias.x=!cmd x`
# (arbitrary shell) and, in a run worktree, git commands change the user's repository (shared
# refs and config). Expected: a command whose arguments name a path outside the workspace
# (absolute outside the root, or climbing with `..`, also as `--opt=value`) is refused.
async def test_an_allowed_git_diff_pattern_cannot_write_a_file_outside_the_workspace(
    tmp_path: Path,
) -> None:
    if shutil.which("git") is None:
        pytest.fail("git is needed for this test")
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "app.py").write_text("x = 1\n")
    _git(root, "add", "app.py")
    _git(root, "commit", "-q", "-m", "init")
    (root / "app.py").write_text("x = 2\n")
    outside = tmp_path / "outside.txt"
    ws = Workspace(root, bash=BashPolicy(allow=("git diff*",), timeout=30))
    with anyio.fail_after(30):
        with contextlib.suppress(ToolError):
            await ws.bash(f"git diff --output={outside}")
    assert not outside.exists(), "Bash wrote outside the workspace through an allowed pattern"


# DEFECT (env leak, low): bash_env drops variables whose names contain API_KEY, SECRET, TOKEN,
# PASSWORD or CREDENTIAL, and passes everything else to model-chosen commands. Common secrets
# with other names reach them: SSH private keys in CI (SSH_PRIVATE_KEY), MySQL's own password
# variable (MYSQL_PWD), GitLab's registry credentials (DOCKER_AUTH_CONFIG), connection strings
# with passwords (DATABASE_URL). Expected: a deny-list this loose is replaced by an allow-list
# (PATH, HOME, LANG, LC_*, TMPDIR, VIRTUAL_ENV ...), so none of these reach the command.
def test_bash_env_does_not_pass_common_secrets_with_other_names() -> None:
    base = {
        "PATH": "/usr/bin",
        "SSH_PRIVATE_KEY": "-----BEGIN OPENSSH PRIVATE KEY-----",
        "MYSQL_PWD": "hunter2",
        "DOCKER_AUTH_CONFIG": '{"auths": {"registry": {"auth": "dXNlcjpwYXNz"}}}',
        "DATABASE_URL": "postgres://app:hunter2@db/app",
    }
    env = bash_env(base)
    assert env.get("PATH") == "/usr/bin"
    leaked = sorted(k for k in base if k != "PATH" and k in env)
    assert leaked == []


# DEFECT (protected dirs, case): writes into `.git` and `.stageflow` are refused by comparing
# path parts case-sensitively. On a case-insensitive file system (macOS's default APFS, Windows)
# `.GIT/hooks/pre-commit` *is* `.git/hooks/pre-commit`, and `.Stageflow/config.toml` is the
# project's config (where the Bash allow list lives). With `workspace: in_place` the model can
# then plant a git hook or widen its own Bash patterns. Expected: the check ignores case (and
# so refuses these names on every platform, since stageflow cannot know the file system).
@pytest.mark.parametrize("path", [".GIT/hooks/pre-commit", ".Stageflow/config.toml"])
async def test_writes_into_protected_dirs_are_refused_whatever_the_case(
    tmp_path: Path, path: str
) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".stageflow").mkdir()
    ws = Workspace(tmp_path)
    with pytest.raises(ToolError):
        await call_workspace_tool(ws, "Write", {"file_path": path, "content": "#!/bin/sh\n"})


FAKE_CLI = """#!{python}
import json, sys
with open({log!r}, "w") as f:
    json.dump(sys.argv[1:], f)
print(json.dumps({{"type": "result", "subtype": "success", "is_error": False, "result": "ok",
                  "session_id": "s", "modelUsage": {{}}}}))
"""


# DEFECT (read-only workspace, claude-code runner): the API runner refuses Bash on a read-only
# workspace ("a command can write anywhere, so read-only must mean no commands"), but the
# Claude Code runner only drops Write and Edit: with Bash patterns set, `claude -p` still gets
# the Bash tool and `Bash(<pattern>)` rules, and runs them in the user's own project directory
# (a read-only run works in the project itself, e.g. when it is not a git repository).
# Expected: no Bash in --tools (and no Bash rules) when the request is not writable.
async def test_claude_code_offers_no_bash_in_a_read_only_workspace(tmp_path: Path) -> None:
    log = tmp_path / "argv.json"
    script = tmp_path / "fake-claude"
    script.write_text(FAKE_CLI.format(python=sys.executable, log=str(log)))
    script.chmod(0o755)
    request = stage_request(tmp_path / "project").model_copy(
        update={
            "bash_allow": ["pytest*"],
            "writable": False,
            "read_only_reason": "the project is not a git repository",
            "stage": StageSpec(id="review", agent="architect"),
        }
    )
    assert request.agent is not None
    request.agent.tools.append("Bash")
    env = {"PATH": os.environ.get("PATH", os.defpath)}
    with anyio.fail_after(30):
        await ClaudeCodeRunner(executable=str(script), env=env).run(request)
    argv = json.loads(log.read_text())
    tools = argv[argv.index("--tools") + 1].split(",")
    assert "Bash" not in tools, argv
    assert not [a for a in argv if a.startswith("Bash(")], argv


# -- the Claude Code runner, with the real CLI against the stand-in ---------------------------

FINAL = '```json\n{"status": "passed", "summary": "done", "artifacts": {"design": "# D"}}\n```'


@pytest.fixture
def cli(tmp_path: Path, installed_claude: Path) -> Cli:  # noqa: F811 (the imported fixture)
    return Cli(tmp_path / "cli", installed_claude)


def _has_tool_result(body: Json) -> bool:
    last = (body.get("messages") or [{}])[-1].get("content")
    return isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)


def one_call_then_finish(name: str, arguments: Json) -> Any:
    """A stand-in hook: the agent makes one tool call, then gives its final answer."""

    def respond(body: Json) -> Turn | None:
        if not body.get("tools"):
            return None  # the CLI's side requests go to the scripted agent
        if not _has_tool_result(body):
            return Turn([tool_use_block("toolu_r4", name, arguments)], "tool_use")
        return Turn([text_block(f"Done.\n{FINAL}")], "end_turn")

    return respond


# DEFECT (Bash policy, claude-code runner): the template's Bash patterns are passed as
# --allowedTools rules, but the child also loads the user's own Claude Code settings, whose
# permissions.allow list is merged in. A user who pre-approved `git init*` for their own
# sessions gets it in every stageflow stage, although the stage allows only `pytest*`.
# Expected: only the stage's patterns apply (e.g. `--setting-sources ""` or an explicit
# --settings that fixes the permissions), so `git init` is refused and nothing is created.
@pytest.mark.slow
async def test_claude_code_stage_runs_only_the_stages_bash_patterns_not_the_users(
    tmp_path: Path, cli: Cli
) -> None:
    request = stage_request(tmp_path / "worktree").model_copy(update={"bash_allow": ["pytest*"]})
    assert request.agent is not None
    request.agent.tools.append("Bash")
    (cli.home / ".claude").mkdir(exist_ok=True)
    (cli.home / ".claude" / "settings.json").write_text(
        json.dumps({"permissions": {"allow": ["Bash(git init*)"]}})
    )
    with StandIn(respond=one_call_then_finish("Bash", {"command": "git init escaped"})) as api:
        with anyio.fail_after(120):
            await cli.runner(api).run(request)
    assert not (request.workdir / "escaped").exists(), "a command outside `pytest*` ran"


# DEFECT (Bash off, claude-code runner): with no Bash patterns the stage may run no command,
# yet the child loads the worktree's .claude/settings.json and runs its hooks (here a
# SessionStart hook). The worktree is the model's workspace: an API-runner stage may Write
# .claude/settings.json (only .git and .stageflow are protected), and a user's committed hooks
# run unasked too. Expected: no project or local settings (hooks, permissions) in a stage's
# child, e.g. `--setting-sources ""`; the hook's marker file is never created.
@pytest.mark.slow
async def test_claude_code_stage_with_bash_off_runs_no_hooks_from_the_worktree(
    tmp_path: Path, cli: Cli
) -> None:
    request = stage_request(tmp_path / "worktree")
    marker = tmp_path / "hook-ran"
    hook = {"type": "command", "command": f"touch {marker}"}
    (request.workdir / ".claude").mkdir()
    (request.workdir / ".claude" / "settings.json").write_text(
        json.dumps({"hooks": {"SessionStart": [{"hooks": [hook]}]}})
    )
    with StandIn() as api, anyio.fail_after(120):
        result = await cli.runner(api).run(request)
    assert result.status == "passed"
    assert not marker.exists(), "a hook from the worktree ran in a stage with Bash off"


# DEFECT (usage lost, budget passable): with `--output-format json` the CLI prints its usage only
# when it exits. When the runner's timeout kills it, every request the session had already
# made (and paid for) is lost: the meter records nothing, so the ledger, the stage's spend and
# the caps all miss it, and a retry gets the whole budget again. Expected: the spend of the
# requests that were answered before the timeout is on the meter (e.g. read
# `--output-format stream-json --verbose`, which prints each assistant message's usage as it
# arrives, and record it as it comes).
@pytest.mark.slow
async def test_claude_code_timeout_keeps_the_usage_of_requests_already_answered(
    tmp_path: Path, cli: Cli
) -> None:
    release = threading.Event()

    def respond(body: Json) -> Turn | None:
        if not body.get("tools"):
            return None
        if not _has_tool_result(body):
            return Turn([tool_use_block("toolu_r4", "Glob", {"pattern": "*"})], "tool_use")
        release.wait(60)  # the second request hangs until the test is over
        return Turn([text_block(f"Done.\n{FINAL}")], "end_turn")

    request = stage_request(tmp_path / "worktree")
    try:
        with StandIn(respond=respond) as api:
            runner = cli.runner(api, timeout=8.0)
            with anyio.fail_after(120), pytest.raises(StageTimeout):
                await runner.run(request)
            answered = [r for r in api.message_requests() if r.usage is not None]
    finally:
        release.set()
    assert answered, "the stand-in answered no request before the timeout"
    assert request.meter.requests, "the answered requests' usage was lost with the timeout"
    assert request.meter.usage.cost_usd > 0
