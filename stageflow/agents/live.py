"""Live agent and template definitions: re-parse only what changed, swap one snapshot.

``LiveDefinitions`` keeps, per definition file, the last definition that loaded (and for
templates the text it came from). ``apply(paths)`` re-reads just those files: a broken file keeps
its last good definition while its ``Problem`` shows in ``agents.errors`` / ``catalog.errors``; a
deleted file disappears (a lower layer's definition of the same name comes back); a rename is a
delete plus an add. Templates are validated against the agent names of the new snapshot, and when
the set of names changes every template is re-validated from its cached text (no disk reads).
Then the agents and the catalog are swapped together in one assignment, so a reader never sees
agents of one version with templates of another. No watching here: that is ``watcher.py``.

The merge rules are those of ``load_agents`` / ``load_catalog`` (layer precedence, the first
file by name wins inside a layer); a test pins that the initial load equals theirs.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from stageflow.agents.definition import AgentDefinition
from stageflow.agents.parse import parse_agent_file
from stageflow.agents.registry import AgentRegistry
from stageflow.config import Settings
from stageflow.errors import Problem, SpecError, SpecErrors
from stageflow.workflows.bounds import unexpected_problem
from stageflow.workflows.catalog import (
    TEMPLATE_SUFFIXES,
    TemplateCatalog,
    TemplateEntry,
    template_files,
)
from stageflow.workflows.loader import load_template_text, read_template
from stageflow.workflows.spec import WorkflowSpec

Kind = Literal["agents", "templates"]


@dataclass(frozen=True)
class ReloadReport:
    """What one ``apply`` changed.

    ``errors`` are the problems that appeared with this reload (a file saved broken again with
    the same problem is not reported twice); ``knowledge_paths`` are the given paths that are no
    definition file (the watcher passes only knowledge files and folders through).
    """

    agents_changed: tuple[str, ...] = ()
    agents_removed: tuple[str, ...] = ()
    templates_changed: tuple[str, ...] = ()
    templates_removed: tuple[str, ...] = ()
    errors: tuple[Problem, ...] = ()
    knowledge_paths: tuple[Path, ...] = ()

    @property
    def definitions_changed(self) -> bool:
        """True when an agent or a template was added, changed or removed."""
        return bool(
            self.agents_changed
            or self.agents_removed
            or self.templates_changed
            or self.templates_removed
        )

    @property
    def empty(self) -> bool:
        """Nothing to tell anyone: no change, no new problem, no knowledge file."""
        return not (self.definitions_changed or self.errors or self.knowledge_paths)


@dataclass(frozen=True)
class LiveSnapshot:
    """Agents and templates of one moment, and the version that counts swaps."""

    agents: AgentRegistry
    catalog: TemplateCatalog
    version: int


@dataclass(frozen=True)
class _Folder:
    kind: Kind
    index: int  # precedence within its kind, lowest first
    layer: str
    path: Path  # as the settings name it (sources and problems use it)
    real: Path  # resolved, to match the paths a watcher reports


@dataclass(frozen=True)
class _AgentSlot:
    good: AgentDefinition | None  # the last definition that parsed
    problems: tuple[Problem, ...]  # of the file as it is now


@dataclass(frozen=True)
class _TemplateSlot:
    text: str | None  # the file as last read (None: unreadable)
    read_problem: Problem | None
    good_text: str | None  # the last text that loaded
    spec: WorkflowSpec | None  # from ``text``, else from ``good_text``, else None
    problems: tuple[Problem, ...]  # of ``text`` (or of reading it)


_Key = tuple[int, str]  # (folder index, file name)
_PathKind = Literal["agents", "templates", "folder", "knowledge", "ignored"]


class LiveDefinitions:
    """The project's agents and templates, kept current by ``apply`` (one writer, many
    readers: readers take ``snapshot`` or a property, which reads one reference)."""

    def __init__(self, settings: Settings) -> None:
        self._folders = (
            *(
                _Folder("agents", i, la, p, p.resolve())
                for i, (la, p) in enumerate(settings.agent_dirs())
            ),
            *(
                _Folder("templates", i, la, p, p.resolve())
                for i, (la, p) in enumerate(settings.template_dirs())
            ),
        )
        self._lock = threading.Lock()
        self._agents: dict[_Key, _AgentSlot] = {}
        self._templates: dict[_Key, _TemplateSlot] = {}
        self._list_problems: dict[tuple[Kind, int], Problem] = {}
        agents = self._relist_all()
        catalog = self._build_catalog()
        self._snap = LiveSnapshot(agents, catalog, 1)

    # -- reading -----------------------------------------------------------------------------

    @property
    def snapshot(self) -> LiveSnapshot:
        """Agents and catalog of the same version (one reference read)."""
        return self._snap

    @property
    def agents(self) -> AgentRegistry:
        return self._snap.agents

    @property
    def catalog(self) -> TemplateCatalog:
        return self._snap.catalog

    @property
    def version(self) -> int:
        return self._snap.version

    def agent(self, name: str) -> AgentDefinition | None:
        """The current definition of ``name`` (the engine's per-attempt provider)."""
        return self._snap.agents.agents.get(name)

    @property
    def dirs(self) -> list[Path]:
        """Every agent and template folder, for the watcher (missing ones included)."""
        return [f.path for f in self._folders]

    # -- updating ----------------------------------------------------------------------------

    def apply(self, paths: Iterable[Path]) -> ReloadReport:
        """Re-read only ``paths`` and swap in the result.

        A path may be a definition file (re-parsed, or dropped when it no longer exists), a
        definition folder or one of its parents (the folders under it are listed again: what
        the watcher passes when a folder appears or goes), or anything else (returned as a
        knowledge path).
        """
        with self._lock:
            old = self._snap
            knowledge: list[Path] = []
            agent_files: set[tuple[_Folder, Path]] = set()
            template_files_: set[tuple[_Folder, Path]] = set()
            relist: set[_Folder] = set()
            for raw in paths:
                kind, hits = self._classify(Path(raw))
                if kind == "knowledge":
                    knowledge.append(Path(raw))
                elif kind == "folder":
                    relist.update(f for f, _ in hits)
                elif kind == "agents":
                    agent_files.update(hits)
                elif kind == "templates":
                    template_files_.update(hits)
            for folder in relist:
                files = self._relist(folder)
                target = agent_files if folder.kind == "agents" else template_files_
                target.update((folder, p) for p in files)
            if not (agent_files or template_files_ or relist):
                return ReloadReport(knowledge_paths=tuple(knowledge))
            for folder, path in agent_files:
                self._read_agent(folder, path)
            agents = self._build_agents()
            names = agents.names()
            if set(names) != set(old.agents.agents):  # template validity depends on the names
                for key, slot in self._templates.items():
                    self._templates[key] = _validate(self._file(key), slot, names)
            for folder, path in template_files_:
                self._read_template(folder, path, names)
            catalog = self._build_catalog()
            report = _diff(old, agents, catalog, tuple(knowledge))
            if agents != old.agents or catalog != old.catalog:
                self._snap = LiveSnapshot(agents, catalog, old.version + 1)  # the one swap
            return report

    def _classify(self, path: Path) -> tuple[_PathKind, list[tuple[_Folder, Path]]]:
        real = path.parent.resolve() / path.name
        folders = [f for f in self._folders if f.real == real or f.real.is_relative_to(real)]
        if folders:
            return "folder", [(f, f.path) for f in folders]
        homes = [f for f in self._folders if f.real == real.parent]
        if not homes:
            return "knowledge", []
        if homes[0].kind == "agents":
            if path.suffix != ".md" or path.name.startswith("."):
                return "ignored", []
            return "agents", [(f, f.path / path.name) for f in homes]
        if path.suffix.lower() not in TEMPLATE_SUFFIXES:
            return "ignored", []
        return "templates", [(f, f.path / path.name) for f in homes]

    # -- agents ------------------------------------------------------------------------------

    def _read_agent(self, folder: _Folder, path: Path) -> None:
        key = (folder.index, path.name)
        previous = self._agents.get(key)
        if not path.is_file():
            self._agents.pop(key, None)
            return
        try:
            agent = parse_agent_file(path, layer=folder.layer)
        except SpecErrors as exc:
            problems = tuple(exc.problems)
        except SpecError as exc:
            problems = (exc.problem,)
        except Exception as exc:  # a bug in parsing one file must not stop the server
            problems = (unexpected_problem(path, exc),)
        else:
            self._agents[key] = _AgentSlot(agent, ())
            return
        self._agents[key] = _AgentSlot(previous.good if previous else None, problems)

    def _build_agents(self) -> AgentRegistry:
        agents: dict[str, AgentDefinition] = {}
        errors: list[Problem] = []
        overridden: dict[str, tuple[str, ...]] = {}
        for folder in self._of("agents"):
            if (problem := self._list_problems.get(("agents", folder.index))) is not None:
                errors.append(problem)
                continue
            seen: dict[str, AgentDefinition] = {}
            for key in sorted(k for k in self._agents if k[0] == folder.index):
                slot = self._agents[key]
                errors.extend(slot.problems)
                agent = slot.good
                if agent is None:
                    continue
                first = seen.get(agent.name)
                if first is not None:
                    errors.append(
                        Problem(
                            f"agent '{agent.name}' is also defined in {first.source} (same "
                            f"folder); keeping {first.source}",
                            file=str(folder.path / key[1]),
                        )
                    )
                    continue
                seen[agent.name] = agent
            for name, agent in seen.items():
                previous = agents.get(name)
                if previous is not None:
                    overridden[name] = (
                        *overridden.get(name, ()),
                        previous.source or previous.layer,
                    )
                agents[name] = agent
        return AgentRegistry(
            agents=MappingProxyType(dict(sorted(agents.items()))),
            errors=tuple(errors),
            overridden=MappingProxyType(overridden),
        )

    # -- templates ---------------------------------------------------------------------------

    def _read_template(self, folder: _Folder, path: Path, names: Collection[str]) -> None:
        key = (folder.index, path.name)
        previous = self._templates.get(key)
        if not path.is_file():
            self._templates.pop(key, None)
            return
        text: str | None = None
        problem: Problem | None = None
        try:
            text = read_template(path)  # bounded: a huge file or a FIFO is a problem, not a read
        except SpecErrors as exc:
            problem = exc.problem
        good = previous.good_text if previous else None
        self._templates[key] = _validate(path, _TemplateSlot(text, problem, good, None, ()), names)

    def _build_catalog(self) -> TemplateCatalog:
        entries: dict[str, TemplateEntry] = {}
        errors: list[Problem] = []
        for folder in self._of("templates"):
            if (problem := self._list_problems.get(("templates", folder.index))) is not None:
                errors.append(problem)
                continue
            claimed: dict[str, Path] = {}
            for key in sorted(k for k in self._templates if k[0] == folder.index):
                slot, path = self._templates[key], folder.path / key[1]
                errors.extend(slot.problems)
                spec = slot.spec
                if spec is None:
                    lower = entries.get(path.stem)
                    if lower is None or lower.spec is None:
                        entries[path.stem] = TemplateEntry(
                            path.stem, None, path, folder.layer, slot.problems
                        )
                    continue
                if spec.name in claimed:
                    errors.append(
                        Problem(
                            f"template '{spec.name}' is also defined in {claimed[spec.name]} "
                            f"(same folder); keeping {claimed[spec.name]}",
                            str(path),
                        )
                    )
                    continue
                claimed[spec.name] = path
                entries[spec.name] = TemplateEntry(spec.name, spec, path, folder.layer)
        return TemplateCatalog(MappingProxyType(entries), tuple(errors))

    # -- folders -----------------------------------------------------------------------------

    def _relist_all(self) -> AgentRegistry:
        for folder in self._of("agents"):
            for path in self._relist(folder):
                self._read_agent(folder, path)
        agents = self._build_agents()
        names = agents.names()
        for folder in self._of("templates"):
            for path in self._relist(folder):
                self._read_template(folder, path, names)
        return agents

    def _relist(self, folder: _Folder) -> list[Path]:
        """The folder's files now plus the ones we knew (so vanished ones get dropped)."""
        slots: Mapping[_Key, object] = self._agents if folder.kind == "agents" else self._templates
        known = {folder.path / name for (i, name) in slots if i == folder.index}
        self._list_problems.pop((folder.kind, folder.index), None)
        try:
            found = (
                _agent_files(folder.path)
                if folder.kind == "agents"
                else template_files(folder.path)
            )
        except OSError as exc:
            noun = "folder" if folder.kind == "agents" else "directory"
            self._list_problems[(folder.kind, folder.index)] = Problem(
                f"cannot list {noun}: {exc.strerror or exc}", str(folder.path)
            )
            found = []
        return sorted(known | set(found))

    def _of(self, kind: Kind) -> list[_Folder]:
        return [f for f in self._folders if f.kind == kind]

    def _file(self, key: _Key) -> Path:
        folder = next(f for f in self._of("templates") if f.index == key[0])
        return folder.path / key[1]


def _agent_files(folder: Path) -> list[Path]:
    """As ``registry.load_agents`` lists a folder: ``*.md`` files, dot-files excluded."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.md") if p.is_file() and not p.name.startswith("."))


def _validate(path: Path, slot: _TemplateSlot, names: Collection[str]) -> _TemplateSlot:
    """Load the slot's text against ``names``; when it fails, fall back to the last good text
    (validated against ``names`` too, so a template whose agent went away is broken)."""
    fmt: Literal["yaml", "toml"] = "toml" if path.suffix.lower() == ".toml" else "yaml"
    problems: tuple[Problem, ...] = (slot.read_problem,) if slot.read_problem else ()
    if slot.text is not None:
        try:
            spec = load_template_text(slot.text, source=str(path), fmt=fmt, agent_names=names)
        except SpecErrors as exc:
            problems = tuple(exc.problems)
        except Exception as exc:  # a bug in loading one file must not stop the server
            problems = (unexpected_problem(path, exc),)
        else:
            return _TemplateSlot(slot.text, None, slot.text, spec, ())
    fallback: WorkflowSpec | None = None
    if slot.good_text is not None and slot.good_text != slot.text:
        try:
            fallback = load_template_text(
                slot.good_text, source=str(path), fmt=fmt, agent_names=names
            )
        except Exception:  # SpecErrors, or a bug: either way there is no fallback
            fallback = None
    return _TemplateSlot(slot.text, slot.read_problem, slot.good_text, fallback, problems)


def _diff(
    old: LiveSnapshot,
    agents: AgentRegistry,
    catalog: TemplateCatalog,
    knowledge: tuple[Path, ...],
) -> ReloadReport:
    before = set(old.agents.errors) | set(old.catalog.errors)
    return ReloadReport(
        agents_changed=tuple(n for n, a in agents.agents.items() if old.agents.agents.get(n) != a),
        agents_removed=tuple(sorted(set(old.agents.agents) - set(agents.agents))),
        templates_changed=tuple(
            sorted(n for n, e in catalog.entries.items() if old.catalog.entries.get(n) != e)
        ),
        templates_removed=tuple(sorted(set(old.catalog.entries) - set(catalog.entries))),
        errors=tuple(p for p in (*agents.errors, *catalog.errors) if p not in before),
        knowledge_paths=knowledge,
    )
