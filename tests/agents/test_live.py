"""LiveDefinitions.apply on real files: only the given files are re-read, a broken file keeps its
last good version, deletes fall back to lower layers, templates follow the agents they name."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.agents.live import LiveDefinitions
from stageflow.agents.registry import load_agents
from stageflow.config import Settings, load_settings
from stageflow.engine.catalog_view import catalog_view
from stageflow.engine.service import Service
from stageflow.errors import NotFound, Problem
from stageflow.store.store import Store
from stageflow.workflows.catalog import load_catalog


def agent_text(name: str, description: str = "Does the job.", prompt: str = "Work.") -> str:
    return f"---\nname: {name}\ndescription: {description}\nmodel: sonnet\n---\n{prompt}\n"


TEMPLATE = """\
name: {name}
description: {description}
stages:
  - {{id: only, agent: {agent}}}
"""


def template_text(name: str, agent: str = "writer", description: str = "A flow.") -> str:
    return TEMPLATE.format(name=name, agent=agent, description=description)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    write(root / ".stageflow" / "agents" / "writer.md", agent_text("writer", "v1"))
    write(root / ".stageflow" / "workflows" / "flow.yaml", template_text("flow"))
    return root


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project)


def agents_dir(settings: Settings) -> Path:
    return settings.state_dir / "agents"


def flows_dir(settings: Settings) -> Path:
    return settings.state_dir / "workflows"


def test_the_initial_load_equals_the_pure_loaders(settings: Settings) -> None:
    user = settings.home / "agents"
    write(user / "writer.md", agent_text("writer", "from the user layer"))
    write(agents_dir(settings) / "broken.md", "no front matter at all\n")
    write(agents_dir(settings) / "zz-twin.md", agent_text("writer", "same folder, later file"))
    write(flows_dir(settings) / "bad.yaml", "name: bad\nstages: [\n")
    write(flows_dir(settings) / "bugfix.yaml", template_text("bugfix", agent="ghost"))

    live = LiveDefinitions(settings)

    agents = load_agents(settings.agent_dirs())
    catalog = load_catalog(settings.template_dirs(), agent_names=agents.names())
    assert live.agents == agents
    assert dict(live.catalog.entries) == dict(catalog.entries)
    assert live.catalog.errors == catalog.errors
    assert live.version == 1
    assert live.agents.get("writer").description == "v1"
    assert len(live.agents.errors) == 2  # the broken file and the same-folder twin


def test_an_edit_is_served_after_apply_and_bumps_the_version(settings: Settings) -> None:
    live = LiveDefinitions(settings)
    path = write(agents_dir(settings) / "writer.md", agent_text("writer", "v2"))
    assert live.agent("writer") is not None
    assert live.agents.get("writer").description == "v1"  # nothing happens without apply

    report = live.apply([path])

    assert live.agents.get("writer").description == "v2"
    assert live.version == 2
    assert report.agents_changed == ("writer",)
    assert report.agents_removed == report.templates_changed == ()
    assert report.errors == ()


def test_only_the_given_files_are_read_again(settings: Settings) -> None:
    live = LiveDefinitions(settings)
    edited = write(agents_dir(settings) / "writer.md", agent_text("writer", "v2"))
    other = write(agents_dir(settings) / "reader.md", agent_text("reader", "new"))

    live.apply([other])

    assert live.agents.get("reader").description == "new"
    assert live.agents.get("writer").description == "v1"  # edited on disk, not applied
    live.apply([edited])
    assert live.agents.get("writer").description == "v2"


def test_an_added_file_appears(settings: Settings) -> None:
    live = LiveDefinitions(settings)
    path = write(agents_dir(settings) / "nitpicker.md", agent_text("nitpicker", "Finds faults."))

    report = live.apply([path])

    assert live.agents.get("nitpicker").source == str(path)
    assert report.agents_changed == ("nitpicker",)


def test_a_deleted_file_disappears(settings: Settings) -> None:
    path = write(agents_dir(settings) / "nitpicker.md", agent_text("nitpicker"))
    live = LiveDefinitions(settings)
    path.unlink()

    report = live.apply([path])

    with pytest.raises(NotFound) as err:
        live.agents.get("nitpicker")
    assert err.value.kind == "agent"
    assert report.agents_removed == ("nitpicker",)


def test_deleting_an_override_brings_the_lower_layer_back(settings: Settings) -> None:
    user_file = write(settings.home / "agents" / "w.md", agent_text("writer", "user layer"))
    live = LiveDefinitions(settings)
    assert live.agents.get("writer").layer == "project"
    project_file = agents_dir(settings) / "writer.md"
    project_file.unlink()

    report = live.apply([project_file])

    writer = live.agents.get("writer")
    assert (writer.layer, writer.description, writer.source) == (
        "user",
        "user layer",
        str(user_file),
    )
    assert report.agents_changed == ("writer",)
    assert report.agents_removed == ()


def test_deleting_a_project_template_brings_the_builtin_back(settings: Settings) -> None:
    path = write(flows_dir(settings) / "bugfix.yaml", template_text("bugfix"))
    live = LiveDefinitions(settings)
    assert live.catalog.entries["bugfix"].layer == "project"
    path.unlink()

    report = live.apply([path])

    assert live.catalog.entries["bugfix"].layer == "builtin"
    assert report.templates_changed == ("bugfix",)


def test_a_rename_is_a_delete_plus_an_add(settings: Settings) -> None:
    live = LiveDefinitions(settings)
    old = agents_dir(settings) / "writer.md"
    new = agents_dir(settings) / "author.md"
    old.replace(new)

    report = live.apply([old, new])

    assert live.agents.get("writer").source == str(new)  # the name is the identity
    assert report.agents_changed == ("writer",)
    assert live.agents.errors == ()


def test_a_renamed_template_keeps_its_name_and_moves_its_source(settings: Settings) -> None:
    live = LiveDefinitions(settings)
    old, new = flows_dir(settings) / "flow.yaml", flows_dir(settings) / "flow-v2.yml"
    old.replace(new)

    live.apply([new, old])

    assert live.catalog.entries["flow"].source == new
    assert live.catalog.errors == ()


def test_a_broken_agent_file_keeps_its_last_good_version_and_reports_the_problem(
    settings: Settings,
) -> None:
    live = LiveDefinitions(settings)
    path = write(agents_dir(settings) / "writer.md", "---\nname: writer\n---\n")

    report = live.apply([path])

    assert live.agents.get("writer").description == "v1"  # still served
    problems = [p for p in live.agents.errors if p.file == str(path)]
    assert [p.message for p in problems] == [
        "missing required key 'description' (Claude Code uses it to decide when to delegate "
        "to the agent)",
        "empty body: the Markdown after the front matter is the agent's system prompt and must "
        "not be empty",
    ]
    assert report.errors == tuple(problems)
    assert report.agents_changed == ()
    view = catalog_view(live.agents, live.catalog, "offline")
    assert str(problems[0]) in view.errors  # what workflow_templates shows

    again = live.apply([path])  # saved broken again, same problems: nothing new to tell
    assert again.empty

    write(path, agent_text("writer", "v3"))
    fixed = live.apply([path])
    assert live.agents.get("writer").description == "v3"
    assert live.agents.errors == ()
    assert fixed.agents_changed == ("writer",)


def test_a_new_file_that_is_broken_only_reports_its_problem(settings: Settings) -> None:
    live = LiveDefinitions(settings)
    path = write(agents_dir(settings) / "half.md", "---\nname: half\n")

    report = live.apply([path])

    assert "half" not in live.agents.names()
    assert report.errors == (
        Problem("unterminated front matter: no closing '---' line", file=str(path), line=1),
    )


def test_a_broken_template_keeps_its_last_good_version(settings: Settings) -> None:
    live = LiveDefinitions(settings)
    path = write(flows_dir(settings) / "flow.yaml", "name: flow\nstages: [\n")

    report = live.apply([path])

    entry = live.catalog.entries["flow"]
    assert entry.spec is not None and entry.spec.description == "A flow."
    assert entry.problems == ()  # still usable: start_run accepts it
    assert report.errors and all(p.file == str(path) for p in report.errors)
    assert set(report.errors) <= set(live.catalog.errors)
    view = catalog_view(live.agents, live.catalog, "offline")
    assert str(report.errors[0]) in view.errors


def test_templates_are_revalidated_when_an_agent_they_use_goes_away(settings: Settings) -> None:
    live = LiveDefinitions(settings)
    agent = agents_dir(settings) / "writer.md"
    agent.unlink()

    report = live.apply([agent])

    entry = live.catalog.entries["flow"]
    assert entry.spec is None
    assert report.agents_removed == ("writer",)
    assert report.templates_changed == ("flow",)
    assert [(p.stage, p.path) for p in entry.problems] == [("only", "stages[0].agent")]
    assert "unknown agent 'writer'" in entry.problems[0].message

    write(agent, agent_text("writer", "back"))
    live.apply([agent])
    restored = live.catalog.entries["flow"]
    assert restored.spec is not None and restored.problems == ()
    assert live.catalog.errors == ()


def test_a_template_naming_a_new_agent_loads_once_the_agent_exists(settings: Settings) -> None:
    flow = write(flows_dir(settings) / "review.yaml", template_text("review", agent="nitpicker"))
    live = LiveDefinitions(settings)
    assert live.catalog.entries["review"].spec is None

    nitpicker = write(agents_dir(settings) / "nitpicker.md", agent_text("nitpicker"))
    report = live.apply([nitpicker])

    assert live.catalog.entries["review"].spec is not None
    assert "review" in report.templates_changed
    assert flow.is_file()


def test_deleting_a_twin_lets_the_other_file_of_the_same_folder_take_over(
    settings: Settings,
) -> None:
    twin = write(agents_dir(settings) / "zz-writer.md", agent_text("writer", "the twin"))
    live = LiveDefinitions(settings)
    assert len(live.agents.errors) == 1
    first = agents_dir(settings) / "writer.md"
    first.unlink()

    live.apply([first])

    assert live.agents.get("writer").source == str(twin)
    assert live.agents.errors == ()


def test_other_paths_are_reported_as_knowledge_and_change_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    live = LiveDefinitions(settings)
    doc = write(settings.state_dir / "knowledge" / "guide.md", "# Guide\n")
    ignored = write(agents_dir(settings) / "notes.txt", "not an agent")
    swap = write(agents_dir(settings) / ".writer.md", agent_text("writer", "swap file"))

    report = live.apply([doc, ignored, swap])

    assert report.knowledge_paths == (doc,)
    assert not report.definitions_changed and report.errors == ()
    assert live.version == 1
    assert live.agents.get("writer").description == "v1"


def test_a_folder_path_lists_that_folder_again(tmp_path: Path) -> None:
    project = tmp_path / "fresh"
    project.mkdir()
    settings = load_settings(project)
    live = LiveDefinitions(settings)
    write(agents_dir(settings) / "a.md", agent_text("alpha"))
    write(agents_dir(settings) / "b.md", agent_text("beta"))

    report = live.apply([settings.state_dir])  # a parent of the folder: what a watcher sees

    assert report.agents_changed == ("alpha", "beta")
    for path in agents_dir(settings).iterdir():
        path.unlink()
    agents_dir(settings).rmdir()
    gone = live.apply([agents_dir(settings)])
    assert gone.agents_removed == ("alpha", "beta")


def test_a_snapshot_pairs_agents_and_templates_of_one_version(settings: Settings) -> None:
    live = LiveDefinitions(settings)
    before = live.snapshot
    path = write(agents_dir(settings) / "writer.md", agent_text("writer", "v2"))

    live.apply([path])

    after = live.snapshot
    assert (before.version, after.version) == (1, 2)
    assert before.agents.get("writer").description == "v1"  # an old snapshot stays as it was
    assert after.agents.get("writer").description == "v2"
    assert after.catalog is live.catalog


def test_a_service_with_live_definitions_reads_no_files_per_call(settings: Settings) -> None:
    live = LiveDefinitions(settings)
    service = Service(settings, store=None, definitions=live)  # type: ignore[arg-type]
    path = write(agents_dir(settings) / "writer.md", agent_text("writer", "v2"))

    assert service.agents().get("writer").description == "v1"  # not applied yet
    assert service.templates() is live.catalog
    assert [a.description for a in service.catalog().agents if a.name == "writer"] == ["v1"]
    reading = Service(settings, store=None)  # type: ignore[arg-type]
    assert reading.agents().get("writer").description == "v2"  # without: reads every call

    live.apply([path])
    assert service.agents().get("writer").description == "v2"


@pytest.mark.anyio
async def test_start_run_takes_the_template_and_agents_from_live_definitions(
    settings: Settings,
) -> None:
    live = LiveDefinitions(settings)
    (flows_dir(settings) / "flow.yaml").unlink()  # gone on disk, still live until applied
    write(agents_dir(settings) / "writer.md", agent_text("writer", "disk only"))
    store = await Store.open(settings.db_path)
    try:
        state = await Service(settings, store, definitions=live).start_run("flow", "do it")
    finally:
        await store.close()
    assert state.template == "flow"
    assert state.agents["writer"].description == "v1"
