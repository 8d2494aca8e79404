"""`pants check ::` with `[mypy].separate_compilation`, real Pants and real mypy (1.x and 2.x), on a
generated project with a dependency DAG (chains, diamonds), an import cycle, a typed third-party
requirement, and type errors at several depths.

Oracle: whole-repo mypy with no cache at all (`--mypy-shared-cache=off`) on the same files.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from pathlib import Path

import pytest

from cacheplug_tests.mypykit import Project
from cacheplug_tests.pants_repo import PantsRepo, PantsResult

MYPY_VERSIONS = {
    "1.1.1": [],  # Pants 2.17's default mypy
    "2.4.1": ["--mypy-version=mypy==2.4.1", "--mypy-lockfile=<none>", "--mypy-extra-requirements=[]"],
}
SEPARATE = "--mypy-separate-compilation"
EXTRA_FILES = {
    "src/BUILD": 'python_sources()\n\npython_requirement(name="attrs", requirements=["attrs==23.1.0"])\n',
    # An import cycle: one unit; an error inside it; a module outside it that uses it.
    "src/cyc_a.py": "import cyc_b\n\n\ndef a(n: int) -> int:\n    return cyc_b.b(n) if n else 0\n",
    "src/cyc_b.py": 'import cyc_a\n\n\ndef b(n: int) -> int:\n    return cyc_a.a(n - 1)\n\n\nOOPS: int = "x"\n',
    "src/uses_cycle.py": "import cyc_a\n\nX: str = cyc_a.a(3)\n",
    # A typed third-party requirement (attrs ships py.typed; mypy's attrs plugin checks the call).
    "src/third.py": "import attrs\n\n\n@attrs.define\nclass P:\n    x: int\n\n\nP(x=1)\nP(x=\"s\")\n",
}


def _project() -> Project:
    project = Project.generate(40, random.Random(4))
    for name in ("m0", "m17", "m39"):  # errors deep (m0: imported most), in the middle, at a leaf
        project.modules[name].error = True
    project.modules["m3"].returns_int = False  # errors in the modules that call m3.f
    return project


def _diagnostics(result: PantsResult) -> list[str]:
    lines = result.stderr.splitlines()
    return sorted(l for l in lines if re.match(r"src/\S+:\d+: (error|note):", l)) + [
        l for l in lines if l.startswith(("Found ", "Success: "))]


def _ran(result: PantsResult) -> tuple[int, int]:
    match = re.search(r"mypy separate compilation \[[^\]]*\]+: (\d+) units?, (\d+) ran", result.stderr)
    assert match, result.stderr[-3000:]
    return int(match.group(1)), int(match.group(2))


def _counter(result: PantsResult, name: str) -> int:
    match = re.search(rf"^\s*{name}: (\d+)$", result.stderr, re.M)
    assert match, result.stderr[-3000:]
    return int(match.group(1))


# mypy's priority for an "indirect" dependency: a module whose types a module met while checking.
PRI_INDIRECT = 30


def _fingerprint(path: Path, exact: bool) -> str:
    """sha256 of a cache file. Not `exact`: a JSON meta without its indirect dependencies.

    mypy 1.1.1 itself is not deterministic there: plain `mypy --bazel` on `import contextlib`,
    three times in a row with PYTHONHASHSEED=0, gave contextlib's meta an indirect dependency on
    `os` once in three. Everything else must still be byte-identical."""
    data = path.read_bytes()
    if not exact and path.name.endswith(".meta.json"):
        meta = json.loads(data)
        keep = [i for i, prio in enumerate(meta["dep_prios"]) if prio != PRI_INDIRECT]
        for key in ("dependencies", "dep_prios", "dep_lines"):
            meta[key] = [meta[key][i] for i in keep]
        data = json.dumps(meta, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


def _unit_caches(result: PantsResult, exact: bool) -> dict[str, dict[str, str]]:
    """Per unit (process description), the fingerprint of every mypy cache file in its kept
    sandbox: the cache it was given and what it wrote. All kept sandboxes are removed."""
    caches = {}
    for sandbox, description in re.findall(r"Preserving local process execution dir (\S+) for (.*)", result.stderr):
        root = Path(sandbox)
        if description.startswith("Run MyPy on "):
            caches[description] = {
                str(p.relative_to(root)): _fingerprint(p, exact)
                for p in root.rglob("*") if p.is_file() and re.search(r"\.(meta|data|meta_ex)\.(json|ff)$", p.name)
            }
        shutil.rmtree(root, ignore_errors=True)
    return caches


@pytest.mark.parametrize("version", sorted(MYPY_VERSIONS))
def test_separate_compilation_equals_cold_whole_repo_and_reuses_units(tmp_path: Path, version: str) -> None:
    repo = PantsRepo(
        tmp_path / "repo",
        backends=["pants.backend.python", "cacheplug.mypy"],
        extra_toml='[source]\nroot_patterns = ["/src"]\n\n[python]\ninterpreter_constraints = ["CPython==3.11.*"]\n'
                   '\n[python-infer]\nuse_rust_parser = true\n',
    )
    mypy = MYPY_VERSIONS[version]
    project = _project()
    repo.write({**project.render(), **EXTRA_FILES})

    def check(*args: str) -> PantsResult:
        result = repo.run(*mypy, *args, "check", "::")
        assert result.exit_code == 1, result.stderr[-3000:]  # the project has type errors
        return result

    def assert_same_as_cold(separate: PantsResult) -> None:
        cold = check("--mypy-shared-cache=off")
        assert _diagnostics(separate) == _diagnostics(cold)
        assert len([l for l in _diagnostics(cold) if ": error:" in l]) >= 8

    exact = version != "1.1.1"  # see _fingerprint
    first = check(SEPARATE, "--keep-sandboxes=always")
    first_caches = _unit_caches(first, exact)
    units, ran = _ran(first)
    assert units == ran == len(project.modules) + len(EXTRA_FILES) - 2  # the cycle is one unit; BUILD none
    assert len(first_caches) == units + 1  # and the base unit
    assert_same_as_cold(first)
    for expected in ("src/cyc_b.py:8: error:", "src/uses_cycle.py:3: error:", "src/third.py:10: error:",
                     "src/m0.py:", "src/m39.py:"):
        assert expected in first.stderr
    # mypy errors in the cycle come from one unit, reported once.
    assert first.stderr.count("src/cyc_b.py:8: error:") == 1

    # Incrementality: a leaf's body changes; only its unit runs. Pants' counters agree: one
    # process more than a run where nothing changed.
    unchanged = check(SEPARATE, "--stats-log")
    assert _ran(unchanged)[1] == 0
    leaf = "m39"
    assert not any(leaf in m.deps for m in project.modules.values())
    project.modules[leaf].body += 1
    repo.write(project.render())
    edited = check(SEPARATE, "--stats-log")
    assert _ran(edited) == (units, 1)
    assert _counter(edited, "local_execution_requests") == _counter(unchanged, "local_execution_requests") + 1
    assert _diagnostics(edited) == _diagnostics(first)

    # An interface change deep down: its dependents re-run, and still agree with cold mypy.
    project.modules["m1"].returns_int = not project.modules["m1"].returns_int
    repo.write(project.render())
    assert_same_as_cold(check(SEPARATE))

    # Determinism: back to the first files, every unit re-run without Pants' cache: each unit's
    # inputs and outputs are byte-identical to the first clean run's (1.1.1: see _fingerprint).
    project.modules["m1"].returns_int = not project.modules["m1"].returns_int
    project.modules[leaf].body -= 1
    repo.write(project.render())
    again = check(SEPARATE, "--no-local-cache", "--keep-sandboxes=always")
    assert _ran(again) == (units, units)
    again_caches = _unit_caches(again, exact)
    assert again_caches.keys() == first_caches.keys()
    differing = sorted(f"{unit}: {path}" for unit, files in first_caches.items() for path in
                       files.keys() | again_caches[unit].keys() if files.get(path) != again_caches[unit].get(path))
    assert differing == []
    assert _diagnostics(again) == _diagnostics(first)
