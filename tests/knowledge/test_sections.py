"""Splitting documents into sections with line ranges that point into the file."""

from __future__ import annotations

from stageflow.knowledge.documents import Document, parse_document
from stageflow.knowledge.sections import split_sections

FILE = """\
---
title: Error handling
tags: [errors]
---
# Error handling

Intro paragraph.

## Principles

Never swallow.

#### Detail kept in its section

```python
# a comment, not a heading
raise
```

### Wrapping

Wrap at the boundary.
## Empty heading
## Last

Final words.
"""


def _doc(text: str = FILE, path: str = "k/errors.md") -> Document:
    return parse_document(text, path=path, root_hint="k")


def test_sections_follow_headings_of_level_one_to_three() -> None:
    sections = split_sections(_doc())
    assert [(s.index, s.heading) for s in sections] == [
        (0, "Error handling"),
        (1, "Principles"),
        (2, "Wrapping"),
        (3, "Last"),
    ]
    principles = sections[1].text
    assert "#### Detail kept in its section" in principles
    assert "# a comment, not a heading" in principles
    assert all(s.doc_id == "errors" for s in sections)


def test_line_ranges_are_lines_of_the_file() -> None:
    lines = FILE.split("\n")
    for section in split_sections(_doc()):
        first = lines[section.line_start - 1]
        last = lines[section.line_end - 1]
        assert first.lstrip("#").strip() == section.heading
        assert section.text.endswith(last.strip())
    last_section = split_sections(_doc())[-1]
    assert (last_section.line_start, last_section.line_end) == (24, 26)


def test_text_before_the_first_heading_is_a_section_titled_like_the_document() -> None:
    doc = _doc("---\ntitle: Notes\n---\nSome preface.\n\n## Part\n\nBody.\n")
    sections = split_sections(doc)
    assert [(s.heading, s.text, s.line_start, s.line_end) for s in sections] == [
        ("Notes", "Some preface.", 4, 4),
        ("Part", "Body.", 6, 8),
    ]


def test_a_document_without_text_still_has_one_searchable_section() -> None:
    sections = split_sections(_doc("---\ntitle: Placeholder\n---\n\n# Placeholder\n"))
    assert len(sections) == 1
    assert (sections[0].heading, sections[0].text) == ("Placeholder", "")


def test_a_long_section_is_split_at_paragraphs_within_max_chars() -> None:
    paragraphs = [f"Paragraph {i} " + "word " * 60 for i in range(10)]
    text = "# Long\n\n" + "\n\n".join(p.strip() for p in paragraphs) + "\n"
    sections = split_sections(_doc(text), max_chars=1000)
    assert len(sections) > 2
    assert all(len(s.text) <= 1000 for s in sections)
    assert all(s.heading == "Long" for s in sections)
    assert sections[0].line_start == 1  # the heading line
    joined = "\n\n".join(s.text for s in sections)
    assert joined == "\n\n".join(p.strip() for p in paragraphs)
    lines = text.split("\n")
    for s in sections[1:]:
        assert lines[s.line_start - 1] == s.text.split("\n")[0]
        assert lines[s.line_end - 1] == s.text.split("\n")[-1]


def test_one_huge_line_is_sliced_and_every_slice_keeps_its_line_number() -> None:
    text = "# Blob\n\n" + "x" * 2500 + "\n"
    sections = split_sections(_doc(text), max_chars=1000)
    assert [len(s.text) for s in sections] == [1000, 1000, 500]
    assert [(s.line_start, s.line_end) for s in sections] == [(1, 3), (3, 3), (3, 3)]
