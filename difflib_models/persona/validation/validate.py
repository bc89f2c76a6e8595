"""Is the vector real? Held-out validation, null baselines, steering dose-response and layer selection.

Inputs are a :class:`PersonaVectorSet` and :class:`~difflib_models.persona.contracts.TraitFeatures` (activations
of the extraction and evaluation split), never an extractor; the output is a :class:`ValidationResult` whose typed
:class:`~difflib_models.persona.contracts.ValidationSummary` is what a vector file stores.
Everything is measured on the trait's EVALUATION split (never the extraction split), spec persona.md section 3:

1. Separation per layer: AUROC of held-out projections pos vs neg (bootstrap 95% CI; both from
   :mod:`difflib_models.stats`) and Cohen's d.
2. Nulls, both with ``max over layers`` because the layer is selected as a max:
   - label permutation: the extraction labels are permuted, balanced (swapped inside exactly half of the pairs for
     paired modes; half of each class per group otherwise), the direction is re-fitted on every layer, and the draw
     keeps its best held-out AUROC over the layers;
   - random directions from N(0, Sigma_hat) (shrinkage WITHIN-class covariance of the extraction activations,
     norm-matched), oriented by the extraction data (as a fitted direction would be), best AUROC over the layers.
   Empirical p-value = (1 + #{null >= observed}) / (1 + N); ``beats_null_95`` = observed > the null's 95th pct.
   Every draw also records its held-out Cohen's d and its *alignment* cos(u, mean(ev_pos) - mean(ev_neg)) (the
   projection of the held-out mean difference on the unit direction, standardised by that difference's norm),
   each as the max over layers like the observed statistics. AUROC saturates: when held-out pos/neg are separable
   along almost any direction, a null's AUROC q95 reaches 1 and can never be beaten; Cohen's d saturates too, at
   the best d the held-out data allow, once a null direction has a modest component along the class difference.
   The alignment does not: a null direction reaches it only by pointing along the held-out difference itself.
   When a null's AUROC q95 is >= ``AUROC_CEILING`` the separation test against that null compares the alignment
   (``test: "alignment"``; else ``"auroc"``); ``passes`` is the test's result and all three statistics are
   reported (docs/persona.md shows the saturated case: hallucination's ``paired`` permutation null on SmolLM2).
3. :func:`cross_trait_cosines`: cosine matrix between traits' unit vectors; a warning above |cos| 0.5.
4. Steering dose-response at shortlisted layers on held-out A/B items (:mod:`~difflib_models.persona.validation.dose_response`):
   add ``alpha * r * v_hat`` at ``blocks.L`` (``steer_positions``, default all), r = median residual norm at L.
   Default readout ``"text"``: P(matching) = sigmoid of the per-token log-likelihood difference of the matching
   and non-matching answer texts as the assistant's response to the question stem; coherence proxy = mean
   per-token log-likelihood of the answers. ``readout="letter"``: p_m / (p_m + p_n) at the answer letter;
   coherence proxy = A/B mass. A monotone curve is repeated along ``control_dirs`` norm-matched random
   directions from N(0, Sigma_hat) (within-class extraction covariance); the real effect must exceed
   ``CONTROL_RATIO`` times the largest control effect.
5. Split-half stability: cosine between directions fitted on two random halves of the extraction data.

Layer selection: shortlist the top ``shortlist`` layers by held-out AUROC among the layers at ``steer_depth``
(default 30-70% of the depth), then confirm by steering: the layer with the largest steering effect whose
dose-response is monotone and coherent wins; the reason is recorded. ``verdict`` is ``"real"`` only when the
separation test ``passes`` against both nulls and (when a steering check ran) steers monotonically and
more than the random-direction control; otherwise ``"too_weak"``: no verdict on a trait shift should be made.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from difflib_models.errors import ConfigError, bad_value
from difflib_models.persona.contracts import (
    NULL_QUANTILES,
    VALIDATION_LEVELS,
    DoseResponseCurve,
    LayerValidation,
    NullSummary,
    SteeringSummary,
    TraitFeatures,
    ValidationSummary,
)
from difflib_models.persona.extraction.extractor import PersonaExtractor, aggregate
from difflib_models.persona.extraction.vectors import PersonaVectorSet
from difflib_models.persona.shift.core import covariance_null_directions
from difflib_models.persona.traits import Trait, load_trait
from difflib_models.persona.validation.dose_response import (
    DEFAULT_MAX_NLL_INCREASE,
    dose_summary,
    random_direction_control,
    steering_dose_response,
)
from difflib_models.progress import progress
from difflib_models.stats import auroc, bootstrap_auroc_ci

log = logging.getLogger(__name__)

DEFAULT_ALPHAS: tuple[float, ...] = (-0.3, -0.15, 0.0, 0.15, 0.3)
"""In units of the median residual norm. The spec's +-1, +-2 collapse a 135M model's answers (docs/persona.md)."""
STEER_DEPTH: tuple[float, float] = (0.3, 0.7)
"""Steering candidates: extracted layers at 30-70% of the depth (published optima sit at 40-70%)."""
CONTROL_RATIO = 2.0
COS_WARN = 0.5
AUROC_CEILING = 0.995
"""A null whose AUROC 95th percentile reaches this is saturated: its separation test compares the alignment."""
_dose_summary = dose_summary  # backwards-compatible name (letter readout by default)
__all__ = ["AUROC_CEILING", "VALIDATION_LEVELS", "LayerValidation", "NullDraws", "NullSummary", "SteeringSummary",
           "TraitFeatures", "ValidationResult", "ValidationSummary", "add_random_control", "alignment", "auroc",
           "bootstrap_auroc_ci", "cohens_d", "cross_trait_cosines", "empirical_p", "extract_and_validate",
           "null_test", "permutation_null", "permutation_null_stats", "random_direction_control",
           "random_direction_null", "random_direction_null_stats", "separation", "split_half_stability",
           "steering_dose_response", "validate_vectors"]


# ---------------------------------------------------------------------- statistics
def cohens_d(pos: np.ndarray, neg: np.ndarray) -> float:
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    n1, n2 = pos.size, neg.size
    if n1 < 2 or n2 < 2:
        return float("nan")
    pooled = ((n1 - 1) * pos.var(ddof=1) + (n2 - 1) * neg.var(ddof=1)) / (n1 + n2 - 2)
    return float((pos.mean() - neg.mean()) / math.sqrt(pooled)) if pooled > 0 else float("nan")


def empirical_p(observed: float, null: Sequence[float]) -> float:
    null = np.asarray(null, dtype=np.float64)
    return float((1 + (null >= observed).sum()) / (1 + null.size))


def _batched_cohens_d(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Cohen's d (pooled sd) of many score columns at once: pos [n, K], neg [m, K] -> [K] (0 where sd is 0)."""
    n1, n2 = pos.shape[0], neg.shape[0]
    if n1 < 2 or n2 < 2:
        return torch.full((pos.shape[1],), float("nan"), dtype=torch.float64)
    pooled = ((n1 - 1) * pos.var(dim=0) + (n2 - 1) * neg.var(dim=0)) / (n1 + n2 - 2)
    diff = pos.mean(dim=0) - neg.mean(dim=0)
    return torch.where(pooled > 0, diff / pooled.clamp_min(1e-300).sqrt(), torch.zeros_like(diff)).double()


