"""Sparse encoder gradient and sparse decoder for TopK / BatchTopK crosscoders.

With k active latents out of n per token only the encoder *forward* has to be dense; everything else touches the
active (token, latent) pairs only, in O(nnz * M * d) instead of O(B * n * M * d):

- decode forward: ``x_hat[b] = sum_j f_j W_dec[c_j]`` with ``F.embedding_bag(mode="sum", per_sample_weights=f)``
  (no [nnz, M*d] gather is materialised);
- decode backward: the gradient of the active values is a sampled dense-dense product (``<g[b], W_dec[c]>`` only at
  the active pairs, ``torch.sparse.sampled_addmm`` on the CSR pattern) and the decoder weight gradient is another
  embedding bag over the output gradient, grouped by latent;
- encoder backward: :func:`active_encoder_values` returns the pre-activations of the active pairs and builds the
  encoder weight gradient latent by latent from the active tokens only (an embedding bag over the batch).

:class:`SparsePattern` holds the active pairs as CSR (sorted by token, then latent) plus the permutation that
groups them by latent; build it once per batch and reuse it for the encoder and the decoder.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def _offsets(sorted_keys: Tensor, n_bags: int) -> tuple[Tensor, Tensor]:
    counts = torch.bincount(sorted_keys, minlength=n_bags)
    ends = torch.cumsum(counts, 0)
    return ends - counts, ends


@dataclass
class SparsePattern:
    """Active (token, latent) pairs of a batch: CSR by token plus a by-latent grouping."""

    rows: Tensor
    cols: Tensor
    batch: int
    n_latents: int
    row_offsets: Tensor
    crow: Tensor
    by_col: Tensor
    col_offsets: Tensor

    @classmethod
    def build(cls, rows: Tensor, cols: Tensor, batch: int, n_latents: int) -> SparsePattern:
        """``rows``/``cols`` of unique pairs; they are re-sorted by (row, col)."""
        key = rows.long() * n_latents + cols.long()
        key = torch.sort(key).values
        rows = torch.div(key, n_latents, rounding_mode="floor")
        cols = key - rows * n_latents
        row_offsets, row_ends = _offsets(rows, batch)
        crow = torch.cat([row_ends.new_zeros(1), row_ends])
        by_col = torch.argsort(cols, stable=True)
        col_offsets, _ = _offsets(cols[by_col], n_latents)
        return cls(rows, cols, batch, n_latents, row_offsets, crow, by_col, col_offsets)

    @property
    def nnz(self) -> int:
        return int(self.cols.numel())

    def dense(self, vals: Tensor) -> Tensor:
        """The [batch, n_latents] matrix with ``vals`` at the active pairs (for tests and analysis)."""
        out = vals.new_zeros(self.batch, self.n_latents)
        return out.index_put((self.rows, self.cols), vals)

    def sampled_dot(self, a: Tensor, b: Tensor) -> Tensor:
        """``(a @ b.T)[rows, cols]`` computed only at the active pairs. a: [batch, D], b: [n_latents, D]."""
        if self.nnz == 0:
            return a.new_zeros(0)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            pattern = torch.sparse_csr_tensor(
                self.crow, self.cols, a.new_ones(self.nnz), (self.batch, self.n_latents), check_invariants=False
            )
        return torch.sparse.sampled_addmm(pattern, a, b.t(), beta=0.0).values()

    def scatter_by_latent(self, table: Tensor, weights: Tensor) -> Tensor:
        """``[n_latents, D]``: for each latent c, sum over its active pairs j of ``weights[j] * table[rows[j]]``."""
        order = self.by_col
        return F.embedding_bag(
            self.rows[order], table, self.col_offsets, mode="sum", per_sample_weights=weights[order].to(table.dtype)
        )


class _SparseDecode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vals: Tensor, w_dec: Tensor, pattern: SparsePattern):  # type: ignore[override]
        ctx.pattern = pattern
        ctx.save_for_backward(vals, w_dec)
        if pattern.nnz == 0:
            return w_dec.new_zeros(pattern.batch, w_dec.shape[1])
        return F.embedding_bag(
            pattern.cols, w_dec, pattern.row_offsets, mode="sum", per_sample_weights=vals.to(w_dec.dtype)
        )

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        vals, w_dec = ctx.saved_tensors
        pattern: SparsePattern = ctx.pattern
        grad = grad.contiguous()
        grad_vals = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_vals = pattern.sampled_dot(grad, w_dec).to(vals.dtype)
        if ctx.needs_input_grad[1]:
            grad_w = pattern.scatter_by_latent(grad, vals) if pattern.nnz else torch.zeros_like(w_dec)
        return grad_vals, grad_w, None


def sparse_decode(vals: Tensor, w_dec_flat: Tensor, pattern: SparsePattern) -> Tensor:
    """``pattern.dense(vals) @ w_dec_flat`` (no bias), touching only the active rows of ``w_dec_flat``."""
    return _SparseDecode.apply(vals, w_dec_flat, pattern)


class _ActiveEncoderValues(torch.autograd.Function):
    """Pre-activations of the active pairs; ``x`` is data (no gradient), as activations of frozen models are."""

    @staticmethod
    def forward(ctx, x: Tensor, w_enc: Tensor, b_enc: Tensor, pre_vals: Tensor, pattern: SparsePattern):  # type: ignore[override]
        ctx.pattern = pattern
        ctx.save_for_backward(x)
        return pre_vals.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        pattern: SparsePattern = ctx.pattern
        grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_w = pattern.scatter_by_latent(x, grad).t() if pattern.nnz else None
            if grad_w is None:
                grad_w = x.new_zeros(x.shape[1], pattern.n_latents)
        if ctx.needs_input_grad[2]:
            grad_b = grad.new_zeros(pattern.n_latents).index_add_(0, pattern.cols, grad)
        return None, grad_w, grad_b, None, None


def active_encoder_values(
    x_flat: Tensor, w_enc_flat: Tensor, b_enc: Tensor, pre: Tensor, pattern: SparsePattern
) -> Tensor:
    """``pre[rows, cols]`` with gradients to ``w_enc_flat``/``b_enc`` computed from the active pairs only.

    ``pre`` must be ``x_flat @ w_enc_flat + b_enc`` computed without autograd."""
    return _ActiveEncoderValues.apply(x_flat, w_enc_flat, b_enc, pre[pattern.rows, pattern.cols], pattern)


def topk_pairs(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(rows, cols) of the k largest ``scores`` of each row."""
    batch = scores.shape[0]
    cols = torch.topk(scores, k, dim=1, sorted=False).indices
    rows = torch.arange(batch, device=scores.device).repeat_interleave(k)
    return rows, cols.reshape(-1)


