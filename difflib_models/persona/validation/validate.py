"""Is the vector real? Held-out validation, null baselines, steering dose-response and layer selection.

Everything is measured on the trait's EVALUATION split (never the extraction split), spec persona.md section 3:

1. Separation per layer: AUROC of held-out projections pos vs neg (bootstrap 95% CI) and Cohen's d.
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

log = logging.getLogger(__name__)

VALIDATION_LEVELS: tuple[str, ...] = ("quick", "full")
"""``quick``: held-out AUROC, nulls, split-half; ``full``: plus the steering dose-response (see validate_vectors)."""

DEFAULT_ALPHAS: tuple[float, ...] = (-0.3, -0.15, 0.0, 0.15, 0.3)
"""In units of the median residual norm. The spec's +-1, +-2 collapse a 135M model's answers (docs/persona.md)."""
STEER_DEPTH: tuple[float, float] = (0.3, 0.7)
"""Steering candidates: extracted layers at 30-70% of the depth (published optima sit at 40-70%)."""
CONTROL_RATIO = 2.0
COS_WARN = 0.5
AUROC_CEILING = 0.995
"""A null whose AUROC 95th percentile reaches this is saturated: its separation test compares the alignment."""
_dose_summary = dose_summary  # backwards-compatible name (letter readout by default)
__all__ = ["AUROC_CEILING", "VALIDATION_LEVELS", "NullDraws", "ValidationResult", "add_random_control", "auroc", "bootstrap_auroc_ci", "cohens_d", "cross_trait_cosines", "empirical_p",
           "alignment", "extract_and_validate", "null_test", "permutation_null", "permutation_null_stats",
           "random_direction_control", "random_direction_null", "random_direction_null_stats", "separation", "split_half_stability", "steering_dose_response", "validate_vectors"]


# ---------------------------------------------------------------------- statistics
def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score_pos > score_neg) + 0.5 P(tie) (Mann-Whitney), without sklearn."""
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        raise ConfigError(bad_value("scores", "empty class", "at least one pos and one neg score"))
    from scipy.stats import rankdata

    r_pos = rankdata(np.concatenate([pos, neg]))[: pos.size].sum()  # average ranks for ties
    return float((r_pos - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def bootstrap_auroc_ci(pos: np.ndarray, neg: np.ndarray, n_boot: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the AUROC (classes resampled separately)."""
    rng = np.random.default_rng(seed)
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    ip = rng.integers(0, pos.size, size=(n_boot, pos.size))
    ineg = rng.integers(0, neg.size, size=(n_boot, neg.size))
    p, n = pos[ip], neg[ineg]  # [B, np], [B, nn]
    gt = (p[:, :, None] > n[:, None, :]).mean(axis=(1, 2)) + 0.5 * (p[:, :, None] == n[:, None, :]).mean(axis=(1, 2))
    lo, hi = np.quantile(gt, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


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


def _batched_auroc(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """AUROC of many score columns at once: pos [n, K], neg [m, K] -> [K]."""
    gt = (pos[:, None, :] > neg[None, :, :]).double().mean(dim=(0, 1))
    eq = (pos[:, None, :] == neg[None, :, :]).double().mean(dim=(0, 1))
    return gt + 0.5 * eq


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
        aur.append(_batched_auroc(sp, sn))
        dd.append(_batched_cohens_d(sp, sn))
        al.append(alignment(d, ev_pos[layer], ev_neg[layer]))
    stats = [torch.stack(x) for x in (aur, dd, al)]  # [L, n] each
    return NullDraws(*((x.max(dim=0).values if max_over_layers else x[0]).numpy() for x in stats))


def null_test(name: str, observed: Mapping[str, float], draws: NullDraws, *, max_over_layers: bool = True,
              ceiling: float = AUROC_CEILING) -> dict[str, Any]:
    """Compare the observed statistics (``{"auroc", "cohens_d", "alignment"}``, each the max over the layers when
    the null is) with one null. All three are reported (``q95``/``p_value``/``beats_null_95`` for the AUROC,
    ``d_*`` and ``align_*``); the test that counts (``passes``) is the AUROC one unless the null's AUROC q95 is at
    ``ceiling`` (saturated), then the alignment one."""
    q95 = float(np.quantile(draws.auroc, 0.95))
    saturated = q95 >= ceiling
    out: dict[str, Any] = {"n": int(draws.auroc.size), "max_over_layers": max_over_layers, "q95": q95,
                           "p_value": empirical_p(observed["auroc"], draws.auroc),
                           "beats_null_95": bool(observed["auroc"] > q95), "observed": observed["auroc"]}
    for key, stat, arr in (("d", "cohens_d", draws.cohens_d), ("align", "alignment", draws.alignment)):
        sq95 = float(np.quantile(arr, 0.95))
        out.update({f"{key}_observed": observed[stat], f"{key}_q95": sq95,
                    f"{key}_p_value": empirical_p(observed[stat], arr),
                    f"{key}_beats_null_95": bool(observed[stat] > sq95)})
    out.update({"saturated": saturated, "test": "alignment" if saturated else "auroc",
                "draws": [round(float(x), 4) for x in draws.auroc],
                "d_draws": [round(float(x), 4) for x in draws.cohens_d],
                "align_draws": [round(float(x), 4) for x in draws.alignment]})
    out["passes"] = out["align_beats_null_95"] if saturated else out["beats_null_95"]
    if saturated:
        log.info("%s null: AUROC q95 %.3f is at the ceiling %.3f; separation tested by the alignment (%.3f vs q95 "
                 "%.3f)", name, q95, ceiling, observed["alignment"], out["align_q95"])
    return out


# ---------------------------------------------------------------------- result
@dataclass
class ValidationResult:
    """Everything the validation measured; ``to_dict()`` is the machine-readable JSON."""

    trait: str
    mode: str
    layers: list[int]
    per_layer: dict[int, dict[str, float]]
    best_auroc_layer: int
    selected_layer: int
    selection_reason: str
    nulls: dict[str, Any]
    split_half: dict[int, float]
    steering: dict[int, dict[str, Any]] = field(default_factory=dict)
    n_eval_pos: int = 0
    n_eval_neg: int = 0
    warnings: list[str] = field(default_factory=list)
    verdict: str = "too_weak"
    level: str = "full"
    """``"quick"`` (held-out separation, nulls, split-half) or ``"full"`` (plus the steering dose-response)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "trait": self.trait, "mode": self.mode, "layers": self.layers,
            "n_eval_pos": self.n_eval_pos, "n_eval_neg": self.n_eval_neg,
            "per_layer": {str(k): v for k, v in self.per_layer.items()},
            "best_auroc_layer": self.best_auroc_layer,
            "selected_layer": self.selected_layer, "selection_reason": self.selection_reason,
            "nulls": self.nulls, "split_half": {str(k): v for k, v in self.split_half.items()},
            "steering": {str(k): v for k, v in self.steering.items()}, "warnings": self.warnings,
            "verdict": self.verdict, "level": self.level,
        }

    def summary(self) -> dict[str, Any]:
        """The compact part stored in a vector file's sidecar."""
        sel = self.per_layer[self.selected_layer]
        return {
            "split": "evaluation", "n_eval_pos": self.n_eval_pos, "n_eval_neg": self.n_eval_neg,
            "selected_layer": self.selected_layer, "auroc": sel["auroc"], "auroc_ci": [sel["ci_lo"], sel["ci_hi"]],
            "cohens_d": sel["cohens_d"], "split_half_cos": self.split_half.get(self.selected_layer),
            "nulls": {k: {kk: vv for kk, vv in v.items() if not kk.endswith("draws")} for k, v in self.nulls.items()},
            "separation_rule": (f"per null: held-out AUROC > its q95; where the null's AUROC q95 >= {AUROC_CEILING} "
                                "(saturated): alignment cos(v, held-out mean difference) > its q95"),
            "steering": self.steering.get(self.selected_layer), "warnings": self.warnings,
            "verdict": self.verdict, "selection_reason": self.selection_reason,
            "auroc_by_layer": {str(k): v["auroc"] for k, v in self.per_layer.items()}, "level": self.level,
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
    loaded: Any, extractor: PersonaExtractor, trait: Trait | str | None = None, *,
    n_null: int = 200, n_boot: int = 1000, shortlist: int = 3, steer: bool = True,
    alphas: Sequence[float] = DEFAULT_ALPHAS, seed: int = 0, max_steer_items: int | None = None,
    eval_features: tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]] | None = None,
    readout: str = "text", steer_positions: str = "all", steer_depth: tuple[float, float] | None = STEER_DEPTH,
    control_dirs: int = 3, length_normalize: bool = True, max_nll_increase: float = DEFAULT_MAX_NLL_INCREASE,
    level: str | None = None,
) -> ValidationResult:
    """Validate a fitted extractor on the trait's held-out split and choose the layer (see module docstring).

    ``level``: ``"quick"`` = held-out AUROC per layer, nulls and split-half stability (no forward beyond the
    evaluation features); ``"full"`` = plus the steering dose-response at the shortlisted layers (the slow part:
    many generations; progress and an ETA are logged per layer). None keeps ``steer`` (True -> full)."""
    if level is not None and level not in VALIDATION_LEVELS:
        raise ConfigError(bad_value("level", level, VALIDATION_LEVELS, "'none' means: do not call validate_vectors"))
    steer = steer if level is None else level == "full"
    extractor._check_fitted()
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
    trait = load_trait(trait) if trait is not None else extractor.trait_
    if trait.id != extractor.trait_.id:
        raise ConfigError(bad_value("trait", trait.id, [extractor.trait_.id], "Validate with the fitted trait."))
    layers = extractor.layers_
    ev_pos, ev_neg = eval_features or extractor.features(loaded, trait, "evaluation")
    per_layer = separation(extractor.vectors_, ev_pos, ev_neg, n_boot=n_boot, seed=seed)
    best = max(layers, key=lambda k: (per_layer[k]["auroc"], per_layer[k]["cohens_d"]))
    obs = per_layer[best]["auroc"]
    observed = {"auroc": obs}  # each statistic's max over the layers, like each null draw
    for stat in ("cohens_d", "alignment"):
        finite = [per_layer[k][stat] for k in layers if math.isfinite(per_layer[k][stat])]
        observed[stat] = max(finite, default=float("nan"))
    perm = permutation_null_stats(extractor.pos_features_, extractor.neg_features_, ev_pos, ev_neg, layers,
                                  n=n_null, seed=seed, paired=extractor.mode != "generate_judge")
    rand = random_direction_null_stats(extractor.pos_features_, extractor.neg_features_, ev_pos, ev_neg,
                                       extractor.norms_, layers, n=n_null, seed=seed)
    nulls = {name: null_test(name, observed, draws, max_over_layers=len(layers) > 1)
             for name, draws in (("label_permutation", perm), ("random_direction", rand))}
    stability = split_half_stability(extractor.pos_features_, extractor.neg_features_, layers,
                                     aggregator=extractor.aggregator, seed=seed)
    ranked = sorted(_steer_candidates(layers, _n_layers(loaded, layers), steer_depth),
                    key=lambda k: -per_layer[k]["auroc"])[:max(1, shortlist)]
    dose_kw = {"alphas": alphas, "max_items": max_steer_items, "readout": readout, "positions": steer_positions,
               "length_normalize": length_normalize, "max_nll_increase": max_nll_increase}
    steering: dict[int, dict[str, Any]] = {}
    warnings: list[str] = []
    selected, reason = best, f"highest held-out AUROC ({obs:.3f}); no steering check"
    if steer and trait.has_ab:
        t0 = time.perf_counter()
        for i, layer in enumerate(progress(ranked, desc=f"steering dose-response {trait.id}", total=len(ranked),
                                           unit="layer")):
            steering[layer] = steering_dose_response(loaded, trait, layer, extractor.vectors_[layer], **dose_kw)
            done = time.perf_counter() - t0
            log.info("validation %s: steering layer %d done (%d/%d), %.0f s elapsed, ETA %.0f s", trait.id, layer,
                     i + 1, len(ranked), done, done / (i + 1) * (len(ranked) - i - 1))
        good = [k for k in ranked if steering[k]["monotone"]]
        if good:
            selected = max(good, key=lambda k: steering[k]["effect"])
            if control_dirs:
                add_random_control(loaded, trait, extractor, selected, steering[selected], n_dirs=control_dirs,
                                   seed=seed, **dose_kw)
            used = [a for a, ok in zip(steering[selected]["alphas"], steering[selected]["coherent"], strict=True) if ok]
            reason = (f"shortlist {ranked} by held-out AUROC; layer {selected} has the largest monotone steering "
                      f"effect (dP(matching) = {steering[selected]['effect']:+.3f} over the coherent alphas "
                      f"{used[0]:+g}..{used[-1]:+g}) with AUROC {per_layer[selected]['auroc']:.3f}")
        else:
            reason = (f"shortlist {ranked} by held-out AUROC; no shortlisted layer steered monotonically, kept the "
                      f"best-AUROC layer {best} ({obs:.3f})")
            warnings.append("steering did not confirm any shortlisted layer (no monotone dose-response)")
    elif steer:
        reason = f"highest held-out AUROC ({obs:.3f}); the trait has no A/B items for a steering check"
    beats = all(n["passes"] for n in nulls.values())
    steered = selected in steering and steering[selected]["monotone"]
    if steered and not steering[selected].get("beats_control", True):
        steered = False
        warnings.append(f"the monotone steering effect at layer {selected} is not larger than that of norm-matched "
                        "random directions: it may be a generic perturbation artefact")
    verdict = "real" if beats and (steered or not steering) else "too_weak"
    if not beats:
        warnings.append("held-out separation does not beat the 95th percentile of every null (AUROC, or the "
                        "alignment where the null's AUROC saturates): the signal is too weak for a verdict on this "
                        "model")
    return ValidationResult(trait=trait.id, mode=extractor.mode, layers=list(layers), per_layer=per_layer,
                            best_auroc_layer=best, selected_layer=selected, selection_reason=reason, nulls=nulls,
                            split_half=stability, steering=steering, n_eval_pos=int(ev_pos[layers[0]].shape[0]),
                            n_eval_neg=int(ev_neg[layers[0]].shape[0]), warnings=warnings, verdict=verdict,
                            level="full" if steer else "quick")


