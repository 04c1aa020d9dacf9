"""The workspace a subagent may touch: file tools confined to one root, and the Bash gate.

Every path the model names goes through ``Workspace.resolve``: it is taken relative to the
root, symlinks are resolved, and the *resolved* path must lie inside the resolved root
(``Path.is_relative_to``, never a string prefix, so ``/srv/app-evil`` is not inside
``/srv/app``). That one check covers ``..``, absolute paths, symlinked files and directories,
and symlinked parents of files that do not exist yet.

Writes are further refused on a read-only workspace (with the reason, e.g. "not a git
repository"), inside ``.git`` (a worktree's ``.git`` file or a repository's internals, hooks),
inside ``.stageflow`` (run state, templates and the Bash allow list live there) and inside
``.claude`` (Claude Code's hooks and settings, and the project's agent definitions). Those
names are compared ignoring case at any depth: on a case-insensitive file system (macOS,
Windows) ``.GIT/hooks`` *is* ``.git/hooks``, and stageflow cannot know the file system. Text
tools refuse files over ``max_file_bytes`` and binary files (a NUL byte in the first 8 KiB).
Every file tool works on regular files only: a FIFO, socket or device is refused, never opened
to block (``files``), and Grep skips one that appears during its search.

Glob and Grep walk the tree themselves: they skip ``.git``, never descend into symlinked
directories, and leave out symlinks that resolve outside the root. Their patterns (the model's
regular expression, its glob with ``{a,b}`` groups, Grep's ``glob`` filter) are expanded,
compiled and matched in a child process (``search_child``) bounded by ``search_timeout`` and
killed when the caller is cancelled: ``re`` cannot be interrupted and holds the GIL while it
backtracks, and brace expansion is exponential in the number of groups (it is bounded there),
so either would otherwise stall or exhaust the whole server.

Bash (``shell.BashPolicy``) is off unless the policy lists patterns, and is also refused on a
read-only workspace: a command can write anywhere, so read-only must mean no commands. An
allowed command line is refused when an argument names a path outside the root or inside a
protected directory (``shell.check_arguments``). It then runs in the OS sandbox
(``sandbox.Sandbox``: bubblewrap, only the root writable); with ``sandbox = "auto"`` and no
sandbox available, a command that can run code is refused instead.

Messages name paths relative to the root so the model can correct itself. Every method is
synchronous except ``bash``.
"""

from __future__ import annotations

import logging
import os
import shlex
import threading
from collections.abc import Iterator
from pathlib import Path

from stageflow.errors import InvalidArgument, ToolError
from stageflow.workspace.files import kind_of, read_regular, write_regular
from stageflow.workspace.sandbox import Sandbox, sandbox_env
from stageflow.workspace.search import SearchStop, run_search
from stageflow.workspace.shell import (
    BashPolicy,
    bash_disabled_message,
    bash_env,
    check_arguments,
    protected_part,
    run_argv,
)

__all__ = ["PROTECTED_DIRS", "SearchStop", "Workspace"]

log = logging.getLogger(__name__)

PROTECTED_DIRS = (".git", ".stageflow", ".claude")  # never written by a subagent, any depth/case
SKIPPED_DIRS = frozenset({".git"})  # never listed or searched (compared ignoring case)
_PROTECTED_BY = {".git": "git", ".stageflow": "stageflow", ".claude": "Claude Code"}
_SNIFF_BYTES = 8192
_MAX_LINE_CHARS = 2000  # Read shortens longer lines
_MAX_GREP_LINE = 300
_MAX_GLOB_RESULTS = 1000


