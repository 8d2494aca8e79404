"""`pants test` with the cacheplug.python backend, through real Pants in temp repos: the same
results as Pants' own Python backend; pytest's failures shared between test files and checkouts
(`--lf`); Hypothesis' failing examples replayed; read-only; xdist; bad options; a Hugging Face
hub cache shared and used offline."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from cacheplug_tests.hubserver import COMMIT, HubServer
from cacheplug_tests.pants_repo import PantsRepo, PantsResult
from cacheplug_tests.pytestkit import LASTFAILED, PYTHON, plain_then_ours, results, shared
from cacheplug_tests.reliability import PYTEST_BAD_OPTION_VALUES
from cacheplug_tests.storekit import tree_state

HYPOTHESIS = "hypothesis==6.170.17"

# A property Hypothesis falsifies at once, and shrinks to 500000. Every call prints its input:
# the first call of a run that replays the saved example is that example.
PROPERTY = """\
from hypothesis import given, strategies as st


@given(st.integers(min_value=0, max_value=10**6))
def test_property(x):
    print(f"CALL {x}")
    assert x < 500000
"""


def two_tests(name: str, failing: bool) -> str:
    return f"def test_ok():\n    pass\n\ndef test_bad_{name}():\n    assert {not failing}\n"


def calls(output: str, address: str) -> list[int]:
    """The inputs the property was called with, in the output of `address`'s run."""
    block = output.split(f"Run Pytest - {address} -", 1)[1].split("Completed:", 1)[0]
    return [int(x) for x in re.findall(r"^CALL (\d+)$", block, re.M)]


def why(run: PantsResult) -> str:
    """What each file's run ended with, and every cache line and warning (the property's output,
    one line per call, would push them out of a tail of stderr)."""
    return "\n".join([f"{a}: {r}" for a, r in sorted(results(run.stderr).items())]
                     + re.findall(r"^.*(?:pytest cache \[|WARN).*$", run.stderr, re.M))


