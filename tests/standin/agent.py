"""A scripted, deterministic "stage agent": the stand-in's default behaviour.

It reads each request and acts like a stageflow stage agent, as a pure function of the request:

1. ``glob``: list the workspace (``Glob``);
2. ``read``: read up to ``read_files`` files per turn (parallel tool use), for up to
   ``read_turns`` turns: files the brief names first, then what the glob found;
3. ``write``: write ``notes/<stage>.md``;
4. ``submit``: call ``submit_result`` with status, summary, an artifact for every required name
   and structured ``outputs`` (``passed`` for a tester, ``approved`` for a reviewer, and any
   ``outputs.<key> == true`` the brief mentions); a plan stage (its ``submit_result`` has a
   ``plan`` property, or its brief a "## Your plan" section) also sends ``plan_items``' plan.

A step whose tool is not offered (or, for ``read``, with nothing to read) is skipped. Where it
is comes only from the **last user turn**: no tool results = a fresh brief (step 1); results of
a step's tool = the next step; a refused ``submit_result`` = submit again, adding the artifact
names the refusal mentions; an accepted one followed by new text = the next stage of a single
long conversation (the benchmark's baseline). Retries therefore never push it off course, and
its turn count and reply sizes do not depend on how long the conversation already is.

Without a ``submit_result`` tool (the Claude Code runner) the last step is a text answer that
ends with a fenced ``json`` block when the system prompt or brief asks for one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tests.standin.reading import (
    GLOB_LINE_RE,
    PATH_RE,
    STAGE_RE,
    SUBMIT_TOOL,
    WORKSPACE_RE,
    StageInfo,
    brief_index,
    default_outputs,
    last_tool_results,
    refusal_names,
    required_from_schema,
    stage_info,
    tool_map,
    user_text,
)
from tests.standin.wire import Json

STEPS = ("glob", "read", "write", "submit")
STEP_TOOLS = {"glob": "glob", "read": "read", "write": "write"}  # step -> tool (lower case)


# -- what it writes --------------------------------------------------------------------------

_PHRASES = (
    "keep the public interface unchanged and add the new behaviour behind it",
    "validate every input at the boundary and report errors with the offending value",
    "cover the happy path, the empty case and one malformed input with tests",
    "log at debug level only; the command's output stays machine-readable",
    "document the new option in the README and in the command's help text",
    "reuse the existing helpers instead of adding a second code path",
    "measure the change on the largest fixture before and after",
    "roll back by reverting the single commit; no data migration is involved",
    "name the acceptance criteria so the tester can check each one",
    "list the files to change and what changes in each",
)


def filler(seed: str, chars: int) -> str:
    """Deterministic bullet lines, about ``chars`` characters (cut at a line boundary)."""
    lines: list[str] = []
    size = 0
    n = 0
    while size < chars:
        digest = hashlib.sha256(f"{seed}:{n}".encode()).digest()
        line = f"{n + 1}. {_PHRASES[digest[0] % len(_PHRASES)]} (ref {digest[1:4].hex()})."
        lines.append(line)
        size += len(line) + 1
        n += 1
    return "\n".join(lines)


def artifact_text(info: StageInfo, name: str, chars: int) -> str:
    """A realistic artifact: title, the inputs seen, then numbered points up to ``chars``."""
    head = [
        f"# {name.replace('_', ' ').title()} for: {info.task}",
        "",
        f"Stage `{info.stage}`, written by the {info.role} agent.",
        "",
        "## Inputs seen",
        *[f"- upstream artifact `{u}`" for u in info.upstream],
        *[f"- file `{f}`" for f in info.files_read],
        *([] if info.upstream or info.files_read else ["- the task text only"]),
        "",
        "## Points",
    ]
    text = "\n".join(head)
    return text + "\n" + filler(f"{info.stage}/{name}", max(200, chars - len(text)))


PLAN_SECTION = "## Your plan"


def plan_items(info: StageInfo, parallel: int = 2) -> list[Json]:
    """A plan stage's items: ``parallel`` independent items on files of their own, then one
    that builds on all of them."""
    items: list[Json] = [
        {
            "id": f"t{n}",
            "title": f"Part {n} of: {info.task[:60]}",
            "description": f"Implement part {n} in `src/part{n}.py`, with its tests.",
            "depends_on": [],
            "files": [f"src/part{n}.py", f"tests/test_part{n}.py"],
            "acceptance": [f"part {n} is covered by tests"],
        }
        for n in range(1, parallel + 1)
    ]
    items.append(
        {
            "id": f"t{parallel + 1}",
            "title": "Wire the parts together",
            "description": "Connect the parts and document the change.",
            "depends_on": [str(i["id"]) for i in items],
            "files": ["src/main.py", "README.md"],
            "acceptance": ["an end-to-end test passes"],
        }
    )
    return items


# -- the behaviour ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentConfig:
    """Knobs of the scripted agent. ``steps`` run one per turn, in order."""

    steps: tuple[str, ...] = STEPS
    glob_pattern: str = "**/*.py"
    read_files: int = 2  # Read calls per read turn (parallel tool use)
    read_turns: int = 1  # turns spent reading, while unread files remain
    artifact_chars: int = 2200
    note_chars: int = 900
    notes_dir: str = "notes"
    status: str = "passed"
    submit_tool: str = SUBMIT_TOOL
    outputs: Callable[[StageInfo], Json] = default_outputs
    required_artifacts: Callable[[Json], list[str]] = required_from_schema
    say: bool = True  # a short text block before each tool call, as models do
    plan: Callable[[StageInfo], list[Json]] = plan_items  # a plan stage's items


@dataclass(frozen=True)
class Turn:
    """The agent's reply: content blocks and a stop reason."""

    content: list[Json]
    stop_reason: str = "end_turn"


