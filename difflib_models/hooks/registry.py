"""Hook registration: the one place in the library that calls ``register_forward_hook`` and friends.

A :class:`HookSet` owns the handles it registers and removes all of them in :meth:`HookSet.remove` (idempotent);
used as a context manager it removes them in ``finally``, also when the forward raises. Everything else in the
library (readers, residual edits, steering, callbacks) registers through a HookSet, and a test scans the source
for registrations outside ``difflib_models/hooks/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["HookSet"]


class HookSet:
    """A group of forward hooks removed together.

    >>> with HookSet() as hooks:
    ...     hooks.forward(block, fn)        # fn(module, args, output) -> None or a replacement output
    ...     model(**inputs)
    """

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def forward(self, module: nn.Module, fn: Callable[..., Any]) -> RemovableHandle:
        """Register ``fn(module, args, output)`` as a forward hook of ``module``."""
        handle = module.register_forward_hook(fn)
        self._handles.append(handle)
        return handle

    def pre(self, module: nn.Module, fn: Callable[..., Any], *, with_kwargs: bool = False) -> RemovableHandle:
        """Register ``fn(module, args)`` (or ``fn(module, args, kwargs)`` with ``with_kwargs``) as a forward
        pre-hook of ``module``."""
        handle = module.register_forward_pre_hook(fn, with_kwargs=with_kwargs)
        self._handles.append(handle)
        return handle

    def remove(self) -> None:
        """Remove every hook of the set (idempotent)."""
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()

    def __len__(self) -> int:
        return len(self._handles)

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def __enter__(self) -> HookSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
