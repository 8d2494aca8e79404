"""Benchmark: what shared test caches save under `pants test` (issue 18).

    ./pants run bench/testcaches_bench.py -- [--repeats 5]

One repo with the `cacheplug.python` backend and `[pytest].library_caches = ["matplotlib"]`,
pantsd warm, two test files:
  - property_test.py: a Hypothesis property false on 1 in 2000 inputs, each example taking 2 ms;
  - mpl_test.py: imports matplotlib's font manager, timing it, and says whether a font list was
    already there.
After one seeding run, each repeat runs, interleaved so that both see the same load:
  - off:    `--pytest-shared-cache=off` (Pants as it is: Hypothesis searches from scratch;
            matplotlib is pointed at a fresh directory, as a sandbox without cacheplug gives it
            none of its own),
  - shared: the shared caches (Hypothesis replays the example it saved; the font list is there).
Prints the medians and shared/off: for the property, Pants' own time for the test file's process;
for matplotlib, the import's time inside the test.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from pathlib import Path

from cacheplug_tests.pants_repo import PantsRepo

REQUIREMENTS = ["hypothesis==6.170.17", "matplotlib==3.9.2"]

PROPERTY = """\
import time

from hypothesis import given, settings, strategies as st


@settings(max_examples=50000, deadline=None)
@given(st.integers(min_value=0, max_value=10**6))
def test_rare(x):
    time.sleep(0.002)
    assert not (123000 <= x < 123500)
"""

MATPLOTLIB = """\
import glob, os, time


def test_font_list():
    there = bool(glob.glob(os.path.join(os.environ["MPLCONFIGDIR"], "fontlist-v*.json")))
    start = time.perf_counter()
    import matplotlib.font_manager  # noqa: F401  builds the font list if there is none
    print(f"MPL warm={there} import={time.perf_counter() - start:.3f}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, dict[str, list[float]]] = {"off": {"property": [], "mpl": []}, "shared": {"property": [], "mpl": []}}
    with tempfile.TemporaryDirectory(prefix="cacheplug-testcaches-") as tmp:
        repo = PantsRepo(
            Path(tmp) / "repo", ["cacheplug.python"],
            '[python]\ninterpreter_constraints = ["CPython==3.11.*"]\n\n[pytest]\nlibrary_caches = ["matplotlib"]\n',
        )
        repo.write({
            "BUILD": 'python_tests(name="t")\npython_requirements(name="reqs", source="requirements.txt")\n',
            "requirements.txt": "\n".join(REQUIREMENTS) + "\n",
            "property_test.py": PROPERTY,
            "mpl_test.py": MATPLOTLIB,
        })

        def run(mode: str, fresh_mpl: str = "") -> None:
            flags = ["--test-force", "--test-output=all", f"--pytest-shared-cache={'off' if mode == 'off' else 'read-write'}"]
            if fresh_mpl:
                flags.append(f"--test-extra-env-vars=['MPLCONFIGDIR={fresh_mpl}']")
            result = repo.run(*flags, "test", "::", "--", "-s", pantsd=True)
            prop = re.search(r"^✕ //property_test.py:t failed in ([0-9.]+)s", result.stderr, re.M)
            mpl = re.search(r"MPL warm=(True|False) import=([0-9.]+)", result.stderr)
            if not prop or not mpl:
                raise SystemExit(f"unexpected output ({mode}):\n{result.stderr[-4000:]}")
            if mode != "seed":
                expected = mode == "shared"
                if (mpl.group(1) == "True") != expected:
                    raise SystemExit(f"{mode}: matplotlib's font list was{'' if expected else ' not'} expected to be there")
                times[mode]["property"].append(float(prop.group(1)))
                times[mode]["mpl"].append(float(mpl.group(2)))
            print(f"{mode:6} property {prop.group(1)} s, matplotlib import {mpl.group(2)} s (font list there: {mpl.group(1)})", flush=True)

        try:
            run("seed")
            for i in range(args.repeats):
                run("off", fresh_mpl=str(Path(tmp) / f"mpl-{i}"))
                run("shared")
        finally:
            repo.stop_pantsd()
    print()
    for what, label in (("property", "Hypothesis: failing property, test file's process"), ("mpl", "matplotlib import (font list)")):
        off, shared = statistics.median(times["off"][what]), statistics.median(times["shared"][what])
        print(f"{label}: off {off:.2f} s, shared {shared:.2f} s, shared/off {shared / off:.2f} (medians of {args.repeats})")


if __name__ == "__main__":
    main()
