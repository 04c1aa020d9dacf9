"""The OS sandbox for agent commands: which one, whether it works, how a command is wrapped.

Model-written code runs whenever an allowed program runs files of the workspace (``pytest``
imports ``conftest.py``; ``find -exec`` and build tools run anything), and no argument check
can stop it. So agent commands (the Bash tool, Claude Code children, and command stages that
run after an agent stage in the same workspace) run in bubblewrap with the profile of
``workspace.bwrap``: the system read-only, only the workspace writable, the repository's git
data read-only, a fresh PID namespace, no network unless the stage says ``network: true``, an
allow-listed environment.

``[workspace] sandbox`` in ``.stageflow/config.toml`` chooses (``bwrap`` names the executable):

- ``auto`` (default): bwrap when it is installed and can create namespaces here. Otherwise
  commands that can run code are refused (``unconfined.code_runner``) with a message saying
  how to install bubblewrap or to opt out; read-only commands still run. Never a silent
  fallback;
- ``bwrap``: bubblewrap or nothing; a stage that would run commands fails at once
  (``SandboxError``) when it cannot be used;
- ``none``: commands run unconfined, and every stage that may run them logs a warning.

Linux only for now: on macOS ``sandbox-exec`` may come later, so ``auto`` finds no sandbox
there and refuses code-running commands.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from stageflow.errors import RunFailure
from stageflow.workspace.bwrap import bwrap_argv
from stageflow.workspace.unconfined import code_runner

__all__ = [
    "INSTALL_HINT",
    "SANDBOX_MODES",
    "Sandbox",
    "SandboxError",
    "SandboxMode",
    "probe_bwrap",
    "sandbox_env",
]

log = logging.getLogger(__name__)

SandboxMode = Literal["auto", "bwrap", "none"]
SANDBOX_MODES: tuple[str, ...] = ("auto", "bwrap", "none")
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; Fedora: "
    "`dnf install bubblewrap`)"
)
OPT_OUT_HINT = (
    'or opt out explicitly with `sandbox = "none"` under `[workspace]` in '
    ".stageflow/config.toml (commands then run unconfined)"
)
_PROBE_TIMEOUT = 15.0
_TMP_VARS = ("TMPDIR", "TMP", "TEMP")


class SandboxError(RunFailure):
    """The configured sandbox cannot be used here; retrying the stage cannot help."""


_probe_lock = threading.Lock()
_probed: dict[str, str] = {}  # executable -> the working path (successes only)


def probe_bwrap(executable: str) -> tuple[str | None, str]:
    """(path of a bwrap that works here, "") or (None, why not).

    Installed is not enough: in a container without user namespaces bwrap exists and fails, so
    it is run once with the namespaces the profile uses. A success is remembered for the
    process; a failure is probed again next time (the user may install it meanwhile).
    """
    if not sys.platform.startswith("linux"):
        return None, (
            f"there is no OS sandbox for {sys.platform} yet (bubblewrap is Linux only; "
            "macOS `sandbox-exec` may come later)"
        )
    with _probe_lock:
        if executable in _probed:
            return _probed[executable], ""
    found = shutil.which(executable)
    if found is None:
        return None, f"bubblewrap (`{executable}`) is not installed or not on PATH"
    argv = [found, "--unshare-all", "--die-with-parent", "--cap-drop", "ALL"]
    argv += ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    argv += ["--ro-bind", "/proc/sys", "/proc/sys", "--tmpfs", "/tmp", "--", "true"]
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"`{found}` cannot run: {exc}"
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        return None, f"`{found}` cannot create a sandbox here: {''.join(said) or done.returncode}"
    with _probe_lock:
        _probed[executable] = found
    return found, ""


def sandbox_env(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with the temporary directories pointing at the sandbox's private ``/tmp``."""
    env = dict(base)
    for name in _TMP_VARS:
        env[name] = "/tmp"
    return env


