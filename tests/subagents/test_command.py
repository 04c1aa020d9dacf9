"""The command runner: exit codes, output, environment, timeouts and process-group cleanup."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from stageflow.errors import StageTimeout
from stageflow.subagents.command import CommandRunner
from tests.subagents.factories import command_request, process_running

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

# writes the shell's pid and its background child's pid, then waits for the child
SPAWNS_CHILD = "echo $$ > sh.pid; sleep 30 & echo $! > child.pid; wait"


def read_pid(path: Path) -> int | None:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text else None


def file_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def wait_for_pid(path: Path) -> int:
    """Poll until ``path`` holds a pid (bounded by the caller's deadline)."""
    while (pid := read_pid(path)) is None:  # noqa: ASYNC110 (a file has no event to await)
        await anyio.sleep(0.02)
    return pid


async def wait_until_gone(*pids: int | None) -> None:
    """Poll until none of ``pids`` runs; the OS has no event for another's child exiting."""
    assert all(pids), pids
    while any(process_running(p) for p in pids if p):  # noqa: ASYNC110
        await anyio.sleep(0.02)


async def test_exit_zero_passes_and_captures_output(tmp_path: Path) -> None:
    result = await CommandRunner().run(
        command_request(tmp_path, "echo hello; echo oops >&2; echo bye", produces=["log", "out"])
    )
    assert result.status == "passed"
    assert result.runner == "command"
    assert result.model is None
    assert result.outputs["exit_code"] == 0
    assert result.outputs["duration_s"] >= 0
    assert result.artifacts == {"log": "hello\noops\nbye\n", "out": "hello\noops\nbye\n"}
    assert "exited 0" in result.summary
    assert "hello" in result.summary
    assert "bye" in result.summary
    assert result.error is None
    assert result.usage.total_tokens == 0


async def test_nonzero_exit_fails_with_the_code(tmp_path: Path) -> None:
    result = await CommandRunner().run(command_request(tmp_path, "echo broken; exit 3"))
    assert result.status == "failed"
    assert result.outputs["exit_code"] == 3
    assert result.error == "command exited with status 3"
    assert result.artifacts == {"output": "broken\n"}  # no produces -> 'output'


async def test_runs_in_the_workdir_with_stdin_closed(tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    with anyio.fail_after(10):
        result = await CommandRunner().run(command_request(workdir, "pwd; cat; echo end"))
    assert result.artifacts["output"] == f"{workdir}\nend\n"


async def test_output_keeps_the_tail_and_marks_truncation(tmp_path: Path) -> None:
    command = "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done"
    result = await CommandRunner(max_output=1000).run(command_request(tmp_path, command))
    text = result.artifacts["output"]
    full = "".join(f"line-{i}\n" for i in range(3000))
    marker = f"[... {len(full) - 1000} bytes truncated]\n"
    assert text.startswith(marker)
    assert text[len(marker) :] == full[-1000:]
    assert text.endswith("line-2999\n")


async def test_environment_carries_run_stage_and_inputs(tmp_path: Path) -> None:
    command = (
        'echo "$STAGEFLOW_RUN_ID|$STAGEFLOW_STAGE|$STAGEFLOW_INPUT_BRANCH'
        '|$STAGEFLOW_INPUT_MAX_RETRIES|$STAGEFLOW_INPUT_TAGS"'
    )
    result = await CommandRunner().run(
        command_request(
            tmp_path,
            command,
            inputs={"branch": "main", "max-retries": 3, "tags": ["a", "b"]},
        )
    )
    assert result.artifacts["output"] == 'r-test-0002|checks|main|3|["a", "b"]\n'


async def test_inputs_are_never_interpreted_by_the_shell(tmp_path: Path) -> None:
    hostile = "$(touch pwned); touch pwned2 `touch pwned3`"
    result = await CommandRunner().run(
        command_request(tmp_path, 'echo "$STAGEFLOW_INPUT_TITLE"', inputs={"title": hostile})
    )
    assert result.status == "passed"
    assert result.artifacts["output"] == hostile + "\n"
    assert file_names(tmp_path) == []


async def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    with anyio.fail_after(20):
        with pytest.raises(StageTimeout) as info:
            await CommandRunner().run(command_request(tmp_path, SPAWNS_CHILD, timeout=1.5))
        await wait_until_gone(read_pid(tmp_path / "sh.pid"), read_pid(tmp_path / "child.pid"))
    message = str(info.value)
    assert "timed out after 1.5s" in message
    assert "sleep 30" in message
    assert "'checks'" in message
    assert info.value.retryable is True


async def test_default_timeout_applies_when_request_has_none(tmp_path: Path) -> None:
    with anyio.fail_after(20), pytest.raises(StageTimeout) as info:
        await CommandRunner(default_timeout=0.5).run(command_request(tmp_path, "sleep 30"))
    assert "timed out after 0.5s" in str(info.value)


async def test_cancellation_kills_the_process_group(tmp_path: Path) -> None:
    request = command_request(tmp_path, SPAWNS_CHILD, timeout=60)
    finished: list[bool] = []

    async def run() -> None:
        await CommandRunner().run(request)
        finished.append(True)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            shell = await wait_for_pid(tmp_path / "sh.pid")
            child = await wait_for_pid(tmp_path / "child.pid")
            assert process_running(child)
            tg.cancel_scope.cancel()
        await wait_until_gone(shell, child)
    assert finished == []


async def test_background_child_does_not_outlive_a_finished_command(tmp_path: Path) -> None:
    with anyio.fail_after(20):
        result = await CommandRunner(drain_grace=0.2).run(
            command_request(tmp_path, "sleep 30 & echo $! > child.pid; echo done")
        )
        await wait_until_gone(read_pid(tmp_path / "child.pid"))
    assert result.status == "passed"
    assert result.artifacts["output"] == "done\n"


async def test_term_ignoring_child_is_killed_after_the_grace(tmp_path: Path) -> None:
    command = "trap '' TERM; echo $$ > sh.pid; sleep 30 & echo $! > child.pid; wait"
    with anyio.fail_after(20):
        with pytest.raises(StageTimeout):
            await CommandRunner(kill_grace=0.3).run(command_request(tmp_path, command, timeout=1))
        await wait_until_gone(read_pid(tmp_path / "sh.pid"), read_pid(tmp_path / "child.pid"))
