"""``stageflow validate``: every error in one pass (schema and cross-stage), ordered by line, and
unknown model names as warnings that do not fail validation (exit 1 on errors only)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.harness import Cli

CORPUS = Path(__file__).parents[1] / "workflows" / "corpus"
EXPECTED: dict[str, list[str]] = json.loads((CORPUS / "expected.json").read_text("utf-8"))

WITH_MODEL = """\
name: models
stages:
  - id: design
    agent: architect
    model: {model}
    produces: [design]
"""


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_validate_reports_schema_and_cross_stage_errors_together_by_line(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(CORPUS / "schema_and_cross_stage.yaml", tmp_path)
    monkeypatch.chdir(tmp_path)

    result = cli("validate", "schema_and_cross_stage.yaml")

    assert result.code == 1
    lines = result.out.splitlines()
    problems = lines[:-1]
    # the project knows the built-in agents, the corpus test its own four: compare the rest
    expected = EXPECTED["schema_and_cross_stage.yaml"]
    assert len(problems) == len(expected) == 13
    assert [p.split(": ")[0] for p in problems] == [e.split(": ")[0] for e in expected]
    assert [p for p in problems if "unknown agent" not in p] == [
        e for e in expected if "unknown agent" not in e
    ]
    assert lines[-1] == "13 problem(s) in 1 file(s)"
    as_json = cli("validate", "schema_and_cross_stage.yaml", "--json").json()
    assert as_json["ok"] is False
    assert [(p["line"], p["stage"], p["path"]) for p in as_json["problems"]][:3] == [
        (4, None, "inputs.task.type"),
        (5, None, "limits.max_concurrent_agents"),
        (7, "design", "stages[0]"),
    ]
    assert len(as_json["problems"]) == 13


def test_an_unknown_model_is_a_warning_naming_the_known_names_and_exits_0(
    cli: Cli, tmp_path: Path
) -> None:
    path = write(tmp_path, WITH_MODEL.format(model="gpt-4"))

    result = cli("validate", str(path))

    assert result.code == 0
    warning, summary = result.out.splitlines()
    assert warning.startswith(f"{path}:5: stage 'design': stages[0].model: warning: ")
    assert "unknown model 'gpt-4'" in warning
    assert "not an alias (haiku, opus, sonnet)" in warning
    assert "claude-sonnet-4-6" in warning and "claude-haiku-4-5" in warning
    assert summary == "ok: 1 file(s) valid; 1 warning(s)"
    as_json = cli("validate", str(path), "--json").json()
    assert as_json["ok"] is True
    assert as_json["problems"] == []
    [item] = as_json["warnings"]
    assert (item["line"], item["stage"], item["path"]) == (5, "design", "stages[0].model")
    assert item["message"].startswith("unknown model 'gpt-4'")


def test_errors_and_warnings_are_listed_together_by_line_and_errors_exit_1(
    cli: Cli, tmp_path: Path
) -> None:
    text = WITH_MODEL.format(model="gpt-4") + "  - {id: build, agent: developer, needs: [x.y]}\n"
    path = write(tmp_path, "max_rework: lots\n" + text.replace("name: models\n", ""))
    path.write_text("name: models\n" + path.read_text(encoding="utf-8"), encoding="utf-8")

    result = cli("validate", str(path))

    assert result.code == 1
    lines = result.out.splitlines()
    assert [ln.split(": ")[0] for ln in lines[:-1]] == [f"{path}:2", f"{path}:6", f"{path}:8"]
    assert "max_rework" in lines[0] and "warning: unknown model" in lines[1]
    assert "unknown stage 'x'" in lines[2]
    assert lines[-1] == "2 problem(s) in 1 file(s); 1 warning(s)"


@pytest.mark.parametrize(
    "model",
    ["sonnet", "OPUS", "inherit", "default", "claude-opus-4-7", "claude-sonnet-4-6-20260101"],
)
def test_aliases_routing_words_and_priced_ids_give_no_warning(
    cli: Cli, tmp_path: Path, model: str
) -> None:
    path = write(tmp_path, WITH_MODEL.format(model=model))
    assert cli.ok("validate", str(path)).out == "ok: 1 file(s) valid\n"


def test_models_added_in_the_config_are_known(cli: Cli, tmp_path: Path) -> None:
    config = cli.project / ".stageflow" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        '[models.aliases]\nbig = "claude-opus-4-8"\n\n'
        '[prices."house-model"]\ninput = 1.0\noutput = 2.0\n',
        encoding="utf-8",
    )
    for model in ("big", "house-model"):
        path = write(tmp_path, WITH_MODEL.format(model=model))
        assert cli.ok("validate", str(path)).out == "ok: 1 file(s) valid\n"
    path = write(tmp_path, WITH_MODEL.format(model="gpt-4"))
    assert "big" in cli.ok("validate", str(path)).out
