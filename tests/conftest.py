"""Shared fixtures: asyncio as the only anyio backend, and an isolated home per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.harness import Cli, Script, scripter


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiosqlite uses asyncio futures


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Keep ~/.stageflow and runner choice of the developer's machine out of every test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("STAGEFLOW_HOME", str(home))
    monkeypatch.delenv("STAGEFLOW_DB", raising=False)
    monkeypatch.delenv("STAGEFLOW_PROJECT", raising=False)
    monkeypatch.setenv("STAGEFLOW_RUNNER", "offline")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    # no test may reach the real API by accident: unless a test points the client at its own
    # loopback stand-in, requests go to the discard port and fail at once
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    return home


# -- the CLI tests' fixtures (tests/cli_harness.py) ---------------------------------------


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path / "project", capsys)


@pytest.fixture
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Script:
    return scripter(tmp_path, monkeypatch)
