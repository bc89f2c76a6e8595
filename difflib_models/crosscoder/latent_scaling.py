"""Latent Scaling (Minder, Dumas et al. 2025): is a "fine-tune-only" latent really absent from the base model?

For latent j with fine-tuned decoder vector d_j (its model's layers concatenated) and activation f_j(x), fit by
least squares how much of d_j a target y(x) contains:

    beta = sum_x f_j(x) <d_j, y(x)> / sum_x f_j(x)^2 ||d_j||^2

for y = each model's reconstruction (minus b_dec), each model's reconstruction error with latent j's own
contribution added back, and each model's activation (minus b_dec). Ratios nu = beta_base / beta_ft:
``nu_recon`` (latent decoupling: other latents rebuild the direction in the base model), ``nu_err`` (complete
shrinkage: the base model carries the direction but the crosscoder leaves it in the error), ``nu_act``.
nu near 0: truly fine-tune-specific; near 1: an artifact. A latent is flagged an artifact when nu_recon or
nu_err exceeds ``artifact_threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from difflib_models.crosscoder.analysis import classify_latents, relative_decoder_norm
from difflib_models.crosscoder.model import Crosscoder
from difflib_models.crosscoder.sources import PairedActivationSource
from difflib_models.errors import ConfigError, bad_value

TARGETS = ("recon", "err", "act")


def _ratio(num: float, den: float) -> float | None:
    return None if abs(den) < 1e-12 else num / den


@torch.no_grad()
def latent_scaling(
    cc: Crosscoder,
    source: PairedActivationSource,
    latents: Sequence[int] | None = None,
    *,
    base: int = 0,
    ft: int = 1,
    artifact_threshold: float = 0.3,
    max_tokens: int = 65536,
    batch_size: int = 4096,
) -> dict[str, Any]:
    """Betas and nu ratios for ``latents`` (default: every latent classified ft-only). JSON-able result:
    ``{"latents": {j: {...}}, "n_artifacts": int, ...}``."""
    if not 0 < artifact_threshold < 1:
        raise ConfigError(bad_value("artifact_threshold", artifact_threshold, "a number in (0, 1)"))
    cfg = cc.config
    if latents is None:
        classes = classify_latents(relative_decoder_norm(cc, base=base, ft=ft))
        latents = [i for i, c in enumerate(classes) if c == "ft_only"]
    latents = [int(j) for j in latents]
    bad = [j for j in latents if not 0 <= j < cc.n_latents]
    if bad:
        raise ConfigError(bad_value("latents", bad, f"indices in 0..{cc.n_latents - 1}"))
    result: dict[str, Any] = {"artifact_threshold": artifact_threshold, "models": {"base": base, "ft": ft},
                              "latents": {}, "n_artifacts": 0}
    if not latents:
        return result
    cc.eval()
    src = {base: cfg.sources_of_model(base), ft: cfg.sources_of_model(ft)}
    idx = torch.tensor(latents)
    w_dec = cc.W_dec.detach()
    d_j = w_dec[idx][:, src[ft], :].reshape(len(latents), -1)  # [J, L*d] fine-tuned decoder vectors
    own = {side: (d_j * w_dec[idx][:, src[side], :].reshape(len(latents), -1)).sum(-1) for side in (base, ft)}
    num = {(side, t): torch.zeros(len(latents), dtype=torch.float64) for side in (base, ft) for t in TARGETS}
    den = torch.zeros(len(latents), dtype=torch.float64)
    n_tok, n_active = 0, torch.zeros(len(latents), dtype=torch.long)
    for raw in source.iter_batches(min(batch_size, source.n_tokens), shuffle=True, seed=54321):
        x = cc.normalize(raw.float())
        f = cc.encode(x)
        x_hat = cc.decode(f)
        f_j = f[:, idx]  # [B, J]
        den += (f_j.double().pow(2) * d_j.double().pow(2).sum(-1)).sum(0)
        n_active += (f_j > 0).sum(0)
        for side in (base, ft):
            b = cc.b_dec.detach()[src[side]].reshape(-1)
            xs = x[:, src[side], :].reshape(x.shape[0], -1)
            xh = x_hat[:, src[side], :].reshape(x.shape[0], -1)
            proj = {
                "recon": (xh - b) @ d_j.T,
                "err": (xs - xh) @ d_j.T + f_j * own[side],
                "act": (xs - b) @ d_j.T,
            }
            for t in TARGETS:
                num[(side, t)] += (f_j.double() * proj[t].double()).sum(0)
        n_tok += x.shape[0]
        if n_tok >= max_tokens:
            break
    n_art = 0
    for pos, j in enumerate(latents):
        entry: dict[str, Any] = {"n_active": int(n_active[pos])}
        d = float(den[pos])
        for t in TARGETS:
            bb = _ratio(float(num[(base, t)][pos]), d)
            bf = _ratio(float(num[(ft, t)][pos]), d)
            entry[f"beta_{t}_base"] = bb
            entry[f"beta_{t}_ft"] = bf
            entry[f"nu_{t}"] = None if bb is None or bf is None else _ratio(bb, bf)
        nus = [entry["nu_recon"], entry["nu_err"]]
        entry["artifact"] = bool(any(v is not None and v > artifact_threshold for v in nus))
        entry["measurable"] = d > 0
        n_art += entry["artifact"]
        result["latents"][j] = entry
    result["n_artifacts"] = n_art
    result["n_tokens"] = n_tok
    return result
