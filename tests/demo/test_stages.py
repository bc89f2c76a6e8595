"""StageRunner: finished stages are reused, changed inputs or a damaged marker re-run the stage."""

from __future__ import annotations

import json
from pathlib import Path

from difflib_models.demo.stages import StageRunner, fingerprint


def test_reuse_rerun_on_changed_inputs_and_damaged_marker(tmp_path: Path) -> None:
    calls: list[int] = []

    def work(value: int):
        def fn() -> dict:
            calls.append(value)
            return {"double": 2 * value}

        return fn

    first = StageRunner(tmp_path)
    assert first.run("a", {"x": 1}, work(1)) == {"double": 2}
    assert first.reused == {"a": False} and first.cpu["a"] >= 0.0
    marker = json.loads(first.marker("a").read_text())
    assert marker["fingerprint"] == fingerprint({"x": 1}) and marker["outputs"] == {"double": 2}

    again = StageRunner(tmp_path)
    assert again.run("a", {"x": 1}, work(99)) == {"double": 2}  # reused: fn not called
    assert again.reused == {"a": True} and again.timings["a"] == 0.0 and calls == [1]

    changed = StageRunner(tmp_path)
    assert changed.run("a", {"x": 2}, work(2)) == {"double": 4}
    assert changed.reused == {"a": False} and calls == [1, 2]

    changed.marker("a").write_text("{not json")
    damaged = StageRunner(tmp_path)
    assert damaged.run("a", {"x": 2}, work(3)) == {"double": 6}
    assert calls == [1, 2, 3]


def test_fingerprint_is_order_independent_and_value_sensitive() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 1.5})
    assert len(fingerprint({"p": Path("/x")})) == 16
