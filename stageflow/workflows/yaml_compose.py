"""YAML text to nodes within the bounds of ``bounds.py``: no recursion, no alias bombs.

PyYAML's composer recurses once per nesting level (a 100 KB file of ``[`` raises RecursionError,
or crashes the C stack with libyaml), and an alias is just its anchor's node again, so a small
file can stand for an exponentially large document. This composer reads the parser's events
(libyaml's when PyYAML has it: its parser keeps its own stack) and builds the same nodes with
an explicit stack. On the way it refuses, at the line of the event that crosses the bound:
nesting deeper than ``MAX_DEPTH`` (aliases count with the depth of what they stand for), an
alias inside its own anchor, and aliases that add more than ``MAX_ALIAS_NODES`` nodes or
``MAX_ALIAS_CHARS`` characters once expanded. Anchors and merge keys within those bounds load
as before: they are how a template shares a retry policy between stages.

Parser errors are ``yaml.YAMLError`` as usual; libyaml words them differently, so on an error
in a file of up to ``REWORD_LIMIT`` characters (every hand-written template) the pure-Python
parser runs again to give the messages users know.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import yaml
from yaml.composer import ComposerError
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    DocumentEndEvent,
    Event,
    MappingStartEvent,
    ScalarEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from stageflow.workflows.bounds import (
    MAX_ALIAS_CHARS,
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    LimitExceeded,
)
from stageflow.workflows.locations import DocPath

# libyaml's parser when PyYAML was built with it: same events and marks, about 8x faster
FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
REWORD_LIMIT = 64 * 1024  # characters up to which a YAML error is worded by the pure parser


_Size = tuple[int, int, int]  # nodes and characters once expanded; levels (a scalar: 0)


class _Open:
    """A list or mapping whose end event has not come yet (slots: this runs per event)."""

    __slots__ = ("anchor", "chars", "height", "key", "node", "nodes")

    def __init__(self, node: yaml.SequenceNode | yaml.MappingNode, anchor: str | None) -> None:
        self.node = node
        self.anchor = anchor
        self.nodes, self.chars, self.height = 1, 0, 0  # height: of the tallest child so far
        self.key: yaml.Node | None = None  # a mapping's key waiting for its value


class _Events(Protocol):
    """What the composer uses of a loader (PyYAML's own methods are untyped)."""

    def get_event(self) -> Any: ...
    def peek_event(self) -> Any: ...
    def resolve(self, kind: type[yaml.Node], value: str | None, implicit: Any) -> str: ...


class _Composer:
    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = cast(_Events, loader)
        self.stack: list[_Open] = []
        self.anchors: dict[str, tuple[yaml.Node, _Size]] = {}
        self.alias_nodes = self.alias_chars = 0

    def document(self) -> yaml.Node | None:
        """The stream's only document, like ``Composer.get_single_node``."""
        self.loader.get_event()  # stream start
        if isinstance(self.loader.peek_event(), StreamEndEvent):
            self.loader.get_event()
            return None
        self.loader.get_event()  # document start
        root = self.node()
        end = self.loader.get_event()
        assert isinstance(end, DocumentEndEvent), end
        nxt = self.loader.get_event()
        if not isinstance(nxt, StreamEndEvent):
            raise ComposerError(
                "expected a single document in the stream",
                root.start_mark,
                "but found another document",
                nxt.start_mark,
            )
        return root

    def node(self) -> yaml.Node:
        """Compose one node, its children included, from the events (no recursion)."""
        get, resolve, stack = self.loader.get_event, self.loader.resolve, self.stack
        while True:
            event = get()
            kind = type(event)
            if kind is ScalarEvent:  # most events: kept inline
                if event.anchor is not None:
                    self.check_anchor(event)
                tag = event.tag
                if tag is None or tag == "!":
                    tag = resolve(yaml.ScalarNode, event.value, event.implicit)
                node: yaml.Node = yaml.ScalarNode(
                    tag, event.value, event.start_mark, event.end_mark, style=event.style
                )
                size: _Size = (1, len(event.value), 0)
                if event.anchor is not None:
                    self.anchors[event.anchor] = (node, size)
            elif kind is AliasEvent:
                node, size = self.alias(event)
            elif kind is SequenceStartEvent or kind is MappingStartEvent:
                self.open(event)
                continue
            else:  # the end of a sequence or mapping
                top = stack.pop()
                node = top.node
                node.end_mark = event.end_mark
                size = (top.nodes, top.chars, top.height + 1)
                if top.anchor is not None:
                    self.anchors[top.anchor] = (node, size)
            if not stack:
                return node
            parent = stack[-1]
            parent.nodes += size[0]
            parent.chars += size[1]
            parent.height = max(parent.height, size[2])
            if isinstance(parent.node, yaml.SequenceNode):
                parent.node.value.append(node)
            elif parent.key is None:
                parent.key = node
            else:
                parent.node.value.append((parent.key, node))
                parent.key = None

    def open(self, event: CollectionStartEvent) -> None:
        self.check_anchor(event)
        if len(self.stack) + 1 > MAX_DEPTH:
            raise self.limit(
                "nested too deeply", event, f"more than {MAX_DEPTH} levels of lists and mappings"
            )
        kind = yaml.SequenceNode if isinstance(event, SequenceStartEvent) else yaml.MappingNode
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(kind, None, event.implicit)
        start: Any = event.start_mark  # libyaml's marks are typed apart from PyYAML's
        opened = kind(tag, [], start, None, flow_style=event.flow_style)
        self.stack.append(_Open(opened, event.anchor))

    def alias(self, event: AliasEvent) -> tuple[yaml.Node, _Size]:
        name = event.anchor
        if any(o.anchor == name for o in self.stack):
            raise self.limit("an alias may not contain itself", event)
        if name not in self.anchors:
            at: Any = event.start_mark
            raise ComposerError(None, None, f"found undefined alias {name!r}", at)
        node, size = self.anchors[name]
        anchored = f"*{name} (anchored at line {node.start_mark.line + 1})"
        if len(self.stack) + size[2] > MAX_DEPTH:
            raise self.limit(
                "nested too deeply",
                event,
                f"the alias {anchored} nests more than {MAX_DEPTH} levels of lists and mappings",
            )
        self.alias_nodes += size[0]
        self.alias_chars += size[1]
        if self.alias_nodes > MAX_ALIAS_NODES or self.alias_chars > MAX_ALIAS_CHARS:
            raise self.limit(
                "YAML aliases expand too far",
                event,
                f"with the alias {anchored} they add {self.alias_nodes} nodes and "
                f"{self.alias_chars} characters to the document (at most {MAX_ALIAS_NODES} "
                f"nodes and {MAX_ALIAS_CHARS} characters); repeat the value fewer times",
            )
        return node, size

    def check_anchor(self, event: ScalarEvent | CollectionStartEvent) -> None:
        name = event.anchor
        if name is None:
            return
        first = self.anchors.get(name)
        mark = first[0].start_mark if first else None
        if mark is None:
            mark = next((o.node.start_mark for o in self.stack if o.anchor == name), None)
        if mark is not None:
            second: Any = event.start_mark
            raise ComposerError(
                f"found duplicate anchor {name!r}; first occurrence",
                mark,
                "second occurrence",
                second,
            )

    def limit(self, message: str, event: Event, detail: str = "") -> LimitExceeded:
        mark: Any = event.start_mark
        return LimitExceeded(
            message, line=mark.line + 1, column=mark.column + 1, path=self.path(), detail=detail
        )

    def path(self) -> DocPath:
        """The document path of the position being composed (for messages)."""
        out: list[str | int] = []
        for frame in self.stack:
            if isinstance(frame.node, yaml.SequenceNode):
                out.append(len(frame.node.value))
            elif isinstance(frame.key, yaml.ScalarNode):
                out.append(frame.key.value)
            else:
                break
        return tuple(out)


def compose_bounded(text: str) -> yaml.Node | None:
    """The root node of ``text``, ``None`` if it holds no document.

    Raises ``LimitExceeded`` for a bound and ``yaml.YAMLError`` for malformed YAML (worded by
    the pure-Python parser).
    """
    loader = FAST_LOADER(text)
    try:
        return _Composer(loader).document()
    except yaml.YAMLError as exc:
        # libyaml stops at 1,000 levels, sometimes before we see level 65: the pure parser
        # finds our bound at its line (within its 1,024-character lookahead)
        nesting = "maximum nesting depth" in str(getattr(exc, "problem", ""))
        if FAST_LOADER is yaml.SafeLoader or (len(text) > REWORD_LIMIT and not nesting):
            raise  # the pure parser needs about 10 s for 1 MB: keep libyaml's words then
    finally:
        loader.dispose()
    pure = yaml.SafeLoader(text)
    try:
        return _Composer(pure).document()
    finally:
        pure.dispose()


def construct(node: yaml.Node) -> object:
    """The Python value of a node from ``compose_bounded`` (the safe types only)."""
    return yaml.constructor.SafeConstructor().construct_document(node)
