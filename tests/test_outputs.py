"""check_outputs: an output is never an input file and never in an input directory; containing inputs is fine."""

from __future__ import annotations

from pathlib import Path

import pytest

from difflib_models.errors import ConfigError
from difflib_models.outputs import check_outputs, existing_paths


def test_outputs_on_or_inside_inputs_are_refused(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    policy = tmp_path / "policy.yaml"
    policy.write_text("checks: []")
    inputs = {"--model": str(model), "--policy": policy, "--trait": "evil", "--none": None,
              "--files": [policy, tmp_path / "missing.json"]}
    with pytest.raises(ConfigError, match=r"--json=.*it is the --policy"):
        check_outputs({"--json": policy}, inputs)
    with pytest.raises(ConfigError, match=r"--out=.*it is inside the --model"):
        check_outputs({"--out": model / "gate"}, inputs)
    with pytest.raises(ConfigError, match=r"--out=.*it is the --model"):
        check_outputs({"--out": str(model) + "/"}, inputs)
    with pytest.raises(ConfigError, match="it is the --files"):
        check_outputs({"--md": tmp_path / "x" / ".." / "policy.yaml"}, {"--files": [policy]})
    # an --out that CONTAINS the inputs, new files beside them and non-path specs are fine
    check_outputs({"--out": tmp_path, "--json": tmp_path / "report.json", "--x": None}, inputs)
    assert existing_paths([str(model), "evil", None, 3, tmp_path / "missing"]) == [model.resolve()]
