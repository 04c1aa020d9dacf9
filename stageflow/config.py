"""Where things live and the few settings that are not part of a template.

Locations follow the design contract: the project is the working directory (or ``--project`` /
``STAGEFLOW_PROJECT``); state is ``<project>/.stageflow/state.db`` (``STAGEFLOW_DB`` overrides);
per-user definitions live in ``~/.stageflow`` (``STAGEFLOW_HOME`` overrides, which tests use).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from stageflow.errors import Problem, SpecError

RunnerName = Literal["auto", "anthropic", "claude-code", "offline"]
RUNNER_NAMES: tuple[str, ...] = ("auto", "anthropic", "claude-code", "offline")
PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one project."""

    project: Path
    db_path: Path
    home: Path
    runner: RunnerName = "auto"
    max_concurrent_agents: int = 4  # global cap across all runs in this process
    lease_seconds: float = 15.0
    command_timeout: float = 600.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.project / ".stageflow"

    @property
    def config_file(self) -> Path:
        """``.stageflow/config.toml``: where ``extra`` came from (named in config errors)."""
        return self.state_dir / "config.toml"

    def agent_dirs(self) -> list[tuple[str, Path]]:
        """Agent folders from lowest to highest precedence (built-in first)."""
        return [
            ("builtin", PACKAGE_DIR / "prompts" / "agents"),
            ("user", self.home / "agents"),
            ("project-claude", self.project / ".claude" / "agents"),
            ("project", self.state_dir / "agents"),
        ]

    def template_dirs(self) -> list[tuple[str, Path]]:
        """Template folders from lowest to highest precedence (built-in first)."""
        return [
            ("builtin", PACKAGE_DIR / "workflows" / "builtin"),
            ("user", self.home / "workflows"),
            ("project", self.state_dir / "workflows"),
        ]


def load_settings(
    project: str | Path | None = None,
    *,
    db: str | Path | None = None,
    runner: str | None = None,
) -> Settings:
    """Resolve settings from arguments, environment and ``.stageflow/config.toml``.

    Precedence: explicit argument > environment variable > config file > default.
    """
    proj = Path(project or os.environ.get("STAGEFLOW_PROJECT") or Path.cwd()).resolve()
    home = Path(os.environ.get("STAGEFLOW_HOME") or Path.home() / ".stageflow")
    cfg_file = proj / ".stageflow" / "config.toml"
    cfg: dict[str, Any] = {}
    if cfg_file.is_file():
        try:
            cfg = tomllib.loads(cfg_file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SpecError(Problem(f"invalid TOML: {exc}", file=str(cfg_file))) from exc
    engine_cfg = cfg.get("engine", {}) if isinstance(cfg.get("engine"), dict) else {}
    db_path = Path(db or os.environ.get("STAGEFLOW_DB") or proj / ".stageflow" / "state.db")
    chosen = runner or os.environ.get("STAGEFLOW_RUNNER") or cfg.get("runner") or "auto"
    if chosen not in RUNNER_NAMES:
        raise SpecError(
            Problem(
                f"unknown runner '{chosen}'; expected one of {', '.join(RUNNER_NAMES)}",
                file=str(cfg_file) if cfg.get("runner") == chosen else "STAGEFLOW_RUNNER",
            )
        )
    return Settings(
        project=proj,
        db_path=db_path.resolve(),
        home=home,
        runner=chosen,  # type: ignore[arg-type]
        max_concurrent_agents=int(engine_cfg.get("max_concurrent_agents", 4)),
        lease_seconds=float(engine_cfg.get("lease_seconds", 15.0)),
        command_timeout=float(engine_cfg.get("command_timeout", 600.0)),
        extra=cfg,
    )
