"""A real REAPI remote execution engine on loopback (bench/remote_exec.sh), for the remote-execution
test and benchmark: started, turned into Pants flags, stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cacheplug_tests.mypykit import find_python311

# The script exits with this status when bubblewrap is missing or cannot sandbox on this machine.
NO_SANDBOX = 3


class EngineUnavailable(Exception):
    """bubblewrap cannot run here: the engine cannot sandbox actions (the message says why)."""


@contextmanager
def remote_engine(script: Path | str, state: Path) -> Iterator[dict[str, str]]:
    """The options remote_exec.sh printed (remote_store_address, ...); the engine runs meanwhile.
    Mounted on the workers besides the script's defaults: the venv of the Pants that runs the
    nested Pants, by the path it is run by (Pants runs interpreter discovery with it), with the
    interpreter it is made from, and the interpreter the units run with (remote_execution_flags):
    wherever they are installed, pyenv or not."""
    mounts = [os.environ.get("CACHEPLUG_REMOTE_EXEC_MOUNTS", ""), sys.prefix, sys.base_prefix,
              str(Path(find_python311()).parent.parent)]
    env = {**os.environ, "CACHEPLUG_REMOTE_EXEC_MOUNTS": ":".join(filter(None, mounts))}
    try:
        started = subprocess.run(["bash", str(script), "start", str(state)], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, timeout=900)
        if started.returncode == NO_SANDBOX:
            raise EngineUnavailable(started.stderr.strip())
        assert started.returncode == 0, started.stderr
        yield dict(line.split("=", 1) for line in started.stdout.splitlines())
    finally:
        subprocess.run(["bash", str(script), "stop", str(state)], check=True, timeout=60)


def remote_execution_flags(options: dict[str, str]) -> tuple[str, ...]:
    """Every process on the engine, its action cache read and written by Pants (Pants 2.17 asks the
    engine to skip its own lookup). Workers resolve from PyPI (network=on: a platform property, so
    part of every cache key, as is the caches base path); they see only the interpreters mounted
    there, so the search path names one (the default <PYENV>, <PATH> would be this machine's)."""
    return (
        "--remote-execution", "--remote-cache-read", "--remote-cache-write",
        f"--remote-execution-address={options['remote_execution_address']}",
        f"--remote-store-address={options['remote_store_address']}",
        f"--remote-execution-append-only-caches-base-path={options['remote_execution_append_only_caches_base_path']}",
        "--remote-execution-extra-platform-properties=network=on",
        f"--python-bootstrap-search-path=['{Path(find_python311()).parent}']",
    )
