"""Where a finding is in a template file: the line of each document path, the dotted form of a
path, and "did you mean" suggestions. Shared by the loader and the cross-stage checks."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

DocPath = tuple[str | int, ...]


def dotted(path: Sequence[str | int]) -> str:
    """``("stages", 2, "needs", 0)`` -> ``stages[2].needs[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class LineMap:
    """1-based line of each document path, e.g. ``("stages", 2, "needs", 0) -> 14``."""

    lines: Mapping[DocPath, int] = field(default_factory=dict)

    def line(self, path: DocPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for n in range(len(path), -1, -1):
            found = self.lines.get(path[:n])
            if found is not None:
                return found
        return None


def suggest(name: str, known: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` when a known name is close, else ``""``."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
