"""Run a real Pants in a temporary repo, isolated from this machine's caches and pantsd.

The outer `./pants` exports what a nested Pants needs on this machine (see pants.toml [test]):
the pex PEX it built (CACHEPLUG_PEX_PATH) and the CA bundle (PANTS_CA_CERTS_PATH).
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cacheplug

# Where the plugin's sources are in this test's sandbox: the nested Pants loads them from there.
PLUGIN_SRC = Path(cacheplug.__file__).resolve().parent.parent

# Pex's own cache (downloads, built wheels, venvs), shared by the nested Pants runs of every test,
# as all Pants runs on a machine share it: its entries are content-addressed and written
# atomically under pex's locks. Without it each fresh repo resolves and installs its tools again
# (~15 s per repo). Only pex's: the named caches under test and the process cache stay per repo.
SHARED_PEX_ROOT = Path(os.environ.get("CACHEPLUG_TEST_PEX_ROOT") or Path.home() / ".cache/cacheplug/test-pex-root")


def _pex_cli_config() -> str:
    pex = os.environ.get("CACHEPLUG_PEX_PATH")
    if not pex:
        raise RuntimeError("CACHEPLUG_PEX_PATH is unset: run the tests through ./pants")
    # ./pants names the file pex-<version>-<sha256> after checking its sha256.
    _, version, sha256 = Path(pex).name.split("-")
    size = os.path.getsize(pex)
    platforms = ("linux_x86_64", "linux_arm64", "macos_x86_64", "macos_arm64")
    known = ", ".join(f'"v{version}|{p}|{sha256}|{size}"' for p in platforms)
    return f'[pex-cli]\nversion = "v{version}"\nurl_template = "file://{pex}"\nknown_versions = [{known}]\n'


@dataclass(frozen=True)
class PantsResult:
    exit_code: int
    stdout: str
    stderr: str


class PantsRepo:
    """A temp repo with a pants.toml that enables `backends`, plus private Pants caches."""

    def __init__(
        self, root: Path, backends: list[str], extra_toml: str = "", plugins: list[str] | None = None,
        caches: Path | None = None, own_pex_root: bool = False,
    ) -> None:
        """`plugins`: requirements for `[GLOBAL].plugins` (then the plugin is not loaded from this
        sandbox's sources; `extra_toml` says where the wheels are). `caches`: Pants' caches (named
        caches, local store), to share them with another repo (default: this repo's own).
        `own_pex_root`: not SHARED_PEX_ROOT (a repo standing for another machine)."""
        self.root = root
        self.caches = caches or root.parent / f"{root.name}-caches"
        self.named_caches = self.caches / "named_caches"
        root.mkdir(parents=True, exist_ok=True)
        pex_root = self.named_caches / "pex_root"
        if not own_pex_root and not pex_root.is_symlink():
            SHARED_PEX_ROOT.mkdir(parents=True, exist_ok=True)
            self.named_caches.mkdir(parents=True, exist_ok=True)
            pex_root.symlink_to(SHARED_PEX_ROOT)
        backend_list = ", ".join(f'"{b}"' for b in backends)
        (root / "pants.toml").write_text(
            f"""\
[GLOBAL]
pants_version = "2.17.1"
{f"plugins = {json.dumps(plugins)}" if plugins is not None else f'pythonpath = ["{PLUGIN_SRC}"]'}
backend_packages = [{backend_list}]
pantsd = false
named_caches_dir = "{self.named_caches}"
local_store_dir = "{self.caches / 'lmdb_store'}"
pants_workdir = "{self.caches / 'pants.d'}"

[subprocess-environment]
env_vars = ["PIP_CONFIG_FILE=/dev/null"]

[python-bootstrap]
search_path = ["<PYENV>", "<PATH>"]

{_pex_cli_config()}
{extra_toml}"""
        )

    def write(self, files: dict[str, str]) -> None:
        for rel, content in files.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)

    def run(self, *args: str, env: dict[str, str] | None = None, pantsd: bool = False, timeout: float = 900) -> PantsResult:
        full_env = {
            k: v
            for k, v in os.environ.items()
            if k in ("PATH", "HOME", "PYENV_ROOT", "PANTS_CA_CERTS_PATH", "LANG", "LC_ALL")
        }
        full_env["NO_SCIE_WARNING"] = "1"
        full_env.update(env or {})
        proc = subprocess.run(
            [sys.executable, "-m", "pants", "--pantsd" if pantsd else "--no-pantsd", *args],
            cwd=self.root,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
        )
        return PantsResult(proc.returncode, proc.stdout, proc.stderr)

    def stop_pantsd(self) -> None:
        """Stop the pantsd that `run(..., pantsd=True)` started in this repo, if any."""
        for pid_file in glob.glob(str(self.root / ".pids/**/pantsd/pid"), recursive=True):
            try:
                os.kill(int(Path(pid_file).read_text().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
