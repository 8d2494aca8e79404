"""separate.py's pure parts, and its merge rule on real digests (Pants' RuleRunner)."""

from __future__ import annotations

import pytest
from pants.engine.fs import CreateDigest, Digest, DigestContents, FileContent
from pants.engine.process import ProcessResultMetadata
from pants.testutil.rule_runner import QueryRule, RuleRunner

from cacheplug.mypy.separate import (
    CacheMergeRequest,
    UnitReport,
    base_source,
    cutoff_counts,
    external_imports,
    merge_caches,
    module_prefix,
    own_lines,
    summary,
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


@pytest.fixture
def rule_runner() -> RuleRunner:
    return RuleRunner(rules=[merge_caches, QueryRule(Digest, [CacheMergeRequest])])


def _digest(rule_runner: RuleRunner, files: dict[str, str]) -> Digest:
    return rule_runner.request(Digest, [CreateDigest([FileContent(p, c.encode()) for p, c in files.items()])])


def _contents(rule_runner: RuleRunner, digest: Digest) -> dict[str, str]:
    return {fc.path: fc.content.decode() for fc in rule_runner.request(DigestContents, [digest])}


def test_merge_is_a_union_and_a_conflict_goes_to_the_first_digest(rule_runner: RuleRunner) -> None:
    own = _digest(rule_runner, {"pkg/m.meta.json": "own", "pkg/a.meta.json": "a"})
    dep = _digest(rule_runner, {"pkg/m.meta.json": "dep", "pkg/b.meta.json": "b"})
    same = _digest(rule_runner, {"pkg/a.meta.json": "a"})
    # No conflict: the engine's own merge (identical files at one path are one file).
    assert _contents(rule_runner, rule_runner.request(Digest, [CacheMergeRequest((own, same))])) == {
        "pkg/m.meta.json": "own", "pkg/a.meta.json": "a"}
    # A conflict: the first digest listed wins, whichever it is; the rest is a union.
    merged = rule_runner.request(Digest, [CacheMergeRequest((own, dep))])
    assert _contents(rule_runner, merged) == {"pkg/m.meta.json": "own", "pkg/a.meta.json": "a", "pkg/b.meta.json": "b"}
    reverse = rule_runner.request(Digest, [CacheMergeRequest((dep, own))])
    assert _contents(rule_runner, reverse)["pkg/m.meta.json"] == "dep"
    # Deterministic: the same inputs, the same digest.
    assert rule_runner.request(Digest, [CacheMergeRequest((own, dep))]) == merged