def batch_topk_pairs(scores: Tensor, k_total: int) -> tuple[Tensor, Tensor]:
    """(rows, cols) of the ``k_total`` largest entries of the whole batch of ``scores``, in row-major order.

    A threshold estimated on a subsample of rows (set a little low) selects ~1.25 x ``k_total`` candidates in one
    pass, and an exact k-th value among them trims the surplus: much faster on CPU than a top-k over B * n entries.
    Exact (ties at the cut resolved by position); if the estimate keeps too few entries, :func:`_two_stage_topk`
    does it the slow way."""
    batch, n = scores.shape
    k_total = min(k_total, scores.numel())
    stride = max(1, batch // 256)
    sub = scores[::stride].reshape(-1)
    k_sub = min(sub.numel(), int(math.ceil(1.25 * k_total * sub.numel() / scores.numel())) + 1)
    cut = torch.topk(sub, k_sub, sorted=False).values.min()
    rows, cols = torch.nonzero(scores >= cut, as_tuple=True)
    if rows.numel() < k_total:
        return _two_stage_topk(scores, k_total)
    surplus = rows.numel() - k_total
    if surplus:
        vals = scores[rows, cols]
        kth = torch.kthvalue(vals, surplus + 1).values  # the smallest value that is kept
        keep = vals >= kth
        extra = int(keep.sum()) - k_total
        if extra > 0:  # ties at the cut: drop the first ones
            ties = torch.nonzero(vals == kth).flatten()[:extra]
            keep[ties] = False
        rows, cols = rows[keep], cols[keep]
    return rows, cols


def _two_stage_topk(scores: Tensor, k_total: int) -> tuple[Tensor, Tensor]:
    """Each row's top ``4 * k_total / B`` candidates, then the batch top ``k_total`` of those (exact; falls back
    to the flat top-k when a row could hold more winners than candidates)."""
    batch, n = scores.shape
    per_row = min(n, max(1, 4 * -(-k_total // batch)))
    if per_row < n:
        cand_vals, cand_cols = torch.topk(scores, per_row, dim=1, sorted=False)
        top_vals, top_idx = torch.topk(cand_vals.reshape(-1), k_total, sorted=False)
        kth = top_vals.min()
        if not bool((cand_vals.min(dim=1).values > kth).any()):
            rows = torch.div(top_idx, per_row, rounding_mode="floor")
            return rows, cand_cols.reshape(-1)[top_idx]
    flat = torch.topk(scores.reshape(-1), k_total, sorted=False).indices
    return torch.div(flat, n, rounding_mode="floor"), flat % n


def threshold_pairs(scores: Tensor, theta: float) -> tuple[Tensor, Tensor]:
    """(rows, cols) of the entries of ``scores`` above ``theta`` (BatchTopK inference)."""
    rows, cols = torch.nonzero(scores > theta, as_tuple=True)
    return rows, cols
