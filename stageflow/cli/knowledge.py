"""``stageflow knowledge search|show|reindex``: the knowledge base from the terminal.

The CLI does not watch files: ``search`` and ``show`` first bring the index up to date with the
files (incremental: only files whose size, time or content changed are read again), ``reindex``
rebuilds it from scratch. ``--json`` prints the models the MCP tool and resource use
(``LookupResult``, ``DocumentView``, ``ReindexView``).

Exit codes: 0 done (a search without hits included), 1 ``reindex`` could not index some files,
2 bad arguments (an unknown type, a limit out of range), 3 unknown document id.
"""

from __future__ import annotations

import argparse
import sys

from stageflow.cli.app import App, emit
from stageflow.cli.exits import EXIT_FAIL, EXIT_OK
from stageflow.knowledge.lookup import lookup
from stageflow.knowledge.views import (
    document_text,
    document_view,
    reindex_view,
    render_hits,
)

__all__ = [
    "cmd_knowledge_reindex",
    "cmd_knowledge_search",
    "cmd_knowledge_show",
]


async def _sync(app: App) -> None:
    if app.store.read_only:
        sys.stderr.write(
            "stageflow: note: the database is read-only, so the knowledge index was not "
            "brought up to date with the files\n"
        )
        return
    report = await app.knowledge.sync()
    for problem in report.errors:  # stdout may be JSON: problems go to stderr
        sys.stderr.write(f"stageflow: warning: knowledge file not indexed: {problem}\n")


async def cmd_knowledge_search(app: App, args: argparse.Namespace) -> int:
    await _sync(app)
    result = await lookup(
        app.knowledge,
        args.query,
        types=args.type or (),
        tags=args.tag or (),
        limit=args.limit,
        mode=args.mode,
    )
    if args.json:
        emit(app, result)
    else:
        app.out.write(render_hits(result) + "\n")
    return EXIT_OK


async def cmd_knowledge_show(app: App, args: argparse.Namespace) -> int:
    await _sync(app)
    doc = await app.knowledge.get(args.doc_id)  # NotFound: exit 3, listing known ids
    if args.json:
        emit(app, document_view(doc))
        return EXIT_OK
    text = document_text(doc, app.settings.project)
    where = doc.path or (f"run {doc.run_id}, stage {doc.stage}" if doc.run_id else "")
    status = f", {doc.status}" if doc.status else ""
    tags = f"  tags: {', '.join(doc.tags)}" if doc.tags else ""
    app.out.write(f"{doc.doc_id}: {doc.title} [{doc.type}{status}] {where}{tags}\n\n")
    app.out.write(text if text.endswith("\n") else text + "\n")
    return EXIT_OK


async def cmd_knowledge_reindex(app: App, args: argparse.Namespace) -> int:
    report = await app.knowledge.reindex()
    vectors = await app.knowledge.refresh_vectors()  # None without an embedder
    view = reindex_view(report, vectors)
    if args.json:
        emit(app, view)
    else:
        app.out.write(
            f"knowledge index rebuilt in {view.seconds:.2f}s: {view.added} added, "
            f"{view.updated} updated, {view.removed} removed, {view.unchanged} unchanged\n"
        )
        if view.embedded is not None:
            app.out.write(
                f"vectors ({view.model}): {view.embedded} sections embedded, {view.reused} reused\n"
            )
        for error in view.errors:
            app.out.write(f"error: {error}\n")
    return EXIT_FAIL if view.errors else EXIT_OK
