"""Residual edits: add or replace vectors in the residual stream after a decoder block, inside a context.

Used by ADL steering (:func:`add_to_block`), the crosscoder splice (:func:`replace_in_block`) and persona
steering (``persona.steering.hook.SteeringHook``, which builds its own position mask and registers
:func:`~difflib_models.hooks.outputs.edit_output` through a :class:`~difflib_models.hooks.registry.HookSet`).
Every hook is removed in ``finally``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from difflib_models.hooks.outputs import edit_output
from difflib_models.hooks.registry import HookSet

__all__ = ["add_to_block", "replace_in_block"]


@contextlib.contextmanager
def add_to_block(block: nn.Module, delta: torch.Tensor, mask: torch.Tensor | None = None) -> Iterator[None]:
    """Add ``delta`` ([d]) to the block's output at every position, or where the bool ``[B, T]`` ``mask`` is
    set, for every forward inside the context."""
    delta = delta.detach()

    def edit(hidden: torch.Tensor) -> torch.Tensor:
        d = delta.to(hidden.device, hidden.dtype)
        if mask is None:
            return hidden + d
        return hidden + mask.to(hidden.device).unsqueeze(-1).to(hidden.dtype) * d

    with HookSet() as hooks:
        hooks.forward(block, edit_output(edit))
        yield


@contextlib.contextmanager
def replace_in_block(block: nn.Module, mask: torch.Tensor, values: torch.Tensor) -> Iterator[None]:
    """Replace the block's output at the positions of the bool ``[B, T]`` ``mask`` by the rows of ``values``
    (``[N, d]``, N = ``mask.sum()``, row-major) for every forward inside the context."""

    def edit(hidden: torch.Tensor) -> torch.Tensor:
        out = hidden.clone()
        out[mask.to(hidden.device)] = values.to(hidden.device, hidden.dtype)
        return out

    with HookSet() as hooks:
        hooks.forward(block, edit_output(edit))
        yield
