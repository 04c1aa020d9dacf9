"""The Bash tool: off by default, allowed commands only, never a shell, bounded time and output."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import anyio
import pytest

from stageflow.errors import ToolError
from stageflow.workspace.root import PROTECTED_DIRS, Workspace
from stageflow.workspace.shell import (
    BashPolicy,
    CommandTimedOut,
    bash_env,
    check_arguments,
    find_shell_operator,
    run_argv,
)

PY = shlex.quote(sys.executable)


def workspace(root: Path, *patterns: str, **policy: float) -> Workspace:
    return Workspace(root, bash=BashPolicy(tuple(patterns), **policy))  # type: ignore[arg-type]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for init to reap it counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


# -- the policy -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_bash_is_refused_when_no_patterns_are_listed(tmp_path: Path) -> None:
    for ws in (Workspace(tmp_path), workspace(tmp_path)):
        with anyio.fail_after(10), pytest.raises(ToolError) as err:
            await ws.bash("echo hi")
        assert str(err.value).startswith(
            "Bash is not allowed for this stage; the template or config must list allowed "
            "commands under `bash:`"
        )


def test_a_command_matching_no_pattern_is_refused_with_the_patterns() -> None:
    policy = BashPolicy(("pytest*", "git diff*"))
    assert policy.check("pytest -q tests") == ["pytest", "-q", "tests"]
    assert policy.check("git diff --stat") == ["git", "diff", "--stat"]
    with pytest.raises(ToolError) as err:
        policy.check("rm -rf /")
    assert "refused `rm -rf /`" in str(err.value)
    assert "`pytest*`, `git diff*`" in str(err.value)


@pytest.mark.parametrize(
    ("command", "operator"),
    [
        ("pytest; rm -rf ~", ";"),
        ("pytest | tee out", "|"),
        ("pytest && rm x", "&&"),
        ("pytest || true", "||"),
        ("pytest > out.txt", ">"),
        ("pytest 2>&1", ">"),
        ("pytest < in.txt", "<"),
        ("pytest &", "&"),
        ("pytest `rm x`", "`"),
        ("pytest $(rm x)", "$("),
        ('pytest "$(rm x)"', "$("),
        ("pytest\nrm x", "\n"),
    ],
)
def test_shell_operators_are_refused_with_a_clear_message(command: str, operator: str) -> None:
    policy = BashPolicy(("pytest*",))
    with pytest.raises(ToolError) as err:
        policy.check(command)
    message = str(err.value)
    assert f"uses the shell syntax `{operator}`" in message
    assert "Bash runs exactly one command without a shell" in message


@pytest.mark.parametrize(
    "command",
    ["grep -n 'a|b;c' src", 'grep -n "a|b>c" src', "grep -n a\\|b src", "grep '$(x)' src"],
)
def test_quoted_or_escaped_operator_characters_are_plain_arguments(command: str) -> None:
    assert find_shell_operator(command) is None
    assert BashPolicy(("grep *",)).check(command)[0] == "grep"


def test_a_program_given_as_a_path_must_be_named_exactly() -> None:
    policy = BashPolicy(("pytest*", "./scripts/check.sh *"))
    with pytest.raises(ToolError, match="matches none of the allowed"):
        policy.check("pytest/../../../bin/sh -c 'id'")
    assert policy.check("./scripts/check.sh --fast") == ["./scripts/check.sh", "--fast"]


def test_unbalanced_quotes_and_empty_commands_are_refused() -> None:
    policy = BashPolicy(("echo *",))
    with pytest.raises(ToolError, match="cannot parse"):
        policy.check("echo 'open")
    with pytest.raises(ToolError, match="`command` is empty"):
        policy.check("   ")


# -- arguments ------------------------------------------------------------------------------


@pytest.fixture
def argroot(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / ".git").mkdir()
    (tmp_path / "outside").mkdir()
    (root / "link_out").symlink_to(tmp_path / "outside")
    return root


def refusal(argv: list[str], root: Path) -> str:
    with pytest.raises(ToolError) as err:
        check_arguments(argv, root=root, protected=PROTECTED_DIRS)
    return str(err.value)


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["git", "diff", "--output=/tmp/diff.txt"], "is an absolute path outside the workspace"),
        (["git", "diff", "--output=../diff.txt"], "climbs out of the workspace with `..`"),
        (["cat", "src/../../secret"], "climbs out of the workspace"),
        (["sort", "-o", "/etc/cron.d/x", "a"], "is an absolute path outside"),
        (["sort", "-o/etc/cron.d/x", "a"], "is an absolute path outside"),
        (["sort", "-o../x", "a"], "climbs out"),
        (["dd", "if=a", "of=/tmp/x"], "is an absolute path outside"),
        (["cat", "link_out/secret"], "symbolic link that points outside"),
        (["git", "diff", "--output=.git/hooks/pre-commit"], "inside `.git`"),
        (["cp", "a", ".GIT/hooks/pre-commit"], "inside `.git`"),
        (["cp", "a", ".claude/settings.json"], "inside `.claude`"),
    ],
)
def test_arguments_naming_paths_outside_or_in_protected_dirs_are_refused(
    argroot: Path, argv: list[str], why: str
) -> None:
    message = refusal(argv, argroot)
    assert why in message
    assert "use a relative path" in message


def test_arguments_inside_the_workspace_are_accepted(argroot: Path) -> None:
    for argv in (
        ["pytest", "-q", "src", f"--rootdir={argroot}"],
        ["git", "diff", "--stat", "main..HEAD", "--", "src/a.py", "src/../b.py"],
        ["git", "diff", "--no-index", "/dev/null", "src/new.py"],
        ["git", "log", "-1", "--format=%H %s", "HEAD~1"],
        ["git", "cherry-pick", "-x", "abc123"],
        ["echo", "$HOME", "~", "https://example.com/a/../b"],
        ["/usr/bin/python3", "-c", "print(1)"],  # the program itself is BashPolicy's business
    ):
        check_arguments(argv, root=argroot, protected=PROTECTED_DIRS)


@pytest.mark.parametrize(
    "argv",
    [
        ["git", "-c", "alias.x=!touch pwned", "x"],
        ["git", "-calias.x=!sh", "x"],
        ["git", "-C", "src", "status"],
        ["git", "--config-env=core.pager=EDITOR", "log"],
        ["git", "--exec-path=src", "status"],
        ["git", "--git-dir=src/.hidden", "log"],
        ["git", "--work-tree", "src", "status"],
        ["git", "--namespace", "x", "-c", "core.pager=sh", "log"],
        ["git", "config", "core.hooksPath", "src"],
        ["git", "credential", "fill"],
        ["git", "fetch", "--upload-pack=touch pwned", "origin"],
        ["git", "push", "--receive-pack", "sh", "origin"],
        ["git", "archive", "--exec=sh", "HEAD"],
        ["git", "difftool", "--extcmd=sh", "HEAD"],
        ["git", "grep", "--open-files-in-pager=sh", "x"],
        ["git", "grep", "-Osh", "x"],
        ["git", "rebase", "-x", "touch pwned", "main"],
        ["/usr/bin/git", "-c", "core.pager=sh", "log"],
    ],
)
def test_git_options_that_leave_the_workspace_or_run_programs_are_refused(
    argroot: Path, argv: list[str]
) -> None:
    assert "refused" in refusal(argv, argroot)


@pytest.mark.anyio
async def test_an_allowed_pattern_still_refuses_a_path_argument_outside(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    target = tmp_path / "written.txt"
    ws = workspace(root, f"{PY} -c *")
    script = "import sys; open(sys.argv[1], 'w').write('x')"
    with anyio.fail_after(20):
        with pytest.raises(ToolError, match="is an absolute path outside the workspace"):
            await ws.bash(f'{PY} -c "{script}" {target}')
        assert await ws.bash(f'{PY} -c "{script}" inside.txt') == "(exit code 0)"
    assert not target.exists()
    assert (root / "inside.txt").read_text() == "x"


def test_bash_env_keeps_only_the_allow_list() -> None:
    base = {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "VIRTUAL_ENV": "/venv",
        "PYTHONPATH": "src",
        "TMPDIR": "/tmp",
        "STAGEFLOW_TOKEN": "sf-secret",
        "STAGEFLOW_DB": "/home/u/.stageflow/state.db",
        "AWS_SECRET_ACCESS_KEY": "x",
        "NPM_CONFIG__AUTH": "x",
        "PGPASSFILE": "/home/u/.pgpass",
    }
    assert bash_env(base) == {k: base[k] for k in list(base)[:7]}


# -- running --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_output_and_exit_code_are_reported(tmp_path: Path) -> None:
    ws = workspace(tmp_path, f"{PY} -c *")
    with anyio.fail_after(20):
        out = await ws.bash(f"{PY} -c 'import sys; print(\"boom\"); sys.exit(3)'")
    assert out == "boom\n(exit code 3)"


@pytest.mark.anyio
async def test_commands_run_in_the_workspace_root(tmp_path: Path) -> None:
    (tmp_path / "marker.txt").write_text("x")
    ws = workspace(tmp_path, "ls")
    with anyio.fail_after(20):
        assert await ws.bash("ls") == "marker.txt\n(exit code 0)"


@pytest.mark.anyio
async def test_model_text_is_never_shell_interpreted(tmp_path: Path) -> None:
    (tmp_path / "file-a.txt").write_text("a")
    ws = workspace(tmp_path, "echo *")
    with anyio.fail_after(20):
        # a shell would run the substitution, expand the glob and the variable
        assert await ws.bash("echo '$(touch pwned)' * $HOME ~") == (
            "$(touch pwned) * $HOME ~\n(exit code 0)"
        )
        with pytest.raises(ToolError, match="shell syntax"):
            await ws.bash("echo $(touch pwned)")
        with pytest.raises(ToolError, match="shell syntax"):
            await ws.bash("echo `touch pwned`")
        code, out = await run_argv(
            ["echo", "$(touch pwned)", ";", "touch", "pwned", "|", "`touch pwned`"],
            cwd=tmp_path,
            timeout=10,
            max_output_bytes=1000,
        )
    assert (code, out) == (0, "$(touch pwned) ; touch pwned | `touch pwned`\n")
    assert sorted(os.listdir(tmp_path)) == ["file-a.txt"]  # noqa: PTH208 -- sync check in a test


@pytest.mark.anyio
async def test_timeout_kills_the_process_group_including_a_sleeping_child(tmp_path: Path) -> None:
    code = (
        "import subprocess, time; "
        "child = subprocess.Popen(['sleep', '60']); "
        "print(child.pid, flush=True); time.sleep(60)"
    )
    ws = workspace(tmp_path, f"{PY} -c *", timeout=2)
    with anyio.fail_after(20), pytest.raises(CommandTimedOut) as err:
        await ws.bash(f'{PY} -c "{code}"', timeout=30)  # capped by the policy's 2s
    assert err.value.timeout == 2
    assert "timed out after 2s and was killed" in str(err.value)
    assert err.value.output.strip().isdigit(), f"the child never started: {err.value}"
    child = int(err.value.output)
    # SIGKILL is delivered asynchronously: poll briefly, bounded
    with anyio.fail_after(5):
        while _alive(child):  # noqa: ASYNC110 -- no event exists for "a process died"
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_output_is_capped_keeping_head_and_tail(tmp_path: Path) -> None:
    ws = workspace(tmp_path, f"{PY} -c *", max_output_bytes=200)
    script = "print('HEAD' + 'x' * 50000 + 'TAIL')"
    with anyio.fail_after(20):
        out = await ws.bash(f'{PY} -c "{script}"')
    assert out.startswith("HEADxxx")
    assert out.endswith("TAIL\n(exit code 0)")
    assert "[... 49809 bytes of output omitted ...]" in out
    assert len(out) < 400


@pytest.mark.anyio
async def test_a_missing_program_is_a_tool_error(tmp_path: Path) -> None:
    ws = workspace(tmp_path, "no-such-program-xyz*")
    with anyio.fail_after(10), pytest.raises(ToolError, match="command not found"):
        await ws.bash("no-such-program-xyz --help")


@pytest.mark.anyio
async def test_a_read_only_workspace_refuses_bash_with_its_reason(tmp_path: Path) -> None:
    ws = Workspace(
        tmp_path, writable=False, read_only_reason="not a git repo", bash=BashPolicy(("ls",))
    )
    with anyio.fail_after(10), pytest.raises(ToolError, match="read-only: not a git repo"):
        await ws.bash("ls")


@pytest.mark.anyio
async def test_credentials_are_not_passed_to_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-test")
    monkeypatch.setenv("STAGEFLOW_TOKEN", "sf-test")
    monkeypatch.setenv("SSH_PRIVATE_KEY", "-----BEGIN KEY-----")
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("LC_MESSAGES", "C")
    ws = workspace(tmp_path, "env")
    with anyio.fail_after(20):
        out = await ws.bash("env")
    assert "TZ=UTC" in out
    assert "LC_MESSAGES=C" in out
    assert f"PATH={os.environ['PATH']}" in out
    for secret in ("sk-ant-test", "ghp-test", "sf-test", "BEGIN KEY"):
        assert secret not in out
    assert "ANTHROPIC_API_KEY" in os.environ  # only the child's copy is scrubbed


@pytest.mark.anyio
async def test_a_process_killed_by_a_signal_says_so(tmp_path: Path) -> None:
    ws = workspace(tmp_path, f"{PY} -c *")
    with anyio.fail_after(20):
        out = await ws.bash(f"{PY} -c 'import os, signal; os.kill(os.getpid(), signal.SIGKILL)'")
    assert out == "(killed by signal 9)"
