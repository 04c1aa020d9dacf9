"""The orchestrator on a local model through the official ``ollama`` client, against an Ollama
stand-in speaking ``/api/chat`` on loopback: it answers the engine's questions (the production
client path, unchanged); with a port refusing connections every decision (failure triage,
rework routing, the debate moderator) falls back to the rules and the runs complete."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from stageflow.config import load_settings
from stageflow.engine.asking import Ask
from stageflow.engine.runner import AttemptMeter
from stageflow.subagents.orchestrator.engine_questions import EngineQuestions
from tests.cli.harness import of_type
from tests.standin import StandIn
from tests.standin.ollama import Json, OllamaStandIn, refused_port
from tests.standin.project import make_project
from tests.subagents.anthropic_harness import ApiProject, stage_of, use_standin
from tests.subagents.debate.standin_debate import DebateStandIn
from tests.subagents.orchestrator.standin_triage import TriageStandIn, tools_of
from tests.subagents.orchestrator.test_api_triage import BUILD, ROUTED

LOCAL = "qwen3:4b"


def _config(host: str) -> str:
    return f'[orchestrator]\nprovider = "ollama"\nmodel = "{LOCAL}"\nollama_host = "{host}"\n'


def _answer(body: Json) -> str:
    props = (body.get("format") or {}).get("properties") or {}
    if "verdict" in props:
        return json.dumps({"verdict": "human", "reason": "local model: the patch is wrong"})
    return json.dumps({"target": "design", "reason": "local model"})


@pytest.fixture
def hook() -> TriageStandIn:
    return TriageStandIn()


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: TriageStandIn
) -> Iterator[ApiProject]:
    monkeypatch.setenv("STAGEFLOW_HOME", str(tmp_path / "home"))
    debate = DebateStandIn()

    def respond(body: Json) -> object:
        return debate(body) if "statement" in tools_of(body) else hook(body)

    with StandIn(respond=respond) as api:
        use_standin(monkeypatch, api.base_url)
        p = ApiProject(make_project(tmp_path / "project"), api)
        p.write_template(BUILD)
        p.write_template(ROUTED)
        yield p


def _events(project: ApiProject, run_id: str) -> list[dict[str, object]]:
    return [dict(e["event"]) for e in project("audit", run_id, "--json").json()["events"]]


def test_the_ollama_client_answers_a_question_over_its_wire_protocol(
    project: ApiProject,
) -> None:
    with OllamaStandIn(_answer) as ollama:
        project.write_config(_config(ollama.host))
        questions = EngineQuestions(load_settings(project.root))
        ask = Ask("failure", "build", 1, error="the patch does not apply", attempts_left=2)
        answer = anyio.run(questions.answer, ask, AttemptMeter())
    assert (answer.answer, answer.by, answer.model) == ("human", "model", LOCAL)
    assert answer.fallback is None
    [(path, body)] = ollama.requests
    assert path == "/api/chat" and body["model"] == LOCAL and body["stream"] is False
    assert body["format"]["properties"]["verdict"]["enum"] == ["transient", "human"]
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "does not apply" in body["messages"][1]["content"]


def test_a_run_triaged_and_routed_by_the_local_model(
    project: ApiProject, hook: TriageStandIn
) -> None:
    hook.fail_once.add("build")
    with OllamaStandIn(_answer) as ollama:
        project.write_config(_config(ollama.host))
        view = project.run("triage_build")
        assert view.status == "waiting", view.reason  # the local model said: a person
        (triage,) = of_type(_events(project, view.run_id), "orchestration_decided")
        assert (triage["decided_by"], triage["model"], triage["cost_usd"]) == ("model", LOCAL, 0)
        done = project.view("approve", view.run_id, "--stage", "build")
        assert done.status == "completed", done.reason

        hook.review_once.add("review")
        routed = project.run("routed_review")
        assert routed.status == "completed", routed.reason
        (route,) = of_type(_events(project, routed.run_id), "orchestration_decided")
        assert (route["answer"], route["decided_by"], route["model"]) == ("design", "model", LOCAL)
    assert hook.asked == []  # nothing went to the Messages API's orchestrator


def test_with_ollama_refusing_connections_every_decision_is_the_rules_and_runs_complete(
    project: ApiProject, hook: TriageStandIn
) -> None:
    project.write_config(_config(f"http://127.0.0.1:{refused_port()}"))
    hook.fail_once.add("build")
    hook.review_once.add("review")
    decisions: list[dict[str, object]] = []
    for template in ("triage_build", "routed_review"):
        view = project.run(template)
        assert view.status == "completed", (template, view.reason)
        decisions += of_type(_events(project, view.run_id), "orchestration_decided")
    assert [d["question"] for d in decisions] == ["failure", "rework"]
    assert all(d["decided_by"] == "rules" for d in decisions)
    assert all("not reachable" in str(d["fallback"]) for d in decisions), decisions
    debate = project.run("consensus_building", task="Should we replace the ORM?")
    assert debate.status == "completed", debate.reason
    verdicts = of_type(_events(project, debate.run_id), "debate_verdict")
    assert verdicts and all(v["decided_by"] == "rules" for v in verdicts)
    assert stage_of(debate, "consensus").status == "succeeded"
    assert hook.asked == []
