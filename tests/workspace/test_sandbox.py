"""The OS sandbox of the Bash tool, with the real bubblewrap (installed by ``.ci/run``).

The escape of issue 11 (``tests.workspace.escape``) runs through ``Workspace.bash`` in a
separate "server" process started with credentials in its environment, as a user's stageflow
would be, so ``/proc/$PPID/environ`` really holds them: once unconfined (``sandbox = "none"``,
where it succeeds: the attack is real) and once in the sandbox (where every part fails).
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from stageflow.errors import SpecErrors, ToolError
from stageflow.workflows.loader import load_template_text
from stageflow.workspace.root import Workspace
from stageflow.workspace.sandbox import Sandbox, SandboxError, probe_bwrap
from stageflow.workspace.shell import BashPolicy, CommandTimedOut
from stageflow.workspace.worktree import RunWorkspace, prepare_workspace
from tests.workspace.escape import REPORT, SECRETS, Victim, git, server_env

pytestmark = pytest.mark.anyio

DRIVER = """
import json, sys
from pathlib import Path
import anyio
from stageflow.errors import SpecErrors, ToolError
from stageflow.workflows.loader import load_template_text
from stageflow.workspace.root import Workspace
from stageflow.workspace.sandbox import Sandbox
from stageflow.workspace.shell import BashPolicy

args = json.loads(sys.argv[1])
box = args["sandbox"]
sandbox = None if box is None else Sandbox(
    mode=box["mode"], executable=box["executable"], network=box["network"],
    hidden=tuple(Path(p) for p in box["hidden"]),
)

async def main():
    ws = Workspace(Path(args["root"]), bash=BashPolicy(tuple(args["allow"])), sandbox=sandbox)
    out = []
    for command in args["commands"]:
        try:
            out.append(await ws.bash(command))
        except ToolError as exc:
            out.append("ToolError: " + str(exc))
    print(json.dumps(out))

