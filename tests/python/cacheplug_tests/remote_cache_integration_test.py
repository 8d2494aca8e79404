"""Separate-compilation units shared between checkouts through a real REAPI remote cache: BuildGrid
on loopback (bench/remote_cache.sh), real Pants, real mypy.

Checkout A fills the remote cache; checkout B — another directory, its own empty local store and
named caches, as on another machine — must get every unit from it, with the diagnostics of cold
whole-repo mypy. Two checkouts that each checked on their own first, with their named caches at
different paths, then share: what one uploads after an edit, the other gets (their base units
and units are byte-identical, so their cache keys are). And with the server down, a check still
runs locally and reports the same.
"""

from __future__ import annotations

import random
import socket
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from cacheplug_tests.mypykit import Project
from cacheplug_tests.pants_repo import PantsRepo, PantsResult
from cacheplug_tests.separatekit import (
    MYPY_VERSIONS,
    SEPARATE,
    counter,
    diagnostics,
    kept_cache_files,
    project,
    project_repo,
    ran,
)

SERVER_SCRIPT = "bench/remote_cache.sh"  # in this test's sandbox: a `files` dependency

# Units of 5 files: the 43-module project is several units (one of the default size), so that
# sharing is shown unit by unit.
UNITS = (SEPARATE, "--mypy-separate-compilation-unit-size=5")


