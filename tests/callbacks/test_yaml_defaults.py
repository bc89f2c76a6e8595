"""The LightningCLI configs in callbacks/ state the Python defaults: a YAML user and a Python user get the same
callback unless they change a value. Only the inputs a user must supply (the vector files) are examples."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "callbacks").glob("*.yaml"))
# init_args that are the user's own inputs (no meaningful default): the YAML shows an example path
EXAMPLES = {("DataFilterCallback", "vectors"), ("PersonaMonitor", "vectors")}


def _callbacks(path: Path) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["trainer"]["callbacks"]


def test_every_callback_config_is_checked() -> None:
    assert {p.name for p in CONFIGS} >= {"activation_snapshot.yaml", "data_filter.yaml", "persona_monitor.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_yaml_values_equal_python_defaults(path: Path) -> None:
    checked = 0
    for cb in _callbacks(path):
        module, _, name = cb["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        params = inspect.signature(cls.__init__).parameters
        for arg, value in cb["init_args"].items():
            assert arg in params, f"{path.name}: {name} has no argument {arg!r}"
            if (name, arg) in EXAMPLES:
                continue
            default = params[arg].default
            assert default is not inspect.Parameter.empty, f"{path.name}: {name}.{arg} is required, not a default"
            assert value == default, f"{path.name}: {name}.{arg} is {value!r} in YAML, {default!r} in Python"
            checked += 1
    assert checked >= 10


def test_data_filter_reports_only_by_default() -> None:
    from difflib_models.callbacks import DataFilterCallback

    assert inspect.signature(DataFilterCallback.__init__).parameters["mode"].default == "report"
