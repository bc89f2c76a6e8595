"""The sparse decoder/encoder-gradient path must equal the dense reference, values and gradients."""

from __future__ import annotations

import pytest
import torch

from difflib_models.crosscoder.config import CrosscoderConfig
from difflib_models.crosscoder.model import Crosscoder
from difflib_models.crosscoder.sparse import (
    SparsePattern,
    _two_stage_topk,
    batch_topk_pairs,
    sparse_decode,
    topk_pairs,
)


def _pair(activation: str, dead: bool):
    cfg = CrosscoderConfig(d_model=16, n_sources=2, dict_size=96, activation=activation, k=5, aux_k=6,
                           dead_steps=3, seed=1)
    a, b = Crosscoder(cfg, sparse=True), Crosscoder(cfg, sparse=False)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        for m in (a, b):
            m.b_enc.fill_(0.05)
            if dead:  # half of the latents dead, so the AuxK path runs too
                m.steps_since_fired[::2] = 10
    return a, b


@pytest.mark.parametrize("activation", ["topk", "batchtopk"])
@pytest.mark.parametrize("dead", [False, True])
def test_sparse_equals_dense_values_and_grads(activation, dead):
    a, b = _pair(activation, dead)
    x = torch.randn(40, 2, 16)
    outs = []
    for model in (a, b):
        out = model.training_step_output(x)
        out.loss.backward()
        outs.append(out)
    assert torch.allclose(outs[0].loss, outs[1].loss, rtol=1e-5, atol=1e-6)
    assert torch.equal(outs[0].fired, outs[1].fired)
    if dead:
        assert outs[0].aux > 0 and torch.allclose(outs[0].aux, outs[1].aux, rtol=1e-5)
    for name, p in a.named_parameters():
        q = dict(b.named_parameters())[name]
        assert p.grad is not None and q.grad is not None, name
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6), (name, (p.grad - q.grad).abs().max())
        assert p.grad.abs().sum() > 0, name


def test_sparse_decode_matches_dense_matmul_and_autograd():
    torch.manual_seed(3)
    batch, n, width = 7, 20, 9
    rows, cols = topk_pairs(torch.rand(batch, n), 4)
    pattern = SparsePattern.build(rows, cols, batch, n)
    vals = torch.rand(pattern.nnz, requires_grad=True)
    w = torch.randn(n, width, requires_grad=True)
    out = sparse_decode(vals, w, pattern)
    vals2 = vals.detach().clone().requires_grad_()
    w2 = w.detach().clone().requires_grad_()
    ref = pattern.dense(vals2) @ w2
    assert torch.allclose(out, ref, atol=1e-6)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    assert torch.allclose(vals.grad, vals2.grad, atol=1e-5)
    assert torch.allclose(w.grad, w2.grad, atol=1e-5)
    # rows of latents that never fired get exactly zero gradient
    unused = torch.ones(n, dtype=torch.bool)
    unused[pattern.cols] = False
    assert unused.any() and torch.all(w.grad[unused] == 0)


@pytest.mark.parametrize("shape", [(64, 500), (8, 40), (3, 7), (1024, 64)])
@pytest.mark.parametrize("method", ["threshold", "two_stage"])
def test_batch_topk_pairs_is_exact(shape, method):
    scores = torch.randn(*shape)
    scores[0] += 5.0  # one row with far more winners than its share
    scores[1, :3] = scores[1, 3]  # ties
    k_total = 3 * shape[0]
    rows, cols = (batch_topk_pairs if method == "threshold" else _two_stage_topk)(scores, k_total)
    assert rows.numel() == k_total
    got = torch.zeros_like(scores, dtype=torch.bool)
    got[rows, cols] = True
    # the selection is the top k_total up to ties at the cut
    kth = torch.topk(scores.reshape(-1), k_total).values.min()
    assert torch.all(scores[got] >= kth) and torch.all(scores[~got] <= kth)
