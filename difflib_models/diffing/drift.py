"""Per-layer drift between base and fine-tuned activations, and next-token KL per position.

Layer drift (streamed over a paired store or given tensors, accumulated in float64):

- ``mean_diff_norm``: ``||mean(ft) - mean(base)||`` and ``relative_mean_diff`` (divided by the base RMS norm);
- ``mean_cosine``: mean over tokens of ``cos(base_t, ft_t)``;
- ``relative_mse``: ``E||ft - base||^2 / E||base||^2``;
- ``cka``: linear CKA between the token-by-feature matrices (Kornblith et al. 2019):
  ``||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred X (base) and Y (ft); 1 for identical
  activations (or any rotation/isotropic scaling of them).

Next-token KL: ``KL(P_ft || P_base)`` of the next-token distributions at every real token, summarised by mean,
max, position bucket and the positions that changed most.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from difflib_models.capture.capture import forward_inputs
from difflib_models.diffing.pair import ModelPair
from difflib_models.errors import ConfigError, bad_value
from difflib_models.hooks import probe_mode
from difflib_models.progress import progress

DEFAULT_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class LayerDrift:
    layer: int
    n_tokens: int
    mean_diff_norm: float
    relative_mean_diff: float
    mean_cosine: float
    relative_mse: float
    cka: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DriftAccumulator:
    """Streaming sums for :class:`LayerDrift` (feed ``[N, d]`` chunks of base and ft activations)."""

    def __init__(self, d_model: int) -> None:
        self.d = d_model
        self.n = 0
        self.sum_b = torch.zeros(d_model, dtype=torch.float64)
        self.sum_f = torch.zeros(d_model, dtype=torch.float64)
        self.sq_b = 0.0
        self.sq_diff = 0.0
        self.cos_sum = 0.0
        self.bb = torch.zeros(d_model, d_model, dtype=torch.float64)
        self.ff = torch.zeros(d_model, d_model, dtype=torch.float64)
        self.bf = torch.zeros(d_model, d_model, dtype=torch.float64)

    def update(self, base: torch.Tensor, ft: torch.Tensor) -> None:
        if base.shape != ft.shape or base.dim() != 2 or base.shape[1] != self.d:
            raise ConfigError(
                bad_value("ft.shape", tuple(ft.shape), f"the base shape {tuple(base.shape)} = [N, {self.d}]")
            )
        b, f = base.double(), ft.double()
        self.n += b.shape[0]
        self.sum_b += b.sum(0)
        self.sum_f += f.sum(0)
        self.sq_b += float(b.pow(2).sum())
        self.sq_diff += float((f - b).pow(2).sum())
        self.cos_sum += float(torch.nn.functional.cosine_similarity(b, f, dim=-1, eps=1e-12).sum())
        self.bb += b.T @ b
        self.ff += f.T @ f
        self.bf += b.T @ f

    def result(self, layer: int) -> LayerDrift:
        if self.n == 0:
            raise ConfigError(bad_value("activations", "0 tokens", "at least one token"))
        n = self.n
        mb, mf = self.sum_b / n, self.sum_f / n
        diff = float((mf - mb).norm())
        base_rms = math.sqrt(self.sq_b / n)
        cbb = self.bb - n * torch.outer(mb, mb)
        cff = self.ff - n * torch.outer(mf, mf)
        cbf = self.bf - n * torch.outer(mb, mf)
        denom = float(cbb.norm() * cff.norm())
        cka = float(cbf.pow(2).sum()) / denom if denom > 0 else float("nan")
        return LayerDrift(
            layer=layer,
            n_tokens=n,
            mean_diff_norm=diff,
            relative_mean_diff=diff / base_rms if base_rms > 0 else float("nan"),
            mean_cosine=self.cos_sum / n,
            relative_mse=self.sq_diff / self.sq_b if self.sq_b > 0 else float("nan"),
            cka=min(cka, 1.0) if cka == cka else cka,
        )


def drift_from_tensors(base: torch.Tensor, ft: torch.Tensor, layer: int = 0) -> LayerDrift:
    acc = DriftAccumulator(base.shape[-1])
    acc.update(base.reshape(-1, base.shape[-1]), ft.reshape(-1, ft.shape[-1]))
    return acc.result(layer)


def drift_from_store(store: Any, layers: Sequence[int] | None = None, *, batch_size: int = 8192) -> list[LayerDrift]:
    """:class:`LayerDrift` for each layer of a paired store (one streaming pass per layer)."""
    if list(store.sides) != ["base", "finetuned"]:
        raise ConfigError(bad_value("store.sides", store.sides, [["base", "finetuned"]], "use a paired store"))
    out = []
    for layer in layers if layers is not None else store.layers:
        acc = DriftAccumulator(store.d_model)
        for batch in store.iter_batches(batch_size, layers=[layer]):
            acc.update(batch["acts"][:, 0, 0], batch["acts"][:, 1, 0])
        out.append(acc.result(layer))
    return out


@torch.no_grad()
def next_token_kl(
    pair: ModelPair,
    texts: Sequence[str],
    *,
    batch_size: int = 8,
    max_length: int = 128,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
    top_n: int = 10,
) -> dict[str, Any]:
    """``KL(P_ft || P_base)`` (nats) of the next-token distributions at every real token of ``texts``.

    Returns ``{"n_tokens", "mean", "max", "by_position_bucket": {"0-0": mean, ...}, "top": [...]}``; positions
    count from each text's first token; ``top`` lists the ``top_n`` tokens with the largest KL (prompt id,
    position, the context up to the token, the token)."""
    edges = sorted(set(int(b) for b in buckets))
    if not edges or edges[0] != 0:
        raise ConfigError(bad_value("buckets", list(buckets), "sorted bucket starts beginning with 0"))
    kl_sum = torch.zeros(len(edges), dtype=torch.float64)
    kl_cnt = torch.zeros(len(edges), dtype=torch.long)
    total, count, kl_max = 0.0, 0, 0.0
    best: list[tuple[float, int, int]] = []
    encoded: dict[int, list[int]] = {}
    edges_t = torch.tensor(edges)
    n_batches = math.ceil(len(texts) / batch_size)
    for pids, ids, mask in progress(
        pair.batches(texts, batch_size=batch_size, max_length=max_length), desc="next-token KL", total=n_batches
    ):
        logp = {}
        for side in ("base", "finetuned"):
            with pair.side(side) as model, probe_mode(model):
                out = model(**forward_inputs(model, ids, mask))
                logp[side] = torch.log_softmax(out.logits.float().cpu(), dim=-1)
        kl = (logp["finetuned"].exp() * (logp["finetuned"] - logp["base"])).sum(-1).clamp_min(0.0)  # [B, T]
        real = mask.bool()
        pos = (mask.cumsum(1) - 1).clamp_min(0)
        vals, where = kl[real].double(), pos[real]
        bucket = torch.bucketize(where, edges_t, right=True) - 1
        kl_sum.index_add_(0, bucket, vals)
        kl_cnt.index_add_(0, bucket, torch.ones_like(bucket))
        total += float(vals.sum())
        count += int(vals.numel())
        kl_max = max(kl_max, float(vals.max())) if vals.numel() else kl_max
        rows, cols = real.nonzero(as_tuple=True)
        k = min(top_n, vals.numel())
        if k:
            top = torch.topk(vals, k)
            for v, j in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                best.append((v, pids[int(rows[j])], int(cols[j])))
            best = sorted(best, reverse=True)[:top_n]
        for row, p in enumerate(pids):
            if any(b[1] == p for b in best):
                encoded[p] = ids[row][mask[row].bool()].tolist()
    if count == 0:
        raise ConfigError(bad_value("texts", f"{len(texts)} texts", "texts with at least one token"))
    names = [f"{lo}-{hi - 1}" for lo, hi in zip(edges, [*edges[1:], None], strict=True) if hi is not None]
    names.append(f"{edges[-1]}+")
    tok = pair.tokenizer
    top_rows = []
    for v, p, position in best:
        ids_p = encoded.get(p, [])
        top_rows.append(
            {
                "kl": v,
                "prompt_id": p,
                "position": position,
                "context": tok.decode(ids_p[: position + 1]) if ids_p else "",
                "token": tok.decode(ids_p[position : position + 1]) if ids_p else "",
            }
        )
    return {
        "direction": "KL(P_finetuned || P_base), nats",
        "n_tokens": count,
        "mean": total / count,
        "max": kl_max,
        "by_position_bucket": {
            name: (float(s / c) if c > 0 else None)
            for name, s, c in zip(names, kl_sum.tolist(), kl_cnt.tolist(), strict=True)
        },
        "top": top_rows,
    }
