"""``[learning]`` of ``.stageflow/config.toml``: what ``model: auto`` chooses from, and how.

::

    [learning]
    models = ["haiku", "sonnet", "opus"]   # the models auto may choose (aliases or ids)
    success_threshold = 0.8                # expected success a model must clear
    explore_share = 0.1                    # at most this share of attempts explore (0..0.5)

Mistakes raise ``SpecError`` naming the file and the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stageflow.config import Settings
from stageflow.errors import Problem, SpecError, SpecErrors

__all__ = ["DEFAULT_MODELS", "LearningConfig", "load_learning_config"]

DEFAULT_MODELS = ("haiku", "sonnet", "opus")
MAX_MODELS = 8
MAX_EXPLORE_SHARE = 0.5
_KEYS = ("models", "success_threshold", "explore_share")


@dataclass(frozen=True)
class LearningConfig:
    """The learning settings (defaults when ``[learning]`` is absent)."""

    models: tuple[str, ...] = DEFAULT_MODELS
    success_threshold: float = 0.8
    explore_share: float = 0.1


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def load_learning_config(settings: Settings) -> LearningConfig:
    """``LearningConfig`` from ``[learning]`` (see the module docstring)."""
    section = settings.extra.get("learning")
    if section is None:
        return LearningConfig()
    file = str(settings.config_file)
    if not isinstance(section, dict):
        raise SpecError(Problem("must be a table", file=file, path="learning"))
    problems: list[Problem] = []
    for key in section:
        if key not in _KEYS:
            problems.append(
                Problem(
                    f"unknown key; expected one of {', '.join(_KEYS)}",
                    file=file,
                    path=f"learning.{key}",
                )
            )
    models = DEFAULT_MODELS
    raw = section.get("models")
    if raw is not None:
        names = raw if isinstance(raw, list) else None
        if (
            names is None
            or not 1 <= len(names) <= MAX_MODELS
            or not all(isinstance(n, str) and n.strip() for n in names)
            or any(n.strip().lower() in ("auto", "inherit", "default") for n in names)
        ):
            problems.append(
                Problem(
                    f"must list 1 to {MAX_MODELS} model names or aliases (not auto, inherit or "
                    f"default), got {raw!r}",
                    file=file,
                    path="learning.models",
                )
            )
        else:
            models = tuple(dict.fromkeys(n.strip() for n in names))
    threshold = _number(section.get("success_threshold", 0.8))
    if threshold is None or not 0 < threshold <= 1:
        problems.append(
            Problem(
                f"must be a number above 0 and at most 1, got {section.get('success_threshold')!r}",
                file=file,
                path="learning.success_threshold",
            )
        )
    share = _number(section.get("explore_share", 0.1))
    if share is None or not 0 <= share <= MAX_EXPLORE_SHARE:
        problems.append(
            Problem(
                f"must be a number from 0 to {MAX_EXPLORE_SHARE}, got "
                f"{section.get('explore_share')!r}",
                file=file,
                path="learning.explore_share",
            )
        )
    if len(problems) == 1:
        raise SpecError(problems[0])
    if problems:
        raise SpecErrors(problems)
    assert threshold is not None and share is not None
    return LearningConfig(models=models, success_threshold=threshold, explore_share=share)
