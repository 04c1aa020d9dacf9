"""The built-in agents and workflow templates: they load, fit together and pass every check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from stageflow.agents.definition import AgentDefinition
from stageflow.agents.parse import MODEL_ALIASES
from stageflow.agents.registry import BUILTIN_AGENTS_DIR, load_agents
from stageflow.config import PACKAGE_DIR
from stageflow.workflows.conditions import parse_condition
from stageflow.workflows.loader import load_template_file
from stageflow.workflows.spec import WorkflowSpec
from stageflow.workflows.validate import check_spec

TEMPLATES_DIR = PACKAGE_DIR / "workflows" / "builtin"
TEMPLATE_FILES = sorted(TEMPLATES_DIR.glob("*.yaml"))
AGENT_FILES = sorted(BUILTIN_AGENTS_DIR.glob("*.md"))

EXPECTED_AGENTS = {
    "architect": "opus",
    "developer": "sonnet",
    "frontend-developer": "sonnet",
    "tester": "sonnet",
    "reviewer": "sonnet",
    "security-auditor": "opus",
    "pentester": "opus",
    "documenter": "haiku",
    "devops": "sonnet",
    "investigator": "opus",
    "release-manager": "sonnet",
    "editor": "sonnet",
    "merge-resolver": "sonnet",
    "coordinator": "opus",
    "auditor": "sonnet",
    "decision-maker": "haiku",
}
# debate participants and the moderator: they answer with the `statement` / `answer` tool,
# not submit_result, so their briefs have a shape of their own
DEBATE_AGENTS = {
    "proponent": "opus",
    "critic": "sonnet",
    "devils-advocate": "sonnet",
    "domain-expert": "opus",
    "moderator": "haiku",
}
DEBATE_TEMPLATES = {"simple_debate", "complex_debate", "consensus_building", "evolution_debate"}
EXPECTED_TEMPLATES = {
    "feature_development",
    "bugfix",
    "documentation_update",
    "security_audit",
    "feature_parallel",
    "plan_execute_audit",
    *DEBATE_TEMPLATES,
}
CLAUDE_CODE_TOOLS = {"Read", "Write", "Edit", "Glob", "Grep", "Bash"}
READ_ONLY = {"Read", "Glob", "Grep"}
READ_ONLY_ROLES = {"architect", "reviewer", "security-auditor", "coordinator", "decision-maker"}
OUTPUT_REF = re.compile(r"\b([A-Za-z_]\w*)\.outputs\.([A-Za-z_]\w*)")


@pytest.fixture(scope="module")
def agents() -> dict[str, AgentDefinition]:
    registry = load_agents([("builtin", BUILTIN_AGENTS_DIR)])
    assert registry.errors == ()
    return dict(registry.agents)


def load_spec(path: Path) -> WorkflowSpec:
    return WorkflowSpec.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def upstream(spec: WorkflowSpec, stage_id: str) -> set[str]:
    seen: set[str] = set()
    todo = list(spec.stage(stage_id).depends_on)
    while todo:
        sid = todo.pop()
        if sid not in seen:
            seen.add(sid)
            todo.extend(spec.stage(sid).depends_on)
    return seen


# -- agents --------------------------------------------------------------------------------


def test_the_builtin_agents_are_exactly_the_expected_roles_and_models(
    agents: dict[str, AgentDefinition],
) -> None:
    assert {name: a.model for name, a in agents.items()} == EXPECTED_AGENTS | DEBATE_AGENTS
    # files are named after their agent
    assert {p.stem for p in AGENT_FILES} == set(EXPECTED_AGENTS) | set(DEBATE_AGENTS)


@pytest.mark.parametrize("name", sorted(DEBATE_AGENTS))
def test_each_debate_agent_is_a_complete_brief(
    agents: dict[str, AgentDefinition], name: str
) -> None:
    agent = agents[name]
    assert len(agent.description) >= 60
    assert set(agent.tools) <= READ_ONLY  # debaters read, never write
    assert len(agent.system_prompt.splitlines()) >= 12
    assert agent.extra == {}
    tool = "answer tool" if name == "moderator" else "`statement` tool"
    assert tool in agent.system_prompt
    if name != "moderator":
        assert "## Your job" in agent.system_prompt and "## Answer" in agent.system_prompt


@pytest.mark.parametrize("name", sorted(EXPECTED_AGENTS))
def test_each_builtin_agent_is_a_complete_brief(
    agents: dict[str, AgentDefinition], name: str
) -> None:
    agent = agents[name]
    assert agent.model in MODEL_ALIASES
    assert len(agent.description) >= 60
    assert agent.tools and set(agent.tools) <= CLAUDE_CODE_TOOLS
    assert len(agent.system_prompt.splitlines()) >= 20
    assert agent.extra == {}
    prompt = agent.system_prompt
    assert "submit_result" in prompt
    for heading in ("## What you receive", "## Do not", "## Finish"):
        assert heading in prompt
    assert "`outputs`" in prompt


@pytest.mark.parametrize("name", sorted(READ_ONLY_ROLES))
def test_read_only_roles_get_only_read_tools(agents: dict[str, AgentDefinition], name: str) -> None:
    assert set(agents[name].tools) == READ_ONLY


def test_roles_that_must_not_deploy_have_no_shell(agents: dict[str, AgentDefinition]) -> None:
    for name in ("devops", "release-manager", "documenter", "editor"):
        assert "Bash" not in agents[name].tools


# -- templates -----------------------------------------------------------------------------


def test_the_builtin_templates_are_the_expected_ones() -> None:
    assert {load_spec(p).name for p in TEMPLATE_FILES} == EXPECTED_TEMPLATES
    assert all(load_spec(p).name == p.stem for p in TEMPLATE_FILES)


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=[p.stem for p in TEMPLATE_FILES])
def test_template_passes_the_loader_and_every_cross_stage_check(
    path: Path, agents: dict[str, AgentDefinition]
) -> None:
    spec = load_template_file(path, agent_names=list(agents))
    assert check_spec(spec, agent_names=list(agents)) == []


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=[p.stem for p in TEMPLATE_FILES])
def test_template_declares_task_limits_and_stage_goals(path: Path) -> None:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec = load_spec(path)
    task = spec.inputs["task"]
    assert (task.type, task.required) == ("string", True)
    assert len(spec.inputs) >= 2  # task plus useful optional inputs
    assert all(i.description for i in spec.inputs.values())
    assert "limits" in raw
    assert spec.limits.budget_usd is not None
    assert spec.limits.timeout is not None
    assert spec.description
    for stage in spec.stages:
        assert len(stage.description) >= 40, stage.id
        assert stage.timeout is not None, stage.id
        assert stage.produces, stage.id


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=[p.stem for p in TEMPLATE_FILES])
def test_template_uses_builtin_agents_and_needs_upstream_artifacts(
    path: Path, agents: dict[str, AgentDefinition]
) -> None:
    spec = load_spec(path)
    rollback_targets = spec.rollback_targets()
    for stage in spec.stages:
        names = stage.agent_names()
        assert (names and set(names) <= set(agents)) or stage.run, stage.id  # or a command
        assert not set(stage.depends_on) & rollback_targets, stage.id
        ups = upstream(spec, stage.id)
        assert len(stage.needed()) == len(stage.needs)
        for src, artifact in stage.needed():
            assert src in ups, f"{stage.id} needs {src}.{artifact}"
            assert artifact in spec.stage(src).produces, f"{stage.id} needs {src}.{artifact}"
    assert rollback_targets <= set(spec.stage_ids)


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=[p.stem for p in TEMPLATE_FILES])
def test_conditions_read_outputs_the_upstream_agent_is_told_to_set(
    path: Path, agents: dict[str, AgentDefinition]
) -> None:
    spec = load_spec(path)
    for stage in spec.stages:
        for text in (stage.when, stage.gate):
            if text is None:
                continue
            condition = parse_condition(text)
            assert condition.stage_refs() <= upstream(spec, stage.id), stage.id
            assert condition.input_refs() <= set(spec.inputs), stage.id
            for src, key in OUTPUT_REF.findall(text):
                agent = agents[spec.stage(src).agent or ""]
                assert f"`{key}`" in agent.system_prompt, f"{agent.name} never mentions {key}"


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=[p.stem for p in TEMPLATE_FILES])
def test_approval_stages_bound_their_rework(path: Path) -> None:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec = load_spec(path)
    approvals = [s for s in spec.stages if s.approval is not None]
    # a debate's record is advisory (it lands in the knowledge base); evolution_debate, which
    # changes the system, asks a human
    assert approvals or spec.name in DEBATE_TEMPLATES - {"evolution_debate"}
    for stage, raw_stage in zip(spec.stages, raw["stages"], strict=True):
        if stage.approval is not None:
            # a rejection reruns the stage (max_rework) or sends work back (on_changes_requested)
            assert "max_rework" in raw_stage or stage.on_changes_requested, stage.id
            assert stage.approval.prompt, stage.id
            assert stage.approval.by == "human", stage.id  # no model passes a built-in gate


def test_feature_development_shape() -> None:
    spec = load_spec(TEMPLATES_DIR / "feature_development.yaml")
    assert [(s.id, s.agent) for s in spec.stages] == [
        ("architecture", "architect"),
        ("implementation", "developer"),
        ("testing", "tester"),
        ("review", "reviewer"),
        ("deployment", "devops"),
    ]
    assert spec.stage("architecture").approval is not None
    assert spec.stage("architecture").produces == ["design"]
    assert spec.stage("testing").produces == ["test_report"]
    assert spec.stage("review").gate == "testing.outputs.passed == true"
    assert spec.stage("deployment").produces == ["deploy_plan", "changelog"]
    assert spec.stage("deployment").approval is not None


def test_bugfix_retries_testing_with_backoff() -> None:
    spec = load_spec(TEMPLATES_DIR / "bugfix.yaml")
    assert spec.stage_ids == ["investigation", "fix", "testing", "deployment"]
    assert spec.stage("investigation").produces == ["root_cause"]
    policy = spec.stage("testing").on_failure
    assert policy.action == "retry"
    assert policy.max_attempts >= 2
    assert policy.backoff > 0
    assert spec.stage("deployment").approval is not None


def test_documentation_update_publishes_only_after_approval() -> None:
    spec = load_spec(TEMPLATES_DIR / "documentation_update.yaml")
    assert [(s.id, s.agent) for s in spec.stages] == [
        ("content", "documenter"),
        ("review", "editor"),
        ("publish", "release-manager"),
    ]
    assert spec.stage("publish").approval is not None


def test_security_audit_skips_remediation_without_findings_and_can_roll_back() -> None:
    spec = load_spec(TEMPLATES_DIR / "security_audit.yaml")
    remediation = spec.stage("remediation")
    assert remediation.when is not None
    condition = parse_condition(remediation.when)
    clean = {
        "inputs": {},
        "analysis": {"outputs": {"findings": 0}},
        "pentesting": {"outputs": {"findings": 0}},
    }
    found = {
        "inputs": {},
        "analysis": {"outputs": {"findings": 0}},
        "pentesting": {"outputs": {"findings": 2}},
    }
    assert condition.evaluate(clean) is False
    assert condition.evaluate(found) is True
    assert remediation.on_failure.rollback == "revert_remediation"
    assert spec.rollback_targets() == {"revert_remediation"}
    assert spec.stage("verification").depends_on == ["remediation"]
    assert spec.stage("pentesting").agent == "pentester"


def test_feature_parallel_plans_the_build_and_reviews_it_with_rework() -> None:
    spec = load_spec(TEMPLATES_DIR / "feature_parallel.yaml")
    after_design = [s.id for s in spec.stages if s.depends_on == ["design"]]
    assert after_design == ["plan", "security_review", "docs"]
    assert spec.stage("plan").agent == "coordinator" and spec.stage("plan").plan is not None
    build = spec.stage("build")
    assert (build.for_each, build.depends_on) == ("plan", ["plan"])
    rework = spec.stage("code_review").on_changes_requested
    assert rework is not None and rework.rework == "build"
    assert spec.limits.max_concurrent_agents >= 4
    assert spec.stage("design").approval is not None
    assert spec.stage("code_review").gate == "security_review.outputs.critical_findings == 0"
    release = spec.stage("release")
    assert set(release.depends_on) == {"code_review", "test_coverage", "docs"}
    assert release.approval is not None
    gate = parse_condition(release.gate or "")
    ready = {
        "inputs": {"min_coverage": 0.8},
        "code_review": {"outputs": {"approved": True}},
        "test_coverage": {"outputs": {"passed": True, "coverage": 0.85}},
    }
    low = {**ready, "test_coverage": {"outputs": {"passed": True, "coverage": 0.5}}}
    assert gate.evaluate(ready) is True
    assert gate.evaluate(low) is False
    assert spec.resolve_inputs({"task": "x"})["min_coverage"] == 0.8


def test_plan_execute_audit_shape() -> None:
    spec = load_spec(TEMPLATES_DIR / "plan_execute_audit.yaml")
    assert [(s.id, s.agent or "command") for s in spec.stages] == [
        ("plan", "coordinator"),
        ("execute", "developer"),
        ("integrate", "command"),
        ("audit", "auditor"),
        ("approval", "command"),
    ]
    plan = spec.stage("plan").plan
    assert plan is not None and plan.max_items >= 3
    assert spec.stage("execute").for_each == "plan"
    assert spec.stage("execute").budget_usd is not None  # an item's cap, and its estimate
    audit = spec.stage("audit")
    assert audit.on_changes_requested is not None
    assert (audit.on_changes_requested.rework, audit.on_changes_requested.max) == ("execute", 2)
    assert "execute.summary" in audit.needs and "plan.plan" in audit.needs
    assert spec.stage("approval").approval is not None
