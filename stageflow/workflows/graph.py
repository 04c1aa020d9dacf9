"""The ``depends_on`` graph of a template: which stages are upstream of which, and its cycles.

Stages are numbered by their index; ``edges[i]`` lists the stages that stage ``i`` depends on.
The graph is split into strongly connected components once (Tarjan's algorithm, with an
explicit stack: a chain of thousands of stages must not recurse), and each component's
upstream set is a bitset (a Python int) built from the components it depends on. So "is ``j``
upstream of ``i``" is one bit test, and the whole relation costs one OR per edge: for a chain of
8,000 stages a few milliseconds, where walking upstream from every stage took time quadratic in
the stage count. Cycles are exactly the components with more than one stage or a self-loop, so
a cyclic template is always reported, however large.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

MAX_CYCLES = 20  # enough to show the user what to fix; enumeration is exponential at worst
_CYCLE_STEPS = 100_000


def components(edges: Sequence[Sequence[int]]) -> list[list[int]]:
    """Strongly connected components, each listed after every component it has an edge to."""
    n = len(edges)
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    out: list[list[int]] = []
    counter = 0
    for root in range(n):
        if index[root] >= 0:
            continue
        work: list[tuple[int, int]] = [(root, 0)]  # (node, next edge to look at)
        while work:
            node, edge = work.pop()
            if edge == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack[node] = True
            if edge < len(edges[node]):
                work.append((node, edge + 1))
                nxt = edges[node][edge]
                if index[nxt] < 0:
                    work.append((nxt, 0))
                elif on_stack[nxt]:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                members: list[int] = []
                while True:
                    member = stack.pop()
                    on_stack[member] = False
                    members.append(member)
                    if member == node:
                        break
                out.append(sorted(members))
            if work:  # back in the caller: fold this node's low link into it
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


class Upstream:
    """The upstream relation of a graph, and whether each stage's is fully known.

    ``known[i]`` is False for a stage whose own ``depends_on`` was malformed; a stage is
    ``certain`` only when it and everything upstream of it is known.
    """

    def __init__(self, edges: Sequence[Sequence[int]], known: Sequence[bool]) -> None:
        self.edges = edges
        self.comps = components(edges)
        self.comp_of = [0] * len(edges)
        for c, members in enumerate(self.comps):
            for m in members:
                self.comp_of[m] = c
        self.reach: list[int] = []
        self._certain: list[bool] = []
        self.cyclic: list[bool] = []
        for c, members in enumerate(self.comps):
            bits, certain = 0, True
            cyclic = len(members) > 1 or members[0] in edges[members[0]]
            for m in members:
                certain = certain and known[m]
                for d in edges[m]:
                    dc = self.comp_of[d]
                    if dc != c:  # components come after those they reach: already built
                        bits |= self.reach[dc] | (1 << d)
                        certain = certain and self._certain[dc]
            if cyclic:  # every stage of a cycle is upstream of every other, itself included
                for m in members:
                    bits |= 1 << m
            self.reach.append(bits)
            self._certain.append(certain)
            self.cyclic.append(cyclic)

    def has(self, stage: int, upstream: int) -> bool:
        """Whether stage ``upstream`` is reachable from ``stage`` through ``depends_on``."""
        return bool(self.reach[self.comp_of[stage]] >> upstream & 1)

    def certain(self, stage: int) -> bool:
        """Whether every ``depends_on`` from ``stage`` upwards was well-formed."""
        return self._certain[self.comp_of[stage]]

    def cycles(self, order: Sequence[int]) -> Iterator[list[int]]:
        """Elementary cycles, each once, starting at its earliest stage of ``order``
        (``a -> b -> a``); at most ``MAX_CYCLES``, and at least one per cyclic component."""
        rank = {node: n for n, node in enumerate(order)}
        shown: set[int] = set()
        found = 0
        for cycle in self._elementary(order, rank):
            shown.add(self.comp_of[cycle[0]])
            yield cycle
            found += 1
            if found >= MAX_CYCLES:
                return
        for c, members in enumerate(self.comps):  # cut short by the step bound: one each
            starts = [m for m in members if m in rank]
            if self.cyclic[c] and c not in shown and starts:
                yield self._shortest_cycle(min(starts, key=rank.__getitem__))
                found += 1
                if found >= MAX_CYCLES:
                    return

    def _elementary(self, order: Sequence[int], rank: dict[int, int]) -> Iterator[list[int]]:
        steps = 0
        for start in order:
            comp = self.comp_of[start]
            if not self.cyclic[comp]:
                continue
            path, on_path = [start], {start}
            branches = [iter(self.edges[start])]
            while branches:
                steps += 1
                if steps > _CYCLE_STEPS:
                    return
                nxt = next(branches[-1], None)
                if nxt is None:
                    branches.pop()
                    on_path.discard(path.pop())
                elif nxt == start:
                    yield [*path, start]
                elif (
                    self.comp_of[nxt] == comp
                    and rank.get(nxt, -1) > rank[start]
                    and nxt not in on_path
                ):
                    path.append(nxt)
                    on_path.add(nxt)
                    branches.append(iter(self.edges[nxt]))

    def _shortest_cycle(self, start: int) -> list[int]:
        """A shortest cycle through ``start`` inside its component (breadth first)."""
        comp = self.comp_of[start]
        parent: dict[int, int] = {}
        todo = deque([start])
        while todo:
            node = todo.popleft()
            for nxt in self.edges[node]:
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if self.comp_of[nxt] == comp and nxt not in parent:
                    parent[nxt] = node
                    todo.append(nxt)
        return [start, start]  # unreachable: ``start`` is on a cycle of its component