def test_failures_shared_across_files_and_checkouts(tmp_path: Path) -> None:
    repo = PantsRepo(tmp_path / "repo", ["cacheplug.python"], PYTHON)
    files = {
        "BUILD": f'python_tests(name="t")\npython_requirement(name="hypothesis", requirements=["{HYPOTHESIS}"])\n',
        "property_test.py": PROPERTY,
        **{f"t{i}_test.py": two_tests(str(i), failing=True) for i in range(16)},
    }
    repo.write(files)
    try:
        # 16 files failing, run concurrently: each one's failure is in the shared record.
        run1 = repo.run("test", "::", pantsd=True)
        assert run1.exit_code == 1, run1.stderr
        failed = {f"t{i}_test.py::test_bad_{i}" for i in range(16)} | {"property_test.py::test_property"}
        # Each file's pytest exited 1 (only then the shim commits), and each commit went through.
        ran = results(run1.stderr)
        assert ran == {f"//{f}:t": "failed (exit code 1)" for f in files if f.endswith("_test.py")}, why(run1)
        assert set(json.loads(shared(repo)[LASTFAILED])) == failed, why(run1)
        first = calls(run1.stderr, "//property_test.py:t")
        assert first[-1] == 500000 and len(first) > 1, first  # searched, then shrunk

        # Fix 8: exactly those leave the record. Hypothesis replays its example first.
        repo.write({f"t{i}_test.py": two_tests(str(i), failing=False) for i in range(0, 16, 2)})
        run2 = repo.run("test", "::", pantsd=True)
        assert run2.exit_code == 1, run2.stderr
        failed -= {f"t{i}_test.py::test_bad_{i}" for i in range(0, 16, 2)}
        assert set(json.loads(shared(repo)[LASTFAILED])) == failed, why(run2)
        assert calls(run2.stderr, "//property_test.py:t")[0] == 500000

        # --lf: each still-failing file runs only its failing test.
        run3 = repo.run("test", "::", "--", "--lf", pantsd=True)
        assert run3.exit_code == 1, run3.stderr
        assert run3.stderr.count("1 failed, 1 deselected") == 8, run3.stderr
        assert run3.stderr.count("run-last-failure: rerun previous") >= 8
    finally:
        repo.stop_pantsd()

    # A second checkout of the same repo, sharing Pants' caches: passing files are "cached
    # locally" (no checkout path in the process key), and Hypothesis replays run 1's example.
    other = PantsRepo(tmp_path / "checkout2", ["cacheplug.python"], PYTHON, caches=repo.caches)
    for rel in [*files, *(f"t{i}_test.py" for i in range(16))]:
        shutil.copy(repo.root / rel, other.root / rel)
    try:
        run4 = other.run("test", "::", pantsd=True)
        assert run4.exit_code == 1, run4.stderr
        cached = re.findall(r"^✓ (\S+) succeeded in [0-9.]+s \(cached locally\)", run4.stderr, re.M)
        assert sorted(cached) == sorted(f"//t{i}_test.py:t" for i in range(0, 16, 2)), run4.stderr
        assert calls(run4.stderr, "//property_test.py:t")[0] == 500000

        info = other.run("cache-info", "--tool=pytest", pantsd=True)
        assert re.search(r"^pytest +[0-9a-f]{12} +test-caches ", info.stdout, re.M), info.stdout

        # Read-only: runs with the cache, writes nothing.
        before = tree_state(repo.named_caches / "cacheplug")
        other.write({"t0_test.py": two_tests("0", failing=True)})
        run5 = other.run("--pytest-shared-cache=read-only", "test", "t0_test.py", pantsd=True)
        assert results(run5.stderr)["//t0_test.py:t"] == "failed (exit code 1)"
        assert tree_state(repo.named_caches / "cacheplug") == before

        # A bad option value is named, with what is allowed.
        for flag, expected in PYTEST_BAD_OPTION_VALUES:
            bad = other.run(flag, "test", "t0_test.py", pantsd=True)
            assert bad.exit_code != 0 and all(text in bad.stderr for text in expected), bad.stderr[-3000:]

        # The lifecycle goals know the test caches: export, clear, import gives them back.
        kept = shared(repo)
        assert other.run("cache-export", "--tool=pytest", "--output=tests.tar.gz", pantsd=True).exit_code == 0
        assert other.run("cache-prune", "--tool=pytest", "--clear", pantsd=True).exit_code == 0
        assert shared(repo) == {}
        imported = other.run("cache-import", "--input=tests.tar.gz", pantsd=True)
        assert imported.exit_code == 0, imported.stderr
        assert shared(repo) == kept
    finally:
        other.stop_pantsd()


def run_xdist(repo: PantsRepo) -> PantsResult:
    """pytest-xdist through the shim (Pants requires its `{pants_concurrency}` in the argv)."""
    repo.write({"fail_test.py": two_tests("f", failing=False), "pass_test.py": two_tests("p", failing=True)})
    return repo.run("--pytest-xdist-enabled", "test", "::", pantsd=True)


