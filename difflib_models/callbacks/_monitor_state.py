"""Per-trait state of the PersonaMonitor (namespace-free): baseline, shift evaluation, warn/fail counters, and
the JSON/PNG writers of the time series."""

from __future__ import annotations

import base64
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from difflib_models.errors import ConfigError, bad_value
from difflib_models.io import atomic_write_bytes
from difflib_models.persona.extraction.extractor import PersonaExtractor
from difflib_models.persona.shift import ShiftBaseline
from difflib_models.report import plots, thresholds
from difflib_models.report.builder import monitor_section
from difflib_models.report.monitor_records import MonitorSection

log = logging.getLogger(__name__)

OK, WARN, FAIL = 0, 1, 2


@dataclass
class TraitMonitor:
    """One monitored trait at one layer."""

    trait_id: str
    polarity: str
    layer: int
    prompts: list[str]
    vector: torch.Tensor | None = None
    gap: float | None = None
    source: str = ""
    trait: Any = None
    baseline: ShiftBaseline | None = None
    consecutive: int = 0
    first_warn_step: int | None = None
    first_fail_step: int | None = None
    worst_status: int = OK
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_vectors(cls, vs: Any, trait: Any, layer: int, *, source: str) -> TraitMonitor:
        prompts = list(trait.split_questions("evaluation"))
        if not prompts:
            raise ConfigError(bad_value("traits", trait.id, hint="the trait has no evaluation questions to probe"))
        gap = vs.gap.get(layer)
        return cls(trait_id=vs.trait_id, polarity=vs.polarity, layer=layer, prompts=prompts,
                   vector=vs.vector(layer).float(), gap=gap, source=source, trait=trait)

    @classmethod
    def pending(cls, trait: Any, layer: int | None) -> TraitMonitor:
        """A trait whose vector is extracted at fit start (needs an explicit layer)."""
        if layer is None:
            raise ConfigError(bad_value("layer", None, "a block index", f"trait {trait.id!r} has no vector file: "
                                        "it is extracted at fit start at the `layer=` you choose (or pass "
                                        "`vectors=` with a selected layer)."))
        prompts = list(trait.split_questions("evaluation"))
        return cls(trait_id=trait.id, polarity=trait.polarity, layer=layer, prompts=prompts, trait=trait,
                   source="extracted at fit start")

    def extract(self, loaded: Any, *, batch_size: int = 16) -> None:
        """Judge-free prompt-contrast extraction on the model as it is before training (on every rank)."""
        ext = PersonaExtractor(mode="prompt_contrast", layers=[self.layer], batch_size=batch_size).fit(loaded,
                                                                                                          self.trait)
        self.vector = ext.vectors_[self.layer].float().cpu()
        gap = getattr(ext, "gap_", {}) or {}
        self.gap = float(gap[self.layer]) if self.layer in gap else None
        log.info("PersonaMonitor: extracted %s at blocks.%d (|v| = %.3f)", self.trait_id, self.layer,
                 float(self.vector.norm()))

    # ---------------------------------------------------------------------------------------------- baseline
    def set_baseline(self, acts: torch.Tensor, *, n_null: int, seed: int) -> None:
        """m_0, sigma_0 and the null directions from the probe activations ``acts`` [P, d] (the shift core's
        :class:`~difflib_models.persona.shift.ShiftBaseline`, as the gate builds it)."""
        assert self.vector is not None
        if acts.shape[0] < 2:
            raise ConfigError(bad_value("traits", self.trait_id, "a probe set of at least 2 questions"))
        self.baseline = ShiftBaseline.from_activations(acts, self.vector, gap=self.gap, n_null=n_null, seed=seed,
                                                       trait=self.trait_id, layer=self.layer,
                                                       polarity=self.polarity)
        if self.gap is not None and self.baseline.usable_gap is None:
            log.warning("PersonaMonitor: %s's recorded pos-neg gap %.3g at blocks.%d is not above the base spread "
                        "%.3g (a direction fitted on responses, e.g. mode 'paired', need not read the instruction "
                        "contrast): shift_frac is not computed and only the shift_z thresholds apply",
                        self.trait_id, self.gap, self.layer, self.sigma0)

    def restore_baseline(self, tensors: dict[str, torch.Tensor], prefix: str, vector: torch.Tensor) -> None:
        """The baseline saved with ``baseline.to_tensors(prefix)`` (and the vector it was measured along)."""
        self.vector = vector
        self.baseline = ShiftBaseline.from_tensors(tensors, prefix, vector=vector, gap=self.gap,
                                                   trait=self.trait_id, layer=self.layer, polarity=self.polarity)

    @property
    def m0(self) -> torch.Tensor | None:
        return None if self.baseline is None else self.baseline.m0

    @property
    def sigma0(self) -> float:
        return float("nan") if self.baseline is None else self.baseline.sigma0

    @property
    def null_dirs(self) -> torch.Tensor | None:
        return None if self.baseline is None else self.baseline.null_dirs

    # ------------------------------------------------------------------------------------------- evaluation
    def evaluate(self, acts: torch.Tensor, step: int, thresholds: dict[str, Any],
                 response: dict[str, float] | None = None) -> dict[str, Any]:
        """The metrics and status of this check (pure: counters change in :meth:`apply_decision`). The z and frac
        thresholds compare the shift toward the undesirable pole; without a usable gap ``shift_frac`` is NaN and
        the frac thresholds do not apply. ``response``: the live response-token readings of this trait
        (:mod:`difflib_models.callbacks._monitor_response`); their ``response_null_z`` and
        ``response_position_shift`` are compared with their ``warn_*`` / ``fail_*`` lines (drift-normalised or read by
        the model before training: no null-percentile condition), and a fail crossing on either signal counts toward ``fail_consecutive``. A response line that is
        not crossed while the base's ``response_headroom`` is below ``min_headroom`` is a warning (``no_headroom``:
        nothing could show, so the quiet reading is no evidence; the gate's rule). A response line whose reading is
        NaN (``no_reading``: e.g. ``response_position_shift`` of a model trained in full, which has no view of the
        model before training) is a warning too: the line could not be read, so the check is no evidence."""
        assert self.baseline is not None
        res = self.baseline.measure(acts)
        z, frac = res.toward_z, res.toward_frac
        warn = _ge(z, thresholds["warn_z"]) or _ge(frac, thresholds["warn_frac"])
        crossing = (_ge(z, thresholds["fail_z"]) or _ge(frac, thresholds["fail_frac"])) and _ge(
            res.null_percentile, thresholds["fail_null_percentile"])
        no_headroom = False
        no_reading = False
        if response is not None:
            crossed = False
            for metric in RESPONSE_LINES:
                value = response.get(metric, math.nan)
                warn = warn or _ge(value, thresholds.get(f"warn_{metric}"))
                crossed = crossed or _ge(value, thresholds.get(f"fail_{metric}"))
                no_reading = no_reading or (lines_on(thresholds, metric) and not math.isfinite(value))
            crossing = crossing or crossed
            warn = warn or no_reading
            room, need = response.get("response_headroom", math.nan), thresholds.get("min_headroom")
            no_headroom = bool(response_lined(thresholds) and need is not None and math.isfinite(room) and room < need
                               and not crossed)
            warn = warn or no_headroom
        consecutive = self.consecutive + 1 if crossing else 0
        status = FAIL if consecutive >= thresholds["fail_consecutive"] else WARN if (warn or crossing) else OK
        return {
            "shift": res.shift, "shift_z": res.shift_z, "shift_frac": res.shift_frac, "drift_cos": res.drift_cos,
            "drift_norm": res.drift_norm, "null_percentile": res.null_percentile, "null_p95": res.null_p95,
            "toward_undesirable": res.toward_undesirable, **(response or {}),
            **({"no_headroom": no_headroom, "no_reading": no_reading} if response is not None else {}),
            "crossing": bool(crossing),
            "consecutive": consecutive, "status": status,
        }

    def apply_decision(self, values: dict[str, Any], step: int) -> None:
        self.consecutive = int(values["consecutive"])
        status = int(values["status"])
        self.worst_status = max(self.worst_status, status)
        if status >= WARN and self.first_warn_step is None:
            self.first_warn_step = step
        if status == FAIL and self.first_fail_step is None:
            self.first_fail_step = step

    def counters(self) -> dict[str, Any]:
        return {"consecutive": self.consecutive, "first_warn_step": self.first_warn_step,
                "first_fail_step": self.first_fail_step, "worst_status": self.worst_status}

    def load_counters(self, counters: dict[str, Any]) -> None:
        self.consecutive = int(counters.get("consecutive", 0))
        self.first_warn_step = counters.get("first_warn_step")
        self.first_fail_step = counters.get("first_fail_step")
        self.worst_status = int(counters.get("worst_status", OK))

    def describe(self) -> dict[str, Any]:
        return {
            "layer": self.layer, "polarity": self.polarity, "source": self.source, "n_probe": len(self.prompts),
            "sigma0": self.sigma0, "gap": self.gap,
            "vector_norm": float(self.vector.norm()) if self.vector is not None else None,
            "n_null": self.baseline.n_null if self.baseline is not None else 0,
        }