class Workspace:
    """A directory the file tools are confined to; see the module docstring for the rules."""

    def __init__(
        self,
        root: Path,
        *,
        writable: bool = True,
        read_only_reason: str = "",
        max_file_bytes: int = 512_000,
        bash: BashPolicy | None = None,
        search_timeout: float = 30.0,
        sandbox: Sandbox | None = None,
    ) -> None:
        resolved = Path(root).resolve()
        if not resolved.is_dir():
            raise InvalidArgument(f"workspace root {root} is not a directory")
        self.root = resolved
        self.writable = writable
        self.read_only_reason = read_only_reason
        self.max_file_bytes = max_file_bytes
        self.search_timeout = search_timeout  # seconds of regex matching per Grep or Glob
        self.bash_policy = bash if bash is not None and bash.enabled else None
        self.sandbox = sandbox  # None: commands run as they are (the caller confines them)

    # -- paths ------------------------------------------------------------------------------

    def rel(self, path: Path) -> str:
        """``path`` (inside the root) as the model sees it: relative, POSIX, ``.`` for root."""
        text = path.relative_to(self.root).as_posix()
        return text or "."

    def resolve(self, path: str) -> Path:
        """The resolved absolute path for ``path``, or ToolError when it leaves the root."""
        if not isinstance(path, str) or not path.strip():
            raise ToolError("the path is empty; give a path relative to the workspace root")
        if "\x00" in path:
            raise ToolError(f"the path {path!r} contains a NUL byte")
        if path.startswith("~"):
            raise ToolError(
                f"`{path}`: `~` is not expanded; give a path relative to the workspace root"
            )
        given = Path(path)
        candidate = given if given.is_absolute() else self.root / given
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as exc:  # symlink loops
            raise ToolError(f"`{path}` cannot be resolved: {exc}") from None
        if resolved.is_relative_to(self.root):
            return resolved
        if Path(os.path.normpath(candidate)).is_relative_to(self.root):
            raise ToolError(
                f"`{path}` goes through a symbolic link that points outside the workspace; "
                "only files under the workspace root can be used"
            )
        how = "an absolute path" if given.is_absolute() else "a path that climbs with `..`"
        raise ToolError(
            f"`{path}` is outside the workspace ({how}); the file tools only reach files "
            "under the workspace root, so use a path relative to it, e.g. `src/app.py`"
        )

    def _writable_path(self, path: str) -> Path:
        if not self.writable:
            reason = self.read_only_reason or "this stage may not change files"
            raise ToolError(f"cannot write `{path}`: the workspace is read-only: {reason}")
        target = self.resolve(path)
        name = protected_part(target.relative_to(self.root).parts, PROTECTED_DIRS)
        if name is not None:
            raise ToolError(
                f"cannot write `{self.rel(target)}`: files inside `{name}` are managed by "
                f"{_PROTECTED_BY.get(name, 'stageflow')} and may not be changed"
            )
        return target

    def _text_file(self, path: str, tool: str) -> tuple[Path, str]:
        """Resolve, check existence, kind, size and binary-ness, and read a text file
        (``files.read_regular``: a FIFO or device is refused, never opened to block)."""
        target = self.resolve(path)
        shown = self.rel(target)
        if target.is_dir():
            raise ToolError(f"`{shown}` is a directory; use Glob to list its files")
        data = read_regular(target, shown=shown, tool=tool, limit=self.max_file_bytes)
        if b"\x00" in data[:_SNIFF_BYTES]:
            raise ToolError(f"`{shown}` is a binary file; {tool} works on text files only")
        return target, data.decode("utf-8", errors="replace")

    # -- file tools ---------------------------------------------------------------------------

    def read(self, path: str, *, offset: int = 1, limit: int = 2000) -> str:
        """Lines ``offset``.. of a text file, numbered like ``cat -n``."""
        if offset < 1 or limit < 1:
            raise ToolError("`offset` and `limit` must be at least 1 (lines count from 1)")
        target, text = self._text_file(path, "Read")
        shown = self.rel(target)
        lines = text.splitlines()
        if not lines:
            return f"(`{shown}` is empty)"
        if offset > len(lines):
            raise ToolError(f"offset {offset} is past the end of `{shown}` ({len(lines)} lines)")
        end = min(offset - 1 + limit, len(lines))
        out = []
        for number in range(offset, end + 1):
            line = lines[number - 1]
            if len(line) > _MAX_LINE_CHARS:
                line = line[:_MAX_LINE_CHARS] + f" [... {len(line) - _MAX_LINE_CHARS} chars]"
            out.append(f"{number:6}\t{line}")
        if end < len(lines):
            out.append(f"(lines {offset}-{end} of {len(lines)}; read on with offset={end + 1})")
        return "\n".join(out)

    def write(self, path: str, content: str, *, cancelled: threading.Event | None = None) -> str:
        """Create or replace a regular text file, creating parent directories inside the root;
        nothing is written once ``cancelled`` is set (see ``files.write_regular``)."""
        target = self._writable_path(path)
        shown = self.rel(target)
        if target.is_dir():
            raise ToolError(f"`{shown}` is a directory; give a file path")
        data = content.encode("utf-8")
        if len(data) > self.max_file_bytes:
            raise ToolError(
                f"the content for `{shown}` is {len(data)} bytes, over the "
                f"{self.max_file_bytes}-byte limit; write it in smaller files"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        existed = write_regular(target, data, shown=shown, tool="Write", cancelled=cancelled)
        lines = content.count("\n") + (1 if content and not content.endswith("\n") else 0)
        verb = "Replaced" if existed else "Created"
        return f"{verb} `{shown}` ({_count(lines, 'line')}, {_count(len(data), 'byte')})"

    def edit(
        self,
        path: str,
        old_string: str,
        new_string: str,
        *,
        replace_all: bool = False,
        cancelled: threading.Event | None = None,
    ) -> str:
        """Replace ``old_string`` (which must be unique unless ``replace_all``) in a text file;
        nothing is written once ``cancelled`` is set."""
        target = self._writable_path(path)
        target, text = self._text_file(path, "Edit")
        shown = self.rel(target)
        if not old_string:
            raise ToolError("`old_string` is empty; to create or replace a file use Write")
        if old_string == new_string:
            raise ToolError("`old_string` and `new_string` are the same; nothing to change")
        count = text.count(old_string)
        if count == 0 and "\r\n" in text and "\n" in old_string:
            # the model writes \n; the file uses CRLF line endings
            old_string = old_string.replace("\r\n", "\n").replace("\n", "\r\n")
            new_string = new_string.replace("\r\n", "\n").replace("\n", "\r\n")
            count = text.count(old_string)
        if count == 0:
            raise ToolError(
                f"`old_string` was not found in `{shown}`; Read the file and copy the exact "
                "text, including indentation and line breaks"
            )
        if count > 1 and not replace_all:
            raise ToolError(
                f"`old_string` occurs {count} times in `{shown}`; include more surrounding "
                "lines to make it unique, or set replace_all to change every occurrence"
            )
        updated = text.replace(old_string, new_string)
        data = updated.encode("utf-8")
        if len(data) > self.max_file_bytes:
            raise ToolError(
                f"the edit would make `{shown}` {len(data)} bytes, over the "
                f"{self.max_file_bytes}-byte limit"
            )
        write_regular(target, data, shown=shown, tool="Edit", cancelled=cancelled)
        return f"Edited `{shown}`: replaced {_count(count, 'occurrence')}"

    def glob(self, pattern: str, *, path: str = ".", stop: SearchStop | None = None) -> str:
        """Paths under ``path`` matching ``pattern`` (``**`` spans directories, ``{a,b}`` works)."""
        base = self._search_base(path)
        if not base.is_dir():
            raise ToolError(f"`{self.rel(base)}` is not a directory; give a directory to search")
        entries = list(self._walk(base, dirs=True))
        job = {
            "mode": "glob",
            "globs": [pattern],  # expanded, translated and matched in the child
            "names": [[entry.relative_to(base).as_posix()] for entry, _ in entries],
        }
        found = [
            self.rel(entries[i][0]) + ("/" if entries[i][1] else "")
            for i in run_search(job, "Glob", stop, self.search_timeout)["found"]
        ]
        if not found:
            return f"No files match `{pattern}` under `{self.rel(base)}`"
        found.sort()
        more = len(found) - _MAX_GLOB_RESULTS
        shown = found[:_MAX_GLOB_RESULTS]
        if more > 0:
            shown.append(f"({more} more; narrow the pattern)")
        return "\n".join(shown)

    def grep(
        self,
        pattern: str,
        *,
        path: str = ".",
        glob: str | None = None,
        ignore_case: bool = False,
        max_matches: int = 200,
        stop: SearchStop | None = None,
    ) -> str:
        """Lines matching the regular expression ``pattern``, as ``path:line: text``."""
        if max_matches < 1:
            raise ToolError("`max_matches` must be at least 1")
        base = self._search_base(path)
        globs: list[str] = []
        if base.is_dir():
            globs = [glob] if glob else []
            files = sorted(f for f, _ in self._walk(base, dirs=False))
        elif base.is_file():
            files = [base]
        else:  # a FIFO would block the search's read until its time limit
            raise ToolError(
                f"`{self.rel(base)}` is not a regular file ({kind_of(base.stat().st_mode)}); "
                "Grep searches regular files only"
            )
        job = {
            "mode": "grep",
            "pattern": pattern,
            "ignore_case": ignore_case,
            "globs": globs,
            # Grep's file filter: a pattern with `/` matches the path, otherwise the file name
            "names": [[f.relative_to(base).as_posix(), f.name] for f in files],
            "files": [os.fsencode(f).decode("latin-1") for f in files],
            "max_bytes": self.max_file_bytes,
            "sniff": _SNIFF_BYTES,
            "max_matches": max_matches,
            "line_chars": _MAX_GREP_LINE,
        }
        found = run_search(job, "Grep", stop, self.search_timeout)
        hits = [f"{self.rel(files[i])}:{number}: {text}" for i, number, text in found["hits"]]
        notes = []
        if found["truncated"]:
            notes.append(f"(stopped at {max_matches} matches; narrow the pattern or the path)")
        if found["skipped"]:
            notes.append(f"({found['skipped']} binary or oversized file(s) skipped)")
        if not hits:
            return "\n".join([f"No matches for `{pattern}` in `{self.rel(base)}`", *notes])
        return "\n".join([*hits, *notes])

    def _search_base(self, path: str) -> Path:
        base = self.resolve(path or ".")
        if not base.exists():
            raise ToolError(f"`{self.rel(base)}` does not exist")
        return base

    def _walk(self, base: Path, *, dirs: bool) -> Iterator[tuple[Path, bool]]:
        """Entries under ``base``: no ``.git``, no symlinked dirs, no links out of the root."""
        stack = [base]
        while stack:
            current = stack.pop()
            try:
                entries = list(os.scandir(current))
            except OSError as exc:
                log.debug("cannot list %s: %s", current, exc)
                continue
            for entry in entries:
                if entry.name.casefold() in SKIPPED_DIRS:
                    continue
                full = Path(entry.path)
                if entry.is_symlink():
                    try:
                        target = full.resolve()
                    except (OSError, RuntimeError):
                        continue
                    if not target.is_relative_to(self.root):
                        continue  # a link out of the workspace is invisible
                    if target.is_dir():
                        if dirs:
                            yield full, True
                        continue  # never descend through a link: no loops, no escapes
                    if target.is_file():
                        yield full, False
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if dirs:
                        yield full, True
                    stack.append(full)
                elif entry.is_file(follow_symlinks=False):
                    yield full, False

    # -- Bash -------------------------------------------------------------------------------

    async def bash(self, command: str, *, timeout: float | None = None) -> str:  # noqa: ASYNC109
        """Run one allowed command (no shell) in the root; the text ends with its exit code."""
        policy = self.bash_policy
        if policy is None:
            raise ToolError(bash_disabled_message())
        if not self.writable:
            # a command may write anywhere in the directory; a read-only workspace forbids that
            reason = self.read_only_reason or "this stage may not change files"
            raise ToolError(f"Bash is not available: the workspace is read-only: {reason}")
        argv = policy.check(command)
        check_arguments(argv, root=self.root, protected=PROTECTED_DIRS)
        limit = policy.timeout if timeout is None or timeout <= 0 else min(timeout, policy.timeout)
        command_argv, env = self._confined(argv)
        code, output = await run_argv(
            command_argv,
            cwd=self.root,
            timeout=limit,
            max_output_bytes=policy.max_output_bytes,
            env=env,
        )
        status = f"exit code {code}" if code >= 0 else f"killed by signal {-code}"
        body = output if output.endswith("\n") or not output else output + "\n"
        return f"{body}({status})"

    def _confined(self, argv: list[str]) -> tuple[list[str], dict[str, str] | None]:
        """The argv and environment that run ``argv`` in the sandbox, or ToolError when it
        may not run unconfined (``sandbox = "auto"`` without a sandbox)."""
        sandbox = self.sandbox
        if sandbox is None:
            return argv, None
        refusal = sandbox.refusal(argv)
        if refusal is not None:
            raise ToolError(f"refused `{shlex.join(argv)}`: {refusal}")
        if not sandbox.confines:
            return argv, None  # read-only under "auto", or "none" (warned at the stage start)
        env = sandbox_env(bash_env())
        return sandbox.wrap(argv, root=self.root, env=env), env


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
