"""Opening the state database for writing, for reading only, or whichever is possible.

- ``write`` creates the database if needed and brings its schema up to date.
- ``read`` never writes (the file or its folder may be read-only; the schema must be current),
  and every write through the store is then refused with a ``DatabaseError`` saying so.
- ``auto`` writes when it can and reads otherwise: what commands that only read use.

A file that is not a database, or is damaged, is a ``DatabaseError`` naming it and what to do.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Literal

import aiosqlite
import anyio

from stageflow.errors import DatabaseError, StageflowError
from stageflow.store.connection import (
    damaged,
    is_damage,
    is_read_only,
    open_connection,
    open_read_only,
)
from stageflow.store.migrations import apply_migrations, check_current

log = logging.getLogger(__name__)

Access = Literal["write", "read", "auto"]


async def open_database(path: Path, access: Access) -> tuple[aiosqlite.Connection, bool]:
    """A connection to ``path`` and whether it is read-only."""
    if access == "auto":
        try:
            return await open_database(path, "write")
        except DatabaseError as exc:
            if not exc.read_only or not await anyio.Path(path).exists():
                raise
            log.info("%s cannot be written; opening it read-only", path)
        access = "read"
    try:
        if access == "read":
            if not await anyio.Path(path).exists():
                raise DatabaseError(f"no database at {path} yet", path=str(path))
            conn = await open_read_only(path)
        else:
            conn = await open_connection(path)
    except sqlite3.DatabaseError as exc:
        raise _database_error(path, exc) from exc
    try:
        if access == "read":
            await check_current(conn)
        else:
            await apply_migrations(conn)
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            await conn.close()
        if isinstance(exc, sqlite3.DatabaseError):
            raise _database_error(path, exc) from exc
        if isinstance(exc, StageflowError) and not isinstance(exc, DatabaseError):
            raise DatabaseError(f"{path}: {exc}", path=str(path)) from exc
        raise
    return conn, access == "read"


def _database_error(path: Path, exc: sqlite3.DatabaseError) -> DatabaseError:
    if is_read_only(exc):
        return DatabaseError(
            f"{path} cannot be written ({exc}): check the permissions of the file and of "
            f"{path.parent}, or point STAGEFLOW_DB at a writable copy",
            path=str(path),
            read_only=True,
        )
    if is_damage(exc):
        return damaged(path, exc)
    return DatabaseError(f"{path}: {exc}", path=str(path))  # e.g. locked longer than the timeout
