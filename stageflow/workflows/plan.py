"""Plans: the work items a plan stage's agent returns, and the one check every plan must pass.

A plan is ``{"items": [{id, title, description, depends_on, files, acceptance, agent?,
model?}, ...]}``. ``check_plan`` is pure and returns either the validated items or every
problem found, each worded for the model that wrote the plan (which item, which field, what is
valid). The same check runs in the API runner's ``submit_result``, on the Claude Code runner's
final JSON, and in the engine before it records the plan and again before it expands it: the
engine never trusts a runner. ``plan_schema`` is the JSON schema offered to the model as the
``plan`` field of ``submit_result``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stageflow.workflows.spec import PLAN_MODELS

__all__ = [
    "ITEM_ID",
    "PlanItem",
    "PlanLimits",
    "check_plan",
    "files_overlap",
    "plan_schema",
    "render_plan",
]

ITEM_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
_RESERVED = re.compile(r"decision[0-9]+")  # <stage>.decisionN are decision agents' stages
MAX_TITLE = 200
MAX_DESCRIPTION = 4000
MAX_LIST = 50  # files or acceptance criteria per item
MAX_ENTRY = 500  # characters of one file path or criterion
_KEYS = ("id", "title", "description", "depends_on", "files", "acceptance", "agent", "model")
MAX_PROBLEMS = 20  # problems told to the model; the rest are counted
MAX_SHOWN = 60  # characters of a value the model wrote, quoted back in a problem
MAX_NAMES = 12  # names listed in one problem (unknown fields, known item ids)
HARD_ITEMS = 200  # past this many items (4x the highest max_items), no item is read at all
MAX_PLAN_CHARS = 100_000  # the whole plan's text: it is in the log twice and in every brief


class PlanItem(BaseModel):
    """One validated work item."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str
    description: str = ""
    depends_on: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    acceptance: list[str] = Field(default_factory=list)
    agent: str | None = None
    model: str | None = None


class PlanLimits(BaseModel):
    """What a plan may contain, resolved by the engine from the plan stage and its ``for_each``
    stage: at most ``max_items`` items, agents from ``agents`` (``default_agent`` when an item
    names none), ``item_usd`` per item for the budget check (None: no estimate) and the
    ``models`` an item may name."""

    model_config = ConfigDict(frozen=True)

    max_items: int
    agents: tuple[str, ...] = ()
    default_agent: str | None = None
    item_usd: float | None = None
    models: tuple[str, ...] = PLAN_MODELS


def plan_schema(limits: PlanLimits) -> dict[str, Any]:
    """The JSON schema of a plan, as offered to the model in ``submit_result``."""
    agent: dict[str, Any] = {
        "type": "string",
        "description": f"who does the item (default: {limits.default_agent or 'the stage agent'})",
    }
    if limits.agents:
        agent["enum"] = list(limits.agents)
    listed = {"type": "array", "items": {"type": "string"}}
    item = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "pattern": ITEM_ID.pattern, "description": "e.g. t1"},
            "title": {"type": "string"},
            "description": {"type": "string", "description": "what to do, for a fresh agent"},
            "depends_on": {**listed, "description": "ids of items that must finish first"},
            "files": {
                **listed,
                "description": "paths it will touch; items sharing one never run at once",
            },
            "acceptance": {**listed, "description": "acceptance criteria"},
            "agent": agent,
            "model": {
                "type": "string",
                "enum": list(limits.models),
                "description": "optional model override",
            },
        },
        "required": ["id", "title", "description", "depends_on", "files", "acceptance"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "description": (
            f"The work items: 1 to {limits.max_items}, small enough for one short session each, "
            "independent where possible (independent items run in parallel); no cycles."
        ),
        "properties": {
            "items": {"type": "array", "minItems": 1, "maxItems": limits.max_items, "items": item}
        },
        "required": ["items"],
        "additionalProperties": False,
    }


