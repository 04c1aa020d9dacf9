"""The real watcher on a real file system: edits, adds, deletes, renames and editor saves are
served without a restart; a broken file keeps its last good version; a stage that is running
keeps the definition it started with while the next attempt gets the new one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio
import pytest

from stageflow import events as ev
from stageflow.agents.live import LiveDefinitions, ReloadReport
from stageflow.agents.watcher import is_temp_file, watch
from stageflow.config import Settings, load_settings
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.engine.scheduler import Scheduler
from stageflow.engine.service import Service
from stageflow.engine.state import fold
from tests.engine.harness import FakeRunner, default_result, engine_env

pytestmark = pytest.mark.anyio

LIMIT = 5.0  # seconds any single wait may take; a reload normally takes well under 0.1 s


def agent_text(name: str, description: str, prompt: str = "Work.") -> str:
    return f"---\nname: {name}\ndescription: {description}\n---\n{prompt}\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def atomic_save(path: Path, text: str) -> None:
    """What most editors do: write a temporary file next to it, rename it over the original."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


async def until(check: Callable[[], bool], limit: float = LIMIT) -> None:
    """Poll ``check`` until it holds, failing after ``limit`` seconds."""
    with anyio.fail_after(limit):
        while True:
            if check():
                return
            await anyio.sleep(0.005)


@dataclass
class Watched:
    settings: Settings
    live: LiveDefinitions
    reports: list[ReloadReport] = field(default_factory=list)
    markers: int = 0

    @property
    def agents_dir(self) -> Path:
        return self.settings.state_dir / "agents"

    def description(self, name: str) -> str | None:
        agent = self.live.agent(name)
        return agent.description if agent else None

    async def settle(self) -> None:
        """Save a marker agent and wait until it is served: every change made before it has
        been handled by then (the watcher handles batches in order)."""
        self.markers += 1
        text = f"marker {self.markers}"
        atomic_save(self.agents_dir / "marker.md", agent_text("marker", text))
        # served (the swap) and reported (on_reload runs right after it)
        await until(lambda: self.description("marker") == text)
        await until(lambda: self.marker_reports() == self.markers)

    def marker_reports(self) -> int:
        return sum(r.agents_changed == ("marker",) for r in self.reports)

    def since_marker(self) -> list[ReloadReport]:
        """The reports before the last marker's own report."""
        assert self.reports and self.reports[-1].agents_changed == ("marker",)
        return self.reports[:-1]


@asynccontextmanager
async def watching(
    settings: Settings,
    *,
    then: Callable[[ReloadReport], Awaitable[None]] | None = None,
    knowledge_dirs: tuple[Path, ...] = (),
) -> AsyncIterator[Watched]:
    live = LiveDefinitions(settings)
    w = Watched(settings, live)

    async def on_reload(report: ReloadReport) -> None:
        w.reports.append(report)
        if then is not None:
            await then(report)

    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(LIMIT):
            await tg.start(
                partial(
                    watch,
                    live,
                    live.dirs,
                    on_reload=on_reload,
                    knowledge_dirs=knowledge_dirs,
                    stop=stop,
                )
            )
        try:
            yield w
        finally:
            stop.set()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    project = tmp_path / "project"
    write(project / ".stageflow" / "agents" / "writer.md", agent_text("writer", "v1"))
    write(
        project / ".stageflow" / "workflows" / "flow.yaml",
        "name: flow\ndescription: first\nstages:\n  - {id: only, agent: writer}\n",
    )
    return load_settings(project)


async def test_an_in_place_edit_is_served_without_a_restart(settings: Settings) -> None:
    async with watching(settings) as w:
        write(w.agents_dir / "writer.md", agent_text("writer", "v2"))
        await until(lambda: w.description("writer") == "v2")
        # (a slow in-place write may first be seen truncated: a problem, then the change)
        await until(lambda: ("writer",) in [r.agents_changed for r in w.reports])


async def test_a_template_edit_is_served(settings: Settings) -> None:
    flow = settings.state_dir / "workflows" / "flow.yaml"
    async with watching(settings) as w:
        atomic_save(flow, flow.read_text().replace("first", "second"))
        await until(lambda: w.live.catalog.get("flow").description == "second")
        await until(lambda: [r.templates_changed for r in w.reports] == [("flow",)])


async def test_an_added_file_is_served(settings: Settings) -> None:
    async with watching(settings) as w:
        write(w.agents_dir / "nitpicker.md", agent_text("nitpicker", "Finds faults."))
        await until(lambda: w.description("nitpicker") == "Finds faults.")


