"""Which token positions to keep from a padded batch.

A :class:`Positions` spec is parsed from ``"all" | "last_prompt" | "response" | "first_k:K"``;
:func:`select_mask` turns it into a boolean ``[B, T]`` mask over real tokens only (attention mask; left or
right padding), computed on the batch's device with tensor ops (no Python loop over tokens).

Positions are counted from the first real token of each row. ``prompt_lengths`` are token counts of the prompt
from that first real token (including a BOS the tokenizer added). With ``skip_bos=True`` a leading BOS token
(``input_ids[row, first] == bos_token_id``) is dropped from ``all`` and ``first_k`` (it is an attention sink whose
activations are huge and carry no content); ``last_prompt`` and ``response`` never point at it anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from difflib_models.errors import ConfigError, bad_value

logger = logging.getLogger(__name__)

PositionKind = Literal["all", "last_prompt", "response", "first_k"]
_KINDS: tuple[str, ...] = ("all", "last_prompt", "response", "first_k:K")


@dataclass(frozen=True)
class Positions:
    """A position selection: ``kind`` and, for ``first_k``, ``k`` (>= 1)."""

    kind: PositionKind = "all"
    k: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("all", "last_prompt", "response", "first_k"):
            raise ConfigError(bad_value("positions", self.kind, _KINDS))
        if self.kind == "first_k":
            if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
                raise ConfigError(bad_value("positions", f"first_k:{self.k}", "first_k:K with an integer K >= 1"))
        elif self.k is not None:
            raise ConfigError(bad_value("positions.k", self.k, "None unless kind='first_k'"))

    @property
    def needs_prompt_lengths(self) -> bool:
        return self.kind == "response"

    def __str__(self) -> str:
        return f"first_k:{self.k}" if self.kind == "first_k" else self.kind


def parse_positions(spec: str | Positions) -> Positions:
    """Parse ``"all" | "last_prompt" | "response" | "first_k:K"`` (case-insensitive)."""
    if isinstance(spec, Positions):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(bad_value("positions", spec, _KINDS))
    text = spec.strip().lower()
    if text.startswith("first_k"):
        _, sep, k = text.partition(":")
        try:
            value = int(k) if sep else -1
        except ValueError:
            value = -1
        if value < 1:
            raise ConfigError(bad_value("positions", spec, _KINDS, "write e.g. 'first_k:16' (K >= 1)"))
        return Positions("first_k", value)
    if text in ("all", "last_prompt", "response"):
        return Positions(text)  # type: ignore[arg-type]
    raise ConfigError(bad_value("positions", spec, _KINDS))


def _as_lengths(prompt_lengths: Sequence[int] | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    lengths = torch.as_tensor(prompt_lengths, dtype=torch.long, device=device).reshape(-1)
    if lengths.numel() != batch:
        raise ConfigError(
            bad_value("prompt_lengths", f"{lengths.numel()} values", f"one length per row ({batch} rows)")
        )
    if bool((lengths < 1).any()):
        raise ConfigError(bad_value("prompt_lengths", lengths.tolist(), "integers >= 1 (prompt token counts)"))
    return lengths


def real_token_info(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(real [B,T] bool, start [B] first real index, rel [B,T] position relative to start)``.

    Works for left and right padding (real tokens are assumed contiguous, as tokenizers produce them)."""
    if attention_mask.dim() != 2:
        raise ConfigError(bad_value("attention_mask", tuple(attention_mask.shape), "a [batch, seq] tensor"))
    real = attention_mask.bool()
    start = real.to(torch.int8).argmax(dim=1)  # first True (0 for all-padding rows, masked out by `real`)
    rel = torch.arange(real.shape[1], device=real.device).unsqueeze(0) - start.unsqueeze(1)
    return real, start, rel


def select_mask(
    positions: str | Positions,
    attention_mask: torch.Tensor,
    prompt_lengths: Sequence[int] | torch.Tensor | None = None,
    *,
    skip_bos: bool = True,
    input_ids: torch.Tensor | None = None,
    bos_token_id: int | None = None,
) -> torch.Tensor:
    """Boolean ``[B, T]`` mask of the positions to keep (always a subset of the real tokens).

    - ``all``: every real token (minus a leading BOS when ``skip_bos`` and ``input_ids``/``bos_token_id`` given);
    - ``last_prompt``: the last prompt token (``prompt_lengths[b] - 1`` from the first real token), or the last
      real token of each row when ``prompt_lengths`` is None;
    - ``response``: real tokens at relative position ``>= prompt_lengths[b]`` (``prompt_lengths`` required);
    - ``first_k:K``: the first K real tokens (after a skipped BOS).
    """
    pos = parse_positions(positions)
    real, start, rel = real_token_info(attention_mask)
    n_real = real.sum(dim=1)
    batch = real.shape[0]
    bos_off = torch.zeros(batch, dtype=torch.long, device=real.device)
    if skip_bos and input_ids is not None and bos_token_id is not None and batch > 0:
        first_tok = input_ids.gather(1, start.unsqueeze(1)).squeeze(1)
        bos_off = ((first_tok == bos_token_id) & (n_real > 0)).long()
    lengths = None
    if prompt_lengths is not None:
        lengths = _as_lengths(prompt_lengths, batch, real.device)
    if pos.kind == "all":
        return real & (rel >= bos_off.unsqueeze(1))
    if pos.kind == "first_k":
        off = bos_off.unsqueeze(1)
        return real & (rel >= off) & (rel < off + int(pos.k or 0))
    if pos.kind == "last_prompt":
        if lengths is None:
            target = n_real - 1
        else:
            if bool((lengths > n_real).any()):
                logger.warning(
                    "last_prompt: %d prompt(s) longer than their (truncated) sequence; using the last real token",
                    int((lengths > n_real).sum()),
                )
            target = torch.minimum(lengths, n_real) - 1
        return real & (rel == target.unsqueeze(1))
    # response
    if lengths is None:
        raise ConfigError(
            bad_value(
                "prompt_lengths",
                None,
                "one prompt token count per row",
                "positions='response' needs the prompt length of each row to know where the response starts",
            )
        )
    return real & (rel >= lengths.unsqueeze(1))
