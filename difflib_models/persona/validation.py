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
3. :func:`cross_trait_cosines`: cosine matrix between traits' unit vectors; a warning above |cos| 0.5.
4. Steering dose-response at shortlisted layers on held-out A/B items (:mod:`~difflib_models.persona.dose_response`):
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
selected layer beats the 95th percentile of both nulls and (when a steering check ran) steers monotonically and
more than the random-direction control; otherwise ``"too_weak"``: no verdict on a trait shift should be made.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from difflib_models.errors import ConfigError, bad_value
from difflib_models.persona.dose_response import (
    DEFAULT_MAX_NLL_INCREASE,
    dose_summary,
    random_direction_control,
    steering_dose_response,
)
from difflib_models.persona.extraction import PersonaExtractor, aggregate
from difflib_models.persona.shift import covariance_null_directions
from difflib_models.persona.traits import Trait, load_trait
from difflib_models.persona.vectors import PersonaVectorSet

log = logging.getLogger(__name__)

DEFAULT_ALPHAS: tuple[float, ...] = (-0.3, -0.15, 0.0, 0.15, 0.3)
"""In units of the median residual norm. The spec's +-1, +-2 collapse a 135M model's answers (docs/persona.md)."""
STEER_DEPTH: tuple[float, float] = (0.3, 0.7)
"""Steering candidates: extracted layers at 30-70% of the depth (published optima sit at 40-70%)."""
CONTROL_RATIO = 2.0
COS_WARN = 0.5
_dose_summary = dose_summary  # backwards-compatible name (letter readout by default)
__all__ = ["ValidationResult", "add_random_control", "auroc", "bootstrap_auroc_ci", "cohens_d", "cross_trait_cosines", "empirical_p",
           "extract_and_validate", "permutation_null", "random_direction_control", "random_direction_null",
           "separation", "split_half_stability", "steering_dose_response", "validate_vectors"]


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "trait": self.trait, "mode": self.mode, "layers": self.layers,
            "n_eval_pos": self.n_eval_pos, "n_eval_neg": self.n_eval_neg,
            "per_layer": {str(k): v for k, v in self.per_layer.items()},
            "best_auroc_layer": self.best_auroc_layer,
            "selected_layer": self.selected_layer, "selection_reason": self.selection_reason,
            "nulls": self.nulls, "split_half": {str(k): v for k, v in self.split_half.items()},
            "steering": {str(k): v for k, v in self.steering.items()}, "warnings": self.warnings,
            "verdict": self.verdict,
        }

    def summary(self) -> dict[str, Any]:
        """The compact part stored in a vector file's sidecar."""
        sel = self.per_layer[self.selected_layer]
        return {
            "split": "evaluation", "n_eval_pos": self.n_eval_pos, "n_eval_neg": self.n_eval_neg,
            "selected_layer": self.selected_layer, "auroc": sel["auroc"], "auroc_ci": [sel["ci_lo"], sel["ci_hi"]],
            "cohens_d": sel["cohens_d"], "split_half_cos": self.split_half.get(self.selected_layer),
            "nulls": {k: {kk: vv for kk, vv in v.items() if kk != "draws"} for k, v in self.nulls.items()},
            "steering": self.steering.get(self.selected_layer), "warnings": self.warnings,
            "verdict": self.verdict, "selection_reason": self.selection_reason,
            "auroc_by_layer": {str(k): v["auroc"] for k, v in self.per_layer.items()},
        }


# ---------------------------------------------------------------------- pieces
def separation(vectors: Mapping[int, torch.Tensor], pos: Mapping[int, torch.Tensor], neg: Mapping[int, torch.Tensor],
               *, n_boot: int = 1000, seed: int = 0) -> dict[int, dict[str, float]]:
    """Per layer: held-out AUROC, its bootstrap CI and Cohen's d of the projections on the unit vector."""
    out = {}
    for layer, v in vectors.items():
        u = v / v.norm().clamp_min(1e-12)
        sp, sn = (pos[layer] @ u).numpy(), (neg[layer] @ u).numpy()
        lo, hi = bootstrap_auroc_ci(sp, sn, n_boot=n_boot, seed=seed + layer)
        out[layer] = {"auroc": auroc(sp, sn), "ci_lo": lo, "ci_hi": hi, "cohens_d": cohens_d(sp, sn),
                      "norm": float(v.norm())}
    return out


