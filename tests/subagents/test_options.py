"""Runner options from .stageflow/config.toml: defaults, and mistakes named by file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from stageflow.config import load_settings
from stageflow.errors import SpecError
from stageflow.subagents.options import RunnerOptions, load_runner_options, sandbox_for


def _options(tmp_path: Path, toml: str) -> RunnerOptions:
    (tmp_path / ".stageflow").mkdir(exist_ok=True)
    (tmp_path / ".stageflow" / "config.toml").write_text(toml, encoding="utf-8")
    return load_runner_options(load_settings(tmp_path))


def test_defaults_without_a_config_file(tmp_path: Path) -> None:
    assert load_runner_options(load_settings(tmp_path)) == RunnerOptions()


def test_values_are_read_from_the_subagents_and_workspace_tables(tmp_path: Path) -> None:
    opts = _options(
        tmp_path,
        'runner = "offline"\n[subagents]\nmax_turns = 5\nmax_tokens = 1000\n'
        'context_tokens = 10\n[workspace]\nmode = "in_place"\nbash = ["make test"]\n'
        'bash_timeout = 2.5\nsandbox = "bwrap"\nbwrap = "/opt/bin/bwrap"\n',
    )
    assert opts == RunnerOptions(
        max_turns=5,
        max_tokens=1000,
        context_tokens=10,
        workspace_mode="in_place",
        bash=("make test",),
        bash_timeout=2.5,
        sandbox="bwrap",
        bwrap="/opt/bin/bwrap",
    )


@pytest.mark.parametrize(
    ("toml", "path", "words"),
    [
        ('[workspace]\nmode = "sandbox"', "workspace.mode", "unknown workspace mode 'sandbox'"),
        ('[workspace]\nbash = "pytest"', "workspace.bash", "list of command patterns"),
        ('[workspace]\nbash = [""]', "workspace.bash", "list of command patterns"),
        ("[subagents]\nmax_turns = 0", "subagents.max_turns", "positive number, got 0"),
        ("[subagents]\nmax_tokens = true", "subagents.max_tokens", "positive number"),
        ('workspace = "x"', "workspace", "must be a table"),
        ('[workspace]\nsandbox = "docker"', "workspace.sandbox", "unknown sandbox 'docker'"),
        ("[workspace]\nsandbox = false", "workspace.sandbox", "expected one of auto, bwrap"),
        ('[workspace]\nbwrap = ""', "workspace.bwrap", "name the bubblewrap executable"),
    ],
)
def test_mistakes_name_the_file_and_key(tmp_path: Path, toml: str, path: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        _options(tmp_path, toml)
    assert info.value.problem.path == path
    assert info.value.problem.file == str(tmp_path / ".stageflow" / "config.toml")
    assert words in str(info.value)


def test_the_sandbox_hides_stageflows_own_files_and_takes_the_stages_network(
    tmp_path: Path,
) -> None:
    settings = load_settings(tmp_path)
    sandbox = sandbox_for(settings, RunnerOptions(sandbox="none", bwrap="bw"), network=True)
    assert (sandbox.mode, sandbox.executable, sandbox.network) == ("none", "bw", True)
    assert settings.state_dir in sandbox.hidden and settings.db_path in sandbox.hidden
    assert settings.home in sandbox.hidden
