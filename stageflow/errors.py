"""The stageflow exception family.

::

    StageflowError
    ├── SpecError            a template / agent / config file is wrong (file, line, stage, path)
    │   └── SpecErrors       several SpecErrors reported at once
    ├── CorruptLog           a stored event cannot be read back (names the run and seq)
    ├── DatabaseError        the state database cannot be used: damaged, not a database,
    │                        read-only where a write is needed, or from a newer stageflow
    ├── RunFailure           something went wrong while a stage ran
    │   ├── ModelError       the model provider failed (``retryable`` says whether to try again)
    │   ├── BudgetExceeded   a USD cap would be passed
    │   └── StageTimeout     a stage or approval ran out of time
    ├── InvalidArgument      a request argument is wrong (bad input value, unknown action)
    │   └── ToolError        a subagent's tool call is refused or fails (the message goes back
    │                        to the model as an error result; path escapes, Bash not allowed)
    ├── NotFound             an unknown run, template, agent, stage or artifact (``known`` lists
    │                        the valid names)
    └── InvalidState         the request conflicts with the current state (approving a stage that
        ├── ConcurrencyConflict   is not waiting); another writer appended first
        └── LeaseLost        this process no longer holds the run's lease

Domain errors are mapped to MCP errors in exactly one module (``stageflow.tools.errors``) and
to exit codes in the CLI.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal


class StageflowError(Exception):
    """Base of every error stageflow raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One validation finding, located as precisely as we can."""

    message: str
    file: str | None = None
    line: int | None = None
    stage: str | None = None
    path: str | None = None  # dotted location inside the document, e.g. ``stages[2].needs[0]``

    def __str__(self) -> str:
        where = self.file or "<template>"
        if self.line is not None:
            where += f":{self.line}"
        parts = [where]
        if self.stage:
            parts.append(f"stage '{self.stage}'")
        if self.path:
            parts.append(self.path)
        return f"{': '.join(parts)}: {self.message}"


class SpecError(StageflowError):
    """One problem in a template, agent definition or config file."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class SpecErrors(SpecError):
    """Every problem found in one or more files, reported together."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        StageflowError.__init__(self, "\n".join(str(p) for p in self.problems))
        self.problem = self.problems[0] if self.problems else Problem("invalid")


class CorruptLog(StageflowError):
    """A stored event no longer parses: the database was altered or is from another version."""

    def __init__(self, message: str, *, run_id: str, seq: int) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.seq = seq


class DatabaseError(StageflowError):
    """The state database cannot be used as asked; the message names the file and what to do."""

    def __init__(self, message: str, *, path: str, read_only: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.read_only = read_only  # refused because the file or its folder cannot be written


class RunFailure(StageflowError):
    """A stage attempt failed for a reason outside the spec."""

    retryable: bool = False


ModelErrorKind = Literal[
    "auth",  # 401/403: the key is missing, wrong or lacks permission
    "bad_request",  # 400/404/413/422...: our request is wrong; retrying cannot help
    "rate_limit",  # 429 with retry-after: try again later
    "spend_limit",  # 429 without retry-after signalling a spend/usage limit: do not retry
    "overloaded",  # 529 / 503: the provider is busy (fallback_model applies)
    "server",  # other 5xx
    "connection",  # network failure or timeout: the API may come back
    "protocol",  # a response we could not understand
    "cli",  # the Claude Code CLI failed
    "unavailable",  # no runner configured
    "other",
]


class ModelError(RunFailure):
    """The model provider failed; ``retryable`` tells the engine whether another try may work."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        kind: ModelErrorKind = "other",
        maybe_billed: bool = False,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code
        self.kind: ModelErrorKind = kind
        # the request may have been processed (a timeout, a dropped connection, an unreadable
        # reply): budget caps count its reservation as spent
        self.maybe_billed = maybe_billed


class BudgetExceeded(RunFailure):
    """Spending would pass a run or stage cap."""

    def __init__(self, message: str, *, spent_usd: float, budget_usd: float) -> None:
        super().__init__(message)
        self.spent_usd = spent_usd
        self.budget_usd = budget_usd


class StageTimeout(RunFailure):
    """A stage attempt or an approval wait ran out of time."""

    retryable = True


class InvalidArgument(StageflowError):
    """A request argument is wrong; the message says which and why."""


class ToolError(InvalidArgument):
    """A subagent tool call that is refused or fails; the message is returned to the model."""


class NotFound(StageflowError):
    """A name that does not exist; ``known`` lists the ones that do."""

    def __init__(self, kind: str, name: str, known: Sequence[str] = ()) -> None:
        self.kind = kind
        self.name = name
        self.known = list(known)
        shown_name = name if len(name) <= 80 else name[:77] + "..."  # never echo a flood back
        msg = f"unknown {kind} '{shown_name}'"
        if self.known:
            shown = ", ".join(self.known[:20])
            more = f" (+{len(self.known) - 20} more)" if len(self.known) > 20 else ""
            msg += f"; known: {shown}{more}"
        super().__init__(msg)


class InvalidState(StageflowError):
    """The request does not fit the current state, e.g. approving a stage that is not waiting."""


class ConcurrencyConflict(InvalidState):
    """Another writer appended to the run's event log first; reload and try again."""

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        expected_seq: int | None = None,
        actual_seq: int | None = None,
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.expected_seq = expected_seq
        self.actual_seq = actual_seq


class LeaseLost(InvalidState):
    """Another process executes the run now; this one must stop without writing."""
