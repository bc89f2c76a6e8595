"""Residual-stream capture with forward hooks on decoder blocks.

:class:`ActivationCapture` reads the chosen blocks through the hooks layer (:class:`difflib_models.hooks.BlockReader`,
one forward hook per block, all removed in ``finally``). Per
forward it keeps exactly one tensor per layer: the block output (untupled: transformers 5 passes a Tensor, 4.x
a tuple), detached, reduced to the selected positions with a single boolean-mask index *on the model's device*,
then moved to CPU as float32. Nothing accumulates across forwards: a new forward replaces the previous result,
so memory stays at one batch.

Early stop: with ``stop_after_last=True`` (honoured only where :func:`can_stop_early` allows) the hook of the
deepest chosen block raises the hooks layer's private ``StopForward`` once it
has stored its output, so the blocks after it, the final norm and the LM head never run (the forward's logits are
not needed for capture). :func:`capture_batch` does this by default whenever it is safe: not under FSDP (whose
post-forward hooks must run to reshard), DDP, torch.compile or accelerate's offloading hooks
(:func:`can_stop_early`).

Gradient checkpointing with ``use_reentrant=True`` (``torch.utils.checkpoint`` around a block module) re-runs
blocks during backward and fires their hooks a second time. A forward pre-hook on the (unwrapped) root model, and
every ``set_mask``/``pop``, starts a new "step"; a block hook that fires again within the same step is ignored
(counted in ``n_duplicate_calls``), so only the first call per forward is kept. (transformers 5's own
``gradient_checkpointing_enable`` checkpoints inside the block call, so there the hooks fire once anyway.)
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from difflib_models.capture.positions import Positions, parse_positions, select_mask
from difflib_models.errors import ConfigError, DifflibError, NonFiniteActivationError, bad_value
from difflib_models.hooks import (
    BlockReader,
    EarlyStop,
    StopForward,
    block_hidden,
    can_stop_early,
    probe_mode,
    run_forward,
    token_rows,
)
from difflib_models.models.batching import pad_batch
from difflib_models.models.hookpoints import check_layers, find_block_list, unwrap_model
from difflib_models.store.batch import CaptureBatch

__all__ = [
    "ActivationCapture",
    "CaptureBatch",
    "StopForward",
    "can_stop_early",
    "capture_batch",
    "forward_inputs",
    "iter_capture",
    "model_device",
]

logger = logging.getLogger(__name__)


_untuple = block_hidden  # the block-output reader of the hooks layer (kept under its old name)


class ActivationCapture:
    """Context manager capturing the residual stream after the chosen decoder blocks.

    >>> with ActivationCapture(model, [0, -1]) as cap:
    ...     cap.set_mask(mask)          # optional bool [B, T]; None keeps every position
    ...     model(input_ids=ids, attention_mask=am)
    ...     acts = cap.pop()            # {0: Tensor[N, d], n-1: Tensor[N, d]} float32 CPU

    Rows are the selected tokens in row-major (batch, position) order, as ``mask.nonzero()`` lists them. Layer
    keys are non-negative block indices. ``check_finite`` makes :meth:`pop` raise NonFiniteActivationError
    naming the layer and the batch row.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[int] | int,
        *,
        hook_override: str | None = None,
        check_finite: bool = True,
        out_device: str | torch.device = "cpu",
        out_dtype: torch.dtype = torch.float32,
        stop_after_last: bool | EarlyStop = False,
    ) -> None:
        self.model = model
        self.block_path, blocks = block_list = find_block_list(model, hook_override)
        self.n_layers = len(blocks)
        self.layers = check_layers(layers, self.n_layers)
        self.check_finite = check_finite
        self.out_device = torch.device(out_device)
        self.out_dtype = out_dtype
        self.stop_after_last = stop_after_last
        self._rows = token_rows(None)
        early = EarlyStop.decide(model, stop_after_last) if stop_after_last else EarlyStop.never()
        self._reader = BlockReader(model, self.layers, self._select, hook_override=hook_override,
                                   early_stop=early, once_per_forward=True, block_list=block_list)

    @property
    def n_duplicate_calls(self) -> int:
        """Hook calls ignored (gradient-checkpoint recomputation)."""
        return self._reader.n_duplicate_calls

    @property
    def _mask(self) -> torch.Tensor | None:
        return self._rows.mask

    # -- context management -------------------------------------------------------------------------------------
    def __enter__(self) -> ActivationCapture:
        if self._reader.active:
            raise DifflibError("ActivationCapture is already active; it is not re-entrant")
        self._reader.attach()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook and drop held tensors (idempotent)."""
        self._reader.remove()
        self._reader.clear()
        self._rows = token_rows(None)

    @property
    def active(self) -> bool:
        return self._reader.active

    # -- per forward ---------------------------------------------------------------------------------------------
    def set_mask(self, mask: torch.Tensor | None) -> None:
        """Positions to keep in the next forward(s): bool ``[B, T]`` or None for every position."""
        self._rows = token_rows(mask)
        self._reader.new_forward()  # a new forward follows (also covers forwards that bypass the root module)

    def _select(self, hidden: torch.Tensor) -> torch.Tensor:
        out = self._rows(hidden).to(device=self.out_device, dtype=self.out_dtype)
        return out.clone() if out.data_ptr() == hidden.data_ptr() else out

    def pop(self) -> dict[int, torch.Tensor]:
        """The activations of the last forward ``{layer: Tensor[N, d]}``; clears them."""
        try:
            acts = self._reader.take()
        except DifflibError as exc:
            raise DifflibError(
                f"{exc}: run a forward of the model inside the ActivationCapture context before pop()"
            ) from exc
        if self.check_finite:
            for layer, tensor in acts.items():
                _check_finite(tensor, layer, self._mask)
        return acts


def _check_finite(tensor: torch.Tensor, layer: int, mask: torch.Tensor | None) -> None:
    # fast path: one BLAS dot product of the tensor with itself (cheaper than a sum reduction, far cheaper than
    # isfinite().all()); a NaN/inf anywhere makes it non-finite, so the exact per-element check runs only then
    if tensor.numel() == 0:
        return
    flat = tensor.reshape(-1)
    probe = torch.dot(flat, flat) if flat.dtype in (torch.float32, torch.float64) else flat.sum()
    if bool(torch.isfinite(probe)):
        return
    if bool(torch.isfinite(tensor).all()):  # the squares overflowed on large finite values
        return
    bad_row = int((~torch.isfinite(tensor)).any(dim=-1).nonzero()[0, 0])
    if mask is not None:
        seq = int(mask.nonzero()[bad_row, 0])
    else:
        seq = -1
    kind = "NaN" if bool(torch.isnan(tensor).any()) else "inf"
    where = f"sequence {seq} of the batch" if seq >= 0 else f"flattened token row {bad_row}"
    raise NonFiniteActivationError(
        f"{kind} in activations of blocks.{layer} at {where}; nothing was written. "
        "HINT: check the model dtype (fp16 overflow) and the weights; run in float32 or bfloat16."
    )


def model_device(model: nn.Module) -> torch.device:
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


_POSITION_IDS: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _accepts_position_ids(model: nn.Module) -> bool:
    """Whether the unwrapped model's ``forward`` takes ``position_ids``; the signature is read once per class
    ``forward`` function (``inspect.signature`` costs as much as the rest of a small model's batch set-up)."""
    forward = unwrap_model(model).forward
    func = getattr(forward, "__func__", None)  # a bound method of the class (not a forward patched per instance)
    if func is not None:
        cached = _POSITION_IDS.get(func)
        if cached is not None:
            return cached
    try:
        accepts = "position_ids" in inspect.signature(forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        accepts = False
    if func is not None:
        _POSITION_IDS[func] = accepts
    return accepts


def forward_inputs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, Any]:
    """Keyword arguments for a capture forward: ids, mask, ``use_cache=False`` and, when the model accepts them,
    ``position_ids`` counted from each row's first real token (so left padding gives the same positions as
    right padding, as in HF ``generate``)."""
    device = model_device(model)
    ids = input_ids.to(device)
    mask = attention_mask.to(device)
    kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "use_cache": False}
    if _accepts_position_ids(model):
        kwargs["position_ids"] = (mask.long().cumsum(dim=1) - 1).clamp_min(0)
    return kwargs


