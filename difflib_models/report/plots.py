"""Report plots as inline PNGs (base64 strings) drawn with matplotlib's object API (no pyplot state, Agg).

Each function takes plain report-section data and returns a base64-encoded PNG, or ``None`` when there is
nothing to draw. Text drawn into plots is rendered as pixels, so model/data text needs no escaping here.
"""

from __future__ import annotations

import base64
import io
import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from difflib_models.report.diff_records import ClassCuts, DriftRow
from difflib_models.report.monitor_records import MonitorSeries
from difflib_models.report.records import CheckResult, PersonaRow
from difflib_models.report.thresholds import check_text

_DPI = 100
_SIZE = (6.4, 3.4)
_WARN, _FAIL = "#ef6c00", "#c62828"  # threshold line colours (warn dotted, fail dashed)


def _figure() -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=_SIZE, dpi=_DPI, layout="tight")


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _as_float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


_CLASS_CUTS = (("base_only", "base-only <"), ("shared_low", "shared ≥"), ("shared_high", "shared ≤"),
               ("ft_only", "fine-tune-only >"))


def _class_cuts(ax: Any, thresholds: ClassCuts | None) -> None:
    """The latent-class cut-offs on r as vertical lines (the diff's ``crosscoder.thresholds``)."""
    cuts = dict(thresholds.items()) if thresholds is not None else {}
    for key, label in _CLASS_CUTS:
        value = cuts.get(key)
        if value is not None:
            ax.axvline(float(value), color="#c44e52" if "only" in key else "#55a868", linestyle="--", linewidth=1,
                       label=f"{label} {float(value):g}")
    if ax.get_legend_handles_labels()[0]:  # below the axes: the histogram's peak sits where a legend would
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncols=4, frameon=False)


def _log_counts(ax: Any) -> None:
    """A log count axis that starts below 1, so that bins with one latent show and a narrow range does not zoom
    into (and label) 316..320."""
    top = max((p.get_height() for p in ax.patches if hasattr(p, "get_height")), default=1.0)
    for artist in ax.patches:  # stairs: a single StepPatch without get_height
        if hasattr(artist, "get_data") and not hasattr(artist, "get_height"):
            top = max(top, float(max(artist.get_data().values, default=1.0)))
    ax.set_yscale("log")
    ax.set_ylim(0.7, max(top, 1.0) * 2.0)


def rel_norm_histogram(
    rel_norms: Sequence[float], *, bins: int = 50, thresholds: ClassCuts | None = None
) -> str | None:
    """Histogram of crosscoder relative decoder norms (0 = base-only, 0.5 = shared, 1 = fine-tune-only)."""
    values = _finite(rel_norms)
    if not values:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    ax.hist(values, bins=bins, range=(0.0, 1.0), color="#4c72b0")
    _log_counts(ax)
    ax.set_xlabel("relative decoder norm  (0 base-only · 0.5 shared · 1 fine-tune-only)")
    ax.set_ylabel("latents (log)")
    ax.set_title(f"Crosscoder latents (n={len(values)})")
    _class_cuts(ax, thresholds)
    return _png(fig)


def rel_norm_histogram_counts(
    edges: Sequence[float], counts: Sequence[int], thresholds: ClassCuts | None = None
) -> str | None:
    """The same histogram from precomputed bin edges and counts (a diff pipeline's ``r_histogram``)."""
    if len(edges) != len(counts) + 1 or not any(counts):
        return None
    fig = _figure()
    ax = fig.add_subplot()
    ax.stairs([max(int(c), 0) for c in counts], [float(e) for e in edges], fill=True, color="#4c72b0")
    _log_counts(ax)
    ax.set_xlabel("relative decoder norm  (0 base-only · 0.5 shared · 1 fine-tune-only)")
    ax.set_ylabel("latents (log)")
    ax.set_title(f"Crosscoder latents (n={sum(int(c) for c in counts)})")
    _class_cuts(ax, thresholds)
    return _png(fig)


#: drift row keys that are counts or identifiers, not drift metrics (never plotted as drift)
_NOT_DRIFT = ("layer", "n", "n_tokens", "n_texts", "n_items", "count")


