"""The Claude Code runner's sandbox, with the real CLI and the real bubblewrap.

The model has left ``check.py`` (the escape of ``tests.workspace.escape``) in the worktree and
asks Claude Code's own Bash tool to run ``python3 check.py`` (an allowed ``python3*`` pattern).
In the sandbox the child gets no ``STAGEFLOW_*`` variable and nothing reaches the user's
repository; unconfined the hook is planted. Without bwrap under ``auto`` the code-running
pattern is not handed to Claude Code at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from stageflow.engine.runner import AttemptResult
from stageflow.subagents.claude_code.runner import ClaudeCodeRunner
from stageflow.workspace.sandbox import Sandbox, probe_bwrap
from stageflow.workspace.worktree import prepare_workspace
from tests import claude_cli

# the npm-installing fixture, registered here under the name it is imported as
from tests.server.test_claude_code import claude as installed_claude  # noqa: F401
from tests.standin import StandIn, Turn, tool_use_block
from tests.standin.wire import Json, text_of
from tests.subagents.anthropic_harness import tool_results
from tests.subagents.claude_code.test_cli import stage_request
from tests.workspace.escape import REPORT, SECRETS, Victim, make_victim

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TIMEOUT_S = 120


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Victim]:
    made = make_victim(tmp_path)
    try:
        yield made
    finally:
        made.close()


def run_check(body: Json) -> Turn | None:
    """Ask for ``python3 check.py`` while Bash is offered and nothing has run yet."""
    names = [t.get("name") for t in body.get("tools") or []]
    if "Bash" in names and not tool_results(body):
        args = {"command": "python3 check.py", "description": "run the check"}
        return Turn([tool_use_block("toolu_check", "Bash", args)], "tool_use")
    return None  # the scripted agent answers (a final text with its JSON block)


async def attempt(
    victim: Victim, installed: Path, sandbox: Sandbox
) -> tuple[AttemptResult, list[Json]]:
    ws = prepare_workspace(victim.project, "r-test-0001")
    (ws.root / "check.py").write_text(victim.escape_code())
    request = stage_request(ws.root)
    assert request.agent is not None
    request = request.model_copy(
        update={
            "bash_allow": ["python3*"],
            "agent": request.agent.model_copy(update={"tools": ["Read", "Bash"]}),
        }
    )
    with StandIn(respond=run_check) as api:
        env = {
            **claude_cli.clean_env(api.base_url, victim.home),
            "CLAUDE_CODE_MAX_RETRIES": "0",
            "STAGEFLOW_TOKEN": SECRETS["STAGEFLOW_TOKEN"],
        }
        runner = ClaudeCodeRunner(executable=str(installed), env=env, sandbox=sandbox)
        with anyio.fail_after(TIMEOUT_S):
            result = await runner.run(request)
        bodies = [r.body for r in api.message_requests()]
    return result, bodies


def shown(bodies: list[Json]) -> str:
    """Every tool result the model was shown."""
    return "\n".join(text_of(r.get("content")) for b in bodies for r in tool_results(b))


async def test_claude_codes_bash_runs_in_the_sandbox(
    victim: Victim,
    installed_claude: Path,  # noqa: F811 (the imported fixture)
) -> None:
    path, problem = probe_bwrap("bwrap")
    assert path is not None, f"install bubblewrap (`apt-get install bubblewrap`): {problem}"
    result, bodies = await attempt(victim, installed_claude, Sandbox(network=True))
    assert result.status == "passed", result.error
    out = shown(bodies)
    report = (victim.project / ".stageflow/worktrees/r-test-0001" / REPORT).read_text()
    assert "ESCAPE-RAN pid=" in report, out
    assert SECRETS["STAGEFLOW_TOKEN"] not in report + out
    victim.assert_not_touched()


async def test_claude_codes_bash_escapes_unconfined_but_never_sees_stageflow_variables(
    victim: Victim,
    installed_claude: Path,  # noqa: F811 (the imported fixture)
) -> None:
    result, bodies = await attempt(victim, installed_claude, Sandbox(mode="none"))
    assert result.status == "passed", result.error
    report = (victim.project / ".stageflow/worktrees/r-test-0001" / REPORT).read_text()
    assert "ESCAPE-RAN pid=" in report
    assert victim.hook.exists()  # the attack is real without the sandbox
    assert SECRETS["STAGEFLOW_TOKEN"] not in report + shown(bodies)


async def test_without_bwrap_auto_gives_claude_code_no_code_running_pattern(
    victim: Victim,
    installed_claude: Path,  # noqa: F811 (the imported fixture)
    tmp_path: Path,
) -> None:
    missing = Sandbox(executable=str(tmp_path / "no-such-bwrap"), network=True)
    result, bodies = await attempt(victim, installed_claude, missing)
    assert result.status == "passed", result.error
    assert bodies and all(
        "Bash" not in [t.get("name") for t in b.get("tools") or []] for b in bodies
    ), json.dumps([[t.get("name") for t in b.get("tools") or []] for b in bodies])
    assert not (victim.project / ".stageflow/worktrees/r-test-0001" / REPORT).exists()
    victim.assert_not_touched()


def test_an_npm_installed_claude_under_tmp_is_reachable_in_the_sandbox(tmp_path: Path) -> None:
    """A clone under /tmp installs Claude Code there: the sandbox empties /tmp, so the command
    as named (node_modules/.bin/claude, a link) and its target must both be bound (found when
    the suite ran from /tmp: "execvp ... No such file or directory")."""
    from stageflow.subagents.claude_code.confine import confine_child

    package = tmp_path / "node_modules" / "@anthropic-ai" / "claude-code"
    package.mkdir(parents=True)
    (package / "cli.js").write_text("#!/usr/bin/env node\n", encoding="utf-8")
    bin_dir = tmp_path / "node_modules" / ".bin"
    bin_dir.mkdir()
    (bin_dir / "claude").symlink_to(Path("..") / "@anthropic-ai" / "claude-code" / "cli.js")
    workdir = tmp_path / "work"
    workdir.mkdir()
    sandbox = Sandbox(mode="bwrap", network=True)
    wrapped, _ = confine_child(sandbox, [str(bin_dir / "claude"), "-p"], workdir=workdir, env={})
    modules = str(tmp_path / "node_modules")
    assert any(
        wrapped[i] == "--ro-bind" and wrapped[i + 1] == modules for i in range(len(wrapped) - 1)
    ), wrapped
