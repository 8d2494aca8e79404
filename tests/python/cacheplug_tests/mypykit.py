"""Real mypy through the real cache shim, outside Pants, for the differential tests and benchmarks.

`mypy_python(version)` installs mypy into a venv of CPython 3.11 (created once per process, from
PyPI). A generated project is a model (`Project`) rendered to Python modules with classes,
generics and cross-module calls; `edit` changes the model the ways developers do.
"""

from __future__ import annotations

import atexit
import functools
import glob
import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import Version  # pants: no-infer-dep (ships with Pants)

from cacheplug.engine import CacheSpec
from cacheplug.mypy.rules import FILE_LIST, mypy_cache_args, mypy_cache_spec, mypy_inputs
from cacheplug.subsystem import SharedCache
from cacheplug_tests.storekit import Run, finish, make_sandbox, start


def find_python311() -> str:
    for candidate in [shutil.which("python3.11"), *sorted(glob.glob(os.path.expanduser(
            os.path.join(os.environ.get("PYENV_ROOT") or "~/.pyenv", "versions/3.11*/bin/python3.11"))))]:
        if candidate and "/shims/" not in candidate:
            return candidate
    raise RuntimeError("these tests need CPython 3.11 (on PATH or under pyenv)")


@functools.lru_cache(maxsize=None)
def mypy_python(version: str) -> str:
    """A Python with mypy==version installed: a venv in a temp dir kept for this process, and
    removed when it exits (~80 MB each)."""
    venv = Path(tempfile.mkdtemp(prefix=f"mypy-{version}-"))
    atexit.register(shutil.rmtree, venv, ignore_errors=True)
    subprocess.run([find_python311(), "-m", "venv", str(venv)], check=True)
    # Pants runs tests with pip's config isolated; ./pants exports the CA bundle this network needs.
    ca = os.environ.get("PANTS_CA_CERTS_PATH")
    subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-qq", "--disable-pip-version-check",
                    *(["--cert", ca] if ca else []), f"mypy=={version}"], check=True)
    return str(venv / "bin/python")


@dataclass
class Module:
    deps: list[str]
    returns_int: bool = True  # the signature of f(): -> int, or -> str
    body: int = 0  # changes f's body only
    error: bool = False  # an error of its own


@dataclass
class Project:
    modules: dict[str, Module] = field(default_factory=dict)

    @staticmethod
    def generate(n: int, rng: random.Random) -> "Project":
        p = Project()
        for i in range(n):
            lower = sorted(p.modules)
            p.modules[f"m{i}"] = Module(deps=rng.sample(lower, min(len(lower), rng.randint(0, 3))),
                                        error=rng.random() < 0.05)
        return p

    def render(self) -> dict[str, str]:
        files = {}
        for name, m in self.modules.items():
            lines = ["from __future__ import annotations", "from typing import Generic, TypeVar", ""]
            lines += [f"import {d}" for d in m.deps]
            lines += [
                "",
                'T = TypeVar("T")',
                "",
                f"class Box_{name}(Generic[T]):",
                "    def __init__(self, value: T) -> None:",
                "        self.value = value",
                "",
                "    def get(self) -> T:",
                "        return self.value",
                "",
                "",
                f"def f(x: int) -> {'int' if m.returns_int else 'str'}:",
                f"    y = x + {m.body}",
                f"    return {'y' if m.returns_int else 'str(y)'}",
                "",
                "",
                "def g(x: int) -> int:",
                "    total = len(str(f(x)))",
            ]
            for d in m.deps:
                # An error here when d.f returns str.
                lines.append(f"    total += {d}.f(x) + {d}.Box_{d}[int](x).get()")
            lines.append("    return total")
            if m.error:
                lines += ["", "", "def bad() -> int:", '    return "not an int"']
            files[f"src/{name}.py"] = "\n".join(lines) + "\n"
        return files

    def edit(self, rng: random.Random) -> str:
        name = rng.choice(sorted(self.modules))
        m = self.modules[name]
        kind = rng.choice(["body", "signature", "add", "remove", "error"])
        if kind == "body":
            m.body += 1
        elif kind == "signature":
            m.returns_int = not m.returns_int
        elif kind == "add":
            name = f"new{len(self.modules)}_{rng.randint(0, 999)}"
            self.modules[name] = Module(deps=rng.sample(sorted(self.modules), 2))
        elif kind == "remove" and len(self.modules) > 3:
            del self.modules[name]  # dependents now import a missing module
        else:
            m.error = not m.error
        return f"{kind} {name}"


CONFIG = "mypy.ini"


def diagnostics(output: str) -> list[str]:
    # mypy prints modules in processing order, which differs when some come from the cache (a
    # cold run does too across mypy versions): compare the lines as a multiset.
    return sorted(output.splitlines())


def mypy_argv(
    version: str, files: dict[str, str], mode: SharedCache = SharedCache.read_write, checked: list[str] | None = None,
) -> tuple[CacheSpec, list[str], dict[str, str]]:
    """The cache spec, argv and added input files (the file list, ...) cacheplug.mypy uses for
    mypy `version` on `files` (and the config file among them, if any). `checked`: the files
    listed for mypy (default: every source; fewer, as `pants check dir::` lists a partition's)."""
    spec = mypy_cache_spec(("test",), Version(version), mode)
    config = [f"--config-file={CONFIG}"] if CONFIG in files else []
    sources = sorted(f for f in files if f.endswith((".py", ".pyi"))) if checked is None else checked
    inputs = {f.path: f.content.decode() for f in mypy_inputs(sources)}
    argv = [mypy_python(version), "-m", "mypy", *config, "--python-version=3.11", *mypy_cache_args(spec), f"@{FILE_LIST}"]
    return spec, argv, inputs


def run_mypy(
    named_cache: Path | None, files: dict[str, str], version: str, mode: SharedCache = SharedCache.read_write,
    env: dict[str, str] | None = None, checked: list[str] | None = None,
) -> Run:
    """mypy on `files` as cacheplug runs it: through the shim on `named_cache` with mode's flags;
    with `SharedCache.off` (the cold oracle) straight, as `shared_cache = "off"` does. `env`: e.g.
    `MYPYPATH`, which Pants sets to the source roots. `checked`: see mypy_argv."""
    spec, argv, inputs = mypy_argv(version, files, mode, checked)
    files = {**files, **inputs}
    if mode == SharedCache.off:
        with tempfile.TemporaryDirectory() as tmp:
            for rel, text in files.items():
                Path(tmp, rel).parent.mkdir(parents=True, exist_ok=True)
                Path(tmp, rel).write_text(text)
            proc = subprocess.run(argv, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, **(env or {})})
            return Run(proc.returncode, proc.stdout)
    assert named_cache is not None
    sandbox = make_sandbox(named_cache, argv, files, spec=spec)
    return finish(sandbox, start(sandbox, env))

