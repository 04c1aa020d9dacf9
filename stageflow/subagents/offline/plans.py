"""The offline runner's plan: three work items for any task, two independent and one after both.

Deterministic like everything offline: the file names come from the task's keywords, so the
same task always gives the same plan (and the two independent items never share a file, so
they run at the same time).
"""

from __future__ import annotations

from typing import Any

from stageflow.engine.runner import AttemptRequest
from stageflow.subagents.offline.text import keywords, one_line


def offline_plan(request: AttemptRequest) -> dict[str, Any]:
    """``{"items": [t1, t2, t3]}``: t1 and t2 independent, t3 after both."""
    slug = "_".join(keywords(request.task)[:2]) or "change"
    task = one_line(request.task, 60)
    return {
        "items": [
            {
                "id": "t1",
                "title": f"Core logic for: {task}",
                "description": f"Implement the domain logic in `{slug}/core.py` with unit tests.",
                "depends_on": [],
                "files": [f"{slug}/core.py", f"tests/test_{slug}_core.py"],
                "acceptance": ["the core behaviour is covered by unit tests"],
            },
            {
                "id": "t2",
                "title": "Public interface and input validation",
                "description": f"Add the entry points in `{slug}/api.py`; validate every input.",
                "depends_on": [],
                "files": [f"{slug}/api.py", f"tests/test_{slug}_api.py"],
                "acceptance": ["bad input gets a clear error naming the field"],
            },
            {
                "id": "t3",
                "title": "Wire it in and document it",
                "description": "Connect the core and the interface, add an integration test "
                "and document the behaviour.",
                "depends_on": ["t1", "t2"],
                "files": [f"{slug}/__init__.py", "README.md"],
                "acceptance": ["an integration test passes end to end", "the README says how"],
            },
        ]
    }
