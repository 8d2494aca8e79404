"""unit_graph.py: mypy's import graph over first-party files, condensed into units."""

from __future__ import annotations

from cacheplug.mypy.unit_graph import condense, import_edges, unit_graph

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