RESPONSE_LINES = ("response_null_z", "response_position_shift")
"""The live response readings that can carry warn/fail lines (``warn_<metric>`` / ``fail_<metric>``)."""


def lines_on(thresholds: dict[str, Any], metric: str) -> bool:
    """Whether ``thresholds`` draw a warn or fail line (``warn_<metric>`` / ``fail_<metric>``) on ``metric``."""
    return any(thresholds.get(f"{sev}_{metric}") is not None for sev in ("warn", "fail"))


def response_lined(thresholds: dict[str, Any]) -> bool:
    """Whether ``thresholds`` draw a line on a live response reading (warn or fail, :data:`RESPONSE_LINES`)."""
    return any(lines_on(thresholds, m) for m in RESPONSE_LINES)


def _ge(value: float, threshold: float | None) -> bool:
    return threshold is not None and math.isfinite(value) and value >= threshold


def to_json(obj: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json(v) for v in obj]
    return obj


def replace_json(path: Path, obj: Any) -> Path:
    """Write JSON to a temporary file beside ``path`` and rename it over ``path``, without fsync: a crash leaves the
    old or the new file, never half of one. For the series rewritten at every check (a fsync there costs more than
    the check's arithmetic); the last write of a run goes through ``io.atomic_write_json`` (with fsync)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def series_plot(summary: dict[str, Any], path: Path) -> Path | None:
    """shift_z, shift_frac and the null percentile per trait over steps, with the warn/fail thresholds and the
    metric that decided the status in the title (the report's monitor plot, written as a PNG)."""
    if not summary["series"]:
        return None
    section = monitor_section(to_json(summary))
    monitor = MonitorSection.from_dict(section)
    lines, by_trait = thresholds.monitor_lines_by_trait({"monitor": section}, monitor)
    pct = (summary.get("thresholds") or {}).get("fail_null_percentile")
    context = {"null_percentile": [thresholds.Line(float(pct), "fail", "a fail also needs ≥ (fail_null_percentile)",
                                                   "fail_null_percentile", ">=")]} if pct is not None else None
    png = plots.shift_series(monitor.series, lines, thresholds.monitor_decision(monitor, lines, by_trait), context,
                             by_trait=by_trait)
    if png is None:
        return None
    return atomic_write_bytes(path, base64.b64decode(png))
