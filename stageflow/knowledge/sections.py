"""Splitting a document into sections: the unit the index ranks and the context builder packs.

A section starts at a heading of level 1 to 3 (deeper headings stay inside their section) and
runs to the next one; text before the first heading is a section titled with the document's
title. A heading with no text under it (typically the ``# Title`` line) is not a section of its
own. A section longer than ``max_chars`` is split at paragraph breaks (then lines, then
characters); every piece keeps the heading and its own line range.

Line numbers are 1-based lines of the source file (the body's offset in the file is added), so
``path:line_start-line_end`` points at the text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from stageflow.knowledge.documents import Document, headings

_MAX_LEVEL = 3


@dataclass(frozen=True)
class Section:
    """One indexed piece of a document. ``text`` excludes the heading line."""

    doc_id: str
    index: int
    heading: str
    line_start: int
    line_end: int
    text: str


@dataclass(frozen=True)
class _Block:
    heading: str
    heading_line: int | None  # 0-based body line of the heading, None for the preamble
    first: int  # 0-based body line of the first content line
    lines: list[str]


def split_sections(doc: Document, *, max_chars: int = 4000) -> list[Section]:
    """The document's sections in order, indexed from 0. Always at least one: a document with
    no text gets one empty section, so its title and tags are still searchable."""
    max_chars = max(200, max_chars)
    lines = doc.body.split("\n")
    out: list[Section] = []
    for block in _blocks(lines, doc.title):
        for k, (start, end, text) in enumerate(_pieces(block.lines, block.first, max_chars)):
            # the first piece of a headed block starts at its heading line
            first = block.heading_line if k == 0 and block.heading_line is not None else start
            out.append(
                Section(
                    doc_id=doc.doc_id,
                    index=len(out),
                    heading=block.heading,
                    line_start=doc.body_line + first,
                    line_end=doc.body_line + end,
                    text=text,
                )
            )
    if not out:
        last = max(0, len(lines) - 1)
        out.append(Section(doc.doc_id, 0, doc.title, doc.body_line, doc.body_line + last, ""))
    return out


def _blocks(lines: list[str], title: str) -> Iterator[_Block]:
    marks = [(i, text) for i, level, text in headings("\n".join(lines)) if level <= _MAX_LEVEL]
    first_heading = marks[0][0] if marks else len(lines)
    if first_heading > 0:
        yield _Block(title, None, 0, lines[:first_heading])
    for n, (i, text) in enumerate(marks):
        end = marks[n + 1][0] if n + 1 < len(marks) else len(lines)
        yield _Block(text, i, i + 1, lines[i + 1 : end])


def _pieces(lines: list[str], first: int, max_chars: int) -> Iterator[tuple[int, int, str]]:
    """(first line, last line, text) of each piece of a block's content, blank ends trimmed."""
    paragraphs = list(_paragraphs(lines, first))
    current: list[tuple[int, int, str]] = []
    size = 0
    for para in paragraphs:
        for part in _fit(para, max_chars):
            if current and size + len(part[2]) + 2 > max_chars:
                yield _join(current)
                current, size = [], 0
            current.append(part)
            size += len(part[2]) + 2
    if current:
        yield _join(current)


def _join(parts: list[tuple[int, int, str]]) -> tuple[int, int, str]:
    return parts[0][0], parts[-1][1], "\n\n".join(p[2] for p in parts)


def _paragraphs(lines: list[str], first: int) -> Iterator[tuple[int, int, str]]:
    """Runs of non-blank lines (a fenced code block is one run even with blank lines)."""
    start: int | None = None
    buf: list[str] = []
    fence: str | None = None
    for offset, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = marker if fence is None else (None if marker == fence else fence)
        if not stripped and fence is None:
            if buf and start is not None:
                yield start, first + offset - 1, "\n".join(buf).strip("\n")
            start, buf = None, []
            continue
        if start is None:
            start = first + offset
        buf.append(line.rstrip())
    if buf and start is not None:
        yield start, first + len(lines) - 1 - _trailing_blank(lines), "\n".join(buf).strip("\n")


def _trailing_blank(lines: list[str]) -> int:
    n = 0
    for line in reversed(lines):
        if line.strip():
            break
        n += 1
    return n


def _fit(para: tuple[int, int, str], max_chars: int) -> Iterator[tuple[int, int, str]]:
    """A paragraph as pieces of at most ``max_chars``: whole lines, else slices of one line."""
    start, end, text = para
    if len(text) <= max_chars:
        yield para
        return
    lines = text.split("\n")
    buf: list[str] = []
    buf_start = start
    size = 0
    for offset, whole in enumerate(lines):
        lineno = start + offset
        line = whole
        while len(line) > max_chars:  # one huge line: slice it (same line number)
            if buf:
                yield buf_start, lineno - 1, "\n".join(buf)
                buf, size = [], 0
            yield lineno, lineno, line[:max_chars]
            line = line[max_chars:]
        if buf and size + len(line) + 1 > max_chars:
            yield buf_start, lineno - 1, "\n".join(buf)
            buf, size = [], 0
        if not buf:
            buf_start = lineno
        buf.append(line)
        size += len(line) + 1
    if buf:
        yield buf_start, end, "\n".join(buf)
