"""Splice-in evaluation: how much of the model's next-token loss survives when a layer's residual stream is
replaced by the crosscoder's reconstruction.

For the target model, the output of block ``layer`` is replaced (forward hook on the block, real tokens only,
BOS kept) by (a) the crosscoder reconstruction of that model's source, built from every model's clean
activations, and (b) an ablation reference: the mean activation over the evaluated tokens, or zeros.
CE recovered = (CE_ablated - CE_spliced) / (CE_ablated - CE_clean); KL recovered likewise with KL(clean || .).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from difflib_models.crosscoder.model import Crosscoder
from difflib_models.errors import ConfigError, bad_value
from difflib_models.hooks import BlockReader, all_positions, probe_mode, replace_in_block
from difflib_models.models.hookpoints import get_block

ABLATIONS = ("mean", "zero")


def _forward(model: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    return model(input_ids=input_ids, attention_mask=attention_mask).logits.float()


def _capture(model: nn.Module, layer: int, input_ids: Tensor, mask: Tensor, override: str | None) -> tuple[Tensor, Tensor]:
    """The block's output (float32, every position) and the logits of one full forward."""
    with BlockReader(model, [layer], all_positions(torch.float32), hook_override=override) as reader:
        logits = _forward(model, input_ids, mask)
        return reader.take()[layer], logits


def _ce_and_kl(logits: Tensor, clean_logits: Tensor, input_ids: Tensor, valid: Tensor) -> tuple[float, float]:
    """Mean next-token CE and KL(clean || logits) over the positions whose next token is real."""
    lp = F.log_softmax(logits[:, :-1], -1)
    lp_clean = F.log_softmax(clean_logits[:, :-1], -1)
    target = input_ids[:, 1:]
    keep = valid[:, 1:] & valid[:, :-1]
    ce = -lp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    kl = (lp_clean.exp() * (lp_clean - lp)).sum(-1)
    n = keep.sum().clamp_min(1)
    return float((ce * keep).sum() / n), float((kl * keep).sum() / n)


@torch.no_grad()
def splice_metrics(
    cc: Crosscoder,
    models: Sequence[nn.Module],
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    layer: int,
    target_model: int = 1,
    ablation: str = "mean",
    skip_bos: bool = True,
    block_override: str | None = None,
) -> dict[str, Any]:
    """CE/KL of the target model clean, spliced and ablated at block ``layer``, and the fractions recovered.

    ``models`` are the crosscoder's models in source order (base, fine-tuned), single-layer crosscoders only
    (n_sources == n_models). Real tokens only (``attention_mask``); with ``skip_bos`` position 0 is left as is,
    as BOS activations are not in the training data."""
    cfg = cc.config
    if cfg.n_layers != 1:
        raise ConfigError(bad_value("crosscoder layers", cfg.n_layers, [1], "splice one layer at a time"))
    if len(models) != cfg.n_models:
        raise ConfigError(bad_value("models", len(models), [cfg.n_models], "one model per crosscoder model"))
    if not 0 <= target_model < cfg.n_models:
        raise ConfigError(bad_value("target_model", target_model, f"0..{cfg.n_models - 1}"))
    if ablation not in ABLATIONS:
        raise ConfigError(bad_value("ablation", ablation, ABLATIONS))
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    with contextlib.ExitStack() as stack:  # eval + no grad; every module's own training flag restored afterwards
        for module in (cc, *models):
            stack.enter_context(probe_mode(module))
        return _splice(cc, models, input_ids, attention_mask, layer, target_model, ablation, skip_bos, block_override)


def _splice(
    cc: Crosscoder,
    models: Sequence[nn.Module],
    input_ids: Tensor,
    attention_mask: Tensor,
    layer: int,
    target_model: int,
    ablation: str,
    skip_bos: bool,
    block_override: str | None,
) -> dict[str, Any]:
    cfg = cc.config
    valid = attention_mask.bool()
    replace = valid.clone()
    if skip_bos:
        replace[:, 0] = False
    hiddens, logits = [], []
    for model in models:
        h, lg = _capture(model, layer, input_ids, attention_mask, block_override)
        hiddens.append(h)
        logits.append(lg)
    if hiddens[0].shape[-1] != cfg.d_model:
        raise ConfigError(bad_value("d_model", hiddens[0].shape[-1], [cfg.d_model], "wrong model or layer"))
    x = torch.stack([h[replace] for h in hiddens], dim=1)  # [N, M, d]
    recon = cc.denormalize(cc(cc.normalize(x)))[:, target_model]
    target_h = hiddens[target_model]
    reference = target_h[replace].mean(0) if ablation == "mean" else torch.zeros(cfg.d_model)
    model = models[target_model]
    block = get_block(model, layer, block_override)
    clean = logits[target_model]
    with replace_in_block(block, replace, recon):
        spliced = _forward(model, input_ids, attention_mask)
    with replace_in_block(block, replace, reference.expand_as(recon)):
        ablated = _forward(model, input_ids, attention_mask)
    ce_clean, _ = _ce_and_kl(clean, clean, input_ids, valid)
    ce_spliced, kl_spliced = _ce_and_kl(spliced, clean, input_ids, valid)
    ce_ablated, kl_ablated = _ce_and_kl(ablated, clean, input_ids, valid)
    gap = ce_ablated - ce_clean
    err = x[:, target_model] - recon
    fve = 1 - float(err.pow(2).sum() / (x[:, target_model] - x[:, target_model].mean(0)).pow(2).sum().clamp_min(1e-12))
    return {
        "layer": layer,
        "target_model": target_model,
        "ablation": ablation,
        "n_tokens": int(replace.sum()),
        "ce_clean": ce_clean,
        "ce_spliced": ce_spliced,
        "ce_ablated": ce_ablated,
        "ce_recovered": None if abs(gap) < 1e-9 else (ce_ablated - ce_spliced) / gap,
        "kl_spliced": kl_spliced,
        "kl_ablated": kl_ablated,
        "kl_recovered": None if kl_ablated < 1e-12 else (kl_ablated - kl_spliced) / kl_ablated,
        "fve_target": fve,
    }
