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
from collections.abc import Callable
from typing import Any

from stageflow.cli.app import EXIT_FAIL, EXIT_OK, App, emit
from stageflow.knowledge.hybrid import SEARCH_MODES
from stageflow.knowledge.lookup import DEFAULT_LIMIT, lookup
from stageflow.knowledge.views import (
    DOC_TYPES,
    document_text,
    document_view,
    reindex_view,
    render_hits,
)

__all__ = [
    "add_knowledge_parser",
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


def add_knowledge_parser(
    sub: Any, common: argparse.ArgumentParser, *, json_help: str = "print JSON"
) -> None:
    """Add ``knowledge search|show|reindex`` to the ``stageflow`` parser's subcommands."""
    kp: argparse.ArgumentParser = sub.add_parser(
        "knowledge",
        help="search and show the project's knowledge base",
        description="Search and show the project's knowledge base (guidelines, patterns, "
        "ADRs, decisions, notes, past runs' artifacts).",
    )
    ksub = kp.add_subparsers(dest="knowledge_command", required=True, metavar="ACTION")

    def add(name: str, help_: str, fn: Callable[..., Any]) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = ksub.add_parser(
            name, help=help_, description=help_, parents=[common]
        )
        sp.set_defaults(fn=fn)
        sp.add_argument("--json", action="store_true", help=json_help)
        return sp

    sp = add("search", "search the knowledge base (best first)", cmd_knowledge_search)
    sp.add_argument("query", help="plain words; any text is safe")
    sp.add_argument(
        "--type",
        action="append",
        choices=DOC_TYPES,
        metavar="TYPE",
        help=f"only this document type ({', '.join(DOC_TYPES)}); repeatable",
    )
    sp.add_argument(
        "--tag", action="append", metavar="TAG", help="only documents with this tag; repeatable"
    )
    sp.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help=f"how many hits (default {DEFAULT_LIMIT})"
    )
    sp.add_argument(
        "--mode",
        choices=SEARCH_MODES,
        default=None,
        help="ranking: bm25 (words), vector (embeddings) or hybrid (both, fused); "
        "default hybrid when [knowledge] embeddings are available, else bm25",
    )
    sp = add("show", "print one knowledge document", cmd_knowledge_show)
    sp.add_argument("doc_id", metavar="DOC_ID", help="a document id, as search prints it")
    add("reindex", "rebuild the knowledge index from the files", cmd_knowledge_reindex)
