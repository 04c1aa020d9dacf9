"""``template="auto"``: the orchestrator chooses the template for a free-text task.

The question is asked before the run exists, so it is capped on its own: a meter holding
``[orchestrator] budget_usd`` (the request's worst case is reserved against it). The choice,
who made it and what it cost go on the run's ``run_created`` (``chosen``), where status and
the orchestration spend read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stageflow.config import Settings
from stageflow.engine.runner import AttemptMeter
from stageflow.errors import InvalidArgument
from stageflow.subagents.debate.build import ClientFactory, make_orchestrator
from stageflow.subagents.orchestrator.questions import TemplateAnswer, template_question
from stageflow.subagents.select import resolve_runner_name

__all__ = ["AUTO", "choose_template"]

AUTO = "auto"


async def choose_template(
    settings: Settings,
    catalog: Mapping[str, str],
    task: str,
    *,
    client: ClientFactory | None = None,
) -> dict[str, Any]:
    """``{template, reason, by, model, fallback, cost_usd}`` for ``task`` among ``catalog``
    (name -> description). An answer naming no template of the catalog falls back to the rules.
    """
    if not catalog:
        raise InvalidArgument("template='auto': no template is available to choose from")
    if not task.strip():
        raise InvalidArgument("template='auto' needs a task to choose a template for")
    offline = resolve_runner_name(settings) != "anthropic" and client is None
    orchestrator = make_orchestrator(settings, offline=offline, client=client)
    question = template_question(task.strip(), catalog)
    meter = AttemptMeter(budget_usd=orchestrator.options.budget_usd)
    try:
        decided = await orchestrator.ask(question, meter)
    finally:
        await orchestrator.aclose()
    answer: TemplateAnswer = decided.answer
    by, fallback = decided.by, decided.fallback
    if answer.template not in catalog:
        fallback = f"the model chose '{answer.template}', which is not a template here"
        answer, by = question.rules(), "rules"
    return {
        "template": answer.template,
        "reason": answer.reason,
        "by": by,
        "model": decided.model,
        "fallback": fallback,
        "cost_usd": round(meter.usage.cost_usd, 10),
    }
