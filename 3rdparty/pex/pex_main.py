# __main__.py of the pex PEX that ./pants builds (see build_pex.py). Plays the part of a real
# PEX's bootstrap, with only what Pants uses:
# - pex must run from files on disk, not from inside the zip: it copies its vendored pip out of
#   its own package directory. So the wheel's files are unpacked once per PEX_ROOT, into a temp
#   dir that is renamed into place (concurrent first runs race safely: the loser's copy goes).
# - PEX_SCRIPT picks a console script (Pants runs `pex3` this way), PEX_MODULE a module.
# - Like a real PEX's bootstrap, PEX_PYTHON and PEX_PYTHON_PATH only choose the interpreter that
#   runs pex itself and are then dropped: Pants sets PEX_PYTHON to its own 3.9 to run this file,
#   and a leaked PEX_PYTHON would pin every PEX that pex builds and runs (e.g. Pants' probe for a
#   CPython 3.11 interpreter) to 3.9. Other PEX_* variables (PEX_ROOT...) are pex's settings.
import os
import runpy
import shutil
import sys
import zipfile

WHEEL_SHA256 = "@WHEEL_SHA256@"

pex_file = os.path.dirname(os.path.abspath(__file__))
pex_root = os.path.abspath(os.path.expanduser(os.environ.get("PEX_ROOT") or "~/.pex"))
code = os.path.join(pex_root, "cacheplug-pex-cli", WHEEL_SHA256)
if not os.path.isdir(code):
    os.makedirs(os.path.dirname(code), exist_ok=True)
    tmp = "{}.tmp.{}".format(code, os.getpid())
    with zipfile.ZipFile(pex_file) as z:
        z.extractall(tmp, [n for n in z.namelist() if n.startswith("wheel/")])
    try:
        os.rename(tmp, code)
    except OSError:
        if not os.path.isdir(code):
            raise
        shutil.rmtree(tmp)
sys.path[0] = os.path.join(code, "wheel")

script = os.environ.pop("PEX_SCRIPT", "pex")
module = os.environ.pop("PEX_MODULE", "")
os.environ.pop("PEX_PYTHON", None)
os.environ.pop("PEX_PYTHON_PATH", None)
if not module:
    module = {
        "pex": "pex.bin.pex:main",
        "pex3": "pex.cli.pex:main",
        "pex-tools": "pex.tools.main:main",
    }[script]
name, _, func = module.partition(":")
if func:
    sys.exit(getattr(__import__(name, fromlist=[func]), func)())
runpy.run_module(name, run_name="__main__", alter_sys=True)
