"""report.html: a self-contained page rendered from report.json.

Jinja2 with autoescaping on every variable (model and data text such as prompts, max-activating contexts and
generations can contain ``<script>``); plots are matplotlib PNGs inlined as base64 ``data:`` URIs; no scripts,
fonts or stylesheets are fetched (a Content-Security-Policy meta tag forbids it), so the page works offline and
as an MLflow artifact.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from difflib_models.io import atomic_write_text
from difflib_models.report import plots, thresholds
from difflib_models.report.behaviour_records import BehaviouralSection
from difflib_models.report.diff_records import ClassCuts, DriftRow
from difflib_models.report.monitor_records import MonitorSection
from difflib_models.report.names import display_name
from difflib_models.report.records import GateVerdict, PersonaSection

#: at most this many latents get a table row (all of them stay in report.json)
MAX_LATENT_ROWS = 1000
MAX_BEHAVIOURAL_ROWS = 100
#: tables with more rows than this are collapsed into a <details> element
COLLAPSE_ROWS = 15
_GENERIC = (("adl", "Activation Difference Lens"), ("weights", "Weight deltas"), ("data_filter", "Data filter"))


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def _tojson_pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,  # every {{ }} is HTML-escaped, whatever the file extension
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["tojson_pretty"] = _tojson_pretty  # returned as str -> escaped by autoescape
    return env


_DRIFT_PATH = re.compile(r"^drift\.layers\[(layer=)?(\d+)\]\.([A-Za-z_][A-Za-z0-9_]*)$")


def _drift_thresholds(report: Mapping[str, Any]) -> dict[tuple[int, str], list[Any]]:
    """Policy checks on ``drift.layers[i].metric`` (index) or ``drift.layers[layer=i].metric`` by (layer, metric)."""
    rows = (report.get("drift") or {}).get("layers") or []
    checks, _origin = thresholds.policy_checks(report)
    out: dict[tuple[int, str], list[Any]] = {}
    for c in checks:
        m = _DRIFT_PATH.match(str(c.get("metric", "")))
        if not m:
            continue
        index = int(m.group(2))
        if m.group(1):
            layer = index
        elif index < len(rows) and isinstance(rows[index].get("layer"), int):
            layer = rows[index]["layer"]
        else:
            continue
        out.setdefault((layer, m.group(3)), []).extend(
            ln for ln in thresholds.check_lines(report, str(c["metric"])) if ln.check_id == c.get("id"))
    return out


def _min_null_percentile(report: Mapping[str, Any], trait: str) -> float | None:
    checks, _origin = thresholds.policy_checks(report)
    values = [float(c["min_null_percentile"]) for c in checks if c.get("trait") == trait
              and c.get("min_null_percentile") is not None]
    return max(values) if values else None


def _plots(report: Mapping[str, Any], verdict: GateVerdict, persona: PersonaSection | None) -> dict[str, Any]:
    out: dict[str, Any] = {"persona": [], "persona_checks": None, "monitor": None, "monitor_decision": None,
                           "drift": None, "rel_norm": None}
    traits = persona.traits if persona is not None else ()
    for trait in traits:
        img = plots.projection_vs_null(trait, _min_null_percentile(report, trait.trait))
        if img:
            out["persona"].append(img)
    if traits:
        metrics = ("shift_z", "shift_frac")
        lines = {(t.trait, m): thresholds.check_lines(report, f"persona.{m}", t.trait) for t in traits for m in metrics}
        decided = thresholds.deciding_checks(verdict.checks, [f"persona.{m}" for m in metrics])
        persona_checks = [c for c in verdict.checks if c.metric.startswith("persona.")]
        out["persona_checks"] = plots.persona_checks(traits, lines, decided, metrics, persona_checks)
    monitor = MonitorSection.from_report(report)
    if monitor is not None and monitor.series:
        lines, by_trait = thresholds.monitor_lines_by_trait(report, monitor)
        decision = thresholds.monitor_decision(monitor, lines, by_trait)
        out["monitor"] = plots.shift_series(monitor.series, lines, decision, by_trait=by_trait)
        out["monitor_decision"] = decision.text()
    drift = report.get("drift") or {}
    out["drift"] = plots.drift_by_layer(DriftRow.rows(drift.get("layers", [])), _drift_thresholds(report))
    cc = report.get("crosscoder") or {}
    cuts = ClassCuts.from_dict(cc.get("thresholds"))
    norms = cc.get("relative_decoder_norms") or [
        lat["rel_norm"] for lat in cc.get("top_latents", []) if lat.get("rel_norm") is not None
    ]
    hist = cc.get("r_histogram") or {}
    if not cc.get("relative_decoder_norms") and hist.get("edges") and hist.get("counts"):
        out["rel_norm"] = plots.rel_norm_histogram_counts(hist["edges"], hist["counts"], cuts)
    else:
        out["rel_norm"] = plots.rel_norm_histogram(norms, thresholds=cuts)
    return out


def _flat_metrics(metrics: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(_flat_metrics(value, name + "."))
        elif isinstance(value, int | float | str | bool) or value is None:
            rows.append((name, value))
    return rows


def render_html(report: Mapping[str, Any]) -> str:
    """The HTML page for ``report`` (a validated report document; its gate checks, persona rows and behavioural
    section are read into their typed records, :mod:`difflib_models.report.records`,
    :mod:`difflib_models.report.behaviour_records`)."""
    verdict = GateVerdict.from_report(report)
    persona = PersonaSection.from_report(report)
    counts = [f"{n} {status}" for status, n in verdict.counts().items() if n]
    models = [(role, m, display_name(m)) for role, m in (report.get("models") or {}).items() if m]
    drift_rows = (report.get("drift") or {}).get("layers", [])
    drift_keys: list[str] = []
    for row in drift_rows:
        for k in row:
            if k not in drift_keys:
                drift_keys.append(k)
    cc = report.get("crosscoder") or {}
    latents = cc.get("top_latents") or []
    behavioural = BehaviouralSection.from_report(report)
    context = {
        "r": report,
        "verdict": report.get("verdict", "none"),
        "checks": verdict.checks,
        "persona": persona,
        "counts": counts,
        "models": models,
        "plots": _plots(report, verdict, persona),
        "drift_keys": drift_keys,
        "cc_metrics": _flat_metrics(cc.get("metrics") or {}),
        "top_latents": latents[:MAX_LATENT_ROWS],
        "n_latents_hidden": max(0, len(latents) - MAX_LATENT_ROWS),
        "behavioural": behavioural,
        "behavioural_items": behavioural.items[:MAX_BEHAVIOURAL_ROWS] if behavioural is not None else (),
        "collapse_rows": COLLAPSE_ROWS,
        "threshold_origin": thresholds.policy_checks(report)[1],
        "generic_sections": [(name, title) for name, title in _GENERIC if report.get(name)],
    }
    return _environment().get_template("report.html.j2").render(**context)


def write_html(report: Mapping[str, Any], path: str | Path) -> Path:
    """Render and atomically write report.html."""
    return atomic_write_text(path, render_html(report))
