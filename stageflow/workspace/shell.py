"""The Bash tool's policy and runner: one allowed command, split into argv, run without a shell.

Model text is untrusted. It never reaches ``/bin/sh``: the command line is split with
``shlex`` (POSIX quoting rules) and the resulting argv is executed directly, so ``*``, ``$HOME``
and ``~`` stay literal. Shell operators (``;``, ``|``, ``&``, ``>``, ``<``, newlines) and command
substitution (backticks, ``$(``) outside single quotes are refused up front with a message
saying so, because a model writing them expects a shell and would misread the literal result.

Only command lines matching one of the policy's ``fnmatch`` patterns run (matched against the
argv joined by single spaces, case-sensitively). A program given as a path (``./x``,
``../../bin/sh``) runs only when a pattern names that exact path as its first word, so
``pytest*`` cannot be stretched to ``pytest/../../../bin/sh``.

An allowed command line is then checked argument by argument (``check_arguments``), because a
pattern such as ``git diff*`` also matches options that write files (``--output=<file>``) or
run programs (``git -c alias.x=!cmd x``): an argument, the value of ``--opt=value`` / ``k=v``,
or an attached short-option value (``-o/tmp/x``) that names a path outside the workspace root
(absolute, climbing with ``..``, or through a symlink) or inside a protected directory is
refused; so are git's options that point it at another repository, config or program. Any
argument counts, even one the program reads as something else (a regex ``/api/``): use a
relative form. ``/dev/null`` is allowed.

The command gets an allow-listed environment (``bash_env``): locale, paths, temp dirs and
toolchain locations, never the server's credentials, whatever their names.

The process gets its own session (process group); on timeout or cancellation the whole group
is killed, and output is capped (head and tail kept).
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import anyio

from stageflow.errors import ToolError
from stageflow.workspace.procgroup import collect, kill_group

__all__ = [
    "NO_SHELL_HINT",
    "BashPolicy",
    "CommandTimedOut",
    "bash_env",
    "check_arguments",
    "protected_part",
    "run_argv",
]

log = logging.getLogger(__name__)

NO_SHELL_HINT = (
    "Bash runs exactly one command without a shell: pipes, redirections, `;`, `&&`, "
    "backticks and `$(...)` are not available. Run one command per call and use the "
    "Read/Grep/Glob tools to inspect files."
)

# The only variables a model-chosen command inherits. A deny-list of credential-looking names
# misses too much (SSH_PRIVATE_KEY, MYSQL_PWD, DOCKER_AUTH_CONFIG, DATABASE_URL ...). PYTHONPATH
# and the toolchain homes are paths a project's tests may need; stageflow's own STAGEFLOW_*
# (STAGEFLOW_TOKEN, the database path) are not for the model: the Bash tool sets none.
_ENV_ALLOWED = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "TMPDIR",
        "TMP",
        "TEMP",
        "VIRTUAL_ENV",
        "PYTHONPATH",
        "JAVA_HOME",
        "GOPATH",
        "GOROOT",
        "CARGO_HOME",
        "RUSTUP_HOME",
    }
)
_ENV_ALLOWED_PREFIXES = ("LC_",)
# git options that point it at another repository, config or program (before the subcommand)
_GIT_GLOBAL_REFUSED = ("-c", "-C", "--config-env", "--exec-path", "--git-dir", "--work-tree")
_GIT_GLOBAL_WITH_VALUE = frozenset({"--namespace", "--attr-source", "--super-prefix"})
# git options that run a program named on the command line (after the subcommand); the short
# forms mean that only for some subcommands (`git cherry-pick -x` is harmless)
_GIT_RUNS_PROGRAM = ("--upload-pack", "--receive-pack", "--exec", "--extcmd", "--open-files-in")
_GIT_SHORT_RUNS_PROGRAM = {
    "rebase": "-x",
    "difftool": "-x",
    "grep": "-O",
    "clone": "-u",
    "ls-remote": "-u",
}
# `git config` writes the repository's config, which a run worktree shares with the user's
# repository (core.pager, core.hooksPath ... would run later, outside stageflow); the
# credential commands print the user's stored credentials; filter-branch runs shell filters
_GIT_REFUSED_SUBCOMMANDS = frozenset(
    {"config", "credential", "credential-cache", "credential-store", "filter-branch"}
)
_HARMLESS_PATHS = frozenset({"/dev/null"})
_DRAIN_GRACE = 1.0  # after the program exits, how long to read what is left in the pipe


class CommandTimedOut(ToolError):
    """The command ran past its timeout; its process group was killed."""

    def __init__(self, message: str, *, timeout: float, output: str) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.output = output


@dataclass(frozen=True)
class BashPolicy:
    """Which command lines the Bash tool may run, for how long, with how much output."""

    allow: tuple[str, ...]  # fnmatch patterns over the command line, e.g. "pytest*"
    timeout: float = 120.0
    max_output_bytes: int = 30_000

    @property
    def enabled(self) -> bool:
        """Bash is available only when at least one pattern is listed."""
        return any(p.strip() for p in self.allow)

    def check(self, command: str) -> list[str]:
        """The argv to run for ``command``, or ToolError saying why it is refused."""
        if not self.enabled:
            raise ToolError(bash_disabled_message())
        line = command.strip()
        if not line:
            raise ToolError("Bash needs a command; `command` is empty")
        operator = find_shell_operator(line)
        if operator is not None:
            raise ToolError(
                f"refused `{line}`: it uses the shell syntax `{operator}`. {NO_SHELL_HINT}"
            )
        try:
            argv = shlex.split(line, posix=True)
        except ValueError as exc:  # unbalanced quotes
            raise ToolError(f"cannot parse `{line}`: {exc}") from None
        if not argv:
            raise ToolError("Bash needs a command; `command` is empty")
        joined = " ".join(argv)
        for raw in self.allow:
            pattern = raw.strip()
            if pattern and fnmatchcase(joined, pattern) and _program_ok(argv[0], pattern):
                return argv
        allowed = ", ".join(f"`{p}`" for p in self.allow if p.strip())
        raise ToolError(
            f"refused `{joined}`: it matches none of the allowed command patterns ({allowed}). "
            "Only those commands may run in this stage."
        )


def bash_disabled_message() -> str:
    """What the model is told when the stage has no Bash patterns."""
    return (
        "Bash is not allowed for this stage; the template or config must list allowed "
        'commands under `bash:` (e.g. `bash: ["pytest*"]` in the workflow or the stage). '
        "Use the Read, Glob, Grep, Write and Edit tools instead."
    )


def _program_ok(program: str, pattern: str) -> bool:
    # a bare name is looked up on PATH; a path could point anywhere, so it must be named exactly
    if "/" not in program:
        return True
    first = pattern.split(maxsplit=1)[0] if pattern.split() else ""
    return program == first


def find_shell_operator(command: str) -> str | None:
    """The first shell operator or substitution in ``command`` outside single quotes, if any.

    Double quotes protect operators (``grep "a|b"`` is fine) but not substitution, because
    a shell would expand ``"$(x)"`` and backticks there too.
    """
    quote: str | None = None
    i = 0
    while i < len(command):
        ch = command[i]
        if quote == "'":
            if ch == "'":
                quote = None
        elif ch == "\\" and quote is None:
            i += 1  # the next character is escaped
        elif ch == "`":
            return "`"
        elif ch == "$" and command[i + 1 : i + 2] == "(":
            return "$("
        elif quote == '"':
            if ch == "\\":
                i += 1
            elif ch == '"':
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in ";|&<>\n":
            pair = command[i : i + 2]
            return pair if pair in ("&&", "||", ">>", "<<") else ch
        i += 1
    return None


def bash_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a model-chosen command: only the allow-listed inherited variables.

    Locale (``LANG``, ``LC_*``), ``PATH``, ``HOME``, user, shell, terminal, temp dirs,
    ``VIRTUAL_ENV``, ``PYTHONPATH`` and toolchain homes; nothing else, so no credential reaches
    the command whatever its name.
    """
    source = os.environ if base is None else base
    return {
        k: v for k, v in source.items() if k in _ENV_ALLOWED or k.startswith(_ENV_ALLOWED_PREFIXES)
    }