def _arg(tool: Json, candidates: Sequence[str], default: str) -> str:
    props = (tool.get("input_schema") or {}).get("properties") or {}
    return next((c for c in candidates if c in props), default)


def _absolute(tool: Json, key: str) -> bool:
    props = (tool.get("input_schema") or {}).get("properties") or {}
    return "absolute" in str((props.get(key) or {}).get("description", "")).lower()


def _use_id(messages: Sequence[Json], index: int, name: str) -> str:
    # unique within a conversation (each assistant turn sees a different message count)
    digest = hashlib.sha256(f"{len(messages)}:{index}:{name}".encode()).hexdigest()
    return f"toolu_{digest[:24]}"


class StageAgent:
    """``StageAgent(config).turn(body) -> Turn``: the next assistant turn for a request."""

    def __init__(self, config: AgentConfig | None = None) -> None:
        self.config = config or AgentConfig()

    def turn(self, body: Json) -> Turn:
        """The reply to one ``/v1/messages`` request body."""
        cfg = self.config
        tools = tool_map(body)
        messages = body.get("messages") or []
        if not tools or not messages:
            return self._final_text(body)
        results = last_tool_results(messages)
        last_text = user_text(messages[-1]) if messages[-1].get("role") == "user" else ""
        fresh = bool(last_text.strip()) and (len(messages) == 1 or bool(STAGE_RE.search(last_text)))
        submit = next((r for r in results if r.name == cfg.submit_tool.lower()), None)
        steps = [*cfg.steps, *(() if "submit" in cfg.steps else ("submit",))]
        if submit is not None and submit.is_error:
            return self._submit(body, extra=refusal_names(submit.text))
        if fresh:
            index = 0  # a brief: the first stage, or the next one of a long conversation
        elif submit is not None:
            return Turn([{"type": "text", "text": "Submitted."}], "end_turn")
        elif results:
            done = [steps.index(r.name) for r in results if r.name in steps]
            # results of tools outside the script (Grep, Edit, ...): time to finish
            index = max(done) + 1 if done else len(steps) - 1
            if "read" in steps and index == steps.index("read") + 1 and self._read_more(body):
                index -= 1  # another read turn: counted from this stage's turns, not a counter
        else:
            index = len(steps) - 1  # a nudge ("finish by calling submit_result")
        for step in steps[index:]:
            turn = self._step(step, body, tools)
            if turn is not None:
                return turn
        return self._submit(body)

    # -- steps -----------------------------------------------------------------------------

    def _step(self, step: str, body: Json, tools: dict[str, Json]) -> Turn | None:
        if step == "submit":
            return self._submit(body)
        tool = tools.get(STEP_TOOLS.get(step, step))
        if tool is None:
            return None
        info = stage_info(body)
        messages = body.get("messages") or []
        if step == "glob":
            calls = [{_arg(tool, ("pattern",), "pattern"): self.config.glob_pattern}]
            say = "Let me look at the project layout first."
        elif step == "read":
            key = _arg(tool, ("file_path", "path"), "file_path")
            calls = [{key: path} for path in self._files_to_read(body, info)]
            say = "Reading the relevant files."
        elif step == "write":
            key = _arg(tool, ("file_path", "path"), "file_path")
            path = f"{self.config.notes_dir}/{info.stage}.md"
            root = WORKSPACE_RE.search(info.brief)
            if root and _absolute(tool, key):  # Claude Code's file tools want absolute paths
                path = f"{root.group(1).rstrip('/')}/{path}"
            note = artifact_text(info, "notes", self.config.note_chars)
            calls = [{key: path, _arg(tool, ("content",), "content"): note}]
            say = "Writing my working notes."
        else:
            return None
        if not calls:
            return None
        name = str(tool["name"])
        blocks: list[Json] = [{"type": "text", "text": say}] if self.config.say else []
        for i, arguments in enumerate(calls):
            blocks.append(
                {
                    "type": "tool_use",
                    "id": _use_id(messages, i, name),
                    "name": name,
                    "input": arguments,
                }
            )
        return Turn(blocks, "tool_use")

    def _files_to_read(self, body: Json, info: StageInfo) -> list[str]:
        """The next files to read: those the brief names, then what this stage's glob found,
        minus what this stage already read."""
        messages = body.get("messages") or []
        start = brief_index(messages)
        found: list[str] = []
        for i in range(start + 1, len(messages)):
            for outcome in last_tool_results(messages[: i + 1]):
                if outcome.name == "glob" and not outcome.is_error:
                    for line in outcome.text.splitlines():
                        match = GLOB_LINE_RE.match(line)
                        if match:
                            found.append(match.group(1))
        mentioned = PATH_RE.findall(info.brief)
        if found:
            mentioned = [m for m in mentioned if any(f.endswith(m) for f in found)]
        ordered = [f for f in dict.fromkeys([*mentioned, *found]) if f not in info.files_read]
        return ordered[: self.config.read_files]

    def _read_more(self, body: Json) -> bool:
        """True while this stage has read in fewer than ``read_turns`` turns and files remain."""
        messages = body.get("messages") or []
        turns = sum(
            1
            for m in messages[brief_index(messages) :]
            if m.get("role") == "assistant"
            and any(
                isinstance(b, dict)
                and b.get("type") == "tool_use"
                and str(b.get("name", "")).lower() == "read"
                for b in m.get("content") or []
            )
        )
        return turns < self.config.read_turns and bool(self._files_to_read(body, stage_info(body)))

    def _artifacts(self, body: Json, info: StageInfo, extra: Sequence[str] = ()) -> list[str]:
        tool = tool_map(body).get(self.config.submit_tool.lower(), {})
        names = [*self.config.required_artifacts(tool), *info.produces, *extra]
        return list(dict.fromkeys(names))

    def submission(self, body: Json, extra: Sequence[str] = ()) -> Json:
        """The ``submit_result`` arguments this agent sends for the request's stage."""
        info = stage_info(body)
        names = self._artifacts(body, info, extra)
        args: Json = {
            "status": self.config.status,
            "summary": f"Stage {info.stage} done by the {info.role} agent: "
            f"{', '.join(names) or 'no artifacts'} written.",
            "artifacts": {n: artifact_text(info, n, self.config.artifact_chars) for n in names},
            "outputs": self.config.outputs(info),
        }
        tool = tool_map(body).get(self.config.submit_tool.lower(), {})
        props = (tool.get("input_schema") or {}).get("properties") or {}
        if "plan" in props or PLAN_SECTION in info.brief:
            args["plan"] = {"items": self.config.plan(info)}
        return args

    def _submit(self, body: Json, extra: Sequence[str] = ()) -> Turn:
        tools = tool_map(body)
        tool = tools.get(self.config.submit_tool.lower())
        if tool is None:
            return self._final_text(body)
        messages = body.get("messages") or []
        args = self.submission(body, extra)
        blocks: list[Json] = []
        if self.config.say:
            blocks.append({"type": "text", "text": "Submitting the result."})
        blocks.append(
            {
                "type": "tool_use",
                "id": _use_id(messages, 0, str(tool["name"])),
                "name": str(tool["name"]),
                "input": args,
            }
        )
        return Turn(blocks, "tool_use")

    def _final_text(self, body: Json) -> Turn:
        info = stage_info(body)
        wants_json = "```json" in info.system or "```json" in info.brief
        text = f"Stage {info.stage} is done."
        if wants_json:
            fenced = json.dumps(self.submission(body), indent=1)
            text += f"\n\n```json\n{fenced}\n```"
        return Turn([{"type": "text", "text": text}], "end_turn")
