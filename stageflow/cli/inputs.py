"""``--input NAME=VALUE`` pairs, as ``run`` and ``estimate`` read them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from stageflow.errors import InvalidArgument

__all__ = ["parse_inputs"]


def parse_inputs(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``--input NAME=VALUE`` pairs (JSON values accepted) as a dict."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"--input expects NAME=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
