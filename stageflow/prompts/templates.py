"""MCP prompts: one per workflow template, so each template appears as a slash command.

A prompt is named after its template, carries the template's description and takes one optional
argument, ``task``. Rendering it yields a user message that tells the assistant to start the
workflow with ``workflow_start`` and then follow the calling protocol: poll ``workflow_status``,
relay every gate to the human, never decide a gate itself.

Claude Code (2.1.x) turns ``/mcp__stageflow__<template> add a --verbose flag`` into prompt
arguments by splitting on spaces, so ``task`` arrives as ``add``; it also sends the whole typed
text to the model, in a ``<command-args>`` block just before the prompt's message. The message
therefore tells the model that when such a block is there, its full text is the task. Clients
that pass arguments whole (or a user who types none) need no such help: the task is what
arrived, and without one the assistant asks the user for it.

Templates are files that change while the server runs, so ``sync_prompts`` re-reads the catalog
and adds, replaces and removes prompts to match; when it reports a change the caller announces
it with ``notify_prompts_changed`` (both protocol eras); ``refresh_prompts`` does both and is
what the tools call.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from typing import Annotated, Any

from mcp import MCPError
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Prompt
from mcp.types import INVALID_PARAMS
from pydantic import Field

from stageflow.agents.registry import load_agents
from stageflow.config import Settings
from stageflow.workflows.catalog import TemplateCatalog, load_catalog
from stageflow.workflows.spec import WorkflowSpec

log = logging.getLogger(__name__)

STATELESS_ERA = "2026-07-28"  # this era announces changes on subscriptions/listen streams only
TASK_DESCRIPTION = "What the workflow should accomplish, in the user's words"
COMMAND_ARGS_NOTE = (
    "If a <command-args> block comes just before this message, the task is that block's whole "
    "text, exactly as typed: some clients pass only the first word of a slash command's "
    "arguments here."
)

# per server: prompt name -> the text it was built from, to tell a changed template from the same
_managed: weakref.WeakKeyDictionary[MCPServer, dict[str, str]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class PromptSource:
    """What one template prompt is built from."""

    name: str
    description: str
    spec: WorkflowSpec

    @property
    def fingerprint(self) -> str:
        return f"{self.description}\0{instructions(self.spec, '')}"


def template_prompts(
    settings: Settings, catalog: TemplateCatalog | None = None
) -> dict[str, PromptSource]:
    """Prompt sources for every template that loads cleanly (broken ones get no prompt).

    ``catalog`` is the catalog to use (the server's live one); by default the files are read.
    """
    if catalog is None:
        agents = load_agents(settings.agent_dirs())
        catalog = load_catalog(settings.template_dirs(), agent_names=agents.names())
    out: dict[str, PromptSource] = {}
    for name, entry in catalog.entries.items():
        if entry.spec is None or entry.problems:
            continue
        description = entry.spec.description or f"Run the {name} workflow"
        out[name] = PromptSource(name, description, entry.spec)
    return out


def instructions(spec: WorkflowSpec, task: str) -> str:
    """The user message that starts ``spec`` for ``task`` and explains the calling protocol."""
    if task:
        lines = [
            f'Run the stageflow workflow "{spec.name}" for this task:',
            "",
            "<task>",
            task,
            "</task>",
            "",
            COMMAND_ARGS_NOTE,
        ]
    else:
        lines = [
            f'Run the stageflow workflow "{spec.name}". No task was given: if a '
            "<command-args> block comes just before this message, its whole text is the task; "
            "otherwise ask the user what the workflow should accomplish before starting it.",
        ]
    lines += ["", f"Stages: {_stage_outline(spec)}."]
    extra = [(k, v) for k, v in spec.inputs.items() if k != "task"]
    if extra:
        lines.append("Other inputs (pass them in `inputs` when the user gave them):")
        for key, inp in extra:
            need = "required" if inp.required and inp.default is None else "optional"
            lines.append(
                f"- {key} ({inp.type}, {need})"
                + (f": {inp.description}" if inp.description else "")
            )
    lines += [
        "",
        "Protocol:",
        f'1. Call the `workflow_start` tool with template="{spec.name}" and the task, '
        "unchanged. It returns a run id at once; the stages run in the background.",
        "2. Call `workflow_status` with that run id and wait_seconds=50, again and again, until "
        "the run is waiting, paused, completed, failed or cancelled. Give the user a short "
        "progress line now and then, not after every poll.",
        "3. When a stage waits at a gate, show the user what to review (read the artifacts it "
        "names with `workflow_artifact`), ask whether to approve or reject, and pass their "
        "answer to `workflow_approve` (a rejection needs their feedback). Never approve or "
        "reject on the user's behalf.",
        "4. If the run fails or stops at its budget, explain why from the status and offer "
        "`workflow_control` (retry, resume with a higher budget, or cancel).",
        "5. When the run completes, summarise the final artifacts for the user.",
    ]
    return "\n".join(lines)


def _stage_outline(spec: WorkflowSpec) -> str:
    parts = []
    for stage in spec.stages:
        marks = []
        if stage.approval is not None:
            marks.append("human approval")
        if stage.gate:
            marks.append(f"gate: {stage.gate}")
        if stage.for_each:
            marks.append(f"one sub-stage per item of {stage.for_each}'s plan")
        if stage.on_changes_requested:
            marks.append(f"changes requested go back to {stage.on_changes_requested.rework}")
        parts.append(stage.id + (f" ({'; '.join(marks)})" if marks else ""))
    return ", ".join(parts)


def _make_prompt(text: PromptSource) -> Prompt:
    def render(task: Annotated[str, Field(description=TASK_DESCRIPTION)] = "") -> str:
        return instructions(text.spec, task.strip())

    return Prompt.from_function(render, name=text.name, description=text.description)


def register_prompts(mcp: MCPServer, settings: Settings, *, sync: bool = True) -> None:
    """Add one prompt per loadable template to ``mcp`` (unless ``sync`` is False: the caller
    keeps them in step itself); an unknown prompt name (e.g. a template deleted after the client
    listed the prompts) is invalid params listing the known ones."""
    if sync:
        sync_prompts(mcp, settings)
    original = mcp.get_prompt

    async def get_prompt(name: str, arguments: Any = None, context: Any = None) -> Any:
        known = sorted(p.name for p in await mcp.list_prompts())
        if name not in known:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"unknown template '{name}'; known: {', '.join(known) or 'none'}",
            )
        return await original(name, arguments, context)

    # MCPServer routes prompts/get through self.get_prompt; an instance attribute wraps it
    setattr(mcp, "get_prompt", get_prompt)  # noqa: B010 - assigning to a method on purpose


def sync_prompts(
    mcp: MCPServer, settings: Settings, catalog: TemplateCatalog | None = None
) -> bool:
    """Make the template prompts match the templates; True if anything changed.

    Only prompts this module added are ever removed or replaced. Without ``catalog`` it reads
    the template and agent files (a few ms for the built-ins); from async code with many
    templates, consider ``anyio.to_thread.run_sync``.
    """
    wanted = template_prompts(settings, catalog)
    current = _managed.setdefault(mcp, {})
    changed = False
    for name in sorted(set(current) - set(wanted)):
        mcp.remove_prompt(name)
        del current[name]
        changed = True
    for name, text in sorted(wanted.items()):
        old = current.get(name)
        if old == text.fingerprint:
            continue
        if old is not None:
            mcp.remove_prompt(name)  # the SDK keeps the first of two prompts with one name
        mcp.add_prompt(_make_prompt(text))
        current[name] = text.fingerprint
        changed = True
    if changed:
        log.debug("template prompts now: %s", ", ".join(sorted(current)))
    return changed


async def notify_prompts_changed(ctx: Context[Any, Any]) -> None:
    """Tell clients of either protocol era that the prompt list changed."""
    if ctx.protocol_version != STATELESS_ERA:
        await ctx.session.send_prompt_list_changed()
    await ctx.notify_prompts_changed()


async def refresh_prompts(ctx: Context[Any, Any], settings: Settings) -> bool:
    """Bring the template prompts in step with the files and announce a change; True if any.

    Tools that read templates call it, so a template added while the server runs shows up as
    a prompt (slash command). A server with live definitions first catches up with the files
    (``refresh_definitions`` on its lifespan state), so a file saved a moment ago counts even
    before the file watcher reports it. A failure is logged and never fails the calling tool.
    """
    try:
        catch_up = getattr(ctx.request_context.lifespan_context, "refresh_definitions", None)
        if catch_up is not None:
            await catch_up()
        changed = sync_prompts(ctx.mcp_server, settings, _server_catalog(ctx))
        if changed:
            await notify_prompts_changed(ctx)
    except Exception:
        log.warning("could not refresh the template prompts", exc_info=True)
        return False
    return changed


def _server_catalog(ctx: Context[Any, Any]) -> TemplateCatalog | None:
    """The catalog the server's service uses (its live one under hot reload), if it has one,
    so a prompt matches what ``workflow_start`` would run."""
    service = getattr(ctx.request_context.lifespan_context, "service", None)
    templates = getattr(service, "templates", None)
    if templates is None:
        return None
    catalog = templates()
    return catalog if isinstance(catalog, TemplateCatalog) else None
