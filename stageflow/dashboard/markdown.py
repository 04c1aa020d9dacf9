"""Artifacts as Markdown, rendered safely: everything is HTML-escaped first, then a small subset
of Markdown (headings, paragraphs, lists, quotes, fenced code, rules, emphasis, inline code,
links) is turned into tags. Raw HTML in an artifact stays text; a link is a link only when its
target is http(s), mailto or relative, so ``javascript:`` and ``data:`` URLs never become one.
"""

from __future__ import annotations

import html
import re

__all__ = ["render_markdown"]

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ULIST = re.compile(r"^\s*[-*+]\s+(.*)$")
_OLIST = re.compile(r"^\s*\d{1,9}[.)]\s+(.*)$")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_CODE = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_EM = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_SAFE_URL = re.compile(r"^(https?://|mailto:|/|#|\.{0,2}/|[\w.-]+(/|$))", re.IGNORECASE)


def render_markdown(text: str) -> str:
    """HTML for ``text`` (untrusted Markdown). No input produces a tag or attribute of its own."""
    out: list[str] = []
    para: list[str] = []
    items: list[str] = []
    list_tag = ""
    fence: list[str] | None = None

    def flush() -> None:
        nonlocal list_tag
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()
        if items:
            out.append(f"<{list_tag}>" + "".join(f"<li>{i}</li>" for i in items) + f"</{list_tag}>")
            items.clear()
            list_tag = ""

    for line in text.splitlines():
        if fence is not None:
            if line.strip().startswith("```"):
                out.append("<pre><code>" + html.escape("\n".join(fence)) + "</code></pre>")
                fence = None
            else:
                fence.append(line)
            continue
        if line.strip().startswith("```"):
            flush()
            fence = []
            continue
        if not line.strip():
            flush()
            continue
        if m := _HEADING.match(line):
            flush()
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif _RULE.match(line):
            flush()
            out.append("<hr>")
        elif (m := _ULIST.match(line)) or (n := _OLIST.match(line)):
            tag = "ul" if m else "ol"
            if para or (items and list_tag != tag):
                flush()
            list_tag = tag
            items.append(_inline((m or n).group(1)))  # type: ignore[union-attr]
        elif line.lstrip().startswith(">"):
            flush()
            out.append(f"<blockquote>{_inline(line.lstrip()[1:].strip())}</blockquote>")
        else:
            if items:
                flush()
            para.append(line.strip())
    if fence is not None:  # an unclosed fence keeps its text
        out.append("<pre><code>" + html.escape("\n".join(fence)) + "</code></pre>")
    flush()
    return "\n".join(out)


def _inline(raw: str) -> str:
    """Escape ``raw``, then mark up code spans (left alone inside), links and emphasis."""
    parts = _CODE.split(raw)
    done: list[str] = []
    for i, part in enumerate(parts):
        if i % 2:  # inside backticks
            done.append(f"<code>{html.escape(part)}</code>")
            continue
        text = html.escape(part, quote=True)
        text = _LINK.sub(_link, text)
        text = _STRONG.sub(r"<strong>\1</strong>", text)
        text = _EM.sub(r"<em>\1</em>", text)
        done.append(text)
    return "".join(done)


def _link(m: re.Match[str]) -> str:
    label, url = m.group(1), m.group(2)
    target = html.unescape(url)
    if ":" in target.split("/", 1)[0] and not _SAFE_URL.match(target):
        return m.group(0)  # javascript:, data:, vbscript: ... stay text
    if not _SAFE_URL.match(target):
        return m.group(0)
    # url is escaped text already (quotes included), so it cannot leave the attribute
    return f'<a href="{url}" rel="noopener noreferrer nofollow">{label}</a>'
