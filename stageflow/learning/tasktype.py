"""The task type of a stage attempt: what kind of work it is, the profiles' middle key.

A template (``task_type:`` at the top) or a stage (``task_type:`` on the stage) may state it;
the stage's wins. Otherwise a small keyword classifier infers it:

1. The **role** comes from the agent: a built-in name maps directly (architect -> ``design``,
   investigator -> ``investigate``, tester -> ``test``, reviewer -> ``review``, documenter and
   editor -> ``docs``, security-auditor and pentester -> ``security``, devops and
   release-manager -> ``release``, developer and frontend-developer -> ``implement``); another
   agent gets the role whose words (``ROLE_WORDS``) its name and description hit most, ties
   going to the one listed first, and is ``implement`` when nothing matches.
2. An ``implement`` role is refined by the **task text**: the category with the most keyword
   hits (``TASK_WORDS``: ``bugfix``, ``refactor``, ``performance``, ``security``, ``docs``)
   wins, ties going to the one listed first, and ``feature`` when none matches.

So a developer stage of "Fix the crash on empty CSV files" is ``bugfix``, its architect stage
``design`` and its tester stage ``test``. Keywords match at the start of a word, case-blind.
"""

from __future__ import annotations

import re

from stageflow.agents.definition import AgentDefinition
from stageflow.workflows.spec import StageSpec, WorkflowSpec

__all__ = ["ROLE_BY_NAME", "ROLE_WORDS", "TASK_TYPES", "TASK_WORDS", "classify", "task_type_of"]

ROLE_BY_NAME: dict[str, str] = {
    "architect": "design",
    "investigator": "investigate",
    "tester": "test",
    "reviewer": "review",
    "documenter": "docs",
    "editor": "docs",
    "security-auditor": "security",
    "pentester": "security",
    "devops": "release",
    "release-manager": "release",
    "developer": "implement",
    "frontend-developer": "implement",
}

# role -> word starts, tried in this order on an unknown agent's name and description
ROLE_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("security", ("secur", "pentest", "vulnerab", "threat")),
    ("design", ("architect", "design", "plan")),
    ("investigate", ("investigat", "debug", "root cause", "diagnos")),
    ("test", ("test", "qa", "verif")),
    ("review", ("review", "audit", "critic")),
    ("docs", ("document", "docs", "writer", "editor", "technical writ")),
    ("release", ("release", "deploy", "devops", "ops")),
    ("implement", ("develop", "implement", "engineer", "coder", "program")),
)

# an implement role's task -> word starts; ``feature`` when none matches
TASK_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("bugfix", ("fix", "bug", "crash", "broken", "regression", "error", "fail", "wrong")),
    ("refactor", ("refactor", "clean up", "cleanup", "restructur", "renam", "simplif", "extract")),
    ("performance", ("perform", "faster", "slow", "speed", "latenc", "optimi", "memory")),
    ("security", ("secur", "vulnerab", "cve", "xss", "inject", "csrf", "exploit")),
    ("docs", ("document", "readme", "docs", "docstring", "tutorial")),
)

TASK_TYPES: tuple[str, ...] = (
    "design",
    "investigate",
    "test",
    "review",
    "docs",
    "security",
    "release",
    "feature",
    "bugfix",
    "refactor",
    "performance",
)


def _hits(text: str, words: tuple[str, ...]) -> int:
    return sum(len(re.findall(r"\b" + re.escape(w), text)) for w in words)


def role_of(agent: str, definition: AgentDefinition | None = None) -> str:
    """The agent's role: its built-in name's, else the role its words hit most."""
    known = ROLE_BY_NAME.get(agent)
    if known is not None:
        return known
    text = " ".join(
        [agent.replace("-", " ").replace("_", " "), definition.description if definition else ""]
    )
    return _most(text.lower(), ROLE_WORDS, "implement")


def _most(text: str, table: tuple[tuple[str, tuple[str, ...]], ...], otherwise: str) -> str:
    """The entry of ``table`` whose words ``text`` hits most (ties: the first listed)."""
    best, most = otherwise, 0
    for kind, words in table:
        n = _hits(text, words)
        if n > most:
            best, most = kind, n
    return best


def classify(agent: str, task: str, definition: AgentDefinition | None = None) -> str:
    """The inferred task type for ``agent`` working on ``task`` (see the module docstring)."""
    role = role_of(agent, definition)
    if role != "implement":
        return role
    return _most(task.lower(), TASK_WORDS, "feature")


def task_type_of(
    spec: WorkflowSpec,
    stage: StageSpec,
    agent: str,
    task: str,
    definition: AgentDefinition | None = None,
) -> str:
    """The stage's task type: stated by the stage, else by the template, else inferred."""
    return stage.task_type or spec.task_type or classify(agent, task, definition)
