"""The layered template catalog: built-in < user < project, later layers win by template name.

``load_catalog`` is pure (no caching, no watching): it reads ``*.yaml``, ``*.yml`` and
``*.toml`` directly inside each layer's directory and returns every template together with
the files that failed. A broken file never hides the others, and a broken override keeps the
lower layer's template of the same name available.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from stageflow.errors import NotFound, Problem, SpecErrors
from stageflow.workflows.bounds import unexpected_problem
from stageflow.workflows.loader import load_template_file
from stageflow.workflows.spec import WorkflowSpec

TEMPLATE_SUFFIXES = (".yaml", ".yml", ".toml")


@dataclass(frozen=True)
class TemplateEntry:
    """One template as the catalog sees it.

    ``spec`` is ``None`` when the file failed to load and no lower layer had a template of that
    name (the entry is then keyed by the file's stem and ``problems`` says why).
    """

    name: str
    spec: WorkflowSpec | None
    source: Path
    layer: str
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class TemplateCatalog:
    """Templates by name plus the problems of every file that failed to load."""

    entries: Mapping[str, TemplateEntry] = field(default_factory=dict)
    errors: tuple[Problem, ...] = ()

    def get(self, name: str) -> WorkflowSpec:
        """The template ``name``; ``NotFound`` if unknown, ``SpecErrors`` if it is broken."""
        entry = self.entries.get(name)
        if entry is None:
            raise NotFound("template", name, known=self.names())
        if entry.spec is None:
            raise SpecErrors(entry.problems or (Problem("template failed to load"),))
        return entry.spec

    def names(self) -> list[str]:
        """Every template name, sorted (broken ones included, see ``TemplateEntry.spec``)."""
        return sorted(self.entries)


def template_files(directory: Path) -> list[Path]:
    """Template files directly inside ``directory``, sorted by name; ``[]`` if it is missing."""
    if not directory.is_dir():
        return []
    return sorted(
        p for p in directory.iterdir() if p.suffix.lower() in TEMPLATE_SUFFIXES and p.is_file()
    )


def load_catalog(
    layers: Sequence[tuple[str, Path]], *, agent_names: Collection[str] | None = None
) -> TemplateCatalog:
    """Load every layer in order (lowest precedence first, as ``Settings.template_dirs()``)."""
    entries: dict[str, TemplateEntry] = {}
    errors: list[Problem] = []
    for layer, directory in layers:
        try:
            files = template_files(directory)
        except OSError as exc:
            errors.append(Problem(f"cannot list directory: {exc.strerror or exc}", str(directory)))
            continue
        claimed: dict[str, Path] = {}  # template name -> file, within this layer
        for path in files:
            try:
                spec = load_template_file(path, agent_names=agent_names)
            except Exception as exc:  # SpecErrors; or a bug, which must not hide the others
                problems = (
                    exc.problems if isinstance(exc, SpecErrors) else [unexpected_problem(path, exc)]
                )
                errors.extend(problems)
                lower = entries.get(path.stem)
                if lower is None or lower.spec is None:
                    entry = TemplateEntry(path.stem, None, path, layer, tuple(problems))
                    entries[path.stem] = entry
                continue
            if spec.name in claimed:  # as for agents: the first file (by name) is kept
                errors.append(
                    Problem(
                        f"template '{spec.name}' is also defined in {claimed[spec.name]} "
                        f"(same folder); keeping {claimed[spec.name]}",
                        str(path),
                    )
                )
                continue
            claimed[spec.name] = path
            entries[spec.name] = TemplateEntry(spec.name, spec, path, layer)
    return TemplateCatalog(MappingProxyType(entries), tuple(errors))
