"""``stageflow serve``: the MCP server for the project. Only the server's own modules are
imported on this path, so a stdio client's ``initialize`` is answered fast."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from stageflow.cli.exits import EXIT_OK
from stageflow.config import load_settings
from stageflow.errors import InvalidArgument, StageflowError


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    """Serve the MCP server for the project (stdio unless ``--transport``).

    mcp and the server modules are imported here, so no other command pays for them. On an
    HTTP transport the bind is checked (token for non-loopback hosts) before anything opens.
    """
    import os

    from stageflow.server.security import TOKEN_ENV, require_token
    from stageflow.server.transports import prepare_stdio, run_server

    token = os.environ.get(TOKEN_ENV)
    if args.transport != "stdio":
        require_token(args.host, token)  # raises InvalidArgument -> exit 2
        if not (args.session_idle > 0 and args.session_idle < float("inf")):
            raise InvalidArgument(
                f"--session-idle must be a positive number of seconds, got {args.session_idle}"
            )
        if args.sessions_per_client < 1:
            raise InvalidArgument(
                f"--sessions-per-client must be >= 1, got {args.sessions_per_client}"
            )
    prepare_stdio()
    from stageflow.server.app import build_server

    server = build_server(load_settings(args.project, db=args.db))
    board_token = None
    if args.transport == "http":
        from stageflow.dashboard.guard import new_token

        board_token = (token or "").strip() or new_token()
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        shown = f"[{shown}]" if ":" in shown else shown
        # stderr: the URL carries the token, and stdout is no place for logs
        sys.stderr.write(f"stageflow dashboard: http://{shown}:{args.port}/?token={board_token}\n")
        sys.stderr.flush()
    try:
        run_server(
            server,
            transport=args.transport,
            host=args.host,
            port=args.port,
            token=token,
            allowed_hosts=args.allow_host or (),
            session_idle_s=args.session_idle,
            sessions_per_client=args.sessions_per_client,
            dashboard_token=board_token,
        )
    except KeyboardInterrupt:
        return EXIT_OK  # Ctrl-C ends a server normally; its runs resume on the next start
    except BaseExceptionGroup as group:
        # the lifespan's task group wraps what stopped the server (a damaged database, say):
        # our own error is one message and exit 1 (cli.main), anything else a traceback
        cause = _own_error(group)
        if cause is None:
            raise
        raise cause from None
    return EXIT_OK


def _own_error(group: BaseExceptionGroup[BaseException]) -> StageflowError | None:
    for exc in group.exceptions:
        if isinstance(exc, StageflowError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _own_error(exc)
            if found is not None:
                return found
    return None
