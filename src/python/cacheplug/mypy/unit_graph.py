"""The units of separate compilation: mypy's own import graph over a partition's first-party files,
condensed into its strongly connected components, in dependency order.

Built from the imports of every file (Pants' parser: every `import` and `from ... import`
statement, also inside functions, `if TYPE_CHECKING:` and `try:`; relative ones made absolute),
not from Pants' dependencies, which can lack an edge mypy follows (an ambiguous owner, a
`# pants: no-infer-dep`, a dependency Pants does not infer) and so let a unit check against less
than mypy would see. An import of `a.b.c` depends on every first-party module among `a`, `a.b`
and `a.b.c` (mypy loads a module's packages with it, and `from a.b import c` imports the module
`a.b.c` if there is one); a module depends on its own packages too (mypy loads them with it).
That may join a package's `__init__` into one unit with submodules it imports, where mypy would
still order them, and counts imports mypy skips as unreachable (`if sys.version_info < ...`):
a unit is then larger than needed, never blind. Cycles become one unit, as mypy checks each
strongly connected component of its graph as one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterable, Mapping


@dataclass(frozen=True, eq=False)
class UnitGraph:
    """Units (each a sorted tuple of files) in dependency order, each with the indexes of the
    units it imports directly. Compared and hashed by a fingerprint of its content, so that the
    engine can key one rule call per unit on (graph, index) cheaply."""

    units: tuple[tuple[str, ...], ...]
    deps: tuple[tuple[int, ...], ...]
    modules: Mapping[str, str] = field(repr=False)  # file -> module name
    edges: Mapping[str, tuple[str, ...]] = field(repr=False)  # file -> the files it depends on
    fingerprint: str = field(init=False, repr=False)
    unit_of: Mapping[str, int] = field(init=False, repr=False)  # file -> the index of its unit
    imported: frozenset[int] = field(init=False, repr=False)  # the units some other unit imports

    def __post_init__(self) -> None:
        content = json.dumps([self.units, self.deps, sorted(self.modules.items()), sorted(self.edges.items())])
        object.__setattr__(self, "fingerprint", hashlib.sha256(content.encode()).hexdigest())
        object.__setattr__(self, "unit_of", {f: i for i, unit in enumerate(self.units) for f in unit})
        object.__setattr__(self, "imported", frozenset(d for deps in self.deps for d in deps))

    def closure(self, index: int) -> tuple[str, ...]:
        """The files that the unit's files import, transitively, outside the unit: all that mypy
        loads with them, and not the other files of the units those are in, so that a unit's
        inputs do not change when a module joined with one it imports does."""
        own = set(self.units[index])
        seen: set[str] = set()
        stack = [d for f in own for d in self.edges[f]]
        while stack:
            f = stack.pop()
            if f not in seen and f not in own:
                seen.add(f)
                stack.extend(self.edges[f])
        return tuple(sorted(seen))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnitGraph) and other.fingerprint == self.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)


def module_name(path_prefix: str) -> str:
    """`pkg/mod` -> `pkg.mod`; `pkg/__init__` -> `pkg`."""
    return path_prefix.replace("/", ".").removesuffix(".__init__")


def prefixes(name: str) -> list[str]:
    """`a.b.c` -> `a`, `a.b`, `a.b.c`."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def import_edges(
    modules: Mapping[str, str], imports: Mapping[str, Iterable[str]], own_packages: bool = True
) -> dict[str, set[str]]:
    """For each file (`modules`: file -> module name), the files it depends on as mypy sees it
    (`own_packages=False`: only what its imports name)."""
    files_of: dict[str, list[str]] = {}
    for file, module in modules.items():
        files_of.setdefault(module, []).append(file)
    edges = {}
    for file, module in modules.items():
        names = {p for name in imports.get(file, ()) for p in prefixes(name)}
        if own_packages:
            names.update(prefixes(module)[:-1])  # the module's own packages
        edges[file] = {dep for name in names for dep in files_of.get(name, ()) if dep != file}
    return edges


