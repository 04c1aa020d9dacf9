"""The OS sandbox around a ``claude -p`` child, and the Bash patterns it may be given.

Claude Code has its own Bash tool, offered only when the stage allows command patterns (and
the workspace is writable). Whatever its own permission checks do, the code an allowed command
runs (a ``conftest.py`` under ``pytest``) is the model's, so when a sandbox is available the
whole child runs in it (``workspace.sandbox``): the system read-only, only the worktree
writable, the repository's git data read-only, a fresh PID namespace, stageflow's own files
and the home directory's credential stores hidden. With or without it, no ``STAGEFLOW_*``
variable reaches the child (``child_env``).

What differs from the Bash tool's profile, and why:

- the network stays on: the child must reach the Messages API, and bubblewrap cannot allow one
  host only. A command the model runs can therefore reach the network too;
- Claude Code's own login stays readable (``~/.claude``, ``~/.claude.json``; read-only, so no
  hook or setting can be planted there) and so does the environment it authenticates with
  (``ANTHROPIC_API_KEY`` ...): the model's commands can read the credentials the child uses.

Without a sandbox (``sandbox = "auto"`` and no bwrap) the child runs as it is, and only Bash
patterns that cannot run code (``unconfined.pattern_runs_code``) are handed to it; the rest are
dropped with a warning that says how to install bubblewrap. ``sandbox = "none"`` hands every
pattern over, unconfined, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from stageflow.workspace.sandbox import INSTALL_HINT, OPT_OUT_HINT, Sandbox, sandbox_env
from stageflow.workspace.unconfined import pattern_runs_code

__all__ = ["LOGIN_PATHS", "child_env", "confine_child", "patterns_for"]

log = logging.getLogger(__name__)

LOGIN_PATHS = (".claude", ".claude.json")  # Claude Code's login and settings in the home
_HIDDEN_UNDER = (Path("/tmp"), Path("/run"))  # emptied in the sandbox


def patterns_for(sandbox: Sandbox, patterns: Sequence[str], where: str) -> list[str]:
    """The Bash patterns the child may get: all of them when it runs in the sandbox (or with
    ``sandbox = "none"``), only the read-only ones when no sandbox is available."""
    if sandbox.mode == "none" or sandbox.confines:
        return list(patterns)
    kept = [p for p in patterns if not pattern_runs_code(p)]
    dropped = [p for p in patterns if p not in kept]
    if dropped:
        _, problem = sandbox.found()
        log.warning(
            "%s: Bash patterns %s not given to Claude Code: they can run code and there is no "
            "OS sandbox (%s); %s, %s",
            where,
            ", ".join(f"`{p}`" for p in dropped),
            problem,
            INSTALL_HINT,
            OPT_OUT_HINT,
        )
    return kept


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """The child's environment: ``env`` without stageflow's own ``STAGEFLOW_*`` variables
    (``STAGEFLOW_TOKEN`` guards the HTTP server; the child needs none of them)."""
    return {k: v for k, v in env.items() if not k.startswith("STAGEFLOW_")}


def _hidden_by_sandbox(path: Path) -> bool:
    return any(path == d or path.is_relative_to(d) for d in _HIDDEN_UNDER)


def confine_child(
    sandbox: Sandbox,
    argv: Sequence[str],
    *,
    workdir: Path,
    env: Mapping[str, str],
    files: Sequence[Path] = (),
) -> tuple[list[str], dict[str, str]]:
    """``argv`` (``claude -p ...``) wrapped in the sandbox, and the child's environment.

    ``files`` are what the runner wrote for the call (a long system prompt in a scratch
    directory under ``/tmp``): their directories are bound read-only, as is the executable's
    when it lives where the sandbox empties (``/tmp``).
    """
    confined_env = sandbox_env(child_env(env))
    read_only = {f.parent for f in files}
    named = Path(argv[0]).absolute()
    executable = named.resolve()
    for path in (named, executable):  # the command as named (a .bin link) and its target
        if _hidden_by_sandbox(path):
            # an npm install: the whole node_modules tree (links between its packages)
            modules = next((p for p in path.parents if p.name == "node_modules"), None)
            read_only.add(modules if modules is not None else path.parent)
    wrapped = sandbox.wrap(
        argv, root=workdir, env=confined_env, keep=LOGIN_PATHS, read_only=sorted(read_only)
    )
    return wrapped, confined_env