async def test_a_deleted_file_disappears_and_a_lower_layer_comes_back(
    settings: Settings,
) -> None:
    write(settings.home / "agents" / "writer.md", agent_text("writer", "user layer"))
    write(settings.state_dir / "agents" / "nitpicker.md", agent_text("nitpicker", "Finds faults."))
    async with watching(settings) as w:
        (w.agents_dir / "nitpicker.md").unlink()
        (w.agents_dir / "writer.md").unlink()
        await until(lambda: w.live.agent("nitpicker") is None)
        await until(lambda: w.description("writer") == "user layer")
        assert w.live.agents.get("writer").layer == "user"


async def test_a_renamed_file_keeps_serving_the_agent_from_its_new_path(
    settings: Settings,
) -> None:
    async with watching(settings) as w:
        old, new = w.agents_dir / "writer.md", w.agents_dir / "author.md"
        old.rename(new)
        await until(lambda: (a := w.live.agent("writer")) is not None and a.source == str(new))
        await w.settle()
        assert w.live.agents.get("writer").description == "v1"
        assert w.live.agents.errors == ()


async def test_an_atomic_save_is_one_reload(settings: Settings) -> None:
    async with watching(settings) as w:
        version = w.live.version
        atomic_save(w.agents_dir / "writer.md", agent_text("writer", "saved atomically"))
        await until(lambda: w.description("writer") == "saved atomically")
        assert w.live.version == version + 1
        await w.settle()
        assert [r.agents_changed for r in w.since_marker()] == [("writer",)]
        assert w.since_marker()[0].errors == ()
        assert w.live.version == version + 2  # the save, then the marker: nothing else
        assert not (w.agents_dir / ".writer.md.tmp").exists()


async def test_editor_temp_swap_and_backup_files_are_ignored(settings: Settings) -> None:
    async with watching(settings) as w:
        for name in (".writer.md.swp", "writer.md~", "#writer.md#", ".#writer.md", "x.md.tmp"):
            write(w.agents_dir / name, "---\nname: junk\n---\n")
        await w.settle()
        assert w.since_marker() == []
        assert w.live.agents.errors == ()
        assert "junk" not in w.live.agents.names()


async def test_a_broken_file_keeps_its_last_good_version_and_reports_the_error(
    settings: Settings,
) -> None:
    async with watching(settings) as w:
        path = w.agents_dir / "writer.md"
        atomic_save(path, "---\nname: writer\ndescription: [unclosed\n---\nWork.\n")
        await until(lambda: bool(w.reports) and bool(w.reports[-1].errors))
        (problem,) = w.reports[-1].errors
        assert (problem.file, problem.line) == (str(path), 3)  # the description line
        assert problem.message.startswith("invalid YAML in front matter")
        assert w.description("writer") == "v1"  # the last good version is still served
        service = Service(settings, store=None, definitions=w.live)  # type: ignore[arg-type]
        assert str(problem) in service.catalog().errors  # what workflow_templates shows

        write(path, agent_text("writer", "repaired"))
        await until(lambda: w.description("writer") == "repaired")
        assert w.live.agents.errors == ()
        assert service.catalog().errors == []


async def test_folders_created_after_the_start_are_watched_and_none_is_created(
    tmp_path: Path,
) -> None:
    project = tmp_path / "bare"
    project.mkdir()
    settings = load_settings(project)
    async with watching(settings) as w:
        assert list(project.iterdir()) == []  # the watcher created nothing
        write(project / ".stageflow" / "agents" / "late.md", agent_text("late", "came later"))
        await until(lambda: w.description("late") == "came later")
        write(
            project / ".stageflow" / "workflows" / "late.yaml",
            "name: late\nstages:\n  - {id: a, agent: late}\n",
        )
        await until(lambda: "late" in w.live.catalog.entries)
        assert w.live.catalog.get("late").stages[0].agent == "late"
        write(w.agents_dir / "late.md", agent_text("late", "edited in the new folder"))
        await until(lambda: w.description("late") == "edited in the new folder")


async def test_a_removed_folder_takes_its_agents_along_and_can_come_back(
    settings: Settings,
) -> None:
    async with watching(settings) as w:
        folder = w.agents_dir
        (folder / "writer.md").unlink()
        folder.rmdir()
        await until(lambda: w.live.agent("writer") is None)
        write(folder / "writer.md", agent_text("writer", "back again"))
        await until(lambda: w.description("writer") == "back again")
        write(folder / "writer.md", agent_text("writer", "edited after"))
        await until(lambda: w.description("writer") == "edited after")


