"""The CI guard of tests/conftest.py: a run cannot be green on skipped or missing evidence, and markers follow
what the tests load.

The pytester tests run tests/conftest.py in a separate pytest process (some under pytest-xdist) on small made-up test files;
the others read the test sources."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from tests import conftest

TESTS = Path(conftest.__file__).resolve().parent

FAKE_TESTS = '''
import pytest

def test_ok():
    pass

def test_skips_for_missing_data():
    pytest.skip("data not present")

@pytest.mark.skipif(True, reason="needs a CUDA device")
def test_gpu_only():
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_known_failure():
    assert False

def test_uses_the_shared_model(tinystories_656k, request):
    assert tinystories_656k.is_dir() and request.node.get_closest_marker("shared") is not None
'''


def _fake_shared(root: Path, leave_out: str | None = None) -> Path:
    for rel in conftest.REQUIRED_SHARED:
        if rel != leave_out:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text("x")
    return root


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makeconftest(Path(conftest.__file__).read_text(encoding="utf-8"))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", *args)


XDIST = pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one-process", "xdist"])


@XDIST
def test_fail_on_skip_fails_only_for_skips_not_caused_by_a_missing_gpu(pytester: pytest.Pytester,
                                                                       workers: tuple[str, ...]) -> None:
    pytester.makepyfile(test_fake=FAKE_TESTS, test_module_skip="import pytest\n\n"
                        "pytest.importorskip('no_such_module_for_this_test')\n\n\ndef test_never():\n    pass\n")
    shared = _fake_shared(pytester.path / "fake-shared")
    res = _run(pytester, "--fail-on-skip", "--shared", str(shared), *workers)
    out = res.stdout.str()
    assert res.ret == pytest.ExitCode.TESTS_FAILED, out
    res.assert_outcomes(passed=2, skipped=3, xfailed=1)
    section = out[out.index("skipped evidence: 2 skip(s) not caused by a missing GPU; they fail this run"):]
    assert "test_fake.py::test_skips_for_missing_data: data not present" in section
    assert "test_module_skip.py: could not import 'no_such_module_for_this_test'" in section
    assert "test_gpu_only" not in section and "test_known_failure" not in section


def test_without_ci_mode_the_skips_pass_but_are_named(pytester: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_fake=FAKE_TESTS)
    monkeypatch.delenv("CI", raising=False)
    res = _run(pytester, "--shared", str(_fake_shared(pytester.path / "fake-shared")))
    assert res.ret == pytest.ExitCode.OK
    res.assert_outcomes(passed=2, skipped=2, xfailed=1)
    res.stdout.fnmatch_lines(["*skipped evidence: 1 skip(s) not caused by a missing GPU; CI (--fail-on-skip or $CI) "
                              "fails on them*", "test_fake.py::test_skips_for_missing_data: data not present"])


@XDIST
def test_ci_mode_stops_on_a_missing_or_incomplete_shared_folder(pytester: pytest.Pytester,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               workers: tuple[str, ...]) -> None:
    """Under xdist the controller checks before any worker collects (a worker's exit message would be lost)."""
    pytester.makepyfile(test_fake="def test_model(stories260k):\n    assert stories260k.is_dir()\n")
    gone = "data/caa/generate/sycophancy/generate_dataset.json"
    shared = _fake_shared(pytester.path / "fake-shared", leave_out=gone)
    monkeypatch.setenv("CI", "true")  # $CI turns CI mode on without the option
    res = _run(pytester, "--shared", str(shared), *workers)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stdout.fnmatch_lines(["*the evidence these tests need is missing*",
                              f"*{shared} is missing 1 of the {len(conftest.REQUIRED_SHARED)} required*",
                              f"*{gone}*"])
    res = _run(pytester, "--shared", str(pytester.path / "moved-away"), *workers)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stdout.fnmatch_lines([f"*the shared folder {pytester.path / 'moved-away'} does not exist*"])
    assert "1 passed" not in res.stdout.str()


def test_a_marker_that_does_not_match_what_the_test_loads_stops_the_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fake="""
import pytest

@pytest.mark.shared
def test_marked_but_loads_nothing():
    pass

def test_auto_marked(stories260k):
    pass
""")
    res = _run(pytester, "--collect-only", "-q")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stdout.fnmatch_lines(["*markers do not match what the tests load*",
                              "*test_fake.py::test_marked_but_loads_nothing: marked 'shared' but loads nothing*"])
    assert "test_auto_marked: marked" not in res.stdout.str()


