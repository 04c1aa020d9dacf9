"""What may still run when no OS sandbox is available (``sandbox = "auto"`` without bwrap).

Argument checks cannot stop code that an allowed program runs: ``pytest`` imports the
model's ``conftest.py``, ``find -exec`` and ``xargs`` start anything, a build tool runs the
project's build script, ``git commit`` runs hooks. So without a sandbox only commands that are
known to read and print are allowed: a short list of programs, each with the options that make
it run or write something refused (``find -exec``/``-delete``, ``git`` subcommands other than
the reading ones, ``rg --pre``, ``sort -o``...). Everything else "can run code" and is refused
with a message that says how to install bubblewrap or to opt out with ``sandbox = "none"``.

Deny by default: a program missing from the list is refused, however harmless, because the
list cannot know what an unknown program does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

__all__ = ["READ_ONLY_PROGRAMS", "code_runner", "pattern_runs_code"]

# programs that read files and print, and never run another program or write a file given
# the options below; each maps to the options that would break that promise
READ_ONLY_PROGRAMS: dict[str, tuple[str, ...]] = {
    "cat": (),
    "head": (),
    "tail": (),
    "wc": (),
    "ls": (),
    "stat": (),
    "file": ("-C", "--compile"),
    "du": (),
    "pwd": (),
    "echo": (),
    "true": (),
    "false": (),
    "realpath": (),
    "basename": (),
    "dirname": (),
    "nl": (),
    "cut": (),
    "cmp": (),
    "md5sum": (),
    "sha1sum": (),
    "sha256sum": (),
    "tree": ("-o",),
    "diff": (),
    "grep": (),
    "egrep": (),
    "fgrep": (),
    "sort": ("-o", "--output", "--compress-program"),
    "rg": ("--pre", "--search-zip", "-z"),
    "find": (
        "-exec",
        "-execdir",
        "-ok",
        "-okdir",
        "-delete",
        "-fprint",
        "-fprint0",
        "-fprintf",
        "-fls",
    ),
    "git": (),  # by subcommand, below
}
# git subcommands that only read: no hooks, no ref, index or object writes
_GIT_READING = frozenset(
    {
        "status",
        "diff",
        "log",
        "show",
        "blame",
        "annotate",
        "shortlog",
        "ls-files",
        "ls-tree",
        "rev-parse",
        "rev-list",
        "describe",
        "cat-file",
        "grep",
        "whatchanged",
        "name-rev",
        "merge-base",
        "for-each-ref",
        "show-ref",
        "version",
    }
)
_GIT_LISTING = frozenset({"branch", "tag"})  # read-only only with listing options
_GIT_LIST_OPTIONS = frozenset(
    {"-l", "--list", "-a", "--all", "-r", "--remotes", "-v", "-vv", "--show-current"}
)


def _refused_option(arg: str, options: Sequence[str]) -> str | None:
    for option in options:
        if (
            arg == option
            or arg.startswith(option + "=")
            or (len(option) == 2 and option.startswith("-") and arg.startswith(option))
        ):
            return option
    return None


def _git_problem(argv: Sequence[str]) -> str | None:
    args = list(argv[1:])
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 1  # global options; shell.check_arguments already refuses the dangerous ones
    if i >= len(args):
        return None  # `git --version`, `git --help`
    sub = args[i]
    if sub in _GIT_READING:
        if sub == "diff" and "--ext-diff" in args:
            return "`git diff --ext-diff` runs an external diff program"
        return None
    if sub in _GIT_LISTING and all(a in _GIT_LIST_OPTIONS for a in args[i + 1 :]):
        return None
    return f"`git {sub}` can run hooks or change the repository (branches, index, objects)"


def code_runner(argv: Sequence[str]) -> str | None:
    """Why ``argv`` may run code or write files outside a sandbox, or None if it only reads.

    ``argv`` has passed ``BashPolicy.check`` and ``check_arguments`` already.
    """
    if not argv:
        return None
    program = argv[0]
    name = PurePosixPath(program).name
    if "/" in program or name not in READ_ONLY_PROGRAMS:
        return (
            f"`{name}` can run code (a test runner, interpreter or build tool imports or "
            "runs files the model wrote)"
        )
    if name == "git":
        return _git_problem(argv)
    for arg in argv[1:]:
        option = _refused_option(arg, READ_ONLY_PROGRAMS[name])
        if option is not None:
            return f"`{name} {option}` runs a program or writes a file"
    return None


def pattern_runs_code(pattern: str) -> bool:
    """Whether a Bash pattern (``pytest*``, ``git diff*``) may match a command that runs code.

    Used where commands cannot be checked one by one (Claude Code gets the patterns as
    permission rules): a pattern is safe only when its program is read-only and the rest of
    the pattern has no wildcard that could add a refused option.
    """
    words = pattern.split()
    if not words:
        return False
    if any(ch in words[0] for ch in "*?["):
        return True  # `py*` could be python
    fixed = [w for w in words if not any(ch in w for ch in "*?[")]
    if len(fixed) != len(words):
        return True  # `git diff*` could be `git diff --ext-diff`, `cat *` anything after
    return code_runner(words) is not None