anyio.run(main)
"""


def require_bwrap() -> str:
    path, problem = probe_bwrap("bwrap")
    assert path is not None, (
        f"these tests need bubblewrap: {problem}; install it with "
        "`apt-get install -y --no-install-recommends bubblewrap` (.ci/run does)"
    )
    return path


def worktree(victim: Victim) -> RunWorkspace:
    return prepare_workspace(victim.project, "run-escape")


def box(
    victim: Victim, *, mode: str = "auto", executable: str = "bwrap", network: bool = False
) -> dict[str, Any]:
    return {
        "mode": mode,
        "executable": executable,
        "network": network,
        "hidden": [str(victim.project / ".stageflow")],
    }


def bash_in_server(
    victim: Victim,
    root: Path,
    allow: list[str],
    commands: list[str],
    sandbox: dict[str, Any] | None,
) -> list[str]:
    """Run ``commands`` through ``Workspace.bash`` in a process with the secrets."""
    args = {"root": str(root), "allow": allow, "commands": commands, "sandbox": sandbox}
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(args)],
        env=server_env(victim),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out: list[str] = json.loads(done.stdout)
    return out


def plant_conftest(root: Path, victim: Victim) -> None:
    """The model writes the escape as ``conftest.py`` with its Write tool."""
    Workspace(root).write("conftest.py", victim.conftest())


def report(root: Path) -> str:
    path = root / REPORT
    return path.read_text() if path.exists() else ""


# -- the escape -----------------------------------------------------------------------------


def test_pytest_importing_a_model_written_conftest_escapes_without_a_sandbox(
    victim: Victim,
) -> None:
    # the attack of issue 11 is real: unconfined, the README's `pytest*` leaks the server's
    # credentials, writes outside the worktree, plants a hook that git runs, moves a branch
    ws = worktree(victim)
    plant_conftest(ws.root, victim)
    [out] = bash_in_server(
        victim, ws.root, ["pytest*"], ["pytest -q -p no:cacheprovider"], box(victim, mode="none")
    )
    seen = out + report(ws.root)
    assert SECRETS["ANTHROPIC_API_KEY"] in seen and SECRETS["STAGEFLOW_TOKEN"] in seen
    assert (victim.outside / "escaped.txt").exists()
    assert victim.hook.exists() and (victim.outside / "hooked.txt").exists()
    assert git(victim.project, "rev-parse", "release") == victim.refs["main"]  # moved
    assert victim.project.joinpath(".git", "config").read_text() != victim.config


def test_pytest_importing_a_model_written_conftest_cannot_escape_the_sandbox(
    victim: Victim,
) -> None:
    require_bwrap()
    ws = worktree(victim)
    plant_conftest(ws.root, victim)
    [out] = bash_in_server(
        victim, ws.root, ["pytest*"], ["pytest -q -p no:cacheprovider"], box(victim)
    )
    seen = report(ws.root)
    victim.assert_contained(out, seen)
    # each attempt failed for the sandbox's reason, not by luck
    assert "Read-only file system" in seen
    assert "git branch -f release: exit 128" in seen or "git branch -f release: exit 1" in seen
    assert "network: ConnectionRefusedError" in seen or "network: OSError" in seen


def test_off_tmp_every_write_outside_the_worktree_meets_a_read_only_system(
    victim_off_tmp: Victim,
) -> None:
    require_bwrap()
    victim = victim_off_tmp
    ws = worktree(victim)
    plant_conftest(ws.root, victim)
    [out] = bash_in_server(
        victim, ws.root, ["pytest*"], ["pytest -q -p no:cacheprovider"], box(victim)
    )
    seen = report(ws.root)
    victim.assert_contained(out, seen)
    writes = [line for line in seen.splitlines() if line.startswith(("write ", "wrote "))]
    assert len(writes) == len(victim.targets())
    assert all("Read-only file system" in line for line in writes), writes


def test_find_exec_python_cannot_escape_the_sandbox(victim: Victim) -> None:
    # argument checks see `python3 {}`, never what the file the model wrote does
    require_bwrap()
    ws = worktree(victim)
    Workspace(ws.root).write("tools/check.py", victim.escape_code())
    command = "find . -name check.py -exec python3 {} +"
    [out] = bash_in_server(victim, ws.root, ["find*"], [command], box(victim))
    victim.assert_contained(out, report(ws.root))


def test_find_exec_escapes_without_a_sandbox(victim: Victim) -> None:
    ws = worktree(victim)
    Workspace(ws.root).write("tools/check.py", victim.escape_code())
    command = "find . -name check.py -exec python3 {} +"
    [out] = bash_in_server(victim, ws.root, ["find*"], [command], box(victim, mode="none"))
    assert SECRETS["STAGEFLOW_TOKEN"] in out and victim.hook.exists()


def test_git_still_reads_the_worktree_in_the_sandbox_but_cannot_write_the_repository(
    victim: Victim,
) -> None:
    require_bwrap()
    ws = worktree(victim)
    (ws.root / "app.py").write_text("def add(a, b):\n    return b + a\n")
    status, diff, log, commit, branch = bash_in_server(
        victim,
        ws.root,
        ["git*"],
        [
            "git status --short",
            "git diff --stat",
            "git log --oneline -1",
            "git commit -qam sneaky",
            "git branch -f release HEAD",
        ],
        box(victim),
    )
    assert "M app.py" in status and status.endswith("(exit code 0)")
    assert "app.py" in diff and "second" in log
    assert "Read-only file system" in commit and not commit.endswith("(exit code 0)")
    assert not branch.endswith("(exit code 0)")
    assert git(victim.project, "rev-parse", "release") == victim.refs["release"]


def test_the_network_is_off_unless_the_stage_allows_it(victim: Victim) -> None:
    require_bwrap()
    ws = worktree(victim)
    code = f"import socket; socket.create_connection(('127.0.0.1', {victim.port}), 5); print('up')"
    command = f"python3 -c {shlex.quote(code)}"
    [off] = bash_in_server(victim, ws.root, ["python3*"], [command], box(victim))
    [on] = bash_in_server(victim, ws.root, ["python3*"], [command], box(victim, network=True))
    assert "ConnectionRefusedError" in off and "up" not in off.splitlines()
    assert on.splitlines()[0] == "up" and on.endswith("(exit code 0)")


def test_in_place_the_state_directory_is_hidden_and_git_is_read_only(victim: Victim) -> None:
    require_bwrap()
    state = victim.project / ".stageflow"
    state.mkdir()
    (state / "state.db").write_text("canary-state")
    code = (
        "import pathlib\n"
        "pathlib.Path('notes.txt').write_text('ok')\n"
        "for p in ('.stageflow/state.db', '.git/hooks/post-commit'):\n"
        "    try:\n"
        "        print(p, open(p).read())\n"
        "    except OSError as exc:\n"
        "        print(p, repr(exc))\n"
        "try:\n"
        "    pathlib.Path('.git/hooks/post-commit').write_text('x')\n"
        "except OSError as exc:\n"
        "    print('hook', repr(exc))\n"
    )
    [out] = bash_in_server(
        victim, victim.project, ["python3*"], [f"python3 -c {shlex.quote(code)}"], box(victim)
    )
    assert (victim.project / "notes.txt").read_text() == "ok"  # the root is writable
    assert "canary-state" not in out and "FileNotFoundError" in out
    assert "hook OSError(30, 'Read-only file system')" in out and not victim.hook.exists()


def test_a_command_cannot_create_a_git_or_claude_directory_read_later_outside(
    victim: Victim,
) -> None:
    # a `.git/config` with core.fsmonitor in the root would run when stageflow diffs the
    # worktree; a `.claude/settings.json` hook when Claude Code opens the project
    require_bwrap()
    root = victim.outside / "plain"  # a directory without a repository (in_place, no git)
    root.mkdir()
    code = (
        "import os\n"
        "for d, f in (('.git', 'config'), ('.claude', 'settings.json')):\n"
        "    try:\n"
        "        os.makedirs(d, exist_ok=True)\n"
        "        open(os.path.join(d, f), 'w').write('[core]\\n\\tfsmonitor = evil\\n')\n"
        "        print('created', d)\n"
        "    except OSError as exc:\n"
        "        print(d, repr(exc))\n"
    )
    [out] = bash_in_server(
        victim, root, ["python3*"], [f"python3 -c {shlex.quote(code)}"], box(victim)
    )
    assert "created" not in out, out
    assert ".git OSError(30" in out and ".claude OSError(30" in out
    assert not (root / ".git" / "config").exists()
    assert not (root / ".claude" / "settings.json").exists()


async def test_a_timed_out_command_in_the_sandbox_is_killed_with_what_it_started(
    tmp_path: Path,
) -> None:
    require_bwrap()
    token = f"sandbox-orphan-{tmp_path.name}"
    code = (
        "import os, subprocess, time\n"
        "subprocess.Popen(['python3', '-c', 'import time; time.sleep(300)', "
        f"'{token}'], start_new_session=True)\n"
        "time.sleep(300)\n"
    )
    ws = Workspace(tmp_path, bash=BashPolicy(("python3*",), timeout=2.0), sandbox=Sandbox())
    with anyio.fail_after(30), pytest.raises(CommandTimedOut):
        await ws.bash(f"python3 -c {shlex.quote(code)}")
    await anyio.sleep(0.5)
    assert _running(token) == [], "a process the command started outlived the timeout"


def _running(token: str) -> list[str]:
    """Host processes whose command line holds ``token``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and token.encode() in (proc / "cmdline").read_bytes():
                found.append(proc.name)
        except OSError:
            continue
    return found