def condense(edges: Mapping[str, Iterable[str]], modules: Mapping[str, str]) -> UnitGraph:
    """Strongly connected components of `edges` (Tarjan's algorithm, iterative: real import
    chains are deep), dependencies first. Deterministic: files are visited in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[tuple[str, ...]] = []
    successors = {f: sorted(edges[f]) for f in edges}
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(successors[node]):
                work.append((node, i + 1))
                nxt = successors[node][i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(tuple(sorted(component)))
            if work:  # back in the caller: fold this node's low link into it
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    # Tarjan emits a component after every component it reaches: dependencies come first.
    unit_of = {f: i for i, component in enumerate(components) for f in component}
    deps = tuple(
        tuple(sorted({unit_of[d] for f in component for d in edges[f]} - {i}))
        for i, component in enumerate(components)
    )
    return UnitGraph(tuple(components), deps, dict(modules), {f: tuple(sorted(edges[f])) for f in edges})


def unit_graph(modules: Mapping[str, str], imports: Mapping[str, Iterable[str]]) -> UnitGraph:
    return condense(import_edges(modules, imports), modules)


def batch(graph: UnitGraph, size: int) -> UnitGraph:
    """Join the graph's units (mypy's SCCs) into units of about `size` files, for cost: each unit
    is a mypy process, whose start-up and loading of its dependencies' caches cost about as much
    as checking tens of modules. `size` 1 leaves the graph as it is.

    Units are taken in a topological order — by layer (the length of the longest import chain
    below them), then by name — and cut into consecutive runs. A run may hold a module and modules
    it imports: mypy checks them in one process, in its own order, as a whole-repo run would. A
    unit only imports from earlier units, so the joined graph has no cycle. Joining across layers
    is what keeps cold checks cheap: a deep import graph joined only within layers has at least
    one unit per layer, each paying a mypy start-up on the critical path.

    Modules that nothing imports (tests, scripts, an application's top: where most edits land)
    come last, in units of about half the size: no other unit waits for them, so smaller units
    there cost only their own start-ups (run in parallel), while an edit to one re-checks half as
    many files. Measured on 1000 generated modules (mypy 2.4.1, size 100, paired runs): a leaf
    edit 1.17 -> 0.88 x whole-repo incremental; a quarter of the size gave 0.71 but cost about
    30% more cold (bench/RESULTS.md).

    Cuts fall where a file's name hashes to 0 modulo the size (or where a unit would pass twice
    the size): they depend on the names next to them, not on positions, so adding or removing
    a module moves the boundaries of its own unit only (or, if it changes the layer of modules or
    whether anything imports them, theirs). An import cycle larger than the cap stays one unit."""
    if size <= 1:
        return graph
    layer: list[int] = []
    for deps in graph.deps:  # dependencies come first: their layers are known
        layer.append(1 + max((layer[d] for d in deps), default=-1))
    imported = graph.imported
    groups: list[list[int]] = [[]]
    files = 0
    for i in sorted(range(len(graph.units)), key=lambda i: (i not in imported, layer[i], graph.units[i])):
        unit, sink = graph.units[i], i not in imported
        cap = max(1, size // 2) if sink else size
        first_sink = sink and groups[-1] and groups[-1][-1] in imported
        if groups[-1] and (first_sink or _cut_before(unit[0], cap) or files + len(unit) > 2 * cap):
            groups.append([])
            files = 0
        groups[-1].append(i)
        files += len(unit)
    new = {i: g for g, chunk in enumerate(groups) for i in chunk}
    return UnitGraph(
        tuple(tuple(sorted(f for i in chunk for f in graph.units[i])) for chunk in groups),
        tuple(tuple(sorted({new[d] for i in chunk for d in graph.deps[i]} - {g})) for g, chunk in enumerate(groups)),
        graph.modules,
        graph.edges,
    )


def _cut_before(file: str, size: int) -> bool:
    return int(hashlib.sha256(file.encode()).hexdigest()[:8], 16) % size == 0
