"""Finding, installing and driving the Claude Code CLI for the benchmarks.

The CLI is looked for where the test suite installs it (``.ci/node``, the version pinned in
``tests/claude_cli.py``), then on ``PATH``; failing both, the pinned package is installed into
``.ci/node`` with ``npm`` (as the tests' fixture does). Each ``claude -p`` runs
in a clean environment pointed at a Messages API stand-in: an isolated home (so nothing of the
user's Claude setup leaks in, and resumed sessions are kept there), a test key, and no
non-essential traffic.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.claude_cli import BINARY, clean_env, install, is_pinned, version

__all__ = ["clean_env", "find_claude", "session_turn", "version"]

EMPTY_MCP_CONFIG = '{"mcpServers":{}}'
TURN_TIMEOUT = 300.0


def find_claude(*, install_missing: bool = True) -> tuple[Path | None, str]:
    """The Claude Code binary: ``.ci/node``, then ``PATH``, then (optionally) a fresh install.

    Returns (binary, "") or (None, the reason none could be used).
    """
    found = [BINARY] if BINARY.exists() and is_pinned(BINARY) else []
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
