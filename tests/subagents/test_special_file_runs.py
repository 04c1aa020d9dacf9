"""A Write to a FIFO in a real run (issue 11, point 4): ``stageflow run`` in its own process,
the API runner, a scripted model on the stand-in.

The template's first (trusted) command stage makes a named pipe in the run's worktree; the
model then writes to it. Before: the Write blocked its thread for good, the stage timeout
never fired and the process hung (here: until the subprocess timeout). Now the Write is a tool
error the model sees, and the stage finishes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.standin import Turn, tool_use_block
from tests.standin.project import make_project
from tests.standin.wire import Json
from tests.subagents.cli_process import run_cli

TEMPLATE = """
name: fifo
description: a model writes to a named pipe
stages:
  - id: pipe
    run: mkfifo notes.pipe
  - id: implement
    agent: developer
    depends_on: [pipe]
    produces: [patch_summary]
    timeout: 20s
"""


def pipe_writer(body: Json) -> Turn | None:
    turns = sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant")
    if turns == 0:
        args = {"file_path": "notes.pipe", "content": "hello"}
        return Turn([tool_use_block("toolu_write", "Write", args)], "tool_use")
    submit = {"status": "passed", "summary": "done", "artifacts": {"patch_summary": "x"}}
    return Turn([tool_use_block("toolu_submit", "submit_result", submit)], "tool_use")


def test_a_write_to_a_fifo_is_a_tool_error_and_the_stage_finishes(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    env = {
        **os.environ,
        "STAGEFLOW_HOME": str(tmp_path / "home"),
        "ANTHROPIC_API_KEY": "test",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    out = run_cli(project, template=TEMPLATE, config="", model=pipe_writer, env=env, timeout=120)
    implement = out.stage("implement")
    assert implement["status"] == "succeeded", implement
    [refused] = [r for r in out.results if "notes.pipe" in r]
    assert "is not a regular file (a named pipe, FIFO)" in refused
    assert out.view["status"] == "completed"
