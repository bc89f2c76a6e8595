"""The activation reader: forward hooks that read the residual stream after chosen decoder blocks.

``blocks.i`` is the output of decoder block ``i`` (0-indexed; ``models.hookpoints.LAYER_CONVENTION``). A
:class:`BlockReader` hooks the chosen blocks and stores, per layer, ``select(hidden)`` of the (detached) block
output; ``select`` is a position mode:

- :func:`all_positions` ``[B, T, d]``, :func:`token_rows` the tokens of a bool ``[B, T]`` mask as ``[N, d]``
  rows (row-major, as ``mask.nonzero()`` lists them),
- :func:`token_index` one column per row ``[B, d]`` (the last prompt token: :func:`last_token_index`),
- :func:`token_mean` the mean over a row's selected tokens ``[B, d]`` (the response mean),
- :func:`projection` ``hidden @ unit`` ``[B, T]``.

With an allowing :class:`~difflib_models.hooks.early_stop.EarlyStop` the hook of the deepest block ends the
forward (:func:`~difflib_models.hooks.early_stop.run_forward` catches it). ``once_per_forward`` adds a pre-hook
on the (unwrapped) root that starts a new forward: a block hook firing again in the same forward (gradient
checkpointing with ``use_reentrant=True`` re-runs blocks in backward) is ignored and counted.
:func:`read_blocks` is the one-forward form.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from difflib_models.errors import ConfigError, DifflibError, bad_value
from difflib_models.hooks.early_stop import EarlyStop, StopForward, run_forward
from difflib_models.hooks.outputs import block_hidden
from difflib_models.hooks.registry import HookSet
from difflib_models.models.hookpoints import find_block_list, unwrap_model

__all__ = [
    "BlockReader",
    "Select",
    "all_positions",
    "last_token_index",
    "projection",
    "read_blocks",
    "token_index",
    "token_mean",
    "token_rows",
]

Select = Callable[[torch.Tensor], torch.Tensor]
"""A position mode: maps a detached ``[B, T, d]`` block output to what the reader keeps."""


# ------------------------------------------------------------------------------------------------ position modes
def all_positions(dtype: torch.dtype | None = None) -> Select:
    """Every position ``[B, T, d]`` (cast to ``dtype`` when given)."""
    return (lambda h: h) if dtype is None else (lambda h: h.to(dtype))


class token_rows:  # noqa: N801 - a position mode, used like the functions beside it
    """The tokens selected by a bool ``[B, T]`` mask as ``[N, d]`` rows (None: every token), in row-major order.
    The flat index is computed once and kept per device (``index_select`` is ~4x faster than a boolean index)."""

    def __init__(self, mask: torch.Tensor | None) -> None:
        if mask is not None:
            if mask.dim() != 2:
                raise ConfigError(bad_value("mask", tuple(mask.shape), "a boolean [batch, seq] tensor"))
            mask = mask.bool()
            self._index = {mask.device: mask.reshape(-1).nonzero().squeeze(1)}
        else:
            self._index = {}
        self.mask = mask

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        flat = hidden.reshape(-1, hidden.shape[-1])
        if self.mask is None:
            return flat
        if tuple(self.mask.shape) != tuple(hidden.shape[:2]):
            raise ConfigError(
                bad_value(
                    "mask",
                    tuple(self.mask.shape),
                    f"the [batch, seq] shape of the forward's input {tuple(hidden.shape[:2])}",
                    "call set_mask() with the mask of this batch before the forward",
                )
            )
        index = self._index.get(hidden.device)
        if index is None:
            index = self._index[hidden.device] = next(iter(self._index.values())).to(hidden.device)
        return flat.index_select(0, index)


def token_index(index: torch.Tensor) -> Select:
    """Column ``index[b]`` of every row ``b``: ``[B, d]`` float32."""

    def select(hidden: torch.Tensor) -> torch.Tensor:
        h = hidden.float()
        rows = torch.arange(h.shape[0], device=h.device)
        return h[rows, index.to(h.device)]

    return select


def token_mean(mask: torch.Tensor) -> Select:
    """Mean over the tokens a bool ``[B, T]`` mask selects in each row: ``[B, d]`` float32."""
    if mask.dim() != 2:
        raise ConfigError(bad_value("token_mask", tuple(mask.shape), "a boolean [batch, seq] tensor"))
    if bool((mask.sum(dim=1) == 0).any()):
        raise ConfigError(bad_value("token_mask", "a row with no selected token", "at least one token per row"))

    def select(hidden: torch.Tensor) -> torch.Tensor:
        h = hidden.float()
        w = mask.to(device=h.device, dtype=h.dtype)[..., None]
        return (h * w).sum(dim=1) / w.sum(dim=1)

    return select


def projection(unit: torch.Tensor) -> Select:
    """``hidden @ unit`` at every position: ``[B, T]`` float32 (``unit`` a float32 ``[d]`` vector)."""

    def select(hidden: torch.Tensor) -> torch.Tensor:
        return hidden.float() @ unit.to(hidden.device)

    return select


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Column of the last real token of every row ([B] long), for left or right padding."""
    if attention_mask.dim() != 2:
        raise ConfigError(bad_value("attention_mask.shape", tuple(attention_mask.shape), "[batch, tokens]"))
    pos = torch.arange(attention_mask.shape[1], device=attention_mask.device).expand_as(attention_mask)
    idx = torch.where(attention_mask.bool(), pos, torch.full_like(pos, -1)).max(dim=1).values
    if bool((idx < 0).any()):
        raise ConfigError(bad_value("attention_mask", "a row with no real token", "at least one 1 per row"))
    return idx


