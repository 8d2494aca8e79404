"""Early cutoff (cutoff.py, through separate.py's unit wrapper) with real mypy --bazel, outside Pants.

Two units, as separate compilation runs them: `b`, then `a`, which imports `b` and is given b's
normalized cache and a placeholder for b's source. Checked: a body-only edit of `b` leaves b's
normalized cache byte-identical (so `a`'s inputs do not change); `a`'s diagnostics equal a cold
mypy's on both files; and when b's cache is not enough (a file of it deleted), the unit fails
(it is then re-run with sources by separate.py) instead of reading the placeholder as a module.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest
from packaging.version import Version  # pants: no-infer-dep (ships with Pants)

from cacheplug.mypy import cutoff
from cacheplug.mypy.separate import (
    CACHE_PATHS,
    CUTOFF,
    EXIT_CODE_FILE,
    OUT_DIR,
    PLACEHOLDER,
    PLACEHOLDERS,
    SEPARATE_ENV,
    SEPARATE_FLAGS,
    STARTED,
    UNIT_WRAPPER,
)
from cacheplug_tests.mypykit import mypy_python

B = "import os\n\n\ndef f(x: int) -> int:\n    return x + {body}\n\n\nclass C:\n    def m(self) -> str:\n        return 'a'\n"
# A new error inside the body, and lines that move the rest of the file: still body-only.
B_WITH_ERROR = ("import os\n\n\ndef f(x: int) -> int:\n    y = x\n    z: str = 1\n\n    return y + 1\n\n\n"
                "class C:\n    def m(self) -> str:\n        return 'a'\n")
A = "from b import C, f\n\nreveal_type(f(1))\nx: str = C().m()\ny: int = f('no')\n"


def unit(root: Path, python: str, files: dict[str, str], checked: list[str], placeholders: Sequence[str] = (),
         caches: dict[str, bytes] | None = None) -> tuple[subprocess.CompletedProcess[str], dict[str, bytes]]:
    """One unit in `root`: the programs, its files, the given caches; mypy through UNIT_WRAPPER.
    Returns the run and the unit's own cache files (by name)."""
    root.mkdir(parents=True)
    for path in (CACHE_PATHS, CUTOFF):
        (root / path).parent.mkdir(exist_ok=True)
        (root / path).write_bytes(pkgutil.get_data("cacheplug.mypy", Path(path).name) or b"")
    for name, data in (caches or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    for name, text in files.items():
        (root / name).write_text(text)
    for module in placeholders:
        (root / f"{module}.py").write_bytes(PLACEHOLDER)
    (root / PLACEHOLDERS).write_text("".join(f"{m}\n" for m in placeholders))
    own = " ".join(f"{f[:-3]}{suffix}" for f in checked for suffix in (".meta.json", ".meta.ff"))
    run = subprocess.run(
        ["bash", "-c", UNIT_WRAPPER, "mypy-unit", python, "-m", "mypy", *SEPARATE_FLAGS, "--python-version=3.11", *checked],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **SEPARATE_ENV, "PYTHON": python, "OWN_METAS": own},
    )
    out = root / OUT_DIR
    written = {p.name: p.read_bytes() for p in out.iterdir()} if out.exists() else {}
    if run.returncode == 0:  # cutoff.py moved all of them
        assert not any(p.name.split(".")[0] in {f[:-3] for f in checked} for p in root.glob("*.*.*"))
    return run, written


def base_cache(root: Path, python: str) -> dict[str, bytes]:
    """The base unit's part: typeshed's cache for what the units import (without it, mypy 1.x
    re-analyses `os` in each unit and so finds `b`, which imports it, stale)."""
    root.mkdir()
    (root / "base.py").write_text("import os\n")
    subprocess.run([python, "-m", "mypy", *SEPARATE_FLAGS, "--python-version=3.11", "base.py"], cwd=root, check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, **SEPARATE_ENV})
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*.*.*") if not p.name.startswith("base.")}


