"""Turning what a person or an agent typed into a safe FTS5 expression.

Nothing of FTS5's syntax survives: the text is cut into word tokens (letters and digits, any
script), each token becomes a quoted string (``"..."``; quotes cannot occur inside a token), and
the terms are joined with ``OR`` (``mode="any"``, the default: BM25 ranks documents matching
more terms higher) or ``AND``. ``AND``/``OR``/``NOT``/``NEAR``, ``*``, ``^``, ``:``, parentheses
and quotes in the input are words or separators, never operators. Text inside a balanced pair of
double quotes is kept as one phrase.

Common English words ("how", "do", "we", "the" ...) are dropped unless nothing else is left: in
OR mode they would match almost every section and drown the words that matter. A short table of
developer abbreviations widens a term into an OR group (``db`` -> ``db OR database``).

The expression is bounded (``MAX_TERMS`` terms of at most ``MAX_TOKEN_CHARS`` characters), so a
10 kB paste makes a query of normal size. ``to_fts_query`` never raises.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

MAX_TERMS = 24
MAX_TOKEN_CHARS = 64
MAX_PHRASE_TOKENS = 8

_TOKEN = re.compile(r"[^\W_]+(?:[_'][^\W_]+)*")  # letters/digits, joined by _ or '
_PHRASE = re.compile(r'"([^"]*)"')

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be been before being
    below between both but by can could did do does doing done down during each else ever few
    for from further get gets getting give had has have having he her here hers him his how i
    if in into is it its itself just know let like make me more most much must my need needs no
    nor not now of off on once only or other our ours out over own please same say says shall
    she should show so some such tell than that the their theirs them then there these they
    this those through to too under until up upon us use used uses using very via vs want was
    way we were what when where whether which while who whom why will with within without would
    yes yet you your yours
    """.split()  # noqa: SIM905 - a word list reads better as text
)

# Abbreviations developers type for words documents spell out (and the reverse where the short
# form is what documents use). Each entry widens one query term into an OR group.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "db": ("database",),
    "dbs": ("database",),
    "postgres": ("postgresql",),
    "pg": ("postgresql",),
    "k8s": ("kubernetes",),
    "auth": ("authentication", "authorization"),
    "authn": ("authentication",),
    "authz": ("authorization",),
    "config": ("configuration",),
    "env": ("environment",),
    "repo": ("repository",),
    "deps": ("dependencies",),
    "dep": ("dependency",),
    "perf": ("performance",),
    "dev": ("development",),
    "prod": ("production",),
    "msg": ("message",),
    "msgs": ("messages",),
    "pr": ("pull request",),
    "prs": ("pull requests",),
    "ci": ("continuous integration",),
    "adr": ("decision record",),
    "adrs": ("decision records",),
    "e2e": ("end to end",),
    "pii": ("personal data",),
    "gdpr": ("personal data",),
    "jwt": ("token",),
    "mq": ("queue",),
    "sso": ("single sign on",),
    "2fa": ("mfa",),
    "mfa": ("multi factor",),
}

Mode = Literal["all", "any"]


def _quote(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def _tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text) if len(t) <= MAX_TOKEN_CHARS]


def query_terms(text: str) -> list[str]:
    """The query's terms, in order, without duplicates: single words, and phrases (several
    words separated by spaces) from balanced double quotes. Stopwords are dropped unless they
    are all there is."""
    try:
        return _terms(text)
    except (RecursionError, MemoryError):  # pragma: no cover - defensive: nothing may raise
        return []


def _terms(text: str) -> list[str]:
    if not isinstance(text, str):
        return []
    text = text[:20_000]
    phrases: list[str] = []
    for m in _PHRASE.finditer(text):
        words = _tokens(m.group(1))[:MAX_PHRASE_TOKENS]
        if len(words) > 1:
            phrases.append(" ".join(words))
    rest = _PHRASE.sub(" ", text) if phrases else text
    words = [t for t in _tokens(rest)]
    kept = [w for w in words if w not in STOPWORDS] or words
    out: dict[str, None] = {}
    for term in [*phrases, *kept]:
        out.setdefault(term, None)
        if len(out) >= MAX_TERMS:
            break
    return list(out)


def query_groups(text: str) -> list[str]:
    """One FTS5 expression per query term: the quoted term, or an OR group of the term and
    its synonyms (``("db" OR "database")``). Empty when nothing is searchable."""
    groups: list[str] = []
    for term in query_terms(text):
        alternatives = [term, *SYNONYMS.get(term, ())]
        quoted = [_quote(a) for a in dict.fromkeys(alternatives)]
        groups.append(quoted[0] if len(quoted) == 1 else "(" + " OR ".join(quoted) + ")")
    return groups


def to_fts_query(text: str, *, mode: Mode = "any") -> str | None:
    """A safe FTS5 MATCH expression for ``text``, or None when nothing is searchable.

    ``mode="any"`` joins terms with OR, ``"all"`` with AND. Never raises, whatever the input.
    """
    groups = query_groups(text)
    if not groups:
        return None
    return (" AND " if mode == "all" else " OR ").join(groups)


def focused_query(groups: Sequence[str], counts: Sequence[int], budget: int) -> str:
    """An OR query over ``groups`` that only considers sections matching its rarer terms.

    ``counts`` are the sections each group matches. The rarest groups whose counts add up to
    at most ``budget`` (at least one) must match: ``(rare1 OR rare2) AND (rare1 OR rare2 OR
    common)``. BM25 still scores every term, so the common words keep their (small) say in
    the ranking, but a section that matches only common words, which could not rank well
    anyway, is never scored: at 100k sections a word like "service" matches thousands.
    Without a common group this is the plain OR query.
    """
    order = sorted(range(len(groups)), key=lambda i: counts[i])
    chosen: list[int] = []
    total = 0
    for i in order:
        if chosen and total + counts[i] > budget:
            break
        chosen.append(i)
        total += counts[i]
    everything = " OR ".join(groups)
    if len(chosen) == len(groups):
        return everything
    rare = " OR ".join(groups[i] for i in sorted(chosen))
    return f"({rare}) AND ({everything})"
