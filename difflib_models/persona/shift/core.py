"""Shift math shared by the training monitor and the release gate (spec persona.md section 4).

Probe set P = a trait's evaluation questions, chat-templated, no system prompt. At checkpoint t,
m_t = mean over P of the residual at the last prompt token. With v_hat the unit trait direction:

- shift       S_t = (m_t - m_0) . v_hat            (m_0 = the model before the first optimizer step)
- shift_z     S_t / sigma_0                         (sigma_0 = std of the base model's per-prompt projections)
- shift_frac  S_t / g                               (g = pos-vs-neg gap of last-prompt projections at extraction)
- drift_cos   cos(m_t - m_0, v_hat), drift_norm = ||m_t - m_0||
- null_percentile: fraction of K fixed, seeded, norm-matched random directions u_k (drawn from N(0, Sigma_hat),
  covariance-realistic) with |(m_t - m_0) . u_k| <= |S_t|.

Signs: ``compute_shift`` reports S_t along the trait direction (toward the trait's pos pole). ``toward_undesirable``
is S_t for undesirable traits and -S_t for desirable ones; thresholds only count that quantity.

:func:`read_residuals` is the one-forward reader used by extraction and probing, on the hooks layer's reader
(``blocks.i`` = output of block i, the library's LAYER_CONVENTION): a gather at given token indices or a mean over
a token mask. ``probe_mode`` (eval, no grad, training flags restored) lives in :mod:`difflib_models.hooks`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from difflib_models.errors import ConfigError, NonFiniteActivationError, bad_value
from difflib_models.hooks import EarlyStop, probe_mode, read_blocks, token_index, token_mean
from difflib_models.persona.traits import chat

log = logging.getLogger(__name__)


def read_residuals(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    layers: Sequence[int],
    *,
    index: torch.Tensor | None = None,
    token_mask: torch.Tensor | None = None,
    stop_early: bool | EarlyStop | None = None,
) -> dict[int, torch.Tensor]:
    """Residual stream after the given blocks, in ONE forward (no grad), float32 on CPU.

    Exactly one of ``index`` ([B] column per row -> [B, d] per layer) or ``token_mask`` ([B, T] bool -> the mean
    over the selected tokens of each row, [B, d]) must be given. Position ids follow the attention mask, so left
    and right padding give the same values. ``stop_early`` ends the forward after the deepest requested block
    where ``hooks.can_stop_early`` allows (None or True), or never (False); an ``hooks.EarlyStop`` decided once
    saves the walk over the modules in a loop. Reads through :func:`difflib_models.hooks.read_blocks`.
    """
    if (index is None) == (token_mask is None):
        raise ConfigError(bad_value("index/token_mask", "both or neither", "exactly one of them"))
    device = next(model.parameters()).device
    ids, mask = input_ids.to(device), attention_mask.to(device)
    select = token_index(index.to(device)) if index is not None else token_mean(token_mask.to(device))
    with torch.no_grad():
        captured = read_blocks(model, layers, select, early_stop=EarlyStop.decide(model, stop_early),
                               input_ids=ids, attention_mask=mask, position_ids=chat.position_ids(mask),
                               use_cache=False)
    out = {}
    for layer in layers:
        t = captured[layer].cpu()
        if not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).any(dim=1).nonzero()[0, 0])
            raise NonFiniteActivationError(f"non-finite activation at blocks.{layer}, sequence {bad} of the batch")
        out[layer] = t
    return out


def probe_activations(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    layers: Sequence[int],
    *,
    batch_size: int = 16,
    system: str | None = None,
) -> dict[int, torch.Tensor]:
    """Last-prompt-token residuals of chat-templated ``prompts`` (no system prompt by default): {layer: [P, d]}.

    Eval mode and no grad during the probe; the previous train/eval state is restored afterwards (dropout stays off
    only for the probe). LoRA adapters stay active: this measures the model as it is now.
    """
    if not prompts:
        raise ConfigError(bad_value("prompts", [], "at least one probe prompt"))
    if batch_size < 1:
        raise ConfigError(bad_value("batch_size", batch_size, ">= 1"))
    encoded = [chat.encode_prompt(tokenizer, p, system=system).ids for p in prompts]
    with probe_mode(model):
        return probe_encoded(model, encoded, chat.pad_id(tokenizer), layers, batch_size=batch_size)


def probe_encoded(
    model: torch.nn.Module,
    encoded: Sequence[Sequence[int]],
    pad_token_id: int,
    layers: Sequence[int],
    *,
    batch_size: int = 16,
    stop_early: bool | EarlyStop | None = None,
) -> dict[int, torch.Tensor]:
    """Last-token residuals of already tokenised prompts, ``batch_size`` per forward: {layer: [P, d]}.

    The caller sets eval mode (:func:`probe_activations` does; the monitor callback encodes its prompts once
    per run and calls this at every check). ``stop_early`` as for :func:`read_residuals`, decided once here when
    None."""
    stop = EarlyStop.decide(model, stop_early)
    chunks: dict[int, list[torch.Tensor]] = {int(layer): [] for layer in layers}
    for start in range(0, len(encoded), batch_size):
        ids, mask = chat.pad_batch(encoded[start : start + batch_size], pad_token_id=pad_token_id,
                                   padding_side="right")
        acts = read_residuals(model, ids, mask, list(chunks), index=chat.last_token_index(mask), stop_early=stop)
        for layer, t in acts.items():
            chunks[layer].append(t)
    return {layer: torch.cat(ts) for layer, ts in chunks.items()}


def covariance_null_directions(
    acts: torch.Tensor, k: int, norm: float = 1.0, seed: int = 0, shrinkage: float = 0.1
) -> torch.Tensor:
    """K random directions from N(0, Sigma_hat), each rescaled to ``norm``: [K, d].

    Sigma_hat = (1 - shrinkage) * S + shrinkage * (tr(S)/d) * I, S the sample covariance of ``acts`` [N, d]. Such
    directions have the variance profile of real activation differences: an isotropic null flatters any direction
    lying along high-variance axes.
    """
    if acts.dim() != 2 or acts.shape[0] < 2:
        raise ConfigError(bad_value("acts.shape", tuple(acts.shape), "[N >= 2, d]"))
    if k < 1:
        raise ConfigError(bad_value("k", k, ">= 1"))
    if not 0.0 <= shrinkage <= 1.0:
        raise ConfigError(bad_value("shrinkage", shrinkage, "a value in [0, 1]"))
    x = acts.double()
    x = x - x.mean(dim=0, keepdim=True)
    n, d = x.shape
    gen = torch.Generator().manual_seed(int(seed))
    # sample without forming Sigma: sqrt(1-s) * X^T z / sqrt(n-1) + sqrt(s * tr/d) * w has covariance Sigma_hat
    z = torch.randn(k, n, generator=gen, dtype=torch.float64)
    w = torch.randn(k, d, generator=gen, dtype=torch.float64)
    trace = float((x * x).sum()) / (n - 1)
    dirs = math.sqrt(1.0 - shrinkage) * (z @ x) / math.sqrt(n - 1) + math.sqrt(shrinkage * trace / d) * w
    dirs = dirs / dirs.norm(dim=1, keepdim=True).clamp_min(1e-12) * norm
    return dirs.float()


@dataclass(frozen=True)
class ShiftResult:
    """One trait's shift at one checkpoint (spec section 4)."""

    trait: str
    layer: int
    shift: float
    shift_z: float
    shift_frac: float
    drift_cos: float
    drift_norm: float
    null_percentile: float
    n_null: int
    toward_undesirable: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def usable_gap(gap: float | None, base_std: float) -> float | None:
    """The pos-vs-neg gap g to divide by in ``shift_frac``, or None where g does not measure the trait.

    g comes from the instruction contrast at the last prompt token. A direction fitted elsewhere (``paired``
    responses) may not separate that contrast at all: g near zero or negative, and S_t / g then flips sign or
    explodes. g counts only when it is finite and larger than one base standard deviation of the per-prompt
    projections (``base_std``): the instruction moves the projection by more than the prompts' own spread."""
    if gap is None or not math.isfinite(float(gap)):
        return None
    if not float(gap) > max(float(base_std), 0.0):  # also rules out g <= 0
        return None
    return float(gap)


