"""What the offline runner writes: role-shaped Markdown and structured outputs.

The agent's name picks a role (``architect`` -> design doc, ``tester`` -> test report ...); the
artifact's name refines it (a release manager's ``changelog`` vs ``release_notes``). Unknown roles
get a generic document. All variation comes from ``Dice`` (see ``offline_text``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stageflow.subagents.offline.text import (
    OFFLINE_MARKER,
    Dice,
    DocContext,
    first_heading,
    one_line,
    seed_for,
)

Body = Callable[[DocContext, str, Dice], list[str]]


def _design(ctx: DocContext, name: str, dice: Dice) -> list[str]:
    slug = ctx.slug
    approach = dice.pick(
        [
            "a dedicated module behind a small interface, leaving existing call sites unchanged",
            "an extension of the existing service layer, with a feature flag for the rollout",
            "a thin adapter over the current code path plus a new, separately tested core",
        ]
    )
    risks = dice.sample(
        [
            "Behaviour change for existing callers; mitigated by keeping the old path as default.",
            "Performance on large inputs; mitigated by a benchmark in the test plan.",
            "Concurrency between two writers; mitigated by one transaction per change.",
            "Incomplete error messages; mitigated by asserting errors by type and fields.",
            "Migration of stored data; mitigated by a reversible, numbered migration.",
        ],
        3,
    )
    plan = [
        f"Add `{slug}/core.py` with the domain logic and unit tests.",
        f"Expose it through `{slug}/api.py`; keep the public surface small.",
        "Wire it into the caller and add an integration test.",
        "Document the behaviour and record this decision.",
    ]
    if ctx.feedback:
        plan.insert(0, f"Address the review feedback first: {one_line(ctx.feedback, 70)}")
    return [
        "## Context",
        "",
        f"Task: {ctx.task}",
        "",
        f"This design is based on {ctx.upstream}.",
        "",
        "## Decision",
        "",
        f"Implement the task as {approach}.",
        "",
        "## Components",
        "",
        "| component | responsibility |",
        "|---|---|",
        f"| `{slug}/core.py` | domain logic for: {one_line(ctx.task, 50)} |",
        f"| `{slug}/api.py` | the public entry points and input validation |",
        f"| `tests/test_{slug}.py` | unit and integration tests |",
        "",
        "## Risks",
        "",
        *[f"- {r}" for r in risks],
        "",
        "## Plan",
        "",
        *[f"{i}. {step}" for i, step in enumerate(plan, 1)],
    ]


def _patch(ctx: DocContext, name: str, dice: Dice) -> list[str]:
    slug = ctx.slug
    files = [
        (f"{slug}/core.py", "added", dice.between(40, 180)),
        (f"{slug}/api.py", "added", dice.between(20, 90)),
        (f"{dice.pick(['app', 'service', 'main'])}.py", "modified", dice.between(3, 25)),
        (f"tests/test_{slug}.py", "added", dice.between(30, 140)),
    ]
    changes = [
        f"Implemented the core of: {one_line(ctx.task, 60)}.",
        "Validated inputs at the public entry points; errors carry the offending field.",
        "Kept existing behaviour unchanged for callers that do not opt in.",
        "Added tests for the happy path, edge cases and error paths.",
    ]
    if ctx.feedback:
        changes.append(f"Reworked after review: {one_line(ctx.feedback, 70)}")
    return [
        "Simulated patch summary: the offline runner edits no files.",
        "",
        f"Based on {ctx.upstream}.",
        "",
        "## Files touched",
        "",
        "| file | change | lines |",
        "|---|---|---|",
        *[f"| `{f}` | {kind} | +{n} |" for f, kind, n in files],
        "",
        "## Changes",
        "",
        *[f"- {c}" for c in changes],
    ]


def _test_report(ctx: DocContext, name: str, dice: Dice) -> list[str]:
    total = int(ctx.outputs.get("tests_run", 0))
    passed_ok = bool(ctx.outputs.get("passed", True))
    coverage = float(ctx.outputs.get("coverage", 0.0))
    unit = max(0, total - total // 4)
    integration = total - unit
    failed_int = 0 if passed_ok else min(1, integration or unit)
    slug = ctx.slug
    return [
        f"Tests written against {ctx.upstream}.",
        "",
        "## Results",
        "",
        "| suite | tests | passed | failed | skipped |",
        "|---|---|---|---|---|",
        f"| unit | {unit} | {unit} | 0 | 0 |",
        f"| integration | {integration} | {integration - failed_int} | {failed_int} | 0 |",
        f"| **total** | {total} | {total - failed_int} | {failed_int} | 0 |",
        "",
        f"Coverage: {coverage:.0%}. Verdict: {'PASSED' if passed_ok else 'FAILED'}.",
        "",
        "## Cases",
        "",
        f"- `test_{slug}_happy_path`",
        f"- `test_{slug}_rejects_invalid_input`",
        f"- `test_{slug}_{dice.pick(['is_idempotent', 'survives_restart', 'handles_empty'])}`",
    ]


def _review(ctx: DocContext, name: str, dice: Dice) -> list[str]:
    approved = bool(ctx.outputs.get("approved", True))
    findings = dice.sample(
        [
            "minor: a helper could use a more specific name.",
            "minor: one error message could name the offending value.",
            "nit: a comment restates the code; say why instead.",
            "minor: a test asserts a message string; assert the error type and fields.",
        ],
        2,
    )
    return [
        f"Reviewed {ctx.upstream}.",
        "",
        "## Findings",
        "",
        *[f"- {f}" for f in findings],
        "",
        "No blocking findings." if approved else "Blocking findings: see above.",
        "",
        "## Verdict",
        "",
        "Approved." if approved else "Changes requested.",
    ]


def _security(ctx: DocContext, name: str, dice: Dice) -> list[str]:
    count = int(ctx.outputs.get("findings", 0))
    critical = int(ctx.outputs.get("critical_findings", 0))
    pool = [
        ("low", "input length is not capped before parsing"),
        ("low", "an error message echoes a file path"),
        ("medium", "a dependency is not pinned to a minor version"),
        ("low", "a temporary file is created with default permissions"),
    ]
    rows = dice.sample(pool, count) if count <= len(pool) else pool
    return [
        f"Audited {ctx.upstream}.",
        "",
        "## Findings",
        "",
        "| severity | finding |",
        "|---|---|",
        *[f"| {sev} | {what} |" for sev, what in rows],
        "",
        f"Critical findings: {critical}. Total findings: {count}.",
    ]


def _release(ctx: DocContext, name: str, dice: Dice) -> list[str]:
    low = name.lower()
    version = f"0.{dice.between(2, 9)}.{dice.between(0, 9)}"
    head = [
        "Prepared locally, nothing was deployed.",
        "",
        f"Based on {ctx.upstream}.",
        "",
    ]
    if "changelog" in low:
        return [
            *head,
            f"## [{version}]",
            "",
            "### Added",
            "",
            f"- {one_line(ctx.task, 70)}",
            "",
            "### Fixed",
            "",
            "- Error messages name the offending field.",
        ]
    if "release" in low or "notes" in low:
        return [
            *head,
            "## Highlights",
            "",
            f"- {one_line(ctx.task, 70)}",
            "",
            "## Upgrade notes",
            "",
            "- No configuration changes are required.",
        ]
    return [
        *head,
        "## Steps",
        "",
        f"1. Build version {version} and run the test suite.",
        "2. Deploy to staging; run the smoke tests.",
        "3. Deploy to production behind the feature flag.",
        "",
        "## Rollback",
        "",
        "- Redeploy the previous version; the migration is reversible.",
    ]


def _release_title(name: str) -> str:
    low = name.lower()
    if "changelog" in low:
        return "Changelog"
    if "release" in low or "notes" in low:
        return "Release notes"
    return "Deploy plan"


def _revert(ctx: DocContext, name: str, dice: Dice) -> list[str]:
    return [
        "Prepared locally: a plan only, no code was changed.",
        "",
        f"Based on {ctx.upstream}.",
        "",
        "## Steps",
        "",
        f"1. List the files changed since the stage before `{ctx.stage}` started.",
        "2. Revert them in one change; keep the tests that describe the problem.",
        "3. Run the test suite and confirm the pre-change behaviour.",
    ]


def _docs(ctx: DocContext, name: str, dice: Dice) -> list[str]:
    slug = ctx.slug
    return [
        f"Written from {ctx.upstream}.",
        "",
        "## Overview",
        "",
        f"{ctx.task}",
        "",
        "## Usage",
        "",
        "```python",
        f"from {slug} import api",
        "",
        f"api.{dice.pick(['run', 'apply', 'create'])}(...)",
        "```",
        "",
        "## Reference",
        "",
        f"- `{slug}.api`: the public entry points.",
        f"- `{slug}.core`: the domain logic.",
    ]


def _root_cause(ctx: DocContext, name: str, dice: Dice) -> list[str]:
    cause = dice.pick(
        [
            "a missing check for an empty input, reached only on the first call",
            "two writers updating the same row without a transaction",
            "a cached value that is not invalidated when the configuration changes",
        ]
    )
    return [
        f"Investigated using {ctx.upstream}.",
        "",
        "## Symptoms",
        "",
        f"- Reported: {one_line(ctx.task, 70)}",
        "",
        "## Reproduction",
        "",
        "1. Start from a clean state.",
        "2. Trigger the reported path with the smallest input.",
        "",
        "## Root cause",
        "",
        f"The failure comes from {cause}.",
        "",
        "## Fix",
        "",
        "- Guard the path and add a regression test.",
    ]


def _generic(ctx: DocContext, name: str, dice: Dice) -> list[str]:
    return [
        f"Produced by agent `{ctx.role}` from {ctx.upstream}.",
        "",
        "## Summary",
        "",
        f"Work on: {ctx.task}",
        "",
        "## Next steps",
        "",
        f"- {dice.pick(['Review this artifact.', 'Hand this artifact to the next stage.'])}",
    ]


_ROLES: dict[str, tuple[str, Body]] = {
    "architect": ("Design", _design),
    "developer": ("Patch summary", _patch),
    "tester": ("Test report", _test_report),
    "reviewer": ("Review", _review),
    "security-auditor": ("Security findings", _security),
    "pentester": ("Penetration test findings", _security),
    "devops": ("Deploy plan", _release),
    "release-manager": ("Release", _release),
    "documenter": ("Documentation", _docs),
    "editor": ("Documentation", _docs),
    "investigator": ("Root cause analysis", _root_cause),
}
_ALIASES = {
    "designer": "architect",
    "implementer": "developer",
    "coder": "developer",
    "engineer": "developer",
    "qa": "tester",
    "code-reviewer": "reviewer",
    "security": "security-auditor",
    "technical-writer": "documenter",
    "writer": "documenter",
    "debugger": "investigator",
    "frontend-developer": "developer",
    "backend-developer": "developer",
}


def role_of(agent_name: str) -> str:
    """The canonical role of an agent name (``code_reviewer`` -> ``reviewer``), or the name."""
    key = agent_name.strip().lower().replace("_", "-")
    return _ALIASES.get(key, key)


def structured_outputs(role: str, dice: Dice) -> dict[str, Any]:
    """Plausible structured outputs per role, such that the built-in gates pass."""
    if role == "tester":
        return {"passed": True, "coverage": 0.87, "tests_run": dice.between(24, 96)}
    if role in ("reviewer", "editor"):  # the editor's verdict gates documentation_update
        return {"approved": True}
    if role == "security-auditor":
        return {"critical_findings": 0, "findings": 2}
    if role == "pentester":
        return {"findings": 1}
    if role == "auditor":
        return {"approved": True, "findings": {}}
    if role == "decision-maker":
        return {"ruling": "approve", "feedback": "the offline decision agent approves"}
    return {}


def _shape(role: str, name: str) -> tuple[str, Body]:
    """Title and body for one artifact: by role, refined by the artifact's name."""
    low = name.lower()
    title, body = _ROLES.get(role, ("Result", _generic))
    if body is _release:
        return _release_title(name), body
    if role == "editor" and "review" in low:
        return "Editorial review", _review
    if body is _patch and ("revert" in low or "rollback" in low):
        return "Revert plan", _revert
    return title, body


