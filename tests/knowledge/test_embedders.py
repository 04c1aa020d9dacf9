"""The embedder seam: the config's choice, WordLlama loaded from the installed wheel with no
network, plugins, and the BM25 path without any embedder (``none``, or the package missing)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stageflow.config import load_settings
from stageflow.knowledge.embedders import (
    INSTALL_HINT,
    EmbedderUnavailable,
    embedder_spec,
    load_embedder,
)
from stageflow.knowledge.index import KnowledgeIndex
from stageflow.store import Store
from tests.knowledge.conftest import WriteFile, config

pytestmark = pytest.mark.anyio

GUIDE = """\
---
title: Audit retention
---
# Audit retention

Audit rows are purged after 30 days by the nightly job.
"""


def test_the_default_is_wordllama_and_installed_here(project: Path) -> None:
    spec = embedder_spec(load_settings(project))
    assert (spec.kind, spec.explicit, spec.available) == ("wordllama", False, True)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("42", "got 42"),
        ('""', "got ''"),
        ('"wordllama2"', "neither 'wordllama' nor 'none'"),
        ('"a:b:c"', "neither"),
        ('":make"', "neither"),
    ],
)
def test_a_bad_embeddings_value_names_the_file_and_key(project: Path, value: str, why: str) -> None:
    config(project, f"[knowledge]\nembeddings = {value}\n")
    spec = embedder_spec(load_settings(project))
    assert not spec.available
    assert spec.problem is not None and why in spec.problem
    assert "config.toml" in spec.problem and "knowledge.embeddings" in spec.problem


async def test_none_searches_with_bm25_and_refuses_vector_modes(
    project: Path, write: WriteFile
) -> None:
    config(project, '[knowledge]\nembeddings = "none"\n')
    write(".stageflow/knowledge/audit.md", GUIDE)
    settings = load_settings(project)
    async with await Store.open(settings.db_path) as store:
        index = KnowledgeIndex(store, settings)
        await index.reindex()
        assert index.default_mode == "bm25"
        found = await index.find("audit rows purged")
        assert (found.mode, [h.doc_id for h in found.hits]) == ("bm25", ["audit"])
        assert found.hits[0].found_by == ("bm25",)
        for mode in ("vector", "hybrid"):
            with pytest.raises(EmbedderUnavailable, match=r"embeddings is 'none'.*mode 'bm25'"):
                await index.find("audit", mode=mode)  # type: ignore[arg-type]
        assert await index.refresh_vectors() is None
        assert await store.knowledge.vectors.count("anything") == 0


async def test_without_the_package_search_falls_back_to_bm25_and_says_how_to_install(
    project: Path, write: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "wordllama", None)  # the import is made to fail
    write(".stageflow/knowledge/audit.md", GUIDE)
    settings = load_settings(project)
    async with await Store.open(settings.db_path) as store:
        index = KnowledgeIndex(store, settings)
        await index.reindex()
        assert index.default_mode == "bm25"
        assert [h.doc_id for h in await index.search("audit")] == ["audit"]
        with pytest.raises(EmbedderUnavailable) as info:
            await index.find("audit", mode="hybrid")
        assert INSTALL_HINT in str(info.value)


def test_loading_fails_clearly_when_the_import_fails_after_the_check(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = embedder_spec(load_settings(project))
    monkeypatch.setitem(sys.modules, "wordllama.inference", None)
    with pytest.raises(EmbedderUnavailable, match="cannot import the embedder"):
        load_embedder(spec)


async def test_an_explicit_but_failing_embedder_falls_back_by_default_with_a_note(
    project: Path, write: WriteFile
) -> None:
    config(project, '[knowledge]\nembeddings = "tests.knowledge.counting_embedder:bad_shape"\n')
    write(".stageflow/knowledge/audit.md", GUIDE)
    settings = load_settings(project)
    async with await Store.open(settings.db_path) as store:
        index = KnowledgeIndex(store, settings)
        await index.reindex()
        found = await index.find("audit rows")
        assert found.mode == "bm25" and [h.doc_id for h in found.hits] == ["audit"]
        assert found.note is not None and "returned shape (2, 64) for 1 texts" in found.note
        with pytest.raises(EmbedderUnavailable, match="shape"):
            await index.find("audit rows", mode="vector")


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("tests.knowledge.counting_embedder:no_model", "non-empty `model`"),
        ("tests.knowledge.counting_embedder:nothing", "no callable 'nothing'"),
        ("no_such_module_here:make", "is not installed"),
    ],
)
def test_a_broken_plugin_is_refused_with_a_reason(project: Path, target: str, why: str) -> None:
    config(project, f'[knowledge]\nembeddings = "{target}"\n')
    with pytest.raises(EmbedderUnavailable, match=why):
        load_embedder(embedder_spec(load_settings(project)))


OFFLINE = textwrap.dedent(
    """
    import json, logging, socket, sys
    events = []
    def hook(event, args):
        if event.startswith(("socket.", "urllib.", "http.")):
            events.append(event)
            raise RuntimeError("network use: " + event)
    sys.addaudithook(hook)
    root = logging.getLogger(); before = (list(root.handlers), root.level)
    from stageflow.knowledge.embedders import WordLlamaEmbedder
    embedder = WordLlamaEmbedder.from_package()
    vectors = embedder.embed(["audit rows are purged after 30 days", "a"])
    after = (list(root.handlers), root.level)
    own = None
    try:  # the wheel's own loader, downloads disabled: it looks in the wrong folder
        from wordllama import WordLlama
        WordLlama.load(disable_download=True)
    except FileNotFoundError as exc:
        own = str(exc)
    print(json.dumps({"model": embedder.model, "shape": list(vectors.shape), "events": events,
                      "logging_untouched": before == after, "own_loader": own}))
    """
)


def test_wordllama_loads_from_the_wheel_without_touching_the_network(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "0"}
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # Every socket is refused. The only attempt is urllib3 (imported by wordllama through
    # requests) creating, not connecting, a socket to probe IPv6 support; it survives the refusal.
    assert set(result["events"]) <= {"socket.__new__"}
    assert result["shape"] == [2, 256]
    assert result["model"].startswith("wordllama/l2_supercat_256/sif0.001/")
    assert result["logging_untouched"]
    assert result["own_loader"] is not None and "Tokenizer file" in result["own_loader"]
    assert not (home / ".cache").exists()  # nothing cached or downloaded


def test_the_start_up_path_imports_no_model_and_no_numpy(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        import anyio
        from stageflow.config import load_settings
        from stageflow.knowledge.index import KnowledgeIndex
        from stageflow.server.app import build_server
        from stageflow.store import Store
        async def main(root):
            settings = load_settings(root)
            build_server(settings)
            async with await Store.open(settings.db_path) as store:
                index = KnowledgeIndex(store, settings)
                await index.sync()
                assert index.default_mode == "hybrid"
        anyio.run(main, sys.argv[1])
        print(sorted(m for m in ("wordllama", "numpy", "tokenizers") if m in sys.modules))
        """
    )
    project = tmp_path / "p"
    (project / ".stageflow" / "knowledge").mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, "-c", code, str(project)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
