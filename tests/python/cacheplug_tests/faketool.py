"""A small stand-in for mypy with a mypy-shaped cache, for driving the cache shim thousands of times.

    python faketool.py CACHE_DIR SRC_DIR

Each `SRC_DIR/<name>.mod` is a module: lines `import <name>`, `def <name>` (its interface) and
`use <module>.<name>` (an error unless that module exports the name), `error <text>` (an error).
For each module the tool keeps `<name>.meta.json` (source hash, the interface hashes of its
imports, interface hash) and `<name>.data.json` (interface, diagnostics) in CACHE_DIR, and like
mypy trusts a meta whose source and dependency hashes match, reading the data beside it without
checking it. So a torn cache entry (meta from one run, data from another) gives wrong output, which
the tests' cold-run oracle catches. Files are written like mypy writes them: a temp file, then
rename. Prints sorted diagnostics and exits 1 if there are any, else 0.

FAKETOOL_STARTED=path: touch it once the tool runs; FAKETOOL_SLEEP=seconds: then sleep.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time


def _hash(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _write(path: str, data: object) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, sort_keys=True)
    os.replace(tmp, path)


def _read(path: str) -> dict | None:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def check(cache: str, src: str) -> list[str]:
    sources = {
        name[: -len(".mod")]: open(os.path.join(src, name)).read()
        for name in sorted(os.listdir(src))
        if name.endswith(".mod")
    }
    os.makedirs(cache, exist_ok=True)
    results: dict[str, dict] = {}  # module -> data {"iface": [...], "diags": [...]}
    iface_hash: dict[str, str] = {}

    def visit(mod: str, stack: tuple[str, ...]) -> None:
        if mod in results:
            return
        lines = sources[mod].splitlines()
        imports = sorted({l.split()[1] for l in lines if l.startswith("import ")} & set(sources))
        for dep in imports:
            if dep not in stack:
                visit(dep, stack + (mod,))
        deps = {d: iface_hash.get(d, "cycle") for d in imports}
        meta_path, data_path = (os.path.join(cache, f"{mod}.{k}.json") for k in ("meta", "data"))
        meta = _read(meta_path)
        if meta and meta.get("src") == _hash(sources[mod]) and meta.get("deps") == deps:
            data = _read(data_path)
            if data is not None:
                results[mod], iface_hash[mod] = data, meta["iface"]
                return
        iface = sorted(l.split()[1] for l in lines if l.startswith("def "))
        diags = []
        for n, line in enumerate(lines, 1):
            words = line.split()
            if words[:1] == ["import"] and words[1] not in sources:
                diags.append(f"{mod}.mod:{n}: error: no module {words[1]}")
            elif words[:1] == ["use"]:
                target, _, name = words[1].partition(".")
                if target not in imports or name not in results.get(target, {}).get("iface", []):
                    diags.append(f"{mod}.mod:{n}: error: {words[1]} is not defined")
            elif words[:1] == ["error"]:
                diags.append(f"{mod}.mod:{n}: error: {' '.join(words[1:])}")
        data = {"iface": iface, "diags": diags, "src": sources[mod]}
        _write(data_path, data)
        _write(meta_path, {"src": _hash(sources[mod]), "deps": deps, "iface": _hash(iface)})
        results[mod], iface_hash[mod] = data, _hash(iface)

    for mod in sources:
        visit(mod, ())
    return sorted(d for data in results.values() for d in data["diags"])


def main() -> int:
    cache, src = sys.argv[1:3]
    if os.environ.get("FAKETOOL_STARTED"):
        open(os.environ["FAKETOOL_STARTED"], "w").close()
    time.sleep(float(os.environ.get("FAKETOOL_SLEEP", "0")))
    diags = check(cache, src)
    print("\n".join(diags))
    return 1 if diags else 0


if __name__ == "__main__":
    sys.exit(main())
