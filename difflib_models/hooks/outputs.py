"""Decoder-block outputs: read the hidden state, or put a new one back, whatever the block returns.

transformers 5 blocks return a plain ``Tensor``; 4.x blocks return a tuple ``(hidden, *extras)``; a few custom
blocks return a ModelOutput-like object. :func:`block_hidden` and :func:`with_block_hidden` are the only code
that knows these shapes: every reader and every residual edit of the library goes through them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from difflib_models.errors import DifflibError

__all__ = ["block_hidden", "edit_output", "with_block_hidden"]


def block_hidden(output: Any) -> torch.Tensor:
    """The ``[batch, tokens, d_model]`` hidden state in a block's forward output (not detached)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    for attr in ("last_hidden_state", "hidden_states"):  # ModelOutput-like block outputs
        hidden = getattr(output, attr, None)
        if isinstance(hidden, torch.Tensor):
            return hidden
    raise DifflibError(f"cannot read a hidden-state tensor from a block output of type {type(output).__name__}")


def with_block_hidden(output: Any, hidden: torch.Tensor) -> Any:
    """``output`` with its hidden state replaced by ``hidden``, in the same container type."""
    if isinstance(output, torch.Tensor):
        return hidden
    if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
        return (hidden, *output[1:])
    if isinstance(output, list) and output and isinstance(output[0], torch.Tensor):
        return [hidden, *output[1:]]
    raise DifflibError(f"cannot replace the hidden state of a block output of type {type(output).__name__}")


def edit_output(edit: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Any, Any, Any], Any]:
    """A forward-hook function that applies ``edit`` to the block's hidden state and returns the rewrapped
    output (register it with :class:`~difflib_models.hooks.registry.HookSet`)."""

    def hook(_module: Any, _args: Any, output: Any) -> Any:
        return with_block_hidden(output, edit(block_hidden(output)))

    return hook
