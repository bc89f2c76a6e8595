"""Residual edits add or replace exactly what they say and leave no hook behind."""

from __future__ import annotations

import pytest
import torch

from difflib_models.capture.capture import forward_inputs
from difflib_models.hooks import add_to_block, all_positions, read_blocks, replace_in_block
from difflib_models.models.hookpoints import get_block
from tests.helpers.tiny_models import make_tiny, tiny_batch


def _read(model: torch.nn.Module, ids: torch.Tensor, am: torch.Tensor, layer: int) -> torch.Tensor:
    with torch.no_grad():
        return read_blocks(model, [layer], all_positions(), early_stop=False, **forward_inputs(model, ids, am))[layer]


def test_add_to_block_at_all_or_masked_positions() -> None:
    model = make_tiny("llama")
    ids, am = tiny_batch([5, 3])
    clean = _read(model, ids, am, 1)
    delta = torch.randn(32, generator=torch.Generator().manual_seed(1))
    block = get_block(model, 1)
    with add_to_block(block, delta):
        torch.testing.assert_close(_read(model, ids, am, 1), clean + delta, atol=1e-6, rtol=0)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 3] = mask[1, 0] = True
    with add_to_block(block, delta, mask):
        got = _read(model, ids, am, 1)
    torch.testing.assert_close(got, clean + mask[..., None].float() * delta, atol=1e-6, rtol=0)
    assert not block._forward_hooks
    torch.testing.assert_close(_read(model, ids, am, 1), clean, atol=0, rtol=0)


def test_replace_in_block_changes_the_next_block_and_cleans_up_on_error() -> None:
    model = make_tiny("llama")
    ids, am = tiny_batch([4, 4])
    mask = torch.zeros(2, 4, dtype=torch.bool)
    mask[:, 2] = True
    values = torch.randn(2, 32, generator=torch.Generator().manual_seed(2))
    block = get_block(model, 0)
    clean_next = _read(model, ids, am, 1)
    with replace_in_block(block, mask, values):
        got0, got1 = _read(model, ids, am, 0), _read(model, ids, am, 1)
    torch.testing.assert_close(got0[mask], values, atol=0, rtol=0)
    assert not torch.allclose(got1, clean_next)  # downstream blocks see the replaced stream
    with pytest.raises(RuntimeError, match="boom"), replace_in_block(block, mask, values):
        raise RuntimeError("boom")
    assert not block._forward_hooks
