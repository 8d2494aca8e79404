"""unit_graph.py: mypy's import graph over first-party files, condensed into units."""

from __future__ import annotations

import random

from cacheplug.mypy.unit_graph import UnitGraph, batch, condense, import_edges, unit_graph

MODULES = {
    "src/pkg/__init__.py": "pkg",
    "src/pkg/sub.py": "pkg.sub",
    "src/pkg/mod.py": "pkg.mod",
    "src/pkg/deep/__init__.py": "pkg.deep",
    "src/pkg/deep/leaf.py": "pkg.deep.leaf",
    "src/top.py": "top",
}


def test_edges_follow_mypy_not_pants() -> None:
    edges = import_edges(MODULES, {
        # `from pkg import sub` and `import pkg.sub` parse alike: the module and its package.
        "src/top.py": ["pkg.sub", "os.path", "attrs"],
        # `from pkg.mod import name`: the module that has the name, and its package.
        "src/pkg/sub.py": ["pkg.mod.name"],
        "src/pkg/mod.py": [],
    })
    assert edges["src/top.py"] == {"src/pkg/__init__.py", "src/pkg/sub.py"}
    assert edges["src/pkg/sub.py"] == {"src/pkg/__init__.py", "src/pkg/mod.py"}
    # A module imports nothing, yet mypy loads its packages with it.
    assert edges["src/pkg/deep/leaf.py"] == {"src/pkg/__init__.py", "src/pkg/deep/__init__.py"}
    assert edges["src/pkg/__init__.py"] == set()


def test_cycles_are_one_unit_and_units_come_after_their_dependencies() -> None:
    graph = unit_graph(MODULES, {
        "src/pkg/__init__.py": ["pkg.sub"],  # a package importing its submodule: one cycle with it
        "src/top.py": ["pkg.deep.leaf"],
    })
    unit_of = {f: i for i, unit in enumerate(graph.units) for f in unit}
    assert ("src/pkg/__init__.py", "src/pkg/sub.py") in graph.units
    assert unit_of["src/pkg/mod.py"] != unit_of["src/pkg/__init__.py"]
    for i, deps in enumerate(graph.deps):
        assert all(d < i for d in deps)
    assert set(graph.deps[unit_of["src/top.py"]]) == {
        unit_of["src/pkg/__init__.py"], unit_of["src/pkg/deep/leaf.py"], unit_of["src/pkg/deep/__init__.py"]}


def test_deep_chains_and_equal_graphs() -> None:
    n = 20000  # no recursion limit
    modules = {f"m{i}.py": f"m{i}" for i in range(n)}
    edges = {f"m{i}.py": {f"m{i - 1}.py"} if i else set() for i in range(n)}
    graph = condense(edges, modules)
    assert graph.units[0] == ("m0.py",) and graph.units[-1] == (f"m{n - 1}.py",)
    assert graph == condense(edges, modules) and hash(graph) == hash(condense(edges, modules))
    edges["m0.py"] = {f"m{n - 1}.py"}  # now one cycle through everything
    assert condense(edges, modules).units == (tuple(sorted(modules)),)


def random_project(n: int, seed: int) -> tuple[dict[str, str], dict[str, set[str]]]:
    """`n` modules importing up to 3 earlier ones, and one 5-module cycle."""
    rng = random.Random(seed)
    modules = {f"m{i:04}.py": f"m{i:04}" for i in range(n)}
    edges = {f"m{i:04}.py": {f"m{rng.randrange(i):04}.py" for _ in range(rng.randrange(4))} if i else set() for i in range(n)}
    edges["m0010.py"].add("m0014.py")  # m0014 -> ... -> m0010 closes a cycle
    for i in range(11, 15):
        edges[f"m{i:04}.py"].add(f"m{i - 1:04}.py")
    return modules, edges


