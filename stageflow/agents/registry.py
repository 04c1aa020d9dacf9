"""The agent registry: every agent definition of a project, merged across layers.

Layers come lowest precedence first (``Settings.agent_dirs()``: built-in <
``~/.stageflow/agents`` < ``<project>/.claude/agents`` < ``<project>/.stageflow/agents``); a
later layer's agent replaces an earlier one with the same ``name``. ``load_agents`` is pure: it
reads the folders once and returns a snapshot, with one ``Problem`` per broken file, so a broken
file never hides the others. Hot reload re-parses changed files and swaps the snapshot
(``live.py``, ``watcher.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from stageflow.agents.definition import AgentDefinition
from stageflow.agents.parse import parse_agent_file
from stageflow.config import PACKAGE_DIR
from stageflow.errors import NotFound, Problem, SpecError, SpecErrors
from stageflow.workflows.bounds import unexpected_problem

log = logging.getLogger(__name__)

BUILTIN_AGENTS_DIR = PACKAGE_DIR / "prompts" / "agents"


def _empty() -> Mapping[str, AgentDefinition]:
    return MappingProxyType({})


def _empty_overrides() -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({})


@dataclass(frozen=True)
class AgentRegistry:
    """A snapshot of the agents: by name (later layers win), load problems, and overrides."""

    agents: Mapping[str, AgentDefinition] = field(default_factory=_empty)
    errors: tuple[Problem, ...] = ()
    overridden: Mapping[str, tuple[str, ...]] = field(default_factory=_empty_overrides)

    def get(self, name: str) -> AgentDefinition:
        """The agent called ``name``; raises ``NotFound`` listing the known names."""
        try:
            return self.agents[name]
        except KeyError:
            raise NotFound("agent", name, known=self.names()) from None

    def names(self) -> list[str]:
        """Every agent name, sorted."""
        return sorted(self.agents)


def load_agents(layers: Sequence[tuple[str, Path]]) -> AgentRegistry:
    """Load ``*.md`` directly inside each layer's folder; missing folders are fine.

    Within one layer, files are read in sorted filename order; a second file with a name already
    defined in the same layer is reported (naming both files) and ignored.
    """
    agents: dict[str, AgentDefinition] = {}
    errors: list[Problem] = []
    overridden: dict[str, tuple[str, ...]] = {}
    for layer, folder in layers:
        seen: dict[str, AgentDefinition] = {}
        try:
            files = _agent_files(folder)
        except OSError as exc:
            errors.append(Problem(f"cannot list folder: {exc.strerror or exc}", file=str(folder)))
            continue
        for path in files:
            try:
                agent = parse_agent_file(path, layer=layer)
            except SpecErrors as exc:
                errors.extend(exc.problems)
                continue
            except SpecError as exc:
                errors.append(exc.problem)
                continue
            except Exception as exc:  # a bug in parsing one file must not hide the others
                errors.append(unexpected_problem(path, exc))
                continue
            first = seen.get(agent.name)
            if first is not None:
                errors.append(
                    Problem(
                        f"agent '{agent.name}' is also defined in {first.source} (same folder); "
                        f"keeping {first.source}",
                        file=str(path),
                    )
                )
                continue
            seen[agent.name] = agent
        for name, agent in seen.items():
            previous = agents.get(name)
            if previous is not None:
                overridden[name] = (*overridden.get(name, ()), previous.source or previous.layer)
            agents[name] = agent
    if errors:
        log.debug("%d problem(s) loading agent definitions", len(errors))
    return AgentRegistry(
        agents=MappingProxyType(dict(sorted(agents.items()))),
        errors=tuple(errors),
        overridden=MappingProxyType(overridden),
    )


def _agent_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    # dot-files are editor swap/backup files (".#agent.md"), never definitions
    return sorted(
        (p for p in folder.glob("*.md") if p.is_file() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
