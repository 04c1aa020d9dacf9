"""Embedders: the seam between dense knowledge search and the model that turns text into vectors.

``[knowledge] embeddings`` in ``.stageflow/config.toml`` chooses one:

- ``"wordllama"`` (the default): WordLlama's ``l2_supercat`` 256-dimension token embeddings,
  which the ``wordllama`` wheel ships with their tokenizer (the ``embeddings`` extra).
  The wheel's own loader looks for the tokenizer in ``wordllama/tokenizer/`` while the wheel
  puts it in ``wordllama/tokenizers/``, and then downloads it; we open both files from the
  installed package directory ourselves, so nothing is ever downloaded. Token vectors are
  weighted by a Zipf prior on the token's rank (SIF, ``a / (a + p)``, as model2vec does), which
  keeps common tokens from drowning a text's subject, then mean-pooled by WordLlama.
- ``"none"``: no dense search; knowledge search is BM25 only.
- ``"<module>:<factory>"``: a plugin. ``factory()`` returns an object with a ``model`` string
  (stored with every vector; a new value re-embeds everything) and ``embed(texts)`` returning a
  2-D float array, one row per text (fastembed or an API embedder, for users with a network);
  an optional ``min_similarity`` is the score under which its ranking names no document.

Nothing here is imported on the server's start-up path: ``embedder_spec`` only reads the config
and asks ``importlib`` whether packages exist; ``load_embedder`` does the imports, in a worker
thread, on the first query that needs vectors.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from stageflow.config import Settings
from stageflow.errors import InvalidArgument, Problem

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "INSTALL_HINT",
    "Embedder",
    "EmbedderSpec",
    "EmbedderUnavailable",
    "WordLlamaEmbedder",
    "embedder_spec",
    "load_embedder",
]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'stageflow[embeddings]'"
WORDLLAMA_CONFIG = "l2_supercat"
WORDLLAMA_DIM = 256
#: SIF's smoothing constant: a token of probability p weighs a / (a + p).
SIF_A = 1e-3
#: The document score under which WordLlama's ranking names no document. On the retrieval sets
#: (tests/knowledge) 95% of the expected documents score above it, and the best match of most
#: off-topic questions ("banana bread recipe") below it.
WORDLLAMA_MIN_SIMILARITY = 0.15
_WORDLLAMA_NEEDS = ("wordllama", "numpy", "tokenizers", "safetensors")
_BATCH = 64  # texts per WordLlama batch (padded to the longest one)


class EmbedderUnavailable(InvalidArgument):
    """Dense search was asked for but no embedder can be had; the message says why and what
    to do (install the extra, fix the config, or search with ``mode="bm25"``)."""


class Embedder(Protocol):
    """Turns texts into vectors (any scale: they are normalised by the caller)."""

    @property
    def model(self) -> str:
        """Names the model and its settings; stored with every vector it makes."""
        ...

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.floating[Any]]:
        """One row per text."""
        ...


@dataclass(frozen=True)
class EmbedderSpec:
    """What the config asks for, read without importing anything. ``problem`` says why it
    cannot be had (a config mistake, a missing package); ``explicit`` is False when the config
    does not name one (the default, WordLlama, then falls back to BM25 quietly)."""

    kind: Literal["none", "wordllama", "plugin"]
    target: str | None = None  # "<module>:<factory>" for a plugin
    problem: str | None = None
    explicit: bool = True

    @property
    def available(self) -> bool:
        """Whether an embedder is configured and its packages are installed."""
        return self.kind != "none" and self.problem is None


def _missing(modules: Sequence[str]) -> list[str]:
    out: list[str] = []
    for name in modules:
        if name in sys.modules:
            if sys.modules[name] is None:  # an import made to fail (tests, or site policy)
                out.append(name)
            continue
        try:
            if importlib.util.find_spec(name) is None:
                out.append(name)
        except (ImportError, ValueError):
            out.append(name)
    return out


def embedder_spec(settings: Settings) -> EmbedderSpec:
    """Read ``[knowledge] embeddings`` (see the module docstring); never raises."""
    section = settings.extra.get("knowledge")
    raw: object = "wordllama"
    explicit = False
    if isinstance(section, Mapping) and "embeddings" in section:
        raw, explicit = section["embeddings"], True
    where = str(settings.config_file)
    if not isinstance(raw, str) or not raw.strip():
        bad = Problem(
            f"must be 'wordllama', 'none' or '<module>:<factory>', got {raw!r}",
            file=where,
            path="knowledge.embeddings",
        )
        return EmbedderSpec("none", problem=str(bad))
    value = raw.strip()
    if value == "none":
        return EmbedderSpec("none", explicit=explicit)
    if value == "wordllama":
        missing = _missing(_WORDLLAMA_NEEDS)
        problem = f"{', '.join(missing)} not installed: {INSTALL_HINT}" if missing else None
        return EmbedderSpec("wordllama", problem=problem, explicit=explicit)
    module, sep, factory = value.partition(":")
    if not sep or not module.strip() or not factory.strip() or ":" in factory:
        bad = Problem(
            f"{value!r} is neither 'wordllama' nor 'none' nor '<module>:<factory>'",
            file=where,
            path="knowledge.embeddings",
        )
        return EmbedderSpec("none", problem=str(bad))
    missing = _missing([module.strip().split(".")[0]])
    problem = f"embedder module {module.strip()!r} is not installed" if missing else None
    return EmbedderSpec("plugin", target=f"{module.strip()}:{factory.strip()}", problem=problem)


def load_embedder(spec: EmbedderSpec) -> Embedder:
    """Import and build the embedder ``spec`` names (blocking: call it in a worker thread).
    Raises ``EmbedderUnavailable`` saying why, whatever went wrong."""
    if spec.kind == "none":
        why = spec.problem or "[knowledge] embeddings is 'none'"
        raise EmbedderUnavailable(f"dense search is off: {why}")
    if spec.problem is not None:
        raise EmbedderUnavailable(f"dense search is unavailable: {spec.problem}")
    try:
        if spec.kind == "wordllama":
            return WordLlamaEmbedder.from_package()
        return _load_plugin(spec.target or "")
    except EmbedderUnavailable:
        raise
    except ImportError as exc:
        hint = INSTALL_HINT if spec.kind == "wordllama" else f"install {exc.name or 'it'}"
        raise EmbedderUnavailable(f"cannot import the embedder ({exc}): {hint}") from exc
    except Exception as exc:
        raise EmbedderUnavailable(f"the embedder failed to load: {exc}") from exc


def _load_plugin(target: str) -> Embedder:
    module_name, _, factory_name = target.partition(":")
    module = importlib.import_module(module_name)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise EmbedderUnavailable(f"{target}: {module_name} has no callable {factory_name!r}")
    embedder = factory()
    model = getattr(embedder, "model", None)
    if not isinstance(model, str) or not model.strip():
        raise EmbedderUnavailable(f"{target}() must return an object with a non-empty `model`")
    if not callable(getattr(embedder, "embed", None)):
        raise EmbedderUnavailable(f"{target}() must return an object with `embed(texts)`")
    return embedder  # type: ignore[no-any-return]


def _quiet_import(load: Callable[[], Any]) -> Any:
    """Run ``load`` (imports) and undo what it did to the root logger: ``wordllama`` calls
    ``logging.basicConfig(level=INFO)`` on import, which would add a handler and change the
    level of every logger of the host process."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return load()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