def render_artifact(ctx: DocContext, name: str) -> str:
    """One artifact's Markdown: marker, title, inputs, role body, and rework notes."""
    title, body = _shape(ctx.role, name)
    dice = Dice(seed_for(ctx.task, ctx.stage, ctx.attempt, name))
    lines = [
        OFFLINE_MARKER,
        "",
        f"# {title} ({name}): {one_line(ctx.task, 70)}",
        "",
        f"_stage `{ctx.stage}` · agent `{ctx.role}` · attempt {ctx.attempt} ({ctx.kind})_",
        "",
        "## Inputs",
        "",
    ]
    if ctx.artifacts:
        lines += [
            f"- `{a.stage}.{a.name}` v{a.version}: {first_heading(a.content)}"
            for a in ctx.artifacts
        ]
    else:
        lines.append("- none: this stage works from the task alone.")
    lines += ["", *body(ctx, name, dice)]
    if ctx.feedback:
        lines += ["", *_changes_after_review(ctx, name)]
    return "\n".join(lines) + "\n"


_FEEDBACK_SECTION = {"architect": "see the Plan", "developer": "see the Changes"}


def _changes_after_review(ctx: DocContext, name: str) -> list[str]:
    prev = next((p for p in ctx.previous if p.name == name), None)
    quoted = (
        [f"> {line}" if line else ">" for line in ctx.feedback.splitlines()] if ctx.feedback else []
    )
    where = _FEEDBACK_SECTION.get(ctx.role, "see the sections above")
    if prev is not None:
        against = (
            f"Compared with v{prev.version} ({len(prev.content)} chars): this revision takes the "
            f"feedback above into account ({where}) and keeps what the review accepted."
        )
    else:
        against = "There was no previous version of this artifact to compare with."
    return ["## Changes after review", "", "Feedback:", "", *quoted, "", against]
