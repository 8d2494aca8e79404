"""In-sandbox program: take the machine's paths out of a mypy --bazel cache.

    python cache_paths.py SANDBOX_ROOT   (run in the cache directory, by the mypy venv's Python)

mypy records each module's source path in its cache (the meta's `path`, and the data file's tree
`path`). Under `--bazel`, first-party paths are relative, but typeshed's (mypy 2.x makes it
absolute even for a relative `--custom-typeshed-dir`) and third-party ones are absolute, inside
Pants' named caches dir (`~/.cache/pants/named_caches/pex_root/...`): a user's home directory
would travel in the separate-compilation base unit's cache, an input of every unit.

This rewrites each such path to the same file's path relative to the sandbox root, through its
`.cache/pex_root` link (`.cache/pex_root/installed_wheels/<hash>/...`), a path that names the file
in every sandbox of every machine that installed the same wheels. mypy --bazel never reads a path
back from a cache it is given (it validates a meta by stat-ing the path it found itself), so the
rewrite changes no result.

What it cannot undo: mypy hashed each module's data, path included, before this runs, and those
interface hashes stay in the metas (its own and its dependents'). They depend on where the named
caches are; recomputing them would mean redoing mypy's dependency graph. So base units are
byte-identical across machines whose named caches are at the same path (README, "Scaling out").

How, without re-serializing mypy's data: the path is a string that occurs once in the meta and
once in the data file, so its encoding (JSON, or mypy's fixed format through mypy's own
encoder) is replaced by the new string's. A module whose files do not show the path exactly
once each is left as it is; the counts are printed.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Callable, Optional

PEX_ROOT = ".cache/pex_root"


def canonical(path: str, pex_root: str) -> Optional[str]:
    """`path` as the same file below the sandbox's `.cache/pex_root` link, or None if it is not
    there. By its real path: pex runs a venv through a short link whose name depends on where the
    pex root is (`venvs/s/<hash>`), and links site-packages files into `installed_wheels/<hash>`;
    the real path depends only on what is installed."""
    real = os.path.realpath(path)
    if not real.startswith(pex_root + "/"):
        return None
    return PEX_ROOT + real[len(pex_root):]


def json_path(meta: bytes) -> str:
    return str(json.loads(meta)["path"])


def json_encode(path: str) -> bytes:
    return json.dumps(path).encode()


def ff_path(meta: bytes) -> str:
    # mypy's own reader (the fixed format is mypy >= 1.20's): this runs in mypy's venv.
    from librt.internal import ReadBuffer  # pants: no-infer-dep
    from mypy.cache import read_str  # type: ignore[import-not-found]  # pants: no-infer-dep

    buffer = ReadBuffer(meta[2:])  # after the two cache-version bytes
    read_str(buffer)  # the module id
    return str(read_str(buffer))


def ff_encode(path: str) -> bytes:
    from librt.internal import WriteBuffer  # pants: no-infer-dep
    from mypy.cache import write_str  # pants: no-infer-dep

    buffer = WriteBuffer()
    write_str(buffer, path)
    return bytes(buffer.getvalue())


# meta suffix -> data suffix, how to read the meta's path, how a string is encoded.
FORMATS: dict[str, tuple[str, Callable[[bytes], str], Callable[[str], bytes]]] = {
    ".meta.json": (".data.json", json_path, json_encode),
    ".meta.ff": (".data.ff", ff_path, ff_encode),
}


def rewrite(meta_file: str, pex_root: str) -> Optional[bool]:
    """True: rewritten; None: nothing to rewrite; False: left as it is."""
    for meta_suffix, (data_suffix, read_path, encode) in FORMATS.items():
        if meta_file.endswith(meta_suffix):
            break
    else:
        return None
    data_file = meta_file[: -len(meta_suffix)] + data_suffix
    with open(meta_file, "rb") as f:
        meta = f.read()
    try:
        old = read_path(meta)
        with open(data_file, "rb") as f:
            data = f.read()
    except Exception:
        return False
    new = canonical(old, pex_root)
    if new is None:
        return None
    old_bytes, new_bytes = encode(old), encode(new)
    if meta.count(old_bytes) != 1 or data.count(old_bytes) != 1:
        return False
    # Each file is replaced by rename: a reader never sees half of one.
    for name, content in ((data_file, data), (meta_file, meta)):
        tmp = f"{name}.cacheplug-tmp"
        with open(tmp, "wb") as f:
            f.write(content.replace(old_bytes, new_bytes))
        os.replace(tmp, name)
    return True


def main(sandbox_root: str) -> int:
    pex_root = os.path.realpath(os.path.join(sandbox_root, PEX_ROOT))
    rewritten = kept = 0
    for dirpath, _, names in os.walk("."):
        for name in names:
            outcome = rewrite(os.path.join(dirpath, name), pex_root)
            rewritten += outcome is True
            kept += outcome is False
    print(f"cacheplug: made {rewritten} cache paths sandbox-relative, left {kept} absolute", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