def permutation_null(ext_pos: Mapping[int, torch.Tensor], ext_neg: Mapping[int, torch.Tensor],
                     ev_pos: Mapping[int, torch.Tensor], ev_neg: Mapping[int, torch.Tensor], layers: Sequence[int],
                     *, n: int = 200, seed: int = 0, paired: bool = True, max_over_layers: bool = True) -> np.ndarray:
    """Held-out AUROC of mean-difference directions re-fitted under permuted extraction labels: [n] (max over layers)."""
    gen = torch.Generator().manual_seed(seed)
    n_pos = next(iter(ext_pos.values())).shape[0]
    n_neg = next(iter(ext_neg.values())).shape[0]
    paired = paired and n_pos == n_neg
    per_layer = []
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
        dirs = mp - mn  # [n, d]
        per_layer.append(_batched_auroc(ev_pos[layer].double() @ dirs.T, ev_neg[layer].double() @ dirs.T))
    stacked = torch.stack(per_layer)  # [L, n]
    return (stacked.max(dim=0).values if max_over_layers else stacked[0]).numpy()


def random_direction_null(ext_pos: Mapping[int, torch.Tensor], ext_neg: Mapping[int, torch.Tensor],
                          ev_pos: Mapping[int, torch.Tensor], ev_neg: Mapping[int, torch.Tensor],
                          norms: Mapping[int, float], layers: Sequence[int], *, n: int = 200, seed: int = 0,
                          shrinkage: float = 0.1, max_over_layers: bool = True) -> np.ndarray:
    """Held-out AUROC of norm-matched N(0, Sigma_hat) directions, oriented by the extraction data: [n]."""
    per_layer = []
    for layer in layers:
        # within-class covariance: the pooled one would contain the trait contrast itself as a top axis
        acts = torch.cat([ext_pos[layer] - ext_pos[layer].mean(0), ext_neg[layer] - ext_neg[layer].mean(0)])
        dirs = covariance_null_directions(acts, n, norm=float(norms[layer]) or 1.0, seed=seed + 7919 * layer,
                                          shrinkage=shrinkage).double()
        sign = torch.sign((ext_pos[layer].double().mean(0) - ext_neg[layer].double().mean(0)) @ dirs.T)
        dirs = dirs * torch.where(sign == 0, torch.ones_like(sign), sign)[:, None]
        per_layer.append(_batched_auroc(ev_pos[layer].double() @ dirs.T, ev_neg[layer].double() @ dirs.T))
    stacked = torch.stack(per_layer)
    return (stacked.max(dim=0).values if max_over_layers else stacked[0]).numpy()


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
) -> ValidationResult:
    """Validate a fitted extractor on the trait's held-out split and choose the layer (see module docstring)."""
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
    perm = permutation_null(extractor.pos_features_, extractor.neg_features_, ev_pos, ev_neg, layers, n=n_null,
                            seed=seed, paired=extractor.mode != "generate_judge")
    rand = random_direction_null(extractor.pos_features_, extractor.neg_features_, ev_pos, ev_neg,
                                 extractor.norms_, layers, n=n_null, seed=seed)
    nulls = {}
    for name, draws in (("label_permutation", perm), ("random_direction", rand)):
        q95 = float(np.quantile(draws, 0.95))
        nulls[name] = {"n": int(draws.size), "max_over_layers": len(layers) > 1, "q95": q95,
                       "p_value": empirical_p(obs, draws), "beats_null_95": bool(obs > q95), "observed": obs,
                       "draws": [round(float(x), 4) for x in draws]}
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
        for layer in ranked:
            steering[layer] = steering_dose_response(loaded, trait, layer, extractor.vectors_[layer], **dose_kw)
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
    beats = all(n["beats_null_95"] for n in nulls.values())
    steered = selected in steering and steering[selected]["monotone"]
    if steered and not steering[selected].get("beats_control", True):
        steered = False
        warnings.append(f"the monotone steering effect at layer {selected} is not larger than that of norm-matched "
                        "random directions: it may be a generic perturbation artefact")
    verdict = "real" if beats and (steered or not steering) else "too_weak"
    if not beats:
        warnings.append("held-out AUROC does not beat the 95th percentile of every null: the signal is too weak "
                        "for a verdict on this model")
    return ValidationResult(trait=trait.id, mode=extractor.mode, layers=list(layers), per_layer=per_layer,
                            best_auroc_layer=best, selected_layer=selected, selection_reason=reason, nulls=nulls,
                            split_half=stability, steering=steering, n_eval_pos=int(ev_pos[layers[0]].shape[0]),
                            n_eval_neg=int(ev_neg[layers[0]].shape[0]), warnings=warnings, verdict=verdict)


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
