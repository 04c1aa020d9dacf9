"""The ``stageflow estimate`` and ``stageflow profiles`` arguments (the commands are in
``cli/learning.py``, imported only when one runs)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["add_learning_parsers"]


def add_learning_parsers(add: Callable[..., argparse.ArgumentParser]) -> None:
    """The two commands, on the main parser's ``add`` helper."""
    sp = add(
        "estimate",
        "forecast a run's cost (p50/p90 per stage) without starting it",
        "learning:cmd_estimate",
        json_=True,
    )
    sp.add_argument("template")
    sp.add_argument("--task", required=True, help="what the workflow should achieve")
    sp.add_argument(
        "--input", action="append", metavar="NAME=VALUE", help="template input; repeatable"
    )
    sp = add(
        "profiles",
        "show the learning profiles (agent x task type x model)",
        "learning:cmd_profiles",
        json_=True,
    )
    sp.add_argument("--agent", help="only this agent")
    sp.add_argument("--task-type", dest="task_type", help="only this task type")
    sp.add_argument(
        "--rebuild", action="store_true", help="rebuild the profiles from every run's log first"
    )
