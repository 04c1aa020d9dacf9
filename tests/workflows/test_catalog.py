"""The layered template catalog: precedence by name, broken files, lookups."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.errors import NotFound, SpecErrors
from stageflow.workflows.catalog import TemplateCatalog, load_catalog, template_files

AGENTS = ["architect", "developer", "tester", "reviewer"]


def write(directory: Path, file: str, name: str, agent: str = "tester", extra: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file
    path.write_text(
        f"name: {name}\ndescription: from {directory.name}\nstages:\n"
        f"  - id: only\n    agent: {agent}\n{extra}",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def layers(tmp_path: Path) -> list[tuple[str, Path]]:
    return [
        ("builtin", tmp_path / "builtin"),
        ("user", tmp_path / "user"),
        ("project", tmp_path / "project"),
    ]


def test_later_layers_override_by_template_name(layers: list[tuple[str, Path]]) -> None:
    builtin, user, project = (d for _, d in layers)
    write(builtin, "feature.yaml", "feature")
    write(builtin, "bugfix.yaml", "bugfix")
    write(user, "my-feature.yml", "feature", agent="developer")  # file name differs: name wins
    write(project, "bugfix.yaml", "bugfix", agent="reviewer")
    write(project, "docs.toml", "docs")
    (project / "docs.toml").write_text(
        'name = "docs"\n[[stages]]\nid = "write"\nagent = "architect"\n', encoding="utf-8"
    )

    catalog = load_catalog(layers, agent_names=AGENTS)

    assert catalog.errors == ()
    assert catalog.names() == ["bugfix", "docs", "feature"]
    feature = catalog.entries["feature"]
    assert (feature.layer, feature.source) == ("user", user / "my-feature.yml")
    assert catalog.get("feature").stages[0].agent == "developer"
    assert catalog.get("bugfix").stages[0].agent == "reviewer"
    assert catalog.entries["docs"].layer == "project"
    assert catalog.get("docs").source == str(project / "docs.toml")


def test_missing_directories_are_fine(layers: list[tuple[str, Path]]) -> None:
    catalog = load_catalog(layers)
    assert catalog == TemplateCatalog({}, ())
    assert catalog.names() == []


def test_a_broken_override_keeps_the_lower_template(layers: list[tuple[str, Path]]) -> None:
    builtin, _, project = (d for _, d in layers)
    write(builtin, "feature.yaml", "feature")
    broken = write(project, "feature.yaml", "feature", extra="    depends_on: [ghost]\n")

    catalog = load_catalog(layers, agent_names=AGENTS)

    entry = catalog.entries["feature"]
    assert (entry.layer, entry.source, entry.problems) == ("builtin", builtin / "feature.yaml", ())
    assert catalog.get("feature").description == "from builtin"
    assert [(p.file, p.line, p.message) for p in catalog.errors] == [
        (str(broken), 6, "depends_on unknown stage 'ghost'"),
    ]


def test_a_broken_file_without_a_lower_template_is_listed_with_its_problems(
    layers: list[tuple[str, Path]],
) -> None:
    _, user, _ = (d for _, d in layers)
    write(user, "good.yaml", "good")
    bad = user / "bad.yaml"
    bad.write_text("name: bad\nstages: [\n", encoding="utf-8")

    catalog = load_catalog(layers)

    entry = catalog.entries["bad"]
    assert (entry.spec, entry.source, entry.layer) == (None, bad, "user")
    assert entry.problems == catalog.errors
    assert catalog.errors[0].file == str(bad)
    assert catalog.names() == ["bad", "good"]
    with pytest.raises(SpecErrors) as info:
        catalog.get("bad")
    assert info.value.problems == list(entry.problems)
    assert catalog.get("good").name == "good"


def test_a_good_higher_file_replaces_a_broken_lower_one(layers: list[tuple[str, Path]]) -> None:
    builtin, _, project = (d for _, d in layers)
    (builtin / "x.yaml").parent.mkdir(parents=True)
    (builtin / "x.yaml").write_text("- not a template\n", encoding="utf-8")
    write(project, "x.yaml", "x")
    catalog = load_catalog(layers)
    assert catalog.entries["x"].layer == "project"
    assert catalog.get("x").name == "x"
    assert len(catalog.errors) == 1


def test_unknown_agents_make_a_template_broken(layers: list[tuple[str, Path]]) -> None:
    builtin = layers[0][1]
    write(builtin, "t.yaml", "t", agent="ghostwriter")
    assert load_catalog(layers).get("t").name == "t"  # no agent list: not checked
    catalog = load_catalog(layers, agent_names=AGENTS)
    assert catalog.entries["t"].spec is None
    assert "unknown agent 'ghostwriter'" in catalog.errors[0].message


def test_get_unknown_template_raises_not_found(layers: list[tuple[str, Path]]) -> None:
    write(layers[0][1], "a.yaml", "alpha")
    catalog = load_catalog(layers)
    with pytest.raises(NotFound) as info:
        catalog.get("beta")
    assert (info.value.kind, info.value.name, info.value.known) == ("template", "beta", ["alpha"])


def test_only_template_files_directly_in_the_directory_count(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "a")
    write(tmp_path, "b.YML", "b")
    write(tmp_path, "c.toml", "c")
    (tmp_path / "notes.md").write_text("# not a template\n", encoding="utf-8")
    write(tmp_path / "nested", "d.yaml", "d")
    (tmp_path / "dir.yaml").mkdir()
    assert [p.name for p in template_files(tmp_path)] == ["a.yaml", "b.YML", "c.toml"]
    assert template_files(tmp_path / "missing") == []


def test_two_files_with_one_name_in_a_layer_are_reported(layers: list[tuple[str, Path]]) -> None:
    builtin = layers[0][1]
    first = write(builtin, "a.yaml", "same")
    second = write(builtin, "b.yaml", "same", agent="reviewer")
    catalog = load_catalog(layers)
    assert catalog.entries["same"].source == first  # like agents: the first file is kept
    assert [(p.file, p.message) for p in catalog.errors] == [
        (str(second), f"template 'same' is also defined in {first} (same folder); keeping {first}"),
    ]


def test_entries_cannot_be_mutated(layers: list[tuple[str, Path]]) -> None:
    write(layers[0][1], "a.yaml", "a")
    catalog = load_catalog(layers)
    with pytest.raises(TypeError):
        catalog.entries["b"] = catalog.entries["a"]  # type: ignore[index]
