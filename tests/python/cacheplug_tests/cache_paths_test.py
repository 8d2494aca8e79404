"""cache_paths.py with real mypy --bazel, 1.x (JSON cache) and 2.x (fixed format), outside Pants.

Two "machines" run the base unit, each in a sandbox of its own at another path, whose
`.cache/pex_root` links to its own named caches (at another path and depth too), where each
installs its own copy of one mypy venv (as pex installs the same wheels anywhere) — the layout of
a Pants sandbox. Checked: the rewritten caches name no path of either machine and are
byte-identical, interface hashes and (mypy < 1.19) indirect dependencies included, each run
twice; and machine B, given A's, uses it as it is (mypy finds every module fresh) with the result
of a cold mypy.
"""

from __future__ import annotations

import os
import pkgutil
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cacheplug.mypy.separate import SEPARATE_ENV
from cacheplug_tests.mypykit import mypy_python
from cacheplug_tests.separatekit import CACHE_FILE, fingerprint

BASE = "import __future__\nimport collections\nimport contextlib\nimport dataclasses\nimport importlib.abc\nimport json\nimport typing\n"
CODE = {
    "src/lib.py": b"import dataclasses\n\n\n@dataclasses.dataclass\nclass P:\n    x: int\n",
    "src/app.py": b"import collections\n\nfrom lib import P\n\nP(x='s')\nc: 'collections.Counter[str]' = collections.Counter()\n",
}


def write(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def machine(sandbox: Path, named_caches: Path, venv: Path) -> Path:
    """A sandbox whose `.cache/pex_root` links to `named_caches`, which get a fresh copy of
    `venv`; returns the sandbox, with the program in it."""
    pex_root = named_caches / "pex_root"
    shutil.rmtree(named_caches, ignore_errors=True)  # the other machine's
    shutil.copytree(venv, pex_root / "venvs" / "mypy", symlinks=True)
    (sandbox / ".cache").mkdir(parents=True)
    (sandbox / ".cache" / "pex_root").symlink_to(pex_root)
    program = pkgutil.get_data("cacheplug.mypy", "cache_paths.py")
    assert program is not None
    (sandbox / "cache_paths.py").write_bytes(program)
    return sandbox


def venv_python(sandbox: Path) -> Path:
    """By the named caches' path, as Pants runs a tool: the venv's `pex` script names it so."""
    return Path(os.path.realpath(sandbox / ".cache/pex_root")) / "venvs/mypy/bin/python"


def mypy(sandbox: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """mypy as separate.py runs it (--bazel, a fixed hash seed)."""
    python = venv_python(sandbox)
    return subprocess.run([str(python), "-m", "mypy", "--bazel", "--no-sqlite-cache", "--python-version=3.11", *args],
                          cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, **SEPARATE_ENV})


def base_cache(sandbox: Path) -> dict[str, Path]:
    """The base unit, as separate.py runs it: mypy in a subdirectory, then the rewrite."""
    base = sandbox / "base"
    base.mkdir()
    (base / "base.py").write_text(BASE)
    assert mypy(sandbox, base, "base.py").returncode == 0
    python = venv_python(sandbox)
    rewrite = subprocess.run([str(python), "../cache_paths.py", ".."], cwd=base, stderr=subprocess.PIPE, text=True, check=True)
    assert re.search(r"made [1-9]\d* cache paths sandbox-relative .*, left 0 absolute", rewrite.stderr), rewrite.stderr
    return {str(p.relative_to(base)): p for p in base.rglob("*")
            if p.is_file() and CACHE_FILE.search(p.name) and not p.name.startswith("base.")}


@pytest.mark.parametrize("version", ["1.1.1", "1.11.2", "1.19.1", "2.4.1"])
def test_base_cache_is_machine_independent_and_used_as_is(tmp_path: Path, version: str) -> None:
    venv = Path(mypy_python(version)).parent.parent
    cache_a = base_cache(machine(tmp_path / "machine-a" / "sandbox-1", tmp_path / "a" / "named_caches", venv))
    b = machine(tmp_path / "elsewhere" / "machine-b" / "sandbox-2", tmp_path / "b" / "home" / "named_caches", venv)
    cache_b = base_cache(b)
    again = base_cache(machine(tmp_path / "machine-a" / "sandbox-3", tmp_path / "a" / "named_caches", venv))
    assert len(cache_a) > 20 and ("builtins.data.json" in cache_a or "builtins.data.ff" in cache_a)
    digests = [{n: fingerprint(p, exact=True) for n, p in c.items()} for c in (cache_a, cache_b, again)]
    assert digests[0] == digests[1] == digests[2]
    for name, path in cache_a.items():
        assert str(tmp_path).encode() not in path.read_bytes(), name
    meta = cache_a["builtins.meta.json"] if "builtins.meta.json" in cache_a else cache_a["builtins.meta.ff"]
    assert b".cache/pex_root/venvs/mypy/lib/python3.11/site-packages/mypy/typeshed/stdlib/builtins.pyi" in meta.read_bytes()

    # Machine B checks code with A's base cache: every external module is fresh, none re-analysed,
    # and the result is a cold mypy's.
    unit = write(b / "unit", {**{rel: path.read_bytes() for rel, path in cache_a.items()}, **CODE})
    cached = mypy(b, unit, "--verbose", "src/lib.py", "src/app.py")
    assert cached.returncode == 1
    for module in ("builtins", "collections", "dataclasses", "typing"):
        assert f"Metadata fresh for {module}:" in cached.stdout, cached.stdout[-3000:]
    cold = mypy(b, write(tmp_path / "cold", CODE), "src/lib.py", "src/app.py")

    def errors(output: str) -> list[str]:
        return sorted(line for line in output.splitlines() if re.match(r"src/\S+:\d+: (error|note)|Found ", line))

    assert errors(cached.stdout) == errors(cold.stdout) != []
