"""Property: whatever the requests cost, a run never spends past its cap (hypothesis).

Random runs of the real scheduler and the real API runner (its tool loop, reservations and
meters), with parallel stages, retries, stage caps and a model that answers every request with
random usage up to what the request allowed: any input up to the request's size, split at
random between plain input, cache writes (1-hour ones only when asked for) and reads, and any
output up to ``max_tokens``, after random delays so concurrent attempts interleave. After
every run, the ledger's total and the run's spend are within the run's cap, and each stage's
within its cap.
"""

from __future__ import annotations

import random
import tempfile
import textwrap
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from stageflow.config import load_settings
from stageflow.engine.scheduler import Scheduler
from stageflow.engine.service import Service
from stageflow.models.client import ModelCall, ModelReply, RawUsage
from stageflow.store.store import Store
from stageflow.subagents.anthropic_runner import AnthropicRunner
from stageflow.subagents.spend import input_bound, long_cache
from tests.engine.harness import WORKER, write_template
from tests.subagents.fake_model import submit, tool_use

pytestmark = pytest.mark.anyio

EXAMPLES = 25


class RandomModel:
    """Answers with random usage within what each request allowed; submits at random."""

    def __init__(self, seed: int, submit_share: float) -> None:
        self.rng = random.Random(seed)
        self.submit_share = submit_share
        self.calls: list[ModelCall] = []

    async def count_tokens(self, call: ModelCall) -> int:
        """The provider's count: what it will bill at most for this request's input."""
        return self.billed_input(call)

    @staticmethod
    def billed_input(call: ModelCall) -> int:
        return input_bound(call) // 3

    async def send(self, call: ModelCall) -> ModelReply:
        self.calls.append(call)
        await anyio.sleep(self.rng.random() * 0.004)
        rng = self.rng
        prompt = rng.randint(0, self.billed_input(call))
        write_5m = rng.randint(0, prompt)
        # 1-hour cache writes are billed only for blocks that ask for them
        write_1h = rng.randint(0, prompt - write_5m) if long_cache(call) else 0
        read = rng.randint(0, prompt - write_5m - write_1h)
        usage = RawUsage(
            input_tokens=prompt - write_5m - write_1h - read,
            output_tokens=rng.randint(0, call.max_tokens),
            cache_write_5m_tokens=write_5m,
            cache_write_1h_tokens=write_1h,
            cache_read_tokens=read,
        )
        if rng.random() < self.submit_share:
            block = submit({"out": "x" * rng.randint(1, 50)})
        else:
            block = tool_use("Read", {"file_path": "notes.md"})
        return ModelReply(
            content=[block],
            stop_reason="tool_use",
            model=call.model,
            usage=usage,
            request_id=f"req_{len(self.calls)}",
        )

    async def aclose(self) -> None:
        return None


def _template(stages: int, limit: int, caps: list[float | None], retries: int) -> str:
    lines = ["name: spend", f"limits: {{max_concurrent_agents: {limit}}}", "stages:"]
    for i in range(stages):
        lines += [f"  - id: s{i}", "    agent: worker", "    produces: [out]"]
        if caps[i] is not None:
            lines.append(f"    budget_usd: {caps[i]}")
        if retries:
            lines.append(f"    on_failure: {{retry: {{max_attempts: {retries + 1}, backoff: 0}}}}")
    return "\n".join(lines) + "\n"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    stages=st.integers(1, 4),
    limit=st.integers(1, 4),
    budget=st.floats(0.01, 0.6),
    caps=st.lists(st.one_of(st.none(), st.floats(0.005, 0.3)), min_size=4, max_size=4),
    retries=st.integers(0, 2),
    seed=st.integers(0, 2**32 - 1),
    submit_share=st.floats(0.05, 0.6),
)
async def test_no_run_spends_past_its_caps(
    stages: int,
    limit: int,
    budget: float,
    caps: list[float | None],
    retries: int,
    seed: int,
    submit_share: float,
) -> None:
    model = RandomModel(seed, submit_share)
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        agents = project / ".stageflow" / "agents"
        agents.mkdir(parents=True)
        (agents / "worker.md").write_text(WORKER, encoding="utf-8")
        (project / "notes.md").write_text("notes\n", encoding="utf-8")
        write_template(project, textwrap.dedent(_template(stages, limit, caps, retries)))
        cfg = load_settings(project, runner="anthropic")
        runner = AnthropicRunner(cfg, client_factory=lambda: model)
        async with await Store.open(cfg.db_path) as store:
            service = Service(cfg, store, runner_label="anthropic")
            scheduler = Scheduler(store, runner, max_concurrent_agents=limit, poll_interval=0.02)
            run = await service.start_run("spend", "spend some", budget_usd=budget)
            with anyio.fail_after(120):
                final = await scheduler.drive(run.run_id, until="idle")
            rows = await store.ledger.list(run.run_id)

    ledger_total = sum(r.spent_usd for r in rows)
    event("requests sent" if model.calls else "no request fitted")
    assert len(rows) == len(model.calls)
    assert ledger_total <= budget + 1e-9, (ledger_total, budget)
    assert final.spent_usd <= budget + 1e-9, (final.spent_usd, budget)
    assert final.spent_usd == pytest.approx(ledger_total, abs=1e-9)
    for i in range(stages):
        cap = caps[i]
        if cap is None:
            continue
        spent = sum(r.spent_usd for r in rows if r.stage == f"s{i}")
        assert spent <= cap + 1e-9, (f"s{i}", spent, cap)