@dataclass(frozen=True)
class Sandbox:
    """How the commands of one stage are confined; see the module docstring.

    ``hidden`` lists paths the command must not see at all (stageflow's state directory and
    database, the user's stageflow home); the home directory's credential stores are hidden
    too (``bwrap.CREDENTIAL_PATHS``).
    """

    mode: SandboxMode = "auto"
    executable: str = "bwrap"
    network: bool = False
    hidden: tuple[Path, ...] = ()

    def for_stage(self, *, network: bool) -> Sandbox:
        """This sandbox with the stage's network choice."""
        return replace(self, network=network)

    def found(self) -> tuple[str | None, str]:
        """(the bwrap to use, "") or (None, why commands are not confined)."""
        if self.mode == "none":
            return None, 'the configuration says `sandbox = "none"`'
        return probe_bwrap(self.executable)

    @property
    def confines(self) -> bool:
        """True when commands will run inside bwrap."""
        return self.found()[0] is not None

    def require(self, what: str) -> None:
        """Raise ``SandboxError`` when ``sandbox = "bwrap"`` but bwrap cannot be used, and log
        a warning when commands will run unconfined by choice; ``what`` names the stage."""
        path, problem = self.found()
        if path is not None:
            return
        if self.mode == "bwrap":
            raise SandboxError(
                f'{what} needs the OS sandbox (`sandbox = "bwrap"`), but {problem}; '
                f"{INSTALL_HINT}, {OPT_OUT_HINT}"
            )
        if self.mode == "none":
            log.warning(
                '%s: commands run WITHOUT an OS sandbox (`sandbox = "none"`): code they run '
                "can read your credentials, write anywhere you can and change your git "
                "repository",
                what,
            )
        else:
            log.warning(
                "%s: no OS sandbox (%s); commands that can run code are refused, read-only "
                "ones run unconfined; %s, %s",
                what,
                problem,
                INSTALL_HINT,
                OPT_OUT_HINT,
            )

    def refusal(self, argv: Sequence[str]) -> str | None:
        """Why ``argv`` may not run here: ``auto`` without a sandbox refuses code runners."""
        if self.mode != "auto":
            return None
        path, problem = self.found()
        if path is not None:
            return None
        reason = code_runner(argv)
        if reason is None:
            return None
        return (
            f"{reason}, and there is no OS sandbox to confine it: {problem}. Only read-only "
            "commands run unconfined. To run it, the user must "
            f"{INSTALL_HINT}, {OPT_OUT_HINT}"
        )

    def unconfined_refusal(self, what: str) -> SandboxError | None:
        """The error for ``what`` (a command stage after agent stages) when it cannot be
        confined and the configuration does not allow it unconfined; None otherwise."""
        path, problem = self.found()
        if path is not None or self.mode == "none":
            return None
        return SandboxError(
            f"{what} runs after an agent stage in the same workspace, so it may run code the "
            f"model wrote, and it must run in the OS sandbox; but {problem}; {INSTALL_HINT}, "
            f"{OPT_OUT_HINT}"
        )

    def wrap(
        self,
        argv: Sequence[str],
        *,
        root: Path,
        env: Mapping[str, str],
        keep: Sequence[str] = (),
        read_only: Iterable[Path] = (),
    ) -> list[str]:
        """``argv`` as a bwrap command confined to ``root`` (see ``workspace.bwrap``).

        ``env`` is the environment the command gets (its home's credential stores are
        hidden); ``keep`` names credential stores it needs (Claude Code's login).
        """
        path, problem = self.found()
        if path is None:
            raise SandboxError(f"cannot confine the command: {problem}")
        homes = {Path(p) for p in (env.get("HOME"), os.environ.get("HOME")) if p}
        return bwrap_argv(
            path,
            argv,
            root=root,
            network=self.network,
            hidden=self.hidden,
            homes=sorted(homes),
            keep=keep,
            read_only=read_only,
        )