def _bos_id(model: nn.Module) -> int | None:
    config = getattr(unwrap_model(model), "config", None)
    bos = getattr(config, "bos_token_id", None)
    return bos if isinstance(bos, int) else None


def capture_batch(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    layers: Sequence[int] | int,
    *,
    positions: str | Positions = "all",
    prompt_lengths: Sequence[int] | torch.Tensor | None = None,
    skip_bos: bool = True,
    hook_override: str | None = None,
    bos_token_id: int | None = None,
    stop_early: bool | None = None,
) -> CaptureBatch:
    """One no-grad eval-mode forward of ``model`` on a padded batch; the selected tokens' block outputs.

    ``bos_token_id`` defaults to ``model.config.bos_token_id`` (used only when ``skip_bos``). ``stop_early``
    ends the forward after the deepest chosen block (the rest of the model and the LM head are not computed);
    None (default) or True do so where :func:`can_stop_early` says it is safe, False never. Every module's own
    training flag is restored afterwards (``hooks.probe_mode``). Raises NonFiniteActivationError naming the layer
    and sequence."""
    pos = parse_positions(positions)
    if input_ids.shape != attention_mask.shape or input_ids.dim() != 2:
        raise ConfigError(
            bad_value("attention_mask", tuple(attention_mask.shape), f"the shape of input_ids {tuple(input_ids.shape)}")
        )
    kwargs = forward_inputs(model, input_ids, attention_mask)
    ids, am = kwargs["input_ids"], kwargs["attention_mask"]
    bos = bos_token_id if bos_token_id is not None else _bos_id(model)
    mask = select_mask(pos, am, prompt_lengths, skip_bos=skip_bos, input_ids=ids, bos_token_id=bos)
    stop = EarlyStop.decide(model, stop_early)
    with probe_mode(model), ActivationCapture(model, layers, hook_override=hook_override, stop_after_last=stop) as cap:
        cap.set_mask(mask)
        run_forward(model, **kwargs)
        acts = cap.pop()
    rel = kwargs.get("position_ids")
    if rel is None:
        rel = (am.long().cumsum(dim=1) - 1).clamp_min(0)  # position from the row's first real token
    seq_index = mask.nonzero()[:, 0]
    pos_index = rel[mask]
    token_ids = ids[mask]
    return CaptureBatch(acts=acts, token_ids=token_ids.cpu(), seq_index=seq_index.cpu(), pos_index=pos_index.cpu())


