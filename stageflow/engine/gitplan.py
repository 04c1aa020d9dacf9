"""The planner's git decisions: commits, joins, conflicts, the run's final merges. Pure.

Order of work, one git operation at a time (the next is decided only once the last one's
outcome is in the log, so every operation starts from a head the log knows):

1. a writing stage that finished (succeeded, failed with ``on_failure: continue``, or asked
   for changes: before its rework is sent back) gets its changes committed on its lane's
   branch, before anything else starts;
2. an open conflict moves on: its worktree is prepared, then the merge stage runs (the
   ``merge-resolver`` agent) or a human gate opens; once resolved, the resolution is adopted;
3. a stage about to start first gets the branches of the isolated stages upstream of it merged
   into the run branch, one by one in spec order (its start is then a *join*: its attempts run
   the ``verify`` command first); while a conflict is open, no other merge is made;
4. at the end of the run, isolated branches nothing joined are merged too.

Nothing here runs when the run has no git worktree (``GitState.on`` is False).
"""

from __future__ import annotations

from stageflow import events as ev
from stageflow.engine.gitstate import GitState, StageGit
from stageflow.engine.lanes import Lane, lane_branch, lane_name, run_branch
from stageflow.engine.state import RunState

__all__ = [
    "commit_first",
    "final_merge",
    "git_decisions",
    "lane_for",
    "start_gate",
    "unmerged_sources",
    "verify_for",
]


def _attempt(state: RunState, sid: str) -> int:
    """The attempt a commit of ``sid`` is of: a for_each stage has none of its own, so it is
    the sum of its items' (any item's rework makes it new, and its commit is made again)."""
    items = state.children.get(sid)
    if items:
        return sum(state.stages[i].attempt for i in items if i in state.stages)
    return state.stages[sid].attempt


def _committable(state: RunState, sid: str) -> bool:
    st = state.stages[sid]
    done = st.status in ("succeeded", "changes_requested") or (
        st.status == "failed" and st.tolerated
    )
    worked = bool(st.attempts) or bool(state.children.get(sid))  # a for_each stage: its items
    g = state.git.stages.get(sid, _UNTOUCHED)
    # committed already, unless a later attempt (a rework, a retry) succeeded since
    fresh = g.committed and (g.attempt is None or g.attempt == _attempt(state, sid))
    return done and worked and not fresh


_UNTOUCHED = StageGit()


def _run_worktree_busy(state: RunState, stage_id: str) -> bool:
    """Whether a merge into the run branch must wait: a stage writing in the run's worktree
    is running (a run-time stage: an item, an added stage, none laned yet; or a writer that
    keeps the run's worktree), or, unless ``stage_id`` is an item, a for_each stage's items
    are under way (their work is committed with the for_each stage once all are done)."""
    lanes = state.lanes
    for sid, st in state.stages.items():
        if st.status != "running" or sid in lanes.isolated or sid in state.git.merge_stages:
            continue
        if sid in lanes.writers or sid not in lanes.index:  # run-time stages count too
            return True
    if stage_id in state.parent_of:  # an item: its for_each stage's joins go on
        return False
    return any(state.stages[p].status == "expanded" for p in state.children)


def _mergeable(state: RunState, sid: str) -> bool:
    g = state.git.stages.get(sid)
    ok = g is not None and g.commit is not None and g.merged is None
    return ok and state.stages[sid].status == "succeeded"


def unmerged_sources(state: RunState, stage_id: str) -> list[str]:
    """The isolated stages upstream of ``stage_id`` whose commits the run branch lacks."""
    plan = state.lanes
    return [u for u in plan.upstream(stage_id) if u in plan.isolated and _mergeable(state, u)]


def _on_conflict(state: RunState, join: str | None) -> str:
    if join is not None and join in state.stages:
        own = state.spec.stage(join).on_conflict
        if own is not None:
            return own
    return state.spec.on_conflict


def _merge(state: RunState, source: str, join: str | None) -> ev.GitStarted:
    return ev.GitStarted(
        op="merge",
        stage=source,
        join=join,
        attempt=state.stages[source].attempt,
        head=state.git.head,
        on_conflict="human" if _on_conflict(state, join) == "human" else "agent",
    )