def test_same_results_as_pants_own_backend(tmp_path: Path) -> None:
    files = {
        "BUILD": (
            'python_tests(name="t", overrides={"slow_test.py": {"timeout": 5}, '
            '("batch_a_test.py", "batch_b_test.py"): {"batch_compatibility_tag": "b"}})\n'
        ),
        # Run in one process, as one batch.
        "batch_a_test.py": two_tests("a", failing=True),
        "batch_b_test.py": two_tests("b", failing=False),
        "pass_test.py": two_tests("p", failing=False),
        "fail_test.py": two_tests("f", failing=True),
        "empty_test.py": "# no tests here: pytest exits 5\n",
        # Writes into the Hypothesis directory (if cacheplug gave one), then outlives its timeout:
        # a killed run commits nothing.
        "slow_test.py": (
            "import os, pathlib, time\n\ndef test_slow():\n"
            "    where = os.environ.get('HYPOTHESIS_STORAGE_DIRECTORY')\n"
            "    if where:\n        pathlib.Path(where).mkdir(parents=True, exist_ok=True)\n"
            "        pathlib.Path(where, 'marker').write_text('x')\n"
            "    time.sleep(120)\n"
        ),
    }
    plain, repo = plain_then_ours(tmp_path, files)
    try:
        ours = repo.run("test", "::", pantsd=True)
        first = shared(repo)
        xdist = run_xdist(repo)
    finally:
        repo.stop_pantsd()
    assert ours.exit_code == plain.exit_code != 0
    assert results(ours.stderr) == results(plain.stderr), (plain.stderr, ours.stderr)
    assert results(ours.stderr) == {
        "//pass_test.py:t": "succeeded", "//fail_test.py:t": "failed (exit code 1)",
        "//empty_test.py:t": "failed (exit code 5)", "//slow_test.py:t": "failed (exit code -15)",
        "//batch_a_test.py:t and 1 other files": "failed (exit code 1)",
    }, ours.stderr
    assert set(json.loads(first[LASTFAILED])) == {"fail_test.py::test_bad_f", "batch_a_test.py::test_bad_a"}

    assert results(xdist.stderr)["//pass_test.py:t"] == "failed (exit code 1)", xdist.stderr
    assert re.search(r"gw\d", xdist.stderr), xdist.stderr  # xdist's workers ran
    assert set(json.loads(shared(repo)[LASTFAILED])) == {"pass_test.py::test_bad_p", "batch_a_test.py::test_bad_a"}
    assert not any(rel.endswith("marker") for rel in [*first, *shared(repo)])  # timed out twice


HUB_FILES = {"config.json": b'{"hidden_size": 8}\n', "weights.bin": bytes(range(256)) * 4000}
HUB_TEST = f"""\
from huggingface_hub import hf_hub_download


def test_download():
    for name, size in {sorted((n, len(c)) for n, c in HUB_FILES.items())!r}:
        with open(hf_hub_download("org/model", name), "rb") as f:
            assert len(f.read()) == size
"""


def test_hugging_face_hub_cache_is_shared_and_works_offline(tmp_path: Path) -> None:
    hub = HubServer({"org/model": HUB_FILES})
    repo = PantsRepo(
        tmp_path / "repo", ["cacheplug.python"],
        f'{PYTHON}\n[pytest]\nlibrary_caches = ["hf-hub"]\n\n'
        f'[test]\nextra_env_vars = ["HF_ENDPOINT={hub.endpoint}", "HF_HUB_DISABLE_TELEMETRY=1"]\n',
    )
    repo.write({
        "BUILD": 'python_tests(name="t")\npython_requirement(name="hub", requirements=["huggingface_hub==0.26.2"])\n',
        **{f"hub{i}_test.py": HUB_TEST for i in range(3)},
    })
    try:
        with hub:  # three test files download the same model, two at a time (2 cores)
            online = repo.run("test", "::", pantsd=True)
        # The server is gone and the hub told it is offline: every file loads from the cache.
        offline = repo.run("--test-force", "--test-extra-env-vars=+['HF_HUB_OFFLINE=1']", "test", "::", pantsd=True)
    finally:
        repo.stop_pantsd()
    assert online.exit_code == 0, online.stderr
    assert offline.exit_code == 0, offline.stderr
    files = shared(repo)
    model = "hf-hub/models--org--model"
    blobs = {rel: data for rel, data in files.items() if rel.startswith(f"{model}/blobs/")}
    assert sorted(blobs.values()) == sorted(HUB_FILES.values())  # one copy of each blob
    snapshot = f"{model}/snapshots/{COMMIT}"  # relative links to the blobs
    assert {files[f"{snapshot}/{name}"] for name in HUB_FILES} == {f"../../{rel[len(model) + 1:]}".encode() for rel in blobs}
    assert files[f"{model}/refs/main"] == COMMIT.encode()
    assert not [rel for rel in files if ".lock" in rel or rel.endswith(".incomplete")]
    assert hub.downloads >= 2
