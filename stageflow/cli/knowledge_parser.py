"""The ``stageflow knowledge search|show|reindex`` subcommands' arguments (the commands are in
``cli/knowledge.py``, imported only when one runs)."""

from __future__ import annotations

import argparse
from typing import Any

from stageflow.knowledge.documents import DOC_TYPES
from stageflow.knowledge.hybrid import SEARCH_MODES
from stageflow.knowledge.lookup import DEFAULT_LIMIT


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

    def add(name: str, help_: str, fn: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = ksub.add_parser(
            name, help=help_, description=help_, parents=[common]
        )
        sp.set_defaults(fn=fn)
        sp.add_argument("--json", action="store_true", help=json_help)
        return sp

    sp = add("search", "search the knowledge base (best first)", "knowledge:cmd_knowledge_search")
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
    sp = add("show", "print one knowledge document", "knowledge:cmd_knowledge_show")
    sp.add_argument("doc_id", metavar="DOC_ID", help="a document id, as search prints it")
    add("reindex", "rebuild the knowledge index from the files", "knowledge:cmd_knowledge_reindex")
