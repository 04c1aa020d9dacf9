"""Warnings for stage ``model`` names that are neither an alias nor a model id we know.

Routing passes an unknown name to the provider as written, so ``model: gpt-4`` fails only when
the stage runs, and a model missing from the price table cannot be priced. That is worth a
warning at validation time, but not an error: a new model id works before the price table
knows it. The known names come from the layer that owns them (``models.routing`` for aliases,
``models.pricing`` for ids); this layer sits below it and only receives them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from stageflow.errors import Problem
from stageflow.workflows.locations import LineMap, dotted, suggest
from stageflow.workflows.refs import TemplateRefs

# routing's own words: "not chosen here", "the config default" and "let the learning profiles
# choose" (``model: auto``), valid at every level
ROUTING_WORDS = ("inherit", "default", "auto")


@dataclass(frozen=True)
class KnownModels:
    """The names a stage's ``model`` may give.

    ``aliases`` resolve through the alias table (case-insensitive); ``ids`` are the model ids
    with a price; ``accepts`` may accept more ids (a dated snapshot of a known id). ``as_of``
    dates the tables in messages.
    """

    aliases: Collection[str]
    ids: Collection[str]
    as_of: str = ""
    accepts: Callable[[str], bool] | None = None

    def knows(self, name: str) -> bool:
        """Whether ``name`` is an alias, a routing word or a known model id."""
        bare = name.strip()
        low = bare.lower()
        if not low or low in ROUTING_WORDS or low in {a.lower() for a in self.aliases}:
            return True
        return bare in self.ids or (self.accepts is not None and self.accepts(bare))

    def warning(self, name: str) -> str:
        """The warning for an unknown ``name``, naming the known aliases and ids."""
        aliases = ", ".join(sorted(self.aliases)) or "none"
        ids = ", ".join(sorted(self.ids)) or "none"
        dated = f" (as of {self.as_of})" if self.as_of else ""
        hint = suggest(name, [*self.aliases, *self.ids])
        return (
            f"unknown model '{name}'{hint}: not an alias ({aliases}) or a model id with a known "
            f"price{dated} ({ids}); it goes to the provider as written, and stageflow cannot "
            "price its requests"
        )


def model_warnings(
    refs: TemplateRefs, models: KnownModels, lines: LineMap | None = None
) -> list[Problem]:
    """A warning per stage whose ``model`` is not known to ``models``, in stage order."""
    out: list[Problem] = []
    for i, stage in enumerate(refs.stages):
        if stage.model is None or models.knows(stage.model):
            continue
        path = ("stages", i, "model")
        line = lines.line(path) if lines is not None else None
        out.append(
            Problem(
                models.warning(stage.model),
                file=refs.source,
                line=line if line is not None else stage.line,
                stage=stage.id,
                path=dotted(path),
            )
        )
    return out
