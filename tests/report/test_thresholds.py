"""The report layer reads the gate's default policy file as data: its check lines must be the gate's checks."""

from __future__ import annotations

from difflib_models.gate.policy import load_policy
from difflib_models.report import thresholds
from difflib_models.report.builder import new_report


def test_default_lines_are_the_gate_default_policy_checks() -> None:
    checks = load_policy().checks
    assert checks
    metrics = {(c.metric, c.trait) for c in checks}
    for metric, trait in metrics:
        lines = thresholds.check_lines(new_report("diff"), metric, trait)
        want = sorted(((c.threshold, c.severity, c.id, c.comparator) for c in checks
                       if c.metric == metric and c.trait in (None, trait)), key=lambda x: (x[1] != "warn", x[0]))
        assert [(ln.value, ln.severity, ln.check_id, ln.comparator) for ln in lines] == want
        assert all(ln.label.endswith("(default policy)") for ln in lines)
