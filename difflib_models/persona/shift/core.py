"""Shift math shared by the training monitor and the release gate (spec persona.md section 4).

Probe set P = a trait's evaluation questions, chat-templated, no system prompt. At checkpoint t,
m_t = mean over P of the residual at the last prompt token. With v_hat the unit trait direction:

- shift       S_t = (m_t - m_0) . v_hat            (m_0 = the model before the first optimizer step)
- shift_z     S_t / sigma_0                         (sigma_0 = std of the base model's per-prompt projections)
- shift_frac  S_t / g                               (g = pos-vs-neg gap of last-prompt projections at extraction)
- drift_cos   cos(m_t - m_0, v_hat), drift_norm = ||m_t - m_0||
- null_percentile: fraction of K fixed, seeded, norm-matched random directions u_k (drawn from N(0, Sigma_hat),
  covariance-realistic) with |(m_t - m_0) . u_k| <= |S_t|.

One shift core: :class:`ShiftBaseline` is built once from the base model's [P, d] probe activations of one trait
direction at one layer (per-prompt projections, m_0, sigma_0, the seeded null directions and the usable gap) and
:meth:`ShiftBaseline.measure` turns a candidate's probe activations into a :class:`ShiftResult`. The PersonaMonitor,
the release gate and the demo all measure through it, so the same inputs give identical numbers in each. A gap that
is missing, not finite or not above sigma_0 (:func:`usable_gap`) gives a NaN ``shift_frac``, everywhere.

Signs: S_t is reported along the trait direction (toward the trait's pos pole). ``toward_undesirable`` is S_t for
undesirable traits and -S_t for desirable ones (``toward_z``, ``toward_frac`` likewise); thresholds only count those.

:func:`read_residuals` is the one-forward reader used by extraction and probing, on the hooks layer's reader
(``blocks.i`` = output of block i, the library's LAYER_CONVENTION): a gather at given token indices or a mean over
a token mask. ``probe_mode`` (eval, no grad, training flags restored) lives in :mod:`difflib_models.hooks`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from difflib_models.errors import ConfigError, NonFiniteActivationError, bad_value
from difflib_models.hooks import EarlyStop, probe_mode, read_blocks, token_index, token_mean
from difflib_models.persona.traits import chat

log = logging.getLogger(__name__)


#: the probe batch size the monitor and the gate both default to: batch composition changes float rounding, so
#: the same batch size is what makes their numbers identical (not only equal to float tolerance)
PROBE_BATCH_SIZE = 8

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
    select = token_index(index.to(device)) if index is not None else token_mean(token_mask.to(device))
    return _read_selected(model, input_ids, attention_mask, layers, select, stop_early)


def read_response_and_prompt(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    layers: Sequence[int],
    *,
    token_mask: torch.Tensor,
    index: torch.Tensor,
    stop_early: bool | EarlyStop | None = None,
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """:func:`read_residuals` with ``token_mask`` and with ``index`` from the SAME forward: ``({layer: mean over
    the masked tokens [B, d]}, {layer: column index[b] [B, d]})`` (e.g. response-token means and the last prompt
    token), half the forwards of two calls."""
    device = next(model.parameters()).device
    mean, at = token_mean(token_mask.to(device)), token_index(index.to(device))
    both = _read_selected(model, input_ids, attention_mask, layers, lambda h: torch.cat([mean(h), at(h)], dim=-1),
                          stop_early)
    d = next(iter(both.values())).shape[-1] // 2
    return {k: v[:, :d].contiguous() for k, v in both.items()}, {k: v[:, d:].contiguous() for k, v in both.items()}


def _read_selected(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   layers: Sequence[int], select: Any, stop_early: bool | EarlyStop | None) -> dict[int, torch.Tensor]:
    device = next(model.parameters()).device
    ids, mask = input_ids.to(device), attention_mask.to(device)
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
    """One trait's shift at one checkpoint (spec section 4), measured by :meth:`ShiftBaseline.measure` (or
    :func:`compute_shift`).

    ``shift`` S = (m_t - m_0) . v_hat along the trait direction; ``shift_z`` = S / sigma_0 and ``shift_frac`` = S / g
    are NaN where sigma_0 is not positive or no usable gap g exists (never a division by a stand-in 0).
    ``toward_undesirable`` (and :attr:`toward_z`, :attr:`toward_frac`) flip the sign for desirable traits: only they
    are compared with thresholds. ``null_p95`` is the 95th percentile of |(m_t - m_0) . u_k| over the null
    directions (units of ``shift``); ``null_shifts`` are the signed (m_t - m_0) . u_k and ``projections`` the
    per-prompt projections of the measured activations on v_hat (empty for already averaged activations)."""

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
    polarity: str = "undesirable"
    null_p95: float = float("nan")
    n_prompts: int = 0
    null_shifts: tuple[float, ...] = field(default=(), repr=False)
    projections: tuple[float, ...] = field(default=(), repr=False)

    @property
    def sign(self) -> float:
        """+1 for an undesirable trait, -1 for a desirable one: ``toward_undesirable = sign * shift``."""
        return _polarity_sign(self.polarity)

    @property
    def toward_z(self) -> float:
        """``shift_z`` toward the undesirable pole (what the z thresholds compare)."""
        return self.sign * self.shift_z

    @property
    def toward_frac(self) -> float:
        """``shift_frac`` toward the undesirable pole (what the frac thresholds compare); NaN without a gap."""
        return self.sign * self.shift_frac

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


def _polarity_sign(polarity: str) -> float:
    if polarity not in ("undesirable", "desirable"):
        raise ConfigError(bad_value("polarity", polarity, ["undesirable", "desirable"]))
    return 1.0 if polarity == "undesirable" else -1.0


def _unit(vector: torch.Tensor) -> torch.Tensor:
    """v / |v| in float64 (ConfigError for a zero vector)."""
    v = vector.detach().double().flatten().cpu()
    vn = float(v.norm())
    if not vn > 0.0:
        raise ConfigError(bad_value("vector", "all zeros", "a non-zero trait direction"))
    return v / vn


def _null_units(null_dirs: torch.Tensor | None) -> torch.Tensor | None:
    if null_dirs is None or null_dirs.numel() == 0:
        return None
    u = null_dirs.detach().double().cpu()
    return u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _mean(acts: torch.Tensor) -> torch.Tensor:
    a = acts.detach().double().cpu()
    return a.mean(dim=0) if a.dim() == 2 else a


def _measure(m0: torch.Tensor, acts: torch.Tensor, unit: torch.Tensor, *, sigma0: float, gap: float | None,
             null_units: torch.Tensor | None, trait: str, layer: int, polarity: str) -> ShiftResult:
    """The one shift arithmetic (float64): ``m0`` and ``unit`` [d] float64, ``acts`` [P, d] or [d]."""
    sign = _polarity_sign(polarity)
    a = acts.detach().double().cpu()
    mt = a.mean(dim=0) if a.dim() == 2 else a
    if m0.shape != unit.shape or mt.shape != unit.shape:
        raise ConfigError(bad_value("shapes", (tuple(m0.shape), tuple(mt.shape), tuple(unit.shape)),
                                    "base, current and vector of the same size d_model"))
    delta = mt - m0
    s = float(delta @ unit)
    drift_norm = float(delta.norm())
    drift_cos = s / drift_norm if drift_norm > 0 else 0.0
    shift_z = s / sigma0 if math.isfinite(sigma0) and sigma0 > 0 else float("nan")
    g = None if gap is None or not math.isfinite(gap) or gap == 0.0 else float(gap)
    shift_frac = s / g if g is not None else float("nan")
    pct, p95, k, null_shifts = float("nan"), float("nan"), 0, ()
    if null_units is not None:
        signed = null_units @ delta
        null_abs = signed.abs()
        k = int(null_abs.shape[0])
        pct = float((null_abs <= abs(s)).double().mean())
        p95 = float(torch.quantile(null_abs, 0.95))
        null_shifts = tuple(float(x) for x in signed)
    projections = tuple(float(x) for x in a @ unit) if a.dim() == 2 else ()
    return ShiftResult(trait=trait, layer=int(layer), shift=s, shift_z=shift_z, shift_frac=shift_frac,
                       drift_cos=drift_cos, drift_norm=drift_norm, null_percentile=pct, n_null=k,
                       toward_undesirable=sign * s, polarity=polarity, null_p95=p95,
                       n_prompts=len(projections), null_shifts=null_shifts, projections=projections)


@dataclass(frozen=True, eq=False)
class ShiftBaseline:
    """The base model's side of one trait's shift at one layer, built once; :meth:`measure` measures a candidate.

    The monitor (m_0 before the first optimizer step), the gate (the base model) and the demo all build it with
    :meth:`from_activations` from the base's [P, d] probe activations, so the same base activations, vector, gap,
    number of null directions and seed give the same numbers in each of them. Fields (float64 unless noted):
    ``unit`` v / |v|; ``m0`` the base mean; ``projections`` the base's per-prompt projections on ``unit`` (empty
    for a baseline restored from a file without them); ``sigma0`` their std (NaN with fewer than 2 prompts);
    ``null_dirs`` [K, d] float32 covariance-realistic directions (:func:`covariance_null_directions` with
    ``null_seed``); ``gap`` the vector file's recorded pos-neg gap g (None when it has none) and ``usable_gap``
    the g ``shift_frac`` divides by (:func:`usable_gap`: None when g is missing, not finite or not above
    sigma0; ``shift_frac`` is then NaN)."""

    trait: str
    layer: int
    polarity: str
    unit: torch.Tensor
    m0: torch.Tensor
    projections: torch.Tensor
    sigma0: float
    null_dirs: torch.Tensor
    null_seed: int
    gap: float | None
    n_prompts: int

    def __post_init__(self) -> None:
        _polarity_sign(self.polarity)
        if self.unit.shape != self.m0.shape or self.null_dirs.dim() != 2 or \
                self.null_dirs.shape[1:] != self.unit.shape:
            raise ConfigError(bad_value("baseline shapes", (tuple(self.unit.shape), tuple(self.m0.shape),
                                                            tuple(self.null_dirs.shape)),
                                        "unit [d], m0 [d] and null directions [K, d] of one d_model"))

    @classmethod
    def from_activations(cls, acts: torch.Tensor, vector: torch.Tensor, *, gap: float | None, n_null: int,
                         seed: int, trait: str = "", layer: int = -1, polarity: str = "undesirable",
                         shrinkage: float = 0.1) -> ShiftBaseline:
        """The baseline of ``acts`` ([P >= 2, d], the base's last-prompt probe activations at ``layer``) along
        ``vector`` (raw [d]): m_0, sigma_0, ``n_null`` null directions drawn with ``seed`` from the activations'
        shrunk covariance, and the recorded ``gap`` (None: no gap)."""
        if acts.dim() != 2 or acts.shape[0] < 2:
            raise ConfigError(bad_value("acts.shape", tuple(acts.shape), "[P >= 2 probe prompts, d]",
                                        f"trait {trait!r} needs a probe set of at least 2 questions"))
        unit = _unit(vector)
        if acts.shape[1] != unit.shape[0]:
            raise ConfigError(bad_value("vector", tuple(vector.shape), f"[{acts.shape[1]}] (the activations' d)"))
        a = acts.detach().cpu()
        proj = a.double() @ unit
        return cls(trait=trait, layer=int(layer), polarity=polarity, unit=unit, m0=a.double().mean(dim=0),
                   projections=proj, sigma0=float(proj.std()),
                   null_dirs=covariance_null_directions(a, n_null, norm=1.0, seed=seed, shrinkage=shrinkage),
                   null_seed=int(seed), gap=None if gap is None else float(gap), n_prompts=int(a.shape[0]))

    @property
    def usable_gap(self) -> float | None:
        return usable_gap(self.gap, self.sigma0)

    @property
    def n_null(self) -> int:
        return int(self.null_dirs.shape[0])

    def measure(self, acts: torch.Tensor) -> ShiftResult:
        """The shift of ``acts`` ([P, d] on the same probe prompts, or an already averaged [d]) from this base."""
        if acts.dim() == 2 and self.n_prompts and acts.shape[0] != self.n_prompts:
            raise ConfigError(bad_value("acts.shape", tuple(acts.shape), f"[{self.n_prompts}, d]",
                                        "measure the candidate on the base's probe prompts"))
        return _measure(self.m0, acts, self.unit, sigma0=self.sigma0, gap=self.usable_gap,
                        null_units=_null_units(self.null_dirs), trait=self.trait, layer=self.layer,
                        polarity=self.polarity)

    # --------------------------------------------------------------------------------- persistence (monitor)
    def to_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """The tensors that :meth:`from_tensors` reads back exactly (m_0 and sigma_0 in float64)."""
        return {f"{prefix}m0": self.m0, f"{prefix}null_dirs": self.null_dirs,
                f"{prefix}sigma0": torch.tensor([self.sigma0], dtype=torch.float64),
                f"{prefix}projections": self.projections,
                f"{prefix}null_seed": torch.tensor([self.null_seed], dtype=torch.int64)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str = "", *, vector: torch.Tensor,
                     gap: float | None, trait: str = "", layer: int = -1,
                     polarity: str = "undesirable") -> ShiftBaseline:
        """A baseline saved with :meth:`to_tensors` (files without ``projections`` / ``null_seed``, written
        before they were saved, give empty projections and seed -1)."""
        m0 = tensors[f"{prefix}m0"].double()
        return cls(trait=trait, layer=int(layer), polarity=polarity, unit=_unit(vector), m0=m0,
                   projections=tensors.get(f"{prefix}projections", torch.zeros(0, dtype=torch.float64)).double(),
                   sigma0=float(tensors[f"{prefix}sigma0"].double()[0]), null_dirs=tensors[f"{prefix}null_dirs"],
                   null_seed=int(tensors[f"{prefix}null_seed"][0]) if f"{prefix}null_seed" in tensors else -1,
                   gap=None if gap is None else float(gap),
                   n_prompts=int(tensors[f"{prefix}projections"].numel()) if f"{prefix}projections" in tensors
                   else 0)


def compute_shift(
    base_acts: torch.Tensor,
    cur_acts: torch.Tensor,
    vector: torch.Tensor,
    *,
    gap: float | None,
    base_std: float,
    null_dirs: torch.Tensor | None = None,
    trait: str = "",
    layer: int = -1,
    polarity: str = "undesirable",
) -> ShiftResult:
    """Shift of the mean last-prompt activation along ``vector`` between the base and the current model, with the
    sigma_0 (``base_std``) and gap given as they are (:class:`ShiftBaseline` derives them from the base).

    ``base_acts`` and ``cur_acts`` are [P, d] (same probe prompts) or already-averaged [d]. ``null_dirs`` [K, d] are
    normalised internally; the percentile is the fraction of K null |dot products| that |S_t| meets or exceeds.
    ``gap`` None, 0 or not finite gives a NaN ``shift_frac``.
    """
    return _measure(_mean(base_acts), cur_acts, _unit(vector), sigma0=float(base_std), gap=gap,
                    null_units=_null_units(null_dirs), trait=trait, layer=layer, polarity=polarity)
