"""What deserves a notification, from the events a driver appends (pure)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from stageflow import events as ev
from stageflow.engine.state import RunState
from stageflow.notify.config import NoticeKind

__all__ = ["Notice", "notice_for"]


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    run_id: str
    template: str
    task: str
    stage: str | None
    needed: str  # what is needed, in one sentence
    link: str | None

    @property
    def text(self) -> str:
        """One line for chat (Slack's ``text``) and desktop bodies."""
        where = f" <{self.link}|open in the dashboard>" if self.link else ""
        return f"stageflow {self.template} {self.run_id}: {self.needed}{where}"

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON: the notice's fields plus Slack-compatible ``text``."""
        return {"text": self.text, **asdict(self), "run": self.run_id}


def notice_for(env: ev.Envelope, state: RunState, dashboard_url: str | None) -> Notice | None:
    """The notice ``env`` calls for, or None."""
    e = env.event
    link = f"{dashboard_url.rstrip('/')}/runs/{state.run_id}" if dashboard_url else None

    def make(kind: NoticeKind, stage: str | None, needed: str) -> Notice:
        return Notice(kind, state.run_id, state.template, state.task, stage, needed, link)

    # an attempt that finishes at an approval gate puts the stage up for review
    finished = isinstance(e, ev.AttemptFinished) and (
        e.stage in state.stages and state.stages[e.stage].status == "awaiting_approval"
    )
    if finished or isinstance(e, ev.ApprovalRequested):
        stage = e.stage  # type: ignore[union-attr]
        attempt = state.stages[stage].attempt if stage in state.stages else None
        return make(
            "human_needed",
            stage,
            f"approve or reject the result of stage '{stage}'"
            + (f" (attempt {attempt})" if attempt else ""),
        )
    # an escalation reaching a person (a failure the orchestrator handed over, used-up rework
    # rounds, a gate a decision agent passed on): only a person decides it
    to_person = (isinstance(e, ev.StageEscalated) and e.to == "human") or (
        isinstance(e, ev.EscalationDecided) and e.decision == "human"
    )
    if to_person and isinstance(e, ev.StageEscalated | ev.EscalationDecided):
        stage = e.stage
        st = state.stages.get(stage)
        why = (st.reason if st is not None and st.reason else "escalated")[:300]
        return make("human_needed", stage, f"decide stage '{stage}' ({why})")
    if isinstance(e, ev.GateBlocked):
        return make(
            "human_needed", e.stage, f"decide the gate of stage '{e.stage}' ({e.condition})"
        )
    if isinstance(e, ev.RunCompleted):
        return make("run_ended", None, "the run completed")
    if isinstance(e, ev.RunFailed):
        return make("run_ended", None, f"the run failed: {e.reason}")
    if isinstance(e, ev.RunCancelled):
        return make("run_ended", None, f"the run was cancelled: {e.reason}")
    if isinstance(e, ev.RunPaused) and e.budget_exceeded:
        spent = f"${state.spent_usd:.4f}"
        cap = f" of ${state.budget_usd:.2f}" if state.budget_usd is not None else ""
        return make(
            "budget_paused",
            None,
            f"the run paused at its budget ({spent}{cap}); resume with a higher one",
        )
    return None