# ------------------------------------------------------------------------------------------------------ reader
class BlockReader:
    """Context manager reading ``select(block output)`` after each of ``layers`` (block indices; negative ones
    count from the end, results are keyed by the values given).

    >>> with BlockReader(model, [0, 2], token_index(idx), early_stop=EarlyStop.decide(model)) as reader:
    ...     run_forward(model, **inputs)
    ...     acts = reader.take()        # {0: [B, d], 2: [B, d]}

    ``keep_first`` keeps the first value per layer until :meth:`clear` (training forwards whose blocks are
    re-run in backward); ``select`` may be swapped between forwards (:attr:`select`). ``block_list`` is the
    ``(path, blocks)`` pair :func:`~difflib_models.models.hookpoints.find_block_list` already returned for this
    model (it walks every module; a per-batch caller that resolved it passes it on instead of resolving twice).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[int],
        select: Select,
        *,
        hook_override: str | None = None,
        early_stop: EarlyStop | None = None,
        once_per_forward: bool = False,
        keep_first: bool = False,
        block_list: tuple[str, nn.ModuleList] | None = None,
    ) -> None:
        self.model = model
        self.block_path, self._blocks = block_list or find_block_list(model, hook_override)
        n = len(self._blocks)
        self.layers = [int(layer) for layer in layers]
        if not self.layers:
            raise ConfigError(bad_value("layers", [], "at least one block index"))
        for layer in self.layers:
            if not -n <= layer < n:
                raise ConfigError(bad_value("layers", layer, f"block indices in [{-n}, {n - 1}]"))
        self.select = select
        self.early_stop = early_stop or EarlyStop.never()
        self._deepest = max(layer % n for layer in self.layers)
        self.once_per_forward = once_per_forward
        self.keep_first = keep_first
        self.results: dict[int, torch.Tensor] = {}
        self.n_duplicate_calls = 0  # hook calls ignored (the same block again within one forward)
        self._step = 0
        self._seen: dict[int, int] = {}
        self._hooks = HookSet()

    # -- attach / remove ---------------------------------------------------------------------------------------
    def attach(self) -> BlockReader:
        if self._hooks.active:
            raise DifflibError("this BlockReader is already attached; it is not re-entrant")
        try:
            if self.once_per_forward:
                self._hooks.pre(unwrap_model(self.model), self._on_forward)
            for layer in self.layers:
                self._hooks.forward(self._blocks[layer], self._make_hook(layer))
        except BaseException:
            self._hooks.remove()
            raise
        return self

    def remove(self) -> None:
        """Remove the hooks (idempotent); the results read so far stay until :meth:`clear`."""
        self._hooks.remove()

    @property
    def active(self) -> bool:
        return self._hooks.active

    def __enter__(self) -> BlockReader:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # -- per forward -------------------------------------------------------------------------------------------
    def new_forward(self) -> None:
        """Start a new forward (for forwards that bypass the root module's pre-hook)."""
        self._step += 1

    def clear(self) -> None:
        self.results.clear()

    def take(self) -> dict[int, torch.Tensor]:
        """The results of every layer in ``layers`` order, cleared; DifflibError naming the missing layers."""
        missing = [layer for layer in self.layers if layer not in self.results]
        if missing:
            raise DifflibError(
                f"no activations read for layers {missing}: run a forward of the model while the reader is "
                f"attached (hooks active: {self.active})"
            )
        out = {layer: self.results[layer] for layer in self.layers}
        self.results = {}
        self._step += 1
        return out

    def _on_forward(self, _module: nn.Module, _args: Any) -> None:
        self._step += 1
        self.results.clear()

    def _make_hook(self, layer: int) -> Callable[[nn.Module, Any, Any], None]:
        n = len(self._blocks)

        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            if self.once_per_forward:
                if self._seen.get(layer) == self._step:
                    self.n_duplicate_calls += 1
                    return
                self._seen[layer] = self._step
            if not (self.keep_first and layer in self.results):
                self.results[layer] = self.select(block_hidden(output).detach())
            if self.early_stop.allowed and layer % n == self._deepest:
                raise StopForward

        return hook


def read_blocks(
    model: nn.Module,
    layers: Sequence[int],
    select: Select,
    *,
    early_stop: EarlyStop | bool | None = None,
    hook_override: str | None = None,
    **inputs: Any,
) -> dict[int, torch.Tensor]:
    """One forward ``model(**inputs)`` with a :class:`BlockReader`: ``{layer: select(block output)}``.

    ``early_stop``: None or True stops after the deepest block where :func:`can_stop_early` allows, False
    never; the caller decides grad and train mode (:func:`~difflib_models.hooks.probe.probe_mode`)."""
    stop = EarlyStop.decide(model, early_stop)
    with BlockReader(model, layers, select, hook_override=hook_override, early_stop=stop) as reader:
        run_forward(model, **inputs)
        return reader.take()
