"""A template input's value checked against its declared type (strings from the CLI made
numbers, booleans as the type says)."""

from __future__ import annotations

import contextlib
from typing import Any, Literal

__all__ = ["InputType", "coerce_input"]

InputType = Literal["string", "integer", "number", "boolean", "list", "object"]


def coerce_input(name: str, kind: InputType, value: Any) -> Any:
    """``value`` as an input of type ``kind``; raises ``ValueError`` naming the input."""
    ok: bool
    if kind == "string":
        ok = isinstance(value, str)
    elif kind == "integer":
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "number":
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "boolean":
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            value = value.lower() in ("true", "yes")
        ok = isinstance(value, bool)
    elif kind == "list":
        ok = isinstance(value, list)
    else:
        ok = isinstance(value, dict)
    if not ok:
        raise ValueError(f"input '{name}' must be a {kind}, got {value!r}")
    return value
