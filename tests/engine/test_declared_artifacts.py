"""The engine keeps only the artifacts a stage declares, whatever the runner hands back (a
Claude Code closing block, a buggy runner): undeclared names fail the attempt with a message
naming the declared ones, unless the stage sets ``produces_extra``."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.engine.runner import AttemptRequest, AttemptResult
from tests.engine.harness import FakeRunner, default_result, engine_env

pytestmark = pytest.mark.anyio

TEMPLATE = """
name: one
stages:
  - {id: write, agent: worker, produces: [doc], on_failure: continue}
"""

EXTRA = """
name: one
stages:
  - {id: write, agent: worker, produces: [doc], produces_extra: true}
"""


async def _strays(req: AttemptRequest) -> AttemptResult:
    result = default_result(req)
    return result.model_copy(update={"artifacts": {**result.artifacts, "true": "t", "x": "y"}})


async def test_undeclared_artifacts_fail_the_attempt_and_only_declared_ones_are_kept(
    tmp_path: Path,
) -> None:
    runner = FakeRunner(behaviours={"write": _strays})
    async with engine_env(tmp_path, TEMPLATE, runner=runner) as env:
        state = await env.service.start_run("one", "t")
        done = await env.scheduler.drive(state.run_id, until="terminal")
    write = done.stages["write"]
    assert write.status == "failed" and write.tolerated
    assert write.current is not None and write.current.error == (
        "undeclared artifact(s): true, x; this stage produces only: doc (put small values in "
        "outputs; a template may allow more with produces_extra: true)"
    )
    assert sorted(write.artifacts) == ["doc"]


async def test_produces_extra_keeps_them(tmp_path: Path) -> None:
    runner = FakeRunner(behaviours={"write": _strays})
    async with engine_env(tmp_path, EXTRA, runner=runner) as env:
        state = await env.service.start_run("one", "t")
        done = await env.scheduler.drive(state.run_id, until="terminal")
    assert done.ended == "completed"
    assert sorted(done.stages["write"].artifacts) == ["doc", "true", "x"]