def _n_layers(loaded: Any, layers: Sequence[int]) -> int:
    n = getattr(loaded, "n_layers", None)
    return int(n) if isinstance(n, int) and n > 0 else max(layers) + 1


def _steer_candidates(layers: Sequence[int], n_layers: int, depth: tuple[float, float] | None) -> list[int]:
    """The extracted layers whose depth ``layer / n_layers`` lies in ``depth`` (all of them if none does)."""
    if depth is None:
        return list(layers)
    inside = [k for k in layers if depth[0] <= k / n_layers <= depth[1]]
    return inside or list(layers)


def add_random_control(loaded: Any, trait: Trait, extractor: PersonaExtractor, layer: int, curve: dict[str, Any],
                       *, n_dirs: int = 3, seed: int = 0, **dose_kw: Any) -> dict[str, Any]:
    """Steer along ``n_dirs`` norm-matched random directions from the within-class covariance of the extractor's
    features at ``layer`` (same alphas, positions and readout: pass the curve's ``dose_kw``); record the control in
    ``curve["control"]`` and ``curve["beats_control"]`` (effect > CONTROL_RATIO x the largest control |effect|, the
    control effects taken over the same alphas as the real one: its first to last coherent alpha)."""
    pos, neg = extractor.pos_features_[layer], extractor.neg_features_[layer]
    acts = torch.cat([pos - pos.mean(0), neg - neg.mean(0)])  # within-class: the contrast itself is left out
    used = [a for a, ok in zip(curve["alphas"], curve["coherent"], strict=True) if ok]
    span = (used[0], used[-1]) if len(used) >= 2 else None  # the alphas the real effect was measured over
    ctrl = random_direction_control(loaded, trait, layer, acts, n_dirs=n_dirs, seed=seed, span=span,
                                    reference_norm=curve["reference_norm"], **dose_kw)
    curve["control"] = ctrl
    curve["beats_control"] = bool(curve["effect"] > CONTROL_RATIO * ctrl["max_abs_effect"])
    return curve


def extract_and_validate(loaded: Any, trait: Trait | str, *, mode: str = "ab", aggregator: str = "mean_diff",
                         layers: str | Sequence[int] = "all", batch_size: int = 8,
                         **validate_kwargs: Any) -> tuple[PersonaVectorSet, ValidationResult]:
    """Fit, validate on the held-out split, select the layer; the vector set records the selection and summary."""
    extractor = PersonaExtractor(mode=mode, aggregator=aggregator, layers=layers, batch_size=batch_size)
    extractor.fit(loaded, trait)
    result = validate_vectors(loaded, extractor, **validate_kwargs)
    vs = extractor.to_vector_set(selected_layer=result.selected_layer, selection_reason=result.selection_reason,
                                 validation=result.summary())
    return vs, result
