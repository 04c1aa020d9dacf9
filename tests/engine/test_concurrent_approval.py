"""Two deciders on one gate at the same moment: exactly one decision is recorded.

The loser gets ``InvalidState`` (exit code 4 from the CLI) naming the stage and the state the
winner left it in. Raced with real processes (approve/approve and reject/approve, five runs
each; both processes of a pair are released within a millisecond of each other) and
in-process with two ``Store`` connections, once free-running and once forced to interleave so
that both read the gate as waiting before either writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from stageflow import events as ev
from stageflow.config import Settings, load_settings
from stageflow.engine.decisions import Decision
from stageflow.engine.scheduler import Scheduler
from stageflow.engine.service import Service
from stageflow.engine.state import RunState
from stageflow.errors import InvalidState
from stageflow.store.store import Store
from stageflow.subagents.offline.runner import OfflineRunner
from tests.engine.harness import engine_env
from tests.procs import Cli, Proc, of_type

STAGE = "architecture"

GATED = """
name: gated
stages:
  - id: architecture
    agent: architect
    produces: [design]
    approval: required
  - {id: coding, agent: developer, depends_on: [architecture], needs: [architecture.design],
     produces: [patch_summary]}
"""

GATED_WORKER = """
name: gated
stages:
  - {id: architecture, agent: worker, produces: [design], approval: required}
  - {id: coding, agent: worker, depends_on: [architecture], produces: [patch]}
"""

RUNS = 5
VARIANTS: list[tuple[Decision, Decision]] = [("approve", "approve"), ("reject", "approve")]
VARIANT_IDS = ["approve-approve", "reject-approve"]


def _left_as(decision: Decision) -> str:
    """The status the winner's decision leaves the gate's stage in (nobody drives the run)."""
    return "succeeded" if decision == "approve" else "pending"


def _refusal(decision: Decision) -> str:
    return f"stage '{STAGE}' is not waiting for a decision (it is {_left_as(decision)})"


def _decide_args(run_id: str, decision: Decision, approver: str) -> list[str]:
    args = [decision, run_id, "--stage", STAGE, "--no-drive", "--approver", approver]
    if decision == "reject":
        args += ["--feedback", f"{approver}: split the cache layer out"]
    return args


def _more_waiting_runs(cli: Cli, count: int) -> list[str]:
    """Start ``count`` more gated runs in this process and drive each to its gate."""

    async def go() -> list[str]:
        settings = load_settings(cli.project)
        async with await Store.open(settings.db_path) as store:
            service = Service(settings, store)
            scheduler = Scheduler(store, OfflineRunner())
            ids = []
            for i in range(count):
                state = await service.start_run("gated", f"feature {i}")
                with anyio.fail_after(10):
                    await scheduler.drive(state.run_id, until="idle")
                ids.append(state.run_id)
            return ids

    return anyio.run(go)


@pytest.mark.slow
@pytest.mark.parametrize("decisions", VARIANTS, ids=VARIANT_IDS)
def test_two_processes_deciding_one_gate_record_exactly_one_decision(
    tmp_path: Path, decisions: tuple[Decision, Decision]
) -> None:
    cli = Cli(tmp_path)
    cli.write_template(GATED)
    codes: dict[tuple[str, str], int] = {}
    races: list[tuple[str, dict[str, tuple[Decision, Proc]]]] = []
    try:
        # The CLI's `run` returns once the run needs a human; more runs are made in-process.
        code, first = cli.call("run", "run", "gated", "--task", "feature", timeout=20)
        assert code == 0, first.output()
        run_ids = [r.run_id for r in cli.runs()] + _more_waiting_runs(cli, RUNS - 1)
        for run_id in run_ids:
            assert cli.state(run_id).stages[STAGE].status == "awaiting_approval"

        # All deciders import at once; then each race releases its pair back to back.
        for n, run_id in enumerate(run_ids):
            pair: dict[str, tuple[Decision, Proc]] = {}
            for who, decision in zip(("p1", "p2"), decisions, strict=True):
                proc = cli.start_primed(f"{who}-{n}", *_decide_args(run_id, decision, who))
                pair[who] = (decision, proc)
            races.append((run_id, pair))
        procs = [proc for _, pair in races for _, proc in pair.values()]
        cli.poll("every decider to be primed", lambda: all(p.is_primed() for p in procs), limit=60)
        for run_id, pair in races:
            for _, proc in pair.values():
                proc.release()
            for who, (_, proc) in pair.items():
                codes[(run_id, who)] = proc.wait(timeout=20)
    finally:
        cli.cleanup()

    for run_id, pair in races:
        assert sorted(codes[(run_id, who)] for who in pair) == [0, 4], cli.dump()
        by_code = {codes[(run_id, who)]: who for who in pair}
        winner, loser = by_code[0], by_code[4]
        won_with = pair[winner][0]
        assert _refusal(won_with) in pair[loser][1].stderr, pair[loser][1].output()

        envs = cli.events(run_id)
        decided = [d for d in of_type(envs, ev.ApprovalDecided) if d.stage == STAGE]
        assert [(d.decision, d.approver) for d in decided] == [(won_with, winner)]
        assert cli.state(run_id).stages[STAGE].status == _left_as(won_with)
        assert ev.verify_chain(envs) == []
    assert len(races) == RUNS
    code, audit = cli.call("audit", "audit", races[0][0], "--verify")
    assert code == 0, audit.output()


# -- in-process: two Store connections, two Services ---------------------------------------


class _Rendezvous:
    """Releases its parties only when all of them have arrived."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.all_here = anyio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived == self.parties:
            self.all_here.set()
        await self.all_here.wait()