def compute_shift(
    base_acts: torch.Tensor,
    cur_acts: torch.Tensor,
    vector: torch.Tensor,
    *,
    gap: float,
    base_std: float,
    null_dirs: torch.Tensor | None = None,
    trait: str = "",
    layer: int = -1,
    polarity: str = "undesirable",
) -> ShiftResult:
    """Shift of the mean last-prompt activation along ``vector`` between the base and the current model.

    ``base_acts`` and ``cur_acts`` are [P, d] (same probe prompts) or already-averaged [d]. ``null_dirs`` [K, d] are
    normalised internally; the percentile is the fraction of K null |dot products| that |S_t| meets or exceeds.
    """
    if polarity not in ("undesirable", "desirable"):
        raise ConfigError(bad_value("polarity", polarity, ["undesirable", "desirable"]))
    m0 = base_acts.double().mean(dim=0) if base_acts.dim() == 2 else base_acts.double()
    mt = cur_acts.double().mean(dim=0) if cur_acts.dim() == 2 else cur_acts.double()
    v = vector.double().flatten()
    if m0.shape != v.shape or mt.shape != v.shape:
        raise ConfigError(bad_value("shapes", (tuple(m0.shape), tuple(mt.shape), tuple(v.shape)),
                                    "base, current and vector of the same size d_model"))
    vn = float(v.norm())
    if vn == 0.0:
        raise ConfigError(bad_value("vector", "all zeros", "a non-zero trait direction"))
    v_hat = v / vn
    delta = mt - m0
    s = float(delta @ v_hat)
    drift_norm = float(delta.norm())
    drift_cos = s / drift_norm if drift_norm > 0 else 0.0
    shift_z = s / base_std if base_std and base_std > 0 else float("nan")
    shift_frac = s / gap if gap and abs(gap) > 0 else float("nan")
    pct, k = float("nan"), 0
    if null_dirs is not None and null_dirs.numel() > 0:
        u = null_dirs.double()
        u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)
        null_abs = (u @ delta).abs()
        k = int(null_abs.shape[0])
        pct = float((null_abs <= abs(s)).double().mean())
    sign = 1.0 if polarity == "undesirable" else -1.0
    return ShiftResult(trait=trait, layer=int(layer), shift=s, shift_z=shift_z, shift_frac=shift_frac,
                       drift_cos=drift_cos, drift_norm=drift_norm, null_percentile=pct, n_null=k,
                       toward_undesirable=sign * s)
