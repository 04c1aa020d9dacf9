"""An approval is bound to the attempt the reviewer read (issue 11 point 6).

Reviewer A rejects attempt 1 and the stage reruns; reviewer B's approval, meant for attempt 1,
must not pass attempt 2, which nobody has read. A decision names its attempt; one naming an
attempt that no longer waits is refused saying what changed, and one naming none applies only
while the stage has been put up for approval once.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from stageflow import events as ev
from stageflow.engine.service import Service
from stageflow.errors import InvalidArgument, InvalidState
from stageflow.store.store import Store
from tests.engine.harness import Env, engine_env

GATED = """
name: gated
stages:
  - {id: architecture, agent: worker, produces: [design], approval: required}
  - {id: coding, agent: worker, depends_on: [architecture], produces: [patch]}
"""


async def _waiting(env: Env, run_id: str) -> int:
    with anyio.fail_after(10):
        state = await env.scheduler.drive(run_id, until="idle")
    st = state.stages["architecture"]
    assert st.status == "awaiting_approval"
    view = await env.service.view(run_id)
    [w] = view.waiting
    assert w.attempt == st.attempt  # status shows the attempt under review
    assert f"--attempt {st.attempt}" in view.next_action
    return st.attempt


@pytest.mark.anyio
async def test_a_stale_approval_is_refused_after_a_rework_and_the_current_one_passes(
    tmp_path: Path,
) -> None:
    async with engine_env(tmp_path, GATED) as env:
        run = await env.service.start_run("gated", "task")
        read_by_a = read_by_b = await _waiting(env, run.run_id)  # both read attempt 1
        assert read_by_a == 1

        await env.service.decide(
            run.run_id,
            stage="architecture",
            decision="reject",
            feedback="split the cache out",
            approver="A",
            attempt=read_by_a,
        )
        assert await _waiting(env, run.run_id) == 2  # the rework waits now

        with pytest.raises(InvalidState) as stale:
            await env.service.decide(
                run.run_id,
                stage="architecture",
                decision="approve",
                approver="B",
                attempt=read_by_b,
            )
        msg = str(stale.value)
        assert "attempt 1 was replaced" in msg and "attempt 2 waits now" in msg
        assert "attempt=2" in msg

        # without an attempt: the stage has been shown twice, so which one is ambiguous
        with pytest.raises(InvalidArgument) as vague:
            await env.service.decide(
                run.run_id, stage="architecture", decision="approve", approver="B"
            )
        assert "put up for approval 2 times" in str(vague.value)

        with pytest.raises(InvalidState) as future:
            await env.service.decide(
                run.run_id, stage="architecture", decision="approve", approver="B", attempt=7
            )
        assert "no attempt 7" in str(future.value)
        with pytest.raises(InvalidArgument):
            await env.service.decide(
                run.run_id, stage="architecture", decision="approve", approver="B", attempt=0
            )

        # the refusals recorded nothing: the stage still waits on attempt 2
        state = await env.service.state(run.run_id)
        assert state.stages["architecture"].status == "awaiting_approval"
        decided = [
            e.event
            for e in await env.store.load_events(run.run_id)
            if isinstance(e.event, ev.ApprovalDecided)
        ]
        assert [(d.approver, d.decision, d.attempt) for d in decided] == [("A", "reject", 1)]

        await env.service.decide(
            run.run_id, stage="architecture", decision="approve", approver="B", attempt=2
        )
        with anyio.fail_after(10):
            final = await env.scheduler.drive(run.run_id, until="terminal")
        assert final.status == "completed"
        decided = [
            e.event
            for e in await env.store.load_events(run.run_id)
            if isinstance(e.event, ev.ApprovalDecided)
        ]
        assert [(d.approver, d.decision, d.attempt) for d in decided] == [
            ("A", "reject", 1),
            ("B", "approve", 2),
        ]


@pytest.mark.anyio
async def test_a_decision_without_an_attempt_applies_while_one_version_was_shown(
    tmp_path: Path,
) -> None:
    async with engine_env(tmp_path, GATED) as env:
        run = await env.service.start_run("gated", "task")
        await _waiting(env, run.run_id)
        await env.service.decide(run.run_id, stage=None, decision="approve", approver="A")
        events = await env.store.load_events(run.run_id)
        [decided] = [e.event for e in events if isinstance(e.event, ev.ApprovalDecided)]
        assert decided.attempt == 1  # recorded with the attempt it applied to


@pytest.mark.anyio
async def test_the_race_a_reject_and_a_stale_approve_from_two_connections(
    tmp_path: Path,
) -> None:
    """A rejects and the rework runs to the gate again while B, who read attempt 1, approves
    from another connection: whatever the order, B's approval never passes attempt 2."""
    async with engine_env(tmp_path, GATED) as env:
        run = await env.service.start_run("gated", "task")
        await _waiting(env, run.run_id)
        outcomes: dict[str, str] = {}

        async def reviewer_a() -> None:
            try:
                await env.service.decide(
                    run.run_id,
                    stage="architecture",
                    decision="reject",
                    feedback="redo",
                    approver="A",
                    attempt=1,
                )
            except InvalidState as exc:  # B's approval came first
                outcomes["A"] = str(exc)
                return
            outcomes["A"] = "recorded"
            with anyio.fail_after(10):
                await env.scheduler.drive(run.run_id, until="idle")

        async def reviewer_b() -> None:
            async with await Store.open(env.settings.db_path) as other:
                service = Service(env.settings, other)
                for _ in range(50):  # keep trying while A's rework runs
                    try:
                        await service.decide(
                            run.run_id,
                            stage="architecture",
                            decision="approve",
                            approver="B",
                            attempt=1,
                        )
                        outcomes["B"] = "recorded"
                        return
                    except InvalidState as exc:
                        outcomes["B"] = str(exc)
                    await anyio.sleep(0.005)

        async with anyio.create_task_group() as tg:
            tg.start_soon(reviewer_b)
            tg.start_soon(reviewer_a)

        events = await env.store.load_events(run.run_id)
        decided = [e.event for e in events if isinstance(e.event, ev.ApprovalDecided)]
        # exactly one decision about attempt 1, and no approval of attempt 2
        assert [d.attempt for d in decided] == [1]
        assert not any(d.attempt == 2 for d in decided)
        state = await env.service.state(run.run_id)
        if decided[0].approver == "A":
            assert outcomes["B"] != "recorded"
            assert state.stages["architecture"].status == "awaiting_approval"
            assert state.stages["architecture"].attempt == 2


def test_a_decision_logged_before_attempts_were_recorded_still_verifies() -> None:
    # the payload an earlier version stored: no "attempt" key
    old = {
        "type": "approval_decided",
        "stage": "architecture",
        "decision": "approve",
        "feedback": None,
        "approver": "human",
        "automatic": False,
    }
    sealed = ev.chain_hash(ev.GENESIS_HASH, "r-old", 1, 1.0, "cli", old)
    entry = ev.Envelope(
        run_id="r-old",
        seq=1,
        at=1.0,
        actor="cli",
        event=ev.EVENT_ADAPTER.validate_python(old),
        prev_hash=ev.GENESIS_HASH,
        hash=sealed,
    )
    assert ev.verify_chain([entry]) == []
    bound = ev.ApprovalDecided(stage="a", decision="approve", attempt=2)
    assert ev.event_payload(bound)["attempt"] == 2
    assert ev.EVENT_ADAPTER.validate_python(ev.event_payload(bound)) == bound
