"""The anthropic runner end to end: the ``stageflow`` CLI, the engine, the context builder, the
tool loop and the real ``anthropic`` client against the loopback Messages API stand-in.

One full ``feature_development`` run (module fixture) backs the tests of artifacts, status,
workspace, context isolation and the cost roll-up; the budget stop and the growth check of
first requests do their own runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stageflow.engine.views import RunView
from stageflow.models.client import RawUsage
from stageflow.models.pricing import PriceTable
from stageflow.models.routing import DEFAULT_ALIASES
from tests.standin import StandIn, Turn, stage_info
from tests.standin.agent import filler
from tests.standin.project import make_project
from tests.standin.wire import Json, message, text_of
from tests.subagents.anthropic_harness import (
    ApiProject,
    body_text,
    first_request,
    requests_of,
    stage_of,
    submission,
    tool_results,
    tool_uses,
    use_standin,
)

STAGES = ["architecture", "implementation", "testing", "review", "deployment"]
PRODUCES = {
    "architecture": ["design"],
    "implementation": ["patch_summary"],
    "testing": ["test_report"],
    "review": ["review"],
    "deployment": ["changelog", "deploy_plan"],
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiProject]:
    with StandIn() as api:
        use_standin(monkeypatch, api.base_url)
        yield ApiProject(make_project(tmp_path / "project"), api)


@dataclass(frozen=True)
class FullRun:
    project: ApiProject
    view: RunView  # `stageflow status RUN --json` once the run has ended
    approved: list[str]


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullRun]:
    """``stageflow run feature_development``, approving each gate, until it ends."""
    with pytest.MonkeyPatch.context() as mp, StandIn() as api:
        mp.setenv("STAGEFLOW_HOME", str(tmp_path_factory.mktemp("home")))
        use_standin(mp, api.base_url)
        project = ApiProject(make_project(tmp_path_factory.mktemp("full") / "project"), api)
        view, approved = project.approve_until_done(project.run("feature_development"))
        yield FullRun(project, project.status(view.run_id), approved)


def test_a_full_feature_development_run_completes_in_its_own_worktree(full: FullRun) -> None:
    view, project = full.view, full.project
    assert view.status == "completed", view.reason
    assert full.approved == ["architecture", "deployment"]
    assert [s.id for s in view.stages] == STAGES
    wire = {"architecture": DEFAULT_ALIASES["opus"]}
    for stage in view.stages:
        assert stage.status == "succeeded", (stage.id, stage.reason)
        assert sorted(a.name for a in stage.artifacts) == PRODUCES[stage.id]
        assert all(a.size > 0 for a in stage.artifacts)
        # per-stage tokens and cost, and the model that answered, as sent on the wire
        assert stage.usage.requests == len(requests_of(project.api, stage.id)) > 0
        assert stage.usage.total_tokens > 0 and stage.usage.cost_usd > 0
        sent = {r.body["model"] for r in requests_of(project.api, stage.id)}
        assert sent == {wire.get(stage.id, DEFAULT_ALIASES["sonnet"])}
        [attempt] = stage.history
        assert attempt.runner == "anthropic"
        assert attempt.model_answered in sent and not stage.model_mismatch
    assert view.spent_usd == pytest.approx(sum(s.usage.cost_usd for s in view.stages), abs=1e-9)
    assert view.spent_usd == pytest.approx(view.usage.cost_usd, abs=1e-9) and view.spent_usd > 0
    assert view.budget_usd == 10.0  # the template's limit

    # the agents wrote into the run's worktree, on its own branch, never into the user's tree
    ws = view.workspace
    assert ws is not None and ws.mode == "worktree"
    assert ws.branch == f"stageflow/{view.run_id}"
    worktree = Path(ws.path)
    assert worktree == project.root / ".stageflow" / "worktrees" / view.run_id
    assert project.git("branch", "--show-current", cwd=worktree).strip() == ws.branch
    written = {
        use["input"]["file_path"]: use["input"]["content"]
        for rec in project.api.message_requests()
        for use in tool_uses(rec, "Write")
    }
    assert sorted(written) == [f"notes/{s}.md" for s in ("deployment", "implementation", "testing")]
    for path, content in written.items():
        assert (worktree / path).read_text(encoding="utf-8") == content
        assert not (project.root / path).exists()
        assert path in (ws.diff or "")
    assert ws.files_changed == len(written) and ws.insertions and ws.deletions == 0
    assert project.git("status", "--porcelain") == ""


def test_the_reviewer_starts_from_the_artifacts_it_needs_not_from_upstream_conversations(
    full: FullRun,
) -> None:
    api, run_id = full.project.api, full.view.run_id
    review = first_request(api, "review")
    [brief] = review.body["messages"]  # one user turn: no earlier stage's assistant turns
    assert brief["role"] == "user"
    seen = body_text(review.body)
    for stage, name in [
        ("architecture", "design"),
        ("implementation", "patch_summary"),
        ("testing", "test_report"),
    ]:
        assert full.project.artifact(run_id, stage, name) in seen, name

    # nothing of the developer's conversation: its brief, its turns, what its tools returned
    developer = requests_of(api, "implementation")
    assert len(developer) >= 3
    dev_brief = text_of(developer[0].body["messages"][0]["content"])
    assert "# Stage `implementation`" in dev_brief and "# Stage `implementation`" not in seen
    leaks = [dev_brief]
    for rec in developer:
        leaks += [json.dumps(u["input"]) for u in tool_uses(rec)]
        leaks += [text_of(b.get("text")) for b in (rec.reply or {})["content"] if "text" in b]
    results = [text_of(r["content"]) for r in tool_results(developer[-1].body)]
    assert any("def build_report" in r for r in results)  # it read the sources
    leaks += results
    written = [u["input"]["content"] for rec in developer for u in tool_uses(rec, "Write")]
    assert written and all(w not in seen for w in written)
    assert [leak[:80] for leak in leaks if len(leak) > 40 and leak in seen] == []

    # deployment needs no design: it does not get one
    deployment = body_text(first_request(api, "deployment").body)
    assert full.project.artifact(run_id, "architecture", "design") not in deployment
    assert full.project.artifact(run_id, "review", "review") in deployment


def _raw(usage: Json) -> RawUsage:
    created = usage.get("cache_creation") or {}
    return RawUsage(
        input_tokens=int(usage["input_tokens"]),
        output_tokens=int(usage["output_tokens"]),
        cache_write_5m_tokens=int(created.get("ephemeral_5m_input_tokens", 0)),
        cache_write_1h_tokens=int(created.get("ephemeral_1h_input_tokens", 0)),
        cache_read_tokens=int(usage["cache_read_input_tokens"]),
    )


def test_ledger_stages_and_run_spend_add_up_to_the_stand_in_usage_at_list_prices(
    full: FullRun,
) -> None:
    api, view = full.project.api, full.view
    rows = full.project.ledger(view.run_id)
    answered = [r for r in api.message_requests() if r.usage is not None]
    assert len(rows) == len(answered) == view.usage.requests
    prices = PriceTable()
    expected_total = 0.0
    for row, rec in zip(rows, answered, strict=True):
        assert rec.usage is not None and rec.reply is not None
        raw = _raw(rec.usage)
        cost, priced = prices.cost(str(rec.reply["model"]), raw)
        assert priced and cost > 0
        assert (
            row.model,
            row.input_tokens,
            row.output_tokens,
            row.cache_write_5m_tokens,
            row.cache_write_1h_tokens,
            row.cache_read_tokens,
        ) == (
            rec.reply["model"],
            raw.input_tokens,
            raw.output_tokens,
            raw.cache_write_5m_tokens,
            raw.cache_write_1h_tokens,
            raw.cache_read_tokens,
        )
        assert row.cost_usd == pytest.approx(cost, abs=1e-12)
        assert row.request_id and row.request_id.startswith("req_")  # the API's request-id
        expected_total += cost
    assert len({r.request_id for r in rows}) == len(rows)
    assert view.spent_usd == pytest.approx(expected_total, abs=1e-9)
    totals = api.totals()
    assert view.usage.input_tokens == sum(r.input_tokens for r in rows) == totals.input_tokens
    assert view.usage.output_tokens == totals.output_tokens
    assert view.usage.cache_read_tokens == totals.cache_read_tokens
    assert view.usage.cache_write_tokens == (
        totals.cache_write_5m_tokens + totals.cache_write_1h_tokens
    )
    for stage in view.stages:
        mine = [r for r in rows if r.stage == stage.id]
        assert stage.usage.requests == len(mine)
        assert stage.usage.input_tokens == sum(r.input_tokens for r in mine)
        assert stage.usage.output_tokens == sum(r.output_tokens for r in mine)
        assert stage.usage.cache_read_tokens == sum(r.cache_read_tokens for r in mine)
        assert stage.usage.cache_write_tokens == sum(
            r.cache_write_5m_tokens + r.cache_write_1h_tokens for r in mine
        )
        assert stage.usage.cost_usd == pytest.approx(sum(r.cost_usd for r in mine), abs=1e-9)


def test_a_tiny_budget_pauses_before_the_request_past_it_and_resume_with_more_finishes(
    project: ApiProject,
) -> None:
    api = project.api

    def flat_usage(body: Json) -> Json:
        # every reply reports 1000 input tokens: $0.005 on opus, whatever the prompt's size
        turn = api.agent.turn(body)
        usage = {"input_tokens": 1000, "output_tokens": 0}
        return message(turn.content, turn.stop_reason, usage=usage)

    api.respond = flat_usage
    # each request reserves its worst case (input at the cache-write rate plus max_tokens of
    # output, about $0.04 here), so one or two fit under $0.045 and then one no longer does
    budget = 0.045
    view = project.run("feature_development", "--budget", str(budget))
    assert view.status == "paused", view.reason
    assert view.budget_usd == budget and view.reason and "budget" in view.reason
    arch = stage_of(view, "architecture")
    [attempt] = arch.history
    assert attempt.outcome == "budget_exceeded"
    assert attempt.error and "not sent" in attempt.error and "could cost" in attempt.error
    # the requests sent fitted under the cap with their worst case; the next was never sent
    rows = project.ledger(view.run_id)
    assert rows and all(r.cost_usd == pytest.approx(0.005) for r in rows)
    assert len(api.message_requests()) == len(rows) == attempt.usage.requests
    assert view.spent_usd == pytest.approx(0.005 * len(rows), abs=1e-9)
    assert view.spent_usd <= budget
    # max_tokens was lowered to what the cap still allowed
    sent = [r.body["max_tokens"] for r in api.message_requests()]
    assert sent == sorted(sent, reverse=True) and sent[-1] < sent[0]
    text = project("status", view.run_id)
    assert f"spent: ${view.spent_usd:.4f} of ${budget:.4f}" in text.out
    assert "resume" in view.next_action and "--budget" in view.next_action
    assert len(api.message_requests()) == len(rows)  # a paused run sends nothing

    view = project.view("resume", view.run_id, "--budget", "1")
    view, _ = project.approve_until_done(view)
    assert view.status == "completed", view.reason
    history = stage_of(view, "architecture").history
    assert [a.outcome for a in history] == ["budget_exceeded", "passed"]
    rows = project.ledger(view.run_id)
    assert len(rows) == len(api.message_requests()) > 2
    assert view.budget_usd == 1.0
    assert view.spent_usd == pytest.approx(sum(r.cost_usd for r in rows), abs=1e-9)
    assert f"spent: ${view.spent_usd:.4f} of $1.00" in project("status", view.run_id).out


# -- first requests do not grow with the number of earlier stages --------------------------

NOTE_CHARS = 3000


def _chain(stages: list[str]) -> str:
    lines = [f"name: chain{len(stages)}", "description: notes handed down a chain", "stages:"]
    for prev, sid in zip([None, *stages], stages, strict=False):
        lines += [f"  - id: {sid}", "    agent: architect", "    produces: [note]"]
        if prev is not None:
            lines += [f"    depends_on: [{prev}]", f"    needs: [{prev}.note]"]
    return "\n".join(lines) + "\n"


def test_a_stage_first_request_carries_only_its_needed_artifact_however_long_the_chain(
    project: ApiProject, tmp_path: Path
) -> None:
    api = project.api

    def fixed_size_notes(body: Json) -> Turn:
        # every note the same size, so first requests compare by structure alone
        turn = api.agent.turn(body)
        args = submission(turn)
        if args is not None:
            stage = stage_info(body).stage
            note = f"# Note of {stage}\n" + filler(stage, NOTE_CHARS)
            args["artifacts"] = {"note": note[:NOTE_CHARS]}
        return turn

    api.respond = fixed_size_notes
    short = ["s1", "s6"]
    long = ["s1", "s2", "s3", "s4", "s5", "s6"]
    sizes: dict[int, dict[str, int]] = {}
    for stages in (short, long):
        # each chain in a project of its own (same path length): an earlier run's artifacts
        # may come back as project knowledge, which is not what this test measures
        chain = ApiProject(make_project(tmp_path / f"chain{len(stages)}" / "project"), api)
        chain.write_template(_chain(stages))
        api.reset()
        view = chain.run(f"chain{len(stages)}")
        assert view.status == "completed", view.reason
        sizes[len(stages)] = {s: first_request(api, s).prompt_tokens for s in stages}

    two, six = sizes[2], sizes[6]
    assert six["s2"] - six["s1"] >= NOTE_CHARS // 4  # one needed note shows in the count
    # the last stage of a chain of 6 starts as small as the last of a chain of 2
    assert abs(six["s6"] - two["s6"]) <= 8
    # and no stage that needs one note grows with the stages before it
    needing_one = [six[s] for s in long[1:]] + [two["s6"]]
    assert max(needing_one) - min(needing_one) <= 8
    assert two["s1"] == six["s1"]
