"""Every built-in debate template runs offline end to end: rounds within bounds, every turn
and verdict in the log, the ADR in the knowledge base and found by a search; and a debate
SIGKILLed in round 2 resumes without repeating a finished turn."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from stageflow.subagents.offline.runner import SCRIPT_ENV
from tests.cli.harness import Cli, of_type, stage

DEBATES = {  # template -> (debate stage, participants, min rounds, max rounds)
    "simple_debate": ("debate", 2, 2, 2),
    "complex_debate": ("debate", 4, 2, 4),
    "consensus_building": ("consensus", 3, 2, 5),
    "evolution_debate": ("debate", 3, 2, 4),
}
QUESTION = "Should we replace the hand-written SQL layer with an ORM?"


@pytest.mark.parametrize("template", sorted(DEBATES))
def test_each_debate_template_runs_offline_and_records_its_decision(
    cli: Cli, template: str
) -> None:
    sid, participants, low, high = DEBATES[template]
    view = cli.run(template, task=QUESTION)
    view, _ = cli.approve_until_done(view)  # evolution_debate asks a human
    assert view.status == "completed", view.reason
    assert stage(view, sid).status == "succeeded"
    events = cli.events(view.run_id)
    turns, verdicts = of_type(events, "debate_turn"), of_type(events, "debate_verdict")
    assert low <= len(verdicts) <= high
    assert len(turns) == participants * len(verdicts)
    assert {(t["round"], t["participant"]) for t in turns} == {
        (r, t["participant"]) for t in turns for r in range(1, len(verdicts) + 1)
    }
    assert all(v["decided_by"] == "rules" and v["fallback"] for v in verdicts)  # offline
    assert verdicts[-1]["action"] == "conclude"
    assert all(t["model"] == "offline" for t in turns)
    adr = cli.ok("artifact", view.run_id, sid, "decision").out
    for heading in ("## Context", "## Options", "## Decision", "## Consequences", "## Dissent"):
        assert heading in adr
    assert "offline run" in adr
    files = list((cli.project / ".stageflow" / "knowledge" / "decisions").glob("*.md"))
    assert len(files) == 1 and "type: decision" in files[0].read_text(encoding="utf-8")
    found = cli.ok("knowledge", "search", "ORM hand-written SQL", "--json").json()
    assert any("decision" in json.dumps(hit) for hit in found["results"][:3]), found
    assert cli.ok("audit", view.run_id, "--verify").code == 0


def test_the_devils_advocate_dissents_until_round_three(cli: Cli) -> None:
    view = cli.run("complex_debate", task=QUESTION)
    events = cli.events(view.run_id)
    verdicts = of_type(events, "debate_verdict")
    # round 2: 3 of 4 agree (0.75 = threshold) and the rules conclude
    assert [v["round"] for v in verdicts] == [1, 2]
    assert verdicts[0]["agreement"] == 0.5 and verdicts[0]["action"] == "continue"
    adr = cli.ok("artifact", view.run_id, "debate", "decision").out
    dissent = adr.split("## Dissent", 1)[1]
    assert "devils-advocate" in dissent and "reject" in dissent


def _turns(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT payload FROM events ORDER BY seq").fetchall()
    payloads = [json.loads(r[0]) for r in rows]
    return [p for p in payloads if p.get("type") == "debate_turn"]


def test_a_debate_killed_in_round_two_resumes_at_its_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"debate": {"delay": 0.4}}), encoding="utf-8")
    monkeypatch.setenv(SCRIPT_ENV, str(script))
    db = cli.project / ".stageflow" / "state.db"
    cli.project.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stageflow",
            "run",
            "simple_debate",
            "--task",
            QUESTION,
            "--project",
            str(cli.project),
        ],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the first turn of round 2 is logged, the second not
        if db.exists() and any(t["round"] == 2 for t in _safe_turns(db)):
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    before = _turns(db)
    assert [(t["round"], t["participant"]) for t in before] == [
        (1, "proponent"),
        (1, "critic"),
        (2, "proponent"),
    ]
    run_id = cli.ok("status", "--json").json()[0]["run_id"]
    script.write_text(json.dumps({}), encoding="utf-8")  # no delay for the rest
    view = cli.ok("resume", run_id, "--json").view()
    assert view.status == "completed", view.reason
    after = _turns(db)
    keys = [(t["round"], t["participant"]) for t in after]
    assert keys == [(1, "proponent"), (1, "critic"), (2, "proponent"), (2, "critic")]
    assert after[:3] == before  # the finished turns were not spoken again
    attempts = stage(view, "debate").history
    assert [a.outcome for a in attempts] == ["interrupted", "passed"]
    assert cli.ok("audit", run_id, "--verify").code == 0


def _safe_turns(db: Path) -> list[dict[str, Any]]:
    try:
        return _turns(db)
    except sqlite3.Error:
        return []


def test_a_rejected_debate_starts_afresh_with_the_feedback(cli: Cli) -> None:
    view = cli.run("evolution_debate", task=QUESTION)
    assert [w.stage for w in view.waiting] == ["debate"]
    result = cli(
        "reject",
        view.run_id,
        "--stage",
        "debate",
        "--feedback",
        "weigh the migration cost",
        "--json",
    )
    assert result.code == 0, result.err
    turns = of_type(cli.events(view.run_id), "debate_turn")
    first = [t for t in turns if t["attempt"] == 1]
    again = [t for t in turns if t["attempt"] == 2]
    assert again and again[0]["round"] == 1  # a fresh debate, not a continuation
    assert len(again) == len(first)

    def brief_chars(t: dict[str, Any]) -> int:
        return int(t["statement"].rsplit("brief of ", 1)[1].split()[0])

    # the same turn read more the second time: the reviewer's feedback
    assert brief_chars(again[0]) > brief_chars(first[0])