# -- configuration ------------------------------------------------------------------------


async def test_auto_without_bwrap_refuses_code_runners_and_still_runs_reading_commands(
    tmp_path: Path,
) -> None:
    (tmp_path / "app.py").write_text("print('hi')\n")
    missing = Sandbox(mode="auto", executable=str(tmp_path / "no-such-bwrap"))
    assert missing.found()[0] is None and not missing.confines
    ws = Workspace(tmp_path, bash=BashPolicy(("pytest*", "cat*", "find*", "git*")), sandbox=missing)
    for command in (
        "pytest -q",
        "find . -name app.py -exec python3 {} +",
        "git commit -m x",
        "git branch -f main",
    ):
        with anyio.fail_after(10), pytest.raises(ToolError) as err:
            await ws.bash(command)
        text = str(err.value)
        assert "no OS sandbox" in text and "apt-get install bubblewrap" in text, text
        assert 'sandbox = "none"' in text
    with anyio.fail_after(30):
        assert "print('hi')" in await ws.bash("cat app.py")
        assert "./app.py" in await ws.bash("find . -name app.py")


def test_bwrap_mode_without_bwrap_is_a_clear_error(tmp_path: Path) -> None:
    sandbox = Sandbox(mode="bwrap", executable=str(tmp_path / "no-such-bwrap"))
    with pytest.raises(SandboxError) as err:
        sandbox.require("run r1 stage 'build'")
    text = str(err.value)
    assert "run r1 stage 'build' needs the OS sandbox" in text
    assert "apt-get install bubblewrap" in text and "is not installed" in text
    assert not SandboxError.retryable


def test_none_and_a_missing_sandbox_are_said_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="stageflow.workspace.sandbox"):
        Sandbox(mode="none").require("run r1 stage 'build'")
        Sandbox(executable=str(tmp_path / "no-such-bwrap")).require("run r1 stage 'test'")
    none, auto = (r.getMessage() for r in caplog.records)
    assert "stage 'build': commands run WITHOUT an OS sandbox" in none
    assert "stage 'test': no OS sandbox" in auto and "apt-get install bubblewrap" in auto


def test_a_stages_network_key_is_a_boolean_and_off_by_default() -> None:
    text = (
        "name: n\nstages:\n  - id: a\n    run: make\n    network: true\n  - id: b\n    run: make\n"
    )
    spec = load_template_text(text, source="n.yaml")
    assert [s.network for s in spec.stages] == [True, False]
    with pytest.raises(SpecErrors) as info:
        load_template_text(text.replace("network: true", "network: yes please"), source="n.yaml")
    [problem] = info.value.problems
    assert problem.line == 5 and problem.stage == "a" and "network" in str(problem.path)
    assert "boolean" in problem.message
