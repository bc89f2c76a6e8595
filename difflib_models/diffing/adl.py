"""Activation Difference Lens (ADL; Minder et al. 2025, "Narrow Finetuning Leaves Clearly Readable Traces").

The mean of ``finetuned - base`` residual activations on the first ``k`` tokens (after BOS) of generic text, at
one layer. A narrow fine-tune leaves a consistent offset there even on unrelated text; reading that vector
through the logit lens (final norm + unembedding of the fine-tuned model) lists tokens of the fine-tuning
domain. The same vector can steer the base model (:func:`add_to_residual`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from difflib_models.capture.capture import capture_batch
from difflib_models.diffing.pair import ModelPair
from difflib_models.diffing.sources import load_texts
from difflib_models.errors import ConfigError, DifflibError, bad_value
from difflib_models.hooks import add_to_block
from difflib_models.models.hookpoints import check_layers, find_final_norm, get_block, unwrap_model

log = logging.getLogger(__name__)


@dataclass
class ADLResult:
    """The ADL vector of one layer and its logit-lens reading."""

    layer: int
    k: int
    vector: torch.Tensor  # [d] mean(ft - base), unnormalised
    n_tokens: int
    base_rms: float  # RMS norm of the base activations it was averaged over (scale reference)
    top_tokens: list[dict[str, Any]] = field(default_factory=list)
    bottom_tokens: list[dict[str, Any]] = field(default_factory=list)

    @property
    def norm(self) -> float:
        return float(self.vector.norm())

    def to_dict(self, *, include_vector: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "layer": self.layer,
            "k": self.k,
            "n_tokens": self.n_tokens,
            "norm": self.norm,
            "relative_norm": self.norm / self.base_rms if self.base_rms > 0 else None,
            "top_tokens": self.top_tokens,
            "bottom_tokens": self.bottom_tokens,
        }
        if include_vector:
            out["vector"] = self.vector.tolist()
        return out


def first_k_mask(prompt_id: torch.Tensor, pos_index: torch.Tensor, k: int) -> torch.Tensor:
    """Rows that are among the first ``k`` stored tokens of their prompt (works whether or not BOS was skipped:
    counts from each prompt's smallest stored position)."""
    if prompt_id.numel() == 0:
        return torch.zeros(0, dtype=torch.bool)
    n = int(prompt_id.max()) + 1
    first = torch.full((n,), torch.iinfo(torch.long).max, dtype=torch.long)
    first = first.scatter_reduce(0, prompt_id, pos_index, reduce="amin")
    return pos_index < first[prompt_id] + k


def adl_vector_from_store(
    store: Any, layer: int, k: int = 5, *, batch_size: int = 8192
) -> tuple[torch.Tensor, int, float]:
    """Mean ``ft - base`` over the first ``k`` tokens of each prompt in a paired store (streamed: only the
    index table is held in memory). Returns ``(vector [d], n_tokens, base_rms)``."""
    _check_k(k)
    if list(store.sides) != ["base", "finetuned"]:
        raise ConfigError(bad_value("store.sides", store.sides, [["base", "finetuned"]], "use a paired store"))
    table = store.token_table()
    pid, pos = table["prompt_id"].long(), table["pos_index"].long()
    if pid.numel() == 0:
        raise DifflibError(f"store {getattr(store, 'path', '?')} holds no tokens")
    first = torch.full((int(pid.max()) + 1,), torch.iinfo(torch.long).max, dtype=torch.long)
    first = first.scatter_reduce(0, pid, pos, reduce="amin")
    total = torch.zeros(store.d_model, dtype=torch.float64)
    sq, n = 0.0, 0
    for batch in store.iter_batches(batch_size, layers=[layer]):
        keep = batch["pos_index"].long() < first[batch["prompt_id"].long()] + k
        if not bool(keep.any()):
            continue
        b = batch["acts"][keep, 0, 0].double()
        f = batch["acts"][keep, 1, 0].double()
        total += (f - b).sum(0)
        sq += float(b.pow(2).sum())
        n += int(keep.sum())
    if n == 0:
        raise DifflibError(f"no tokens among the first {k} positions in store {getattr(store, 'path', '?')}")
    return (total / n).float(), n, (sq / n) ** 0.5


@torch.no_grad()
def adl_vector(
    pair: ModelPair,
    texts: Sequence[str],
    layer: int,
    k: int = 5,
    *,
    batch_size: int = 16,
    max_length: int = 64,
) -> tuple[torch.Tensor, int, float]:
    """Mean ``ft - base`` at ``layer`` over the first ``k`` tokens (after BOS) of each text, straight from the
    models. Returns ``(vector [d], n_tokens, base_rms)``."""
    _check_k(k)
    (layer,) = check_layers([layer], pair.n_layers, argument="layer")
    total = torch.zeros(pair.d_model, dtype=torch.float64)
    sq = 0.0
    n = 0
    for _, ids, mask in pair.batches(texts, batch_size=batch_size, max_length=max(max_length, k + 1)):
        got = {}
        for side in ("base", "finetuned"):
            with pair.side(side) as model:
                got[side] = capture_batch(
                    model, ids, mask, [layer], positions=f"first_k:{k}", hook_override=pair.hook_override,
                    bos_token_id=pair.tokenizer.bos_token_id,
                ).acts[layer].double()
        total += (got["finetuned"] - got["base"]).sum(0)
        sq += float(got["base"].pow(2).sum())
        n += got["base"].shape[0]
    if n == 0:
        raise ConfigError(bad_value("texts", f"{len(texts)} texts", "texts with at least one token after BOS"))
    return (total / n).float(), n, (sq / n) ** 0.5


@torch.no_grad()
def logit_lens(
    model: nn.Module, vector: torch.Tensor, tokenizer: Any, *, top_n: int = 20, apply_norm: bool = True
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Read a residual-stream direction through the final norm and the unembedding: the ``top_n`` tokens it
    promotes most and the ``top_n`` it suppresses most (``{"token", "id", "logit"}``)."""
    root = unwrap_model(model)
    unembed = root.get_output_embeddings() if hasattr(root, "get_output_embeddings") else None
    if unembed is None:
        raise DifflibError(f"{type(root).__name__} has no output embedding (lm_head); the logit lens needs one")
    param = next(unembed.parameters())
    h = vector.to(device=param.device, dtype=param.dtype).reshape(1, 1, -1)
    if apply_norm:
        norm = find_final_norm(root)
        if norm is None:
            log.warning("no final norm found on %s; reading the raw vector", type(root).__name__)
        else:
            h = norm(h)
    logits = unembed(h).reshape(-1).float().cpu()
    n_vocab = len(tokenizer) if tokenizer is not None else logits.numel()
    logits = logits[: min(n_vocab, logits.numel())]
    top_n = min(top_n, logits.numel())
    top = torch.topk(logits, top_n)
    bottom = torch.topk(-logits, top_n)
    return (
        [_tok_entry(tokenizer, int(i), float(v)) for v, i in zip(top.values, top.indices, strict=True)],
        [_tok_entry(tokenizer, int(i), -float(v)) for v, i in zip(bottom.values, bottom.indices, strict=True)],
    )


def _tok_entry(tokenizer: Any, token_id: int, logit: float) -> dict[str, Any]:
    text = tokenizer.decode([token_id]) if tokenizer is not None else str(token_id)
    return {"token": text, "id": token_id, "logit": logit}


def activation_difference_lens(
    pair: ModelPair,
    texts: Sequence[str] | None = None,
    layer: int | None = None,
    *,
    k: int = 5,
    top_n: int = 20,
    store: Any | None = None,
    batch_size: int = 16,
) -> ADLResult:
    """ADL at ``layer`` (default: the middle block): from ``store`` when given (a paired store holding the
    layer), else from ``texts`` (default: the built-in generic prompts) run through both models."""
    if layer is None:
        layer = pair.n_layers // 2
    if store is not None:
        vec, n, rms = adl_vector_from_store(store, layer, k)
    else:
        if texts is None:
            texts = load_texts("generic")
        vec, n, rms = adl_vector(pair, texts, layer, k, batch_size=batch_size)
    with pair.side("finetuned") as model:
        top, bottom = logit_lens(model, vec, pair.tokenizer, top_n=top_n)
    return ADLResult(layer=layer, k=k, vector=vec, n_tokens=n, base_rms=rms, top_tokens=top, bottom_tokens=bottom)


@contextlib.contextmanager
def add_to_residual(
    model: nn.Module, layer: int, vector: torch.Tensor, scale: float = 1.0, *, hook_override: str | None = None
) -> Iterator[None]:
    """Steer: add ``scale * vector`` to the residual stream after block ``layer`` at every position, inside the
    context (the hook is removed in ``finally``)."""
    with add_to_block(get_block(model, layer, hook_override), (scale * vector).detach()):
        yield


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise ConfigError(bad_value("k", k, "an integer >= 1", "Minder et al. use the first ~5 tokens"))