def git_decisions(state: RunState) -> list[ev.Event]:
    """Steps 1 and 2: the next commit, or the open conflict's next step; [] when none."""
    git = state.git
    if not git.on or git.pending is not None or state.paused:
        return []
    for sid in state.lanes.ids:
        if sid in state.lanes.writers and _committable(state, sid):
            return [_commit(state, sid)]
    c = git.conflict
    if c is None:
        return []
    if not c.prepared:
        return [ev.GitStarted(op="resolve", stage=c.source, join=c.join, head=c.head)]
    merging = state.stages.get(c.stage)
    if merging is None:
        return []
    adopt = ev.GitStarted(
        op="adopt", stage=c.source, join=c.join, head=c.head, attempt=merging.attempt or None
    )
    if c.mode == "human" and merging.status == "pending":
        if merging.gate_overridden:  # the human says it is resolved: check and adopt it
            return [adopt]
        where = f".stageflow/worktrees/{lane_name(state.run_id, c.stage)}"
        return [
            ev.GateBlocked(
                stage=c.stage,
                condition=f"merge conflict in {', '.join(c.files)}: resolve the markers in "
                f"{where} and approve; reject fails the run (both branches are kept)",
            )
        ]
    if c.mode == "agent" and merging.status == "succeeded":
        return [adopt]
    return []


def _commit(state: RunState, sid: str) -> ev.GitStarted:
    on_run = sid not in state.lanes.isolated
    head = state.git.head if on_run else None
    return ev.GitStarted(op="commit", stage=sid, attempt=_attempt(state, sid), head=head)


def commit_first(state: RunState, stage_id: str) -> ev.GitStarted | bool:
    """Before ``stage_id`` (a stage that asked for changes) sends work back: True to go on,
    False to wait for the git operation in flight, or the commit of what its attempt wrote.
    Left uncommitted in the run's worktree, those files made the merge of the reworked
    branch refuse that worktree (the run paused), or went into the rework's own commit."""
    git = state.git
    if not git.on or stage_id not in state.lanes.writers or not _committable(state, stage_id):
        return True
    if git.pending is not None or state.paused:
        return False
    return _commit(state, stage_id)


def start_gate(state: RunState, stage_id: str) -> ev.GitStarted | bool:
    """Step 3, before ``stage_id`` starts: True to start it, False to wait, or the merge to
    make first."""
    git = state.git
    if not git.on:
        return True
    c = git.conflict
    if stage_id in git.merge_stages:  # a merge stage runs once its conflict is prepared
        if c is None or c.stage != stage_id:
            return True
        return c.prepared and c.mode == "agent"
    joined = state.parent_of.get(stage_id, stage_id)  # an item joins its for_each stage's
    sources = unmerged_sources(state, joined)
    if not sources:
        return True
    if c is not None:  # one conflict at a time: the run branch stays where it is meanwhile
        return False
    if _run_worktree_busy(state, stage_id):  # merged once that work is done and committed
        return False
    return _merge(state, sources[0], joined)


def final_merge(state: RunState) -> ev.GitStarted | bool:
    """Step 4, when every stage is done: True to complete, False to wait, or the merge of an
    isolated branch nothing joined."""
    git = state.git
    if not git.on:
        return True
    left = [s for s in state.lanes.isolated if _mergeable(state, s)]
    if not left:
        return True
    if git.conflict is not None or git.pending is not None:
        return False
    first = min(left, key=state.lanes.index.__getitem__)
    return _merge(state, first, None)


def lane_for(state: RunState, stage_id: str) -> Lane | None:
    """Where an attempt of ``stage_id`` works; None when the run has no git worktree."""
    git: GitState = state.git
    if not git.on:
        return None
    rid = state.run_id
    if stage_id in git.merge_stages:
        c = git.conflict
        files = c.files if c is not None and c.stage == stage_id else ()
        return Lane(
            kind="resolve",
            name=lane_name(rid, stage_id),
            branch=lane_branch(rid, stage_id),
            files=files,
        )
    if stage_id in state.lanes.isolated:
        return Lane(
            kind="stage",
            name=lane_name(rid, stage_id),
            branch=lane_branch(rid, stage_id),
            fork_from=run_branch(rid),
        )
    return Lane(kind="run", name=rid, branch=run_branch(rid))


def verify_for(state: RunState, stage_id: str, kind: str) -> tuple[str, list[str]] | None:
    """The verification command an attempt of a join runs first, with the stages merged for
    it; None for other stages, for reworks (nothing was merged since) and without one."""
    merged = state.git.joins.get(stage_id)
    if not state.git.on or not merged or kind == "rework":
        return None
    spec = state.spec.stage(stage_id)
    command = spec.verify if spec.verify is not None else state.spec.verify
    if command is None or not command.strip():
        return None
    return command.strip(), list(merged)
