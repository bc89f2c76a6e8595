"""The plot logic: threshold lines at the policy's values, the deciding metric in the title, one-layer drift as
bars, counts never plotted. The plot functions return the matplotlib Figure here (``_png`` patched out)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from difflib_models.report import plots, thresholds
from difflib_models.report.builder import new_report
from difflib_models.report.diff_records import ClassCuts, DriftRow
from difflib_models.report.monitor_records import MonitorSection
from difflib_models.report.records import GateVerdict, PersonaSection
from tests.report.synthetic import diff_json, rich_report


@pytest.fixture(autouse=True)
def figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plots, "_png", lambda fig: fig)


def _hlines(ax: Any) -> dict[float, str]:
    """Horizontal lines spanning the axes (axhline) by y value -> linestyle."""
    out = {}
    for line in ax.get_lines():
        ys = np.asarray(line.get_ydata(), dtype=float)
        xs = line.get_xdata()
        if len(ys) == 2 and ys[0] == ys[1] and list(xs) == [0, 1]:
            out[round(float(ys[0]), 6)] = line.get_linestyle()
    return out


def _vlines(ax: Any) -> list[float]:
    return sorted(round(float(ln.get_xdata()[0]), 6) for ln in ax.get_lines()
                  if len(ln.get_xdata()) == 2 and ln.get_xdata()[0] == ln.get_xdata()[1]
                  and list(ln.get_ydata()) == [0, 1])


def _monitor_figure(report: dict[str, Any]) -> tuple[Any, thresholds.Decision]:
    monitor = MonitorSection.from_report(report)
    lines = thresholds.monitor_metric_lines(report, monitor, "evil")
    decision = thresholds.monitor_decision(monitor, lines)
    return plots.shift_series(monitor.series, lines, decision), decision


def test_monitor_plots_shift_z_and_shift_frac_with_the_monitors_thresholds() -> None:
    fig, decision = _monitor_figure(rich_report())
    z_ax, frac_ax = fig.axes
    assert (z_ax.get_ylabel(), frac_ax.get_ylabel()) == ("shift_z", "shift_frac")
    # warn dotted, fail dashed, at the PersonaMonitor's thresholds (plus the zero line)
    assert _hlines(z_ax) == {2.0: ":", 3.0: "--", 0.0: "-"}
    assert _hlines(frac_ax) == {0.1: ":", 0.25: "--", 0.0: "-"}
    # the fail came from shift_frac at the monitor's first_fail_step (25), not from shift_z (2.1 < 3 at most)
    assert (decision.status, decision.metric, decision.step, decision.trait) == ("fail", "shift_frac", 25, "evil")
    assert decision.value == pytest.approx(0.35)
    title = z_ax.get_title()
    assert "FAIL at step 25" in title and "shift_frac = 0.35 ≥ 0.25 (fail_frac)" in title
    assert _vlines(frac_ax) == [25.0]
    # both traits drawn on both panels, values from `metrics`
    evil_frac = next(ln for ln in frac_ax.get_lines() if ln.get_label() == "evil L2")
    assert list(evil_frac.get_ydata()) == pytest.approx([0.07 * i for i in range(8)])


def test_monitor_with_response_readings_gets_a_response_panel_and_its_line_decides() -> None:
    """A monitor run with responses=True records response_null_z: a third panel with its own lines; a crossing of
    the response fail line is the deciding metric when it came first."""
    report = rich_report()
    mon = report["monitor"]
    mon["thresholds"].update(fail_response_null_z=2.0, warn_response_null_z=None)
    for s in mon["series"]:
        s["metrics"]["response_null_z"] = [0.7 * i for i in range(len(s["steps"]))]
    evil = next(s for s in mon["series"] if s["trait"] == "evil")
    # 0.7 * 3 = 2.1 >= 2: the response line is crossed at the 4th check, where shift_frac (0.21) is below its line
    mon["first_fail_step"]["evil"] = evil["steps"][3]
    fig, decision = _monitor_figure(report)
    assert [ax.get_ylabel() for ax in fig.axes] == ["shift_z", "shift_frac", "response_null_z"]
    assert _hlines(fig.axes[2]) == {2.0: "--", 0.0: "-"}
    assert (decision.metric, decision.step) == ("response_null_z", evil["steps"][3])
    assert decision.value == pytest.approx(2.1)


def test_monitor_without_its_thresholds_uses_the_gate_policy_and_finds_the_first_crossing() -> None:
    report = rich_report()
    for key in ("thresholds", "first_fail_step", "first_warn_step", "status"):
        report["monitor"].pop(key)
    fig, decision = _monitor_figure(report)
    z_ax, frac_ax = fig.axes
    assert _hlines(z_ax) == {2.0: ":", 3.0: "--", 0.0: "-"}  # evil-shift-z-warn and evil-shift-z
    assert _hlines(frac_ax) == {0.25: "--", 0.0: "-"}  # the default policy has no shift_frac warn check
    # first step where a fail line is crossed: shift_frac 0.28 at step 20
    assert (decision.metric, decision.step, decision.line.check_id) == ("shift_frac", 20, "evil-shift-frac")
    assert "evil-shift-frac" in z_ax.get_title()
    assert "fail: evil-shift-frac (gate policy) = 0.25" in [ln.get_label() for ln in frac_ax.get_lines()]


def test_thresholds_fall_back_to_the_default_policy() -> None:
    from difflib_models.gate.policy import load_policy

    shipped = {c.id: c.threshold for c in load_policy().checks}
    lines = thresholds.check_lines(new_report("diff"), "persona.shift_z", "evil")
    assert [(ln.value, ln.severity, ln.check_id) for ln in lines] == [
        (shipped["evil-shift-z-warn"], "warn", "evil-shift-z-warn"), (shipped["evil-shift-z"], "fail", "evil-shift-z")]
    assert all("default policy" in ln.label for ln in lines)
    assert thresholds.check_lines(new_report("diff"), "persona.shift_z", "nosuchtrait") == []


def test_monitor_that_stayed_ok_says_so() -> None:
    report = rich_report()
    for s in report["monitor"]["series"]:
        s["metrics"] = {k: [0.01 for _ in v] for k, v in s["metrics"].items()}
    report["monitor"].update(first_fail_step={"evil": None}, first_warn_step={"evil": None}, status="ok")
    fig, decision = _monitor_figure(report)
    assert decision.text() == "OK: no threshold crossed" and decision.step is None
    assert _vlines(fig.axes[0]) == []


def test_one_layer_drift_is_bars_and_counts_are_not_drift() -> None:
    rows = diff_json(n_layers=1)["drift"]["layers"]
    assert rows[0]["n_tokens"] == 4096
    fig = plots.drift_by_layer(DriftRow.rows(rows))
    keys = ["mean_diff_norm", "relative_mean_diff", "mean_cosine", "relative_mse", "cka"]
    assert [ax.get_yticklabels()[0].get_text().split("\n")[0] for ax in fig.axes] == keys
    assert fig.axes[2].get_yticklabels()[0].get_text() == "mean_cosine\n(1 = no drift)"
    for ax, key in zip(fig.axes, keys, strict=True):
        (bar,) = ax.patches
        assert bar.get_width() == pytest.approx(rows[0][key])
        assert not [ln for ln in ax.get_lines() if ln.get_marker() not in (None, "None", "")]  # no single dot
    assert fig.axes[2].get_xlim() == (0.0, 1.0)  # cosine on its natural [0, 1] scale


def test_many_layer_drift_is_one_line_per_metric() -> None:
    rows = diff_json(n_layers=4)["drift"]["layers"]
    report = new_report("diff")
    report["drift"] = {"layers": rows}
    report["policy"] = {"checks": [{"id": "mse-l2", "metric": "drift.layers[2].relative_mse", "comparator": "<",
                                    "threshold": 0.02, "severity": "warn"}]}
    from difflib_models.report.html import _drift_thresholds

    th = _drift_thresholds(report)
    assert [(k, [ln.value for ln in v]) for k, v in th.items()] == [((2, "relative_mse"), [0.02])]
    fig = plots.drift_by_layer(DriftRow.rows(rows), th)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["mean_diff_norm", "relative_mean_diff", "mean_cosine (1 = no drift)", "relative_mse",
                      "cka (1 = no drift)"]
    mse = fig.axes[3]
    data, marker = mse.get_lines()
    assert list(data.get_xdata()) == [0, 1, 2, 3]
    assert list(data.get_ydata()) == pytest.approx([r["relative_mse"] for r in rows])
    assert (list(marker.get_xdata()), list(marker.get_ydata())) == ([2], [0.02])
    row = DriftRow.from_dict({"layer": 0, "n_tokens": 5, "n_texts": 2, "token_count": 3, "kl": 0.1, "flag": True})
    assert plots.drift_metric_keys([row]) == ["kl"] and row.get("layer") == 0 and row.number("kl") == 0.1


def test_persona_checks_bars_thresholds_and_decider() -> None:
    report = rich_report()
    traits = PersonaSection.from_report(report).traits
    checks = GateVerdict.from_report(report).checks
    lines = {(t.trait, m): thresholds.check_lines(report, f"persona.{m}", t.trait)
             for t in traits for m in ("shift_z", "shift_frac")}
    decided = thresholds.deciding_checks(checks, ["persona.shift_z", "persona.shift_frac"])
    assert [c.id for c in decided] == ["evil-shift-frac"]
    fig = plots.persona_checks(traits, lines, decided, checks=checks)
    z_ax, frac_ax = fig.axes
    assert [p.get_height() for p in z_ax.patches] == [2.4, 0.3]
    assert [p.get_height() for p in frac_ax.patches] == [0.31, 0.02]
    segments = sorted((float(ln.get_ydata()[0]), ln.get_linestyle()) for ln in frac_ax.get_lines()
                      if list(ln.get_xdata()) != [0, 1])  # per-trait segments, not the zero axhline
    assert segments == [(0.25, "--")]  # evil-shift-frac only (sycophancy is read by a response check: no shift_frac)
    assert "decided by evil-shift-frac: shift_frac = 0.31 ≥ 0.25" in frac_ax.get_title()
    assert "warn: evil-shift-z-warn: shift_z = 2.4 ≥ 2" in z_ax.get_title()


def test_null_panel_marks_the_null_quantile_a_fail_must_beat() -> None:
    trait = PersonaSection.from_report(rich_report()).traits[0]
    fig = plots.projection_vs_null(trait, 0.95)
    q = float(np.quantile(np.abs(trait.null_shifts), 0.95))
    assert _vlines(fig.axes[1]) == sorted([round(q, 6), round(abs(trait.shift), 6)])


def test_rel_norm_histogram_marks_the_class_cutoffs() -> None:
    cc = diff_json()["crosscoder"]
    fig = plots.rel_norm_histogram_counts(cc["r_histogram"]["edges"], cc["r_histogram"]["counts"],
                                          ClassCuts.from_dict(cc["thresholds"]))
    assert _vlines(fig.axes[0]) == [0.1, 0.4, 0.6, 0.9]


def test_persona_monitor_png_is_the_reports_monitor_plot(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The PersonaMonitor callback's persona_monitor.png: both thresholded metrics, the null percentile a fail
    also needs, and the deciding metric in the title (it said only "fail" and drew shift_z alone)."""
    from difflib_models.callbacks._monitor_state import series_plot
    from tests.report.synthetic import monitor_json

    drawn = []
    real_png = plots.__dict__["_png"]  # patched by the autouse fixture: record the figure, then encode it

    def record(fig: Any) -> str:
        drawn.append(fig)
        import base64
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return base64.b64encode(buf.getvalue()).decode()

    monkeypatch.setattr(plots, "_png", record)
    assert real_png is not record
    out = series_plot(monitor_json(), tmp_path / "persona_monitor.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (fig,) = drawn
    assert [ax.get_ylabel() for ax in fig.axes] == ["shift_z", "shift_frac", "null_percentile"]
    assert _hlines(fig.axes[1]) == {0.1: ":", 0.25: "--", 0.0: "-"}
    assert 0.95 in _hlines(fig.axes[2])
    assert "FAIL at step 25: decided by evil shift_frac = 0.35 ≥ 0.25 (fail_frac)" in fig.axes[0].get_title()
