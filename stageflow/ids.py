"""Typed identifiers and their constructors.

Ids are plain strings at runtime; the ``NewType`` wrappers keep a run id from being passed
where a stage id is expected. Run ids sort by creation time (a millisecond timestamp prefix)
so listings need no extra index.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from typing import NewType

RunId = NewType("RunId", str)
StageId = NewType("StageId", str)
AttemptId = NewType("AttemptId", str)
OwnerId = NewType("OwnerId", str)

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _base32(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 32)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def new_run_id() -> RunId:
    """A sortable, human-typable run id such as ``r-01jd8k2m3n-7fq2``."""
    ms = int(time.time() * 1000)
    return RunId(f"r-{_base32(ms, 9)}-{_base32(secrets.randbits(20), 4)}")


def attempt_id(run_id: str, stage: str, attempt: int) -> AttemptId:
    """The attempt id is derived, so a replayed log names attempts identically."""
    return AttemptId(f"{run_id}/{stage}/{attempt}")


def new_owner_id() -> OwnerId:
    """Identifies one live process for run leases: ``host:pid:random``."""
    return OwnerId(f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}")
