"""What the separate-compilation integration tests share: a generated project with a dependency
DAG (chains, diamonds), an import cycle, a typed third-party requirement, type errors at several
depths; a temp repo set up for it; and readers of what `pants check` printed."""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from pathlib import Path
from typing import Callable, TypeVar

from cacheplug_tests.mypykit import Project
from cacheplug_tests.pants_repo import PantsRepo, PantsResult

def mypy_version_args(version: str) -> list[str]:
    """Pants flags that run mypy `version` (none for Pants 2.17's default, 1.1.1, and its lockfile)."""
    if version == "1.1.1":
        return []
    return [f"--mypy-version=mypy=={version}", "--mypy-lockfile=<none>", "--mypy-extra-requirements=[]"]


MYPY_VERSIONS = {v: mypy_version_args(v) for v in ("1.1.1", "2.4.1")}
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


def project() -> Project:
    project = Project.generate(40, random.Random(4))
    for name in ("m0", "m17", "m39"):  # errors deep (m0: imported most), in the middle, at a leaf
        project.modules[name].error = True
    project.modules["m3"].returns_int = False  # errors in the modules that call m3.f
    return project


def diagnostics(result: PantsResult) -> list[str]:
    lines = result.stderr.splitlines()
    return sorted(l for l in lines if re.match(r"src/\S+:\d+: (error|note):", l)) + [
        l for l in lines if l.startswith(("Found ", "Success: "))]


def ran(result: PantsResult) -> tuple[int, int]:
    match = re.search(r"mypy separate compilation \[[^\]]*\]+: (\d+) units?, (\d+) ran", result.stderr)
    assert match, result.stderr[-3000:]
    return int(match.group(1)), int(match.group(2))


def counter(result: PantsResult, name: str) -> int:
    match = re.search(rf"^\s*{name}: (\d+)$", result.stderr, re.M)
    assert match, result.stderr[-3000:]
    return int(match.group(1))


REPO_TOML = (
    '[source]\nroot_patterns = ["/src"]\n\n[python]\ninterpreter_constraints = ["CPython==3.11.*"]\n'
    '\n[python-infer]\nuse_rust_parser = true\n'
)


def project_repo(root: Path, project: Project, extra_toml: str = "", own_pex_root: bool = False) -> PantsRepo:
    """A temp repo with the generated project and EXTRA_FILES, and its own Pants caches."""
    repo = PantsRepo(root, backends=["pants.backend.python", "cacheplug.mypy"], extra_toml=REPO_TOML + extra_toml,
                     own_pex_root=own_pex_root)
    repo.write({**project.render(), **EXTRA_FILES})
    return repo


def report_difference(what: str, a_name: str, a: PantsResult, b_name: str, b: PantsResult) -> bool:
    """Print how two checks' diagnostics and exit codes differ, if they do; whether they do."""
    if (a.exit_code, diagnostics(a)) == (b.exit_code, diagnostics(b)):
        return False
    only_a = sorted(set(diagnostics(a)) - set(diagnostics(b)))
    only_b = sorted(set(diagnostics(b)) - set(diagnostics(a)))
    print(f"DIFFERENCE {what}: {a_name} (exit {a.exit_code}) vs {b_name} (exit {b.exit_code}):\n"
          + "".join(f"  only {a_name}: {line}\n" for line in only_a[:20])
          + "".join(f"  only {b_name}: {line}\n" for line in only_b[:20]), flush=True)
    return True


# The configuration real code is checked with in the differential tests and benchmarks: the strict
# flags find the most differences; third-party packages are not installed.
REALCODE_CONFIG = "[mypy]\nstrict = True\nignore_missing_imports = True\n"


def realcode_repo(root: Path, files: dict[str, str], extra_toml: str = "") -> PantsRepo:
    """A temp repo holding a real package's files (`src/<package>/...`), one target per file."""
    repo = PantsRepo(root, backends=["pants.backend.python", "cacheplug.mypy"], extra_toml=REPO_TOML + extra_toml)
    repo.write({**files, "src/BUILD": 'python_sources(sources=["**/*.py", "**/*.pyi"])\n', "mypy.ini": REALCODE_CONFIG})
    return repo


def sync(repo: PantsRepo, before: dict[str, str], after: dict[str, str]) -> None:
    """Make the repo's files go from `before` to `after`: changed files written, removed deleted."""
    repo.write({path: text for path, text in after.items() if before.get(path) != text})
    for path in before.keys() - after.keys():
        (repo.root / path).unlink()


T = TypeVar("T")
CACHE_FILE = re.compile(r"\.(meta|data|meta_ex)\.(json|ff)$")


def kept_cache_files(result: PantsResult, read: Callable[[Path, Path], T]) -> dict[str, dict[str, T]]:
    """Per mypy unit (process description), `read(sandbox, file)` of every mypy cache file in its
    sandbox kept by `--keep-sandboxes=always`: the caches it was given and what it wrote. All
    kept sandboxes are removed."""
    found = {}
    for sandbox, description in re.findall(r"Preserving local process execution dir (\S+) for (.*)", result.stderr):
        root = Path(sandbox)
        if description.startswith("Run MyPy on "):
            found[description] = {
                str(p.relative_to(root)): read(root, p) for p in root.rglob("*") if p.is_file() and CACHE_FILE.search(p.name)
            }
        shutil.rmtree(root, ignore_errors=True)
    return found


# mypy's priority for an "indirect" dependency: a module whose types a module met while checking.
PRI_INDIRECT = 30


def fingerprint(path: Path, exact: bool) -> str:
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