def check_batched(graph: UnitGraph, edges: dict[str, set[str]], size: int) -> None:
    unit_of = {f: i for i, unit in enumerate(graph.units) for f in unit}
    assert sorted(unit_of) == sorted(edges)  # every file in exactly one unit
    for i, deps in enumerate(graph.deps):
        assert all(d < i for d in deps)  # dependencies first: no cycle between units
        assert len(graph.units[i]) <= 2 * size or len(graph.units[i]) == 5  # the cycle may stand alone
    for f, ds in edges.items():  # every import is a dependency of its unit, or inside it
        assert all(unit_of[d] == unit_of[f] or unit_of[d] in graph.deps[unit_of[f]] for d in ds)


def test_batched_units_keep_mypy_order_and_cost_fewer_processes() -> None:
    modules, edges = random_project(400, 1)
    sccs = condense(edges, modules)
    assert batch(sccs, 1) is sccs
    cycle = tuple(f"m{i:04}.py" for i in range(10, 15))
    assert cycle in sccs.units and len(sccs.units) == 396
    for size in (5, 20, 100):
        graph = batch(sccs, size)
        check_batched(graph, edges, size)
        assert len(graph.units) <= 400 * 4 / size + 2  # about size files each (half for sinks), across layers
        assert any(set(cycle) <= set(unit) for unit in graph.units)  # a cycle is never split


def test_adding_a_module_moves_the_boundaries_of_its_own_unit_only() -> None:
    modules, edges = random_project(400, 2)
    before = batch(condense(edges, modules), 20)
    modules["m0200b.py"] = "m0200b"  # a new module in the middle, importing what m0200 imports
    edges["m0200b.py"] = set(edges["m0200.py"])
    after = batch(condense(edges, modules), 20)
    check_batched(after, edges, 20)
    changed = set(before.units) - set(after.units)
    assert 1 <= len(changed) <= 2, changed


def test_a_deep_import_chain_is_cut_into_units_of_about_the_size() -> None:
    """Joined across layers: a chain of 200 modules, each importing the one before, is 200 layers
    deep; units of one layer each would be 200 mypy processes one after another."""
    modules = {f"c{i:03}.py": f"c{i:03}" for i in range(200)}
    edges = {f"c{i:03}.py": {f"c{i - 1:03}.py"} if i else set() for i in range(200)}
    graph = batch(condense(edges, modules), 50)
    check_batched(graph, edges, 50)
    assert 2 <= len(graph.units) <= 9
    assert [f for unit in graph.units for f in unit] == sorted(edges)  # consecutive runs of the chain


def test_a_unit_is_given_what_it_imports_not_what_is_joined_with_that() -> None:
    modules = {f"{m}.py": m for m in ("base", "leaf", "used", "user", "top")}
    edges = {"base.py": set(), "leaf.py": {"base.py"}, "used.py": {"base.py"}, "user.py": {"used.py"},
             "top.py": {"leaf.py", "user.py"}}
    graph = batch(condense(edges, modules), 7)  # 7: the names' hashes cut before user.py only
    assert graph.units == (("base.py", "leaf.py", "used.py"), ("user.py",), ("top.py",))
    assert graph.closure(1) == ("base.py", "used.py")  # not leaf.py: editing it leaves user's inputs alone
    assert graph.closure(0) == ()


def test_modules_nothing_imports_come_last_in_smaller_units() -> None:
    """Where most edits land: an edit there re-checks about half a unit, and no unit waits."""
    modules, edges = random_project(400, 3)
    imported = {d for ds in edges.values() for d in ds}
    graph = batch(condense(edges, modules), 20)
    check_batched(graph, edges, 20)
    kinds = [{f in imported for f in unit} for unit in graph.units]
    assert all(len(k) == 1 for k in kinds)  # no unit mixes them
    first_sinks = kinds.index({False})
    assert all(k == {True} for k in kinds[:first_sinks]) and all(k == {False} for k in kinds[first_sinks:])
    sink_units = graph.units[first_sinks:]
    assert max(map(len, sink_units)) <= 20 < max(map(len, graph.units[:first_sinks]))
    assert len(sink_units) > (400 - len(imported)) / 20  # smaller than the others: more of them
