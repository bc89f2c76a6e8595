"""The demo's resume logic: which stages run again when an upstream stage produces different files at the same
paths. Every step is replaced by a fake that writes small files and counts its calls, so the test checks the
runner's stage keys, not the steps (those are covered by test_steps.py and the end-to-end test_demo.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from difflib_models.demo import runner, steps
from difflib_models.demo.config import TRAIT, DemoConfig


@pytest.fixture
def fake_steps(monkeypatch: pytest.MonkeyPatch) -> tuple[Counter[str], dict[str, str]]:
    """Fakes for every step run_demo calls; ``content`` sets what the vector extractions write."""
    calls: Counter[str] = Counter()
    content = {"vectors": "v1", "filter": "f1"}

    def write(path: Path, text: str) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return str(path)

    def extract_vectors(base: Any, out_dir: Path, profile: Any) -> dict[str, Any]:
        calls["vectors"] += 1
        files = {t: write(out_dir / f"{t}.safetensors", content["vectors"] + t) for t in steps.gate_traits()}
        return {"files": files, "layer": 1, "auroc": {}, "mode": {}}

    def extract_filter_vector(base: Any, out_dir: Path, seed: int) -> dict[str, Any]:
        calls["filter_vector"] += 1
        return {"file": write(out_dir / f"{TRAIT}_filter.safetensors", content["filter"]), "filter_validation": None}

    def score_training_sets(base: Any, vector_file: str, sets: dict[str, Any], out_dir: Path,
                            seed: int) -> dict[str, Any]:
        calls["data_filter"] += 1
        read = Path(vector_file).read_text(encoding="utf-8")  # the summary depends on the vector, as the real one
        return {name: {"summary": write(out_dir / name / "summary.json", f"{name} scored by {read}"),
                       "mean_delta_p": 0.0, "n": len(rows), "seconds": 0.0} for name, rows in sets.items()}

    def fine_tune(name: str, rows: Any, profile: Any, *, run_dir: Path, **kw: Any) -> dict[str, Any]:
        calls["train"] += 1
        return {"adapter": write(run_dir / "adapter" / "w", "w"), "run_id": f"run{calls['train']}", "monitor": None}

    def diff_adapter(adapter: str, texts: Any, profile: Any, out_dir: Path, **kw: Any) -> dict[str, Any]:
        calls["diff"] += 1
        return {"diff": write(out_dir / "diff.json", "{}")}

    def gate(name: str, adapter: str, **kw: Any) -> dict[str, Any]:
        calls["gate"] += 1
        return {"verdict": "pass", "exit_code": 0, "persona": {}, "checks": {}, "warnings": {}}

    base = SimpleNamespace(identity=SimpleNamespace(weight_hash="w0"), tokenizer=None, n_layers=2)
    monkeypatch.setattr(runner, "load_model", lambda spec, device=None: base)
    for name, fn in (("extract_vectors", extract_vectors), ("extract_filter_vector", extract_filter_vector),
                     ("score_training_sets", score_training_sets), ("fine_tune", fine_tune),
                     ("diff_adapter", diff_adapter), ("gate", gate)):
        monkeypatch.setattr(steps, name, fn)
    monkeypatch.setattr(steps, "diff_texts", lambda tok, rows, n: ["a text"])
    return calls, content


def test_stages_rerun_when_a_file_they_read_changes_at_the_same_path(
        fake_steps: tuple[Counter[str], dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls, content = fake_steps
    config = DemoConfig(out=tmp_path / "demo", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", device="cpu")
    first = runner.run_demo(config)
    assert not any(first.reused.values())
    ran = {"vectors": 1, "filter_vector": 1, "data_filter": 1, "train": 2, "diff": 2, "gate": 2}
    assert dict(calls) == ran
    assert all(runner.run_demo(config).reused.values()) and dict(calls) == ran  # nothing changed: nothing runs

    # the filter vector is re-made (another aggregator) at the same path: the data filter scores again, and so
    # do both gates (their reports embed the data filter's summary, at the same path too); training does not
    monkeypatch.setattr(steps, "FILTER_AGGREGATOR", "mean_diff")
    content["filter"] = "f2"
    runner.run_demo(config)
    ran.update(filter_vector=2, data_filter=2, gate=4)
    assert dict(calls) == ran

    # the gate-trait vectors are re-made with other content (their marker lost, as after a crash mid-write):
    # the fine-tunes monitor the trait's vector, the gates read all of them -> both run again, and the diffs of
    # the new fine-tunes (new run ids); the filter vector and its scores are untouched
    (tmp_path / "demo" / "stages" / "vectors.json").unlink()
    content["vectors"] = "v2"
    runner.run_demo(config)
    ran.update(vectors=2, train=4, diff=4, gate=6)
    assert dict(calls) == ran

    # a vector file deleted under a finished marker: the stage re-makes it instead of handing later stages a
    # missing path; the same content comes back, so nothing downstream runs again
    (tmp_path / "demo" / "vectors" / f"{TRAIT}_filter.safetensors").unlink()
    again = runner.run_demo(config)
    ran.update(filter_vector=3)
    assert dict(calls) == ran and not again.reused["filter_vector"] and again.reused["data_filter"]
