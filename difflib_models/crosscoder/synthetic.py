"""Paired activations generated from a known dictionary, to validate crosscoders and Latent Scaling.

Every planted latent i has a base direction u_i and a fine-tuned direction v_i (unit vectors, or zero where the
latent is absent) and a sparse non-negative coefficient c_i(x) per token:
x_base = sum_i c_i^base(x) u_i + noise, x_ft = sum_i c_i^ft(x) v_i + noise.

Kinds: ``shared`` (u = v, same coefficients), ``ft_only`` (u = 0), ``base_only`` (v = 0), ``changed`` (u and v
differ, cosine ``changed_cos``), and ``artifact``: the same direction in both models on the same tokens, but the
base coefficient is decoupled from the fine-tuned one (independent magnitude, and missing on a fraction of the
tokens). A crosscoder may show an artifact latent as fine-tune-heavy although the base model carries the
direction; Latent Scaling must reveal that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from difflib_models.errors import ConfigError, bad_value

KINDS = ("shared", "ft_only", "base_only", "changed", "artifact")


@dataclass
class SyntheticPairs:
    """Generated activations and their ground truth."""

    acts: Tensor
    """[N, 2, d]: source 0 = base, source 1 = fine-tuned."""
    base_dirs: Tensor
    """[L, d] base direction of each planted latent (zero row where absent)."""
    ft_dirs: Tensor
    """[L, d] fine-tuned direction of each planted latent (zero row where absent)."""
    kinds: list[str]
    coeffs_base: Tensor
    """[N, L]"""
    coeffs_ft: Tensor
    """[N, L]"""
    meta: dict = field(default_factory=dict)

    def indices(self, kind: str) -> list[int]:
        return [i for i, k in enumerate(self.kinds) if k == kind]


def _unit(gen: torch.Generator, n: int, d: int) -> Tensor:
    v = torch.randn(n, d, generator=gen)
    return v / v.norm(dim=-1, keepdim=True)


def make_synthetic_pairs(
    d_model: int = 32,
    *,
    n_shared: int = 16,
    n_ft_only: int = 4,
    n_base_only: int = 4,
    n_changed: int = 4,
    n_artifact: int = 1,
    n_tokens: int = 20_000,
    p_active: float = 0.06,
    changed_cos: float = 0.3,
    artifact_base_keep: float = 0.8,
    noise: float = 0.02,
    seed: int = 0,
) -> SyntheticPairs:
    """Generate ``n_tokens`` paired activations from a planted dictionary (see the module docstring)."""
    counts = {"shared": n_shared, "ft_only": n_ft_only, "base_only": n_base_only, "changed": n_changed,
              "artifact": n_artifact}
    for name, value in counts.items():
        if value < 0:
            raise ConfigError(bad_value(f"n_{name}", value, "an integer >= 0"))
    if d_model < 2 or n_tokens < 1:
        raise ConfigError(bad_value("d_model/n_tokens", (d_model, n_tokens), "d_model >= 2 and n_tokens >= 1"))
    if not 0 < p_active <= 1:
        raise ConfigError(bad_value("p_active", p_active, "a probability in (0, 1]"))
    if not -1 < changed_cos < 1:
        raise ConfigError(bad_value("changed_cos", changed_cos, "a cosine in (-1, 1)"))
    gen = torch.Generator().manual_seed(seed)
    kinds = [k for k in KINDS for _ in range(counts[k])]
    n_lat = len(kinds)
    if n_lat == 0:
        raise ConfigError(bad_value("planted latents", 0, "at least one"))
    dirs = _unit(gen, n_lat, d_model)
    base_dirs, ft_dirs = dirs.clone(), dirs.clone()
    for i, kind in enumerate(kinds):
        if kind == "ft_only":
            base_dirs[i] = 0
        elif kind == "base_only":
            ft_dirs[i] = 0
        elif kind == "changed":
            other = torch.randn(d_model, generator=gen)
            other = other - (other @ dirs[i]) * dirs[i]
            other = other / other.norm()
            ft_dirs[i] = changed_cos * dirs[i] + (1 - changed_cos**2) ** 0.5 * other
    active = torch.rand(n_tokens, n_lat, generator=gen) < p_active
    mags = 0.5 + 1.5 * torch.rand(n_tokens, n_lat, generator=gen)
    coeffs_ft = active * mags
    coeffs_base = coeffs_ft.clone()
    art = torch.tensor([k == "artifact" for k in kinds])
    if art.any():
        keep = torch.rand(n_tokens, int(art.sum()), generator=gen) < artifact_base_keep
        indep = 0.5 + 1.5 * torch.rand(n_tokens, int(art.sum()), generator=gen)
        coeffs_base[:, art] = active[:, art] * keep * indep
    x_base = coeffs_base @ base_dirs + noise * torch.randn(n_tokens, d_model, generator=gen)
    x_ft = coeffs_ft @ ft_dirs + noise * torch.randn(n_tokens, d_model, generator=gen)
    acts = torch.stack([x_base, x_ft], dim=1)
    meta = {"d_model": d_model, "n_tokens": n_tokens, "p_active": p_active, "changed_cos": changed_cos,
            "artifact_base_keep": artifact_base_keep, "noise": noise, "seed": seed, "counts": counts}
    return SyntheticPairs(acts, base_dirs, ft_dirs, kinds, coeffs_base, coeffs_ft, meta)