class _ReadsFirst(Service):
    """A Service whose first read of the run waits for the other decider's first read, so
    both check the gate as waiting before either appends its decision."""

    def __init__(self, settings: Settings, store: Store, rendezvous: _Rendezvous) -> None:
        super().__init__(settings, store, runner_label="fake")
        self.rendezvous = rendezvous
        self.seen: list[RunState] = []

    async def state(self, run_id: str) -> RunState:
        state = await super().state(run_id)
        self.seen.append(state)
        if len(self.seen) == 1:
            await self.rendezvous.wait()
        return state


@dataclass
class _Outcome:
    ok: list[str] = field(default_factory=list)
    refused: dict[str, InvalidState] = field(default_factory=dict)


async def _race(run_id: str, deciders: dict[str, tuple[Service, Decision]]) -> _Outcome:
    outcome = _Outcome()

    async def decide(name: str, service: Service, decision: Decision) -> None:
        feedback = f"{name}: split the cache layer out" if decision == "reject" else None
        try:
            await service.decide(
                run_id, stage=STAGE, decision=decision, feedback=feedback, approver=name
            )
        except InvalidState as exc:
            outcome.refused[name] = exc
        else:
            outcome.ok.append(name)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for name, (service, decision) in deciders.items():
                tg.start_soon(decide, name, service, decision)
    return outcome


@pytest.mark.anyio
@pytest.mark.parametrize("decisions", VARIANTS, ids=VARIANT_IDS)
async def test_concurrent_decides_through_two_connections_record_one_decision(
    tmp_path: Path, decisions: tuple[Decision, Decision]
) -> None:
    async with (
        engine_env(tmp_path, GATED_WORKER) as env,
        await Store.open(env.settings.db_path) as other_store,
    ):
        for i in range(RUNS):
            state = await env.service.start_run("gated", f"feature {i}")
            run_id = state.run_id
            with anyio.fail_after(10):
                await env.scheduler.drive(run_id, until="idle")
            assert (await env.service.state(run_id)).stages[STAGE].status == "awaiting_approval"
            other = Service(env.settings, other_store, runner_label="fake")
            outcome = await _race(
                run_id, {"p1": (env.service, decisions[0]), "p2": (other, decisions[1])}
            )
            assert len(outcome.ok) == 1 and len(outcome.refused) == 1, outcome
            winner = outcome.ok[0]
            won_with = decisions[0] if winner == "p1" else decisions[1]
            (refusal,) = outcome.refused.values()
            assert str(refusal) == _refusal(won_with)
            decided = of_type(await other_store.load_events(run_id), ev.ApprovalDecided)
            assert [(d.decision, d.approver) for d in decided] == [(won_with, winner)]
            assert (await env.service.audit(run_id)).ok


@pytest.mark.anyio
@pytest.mark.parametrize("decisions", VARIANTS, ids=VARIANT_IDS)
async def test_a_decider_that_read_the_gate_as_waiting_still_loses_to_an_earlier_write(
    tmp_path: Path, decisions: tuple[Decision, Decision]
) -> None:
    async with engine_env(tmp_path, GATED_WORKER) as env:
        state = await env.service.start_run("gated", "add a cache")
        with anyio.fail_after(10):
            await env.scheduler.drive(state.run_id, until="idle")
        async with await Store.open(env.settings.db_path) as other_store:
            meet = _Rendezvous(2)
            first = _ReadsFirst(env.settings, env.store, meet)
            second = _ReadsFirst(env.settings, other_store, meet)
            outcome = await _race(
                state.run_id, {"p1": (first, decisions[0]), "p2": (second, decisions[1])}
            )
            assert len(outcome.ok) == 1 and len(outcome.refused) == 1, outcome
            winner = outcome.ok[0]
            loser = next(iter(outcome.refused))
            won_with = decisions[0] if winner == "p1" else decisions[1]
            assert str(outcome.refused[loser]) == _refusal(won_with)
            # Both checked the gate at the same head and found it waiting: the loser's append
            # conflicted, and its re-check on the fresh log refused.
            by_name = {"p1": first, "p2": second}
            assert by_name[loser].seen[0].seq == by_name[winner].seen[0].seq
            assert by_name[loser].seen[0].stages[STAGE].status == "awaiting_approval"
            assert by_name[loser].seen[-1].seq == by_name[winner].seen[0].seq + 1
            assert by_name[loser].seen[-1].stages[STAGE].status == _left_as(won_with)
            decided = of_type(await other_store.load_events(state.run_id), ev.ApprovalDecided)
            assert [(d.decision, d.approver) for d in decided] == [(won_with, winner)]
            assert (await env.service.audit(state.run_id)).ok