def protected_part(parts: Sequence[str], protected: Sequence[str]) -> str | None:
    """The entry of ``protected`` that one of ``parts`` names, ignoring case, if any.

    Case is ignored on every platform: on a case-insensitive file system ``.GIT`` is ``.git``.
    """
    wanted = {name.casefold(): name for name in protected}
    for part in parts:
        hit = wanted.get(part.casefold())
        if hit is not None:
            return hit
    return None


def check_arguments(argv: Sequence[str], *, root: Path, protected: Sequence[str] = ()) -> None:
    """ToolError when an argument names a path outside ``root`` (resolved) or inside a
    ``protected`` directory, or when a git command uses an option that escapes the workspace.

    The program (``argv[0]``) is not checked here: ``BashPolicy.check`` vets it. Checked are
    each argument, the value after its first ``=`` and an attached short-option value
    (``-o/x``) that starts like a path (``/``, ``..``).
    """
    for arg in argv[1:]:
        if "\x00" in arg:
            raise ToolError("refused: an argument contains a NUL byte")
        for value in _path_candidates(arg):
            problem = _path_problem(value, root, protected)
            if problem is not None:
                raise ToolError(
                    f"refused `{shlex.join(argv)}`: `{arg}` {problem}; commands may only name "
                    "files under the workspace root (use a relative path such as `src/app.py`)"
                )
    if argv and Path(argv[0]).name == "git":
        _check_git(argv)


