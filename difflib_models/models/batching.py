"""Token-id batches: pad id lists into ``(input_ids, attention_mask)`` for one forward."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from difflib_models.errors import ConfigError, bad_value

__all__ = ["PADDING_SIDES", "pad_batch"]

PADDING_SIDES: tuple[str, ...] = ("left", "right")


def pad_batch(
    sequences: Sequence[Sequence[int]], *, pad_token_id: int, padding_side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id lists into ``input_ids`` and ``attention_mask`` ([B, T] long tensors), on the left or the right.

    An empty id list becomes a row of padding with an all-zero mask; ``T`` is at least 1."""
    if padding_side not in PADDING_SIDES:
        raise ConfigError(bad_value("padding_side", padding_side, PADDING_SIDES))
    if not sequences:
        raise ConfigError(bad_value("sequences", "[]", "at least one id list"))
    width = max(max(len(s) for s in sequences), 1)
    ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        n = len(seq)
        if n == 0:
            continue
        sl = slice(0, n) if padding_side == "right" else slice(width - n, width)
        ids[row, sl] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, sl] = 1
    return ids, mask
