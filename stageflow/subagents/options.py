"""Runner options from ``.stageflow/config.toml``: loop bounds, context budget, workspace, Bash,
sandbox.

```toml
[subagents]
max_turns = 30          # model requests per attempt (an agent's ``max_turns`` wins)
max_tokens = 8192       # per request
context_tokens = 4000   # project context and knowledge per attempt

[workspace]
mode = "auto"           # auto | worktree | in_place (a template's ``workspace`` wins)
bash = ["pytest*", "ruff check*"]   # commands Bash may run, added to the template's list
bash_timeout = 120
test_command = "pytest -q"          # the project's tests, for command stages that run them
sandbox = "auto"        # auto | bwrap | none: the OS sandbox of agent commands
bwrap = "bwrap"         # the bubblewrap executable (a name on PATH or a path)
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

from stageflow.config import Settings
from stageflow.errors import Problem, SpecError
from stageflow.workspace.sandbox import SANDBOX_MODES, Sandbox, SandboxMode

WorkspaceMode = Literal["auto", "worktree", "in_place"]
_MODES = ("auto", "worktree", "in_place")


@dataclass(frozen=True)
class RunnerOptions:
    """Settings the model runners share."""

    max_turns: int = 30
    max_tokens: int = 8192
    context_tokens: int = 4000
    workspace_mode: WorkspaceMode = "auto"
    bash: tuple[str, ...] = field(default_factory=tuple)
    bash_timeout: float = 120.0
    test_command: str | None = None  # ``$STAGEFLOW_TEST_COMMAND`` of command stages
    sandbox: SandboxMode = "auto"
    bwrap: str = "bwrap"


def sandbox_for(settings: Settings, options: RunnerOptions, *, network: bool) -> Sandbox:
    """The sandbox of one stage's commands: the configured one, the stage's network choice,
    and stageflow's own files (state directory, database, user home) hidden from it."""
    db = settings.db_path
    hidden = (
        settings.state_dir,
        db,
        db.with_name(db.name + "-wal"),
        db.with_name(db.name + "-shm"),
        settings.home,
    )
    return Sandbox(mode=options.sandbox, executable=options.bwrap, network=network, hidden=hidden)


def _section(settings: Settings, name: str) -> dict[str, Any]:
    raw = settings.extra.get(name, {})
    if not isinstance(raw, dict):
        raise SpecError(
            Problem(f"[{name}] must be a table", file=str(settings.config_file), path=name)
        )
    return raw


def _positive(
    settings: Settings, table: dict[str, Any], section: str, key: str, default: float
) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise SpecError(
            Problem(
                f"must be a positive number, got {value!r}",
                file=str(settings.config_file),
                path=f"{section}.{key}",
            )
        )
    return float(value)


def load_runner_options(settings: Settings) -> RunnerOptions:
    """Read ``[subagents]`` and ``[workspace]``; a wrong value is a ``SpecError`` naming the key.

    (Not ``[runner]``: the top-level ``runner`` key names the runner.)
    """
    runner = _section(settings, "subagents")
    ws = _section(settings, "workspace")
    mode = ws.get("mode", "auto")
    if mode not in _MODES:
        raise SpecError(
            Problem(
                f"unknown workspace mode {mode!r}; expected one of {', '.join(_MODES)}",
                file=str(settings.config_file),
                path="workspace.mode",
            )
        )
    bash = ws.get("bash", [])
    if not isinstance(bash, list) or not all(isinstance(b, str) and b.strip() for b in bash):
        raise SpecError(
            Problem(
                'must be a list of command patterns, e.g. ["pytest*"]',
                file=str(settings.config_file),
                path="workspace.bash",
            )
        )
    test = ws.get("test_command")
    if test is not None and not (isinstance(test, str) and test.strip()):
        raise SpecError(
            Problem(
                'must be the command that runs the project\'s tests, e.g. "pytest -q"',
                file=str(settings.config_file),
                path="workspace.test_command",
            )
        )
    sandbox = ws.get("sandbox", "auto")
    if sandbox not in SANDBOX_MODES:
        raise SpecError(
            Problem(
                f"unknown sandbox {sandbox!r}; expected one of {', '.join(SANDBOX_MODES)}",
                file=str(settings.config_file),
                path="workspace.sandbox",
            )
        )
    bwrap = ws.get("bwrap", "bwrap")
    if not isinstance(bwrap, str) or not bwrap.strip():
        raise SpecError(
            Problem(
                'must name the bubblewrap executable, e.g. "bwrap" or "/usr/bin/bwrap"',
                file=str(settings.config_file),
                path="workspace.bwrap",
            )
        )
    return RunnerOptions(
        max_turns=int(_positive(settings, runner, "subagents", "max_turns", 30)),
        max_tokens=int(_positive(settings, runner, "subagents", "max_tokens", 8192)),
        context_tokens=int(_positive(settings, runner, "subagents", "context_tokens", 4000)),
        workspace_mode=cast(WorkspaceMode, mode),
        bash=tuple(bash),
        bash_timeout=_positive(settings, ws, "workspace", "bash_timeout", 120.0),
        test_command=test.strip() if isinstance(test, str) else None,
        sandbox=cast(SandboxMode, sandbox),
        bwrap=bwrap.strip(),
    )


def project_test_command(settings: Settings) -> str | None:
    """``[workspace] test_command``, read leniently (a wrong value is reported by
    ``load_runner_options``): what ``$STAGEFLOW_TEST_COMMAND`` is in command stages."""
    ws = settings.extra.get("workspace")
    value = ws.get("test_command") if isinstance(ws, dict) else None
    return value.strip() if isinstance(value, str) and value.strip() else None
