"""Position selection on left/right padded batches."""

from __future__ import annotations

import pytest
import torch

from difflib_models.capture.capture import capture_batch
from difflib_models.capture.positions import Positions, parse_positions, select_mask
from difflib_models.errors import ConfigError
from tests.helpers.tiny_models import make_tiny, tiny_batch

LENGTHS = [4, 7, 2]
BOS = 1


def _rows(mask: torch.Tensor, am: torch.Tensor) -> list[list[int]]:
    """Selected positions per row, counted from the first real token."""
    out = []
    for row in range(mask.shape[0]):
        start = int(am[row].nonzero()[0, 0]) if am[row].any() else 0
        out.append([int(t) - start for t in mask[row].nonzero()[:, 0]])
    return out


@pytest.mark.parametrize("side", ["left", "right"])
def test_all_skips_bos_and_padding(side: str) -> None:
    ids, am = tiny_batch(LENGTHS, padding_side=side)
    mask = select_mask("all", am, input_ids=ids, bos_token_id=BOS)
    assert _rows(mask, am) == [[1, 2, 3], [1, 2, 3, 4, 5, 6], [1]]
    assert not (mask & ~am.bool()).any()
    mask = select_mask("all", am, skip_bos=False, input_ids=ids, bos_token_id=BOS)
    assert torch.equal(mask, am.bool())
    # no BOS in the row -> nothing is skipped
    ids2, am2 = tiny_batch(LENGTHS, padding_side=side, bos_id=None)
    assert torch.equal(select_mask("all", am2, input_ids=ids2, bos_token_id=BOS), am2.bool())


@pytest.mark.parametrize("side", ["left", "right"])
def test_last_prompt(side: str) -> None:
    ids, am = tiny_batch(LENGTHS, padding_side=side)
    mask = select_mask("last_prompt", am)
    assert _rows(mask, am) == [[3], [6], [1]]
    mask = select_mask("last_prompt", am, prompt_lengths=[2, 5, 2])
    assert _rows(mask, am) == [[1], [4], [1]]
    # a prompt longer than its truncated row falls back to the last real token
    assert _rows(select_mask("last_prompt", am, prompt_lengths=[9, 1, 2]), am) == [[3], [0], [1]]
    if side == "left":  # the last column is the last token of every row
        assert mask[:, -1].tolist() == [False, False, True]
        assert select_mask("last_prompt", am)[:, -1].all()


@pytest.mark.parametrize("side", ["left", "right"])
def test_response(side: str) -> None:
    ids, am = tiny_batch(LENGTHS, padding_side=side)
    mask = select_mask("response", am, prompt_lengths=torch.tensor([2, 5, 2]))
    assert _rows(mask, am) == [[2, 3], [5, 6], []]
    with pytest.raises(ConfigError, match="prompt_lengths"):
        select_mask("response", am)
    with pytest.raises(ConfigError, match="one length per row"):
        select_mask("response", am, prompt_lengths=[1, 2])
    with pytest.raises(ConfigError, match=">= 1"):
        select_mask("response", am, prompt_lengths=[0, 2, 1])


@pytest.mark.parametrize("side", ["left", "right"])
def test_first_k(side: str) -> None:
    ids, am = tiny_batch(LENGTHS, padding_side=side)
    mask = select_mask("first_k:3", am, input_ids=ids, bos_token_id=BOS)
    assert _rows(mask, am) == [[1, 2, 3], [1, 2, 3], [1]]
    mask = select_mask("first_k:3", am, skip_bos=False)
    assert _rows(mask, am) == [[0, 1, 2], [0, 1, 2], [0, 1]]


def test_empty_rows_select_nothing() -> None:
    am = torch.tensor([[0, 0, 0], [1, 1, 0]])
    ids = torch.tensor([[0, 0, 0], [1, 5, 0]])
    for spec in ("all", "last_prompt", "first_k:2"):
        mask = select_mask(spec, am, input_ids=ids, bos_token_id=BOS)
        assert not mask[0].any()
    assert select_mask("last_prompt", am)[1].tolist() == [False, True, False]


def test_parse_positions() -> None:
    assert parse_positions("all") == Positions("all")
    assert parse_positions(" Last_Prompt ") == Positions("last_prompt")
    assert parse_positions("first_k:16") == Positions("first_k", 16)
    assert str(parse_positions("first_k:16")) == "first_k:16"
    assert parse_positions(Positions("response")).needs_prompt_lengths
    for bad in ("first_k", "first_k:0", "first_k:x", "last", ""):
        with pytest.raises(ConfigError, match="first_k:K"):
            parse_positions(bad)
    with pytest.raises(ConfigError):
        Positions("first_k", None)
    with pytest.raises(ConfigError):
        Positions("all", 3)


@pytest.mark.parametrize("side", ["left", "right"])
def test_capture_batch_positions(side: str) -> None:
    model = make_tiny("llama")
    ids, am = tiny_batch(LENGTHS, padding_side=side)
    full = capture_batch(model, ids, am, [1], skip_bos=False)
    resp = capture_batch(model, ids, am, [1], positions="response", prompt_lengths=[2, 5, 1])
    assert resp.pos_index.tolist() == [2, 3, 5, 6, 1]
    assert resp.seq_index.tolist() == [0, 0, 1, 1, 2]
    keep = [(int(s), int(p)) for s, p in zip(resp.seq_index, resp.pos_index, strict=True)]
    pairs = [(int(s), int(p)) for s, p in zip(full.seq_index, full.pos_index, strict=True)]
    rows = torch.tensor([pairs.index(k) for k in keep])
    torch.testing.assert_close(resp.acts[1], full.acts[1][rows], atol=0, rtol=0)
    assert torch.equal(resp.token_ids, full.token_ids[rows])
    last = capture_batch(model, ids, am, [1], positions="last_prompt")
    assert last.pos_index.tolist() == [3, 6, 1] and last.seq_index.tolist() == [0, 1, 2]
