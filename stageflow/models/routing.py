"""Model routing: which model id a stage attempt asks for, and which one it falls back to.

Names come from three levels, first match wins: the stage's ``model``, the agent's ``model``,
the config default (``[models] default``, ``sonnet`` unless set). At the stage and agent level,
``inherit`` (Claude Code's word) or no value means "not chosen here, ask the next level";
``default`` means the config default at once. ``auto`` asks the learning profiles to choose
(``stageflow.learning``): the attempt's request then carries the chosen name, and an ``auto``
that reaches routing (no learner in the process) is "not chosen here" too. Aliases (``opus``,
``sonnet``, ``haiku``, and any added in config) resolve to model ids through a dated table that
``[models.aliases]`` overrides; any other name passes through unchanged as a model id::

    [models]
    default = "sonnet"
    fallback = "haiku"            # used when the primary answers overloaded after retries
    [models.aliases]
    opus = "claude-opus-4-8"

The fallback is the agent's ``fallback_model`` when it has one, else ``[models] fallback``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from stageflow.config import Settings
from stageflow.errors import Problem, SpecError, SpecErrors

__all__ = [
    "ALIASES_AS_OF",
    "DEFAULT_ALIASES",
    "ModelChoice",
    "ModelRoutes",
    "load_routes",
]

ALIASES_AS_OF = "2026-11-21"
DEFAULT_ALIASES: dict[str, str] = {
    "opus": "claude-opus-4-7",
    "sonnet": "claude-sonnet-4-6",
    "haiku": "claude-haiku-4-5",
}

_NOT_CHOSEN = frozenset({"", "inherit", "auto"})  # defer to the next level
_DEFAULT = "default"  # the config default, skipping lower levels
_MODELS_KEYS = ("default", "fallback", "aliases", "as_of")


def _given(name: str | None) -> bool:
    return name is not None and name.strip().lower() not in _NOT_CHOSEN


@dataclass(frozen=True)
class ModelChoice:
    """The model name asked for (as written), the model id it resolved to, and the fallback id."""

    asked: str
    model: str
    fallback: str | None


@dataclass(frozen=True)
class ModelRoutes:
    """The alias table, the default model and the default fallback."""

    aliases: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIASES))
    default: str = "sonnet"
    fallback: str | None = None
    as_of: str = ALIASES_AS_OF

    def __post_init__(self) -> None:
        if not _given(self.default) or self.default.strip().lower() == _DEFAULT:
            raise ValueError(f"the default model must name a model, got {self.default!r}")

    def resolve(self, name: str | None) -> str:
        """The model id for ``name``: None, "", ``inherit`` and ``default`` mean the default;
        an alias (case-insensitive) maps through the table; anything else is a model id."""
        current = (name or "").strip()
        if current.lower() in _NOT_CHOSEN or current.lower() == _DEFAULT:
            current = self.default.strip()
        seen: set[str] = set()
        # aliases may point at other aliases ("big" -> "opus"); a cycle stops at the repeat
        while (key := current.lower()) in self.aliases and key not in seen:
            seen.add(key)
            current = self.aliases[key].strip()
        return current

    def choose(
        self,
        *,
        stage_model: str | None,
        agent_model: str | None,
        agent_fallback: str | None = None,
    ) -> ModelChoice:
        """Pick the model for an attempt: stage > agent > config default, plus its fallback.

        The fallback is dropped when it resolves to the chosen model itself.
        """
        asked = self.default
        for candidate in (stage_model, agent_model):
            if candidate is not None and _given(candidate):
                name = candidate.strip()
                asked = self.default if name.lower() == _DEFAULT else name
                break
        model = self.resolve(asked)
        fallback_name = agent_fallback if _given(agent_fallback) else self.fallback
        fallback = self.resolve(fallback_name) if _given(fallback_name) else None
        if fallback == model:
            fallback = None
        return ModelChoice(asked=asked, model=model, fallback=fallback)


def load_routes(settings: Settings) -> ModelRoutes:
    """``DEFAULT_ALIASES`` and the defaults overlaid by ``[models]`` of ``.stageflow/config.toml``.

    Keys: ``default`` and ``fallback`` (model names or aliases), ``aliases`` (a table of
    name -> model id or alias), ``as_of`` (the date of the alias table). Mistakes raise
    ``SpecError`` naming the file and the key.
    """
    section = settings.extra.get("models")
    if section is None:
        return ModelRoutes()
    file = str(settings.config_file)
    if not isinstance(section, dict):
        raise SpecError(Problem("must be a table", file=file, path="models"))
    problems: list[Problem] = []

    def text(key: str, *, may_defer: bool = True) -> str | None:
        value = section.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            problems.append(
                Problem(f"must be a model name, got {value!r}", file=file, path=f"models.{key}")
            )
            return None
        if not may_defer and value.strip().lower() in {"inherit", "auto", _DEFAULT}:
            problems.append(
                Problem(
                    f"'{value}' cannot be the default; name a model or an alias such as 'sonnet'",
                    file=file,
                    path=f"models.{key}",
                )
            )
            return None
        return value.strip()

    for key in section:
        if key not in _MODELS_KEYS:
            problems.append(
                Problem(
                    f"unknown key; expected one of {', '.join(_MODELS_KEYS)}",
                    file=file,
                    path=f"models.{key}",
                )
            )
    default = text("default", may_defer=False)
    fallback = text("fallback")
    as_of = text("as_of")
    aliases = dict(DEFAULT_ALIASES)
    table = section.get("aliases", {})
    if not isinstance(table, dict):
        problems.append(
            Problem("must be a table of alias = model id", file=file, path="models.aliases")
        )
        table = {}
    for alias, target in table.items():
        if not isinstance(target, str) or not target.strip() or not alias.strip():
            problems.append(
                Problem(
                    f"must map a name to a model id, got {target!r}",
                    file=file,
                    path=f'models.aliases."{alias}"',
                )
            )
            continue
        aliases[alias.strip().lower()] = target.strip()
    if len(problems) == 1:
        raise SpecError(problems[0])
    if problems:
        raise SpecErrors(problems)
    return ModelRoutes(
        aliases=aliases,
        default=default or "sonnet",
        fallback=fallback if _given(fallback) else None,
        as_of=as_of or ALIASES_AS_OF,
    )
