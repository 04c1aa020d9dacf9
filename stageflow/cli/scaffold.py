"""``stageflow init``: create ``.stageflow/`` with an example agent, template and knowledge note.

Never overwrites: existing files are left alone, so running it twice is safe.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLE_AGENT = """\
---
name: changelog-writer
description: Writes a concise changelog entry from a patch summary. Use after implementation.
tools: Read, Glob, Grep
model: haiku
---
You are the changelog writer for this project. You receive the task and the patch summary of
the change that was just implemented, and nothing else.

Write one changelog entry in the project's "Keep a Changelog" style:

- A heading with the kind of change (Added, Changed, Fixed, Removed, Security).
- One to three bullet points a user of the project understands, in the present tense, naming
  the user-visible behaviour, not the files touched.
- A line "Migration:" only when users must do something to upgrade.

Do not invent features that the patch summary does not mention. If the summary is too vague
to write an accurate entry, say so in your summary and finish with status "failed".

Finish by calling submit_result with status "passed", a one-line summary, and the artifact
`changelog_entry` containing the Markdown entry.
"""

EXAMPLE_TEMPLATE = """\
# A small project-specific workflow: implement, write the changelog, approve.
name: quick_change
description: Implement a small change and write its changelog entry
inputs:
  task: {type: string, required: true, description: what to change}
limits: {max_concurrent_agents: 2, budget_usd: 2.0, timeout: 2h}
stages:
  - id: implement
    agent: developer
    description: Make the change with tests, and summarise the patch
    produces: [patch_summary]
    on_failure: {retry: {max_attempts: 2, backoff: 10s}}
  - id: changelog
    agent: changelog-writer
    description: Write the changelog entry for the change
    depends_on: [implement]
    needs: [implement.patch_summary]
    produces: [changelog_entry]
    approval: required
"""

EXAMPLE_NOTE = """\
---
title: How we write changes
type: guideline
tags: [process, changelog]
---
# How we write changes

- Every user-visible change gets a changelog entry in the same pull request.
- Tests come with the change, not after it.
- Prefer small, reviewable patches; split refactors from behaviour changes.
"""


def init_project(project: Path) -> list[Path]:
    """Create the example files that do not exist yet; returns the paths created."""
    base = project / ".stageflow"
    files = {
        base / "agents" / "changelog-writer.md": EXAMPLE_AGENT,
        base / "workflows" / "quick_change.yaml": EXAMPLE_TEMPLATE,
        base / "knowledge" / "how-we-write-changes.md": EXAMPLE_NOTE,
        base / ".gitignore": "state.db\nstate.db-*\nworktrees/\n",
    }
    created: list[Path] = []
    for path, text in files.items():
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        created.append(path)
    return created
