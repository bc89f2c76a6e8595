"""Report plots as inline PNGs (base64 strings) drawn with matplotlib's object API (no pyplot state, Agg).

Each function takes plain report-section data and returns a base64-encoded PNG, or ``None`` when there is
nothing to draw. Text drawn into plots is rendered as pixels, so model/data text needs no escaping here.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

_DPI = 80
_SIZE = (6.4, 3.4)


def _figure() -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=_SIZE, dpi=_DPI, layout="tight")


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def rel_norm_histogram(rel_norms: Sequence[float], *, bins: int = 50) -> str | None:
    """Histogram of crosscoder relative decoder norms (0 = base-only, 0.5 = shared, 1 = fine-tune-only)."""
    values = _finite(rel_norms)
    if not values:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    ax.hist(values, bins=bins, range=(0.0, 1.0), color="#4c72b0")
    ax.set_yscale("log")
    ax.set_xlabel("relative decoder norm  (0 base-only · 0.5 shared · 1 fine-tune-only)")
    ax.set_ylabel("latents (log)")
    ax.set_title(f"Crosscoder latents (n={len(values)})")
    return _png(fig)


def rel_norm_histogram_counts(edges: Sequence[float], counts: Sequence[int]) -> str | None:
    """The same histogram from precomputed bin edges and counts (a diff pipeline's ``r_histogram``)."""
    if len(edges) != len(counts) + 1 or not any(counts):
        return None
    fig = _figure()
    ax = fig.add_subplot()
    ax.stairs([max(int(c), 0) for c in counts], [float(e) for e in edges], fill=True, color="#4c72b0")
    ax.set_yscale("log")
    ax.set_xlabel("relative decoder norm  (0 base-only · 0.5 shared · 1 fine-tune-only)")
    ax.set_ylabel("latents (log)")
    ax.set_title(f"Crosscoder latents (n={sum(int(c) for c in counts)})")
    return _png(fig)


def drift_by_layer(layers: Sequence[Mapping[str, Any]]) -> str | None:
    """Per-layer drift: every numeric per-layer metric, each normalised to its own max, on one axis."""
    rows = [r for r in layers if isinstance(r.get("layer"), int)]
    if not rows:
        return None
    keys = [k for k in rows[0] if k != "layer" and isinstance(rows[0][k], int | float)][:4]
    if not keys:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    xs = [r["layer"] for r in rows]
    for key in keys:
        ys = [float(r.get(key) or 0.0) for r in rows]
        top = max((abs(y) for y in ys), default=0.0) or 1.0
        ax.plot(xs, [y / top for y in ys], marker="o", label=f"{key} (max {top:.3g})")
    ax.set_xlabel("layer (blocks.i)")
    ax.set_ylabel("value / max")
    ax.set_title("Per-layer drift, base → candidate")
    ax.legend(fontsize=8)
    return _png(fig)


def shift_series(series: Sequence[Mapping[str, Any]]) -> str | None:
    """Persona shift over training steps, one line per trait (from the monitor section)."""
    lines = [s for s in series if s.get("steps")]
    if not lines:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for s in lines:
        pts = [(st, v) for st, v in zip(s["steps"], s["values"], strict=False) if v is not None]
        if not pts:
            continue
        label = f"{s['trait']} L{s['layer']}" if s.get("layer") is not None else str(s["trait"])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=label)
    ax.axhline(0.0, color="#888", linewidth=0.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(str(lines[0].get("metric", "shift")))
    ax.set_title("Persona shift during training")
    ax.legend(fontsize=8)
    return _png(fig)


def projection_vs_null(trait: Mapping[str, Any]) -> str | None:
    """Left: per-prompt projections base vs candidate. Right: |shift| of null directions vs the observed one."""
    base = _finite(trait.get("base_projections") or [])
    cand = _finite(trait.get("candidate_projections") or [])
    nulls = _finite(trait.get("null_shifts") or [])
    if not (base or cand or nulls):
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 3.0), dpi=_DPI, layout="tight")
    ax1, ax2 = fig.subplots(1, 2)
    if base or cand:
        ax1.hist(base, bins=20, alpha=0.6, label="base", color="#4c72b0")
        ax1.hist(cand, bins=20, alpha=0.6, label="candidate", color="#dd8452")
        ax1.legend(fontsize=8)
    ax1.set_title(f"{trait.get('trait')} L{trait.get('layer')}: projections", fontsize=9)
    ax1.set_xlabel("projection on v̂")
    if nulls:
        ax2.hist([abs(v) for v in nulls], bins=20, color="#999999", label="null |shift|")
    ax2.axvline(abs(float(trait.get("shift") or 0.0)), color="#c44e52", linewidth=2, label="observed |shift|")
    if trait.get("control_shift") is not None:
        ax2.axvline(abs(float(trait["control_shift"])), color="#55a868", linestyle="--", label="control |shift|")
    ax2.set_title("shift vs null directions", fontsize=9)
    ax2.legend(fontsize=7)
    return _png(fig)
