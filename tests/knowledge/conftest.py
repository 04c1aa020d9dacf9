"""Fixtures for knowledge tests: a project folder in ``tmp_path``, its store and index."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from stageflow.config import Settings, load_settings
from stageflow.knowledge.index import KnowledgeIndex
from stageflow.store import Store

WriteFile = Callable[[str, str], Path]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / ".stageflow" / "knowledge").mkdir(parents=True)
    return root


@pytest.fixture
def write(project: Path) -> WriteFile:
    """Write a project-relative file (creating folders) and return its absolute path."""

    def write_file(rel: str, text: str) -> Path:
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write_file


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    async with await Store.open(settings.db_path) as opened:
        yield opened


@pytest.fixture
async def index(store: Store, settings: Settings) -> KnowledgeIndex:
    return KnowledgeIndex(store, settings)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Knowledge tests run offline: a connection to anything but loopback fails loudly."""
    import ipaddress
    import socket

    real = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if isinstance(host, str):
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                raise AssertionError(f"knowledge tests must not touch the network ({address!r})")
        real(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)


def config(project: Path, text: str) -> None:
    """Write ``.stageflow/config.toml`` of a test project."""
    path = project / ".stageflow" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