def test_under_xdist_a_wrong_marker_fails_its_test_with_the_reason(pytester: pytest.Pytester) -> None:
    """A worker's exit message never reaches the terminal, so under xdist the mismatched test fails instead."""
    pytester.makepyfile(test_fake="""
import pytest

@pytest.mark.shared
def test_marked_but_loads_nothing():
    pass

def test_fine():
    pass
""")
    res = _run(pytester, "-n", "2")
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    res.assert_outcomes(passed=1, errors=1)
    res.stdout.fnmatch_lines(["*markers do not match what the test loads*test_fake.py::test_marked_but_loads_nothing:"
                              " marked 'shared' but loads nothing that needs it*"])


def test_under_xdist_each_worker_gets_its_share_of_the_cores(pytester: pytest.Pytester) -> None:
    cores = len(os.sched_getaffinity(0))
    share = max(1, cores // 2)
    pytester.makepyfile(test_fake=f"""
import os
import subprocess
import sys

import torch

def test_threads():
    assert os.environ["PYTEST_XDIST_WORKER"].startswith("gw")
    assert torch.get_num_threads() == {share}
    child = "import torch; print(torch.get_num_threads())"  # what a subprocess of the test (DDP, the CLI) gets
    assert subprocess.run([sys.executable, "-c", child], capture_output=True, text=True).stdout.strip() == "{share}"
""")
    _run(pytester, "-n", "2").assert_outcomes(passed=1)


def test_under_xdist_unmarked_slow_tests_are_still_named(pytester: pytest.Pytester) -> None:
    """The controller sees no collection; the list of long tests without the ``slow`` marker reads the reports."""
    pytester.makepyfile(test_fake="""
import time

import pytest

def test_unmarked():
    time.sleep(0.3)

@pytest.mark.slow
def test_marked():
    time.sleep(0.3)
""")
    text = Path(conftest.__file__).read_text(encoding="utf-8")
    assert "\nSLOW_S = 20.0\n" in text
    pytester.makeconftest(text.replace("\nSLOW_S = 20.0\n", "\nSLOW_S = 0.2\n"))
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    res.assert_outcomes(passed=2)
    out = res.stdout.str()
    section = out[out.index("without the 'slow' marker"):]
    assert "test_fake.py::test_unmarked" in section and "test_marked" not in section


def test_the_longest_files_run_first_and_each_file_stays_in_order() -> None:
    class Item:
        def __init__(self, nodeid: str) -> None:
            self.nodeid = nodeid

    heavy = sorted(conftest.HEAVY_FILES, key=lambda f: -conftest.HEAVY_FILES[f])
    ids = ["tests/a/test_x.py::t1", f"{heavy[1]}::t1", "tests/a/test_x.py::t2", f"{heavy[0]}::t2",
           f"{heavy[1]}::t2", f"{heavy[0]}::t1", "tests/b/test_y.py::t"]
    got = [item.nodeid for item in conftest.heavy_first([Item(i) for i in ids])]
    assert got == [f"{heavy[0]}::t2", f"{heavy[0]}::t1", f"{heavy[1]}::t1", f"{heavy[1]}::t2",
                   "tests/a/test_x.py::t1", "tests/a/test_x.py::t2", "tests/b/test_y.py::t"]
    assert all((conftest.ROOT / f).is_file() for f in conftest.HEAVY_FILES)  # no stale entry


def test_a_fixture_that_sets_one_torch_thread_does_not_leave_later_tests_on_one(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session fixture that sets one thread (as tests/crosscoder's trained-crosscoder fixtures did, leaving the
    rest of the run on one of the CI's two cores) affects the tests that use it only."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # the CI's two cores, whatever this process runs with
        monkeypatch.setenv(var, "2")
    pytester.makepyfile(test_fake="""
import pytest
import torch

@pytest.fixture(scope="session")
def one_thread_fixture():
    torch.set_num_threads(1)
    return 1

def test_a_first():
    assert torch.get_num_threads() == 2

def test_b_uses_it(one_thread_fixture):
    assert torch.get_num_threads() == 1

def test_c_later():
    assert torch.get_num_threads() == 2
""")
    _run(pytester).assert_outcomes(passed=3)


def test_direct_uses_are_recognised_in_test_source() -> None:
    # (the snippets are split so that this file's own tests are not marked by them)
    SMOL, SHARED = {"smol" "lm2"}, {"sha" "red"}  # noqa: N806
    q = '"'
    assert conftest.source_loads("lm = load_model" + "()") == SMOL
    assert conftest.source_loads(f"load_model({q}smollm2{q})") == SMOL
    assert conftest.source_loads(f"load_model({q}smollm2-135m-" + f"instruct{q}, adapter=p)") == SMOL
    assert conftest.source_loads("Path(os.environ[" + q + "DIFFLIB_MODELS_" + "SHARED" + q + "])") == SHARED
    assert conftest.source_loads(f"request.getfixturevalue({q}stories260k{q})") == SHARED
    assert conftest.source_loads(f"root.parent / {q}shared{q} / {q}data{q}") == SHARED
    # a latent class called "shared" or a model given by path is neither
    assert conftest.source_loads(f"classes[j] == {q}shared{q} and load_model(path)") == set()


def _test_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if p.name != "conftest.py" and p != Path(__file__).resolve())


_CHAIN = re.compile(r"\b(shared_data|shared_dir|SHARED)((?:\s*/\s*\"[^\"]+\")+)")


def test_required_shared_covers_every_literal_shared_path() -> None:
    required = conftest.REQUIRED_SHARED
    seen = []
    for path in [*_test_files(), TESTS / "conftest.py"]:
        for base, chain in _CHAIN.findall(path.read_text(encoding="utf-8")):
            rel = "/".join(re.findall(r"\"([^\"]+)\"", chain))
            rel = f"data/{rel}" if base.endswith("_data") else rel
            seen.append(rel)
            assert any(req == rel or req.startswith(rel + "/") for req in required), (
                f"{path.relative_to(TESTS.parent)} reads {rel} from the shared folder: add it to REQUIRED_SHARED")
    assert "data/emergent-misalignment/insecure-code/insecure_small.jsonl" in seen  # the scan finds the reads


# direct uses outside test functions (module level, helper modules), each with the reason it is safe
ALLOWED_OUTSIDE_TESTS = {
    ("tests/callbacks/lit_helpers.py", "shared"): "default tokenizer_dir; every caller passes the fixture's path",
    ("tests/persona/filtering/test_validation.py", "shared"): "_held_out_pairs reads under the shared_data path its "
                                                           "only caller (a test using the fixture) passes",
}


def _seen_by_auto_marking(node: ast.stmt, is_test_module: bool) -> bool:
    """Tests and fixtures of a test module: tests/conftest.py reads their source at collection."""
    if not is_test_module:
        return False
    if isinstance(node, ast.ClassDef):
        return node.name.startswith("Test")
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        fixture = any("fixture" in ast.unparse(d) for d in node.decorator_list)
        return node.name.startswith("test") or fixture
    return False


def test_direct_uses_outside_test_functions_are_known() -> None:
    found = set()
    for path in _test_files():
        src = path.read_text(encoding="utf-8")
        for node in ast.parse(src).body:
            if _seen_by_auto_marking(node, path.name.startswith("test_")):
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)) or (
                    isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):  # imports, docstring
                continue
            for kind in conftest.source_loads(ast.get_source_segment(src, node) or ""):
                found.add((str(path.relative_to(TESTS.parent)), kind))
    assert found == set(ALLOWED_OUTSIDE_TESTS), (
        "a direct use of the shared folder or SmolLM2 outside a test or fixture is invisible to the auto-marking: "
        "move it into a fixture, or justify it in ALLOWED_OUTSIDE_TESTS")


def test_lightning_helpers_always_get_the_tokenizer_from_the_fixture() -> None:
    calls = 0
    for path in _test_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("TinyLM", "ChatLM", "ShardedTinyLM"):
                calls += 1
                assert "tokenizer_dir" in {k.arg for k in node.keywords}, (
                    f"{path.name}:{node.lineno} builds a test module without tokenizer_dir=<tinystories_656k fixture>")
    assert calls >= 10
