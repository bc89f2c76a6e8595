"""The activation reader's position modes equal HF hidden states; early stop and duplicate calls."""

from __future__ import annotations

import pytest
import torch

from difflib_models.capture.capture import forward_inputs
from difflib_models.errors import ConfigError
from difflib_models.hooks import (
    BlockReader,
    EarlyStop,
    all_positions,
    last_token_index,
    projection,
    read_blocks,
    run_forward,
    token_index,
    token_mean,
    token_rows,
)
from difflib_models.models.hookpoints import find_final_norm, get_block
from tests.helpers.tiny_models import make_tiny, tiny_batch


def _hidden_states(model: torch.nn.Module, ids: torch.Tensor, am: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return model(**forward_inputs(model, ids, am), output_hidden_states=True).hidden_states


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_position_modes_equal_hidden_states(padding_side: str) -> None:
    model = make_tiny("llama")
    ids, am = tiny_batch([5, 3, 4], padding_side=padding_side)
    hs = _hidden_states(model, ids, am)
    kwargs = forward_inputs(model, ids, am)
    last = last_token_index(am)
    resp = am.bool() & (torch.arange(am.shape[1]) >= 2)  # a "response" mask: real tokens from column 2
    resp[:, -1] |= am.bool()[:, -1]
    unit = torch.randn(32, generator=torch.Generator().manual_seed(3))
    unit = unit / unit.norm()
    modes = {
        "all": all_positions(torch.float32),
        "rows": token_rows(am.bool()),
        "index": token_index(last),
        "mean": token_mean(resp),
        "proj": projection(unit),
    }
    for layer in (0, 1):
        ref = hs[layer + 1].float()
        with torch.no_grad():
            got = {k: read_blocks(model, [layer], sel, early_stop=False, **kwargs)[layer] for k, sel in modes.items()}
        torch.testing.assert_close(got["all"], ref, atol=0, rtol=0)
        torch.testing.assert_close(got["rows"], ref[am.bool()], atol=0, rtol=0)
        torch.testing.assert_close(got["index"], ref[torch.arange(3), last], atol=0, rtol=0)
        w = resp.float()[..., None]
        torch.testing.assert_close(got["mean"], (ref * w).sum(1) / w.sum(1), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(got["proj"], ref @ unit, atol=1e-6, rtol=1e-5)
    assert last.tolist() == ([4, 2, 3] if padding_side == "right" else [4, 4, 4])


def test_early_stop_skips_the_rest_and_gives_the_same_values() -> None:
    model = make_tiny("llama")
    ids, am = tiny_batch([5, 3])
    kwargs = forward_inputs(model, ids, am)
    ran: list[str] = []
    with torch.no_grad(), BlockReader(model, [2], all_positions()) as spy:  # a second reader as a spy
        spy.select = lambda h: ran.append("block2") or h
        stopped = read_blocks(model, [0, 1], token_index(last_token_index(am)), **kwargs)
        assert ran == []  # default: stopped after blocks.1 (nothing after it ran)
        full = read_blocks(model, [0, 1], token_index(last_token_index(am)), early_stop=False, **kwargs)
        assert ran == ["block2"]
    for layer in (0, 1):
        torch.testing.assert_close(stopped[layer], full[layer], atol=0, rtol=0)
    assert all(not get_block(model, i)._forward_hooks for i in range(3))


def test_duplicate_calls_in_one_forward_are_ignored_and_keep_first() -> None:
    model = make_tiny("llama")
    ids, am = tiny_batch([4, 4])
    block = get_block(model, 0)
    with torch.no_grad(), BlockReader(model, [0], all_positions(), once_per_forward=True) as reader:
        run_forward(model, **forward_inputs(model, ids, am))
        first = reader.results[0].clone()
        hidden = torch.randn(2, 4, 32)
        pos = (torch.arange(4)[None, :].expand(2, 4), None)
        block(hidden, attention_mask=None, position_embeddings=model.model.rotary_emb(hidden, pos[0]))
        assert reader.n_duplicate_calls == 1 and torch.equal(reader.results[0], first)
    ids2, _ = tiny_batch([4, 4], seed=1)
    with torch.no_grad(), BlockReader(model, [0], all_positions(), keep_first=True) as reader:
        run_forward(model, **forward_inputs(model, ids, am))
        run_forward(model, **forward_inputs(model, ids2, am))
        assert torch.equal(reader.results[0], first)


def test_reader_contract_errors() -> None:
    model = make_tiny("llama")
    with pytest.raises(ConfigError, match="layers"):
        BlockReader(model, [3], all_positions())
    with pytest.raises(ConfigError, match="token_mask"):
        token_mean(torch.tensor([[True, False], [False, False]]))
    reader = BlockReader(model, [0], all_positions())
    with reader, pytest.raises(Exception, match="not re-entrant"):
        reader.attach()
    assert not reader.active
    norm = find_final_norm(model)
    assert norm is not None and not norm._forward_hooks
    assert EarlyStop.decide(model, False).allowed is False and EarlyStop.decide(model).allowed is True
