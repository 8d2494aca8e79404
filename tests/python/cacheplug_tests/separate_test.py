"""separate.py's pure parts, its merge rule included."""

from __future__ import annotations

import json

from pants.engine.fs import FileDigest, FileEntry
from pants.engine.process import ProcessResultMetadata

from cacheplug.mypy.separate import (
    UnitReport,
    base_source,
    cutoff_counts,
    external_imports,
    first_wins,
    module_prefix,
    own_lines,
    summary,
    timeline,
)
from cacheplug.mypy.unit_graph import module_name, unit_graph


def test_module_prefix_is_where_mypy_bazel_writes_the_cache() -> None:
    assert module_prefix("src/python/pkg/mod.py", "src/python") == "pkg/mod"
    assert module_prefix("src/python/pkg/__init__.py", "src/python") == "pkg/__init__"
    assert module_prefix("pkg/mod.pyi", ".") == "pkg/mod"
    assert module_prefix("mod.py", "") == "mod"


def test_external_imports_drop_what_first_party_provides() -> None:
    files = ["src/pkg/__init__.py", "src/pkg/mod.py", "src/ns/inner.py"]
    first_party = {module_name(module_prefix(f, "src")) for f in files}
    assert first_party == {"pkg", "pkg.mod", "ns.inner"}
    imports = ["pkg.mod.name", "pkg", "os.path", "attrs", "ns.inner.x", "ns.other", "json", "json"]
    # `ns` is a namespace directory, not a module: `ns.other` may come from elsewhere.
    assert external_imports(imports, first_party) == ["attrs", "json", "ns.other", "os.path"]


def test_base_source_imports_names_as_from_imports() -> None:
    # `import abc.abstractmethod` would make mypy record a missing module `abc.abstractmethod`,
    # and typeshed's own `from abc import abstractmethod` would then be Any (issue 15).
    assert base_source(["abc.abstractmethod", "os", "os.path", "a.b.c"]) == (
        "from abc import abstractmethod\nimport os\nfrom os import path\nfrom a.b import c\n"
    )


def test_own_lines_keep_a_units_own_files_and_their_continuations() -> None:
    colored = "\x1b[1m\x1b[31merror:\x1b[m"
    output = "\n".join([
        f"src/a.py:3: {colored} Bad  [misc]",
        "    x = 1",  # --pretty's source excerpt: follows its line
        "src/dep.py:1: error: Re-analysed dependency  [misc]",
        "    y = 2",
        "src/a.py: note: In function \"f\":",
        "Found 2 errors in 2 files (checked 1 source file)",
    ])
    assert own_lines(output, ["src/a.py"]) == [
        f"src/a.py:3: {colored} Bad  [misc]", "    x = 1", "src/a.py: note: In function \"f\":",
    ]
    assert own_lines(output, ["src/ab.py"]) == []  # a path prefix is not the file

RAN = ProcessResultMetadata.Source.RAN


def test_summary_is_what_one_mypy_run_would_print() -> None:
    clean = UnitReport("a", ("a.py", "b.py"), 0, "", RAN)
    bad = UnitReport("c", ("c.py",), 1, "c.py:1: error: X  [misc]\nc.py:2: error: Y  [misc]", ProcessResultMetadata.Source.HIT_LOCALLY)
    assert summary([clean]) == (0, "Success: no issues found in 2 source files\n")
    code, text = summary([clean, bad])
    assert code == 1
    assert text.splitlines()[-1] == "Found 2 errors in 1 file (checked 3 source files)"
    crash = UnitReport("d", ("d.py",), 2, "Traceback ...", RAN)
    assert summary([bad, crash])[0] == 2
    assert "Traceback ..." in summary([bad, crash])[1]


def test_cutoff_counts_units_reused_although_a_unit_they_import_from_ran() -> None:
    # app imports lib, lib imports core; other imports nothing.
    modules = {"core.py": "core", "lib.py": "lib", "app.py": "app", "other.py": "other"}
    graph = unit_graph(modules, {"core.py": [], "lib.py": ["core"], "app.py": ["lib"], "other.py": []})
    hit = ProcessResultMetadata.Source.HIT_LOCALLY
    ran = {"core.py"}
    reports = [UnitReport(u[0], u, 0, "", RAN if u[0] in ran else hit, recovered=u[0] == "app.py") for u in graph.units]
    assert cutoff_counts(graph, reports) == (2, 1)  # lib and app (through lib); other imports nothing
    nothing_ran = [UnitReport(u[0], u, 0, "", hit) for u in graph.units]
    assert cutoff_counts(graph, nothing_ran) == (0, 0)


def test_timeline_gives_each_unit_its_time_and_every_unit_it_waits_for() -> None:
    modules = {"core.py": "core", "lib.py": "lib", "app.py": "app", "other.py": "other"}
    graph = unit_graph(modules, {"core.py": [], "lib.py": ["core"], "app.py": ["lib"], "other.py": []})
    reports = [UnitReport(u[0], u, 0, "", RAN, elapsed_ms=10 * (i + 1)) for i, u in enumerate(graph.units)]
    line = json.loads(timeline(graph, 7, reports))
    assert line["base_ms"] == 7
    index = {u[0]: i for i, u in enumerate(graph.units)}
    by_first = {u["first"]: u for u in line["units"]}
    # app waits for lib's unit and, through it, core's: the model's critical path needs both.
    assert by_first["app.py"]["after"] == sorted([index["lib.py"], index["core.py"]])
    assert by_first["other.py"]["after"] == by_first["core.py"]["after"] == []
    assert [u["ms"] for u in line["units"]] == [r.elapsed_ms for r in reports]


def _entries(files: dict[str, str]) -> list[FileEntry]:
    return [FileEntry(p, FileDigest(c * 64, 1)) for p, c in files.items()]


def test_merge_is_a_union_and_a_conflict_goes_to_the_first_list() -> None:
    own = _entries({"pkg/m.meta.json": "a", "pkg/a.meta.json": "b"})
    dep = _entries({"pkg/m.meta.json": "c", "pkg/b.meta.json": "d"})
    same = _entries({"pkg/a.meta.json": "b"})
    assert first_wins([own, same]) == tuple(own)  # identical files at one path are one file
    merged = {e.path: e.file_digest.fingerprint[0] for e in first_wins([own, dep])}
    assert merged == {"pkg/m.meta.json": "a", "pkg/a.meta.json": "b", "pkg/b.meta.json": "d"}
    reverse = {e.path: e.file_digest.fingerprint[0] for e in first_wins([dep, own])}
    assert reverse["pkg/m.meta.json"] == "c"