class WordLlamaEmbedder:
    """WordLlama's shipped weights, SIF-weighted, mean-pooled (see the module docstring)."""

    min_similarity = WORDLLAMA_MIN_SIMILARITY

    def __init__(self, inference: Any, model: str) -> None:
        self._inference = inference
        self._model = model

    @property
    def model(self) -> str:
        """``wordllama/<config>_<dim>/sif<a>/<weights digest>``."""
        return self._model

    @staticmethod
    def package_files() -> tuple[Path, Path]:
        """(weights, tokenizer) inside the installed ``wordllama`` package."""
        spec = importlib.util.find_spec("wordllama")
        if spec is None or spec.origin is None:
            raise EmbedderUnavailable(f"wordllama is not installed: {INSTALL_HINT}")
        root = Path(spec.origin).parent
        weights = root / "weights" / f"{WORDLLAMA_CONFIG}_{WORDLLAMA_DIM}.safetensors"
        tokenizer = root / "tokenizers" / f"{WORDLLAMA_CONFIG}_tokenizer_config.json"
        for path in (weights, tokenizer):
            if not path.is_file():
                raise EmbedderUnavailable(
                    f"the wordllama package at {root} lacks {path.relative_to(root)}; "
                    f"reinstall it: {INSTALL_HINT}"
                )
        return weights, tokenizer

    @classmethod
    def from_package(cls) -> WordLlamaEmbedder:
        """Load the weights and tokenizer from the installed wheel; never downloads."""
        weights, tokenizer_file = cls.package_files()

        def imports() -> tuple[Any, Any, Any, Any]:
            import numpy
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
            from wordllama.inference import WordLlamaInference

            return numpy, load_file, Tokenizer, WordLlamaInference

        np_, load_file, tokenizer_cls, inference_cls = _quiet_import(imports)
        table = load_file(str(weights))["embedding.weight"].astype(np_.float32)
        rank = np_.arange(1, table.shape[0] + 1, dtype=np_.float64)
        zipf = (1.0 / rank) / (1.0 / rank).sum()  # token ids follow the tokenizer's merge order
        table *= (SIF_A / (SIF_A + zipf)).astype(np_.float32)[:, None]
        inference = inference_cls(table, tokenizer_cls.from_file(str(tokenizer_file)))
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
        model = f"wordllama/{WORDLLAMA_CONFIG}_{WORDLLAMA_DIM}/sif{SIF_A:g}/{digest}"
        return cls(inference, model)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.floating[Any]]:
        """Mean-pooled vectors, one row per text."""
        out: npt.NDArray[np.floating[Any]] = self._inference.embed(
            list(texts), norm=False, batch_size=_BATCH
        )
        return out