def drift_metric_keys(rows: Sequence[DriftRow]) -> list[str]:
    """The numeric drift metrics of the per-layer rows, in first-seen order (counts such as ``n_tokens`` excluded)."""
    keys: list[str] = []
    for row in rows:
        for k in row.numeric_keys():
            if k in keys or k in _NOT_DRIFT or k.startswith("n_") or k.endswith("_count"):
                continue
            keys.append(k)
    return keys


def _threshold_line(ax: Any, line: Any, *, vertical: bool = False, colour: str | None = None,
                    prefix: str = "") -> None:
    colour = colour or (_WARN if line.severity == "warn" else _FAIL)
    style = ":" if line.severity == "warn" else "--"
    draw = ax.axvline if vertical else ax.axhline
    draw(line.value, color=colour, linestyle=style, linewidth=1.3, label=f"{prefix}{line.label} = {line.value:g}")


#: drift metrics that are similarities in [0, 1] (1 = no drift): their bars get the full [0, 1] axis
_SIMILARITIES = ("mean_cosine", "cka")


def _drift_label(key: str, sep: str) -> str:
    return f"{key}{sep}(1 = no drift)" if key in _SIMILARITIES else key


def _drift_one_layer(row: DriftRow, keys: Sequence[str],
                     thresholds: Mapping[tuple[int, str], Sequence[Any]]) -> str:
    """One layer: a horizontal bar per metric, each on its own axis (the metrics have different units), the value
    written beside the bar; similarities (cosine, CKA) on [0, 1] so that 0.999 reads as "almost no drift"."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 0.62 * len(keys) + 0.8), dpi=_DPI, layout="tight")
    axes = fig.subplots(len(keys), 1, squeeze=False)[:, 0]
    for ax, key in zip(axes, keys, strict=True):
        raw = row.number(key)
        v = raw if raw is not None else float("nan")
        lines = list(thresholds.get((row.layer, key), ()))
        ax.barh([0], [v if math.isfinite(v) else 0.0], color="#4c72b0", height=0.6)
        ax.annotate(f"{v:.4g}", (v if math.isfinite(v) else 0.0, 0), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=8)
        for line in lines:
            colour = _WARN if line.severity == "warn" else _FAIL
            ax.plot([line.value] * 2, [-0.45, 0.45], color=colour, linestyle="--", linewidth=1.6,
                    label=f"{line.label} = {line.value:g}")
        top = max([abs(v) if math.isfinite(v) else 0.0] + [abs(ln.value) for ln in lines]) or 1.0
        ax.set_xlim(min(0.0, v if math.isfinite(v) else 0.0) * 1.3, 1.0 if key in _SIMILARITIES and top <= 1.0
                    else top * 1.3)
        ax.set_yticks([0], [_drift_label(key, "\n")], fontsize=8)
        ax.set_ylim(-0.6, 0.6)
        ax.tick_params(axis="x", labelsize=7)
        if lines:
            ax.legend(fontsize=6, loc="center right")
    axes[0].set_title(f"Drift at blocks.{row.layer}, base → candidate (one layer; one axis per metric)",
                      fontsize=9)
    return _png(fig)


def drift_by_layer(
    layers: Sequence[DriftRow], thresholds: Mapping[tuple[int, str], Sequence[Any]] | None = None
) -> str | None:
    """Per-layer drift, one panel per drift metric (own y axis, counts excluded).

    Several layers: a line over the layers per metric. One layer: horizontal bars, one per metric, with the value
    written on each bar (a line through one point says nothing). ``thresholds`` maps ``(layer, metric)`` to
    :class:`~difflib_models.report.thresholds.Line` objects (policy checks on ``drift.layers[...]``).
    """
    rows = sorted(layers, key=lambda r: r.layer)
    keys = drift_metric_keys(rows)[:6]
    if not rows or not keys:
        return None
    thresholds = thresholds or {}
    from matplotlib.figure import Figure

    if len(rows) == 1:
        return _drift_one_layer(rows[0], keys, thresholds)
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig = Figure(figsize=(7.6, 2.3 * nrows + 0.5), dpi=_DPI, layout="tight")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    xs = [r.layer for r in rows]
    for i, key in enumerate(keys):
        ax = axes[i // ncols][i % ncols]
        ys = [_as_float(r.get(key)) for r in rows]
        ax.plot(xs, ys, marker="o", color="#4c72b0")
        if len(xs) <= 12:  # layers are integers: no 0.2, 0.4, ... ticks between two layers
            ax.set_xticks(xs)
        else:
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for (layer, metric), lines in thresholds.items():
            if metric == key:
                for line in lines:
                    colour = _WARN if line.severity == "warn" else _FAIL
                    ax.plot([layer], [line.value], marker="_", markersize=18, mew=2, color=colour, linestyle="none",
                            label=f"{line.label} = {line.value:g}")
        ax.set_title(_drift_label(key, " "), fontsize=9)
        ax.set_xlabel("layer (blocks.i)", fontsize=8)
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    for j in range(len(keys), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    fig.suptitle(f"Per-layer drift, base → candidate ({len(rows)} layers)", fontsize=10)
    return _png(fig)


def shift_series(
    series: Sequence[MonitorSeries],
    lines: Mapping[str, Sequence[Any]] | None = None,
    decision: Any = None,
    context: Mapping[str, Sequence[Any]] | None = None,
    by_trait: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
) -> str | None:
    """Persona shift over training steps: one panel per thresholded metric (shift_z, shift_frac), one line per
    trait, the warn/fail threshold lines, the deciding step marked, and the decision in the title.

    ``lines`` maps a metric to its :class:`~difflib_models.report.thresholds.Line` objects; ``decision`` is a
    :class:`~difflib_models.report.thresholds.Decision`; ``context`` adds panels for metrics that condition a
    decision without deciding it (the null percentile a fail must also reach), with their lines. ``by_trait``: each
    trait's own lines (a monitor with per-trait lines), drawn in the colour of the trait's series and named after
    it (:func:`~difflib_models.report.thresholds.monitor_lines_by_trait`).
    """
    drawn = [s for s in series if s.steps]
    if not drawn:
        return None
    lines = {**(lines or {}), **(context or {})}
    for own in (by_trait or {}).values():
        lines.update({m: lines.get(m, []) for m in own})
    metrics = list(lines) or [drawn[0].metric]
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 2.3 * len(metrics) + 0.7), dpi=_DPI, layout="tight")
    axes = fig.subplots(len(metrics), 1, squeeze=False, sharex=True)[:, 0]
    for ax, metric in zip(axes, metrics, strict=True):
        any_data = False
        for i, s in enumerate(drawn):
            colour = f"C{i % 10}"
            pts = [(st, v) for st, v in zip(s.steps, s.values_of(metric), strict=False) if v is not None]
            if pts:
                any_data = True
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=s.label, color=colour)
            for line in ((by_trait or {}).get(s.trait) or {}).get(metric, ()):
                _threshold_line(ax, line, colour=colour, prefix=f"{s.trait} ")
        if not any_data:
            ax.text(0.5, 0.5, f"no {metric} values recorded", transform=ax.transAxes, ha="center", va="center",
                    color="#666")
        for line in (lines or {}).get(metric, ()):
            _threshold_line(ax, line)
        if decision is not None and decision.step is not None:
            ax.axvline(decision.step, color=_FAIL if decision.status == "fail" else _WARN, linewidth=0.8, alpha=0.6)
        ax.axhline(0.0, color="#888", linewidth=0.6)
        ax.set_ylabel(metric)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    axes[-1].set_xlabel("optimizer step")
    title = "Persona shift during training"
    if decision is not None:
        title += "\n" + textwrap.fill(decision.text(), 95)
    axes[0].set_title(title, fontsize=9)
    return _png(fig)


def _worst_checks(checks: Sequence[CheckResult]) -> dict[str, CheckResult]:
    """The worst non-pass evaluated check per metric name (last path component)."""
    rank = {"fail": 0, "error": 1, "warn": 2}
    out: dict[str, CheckResult] = {}
    for c in sorted((c for c in checks if c.status in rank), key=lambda c: rank[c.status]):
        out.setdefault(c.metric_name, c)
    return out


def persona_checks(
    traits: Sequence[PersonaRow],
    lines: Mapping[tuple[str, str], Sequence[Any]],
    decided: Sequence[CheckResult] = (),
    metrics: Sequence[str] = ("shift_z", "shift_frac"),
    checks: Sequence[CheckResult] = (),
) -> str | None:
    """Per-trait persona metrics as bars with each trait's warn/fail thresholds, the deciding checks in the title.

    ``lines`` maps ``(trait, metric)`` to threshold lines; ``decided`` are the evaluated checks that decided the
    verdict; ``checks`` all evaluated checks (a panel without a deciding check names its worst non-pass check).
    """
    names = [t.trait for t in traits]
    if not names:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 2.6), dpi=_DPI, layout="tight")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    decided_metrics: dict[str, CheckResult] = {}
    for c in decided:
        decided_metrics.setdefault(c.metric_name, c)
    worst = {m: c for m, c in _worst_checks(checks).items() if m not in decided_metrics}
    for ax, metric in zip(axes, metrics, strict=True):
        values = [t.value(metric) for t in traits]
        ys = [float(v) if isinstance(v, int | float) and math.isfinite(v) else 0.0 for v in values]
        colours = ["#4c72b0" if isinstance(v, int | float) else "#cccccc" for v in values]
        ax.bar(range(len(names)), ys, color=colours, width=0.6)
        for i, trait in enumerate(names):
            if not isinstance(values[i], int | float):
                ax.annotate("n/a", (i, 0), ha="center", va="bottom", fontsize=7, color="#666")
            for line in lines.get((trait, metric), ()):
                colour = _WARN if line.severity == "warn" else _FAIL
                ax.plot([i - 0.4, i + 0.4], [line.value, line.value], color=colour,
                        linestyle=":" if line.severity == "warn" else "--", linewidth=1.6,
                        label=f"{line.severity} threshold")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        if unique:
            ax.legend(unique.values(), unique.keys(), fontsize=7)
        ax.axhline(0.0, color="#888", linewidth=0.6)
        ax.set_xticks(range(len(names)), names, fontsize=8)
        title, colour = metric, "#222"
        if metric in decided_metrics:
            title, colour = f"{metric}\ndecided by {check_text(decided_metrics[metric])}", _FAIL
        elif metric in worst:
            c = worst[metric]
            title = f"{metric}\n{c.status}: {check_text(c)}"
            colour = _WARN if c.status == "warn" else "#222"
        ax.set_title(title, fontsize=8, color=colour)
    return _png(fig)


def projection_vs_null(trait: PersonaRow, min_null_percentile: float | None = None) -> str | None:
    """Left: per-prompt projections base vs candidate. Right: |shift| of null directions vs the observed one, with
    the null quantile a fail must beat (the checks' ``min_null_percentile``) as a dashed line."""
    base = _finite(trait.base_projections)
    cand = _finite(trait.candidate_projections)
    nulls = _finite(trait.null_shifts)
    if not (base or cand or nulls):
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 3.0), dpi=_DPI, layout="tight")
    ax1, ax2 = fig.subplots(1, 2)
    if base or cand:
        ax1.hist(base, bins=20, alpha=0.6, label="base", color="#4c72b0")
        ax1.hist(cand, bins=20, alpha=0.6, label="candidate", color="#dd8452")
        ax1.legend(fontsize=8)
    ax1.set_title(f"{trait.trait} L{trait.layer}: projections", fontsize=9)
    ax1.set_xlabel("projection on v̂")
    if nulls:
        ax2.hist([abs(v) for v in nulls], bins=20, color="#999999", label="null |shift|")
        if min_null_percentile is not None:
            import numpy as np

            q = float(np.quantile([abs(v) for v in nulls], float(min_null_percentile)))
            ax2.axvline(q, color=_FAIL, linestyle="--", linewidth=1,
                        label=f"null {100 * float(min_null_percentile):g}th pct (fail needs more)")
    ax2.axvline(abs(float(trait.shift)), color="#c44e52", linewidth=2, label="observed |shift|")
    if trait.control_shift is not None:
        ax2.axvline(abs(float(trait.control_shift)), color="#55a868", linestyle="--", label="control |shift|")
    pct = trait.null_percentile
    ax2.set_title("shift vs null directions" + (f" (percentile {float(pct):.2f})" if pct is not None else ""),
                  fontsize=9)
    ax2.legend(fontsize=7)
    return _png(fig)
