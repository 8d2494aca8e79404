"""`pants cache-info / cache-prune / cache-export / cache-import` as a user runs them: real Pants
processes in temp repos, after a real `pants check` with the `cacheplug.mypy` backend."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import pytest

from cacheplug.mypy import cache_policy
from cacheplug.store import layout
from cacheplug_tests.pants_repo import PantsRepo
from cacheplug_tests.storekit import disk_bytes, tree_state

FILES = {
    "src/app/BUILD": "python_sources()\n",
    "src/app/__init__.py": "",
    "src/app/good.py": "def double(x: int) -> int:\n    return x * 2\n",
    "src/app/bad.py": 'from app.good import double\n\n\ndef name() -> int:\n    return "x" + str(double(1))\n',
}
TOML = '[source]\nroot_patterns = ["/src"]\n\n[python]\ninterpreter_constraints = ["CPython==3.11.*"]\n'


def _repo(root: Path) -> PantsRepo:
    repo = PantsRepo(root, backends=["pants.backend.python", "cacheplug.mypy"], extra_toml=TOML)
    repo.write(FILES)
    return repo


def _cache_line(stderr: str) -> dict[str, int]:
    match = re.search(r"mypy cache \[[^\]]*\]: (\d+) given, (\d+) reused, (\d+) written", stderr)
    assert match, stderr[-3000:]
    return {"given": int(match.group(1)), "reused": int(match.group(2)), "written": int(match.group(3))}


def _diagnostics(stderr: str) -> list[str]:
    return sorted(line for line in stderr.splitlines() if ": error:" in line)


def _info(repo: PantsRepo, pantsd: bool = False) -> dict:
    result = repo.run("cache-info", "--format=json", pantsd=pantsd)
    assert result.exit_code == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def _metas(scope: Path) -> dict[str, dict]:
    """Each cached module's meta.json, from the cache's records and objects."""
    metas = {}
    for path in layout.iter_entries(str(scope)):
        group, files = layout.load_entry(path, cache_policy.group_of)
        for rel, (obj, _) in files.items():
            if rel.endswith(".meta.json"):
                metas[group] = json.loads(Path(layout.object_path(str(scope), obj)).read_bytes())
    return metas


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PantsRepo]:
    repo = _repo(tmp_path_factory.mktemp("lifecycle") / "repo")
    yield repo
    repo.stop_pantsd()  # the bad-option runs start one


def test_info_prune_export_import(repo: PantsRepo, tmp_path: Path) -> None:
    first = repo.run("check", "::")
    assert first.exit_code == 1, first.stderr[-3000:]
    written = _cache_line(first.stderr)["written"]

    # The goals run through pantsd, as users run them (and ~1 s a run instead of ~19 s of Pants'
    # start-up). `check` does not: pantsd would memoize its process; so does the other checkout,
    # whose --local-store-dir pantsd would restart for.
    info = _info(repo, pantsd=True)
    [scope] = info["scopes"]
    assert scope["tool"] == "mypy" and scope["buildroot"] == str(repo.root) and "mypy==" in scope["label"]
    assert scope["entries"] == written and scope["bytes"] == disk_bytes(Path(scope["path"])) > 0
    assert scope["recent_runs"] == 1 and scope["misses"] == written and info["budget_bytes"] == 1 << 30
    table = repo.run("cache-info", pantsd=True)
    assert table.exit_code == 0 and re.search(rf"mypy\s+{scope['scope'][:12]}\s+mypy==", table.stdout), table.stdout

    export = repo.run("cache-export", "--output=snap.tar.gz", pantsd=True)
    assert export.exit_code == 0 and f"{written} entries" in export.stdout, export.stderr[-3000:]

    # Prune to a budget far below the cache: it says what it freed, and that is what went.
    before = scope["bytes"]
    prune = repo.run("--cacheplug-max-size=64KiB", "cache-prune", "--tool=mypy", pantsd=True)
    assert prune.exit_code == 0, prune.stderr[-3000:]
    freed = int(re.search(r"freed .* \((\d+) bytes\) in", prune.stdout).group(1))  # type: ignore[union-attr]
    after = disk_bytes(Path(scope["path"]))
    assert after <= 64 * 1024 and freed == before - after
    assert _info(repo, pantsd=True)["scopes"][0]["bytes"] == after

    # Another checkout (another buildroot, empty named caches), as on a CI runner: import, then check.
    other = _repo(tmp_path / "checkout2")
    shared_store = f"--local-store-dir={repo.caches / 'lmdb_store'}"  # only to skip rebuilding PEXes
    (other.root / "snap.tar.gz").write_bytes((repo.root / "snap.tar.gz").read_bytes())
    imported = other.run(shared_store, "cache-import", "--input=snap.tar.gz")
    assert imported.exit_code == 0 and f"imported {written} entries" in imported.stdout, imported.stderr[-3000:]
    [imported_scope] = _info(other)["scopes"]
    metas = _metas(Path(imported_scope["path"]))
    second = other.run(shared_store, "check", "::")
    assert second.exit_code == 1
    assert _diagnostics(second.stderr) == _diagnostics(first.stderr) != []
    assert _cache_line(second.stderr)["given"] == written
    # Every module was a hit: mypy re-analysed none. It rewrites the meta of a module whose source
    # has a new absolute path (typeshed lives in this checkout's own named caches) after checking
    # the source hash; a re-analysed module would get a new data_mtime, interface, dependencies.
    metas_after = _metas(Path(imported_scope["path"]))
    assert metas_after.keys() == metas.keys()
    for group, meta in metas.items():
        assert {k: v for k, v in metas_after[group].items() if k not in ("path", "mtime")} == \
            {k: v for k, v in meta.items() if k not in ("path", "mtime")}, group

    # A truncated archive is refused and changes nothing.
    (other.root / "cut.tar.gz").write_bytes((repo.root / "snap.tar.gz").read_bytes()[:5000])
    before_tree = tree_state(other.named_caches / "cacheplug")
    refused = other.run(shared_store, "cache-import", "--input=cut.tar.gz")
    assert refused.exit_code == 1 and "refused" in refused.stderr and "not changed" in refused.stderr
    assert tree_state(other.named_caches / "cacheplug") == before_tree

    kept = repo.run("cache-prune", "--unused-days=1", pantsd=True)  # used minutes ago: stays
    assert kept.exit_code == 0 and "pruned" in kept.stdout and len(_info(repo, pantsd=True)["scopes"]) == 1
    cleared = repo.run("cache-prune", "--clear", pantsd=True)
    assert cleared.exit_code == 0 and _info(repo, pantsd=True)["scopes"] == []


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--cacheplug-max-size=12XB", "cache-info"], ["[cacheplug].max_size", "'12XB'", "KiB", "none = unlimited"]),
        (["--cacheplug-max-size=-5MiB", "cache-prune"], ["[cacheplug].max_size", "'-5MiB'"]),
        (["cache-info", "--format=xml"], ["xml", "table", "json"]),
        (["cache-prune", "--tool=nope"], ["[cache-prune].tool", "'nope'", "mypy"]),
        (["cache-prune", "--unused-days=-1"], ["[cache-prune].unused_days", ">= 0"]),
        (["cache-export"], ["[cache-export].output", "required"]),
        (["cache-import"], ["[cache-import].input", "required"]),
    ],
)
def test_bad_option_values_name_the_option_and_what_is_allowed(repo: PantsRepo, args: list[str], expected: list[str]) -> None:
    # pantsd: ~1 s a run instead of ~19 s of Pants' start-up; the value is rejected all the same.
    result = repo.run(*args, pantsd=True)
    assert result.exit_code != 0
    for text in expected:
        assert text in result.stderr, result.stderr[-3000:]
