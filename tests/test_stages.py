"""StageCache: finished stages are reused, changed inputs or a damaged marker re-run the stage."""

from __future__ import annotations

import json
from pathlib import Path

from difflib_models.stages import StageCache, fingerprint


def test_reuse_rerun_on_changed_inputs_and_damaged_marker(tmp_path: Path) -> None:
    calls: list[int] = []

    def work(value: int):
        def fn() -> dict:
            calls.append(value)
            return {"double": 2 * value}

        return fn

    first = StageCache(tmp_path)
    assert first.run("a", {"x": 1}, work(1)) == {"double": 2}
    assert first.reused == {"a": False} and first.cpu["a"] >= 0.0
    marker = json.loads(first.marker("a").read_text())
    assert marker["fingerprint"] == fingerprint({"x": 1}) and marker["outputs"] == {"double": 2}

    again = StageCache(tmp_path)
    assert again.run("a", {"x": 1}, work(99)) == {"double": 2}  # reused: fn not called
    assert again.reused == {"a": True} and again.timings["a"] == 0.0 and calls == [1]

    changed = StageCache(tmp_path)
    assert changed.run("a", {"x": 2}, work(2)) == {"double": 4}
    assert changed.reused == {"a": False} and calls == [1, 2]

    changed.marker("a").write_text("{not json")
    damaged = StageCache(tmp_path)
    assert damaged.run("a", {"x": 2}, work(3)) == {"double": 6}
    assert calls == [1, 2, 3]


def test_fingerprint_is_order_independent_and_value_sensitive() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 1.5})
    assert len(fingerprint({"p": Path("/x")})) == 16


def test_valid_check_and_summary(tmp_path: Path) -> None:
    calls: list[int] = []

    def fn() -> dict:
        calls.append(1)
        return {"n": len(calls)}

    first = StageCache(tmp_path)
    assert first.run("s", ["k"], fn) == {"n": 1}
    assert first.summary()["s"]["reused"] is False and first.summary()["s"]["seconds"] >= 0.0
    assert StageCache(tmp_path).run("s", ["k"], fn, valid=lambda: False) == {"n": 2}  # its files are gone
    again = StageCache(tmp_path)
    assert again.run("s", ["k"], fn, valid=lambda: True) == {"n": 2} and calls == [1, 1]
    saved = json.loads(again.marker("s").read_text())["seconds"]
    assert again.summary() == {"s": {"seconds": round(saved, 3), "reused": True}}


def test_a_result_is_reused_only_while_the_files_it_names_exist(tmp_path: Path) -> None:
    calls: list[int] = []
    out = tmp_path / "v.bin"

    def fn() -> dict:
        calls.append(1)
        out.write_bytes(b"x")
        return {"files": {"a": str(out)}}

    def files(o: dict) -> list[str]:
        return list(o["files"].values())

    StageCache(tmp_path).run("s", ["k"], fn, files=files)
    StageCache(tmp_path).run("s", ["k"], fn, files=files)
    assert calls == [1]  # reused: the file is there
    out.unlink()
    StageCache(tmp_path).run("s", ["k"], fn, files=files)
    assert calls == [1, 1] and out.is_file()  # the marker named a file that is gone: the stage ran again
    # a marker whose result has another shape (an older version of the stage) runs the stage again, not a KeyError
    assert StageCache(tmp_path).run("s", ["k"], fn, files=lambda o: o["missing"]) == {"files": {"a": str(out)}}
    assert calls == [1, 1, 1]
