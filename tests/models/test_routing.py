"""Model routing: aliases, precedence stage > agent > config default, fallback, config errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.config import Settings, load_settings
from stageflow.errors import SpecError, SpecErrors
from stageflow.models.routing import (
    ALIASES_AS_OF,
    DEFAULT_ALIASES,
    ModelChoice,
    ModelRoutes,
    load_routes,
)

ROUTES = ModelRoutes()


def config(tmp_path: Path, text: str) -> Settings:
    state = tmp_path / ".stageflow"
    state.mkdir(exist_ok=True)
    (state / "config.toml").write_text(text, encoding="utf-8")
    return load_settings(tmp_path)


# -- resolve ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, "", "inherit", "default", " Inherit "])
def test_no_choice_resolves_to_the_default_model(name: str | None) -> None:
    assert ROUTES.resolve(name) == "claude-sonnet-4-6"


@pytest.mark.parametrize(
    ("name", "model"),
    [("opus", "claude-opus-4-7"), ("Haiku", "claude-haiku-4-5"), ("sonnet", "claude-sonnet-4-6")],
)
def test_aliases_resolve_to_model_ids(name: str, model: str) -> None:
    assert ROUTES.resolve(name) == model


@pytest.mark.parametrize("name", ["claude-opus-4-1-20250805", "my-gateway/model", "opusx"])
def test_unknown_names_pass_through_as_model_ids(name: str) -> None:
    assert ROUTES.resolve(name) == name


def test_an_alias_cycle_stops_instead_of_looping() -> None:
    routes = ModelRoutes(aliases={"a": "b", "b": "a"}, default="sonnet")
    assert routes.resolve("a") == "a"


def test_the_default_must_name_a_model() -> None:
    with pytest.raises(ValueError, match="default model"):
        ModelRoutes(default="inherit")


# -- choose: precedence -----------------------------------------------------------------------


def test_the_stage_model_wins_over_the_agent_model() -> None:
    choice = ROUTES.choose(stage_model="opus", agent_model="haiku")
    assert choice == ModelChoice(asked="opus", model="claude-opus-4-7", fallback=None)


@pytest.mark.parametrize("stage", [None, "", "inherit"])
def test_the_agent_model_applies_when_the_stage_does_not_choose(stage: str | None) -> None:
    choice = ROUTES.choose(stage_model=stage, agent_model="haiku")
    assert (choice.asked, choice.model) == ("haiku", "claude-haiku-4-5")


@pytest.mark.parametrize("agent", [None, "inherit"])
def test_the_config_default_applies_when_nobody_chooses(agent: str | None) -> None:
    routes = ModelRoutes(default="opus")
    choice = routes.choose(stage_model=None, agent_model=agent)
    assert (choice.asked, choice.model) == ("opus", "claude-opus-4-7")


def test_a_stage_asking_for_default_skips_the_agent_model() -> None:
    choice = ROUTES.choose(stage_model="default", agent_model="opus")
    assert (choice.asked, choice.model) == ("sonnet", "claude-sonnet-4-6")


def test_a_full_model_id_is_asked_for_as_written() -> None:
    choice = ROUTES.choose(stage_model=None, agent_model="claude-opus-4-1-20250805")
    assert choice.model == "claude-opus-4-1-20250805"


# -- choose: fallback -------------------------------------------------------------------------


def test_the_agent_fallback_wins_over_the_config_fallback() -> None:
    routes = ModelRoutes(fallback="sonnet")
    choice = routes.choose(stage_model="opus", agent_model=None, agent_fallback="haiku")
    assert choice.fallback == "claude-haiku-4-5"


@pytest.mark.parametrize("agent_fallback", [None, "", "inherit"])
def test_the_config_fallback_applies_without_an_agent_fallback(
    agent_fallback: str | None,
) -> None:
    routes = ModelRoutes(fallback="haiku")
    choice = routes.choose(stage_model="opus", agent_model=None, agent_fallback=agent_fallback)
    assert choice.fallback == "claude-haiku-4-5"


def test_no_fallback_anywhere_means_none() -> None:
    assert ROUTES.choose(stage_model="opus", agent_model=None).fallback is None


def test_a_fallback_equal_to_the_chosen_model_is_dropped() -> None:
    routes = ModelRoutes(fallback="claude-haiku-4-5")
    assert routes.choose(stage_model="haiku", agent_model=None).fallback is None


# -- config -----------------------------------------------------------------------------------


def test_without_a_models_table_the_built_in_routes_apply(tmp_path: Path) -> None:
    routes = load_routes(config(tmp_path, 'runner = "offline"\n'))
    assert routes == ModelRoutes(aliases=DEFAULT_ALIASES, default="sonnet", fallback=None)
    assert routes.as_of == ALIASES_AS_OF


def test_config_overrides_aliases_default_and_fallback(tmp_path: Path) -> None:
    text = (
        "[models]\n"
        'default = "opus"\n'
        'fallback = "fast"\n'
        'as_of = "2027-02-01"\n'
        "[models.aliases]\n"
        'opus = "claude-opus-4-8"\n'
        'Fast = "haiku"\n'
    )
    routes = load_routes(config(tmp_path, text))
    choice = routes.choose(stage_model=None, agent_model="inherit")
    assert choice == ModelChoice(asked="opus", model="claude-opus-4-8", fallback="claude-haiku-4-5")
    assert routes.resolve("sonnet") == "claude-sonnet-4-6"  # untouched aliases stay
    assert routes.as_of == "2027-02-01"


@pytest.mark.parametrize(
    ("text", "path", "words"),
    [
        ("[models]\ndefault = 5\n", "models.default", "model name"),
        ('[models]\ndefault = "inherit"\n', "models.default", "cannot be the default"),
        ('[models]\nfallback = ""\n', "models.fallback", "model name"),
        ('[models]\ndefualt = "opus"\n', "models.defualt", "unknown key"),
        ('[models]\naliases = "opus"\n', "models.aliases", "table"),
        ("[models.aliases]\nopus = 4\n", 'models.aliases."opus"', "model id"),
        ('models = "opus"\n', "models", "table"),
    ],
)
def test_a_bad_models_entry_names_config_toml_and_the_key(
    tmp_path: Path, text: str, path: str, words: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_routes(config(tmp_path, text))
    problem = info.value.problem
    assert problem.file == str(tmp_path / ".stageflow" / "config.toml")
    assert (problem.path, words in problem.message) == (path, True)
    assert ".stageflow/config.toml" in str(info.value)


def test_all_bad_models_entries_are_reported_together(tmp_path: Path) -> None:
    with pytest.raises(SpecErrors) as info:
        load_routes(config(tmp_path, "[models]\ndefault = 1\nfallback = 2\n"))
    assert [p.path for p in info.value.problems] == ["models.default", "models.fallback"]
