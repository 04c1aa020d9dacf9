"""A plugin embedder for tests, configured as ``tests.knowledge.counting_embedder:make``: a
hashed bag of words, deterministic, counting every text it embeds."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

DIM = 64
CALLS: list[str] = []  # every text embedded, in order
MODEL = {"name": "counting-v1"}


class CountingEmbedder:
    min_similarity = 0.0

    @property
    def model(self) -> str:
        return MODEL["name"]

    def embed(self, texts: Sequence[str]) -> Any:
        CALLS.extend(texts)
        out = np.zeros((len(texts), DIM), np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1.0
        return out


def make() -> CountingEmbedder:
    return CountingEmbedder()


def no_model() -> object:
    return object()


class _Bad(CountingEmbedder):
    def embed(self, texts: Sequence[str]) -> Any:
        return np.zeros((len(texts) + 1, DIM), np.float32)


def bad_shape() -> _Bad:
    return _Bad()
