"""The ``victim`` of the sandbox escape tests: a user's repository, a port, credentials."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.workspace.escape import Victim, make_victim


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Victim]:
    made = make_victim(tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def victim_off_tmp() -> Iterator[Victim]:
    """The victim where most projects live: not under ``/tmp`` (which the sandbox empties),
    so every write outside the worktree meets the read-only system."""
    root = Path(tempfile.mkdtemp(prefix="stageflow-victim-", dir="/var/tmp"))
    made = make_victim(root)
    try:
        yield made
    finally:
        made.close()
        shutil.rmtree(root, ignore_errors=True)
