"""The layered agent registry: later layers win by name, broken files are reported, not fatal."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.agents.registry import BUILTIN_AGENTS_DIR, AgentRegistry, load_agents
from stageflow.config import load_settings
from stageflow.errors import NotFound, Problem

LAYERS = ("builtin", "user", "project-claude", "project")


def agent_text(name: str, prompt: str = "Do the job.", model: str = "sonnet") -> str:
    return f"---\nname: {name}\ndescription: The {name} agent\nmodel: {model}\n---\n{prompt}\n"


def write(folder: Path, filename: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def layer_dirs(tmp_path: Path) -> list[tuple[str, Path]]:
    return [(layer, tmp_path / layer) for layer in LAYERS]


def test_a_later_layer_overrides_an_agent_by_name(layer_dirs: list[tuple[str, Path]]) -> None:
    paths = [
        write(folder, f"{layer}-file.md", agent_text("reviewer", f"from {layer}"))
        for layer, folder in layer_dirs
    ]
    registry = load_agents(layer_dirs)
    winner = registry.get("reviewer")
    assert winner.system_prompt == "from project"
    assert winner.layer == "project"
    assert winner.source == str(paths[-1])
    assert registry.overridden == {"reviewer": tuple(str(p) for p in paths[:-1])}
    assert registry.errors == ()


def test_each_layer_contributes_its_own_agents(layer_dirs: list[tuple[str, Path]]) -> None:
    for layer, folder in layer_dirs:
        write(folder, "a.md", agent_text(f"only-{layer}"))
    registry = load_agents(layer_dirs)
    assert registry.names() == sorted(f"only-{layer}" for layer in LAYERS)
    assert {registry.get(f"only-{layer}").layer for layer in LAYERS} == set(LAYERS)
    assert registry.overridden == {}


def test_the_filename_does_not_matter_only_the_name_field(
    layer_dirs: list[tuple[str, Path]],
) -> None:
    write(layer_dirs[0][1], "tester.md", agent_text("tester", "builtin tester"))
    write(layer_dirs[2][1], "my-qa.md", agent_text("tester", "project tester"))
    assert load_agents(layer_dirs).get("tester").system_prompt == "project tester"


def test_missing_folders_give_an_empty_registry(tmp_path: Path) -> None:
    registry = load_agents([("user", tmp_path / "nope"), ("project", tmp_path / "also-nope")])
    assert registry == AgentRegistry()
    assert registry.names() == []


def test_a_broken_file_is_reported_and_the_others_still_load(
    layer_dirs: list[tuple[str, Path]],
) -> None:
    folder = layer_dirs[1][1]
    write(folder, "a-good.md", agent_text("alpha"))
    broken = write(folder, "b-broken.md", "---\nname: beta\n---\nbody\n")
    write(folder, "c-good.md", agent_text("gamma"))
    registry = load_agents(layer_dirs)
    assert registry.names() == ["alpha", "gamma"]
    assert registry.errors == (
        Problem(
            "missing required key 'description' (Claude Code uses it to decide when to "
            "delegate to the agent)",
            file=str(broken),
            line=1,
        ),
    )


def test_every_problem_of_a_broken_file_is_reported(layer_dirs: list[tuple[str, Path]]) -> None:
    broken = write(layer_dirs[0][1], "x.md", "---\nname: x\nmax_turns: 0\nmodel: 5\n---\n")
    registry = load_agents(layer_dirs)
    assert [(p.file, p.line) for p in registry.errors] == [
        (str(broken), 1),
        (str(broken), 3),
        (str(broken), 4),
        (str(broken), 5),
    ]


def test_a_broken_override_keeps_the_lower_layer_agent(
    layer_dirs: list[tuple[str, Path]],
) -> None:
    write(layer_dirs[0][1], "reviewer.md", agent_text("reviewer", "builtin"))
    write(layer_dirs[3][1], "reviewer.md", "---\nname: reviewer\ndescription: [oops\n---\nx\n")
    registry = load_agents(layer_dirs)
    assert registry.get("reviewer").system_prompt == "builtin"
    assert len(registry.errors) == 1
    assert registry.overridden == {}


def test_the_same_name_twice_in_one_layer_keeps_the_first_file_and_names_both(
    layer_dirs: list[tuple[str, Path]],
) -> None:
    folder = layer_dirs[2][1]
    second = write(folder, "z-reviewer.md", agent_text("reviewer", "second"))
    first = write(folder, "a-reviewer.md", agent_text("reviewer", "first"))
    registry = load_agents(layer_dirs)
    assert registry.get("reviewer").system_prompt == "first"
    assert registry.errors == (
        Problem(
            f"agent 'reviewer' is also defined in {first} (same folder); keeping {first}",
            file=str(second),
        ),
    )
    assert registry.overridden == {}


def test_only_markdown_files_directly_in_the_folder_are_loaded(
    layer_dirs: list[tuple[str, Path]],
) -> None:
    folder = layer_dirs[1][1]
    write(folder, "real.md", agent_text("real"))
    write(folder / "nested", "deep.md", agent_text("deep"))
    write(folder, "notes.txt", agent_text("text"))
    write(folder, ".#real.md", "editor lock file")
    registry = load_agents(layer_dirs)
    assert registry.names() == ["real"]
    assert registry.errors == ()


def test_get_of_an_unknown_agent_lists_the_known_names(
    layer_dirs: list[tuple[str, Path]],
) -> None:
    write(layer_dirs[0][1], "b.md", agent_text("beta"))
    write(layer_dirs[0][1], "a.md", agent_text("alpha"))
    with pytest.raises(NotFound) as info:
        load_agents(layer_dirs).get("gamma")
    assert (info.value.kind, info.value.name, info.value.known) == (
        "agent",
        "gamma",
        ["alpha", "beta"],
    )


def test_the_snapshot_cannot_be_modified(layer_dirs: list[tuple[str, Path]]) -> None:
    write(layer_dirs[0][1], "a.md", agent_text("alpha"))
    registry = load_agents(layer_dirs)
    with pytest.raises(TypeError):
        registry.agents["beta"] = registry.get("alpha")  # type: ignore[index]


def test_loading_is_pure_and_sees_changes_on_the_next_call(
    layer_dirs: list[tuple[str, Path]],
) -> None:
    folder = layer_dirs[1][1]
    path = write(folder, "a.md", agent_text("alpha", "version one"))
    before = load_agents(layer_dirs)
    path.write_text(agent_text("alpha", "version two"), encoding="utf-8")
    after = load_agents(layer_dirs)
    assert before.get("alpha").system_prompt == "version one"
    assert after.get("alpha").system_prompt == "version two"


def test_project_agents_override_builtins_through_settings(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    settings = load_settings(project)
    claude_dir = project / ".claude" / "agents"
    stageflow_dir = project / ".stageflow" / "agents"
    write(claude_dir, "reviewer.md", agent_text("reviewer", "claude reviewer", model="haiku"))
    write(stageflow_dir, "tester.md", agent_text("tester", "our tester"))
    write(settings.home / "agents", "helper.md", agent_text("helper"))
    registry = load_agents(settings.agent_dirs())
    assert registry.errors == ()
    assert registry.get("reviewer").model == "haiku"
    assert registry.get("reviewer").layer == "project-claude"
    assert registry.get("tester").layer == "project"
    assert registry.get("helper").layer == "user"
    assert registry.get("architect").layer == "builtin"
    assert registry.overridden["reviewer"] == (str(BUILTIN_AGENTS_DIR / "reviewer.md"),)
