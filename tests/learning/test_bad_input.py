"""Bad input to the learning features gets a clear error naming where it is, and loses nothing:
``[learning]`` and ``[budget]`` in the config, agent candidate lists and task types in
templates (through ``stageflow validate``), and a bad threshold refusing a run before it exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stageflow.config import Settings, load_settings
from stageflow.engine.forecasts import confirm_threshold
from stageflow.errors import SpecError, SpecErrors
from stageflow.learning.config import LearningConfig, load_learning_config
from tests.cli.harness import Cli


def settings_with(tmp_path: Path, toml: str) -> Settings:
    project = tmp_path / "p"
    (project / ".stageflow").mkdir(parents=True)
    (project / ".stageflow" / "config.toml").write_text(toml, encoding="utf-8")
    return load_settings(project)


@pytest.mark.parametrize(
    ("toml", "path", "words"),
    [
        ('[learning]\nmodels = "haiku"\n', "learning.models", "must list 1 to 8"),
        ("[learning]\nmodels = []\n", "learning.models", "must list 1 to 8"),
        ('[learning]\nmodels = ["auto"]\n', "learning.models", "not auto"),
        ("[learning]\nsuccess_threshold = 2\n", "learning.success_threshold", "at most 1"),
        ("[learning]\nsuccess_threshold = 0\n", "learning.success_threshold", "above 0"),
        ("[learning]\nexplore_share = 0.9\n", "learning.explore_share", "from 0 to 0.5"),
        ('[learning]\nexplore_share = "a lot"\n', "learning.explore_share", "from 0 to 0.5"),
        ("[learning]\nexplore = 0.1\n", "learning.explore", "unknown key"),
        ('learning = "on"\n', "learning", "must be a table"),
    ],
)
def test_a_bad_learning_table_names_the_key(
    tmp_path: Path, toml: str, path: str, words: str
) -> None:
    settings = settings_with(tmp_path, toml)
    with pytest.raises(SpecError) as info:
        load_learning_config(settings)
    problem = info.value.problem
    assert not isinstance(info.value, SpecErrors)
    assert problem.path == path and words in problem.message
    assert problem.file == str(settings.config_file)


def test_every_learning_mistake_is_reported_at_once(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path, "[learning]\nsuccess_threshold = -1\nexplore_share = 2\nmodels = 3\n"
    )
    with pytest.raises(SpecErrors) as info:
        load_learning_config(settings)
    assert sorted(p.path for p in info.value.problems) == [
        "learning.explore_share",
        "learning.models",
        "learning.success_threshold",
    ]


def test_a_good_learning_table_is_read(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path,
        '[learning]\nmodels = ["haiku", " opus ", "haiku"]\nsuccess_threshold = 0.9\n'
        "explore_share = 0\n",
    )
    assert load_learning_config(settings) == LearningConfig(("haiku", "opus"), 0.9, 0.0)


@pytest.mark.parametrize(
    ("toml", "path"),
    [
        ("[budget]\nconfirm_above_usd = -1\n", "budget.confirm_above_usd"),
        ('[budget]\nconfirm_above_usd = "5"\n', "budget.confirm_above_usd"),
        ("[budget]\nconfirm_above_usd = true\n", "budget.confirm_above_usd"),
        ("[budget]\nconfirm_above_usd = nan\n", "budget.confirm_above_usd"),
        ("[budget]\nconfirm_over = 5\n", "budget.confirm_over"),
        ("budget = 5\n", "budget"),
    ],
)
def test_a_bad_budget_threshold_names_the_key(tmp_path: Path, toml: str, path: str) -> None:
    with pytest.raises(SpecError) as info:
        confirm_threshold(settings_with(tmp_path, toml))
    assert info.value.problem.path == path


def test_a_bad_budget_threshold_refuses_the_run_and_creates_nothing(cli: Cli) -> None:
    cli.project.mkdir(parents=True, exist_ok=True)
    (cli.project / ".stageflow").mkdir(exist_ok=True)
    (cli.project / ".stageflow" / "config.toml").write_text(
        "[budget]\nconfirm_above_usd = -3\n", encoding="utf-8"
    )
    result = cli("run", "bugfix", "--task", "Fix the crash")
    assert result.code == 1
    assert "budget.confirm_above_usd" in result.err and "non-negative" in result.err
    assert cli("status", "--json").json() == []  # no run was recorded


CANDIDATES = """\
name: picky
stages:
  - id: build
    agent: [developer, nosuch, developer]
  - id: docs
    agent: []
  - id: check
    agent: documenter
    task_type: Docs Work
"""


def test_validate_names_each_bad_candidate_list_and_task_type_by_line(
    cli: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "picky.yaml"
    path.write_text(CANDIDATES, encoding="utf-8")
    result = cli("validate", str(path), "--json")
    assert result.code == 1
    problems = [(p["line"], p["path"], p["message"]) for p in json.loads(result.out)["problems"]]
    # every finding in one pass: the list's own mistake and the unknown name in it
    from stageflow.agents.registry import load_agents
    from stageflow.config import load_settings

    known = ", ".join(sorted(load_agents(load_settings(cli.project).agent_dirs()).names()))
    assert problems == [
        (3, "stages[0]", "agent: 'developer' is listed more than once"),
        (4, "stages[0].agent[1]", f"unknown agent 'nosuch'; known agents: {known}"),
        (5, "stages[1]", "agent: an empty list names no agent; list one or more"),
        (
            9,
            "stages[2].task_type",
            "task_type must be a short lower-case word (letters, digits, - or _; at most 40), "
            "got 'Docs Work'",
        ),
    ]


def test_an_unknown_candidate_is_named_at_its_place_in_the_list(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: t\nstages:\n  - id: build\n    agent:\n      - developer\n      - nosuch\n",
        encoding="utf-8",
    )
    result = cli("validate", str(path), "--json")
    assert result.code == 1
    [problem] = json.loads(result.out)["problems"]
    assert (problem["line"], problem["path"]) == (6, "stages[0].agent[1]")
    assert problem["message"].startswith("unknown agent 'nosuch'")
