"""The debate runner: rounds of fresh-context participant turns, a moderator's verdict after
each, and a decision record in ADR form.

Every turn and every verdict is committed to the run's log (``request.journal``) as soon as it
is made, so a killed attempt's successor skips what was logged and continues at the turn it
was in. The moderator is the orchestrator's consensus question, on the debate's ``moderator``
model (else ``[orchestrator] model``): when it cannot answer validly, the rules do, and the
verdict says so. The engine's ``min``/``max`` rounds hold whatever the moderator proposes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from stageflow import events as ev
from stageflow.engine.runner import AttemptRequest, AttemptResult
from stageflow.subagents.debate.adr import render_adr, title_of
from stageflow.subagents.debate.protocol import Progress, enforce, turn_brief
from stageflow.subagents.debate.speakers import Speaker
from stageflow.subagents.orchestrator.ask import Orchestrator
from stageflow.subagents.orchestrator.questions import consensus_question
from stageflow.usage import Usage
from stageflow.workflows.debate_spec import DebateSpec, Participant

__all__ = ["DebateRunner"]

log = logging.getLogger(__name__)

Resolve = Callable[[str | None], str]  # a model name (alias, None = default) -> model id


class DebateRunner:
    """Runs ``debate:`` stages (see the module docstring)."""

    name = "debate"

    def __init__(
        self,
        speaker: Speaker,
        moderator: Orchestrator,
        *,
        resolve: Resolve,
        offline: bool = False,
    ) -> None:
        self.speaker = speaker
        self.moderator = moderator
        self.resolve = resolve
        self.offline = offline

    async def aclose(self) -> None:
        """Close the participants' and the moderator's model clients."""
        client = getattr(self.speaker, "client", None)
        if client is not None:
            await client.aclose()
        await self.moderator.aclose()

    def _model_of(self, request: AttemptRequest, p: Participant) -> str:
        if self.offline:
            return "offline"
        agent = request.panel.get(p.agent)
        return self.resolve(p.model or request.stage.model or (agent.model if agent else None))

    async def run(self, request: AttemptRequest) -> AttemptResult:
        spec = request.stage.debate
        assert spec is not None, "DebateRunner runs debate stages only"
        question = spec.question.strip() or request.task
        extra = [f"- {k}: {v}" for k, v in request.inputs.items() if k != "task" and v]
        if extra:
            question += "\n\nInputs:\n" + "\n".join(extra)
        if request.feedback:  # a rework: the human rejected the last decision, saying why
            question += f"\n\nA reviewer rejected the previous decision: {request.feedback}"
        progress = Progress.of(request.journal.entries)
        resumed = sum(len(t) for t in progress.turns.values())
        if resumed:
            log.info(
                "run %s stage %s: resuming the debate after %d logged turn(s)",
                request.run_id,
                request.stage.id,
                resumed,
            )
        spent = Usage()
        for round_no in range(1, spec.rounds.max + 1):
            verdict = progress.verdicts.get(round_no)
            if verdict is None:
                spent += await self._round(request, spec, question, progress, round_no)
                verdict = await self._verdict(request, spec, question, progress, round_no)
            if verdict.action == "conclude":
                break
        return self._result(request, spec, question, progress, spent)

    async def _round(
        self,
        request: AttemptRequest,
        spec: DebateSpec,
        question: str,
        progress: Progress,
        round_no: int,
    ) -> Usage:
        previous = progress.round_turns(round_no - 1, spec.participants)
        verdict = progress.verdicts.get(round_no - 1)
        done = progress.turns.get(round_no, {})
        used = Usage()
        for p in spec.participants:
            if p.label in done:
                continue  # logged before a restart: never spoken twice
            brief = turn_brief(
                spec=spec,
                question=question,
                participant=p,
                round_no=round_no,
                needs=request.artifacts,
                previous=previous,
                verdict=verdict,
            )
            spoken = await self.speaker.speak(
                p,
                request.panel.get(p.agent),
                self._model_of(request, p),
                brief,
                round_no,
                request.meter,
                spec.max_tokens,
            )
            turn = ev.DebateTurn(
                stage=request.stage.id,
                attempt=request.attempt,
                round=round_no,
                participant=p.label,
                role=p.role,
                model=spoken.model,
                position=spoken.position,
                statement=spoken.statement,
                cost_usd=spoken.cost_usd,
            )
            await request.journal.record(turn)
            progress.add(turn)
            if self.offline:
                used += Usage(
                    input_tokens=len(brief) // 4,
                    output_tokens=len(spoken.statement) // 4,
                    requests=1,
                )
        return used

    async def _verdict(
        self,
        request: AttemptRequest,
        spec: DebateSpec,
        question: str,
        progress: Progress,
        round_no: int,
    ) -> ev.DebateVerdict:
        turns = progress.round_turns(round_no, spec.participants)
        guide = request.panel.get(spec.moderator.agent) if spec.moderator.agent else None
        asked = consensus_question(
            question,
            [(t.participant, t.position, t.statement) for t in turns],
            spec.consensus_threshold,
            round_no,
            guide.system_prompt if guide is not None else "",
        )
        model = self.resolve(spec.moderator.model) if spec.moderator.model else None
        decided = await self.moderator.ask(asked, request.meter, model=model)
        answer = decided.answer
        action = enforce(answer.action, round_no, spec)
        reason = answer.reason
        if action != answer.action:
            bounds = f"{spec.rounds.min}-{spec.rounds.max}"
            reason = f"{reason} (engine: {action} at round {round_no}, rounds {bounds})"
        verdict = ev.DebateVerdict(
            stage=request.stage.id,
            attempt=request.attempt,
            round=round_no,
            agreement=answer.agreement,
            # bounded: a verdict is a log entry, whatever the model wrote
            positions={k[:80]: v[:200] for k, v in list(answer.positions.items())[:16]},
            open_points=[p[:300] for p in answer.open_points],
            proposed=answer.action,
            action=action,
            reason=reason[:2000],
            redirect=answer.redirect if action == "redirect" else None,
            decided_by="model" if decided.by == "model" else "rules",
            model=decided.model,
            fallback=(decided.fallback or "")[:500] or None,
            cost_usd=decided.cost_usd,
        )
        await request.journal.record(verdict)
        progress.add(verdict)
        return verdict

    def _result(
        self,
        request: AttemptRequest,
        spec: DebateSpec,
        question: str,
        progress: Progress,
        spent: Usage,
    ) -> AttemptResult:
        verdicts = [progress.verdicts[r] for r in sorted(progress.verdicts)]
        final = progress.final_positions(spec.participants)
        adr = render_adr(
            question=question,
            needs=request.artifacts,
            final=final,
            verdicts=verdicts,
            offline=self.offline,
        )
        last = verdicts[-1]
        consensus = last.agreement >= spec.consensus_threshold
        outputs: dict[str, Any] = {
            "rounds": len(verdicts),
            "agreement": last.agreement,
            "consensus": consensus,
            "moderated_by": sorted({v.decided_by for v in verdicts}),
            "orchestration_usd": round(sum(v.cost_usd for v in verdicts), 10),
        }
        if spec.decision:
            outputs["decision"] = {"title": title_of(question), "tags": ["debate"]}
        if self.offline:
            outputs["offline"] = True
        models = sorted({t.model or "?" for t in final.values()})
        summary = (
            f"{'[offline] ' if self.offline else ''}debate of {len(final)} participants "
            f"({', '.join(models)}) over {len(verdicts)} round(s): agreement "
            f"{last.agreement:.2f}, {'consensus' if consensus else 'no consensus'}"
        )
        usage = request.meter.usage if not self.offline else spent
        return AttemptResult(
            status="passed",
            summary=summary,
            artifacts={request.stage.produces[0]: adr},
            outputs=outputs,
            usage=usage,
            model=models[0] if len(models) == 1 else None,
            runner="offline" if self.offline else self.name,
        )