def _shown(value: object) -> str:
    """``value`` quoted back to the model, cut to ``MAX_SHOWN`` characters."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _listed(names: Sequence[str]) -> str:
    """``names`` joined, at most ``MAX_NAMES`` of them (each cut), then how many more."""
    shown = [n if len(n) <= MAX_SHOWN else n[: MAX_SHOWN - 3] + "..." for n in names[:MAX_NAMES]]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _bounded(wrong: list[str]) -> list[str]:
    """At most ``MAX_PROBLEMS`` problems, the last saying how many were left out."""
    if len(wrong) <= MAX_PROBLEMS:
        return wrong
    left = len(wrong) - (MAX_PROBLEMS - 1)
    return [*wrong[: MAX_PROBLEMS - 1], f"... and {left} more problem(s) of the same kinds"]


def _kind(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return names.get(type(value), type(value).__name__)


def _strings(item: Mapping[str, Any], key: str, where: str, wrong: list[str]) -> list[str]:
    value = item.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        wrong.append(f"{where}.{key} must be a list of strings (got {_kind(value)})")
        return []
    if len(value) > MAX_LIST:
        wrong.append(f"{where}.{key} has {len(value)} entries; at most {MAX_LIST}")
    long = [v for v in value if len(v) > MAX_ENTRY]
    if long:
        wrong.append(f"{where}.{key}: entries may be at most {MAX_ENTRY} characters")
    return [v.strip() for v in value if v.strip()]


def _text(item: Mapping[str, Any], key: str, where: str, limit: int, wrong: list[str]) -> str:
    value = item.get(key, "")
    if not isinstance(value, str):
        wrong.append(f"{where}.{key} must be a string (got {_kind(value)})")
        return ""
    if len(value) > limit:
        wrong.append(f"{where}.{key} is {len(value)} characters; at most {limit}")
    return value.strip()


def _item(raw: object, n: int, limits: PlanLimits, wrong: list[str]) -> PlanItem | None:
    where = f"items[{n}]"
    if not isinstance(raw, dict):
        wrong.append(f"{where} must be an object (got {_kind(raw)})")
        return None
    before = len(wrong)
    item_id = raw.get("id")
    if not isinstance(item_id, str) or not ITEM_ID.fullmatch(item_id):
        wrong.append(
            f"{where}.id must be a short identifier such as 't1' (a letter, then letters, "
            f"digits or _, at most 40), got {_shown(item_id)}"
        )
        item_id = None
    elif _RESERVED.fullmatch(item_id):
        wrong.append(
            f"{where}.id {item_id!r} is reserved for the stage's decision agent; choose another"
        )
        item_id = None
    else:
        where = f"{where} ({item_id})"
    unknown = sorted(str(k) for k in raw if k not in _KEYS)
    if unknown:
        fields = ", ".join(_KEYS)
        wrong.append(f"{where}: unknown field(s) {_listed(unknown)}; the fields are {fields}")
    title = _text(raw, "title", where, MAX_TITLE, wrong)
    if not title and isinstance(raw.get("title", ""), str):
        wrong.append(f"{where}.title is required: one line saying what the item delivers")
    description = _text(raw, "description", where, MAX_DESCRIPTION, wrong)
    depends_on = _strings(raw, "depends_on", where, wrong)
    files = _strings(raw, "files", where, wrong)
    for path in files:
        if path.startswith(("/", "~")) or ".." in path.replace("\\", "/").split("/"):
            wrong.append(f"{where}.files: {_shown(path)} must be a path inside the project")
    acceptance = _strings(raw, "acceptance", where, wrong)
    agent = raw.get("agent")
    if agent is not None and (not isinstance(agent, str) or agent not in limits.agents):
        allowed = ", ".join(limits.agents) or "none"
        wrong.append(f"{where}.agent {_shown(agent)} is not allowed; allowed agents: {allowed}")
    model = raw.get("model")
    allowed_models = {m.lower() for m in limits.models}
    if model is not None and (not isinstance(model, str) or model.lower() not in allowed_models):
        listed = ", ".join(limits.models) or "none (leave model out)"
        wrong.append(
            f"{where}.model {_shown(model)} is not allowed; allowed models: {listed} "
            "(leave it out for the stage's model)"
        )
    if len(wrong) > before or item_id is None:
        return None
    return PlanItem(
        id=item_id,
        title=title,
        description=description,
        depends_on=list(dict.fromkeys(depends_on)),
        files=list(dict.fromkeys(files)),
        acceptance=acceptance,
        agent=agent if isinstance(agent, str) else None,
        model=model if isinstance(model, str) else None,
    )


def _cycle(items: Sequence[PlanItem]) -> list[str] | None:
    """One dependency cycle (``[a, b, a]``), or None."""
    deps = {i.id: list(i.depends_on) for i in items}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    for root, first in deps.items():
        if state.get(root):
            continue
        path: list[str] = [root]
        todo = [iter(first)]
        state[root] = 1
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                todo.pop()
                state[path.pop()] = 2
            elif nxt not in deps:
                continue
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                todo.append(iter(deps[nxt]))
    return None


def check_plan(
    raw: object, limits: PlanLimits, *, remaining_usd: float | None = None
) -> tuple[PlanItem, ...] | list[str]:
    """The validated items of ``raw``, or every problem found (each names the item and field).

    Checked: the shape of every item, unique ids, ``depends_on`` naming other items, no cycles,
    at most ``max_items`` items, agents from the allowed list, and, when ``remaining_usd`` and
    ``limits.item_usd`` are known, that the items fit in the budget left.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("items"), list):
        got = _kind(raw.get("items")) if isinstance(raw, dict) else _kind(raw)
        return [f"the plan must be an object with 'items', a list of work items (got {got})"]
    wrong: list[str] = []
    extra = sorted(str(k) for k in raw if k != "items")
    if extra:
        wrong.append(f"unknown plan field(s) {_listed(extra)}; a plan has only 'items'")
    raw_items: list[object] = raw["items"]
    if not raw_items:
        return ["the plan has no items; a plan needs at least one work item"]
    if len(raw_items) > limits.max_items:
        wrong.append(
            f"the plan has {len(raw_items)} items; this stage allows at most {limits.max_items} "
            "(max_items): merge related items"
        )
        if len(raw_items) > max(HARD_ITEMS, limits.max_items):
            return wrong  # far too many: reading each would only bury the one problem
    checked = [_item(raw_item, n, limits, wrong) for n, raw_item in enumerate(raw_items)]
    items = [it for it in checked if it is not None]
    seen: dict[str, int] = {}
    for n, raw_item in enumerate(raw_items):
        item_id = raw_item.get("id") if isinstance(raw_item, dict) else None
        if isinstance(item_id, str):
            if item_id in seen:
                first = seen[item_id]
                wrong.append(f"duplicate item id {_shown(item_id)} (items[{first}] and items[{n}])")
            seen.setdefault(item_id, n)
    known = _listed(list(seen)) or "none"
    for item in items:
        for dep in item.depends_on:
            if dep == item.id:
                wrong.append(f"item '{item.id}' depends on itself")
            elif dep not in seen:
                wrong.append(
                    f"item '{item.id}' depends on unknown item {_shown(dep)}; the items are {known}"
                )
    size = sum(
        len(i.title) + len(i.description) + sum(map(len, (*i.files, *i.acceptance))) for i in items
    )
    if size > MAX_PLAN_CHARS:
        wrong.append(
            f"the plan is {size} characters of text; at most {MAX_PLAN_CHARS}: shorten the "
            "descriptions and criteria (the agents read the code themselves)"
        )
    if not wrong:
        cycle = _cycle(items)
        if cycle is not None:
            wrong.append(f"dependency cycle: {' -> '.join(cycle)}; items must form a DAG")
    if limits.item_usd and remaining_usd is not None and not wrong:
        need = round(len(items) * limits.item_usd, 6)
        if need > remaining_usd + 1e-9:
            fits = int(remaining_usd // limits.item_usd) if limits.item_usd else 0
            wrong.append(
                f"the plan's {len(items)} items at ${limits.item_usd:.2f} each need "
                f"${need:.2f}, but the run has ${remaining_usd:.2f} left: plan at most {fits} "
                "item(s), or the run needs a higher budget"
            )
    return _bounded(wrong) if wrong else tuple(items)


def render_plan(items: Sequence[PlanItem]) -> str:
    """The ``plan`` artifact: the validated items as Markdown, for humans and later stages."""
    lines = [f"# Plan: {len(items)} work item(s)", ""]
    lines += ["| item | title | after | agent | files |", "|---|---|---|---|---|"]
    for it in items:
        after = ", ".join(it.depends_on) or "-"
        files = ", ".join(f"`{f}`" for f in it.files) or "-"
        lines.append(f"| {it.id} | {it.title} | {after} | {it.agent or '-'} | {files} |")
    for it in items:
        lines += ["", f"## {it.id}: {it.title}", ""]
        if it.description:
            lines += [it.description, ""]
        if it.acceptance:
            lines += ["Acceptance criteria:", *[f"- {a}" for a in it.acceptance]]
    return "\n".join(lines).rstrip() + "\n"


def _norm(path: str) -> str:
    path = path.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path.rstrip("/") if path not in ("", "/") else path


def files_overlap(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two declared file lists may touch the same file: a path in both, a directory
    and a path under it, or a glob (``src/*.py``) matching the other side."""
    left, right = [_norm(p) for p in a if p.strip()], [_norm(p) for p in b if p.strip()]
    for x in left:
        for y in right:
            if x == y or x in ("", ".") or y in ("", "."):
                return True
            if y.startswith(x + "/") or x.startswith(y + "/"):
                return True
            if fnmatch.fnmatchcase(x, y) or fnmatch.fnmatchcase(y, x):
                return True
    return False
