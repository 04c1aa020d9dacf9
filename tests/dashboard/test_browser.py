"""The dashboard in a real headless Chromium (Debian's package, over the DevTools protocol):
the run page loads, a stage changes state live without a reload, and a click approves the
gate. A screenshot of the run page is kept: ``.ci/artifacts/dashboard-run.png``."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import pytest

from stageflow.engine.runner import AttemptRequest, AttemptResult
from tests.dashboard.cdp import chromium_page
from tests.dashboard.harness import served
from tests.engine.harness import FakeRunner, default_result, engine_env, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / ".ci" / "artifacts"

FLOW = """
name: reviewed
stages:
  - {id: prep, agent: worker, produces: [notes]}
  - {id: architecture, agent: worker, depends_on: [prep], produces: [design], approval: required}
  - {id: coding, agent: worker, depends_on: [architecture], produces: [patch]}
"""

DESIGN = """# Cache design

- **LRU** in front of the store, `maxsize=1024`
- invalidated on every append

See [the notes](https://example.com/notes).
"""


def _status(stage: str) -> str:
    return f"document.querySelector('.stage[data-stage=\"{stage}\"]')?.dataset.status"


async def test_the_run_page_updates_live_and_a_click_approves_the_gate(tmp_path: Path) -> None:
    release = anyio.Event()

    async def prep(req: AttemptRequest) -> AttemptResult:
        await release.wait()  # running until the test lets it finish
        return default_result(req)

    async def architecture(req: AttemptRequest) -> AttemptResult:
        return AttemptResult(
            status="passed",
            summary="a design",
            artifacts={"design": DESIGN},
            runner="fake",
            model="claude-sonnet-4-5",
        )

    runner = FakeRunner(behaviours={"prep": prep, "architecture": architecture})
    async with engine_env(tmp_path, FLOW, runner=runner) as env:
        run = await env.service.start_run("reviewed", "add a cache", budget_usd=2.0)
        run_id = run.run_id
        async with served(env, user="ana") as s, anyio.create_task_group() as tg:
            tg.start_soon(lambda: env.scheduler.drive(run_id, until="idle"))

            async def prep_running() -> bool:
                return (await env.service.state(run_id)).stages["prep"].status == "running"

            await wait_until(prep_running, limit=10)
            async with chromium_page(tmp_path / "profile") as page:
                await page.navigate(s.url(f"/runs/{run_id}"))
                # the token left the address bar: the session cookie carries on
                assert await page.evaluate("location.search") == ""
                assert await page.evaluate(_status("prep")) == "running"
                await page.wait_for("document.getElementById('live-state').textContent == 'live'")
                await page.evaluate("window.__samePage = true")

                release.set()  # prep finishes; architecture runs and waits for approval
                await page.wait_for(f"{_status('prep')} == 'succeeded'")
                await page.wait_for(f"{_status('architecture')} == 'awaiting_approval'")
                await page.wait_for("!!document.getElementById('approve-architecture')")
                assert await page.evaluate("window.__samePage") is True  # no reload happened
                assert (
                    await page.evaluate(
                        "document.querySelector('#artifacts .md strong')?.textContent"
                    )
                    == "LRU"
                )
                await page.screenshot(tmp_path / "run-page.png")

                await page.evaluate(
                    "document.querySelector('form.decide textarea').value = 'looks right';"
                    "document.getElementById('approve-architecture').click()"
                )
                await page.wait_for("!!document.getElementById('notice')")
                notice = await page.evaluate("document.getElementById('notice').textContent")
                assert notice == "recorded: approve by ana (dashboard)"
                await page.wait_for(f"{_status('coding')} == 'succeeded'")
                assert await page.evaluate("!!document.getElementById('notice')")  # still there
                await page.wait_for(
                    "document.querySelector('#summary .badge').textContent == 'completed'"
                )
                await page.screenshot(tmp_path / "run-page-done.png")
            tg.cancel_scope.cancel()

        events = await env.store.load_events(run_id)
        [decided] = [e.event for e in events if e.event.type == "approval_decided"]
        assert decided.approver == "ana"  # type: ignore[union-attr]
        assert decided.via == "dashboard"  # type: ignore[union-attr]
        assert decided.attempt == 1  # type: ignore[union-attr]
        assert (await env.service.state(run_id)).ended == "completed"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tmp_path / "run-page.png", ARTIFACTS / "dashboard-run.png")
    shutil.copyfile(tmp_path / "run-page-done.png", ARTIFACTS / "dashboard-run-done.png")
    assert (ARTIFACTS / "dashboard-run.png").stat().st_size > 10_000
