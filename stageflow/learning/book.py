"""The profiles in memory, as the choices and forecasts read them.

``ProfileBook`` indexes samples by agent x task type x model, by agent x task type (every model)
and by template x stage; ``add`` keeps the indexes ordered by time (an attempt recorded twice
replaces itself). ``BookCache`` holds the book of one process: it reloads it from the store when
another process wrote (``profile_state.generation`` moved; checked at most every
``CHECK_INTERVAL_S``), and takes this process's own writes in memory.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from stageflow.learning.stats import sane
from stageflow.store.profiles import ProfileStore, SampleRow

__all__ = ["CHECK_INTERVAL_S", "BookCache", "ProfileBook"]

CHECK_INTERVAL_S = 1.0

Id = tuple[str, str, int]  # run, stage, attempt


def _order(s: SampleRow) -> tuple[float, str, str, int]:
    return (s.at, s.run_id, s.stage, s.attempt)


class ProfileBook:
    """Samples, indexed three ways (see the module docstring)."""

    def __init__(self, samples: Iterable[SampleRow] = ()) -> None:
        self._by_id: dict[Id, SampleRow] = {}
        self._key: dict[tuple[str, str, str], list[SampleRow]] = {}
        self._pooled: dict[tuple[str, str], list[SampleRow]] = {}
        self._stage: dict[tuple[str, str], list[SampleRow]] = {}
        self._runs: dict[str, set[str]] = {}
        self.add(samples)

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, samples: Iterable[SampleRow]) -> None:
        """Take ``samples`` in, replacing earlier versions of the same attempts; samples whose
        figures cannot be reckoned with are left out (``stats.sane``)."""
        for s in sane(list(samples)):
            ident = (s.run_id, s.stage, s.attempt)
            old = self._by_id.get(ident)
            if old is not None:
                for index, key in self._indexes(old):
                    index[key].remove(old)
            self._by_id[ident] = s
            for index, key in self._indexes(s):
                bisect.insort(index.setdefault(key, []), s, key=_order)
            self._runs.setdefault(s.template, set()).add(s.run_id)

    def _indexes(self, s: SampleRow) -> list[tuple[dict[Any, list[SampleRow]], Any]]:
        return [
            (self._key, s.key),
            (self._pooled, (s.agent, s.task_type)),
            (self._stage, (s.template, s.stage)),
        ]

    def key(self, agent: str, task_type: str, model: str) -> Sequence[SampleRow]:
        """One agent x task type x model, oldest first."""
        return self._key.get((agent, task_type, model), [])

    def pooled(self, agent: str, task_type: str) -> Sequence[SampleRow]:
        """One agent x task type over every model, oldest first."""
        return self._pooled.get((agent, task_type), [])

    def stage(self, template: str, stage: str) -> Sequence[SampleRow]:
        """Every sample of one stage of one template, oldest first."""
        return self._stage.get((template, stage), [])

    def runs(self, template: str) -> int:
        """How many runs of ``template`` left samples."""
        return len(self._runs.get(template, ()))

    def stage_runs(self, template: str, stage: str) -> int:
        """How many runs of ``template`` have samples of ``stage``."""
        return len({s.run_id for s in self.stage(template, stage)})

    def samples(self) -> list[SampleRow]:
        """Every sample, oldest first."""
        return sorted(self._by_id.values(), key=_order)


class BookCache:
    """The book of one process, kept current (see the module docstring)."""

    def __init__(
        self,
        store: ProfileStore,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = CHECK_INTERVAL_S,
    ) -> None:
        self.store = store
        self.clock = clock
        self.interval = interval
        self.book = ProfileBook()
        self._generation: int | None = None  # of the book held; None: never loaded
        self._checked = float("-inf")

    async def refresh(self, *, force: bool = False) -> ProfileBook:
        """The current book: reloaded when another process wrote since it was loaded."""
        now = self.clock()
        if not force and self._generation is not None and now - self._checked < self.interval:
            return self.book
        self._checked = now
        generation = await self.store.generation()
        if generation != self._generation:
            self.book = ProfileBook(await self.store.samples())
            self._generation = generation
        return self.book

    def invalidate(self) -> None:
        """Reload at the next ``refresh`` (after a rebuild)."""
        self._generation = -1
        self._checked = float("-inf")

    def wrote(self, samples: Sequence[SampleRow], generation: int) -> None:
        """This process recorded ``samples``, which took the tables to ``generation``: when
        nothing else was written in between, the book takes them as they are; else the next
        ``refresh`` reloads it."""
        if self._generation is not None and generation == self._generation + 1:
            self.book.add(samples)
            self._generation = generation
        elif self._generation != generation:
            self.invalidate()  # someone else wrote in between: reload at the next refresh