def _path_candidates(arg: str) -> list[str]:
    values = [arg]
    if "=" in arg:
        values.append(arg.split("=", 1)[1])
    if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
        attached = arg[2:]
        if attached.startswith(("/", "..")):
            values.append(attached)
    return [v for v in values if v]


def _path_problem(value: str, root: Path, protected: Sequence[str]) -> str | None:
    if value in _HARMLESS_PATHS:
        return None
    given = Path(value)
    try:
        resolved = (root / given).resolve()  # an absolute `given` replaces the root
    except (OSError, RuntimeError, ValueError):
        return "is a path that cannot be resolved"
    if not resolved.is_relative_to(root):
        if given.is_absolute():
            return "is an absolute path outside the workspace"
        if ".." in given.parts:
            return "climbs out of the workspace with `..`"
        return "goes through a symbolic link that points outside the workspace"
    name = protected_part(resolved.relative_to(root).parts, protected)
    if name is not None:
        return f"names a path inside `{name}`, which commands may not touch"
    return None


def _check_git(argv: Sequence[str]) -> None:
    """Refuse git's global options that leave the workspace and options that run programs."""
    args = list(argv[1:])
    i = 0
    while i < len(args) and args[i].startswith("-"):
        name = args[i].split("=", 1)[0]
        if name in _GIT_GLOBAL_REFUSED or (args[i][:2] in ("-c", "-C") and len(args[i]) > 2):
            raise ToolError(
                f"refused `{shlex.join(argv)}`: git's `{name}` option points git at another "
                "repository, configuration or program; run git on the workspace as it is"
            )
        i += 2 if name in _GIT_GLOBAL_WITH_VALUE and "=" not in args[i] else 1
    subcommand = args[i] if i < len(args) else ""
    if subcommand in _GIT_REFUSED_SUBCOMMANDS:
        raise ToolError(f"refused `{shlex.join(argv)}`: `git {subcommand}` may not run in a stage")
    short = _GIT_SHORT_RUNS_PROGRAM.get(subcommand)
    for arg in args[i + 1 :]:
        if arg == "--":
            break
        name = arg.split("=", 1)[0]
        if name.startswith(_GIT_RUNS_PROGRAM) or (short is not None and arg.startswith(short)):
            raise ToolError(
                f"refused `{shlex.join(argv)}`: `{name}` makes git run a program named on the "
                "command line"
            )


class _Capped:
    """Keeps the first and last ``limit / 2`` bytes of a stream and counts what it dropped."""

    def __init__(self, limit: int) -> None:
        self.head_limit = max(limit // 2, 0)
        self.tail_limit = max(limit - self.head_limit, 0)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        excess = len(self.tail) - self.tail_limit
        if excess > 0:
            del self.tail[:excess]
            self.dropped += excess

    def text(self) -> str:
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        if not self.dropped:
            return head + tail
        return f"{head}\n[... {self.dropped} bytes of output omitted ...]\n{tail}"


async def run_argv(
    argv: list[str],
    *,
    cwd: Path,
    timeout: float,  # noqa: ASYNC109 -- the deadline is part of the command, set by the policy
    max_output_bytes: int,
    env: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """Run ``argv`` (no shell) in ``cwd``; returns (exit code, capped stdout+stderr).

    A negative exit code means the process died from that signal. Raises ``CommandTimedOut``
    (a ToolError) after ``timeout`` seconds, having killed the whole process group, and
    ToolError when the program cannot be started.
    """
    if not argv:
        raise ToolError("no command to run")
    out = _Capped(max_output_bytes)
    try:
        process = await anyio.open_process(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(bash_env() if env is None else env),
            start_new_session=True,
        )
    except FileNotFoundError:
        raise ToolError(f"command not found: `{argv[0]}`") from None
    except PermissionError:
        raise ToolError(f"`{argv[0]}` is not executable") from None
    log.debug("bash: started %s pid=%s", argv, process.pid)
    try:
        with anyio.move_on_after(timeout) as deadline:
            await collect(process, out.add, drain_grace=_DRAIN_GRACE, kill_leftovers=True)
    finally:
        with anyio.CancelScope(shield=True):
            await kill_group(process)
    if deadline.cancelled_caught:
        output = out.text()
        raise CommandTimedOut(
            f"`{shlex.join(argv)}` timed out after {timeout:g}s and was killed."
            + (f" Output so far:\n{output}" if output else " It printed nothing."),
            timeout=timeout,
            output=output,
        )
    code = process.returncode if process.returncode is not None else -1
    return code, out.text()
