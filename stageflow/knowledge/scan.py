"""Reading knowledge files into the store's rows: what a reindex, sync or update must write.

``FileScanner`` runs in a worker thread (file I/O and parsing would stall the event loop for
thousands of files) and returns a ``Scan``: one ``KnowledgeChange`` plus the problems found.
A file is re-read only when its mtime or size differs from what the index recorded, and
re-indexed only when its SHA-256 differs too (a touch or a save of the same bytes only updates
the recorded mtime).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from stageflow.config import Settings
from stageflow.errors import Problem
from stageflow.knowledge.documents import Document, parse_document
from stageflow.knowledge.sections import split_sections
from stageflow.knowledge.sources import (
    classify,
    id_root,
    knowledge_files,
    project_path,
)
from stageflow.store.knowledge import (
    MAX_SECTIONS,
    KnowledgeChange,
    KnowledgeDocRow,
    KnowledgeFileRow,
    KnowledgeSectionRow,
)

MAX_FILE_BYTES = 4_000_000  # a bigger file is indexed up to here (and reported)

#: Words every document of a type is also found by (the FTS ``meta`` column).
TYPE_WORDS: dict[str, str] = {
    "guideline": "guideline convention",
    "pattern": "pattern",
    "adr": "adr architecture decision record",
    "decision": "decision record",
    "note": "note",
    "artifact": "artifact run",
}


@dataclass
class Scan:
    """The outcome of looking at files: what to write and what was found wrong."""

    change: KnowledgeChange = field(default_factory=KnowledgeChange)
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)


class FileScanner:
    """Turns the project's knowledge files into a ``Scan`` (blocking: run it in a thread)."""

    def __init__(self, settings: Settings, *, max_chars: int) -> None:
        self.settings = settings
        self.max_chars = max_chars

    def scan_all(self) -> Scan:
        """Every knowledge file, read and parsed."""
        scan = Scan()
        for full, kind in knowledge_files(self.settings, scan.problems):
            rel = project_path(self.settings, full)
            if rel is not None:
                self.read_file(scan, rel, full, kind, None)
        return scan

    def scan_changed(self, stored: dict[str, KnowledgeFileRow]) -> Scan:
        """The files that differ from ``stored`` (the index's file rows), and those gone."""
        scan = Scan()
        present: set[str] = set()
        for full, kind in knowledge_files(self.settings, scan.problems):
            rel = project_path(self.settings, full)
            if rel is not None:
                present.add(rel)
                self.read_file(scan, rel, full, kind, stored.get(rel))
        for rel in sorted(set(stored) - present):
            scan.change.delete_paths.append(rel)
            scan.change.forget_files.append(rel)
        return scan

    def scan_paths(
        self,
        wanted: dict[str, Path],
        stored: dict[str, KnowledgeFileRow],
        force: bool = False,
    ) -> Scan:
        """Read the knowledge files at (or, for folders, under) ``wanted``; drop stored files
        that are gone or no longer knowledge. ``force`` re-reads even unchanged files."""
        scan = Scan()
        files: dict[str, tuple[Path, str]] = {}
        every: list[tuple[str, Path, str]] | None = None  # listed once, if a folder is given
        for rel, full in wanted.items():
            if full.is_dir():
                if every is None:
                    every = [
                        (sub, path, kind)
                        for path, kind in knowledge_files(self.settings)
                        if (sub := project_path(self.settings, path)) is not None
                    ]
                files.update(
                    (sub, (path, kind))
                    for sub, path, kind in every
                    if not rel or sub.startswith(rel + "/")
                )
                continue
            pattern = classify(self.settings, full)
            if pattern is not None and full.is_file():
                files[rel] = (full, pattern.kind)
        for rel, (full, kind) in sorted(files.items()):
            self.read_file(scan, rel, full, kind, None if force else stored.get(rel))
        for rel in sorted(set(stored) - set(files)):
            if force or rel in wanted or not (self.settings.project / rel).is_file():
                scan.change.delete_paths.append(rel)
                scan.change.forget_files.append(rel)
        return scan

    def read_file(
        self,
        scan: Scan,
        rel: str,
        full: Path,
        kind: str,
        old: KnowledgeFileRow | None,
    ) -> None:
        """Add the file to the scan's change, unless ``old`` shows it is unchanged."""
        try:
            st = full.stat()
            if (
                old is not None
                and old.root == kind
                and old.mtime_ns == st.st_mtime_ns
                and old.size == st.st_size
            ):
                scan.unchanged += 1
                return
            data = full.read_bytes()
        except FileNotFoundError:  # deleted since it was listed
            if old is not None:
                scan.change.delete_paths.append(rel)
                scan.change.forget_files.append(rel)
            return
        except OSError as exc:
            scan.problems.append(Problem(f"cannot read: {exc.strerror or exc}", file=rel))
            return
        digest = hashlib.sha256(data).hexdigest()
        if old is not None and old.sha256 == digest and old.root == kind:
            scan.unchanged += 1  # touched, not changed: remember the new mtime only
            row = KnowledgeFileRow(rel, kind, old.doc_id, st.st_mtime_ns, len(data), digest)
            scan.change.files.append(row)
            return
        if len(data) > MAX_FILE_BYTES:
            scan.problems.append(
                Problem(f"larger than {MAX_FILE_BYTES} bytes; only the start is indexed", file=rel)
            )
            data = data[:MAX_FILE_BYTES]
        text = data.decode("utf-8", errors="replace")
        if "\ufffd" in text and b"\xef\xbf\xbd" not in data:
            scan.problems.append(Problem("not valid UTF-8; bad bytes replaced", file=rel))
        doc = parse_document(
            text, path=rel, root_hint=id_root(self.settings, kind), problems=scan.problems
        )
        keywords = f"{TYPE_WORDS.get(doc.type, doc.type)} {doc.status or ''}".strip()
        scan.change.put.append(
            document_rows(doc, keywords=keywords, problems=scan.problems, max_chars=self.max_chars)
        )
        scan.change.delete_paths.append(rel)  # its id may have changed
        scan.change.files.append(
            KnowledgeFileRow(rel, kind, doc.doc_id, st.st_mtime_ns, len(data), digest)
        )


def document_rows(
    doc: Document,
    *,
    keywords: str,
    problems: list[Problem],
    max_chars: int,
    version: int | None = None,
) -> tuple[KnowledgeDocRow, list[KnowledgeSectionRow]]:
    """A document and its sections as the store's rows."""
    sections = split_sections(doc, max_chars=max_chars)
    if len(sections) > MAX_SECTIONS:
        problems.append(
            Problem(f"more than {MAX_SECTIONS} sections; the rest is not indexed", file=doc.path)
        )
        sections = sections[:MAX_SECTIONS]
    row = KnowledgeDocRow(
        doc_id=doc.doc_id,
        title=doc.title,
        type=doc.type,
        tags=doc.tags,
        status=doc.status,
        path=doc.path,
        body=doc.body,
        body_line=doc.body_line,
        run_id=doc.run_id,
        stage=doc.stage,
        version=version,
        keywords=keywords,
    )
    return row, [KnowledgeSectionRow(s.heading, s.line_start, s.line_end, s.text) for s in sections]
