"""The gate's report write (``write_report``: report.json, report.html, report.md, junit.xml and the --json/--md/
--junit copies) SIGKILLed at 10 seeded atomic writes over an older report: every file is then byte-for-byte the old
or the new version, never a truncated one; rerunning gives exactly the uninterrupted run's files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from xml.etree import ElementTree

import pytest

from difflib_models.report.builder import write_report
from tests.helpers.killpoints import WriteCounter, draw_points, leftover_temp_files, run_many
from tests.report.synthetic import synthetic_report

pytestmark = pytest.mark.slow

SEED = 14
NAMES = ("report.json", "report.html", "report.md", "junit.xml")
COPIES = {"json": "copies/gate.json", "md": "copies/summary.md", "junit": "copies/junit-gate.xml"}

_WRITER = """
import json, sys
from pathlib import Path
from difflib_models.report.builder import write_report

report = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
out = Path(sys.argv[2])
write_report(report, out, paths={k: out / v for k, v in json.loads(sys.argv[3]).items()})
"""


def _write(report: dict, out: Path) -> list[str]:
    with WriteCounter(out) as counter:
        write_report(report, out, paths={k: out / v for k, v in COPIES.items()})
    return counter.targets


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_report_write_survives_sigkill_at_10_seeded_points(tmp_path: Path) -> None:
    old, new = synthetic_report(seed=1), synthetic_report(seed=2)
    old["verdict"], new["verdict"] = "fail", "pass"  # the two versions differ in every file
    (tmp_path / "new.json").write_text(json.dumps(new), encoding="utf-8")
    script = tmp_path / "write.py"
    script.write_text(_WRITER, encoding="utf-8")

    ref_old, ref_new = tmp_path / "ref-old", tmp_path / "ref-new"
    _write(old, ref_old)
    targets = _write(new, ref_new)
    old_files, new_files = _files(ref_old), _files(ref_new)
    assert sorted(targets) == sorted(new_files) == sorted([*NAMES, *COPIES.values()])
    assert all(old_files[name] != new_files[name] for name in new_files)
    points = draw_points(len(targets), 10, SEED)

    outs = [tmp_path / f"kill-{p.k}-{p.phase}" for p in points]
    for out in outs:
        shutil.copytree(ref_old, out)  # the previous gate run's report is in place
    killed = run_many([{"target": str(script), "module": False, "root": out, "log": tmp_path / f"{out.name}.log",
                        "kill_at": p, "args": [str(tmp_path / "new.json"), str(out), json.dumps(COPIES)]}
                       for p, out in zip(points, outs, strict=True)])
    for point, out, result in zip(points, outs, killed, strict=True):
        assert result.killed, f"{point}: rc {result.returncode}\n{result.stderr[-2000:]}"
        assert result.targets == targets[: point.k]
        renamed = set(targets[: point.k - 1 if point.phase == "before" else point.k])
        visible = {k: v for k, v in _files(out).items() if not Path(k).name.startswith(".")}
        assert sorted(visible) == sorted(new_files)
        for name, data in visible.items():
            # exactly the new version once its rename happened, the complete old one before
            assert data == (new_files[name] if name in renamed else old_files[name]), (point, name)
        json.loads(visible["report.json"])
        ElementTree.fromstring(visible["junit.xml"])
        # re-run the write (as the gate does on its next run): exactly the uninterrupted result
        write_report(new, out, paths={k: out / v for k, v in COPIES.items()})
        assert {k: v for k, v in _files(out).items() if not Path(k).name.startswith(".")} == new_files, point
        # the only trace of the kill: the complete temp file of the write it interrupted (hidden, never renamed)
        assert len(leftover_temp_files(out)) == (1 if point.phase == "before" else 0), point