@pytest.fixture
def remote_cache(tmp_path: Path) -> Iterator[str]:
    """A BuildGrid server's address, stopped by its pid after the test."""
    state = tmp_path / "buildgrid"
    started = subprocess.run(["bash", SERVER_SCRIPT, "start", str(state)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, timeout=900)
    assert started.returncode == 0, started.stderr
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run(["bash", SERVER_SCRIPT, "stop", str(state)], check=True, timeout=60)


def remote(address: str) -> tuple[str, ...]:
    return ("--remote-cache-read", "--remote-cache-write", f"--remote-store-address={address}")


def check(repo: PantsRepo, version: str, *args: str) -> PantsResult:
    result = repo.run(*MYPY_VERSIONS[version], *args, "check", "::")
    assert result.exit_code == 1, result.stderr[-3000:]  # the project has type errors
    return result


def leaked_paths(result: PantsResult, checkout: PantsRepo) -> list[str]:
    """Cache files, given to or written by a unit, that name a path of this checkout: its
    buildroot, its Pants caches (the named caches, where the tools' venvs are), the sandbox."""

    def leaks(sandbox: Path, path: Path) -> list[str]:
        data = path.read_bytes()
        needles = {str(checkout.root), str(checkout.caches), str(checkout.caches.resolve()), str(sandbox)}
        return [n for n in sorted(needles) if n.encode() in data]

    found = kept_cache_files(result, leaks)
    return sorted(f"{unit}: {path}: {n}" for unit, files in found.items() for path, ns in files.items() for n in ns)


def test_another_checkout_gets_every_unit_from_the_remote_cache(tmp_path: Path, remote_cache: str) -> None:
    """mypy 2.4.1. The path rewrite of 1.x's JSON cache is tested in cache_paths_test; what Pants
    does (processes, digests, the remote cache) is the same for both; the suite's time is not."""
    version = "2.4.1"
    generated = project()
    a = project_repo(tmp_path / "a", generated, own_pex_root=True)
    # Another directory, at another depth, with its own empty local store and named caches (its
    # tools' venvs too: a path of theirs in a unit would show as a leak, and in the cache keys).
    b = project_repo(tmp_path / "elsewhere" / "checkout-b", generated, own_pex_root=True)

    first = check(a, version, *UNITS, *remote(remote_cache), "--keep-sandboxes=always")
    units, ran_first = ran(first)
    assert units == ran_first
    # No path of this checkout in the caches units are given (the base unit's included) or write.
    assert leaked_paths(first, a) == []

    fresh = check(b, version, *UNITS, *remote(remote_cache), "--stats-log")
    assert ran(fresh) == (units, 0)
    assert f"({units} from the remote cache," in fresh.stderr
    # Every unit, the base unit and the tools' PEXes: nothing ran in B.
    assert counter(fresh, "remote_cache_requests_cached") > units
    assert counter(fresh, "remote_cache_requests_uncached") == 0
    cold = check(b, version, "--mypy-shared-cache=off")  # whole-repo mypy, no cache, no remote
    assert diagnostics(fresh) == diagnostics(first) == diagnostics(cold)

    # B edits a leaf's body: its unit runs in B, on the base and dependency caches A made, and
    # reports what cold mypy did (a body edit changes no diagnostic).
    leaf = "m39"
    generated.modules[leaf].body += 1
    b.write(generated.render())
    edited = check(b, version, *UNITS, *remote(remote_cache))
    assert ran(edited) == (units, 1)
    assert diagnostics(edited) == diagnostics(cold)


@pytest.mark.parametrize("version", sorted(MYPY_VERSIONS))
def test_checkouts_that_checked_on_their_own_share_what_either_uploads(tmp_path: Path, remote_cache: str, version: str) -> None:
    """Who fills the remote cache first does not matter: B computed its own base unit and units
    (mypy 1.1.1 records some indirect dependencies by chance; named caches at another path), yet
    its cache keys are A's."""
    generated = project()
    a = project_repo(tmp_path / "a", generated, own_pex_root=True)
    b = project_repo(tmp_path / "elsewhere" / "deeper" / "checkout-b", generated, own_pex_root=True)
    assert a.named_caches != b.named_caches
    for checkout in (a, b):  # each on its own: no remote cache
        first = check(checkout, version, *UNITS)
        assert ran(first)[0] == ran(first)[1]
    # A changes a signature deep down (its importers re-run) and shares what it ran.
    generated.modules["m1"].returns_int = not generated.modules["m1"].returns_int
    a.write(generated.render())
    edited_a = check(a, version, *UNITS, *remote(remote_cache))
    units, ran_a = ran(edited_a)
    assert ran_a > 3
    b.write(generated.render())
    edited_b = check(b, version, *UNITS, *remote(remote_cache))
    assert ran(edited_b) == (units, 0), edited_b.stderr[-2000:]
    assert f"({ran_a} from the remote cache," in edited_b.stderr
    cold = check(b, version, "--mypy-shared-cache=off")
    assert diagnostics(edited_b) == diagnostics(edited_a) == diagnostics(cold)


def test_a_check_runs_locally_when_the_remote_cache_is_down(tmp_path: Path) -> None:
    """Nothing listens on the port (refused), then a socket listens and never answers (a hung
    server: Pants' own RPC timeouts apply; PantsRepo.run's timeout would catch a hang)."""
    small = Project.generate(8, random.Random(2))
    small.modules["m5"].error = True
    repo = project_repo(tmp_path / "repo", small)
    cold = check(repo, "2.4.1", "--mypy-shared-cache=off")
    for server in ("refused", "silent"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            address = f"grpc://127.0.0.1:{s.getsockname()[1]}"
            if server == "silent":
                s.listen(1000)
            else:
                s.close()  # the port was free, and now nothing listens on it
            # New unit cache keys each time (mypy --bazel ignores --cache-dir), so that every unit
            # runs: the local process cache may not answer for the remote one.
            nonce = f"--mypy-args=['--cache-dir=.{server}']"
            result = check(repo, "2.4.1", SEPARATE, nonce, *remote(address), "--stats-log")
        units, ran_units = ran(result)
        assert units == ran_units, server
        assert counter(result, "remote_cache_requests_cached") == 0
        if server == "refused":
            # Pants' warning. A hung server gets none when the process, started locally while the
            # lookup waits, finishes first and the lookup is cancelled: it depends on timing.
            assert "Failed to read from remote cache" in result.stderr
        assert diagnostics(result) == diagnostics(cold), server
