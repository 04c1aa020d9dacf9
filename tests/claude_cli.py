"""The one pin of the Claude Code CLI that the tests and the benchmarks drive, and its install.

Claude Code comes from the npm registry into ``.ci/node`` (gitignored). ``ensure()`` installs
the pinned version there on first use, and again when what is there is another version (an
older checkout's pin), so every test and benchmark talks to the same CLI. Bump ``VERSION`` in a
reviewed change: the Messages API stand-ins depend on how this version talks to the API.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

VERSION = "2.1.328"
PACKAGE = f"@anthropic-ai/claude-code@{VERSION}"
ROOT = Path(__file__).resolve().parents[1]
PREFIX = ROOT / ".ci" / "node"
BINARY = PREFIX / "node_modules" / ".bin" / "claude"
INSTALL_TIMEOUT = 600.0


def version(binary: Path) -> str | None:
    """``claude --version`` (e.g. ``2.1.328 (Claude Code)``), or None when it does not run."""
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


def is_pinned(binary: Path) -> bool:
    """True when ``binary`` runs and is the pinned version."""
    found = version(binary)
    return found is not None and found.split()[0] == VERSION


def install(prefix: Path = PREFIX) -> tuple[Path | None, str]:
    """``npm install`` the pinned package into ``prefix``; (binary, "") or (None, why not)."""
    npm = shutil.which("npm")
    if npm is None:
        return None, "npm is not on PATH (Node.js 18+ is needed to install Claude Code)"
    argv = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        done = subprocess.run(
            [*argv, PACKAGE],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"npm install {PACKAGE} failed: {exc}"
    binary = prefix / "node_modules" / ".bin" / "claude"
    if done.returncode != 0 or not binary.exists():
        return None, f"npm install {PACKAGE} failed: {(done.stderr or done.stdout)[-500:].strip()}"
    return binary, ""


def ensure() -> tuple[Path | None, str]:
    """The pinned Claude Code in ``.ci/node``, installed (or replaced) when needed."""
    if BINARY.exists() and is_pinned(BINARY):
        return BINARY, ""
    binary, why = install()
    if binary is None:
        return None, why
    if not is_pinned(binary):
        return None, f"{binary} --version does not report {VERSION}: {version(binary)}"
    return binary, ""


def clean_env(base_url: str, home: Path) -> dict[str, str]:
    """The environment for ``claude``: only PATH, an isolated home and the stand-in, so
    nothing of the developer's Claude or Anthropic setup leaks in."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "test-key",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
