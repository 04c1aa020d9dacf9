"""Finding, installing and driving the Claude Code CLI for the benchmarks.

The CLI is looked for where the test suite installs it (``.ci/node``, the npm package pinned in
``tests/server/test_claude_code.py``), then on ``PATH``; failing both, the pinned package is
installed into ``.ci/node`` with ``npm`` (as that test's fixture does). Each ``claude -p`` runs
in a clean environment pointed at a Messages API stand-in: an isolated home (so nothing of the
user's Claude setup leaks in, and resumed sessions are kept there), a test key, and no
non-essential traffic.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PREFIX = ROOT / ".ci" / "node"
PINNED = PREFIX / "node_modules" / ".bin" / "claude"
EMPTY_MCP_CONFIG = '{"mcpServers":{}}'
INSTALL_TIMEOUT = 600.0
TURN_TIMEOUT = 300.0


def pinned_package() -> str:
    """The npm package spec the test suite pins (``@anthropic-ai/claude-code@<version>``)."""
    from tests.server.test_claude_code import PACKAGE

    return PACKAGE


def install(prefix: Path = PREFIX) -> tuple[Path | None, str]:
    """``npm install`` the pinned package into ``prefix``; (binary, "") or (None, why not)."""
    npm = shutil.which("npm")
    if npm is None:
        return None, "npm is not on PATH (Node.js 18+ is needed to install Claude Code)"
    package = pinned_package()
    argv = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        done = subprocess.run(
            [*argv, package],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"npm install {package} failed: {exc}"
    binary = prefix / "node_modules" / ".bin" / "claude"
    if done.returncode != 0 or not binary.exists():
        return None, f"npm install {package} failed: {(done.stderr or done.stdout)[-500:].strip()}"
    return binary, ""


def version(binary: Path) -> str | None:
    """``claude --version`` (e.g. ``2.1.197 (Claude Code)``), or None when it does not run."""
    try:
        done = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "DISABLE_AUTOUPDATER": "1"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def find_claude(*, install_missing: bool = True) -> tuple[Path | None, str]:
    """The Claude Code binary: ``.ci/node``, then ``PATH``, then (optionally) a fresh install.

    Returns (binary, "") or (None, the reason none could be used).
    """
    found = [PINNED] if PINNED.exists() else []
    on_path = shutil.which("claude")
    if on_path:
        found.append(Path(on_path))
    for candidate in found:
        if version(candidate):
            return candidate, ""
    if not install_missing:
        return None, "no Claude Code CLI in .ci/node or on PATH (installing was not allowed)"
    binary, why = install()
    if binary is None:
        return None, f"no Claude Code CLI in .ci/node or on PATH, and {why}"
    if not version(binary):
        return None, f"{binary} --version does not run"
    return binary, ""


def clean_env(base_url: str, home: Path) -> dict[str, str]:
    """The environment for ``claude``: only PATH, an isolated home and the stand-in."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "test-key",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }


@dataclass(frozen=True)
class TurnResult:
    """One ``claude -p`` run: its exit code, the result JSON (or None) and stderr's tail."""

    returncode: int
    result: dict[str, Any] | None
    stderr: str

    @property
    def ok(self) -> bool:
        r = self.result
        return self.returncode == 0 and r is not None and not r.get("is_error")

    @property
    def session_id(self) -> str | None:
        return str(self.result["session_id"]) if self.result else None


def session_turn(
    binary: Path,
    prompt: str,
    *,
    cwd: Path,
    env: dict[str, str],
    model: str,
    resume: str | None = None,
    max_turns: int = 30,
    timeout: float = TURN_TIMEOUT,
) -> TurnResult:
    """One user turn of a Claude Code session: ``claude -p`` (``--resume`` after the first).

    Claude Code's own system prompt and default tools; writes allowed in ``cwd``
    (``acceptEdits``); no MCP servers at all.
    """
    argv = [str(binary), "-p", "--output-format", "json", "--model", model]
    if resume:
        argv += ["--resume", resume]
    argv += ["--permission-mode", "acceptEdits", "--max-turns", str(max_turns)]
    argv += ["--strict-mcp-config", "--mcp-config", EMPTY_MCP_CONFIG, "--", prompt]
    done = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,  # -p would otherwise wait for piped input
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    try:
        parsed = json.loads(done.stdout)
    except json.JSONDecodeError:
        parsed = None
    result = parsed if isinstance(parsed, dict) else None
    return TurnResult(done.returncode, result, done.stderr[-2000:])