def iter_capture(
    loaded: Any,
    texts: Sequence[str],
    layers: Sequence[int] | int,
    *,
    batch_size: int = 8,
    max_length: int = 128,
    positions: str | Positions = "all",
    padding_side: str = "right",
    skip_bos: bool = True,
) -> Iterator[tuple[list[int], CaptureBatch]]:
    """Tokenize ``texts`` in batches (padding, truncation to ``max_length``) and yield ``(prompt_ids, batch)``.

    ``loaded`` is a ``LoadedModel`` (or anything with ``.model`` and ``.tokenizer``; ``.hook_points`` is used as
    the block override when present). ``prompt_ids`` are indices into ``texts``. One batch is held at a time.
    ``positions='response'`` needs prompt lengths: use :func:`capture_batch` for prompt/response pairs."""
    pos = parse_positions(positions)
    if pos.needs_prompt_lengths:
        raise ConfigError(
            bad_value(
                "positions",
                str(pos),
                "'all', 'last_prompt', 'first_k:K'",
                "iter_capture() sees plain texts; for response tokens call capture_batch(..., "
                "positions='response', prompt_lengths=...)",
            )
        )
    if batch_size < 1:
        raise ConfigError(bad_value("batch_size", batch_size, "an integer >= 1"))
    if max_length < 1:
        raise ConfigError(bad_value("max_length", max_length, "an integer >= 1"))
    if padding_side not in ("left", "right"):
        raise ConfigError(bad_value("padding_side", padding_side, ("left", "right")))
    model, tokenizer = loaded.model, loaded.tokenizer
    hook_points = getattr(loaded, "hook_points", None)
    override = getattr(hook_points, "block_path", None)
    checked = check_layers(layers, len(find_block_list(model, override)[1]))
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    for lo in range(0, len(texts), batch_size):
        chunk = list(texts[lo : lo + batch_size])
        ids_list = tokenizer(chunk, truncation=True, max_length=max_length, padding=False)["input_ids"]
        input_ids, attention_mask = pad_batch(ids_list, pad_token_id=pad_id, padding_side=padding_side)
        prompt_ids = list(range(lo, lo + len(chunk)))
        try:
            batch = capture_batch(
                model, input_ids, attention_mask, checked, positions=pos, skip_bos=skip_bos, hook_override=override,
                bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else _bos_id(model),
            )
        except NonFiniteActivationError as exc:
            raise NonFiniteActivationError(f"{exc} (batch prompt ids {prompt_ids[0]}..{prompt_ids[-1]})") from exc
        yield prompt_ids, batch
