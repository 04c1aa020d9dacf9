"""``Learning``: the profiles' parts for one process, as the front ends wire them in.

The updater goes into the scheduler's event sink (and runs in the background, or is drained by
the CLI), the chooser into the scheduler, the estimator into the service; all three share one
``BookCache``, so this process's own new samples are seen by its next choice at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from stageflow.config import Settings
from stageflow.learning.book import BookCache
from stageflow.learning.chooser import LearnedChooser
from stageflow.learning.config import LearningConfig, load_learning_config
from stageflow.learning.forecast import LearnedEstimator
from stageflow.learning.updater import ProfileUpdater
from stageflow.learning.views import ProfilesResult, profiles_result
from stageflow.models.pricing import load_price_table
from stageflow.models.routing import load_routes
from stageflow.store.store import Store

__all__ = ["Learning", "build_learning"]


@dataclass(frozen=True)
class Learning:
    store: Store
    config: LearningConfig
    cache: BookCache
    updater: ProfileUpdater
    chooser: LearnedChooser
    estimator: LearnedEstimator

    async def profiles(
        self, *, agent: str | None = None, task_type: str | None = None
    ) -> ProfilesResult:
        """The profiles as ``stageflow profiles`` shows them (read fresh from the store)."""
        book = await self.cache.refresh(force=True)
        rows = await self.store.profiles.profiles()
        return profiles_result(rows, book, self.config, agent=agent, task_type=task_type)


def build_learning(settings: Settings, store: Store) -> Learning:
    """The learning parts for ``settings``; ``SpecError`` when ``[learning]``, ``[models]`` or
    ``[prices]`` of the config file is wrong."""
    config = load_learning_config(settings)
    routes, prices = load_routes(settings), load_price_table(settings)
    cache = BookCache(store.profiles)
    return Learning(
        store=store,
        config=config,
        cache=cache,
        updater=ProfileUpdater(store, routes, cache),
        chooser=LearnedChooser(cache, config, routes, prices),
        estimator=LearnedEstimator(cache, config, routes, prices),
    )
