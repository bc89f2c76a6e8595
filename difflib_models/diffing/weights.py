"""Weight-space summary of a fine-tune: per-module delta norms.

Full fine-tunes: ``||W_ft - W_base||_F`` and the relative change ``||W_ft - W_base||_F / ||W_base||_F`` for every
parameter of matching name and shape. LoRA / peft: the norm of each adapter's delta ``scaling * B @ A`` computed
from the low-rank factors without merging or materialising the d_out x d_in matrix:
``||B A||_F^2 = trace((B^T B)(A A^T))`` (two r x r products).

Rows are grouped into decoder blocks (``block`` = the first integer component of the module path, e.g.
``model.layers.3.mlp.up_proj`` -> 3) so reports can show where in depth the change sits.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from difflib_models.errors import ConfigError, bad_value

log = logging.getLogger(__name__)

_BLOCK_RE = re.compile(r"\.(\d+)(?:\.|$)")
_PEFT_PREFIXES = ("base_model.model.",)


@dataclass(frozen=True)
class WeightDelta:
    """Change of one module/parameter. ``relative`` is ``delta_fro / base_fro`` (None when the base norm is 0)."""

    name: str
    kind: str  # "full" | "lora"
    delta_fro: float
    base_fro: float
    relative: float | None
    block: int | None
    shape: tuple[int, ...]
    rank: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["shape"] = list(self.shape)
        return out


def _block_of(name: str) -> int | None:
    m = _BLOCK_RE.search(name)
    return int(m.group(1)) if m else None


def _normalise_name(name: str) -> str:
    for prefix in _PEFT_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name.replace(".base_layer.", ".")


def _plain_params(model: nn.Module) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, p in model.state_dict().items():
        if "lora_" in name or "modules_to_save" in name:
            continue
        out[_normalise_name(name)] = p
    return out


@torch.no_grad()
def full_weight_deltas(
    base: nn.Module, finetuned: nn.Module, *, include_unchanged: bool = False
) -> list[WeightDelta]:
    """Per-parameter ``||W_ft - W_base||_F`` for two models of the same architecture.

    Tied weights appear once per name, as in ``state_dict``. Parameters present in only one model, or with
    different shapes, raise :class:`ConfigError` (the models are not a base/fine-tune pair).
    """
    pb, pf = _plain_params(base), _plain_params(finetuned)
    missing = sorted(set(pb) ^ set(pf))
    if missing:
        raise ConfigError(
            bad_value(
                "finetuned",
                f"{len(missing)} parameter names differ from the base model (first: {missing[:3]})",
                "a fine-tune of the same architecture",
                "Diff a model against the checkpoint it was fine-tuned from.",
            )
        )
    rows: list[WeightDelta] = []
    for name in sorted(pb):
        wb, wf = pb[name], pf[name]
        if wb.shape != wf.shape:
            raise ConfigError(
                bad_value(
                    f"finetuned[{name!r}].shape",
                    tuple(wf.shape),
                    f"the base shape {tuple(wb.shape)}",
                    "Both models must have the same architecture and sizes.",
                )
            )
        if not wb.is_floating_point():
            continue
        wb64, wf64 = wb.detach().double().cpu(), wf.detach().double().cpu()
        delta = float(torch.linalg.vector_norm(wf64 - wb64))
        if delta == 0.0 and not include_unchanged:
            continue
        base_norm = float(torch.linalg.vector_norm(wb64))
        rows.append(_delta_row(name, "full", delta, base_norm, tuple(wb.shape)))
    return rows


def _delta_row(name: str, kind: str, delta: float, base_norm: float, shape: tuple[int, ...],
               rank: int | None = None) -> WeightDelta:
    """One row: the relative delta is ``None`` where the base weight's norm is 0."""
    return WeightDelta(name=name, kind=kind, delta_fro=delta, base_fro=base_norm,
                       relative=delta / base_norm if base_norm > 0 else None, block=_block_of(name),
                       shape=shape, rank=rank)


