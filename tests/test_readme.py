"""The README's promises: the template example validates, CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

from stageflow.agents.registry import load_agents
from stageflow.cli.scaffold import init_project
from stageflow.config import load_settings
from stageflow.workflows.loader import load_template_text

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_has_exactly_two_setup_commands() -> None:
    (setup,) = _blocks("sh")
    commands = [line for line in setup.splitlines() if line.strip()]
    assert len(commands) == 2
    assert commands[0].endswith("stageflow demo")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    (setup,) = _blocks("sh")
    test_command = next(line for line in setup.splitlines() if "pytest" in line)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci


def test_readme_template_example_is_valid_with_the_init_agents(tmp_path: Path) -> None:
    init_project(tmp_path)  # provides the changelog-writer agent the example uses
    settings = load_settings(tmp_path)
    agents = load_agents(settings.agent_dirs())
    (yaml_text,) = _blocks("yaml")
    spec = load_template_text(yaml_text, source="README.md", agent_names=agents.names())
    assert [s.id for s in spec.stages] == ["implement", "tests", "changelog"]


def test_readme_mcp_config_is_the_example_file() -> None:
    (config,) = _blocks("json")
    assert config == (ROOT / "examples" / ".mcp.json").read_text(encoding="utf-8")


def test_readme_names_every_mcp_tool_and_the_serve_command() -> None:
    from stageflow.tools import TOOL_NAMES

    for name in TOOL_NAMES:
        assert f"`{name}" in README, name
    assert 'claude mcp add --scope user stageflow -- "$PWD/.venv/bin/stageflow" serve' in README


def test_the_readme_test_command_installs_the_lock() -> None:
    (setup,) = _blocks("sh")
    test_command = next(line for line in setup.splitlines() if "pytest" in line)
    assert "-c requirements.lock" in test_command


def test_the_lock_pins_every_dependency_of_the_package_and_its_test_extras() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = [*project["dependencies"]]
    for extra in ("dev", "bench"):
        wanted.extend(project["optional-dependencies"][extra])
    pinned = {
        line.split("==")[0].strip().lower().replace("_", "-")
        for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines()
        if "==" in line and not line.startswith("#")
    }
    names = {re.split(r"[<>=!~\[; ]", w, maxsplit=1)[0].lower().replace("_", "-") for w in wanted}
    assert names <= pinned, names - pinned
