"""MCP resources: runs, artifacts, templates and agents, addressed by ``stageflow://`` URIs.

Every resource is a URI template whose handler reaches the server's lifespan state through
``ctx.request_context.lifespan_context``. Handlers only need a ``service`` attribute there
(``AppContext`` in ``stageflow.server.app`` has one), so this module stays independent of how the
server is assembled. Domain errors are mapped by ``stageflow.tools.errors.resource_errors``:
an unknown name becomes JSON-RPC -32602 whose message lists the known names, so a client can
correct itself; a broken template becomes -32603 naming its file and problems.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol, cast

import yaml
from mcp.server.mcpserver import Context, MCPServer

from stageflow.agents.definition import AgentDefinition
from stageflow.engine.service import Service
from stageflow.tools.errors import resource_errors

log = logging.getLogger(__name__)

# the URIs of these templates are built in stageflow.tools.results (run_uri, agent_uri ...)
SCHEME = "stageflow://"
RUN_URI = SCHEME + "runs/{run_id}"
ARTIFACT_URI = SCHEME + "runs/{run_id}/artifacts/{stage}/{name}"
TEMPLATE_URI = SCHEME + "templates/{name}"
AGENT_URI = SCHEME + "agents/{name}"


class _HasService(Protocol):
    """What the resources need from the lifespan state."""

    @property
    def service(self) -> Service: ...


def _service(ctx: Context[Any, Any]) -> Service:
    state = cast(_HasService, ctx.request_context.lifespan_context)
    return state.service


def register_resources(mcp: MCPServer) -> None:
    """Register the four ``stageflow://`` resource templates on ``mcp``.

    The artifact template is registered before the run template so the longer URI is matched
    first whatever the SDK's matching rules.
    """

    @mcp.resource(
        ARTIFACT_URI,
        name="artifact",
        title="Run artifact",
        description="The latest version of an artifact a stage produced (Markdown text).",
        mime_type="text/markdown",
    )
    async def read_artifact(run_id: str, stage: str, name: str, ctx: Context[Any, Any]) -> str:
        with resource_errors():
            record = await _service(ctx).store.get_artifact(run_id, stage, name)
        return record.content

    @mcp.resource(
        RUN_URI,
        name="run",
        title="Workflow run",
        description=(
            "One workflow run as JSON: status, stages with their states, attempts, models, "
            "tokens and cost, waiting gates and artifact previews."
        ),
        mime_type="application/json",
    )
    async def read_run(run_id: str, ctx: Context[Any, Any]) -> str:
        with resource_errors():
            view = await _service(ctx).view(run_id)
        return view.model_dump_json(indent=2)

    @mcp.resource(
        TEMPLATE_URI,
        name="template",
        title="Workflow template",
        description="A workflow template's validated spec as YAML (inputs, limits, stages).",
        mime_type="application/yaml",
    )
    def read_template(name: str, ctx: Context[Any, Any]) -> str:
        with resource_errors():
            catalog = _service(ctx).templates()
            spec = catalog.get(name)
            entry = catalog.entries[name]
        body = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        header = f"# template '{name}' from {entry.source} ({entry.layer} layer)\n"
        return header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)

    @mcp.resource(
        AGENT_URI,
        name="agent",
        title="Agent definition",
        description="An agent definition file: YAML front matter and the system prompt body.",
        mime_type="text/markdown",
    )
    def read_agent(name: str, ctx: Context[Any, Any]) -> str:
        with resource_errors():
            agent = _service(ctx).agents().get(name)
        return agent_text(agent)


def agent_text(agent: AgentDefinition) -> str:
    """The agent's file as written, or a rendering of it when the file cannot be read."""
    if agent.source:
        try:
            return Path(agent.source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            # the registry snapshot is still good; show that instead of failing the read
            log.info("cannot re-read agent file %s: %s", agent.source, exc)
    front: dict[str, Any] = {
        "name": agent.name,
        "description": agent.description,
        "model": agent.model,
    }
    if agent.tools:
        front["tools"] = ", ".join(agent.tools)
    optional = agent.model_dump(include={"max_turns", "budget_usd", "skills", "knowledge"})
    front.update({k: v for k, v in optional.items() if v not in (None, [], {})})
    front.update(agent.extra)
    head = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=100)
    return f"---\n{head}---\n{agent.system_prompt}\n"