def _lora_fro(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||B @ A||_F`` from the factors, via trace((B^T B)(A A^T)); A: [r, in], B: [out, r]."""
    a, b = a.double(), b.double()
    val = torch.trace((b.T @ b) @ (a @ a.T))
    return float(val.clamp_min(0.0).sqrt())


@torch.no_grad()
def lora_weight_deltas(model: nn.Module, adapter_name: str | None = None) -> list[WeightDelta]:
    """Norm of each LoRA delta ``scaling * B @ A`` of a peft model, without merging.

    ``adapter_name`` defaults to the model's active adapter. Raises :class:`ConfigError` when the model has no
    LoRA layers for that adapter (DoRA magnitude vectors are not included in the norm; they are logged).
    """
    rows: list[WeightDelta] = []
    found_adapters: set[str] = set()
    for mod_name, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        lora_b = getattr(module, "lora_B", None)
        emb_a = getattr(module, "lora_embedding_A", None)
        emb_b = getattr(module, "lora_embedding_B", None)
        scaling = getattr(module, "scaling", None)
        if scaling is None or (lora_a is None and emb_a is None):
            continue
        names = set(lora_a.keys() if lora_a is not None else []) | set(emb_a.keys() if emb_a is not None else [])
        found_adapters |= names
        wanted = adapter_name
        if wanted is None:
            active = getattr(module, "active_adapters", None) or [getattr(module, "active_adapter", None)]
            wanted = active[0] if active else None
        if wanted not in names:
            continue
        if lora_a is not None and wanted in lora_a:
            a = lora_a[wanted].weight.reshape(lora_a[wanted].weight.shape[0], -1)
            b = lora_b[wanted].weight.reshape(lora_b[wanted].weight.shape[0], -1)
        else:  # embedding LoRA: A [r, num_embeddings], B [dim, r]
            a, b = emb_a[wanted], emb_b[wanted]
        if getattr(module, "lora_magnitude_vector", None) and wanted in module.lora_magnitude_vector:
            log.info("%s uses DoRA: the magnitude vector is not part of the reported B@A norm", mod_name)
        scale = float(scaling[wanted])
        base_layer = module.get_base_layer() if hasattr(module, "get_base_layer") else None
        base_w = getattr(base_layer, "weight", None)
        base_norm = float(torch.linalg.vector_norm(base_w.detach().double())) if base_w is not None else 0.0
        delta = abs(scale) * _lora_fro(a, b)
        name = _normalise_name(mod_name)
        shape = tuple(base_w.shape) if base_w is not None else (int(b.shape[0]), int(a.shape[1]))
        rows.append(_delta_row(name, "lora", delta, base_norm, shape, rank=int(a.shape[0])))
    if not rows:
        raise ConfigError(
            bad_value(
                "adapter_name",
                adapter_name,
                sorted(found_adapters) or "a peft model with LoRA layers",
                "Pass a peft LoRA model (or diff two full models with full_weight_deltas).",
            )
        )
    return rows


def summarise_deltas(rows: list[WeightDelta]) -> dict[str, Any]:
    """JSON-able summary: every row, per-block totals (root-sum-square) and the largest relative changes."""
    per_block: dict[str, float] = {}
    for r in rows:
        key = "other" if r.block is None else str(r.block)
        per_block[key] = per_block.get(key, 0.0) + r.delta_fro**2
    ranked = sorted(rows, key=lambda r: (r.relative if r.relative is not None else -1.0), reverse=True)
    return {
        "kind": rows[0].kind if rows else None,
        "n_modules": len(rows),
        "total_delta_fro": sum(r.delta_fro**2 for r in rows) ** 0.5,
        "per_block_delta_fro": {k: v**0.5 for k, v in sorted(per_block.items(), key=lambda kv: kv[0])},
        "top_relative": [r.name for r in ranked[:10]],
        "modules": [r.to_dict() for r in rows],
    }


def weight_deltas(base: nn.Module, finetuned: nn.Module | None = None) -> dict[str, Any]:
    """Summary of the weight change: LoRA norms when ``finetuned`` is None (``base`` is a peft model), full
    per-parameter deltas otherwise."""
    rows = lora_weight_deltas(base) if finetuned is None else full_weight_deltas(base, finetuned)
    return summarise_deltas(rows)