@dataclass(frozen=True)
class NullDraws:
    """One null's draws, [n] each (max over layers): held-out AUROC, Cohen's d and alignment (cosine with the
    held-out mean difference) of each null direction."""

    auroc: np.ndarray
    cohens_d: np.ndarray
    alignment: np.ndarray


def alignment(direction: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """cos(direction, mean(pos) - mean(neg)) for directions [d] or [n, d] (0 where a norm is 0)."""
    diff = pos.double().mean(0) - neg.double().mean(0)
    dirs = direction.double()
    norms = dirs.norm(dim=-1) * diff.norm()
    return torch.where(norms > 0, (dirs @ diff) / norms.clamp_min(1e-300), torch.zeros_like(norms))


def _null_draws(dirs: Mapping[int, torch.Tensor], ev_pos: Mapping[int, torch.Tensor],
                ev_neg: Mapping[int, torch.Tensor], max_over_layers: bool) -> NullDraws:
    """Held-out AUROC, d and alignment of the directions ``dirs[layer]`` [n, d]; each draw takes its max over the
    layers (each statistic separately)."""
    aur, dd, al = [], [], []
    for layer, d in dirs.items():
        sp, sn = ev_pos[layer].double() @ d.T, ev_neg[layer].double() @ d.T
        aur.append(torch.from_numpy(auroc(sp.numpy(), sn.numpy(), axis=0)))
        dd.append(_batched_cohens_d(sp, sn))
        al.append(alignment(d, ev_pos[layer], ev_neg[layer]))
    stats = [torch.stack(x) for x in (aur, dd, al)]  # [L, n] each
    return NullDraws(*((x.max(dim=0).values if max_over_layers else x[0]).numpy() for x in stats))


def null_test(name: str, observed: Mapping[str, float], draws: NullDraws, *, max_over_layers: bool = True,
              ceiling: float = AUROC_CEILING) -> NullSummary:
    """Compare the observed statistics (``{"auroc", "cohens_d", "alignment"}``, each the max over the layers when
    the null is) with one null. All three are reported (``q95``/``p_value`` for the AUROC, ``d_*`` and
    ``align_*``); the test that counts (``passes``) is the AUROC one unless the null's AUROC q95 is at ``ceiling``
    (saturated), then the alignment one."""
    q95 = float(np.quantile(draws.auroc, 0.95))
    saturated = q95 >= ceiling
    d_q95, align_q95 = float(np.quantile(draws.cohens_d, 0.95)), float(np.quantile(draws.alignment, 0.95))
    out = NullSummary(
        name=name, n=int(draws.auroc.size), max_over_layers=max_over_layers, observed=float(observed["auroc"]),
        quantiles=tuple((q, float(np.quantile(draws.auroc, q))) for q in NULL_QUANTILES), q95=q95,
        p_value=empirical_p(observed["auroc"], draws.auroc),
        d_observed=float(observed["cohens_d"]), d_q95=d_q95, d_p_value=empirical_p(observed["cohens_d"], draws.cohens_d),
        align_observed=float(observed["alignment"]), align_q95=align_q95,
        align_p_value=empirical_p(observed["alignment"], draws.alignment),
        saturated=saturated, test="alignment" if saturated else "auroc",
        passes=bool(observed["alignment"] > align_q95) if saturated else bool(observed["auroc"] > q95),
    )
    if saturated:
        log.info("%s null: AUROC q95 %.3f is at the ceiling %.3f; separation tested by the alignment (%.3f vs q95 "
                 "%.3f)", name, q95, ceiling, observed["alignment"], align_q95)
    return out


def _null_json(summary: NullSummary, draws: NullDraws) -> dict[str, Any]:
    """One null in the full validation report (validation.json): the summary's statistics plus the draws."""
    return {"n": summary.n, "max_over_layers": summary.max_over_layers, "q95": summary.q95,
            "quantiles": {str(q): v for q, v in summary.quantiles}, "p_value": summary.p_value,
            "beats_null_95": summary.beats_null_95, "observed": summary.observed,
            "d_observed": summary.d_observed, "d_q95": summary.d_q95, "d_p_value": summary.d_p_value,
            "d_beats_null_95": summary.d_beats_null_95, "align_observed": summary.align_observed,
            "align_q95": summary.align_q95, "align_p_value": summary.align_p_value,
            "align_beats_null_95": summary.align_beats_null_95, "saturated": summary.saturated,
            "test": summary.test, "passes": summary.passes,
            "draws": [round(float(x), 4) for x in draws.auroc],
            "d_draws": [round(float(x), 4) for x in draws.cohens_d],
            "align_draws": [round(float(x), 4) for x in draws.alignment]}


SEPARATION_RULE = (f"per null: held-out AUROC > its q95; where the null's AUROC q95 >= {AUROC_CEILING} "
                   "(saturated): alignment cos(v, held-out mean difference) > its q95")


# ---------------------------------------------------------------------- result
@dataclass(frozen=True)
class ValidationResult:
    """Everything the validation measured: the typed :class:`ValidationSummary` a vector file stores, plus the
    null draws and the full steering curves of the report (``to_dict()``, the ``.validation.json`` file)."""

    trait: str
    summary: ValidationSummary
    null_draws: Mapping[str, NullDraws]
    steering: Mapping[int, DoseResponseCurve] = field(default_factory=dict)
    """Full dose-response curve per steered layer (:func:`steering_dose_response`; empty at level quick); read
    back from the ``.validation.json`` with :func:`~difflib_models.persona.contracts.read_steering_curves`."""

    # the summary's fields, for reading
    @property
    def mode(self) -> str:
        return self.summary.mode

    @property
    def level(self) -> str:
        return self.summary.level

    @property
    def layers(self) -> list[int]:
        return [row.layer for row in self.summary.layers]

    @property
    def per_layer(self) -> dict[int, LayerValidation]:
        return {row.layer: row for row in self.summary.layers}

    @property
    def nulls(self) -> dict[str, NullSummary]:
        return {n.name: n for n in self.summary.nulls}

    @property
    def split_half(self) -> dict[int, float]:
        return {r.layer: r.split_half_cos for r in self.summary.layers if r.split_half_cos is not None}

    @property
    def best_auroc_layer(self) -> int:
        return self.summary.best_auroc_layer

    @property
    def selected_layer(self) -> int:
        return self.summary.selected_layer

    @property
    def selection_reason(self) -> str:
        return self.summary.selection_reason

    @property
    def verdict(self) -> str:
        return self.summary.verdict

    @property
    def warnings(self) -> list[str]:
        return list(self.summary.warnings)

    def to_dict(self) -> dict[str, Any]:
        """The full report (JSON-ready): per-layer statistics, nulls with their draws, steering curves."""
        s = self.summary
        return {
            "schema_version": s.schema_version, "trait": self.trait, "mode": s.mode, "layers": self.layers,
            "model": {"name": s.model_name, "weight_hash": s.model_weight_hash},
            "n_eval_pos": s.n_eval_pos, "n_eval_neg": s.n_eval_neg,
            "per_layer": {str(r.layer): {"auroc": r.auroc, "ci_lo": r.auroc_ci[0], "ci_hi": r.auroc_ci[1],
                                         "cohens_d": r.cohens_d, "alignment": r.alignment,
                                         "norm": r.norm, "gap": r.gap, "base_std": r.base_std} for r in s.layers},
            "best_auroc_layer": s.best_auroc_layer,
            "selected_layer": s.selected_layer, "selection_reason": s.selection_reason,
            "nulls": {n.name: _null_json(n, self.null_draws[n.name]) for n in s.nulls},
            "separation_rule": s.separation_rule,
            "split_half": {str(k): v for k, v in self.split_half.items()},
            "steering": {str(k): v.to_json() for k, v in self.steering.items()}, "warnings": list(s.warnings),
            "verdict": s.verdict, "level": s.level,
        }


# ---------------------------------------------------------------------- pieces
def separation(vectors: Mapping[int, torch.Tensor], pos: Mapping[int, torch.Tensor], neg: Mapping[int, torch.Tensor],
               *, n_boot: int = 1000, seed: int = 0) -> dict[int, dict[str, float]]:
    """Per layer: held-out AUROC, its bootstrap CI, Cohen's d of the projections on the unit vector and the
    alignment (cosine of the vector with the held-out mean difference)."""
    out = {}
    for layer, v in vectors.items():
        u = v / v.norm().clamp_min(1e-12)
        sp, sn = (pos[layer] @ u).numpy(), (neg[layer] @ u).numpy()
        lo, hi = bootstrap_auroc_ci(sp, sn, n_boot=n_boot, seed=seed + layer)
        out[layer] = {"auroc": auroc(sp, sn), "ci_lo": lo, "ci_hi": hi, "cohens_d": cohens_d(sp, sn),
                      "alignment": float(alignment(v, pos[layer], neg[layer])), "norm": float(v.norm())}
    return out


def permutation_null(*args: Any, **kwargs: Any) -> np.ndarray:
    """Held-out AUROC draws of :func:`permutation_null_stats` (same arguments): [n]."""
    return permutation_null_stats(*args, **kwargs).auroc


def permutation_null_stats(ext_pos: Mapping[int, torch.Tensor], ext_neg: Mapping[int, torch.Tensor],
                           ev_pos: Mapping[int, torch.Tensor], ev_neg: Mapping[int, torch.Tensor],
                           layers: Sequence[int], *, n: int = 200, seed: int = 0, paired: bool = True,
                           max_over_layers: bool = True) -> NullDraws:
    """Held-out AUROC and d of mean-difference directions re-fitted under permuted extraction labels (max over
    layers)."""
    gen = torch.Generator().manual_seed(seed)
    n_pos = next(iter(ext_pos.values())).shape[0]
    n_neg = next(iter(ext_neg.values())).shape[0]
    paired = paired and n_pos == n_neg
    dirs: dict[int, torch.Tensor] = {}
    for layer in layers:
        x = torch.cat([ext_pos[layer], ext_neg[layer]]).double()
        labels = []
        for _ in range(n):
            # Balanced permutations: any imbalance would leave a multiple of the true class difference in the
            # re-fitted direction, and with a strong trait every draw would then recover it (AUROC ~1).
            if paired:  # swap pos/neg inside exactly half of the pairs
                flip = torch.zeros(n_pos, dtype=torch.bool)
                flip[torch.randperm(n_pos, generator=gen)[: n_pos // 2]] = True
                lab = torch.cat([~flip, flip])
            else:  # each permuted group takes half of the pos and half of the neg samples
                lab = torch.zeros(n_pos + n_neg, dtype=torch.bool)
                lab[torch.randperm(n_pos, generator=gen)[: n_pos // 2]] = True
                lab[n_pos + torch.randperm(n_neg, generator=gen)[: n_neg // 2]] = True
            labels.append(lab)
        lab = torch.stack(labels).double()  # [n, N]
        mp = (lab @ x) / lab.sum(dim=1, keepdim=True).clamp_min(1)
        mn = ((1 - lab) @ x) / (1 - lab).sum(dim=1, keepdim=True).clamp_min(1)
        dirs[layer] = mp - mn  # [n, d]
    return _null_draws(dirs, ev_pos, ev_neg, max_over_layers)


def random_direction_null(*args: Any, **kwargs: Any) -> np.ndarray:
    """Held-out AUROC draws of :func:`random_direction_null_stats` (same arguments): [n]."""
    return random_direction_null_stats(*args, **kwargs).auroc


def random_direction_null_stats(ext_pos: Mapping[int, torch.Tensor], ext_neg: Mapping[int, torch.Tensor],
                                ev_pos: Mapping[int, torch.Tensor], ev_neg: Mapping[int, torch.Tensor],
                                norms: Mapping[int, float], layers: Sequence[int], *, n: int = 200, seed: int = 0,
                                shrinkage: float = 0.1, max_over_layers: bool = True) -> NullDraws:
    """Held-out AUROC and d of norm-matched N(0, Sigma_hat) directions, oriented by the extraction data (max over
    layers)."""
    out: dict[int, torch.Tensor] = {}
    for layer in layers:
        # within-class covariance: the pooled one would contain the trait contrast itself as a top axis
        acts = torch.cat([ext_pos[layer] - ext_pos[layer].mean(0), ext_neg[layer] - ext_neg[layer].mean(0)])
        dirs = covariance_null_directions(acts, n, norm=float(norms[layer]) or 1.0, seed=seed + 7919 * layer,
                                          shrinkage=shrinkage).double()
        sign = torch.sign((ext_pos[layer].double().mean(0) - ext_neg[layer].double().mean(0)) @ dirs.T)
        out[layer] = dirs * torch.where(sign == 0, torch.ones_like(sign), sign)[:, None]
    return _null_draws(out, ev_pos, ev_neg, max_over_layers)


def split_half_stability(pos: Mapping[int, torch.Tensor], neg: Mapping[int, torch.Tensor], layers: Sequence[int],
                         *, aggregator: str = "mean_diff", seed: int = 0) -> dict[int, float]:
    """Cosine between directions fitted on two random halves of the extraction samples (pairs kept together)."""
    n_pos = next(iter(pos.values())).shape[0]
    n_neg = next(iter(neg.values())).shape[0]
    if min(n_pos, n_neg) < 4:
        return {}
    gen = torch.Generator().manual_seed(seed)
    pp = torch.randperm(n_pos, generator=gen)
    pn = pp if n_pos == n_neg else torch.randperm(n_neg, generator=gen)
    out = {}
    for layer in layers:
        a = aggregate(pos[layer][pp[: n_pos // 2]], neg[layer][pn[: n_neg // 2]], aggregator)
        b = aggregate(pos[layer][pp[n_pos // 2 :]], neg[layer][pn[n_neg // 2 :]], aggregator)
        out[layer] = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    return out


def cross_trait_cosines(sets: Mapping[str, PersonaVectorSet | torch.Tensor], layer: int | None = None,
                        *, warn_above: float = COS_WARN) -> tuple[list[str], np.ndarray, list[str]]:
    """Cosine matrix between traits (at ``layer``, default each set's selected layer) and warnings above |cos|."""
    names = list(sets)
    vecs = []
    for name in names:
        s = sets[name]
        v = s if isinstance(s, torch.Tensor) else s.vector(layer)
        vecs.append(v.double() / v.double().norm().clamp_min(1e-12))
    if len({int(v.shape[0]) for v in vecs}) > 1:
        raise ConfigError(bad_value("sets", names, "vectors of one model (same d_model)"))
    m = torch.stack(vecs) @ torch.stack(vecs).T if vecs else torch.zeros(0, 0)
    warnings = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if abs(float(m[i, j])) > warn_above:
                msg = (f"traits {names[i]!r} and {names[j]!r} are entangled: |cos| = {abs(float(m[i, j])):.2f} > "
                       f"{warn_above}; a shift along one also moves the other")
                log.warning(msg)
                warnings.append(msg)
    return names, m.numpy(), warnings


# ---------------------------------------------------------------------- the whole check
def validate_vectors(
    vectors: PersonaVectorSet, features: TraitFeatures, *, level: str = "quick", loaded: Any = None,
    trait: Trait | str | None = None, n_null: int = 200, n_boot: int = 1000, shortlist: int = 3,
    alphas: Sequence[float] = DEFAULT_ALPHAS, seed: int = 0, max_steer_items: int | None = None,
    readout: str = "text", steer_positions: str = "all", steer_depth: tuple[float, float] | None = STEER_DEPTH,
    control_dirs: int = 3, length_normalize: bool = True, max_nll_increase: float = DEFAULT_MAX_NLL_INCREASE,
) -> ValidationResult:
    """Validate ``vectors`` on held-out ``features`` and choose the layer (see the module docstring).

    Reads only the vector set (directions, mode, aggregator, gap, base_std, model identity) and the features
    (:class:`TraitFeatures`, extraction and evaluation split, every layer of ``vectors``); no extractor. The
    features must come from the vectors' model. ``level``: ``"quick"`` = held-out AUROC per layer, nulls and
    split-half stability (no forward); ``"full"`` = plus the steering dose-response at the shortlisted layers on
    ``loaded`` (the vectors' model) with ``trait``'s held-out A/B items (the slow part: progress and an ETA are
    logged per layer)."""
    if level not in VALIDATION_LEVELS:
        raise ConfigError(bad_value("level", level, VALIDATION_LEVELS, "'none' means: do not call validate_vectors"))
    if not isinstance(vectors, PersonaVectorSet):
        raise ConfigError(bad_value("vectors", type(vectors).__name__, "a PersonaVectorSet",
                                    "PersonaExtractor.to_vector_set() or PersonaVectorSet.load(path)"))
    if not isinstance(features, TraitFeatures):
        raise ConfigError(bad_value("features", type(features).__name__, "a TraitFeatures",
                                    "PersonaExtractor.trait_features(loaded, trait)"))
    steer = level == "full"
    if steer and (loaded is None or trait is None):
        raise ConfigError(bad_value("level", level, ["quick", "full with loaded= and trait="],
                                    "The steering dose-response generates with the model on the trait's A/B items."))
    if steer_depth is not None and not (len(steer_depth) == 2 and 0.0 <= steer_depth[0] <= steer_depth[1] <= 1.0):
        raise ConfigError(bad_value("steer_depth", steer_depth, "None or (lo, hi) with 0 <= lo <= hi <= 1",
                                    "The fraction of the model's depth where steering candidates are taken."))
    if control_dirs < 0:
        raise ConfigError(bad_value("control_dirs", control_dirs, ">= 0 (0: no random-direction control)"))
    if n_null < 10:
        raise ConfigError(bad_value("n_null", n_null, ">= 10", "Null percentiles need draws; 200 is the default."))
    if shortlist < 1:
        raise ConfigError(bad_value("shortlist", shortlist, ">= 1"))
    if len(alphas) < 3 or sorted(alphas) != list(alphas):
        raise ConfigError(bad_value("alphas", list(alphas), "at least 3 increasing values, e.g. -1, 0, 1"))
    layers = vectors.layers
    missing = [k for k in layers if k not in features.layers]
    if missing:
        raise ConfigError(bad_value("features", features.layers, f"every layer of the vectors {layers}",
                                    f"no features at layer(s) {missing}"))
    trait = load_trait(trait) if trait is not None else None  # may differ from the file's (another held-out set)
    ext_pos, ext_neg = features.extraction_pos, features.extraction_neg
    ev_pos, ev_neg = features.evaluation_pos, features.evaluation_neg
    per_layer = separation(vectors.vectors, ev_pos, ev_neg, n_boot=n_boot, seed=seed)
    best = max(layers, key=lambda k: (per_layer[k]["auroc"], per_layer[k]["cohens_d"]))
    obs = per_layer[best]["auroc"]
    observed = {"auroc": obs}  # each statistic's max over the layers, like each null draw
    for stat in ("cohens_d", "alignment"):
        finite = [per_layer[k][stat] for k in layers if math.isfinite(per_layer[k][stat])]
        observed[stat] = max(finite, default=float("nan"))
    draws = {"label_permutation": permutation_null_stats(ext_pos, ext_neg, ev_pos, ev_neg, layers, n=n_null,
                                                         seed=seed, paired=vectors.mode != "generate_judge"),
             "random_direction": random_direction_null_stats(ext_pos, ext_neg, ev_pos, ev_neg, vectors.norms,
                                                             layers, n=n_null, seed=seed)}
    nulls = tuple(null_test(name, observed, d, max_over_layers=len(layers) > 1) for name, d in draws.items())
    stability = split_half_stability(ext_pos, ext_neg, layers, aggregator=vectors.aggregator, seed=seed)
    ranked = sorted(_steer_candidates(layers, _n_layers(loaded, layers), steer_depth),
                    key=lambda k: -per_layer[k]["auroc"])[:max(1, shortlist)]
    dose_kw = {"alphas": alphas, "max_items": max_steer_items, "readout": readout, "positions": steer_positions,
               "length_normalize": length_normalize, "max_nll_increase": max_nll_increase}
    steering: dict[int, DoseResponseCurve] = {}
    warnings: list[str] = []
    selected, reason = best, f"highest held-out AUROC ({obs:.3f}); no steering check"
    if steer and trait.has_ab:
        t0 = time.perf_counter()
        for i, layer in enumerate(progress(ranked, desc=f"steering dose-response {trait.id}", total=len(ranked),
                                           unit="layer")):
            steering[layer] = steering_dose_response(loaded, trait, layer, vectors.vectors[layer], **dose_kw)
            done = time.perf_counter() - t0
            log.info("validation %s: steering layer %d done (%d/%d), %.0f s elapsed, ETA %.0f s", trait.id, layer,
                     i + 1, len(ranked), done, done / (i + 1) * (len(ranked) - i - 1))
        good = [k for k in ranked if steering[k].monotone]
        if good:
            selected = max(good, key=lambda k: steering[k].effect)
            if control_dirs:
                steering[selected] = add_random_control(loaded, trait, (ext_pos[selected], ext_neg[selected]),
                                                        selected, steering[selected], n_dirs=control_dirs, seed=seed,
                                                        **dose_kw)
            used = steering[selected].coherent_alphas
            reason = (f"shortlist {ranked} by held-out AUROC; layer {selected} has the largest monotone steering "
                      f"effect (dP(matching) = {steering[selected].effect:+.3f} over the coherent alphas "
                      f"{used[0]:+g}..{used[-1]:+g}) with AUROC {per_layer[selected]['auroc']:.3f}")
        else:
            reason = (f"shortlist {ranked} by held-out AUROC; no shortlisted layer steered monotonically, kept the "
                      f"best-AUROC layer {best} ({obs:.3f})")
            warnings.append("steering did not confirm any shortlisted layer (no monotone dose-response)")
    elif steer:
        reason = f"highest held-out AUROC ({obs:.3f}); the trait has no A/B items for a steering check"
    beats = all(n.passes for n in nulls)
    steered = selected in steering and steering[selected].monotone
    if steered and steering[selected].beats_control is False:
        steered = False
        warnings.append(f"the monotone steering effect at layer {selected} is not larger than that of norm-matched "
                        "random directions: it may be a generic perturbation artefact")
    verdict = "real" if beats and (steered or not steering) else "too_weak"
    if not beats:
        warnings.append("held-out separation does not beat the 95th percentile of every null (AUROC, or the "
                        "alignment where the null's AUROC saturates): the signal is too weak for a verdict on this "
                        "model")
    rows = tuple(LayerValidation(
        layer=k, auroc=per_layer[k]["auroc"], auroc_ci=(per_layer[k]["ci_lo"], per_layer[k]["ci_hi"]),
        cohens_d=per_layer[k]["cohens_d"], alignment=per_layer[k]["alignment"], gap=vectors.gap.get(k),
        base_std=vectors.base_std.get(k), split_half_cos=stability.get(k), norm=per_layer[k]["norm"]) for k in layers)
    summary = ValidationSummary(
        level=level, mode=vectors.mode, model_name=vectors.model.name or None,
        model_weight_hash=vectors.weight_hash, selected_layer=selected, best_auroc_layer=best,
        selection_reason=reason, verdict=verdict, n_eval_pos=int(ev_pos[layers[0]].shape[0]),
        n_eval_neg=int(ev_neg[layers[0]].shape[0]), layers=rows, nulls=nulls,
        steering=tuple(c.summary(k) for k, c in steering.items()), warnings=tuple(warnings),
        separation_rule=SEPARATION_RULE)
    return ValidationResult(trait=trait.id if trait is not None else vectors.trait_id, summary=summary,
                            null_draws=draws, steering=steering)


def _n_layers(loaded: Any, layers: Sequence[int]) -> int:
    """Depth of the vectors' model: the loaded model's (level full), else the highest validated layer + 1."""
    n = getattr(loaded, "n_layers", None)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else max(layers) + 1


def _steer_candidates(layers: Sequence[int], n_layers: int, depth: tuple[float, float] | None) -> list[int]:
    """The extracted layers whose depth ``layer / n_layers`` lies in ``depth`` (all of them if none does)."""
    if depth is None:
        return list(layers)
    inside = [k for k in layers if depth[0] <= k / n_layers <= depth[1]]
    return inside or list(layers)


def add_random_control(loaded: Any, trait: Trait, extraction: tuple[torch.Tensor, torch.Tensor], layer: int,
                       curve: DoseResponseCurve, *, n_dirs: int = 3, seed: int = 0,
                       **dose_kw: Any) -> DoseResponseCurve:
    """Steer along ``n_dirs`` norm-matched random directions from the within-class covariance of the extraction
    features ``(pos [n, d], neg [m, d])`` at ``layer`` (same alphas, positions and readout: pass the curve's
    ``dose_kw``); return ``curve`` with the control and ``beats_control`` (effect > CONTROL_RATIO x the largest
    control |effect|, the control effects taken over the same alphas as the real one: its first to last coherent
    alpha)."""
    pos, neg = extraction
    acts = torch.cat([pos - pos.mean(0), neg - neg.mean(0)])  # within-class: the contrast itself is left out
    used = curve.coherent_alphas
    span = (used[0], used[-1]) if len(used) >= 2 else None  # the alphas the real effect was measured over
    ctrl = random_direction_control(loaded, trait, layer, acts, n_dirs=n_dirs, seed=seed, span=span,
                                    reference_norm=curve.reference_norm, **dose_kw)
    return curve.with_control(ctrl, beats_control=curve.effect > CONTROL_RATIO * ctrl.max_abs_effect)


def extract_and_validate(loaded: Any, trait: Trait | str, *, mode: str = "ab", aggregator: str = "mean_diff",
                         layers: str | Sequence[int] = "all", batch_size: int = 8, level: str = "full",
                         **validate_kwargs: Any) -> tuple[PersonaVectorSet, ValidationResult]:
    """Fit, validate on the held-out split, select the layer; the vector set records the selection and summary."""
    trait = load_trait(trait)
    extractor = PersonaExtractor(mode=mode, aggregator=aggregator, layers=layers, batch_size=batch_size)
    extractor.fit(loaded, trait)
    vs = extractor.to_vector_set()
    result = validate_vectors(vs, extractor.trait_features(loaded, trait), level=level, loaded=loaded, trait=trait,
                              **validate_kwargs)
    return vs.with_validation(result.summary), result
