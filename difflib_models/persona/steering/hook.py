"""Activation steering: add ``alpha * v`` to the residual stream after one decoder block.

``blocks.{layer}`` follows the project's layer convention (the output of decoder block ``layer``, 0-indexed;
see :data:`~difflib_models.models.hookpoints.LAYER_CONVENTION`).

Units of ``alpha`` (pick one per call):

- raw (default, ``reference_norm=None``): the vector added is ``alpha * vector`` exactly as given (for a
  mean-difference persona vector, ``alpha=1`` moves the activation by one pos-minus-neg gap);
- residual-norm units (``reference_norm=r``): the vector added is ``alpha * r * vector / ||vector||``; with
  ``r = median_residual_norm(...)`` at that layer, ``alpha=1`` adds a step as long as a typical residual
  activation (the unit of the persona dose-response check; the spec suggests alpha in {-2, ..., 2}, the
  validation default is -0.3 ... 0.3 because larger steps collapse a 135M model's answers).

Positions (``positions=``), in absolute sequence columns (padding included):

- ``"all"``: every position of every forward;
- ``"prompt"``: columns ``< boundary``;
- ``"response"``: columns ``>= boundary - 1``, i.e. the last prompt token and every response token. The output
  at the last prompt token is what predicts the first response token, so under ``generate`` the *first generated
  token is steered*, and the steered teacher-forced logits of a response equal the steered logits of a
  step-by-step generation of the same tokens.

``boundary`` is ``prompt_lengths[b]`` (plus the row's left-padding offset when ``attention_mask`` is given), or,
when ``prompt_lengths`` is None, the length of the first forward of each sequence (under ``generate``: the
prompt). With a KV cache every forward only sees its new tokens; the absolute column of each is read from the
cache length passed to the model (``cache`` / ``past_key_values``), so each position is steered exactly once.
Without a cache ``generate`` recomputes every position each step and each recomputation is steered once; there,
pass ``prompt_lengths`` for ``"prompt"``/``"response"`` (otherwise every forward looks like a new prompt).

The hook adds out of place, so it works with autograd: the same mechanism is used for *preventative steering*
during fine-tuning (attach during training forwards, detach for evaluation; see :class:`SteeringHook`).
Gradient checkpointing re-runs a block in backward; the hook fires again there, which is correct (the
recomputed output must equal the steered one).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from difflib_models.capture.capture import capture_batch
from difflib_models.errors import ConfigError, bad_value
from difflib_models.hooks import HookSet, edit_output
from difflib_models.models.hookpoints import find_block_list, unwrap_model
from difflib_models.persona.traits.chat import offsets

log = logging.getLogger(__name__)

POSITIONS: tuple[str, ...] = ("all", "prompt", "response")
_CACHE_KWARGS: tuple[str, ...] = ("cache", "past_key_values", "past_key_value", "layer_past")

__all__ = ["POSITIONS", "SteeringHook", "median_residual_norm", "steer", "steering_delta"]


def steering_delta(vector: torch.Tensor, alpha: float, reference_norm: float | None = None) -> torch.Tensor:
    """The vector actually added (float32, CPU): ``alpha * vector`` (raw units), or
    ``alpha * reference_norm * vector / ||vector||`` (residual-norm units)."""
    if not isinstance(vector, torch.Tensor) or vector.dim() != 1 or vector.numel() == 0:
        raise ConfigError(
            bad_value("vector", getattr(vector, "shape", vector), "a 1-D tensor of size d_model",
                      "Pass PersonaVectorSet.vector(layer) or any [d_model] tensor.")
        )
    v = vector.detach().to(torch.float32).cpu()
    if not bool(torch.isfinite(v).all()):
        raise ConfigError(bad_value("vector", "non-finite values", "a finite vector"))
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ConfigError(bad_value("alpha", alpha, "a finite number")) from None
    if a != a or a in (float("inf"), float("-inf")):
        raise ConfigError(bad_value("alpha", alpha, "a finite number"))
    if reference_norm is None:
        return a * v
    r = float(reference_norm)
    if not r > 0 or r == float("inf"):
        raise ConfigError(
            bad_value("reference_norm", reference_norm, "a positive finite number",
                      "Measure it with median_residual_norm(), or pass None for raw units.")
        )
    n = float(v.norm())
    if n == 0.0:
        raise ConfigError(bad_value("vector", "all zeros", "a non-zero vector when reference_norm is set"))
    return (a * r / n) * v


@dataclass
class _SeqState:
    past_len: int = 0
    boundary: torch.Tensor | None = None


class SteeringHook:
    """Adds a fixed vector to the output of one decoder block while attached.

    >>> hook = SteeringHook(model, layer=12, vector=v, alpha=4.0, positions="response")
    >>> with hook:                      # or hook.attach() ... hook.remove()
    ...     out = model.generate(**inputs, max_new_tokens=20)

    ``n_forwards`` / ``n_positions`` count the forwards seen and the (row, position) pairs steered since
    attaching (tests use them to check "exactly once").
    """

    def __init__(
        self,
        model: nn.Module,
        layer: int,
        vector: torch.Tensor,
        alpha: float = 1.0,
        positions: str = "all",
        prompt_lengths: Sequence[int] | torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        reference_norm: float | None = None,
        hook_override: str | None = None,
    ) -> None:
        if positions not in POSITIONS:
            raise ConfigError(
                bad_value("positions", positions, POSITIONS,
                          "'response' steers the last prompt token and every generated token.")
            )
        self.model = model
        path, blocks = find_block_list(model, hook_override)
        if isinstance(layer, bool) or not isinstance(layer, int) or not -len(blocks) <= layer < len(blocks):
            raise ConfigError(
                bad_value("layer", layer, f"an int in [0, {len(blocks) - 1}] (negative from the end)",
                          "blocks.i is the residual stream after decoder block i (0-indexed).")
            )
        self.layer = layer % len(blocks)
        self.block = blocks[self.layer]
        self.block_path = f"{path}.{self.layer}" if path else str(self.layer)
        self.delta = steering_delta(vector, alpha, reference_norm)
        d_model = getattr(getattr(unwrap_model(model), "config", None), "hidden_size", None)
        if isinstance(d_model, int) and d_model != self.delta.numel():
            raise ConfigError(
                bad_value("vector", tuple(vector.shape), f"size d_model={d_model}",
                          "The vector belongs to a model with a different hidden size.")
            )
        self.alpha = float(alpha)
        self.positions = positions
        self.reference_norm = reference_norm
        self._boundary = self._fixed_boundary(prompt_lengths, attention_mask)
        self._state = _SeqState()
        self._hooks = HookSet()
        self._cast: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self.n_forwards = 0
        self.n_positions = 0

    @staticmethod
    def _fixed_boundary(
        prompt_lengths: Sequence[int] | torch.Tensor | None, attention_mask: torch.Tensor | None
    ) -> torch.Tensor | None:
        if prompt_lengths is None:
            if attention_mask is not None:
                raise ConfigError(bad_value("attention_mask", "given", "only together with prompt_lengths"))
            return None
        lens = torch.as_tensor(prompt_lengths, dtype=torch.long).reshape(-1).cpu()
        if lens.numel() == 0 or bool((lens < 1).any()):
            raise ConfigError(
                bad_value("prompt_lengths", lens.tolist(), "one integer >= 1 per batch row",
                          "Every row needs at least one prompt token.")
            )
        if attention_mask is not None:
            if attention_mask.dim() != 2 or attention_mask.shape[0] != lens.numel():
                raise ConfigError(
                    bad_value("attention_mask.shape", tuple(attention_mask.shape),
                              f"[{lens.numel()}, T] (one row per prompt length)")
                )
            lens = lens + offsets(attention_mask.cpu())
        return lens

    # ------------------------------------------------------------------ attach / remove
    def attach(self) -> SteeringHook:
        if self._hooks.active:
            raise ConfigError("This SteeringHook is already attached. HINT: call remove() first, or make a new one.")
        self.n_forwards = 0
        self.n_positions = 0
        root = unwrap_model(self.model)
        try:
            self._hooks.pre(root, self._pre_hook, with_kwargs=True)
            self._hooks.forward(self.block, edit_output(self._steer))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        self._hooks.remove()
        self._state = _SeqState()

    @property
    def attached(self) -> bool:
        return self._hooks.active

    def __enter__(self) -> SteeringHook:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # ------------------------------------------------------------------ hooks
    def _pre_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        past = 0
        for name in _CACHE_KWARGS:
            cache = kwargs.get(name)
            if cache is None:
                continue
            getter = getattr(cache, "get_seq_length", None)
            if callable(getter):
                past = int(getter())
            break
        self._state.past_len = past

    def _delta_for(self, h: torch.Tensor) -> torch.Tensor:
        key = (h.device, h.dtype)
        if key not in self._cast:
            self._cast[key] = self.delta.to(device=h.device, dtype=h.dtype)
        return self._cast[key]

    def _mask(self, batch: int, t: int, device: torch.device) -> torch.Tensor | None:
        """Bool [B, T] of the positions to steer in this forward (None = all)."""
        state = self._state
        if self.positions == "all":
            return None
        if self._boundary is not None:
            if self._boundary.numel() != batch:
                raise ConfigError(
                    bad_value("prompt_lengths", self._boundary.tolist(), f"{batch} values (the batch size)",
                              "With num_return_sequences or beams, repeat each prompt length accordingly.")
                )
            boundary = self._boundary
        else:
            if state.past_len == 0 or state.boundary is None:
                state.boundary = torch.full((batch,), t, dtype=torch.long)
            boundary = state.boundary
            if boundary.numel() != batch:
                boundary = state.boundary = torch.full((batch,), int(boundary[0]), dtype=torch.long)
        cols = torch.arange(state.past_len, state.past_len + t, device=device)[None, :]
        b = boundary.to(device)[:, None]
        return cols < b if self.positions == "prompt" else cols >= b - 1

    def _steer(self, hidden: torch.Tensor) -> torch.Tensor:
        """The block's hidden state plus the steering delta at this forward's positions (the hooks layer unwraps
        and rewraps the block output)."""
        if hidden.dim() != 3:
            raise ConfigError(bad_value("block output shape", tuple(hidden.shape), "[batch, tokens, d_model]"))
        batch, t, _ = hidden.shape
        delta = self._delta_for(hidden)
        mask = self._mask(batch, t, hidden.device)
        self.n_forwards += 1
        if mask is None:
            steered = hidden + delta
            self.n_positions += batch * t
        else:
            steered = hidden + mask.unsqueeze(-1).to(hidden.dtype) * delta
            self.n_positions += int(mask.sum())
        return steered


steer = SteeringHook
"""Context manager: ``with steer(model, layer, vector, alpha, positions, ...) as hook:`` steers ``model`` at
``blocks.{layer}`` while the block is open and removes the hook on exit (also on error). It is
:class:`SteeringHook` itself (same arguments); see the module docstring for the units of ``alpha`` and the
positions."""


def median_residual_norm(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    layer: int,
    *,
    hook_override: str | None = None,
) -> float:
    """Median L2 norm of the residual stream at ``blocks.{layer}`` over the real tokens of a batch, leaving out
    a leading BOS (its norm is often an outlier "attention sink"). The unit of ``reference_norm``."""
    batch = capture_batch(model, input_ids, attention_mask, [layer], positions="all", skip_bos=True,
                          hook_override=hook_override)
    acts = next(iter(batch.acts.values()))
    if acts.shape[0] == 0:
        raise ConfigError(bad_value("input_ids", "no real tokens", "at least one non-BOS token"))
    return float(acts.norm(dim=-1).median())
