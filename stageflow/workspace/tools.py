"""The workspace tools as the model sees them: names, Messages API definitions, dispatch.

Agent definitions list tools by their Claude Code names (``Read, Grep, Glob, Bash(git diff:*)``).
``normalize_tool_names`` maps them onto the six tools stageflow implements; tools it does not
implement (WebFetch, Task, ``mcp__*`` ...) are dropped with a debug log, since an agent written
for Claude Code should still load and run here. Argument names follow Claude Code's
(``file_path``, ``old_string``, ``replace_all`` ...) because models know them.

``call_workspace_tool`` checks the arguments before calling ``Workspace``: a missing or
wrong-typed argument becomes a ToolError that names it, so the model can fix its call. Any
other failure inside a tool is a ToolError too. File tools run in worker threads that a stage
timeout or cancel abandons at once, with a flag that stops a write not yet made. So does
a string that cannot be encoded as UTF-8: JSON may carry a lone surrogate escape (``\ud800``),
which no file name, file content or command line can hold.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from stageflow.errors import ToolError
from stageflow.workspace.root import SearchStop, Workspace

__all__ = [
    "FILE_TOOLS",
    "TOOL_NAMES",
    "call_workspace_tool",
    "normalize_tool_names",
    "tool_definitions",
]

log = logging.getLogger(__name__)

TOOL_NAMES = ("Read", "Write", "Edit", "Glob", "Grep", "Bash")
FILE_TOOLS = TOOL_NAMES[:5]

# Claude Code (and common lowercase) names -> ours; keys are lower-case
_ALIASES: dict[str, str] = {
    "read": "Read",
    "notebookread": "Read",
    "write": "Write",
    "edit": "Edit",
    "multiedit": "Edit",
    "notebookedit": "Edit",
    "glob": "Glob",
    "ls": "Glob",
    "grep": "Grep",
    "bash": "Bash",
}


def normalize_tool_names(agent_tools: Sequence[str], *, bash_allowed: bool) -> list[str]:
    """The tools to offer for an agent's ``tools`` list, in ``TOOL_NAMES`` order.

    An empty list means every file tool (as in Claude Code, where omitting ``tools`` inherits
    all of them). Bash is included only when ``bash_allowed`` (the stage has a policy with
    patterns); a ``Bash(pattern)`` specifier counts as Bash, its pattern is not a permission.
    """
    if not any(t.strip() for t in agent_tools):
        wanted = set(TOOL_NAMES)
    else:
        wanted = set()
        for raw in agent_tools:
            name = raw.strip().split("(", 1)[0].strip()
            ours = _ALIASES.get(name.lower())
            if ours is None:
                if name:
                    log.debug("tool %r is not available to stageflow subagents; dropped", raw)
                continue
            wanted.add(ours)
    if not bash_allowed:
        wanted.discard("Bash")
    return [name for name in TOOL_NAMES if name in wanted]


_PATH_NOTE = "relative to the workspace root"

_DEFINITIONS: dict[str, dict[str, Any]] = {
    "Read": {
        "description": (
            "Read a text file. Returns lines numbered like `cat -n` (number, tab, text). "
            "Use offset/limit to page through long files."
        ),
        "properties": {
            "file_path": {"type": "string", "description": f"file path {_PATH_NOTE}"},
            "offset": {"type": "integer", "minimum": 1, "description": "first line (from 1)"},
            "limit": {"type": "integer", "minimum": 1, "description": "how many lines"},
        },
        "required": ["file_path"],
    },
    "Write": {
        "description": (
            "Create or overwrite a text file with the given content; parent directories are "
            "created. Prefer Edit for changes to an existing file."
        ),
        "properties": {
            "file_path": {"type": "string", "description": f"file path {_PATH_NOTE}"},
            "content": {"type": "string", "description": "the complete new file content"},
        },
        "required": ["file_path", "content"],
    },
    "Edit": {
        "description": (
            "Replace exact text in a file. old_string must match the file exactly (including "
            "indentation) and be unique unless replace_all is true."
        ),
        "properties": {
            "file_path": {"type": "string", "description": f"file path {_PATH_NOTE}"},
            "old_string": {"type": "string", "description": "the exact text to replace"},
            "new_string": {"type": "string", "description": "the replacement text"},
            "replace_all": {"type": "boolean", "description": "replace every occurrence"},
        },
        "required": ["file_path", "old_string", "new_string"],
    },
    "Glob": {
        "description": (
            "List files and directories matching a glob such as `**/*.py` or "
            "`src/*.{ts,tsx}` (`**` spans directories). Directories end with `/`."
        ),
        "properties": {
            "pattern": {"type": "string", "description": "glob, relative to path"},
            "path": {"type": "string", "description": f"directory to search, {_PATH_NOTE}"},
        },
        "required": ["pattern"],
    },
    "Grep": {
        "description": (
            "Search file contents with a Python regular expression. Returns `path:line: text` "
            "for each matching line; binary files are skipped."
        ),
        "properties": {
            "pattern": {"type": "string", "description": "regular expression"},
            "path": {"type": "string", "description": f"file or directory, {_PATH_NOTE}"},
            "glob": {"type": "string", "description": "only files matching this glob"},
            "ignore_case": {"type": "boolean"},
            "max_matches": {"type": "integer", "minimum": 1},
        },
        "required": ["pattern"],
    },
    "Bash": {
        "description": (
            "Run one command in the workspace root, without a shell: no pipes, redirections, "
            "`;`, `&&`, `$(...)` or globbing. Only commands matching the stage's allowed "
            "patterns run. The output ends with the exit code."
        ),
        "properties": {
            "command": {"type": "string", "description": "the command line"},
            "timeout": {"type": "number", "description": "seconds (capped by the stage)"},
            "description": {"type": "string", "description": "what the command does"},
        },
        "required": ["command"],
    },
}


def tool_definitions(
    names: Sequence[str], *, bash_allow: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Messages API tool definitions for ``names`` (ours, from ``normalize_tool_names``).

    ``bash_allow`` lists the patterns in Bash's description so the model need not guess.
    """
    out: list[dict[str, Any]] = []
    for name in names:
        spec = _DEFINITIONS.get(name)
        if spec is None:
            raise ValueError(f"unknown workspace tool {name!r}; known: {', '.join(TOOL_NAMES)}")
        description = spec["description"]
        if name == "Bash" and bash_allow:
            description += " Allowed patterns: " + ", ".join(f"`{p}`" for p in bash_allow) + "."
        out.append(
            {
                "name": name,
                "description": description,
                "input_schema": {
                    "type": "object",
                    "properties": spec["properties"],
                    "required": spec["required"],
                    "additionalProperties": False,
                },
            }
        )
    return out


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _checked(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` after checking names, presence and types against the tool's schema."""
    if not isinstance(args, dict):
        raise ToolError(f"{name} expects an object of arguments, got {type(args).__name__}")
    spec = _DEFINITIONS[name]
    props: dict[str, dict[str, Any]] = spec["properties"]
    unknown = sorted(set(args) - set(props))
    if unknown:
        raise ToolError(
            f"{name} got unknown argument(s) {', '.join(unknown)}; it accepts {', '.join(props)}"
        )
    missing = [key for key in spec["required"] if args.get(key) is None]
    if missing:
        raise ToolError(f"{name} needs the argument(s) {', '.join(missing)}")
    out: dict[str, Any] = {}
    for key, value in args.items():
        if value is None:
            continue
        kind = props[key]["type"]
        # bool is an int subclass; `offset: true` is a mistake, not line 1
        wrong = not isinstance(value, _TYPES[kind]) or (
            kind != "boolean" and isinstance(value, bool)
        )
        if wrong:
            raise ToolError(f"{name}: `{key}` must be a {kind}, got {type(value).__name__}")
        if isinstance(value, str):
            _check_encodable(name, key, value)
        minimum = props[key].get("minimum")
        if minimum is not None and value < minimum:
            raise ToolError(f"{name}: `{key}` must be at least {minimum}, got {value}")
        out[key] = value
    return out


def _check_encodable(name: str, key: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        # the message must not quote the value: it would carry the surrogate back to the API
        raise ToolError(
            f"{name}: `{key}` contains a character that is not valid Unicode (a lone surrogate "
            f"at position {exc.start}); send the text without it"
        ) from None


async def call_workspace_tool(ws: Workspace, name: str, args: dict[str, Any]) -> str:
    """Validate ``args`` for tool ``name`` and run it on ``ws``; ToolError for the model.

    Whatever goes wrong inside a tool reaches the model as a ToolError it can react to (a bug
    of ours is logged with its traceback too), never as an exception that fails the stage.
    """
    if name not in _DEFINITIONS:
        raise ToolError(f"unknown tool `{name}`; the workspace tools are {', '.join(TOOL_NAMES)}")
    a = _checked(name, args)
    try:
        return await _dispatch(ws, name, a)
    except (ToolError, OSError, UnicodeError):
        raise  # the tool loop words these itself
    except Exception as exc:
        log.exception("workspace tool %s failed unexpectedly", name)
        raise ToolError(
            f"{name} failed unexpectedly ({type(exc).__name__}: {str(exc)[:200]}); try the call "
            "another way"
        ) from None


async def _dispatch(ws: Workspace, name: str, a: dict[str, Any]) -> str:
    if name == "Bash":
        return await ws.bash(a["command"], timeout=a.get("timeout"))
    # file tools touch the disk; keep the event loop free while they walk or read
    if name == "Read":
        return await _in_thread(
            lambda _: ws.read(a["file_path"], offset=a.get("offset", 1), limit=a.get("limit", 2000))
        )
    if name == "Write":
        return await _in_thread(
            lambda cancelled: ws.write(a["file_path"], a["content"], cancelled=cancelled)
        )
    if name == "Edit":
        return await _in_thread(
            lambda cancelled: ws.edit(
                a["file_path"],
                a["old_string"],
                a["new_string"],
                replace_all=a.get("replace_all", False),
                cancelled=cancelled,
            )
        )
    stop = SearchStop()
    if name == "Glob":
        return await _search(
            stop, lambda: ws.glob(a["pattern"], path=a.get("path", "."), stop=stop)
        )
    return await _search(
        stop,
        lambda: ws.grep(
            a["pattern"],
            path=a.get("path", "."),
            glob=a.get("glob"),
            ignore_case=a.get("ignore_case", False),
            max_matches=a.get("max_matches", 200),
            stop=stop,
        ),
    )


async def _in_thread(work: Callable[[threading.Event], str]) -> str:
    """Run a file tool in a worker thread that gives way to cancellation at once.

    A thread cannot be interrupted: one stuck in the kernel (a hung network file system, a
    special file the checks missed) would hold the stage's timeout and a cancel until it
    returns. So the thread is abandoned on cancel (its late result is dropped) and ``cancelled``
    is set, so a thread that has not written yet never writes.
    """
    cancelled = threading.Event()
    try:
        return await anyio.to_thread.run_sync(work, cancelled, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        cancelled.set()
        raise


async def _search(stop: SearchStop, search: Callable[[], str]) -> str:
    """Run a Glob or Grep in a worker thread that gives way to cancellation at once.

    The thread is abandoned on cancel and ``stop`` kills the search's child process, so the
    thread ends soon after instead of matching on for as long as the pattern takes.
    """
    try:
        return await anyio.to_thread.run_sync(search, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        stop.stop()
        raise
