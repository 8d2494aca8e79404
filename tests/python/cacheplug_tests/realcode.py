"""Real open-source packages, fetched from PyPI at test or bench time (never committed), and the
edits developers make to them, for the differential tests and benchmarks.

`fetch(SDISTS["requests"])` gives the package's Python files as `{"src/requests/api.py": text}`
(source root `src`); `Editor` applies random edits of the kinds the differential needs: a body
edit, a signature change, a new error, a fixed error, a new import cycle, a removed module.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import random
import ssl
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SIMPLE_INDEX = "https://pypi.org/simple"


@dataclass(frozen=True)
class Sdist:
    name: str  # on PyPI
    version: str
    sha256: str  # of the sdist: what is tested is what was chosen
    package: str  # the import package's directory inside the sdist


SDISTS = {s.name: s for s in [
    # Pure Python, typed to varying degrees, most with import cycles (rich: one of 53 modules).
    Sdist("requests", "2.32.3", "55365417734eb18255590a9ff9eb97e9e1da868d4ccd6402399eaf68af20a760", "src/requests"),
    Sdist("click", "8.1.7", "ca9853ad459e787e2192211578cc907e7594e294c7ccc834310722b41b9ca6de", "src/click"),
    Sdist("jinja2", "3.1.4", "4a3aee7acbbe7303aede8e9648d13b8bf88a429282aa6122a993f0ac800cb369", "src/jinja2"),
    Sdist("httpx", "0.27.2", "f7c2be1d2f3c3c3160d441802406b206c2b76f5947b11115e6df10c6c65e66c2", "httpx"),
    Sdist("werkzeug", "3.0.4", "34f2371506b250df4d4f84bfe7b0921e4762525762bbd936614909fe25cd7306", "src/werkzeug"),
    Sdist("markdown-it-py", "3.0.0", "e3f60a94fa066dc52ec76661e37c851cb232d92f9886b15cb560aaada2df8feb", "markdown_it"),
    Sdist("rich", "13.9.4", "439594978a49a09530cff7ebc4b5c7103ef57baf48d5ea3184f21d9a2befa098", "rich"),
    Sdist("django", "5.1.4", "de450c09e91879fa5a307f696e57c851955c910a438a35e6b4c895e86bedc82a", "django"),
]}


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cacheplug" / "sdists"


def _download(url: str) -> bytes:
    # ./pants exports the CA bundle this network needs (a TLS-re-signing proxy).
    context = ssl.create_default_context(cafile=os.environ.get("PANTS_CA_CERTS_PATH") or None)
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, context=context, timeout=120) as response:
        return bytes(response.read())


def sdist_bytes(sdist: Sdist) -> bytes:
    """The sdist, from this machine's download cache or PyPI; always checked against its sha256."""
    filename = f"{sdist.name.replace('-', '_')}-{sdist.version}.tar.gz"
    cached = _cache_dir() / filename
    if cached.exists():
        data = cached.read_bytes()
        if hashlib.sha256(data).hexdigest() == sdist.sha256:
            return data
    index = json.loads(_download(f"{SIMPLE_INDEX}/{sdist.name}/"))
    url = next(f["url"] for f in index["files"] if f["hashes"].get("sha256") == sdist.sha256)
    data = _download(url)
    if hashlib.sha256(data).hexdigest() != sdist.sha256:
        raise RuntimeError(f"{url}: sha256 differs from the pinned {sdist.sha256}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{filename}.{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(cached)  # whole or not at all, for concurrent test processes
    return data


def fetch(sdist: Sdist) -> dict[str, str]:
    """The package's .py/.pyi files and py.typed, as `{"src/<package>/...": text}`."""
    files = {}
    with tarfile.open(fileobj=io.BytesIO(sdist_bytes(sdist)), mode="r:gz") as tar:
        for member in tar.getmembers():
            top, _, rel = member.name.partition("/")
            if member.isfile() and rel.startswith(sdist.package + "/") and rel.endswith((".py", ".pyi", "py.typed")):
                f = tar.extractfile(member)
                assert f is not None
                files["src/" + rel[len(sdist.package.rpartition("/")[0]):].lstrip("/")] = f.read().decode()
    return files


def fetch_tests(sdist: Sdist) -> dict[str, str]:
    """The sdist's top-level `tests/` directory's .py files, as `{"tests/...": text}`."""
    files = {}
    with tarfile.open(fileobj=io.BytesIO(sdist_bytes(sdist)), mode="r:gz") as tar:
        for member in tar.getmembers():
            _, _, rel = member.name.partition("/")
            if member.isfile() and rel.startswith("tests/") and rel.endswith(".py"):
                f = tar.extractfile(member)
                assert f is not None
                files[rel] = f.read().decode()
    return files


def module_name(path: str) -> str:
    """`src/pkg/sub/mod.py` -> `pkg.sub.mod`; `src/pkg/__init__.py` -> `pkg`."""
    return path[len("src/"):].rsplit(".", 1)[0].replace("/", ".").removesuffix(".__init__")


def first_party_imports(files: dict[str, str], path: str) -> set[str]:
    """The first-party modules `path` imports anywhere in it (relative imports resolved)."""
    modules = {module_name(p): p for p in files if p.endswith((".py", ".pyi"))}
    package = module_name(path) if path.endswith("__init__.py") else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    try:
        tree = ast.parse(files[path])
    except SyntaxError:
        return found
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in found if m in modules and modules[m] != path}


