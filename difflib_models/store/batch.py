"""The record a capture hands to the store: one batch's activations and the token bookkeeping of each row."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["CaptureBatch"]


@dataclass
class CaptureBatch:
    """Activations of one batch: ``acts[layer]`` is ``[N, d]`` float32 CPU for the N selected tokens.

    ``token_ids``, ``seq_index`` (row in the batch) and ``pos_index`` (position counted from the row's first
    real token, so it does not depend on the padding side) are ``[N]`` long tensors in the same order."""

    acts: dict[int, torch.Tensor]
    token_ids: torch.Tensor
    seq_index: torch.Tensor
    pos_index: torch.Tensor

    @property
    def n_tokens(self) -> int:
        return int(self.token_ids.numel())
