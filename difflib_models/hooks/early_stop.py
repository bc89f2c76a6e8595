"""Ending a forward early, after the deepest block a reader needs.

A reader raises the private :class:`StopForward` from the hook of its deepest block, so the blocks after it,
the final norm and the LM head never run; :func:`run_forward` catches it. That is only safe where nothing must
run after the forward: not under FSDP (1 and 2, whose post-forward hooks reshard the parameters), DDP,
torch.compile or accelerate's offloading hooks. :func:`can_stop_early` decides, and an :class:`EarlyStop`
records the decision for one model: readers take an EarlyStop (or a plain request, which they turn into one),
never a bare "stop" flag, so a request to stop on an FSDP model is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from torch import nn

__all__ = ["EarlyStop", "StopForward", "can_stop_early", "run_forward"]

log = logging.getLogger(__name__)

_UNSAFE_TO_STOP = ("FullyShardedDataParallel", "DistributedDataParallel", "OptimizedModule", "FSDP")


class StopForward(Exception):
    """Raised by a reader's deepest hook to end a forward early; :func:`run_forward` catches it. Raised only
    where an :class:`EarlyStop` allows it."""


def can_stop_early(model: nn.Module) -> bool:
    """Whether a forward of ``model`` may be abandoned after a block without leaving state behind.

    False under FSDP (1 and 2), DDP, torch.compile and accelerate hooks (device maps with offloading move
    weights back in post-forward hooks); peft wrappers are fine."""
    for module in model.modules():
        cls = type(module)
        name = cls.__name__
        if name.startswith(_UNSAFE_TO_STOP) or "FullyShardedDataParallel" in name:
            return False
        # accelerate sets ``_hf_hook`` on the instance, FSDP2 swaps in a class with ``_get_fsdp_state``; looking
        # there directly avoids nn.Module.__getattr__'s AttributeError per module (hasattr), once per batch
        if "_hf_hook" in module.__dict__ or hasattr(cls, "_hf_hook") or hasattr(cls, "_get_fsdp_state"):
            return False
    return True


@dataclass(frozen=True)
class EarlyStop:
    """The early-stop decision for one model: ``allowed`` is True only when it was requested (or left to the
    default) AND :func:`can_stop_early` said yes. Build it with :meth:`decide`; reuse it across the forwards of
    a loop (the check walks every module)."""

    allowed: bool
    requested: bool | None = None

    @classmethod
    def decide(cls, model: nn.Module, requested: bool | EarlyStop | None = None) -> EarlyStop:
        """``requested`` None (default: stop where safe), True (stop where safe) or False (never stop); an
        EarlyStop is returned as is."""
        if isinstance(requested, EarlyStop):
            return requested
        if requested is False:
            return cls(allowed=False, requested=False)
        safe = can_stop_early(model)
        if requested and not safe:
            log.debug("early stop refused: %s needs its post-forward hooks (FSDP/DDP/compile/offload)",
                      type(model).__name__)
        return cls(allowed=safe, requested=requested)

    @classmethod
    def never(cls) -> EarlyStop:
        return cls(allowed=False, requested=False)


def run_forward(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``module(*args, **kwargs)``; None when a reader ended the forward early with :class:`StopForward`."""
    try:
        return module(*args, **kwargs)
    except StopForward:
        return None