class Editor:
    """Random edits of a package's files, of the kinds the differential tests need."""

    KINDS = ("body", "signature", "error", "fix", "cycle", "remove")

    def __init__(self, files: dict[str, str], rng: random.Random) -> None:
        self.files = dict(files)
        self.rng = rng
        self.errors: list[tuple[str, str]] = []  # (path, line) of errors added and not yet fixed
        self.count = 0

    def modules(self) -> list[str]:
        return sorted(p for p in self.files if p.endswith(".py"))

    def edit(self, kind: str | None = None) -> str:
        """Apply one edit (of `kind`, or a random one); return what was done."""
        self.count += 1
        kind = kind or self.rng.choice(self.KINDS)
        done = getattr(self, f"_{kind}")()
        return done or self._error()

    def _lines(self, path: str) -> list[str]:
        return self.files[path].splitlines(keepends=True)

    def _functions(self) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
        found = []
        for path in self.modules():
            try:
                tree = ast.parse(self.files[path])
            except SyntaxError:
                continue
            found += [(path, n) for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        return found

    def _body(self) -> str | None:
        """A statement added at the top of a function body: later lines shift, the interface stays."""
        candidates = []
        for path, fn in self._functions():
            first = fn.body[0]
            line = self._lines(path)[first.lineno - 1]
            if first.lineno > fn.lineno and not line[: first.col_offset].strip():
                candidates.append((path, fn.name, first.lineno, line[: first.col_offset]))
        if not candidates:
            return None
        path, name, lineno, indent = self.rng.choice(candidates)
        lines = self._lines(path)
        lines.insert(lineno - 1, f"{indent}_cacheplug_local_{self.count} = {self.count}\n")
        self.files[path] = "".join(lines)
        return f"body {path}:{name}"

    def _signature(self) -> str | None:
        """A function's return annotation changed (to `int`, or from `int` to `str`)."""
        candidates = [(p, f) for p, f in self._functions()
                      if f.returns is not None and f.returns.lineno == f.returns.end_lineno]
        if not candidates:
            return None
        path, fn = self.rng.choice(candidates)
        returns = fn.returns
        assert returns is not None and returns.end_col_offset is not None
        lines = self._lines(path)
        line = lines[returns.lineno - 1]
        old = line[returns.col_offset:returns.end_col_offset]
        new = "str" if old == "int" else "int"
        lines[returns.lineno - 1] = line[: returns.col_offset] + new + line[returns.end_col_offset:]
        self.files[path] = "".join(lines)
        return f"signature {path}:{fn.name} -> {new}"

    def _error(self) -> str:
        path = self.rng.choice(self.modules())
        line = f'_cacheplug_error_{self.count}: int = "not an int"\n'
        self.files[path] = self.files[path].rstrip("\n") + "\n\n" + line
        self.errors.append((path, line))
        return f"error {path}"

    def _fix(self) -> str | None:
        """An error added earlier, removed (if its module is still there)."""
        while self.errors:
            path, line = self.errors.pop(self.rng.randrange(len(self.errors)))
            if path in self.files and line in self.files[path]:
                self.files[path] = self.files[path].replace("\n\n" + line, "\n")
                return f"fix {path}"
        return None

    def _cycle(self) -> str | None:
        """`b` imports `a` where `a` imports `b` already: a new import cycle."""
        pairs = [(a, b) for a in self.modules() for b in sorted(first_party_imports(self.files, a))
                 if module_name(a) not in first_party_imports(self.files, self._path(b))]
        if not pairs:
            return None
        a, b = self.rng.choice(pairs)
        path = self._path(b)
        self.files[path] = self.files[path].rstrip("\n") + f"\n\nimport {module_name(a)}  # cacheplug: new cycle\n"
        return f"cycle {path} -> {module_name(a)}"

    def _remove(self) -> str | None:
        """A module others import, deleted."""
        imported = {m for p in self.modules() for m in first_party_imports(self.files, p)}
        candidates = [p for p in self.modules() if not p.endswith("__init__.py") and module_name(p) in imported]
        if not candidates:
            return None
        path = self.rng.choice(candidates)
        del self.files[path]
        return f"remove {path}"

    def _path(self, module: str) -> str:
        return next(p for p in self.files if p.endswith((".py", ".pyi")) and module_name(p) == module)
