"""Every file under ``examples/`` loads, validates and works when copied where the README says.

Templates are validated with ``stageflow validate``; agent files must parse and override the
built-in agent of the same name from the project layer. ``lint_fix_release`` also runs end to
end: agent stages offline, its ``run:`` stages against a stub ``python`` on ``PATH`` that
records its arguments (so the command the example declares is the one executed, quickly).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from stageflow.agents.parse import parse_agent_file
from stageflow.workflows.loader import load_template_file
from tests.cli.harness import Cli, stage

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TEMPLATE_SUFFIXES = (".yaml", ".yml", ".toml")
CONFIG = EXAMPLES / "config.toml"
TEMPLATES = sorted(p for p in EXAMPLES.glob("*") if p.suffix in TEMPLATE_SUFFIXES and p != CONFIG)
AGENTS = sorted(EXAMPLES.glob("*.md"))


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    """A project set up with ``init`` and with every example agent installed."""
    cli = Cli(tmp_path / "project", capsys)
    cli.ok("init")
    for agent in AGENTS:
        shutil.copy(agent, cli.project / ".stageflow" / "agents" / agent.name)
    return cli


MCP_CONFIG = EXAMPLES / ".mcp.json"


def test_every_example_file_is_a_template_an_agent_or_the_mcp_config() -> None:
    files = sorted(p for p in EXAMPLES.rglob("*") if p.is_file())
    assert files, "examples/ is empty"
    assert [p for p in files if p.parent != EXAMPLES] == []
    assert sorted([*TEMPLATES, *AGENTS, MCP_CONFIG, CONFIG]) == files


def test_the_example_config_is_read_by_every_settings_loader(tmp_path: Path) -> None:
    from stageflow.config import load_settings
    from stageflow.engine.forecasts import confirm_threshold
    from stageflow.learning.config import load_learning_config
    from stageflow.models.pricing import load_price_table
    from stageflow.models.routing import load_routes
    from stageflow.subagents.options import load_runner_options

    (tmp_path / ".stageflow").mkdir()
    shutil.copy(CONFIG, tmp_path / ".stageflow" / "config.toml")
    settings = load_settings(tmp_path, runner=None)
    options = load_runner_options(settings)
    assert options.bash == ("pytest*", "ruff check*") and options.workspace_mode == "auto"
    routes = load_routes(settings)
    assert routes.choose(stage_model=None, agent_model="opus").model == "claude-opus-4-7"
    assert routes.fallback == "haiku"
    assert load_price_table(settings).lookup("claude-opus-4-7") is not None
    learning = load_learning_config(settings)
    assert (learning.models, learning.success_threshold) == (("haiku", "sonnet", "opus"), 0.8)
    assert confirm_threshold(settings) == 5.0


def test_the_mcp_config_starts_stageflow_serve_over_stdio(cli: Cli) -> None:
    config = json.loads(MCP_CONFIG.read_text(encoding="utf-8"))
    server = config["mcpServers"]["stageflow"]
    assert (server["type"], server["command"], server["args"]) == ("stdio", "stageflow", ["serve"])
    assert server["env"]["STAGEFLOW_RUNNER"] in ("auto", "anthropic", "claude-code", "offline")
    # the console script the config names is installed next to this interpreter
    assert (Path(sys.executable).parent / "stageflow").is_file()


@pytest.mark.parametrize("path", TEMPLATES, ids=[p.name for p in TEMPLATES])
def test_example_template_validates(cli: Cli, path: Path) -> None:
    result = cli("validate", str(path))

    assert result.code == 0, result.out
    assert result.out.strip() == "ok: 1 file(s) valid"


@pytest.mark.parametrize("path", AGENTS, ids=[p.name for p in AGENTS])
def test_example_agent_parses_and_overrides_from_the_project_layer(cli: Cli, path: Path) -> None:
    parsed = parse_agent_file(path, layer="project")
    assert parsed.description
    assert parsed.system_prompt.strip()

    listed = cli.ok("agents", "--json").json()

    assert listed["errors"] == []
    [agent] = [a for a in listed["agents"] if a["name"] == parsed.name]
    assert agent["layer"] == "project"
    assert agent["model"] == parsed.model
    assert agent["hash"] == parsed.content_hash[:12]


@pytest.fixture
def python_stub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``python`` first on PATH that appends its arguments to a log and exits 0."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "python-calls.log"
    stub = bindir / "python"
    stub.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\necho "1 passed"\n', encoding="utf-8")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return log


LINT_FIX_RELEASE = EXAMPLES / "lint_fix_release.yaml"


@pytest.mark.skipif(not LINT_FIX_RELEASE.exists(), reason="example not present")
@pytest.mark.parametrize("strict", [False, True])
def test_lint_fix_release_example_runs_offline_to_completion(
    cli: Cli, python_stub: Path, strict: bool
) -> None:
    spec = load_template_file(LINT_FIX_RELEASE, check=False)
    shutil.copy(LINT_FIX_RELEASE, cli.project / ".stageflow" / "workflows" / "example.yaml")
    extra = ["--input", f"strict={json.dumps(strict)}"]

    view = cli.run(spec.name, *extra, task="Fix the lint findings in the report module")
    done, decided = cli.approve_until_done(view)

    assert done.status == "completed", done.reason
    assert decided == ["review"]  # the suite passed, so only the approval waited
    calls = python_stub.read_text(encoding="utf-8").splitlines()
    expected = ["-m pytest -q", "-m pytest -q -m slow"] if strict else ["-m pytest -q"]
    assert sorted(calls) == expected  # tests and slow_checks may run side by side
    tests = stage(done, "tests")
    assert tests.kind == "command"
    assert tests.outputs["exit_code"] == 0
    assert stage(done, "slow_checks").status == ("succeeded" if strict else "skipped")
    assert stage(done, "review").status == "succeeded"
    examples = {a.name: a for a in (parse_agent_file(p, layer="project") for p in AGENTS)}
    used = [s for s in done.stages if s.agent is not None and s.agent in examples]
    assert used, "the example agents should be exercised by the example template"
    for s in used:  # stages of an agent the examples override ran with the example's definition
        assert s.history[0].agent_hash == examples[str(s.agent)].content_hash, s.id
