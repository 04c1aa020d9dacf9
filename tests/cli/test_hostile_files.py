"""Hostile template and agent files through the CLI as users run it: a real ``stageflow``
process per command, under a 1 GiB address-space limit and a time limit, so the attack is the
real one (a billion laughs stands for 15 GB of JSON) and a regression fails instead of taking
the machine down. Each file is one error naming the file and the line; nothing else breaks."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.workflows.hostile import (
    billion_laughs_agent,
    billion_laughs_template,
    chained_template,
    deep_agent,
    deep_toml_template,
    huge_template,
)

pytestmark = pytest.mark.slow

MEMORY_LIMIT = 1 << 30  # the CLI needs about 300 MB of address space; the attacks need GBs
TIME_LIMIT_S = 120  # the bounded commands take about a second


def _limited() -> Callable[[], None]:
    def apply() -> None:  # in the child, before exec
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return apply


def stageflow(project: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``stageflow ARGV --project PROJECT`` as a child process within the limits."""
    return subprocess.run(
        [sys.executable, "-m", "stageflow", *argv, "--project", str(project)],
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT_S,
        preexec_fn=_limited(),
        env={**os.environ, "STAGEFLOW_RUNNER": "offline"},
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / ".stageflow" / "workflows").mkdir(parents=True)
    (root / ".stageflow" / "agents").mkdir(parents=True)
    return root


def put(project: Path, folder: str, name: str, text: str) -> Path:
    path = project / ".stageflow" / folder / name
    path.write_text(text, encoding="utf-8")
    return path


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


def test_templates_json_with_a_billion_laughs_template_lists_one_problem(project: Path) -> None:
    path = put(project, "workflows", "laughs.yaml", billion_laughs_template())

    result = stageflow(project, "templates", "--json")

    no_traceback(result)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(result.stdout) < 256 * 1024  # the whole catalog; the bomb alone was 15 GB
    catalog = json.loads(result.stdout)
    [entry] = [t for t in catalog["templates"] if t["source"] == str(path)]
    [problem] = entry["problems"]
    assert problem.startswith(f"{path}:8: inputs.lol4.default[0]: YAML aliases expand too far")
    assert entry["inputs"] == {}  # nothing of the bomb is served


def test_validate_refuses_the_billion_laughs_template_it_used_to_pass(
    project: Path, tmp_path: Path
) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs_template(), encoding="utf-8")

    result = stageflow(project, "validate", str(path))

    no_traceback(result)
    assert result.returncode == 1
    assert result.stdout.startswith(f"{path}:8: inputs.lol4.default[0]: YAML aliases expand")


def test_agents_json_with_a_billion_laughs_agent_lists_one_error(project: Path) -> None:
    path = put(project, "agents", "laughs.md", billion_laughs_agent())

    result = stageflow(project, "agents", "--json")

    no_traceback(result)
    assert result.returncode == 0, result.stderr[-3000:]
    listing = json.loads(result.stdout)
    assert "laughs" not in {a["name"] for a in listing["agents"]}
    [error] = listing["errors"]
    assert error.startswith(f"{path}:8: lol4[0]: front matter: YAML aliases expand too far")


def test_a_deeply_nested_agent_file_is_one_error_with_its_path(project: Path) -> None:
    path = put(project, "agents", "deep.md", deep_agent())
    assert path.stat().st_size > 100_000

    agents = stageflow(project, "agents")
    templates = stageflow(project, "templates", "--json")

    for result in (agents, templates):
        no_traceback(result)
        assert result.returncode == 0, result.stderr[-3000:]
    errors = [ln for ln in agents.stdout.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: {path}:4: x[0][0][0][0][0][0][0]...: front matter: ")
    assert "nested too deeply at column 67: more than 64 levels" in errors[0]
    assert json.loads(templates.stdout)["errors"] == [errors[0].removeprefix("error: ")]


def test_a_deeply_nested_toml_template_is_one_error_with_its_path(
    project: Path, tmp_path: Path
) -> None:
    path = put(project, "workflows", "deep.toml", deep_toml_template())

    templates = stageflow(project, "templates")
    validate = stageflow(project, "validate", str(path))

    for result in (templates, validate):
        no_traceback(result)
    assert templates.returncode == 0
    expected = f"{path}:5: nested too deeply at column 75: more than 64 levels of arrays"
    assert [ln for ln in templates.stdout.splitlines() if ln.startswith("error: ")] == [
        f"error: {expected} and tables"
    ]
    assert validate.returncode == 1
    assert validate.stdout.splitlines()[0] == f"{expected} and tables"


def test_a_ten_megabyte_template_is_refused_by_its_size(project: Path, tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(huge_template(10 * 1024 * 1024), encoding="utf-8")

    result = stageflow(project, "validate", str(path))

    no_traceback(result)
    assert result.returncode == 1
    assert result.stdout.startswith(f"{path}: the file is too large: 10.0 MiB (")


def test_eight_thousand_chained_stages_are_refused_by_the_stage_bound(
    project: Path, tmp_path: Path
) -> None:
    path = tmp_path / "chain.yaml"
    path.write_text(chained_template(8000), encoding="utf-8")

    result = stageflow(project, "validate", str(path))

    no_traceback(result)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (
        f"{path}:3: stages: too many stages: 8000; a template may have at most 1000"
    )
