"""Probe mode: a measurement forward that leaves the model exactly as it found it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["probe_mode"]


@contextlib.contextmanager
def probe_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode (dropout off; LoRA stays active) and no grad inside the block; afterwards, also on error, every
    submodule gets back its OWN training flag and the grad mode is restored. (A blanket ``model.train()`` would
    re-enable submodules the user had frozen in eval mode.)"""
    flags = [(m, m.training) for m in module.modules()]
    if any(flag for _, flag in flags):  # a model already in eval mode (every probe loop) skips the module walks
        module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, flag in flags:
            if m.training != flag:  # nn.Module.__setattr__ is slow: set only the flags that changed
                m.training = flag
