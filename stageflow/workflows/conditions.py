"""The condition language of ``when`` (skip) and ``gate`` (block) expressions.

A small, safe language: parsed by hand into a frozen AST and evaluated by walking it, never
``eval``'ed. Grammar, loosest binding first::

    or      := and (("or" | "||") and)*
    and     := not (("and" | "&&") not)*
    not     := ("not" | "!") not | compare
    compare := operand (("==" | "!=" | "<" | "<=" | ">" | ">=") operand
                        | ["not"] "in" (list | reference))?
    operand := number | string | true | false | null | list | reference | "(" or ")"
    list    := "[" (literal ("," literal)* ","?)? "]"

References are ``inputs.<name>[.<key>...]``, ``<stage>.status`` and
``<stage>.outputs.<key>[.<key>...]``; a bare reference is tested for truthiness. Three names
read the stage's own upstream (its ``depends_on``): ``all_passed`` (every one succeeded with
a passing verdict), ``any_approved`` (one of them passed a human approval) and ``passed`` (how
many passed; a gate ``{must_pass: N}`` is sugar for ``passed >= N``). Evaluation never
raises: a missing reference is ``None``, and ordering values of different types (or ``None``)
is simply false. ``true``/``false``/``null`` and the keywords are case-insensitive.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

MAX_LENGTH = 2000
MAX_DEPTH = 50
# names computed over the stage's upstream, never stage ids (see the module docstring)
UPSTREAM_NAMES = frozenset({"all_passed", "any_approved", "passed"})

Value = None | bool | int | float | str | tuple[Any, ...]


class ConditionError(ValueError):
    """A condition that does not parse; ``position`` is the 0-based offset into ``text``."""

    def __init__(self, message: str, position: int, text: str) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.text = text

    @property
    def column(self) -> int:
        """1-based column of the problem."""
        return self.position + 1

    def caret(self) -> str:
        """The condition with a caret under the problem, for multi-line displays."""
        return f"{self.text}\n{' ' * self.position}^"


# --- AST -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lit:
    value: Value


@dataclass(frozen=True)
class Ref:
    path: tuple[str, ...]


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class BoolOp:
    op: Literal["and", "or"]
    operands: tuple[Node, ...]


CompareOp = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in"]


@dataclass(frozen=True)
class Compare:
    op: CompareOp
    left: Node
    right: Node


Node = Lit | Ref | Not | BoolOp | Compare


# --- tokens --------------------------------------------------------------------------------

TokenKind = Literal["num", "str", "name", "kw", "op", "end"]


@dataclass(frozen=True)
class _Token:
    kind: TokenKind
    value: Any
    pos: int
    end: int


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_OPS = ("==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", "[", "]", ",")
_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r", "0": "\0"}


def _err(message: str, pos: int, text: str) -> ConditionError:
    return ConditionError(f"{message} at column {pos + 1}", pos, text)


def _tokens(text: str) -> Iterator[_Token]:
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "'\"":
            value, end = _string(text, i)
            yield _Token("str", value, i, end)
            i = end
            continue
        m = _NUMBER.match(text, i)
        if m:
            raw = m.group()
            num: int | float = float(raw) if any(c in raw for c in ".eE") else int(raw)
            yield _Token("num", num, i, m.end())
            i = m.end()
            continue
        m = _NAME.match(text, i)
        if m:
            word = m.group()
            if word.lower() in _KEYWORDS:
                yield _Token("kw", word.lower(), i, m.end())
            else:
                yield _Token("name", word, i, m.end())
            i = m.end()
            continue
        op = next((o for o in _OPS if text.startswith(o, i)), None)
        if op is None:
            hint = " (use '==' to compare)" if ch == "=" else ""
            raise _err(f"unexpected character {ch!r}{hint}", i, text)
        yield _Token("op", op, i, i + len(op))
        i += len(op)
    yield _Token("end", None, n, n)


def _string(text: str, start: int) -> tuple[str, int]:
    quote, i = text[start], start + 1
    out: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\":
            esc = text[i + 1 : i + 2]
            if esc in _ESCAPES:
                out.append(_ESCAPES[esc])
                i += 2
                continue
            if esc == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", text[i + 2 : i + 6]):
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            raise _err(f"unknown escape '\\{esc}' in string", i, text)
        out.append(ch)
        i += 1
    raise _err("unterminated string", start, text)


# --- parser --------------------------------------------------------------------------------

_COMPARE_OPS = frozenset({"==", "!=", "<", "<=", ">", ">="})
_STAGE_REF_HELP = (
    "use <stage>.status, <stage>.outputs.<key>, inputs.<name>, all_passed, any_approved or passed"
)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = list(_tokens(text))
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> _Token:
        return self.toks[self.i]

    def advance(self) -> _Token:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def at(self, kind: TokenKind, *values: str) -> bool:
        tok = self.tok
        return tok.kind == kind and (not values or tok.value in values)

    def unexpected(self, tok: _Token | None = None) -> ConditionError:
        tok = tok or self.tok
        if tok.kind == "end":
            return _err("unexpected end of condition", tok.pos, self.text)
        shown = self.text[tok.pos : tok.end]
        if len(shown) > 20:
            shown = shown[:17] + "..."
        return _err(f"unexpected {shown!r}", tok.pos, self.text)

    def enter(self, pos: int) -> None:
        # Bounded explicitly so hostile input yields a ConditionError, never RecursionError.
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _err(f"condition nests deeper than {MAX_DEPTH} levels", pos, self.text)

    def parse(self) -> Node:
        if self.at("end"):
            raise _err("empty condition", 0, self.text)
        node = self.or_()
        if not self.at("end"):
            raise self.unexpected()
        return node

    def or_(self) -> Node:
        items = [self.and_()]
        while self.at("kw", "or") or self.at("op", "||"):
            self.advance()
            items.append(self.and_())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def and_(self) -> Node:
        items = [self.not_()]
        while self.at("kw", "and") or self.at("op", "&&"):
            self.advance()
            items.append(self.not_())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def not_(self) -> Node:
        if self.at("kw", "not") or self.at("op", "!"):
            self.enter(self.advance().pos)
            node = Not(self.not_())
            self.depth -= 1
            return node
        return self.compare()

    def compare(self) -> Node:
        left = self.operand()
        if self.tok.kind == "op" and self.tok.value in _COMPARE_OPS:
            op: CompareOp = self.advance().value
            return Compare(op, left, self.operand())
        if self.at("kw", "in"):
            self.advance()
            return Compare("in", left, self.container())
        following = self.toks[min(self.i + 1, len(self.toks) - 1)]
        if self.at("kw", "not") and following.kind == "kw" and following.value == "in":
            self.i += 2
            return Compare("not in", left, self.container())
        return left

    def container(self) -> Node:
        if self.at("op", "[") or self.at("name"):
            return self.operand()
        raise _err("expected a list or a reference after 'in'", self.tok.pos, self.text)

    def operand(self) -> Node:
        tok = self.tok
        if tok.kind == "op" and tok.value == "(":
            self.enter(self.advance().pos)
            node = self.or_()
            if not self.at("op", ")"):
                raise _err("expected ')'", self.tok.pos, self.text)
            self.advance()
            self.depth -= 1
            return node
        if tok.kind == "name":
            self.advance()
            return self.reference(tok)
        return Lit(self.literal())

    def literal(self) -> Value:
        tok = self.tok
        if tok.kind in ("num", "str"):
            self.advance()
            value: Value = tok.value
            return value
        if tok.kind == "kw" and tok.value in ("true", "false", "null"):
            self.advance()
            return {"true": True, "false": False, "null": None}[tok.value]
        if tok.kind == "op" and tok.value == "[":
            self.enter(self.advance().pos)
            items: list[Value] = []
            while not self.at("op", "]"):
                if self.at("name"):
                    raise _err("list items must be literals", self.tok.pos, self.text)
                items.append(self.literal())
                if not self.at("op", ","):
                    break
                self.advance()
            if not self.at("op", "]"):
                raise _err("expected ',' or ']'", self.tok.pos, self.text)
            self.advance()
            self.depth -= 1
            return tuple(items)
        raise self.unexpected(tok)

    def reference(self, tok: _Token) -> Ref:
        path = tuple(tok.value.split("."))
        head, rest = path[0], path[1:]
        ok = (
            (head in UPSTREAM_NAMES and not rest)
            or (head == "inputs" and len(rest) >= 1)
            or (head != "inputs" and rest == ("status",))
            or (head != "inputs" and len(rest) >= 2 and rest[0] == "outputs")
        )
        if not ok:
            raise _err(f"unknown reference '{tok.value}' ({_STAGE_REF_HELP})", tok.pos, self.text)
        return Ref(path)


# --- evaluation ----------------------------------------------------------------------------


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _truthy(v: object) -> bool:
    try:
        return bool(v)
    except (TypeError, ValueError):  # objects such as arrays refuse bool(); treat as false
        return False


def _lookup(ctx: Mapping[str, Any], path: Sequence[str]) -> Any:
    cur: Any = ctx
    for key in path:
        if isinstance(cur, Mapping):
            cur = cur.get(key)
        elif isinstance(cur, list | tuple) and key.isdigit() and int(key) < len(cur):
            cur = cur[int(key)]
        else:
            return None
        if cur is None:
            return None
    return cur


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) or isinstance(b, str) or a is None or b is None:
        return type(a) is type(b) and a == b
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _order(op: str, a: Any, b: Any) -> bool:
    comparable = (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))
    if not comparable:
        return False
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def _contains(item: Any, container: Any) -> bool:
    if isinstance(container, list | tuple):
        return any(_equal(item, x) for x in container)
    if isinstance(container, str) and isinstance(item, str):
        return item in container
    if isinstance(container, Mapping) and isinstance(item, str):
        return item in container
    return False


def _eval(node: Node, ctx: Mapping[str, Any]) -> Any:
    if isinstance(node, Lit):
        return node.value
    if isinstance(node, Ref):
        return _lookup(ctx, node.path)
    if isinstance(node, Not):
        return not _truthy(_eval(node.operand, ctx))
    if isinstance(node, BoolOp):
        if node.op == "and":
            return all(_truthy(_eval(n, ctx)) for n in node.operands)
        return any(_truthy(_eval(n, ctx)) for n in node.operands)
    left, right = _eval(node.left, ctx), _eval(node.right, ctx)
    if node.op == "==":
        return _equal(left, right)
    if node.op == "!=":
        return not _equal(left, right)
    if node.op == "in":
        return _contains(left, right)
    if node.op == "not in":
        return not _contains(left, right)
    return _order(node.op, left, right)


def _refs(node: Node) -> Iterator[tuple[str, ...]]:
    if isinstance(node, Ref):
        yield node.path
    elif isinstance(node, Not):
        yield from _refs(node.operand)
    elif isinstance(node, BoolOp):
        for n in node.operands:
            yield from _refs(n)
    elif isinstance(node, Compare):
        yield from _refs(node.left)
        yield from _refs(node.right)


@dataclass(frozen=True)
class Condition:
    """A parsed condition; constructing one parses ``text`` (raising ``ConditionError``)."""

    text: str
    root: Node = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.text) > MAX_LENGTH:
            raise ConditionError(
                f"condition is longer than {MAX_LENGTH} characters", MAX_LENGTH, self.text
            )
        object.__setattr__(self, "root", _Parser(self.text).parse())

    def __str__(self) -> str:
        return self.text

    def evaluate(self, ctx: Mapping[str, Any]) -> bool:
        """True or false against ``{"inputs": {...}, "<stage>": {"status", "outputs"}}``."""
        return _truthy(_eval(self.root, ctx))

    def stage_refs(self) -> frozenset[str]:
        """Ids of the stages the condition reads (``inputs`` excluded)."""
        skip = UPSTREAM_NAMES | {"inputs"}
        return frozenset(p[0] for p in _refs(self.root) if p[0] not in skip)

    def input_refs(self) -> frozenset[str]:
        """Names of the inputs the condition reads (``inputs.<name>``)."""
        return frozenset(p[1] for p in _refs(self.root) if p[0] == "inputs")


def parse_condition(text: str) -> Condition:
    """Parse ``text``; raises ``ConditionError`` with the column of the first problem."""
    return Condition(text)
