"""Crosscoder analysis: relative decoder norms and latent classes, decoder cosines, FVE per source, L0, dead latents.

Relative decoder norm of latent i between model a (base) and model b (fine-tuned):
r_i = ||W_dec[b]_i|| / (||W_dec[a]_i|| + ||W_dec[b]_i||) (norms over the model's layers). r ~ 0 base-only,
r ~ 1 fine-tune-only, r ~ 0.5 shared. Everything returns JSON-able dicts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from difflib_models.crosscoder.model import Crosscoder
from difflib_models.crosscoder.sources import PairedActivationSource
from difflib_models.errors import ConfigError, bad_value

CLASSES = ("base_only", "ft_only", "shared", "other", "dead")


@dataclass(frozen=True)
class ClassThresholds:
    """Cut-offs on the relative decoder norm r: base-only r < base_only, ft-only r > ft_only, shared in
    [shared_low, shared_high]; everything else "other"."""

    base_only: float = 0.1
    ft_only: float = 0.9
    shared_low: float = 0.4
    shared_high: float = 0.6

    def __post_init__(self) -> None:
        values = (self.base_only, self.shared_low, self.shared_high, self.ft_only)
        if not all(0 <= v <= 1 for v in values) or not (
            self.base_only <= self.shared_low <= self.shared_high <= self.ft_only
        ):
            raise ConfigError(
                bad_value("thresholds", asdict(self), "0 <= base_only <= shared_low <= shared_high <= ft_only <= 1")
            )


def _model_vectors(cc: Crosscoder, model: int) -> Tensor:
    """[n, n_layers * d] decoder vectors of one model (its layers concatenated)."""
    idx = cc.config.sources_of_model(model)
    return cc.W_dec.detach()[:, idx, :].reshape(cc.n_latents, -1)


def relative_decoder_norm(cc: Crosscoder, *, base: int = 0, ft: int = 1) -> Tensor:
    nb = _model_vectors(cc, base).norm(dim=-1)
    nf = _model_vectors(cc, ft).norm(dim=-1)
    return nf / (nb + nf).clamp_min(1e-12)


def decoder_cosine(cc: Crosscoder, *, base: int = 0, ft: int = 1) -> Tensor:
    """[n] cosine between each latent's base and fine-tuned decoder vectors."""
    return torch.nn.functional.cosine_similarity(_model_vectors(cc, base), _model_vectors(cc, ft), dim=-1, eps=1e-12)


def classify_latents(r: Tensor, thresholds: ClassThresholds | None = None, *, dead: Tensor | None = None) -> list[str]:
    """Class of every latent from its relative decoder norm (``dead`` latents get "dead")."""
    t = thresholds or ClassThresholds()
    out = []
    for i, value in enumerate(r.tolist()):
        if dead is not None and bool(dead[i]):
            out.append("dead")
        elif value < t.base_only:
            out.append("base_only")
        elif value > t.ft_only:
            out.append("ft_only")
        elif t.shared_low <= value <= t.shared_high:
            out.append("shared")
        else:
            out.append("other")
    return out


@torch.no_grad()
def evaluate(cc: Crosscoder, source: PairedActivationSource, *, max_tokens: int = 65536,
             batch_size: int = 4096) -> dict[str, Any]:
    """FVE per source (1 - SSE / variance around the mean), overall FVE, L0, fire counts and dead fraction
    (latents that never fire on the evaluated tokens), with the inference-time activation."""
    cc.eval()
    m = cc.config.n_sources
    sse = torch.zeros(m, dtype=torch.float64)
    s1 = torch.zeros(m, cc.config.d_model, dtype=torch.float64)
    s2 = torch.zeros(m, dtype=torch.float64)
    fires = torch.zeros(cc.n_latents, dtype=torch.long)
    n_tok, l0_sum = 0, 0.0
    batch_size = min(batch_size, source.n_tokens)
    for raw in source.iter_batches(batch_size, shuffle=True, seed=12345):
        x = cc.normalize(raw.float())
        f = cc.encode(x)
        err = x - cc.decode(f)
        sse += err.double().pow(2).sum((0, 2))
        s1 += x.double().sum(0)
        s2 += x.double().pow(2).sum((0, 2))
        active = f > 0
        fires += active.sum(0)
        l0_sum += float(active.sum())
        n_tok += x.shape[0]
        if n_tok >= max_tokens:
            break
    if n_tok == 0:
        raise ConfigError(bad_value("source", "empty", "at least one batch of activations"))
    var = s2 - s1.pow(2).sum(-1) / n_tok
    fve = (1 - sse / var.clamp_min(1e-12)).tolist()
    names = cc.config.source_names or [f"source_{i}" for i in range(m)]
    return {
        "n_tokens": n_tok,
        "fve": float(1 - sse.sum() / var.sum().clamp_min(1e-12)),
        "fve_per_source": dict(zip(names, fve, strict=True)),
        "l0": l0_sum / n_tok,
        "dead_frac": float((fires == 0).float().mean()),
        "fire_counts": fires,
    }


def analyze_crosscoder(
    cc: Crosscoder,
    source: PairedActivationSource | None = None,
    *,
    thresholds: ClassThresholds | None = None,
    base: int = 0,
    ft: int = 1,
    bins: int = 20,
    max_tokens: int = 65536,
) -> dict[str, Any]:
    """The JSON-able summary: classes, r histogram, decoder cosines of shared latents and (with a source)
    FVE / L0 / dead fraction. Dead latents (never fire on the source) are excluded from the classes."""
    t = thresholds or ClassThresholds()
    r = relative_decoder_norm(cc, base=base, ft=ft)
    cos = decoder_cosine(cc, base=base, ft=ft)
    metrics: dict[str, Any] = {}
    dead = None
    if source is not None:
        metrics = evaluate(cc, source, max_tokens=max_tokens)
        fires = metrics.pop("fire_counts")
        dead = fires == 0
    classes = classify_latents(r, t, dead=dead)
    hist = torch.histc(r[dead.logical_not()] if dead is not None else r, bins=bins, min=0.0, max=1.0)
    latents = [
        {"latent": i, "r": round(float(r[i]), 6), "class": c, "decoder_cos": round(float(cos[i]), 6)}
        for i, c in enumerate(classes)
    ]
    if cc.config.exclusive_latents:
        for item in latents:
            item["dedicated"] = cc.config.exclusive_model(item["latent"])
    if source is not None:
        for item, count in zip(latents, fires.tolist(), strict=True):
            item["fires"] = int(count)
    shared_cos = [float(cos[i]) for i, c in enumerate(classes) if c == "shared"]
    return {
        "config": cc.config.to_dict(),
        "thresholds": asdict(t),
        "models": {"base": base, "ft": ft},
        "class_counts": {c: classes.count(c) for c in CLASSES},
        "r_histogram": {"edges": torch.linspace(0, 1, bins + 1).tolist(), "counts": [int(v) for v in hist]},
        "shared_decoder_cos": {
            "mean": sum(shared_cos) / len(shared_cos) if shared_cos else None,
            "low_cos_latents": sorted(
                (i for i, c in enumerate(classes) if c == "shared" and float(cos[i]) < 0.5),
                key=lambda i: float(cos[i]),
            ),
        },
        "metrics": metrics,
        "latents": latents,
    }