@pytest.mark.parametrize("version", ["1.1.1", "1.11.2", "1.19.1", "2.4.1"])
def test_a_body_edit_is_cut_off_and_the_result_is_cold_mypys(tmp_path: Path, version: str) -> None:
    python = mypy_python(version)
    base = base_cache(tmp_path / "base", python)
    caches_errors = Version(version) >= Version("1.19")  # before 1.19 mypy writes no cache for a module with errors
    edits = [B.format(body=1), B.format(body=2), *([B_WITH_ERROR] if caches_errors else [])]
    b_caches = []
    for i, text in enumerate(edits):
        run, written = unit(tmp_path / f"b{i}", python, {"b.py": text}, ["b.py"], caches=base)
        assert run.returncode == 0, run.stderr
        assert "early cutoff: normalized 1 metas, left 0 as mypy wrote them" in run.stderr
        assert {"b.meta.json", "b.data.json"} <= written.keys() or {"b.meta.ff", "b.data.ff"} <= written.keys()
        b_caches.append(written)
    assert all(c == b_caches[0] for c in b_caches), "a body-only edit changed b's normalized cache"

    run, _ = unit(tmp_path / "a", python, {"a.py": A}, ["a.py"], ["b"], {**base, **b_caches[-1]})
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "a" / EXIT_CODE_FILE).read_text().strip() == "1"
    cold_dir = tmp_path / "cold"
    cold_dir.mkdir()
    (cold_dir / "a.py").write_text(A)
    (cold_dir / "b.py").write_text(edits[-1])
    cold = subprocess.run([python, "-m", "mypy", "--cache-dir=/dev/null", "--python-version=3.11", "a.py", "b.py"],
                          cwd=cold_dir, stdout=subprocess.PIPE, text=True)
    assert [l for l in run.stdout.splitlines() if l.startswith("a.py:")] == [
        l for l in cold.stdout.splitlines() if l.startswith("a.py:")
    ]
    assert "a.py:5: error:" in run.stdout

    # The canary: b's cache not enough (its meta, or its data, gone): the unit fails, never a
    # result from the placeholder (mypy 1.19.1 even crashes, exit 1 with a traceback: the
    # wrapper makes that a 2).
    for gone in sorted(b_caches[-1]):
        caches = {**base, **{n: d for n, d in b_caches[-1].items() if n != gone}}
        run, _ = unit(tmp_path / f"a-without-{gone}", python, {"a.py": A}, ["a.py"], ["b"], caches)
        if ".meta_ex." in gone:  # mypy 2.x: a missing meta_ex makes the module stale, read from source
            assert run.returncode != 0, run.stdout + run.stderr
            continue
        assert run.returncode not in (0, 1), (gone, run.stdout, run.stderr)


def test_a_placeholder_module_whose_cache_mypy_rewrote_or_deleted_was_read(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    (tmp_path / "pkg").mkdir()
    for name in ("old.meta.json", "old.data.json", "pkg/__init__.meta.ff", "pkg/__init__.data.ff",
                 "rewritten.meta.json", "rewritten.data.json", "gone.meta.json", "no_data.meta.json"):
        (tmp_path / name).write_text("{}")
    (tmp_path / STARTED).write_text("")
    start = os.stat(STARTED).st_mtime_ns
    os.utime(tmp_path / "rewritten.meta.json", ns=(start + 10**9, start + 10**9))
    os.utime(tmp_path / "old.data.json", ns=(start + 10**9, start + 10**9))  # Pants' store may touch a big input
    os.remove(tmp_path / "gone.meta.json")
    (tmp_path / PLACEHOLDERS).write_text("old\npkg/__init__\nrewritten\ngone\nno_data\n")
    assert cutoff.placeholders_read(STARTED, PLACEHOLDERS) == ["rewritten", "gone", "no_data"]


@pytest.mark.parametrize(
    "tool, cutoff_exit, process_exit, recorded",
    [
        ("exit 1", 0, 0, "1"),  # type errors: the process succeeds (cacheable), mypy's 1 recorded
        ("echo 'Traceback (most recent call last):' >&2; exit 1", 0, 2, "2"),  # an uncaught exception: a crash
        ("exit 0", 3, 3, "0"),  # a placeholder was read: separate.py re-runs the unit with sources
        ("exit 0", 1, 2, "0"),  # cutoff.py itself failed: a crash, never "type errors"
    ],
)
def test_the_unit_wrapper_never_reports_a_crash_as_type_errors(
    tmp_path: Path, tool: str, cutoff_exit: int, process_exit: int, recorded: str
) -> None:
    (tmp_path / CUTOFF).parent.mkdir()
    (tmp_path / CUTOFF).write_text(f"raise SystemExit({cutoff_exit})\n")
    # No PATH: the wrapper needs bash's builtins only.
    run = subprocess.run(["bash", "-c", UNIT_WRAPPER, "mypy-unit", "/bin/bash", "-c", tool], cwd=tmp_path,
                         env={"PYTHON": sys.executable, "OWN_METAS": ""}, stderr=subprocess.PIPE, text=True)
    assert run.returncode == process_exit, run.stderr
    assert (tmp_path / EXIT_CODE_FILE).read_text().strip() == recorded