async def test_a_failing_on_reload_does_not_stop_the_watcher(settings: Settings) -> None:
    calls = 0

    async def explode(report: ReloadReport) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("listener bug")

    async with watching(settings, then=explode) as w:
        atomic_save(w.agents_dir / "writer.md", agent_text("writer", "v2"))
        await until(lambda: calls == 1)
        atomic_save(w.agents_dir / "writer.md", agent_text("writer", "v3"))
        await until(lambda: w.description("writer") == "v3")
        await until(lambda: calls == 2)


async def test_knowledge_files_are_passed_on_including_new_subfolders(
    settings: Settings,
) -> None:
    knowledge = settings.state_dir / "knowledge"
    knowledge.mkdir()
    async with watching(settings, knowledge_dirs=(knowledge,)) as w:
        guide = write(knowledge / "guide.md", "# Guide\n")
        await until(lambda: any(guide in r.knowledge_paths for r in w.reports))
        adr = write(knowledge / "adr" / "0001-use-sqlite.md", "# Use SQLite\n")
        await until(lambda: any(adr in r.knowledge_paths for r in w.reports))
        seen = len(w.reports)
        write(knowledge / "adr" / "notes.txt", "not Markdown")
        write(knowledge / "adr" / ".0002.md.swp", "swap")
        await w.settle()
        assert w.since_marker()[seen:] == []
        assert w.live.version == 2  # only the marker changed definitions


async def test_stop_and_cancellation_end_the_watcher_promptly(settings: Settings) -> None:
    live = LiveDefinitions(settings)

    async def ignore(report: ReloadReport) -> None:
        return None

    stop = anyio.Event()
    with anyio.fail_after(2):  # awatch alone would wait up to 5 s for its thread
        async with anyio.create_task_group() as tg:
            await tg.start(partial(watch, live, live.dirs, on_reload=ignore, stop=stop))
            stop.set()
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            await tg.start(partial(watch, live, live.dirs, on_reload=ignore))
            tg.cancel_scope.cancel()


def test_temp_file_names_are_recognised() -> None:
    temp = [".x.md", "x.md~", "x.md.swp", "x.yaml.tmp", "#x.md#", "x.md.___jb_tmp___", "X.BAK"]
    assert [n for n in temp if not is_temp_file(n)] == []
    assert [n for n in ("x.md", "flow.yaml", "a.toml", "notes.md") if is_temp_file(n)] == []


TWO = """
name: two
stages:
  - {id: first, agent: worker}
  - {id: second, agent: worker, depends_on: [first]}
"""


async def test_a_running_attempt_keeps_its_snapshot_and_the_next_gets_the_edit(
    tmp_path: Path,
) -> None:
    release = anyio.Event()
    running = anyio.Event()

    async def hold(req: AttemptRequest) -> AttemptResult:
        running.set()
        await release.wait()
        return default_result(req)

    runner = FakeRunner({"first": hold})
    async with engine_env(tmp_path, TWO, runner=runner) as env, watching(env.settings) as w:
        service = Service(env.settings, env.store, definitions=w.live)
        scheduler = Scheduler(env.store, runner, poll_interval=0.05, agents=w.live.agent)
        state = await service.start_run("two", "do it")
        before = w.live.agents.get("worker")

        async def drive() -> None:
            await scheduler.drive(state.run_id, until="terminal")

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(drive)
                await running.wait()
                atomic_save(
                    w.agents_dir / "worker.md",
                    agent_text("worker", "edited mid-run", "You work differently now."),
                )
                await until(lambda: w.description("worker") == "edited mid-run")
                release.set()
        scheduler.close()
        after = w.live.agents.get("worker")
        envs = await env.store.load_events(state.run_id)

    assert [c.stage.id for c in runner.calls] == ["first", "second"]
    assert runner.calls[0].agent == before  # the running attempt kept what it started with
    assert runner.calls[1].agent == after
    assert runner.calls[1].agent is not None
    assert runner.calls[1].agent.system_prompt == "You work differently now."
    starts = [e.event for e in envs if isinstance(e.event, ev.AttemptStarted)]
    assert [s.agent_hash for s in starts] == [before.content_hash, after.content_hash]
    assert [s.agent_def is not None for s in starts] == [False, True]
    replayed = fold(envs)
    assert replayed.status == "completed"
    assert replayed.agents["worker"].content_hash == after.content_hash
    assert ev.verify_chain(envs) == []
