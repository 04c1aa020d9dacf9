"""The stand-in scripted as an agent that fails (or asks for changes) once, and as the
orchestrator answering the engine's failure and rework questions.

Agent requests go to the stand-in's scripted agent, except the first ``submit`` of the stages
named in ``fail_once`` (a ``submit_result`` with status ``failed``) and ``review_once`` (status
``changes_requested`` with findings). Orchestrator requests (the ``answer`` tool) answer
``verdict`` / ``target``, or 529 when ``down``.
"""

from __future__ import annotations

from typing import Any

from tests.standin.reading import stage_info
from tests.standin.wire import Json, Reply, error_reply, message, text_of, tool_use_block


def tools_of(body: Json) -> list[str]:
    return [str(t.get("name")) for t in body.get("tools") or []]


def prompt_of(body: Json) -> str:
    return text_of((body.get("messages") or [{}])[0].get("content"))


class TriageStandIn:
    """A ``respond`` hook (module docstring); ``asked`` keeps the orchestrator's prompts."""

    def __init__(self) -> None:
        self.fail_once: set[str] = set()
        self.review_once: set[str] = set()
        self.verdict: Any = "transient"
        self.target: Any = "implement"
        self.down = False
        self.asked: list[str] = []

    def __call__(self, body: Json) -> Reply | Json | None:
        names = tools_of(body)
        if "answer" in names:
            self.asked.append(prompt_of(body))
            if self.down:
                return error_reply(529, "overloaded_error", "Overloaded", None)
            prompt = self.asked[-1]
            if prompt.startswith("A stage attempt failed"):
                answer: Json = {"verdict": self.verdict, "reason": "stand-in triage"}
            else:
                answer = {"target": self.target, "reason": "stand-in routing"}
            return message([tool_use_block("toolu_answer", "answer", answer)], "tool_use")
        if "submit_result" not in names or len(body.get("messages") or []) > 1:
            return None
        stage = stage_info(body).stage
        if stage in self.fail_once:
            self.fail_once.discard(stage)
            return self._submit("failed", "the patch does not apply: report.py has moved")
        if stage in self.review_once:
            self.review_once.discard(stage)
            outputs = {"findings": ["the design picked the wrong CSV dialect"]}
            return self._submit("changes_requested", "the design is wrong", outputs)
        return None

    def _submit(self, status: str, summary: str, outputs: Json | None = None) -> Json:
        args = {"status": status, "summary": summary, "artifacts": {}, "outputs": outputs or {}}
        return message([tool_use_block("toolu_submit", "submit_result", args)], "tool_use")
