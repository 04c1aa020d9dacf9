"""``stageflow run`` in a process of its own against the Messages API stand-in.

For attacks on the server process itself: its environment is the one it was started with (so
``/proc/<pid>/environ`` holds what a user's would), and a hang is bounded by the subprocess
timeout instead of hanging the test run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.standin import StandIn, Turn
from tests.standin.wire import Json, text_of
from tests.subagents.anthropic_harness import tool_results


@dataclass
class Outcome:
    code: int
    view: Json  # the run as `stageflow run --json` printed it
    stderr: str
    results: list[str]  # every tool result the model was shown
    requests: int  # message requests the stand-in answered

    def stage(self, stage_id: str) -> Json:
        return next(s for s in self.view["stages"] if s["id"] == stage_id)

    def worktree(self, project: Path) -> Path:
        return project / ".stageflow" / "worktrees" / str(self.view["run_id"])


def run_cli(
    project: Path,
    *,
    template: str,
    config: str,
    model: Callable[[Json], Turn | None],
    env: Mapping[str, str],
    timeout: float = 300.0,
) -> Outcome:
    """Write ``template`` and ``config`` into ``project``, then ``stageflow run <name>`` in a
    subprocess with ``env`` (plus the runner and the stand-in's address)."""
    text = textwrap.dedent(template)
    name = next(ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln[:5] == "name:")
    state = project / ".stageflow"
    (state / "workflows").mkdir(parents=True, exist_ok=True)
    (state / "workflows" / f"{name}.yaml").write_text(text)
    (state / "config.toml").write_text(textwrap.dedent(config))
    with StandIn(respond=model) as api:
        full = {**env, "STAGEFLOW_RUNNER": "anthropic", "ANTHROPIC_BASE_URL": api.base_url}
        argv = [sys.executable, "-m", "stageflow", "run", name, "--task", "add things"]
        done = subprocess.run(
            [*argv, "--project", str(project), "--json"],
            env=full,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        requests = api.message_requests()
    results = [text_of(r.get("content")) for rec in requests for r in tool_results(rec.body)]
    assert done.stdout.strip(), done.stderr[-3000:]
    return Outcome(done.returncode, json.loads(done.stdout), done.stderr, results, len(requests))
